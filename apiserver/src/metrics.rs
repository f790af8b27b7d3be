//! Prometheus metrics of the API server, under Kubernetes' metric names.

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// What a handler tells the metrics layer about the request it served.
#[derive(Clone, Debug, Default)]
pub struct RequestLabels {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TotalLabels {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
}

/// Text from another in-process component's registry, served on the same
/// `/metrics` (the scheduler and controllers run inside `skiff up`).
pub type Collector = Arc<dyn Fn() -> String + Send + Sync>;

/// The registry and the request metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    collectors: Mutex<Vec<Collector>>,
    requests: Family<TotalLabels, Counter>,
    durations: Family<DurationLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<TotalLabels, Counter>::default();
        // Buckets from 0.5 ms to about 32 s, doubling.
        let durations = Family::<DurationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 17))
        });
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, resource and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, resource and subresource",
            durations.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            collectors: Mutex::new(Vec::new()),
            requests,
            durations,
        }
    }

    pub fn observe(&self, labels: &RequestLabels, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&TotalLabels {
                verb: labels.verb.to_string(),
                group: labels.group.to_string(),
                resource: labels.resource.to_string(),
                subresource: labels.subresource.clone(),
                code: code.to_string(),
            })
            .inc();
        // Watches last as long as the client wants; Kubernetes leaves them out too.
        if labels.verb != "WATCH" {
            self.durations
                .get_or_create(&DurationLabels {
                    verb: labels.verb.to_string(),
                    group: labels.group.to_string(),
                    resource: labels.resource.to_string(),
                    subresource: labels.subresource.clone(),
                })
                .observe(seconds);
        }
    }

    /// Adds another component's metrics to this server's `/metrics`.
    pub fn add_collector(&self, collector: Collector) {
        self.collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(collector);
    }

    /// The OpenMetrics text exposition: this server's metrics, then every
    /// collector's, with one `# EOF` at the end.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        drop(registry);
        let collectors = self
            .collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut text = strip_eof(&out).to_string();
        for c in collectors {
            text.push_str(strip_eof(&c()));
        }
        text.push_str("# EOF\n");
        text
    }
}

fn strip_eof(text: &str) -> &str {
    text.strip_suffix("# EOF\n").unwrap_or(text)
}

/// Middleware recording every resource request.
pub async fn record(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let resp = next.run(req).await;
    if let Some(labels) = resp.extensions().get::<RequestLabels>() {
        metrics.observe(
            labels,
            resp.status().as_u16(),
            start.elapsed().as_secs_f64(),
        );
    }
    resp
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Arc<Metrics>>) -> Response {
    let mut r = metrics.encode().into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_verb_resource_and_code() {
        let m = Metrics::new();
        let l = RequestLabels {
            verb: "LIST",
            group: "",
            resource: "pods",
            subresource: String::new(),
        };
        m.observe(&l, 200, 0.01);
        m.observe(&l, 200, 0.02);
        let text = m.encode();
        assert!(text.contains("apiserver_request_total{verb=\"LIST\",group=\"\",resource=\"pods\",subresource=\"\",code=\"200\"} 2"), "{text}");
        assert!(
            text.contains("apiserver_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
