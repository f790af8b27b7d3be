//! The resource metrics API (`metrics.k8s.io/v1beta1`: `PodMetrics`,
//! `NodeMetrics`, for `kubectl top` and the HPA) and the custom metrics API
//! (`custom.metrics.k8s.io/v1beta2`: `requests_per_second` and
//! `errors_per_second` of pods and services), built like metrics-server
//! does: by asking every Ready node's agent for `/stats/summary` (or
//! `/stats/requests`) concurrently. A node that fails or is slow is skipped;
//! answers are cached for [`AgentsConfig::cache_ttl`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::{ApiError, ApiResult, Target};
use crate::handlers::ApiState;
use crate::nodeclient::{is_ready, NodeClient, NodeEndpoint};
use crate::selector::LabelSelector;
use crate::watchcache::decode_object;

mod custom;
mod discovery;

use custom::custom_metrics;
pub use discovery::{aggregated_resources, resource_list};

/// The resource metrics group.
pub const METRICS_GROUP: &str = "metrics.k8s.io";
/// The custom metrics group.
pub const CUSTOM_METRICS_GROUP: &str = "custom.metrics.k8s.io";
/// The served groups and their one version, for discovery.
pub const GROUPS: &[(&str, &str)] = &[
    (METRICS_GROUP, "v1beta1"),
    (CUSTOM_METRICS_GROUP, "v1beta2"),
];
/// The custom metrics served for pods and services.
pub const CUSTOM_METRICS: &[&str] = &["requests_per_second", "errors_per_second"];

/// Timing of the fan-out to the agents.
#[derive(Debug, Clone, Copy)]
pub struct AgentsConfig {
    /// How long one node may take to answer.
    pub timeout: Duration,
    /// How long an answer is reused.
    pub cache_ttl: Duration,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_millis(500),
        }
    }
}

/// The subset of the Summary API read here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    #[serde(default)]
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub cpu: CpuStats,
    #[serde(default)]
    pub memory: MemoryStats,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Option<String>,
    pub usage_nano_cores: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Option<String>,
    pub working_set_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodRef,
    #[serde(default)]
    pub containers: Vec<ContainerStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerStats {
    pub name: String,
    #[serde(default)]
    pub cpu: CpuStats,
    #[serde(default)]
    pub memory: MemoryStats,
}

/// `/stats/requests` of one agent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestStats {
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub pods: Vec<PodRequestRate>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRequestRate {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub requests_per_second: f64,
    #[serde(default)]
    pub errors_per_second: f64,
}

type Cached<T> = Mutex<Option<(Instant, Arc<Vec<T>>)>>;

/// The agents, as the metrics APIs and `pods/log` reach them.
#[derive(Debug)]
pub struct Agents {
    client: NodeClient,
    config: AgentsConfig,
    summaries: Cached<Summary>,
    requests: Cached<RequestStats>,
}

impl Agents {
    /// Agents reached with `client`.
    pub fn new(client: NodeClient, config: AgentsConfig) -> Self {
        Self {
            client,
            config,
            summaries: Mutex::new(None),
            requests: Mutex::new(None),
        }
    }

    /// The HTTPS client.
    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    async fn fan_out<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        state: &ApiState,
        cache: &Cached<T>,
        path: &str,
    ) -> ApiResult<Arc<Vec<T>>> {
        let mut cached = cache.lock().await;
        if let Some((at, value)) = cached.as_ref() {
            if at.elapsed() < self.config.cache_ttl {
                return Ok(value.clone());
            }
        }
        let nodes = list(state, "/registry/core/nodes/", "nodes").await?;
        let calls = nodes
            .iter()
            .filter(|n| is_ready(n))
            .filter_map(NodeEndpoint::of)
            .map(|endpoint| {
                let client = self.client.clone();
                let timeout = self.config.timeout;
                let path = path.to_string();
                async move {
                    let result = client.get_json::<T>(&endpoint, &path, timeout).await;
                    if let Err(error) = &result {
                        tracing::debug!(node = %endpoint.node, %error, "skipping a node's metrics");
                    }
                    result.ok()
                }
            });
        let answers: Vec<T> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        let answers = Arc::new(answers);
        *cached = Some((Instant::now(), answers.clone()));
        Ok(answers)
    }

    async fn summaries(&self, state: &ApiState) -> ApiResult<Arc<Vec<Summary>>> {
        self.fan_out(state, &self.summaries, "/stats/summary").await
    }

    async fn request_stats(&self, state: &ApiState) -> ApiResult<Arc<Vec<RequestStats>>> {
        self.fan_out(state, &self.requests, "/stats/requests").await
    }
}

/// CPU in nanocores as a Kubernetes quantity in its canonical form
/// (`250m`, `1`, `12345n`).
pub fn cpu_quantity(nano_cores: u64) -> String {
    if nano_cores == 0 {
        "0".to_string()
    } else if nano_cores.is_multiple_of(1_000_000_000) {
        format!("{}", nano_cores / 1_000_000_000)
    } else if nano_cores.is_multiple_of(1_000_000) {
        format!("{}m", nano_cores / 1_000_000)
    } else if nano_cores.is_multiple_of(1_000) {
        format!("{}u", nano_cores / 1_000)
    } else {
        format!("{nano_cores}n")
    }
}

/// Bytes as a binary quantity (`Ki`, as metrics-server reports memory).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// A per-second rate as a quantity with milli precision (`1500m`, `2`).
pub fn rate_quantity(rate: f64) -> String {
    let milli = (rate.max(0.0) * 1000.0).round() as u64;
    if milli.is_multiple_of(1000) {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    }
}

async fn list(state: &ApiState, prefix: &str, kind: &str) -> ApiResult<Vec<Value>> {
    let target = Target::new("", kind, "");
    let result = state
        .store
        .list(prefix, None, 0)
        .await
        .map_err(|e| ApiError::from_store(e, &target))?;
    result
        .items
        .iter()
        .map(|kv| {
            decode_object(&kv.value, kv.mod_revision).map_err(|e| ApiError::from_store(e, &target))
        })
        .collect()
}

async fn get(state: &ApiState, key: &str, target: Target) -> ApiResult<Value> {
    let kv = state
        .store
        .get(key)
        .await
        .map_err(|e| ApiError::from_store(e, &target))?
        .ok_or_else(|| ApiError::NotFound(target.clone()))?;
    decode_object(&kv.value, kv.mod_revision).map_err(|e| ApiError::from_store(e, &target))
}

fn selector(query: &HashMap<String, String>) -> ApiResult<LabelSelector> {
    match query.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::BadRequest(format!("invalid labelSelector: {e}"))),
        None => Ok(LabelSelector::everything()),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn metadata_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut out = Map::new();
    for key in ["name", "namespace", "labels"] {
        if !meta[key].is_null() {
            out.insert(key.into(), meta[key].clone());
        }
    }
    out.insert("creationTimestamp".into(), now().into());
    Value::Object(out)
}

/// The `PodMetrics` of `pod` from `stats`; `None` until every container
/// has a CPU rate (the agent needs two samples).
pub fn pod_metrics(pod: &Value, stats: &PodStats) -> Option<Value> {
    let mut containers = Vec::new();
    let mut timestamp = None;
    for c in &stats.containers {
        let cpu = c.cpu.usage_nano_cores?;
        timestamp = timestamp.or(c.cpu.time.clone());
        containers.push(json!({
            "name": c.name,
            "usage": {
                "cpu": cpu_quantity(cpu),
                "memory": memory_quantity(c.memory.working_set_bytes.unwrap_or(0)),
            },
        }));
    }
    if containers.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": metadata_of(pod),
        "timestamp": timestamp.unwrap_or_else(now),
        "window": "1s",
        "containers": containers,
    }))
}

/// The `NodeMetrics` of `node` from its summary.
pub fn node_metrics(node: &Value, stats: &NodeStats) -> Option<Value> {
    let cpu = stats.cpu.usage_nano_cores?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": metadata_of(node),
        "timestamp": stats.cpu.time.clone().unwrap_or_else(now),
        "window": "1s",
        "usage": {
            "cpu": cpu_quantity(cpu),
            "memory": memory_quantity(stats.memory.working_set_bytes.unwrap_or(0)),
        },
    }))
}

fn list_of(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": kind,
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": items,
    })
}

fn json_response(body: Value) -> Response {
    let mut r = axum::Json(body).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves `/apis/{rest}` when it is a resource of the metrics groups;
/// `None` for anything else (discovery documents included).
pub(crate) async fn route(
    state: &ApiState,
    method: &Method,
    rest: &str,
    query: Option<&str>,
) -> Option<Response> {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let group = *segments.first()?;
    if !GROUPS.iter().any(|(g, _)| *g == group) || segments.len() <= 2 {
        return None;
    }
    let query: HashMap<String, String> = query.map(url_pairs).unwrap_or_default();
    let result = if method != Method::GET {
        Err(ApiError::MethodNotAllowed)
    } else {
        match segments.as_slice() {
            [METRICS_GROUP, "v1beta1", rest @ ..] => resource_metrics(state, rest, &query).await,
            [CUSTOM_METRICS_GROUP, "v1beta2", rest @ ..] => {
                custom_metrics(state, rest, &query).await
            }
            _ => Err(ApiError::UnknownResource),
        }
    };
    let mut response = match result {
        Ok(body) => json_response(body),
        Err(e) => e.into_response(),
    };
    // apiserver_request_total / _duration_seconds labels.
    let (group, resource) = if group == METRICS_GROUP {
        let nodes = segments.get(2) == Some(&"nodes");
        (METRICS_GROUP, if nodes { "nodes" } else { "pods" })
    } else {
        let services = segments.get(4) == Some(&"services");
        (
            CUSTOM_METRICS_GROUP,
            if services { "services" } else { "pods" },
        )
    };
    let named = match group {
        METRICS_GROUP => segments.len().is_multiple_of(2),
        _ => segments.get(5) != Some(&"*"),
    };
    response
        .extensions_mut()
        .insert(crate::metrics::RequestLabels {
            verb: if named { "GET" } else { "LIST" },
            group,
            resource,
            subresource: String::new(),
        });
    Some(response)
}

/// Decodes `a=b&c=d` (percent-encoding and `+`).
fn url_pairs(query: &str) -> HashMap<String, String> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match (
                bytes[i],
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (b'+', _, _) => out.push(b' '),
                (b'%', Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                (b, _, _) => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).to_string()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

async fn resource_metrics(
    state: &ApiState,
    path: &[&str],
    query: &HashMap<String, String>,
) -> ApiResult<Value> {
    let selector = selector(query)?;
    match path {
        ["nodes"] | ["nodes", _] => {
            let name = path.get(1).copied();
            let summaries = state.agents.summaries(state).await?;
            let nodes = match name {
                Some(n) => vec![
                    get(
                        state,
                        &format!("/registry/core/nodes/{n}"),
                        Target::new(METRICS_GROUP, "nodemetrics", n),
                    )
                    .await?,
                ],
                None => list(state, "/registry/core/nodes/", "nodes").await?,
            };
            let items: Vec<Value> = nodes
                .iter()
                .filter(|n| name.is_some() || selector.matches_object(n))
                .filter_map(|node| {
                    let node_name = node["metadata"]["name"].as_str()?;
                    let stats = summaries.iter().find(|s| s.node.node_name == node_name)?;
                    node_metrics(node, &stats.node)
                })
                .collect();
            match name {
                Some(n) => items.into_iter().next().ok_or_else(|| {
                    ApiError::NotFound(Target::new(METRICS_GROUP, "nodemetrics", n))
                }),
                None => Ok(list_of("NodeMetricsList", items)),
            }
        }
        ["pods"] => pods_metrics(state, None, None, &selector).await,
        ["namespaces", ns, "pods"] => pods_metrics(state, Some(ns), None, &selector).await,
        ["namespaces", ns, "pods", name] => {
            pods_metrics(state, Some(ns), Some(name), &selector).await
        }
        _ => Err(ApiError::UnknownResource),
    }
}

async fn pods_metrics(
    state: &ApiState,
    namespace: Option<&str>,
    name: Option<&str>,
    selector: &LabelSelector,
) -> ApiResult<Value> {
    let summaries = state.agents.summaries(state).await?;
    let pods = match (namespace, name) {
        (Some(ns), Some(n)) => vec![
            get(
                state,
                &format!("/registry/core/pods/{ns}/{n}"),
                Target::new(METRICS_GROUP, "podmetrics", n),
            )
            .await?,
        ],
        (Some(ns), None) => list(state, &format!("/registry/core/pods/{ns}/"), "pods").await?,
        _ => list(state, "/registry/core/pods/", "pods").await?,
    };
    let stats: HashMap<(&str, &str), &PodStats> = summaries
        .iter()
        .flat_map(|s| &s.pods)
        .map(|p| ((p.pod_ref.namespace.as_str(), p.pod_ref.name.as_str()), p))
        .collect();
    let items: Vec<Value> = pods
        .iter()
        .filter(|p| name.is_some() || selector.matches_object(p))
        .filter_map(|pod| {
            let ns = pod["metadata"]["namespace"].as_str()?;
            let pod_name = pod["metadata"]["name"].as_str()?;
            pod_metrics(pod, stats.get(&(ns, pod_name))?)
        })
        .collect();
    match name {
        Some(n) => items
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::NotFound(Target::new(METRICS_GROUP, "podmetrics", n))),
        None => Ok(list_of("PodMetricsList", items)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_written_in_the_canonical_quantity_form() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(12_345), "12345n");
        assert_eq!(cpu_quantity(5_000_000), "5m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(7_000), "7u");
    }

    #[test]
    fn memory_is_written_in_kibibytes() {
        assert_eq!(memory_quantity(4096), "4Ki");
        assert_eq!(memory_quantity(1000), "1000");
    }

    #[test]
    fn rates_keep_milli_precision() {
        assert_eq!(rate_quantity(1.5), "1500m");
        assert_eq!(rate_quantity(2.0), "2");
        assert_eq!(rate_quantity(-1.0), "0");
    }

    #[test]
    fn pod_metrics_need_a_cpu_rate_for_every_container() {
        let pod =
            json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}});
        let mut stats = PodStats {
            pod_ref: PodRef {
                name: "web".into(),
                namespace: "default".into(),
            },
            containers: vec![ContainerStats {
                name: "app".into(),
                cpu: CpuStats {
                    time: Some("2026-11-22T00:00:00Z".into()),
                    usage_nano_cores: None,
                },
                memory: MemoryStats {
                    time: None,
                    working_set_bytes: Some(8192),
                },
            }],
        };
        assert_eq!(pod_metrics(&pod, &stats), None);
        stats.containers[0].cpu.usage_nano_cores = Some(250_000_000);
        let metrics = pod_metrics(&pod, &stats).expect("metrics");
        assert_eq!(metrics["kind"], "PodMetrics");
        assert_eq!(metrics["metadata"]["labels"]["app"], "web");
        assert_eq!(metrics["timestamp"], "2026-11-22T00:00:00Z");
        assert_eq!(
            metrics["containers"][0]["usage"],
            json!({"cpu": "250m", "memory": "8Ki"})
        );
    }

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = url_pairs("labelSelector=app%3Dweb%2Ctier+in+(a)&x");
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["x"], "");
    }
}
