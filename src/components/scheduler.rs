//! Starts the scheduler (owned by the scheduler issue).

use std::path::Path;

use anyhow::Result;

/// The scheduler's configuration; its metrics are served on the API
/// server's /metrics, since both run in this process.
pub fn config(metrics: &apiserver::metrics::Metrics) -> scheduler::Config {
    let config = scheduler::Config::default();
    let handle = config.metrics.clone();
    metrics.add_collector(std::sync::Arc::new(move || handle.encode()));
    config
}

/// Starts the scheduler against the API.
pub async fn start(
    kubeconfig: &Path,
    config: scheduler::Config,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = crate::components::client_from_kubeconfig(kubeconfig).await?;
    Ok(vec![tokio::spawn(async move {
        if let Err(e) = scheduler::run(client, config).await {
            tracing::error!(error = %e, "the scheduler stopped");
        }
    })])
}
