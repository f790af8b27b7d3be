//! The node agent's HTTPS API and what the API server builds on it:
//! `kubectl logs` (tail, follow, container choice), `kubectl top pods` /
//! `top nodes` and `metrics.k8s.io` from cgroup stats, the custom metrics
//! API, and client-certificate authentication of the agent.
//!
//! Real containerd nodes: these tests run as root and FAIL (not skip) when a
//! component is missing. Network use: only the node's own address
//! (127.0.0.1) and the bridge skiff creates. A guard kills `skiff up` and
//! removes every container, netns, the bridge and the node's containerd,
//! even when an assertion fails. containerd e2e tests of every worktree
//! share bridge and netns names: run them under
//! `flock /tmp/skiff-containerd-e2e.lock cargo test -p e2e --test node_api -- --test-threads=1`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::containerd::{block_on, NodeCluster, IMAGE, NODE};
use e2e::wait_for;

type Env = NodeCluster;

/// Waits for pod `name` to be Running (not necessarily Ready).
fn wait_running(env: &Env, pod: &str) -> Result<()> {
    wait_for(
        &format!("pod {pod} Running"),
        Duration::from_secs(60),
        || {
            let phase = env.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])?;
            Ok((phase == "Running").then_some(()))
        },
    )
}

/// The agent's port as the Node reports it.
fn agent_port(env: &Env) -> Result<u16> {
    let port = env.kubectl(&[
        "get",
        "node",
        NODE,
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ])?;
    port.trim()
        .parse()
        .with_context(|| format!("daemonEndpoints port {port:?}"))
}

fn pod(name: &str, containers: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{test: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n"
    );
    for (container, script) in containers {
        yaml.push_str(&format!(
            "  - name: {container}\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"{script}\"]\n"
        ));
    }
    yaml
}

/// Millicores of a `kubectl top` CPU column (`250m`, `1`).
fn millicores(text: &str) -> Option<u64> {
    match text.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => text.parse::<u64>().ok().map(|c| c * 1000),
    }
}

#[test]
fn kubectl_logs_reads_tails_and_follows_a_containers_output_from_its_node() -> Result<()> {
    let env = Env::start()?;
    env.apply(&pod(
        "logger",
        &[(
            "main",
            "i=1; while true; do echo line-$i; i=$((i+1)); sleep 0.5; done",
        )],
    ))?;
    env.apply(&pod("two", &[("a", "sleep 3600"), ("b", "sleep 3600")]))?;
    wait_running(&env, "logger")?;

    let all = wait_for("five log lines", Duration::from_secs(30), || {
        let out = env.kubectl(&["logs", "logger"])?;
        Ok(out.contains("line-5\n").then_some(out))
    })?;
    assert!(all.starts_with("line-1\nline-2\n"), "{all}");

    let tail = env.kubectl(&["logs", "logger", "--tail=2"])?;
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 2, "{tail}");
    let number = |l: &str| l.trim_start_matches("line-").parse::<u64>().unwrap_or(0);
    assert_eq!(number(lines[1]), number(lines[0]) + 1, "{tail}");

    let stamped = env.kubectl(&["logs", "logger", "--tail=1", "--timestamps"])?;
    assert!(
        stamped.starts_with("20") && stamped.contains("Z line-"),
        "{stamped}"
    );

    // -f keeps the stream open and new lines arrive through it.
    let mut follow = Command::new("kubectl")
        .env("KUBECONFIG", env.cluster().kubeconfig())
        .args(["logs", "-f", "logger", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = follow.stdout.take().context("follow stdout")?;
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 256];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&seen).lines().count() >= 4 {
                break;
            }
        }
        String::from_utf8_lossy(&seen).to_string()
    });
    let started = Instant::now();
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let followed = reader.join().unwrap_or_default();
    let numbers: Vec<u64> = followed.lines().map(number).collect();
    assert!(numbers.len() >= 4, "follow streamed only {followed:?}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{followed:?}");

    wait_running(&env, "two")?;
    // kubectl picks the first container itself; the API asks for a choice.
    let out = env.cluster().kubectl_output(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/two/log",
    ])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{stderr}"
    );
    assert_eq!(env.kubectl(&["logs", "two", "-c", "b"])?, "");
    Ok(())
}

#[test]
fn kubectl_top_shows_a_busy_containers_cpu_and_memory_and_the_agent_requires_a_client_certificate(
) -> Result<()> {
    let env = Env::start()?;
    env.apply(&pod("burner", &[("spin", "while true; do :; done")]))?;
    env.apply(&pod("idle", &[("sleep", "sleep 3600")]))?;
    wait_running(&env, "burner")?;
    wait_running(&env, "idle")?;

    let top = wait_for(
        "kubectl top pods to show burner above 100m, and idle",
        Duration::from_secs(60),
        || {
            let out = env
                .cluster()
                .kubectl_output(&["top", "pods", "--no-headers"])?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let busy = text.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&"burner")
                    && cols
                        .get(1)
                        .and_then(|c| millicores(c))
                        .is_some_and(|c| c > 100)
            });
            // Each pod appears once its node has two samples of it.
            let idle = text.lines().any(|l| l.starts_with("idle "));
            Ok((busy && idle).then_some(text))
        },
    )?;
    let burner: Vec<&str> = top
        .lines()
        .find(|l| l.starts_with("burner"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert!(
        burner[2].ends_with("Mi") || burner[2].ends_with("Ki"),
        "{top}"
    );
    assert!(top.contains("idle"), "{top}");

    let nodes = wait_for("kubectl top nodes", Duration::from_secs(30), || {
        let out = env
            .cluster()
            .kubectl_output(&["top", "nodes", "--no-headers"])?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        Ok(text.starts_with(NODE).then_some(text))
    })?;
    let cols: Vec<&str> = nodes.split_whitespace().collect();
    assert!(millicores(cols[1]).is_some_and(|c| c > 100), "{nodes}");
    assert!(cols[3].ends_with("Mi"), "{nodes}");

    // PodMetrics through the API, with a label selector.
    let raw = env.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=test%3Dburner",
    ])?;
    let list: serde_json::Value = serde_json::from_str(&raw)?;
    assert_eq!(list["kind"], "PodMetricsList");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{raw}");
    assert_eq!(items[0]["metadata"]["name"], "burner");
    assert_eq!(items[0]["window"], "1s");
    assert_eq!(items[0]["containers"][0]["name"], "spin");
    let one = env.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/idle",
    ])?;
    let idle: serde_json::Value = serde_json::from_str(&one)?;
    assert_eq!(idle["kind"], "PodMetrics");
    let missing = env.cluster().kubectl_output(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
    ])?;
    assert!(!missing.status.success());

    // A pod no metering Service routes to has no request metrics (missing,
    // not zero: an autoscaler must not read it as idle).
    let unmetered = env.cluster().kubectl_output(&[
        "get",
        "--raw",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/idle/requests_per_second",
    ])?;
    assert!(
        !unmetered.status.success(),
        "an unmetered pod has no requests_per_second"
    );

    // Behind a Service on the metering path, every running pod it selects
    // reports (no traffic: 0), and the Service reports their sum.
    env.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: idle-svc\n  annotations: {proxy.skiff.io/mode: userspace}\nspec:\n  selector: {test: idle}\n  ports:\n  - port: 80\n",
    )?;
    let custom = wait_for(
        "the idle pod to be metered",
        Duration::from_secs(20),
        || {
            Ok(env
            .kubectl(&[
                "get",
                "--raw",
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/requests_per_second?labelSelector=test%3Didle",
            ])
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .filter(|v| v["items"][0].is_object()))
        },
    )?;
    assert_eq!(custom["kind"], "MetricValueList");
    assert_eq!(custom["items"][0]["describedObject"]["name"], "idle");
    assert_eq!(custom["items"][0]["metric"]["name"], "requests_per_second");
    assert_eq!(custom["items"][0]["value"], "0");

    let service = env.kubectl(&[
        "get",
        "--raw",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/idle-svc/errors_per_second",
    ])?;
    let service: serde_json::Value = serde_json::from_str(&service)?;
    assert_eq!(service["items"][0]["describedObject"]["kind"], "Service");
    assert_eq!(service["items"][0]["describedObject"]["name"], "idle-svc");
    assert_eq!(service["items"][0]["metric"]["name"], "errors_per_second");
    let unknown = env.cluster().kubectl_output(&[
        "get",
        "--raw",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/idle-svc/bogus_metric",
    ])?;
    assert!(!unknown.status.success());

    // Discovery lists the metrics groups and pods/log.
    let groups = env.kubectl(&["api-versions"])?;
    assert!(groups.contains("metrics.k8s.io/v1beta1"), "{groups}");
    assert!(groups.contains("custom.metrics.k8s.io/v1beta2"), "{groups}");
    let core = env.kubectl(&["get", "--raw", "/api/v1"])?;
    assert!(
        core.contains("\"pods/log\""),
        "pods/log missing from /api/v1"
    );

    // kube-rs reads PodMetrics as a dynamic object.
    let metrics = block_on(async {
        let client = env.cluster().client().await?;
        let gvk = kube::api::GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics");
        let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, "pods");
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::namespaced_with(client, "default", &resource);
        Ok::<_, anyhow::Error>(api.get("burner").await?)
    })?;
    assert!(metrics.data["containers"][0]["usage"]["cpu"].is_string());

    // The agent itself: the API server's client certificate is accepted,
    // a client without one is refused during the TLS handshake.
    let port = agent_port(&env)?;
    assert!(port > 0);
    let url = format!("https://127.0.0.1:{port}/stats/summary");
    let pki = env.data_dir().join("pki");
    let with_cert = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "5", "--cert"])
        .arg(pki.join("apiserver-kubelet-client.crt"))
        .arg("--key")
        .arg(pki.join("apiserver-kubelet-client.key"))
        .arg(&url)
        .output()?;
    assert!(with_cert.status.success(), "{with_cert:?}");
    let summary: serde_json::Value = serde_json::from_slice(&with_cert.stdout)?;
    assert_eq!(summary["node"]["nodeName"], NODE);
    let metrics = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "5", "--cert"])
        .arg(pki.join("apiserver-kubelet-client.crt"))
        .arg("--key")
        .arg(pki.join("apiserver-kubelet-client.key"))
        .arg(format!("https://127.0.0.1:{port}/metrics"))
        .output()?;
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("container_cpu_usage_seconds_total{container=\"spin\",namespace=\"default\",pod=\"burner\"}"),
        "{metrics}"
    );
    let without = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "5"])
        .arg(&url)
        .output()?;
    assert!(
        !without.status.success(),
        "a client without a certificate got {}",
        String::from_utf8_lossy(&without.stdout)
    );
    Ok(())
}
