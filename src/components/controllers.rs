//! Starts the controller manager (ReplicaSets, Deployments, DaemonSets,
//! Jobs, garbage collection, namespace and node lifecycle, taint eviction,
//! Endpoints/EndpointSlices, HorizontalPodAutoscalers) with a kube-rs client built from the
//! kubeconfig.

use std::path::Path;

use anyhow::Result;

pub async fn start(
    kubeconfig: &Path,
    cp: &crate::cli::ControlPlaneArgs,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = super::client_from_kubeconfig(kubeconfig).await?;
    let config = controllers::Config {
        node_monitor_grace_period: cp.node_monitor_grace_period,
        horizontal_pod_autoscaler: controllers::hpa::Config {
            sync_period: cp.horizontal_pod_autoscaler_sync_period,
            ..controllers::hpa::Config::default()
        },
        ..controllers::Config::default()
    };
    let task = tokio::spawn(async move {
        if let Err(error) = controllers::run(client, config).await {
            tracing::error!(%error, "the controller manager stopped");
        }
    });
    Ok(vec![task])
}
