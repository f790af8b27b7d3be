//! Test builders: pods with requests and readiness, samples, HPAs, Scales
//! and a fake [`MetricsSource`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Container, ObjectReference, Pod, PodCondition, PodSpec, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::metrics::{
    ContainerMetrics, MetricValue, MetricValueList, MetricsError, MetricsSource, PodMetrics,
};
use super::replicas::{PodMetric, PodMetricsInfo};
pub use crate::podutil::testing::ts;

/// A Running pod, Ready since `ready_at`, started at 0, whose one
/// container `app` requests `cpu` and `memory`.
pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    let requests: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity(memory.into())),
    ]
    .into();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            start_time: Some(Time(ts(0))),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(0))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

pub trait PodBuild {
    fn phase(self, phase: &str) -> Self;
    /// Started at `start`, Ready condition `ready` since `since`.
    fn started(self, start: i64, ready: bool, since: i64) -> Self;
    fn deleting(self) -> Self;
}

impl PodBuild for Pod {
    fn phase(mut self, phase: &str) -> Self {
        if let Some(s) = self.status.as_mut() {
            s.phase = Some(phase.into());
        }
        self
    }
    fn started(mut self, start: i64, ready: bool, since: i64) -> Self {
        if let Some(s) = self.status.as_mut() {
            s.start_time = Some(Time(ts(start)));
            s.conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(ts(since))),
                ..Default::default()
            }]);
        }
        self
    }
    fn deleting(mut self) -> Self {
        self.metadata.deletion_timestamp = Some(Time(ts(1)));
        self
    }
}

/// Samples `(pod, milli-value)` taken at 1000 s over a 1 s window.
pub fn samples(values: &[(&str, i64)]) -> PodMetricsInfo {
    values
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                PodMetric {
                    value: *v,
                    timestamp: ts(1000),
                    window: Duration::from_secs(1),
                },
            )
        })
        .collect()
}

/// An HPA on Deployment `web` with `metrics`.
pub fn hpa(min: i32, max: i32, metrics: Vec<MetricSpec>) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: "web".into(),
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(metrics),
            behavior: None,
        }),
        status: None,
    }
}

pub fn cpu_utilization(percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

pub fn pods_average(metric: &str, average: &str) -> MetricSpec {
    MetricSpec {
        type_: "Pods".into(),
        pods: Some(PodsMetricSource {
            metric: MetricIdentifier {
                name: metric.into(),
                selector: None,
            },
            target: MetricTarget {
                type_: "AverageValue".into(),
                average_value: Some(Quantity(average.into())),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// The Scale of a target at `replicas`, selecting `app=web`.
pub fn scale(replicas: i32) -> Scale {
    Scale {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(ScaleSpec {
            replicas: Some(replicas),
        }),
        status: Some(ScaleStatus {
            replicas,
            selector: Some("app=web".into()),
        }),
    }
}

/// Metrics served from memory; absent metrics fail like an empty API.
#[derive(Default)]
pub struct FakeMetrics {
    /// cpu usage by pod (milli-cores).
    pub cpu: Mutex<BTreeMap<String, String>>,
    /// Custom pod metrics: metric → pod → value.
    pub pods: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// Object metrics: (kind/name, metric) → value.
    pub objects: Mutex<BTreeMap<(String, String), String>>,
}

impl FakeMetrics {
    pub fn cpu(self, values: &[(&str, &str)]) -> Self {
        *self.cpu.lock().expect("lock") = values
            .iter()
            .map(|(p, v)| (p.to_string(), v.to_string()))
            .collect();
        self
    }

    pub fn pods_metric(self, metric: &str, values: &[(&str, &str)]) -> Self {
        self.pods.lock().expect("lock").insert(
            metric.to_string(),
            values
                .iter()
                .map(|(p, v)| (p.to_string(), v.to_string()))
                .collect(),
        );
        self
    }
}

fn value(name: &str, v: &str) -> MetricValue {
    MetricValue {
        described_object: ObjectReference {
            kind: Some("Pod".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        timestamp: Some(Time(ts(1000))),
        window_seconds: Some(1),
        value: Quantity(v.into()),
        ..Default::default()
    }
}

impl MetricsSource for FakeMetrics {
    fn pod_metrics<'a>(
        &'a self,
        _namespace: &'a str,
        _selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, MetricsError>> {
        let cpu = self.cpu.lock().expect("lock").clone();
        Box::pin(async move {
            if cpu.is_empty() {
                return Err(MetricsError::NoResourceMetrics);
            }
            Ok(cpu
                .into_iter()
                .map(|(pod, v)| PodMetrics {
                    metadata: ObjectMeta {
                        name: Some(pod),
                        ..Default::default()
                    },
                    timestamp: Some(Time(ts(1000))),
                    window: "1s".into(),
                    containers: vec![ContainerMetrics {
                        name: "app".into(),
                        usage: [("cpu".to_string(), Quantity(v))].into(),
                    }],
                })
                .collect())
        })
    }

    fn pods_metric<'a>(
        &'a self,
        _namespace: &'a str,
        metric: &'a str,
        _selector: &'a str,
        _metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<MetricValueList, MetricsError>> {
        let values = self.pods.lock().expect("lock").get(metric).cloned();
        Box::pin(async move {
            Ok(MetricValueList {
                items: values
                    .into_iter()
                    .flatten()
                    .map(|(p, v)| value(&p, &v))
                    .collect(),
            })
        })
    }

    fn object_metric<'a>(
        &'a self,
        _namespace: &'a str,
        object: &'a CrossVersionObjectReference,
        metric: &'a str,
        _metric_selector: &'a str,
    ) -> BoxFuture<'a, Result<MetricValueList, MetricsError>> {
        let key = (
            format!("{}/{}", object.kind, object.name),
            metric.to_string(),
        );
        let v = self.objects.lock().expect("lock").get(&key).cloned();
        Box::pin(async move {
            Ok(MetricValueList {
                items: v.iter().map(|v| value(&object.name, v)).collect(),
            })
        })
    }
}
