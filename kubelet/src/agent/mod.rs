//! The real node agent: one Node whose pods run as containers through
//! containerd (see [`crate::containerd`]) on a CNI bridge of its own.
//!
//! [`Agent::start`] checks the machine (root, containerd, runc, CNI
//! plugins), starts a private containerd under the node's data dir (or
//! connects to `containerd_address`), imports the image archives of
//! `images_dir`, sets up registry pulls ([`pulls`]: pull policy, pull
//! secrets, ImagePullBackOff), and registers the Node (real capacity, its own podCIDR)
//! and its Lease. [`Agent::run`] then heartbeats the Lease, refreshes the
//! node status, rescans the image folder, runs one worker per bound pod
//! (see [`pods`] and [`worker`]), and evicts pods when the node runs low on
//! memory ([`eviction`], `--eviction-hard`).
//!
//! Talks to the cluster only through the API (`kube`); never depends on
//! the `apiserver` crate.

pub mod backoff;
pub mod cleanup;
mod events;
pub mod eviction;
mod images;
pub mod node;
mod pod_api;
mod pods;
mod preflight;
pub mod probe;
mod pulls;
pub mod status;
mod tokens;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::Client;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cni::{CniConfig, CniNetwork, PodNetwork};
use crate::containerd::pod_runtime::PodRuntime;
use crate::containerd::registry::{RegistryClient, RegistryConfig};
use crate::containerd::{
    Connection, ContainerdRuntime, ContainerdRuntimeConfig, DaemonConfig, ImageStore,
    ManagedContainerd,
};
pub use backoff::BackoffConfig;
pub use eviction::{EvictionThresholds, ThresholdError};

/// Configuration of one real node.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name.
    pub node_name: String,
    /// The node's own state: containerd, CNI state, pod dirs, logs.
    pub data_dir: PathBuf,
    /// The cluster's image folder (`DATA_DIR/images`), imported at start
    /// and rescanned.
    pub images_dir: Option<PathBuf>,
    /// `spec.podCIDR`, the range of the node's bridge.
    pub pod_cidr: String,
    /// The node's Linux bridge (at most 15 characters).
    pub bridge: String,
    /// An existing containerd socket; `None` starts a private containerd
    /// under `data_dir/containerd`.
    pub containerd_address: Option<PathBuf>,
    /// The containerd namespace holding the node's containers and images.
    pub containerd_namespace: String,
    /// The node's InternalIP (and every pod's hostIP).
    pub host_ip: String,
    /// CPU kept from pods (`kube-reserved` + `system-reserved`), millicores.
    pub reserved_cpu_millis: u64,
    /// Memory kept from pods, bytes.
    pub reserved_memory_bytes: u64,
    /// `pods` capacity (Kubernetes: 110).
    pub max_pods: u32,
    /// The Lease's `leaseDurationSeconds` (Kubernetes: 40 s).
    pub lease_duration: Duration,
    /// How often the Lease is renewed (Kubernetes: 10 s).
    pub lease_renew_interval: Duration,
    /// How often the node status is written (Kubernetes reports every
    /// 5 min when nothing changed; we write every minute).
    pub node_status_update_frequency: Duration,
    /// How often `images_dir` is scanned for new archives.
    pub image_rescan_interval: Duration,
    /// CrashLoopBackOff timing.
    pub crash_loop_backoff: BackoffConfig,
    /// ImagePullBackOff timing (Kubernetes: 10 s doubling to 300 s).
    pub image_pull_backoff: BackoffConfig,
    /// Registries (`host:port`, or `host` for any port) pulled from over
    /// plain HTTP instead of HTTPS (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// The cluster DNS server written into `ClusterFirst` pods'
    /// resolv.conf (kubelet `--cluster-dns`); `None` gives them the host's.
    pub cluster_dns: Option<String>,
    /// The API's Service (`default/kubernetes`) as ClusterIP and port, for
    /// the `KUBERNETES_SERVICE_*` variables of every container.
    pub kubernetes_service: Option<(std::net::Ipv4Addr, u16)>,
    /// The cluster domain (kubelet `--cluster-domain`, `cluster.local`).
    pub cluster_domain: String,
    /// Port of the agent's HTTPS API on `host_ip` (0 = ephemeral); after
    /// start, the actual port, reported in `daemonEndpoints`.
    pub server_port: u16,
    /// The cluster CA (DER) that client certificates of the agent's API
    /// must chain to; `None` leaves the API off (port 0 is reported).
    pub client_ca: Option<Vec<Vec<u8>>>,
    /// Per-pod request counters of the service proxy, served as rates.
    pub request_counters: Option<Arc<dyn crate::stats::RequestCounters>>,
    /// Hard eviction thresholds (kubelet `--eviction-hard`; Kubernetes'
    /// defaults when unset).
    pub eviction_hard: EvictionThresholds,
    /// How often the signals are compared with the thresholds (Kubernetes:
    /// 10 s).
    pub eviction_monitoring_interval: Duration,
}

impl AgentConfig {
    /// Defaults for node `node_name` number `index`: pod CIDR
    /// `10.244.<index % 256>.0/24`, bridge `skiff<index % 256>`, containerd
    /// namespace `skiff-<node_name>`, a private containerd.
    pub fn new(node_name: &str, data_dir: &Path, index: u32) -> Self {
        let n = index % 256;
        Self {
            node_name: node_name.to_string(),
            data_dir: data_dir.to_path_buf(),
            images_dir: None,
            pod_cidr: format!("10.244.{n}.0/24"),
            bridge: format!("skiff{n}"),
            containerd_address: None,
            containerd_namespace: format!("skiff-{node_name}"),
            host_ip: "127.0.0.1".to_string(),
            reserved_cpu_millis: 100,
            reserved_memory_bytes: 256 * 1024 * 1024,
            max_pods: 110,
            lease_duration: Duration::from_secs(40),
            lease_renew_interval: Duration::from_secs(10),
            node_status_update_frequency: Duration::from_secs(60),
            image_rescan_interval: Duration::from_secs(2),
            crash_loop_backoff: BackoffConfig::default(),
            image_pull_backoff: BackoffConfig::default(),
            insecure_registries: Vec::new(),
            cluster_dns: None,
            kubernetes_service: None,
            cluster_domain: "cluster.local".to_string(),
            server_port: 0,
            client_ca: None,
            request_counters: None,
            eviction_hard: EvictionThresholds::default(),
            eviction_monitoring_interval: eviction::MONITORING_INTERVAL,
        }
    }

    /// A stable index from a node's name (FNV-1a, as the simulated nodes
    /// do), for agents that join one at a time.
    pub fn index_for_name(name: &str) -> u32 {
        name.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
    }
}

/// Why a real node cannot start. Each message is one line with the fix.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Not running as root.
    #[error("the containerd runtime needs root: run as root or use --runtime sim")]
    NotRoot,
    /// A required program is not installed.
    #[error("{what} not found (looked in {paths:?}): install Debian's `{package}` package (apt-get install {package}) or use --runtime sim")]
    Missing {
        /// What is missing.
        what: &'static str,
        /// Where we looked.
        paths: Vec<PathBuf>,
        /// The Debian package providing it.
        package: &'static str,
    },
    /// `--containerd-address` names no socket.
    #[error("no containerd socket at {0}: start containerd or drop --containerd-address to let skiff run its own")]
    NoSocket(PathBuf),
    /// The node's data dir cannot be created.
    #[error("cannot create the node data dir {path}: {source}")]
    DataDir {
        /// The dir.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The private containerd did not start.
    #[error(transparent)]
    Containerd(#[from] crate::containerd::daemon::DaemonError),
    /// containerd did not answer.
    #[error("cannot reach containerd: {0}")]
    Rpc(#[from] crate::containerd::RpcError),
    /// The runtime could not be set up.
    #[error(transparent)]
    Runtime(#[from] crate::containerd::runtime::ContainerdRuntimeError),
    /// The registry client could not be set up.
    #[error("cannot set up the registry client: {0}")]
    Registry(#[from] crate::containerd::registry::RegistryError),
    /// The agent's HTTPS API could not start.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// The Node or its Lease could not be registered.
    #[error("cannot register node {node}: {source}")]
    Register {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// A registered node, ready to [`run`](Agent::run).
pub struct Agent {
    client: Client,
    config: AgentConfig,
    runtime: Arc<ContainerdRuntime>,
    images: Option<images::ImageDir>,
    server: Option<crate::server::Server>,
    // Dropped with the agent: containerd gets SIGTERM; containers keep
    // running (their shims outlive it) and are re-adopted next start.
    _containerd: Option<ManagedContainerd>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.config.node_name)
            .finish()
    }
}

impl Agent {
    /// Checks the machine, starts containerd, imports images and registers
    /// the Node and its Lease.
    pub async fn start(client: Client, mut config: AgentConfig) -> Result<Self, AgentError> {
        let daemon = DaemonConfig::new(&config.data_dir);
        let managed_binary = config
            .containerd_address
            .is_none()
            .then_some(daemon.binary.as_path());
        preflight::check(&config, managed_binary)?;
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .map_err(|source| AgentError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        if let Err(error) = cleanup::write_state(&config) {
            tracing::warn!(%error, "cannot write the node state file; `skiff down` will not find this node");
        }
        let (socket, containerd) = match &config.containerd_address {
            Some(socket) => (socket.clone(), None),
            None => {
                let managed = ManagedContainerd::start(daemon).await?;
                (managed.socket().to_path_buf(), Some(managed))
            }
        };
        let connection = Connection::connect(&socket, &config.containerd_namespace).await?;
        let stdin = crate::containerd::stdin::StdinPipes::default();
        let exec = crate::containerd::exec::ContainerdExec::new(
            connection.clone(),
            config.data_dir.join("exec"),
        )
        .with_stdin(stdin.clone());
        let store = Arc::new(ImageStore::new(
            connection.clone(),
            config.data_dir.join("scratch"),
        ));
        let mut images = config
            .images_dir
            .clone()
            .map(|dir| images::ImageDir::new(dir, store.clone()));
        if let Some(images) = images.as_mut() {
            images.scan().await;
        }
        let cni = CniConfig::new(&config.data_dir, &config.bridge, &config.pod_cidr);
        let network: Arc<dyn PodNetwork> = Arc::new(CniNetwork::new(cni));
        let registry = RegistryClient::new(RegistryConfig {
            insecure: config.insecure_registries.clone(),
        })?;
        let puller = pulls::ImagePuller::new(
            store.clone(),
            registry,
            client.clone(),
            &config.node_name,
            config.image_pull_backoff,
        );
        let machine = node::Machine::measure(&config.data_dir);
        let allocatable = (
            machine
                .cpus
                .saturating_mul(1000)
                .saturating_sub(config.reserved_cpu_millis) as f64
                / 1000.0,
            machine
                .memory_total
                .saturating_sub(config.reserved_memory_bytes) as f64,
        );
        let runtime = Arc::new(
            ContainerdRuntime::new(
                connection,
                store,
                network,
                ContainerdRuntimeConfig {
                    cluster_dns: config.cluster_dns.clone(),
                    kubernetes_service: config.kubernetes_service,
                    cluster_domain: config.cluster_domain.clone(),
                    api: Some(Arc::new(pod_api::ClientPodApi::new(
                        client.clone(),
                        &config.node_name,
                    ))),
                    node_ip: Some(config.host_ip.clone()),
                    allocatable,
                    ..ContainerdRuntimeConfig::new(&config.data_dir)
                },
            )
            .await?
            .with_image_manager(Arc::new(puller))
            .with_stdin(stdin),
        );
        let server = start_server(&mut config)
            .await?
            .map(|server| server.with_exec(Arc::new(exec)));
        let register = |source| AgentError::Register {
            node: config.node_name.clone(),
            source,
        };
        node::register(&client, &config, runtime.version())
            .await
            .map_err(register)?;
        crate::sim::lease::ensure_lease(&client, config.lease_duration, &config.node_name)
            .await
            .map_err(register)?;
        tracing::info!(node = %config.node_name, pod_cidr = %config.pod_cidr, "node registered");
        Ok(Self {
            client,
            config,
            runtime,
            images,
            server,
            _containerd: containerd,
        })
    }

    /// The node's configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Heartbeats, node status, image rescans and pod workers, until the
    /// task is dropped.
    pub async fn run(self) {
        let Self {
            client,
            config,
            runtime,
            images,
            server,
            _containerd,
        } = self;
        let version = runtime.version().to_string();
        let rescans = async {
            match images {
                Some(images) => images.rescan_forever(config.image_rescan_interval).await,
                None => std::future::pending().await,
            }
        };
        let (pressure, pressure_rx) = watch::channel(eviction::NodePressure::default());
        let context = Arc::new(worker::NodeContext {
            name: config.node_name.clone(),
            host_ip: config.host_ip.clone(),
            backoff: config.crash_loop_backoff,
            pressure: pressure_rx.clone(),
        });
        let (sampler, stats, source) = stats_sampler(&config, runtime.clone());
        let (commands, commands_rx) = mpsc::channel(8);
        let evictions = eviction::EvictionManager::new(
            config.eviction_hard.clone(),
            config.eviction_monitoring_interval,
            AgentEvictionHost {
                config: config.clone(),
                commands,
                node_events: events::PodEvents::for_node(client.clone(), &config.node_name),
            },
            stats.clone(),
            pressure,
        );
        let stats_for_server = stats;
        let serve = async {
            match server {
                Some(server) => {
                    tokio::join!(sampler.run(), server.serve(stats_for_server, source));
                }
                None => sampler.run().await,
            }
        };
        tokio::select! {
            () = renew_lease_forever(client.clone(), config.clone()) => {}
            () = node::update_forever(client.clone(), config.clone(), version, pressure_rx) => {}
            () = rescans => {}
            () = serve => {}
            () = evictions.run() => {}
            () = pods::PodManager::new(client, context, runtime, commands_rx).run() => {}
        }
    }
}

/// Starts a node and runs it until the task is dropped.
pub async fn run(client: Client, config: AgentConfig) -> Result<(), AgentError> {
    Agent::start(client, config).await?.run().await;
    Ok(())
}

/// Binds the agent's HTTPS API (when a client CA is configured) and
/// records its actual port in `config.server_port`.
async fn start_server(
    config: &mut AgentConfig,
) -> Result<Option<crate::server::Server>, AgentError> {
    let Some(client_ca) = config.client_ca.clone() else {
        tracing::warn!(node = %config.node_name, "no client CA: the agent's API (logs, stats) is off");
        config.server_port = 0;
        return Ok(None);
    };
    let ip: std::net::IpAddr = config
        .host_ip
        .parse()
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let server = crate::server::Server::bind(crate::server::ServerConfig {
        bind: std::net::SocketAddr::new(ip, config.server_port),
        names: vec![config.host_ip.clone(), config.node_name.clone()],
        client_ca,
        logs_root: config.data_dir.join("logs").join("pods"),
    })
    .await?;
    config.server_port = server.local_addr().port();
    Ok(Some(server))
}

/// The stats sampler (every second, from cgroups) of the node's
/// containers; its handle feeds the agent's API and the eviction manager.
fn stats_sampler(
    config: &AgentConfig,
    runtime: Arc<ContainerdRuntime>,
) -> (
    crate::stats::Sampler,
    crate::stats::StatsHandle,
    Arc<dyn crate::stats::ContainerSource>,
) {
    let runtime_config = ContainerdRuntimeConfig::new(&config.data_dir);
    let source: Arc<dyn crate::stats::ContainerSource> = Arc::new(
        crate::stats::RuntimeSource::new(runtime, &runtime_config.cgroup_parent),
    );
    let stats_config = crate::stats::StatsConfig {
        node_name: config.node_name.clone(),
        interval: Duration::from_secs(1),
        cgroups: crate::stats::cgroup::CgroupReader::new(
            Path::new("/sys/fs/cgroup"),
            runtime_config.cgroup_version,
        ),
    };
    let (sampler, handle) = crate::stats::Sampler::new(
        stats_config,
        source.clone(),
        config.request_counters.clone(),
    );
    (sampler, handle, source)
}

/// The real node as the eviction manager sees it: the machine's signals,
/// and the pods through the pod manager.
struct AgentEvictionHost {
    config: AgentConfig,
    commands: mpsc::Sender<pods::PodCommand>,
    node_events: events::PodEvents,
}

/// How long an eviction may take (the kubelet waits 30 s for a pod's
/// cleanup).
const EVICTION_TIMEOUT: Duration = Duration::from_secs(30);

#[async_trait]
impl eviction::EvictionHost for AgentEvictionHost {
    async fn observe(&self) -> eviction::Observations {
        node::measure(&self.config).await.observations()
    }

    async fn active_pods(&self) -> Vec<Pod> {
        let (reply, pods) = oneshot::channel();
        if self
            .commands
            .send(pods::PodCommand::Active(reply))
            .await
            .is_err()
        {
            return Vec::new();
        }
        pods.await.unwrap_or_default()
    }

    async fn evict(&self, pod: &Pod, message: String) -> bool {
        let (done, evicted) = oneshot::channel();
        let command = pods::PodCommand::Evict {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            message,
            done,
        };
        if self.commands.send(command).await.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(EVICTION_TIMEOUT, evicted).await,
            Ok(Ok(true))
        )
    }

    fn threshold_met(&self, resource: &str) {
        self.node_events.publish(
            "",
            events::EventType::Warning,
            "EvictionThresholdMet",
            format!("Attempting to reclaim {resource}"),
        );
    }
}

/// Renews the node's Lease every `lease_renew_interval` (recreating it if
/// someone deleted it); failures are logged and retried next round.
async fn renew_lease_forever(client: Client, config: AgentConfig) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), crate::sim::lease::NAMESPACE);
    let mut interval = tokio::time::interval(config.lease_renew_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let node = &config.node_name;
        let result =
            match crate::sim::lease::renew_lease(&leases, node, config.lease_duration).await {
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    crate::sim::lease::ensure_lease(&client, config.lease_duration, node).await
                }
                other => other,
            };
        if let Err(error) = result {
            tracing::warn!(node = %node, %error, "cannot renew the node lease");
        }
    }
}
