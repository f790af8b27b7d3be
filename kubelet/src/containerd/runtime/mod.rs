//! [`ContainerdRuntime`]: whole pods on containerd.
//!
//! Starting a pod: network sandbox (netns + CNI, giving the pod IP) →
//! `/etc/hosts` and `/etc/resolv.conf` for the pod (see [`dns`]) → volumes
//! (see [`super::volumes`]) → for each container: env and volume mounts →
//! image from the [`ImageManager`] (pulled per `imagePullPolicy`) → spec →
//! container + snapshot →
//! task with CRI log FIFOs → start. Every containerd object carries the pod
//! UID and container name as labels, so `start_pod` after an agent restart
//! re-adopts running containers instead of starting duplicates.
//!
//! Stopping a pod: SIGTERM, SIGKILL after the grace period, delete task,
//! container and snapshot, CNI DEL, delete the netns, unmount tmpfs volumes
//! and remove the pod's runtime dir (emptyDir volumes with it). Logs stay
//! until the pod's logs are removed.
//!
//! A container killed by its memory limit is reported `OOMKilled`: its
//! cgroup's `oom_kill` counter is read before the instance is removed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1::Container as ContainerdContainer;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::{info, info_span, Instrument};

use super::connection::{Connection, RpcError};
use super::containers::{self, ContainerError, CreateContainer, TaskState};
use super::images::{ImageError, ImageManager, ImageStore, LocalImages, ResolvedImage};
use super::labels;
use super::logs::FifoPair;
use super::pod_runtime::{
    ContainerExit, ExecOutcome, PodRuntime, RuntimeContainer, RuntimePod, StartedSandboxPod,
};
use super::spec::{CgroupVersion, SpecBuilder};
use super::status::{
    mark_oom_killed, oom_kill_count, restart_count, status_from, waiting, LastExit, OOM_KILLED,
};
use super::stdin::StdinPipes;
use super::volumes::{self, NodeFacts, PodApi, PreparedVolumes};
use crate::cni::{short_uid, CniError, PodNetwork, PodNetworkStatus, SandboxRef};

pub mod dns;
mod init;
mod instances;

const POD_LEASE_EXPIRY: Duration = Duration::from_secs(600);
const EXIT_EVENTS_CAPACITY: usize = 256;

/// Errors running pods on containerd.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdRuntimeError {
    /// The pod has no UID (it was never stored by the API server).
    #[error("pod {0} has no metadata.uid")]
    MissingUid(String),
    /// The pod has no spec.
    #[error("pod {0} has no spec")]
    MissingSpec(String),
    /// The pod spec has no container of that name.
    #[error("pod {pod} has no container {container}")]
    UnknownContainer {
        /// The pod's name.
        pod: String,
        /// The container's name.
        container: String,
    },
    /// The container has no running instance (exec needs one).
    #[error("container {container} of pod {pod} is not running")]
    NotRunning {
        /// The pod's name.
        pod: String,
        /// The container's name.
        container: String,
    },
    /// The pod network could not be set up or torn down.
    #[error(transparent)]
    Network(#[from] CniError),
    /// A container operation failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// An image could not be resolved.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A containerd call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The pod's runtime dir could not be written.
    #[error("pod dir {path}: {source}")]
    PodDir {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Configuration of the containerd runtime of one node.
#[derive(Debug, Clone)]
pub struct ContainerdRuntimeConfig {
    /// The node's data dir (pods/, logs/ live under it).
    pub data_dir: PathBuf,
    /// The cgroup parent of all pods (cgroupfs driver).
    pub cgroup_parent: String,
    /// The machine's cgroup hierarchy.
    pub cgroup_version: CgroupVersion,
    /// The host's resolv.conf (kubelet `--resolv-conf`), the base of
    /// `dnsPolicy: Default` and of `ClusterFirst`'s extra searches.
    pub resolv_conf: PathBuf,
    /// The cluster DNS server (kubelet `--cluster-dns`); `None` makes
    /// `ClusterFirst` pods use the host's resolv.conf.
    pub cluster_dns: Option<String>,
    /// The cluster domain (kubelet `--cluster-domain`).
    pub cluster_domain: String,
    /// The API's Service (`default/kubernetes`) as ClusterIP and port:
    /// every container gets its `KUBERNETES_SERVICE_*` variables.
    pub kubernetes_service: Option<(std::net::Ipv4Addr, u16)>,
    /// Reads ConfigMaps and Secrets (volumes, env) and records events;
    /// `None` makes pods that need them wait `CreateContainerConfigError`.
    pub api: Option<Arc<dyn PodApi>>,
    /// The node's IP, for the downward API's `status.hostIP`.
    pub node_ip: Option<String>,
    /// The node's allocatable CPU (cores) and memory (bytes): what the
    /// downward API reports as the limit of a container without one.
    pub allocatable: (f64, f64),
}

impl ContainerdRuntimeConfig {
    /// Defaults for a node whose data dir is `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            cgroup_parent: "/skiff".to_string(),
            cgroup_version: CgroupVersion::detect(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            cluster_dns: None,
            cluster_domain: "cluster.local".to_string(),
            kubernetes_service: None,
            api: None,
            node_ip: None,
            allocatable: machine_capacity(),
        }
    }
}

/// The machine's CPUs and memory (`MemTotal`), the default allocatable.
fn machine_capacity() -> (f64, f64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib * 1024.0);
    (cpus, memory)
}

/// Runs pods as containerd containers in one containerd namespace.
pub struct ContainerdRuntime {
    connection: Connection,
    images: Arc<ImageStore>,
    image_manager: Arc<dyn ImageManager>,
    network: Arc<dyn PodNetwork>,
    config: ContainerdRuntimeConfig,
    version: String,
    exits: broadcast::Sender<ContainerExit>,
    copiers: Mutex<HashMap<String, JoinHandle<()>>>,
    /// The stdin of containers started with `stdin: true`.
    stdin: StdinPipes,
    /// Pods whose volume warnings were already recorded as events.
    warned: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for ContainerdRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerdRuntime")
            .field("namespace", &self.connection.namespace())
            .field("version", &self.version)
            .finish()
    }
}

/// A pod's sandbox, set up: what each of its containers joins.
struct Sandbox {
    pod: Pod,
    network: PodNetworkStatus,
    etc: (PathBuf, PathBuf),
    lease: super::connection::Lease,
    /// The pod's volumes, or why they cannot be set up (every container
    /// then waits `CreateContainerConfigError` with this message).
    volumes: Result<PreparedVolumes, String>,
}

/// Identity of a pod, taken from its metadata.
struct PodRef<'a> {
    pod: &'a Pod,
    uid: &'a str,
    name: &'a str,
    namespace: &'a str,
}

fn pod_ref(pod: &Pod) -> Result<PodRef<'_>, ContainerdRuntimeError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod
        .metadata
        .uid
        .as_deref()
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| ContainerdRuntimeError::MissingUid(name.to_string()))?;
    Ok(PodRef {
        pod,
        uid,
        name,
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
    })
}

/// The containerd ID of a container instance: `<hash16>-<name>-<restarts>`
/// (containerd IDs are limited to 76 characters; see [`short_uid`]).
pub fn container_id(pod_uid: &str, name: &str, restart_count: i32) -> String {
    let name: String = name.chars().take(50).collect();
    format!("{}-{name}-{restart_count}", short_uid(pod_uid))
}

impl ContainerdRuntime {
    /// A runtime over `connection`, with its image store and pod network.
    pub async fn new(
        connection: Connection,
        images: Arc<ImageStore>,
        network: Arc<dyn PodNetwork>,
        config: ContainerdRuntimeConfig,
    ) -> Result<Self, ContainerdRuntimeError> {
        let version = format!("containerd://{}", connection.version().await?);
        let (exits, _) = broadcast::channel(EXIT_EVENTS_CAPACITY);
        Ok(Self {
            connection,
            image_manager: Arc::new(LocalImages::new(images.clone())),
            images,
            network,
            config,
            version,
            exits,
            copiers: Mutex::new(HashMap::new()),
            stdin: StdinPipes::default(),
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// Keeps containers' stdin in `pipes`, shared with the attach server.
    pub fn with_stdin(mut self, pipes: StdinPipes) -> Self {
        self.stdin = pipes;
        self
    }

    /// Hands image decisions (pull policy, registry pulls) to `manager`
    /// instead of using local images only.
    pub fn with_image_manager(mut self, manager: Arc<dyn ImageManager>) -> Self {
        self.image_manager = manager;
        self
    }

    /// The image store.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.data_dir.join("pods").join(uid)
    }

    fn log_file(&self, pod: &PodRef<'_>, container: &str, restart_count: i32) -> PathBuf {
        self.config
            .data_dir
            .join("logs")
            .join("pods")
            .join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid))
            .join(container)
            .join(format!("{restart_count}.log"))
    }

    async fn write_pod_files(
        &self,
        spec_pod: &Pod,
        pod: &PodRef<'_>,
        network: &PodNetworkStatus,
    ) -> Result<(PathBuf, PathBuf), ContainerdRuntimeError> {
        let dir = self.pod_dir(pod.uid).join("etc");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ContainerdRuntimeError::PodDir { path, source }
        };
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let hosts = dir.join("hosts");
        let content = format!(
            "# Kubernetes-managed hosts file (skiff).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
            network.ip, pod.name
        );
        tokio::fs::write(&hosts, content)
            .await
            .map_err(io(&hosts))?;
        let resolv = dir.join("resolv.conf");
        let host = tokio::fs::read_to_string(&self.config.resolv_conf)
            .await
            .unwrap_or_default();
        let cluster = dns::ClusterDns {
            server: self.config.cluster_dns.clone(),
            domain: self.config.cluster_domain.clone(),
        };
        let content =
            dns::pod_resolv_conf(spec_pod, &dns::ResolvConf::parse(&host), &cluster).render();
        tokio::fs::write(&resolv, content)
            .await
            .map_err(io(&resolv))?;
        Ok((hosts, resolv))
    }

    async fn ensure_image(
        &self,
        pod: &PodRef<'_>,
        container: &Container,
    ) -> Result<Arc<ResolvedImage>, ContainerStatus> {
        self.image_manager
            .ensure_image(pod.pod, container)
            .await
            .map_err(|not_ready| waiting(container, not_ready.reason, not_ready.message))
    }

    /// What the downward API reads from the node for this pod.
    fn node_facts(&self, pod_ip: Option<String>) -> NodeFacts {
        NodeFacts {
            pod_ip,
            host_ip: self.config.node_ip.clone(),
            allocatable_cpu: self.config.allocatable.0,
            allocatable_memory: self.config.allocatable.1,
            service_env: self
                .config
                .kubernetes_service
                .map(|(ip, port)| volumes::env::kubernetes_service_env(ip, port))
                .unwrap_or_default(),
        }
    }

    /// Sets up the pod's volumes (idempotent: API data is re-projected).
    /// Skipped sources are recorded once per pod as a Warning event.
    async fn prepare_volumes(
        &self,
        pod: &Pod,
        pod_ref: &PodRef<'_>,
        network: &PodNetworkStatus,
    ) -> Result<PreparedVolumes, String> {
        let facts = self.node_facts(Some(network.ip.to_string()));
        let pod_dir = self.pod_dir(pod_ref.uid);
        match volumes::setup(pod, &pod_dir, self.config.api.as_deref(), &facts).await {
            Ok((prepared, warnings)) => {
                let first = !warnings.is_empty()
                    && self
                        .warned
                        .lock()
                        .map(|mut warned| warned.insert(pod_ref.uid.to_string()))
                        .unwrap_or(false);
                for warning in warnings.into_iter().filter(|_| first) {
                    tracing::warn!(warning = %warning, "volume source skipped");
                    if let Some(api) = &self.config.api {
                        api.warn(pod, "FailedMount", warning);
                    }
                }
                Ok(prepared)
            }
            Err(error) => {
                info!(%error, "pod volumes not ready");
                Err(error.to_string())
            }
        }
    }

    /// Whether the cgroup of container instance `id` saw an OOM kill.
    fn oom_killed(&self, pod_uid: &str, id: &str) -> bool {
        let relative = format!(
            "{}/pod{pod_uid}/{id}",
            self.config.cgroup_parent.trim_matches('/')
        );
        let path = match self.config.cgroup_version {
            CgroupVersion::V2 => Path::new("/sys/fs/cgroup")
                .join(relative)
                .join("memory.events"),
            CgroupVersion::V1 => Path::new("/sys/fs/cgroup/memory")
                .join(relative)
                .join("memory.oom_control"),
        };
        std::fs::read_to_string(path).is_ok_and(|events| oom_kill_count(&events) > 0)
    }

    /// `status_from`, with `OOMKilled` for an instance its memory limit
    /// killed.
    fn status_of(
        &self,
        pod_uid: &str,
        container: &Container,
        record: &ContainerdContainer,
        state: TaskState,
    ) -> ContainerStatus {
        let exited = matches!(state, TaskState::Exited { .. });
        let mut status = status_from(container, record, state);
        if exited && self.oom_killed(pod_uid, &record.id) {
            mark_oom_killed(&mut status);
        }
        status
    }

    /// The termination reason to remember for an exited instance.
    fn exit_reason_of(&self, pod_uid: &str, id: &str) -> Option<String> {
        self.oom_killed(pod_uid, id).then(|| OOM_KILLED.to_string())
    }

    async fn start_container(
        &self,
        pod: &PodRef<'_>,
        container: &Container,
        sandbox: &Sandbox,
        restart_count: i32,
        last: Option<&LastExit>,
    ) -> Result<ContainerStatus, ContainerdRuntimeError> {
        let (network, etc, lease) = (&sandbox.network, &sandbox.etc, &sandbox.lease);
        let not_created = |mut status: ContainerStatus| {
            status.restart_count = restart_count;
            status.last_state = last.map(LastExit::to_state);
            Ok(status)
        };
        let config_error = |message: String| {
            not_created(waiting(container, "CreateContainerConfigError", message))
        };
        let mounts = match &sandbox.volumes {
            Ok(prepared) => match volumes::container_mounts(container, prepared) {
                Ok(mounts) => mounts,
                Err(error) => return config_error(error.to_string()),
            },
            Err(message) => return config_error(message.clone()),
        };
        let facts = self.node_facts(Some(network.ip.to_string()));
        let env = match volumes::env::resolve(
            &sandbox.pod,
            container,
            self.config.api.as_deref(),
            &facts,
        )
        .await
        {
            Ok(env) => env,
            Err(error) => return config_error(error.to_string()),
        };
        let image = match self.ensure_image(pod, container).await {
            Ok(image) => image,
            Err(status) => return not_created(status),
        };
        let id = container_id(pod.uid, &container.name, restart_count);
        let cgroups_path = format!(
            "{}/pod{}/{}",
            self.config.cgroup_parent.trim_end_matches('/'),
            pod.uid,
            id
        );
        let spec = match SpecBuilder::new(container, &image.config)
            .hostname(pod.name)
            .network_namespace(&network.netns_path)
            .etc_files(&etc.0, &etc.1)
            .cgroups_path(&cgroups_path)
            .cgroup_version(self.config.cgroup_version)
            .extra_env(env)
            .volume_mounts(mounts)
            .build()
        {
            Ok(spec) => spec,
            Err(error) => return config_error(error.to_string()),
        };
        let mut container_labels = HashMap::from([
            (labels::POD_UID.to_string(), pod.uid.to_string()),
            (labels::POD_NAME.to_string(), pod.name.to_string()),
            (labels::POD_NAMESPACE.to_string(), pod.namespace.to_string()),
            (labels::CONTAINER_NAME.to_string(), container.name.clone()),
            (
                labels::IMAGE.to_string(),
                container.image.clone().unwrap_or_default(),
            ),
            (labels::IMAGE_ID.to_string(), image.config_digest.clone()),
            (labels::RESTART_COUNT.to_string(), restart_count.to_string()),
        ]);
        container_labels.extend(last.map(LastExit::labels).unwrap_or_default());
        let request = CreateContainer {
            id: id.clone(),
            spec,
            image: image.name.clone(),
            chain_id: image.chain_id.clone(),
            labels: container_labels,
        };
        containers::create(&self.connection, lease, &request).await?;
        let io_dir = self.pod_dir(pod.uid).join("io");
        let started = async {
            let mut fifos = FifoPair::open(&io_dir, &id, true)
                .await
                .map_err(ContainerError::from)?;
            let stdin = match container.stdin {
                Some(true) => Some(
                    self.stdin
                        .create(&io_dir, &id, container.stdin_once.unwrap_or(false))
                        .map_err(ContainerError::from)?,
                ),
                _ => None,
            };
            let pid =
                containers::start(&self.connection, &id, &mut fifos, stdin.as_deref()).await?;
            Ok::<_, ContainerError>((pid, fifos))
        }
        .await;
        let (pid, fifos) = match started {
            Ok(started) => started,
            Err(error) => {
                self.stdin.remove(&id);
                let _ = containers::remove(&self.connection, &id).await;
                return Ok(waiting(container, "RunContainerError", error.to_string()));
            }
        };
        let copier = fifos.spawn_copier(self.log_file(pod, &container.name, restart_count));
        self.track(&id, copier);
        self.watch_exit(pod.uid, &container.name, &id);
        info!(container = %container.name, id = %id, pid, "container started");
        let record = ContainerdContainer {
            id: id.clone(),
            labels: request.labels,
            created_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            ..Default::default()
        };
        Ok(status_from(container, &record, TaskState::Running { pid }))
    }

    /// The latest instance of each container of the pod.
    async fn pod_containers(
        &self,
        uid: &str,
    ) -> Result<HashMap<String, ContainerdContainer>, ContainerdRuntimeError> {
        let found = containers::list(&self.connection, Some((labels::POD_UID, uid))).await?;
        let mut latest: HashMap<String, ContainerdContainer> = HashMap::new();
        for record in found {
            let Some(name) = record.labels.get(labels::CONTAINER_NAME).cloned() else {
                continue;
            };
            let newer = latest
                .get(&name)
                .is_none_or(|seen| restart_count(seen) < restart_count(&record));
            if newer {
                latest.insert(name, record);
            }
        }
        Ok(latest)
    }

    async fn start_pod_inner(
        &self,
        pod: &Pod,
    ) -> Result<StartedSandboxPod, ContainerdRuntimeError> {
        let pod_ref = pod_ref(pod)?;
        let spec = pod
            .spec
            .as_ref()
            .ok_or_else(|| ContainerdRuntimeError::MissingSpec(pod_ref.name.to_string()))?;
        let existing = self.pod_containers(pod_ref.uid).await?;
        let sandbox = SandboxRef {
            pod_uid: pod_ref.uid.to_string(),
        };
        let network = self.network.setup(&sandbox).await?;
        let etc = self.write_pod_files(pod, &pod_ref, &network).await?;
        let volumes = self.prepare_volumes(pod, &pod_ref, &network).await;
        let lease = self
            .connection
            .create_lease("pod", POD_LEASE_EXPIRY)
            .await?;
        let sandbox = Sandbox {
            pod: pod.clone(),
            network,
            etc,
            lease,
            volumes,
        };
        let mut failure = None;
        let (init_containers, initialized) = match self
            .start_init_containers(&pod_ref, spec, &existing, &sandbox)
            .await
        {
            Ok(init) => init,
            Err(error) => {
                failure = Some(error);
                (Vec::new(), false)
            }
        };
        let mut statuses = Vec::with_capacity(spec.containers.len());
        let app_containers = if initialized && failure.is_none() {
            spec.containers.as_slice()
        } else {
            statuses.extend(
                spec.containers
                    .iter()
                    .map(|c| waiting(c, "PodInitializing", String::new())),
            );
            &[]
        };
        for container in app_containers {
            if let Some(record) = existing.get(&container.name) {
                match containers::state(&self.connection, &record.id).await {
                    Ok(state) => {
                        if matches!(state, TaskState::Running { .. }) {
                            self.adopt(&pod_ref, container, record).await;
                        }
                        statuses.push(self.status_of(pod_ref.uid, container, record, state));
                    }
                    Err(error) => {
                        failure = Some(error.into());
                        break;
                    }
                }
                continue;
            }
            match self
                .start_container(&pod_ref, container, &sandbox, 0, None)
                .await
            {
                Ok(status) => statuses.push(status),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let pod_ip = sandbox.network.ip.to_string();
        self.connection.delete_lease(sandbox.lease).await?;
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(StartedSandboxPod {
            pod_ip: Some(pod_ip),
            containers: statuses,
            init_containers,
        })
    }

    async fn stop_pod_inner(
        &self,
        pod: &Pod,
        grace: Duration,
    ) -> Result<Vec<ContainerStatus>, ContainerdRuntimeError> {
        let pod_ref = pod_ref(pod)?;
        let existing = self.pod_containers(pod_ref.uid).await?;
        let uid = pod_ref.uid;
        let stops = existing.values().map(|record| async move {
            let exit = containers::stop(&self.connection, &record.id, grace).await?;
            let oom = self.oom_killed(uid, &record.id);
            containers::remove(&self.connection, &record.id).await?;
            self.forget(&record.id).await;
            Ok::<_, ContainerError>((record, exit, oom))
        });
        let results = futures::future::join_all(stops).await;
        let mut statuses = Vec::new();
        let spec_containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or(&[]);
        for result in results {
            let (record, exit, oom) = result?;
            let name = record
                .labels
                .get(labels::CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            let container = spec_containers
                .iter()
                .find(|c| c.name == name)
                .cloned()
                .unwrap_or_else(|| Container {
                    name: name.clone(),
                    ..Default::default()
                });
            let (code, at) = exit.unwrap_or((137, None));
            let mut status = status_from(&container, record, TaskState::Exited { code, at });
            if oom {
                mark_oom_killed(&mut status);
            }
            statuses.push(status);
        }
        statuses.sort_by_key(|status| {
            spec_containers
                .iter()
                .position(|c| c.name == status.name)
                .unwrap_or(usize::MAX)
        });
        self.network
            .teardown(&SandboxRef {
                pod_uid: pod_ref.uid.to_string(),
            })
            .await?;
        let dir = self.pod_dir(pod_ref.uid);
        let unmount = dir.clone();
        match tokio::task::spawn_blocking(move || volumes::teardown(&unmount)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot unmount the pod's volumes"),
            Err(error) => tracing::warn!(%error, "volume teardown panicked"),
        }
        if let Ok(mut warned) = self.warned.lock() {
            warned.remove(pod_ref.uid);
        }
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ContainerdRuntimeError::PodDir { path: dir, source }),
        }
        Ok(statuses)
    }
}

#[async_trait]
impl PodRuntime for ContainerdRuntime {
    type Error = ContainerdRuntimeError;

    fn version(&self) -> &str {
        &self.version
    }

    async fn start_pod(&self, pod: &Pod) -> Result<StartedSandboxPod, Self::Error> {
        let span = info_span!(
            "pod_sync",
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
            uid = pod.metadata.uid.as_deref().unwrap_or_default(),
        );
        self.start_pod_inner(pod).instrument(span).await
    }

    async fn restart_container(
        &self,
        pod: &Pod,
        container: &str,
    ) -> Result<ContainerStatus, Self::Error> {
        let span = info_span!(
            "container_restart",
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
            container,
        );
        self.restart_container_inner(pod, container)
            .instrument(span)
            .await
    }

    async fn pod_status(&self, pod: &Pod) -> Result<Vec<ContainerStatus>, Self::Error> {
        let pod_ref = pod_ref(pod)?;
        let existing = self.pod_containers(pod_ref.uid).await?;
        let mut statuses = Vec::new();
        for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            match existing.get(&container.name) {
                Some(record) => {
                    let state = containers::state(&self.connection, &record.id).await?;
                    statuses.push(self.status_of(pod_ref.uid, container, record, state));
                }
                None => statuses.push(waiting(container, "ContainerCreating", String::new())),
            }
        }
        Ok(statuses)
    }

    async fn init_status(&self, pod: &Pod) -> Result<Vec<ContainerStatus>, Self::Error> {
        self.init_status_inner(pod).await
    }

    async fn stop_pod(
        &self,
        pod: &Pod,
        grace: Duration,
    ) -> Result<Vec<ContainerStatus>, Self::Error> {
        let span = info_span!(
            "pod_stop",
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
            uid = pod.metadata.uid.as_deref().unwrap_or_default(),
        );
        self.stop_pod_inner(pod, grace).instrument(span).await
    }

    async fn list_pods(&self) -> Result<Vec<RuntimePod>, Self::Error> {
        let all = containers::list(&self.connection, None).await?;
        let mut pods: Vec<RuntimePod> = Vec::new();
        for record in all {
            let label = |key: &str| record.labels.get(key).cloned().unwrap_or_default();
            let uid = label(labels::POD_UID);
            if uid.is_empty() {
                continue;
            }
            let running = matches!(
                containers::state(&self.connection, &record.id).await?,
                TaskState::Running { .. }
            );
            let entry = RuntimeContainer {
                name: label(labels::CONTAINER_NAME),
                id: record.id.clone(),
                running,
            };
            match pods.iter_mut().find(|pod| pod.uid == uid) {
                Some(pod) => pod.containers.push(entry),
                None => pods.push(RuntimePod {
                    uid,
                    namespace: label(labels::POD_NAMESPACE),
                    name: label(labels::POD_NAME),
                    containers: vec![entry],
                }),
            }
        }
        // Sandboxes whose containers were never created (e.g. no image).
        for sandbox in self.network.sandboxes().await {
            if !pods.iter().any(|pod| pod.uid == sandbox.pod_uid) {
                pods.push(RuntimePod {
                    uid: sandbox.pod_uid,
                    namespace: String::new(),
                    name: String::new(),
                    containers: Vec::new(),
                });
            }
        }
        Ok(pods)
    }

    fn exits(&self) -> broadcast::Receiver<ContainerExit> {
        self.exits.subscribe()
    }

    fn log_path(&self, pod: &Pod, container: &str, restart_count: i32) -> PathBuf {
        let pod_ref = PodRef {
            pod,
            uid: pod.metadata.uid.as_deref().unwrap_or_default(),
            name: pod.metadata.name.as_deref().unwrap_or_default(),
            namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        };
        self.log_file(&pod_ref, container, restart_count)
    }

    async fn exec_sync(
        &self,
        pod: &Pod,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutcome, Self::Error> {
        self.exec_inner(pod, container, command, timeout).await
    }

    async fn refresh_volumes(&self, pod: &Pod) -> Result<(), Self::Error> {
        let pod_ref = pod_ref(pod)?;
        let dir = self.pod_dir(pod_ref.uid);
        if !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            return Ok(());
        }
        let facts = self.node_facts(None);
        if let Err(error) = volumes::setup(pod, &dir, self.config.api.as_deref(), &facts).await {
            info!(pod = pod_ref.name, %error, "volumes not refreshed; keeping their files");
        }
        Ok(())
    }

    async fn kill_container(
        &self,
        pod: &Pod,
        container: &str,
        grace: Duration,
    ) -> Result<(), Self::Error> {
        let span = info_span!(
            "container_kill",
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
            container,
        );
        self.kill_inner(pod, container, grace)
            .instrument(span)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_fit_containerd_limits_and_name_the_instance() {
        let id = container_id("0123abcd-4567-89ef-0123-456789abcdef", &"x".repeat(63), 3);
        assert!(id.len() <= 76, "{id}");
        assert!(id.starts_with(&format!(
            "{}-xxx",
            short_uid("0123abcd-4567-89ef-0123-456789abcdef")
        )));
        assert!(id.ends_with("-3"));
    }
}
