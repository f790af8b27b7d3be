//! One metric's proposal, as Kubernetes' `computeStatusFor*Metric`: reads
//! the metric through [`super::metrics::MetricsSource`], runs the
//! [`super::replicas::Calculator`] and builds the `currentMetrics` entry,
//! or says which `ScalingActive` reason failed.

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, MetricIdentifier, MetricSpec, MetricStatus, MetricTarget,
    MetricValueStatus, ObjectMetricStatus, PodsMetricStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;

use super::decide::Inputs;
use super::metrics;
use super::quantity::{from_milli, milli_value};

/// A metric's failure: the `ScalingActive` reason and the error.
pub struct Failure {
    pub reason: &'static str,
    pub error: String,
}

fn fail(reason: &'static str, error: impl std::fmt::Display) -> Failure {
    Failure {
        reason,
        error: error.to_string(),
    }
}

/// One metric's proposal.
pub struct Proposal {
    pub replicas: i32,
    pub metric: String,
    pub status: MetricStatus,
}

fn target_milli(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<i64> {
    q.and_then(milli_value)
}

/// `computeReplicasForMetric`: one metric's proposal and status.
pub async fn for_metric(
    inputs: &Inputs<'_>,
    spec: &MetricSpec,
    spec_replicas: i32,
    pods: &[Pod],
) -> Result<Proposal, Failure> {
    match spec.type_.as_str() {
        "Resource" => {
            const REASON: &str = "FailedGetResourceMetric";
            let Some(source) = spec.resource.as_ref() else {
                return Err(fail(REASON, "missing the resource metric source"));
            };
            let (replicas, metric, current) = resource_metric(
                inputs,
                &source.name,
                None,
                &source.target,
                spec_replicas,
                pods,
            )
            .await
            .map_err(|e| fail(REASON, e))?;
            Ok(Proposal {
                replicas,
                metric,
                status: MetricStatus {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricStatus {
                        name: source.name.clone(),
                        current,
                    }),
                    ..Default::default()
                },
            })
        }
        "ContainerResource" => {
            const REASON: &str = "FailedGetContainerResourceMetric";
            let Some(source) = spec.container_resource.as_ref() else {
                return Err(fail(REASON, "missing the container resource metric source"));
            };
            let (replicas, metric, current) = resource_metric(
                inputs,
                &source.name,
                Some(&source.container),
                &source.target,
                spec_replicas,
                pods,
            )
            .await
            .map_err(|e| fail(REASON, e))?;
            Ok(Proposal {
                replicas,
                metric,
                status: MetricStatus {
                    type_: "ContainerResource".into(),
                    container_resource: Some(ContainerResourceMetricStatus {
                        name: source.name.clone(),
                        container: source.container.clone(),
                        current,
                    }),
                    ..Default::default()
                },
            })
        }
        "Pods" => {
            const REASON: &str = "FailedGetPodsMetric";
            let Some(source) = spec.pods.as_ref() else {
                return Err(fail(REASON, "missing the pods metric source"));
            };
            let name = &source.metric.name;
            let Some(target) = target_milli(source.target.average_value.as_ref()) else {
                return Err(fail(
                    REASON,
                    "invalid pods metric source: an average value target is required",
                ));
            };
            let hpa_ns = inputs.hpa.metadata.namespace.as_deref().unwrap_or_default();
            let selector = selector_of(inputs.scale);
            let metric_selector = metrics::selector_string(source.metric.selector.as_ref());
            let samples = inputs
                .metrics
                .pods_metric(hpa_ns, name, &selector, &metric_selector)
                .await
                .and_then(|list| metrics::custom_samples(&list))
                .map_err(|e| fail(REASON, format!("unable to get metric {name}: {e}")))?;
            let (replicas, usage) = inputs
                .calculator
                .plain_replicas(spec_replicas, target, None, pods, samples, inputs.now)
                .map_err(|e| fail(REASON, e))?;
            Ok(Proposal {
                replicas,
                metric: format!("pods metric {name}"),
                status: MetricStatus {
                    type_: "Pods".into(),
                    pods: Some(PodsMetricStatus {
                        metric: identifier(&source.metric),
                        current: MetricValueStatus {
                            average_value: Some(from_milli(usage)),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                },
            })
        }
        "Object" => {
            const REASON: &str = "FailedGetObjectMetric";
            let Some(source) = spec.object.as_ref() else {
                return Err(fail(REASON, "missing the object metric source"));
            };
            let name = &source.metric.name;
            let object = &source.described_object;
            let hpa_ns = inputs.hpa.metadata.namespace.as_deref().unwrap_or_default();
            let metric_selector = metrics::selector_string(source.metric.selector.as_ref());
            let value = target_milli(source.target.value.as_ref())
                .filter(|_| source.target.type_ == "Value");
            let average = target_milli(source.target.average_value.as_ref())
                .filter(|_| source.target.type_ == "AverageValue");
            if value.is_none() && average.is_none() {
                return Err(fail(
                    REASON,
                    "invalid object metric source: neither a value target nor an average value target was set",
                ));
            }
            let usage = inputs
                .metrics
                .object_metric(hpa_ns, object, name, &metric_selector)
                .await
                .and_then(|list| metrics::object_value(&list))
                .map_err(|e| {
                    fail(
                        REASON,
                        format!(
                            "unable to get metric {name}: {} {hpa_ns}/{}: {e}",
                            object.kind, object.name
                        ),
                    )
                })?;
            let (replicas, current) = match (value, average) {
                (Some(target), _) => {
                    let r = inputs
                        .calculator
                        .object_replicas(spec_replicas, usage, target, pods)
                        .map_err(|e| fail(REASON, e))?;
                    (
                        r,
                        MetricValueStatus {
                            value: Some(from_milli(usage)),
                            ..Default::default()
                        },
                    )
                }
                (None, Some(target)) => {
                    let status_replicas = inputs.scale.status.as_ref().map_or(0, |s| s.replicas);
                    let (r, avg) = inputs
                        .calculator
                        .object_per_pod_replicas(status_replicas, usage, target)
                        .map_err(|e| fail(REASON, e))?;
                    (
                        r,
                        MetricValueStatus {
                            average_value: Some(from_milli(avg)),
                            ..Default::default()
                        },
                    )
                }
                (None, None) => return Err(fail(REASON, "no target")),
            };
            Ok(Proposal {
                replicas,
                metric: format!("{} metric {name}", object.kind),
                status: MetricStatus {
                    type_: "Object".into(),
                    object: Some(ObjectMetricStatus {
                        described_object: object.clone(),
                        metric: identifier(&source.metric),
                        current,
                    }),
                    ..Default::default()
                },
            })
        }
        "External" => Err(fail(
            "FailedGetExternalMetric",
            "external metrics are not served (no external.metrics.k8s.io API)",
        )),
        other => Err(fail(
            "InvalidMetricSourceType",
            format!("unknown metric source type {other:?}"),
        )),
    }
}

fn identifier(m: &MetricIdentifier) -> MetricIdentifier {
    MetricIdentifier {
        name: m.name.clone(),
        selector: m.selector.clone(),
    }
}

fn selector_of(scale: &Scale) -> String {
    scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default()
}

/// A Resource or ContainerResource metric: (replicas, metric description,
/// current value).
async fn resource_metric(
    inputs: &Inputs<'_>,
    resource: &str,
    container: Option<&str>,
    target: &MetricTarget,
    spec_replicas: i32,
    pods: &[Pod],
) -> Result<(i32, String, MetricValueStatus), String> {
    let ns = inputs.hpa.metadata.namespace.as_deref().unwrap_or_default();
    let selector = selector_of(inputs.scale);
    let samples =
        |list: Vec<metrics::PodMetrics>| metrics::resource_samples(&list, resource, container);
    if let Some(average) = target.average_value.as_ref() {
        let average = milli_value(average).ok_or("invalid average value target")?;
        let list = inputs
            .metrics
            .pod_metrics(ns, &selector)
            .await
            .map_err(|e| format!("failed to get {resource} usage: unable to get metrics for resource {resource}: {e}"))?;
        let (replicas, usage) = inputs
            .calculator
            .plain_replicas(
                spec_replicas,
                average,
                Some(resource),
                pods,
                samples(list),
                inputs.now,
            )
            .map_err(|e| format!("failed to get {resource} usage: {e}"))?;
        return Ok((
            replicas,
            format!("{resource} resource"),
            MetricValueStatus {
                average_value: Some(from_milli(usage)),
                ..Default::default()
            },
        ));
    }
    let Some(utilization) = target.average_utilization else {
        return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
    };
    let list = inputs.metrics.pod_metrics(ns, &selector).await.map_err(|e| {
        format!("failed to get {resource} utilization: unable to get metrics for resource {resource}: {e}")
    })?;
    let u = inputs
        .calculator
        .resource_replicas(
            spec_replicas,
            utilization,
            resource,
            container,
            pods,
            samples(list),
            inputs.now,
        )
        .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
    let what = if container.is_some() {
        "container resource"
    } else {
        "resource"
    };
    Ok((
        u.replicas,
        format!("{resource} {what} utilization (percentage of request)"),
        MetricValueStatus {
            average_utilization: Some(u.utilization),
            average_value: Some(from_milli(u.raw_average)),
            ..Default::default()
        },
    ))
}
