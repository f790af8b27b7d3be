//! Prometheus metrics with kube-scheduler's names:
//! `scheduler_schedule_attempts_total{result, profile}`,
//! `scheduler_scheduling_attempt_duration_seconds{result, profile}`,
//! `scheduler_pending_pods{queue}`, `scheduler_preemption_attempts_total`.
//!
//! [`Metrics`] is a cheap cloneable handle; the binary serves
//! [`Metrics::encode`] on its `/metrics` endpoint.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::queue::Depth;

/// The outcome of one scheduling attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Scheduled,
    Unschedulable,
    Error,
}

impl AttemptResult {
    fn label(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

type Labels = Vec<(&'static str, &'static str)>;

struct Inner {
    registry: Registry,
    attempts: Family<Labels, Counter>,
    duration: Family<Labels, Histogram>,
    pending: Family<Labels, Gauge>,
    preemption_attempts: Counter,
}

/// The scheduler's metrics.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn new_histogram() -> Histogram {
    // 1ms .. ~16s, as kube-scheduler's buckets.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let attempts = Family::<Labels, Counter>::default();
        let duration =
            Family::<Labels, Histogram>::new_with_constructor(new_histogram as fn() -> Histogram);
        let pending = Family::<Labels, Gauge>::default();
        let preemption_attempts = Counter::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result.",
            attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding).",
            duration.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type.",
            pending.clone(),
        );
        registry.register(
            "scheduler_preemption_attempts",
            "Total preemption attempts in the cluster till now.",
            preemption_attempts.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                attempts,
                duration,
                pending,
                preemption_attempts,
            }),
        }
    }

    pub fn observe_attempt(&self, result: AttemptResult, took: Duration) {
        let labels = vec![("result", result.label()), ("profile", "default-scheduler")];
        self.inner.attempts.get_or_create(&labels).inc();
        self.inner
            .duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn observe_preemption_attempt(&self) {
        self.inner.preemption_attempts.inc();
    }

    pub fn set_pending(&self, depth: Depth) {
        for (queue, n) in [
            ("active", depth.active),
            ("backoff", depth.backoff),
            ("unschedulable", depth.unschedulable),
        ] {
            self.inner
                .pending
                .get_or_create(&vec![("queue", queue)])
                .set(n as i64);
        }
    }

    /// How many attempts ended with `result` so far.
    pub fn attempts(&self, result: AttemptResult) -> u64 {
        let labels = vec![("result", result.label()), ("profile", "default-scheduler")];
        self.inner.attempts.get_or_create(&labels).get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_durations_and_queue_depth_are_exported_with_kubernetes_names() {
        let m = Metrics::new();
        m.observe_attempt(AttemptResult::Scheduled, Duration::from_millis(3));
        m.observe_attempt(AttemptResult::Unschedulable, Duration::from_millis(1));
        m.set_pending(Depth {
            active: 2,
            backoff: 1,
            unschedulable: 4,
        });
        let text = m.encode();
        assert!(text.contains(r#"scheduler_schedule_attempts_total{result="scheduled",profile="default-scheduler"} 1"#), "{text}");
        assert!(
            text.contains("scheduler_scheduling_attempt_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"scheduler_pending_pods{queue="unschedulable"} 4"#),
            "{text}"
        );
        assert_eq!(m.attempts(AttemptResult::Scheduled), 1);
    }
}
