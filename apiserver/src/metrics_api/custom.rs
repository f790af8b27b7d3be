//! `custom.metrics.k8s.io/v1beta2`: `requests_per_second` and
//! `errors_per_second` of pods (summed over the nodes' reports) and of
//! services (summed over the pods their selector matches).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{
    get, list, now, rate_quantity, selector, RequestStats, CUSTOM_METRICS, CUSTOM_METRICS_GROUP,
};
use crate::error::{ApiError, ApiResult, Target};
use crate::handlers::ApiState;

/// One `MetricValue` of the custom metrics API.
fn metric_value(
    kind: &str,
    namespace: &str,
    name: &str,
    metric: &str,
    value: f64,
    time: &str,
) -> Value {
    json!({
        "describedObject": {"kind": kind, "namespace": namespace, "name": name, "apiVersion": "/v1"},
        "metric": {"name": metric},
        "timestamp": time,
        "windowSeconds": 1,
        "value": rate_quantity(value),
    })
}

/// Per `(namespace, pod)`: the metric summed over every node's report.
fn rates_by_pod(stats: &[RequestStats], metric: &str) -> HashMap<(String, String), f64> {
    let mut out: HashMap<(String, String), f64> = HashMap::new();
    for node in stats {
        for pod in &node.pods {
            let value = if metric == "errors_per_second" {
                pod.errors_per_second
            } else {
                pod.requests_per_second
            };
            *out.entry((pod.namespace.clone(), pod.name.clone()))
                .or_default() += value;
        }
    }
    out
}

fn is_running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && pod["metadata"]["deletionTimestamp"].is_null()
}

pub(super) async fn custom_metrics(
    state: &ApiState,
    path: &[&str],
    query: &HashMap<String, String>,
) -> ApiResult<Value> {
    let (ns, resource, name, metric) = match path {
        ["namespaces", ns, resource @ ("pods" | "services"), name, metric] => {
            (*ns, *resource, *name, *metric)
        }
        _ => return Err(ApiError::UnknownResource),
    };
    if !CUSTOM_METRICS.contains(&metric) {
        return Err(ApiError::NotFound(Target::new(
            CUSTOM_METRICS_GROUP,
            metric,
            name,
        )));
    }
    let stats = state.agents.request_stats(state).await?;
    // A pod no node meters (only simulated nodes, or no metering Service
    // routes to it: `proxy.skiff.io/mode: userspace`) has no value: the
    // metric is missing, not zero, so an autoscaler does not act on it.
    let rates = rates_by_pod(&stats, metric);
    let time = now();
    let rate_of = |pod: &Value| {
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        rates.get(&(ns.to_string(), pod_name.to_string())).copied()
    };
    let missing = || ApiError::NotFound(Target::new(CUSTOM_METRICS_GROUP, metric, name));
    let pods = list(state, &format!("/registry/core/pods/{ns}/"), "pods").await?;
    let items = match (resource, name) {
        ("pods", "*") => {
            let selector = selector(query)?;
            pods.iter()
                .filter(|p| is_running(p) && selector.matches_object(p))
                .filter_map(|p| {
                    let pod_name = p["metadata"]["name"].as_str().unwrap_or_default();
                    let rate = rate_of(p)?;
                    Some(metric_value("Pod", ns, pod_name, metric, rate, &time))
                })
                .collect()
        }
        ("pods", pod_name) => {
            let pod = pods
                .iter()
                .find(|p| p["metadata"]["name"] == pod_name)
                .ok_or_else(|| ApiError::NotFound(Target::new("", "pods", pod_name)))?;
            let rate = rate_of(pod).ok_or_else(missing)?;
            vec![metric_value("Pod", ns, pod_name, metric, rate, &time)]
        }
        (_, service_name) => {
            let service = get(
                state,
                &format!("/registry/core/services/{ns}/{service_name}"),
                Target::new("", "services", service_name),
            )
            .await?;
            let selector: Vec<(String, String)> = service["spec"]["selector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let metered: Vec<f64> = pods
                .iter()
                .filter(|p| {
                    !selector.is_empty()
                        && is_running(p)
                        && selector
                            .iter()
                            .all(|(k, v)| p["metadata"]["labels"][k].as_str() == Some(v.as_str()))
                })
                .filter_map(rate_of)
                .collect();
            if metered.is_empty() {
                return Err(missing());
            }
            let total: f64 = metered.iter().sum();
            vec![metric_value(
                "Service",
                ns,
                service_name,
                metric,
                total,
                &time,
            )]
        }
    };
    Ok(json!({
        "kind": "MetricValueList",
        "apiVersion": "custom.metrics.k8s.io/v1beta2",
        "metadata": {},
        "items": items,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::PodRequestRate;
    use super::*;

    #[test]
    fn request_rates_of_a_pod_are_summed_over_nodes() {
        let node = |rps| RequestStats {
            time: String::new(),
            pods: vec![PodRequestRate {
                namespace: "default".into(),
                name: "web-1".into(),
                requests_per_second: rps,
                errors_per_second: 0.5,
            }],
        };
        let rates = rates_by_pod(&[node(1.0), node(2.5)], "requests_per_second");
        assert_eq!(rates[&("default".to_string(), "web-1".to_string())], 3.5);
        let errors = rates_by_pod(&[node(1.0)], "errors_per_second");
        assert_eq!(errors[&("default".to_string(), "web-1".to_string())], 0.5);
    }
}
