//! The whole mission on one local cluster with real containers, in the
//! order a platform team meets it: apply `manifests/game-launch/` → pods
//! Running on containerd → the Service answers → scale → rolling update and
//! undo → the HPA under load → a node fails and its pods are replaced → the
//! control plane is killed with SIGKILL and restarted with nothing lost and
//! no container restarted → `skiff down` leaves nothing behind.
//!
//! Two containerd nodes (root; FAIL, not skip, when a component is
//! missing). Network use: pod IPs on skiff's bridges, ClusterIPs on its
//! `skiff-svc` interface.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::containerd::{pids_with_cmdline, NodeCluster};
use e2e::wait_for;

const NS: &str = "game";

fn kubectl_ns(env: &NodeCluster, args: &[&str]) -> Result<String> {
    let mut all = vec!["-n", NS];
    all.extend_from_slice(args);
    env.kubectl(&all)
}

/// `(readyReplicas, spec.replicas)` of a Deployment in the game namespace.
fn replicas(env: &NodeCluster, name: &str) -> Result<(i64, i64)> {
    let out = kubectl_ns(
        env,
        &[
            "get",
            "deployment",
            name,
            "-o",
            "jsonpath={.status.readyReplicas},{.spec.replicas}",
        ],
    )?;
    let (ready, spec) = out.split_once(',').context("two fields")?;
    Ok((ready.parse().unwrap_or(0), spec.parse().unwrap_or(0)))
}

fn http(url_host: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&url_host.parse()?, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: game\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// A pod's node and its containers' `(containerID, restartCount)`.
type PodState = (String, Vec<(String, i64)>);

/// Every pod of the namespace not being deleted, by name.
fn pod_states(env: &NodeCluster) -> Result<BTreeMap<String, PodState>> {
    let out = kubectl_ns(env, &["get", "pods", "-o", "json"])?;
    let list: serde_json::Value = serde_json::from_str(&out)?;
    let mut pods = BTreeMap::new();
    for item in list["items"].as_array().cloned().unwrap_or_default() {
        if !item["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let node = item["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let containers = item["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    c["containerID"].as_str().unwrap_or_default().to_string(),
                    c["restartCount"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        pods.insert(name, (node, containers));
    }
    Ok(pods)
}

fn all_available(env: &NodeCluster) -> Result<()> {
    for d in ["game-api", "matchmaker", "leaderboard"] {
        kubectl_ns(
            env,
            &[
                "wait",
                "--for=condition=Available",
                &format!("deployment/{d}"),
                "--timeout=90s",
            ],
        )?;
    }
    Ok(())
}

#[test]
fn the_mission_from_manifests_to_skiff_down_on_real_containers() -> Result<()> {
    let mut env = NodeCluster::start_with(
        2,
        &[
            "--node-monitor-grace-period",
            "12s",
            "--default-not-ready-toleration-seconds",
            "2",
            "--default-unreachable-toleration-seconds",
            "2",
        ],
    )?;
    let began = Instant::now();
    let step = |what: &str| eprintln!("[{:>5.1}s] {what}", began.elapsed().as_secs_f64());

    // 1. The image, built offline, and the manifests as shipped.
    let out = std::process::Command::new(e2e::skiff_bin())
        .args([
            "image",
            "build",
            "--binary",
            "/bin/busybox",
            "--name",
            "skiff.local/game:1",
        ])
        .args(["--link", "sh", "--link", "httpd", "--data-dir"])
        .arg(env.data_dir())
        .output()?;
    ensure!(
        out.status.success(),
        "skiff image build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/game-launch");
    env.kubectl(&["apply", "-f", manifests.to_str().unwrap_or_default()])?;
    all_available(&env)?;
    step("manifests applied, every Deployment Available on containerd");

    // 2. The Service answers from the host, by ClusterIP and NodePort-free path.
    let ip = kubectl_ns(
        &env,
        &["get", "svc", "game-api", "-o", "jsonpath={.spec.clusterIP}"],
    )?;
    let body = wait_for(
        "game-api through its ClusterIP",
        Duration::from_secs(20),
        || {
            Ok(http(&format!("{ip}:80"), "/cgi-bin/play")
                .ok()
                .filter(|b| b.contains("played")))
        },
    )?;
    assert!(body.contains("played 1500"), "{body}");
    step("game-api answers through its ClusterIP");

    // 3. Scale.
    kubectl_ns(
        &env,
        &["scale", "deployment", "leaderboard", "--replicas=3"],
    )?;
    wait_for(
        "3 leaderboard replicas Ready",
        Duration::from_secs(60),
        || Ok((replicas(&env, "leaderboard")?.0 == 3).then_some(())),
    )?;
    step("leaderboard scaled to 3");

    // 4. Rolling update and undo.
    kubectl_ns(&env, &["set", "env", "deployment/leaderboard", "SEASON=2"])?;
    kubectl_ns(
        &env,
        &[
            "rollout",
            "status",
            "deployment/leaderboard",
            "--timeout=90s",
        ],
    )?;
    let env_now = kubectl_ns(
        &env,
        &[
            "get",
            "deployment",
            "leaderboard",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env}",
        ],
    )?;
    assert!(env_now.contains("SEASON"), "{env_now}");
    kubectl_ns(&env, &["rollout", "undo", "deployment/leaderboard"])?;
    kubectl_ns(
        &env,
        &[
            "rollout",
            "status",
            "deployment/leaderboard",
            "--timeout=90s",
        ],
    )?;
    let env_after = kubectl_ns(
        &env,
        &[
            "get",
            "deployment",
            "leaderboard",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env}",
        ],
    )?;
    assert!(!env_after.contains("SEASON"), "{env_after}");
    step("rolling update and undo");

    // 5. The HPA under load: 50 requests/s against a 20/s-per-pod target.
    let config = e2e::load::LoadConfig {
        url: format!("http://{ip}/cgi-bin/play"),
        profile: e2e::load::Profile {
            phases: vec![e2e::load::Phase::parse("25s@50")?],
        },
        timeout: Duration::from_secs(3),
        max_in_flight: 300,
    };
    let load = std::thread::spawn(move || {
        e2e::containerd::block_on(e2e::load::run(&config, || async { (None, None) }))
    });
    let scaled = wait_for(
        "game-api scaled to 3 Ready",
        Duration::from_secs(25),
        || {
            let (ready, _) = replicas(&env, "game-api")?;
            Ok((ready >= 3).then_some(ready))
        },
    )
    .context(kubectl_ns(&env, &["describe", "hpa", "game-api"]).unwrap_or_default())?;
    let seconds = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    let sent: u64 = seconds.iter().map(|s| s.sent).sum();
    let ok: u64 = seconds.iter().map(|s| s.ok).sum();
    step(&format!(
        "HPA: game-api at {scaled} Ready replicas under load; {ok}/{sent} requests answered"
    ));
    assert!(ok * 100 >= sent * 95, "{ok} of {sent} answered");
    // Autoscaling is proven; keep replica counts still for what follows.
    kubectl_ns(&env, &["delete", "hpa", "--all"])?;

    // 6. A node fails: its pods are replaced on the other one.
    let victim = env.nodes[1].node_name.clone();
    let survivor = env.nodes[0].node_name.clone();
    let out = std::process::Command::new(e2e::skiff_bin())
        .args(["node", "stop", &victim, "--data-dir"])
        .arg(env.data_dir())
        .output()?;
    ensure!(
        out.status.success(),
        "skiff node stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped = Instant::now();
    wait_for(
        "every Deployment Available on the surviving node",
        Duration::from_secs(60),
        || {
            let pods = pod_states(&env)?;
            let ready = ["game-api", "matchmaker", "leaderboard"]
                .iter()
                .all(|d| replicas(&env, d).is_ok_and(|(r, s)| r >= s && s > 0));
            let all_on_survivor = pods.values().all(|(node, _)| node == &survivor);
            Ok((ready && all_on_survivor).then_some(()))
        },
    )?;
    step(&format!(
        "{victim} stopped; workloads back on {survivor} after {:?}",
        stopped.elapsed()
    ));
    let out = std::process::Command::new(e2e::skiff_bin())
        .args(["node", "start", &victim, "--data-dir"])
        .arg(env.data_dir())
        .output()?;
    ensure!(out.status.success(), "skiff node start");
    env.wait_node_ready()?;

    // 7. The control plane dies with SIGKILL: nothing lost, nothing restarted.
    wait_for("no pod terminating", Duration::from_secs(60), || {
        let out = kubectl_ns(
            &env,
            &[
                "get",
                "pods",
                "-o",
                "jsonpath={.items[*].metadata.deletionTimestamp}",
            ],
        )?;
        Ok(out.trim().is_empty().then_some(()))
    })?;
    all_available(&env)?;
    let before = pod_states(&env)?;
    env.cluster_mut().kill9()?;
    let body = http(&format!("{ip}:80"), "/cgi-bin/play");
    step(&format!(
        "skiff killed; game-api while it is down: {}",
        if body.is_ok() { "answers" } else { "no answer" }
    ));
    env.cluster_mut().restart()?;
    env.wait_node_ready()?;
    std::thread::sleep(Duration::from_secs(5));
    let after = pod_states(&env)?;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "pods changed across the control plane restart"
    );
    for (name, (_, containers)) in &before {
        assert_eq!(
            &after[name].1, containers,
            "{name} restarted or lost its container"
        );
    }
    wait_for(
        "game-api answers after the restart",
        Duration::from_secs(20),
        || {
            Ok(http(&format!("{ip}:80"), "/cgi-bin/play")
                .ok()
                .filter(|b| b.contains("played")))
        },
    )?;
    step("control plane restarted: same pods, same containers, no restarts");

    // 8. skiff down leaves nothing running.
    let out = std::process::Command::new(e2e::skiff_bin())
        .arg("down")
        .arg("--data-dir")
        .arg(env.data_dir())
        .output()?;
    ensure!(
        out.status.success(),
        "skiff down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in &env.nodes {
        let namespace = format!("-namespace {}", node.containerd_namespace);
        assert!(
            pids_with_cmdline(&namespace).is_empty(),
            "shims of {} left",
            node.node_name
        );
        let bridge = std::process::Command::new("ip")
            .args(["link", "show", &node.bridge])
            .output()?;
        assert!(!bridge.status.success(), "bridge {} left", node.bridge);
    }
    let svc = std::process::Command::new("ip")
        .args(["link", "show", "skiff-svc"])
        .output()?;
    assert!(!svc.status.success(), "skiff-svc left");
    step("skiff down: no containers, bridges or service interface left");
    Ok(())
}
