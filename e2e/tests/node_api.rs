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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::{wait_for, Cluster, ClusterOptions};
use kubelet::cni::{CniConfig, CniNetwork, PodNetwork, SandboxRef};
use kubelet::containerd::test_image::{build_busybox_image, ArchiveFormat};
use kubelet::containerd::{containers, labels, Connection};
use kubelet::AgentConfig;

const NODE: &str = "skiff-node";
const IMAGE: &str = "skiff-busybox:e2e";

/// One cluster at a time: every test's node uses the same bridge.
static SERIAL: Mutex<()> = Mutex::new(());

fn require_components() {
    let required: &[(&[&str], &str)] = &[
        (&["/usr/bin/containerd"], "containerd"),
        (&["/usr/sbin/runc", "/usr/bin/runc"], "runc"),
        (
            &["/usr/lib/cni/bridge", "/opt/cni/bin/bridge"],
            "containernetworking-plugins",
        ),
        (&["/bin/busybox", "/usr/bin/busybox"], "busybox-static"),
        (&["/usr/bin/curl"], "curl"),
    ];
    for (paths, package) in required {
        assert!(
            paths.iter().any(|p| Path::new(p).exists()),
            "{paths:?} not found: install Debian's `{package}` package"
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    assert!(root, "the containerd e2e tests need root");
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// PIDs of processes whose command line contains `needle`.
fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// A running cluster with one containerd node, cleaned up on drop.
struct Env {
    cluster: Option<Cluster>,
    node: AgentConfig,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Env {
    fn start() -> Result<Self> {
        require_components();
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let cluster = Cluster::start(ClusterOptions {
            nodes: 1,
            runtime: "containerd",
            ..Default::default()
        })?;
        let node = AgentConfig::new(
            NODE,
            &cluster.data_dir.path().join("nodes").join(NODE),
            AgentConfig::index_for_name(NODE),
        );
        let env = Env {
            cluster: Some(cluster),
            node,
            _serial: serial,
        };
        let images = env.data_dir().join("images");
        std::fs::create_dir_all(&images)?;
        let partial = images.join("busybox.tar.partial");
        build_busybox_image(&partial, IMAGE, ArchiveFormat::OciLayout)?;
        std::fs::rename(&partial, images.join("busybox.tar"))?;
        wait_for("the node to be Ready", Duration::from_secs(60), || {
            let out = env.cluster().kubectl_output(&[
                "get",
                "node",
                NODE,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])?;
            Ok((String::from_utf8_lossy(&out.stdout) == "True").then_some(()))
        })?;
        Ok(env)
    }

    fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("cluster")
    }

    fn data_dir(&self) -> PathBuf {
        self.cluster().data_dir.path().to_path_buf()
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.cluster().kubectl(args)
    }

    fn apply(&self, yaml: &str) -> Result<()> {
        let out = self.cluster().kubectl_stdin(&["apply", "-f", "-"], yaml)?;
        if !out.status.success() {
            bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn wait_running(&self, pod: &str) -> Result<()> {
        wait_for(
            &format!("pod {pod} Running"),
            Duration::from_secs(60),
            || {
                let phase = self.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])?;
                Ok((phase == "Running").then_some(()))
            },
        )
    }

    /// The agent's port as the Node reports it.
    fn agent_port(&self) -> Result<u16> {
        let port = self.kubectl(&[
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

    fn all_pod_uids(&self) -> Vec<String> {
        let Some(cluster) = self.cluster.as_ref() else {
            return Vec::new();
        };
        cluster
            .kubectl(&[
                "get",
                "pods",
                "-A",
                "-o",
                "jsonpath={.items[*].metadata.uid}",
            ])
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn clean_node(&self, api_uids: Vec<String>) {
        let node = &self.node;
        let socket = node.data_dir.join("containerd/containerd.sock");
        let namespace = node.containerd_namespace.clone();
        let cni = CniConfig::new(&node.data_dir, &node.bridge, &node.pod_cidr);
        block_on(async move {
            let network = CniNetwork::new(cni);
            if let Ok(connection) = Connection::connect(&socket, &namespace).await {
                let records = containers::list(&connection, None)
                    .await
                    .unwrap_or_default();
                for record in records {
                    let grace = Duration::from_millis(100);
                    let _ = containers::stop(&connection, &record.id, grace).await;
                    let _ = containers::remove(&connection, &record.id).await;
                    if let Some(uid) = record.labels.get(labels::POD_UID) {
                        let sandbox = SandboxRef {
                            pod_uid: uid.clone(),
                        };
                        let _ = network.teardown(&sandbox).await;
                    }
                }
            }
            for pod_uid in api_uids {
                let _ = network.teardown(&SandboxRef { pod_uid }).await;
            }
        });
        let state = node.data_dir.join("cni/pods");
        for entry in std::fs::read_dir(&state).into_iter().flatten().flatten() {
            if let Some(netns) = entry.path().file_stem().and_then(|s| s.to_str()) {
                let _ = Command::new("ip").args(["netns", "delete", netns]).output();
            }
        }
        let config = node.data_dir.join("containerd/config.toml");
        for pid in pids_with_cmdline(&config.display().to_string()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if nix::sys::signal::kill(pid, None).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &node.bridge])
            .output();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let api_uids = self.all_pod_uids();
        if let Some(cluster) = self.cluster.as_mut() {
            let _ = cluster.kill9();
        }
        self.clean_node(api_uids);
        self.cluster.take();
    }
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
    env.wait_running("logger")?;

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

    env.wait_running("two")?;
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
    env.wait_running("burner")?;
    env.wait_running("idle")?;

    let top = wait_for(
        "kubectl top pods to show burner above 100m",
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
            Ok(busy.then_some(text))
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

    // The custom metrics API answers for every running pod (no traffic: 0).
    let custom = env.kubectl(&[
        "get",
        "--raw",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/requests_per_second?labelSelector=test%3Didle",
    ])?;
    let custom: serde_json::Value = serde_json::from_str(&custom)?;
    assert_eq!(custom["kind"], "MetricValueList");
    assert_eq!(custom["items"][0]["describedObject"]["name"], "idle");
    assert_eq!(custom["items"][0]["metric"]["name"], "requests_per_second");
    assert_eq!(custom["items"][0]["value"], "0");

    // Object metrics of a Service: the sum over the pods it selects.
    env.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: idle-svc\nspec:\n  selector: {test: idle}\n  ports:\n  - port: 80\n",
    )?;
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
    let port = env.agent_port()?;
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
