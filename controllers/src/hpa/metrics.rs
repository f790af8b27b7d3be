//! Metrics through the API: `metrics.k8s.io/v1beta1` PodMetrics and
//! `custom.metrics.k8s.io/v1beta2` MetricValueLists, behind
//! [`MetricsSource`] so the controller's logic can be tested with fakes.
//! k8s-openapi has no types for these groups; the structs here hold the
//! fields the controller reads.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v2::CrossVersionObjectReference;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use serde::Deserialize;

use super::quantity::{milli_value, parse_go_duration};
use super::replicas::{PodMetric, PodMetricsInfo};

/// `metrics.k8s.io/v1beta1` `PodMetricsList`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodMetricsList {
    #[serde(default)]
    pub items: Vec<PodMetrics>,
}

/// `metrics.k8s.io/v1beta1` `PodMetrics`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodMetrics {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub timestamp: Option<Time>,
    /// A Go duration (`"1s"`).
    #[serde(default)]
    pub window: String,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// One container's usage (`cpu`, `memory`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerMetrics {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// `custom.metrics.k8s.io/v1beta2` `MetricValueList`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MetricValueList {
    #[serde(default)]
    pub items: Vec<MetricValue>,
}

/// `custom.metrics.k8s.io/v1beta2` `MetricValue`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValue {
    #[serde(default)]
    pub described_object: ObjectReference,
    #[serde(default)]
    pub metric: MetricIdentifier,
    pub timestamp: Option<Time>,
    pub window_seconds: Option<i64>,
    pub value: Quantity,
}

/// The metric's name and selector as a MetricValue reports them.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MetricIdentifier {
    #[serde(default)]
    pub name: String,
    pub selector: Option<LabelSelector>,
}

/// Why a metric could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The resource metrics API failed (or is not served).
    #[error("unable to fetch metrics from resource metrics API: {}", message(.0))]
    ResourceApi(#[source] kube::Error),
    /// The custom metrics API failed (or is not served).
    #[error("unable to fetch metrics from custom metrics API: {}", message(.0))]
    CustomApi(#[source] kube::Error),
    /// The request could not be built.
    #[error("invalid metrics request: {0}")]
    Request(#[from] http::Error),
    #[error("no metrics returned from resource metrics API")]
    NoResourceMetrics,
    #[error("no metrics returned from custom metrics API")]
    NoCustomMetrics,
    #[error("unable to parse the value {0:?}")]
    BadValue(String),
    /// The described object's kind is unknown.
    #[error("{0}")]
    Resolve(#[from] super::scale::ResolveError),
}

/// Where the controller reads metrics. `selector` and `metric_selector`
/// are label selector strings (`app=web`), empty for none.
pub trait MetricsSource: Send + Sync {
    /// PodMetrics of the pods matching `selector` in `namespace`.
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, MetricsError>>;

    /// A custom metric of each pod matching `selector`.
    fn pods_metric<'a>(
        &'a self,
        namespace: &'a str,
        metric: &'a str,
        selector: &'a str,
        metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<MetricValueList, MetricsError>>;

    /// A custom metric of one object (`describedObject`).
    fn object_metric<'a>(
        &'a self,
        namespace: &'a str,
        object: &'a CrossVersionObjectReference,
        metric: &'a str,
        metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<MetricValueList, MetricsError>>;
}

/// An API error as Kubernetes prints it: the Status message alone.
pub fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        e => e.to_string(),
    }
}

/// The default window when a custom metric reports none (upstream's
/// `metricServerDefaultMetricWindow`).
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Each pod's usage of `resource`, summed over its containers (or only
/// `container`). A pod missing a container's sample has no sample at all.
pub fn resource_samples(
    list: &[PodMetrics],
    resource: &str,
    container: Option<&str>,
) -> PodMetricsInfo {
    let mut out = PodMetricsInfo::new();
    for m in list {
        let containers: Vec<&ContainerMetrics> = m
            .containers
            .iter()
            .filter(|c| container.is_none_or(|want| want == c.name))
            .collect();
        if containers.is_empty() {
            continue;
        }
        let mut sum = 0i64;
        let mut missing = false;
        for c in containers {
            match c.usage.get(resource).and_then(milli_value) {
                Some(v) => sum += v,
                None => {
                    missing = true;
                    break;
                }
            }
        }
        let (Some(name), Some(timestamp), false) =
            (m.metadata.name.clone(), m.timestamp.as_ref(), missing)
        else {
            continue;
        };
        out.insert(
            name,
            PodMetric {
                value: sum,
                timestamp: timestamp.0,
                window: parse_go_duration(&m.window).unwrap_or_default(),
            },
        );
    }
    out
}

/// Each pod's value of a custom metric.
pub fn custom_samples(list: &MetricValueList) -> Result<PodMetricsInfo, MetricsError> {
    if list.items.is_empty() {
        return Err(MetricsError::NoCustomMetrics);
    }
    let mut out = PodMetricsInfo::new();
    for item in &list.items {
        let value =
            milli_value(&item.value).ok_or_else(|| MetricsError::BadValue(item.value.0.clone()))?;
        let Some(name) = item.described_object.name.clone() else {
            continue;
        };
        out.insert(
            name,
            PodMetric {
                value,
                timestamp: item
                    .timestamp
                    .as_ref()
                    .map_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH, |t| t.0),
                window: item
                    .window_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(DEFAULT_WINDOW, Duration::from_secs),
            },
        );
    }
    Ok(out)
}

/// The value of an object's custom metric (the first item).
pub fn object_value(list: &MetricValueList) -> Result<i64, MetricsError> {
    let item = list.items.first().ok_or(MetricsError::NoCustomMetrics)?;
    milli_value(&item.value).ok_or_else(|| MetricsError::BadValue(item.value.0.clone()))
}

/// Reads metrics from the API server with a kube client.
#[derive(Clone)]
pub struct ApiMetrics {
    client: kube::Client,
}

impl ApiMetrics {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
        api: fn(kube::Error) -> MetricsError,
    ) -> Result<T, MetricsError> {
        let request = http::Request::get(path).body(Vec::new())?;
        self.client.request::<T>(request).await.map_err(api)
    }
}

const METRICS_API: &str = "/apis/metrics.k8s.io/v1beta1";
const CUSTOM_METRICS_API: &str = "/apis/custom.metrics.k8s.io/v1beta2";

fn query(params: &[(&str, &str)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Encodes one path segment (names and metric names never contain `/`).
fn segment(v: &str) -> String {
    encode(v)
}

impl MetricsSource for ApiMetrics {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, MetricsError>> {
        Box::pin(async move {
            let path = format!(
                "{METRICS_API}/namespaces/{}/pods{}",
                segment(namespace),
                query(&[("labelSelector", selector)])
            );
            let list: PodMetricsList = self.get(path, MetricsError::ResourceApi).await?;
            if list.items.is_empty() {
                return Err(MetricsError::NoResourceMetrics);
            }
            Ok(list.items)
        })
    }

    fn pods_metric<'a>(
        &'a self,
        namespace: &'a str,
        metric: &'a str,
        selector: &'a str,
        metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<MetricValueList, MetricsError>> {
        Box::pin(async move {
            let path = format!(
                "{CUSTOM_METRICS_API}/namespaces/{}/pods/*/{}{}",
                segment(namespace),
                segment(metric),
                query(&[
                    ("labelSelector", selector),
                    ("metricLabelSelector", metric_selector)
                ])
            );
            self.get(path, MetricsError::CustomApi).await
        })
    }

    fn object_metric<'a>(
        &'a self,
        namespace: &'a str,
        object: &'a CrossVersionObjectReference,
        metric: &'a str,
        metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<MetricValueList, MetricsError>> {
        Box::pin(async move {
            let api_version = object.api_version.as_deref().unwrap_or("v1");
            let resource = super::scale::resolve(&self.client, api_version, &object.kind).await?;
            let path = format!(
                "{CUSTOM_METRICS_API}/namespaces/{}/{}/{}/{}{}",
                segment(namespace),
                segment(&super::scale::qualified_plural(&resource)),
                segment(&object.name),
                segment(metric),
                query(&[("metricLabelSelector", metric_selector)])
            );
            self.get(path, MetricsError::CustomApi).await
        })
    }
}

/// A label selector as the string form the API takes
/// (`app=web,tier in (a,b),!legacy`); empty for none.
pub fn selector_string(selector: Option<&LabelSelector>) -> String {
    let Some(s) = selector else {
        return String::new();
    };
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let mut sorted = values.to_vec();
        sorted.sort();
        let list = sorted.join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({list})", e.key),
            "NotIn" => format!("{} notin ({list})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({list})", e.key),
        });
    }
    parts.join(",")
}

#[cfg(test)]
#[path = "metrics_api_tests.rs"]
mod api_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    #[test]
    fn pod_metrics_sum_their_containers_and_skip_incomplete_pods() {
        let list: PodMetricsList = serde_json::from_value(json!({"items": [
            {"metadata": {"name": "a"}, "timestamp": "2026-01-01T00:00:00Z", "window": "1s",
             "containers": [{"name": "c1", "usage": {"cpu": "100m", "memory": "1Mi"}},
                            {"name": "c2", "usage": {"cpu": "50m", "memory": "1Mi"}}]},
            {"metadata": {"name": "b"}, "timestamp": "2026-01-01T00:00:00Z", "window": "1s",
             "containers": [{"name": "c1", "usage": {"memory": "1Mi"}}]},
        ]}))
        .expect("decodes");
        let cpu = resource_samples(&list.items, "cpu", None);
        assert_eq!(cpu.len(), 1);
        assert_eq!(cpu["a"].value, 150);
        assert_eq!(cpu["a"].window, Duration::from_secs(1));
        let c2 = resource_samples(&list.items, "cpu", Some("c2"));
        assert_eq!(c2["a"].value, 50);
        assert!(!c2.contains_key("b"));
    }

    #[test]
    fn custom_metric_values_decode_per_pod() {
        let list: MetricValueList = serde_json::from_value(json!({"items": [
            {"describedObject": {"kind": "Pod", "name": "a", "namespace": "default"},
             "metric": {"name": "requests_per_second"}, "timestamp": "2026-01-01T00:00:00Z",
             "windowSeconds": 1, "value": "2500m"},
        ]}))
        .expect("decodes");
        let samples = custom_samples(&list).expect("samples");
        assert_eq!(samples["a"].value, 2500);
        assert_eq!(object_value(&list).expect("value"), 2500);
        assert!(matches!(
            custom_samples(&MetricValueList::default()),
            Err(MetricsError::NoCustomMetrics)
        ));
    }

    #[test]
    fn label_selectors_print_as_query_strings() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["b".into(), "a".into()]),
            }]),
        };
        assert_eq!(selector_string(Some(&sel)), "app=web,tier in (a,b)");
        assert_eq!(
            query(&[("labelSelector", "app=web,tier in (a,b)")]),
            "?labelSelector=app%3Dweb%2Ctier%20in%20%28a%2Cb%29"
        );
    }
}
