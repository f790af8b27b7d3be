//! Starts the scheduler (owned by the scheduler issue).

use std::path::Path;

use anyhow::Result;

/// Starts the scheduler against the API. Its metrics handle is
/// `scheduler::Config::metrics` (serve `Metrics::encode()` on `/metrics`).
pub async fn start(
    kubeconfig: &Path,
    _cp: &crate::cli::ControlPlaneArgs,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = crate::components::client_from_kubeconfig(kubeconfig).await?;
    let config = scheduler::Config::default();
    Ok(vec![tokio::spawn(async move {
        if let Err(e) = scheduler::run(client, config).await {
            tracing::error!(error = %e, "the scheduler stopped");
        }
    })])
}
