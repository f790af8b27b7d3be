//! Starts the scheduler (owned by the scheduler issue).

use std::path::Path;

use anyhow::Result;

pub async fn start(
    _kubeconfig: &Path,
    _cp: &crate::cli::ControlPlaneArgs,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    Ok(Vec::new())
}
