//! skiff's controller manager: ReplicaSets, Deployments, DaemonSets, Jobs,
//! garbage collection, namespace and node lifecycle, taint eviction,
//! Endpoints/EndpointSlices, HorizontalPodAutoscalers, and each namespace's
//! `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.
//!
//! Owns: one reconcile loop per controller, built on `kube-runtime`. Talks to
//! the cluster only through the Kubernetes API with `kube`; it must never depend
//! on the `apiserver` crate.

mod claim;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
mod events;
mod expectations;
pub mod gc;
pub mod hpa;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
mod per_namespace;
mod podutil;
mod podwatch;
pub mod replicaset;
mod resources;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod tainteviction;
pub mod taints;

pub use podwatch::SharedPods;

use std::future::Future;
use std::time::Duration;

/// Configuration of the controller manager.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a node may go without renewing its Lease before it is
    /// marked NotReady/Unknown (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// How long a controller waits for its watch to report the pods it
    /// created or deleted before acting again anyway (Kubernetes: 5m).
    pub expectations_timeout: Duration,
    /// Pause before restarting a controller whose loop ended or failed.
    pub restart_backoff: Duration,
    /// The HorizontalPodAutoscaler controller's settings.
    pub horizontal_pod_autoscaler: hpa::Config,
    /// The one pod watch and store that every controller started with a
    /// clone of this config shares (kube-controller-manager's shared
    /// informer): one decode and one copy of each pod, not one per
    /// controller. Started by the first controller that needs it.
    pub shared_pods: SharedPods,
    /// The cluster CA bundle (PEM) published in every namespace as the
    /// `kube-root-ca.crt` ConfigMap (`--root-ca-file`, else the CA the
    /// controller manager's kubeconfig trusts); `None` publishes nothing.
    pub root_ca: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: Duration::from_secs(40),
            expectations_timeout: Duration::from_secs(300),
            restart_backoff: Duration::from_secs(1),
            horizontal_pod_autoscaler: hpa::Config::default(),
            shared_pods: SharedPods::default(),
            root_ca: None,
        }
    }
}

/// What can stop the controller manager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A controller task panicked or was cancelled.
    #[error("controller {name} stopped: {source}")]
    Task {
        name: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Runs every controller until the process ends. A controller whose loop
/// ends (its watches failed for good) is logged and restarted after
/// `config.restart_backoff`; one controller never brings the others down.
pub async fn run(client: kube::Client, config: Config) -> Result<(), Error> {
    let mut tasks = Vec::new();
    macro_rules! spawn {
        ($name:literal, $f:path) => {{
            let (client, config) = (client.clone(), config.clone());
            tasks.push((
                $name,
                tokio::spawn(supervise($name, config.restart_backoff, move || {
                    let (client, config) = (client.clone(), config.clone());
                    async move { $f(client, &config).await }
                })),
            ));
        }};
    }
    spawn!("replicaset", replicaset::run);
    spawn!("deployment", deployment::run);
    spawn!("garbage-collector", gc::run);
    spawn!("namespace", namespace::run);
    spawn!("node-lifecycle", nodelifecycle::run);
    spawn!("taint-eviction", tainteviction::run);
    spawn!("endpoints", endpoints::run);
    spawn!("daemonset", daemonset::run);
    spawn!("job", job::run);
    spawn!("horizontal-pod-autoscaler", hpa::run);
    spawn!("serviceaccount", serviceaccount::run);
    spawn!("root-ca-cert-publisher", rootcacertpublisher::run);
    for (name, task) in tasks {
        task.await.map_err(|source| Error::Task { name, source })?;
    }
    Ok(())
}

async fn supervise<F, Fut>(name: &'static str, backoff: Duration, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let result = tokio::spawn(start()).await;
        match result {
            Ok(()) => tracing::warn!(controller = name, "controller loop ended; restarting"),
            Err(e) => {
                tracing::error!(controller = name, error = %e, "controller crashed; restarting")
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
