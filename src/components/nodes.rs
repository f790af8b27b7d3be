//! Starts node agents (owned by the kubelet/scheduler issues).

use std::path::PathBuf;

use anyhow::Result;

/// What `skiff up` / `skiff agent` ask of the node agents.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The API server URL and a kubeconfig to reach it.
    pub kubeconfig: PathBuf,
    pub data_dir: PathBuf,
    pub count: u32,
    /// Node names are `{prefix}{index}` when `count > 1`, or `name` itself.
    pub name: String,
    pub runtime: crate::cli::Runtime,
}

/// Starts the node agents; returns their tasks (empty when unsupported yet).
pub async fn start_nodes(_opts: NodeOptions) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    Ok(Vec::new())
}
