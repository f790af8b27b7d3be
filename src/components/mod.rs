//! Starting the in-process components of `skiff up` / `skiff server` /
//! `skiff agent`. Each talks to the API server through its own kube-rs
//! client built from a kubeconfig, exactly as it would from another machine.

mod controllers;
pub mod leader;
mod nodes;
pub mod proxy;
mod scheduler;

use std::path::Path;

use anyhow::{Context, Result};

pub use nodes::{start_nodes, stop_marker, NodeOptions};

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

/// Starts the scheduler and the controller manager against the API, each
/// once this process holds its leader Lease (see [`leader`]); `identity`
/// names this control plane in the Leases.
pub async fn start_control_plane(
    kubeconfig: &Path,
    cp: &crate::cli::ControlPlaneArgs,
    metrics: &std::sync::Arc<apiserver::metrics::Metrics>,
    identity: &str,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = client_from_kubeconfig(kubeconfig).await?;
    let lease = |name: &str| {
        let mut config = leader::LeaderConfig::new(name, identity);
        config.lease_duration = cp.leader_elect_lease_duration;
        config.renew_deadline = cp.leader_elect_lease_duration.mul_f64(0.7);
        config
    };
    let (path, cp_owned) = (kubeconfig.to_path_buf(), cp.clone());
    let config = scheduler::config(metrics);
    let scheduler = leader::spawn_as_leader(client.clone(), lease("kube-scheduler"), {
        let path = path.clone();
        move || async move { scheduler::start(&path, config).await }
    });
    let controllers = leader::spawn_as_leader(client, lease("kube-controller-manager"), {
        move || async move { controllers::start(&path, &cp_owned).await }
    });
    Ok(vec![scheduler, controllers])
}
