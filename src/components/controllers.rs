//! Starts the controller manager (ReplicaSets, Deployments, DaemonSets,
//! Jobs, garbage collection, namespace and node lifecycle, taint eviction,
//! Endpoints/EndpointSlices, HorizontalPodAutoscalers) with a kube-rs client built from the
//! kubeconfig.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;

pub async fn start(
    kubeconfig: &Path,
    cp: &crate::cli::ControlPlaneArgs,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = super::client_from_kubeconfig(kubeconfig).await?;
    let root_ca = root_ca_of(kubeconfig)?;
    let config = controllers::Config {
        root_ca,
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

/// The CA bundle (PEM) the kubeconfig's current cluster trusts: what the
/// controller manager publishes as `kube-root-ca.crt` (kube-controller-manager
/// falls back to its kubeconfig's CA when `--root-ca-file` is not given).
fn root_ca_of(kubeconfig: &Path) -> Result<Option<String>> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read the kubeconfig {}", kubeconfig.display()))?;
    let cluster_name = config
        .current_context
        .as_deref()
        .and_then(|c| config.contexts.iter().find(|n| n.name == c))
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = config
        .clusters
        .iter()
        .find(|c| Some(&c.name) == cluster_name.as_ref())
        .and_then(|c| c.cluster.as_ref());
    let Some(cluster) = cluster else {
        return Ok(None);
    };
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("the kubeconfig's certificate-authority-data is not base64")?;
        return Ok(Some(
            String::from_utf8(pem).context("the kubeconfig's CA is not PEM text")?,
        ));
    }
    if let Some(path) = &cluster.certificate_authority {
        return Ok(Some(
            std::fs::read_to_string(path).with_context(|| format!("cannot read the CA {path}"))?,
        ));
    }
    Ok(None)
}
