//! Starts node agents (owned by the kubelet/scheduler issues).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// What `skiff up` / `skiff agent` ask of the node agents.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The API server URL and a kubeconfig to reach it.
    pub kubeconfig: PathBuf,
    /// Where the nodes keep their state (the containerd runtime's root).
    #[allow(dead_code)]
    pub data_dir: PathBuf,
    pub count: u32,
    /// Node names are `{prefix}{index}` when `count > 1`, or `name` itself.
    pub name: String,
    pub runtime: crate::cli::Runtime,
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
    match opts.runtime {
        crate::cli::Runtime::Containerd => {
            bail!("the containerd runtime is not available yet; use --runtime sim")
        }
        crate::cli::Runtime::Sim => {}
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
