//! The harness of the tests that run real containers: `skiff up --runtime
//! containerd` with the busybox test image in its image folder, and a
//! guard that removes everything the nodes created (containers, pod
//! networks, netns, bridges, containerd) when the test ends, pass or fail.
//!
//! The tests FAIL (not skip) when a component is missing, naming the
//! Debian package. Every cluster's nodes use the same bridge names, so
//! clusters run one at a time: a process-wide lock within a test binary,
//! and a lock file (`/tmp/skiff-containerd-e2e.harness.lock`) across test
//! binaries, worktrees and benchmarks on the machine.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kubelet::containerd::test_image::{build_busybox_image, ArchiveFormat};
use kubelet::AgentConfig;

use crate::{wait_for, Cluster, ClusterOptions};

/// The node's name of a one-node cluster.
pub const NODE: &str = "skiff-node";
/// The busybox test image every cluster has.
pub const IMAGE: &str = "skiff-busybox:e2e";

/// The eviction thresholds of the test clusters' nodes (disk signals
/// off, as in kind).
pub const E2E_EVICTION_HARD: &str = "memory.available<100Mi";

static SERIAL: Mutex<()> = Mutex::new(());

/// Panics naming the Debian package when a component is missing, or when
/// not running as root.
pub fn require_components() {
    let required: &[(&[&str], &str)] = &[
        (&["/usr/bin/containerd"], "containerd"),
        (&["/usr/sbin/runc", "/usr/bin/runc"], "runc"),
        (
            &["/usr/lib/cni/bridge", "/opt/cni/bin/bridge"],
            "containernetworking-plugins",
        ),
        (&["/bin/busybox", "/usr/bin/busybox"], "busybox-static"),
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

/// The nodes' configurations as `skiff up --nodes N` derives them.
pub fn node_configs(data_dir: &Path, count: u32) -> Vec<AgentConfig> {
    let nodes = data_dir.join("nodes");
    if count == 1 {
        return vec![AgentConfig::new(
            NODE,
            &nodes.join(NODE),
            AgentConfig::index_for_name(NODE),
        )];
    }
    (0..count)
        .map(|i| {
            let name = format!("{NODE}-{i}");
            AgentConfig::new(&name, &nodes.join(&name), i)
        })
        .collect()
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// PIDs of processes whose command line contains `needle`.
pub use kubelet::agent::cleanup::pids_with_cmdline;

/// A running cluster with containerd nodes, cleaned up on drop.
pub struct NodeCluster {
    cluster: Option<Cluster>,
    /// The first node.
    pub node: AgentConfig,
    pub nodes: Vec<AgentConfig>,
    _serial: std::sync::MutexGuard<'static, ()>,
    /// Declared last: released after the cluster is cleaned up.
    _machine: MachineLock,
}

/// The machine-wide lock of clusters with real nodes: an exclusive
/// `flock` on a file of its own (not inherited by children: Rust opens
/// files close-on-exec, so no shim can keep it).
pub struct MachineLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

impl MachineLock {
    pub const PATH: &'static str = "/tmp/skiff-containerd-e2e.harness.lock";

    /// Waits for the lock.
    pub fn acquire() -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Self::PATH)?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map(MachineLock)
            .map_err(|(_, errno)| anyhow::anyhow!("flock {}: {errno}", Self::PATH))
    }
}

impl NodeCluster {
    /// One node.
    pub fn start() -> Result<Self> {
        Self::start_with(1, &[])
    }

    /// `count` nodes and extra `skiff up` flags.
    pub fn start_with(count: u32, extra_args: &[&str]) -> Result<Self> {
        require_components();
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let machine = MachineLock::acquire()?;
        let mut args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        if !args.iter().any(|a| a == "--eviction-hard") {
            // As kind configures its nodes: a test host's disk may be
            // fuller than the kubelet's 10%/15% free-space thresholds, and
            // DiskPressure would then refuse every pod. Memory keeps
            // Kubernetes' default threshold.
            args.extend(["--eviction-hard".to_string(), E2E_EVICTION_HARD.to_string()]);
        }
        let cluster = Cluster::start(ClusterOptions {
            nodes: count,
            runtime: "containerd",
            extra_args: args,
        })?;
        let nodes = node_configs(cluster.data_dir.path(), count);
        let env = NodeCluster {
            cluster: Some(cluster),
            node: nodes[0].clone(),
            nodes,
            _serial: serial,
            _machine: machine,
        };
        // The image folder is rescanned: write under a temp name, then rename.
        let images = env.data_dir().join("images");
        std::fs::create_dir_all(&images)?;
        let partial = images.join("busybox.tar.partial");
        build_busybox_image(&partial, IMAGE, ArchiveFormat::OciLayout)?;
        std::fs::rename(&partial, images.join("busybox.tar"))?;
        env.wait_node_ready()?;
        Ok(env)
    }

    pub fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("a running cluster")
    }

    pub fn cluster_mut(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("a running cluster")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.cluster().data_dir.path().to_path_buf()
    }

    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.cluster().kubectl(args)
    }

    /// Waits until every node reports Ready.
    pub fn wait_node_ready(&self) -> Result<()> {
        for node in &self.nodes {
            wait_for("the node to be Ready", Duration::from_secs(60), || {
                let out = self.cluster().kubectl_output(&[
                    "get",
                    "node",
                    &node.node_name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])?;
                Ok((String::from_utf8_lossy(&out.stdout) == "True").then_some(()))
            })?;
        }
        Ok(())
    }

    /// Pods of the default namespace matching a label selector.
    pub fn pods(&self, selector: &str) -> Result<Vec<Pod>> {
        let out = self.kubectl(&["get", "pods", "-l", selector, "-o", "json"])?;
        let list: serde_json::Value = serde_json::from_str(&out)?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        Ok(items
            .into_iter()
            .filter_map(|i| serde_json::from_value(i).ok())
            .collect())
    }

    pub fn pod(&self, name: &str) -> Result<Pod> {
        Ok(serde_json::from_str(
            &self.kubectl(&["get", "pod", name, "-o", "json"])?,
        )?)
    }

    pub fn endpoints(&self, name: &str) -> Result<k8s_openapi::api::core::v1::Endpoints> {
        Ok(serde_json::from_str(&self.kubectl(&[
            "get",
            "endpoints",
            name,
            "-o",
            "json",
        ])?)?)
    }

    /// Events about object `name` in the default namespace, as `(reason, message)`.
    pub fn events(&self, name: &str) -> Result<Vec<(String, String)>> {
        let out = self.kubectl(&["get", "events", "-o", "json"])?;
        let list: serde_json::Value = serde_json::from_str(&out)?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        Ok(items
            .into_iter()
            .filter_map(|i| serde_json::from_value::<k8s_openapi::api::core::v1::Event>(i).ok())
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect())
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<()> {
        let out = self.cluster().kubectl_stdin(&["apply", "-f", "-"], yaml)?;
        if !out.status.success() {
            bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Waits until pod `name` is Running and Ready, and returns it.
    pub fn wait_running(&self, name: &str, timeout: Duration) -> Result<Pod> {
        wait_for(&format!("pod {name} Running and Ready"), timeout, || {
            let pod = self.pod(name)?;
            Ok(running_and_ready(&pod).then_some(pod))
        })
    }

    /// The number of containerd records of a pod on the first node.
    pub fn containers_of(&self, uid: &str) -> Result<usize> {
        use kubelet::containerd::{containers, labels, Connection};
        let socket = self.node.data_dir.join("containerd/containerd.sock");
        let namespace = self.node.containerd_namespace.clone();
        let uid = uid.to_string();
        block_on(async move {
            let connection = Connection::connect(&socket, &namespace).await?;
            let found = containers::list(&connection, Some((labels::POD_UID, &uid))).await?;
            Ok::<_, anyhow::Error>(found.len())
        })
    }
}

impl NodeCluster {
    /// What a failed test needs to be understood: nodes with their
    /// conditions and taints, every pod with its status, the newest events
    /// and the end of skiff's log.
    pub fn diagnose(&self) -> String {
        let Some(cluster) = self.cluster.as_ref() else {
            return String::new();
        };
        let run = |args: &[&str]| match cluster.kubectl_output(args) {
            Ok(out) => format!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("$ kubectl {}: {e}\n", args.join(" ")),
        };
        let nodes = r#"jsonpath={range .items[*]}{.metadata.name}{" conditions: "}{range .status.conditions[*]}{.type}={.status} {end}{" taints: "}{.spec.taints}{"\n"}{end}"#;
        let pods = r#"jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{" node="}{.spec.nodeName}{" phase="}{.status.phase}{" reason="}{.status.reason}{" conditions="}{.status.conditions}{" containers="}{.status.containerStatuses}{"\n"}{end}"#;
        let tail = |text: &str, n: usize| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "{}{}{}\n--- end of skiff log ---\n{}\n",
            run(&["get", "nodes", "-o", nodes]),
            run(&["get", "pods", "-A", "-o", pods]),
            tail(
                &run(&["get", "events", "-A", "--sort-by=.lastTimestamp"]),
                60
            ),
            tail(&cluster.logs(), 150),
        )
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        // The test harness captures this and shows it only for a failed
        // test.
        eprintln!(
            "--- cluster state at the end of the test ---\n{}",
            self.diagnose()
        );
        if let Some(cluster) = self.cluster.as_mut() {
            let _ = cluster.kill9();
        }
        // What `skiff down` removes: containers, pod networks, netns,
        // bridges and each node's containerd.
        for node in &self.nodes {
            let _ = block_on(kubelet::agent::cleanup::remove_node(&node.data_dir));
        }
        // The Service proxy's interface and kernel rules (the process was
        // killed).
        remove_service_path();
        // Dropping the cluster prints its log on failure and removes the dir.
        self.cluster.take();
    }
}

/// Removes what the Service data path leaves behind a killed skiff: the
/// `skiff-svc` interface and the `skiff-proxy` nftables table.
pub fn remove_service_path() {
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", "skiff-svc"])
        .output();
    let _ = std::process::Command::new("nft")
        .args(["delete", "table", "ip", "skiff-proxy"])
        .output();
}

/// The first container's status.
pub fn status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()
}

/// Packs a binary of this workspace (and its shared libraries) into an image
/// named `name` in `data_dir/images` with `skiff image build`, as a
/// developer's own service would be, for a node to import.
pub fn pack_binary_image(data_dir: &Path, binary: &str, name: &str) -> Result<()> {
    let out = std::process::Command::new(crate::skiff_bin())
        .args([
            "image",
            "build",
            "--binary",
            binary,
            "--name",
            name,
            "--data-dir",
        ])
        .arg(data_dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "skiff image build: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The status of condition `kind` (`"True"`, `"False"`, ...).
pub fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

pub fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && condition(pod, "Ready").as_deref() == Some("True")
}

pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

/// The response of a pod that serves on `ip:port`, tried for up to 15 s:
/// a container with no readiness probe is Ready as soon as it started,
/// which is not yet listening. A first attempt that fails is reported
/// (the test output shows it only for a failed test), and the final
/// error carries the host's routes, neighbours and bridges.
pub fn http_get_serving(ip: &str, port: u16) -> Result<String> {
    let started = std::time::Instant::now();
    let mut first_error = None;
    let result = wait_for(
        &format!("HTTP from {ip}:{port}"),
        Duration::from_secs(15),
        || match http_get(ip, port) {
            Ok(body) => Ok(Some(body)),
            Err(error) => {
                first_error.get_or_insert_with(|| error.to_string());
                Err(error)
            }
        },
    );
    if let Some(error) = &first_error {
        eprintln!(
            "{ip}:{port} first failed ({error}); answered after {:?}: {}",
            started.elapsed(),
            result.is_ok()
        );
    }
    result.map_err(|error| anyhow::anyhow!("{error:#}\n{}", network_state()))
}

/// The host's view of pod networking, for a failed connection.
fn network_state() -> String {
    [
        &["-br", "addr"][..],
        &["route"][..],
        &["neigh"][..],
        &["-d", "link", "show", "type", "bridge"][..],
    ]
    .iter()
    .map(|args| {
        let out = std::process::Command::new("ip").args(*args).output();
        match out {
            Ok(out) => format!(
                "$ ip {}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(error) => format!("$ ip {}: {error}\n", args.join(" ")),
        }
    })
    .collect()
}

/// `GET /index.html` over HTTP/1.0 to `ip:port`; the whole response.
pub fn http_get(ip: &str, port: u16) -> Result<String> {
    use std::io::{Read, Write};
    let address = format!("{ip}:{port}").parse()?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}
