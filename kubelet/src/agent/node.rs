//! The Node object of a real node: capacity read from the machine
//! (`available_parallelism`, `/proc/meminfo`, the data dir's filesystem),
//! allocatable minus the configured reservation, the pressure conditions
//! measured against the node's hard eviction thresholds
//! ([`super::eviction`], `--eviction-hard`), and its registration and
//! periodic status refresh (at once when the pressure changes).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

use super::eviction::{NodePressure, Observation, Observations};
use super::AgentConfig;

/// What the machine offers, measured once per status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: u64,
    /// `MemTotal`, bytes.
    pub memory_total: u64,
    /// `MemAvailable`, bytes.
    pub memory_available: u64,
    /// Size of the data dir's filesystem, bytes.
    pub disk_total: u64,
    /// Free space there, bytes.
    pub disk_available: u64,
    /// Inodes of the data dir's filesystem.
    pub inodes_total: u64,
    /// Free inodes there.
    pub inodes_free: u64,
}

/// A `/proc/meminfo` field in bytes.
fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Machine {
    /// Measures this machine (blocking reads of `/proc`; call from
    /// `spawn_blocking`).
    pub fn measure(data_dir: &Path) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let (disk_total, disk_available, inodes_total, inodes_free) =
            nix::sys::statvfs::statvfs(data_dir)
                .map(|s| {
                    let frag = s.fragment_size();
                    (
                        s.blocks() * frag,
                        s.blocks_available() * frag,
                        s.files(),
                        s.files_free(),
                    )
                })
                .unwrap_or((0, 0, 0, 0));
        Self {
            cpus,
            memory_total: meminfo_field(&meminfo, "MemTotal:").unwrap_or(0),
            memory_available: meminfo_field(&meminfo, "MemAvailable:").unwrap_or(0),
            disk_total,
            disk_available,
            inodes_total,
            inodes_free,
        }
    }

    /// The eviction signals this measurement gives (none where the
    /// capacity could not be read).
    pub fn observations(&self) -> Observations {
        let observe = |available, capacity| {
            (capacity > 0).then_some(Observation {
                available,
                capacity,
            })
        };
        Observations {
            memory: observe(self.memory_available, self.memory_total),
            nodefs: observe(self.disk_available, self.disk_total),
            nodefs_inodes: observe(self.inodes_free, self.inodes_total),
        }
    }
}

/// The node's status for `machine`.
pub fn status(config: &AgentConfig, machine: &Machine, runtime_version: &str) -> NodeStatus {
    let kib = |bytes: u64| Quantity(format!("{}Ki", bytes / 1024));
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", Quantity(machine.cpus.to_string())),
        ("memory", kib(machine.memory_total)),
        ("pods", Quantity(config.max_pods.to_string())),
        ("ephemeral-storage", kib(machine.disk_total)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut allocatable = capacity.clone();
    let cpu_millis = (machine.cpus * 1000).saturating_sub(config.reserved_cpu_millis);
    allocatable.insert("cpu".into(), Quantity(format!("{cpu_millis}m")));
    allocatable.insert(
        "memory".into(),
        kib(machine
            .memory_total
            .saturating_sub(config.reserved_memory_bytes)),
    );
    let now = crate::time::now();
    let condition = |kind: &str, on: bool, reason: &str, message: &str| NodeCondition {
        type_: kind.to_string(),
        status: if on { "True" } else { "False" }.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let NodePressure {
        memory: memory_pressure,
        disk: disk_pressure,
    } = config.eviction_hard.pressure(&machine.observations());
    let arch = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let os_image = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string());
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(vec![
            if memory_pressure {
                condition(
                    "MemoryPressure",
                    true,
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available",
                )
            } else {
                condition(
                    "MemoryPressure",
                    false,
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                )
            },
            if disk_pressure {
                condition(
                    "DiskPressure",
                    true,
                    "KubeletHasDiskPressure",
                    "kubelet has disk pressure",
                )
            } else {
                condition(
                    "DiskPressure",
                    false,
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                )
            },
            condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.host_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.server_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch,
            operating_system: "linux".into(),
            os_image,
            kernel_version: read("/proc/sys/kernel/osrelease"),
            container_runtime_version: runtime_version.to_string(),
            kubelet_version: concat!("v1.33.0-skiff.", env!("CARGO_PKG_VERSION")).into(),
            kube_proxy_version: String::new(),
            machine_id: read("/etc/machine-id"),
            system_uuid: config.node_name.clone(),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Node as a freshly started agent creates it.
pub fn build(config: &AgentConfig, machine: &Machine, runtime_version: &str) -> Node {
    let arch = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", config.node_name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch.as_str()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(config.pod_cidr.clone()),
            pod_cidrs: Some(vec![config.pod_cidr.clone()]),
            provider_id: Some(format!("skiff://{}", config.node_name)),
            ..Default::default()
        }),
        status: Some(status(config, machine, runtime_version)),
    }
}

/// Measures the machine off the async runtime.
pub async fn measure(config: &AgentConfig) -> Machine {
    let dir = config.data_dir.clone();
    tokio::task::spawn_blocking(move || Machine::measure(&dir))
        .await
        .unwrap_or_default()
}

/// Creates the Node, or refreshes an existing one's status (a restarted
/// agent keeps the spec, e.g. a cordon).
pub async fn register(
    client: &Client,
    config: &AgentConfig,
    runtime_version: &str,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let desired = build(config, &measure(config).await, runtime_version);
    match api.create(&PostParams::default(), &desired).await {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    let patch = serde_json::json!({ "status": desired.status });
    api.patch_status(
        &config.node_name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

/// Writes the node's status every `node_status_update_frequency`, and at
/// once when the eviction manager sees the pressure change.
pub async fn update_forever(
    client: Client,
    config: AgentConfig,
    runtime_version: String,
    mut pressure: tokio::sync::watch::Receiver<NodePressure>,
) {
    let api: Api<Node> = Api::all(client);
    let mut interval = tokio::time::interval(config.node_status_update_frequency);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    pressure.mark_unchanged();
    let mut pressure_open = true;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            changed = pressure.changed(), if pressure_open => {
                pressure_open = changed.is_ok();
                interval.reset();
            }
        }
        let machine = measure(&config).await;
        let patch = serde_json::json!({ "status": status(&config, &machine, &runtime_version) });
        if let Err(error) = api
            .patch_status(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::warn!(node = %config.node_name, %error, "cannot update the node status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond<'a>(status: &'a NodeStatus, kind: &str) -> &'a NodeCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    }

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn allocatable_is_capacity_minus_the_reservation() {
        let mut config = AgentConfig::new("n1", Path::new("/data"), 3);
        config.reserved_cpu_millis = 100;
        config.reserved_memory_bytes = 256 * 1024 * 1024;
        let machine = Machine {
            cpus: 2,
            memory_total: 4 * GIB,
            memory_available: 2 * GIB,
            disk_total: 100 * GIB,
            disk_available: 50 * GIB,
            inodes_total: 1000,
            inodes_free: 900,
        };
        let node = build(&config, &machine, "containerd://1.6.20");
        let status = node.status.as_ref().expect("status");
        let capacity = status.capacity.as_ref().expect("capacity");
        let allocatable = status.allocatable.as_ref().expect("allocatable");
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "4194304Ki");
        assert_eq!(capacity["pods"].0, "110");
        assert_eq!(allocatable["cpu"].0, "1900m");
        assert_eq!(allocatable["memory"].0, "3932160Ki");
        assert_eq!(cond(status, "Ready").status, "True");
        assert_eq!(cond(status, "MemoryPressure").status, "False");
        assert_eq!(cond(status, "DiskPressure").status, "False");
        assert_eq!(cond(status, "PIDPressure").status, "False");
        let spec = node.spec.as_ref().expect("spec");
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.3.0/24"));
        let labels = node.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        let info = status.node_info.as_ref().expect("node info");
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
    }

    #[test]
    fn low_memory_and_disk_raise_the_pressure_conditions() {
        let config = AgentConfig::new("n1", Path::new("/data"), 0);
        let machine = Machine {
            cpus: 1,
            memory_total: GIB,
            memory_available: 50 * 1024 * 1024,
            disk_total: 100 * GIB,
            disk_available: 5 * GIB,
            inodes_total: 1000,
            inodes_free: 900,
        };
        let status = status(&config, &machine, "containerd://1.6.20");
        assert_eq!(cond(&status, "MemoryPressure").status, "True");
        assert_eq!(cond(&status, "DiskPressure").status, "True");
    }

    #[test]
    fn the_configured_thresholds_decide_the_pressure_conditions(
    ) -> Result<(), super::super::eviction::ThresholdError> {
        let machine = Machine {
            cpus: 1,
            memory_total: GIB,
            memory_available: 512 * 1024 * 1024,
            disk_total: 100 * GIB,
            disk_available: GIB,
            inodes_total: 1000,
            inodes_free: 10,
        };
        let mut config = AgentConfig::new("n1", Path::new("/data"), 0);
        // kind's setting: a full disk is no pressure.
        config.eviction_hard = "memory.available<1Gi,nodefs.available<0%".parse()?;
        let low_memory = status(&config, &machine, "containerd://1.6.20");
        assert_eq!(cond(&low_memory, "MemoryPressure").status, "True");
        assert_eq!(
            cond(&low_memory, "MemoryPressure").reason.as_deref(),
            Some("KubeletHasInsufficientMemory")
        );
        assert_eq!(cond(&low_memory, "DiskPressure").status, "False");
        config.eviction_hard = "nodefs.inodesFree<5%".parse()?;
        let few_inodes = status(&config, &machine, "containerd://1.6.20");
        assert_eq!(cond(&few_inodes, "MemoryPressure").status, "False");
        assert_eq!(cond(&few_inodes, "DiskPressure").status, "True");
        Ok(())
    }

    #[test]
    fn meminfo_fields_are_read_in_bytes() {
        let text = "MemTotal:        4000000 kB\nMemAvailable:    1000 kB\n";
        assert_eq!(meminfo_field(text, "MemTotal:"), Some(4_096_000_000));
        assert_eq!(meminfo_field(text, "MemAvailable:"), Some(1_024_000));
    }
}
