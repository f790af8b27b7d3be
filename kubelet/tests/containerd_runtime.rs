//! Integration tests of the containerd runtime against the real components:
//! a private containerd in a temp dir, runc, and the CNI plugins. They run
//! as root and FAIL (not skip) when a component is missing, naming the
//! Debian package to install.
//!
//! Network use: only the pod IPs on the bridge `skiffit0` (10.244.77.0/24)
//! that these tests create; a Drop guard removes pods, namespaces, the
//! bridge and the CNI state even when an assertion fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubelet::cni::{CniConfig, CniNetwork, PodNetwork, SandboxRef};
use kubelet::containerd::pod_runtime::PodRuntime;
use kubelet::containerd::test_image::{build_busybox_image, ArchiveFormat};
use kubelet::containerd::{
    Connection, ContainerdRuntime, ContainerdRuntimeConfig, DaemonConfig, ImageStore,
    ManagedContainerd,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BRIDGE: &str = "skiffit0";
const POD_CIDR: &str = "10.244.77.0/24";
const NAMESPACE: &str = "skiff-it";
const IMAGE: &str = "skiff-busybox:test";

/// Fails with the Debian package to install when a component is missing.
fn require_components() {
    let required: &[(&[&str], &str)] = &[
        (&["/usr/bin/containerd"], "containerd"),
        (&["/usr/sbin/runc", "/usr/bin/runc"], "runc"),
        (
            &["/usr/lib/cni/bridge", "/opt/cni/bin/bridge"],
            "containernetworking-plugins",
        ),
        (
            &["/usr/lib/cni/host-local", "/opt/cni/bin/host-local"],
            "containernetworking-plugins",
        ),
        (
            &["/usr/lib/cni/loopback", "/opt/cni/bin/loopback"],
            "containernetworking-plugins",
        ),
        (&["/usr/sbin/ip", "/sbin/ip", "/bin/ip"], "iproute2"),
        (&["/bin/busybox", "/usr/bin/busybox"], "busybox-static"),
    ];
    for (paths, package) in required {
        assert!(
            paths.iter().any(|p| Path::new(p).exists()),
            "{paths:?} not found: install Debian's `{package}` package (apt-get install {package})"
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    assert!(
        euid == "0",
        "the containerd integration tests need root (namespaces, cgroups, bridges)"
    );
}

/// Removes everything the test created, even when it fails: every pod's
/// containers (via a fresh connection), CNI state, netns and the bridge.
struct Cleanup {
    socket: PathBuf,
    cni: CniConfig,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let socket = self.socket.clone();
        let cni = self.cni.clone();
        let worker = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let network = CniNetwork::new(cni);
                if let Ok(connection) = Connection::connect(&socket, NAMESPACE).await {
                    let found = kubelet::containerd::containers::list(&connection, None)
                        .await
                        .unwrap_or_default();
                    for record in found {
                        let _ = kubelet::containerd::containers::stop(
                            &connection,
                            &record.id,
                            Duration::from_millis(100),
                        )
                        .await;
                        let _ =
                            kubelet::containerd::containers::remove(&connection, &record.id).await;
                        if let Some(uid) = record.labels.get(kubelet::containerd::labels::POD_UID) {
                            let _ = network
                                .teardown(&SandboxRef {
                                    pod_uid: uid.clone(),
                                })
                                .await;
                        }
                    }
                }
                for uid in [WEB_UID, SLEEPER_UID, MISSING_UID] {
                    let _ = network
                        .teardown(&SandboxRef {
                            pod_uid: uid.to_string(),
                        })
                        .await;
                }
            });
        });
        let _ = worker.join();
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", BRIDGE])
            .output();
    }
}

const WEB_UID: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const SLEEPER_UID: &str = "11111111-aaaa-4bbb-8ccc-000000000002";
const MISSING_UID: &str = "11111111-aaaa-4bbb-8ccc-000000000003";

fn container(name: &str, image: &str, command: &[&str]) -> Container {
    Container {
        name: name.to_string(),
        image: Some(image.to_string()),
        image_pull_policy: Some("Never".to_string()),
        command: Some(command.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn with_limits(mut container: Container, memory: &str, cpu: &str) -> Container {
    let limits = BTreeMap::from([
        ("memory".to_string(), Quantity(memory.to_string())),
        ("cpu".to_string(), Quantity(cpu.to_string())),
    ]);
    container.resources = Some(ResourceRequirements {
        limits: Some(limits),
        ..Default::default()
    });
    container
}

fn pod(name: &str, uid: &str, containers: Vec<Container>) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.to_string());
    pod.metadata.namespace = Some("default".to_string());
    pod.metadata.uid = Some(uid.to_string());
    pod.spec = Some(PodSpec {
        containers,
        ..Default::default()
    });
    pod
}

fn waiting_reason(status: &k8s_openapi::api::core::v1::ContainerStatus) -> Option<String> {
    status.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

fn is_running(status: &k8s_openapi::api::core::v1::ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.running.is_some())
}

async fn http_get(ip: &str, port: u16, deadline: Duration) -> String {
    let until = Instant::now() + deadline;
    loop {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
            stream
                .write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
                .await?;
            let mut body = String::new();
            stream.read_to_string(&mut body).await?;
            Ok::<_, std::io::Error>(body)
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(body)) if !body.is_empty() => return body,
            _ if Instant::now() < until => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("no HTTP answer from {ip}:{port}: {other:?}"),
        }
    }
}

async fn wait_for_log(path: &Path, needle: &str, deadline: Duration) -> String {
    let until = Instant::now() + deadline;
    loop {
        let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < until,
            "log {} never contained {needle:?}; it holds {text:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn iptables_nat() -> String {
    std::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_on_containerd_answer_on_their_ip_and_leave_nothing_behind() {
    require_components();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let daemon = ManagedContainerd::start(DaemonConfig::new(data))
        .await
        .expect("private containerd starts");
    let cni = CniConfig::new(data, BRIDGE, POD_CIDR);
    let _cleanup = Cleanup {
        socket: daemon.socket().to_path_buf(),
        cni: cni.clone(),
    };
    let connection = Connection::connect(daemon.socket(), NAMESPACE)
        .await
        .expect("connect");

    // Images: one OCI layout and one docker-save archive in DATA/images.
    let images_dir = data.join("images");
    std::fs::create_dir_all(&images_dir).expect("mkdir images");
    let built = build_busybox_image(
        &images_dir.join("busybox.tar"),
        IMAGE,
        ArchiveFormat::OciLayout,
    )
    .expect("build OCI image");
    build_busybox_image(
        &images_dir.join("busybox-docker.tar"),
        "skiff-busybox-docker:test",
        ArchiveFormat::DockerSave,
    )
    .expect("build docker-save image");
    let store = Arc::new(ImageStore::new(connection.clone(), data.join("scratch")));
    let mut names = store.import_dir(&images_dir).await.expect("import");
    names.sort();
    assert_eq!(
        names,
        vec![
            "docker.io/library/skiff-busybox-docker:test".to_string(),
            "docker.io/library/skiff-busybox:test".to_string(),
        ]
    );

    let network: Arc<dyn PodNetwork> = Arc::new(CniNetwork::new(cni.clone()));
    let runtime = ContainerdRuntime::new(
        connection.clone(),
        store.clone(),
        network.clone(),
        ContainerdRuntimeConfig::new(data),
    )
    .await
    .expect("runtime");
    assert!(
        runtime.version().starts_with("containerd://1."),
        "{}",
        runtime.version()
    );

    let web = pod(
        "web",
        WEB_UID,
        vec![container(
            "httpd",
            IMAGE,
            &["httpd", "-f", "-p", "8080", "-h", "/www"],
        )],
    );
    let sleeper = pod(
        "sleeper",
        SLEEPER_UID,
        vec![
            with_limits(container("sleep", IMAGE, &["sleep", "3600"]), "64Mi", "500m"),
            with_limits(
                container(
                    "memcheck",
                    "skiff-busybox-docker:test",
                    &[
                        "sh",
                        "-c",
                        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; echo to-stderr >&2; exec sleep 3600",
                    ],
                ),
                "48Mi",
                "250m",
            ),
        ],
    );

    let started_at = Instant::now();
    let web_started = runtime.start_pod(&web).await.expect("start web");
    let web_latency = started_at.elapsed();
    let started_at = Instant::now();
    let sleeper_started = runtime.start_pod(&sleeper).await.expect("start sleeper");
    let sleeper_latency = started_at.elapsed();
    eprintln!("pod start latency: web (1 container) {web_latency:?}, sleeper (2 containers) {sleeper_latency:?}");

    for status in web_started
        .containers
        .iter()
        .chain(&sleeper_started.containers)
    {
        assert!(is_running(status), "{status:?}");
        assert!(
            status
                .container_id
                .as_deref()
                .is_some_and(|id| id.starts_with("containerd://")),
            "{status:?}"
        );
    }
    assert_eq!(web_started.containers[0].image_id, built.config_digest);

    // The pod IP is on skiff's bridge and serves HTTP.
    let web_ip = web_started.pod_ip.clone().expect("web pod IP");
    assert!(web_ip.starts_with("10.244.77."), "{web_ip}");
    let sleeper_ip = sleeper_started.pod_ip.clone().expect("sleeper pod IP");
    assert_ne!(web_ip, sleeper_ip);
    let response = http_get(&web_ip, 8080, Duration::from_secs(10)).await;
    assert!(response.contains("hello from skiff"), "{response}");

    // The memory limit is visible inside the container, through its CRI log.
    let log = runtime.log_path(&sleeper, "memcheck", 0);
    let text = wait_for_log(&log, "stdout F 50331648", Duration::from_secs(10)).await;
    wait_for_log(&log, "stderr F to-stderr", Duration::from_secs(5)).await;
    assert!(text.lines().all(|l| l.split(' ').count() >= 4), "{text}");

    // A restarted agent re-adopts running containers instead of duplicating them.
    let before = kubelet::containerd::containers::list(&connection, None)
        .await
        .expect("list");
    let second_agent = ContainerdRuntime::new(
        connection.clone(),
        store.clone(),
        network.clone(),
        ContainerdRuntimeConfig::new(data),
    )
    .await
    .expect("second runtime");
    let adopted = second_agent.start_pod(&sleeper).await.expect("re-adopt");
    assert_eq!(
        adopted
            .containers
            .iter()
            .map(|c| c.container_id.clone())
            .collect::<Vec<_>>(),
        sleeper_started
            .containers
            .iter()
            .map(|c| c.container_id.clone())
            .collect::<Vec<_>>(),
    );
    assert_eq!(adopted.pod_ip, sleeper_started.pod_ip);
    let after = kubelet::containerd::containers::list(&connection, None)
        .await
        .expect("list");
    assert_eq!(before.len(), after.len());
    let listed = second_agent.list_pods().await.expect("list pods");
    assert_eq!(listed.len(), 2);

    // A missing image with pull policy Never is reported, not fatal.
    let missing = pod(
        "missing",
        MISSING_UID,
        vec![container("c", "not-imported:1", &["true"])],
    );
    let missing_started = runtime.start_pod(&missing).await.expect("start missing");
    assert_eq!(
        waiting_reason(&missing_started.containers[0]).as_deref(),
        Some("ErrImageNeverPull")
    );

    // Exit events arrive when pods stop.
    let mut exits = runtime.exits();
    let stopped_at = Instant::now();
    let stopped = runtime
        .stop_pod(&sleeper, Duration::from_secs(1))
        .await
        .expect("stop sleeper");
    eprintln!(
        "stop of sleeper (SIGTERM ignored by PID 1, SIGKILL after 1s grace): {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(stopped.len(), 2);
    for status in &stopped {
        let terminated = status
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated");
        assert_eq!(terminated.exit_code, 137, "{status:?}");
    }
    let exit = tokio::time::timeout(Duration::from_secs(5), exits.recv())
        .await
        .expect("exit event")
        .expect("exit event");
    assert_eq!(exit.pod_uid, SLEEPER_UID);
    runtime
        .stop_pod(&web, Duration::from_secs(1))
        .await
        .expect("stop web");
    runtime
        .stop_pod(&missing, Duration::from_secs(1))
        .await
        .expect("stop missing");

    // Nothing leaks.
    let left = kubelet::containerd::containers::list(&connection, None)
        .await
        .expect("list");
    assert!(left.is_empty(), "containers left: {left:?}");
    for uid in [WEB_UID, SLEEPER_UID, MISSING_UID] {
        let netns = SandboxRef {
            pod_uid: uid.to_string(),
        }
        .netns_name();
        assert!(
            !Path::new("/run/netns").join(&netns).exists(),
            "netns {netns} left"
        );
        assert!(
            !iptables_nat().contains(uid),
            "iptables rules left for {uid}"
        );
        assert!(
            !data.join("pods").join(uid).exists(),
            "pod dir left for {uid}"
        );
    }
    let ipam = cni.ipam_data_dir.join(&cni.network_name);
    let allocated: Vec<String> = std::fs::read_dir(&ipam)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("10."))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        allocated.is_empty(),
        "pod IPs still allocated: {allocated:?}"
    );
    let snapshots = std::process::Command::new("ctr")
        .args(["--address"])
        .arg(daemon.socket())
        .args(["-n", NAMESPACE, "snapshots", "ls"])
        .output()
        .expect("ctr snapshots ls");
    let listing = String::from_utf8_lossy(&snapshots.stdout);
    assert!(
        listing
            .lines()
            .skip(1)
            .all(|line| line.contains("Committed")),
        "active snapshots left: {listing}"
    );
    let tasks = std::process::Command::new("ctr")
        .args(["--address"])
        .arg(daemon.socket())
        .args(["-n", NAMESPACE, "tasks", "ls", "-q"])
        .output()
        .expect("ctr tasks ls");
    assert!(
        String::from_utf8_lossy(&tasks.stdout).trim().is_empty(),
        "tasks left"
    );
    drop(_cleanup);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_killed_private_containerd_is_restarted_by_its_supervisor() {
    require_components();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = DaemonConfig::new(dir.path());
    config.restart_backoff = Duration::from_millis(100);
    let daemon = ManagedContainerd::start(config).await.expect("start");
    let first = daemon.pid();
    assert!(first > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill containerd");
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let pid = daemon.pid();
        if pid != first && pid > 0 {
            if let Ok(connection) = Connection::connect(daemon.socket(), NAMESPACE).await {
                if connection.version().await.is_ok() {
                    break;
                }
            }
        }
        assert!(Instant::now() < until, "containerd was not restarted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.shutdown().await;
}
