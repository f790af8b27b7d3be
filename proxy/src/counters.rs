//! Request and error counters, per Service and per backend pod.
//!
//! The per-Service counters are Prometheus families
//! (`skiff_service_requests_total{namespace,service,code_class}` and
//! `skiff_service_errors_total{namespace,service}`); the per-pod ones are
//! cumulative totals read with [`Counters::snapshot_pods`] (the node agent
//! turns them into rates). A connection looks its counters up once and
//! then only increments atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of `skiff_service_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub namespace: String,
    pub service: String,
    /// `1xx`..`5xx`, `none` for a connection that was not HTTP, or `failed`
    /// when no backend could be reached.
    pub code_class: String,
}

/// Labels of `skiff_service_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub namespace: String,
    pub service: String,
}

/// Cumulative counts of one backend pod.
#[derive(Debug, Default)]
pub struct PodCounter {
    requests: AtomicU64,
    errors: AtomicU64,
}

impl PodCounter {
    pub fn record(&self, error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One pod's cumulative counts, as [`Counters::snapshot_pods`] returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCount {
    pub namespace: String,
    pub pod: String,
    pub requests: u64,
    pub errors: u64,
}

/// Per-pod counters keyed by (namespace, pod).
type PodCounters = HashMap<(String, String), Arc<PodCounter>>;

/// All counters of one proxy; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    requests: Family<RequestLabels, Counter>,
    errors: Family<ServiceLabels, Counter>,
    pods: Arc<Mutex<PodCounters>>,
}

/// The code classes, in the order of [`ServiceCounter`]'s cache.
const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none", "failed"];

/// The counters a connection to one Service updates (shared by every
/// connection to it: label sets are looked up once per class).
#[derive(Debug, Clone)]
pub struct ServiceCounter {
    counters: Counters,
    namespace: String,
    service: String,
    errors: Counter,
    by_class: Arc<[OnceLock<Counter>; 7]>,
}

impl ServiceCounter {
    /// Counts one response (or connection) of class `code_class`.
    pub fn record(&self, code_class: &str, error: bool) {
        let index = CLASSES.iter().position(|c| *c == code_class).unwrap_or(5);
        self.by_class[index]
            .get_or_init(|| {
                self.counters
                    .requests
                    .get_or_create(&RequestLabels {
                        namespace: self.namespace.clone(),
                        service: self.service.clone(),
                        code_class: CLASSES[index].to_string(),
                    })
                    .clone()
            })
            .inc();
        if error {
            self.errors.inc();
        }
    }

    /// Counts one HTTP response with `status`; 5xx is an error.
    pub fn record_status(&self, status: u16) {
        self.record(code_class(status), status >= 500);
    }
}

/// `2xx` for 200..=299 and so on.
pub fn code_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

impl Counters {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of Service `namespace/service`.
    pub fn service(&self, namespace: &str, service: &str) -> ServiceCounter {
        let errors = self
            .errors
            .get_or_create(&ServiceLabels {
                namespace: namespace.to_string(),
                service: service.to_string(),
            })
            .clone();
        ServiceCounter {
            counters: self.clone(),
            namespace: namespace.to_string(),
            service: service.to_string(),
            errors,
            by_class: Arc::new(Default::default()),
        }
    }

    /// The counters of backend pod `namespace/pod`.
    pub fn pod(&self, namespace: &str, pod: &str) -> Arc<PodCounter> {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.entry((namespace.to_string(), pod.to_string()))
            .or_default()
            .clone()
    }

    /// Cumulative requests and errors of every backend pod seen since start.
    pub fn snapshot_pods(&self) -> Vec<PodCount> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<PodCount> = pods
            .iter()
            .map(|((namespace, pod), c)| PodCount {
                namespace: namespace.clone(),
                pod: pod.clone(),
                requests: c.requests.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
        out
    }

    /// Registers the per-Service families into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "skiff_service_requests",
            "Requests (HTTP responses, or connections that were not HTTP) through the service proxy",
            self.requests.clone(),
        );
        registry.register(
            "skiff_service_errors",
            "Failed requests through the service proxy: 5xx responses and connections no backend accepted",
            self.errors.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_snapshots_are_cumulative_and_sorted() {
        let counters = Counters::new();
        counters.pod("default", "web-b").record(false);
        let a = counters.pod("default", "web-a");
        a.record(false);
        a.record(true);
        let snap = counters.snapshot_pods();
        assert_eq!(snap.len(), 2);
        assert_eq!(
            snap[0],
            PodCount {
                namespace: "default".into(),
                pod: "web-a".into(),
                requests: 2,
                errors: 1
            }
        );
    }

    #[test]
    fn service_counters_are_exported_with_kubernetes_style_labels() {
        let counters = Counters::new();
        let web = counters.service("default", "web");
        web.record_status(200);
        web.record_status(503);
        let mut registry = Registry::default();
        counters.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(
                r#"skiff_service_requests_total{namespace="default",service="web",code_class="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"skiff_service_errors_total{namespace="default",service="web"} 1"#),
            "{text}"
        );
    }
}
