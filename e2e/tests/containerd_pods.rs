//! Real nodes: `skiff up --runtime containerd` runs pods as containers
//! through a private containerd, runc and the CNI bridge.
//!
//! These tests run as root and FAIL (not skip) when a component is
//! missing, naming the Debian package. Network use: only pod IPs on the
//! bridge skiff creates for the node. A guard kills `skiff up`, removes
//! every container, netns and the bridge, and stops the node's containerd,
//! even when an assertion fails. The tests share one bridge name, so they
//! run one at a time.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::containerd::{
    condition, http_get, http_get_serving, phase, pids_with_cmdline, running_and_ready, status,
    NodeCluster, IMAGE,
};
use e2e::wait_for;
use k8s_openapi::api::core::v1::Pod;
use kubelet::cni::short_uid;

type Env = NodeCluster;

fn deployment(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: {IMAGE}
        imagePullPolicy: Never
        command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
"#
    )
}

fn bare_pod(name: &str, policy: &str, image: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{test: {name}}}
spec:
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: ["sh", "-c", "{script}"]
"#
    )
}

fn waiting_reason(pod: &Pod) -> Option<String> {
    status(pod)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

fn netns_exists(uid: &str) -> bool {
    Path::new("/run/netns")
        .join(format!("skiff-{}", short_uid(uid)))
        .exists()
}

#[test]
fn a_deployment_runs_as_real_containers_that_answer_on_their_pod_ips() -> Result<()> {
    let env = Env::start()?;
    let created = Instant::now();
    env.apply(&deployment("web", 2))?;
    let pods = wait_for(
        "2 web pods Running and Ready",
        Duration::from_secs(60),
        || {
            let pods = env.pods("app=web")?;
            Ok((pods.len() == 2 && pods.iter().all(running_and_ready)).then_some(pods))
        },
    )?;
    eprintln!(
        "deployment of 2 pods Running and Ready after {:?}",
        created.elapsed()
    );
    let cidr_prefix = env.node.pod_cidr.trim_end_matches("0/24").to_string();
    for pod in &pods {
        let st = pod.status.as_ref().context("status")?;
        let ip = st.pod_ip.clone().context("pod IP")?;
        assert!(
            ip.starts_with(&cidr_prefix),
            "{ip} not in {}",
            env.node.pod_cidr
        );
        assert_eq!(
            st.pod_ips.as_ref().map(|v| v[0].ip.clone()),
            Some(ip.clone())
        );
        assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
        assert!(st.start_time.is_some());
        for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert_eq!(condition(pod, kind).as_deref(), Some("True"), "{kind}");
        }
        let c = status(pod).context("container status")?;
        assert!(c.ready && c.started == Some(true), "{c:?}");
        assert_eq!(c.restart_count, 0);
        assert!(c.image_id.starts_with("sha256:"), "{c:?}");
        assert!(
            c.container_id
                .as_deref()
                .is_some_and(|id| id.starts_with("containerd://")),
            "{c:?}"
        );
        let body = http_get_serving(&ip, 8080)?;
        assert!(body.contains("hello from skiff"), "{body}");
    }

    // Deleting a pod stops its container and removes its sandbox.
    let victim = &pods[0];
    let name = victim.metadata.name.clone().context("name")?;
    let uid = victim.metadata.uid.clone().context("uid")?;
    let ip = victim
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("ip")?;
    assert!(netns_exists(&uid));
    let deleting = Instant::now();
    env.cluster()
        .kubectl(&["delete", "pod", &name, "--wait=true", "--timeout=60s"])?;
    eprintln!("pod deleted (grace 2s) in {:?}", deleting.elapsed());
    assert_eq!(env.containers_of(&uid)?, 0, "containers left behind");
    assert!(!netns_exists(&uid), "netns left behind");
    assert!(http_get(&ip, 8080).is_err(), "{ip} still answers");
    // The Deployment replaces it with a new running pod.
    wait_for("the replacement pod", Duration::from_secs(60), || {
        let pods = env.pods("app=web")?;
        Ok((pods.len() == 2 && pods.iter().all(running_and_ready)).then_some(()))
    })?;
    Ok(())
}

#[test]
fn exited_containers_restart_per_policy_with_crash_loop_back_off() -> Result<()> {
    let env = Env::start()?;
    env.apply(&bare_pod("crasher", "Always", IMAGE, "echo boom; exit 1"))?;
    env.apply(&bare_pod("once", "Never", IMAGE, "exit 3"))?;
    env.apply(&bare_pod("done", "OnFailure", IMAGE, "exit 0"))?;
    env.apply(&bare_pod("missing", "Always", "not-imported:1", "true"))?;

    // Exit 1 restarts at once; the next exit waits 10 s, then 20 s...
    let mut first_back_off: Option<String> = None;
    let pod = wait_for(
        "crasher restarted twice through CrashLoopBackOff",
        Duration::from_secs(60),
        || {
            let pod = env.pod("crasher")?;
            if waiting_reason(&pod).as_deref() == Some("CrashLoopBackOff")
                && first_back_off.is_none()
            {
                first_back_off =
                    status(&pod).and_then(|s| s.state.as_ref()?.waiting.as_ref()?.message.clone());
            }
            let restarts = status(&pod).map_or(0, |s| s.restart_count);
            Ok((first_back_off.is_some() && restarts >= 2).then_some(pod))
        },
    )?;
    let message = first_back_off.unwrap_or_default();
    assert!(
        message.starts_with("back-off 10s restarting failed container=main pod=crasher_default("),
        "{message}"
    );
    let last = status(&pod)
        .and_then(|s| s.last_state.as_ref()?.terminated.clone())
        .context("lastState.terminated")?;
    assert_eq!(last.exit_code, 1);
    assert_eq!(phase(&pod), "Running");

    let once = wait_for("the Never pod to fail", Duration::from_secs(30), || {
        let pod = env.pod("once")?;
        Ok((phase(&pod) == "Failed").then_some(pod))
    })?;
    let terminated = status(&once)
        .and_then(|s| s.state.as_ref()?.terminated.clone())
        .context("terminated")?;
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(status(&once).map(|s| s.restart_count), Some(0));
    wait_for(
        "the OnFailure pod to succeed",
        Duration::from_secs(30),
        || Ok((phase(&env.pod("done")?) == "Succeeded").then_some(())),
    )?;

    let missing = env.pod("missing")?;
    assert_eq!(phase(&missing), "Pending");
    assert_eq!(
        waiting_reason(&missing).as_deref(),
        Some("ErrImageNeverPull")
    );
    Ok(())
}

#[test]
fn a_kill_9_of_skiff_up_keeps_containers_running_and_a_restart_re_adopts_them() -> Result<()> {
    let mut env = Env::start()?;
    env.apply(&bare_pod(
        "steady",
        "Always",
        IMAGE,
        "exec httpd -f -p 8080 -h /www",
    ))?;
    let before = wait_for("steady Running", Duration::from_secs(60), || {
        let pod = env.pod("steady")?;
        Ok(running_and_ready(&pod).then_some(pod))
    })?;
    let ip = before
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("ip")?;
    let id = status(&before).and_then(|s| s.container_id.clone());

    env.cluster_mut().kill9()?;
    let body = http_get(&ip, 8080).context("the pod stops serving when skiff dies")?;
    assert!(body.contains("hello from skiff"));

    env.cluster_mut().restart()?;
    env.wait_node_ready()?;
    // Give the restarted agent time to sync the pod, then compare.
    std::thread::sleep(Duration::from_secs(3));
    let after = env.pod("steady")?;
    assert!(running_and_ready(&after), "{:?}", after.status);
    assert_eq!(status(&after).and_then(|s| s.container_id.clone()), id);
    assert_eq!(status(&after).map(|s| s.restart_count), Some(0));
    assert_eq!(
        after.status.as_ref().and_then(|s| s.pod_ip.clone()),
        Some(ip.clone())
    );
    assert!(http_get(&ip, 8080)?.contains("hello from skiff"));
    let uid = after.metadata.uid.clone().context("uid")?;
    assert_eq!(env.containers_of(&uid)?, 1, "a duplicate container started");
    Ok(())
}

#[test]
fn two_nodes_run_pods_each_on_its_own_pod_cidr_and_bridge() -> Result<()> {
    let env = Env::start_with(2, &[])?;
    let out = env.cluster().kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.podCIDR} {end}",
    ])?;
    for node in &env.nodes {
        let expected = format!("{}={}", node.node_name, node.pod_cidr);
        assert!(out.contains(&expected), "{out} lacks {expected}");
    }
    env.apply(&deployment("spread", 4))?;
    let pods = wait_for("4 pods Running and Ready", Duration::from_secs(60), || {
        let pods = env.pods("app=spread")?;
        Ok((pods.len() == 4 && pods.iter().all(running_and_ready)).then_some(pods))
    })?;
    let mut used = std::collections::BTreeSet::new();
    for pod in &pods {
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .context("node")?;
        let node = env
            .nodes
            .iter()
            .find(|n| n.node_name == node_name)
            .context("a known node")?;
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .context("ip")?;
        assert!(
            ip.starts_with(node.pod_cidr.trim_end_matches("0/24")),
            "{ip} of a pod on {node_name} outside {}",
            node.pod_cidr
        );
        assert!(http_get_serving(&ip, 8080)?.contains("hello from skiff"));
        used.insert(node_name);
    }
    assert_eq!(used.len(), 2, "the pods did not spread: {used:?}");
    Ok(())
}

#[test]
fn a_binary_packed_by_skiff_image_build_runs_as_a_pod_with_no_registry() -> Result<()> {
    let env = Env::start()?;
    // busybox-static packed as the image's only binary, with two applet links.
    let out = std::process::Command::new(e2e::skiff_bin())
        .args(["image", "build", "--binary", "/bin/busybox"])
        .args([
            "--name",
            "skiff.local/tools:1",
            "--link",
            "sh",
            "--link",
            "httpd",
        ])
        .arg("--data-dir")
        .arg(env.data_dir())
        .output()?;
    assert!(
        out.status.success(),
        "skiff image build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = r#"apiVersion: v1
kind: Pod
metadata:
  name: packed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: skiff.local/tools:1
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo packed-by-skiff > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#;
    env.apply(yaml)?;
    let pod = wait_for("the packed pod Running", Duration::from_secs(60), || {
        let pod = env.pod("packed")?;
        Ok(running_and_ready(&pod).then_some(pod))
    })?;
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("pod IP")?;
    let body = http_get_serving(&ip, 8080)?;
    assert!(body.contains("packed-by-skiff"), "{body}");
    let image = status(&pod).map(|c| c.image.clone()).unwrap_or_default();
    assert_eq!(image, "skiff.local/tools:1");
    Ok(())
}

#[test]
fn skiff_down_removes_containers_networks_and_containerd_and_up_resumes_the_cluster() -> Result<()>
{
    let mut env = Env::start()?;
    env.apply(&deployment("keep", 2))?;
    let pods = wait_for("2 pods Running", Duration::from_secs(60), || {
        let pods = env.pods("app=keep")?;
        Ok((pods.len() == 2 && pods.iter().all(running_and_ready)).then_some(pods))
    })?;
    let uids: Vec<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
    assert!(uids.iter().all(|u| netns_exists(u)));

    let out = std::process::Command::new(e2e::skiff_bin())
        .arg("down")
        .arg("--data-dir")
        .arg(env.data_dir())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "skiff down: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("removed 2 containers"), "{stdout}");
    for uid in &uids {
        assert!(!netns_exists(uid), "netns of {uid} left behind");
    }
    let bridge = std::process::Command::new("ip")
        .args(["link", "show", &env.node.bridge])
        .output()?;
    assert!(
        !bridge.status.success(),
        "bridge {} left behind",
        env.node.bridge
    );
    let config = env.node.data_dir.join("containerd/config.toml");
    assert!(
        pids_with_cmdline(&config.display().to_string()).is_empty(),
        "the node's containerd still runs"
    );
    let namespace = format!("-namespace {}", env.node.containerd_namespace);
    assert!(
        pids_with_cmdline(&namespace).is_empty(),
        "container shims still run"
    );

    // The next `up` on the same data dir has the same objects and runs them again.
    env.cluster_mut().restart()?;
    env.wait_node_ready()?;
    wait_for("2 pods Running again", Duration::from_secs(90), || {
        let pods = env.pods("app=keep")?;
        Ok((pods.len() == 2 && pods.iter().all(running_and_ready)).then_some(()))
    })?;
    Ok(())
}

fn node_ready(env: &Env, node: &str) -> Result<String> {
    env.cluster().kubectl(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ])
}

#[test]
fn skiff_node_stop_fails_a_node_over_and_skiff_node_start_brings_it_back() -> Result<()> {
    let env = Env::start_with(
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
    env.apply(&deployment("failover", 2))?;
    let pods = wait_for("2 pods Running", Duration::from_secs(60), || {
        let pods = env.pods("app=failover")?;
        Ok((pods.len() == 2 && pods.iter().all(running_and_ready)).then_some(pods))
    })?;
    // Spread puts one replica on each node; the first node's is the victim.
    let victim = env.nodes[0].node_name.clone();
    let survivor = env.nodes[1].node_name.clone();
    assert!(
        pods.iter()
            .any(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(victim.as_str())),
        "no replica on {victim} to fail over"
    );
    let node = |verb: &str| -> Result<String> {
        let out = std::process::Command::new(e2e::skiff_bin())
            .args(["node", verb, &victim, "--data-dir"])
            .arg(env.data_dir())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "skiff node {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    };
    let stopped = Instant::now();
    node("stop")?;
    wait_for("the stopped node NotReady", Duration::from_secs(40), || {
        Ok(node_ready(&env, &victim)
            .ok()
            .filter(|s| s == "Unknown" || s == "False")
            .map(|_| ()))
    })?;
    eprintln!("{victim} not ready after {:?}", stopped.elapsed());
    // Grace (12 s) + toleration (2 s) + 5 s: both replicas run on the survivor.
    wait_for(
        "both replicas on the surviving node",
        Duration::from_secs(40),
        || {
            let pods = env.pods("app=failover")?;
            let on_survivor = pods
                .iter()
                .filter(|p| running_and_ready(p))
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(survivor.as_str())
                })
                .count();
            Ok((on_survivor == 2).then_some(()))
        },
    )?;
    let failover = stopped.elapsed();
    eprintln!("replicas replaced after {failover:?}");
    assert!(
        failover <= Duration::from_secs(12 + 2 + 5 + 10),
        "failover took {failover:?}"
    );
    node("start")?;
    wait_for("the node Ready again", Duration::from_secs(40), || {
        Ok((node_ready(&env, &victim).ok().as_deref() == Some("True")).then_some(()))
    })?;
    // Unknown names are one clear line.
    let out = std::process::Command::new(e2e::skiff_bin())
        .args(["node", "stop", "no-such-node", "--data-dir"])
        .arg(env.data_dir())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no containerd node no-such-node"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    Ok(())
}
