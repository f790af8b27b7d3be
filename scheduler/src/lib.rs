//! skiff's scheduler: places pending pods onto nodes by their requests and rules.
//!
//! Owns: the scheduling queue ([`queue`]), the framework and its filter and
//! score plugins ([`framework`], [`plugins`]), the node/pod cache
//! ([`cache`]), preemption, and binding through the `pods/binding`
//! subresource. Talks to the cluster only through the Kubernetes API with
//! `kube`; it must never depend on the `apiserver` crate.
//!
//! Start it with [`run`]; serve [`Metrics::encode`] to expose its metrics.

pub mod algorithm;
mod api;
pub mod cache;
pub mod framework;
mod informers;
pub mod metrics;
pub mod plugins;
pub mod preemption;
pub mod priority;
pub mod queue;
pub mod resources;
mod schedule_one;
#[cfg(test)]
mod testing;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use tokio::sync::{watch, Semaphore};

pub use metrics::Metrics;

/// Whether a pending pod may evict lower-priority pods to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreemptionPolicy {
    Enabled,
    Disabled,
}

/// Configuration of the scheduler. Defaults match kube-scheduler.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this are ours.
    pub scheduler_name: String,
    /// Share of nodes to find feasible before scoring; 0 is adaptive
    /// (`50 - nodes/125`%, at least 5%, at least 100 nodes).
    pub percentage_of_nodes_to_score: u32,
    pub pod_initial_backoff: Duration,
    pub pod_max_backoff: Duration,
    /// The longest a pod waits as unschedulable without a cluster event.
    pub pod_max_in_unschedulable_pods_duration: Duration,
    /// Bindings in flight at once. Binding is the scheduler's bottleneck
    /// end to end (one API write per pod), so this is generous: at 64 the
    /// 1,000-node benchmark bound ~350 pods/s with ~180 ms per binding.
    pub parallel_binds: usize,
    /// Status and event writes for unschedulable pods in flight at once.
    pub parallel_status_writes: usize,
    pub preemption: PreemptionPolicy,
    pub metrics: Metrics,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: 0,
            pod_initial_backoff: Duration::from_secs(1),
            pod_max_backoff: Duration::from_secs(10),
            pod_max_in_unschedulable_pods_duration: Duration::from_secs(300),
            parallel_binds: 256,
            parallel_status_writes: 16,
            preemption: PreemptionPolicy::Enabled,
            metrics: Metrics::new(),
        }
    }
}

/// Errors that stop the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A watch task ended before its first list completed.
    #[error("the {0} watch stopped before it synced")]
    NotSynced(&'static str),
}

/// Runs the scheduler until the task is dropped: watches, then the loop.
pub async fn run(client: Client, config: Config) -> Result<(), Error> {
    let shared = informers::Shared {
        cache: Arc::new(Mutex::new(cache::Cache::default())),
        queue: queue::SchedulingQueue::new(queue::QueueConfig {
            initial_backoff: config.pod_initial_backoff,
            max_backoff: config.pod_max_backoff,
            max_in_unschedulable: config.pod_max_in_unschedulable_pods_duration,
        }),
        priorities: Arc::new(priority::PriorityClasses::default()),
        scheduler_name: config.scheduler_name.clone(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    // PriorityClasses and nodes first, so the first pods get their priority
    // and see every node.
    for (what, start) in [("PriorityClass", 0), ("node", 1), ("pod", 2)] {
        let (tx, mut rx) = watch::channel(false);
        let (client, shared) = (client.clone(), shared.clone());
        match start {
            0 => tasks.spawn(informers::watch_priority_classes(client, shared, tx)),
            1 => tasks.spawn(informers::watch_nodes(client, shared, tx)),
            _ => tasks.spawn(informers::watch_pods(client, shared, tx)),
        };
        rx.wait_for(|synced| *synced)
            .await
            .map_err(|_| Error::NotSynced(what))?;
    }
    let metrics = config.metrics.clone();
    let queue = shared.queue.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let depth = queue.depth();
            metrics.set_pending(depth);
            tracing::debug!(
                scheduled = metrics.attempts(metrics::AttemptResult::Scheduled),
                unschedulable = metrics.attempts(metrics::AttemptResult::Unschedulable),
                errors = metrics.attempts(metrics::AttemptResult::Error),
                active = depth.active,
                backoff = depth.backoff,
                parked = depth.unschedulable,
                "progress"
            );
        }
    });
    tracing::info!("scheduler synced; scheduling");
    schedule_one::Loop {
        client,
        algorithm: algorithm::Algorithm::new(
            plugins::default_framework(),
            config.percentage_of_nodes_to_score,
        ),
        shared,
        metrics: config.metrics,
        preemption: config.preemption,
        binds: Arc::new(Semaphore::new(config.parallel_binds.max(1))),
        writes: Arc::new(Semaphore::new(config.parallel_status_writes.max(1))),
    }
    .run()
    .await;
    Ok(())
}
