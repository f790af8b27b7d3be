//! Starts the scheduler (owned by the scheduler issue).

use std::path::Path;

use anyhow::Result;

/// Starts the scheduler against the API. Its metrics handle is
/// `scheduler::Config::metrics` (serve `Metrics::encode()` on `/metrics`).
pub async fn start(
    kubeconfig: &Path,
    _cp: &crate::cli::ControlPlaneArgs,
    metrics: &apiserver::metrics::Metrics,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = crate::components::client_from_kubeconfig(kubeconfig).await?;
    let config = scheduler::Config::default();
    // Served on the API server's /metrics, since both run in this process.
    let handle = config.metrics.clone();
    metrics.add_collector(std::sync::Arc::new(move || handle.encode()));
    Ok(vec![tokio::spawn(async move {
        if let Err(e) = scheduler::run(client, config).await {
            tracing::error!(error = %e, "the scheduler stopped");
        }
    })])
}
