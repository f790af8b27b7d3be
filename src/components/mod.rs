//! Starting the in-process components of `skiff up` / `skiff server` /
//! `skiff agent`. Each talks to the API server through its own kube-rs
//! client built from a kubeconfig, exactly as it would from another machine.

mod controllers;
mod nodes;
pub mod proxy;
mod scheduler;

use std::path::Path;

use anyhow::{Context, Result};

pub use nodes::{start_nodes, NodeOptions};

/// A kube-rs client from a kubeconfig file (used by every component).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("invalid kubeconfig")?;
    kube::Client::try_from(config).context("cannot build an API client")
}

/// Starts the scheduler and the controller manager against the API.
pub async fn start_control_plane(
    kubeconfig: &Path,
    cp: &crate::cli::ControlPlaneArgs,
    metrics: &apiserver::metrics::Metrics,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    tasks.extend(scheduler::start(kubeconfig, cp, metrics).await?);
    tasks.extend(controllers::start(kubeconfig, cp).await?);
    Ok(tasks)
}
