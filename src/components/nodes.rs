//! Starts node agents (owned by the kubelet/scheduler issues): simulated
//! nodes, or real ones running pods through containerd.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

/// What `skiff up` / `skiff agent` ask of the node agents.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The API server URL and a kubeconfig to reach it.
    pub kubeconfig: PathBuf,
    /// Where the nodes keep their state: `DATA_DIR/nodes`, one folder per
    /// node (its containerd, CNI state, pod dirs and logs). Images are
    /// imported from `DATA_DIR/images`.
    pub data_dir: PathBuf,
    pub count: u32,
    /// Node names are `{prefix}{index}` when `count > 1`, or `name` itself.
    pub name: String,
    pub runtime: crate::cli::Runtime,
    /// An existing containerd socket to use instead of starting one.
    pub containerd_address: Option<PathBuf>,
    /// Registries pulled from over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Hard eviction thresholds (`--eviction-hard`; the kubelet's defaults
    /// when `None`) and how often they are checked.
    pub eviction_hard: Option<kubelet::EvictionThresholds>,
    pub eviction_monitoring_interval: std::time::Duration,
    /// The cluster DNS IP and domain written into pods' resolv.conf.
    pub cluster_dns: Option<String>,
    pub cluster_domain: String,
    /// The `default/kubernetes` Service's ClusterIP and port, given to every
    /// container as `KUBERNETES_SERVICE_HOST`/`_PORT`.
    pub kubernetes_service: Option<(std::net::Ipv4Addr, u16)>,
    /// This process's Service proxy counters, served by the first node
    /// (the API server sums per pod over nodes, so only one node reports them).
    pub request_counters: Option<std::sync::Arc<dyn kubelet::RequestCounters>>,
}

/// The simulated nodes' configuration: `{name}-{i}` for `count > 1`, else `name`.
fn sim_config(opts: &NodeOptions) -> kubelet::SimConfig {
    if opts.count == 1 {
        kubelet::SimConfig::new(vec![kubelet::SimNode::named(opts.name.clone())])
    } else {
        kubelet::SimConfig::numbered(&format!("{}-", opts.name), opts.count)
    }
}

/// Starts the node agents; returns once every Node is registered.
pub async fn start_nodes(opts: NodeOptions) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    if opts.runtime == crate::cli::Runtime::Containerd {
        return start_containerd_nodes(&opts, opts.containerd_address.as_deref()).await;
    }
    if opts.count == 0 {
        return Ok(Vec::new());
    }
    let client = crate::components::client_from_kubeconfig(&opts.kubeconfig).await?;
    let nodes = kubelet::sim::SimNodes::register(client, sim_config(&opts))
        .await
        .context("cannot register the simulated nodes")?;
    Ok(vec![tokio::spawn(async move {
        if let Err(e) = nodes.run().await {
            tracing::error!(error = %e, "the simulated nodes stopped");
        }
    })])
}

/// The real nodes' configurations: names as for simulated nodes; node `i`
/// of several gets pod CIDR `10.244.i.0/24` and bridge `skiff<i>`, a lone
/// node (e.g. `skiff agent`) an index hashed from its name.
fn agent_configs(
    opts: &NodeOptions,
    containerd_address: Option<&Path>,
) -> Vec<kubelet::AgentConfig> {
    let images = opts.data_dir.parent().map(|root| root.join("images"));
    (0..opts.count)
        .map(|i| {
            let (name, index) = if opts.count == 1 {
                let index = kubelet::AgentConfig::index_for_name(&opts.name);
                (opts.name.clone(), index)
            } else {
                (format!("{}-{i}", opts.name), i)
            };
            let mut config = kubelet::AgentConfig::new(&name, &opts.data_dir.join(&name), index);
            config.images_dir = images.clone();
            config.containerd_address = containerd_address.map(Path::to_path_buf);
            config.cluster_dns = opts.cluster_dns.clone();
            config.cluster_domain = opts.cluster_domain.clone();
            config.kubernetes_service = opts.kubernetes_service;
            config.insecure_registries = opts.insecure_registries.clone();
            if let Some(thresholds) = &opts.eviction_hard {
                config.eviction_hard = thresholds.clone();
            }
            config.eviction_monitoring_interval = opts.eviction_monitoring_interval;
            if i == 0 {
                config.request_counters = opts.request_counters.clone();
            }
            config
        })
        .collect()
}

/// Starts one containerd-backed agent per node; returns once every Node
/// is registered.
async fn start_containerd_nodes(
    opts: &NodeOptions,
    containerd_address: Option<&Path>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    if opts.count == 0 {
        return Ok(Vec::new());
    }
    let client = crate::components::client_from_kubeconfig(&opts.kubeconfig).await?;
    // The agents' HTTPS API accepts client certificates of the cluster CA.
    let client_ca = cluster_ca(&opts.kubeconfig).await?;
    // Nodes start in parallel (each waits for its own containerd).
    let starts: Vec<_> = agent_configs(opts, containerd_address)
        .into_iter()
        .map(|mut config| {
            config.server_port = 0;
            config.client_ca = client_ca.clone();
            // A node stopped before the cluster restarted starts again.
            let _ = std::fs::remove_file(stop_marker(&config.data_dir));
            let client = client.clone();
            tokio::spawn(async move {
                let name = config.node_name.clone();
                kubelet::Agent::start(client, config)
                    .await
                    .map_err(|e| match e {
                        // Machine-wide problems read the same for every node.
                        kubelet::AgentError::NotRoot
                        | kubelet::AgentError::Missing { .. }
                        | kubelet::AgentError::NoSocket(_) => anyhow!("{e}"),
                        other => anyhow!("node {name}: {other}"),
                    })
            })
        })
        .collect();
    let mut agents = Vec::new();
    for start in starts {
        agents.push(start.await.context("a node agent failed to start")??);
    }
    Ok(agents
        .into_iter()
        .map(|agent| tokio::spawn(supervise(client.clone(), agent)))
        .collect())
}

/// The file whose presence stops a real node (`skiff node stop`).
pub fn stop_marker(node_dir: &Path) -> PathBuf {
    node_dir.join("stopped")
}

async fn wait_for_marker(path: &Path, present: bool) {
    while path.exists() != present {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Runs a node; `skiff node stop` (the stop marker) stops it as a crashed
/// kubelet would stop (Lease and status no longer written, containerd
/// stopped, containers left running), `skiff node start` starts it again,
/// and it re-adopts or cleans up its containers.
async fn supervise(client: kube::Client, mut agent: kubelet::Agent) {
    let config = agent.config().clone();
    let marker = stop_marker(&config.data_dir);
    let name = config.node_name.clone();
    loop {
        tokio::select! {
            () = agent.run() => return,
            () = wait_for_marker(&marker, true) => {}
        }
        println!("skiff: node {name} stopped");
        wait_for_marker(&marker, false).await;
        agent = loop {
            match kubelet::Agent::start(client.clone(), config.clone()).await {
                Ok(agent) => break agent,
                Err(error) => {
                    tracing::error!(node = %name, %error, "cannot restart the node; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            }
        };
        println!("skiff: node {name} started");
    }
}

/// The cluster CA (DER) of a kubeconfig.
async fn cluster_ca(kubeconfig: &Path) -> Result<Option<Vec<Vec<u8>>>> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read the kubeconfig {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .context("invalid kubeconfig")?;
    Ok(config.root_cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(count: u32) -> NodeOptions {
        NodeOptions {
            kubeconfig: PathBuf::from("/d/kubeconfig.yaml"),
            data_dir: PathBuf::from("/d/nodes"),
            count,
            name: "skiff-node".to_string(),
            runtime: crate::cli::Runtime::Containerd,
            containerd_address: None,
            insecure_registries: vec!["127.0.0.1:5000".to_string()],
            eviction_hard: Some(
                "memory.available<1Gi"
                    .parse()
                    .unwrap_or_else(|_| kubelet::EvictionThresholds::none()),
            ),
            eviction_monitoring_interval: std::time::Duration::from_secs(2),
            cluster_dns: Some("10.96.0.10".to_string()),
            cluster_domain: "cluster.local".to_string(),
            kubernetes_service: Some((std::net::Ipv4Addr::new(10, 96, 0, 1), 443)),
            request_counters: None,
        }
    }

    #[test]
    fn each_real_node_gets_its_own_dir_cidr_bridge_and_namespace() {
        let configs = agent_configs(&options(2), None);
        assert_eq!(configs[0].node_name, "skiff-node-0");
        assert_eq!(configs[1].data_dir, PathBuf::from("/d/nodes/skiff-node-1"));
        assert_eq!(configs[0].pod_cidr, "10.244.0.0/24");
        assert_eq!(configs[1].pod_cidr, "10.244.1.0/24");
        assert_ne!(configs[0].bridge, configs[1].bridge);
        assert_eq!(
            configs[1].kubernetes_service,
            Some((std::net::Ipv4Addr::new(10, 96, 0, 1), 443)),
            "every node gives pods the API's Service"
        );
        assert_eq!(configs[1].containerd_namespace, "skiff-skiff-node-1");
        assert_eq!(configs[0].images_dir, Some(PathBuf::from("/d/images")));
        assert_eq!(configs[1].insecure_registries, vec!["127.0.0.1:5000"]);
        assert_eq!(
            configs[1].eviction_hard.to_string(),
            "memory.available<1Gi",
            "--eviction-hard reaches every node"
        );
        assert_eq!(
            configs[0].eviction_monitoring_interval,
            std::time::Duration::from_secs(2)
        );
    }

    #[test]
    fn a_lone_node_keeps_its_name() {
        let configs = agent_configs(&options(1), Some(Path::new("/run/containerd.sock")));
        assert_eq!(configs[0].node_name, "skiff-node");
        assert_eq!(
            configs[0].containerd_address,
            Some(PathBuf::from("/run/containerd.sock"))
        );
    }
}
