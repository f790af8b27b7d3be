//! Node-pressure eviction, as the kubelet's eviction manager does it.
//!
//! Every monitoring interval (Kubernetes: 10 s) the [`EvictionManager`]
//! measures the node's signals (`memory.available` = `MemAvailable`, the
//! data dir's filesystem for `nodefs`/`imagefs`) and compares them with the
//! hard thresholds ([`thresholds`], `--eviction-hard`). It publishes the
//! pressure conditions they raise (for the Node's `MemoryPressure` /
//! `DiskPressure` and for admission, [`rank::admit`]); when a memory
//! threshold is met it ranks the node's active pods ([`rank::rank_memory`],
//! using the stats sampler's latest per-pod working sets) and evicts ONE
//! non-critical pod: its containers are killed with no grace period (a hard
//! threshold), it ends `Failed` with reason `Evicted`, the kubelet's
//! message and a `DisruptionTarget` condition (reason
//! `TerminationByKubelet`), and an `Evicted` Warning event; the node gets
//! an `EvictionThresholdMet` event. The pod's worker does the killing and
//! the status write ([`super::worker`]), and never restarts the pod.
//!
//! Not done (yet): soft thresholds, minimum reclaim, the pressure
//! transition period, reclaiming node-level resources (image and container
//! GC) first, and evicting for disk pressure (DiskPressure is reported and
//! rejects new pods; no pod is evicted for it).

pub mod rank;
pub mod thresholds;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::stats::{PodStats, StatsHandle};
pub use thresholds::{
    format_bytes, EvictionThresholds, NodePressure, Observation, Observations, Signal,
    ThresholdError,
};

/// Kubernetes' eviction monitoring interval (the kubelet's housekeeping
/// period).
pub const MONITORING_INTERVAL: Duration = Duration::from_secs(10);

/// What the eviction manager needs of its node.
#[async_trait]
pub(crate) trait EvictionHost: Send + Sync {
    /// Measures the node's signals.
    async fn observe(&self) -> Observations;
    /// The pods bound to the node that have not finished.
    async fn active_pods(&self) -> Vec<Pod>;
    /// Kills `pod`'s containers and marks it evicted with `message`;
    /// returns once done, `false` when the pod could not be evicted.
    async fn evict(&self, pod: &Pod, message: String) -> bool;
    /// Records that a threshold of `resource` is met (the node's
    /// `EvictionThresholdMet` event).
    fn threshold_met(&self, resource: &str);
}

/// Compares signals with thresholds and evicts one pod per interval.
pub(crate) struct EvictionManager<H> {
    thresholds: EvictionThresholds,
    interval: Duration,
    host: H,
    stats: StatsHandle,
    pressure: watch::Sender<NodePressure>,
}

impl<H: EvictionHost> EvictionManager<H> {
    /// A manager publishing the node's pressure on `pressure`.
    pub(crate) fn new(
        thresholds: EvictionThresholds,
        interval: Duration,
        host: H,
        stats: StatsHandle,
        pressure: watch::Sender<NodePressure>,
    ) -> Self {
        Self {
            thresholds,
            interval,
            host,
            stats,
            pressure,
        }
    }

    /// Runs until the task is dropped (first round at once).
    pub(crate) async fn run(self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.synchronize().await;
        }
    }

    /// One round: publishes the pressure and evicts at most one pod;
    /// returns the evicted pod's UID.
    pub(crate) async fn synchronize(&self) -> Option<String> {
        let observations = self.host.observe().await;
        let pressure = self.thresholds.pressure(&observations);
        let changed = self.pressure.send_if_modified(|current| {
            let changed = *current != pressure;
            *current = pressure;
            changed
        });
        if changed {
            info!(
                memory_pressure = pressure.memory,
                disk_pressure = pressure.disk,
                ?observations,
                "node pressure changed"
            );
        }
        let met = self.thresholds.met(&observations);
        let threshold = *met.first()?;
        let observation = observations.get(threshold.signal)?;
        if threshold.signal != Signal::MemoryAvailable {
            warn!(threshold = %threshold, ?observation, "eviction threshold met; evicting for disk pressure is not implemented");
            return None;
        }
        let resource = threshold.signal.resource();
        let active = self.host.active_pods().await;
        if active.is_empty() {
            debug!(threshold = %threshold, "eviction threshold met; no pods to evict");
            return None;
        }
        let summary = self.stats.summary();
        let stats: HashMap<&str, &PodStats> = summary
            .pods
            .iter()
            .map(|p| (p.pod_ref.uid.as_str(), p))
            .collect();
        let mut ranked: Vec<&Pod> = active.iter().collect();
        rank::rank_memory(&mut ranked, &stats);
        self.host.threshold_met(resource);
        let quantity = threshold.quantity_text(observation.capacity);
        let available = format_bytes(observation.available);
        for pod in ranked {
            if rank::is_critical(pod) {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let message = rank::eviction_message(
                resource,
                &quantity,
                &available,
                pod,
                stats.get(uid.as_str()).copied(),
            );
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            if self.host.evict(pod, message.clone()).await {
                info!(pod = %name, %namespace, %uid, %message, "evicted a pod");
                return Some(uid);
            }
            warn!(pod = %name, %namespace, %uid, "cannot evict the pod; trying the next one");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{MemoryStats, PodReference, RequestStats, Summary};
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use std::sync::{Arc, Mutex};

    const MI: u64 = 1024 * 1024;

    #[derive(Clone, Default)]
    struct FakeHost {
        memory_available: u64,
        pods: Arc<Mutex<Vec<Pod>>>,
        evicted: Arc<Mutex<Vec<(String, String)>>>,
        events: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl EvictionHost for FakeHost {
        async fn observe(&self) -> Observations {
            Observations {
                memory: Some(Observation {
                    available: self.memory_available,
                    capacity: 1024 * MI,
                }),
                ..Default::default()
            }
        }
        async fn active_pods(&self) -> Vec<Pod> {
            self.pods.lock().map(|p| p.clone()).unwrap_or_default()
        }
        async fn evict(&self, pod: &Pod, message: String) -> bool {
            let name = pod.metadata.name.clone().unwrap_or_default();
            if let Ok(mut pods) = self.pods.lock() {
                pods.retain(|p| p.metadata.name.as_deref() != Some(name.as_str()));
            }
            if let Ok(mut evicted) = self.evicted.lock() {
                evicted.push((name, message));
            }
            true
        }
        fn threshold_met(&self, resource: &str) {
            if let Ok(mut events) = self.events.lock() {
                events.push(format!("Attempting to reclaim {resource}"));
            }
        }
    }

    fn pod(name: &str, priority: Option<i32>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.to_string());
        pod.metadata.uid = Some(name.to_string());
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                ..Default::default()
            }],
            priority,
            ..Default::default()
        });
        pod
    }

    fn summary(used: &[(&str, u64)]) -> StatsHandle {
        let pods = used
            .iter()
            .map(|(uid, bytes)| PodStats {
                pod_ref: PodReference {
                    name: uid.to_string(),
                    namespace: "default".into(),
                    uid: uid.to_string(),
                },
                memory: MemoryStats {
                    working_set_bytes: *bytes,
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect();
        StatsHandle::fixed(
            Summary {
                pods,
                ..Default::default()
            },
            RequestStats::default(),
        )
    }

    fn evicted(host: &FakeHost) -> Vec<String> {
        host.evicted
            .lock()
            .map(|e| e.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn one_pod_is_evicted_per_interval_while_memory_is_low() -> Result<(), ThresholdError> {
        let host = FakeHost {
            memory_available: 50 * MI,
            ..Default::default()
        };
        if let Ok(mut pods) = host.pods.lock() {
            *pods = vec![pod("a", None), pod("b", None), pod("c", None)];
        }
        let (pressure, pressure_rx) = watch::channel(NodePressure::default());
        let manager = EvictionManager::new(
            "memory.available<100Mi".parse()?,
            Duration::from_secs(10),
            host.clone(),
            summary(&[("a", 10 * MI), ("b", 30 * MI), ("c", 20 * MI)]),
            pressure,
        );
        let task = tokio::spawn(manager.run());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(evicted(&host), ["b"], "the first round evicts at once");
        assert!(pressure_rx.borrow().memory);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(evicted(&host), ["b"], "nothing more within the interval");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(evicted(&host), ["b", "c"]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(evicted(&host), ["b", "c", "a"]);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(evicted(&host).len(), 3, "no pods left, none evicted");
        task.abort();
        let messages = host
            .evicted
            .lock()
            .map(|e| e[0].1.clone())
            .unwrap_or_default();
        assert_eq!(
            messages,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        );
        let events = host.events.lock().map(|e| e.clone()).unwrap_or_default();
        assert_eq!(
            events.first().map(String::as_str),
            Some("Attempting to reclaim memory")
        );
        Ok(())
    }

    #[tokio::test]
    async fn critical_pods_are_skipped_and_nothing_is_evicted_without_pressure(
    ) -> Result<(), ThresholdError> {
        let host = FakeHost {
            memory_available: 50 * MI,
            ..Default::default()
        };
        if let Ok(mut pods) = host.pods.lock() {
            *pods = vec![pod("critical", Some(2_000_001_000)), pod("user", None)];
        }
        let (pressure, _rx) = watch::channel(NodePressure::default());
        let stats = summary(&[("critical", 500 * MI), ("user", MI)]);
        let manager = EvictionManager::new(
            "memory.available<100Mi".parse()?,
            MONITORING_INTERVAL,
            host.clone(),
            stats.clone(),
            pressure,
        );
        assert_eq!(manager.synchronize().await.as_deref(), Some("user"));
        assert_eq!(manager.synchronize().await, None);
        assert_eq!(evicted(&host), ["user"]);

        let calm = FakeHost {
            memory_available: 500 * MI,
            ..host.clone()
        };
        if let Ok(mut pods) = calm.pods.lock() {
            pods.push(pod("other", None));
        }
        let (pressure, rx) = watch::channel(NodePressure {
            memory: true,
            disk: false,
        });
        let manager = EvictionManager::new(
            "memory.available<100Mi".parse()?,
            MONITORING_INTERVAL,
            calm.clone(),
            stats,
            pressure,
        );
        assert_eq!(manager.synchronize().await, None);
        assert!(!rx.borrow().memory, "the pressure is lifted");
        Ok(())
    }
}
