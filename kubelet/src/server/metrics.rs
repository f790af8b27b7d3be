//! `GET /metrics`: the latest sample in Prometheus text, with cAdvisor's
//! metric names (`container_cpu_usage_seconds_total`,
//! `container_memory_working_set_bytes`) and the kubelet's resource
//! metrics (`node_cpu_usage_seconds_total`, `node_memory_working_set_bytes`,
//! `pod_cpu_usage_seconds_total`, `pod_memory_working_set_bytes`).

use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ServerState;
use crate::stats::Summary;

type Labels = Vec<(&'static str, String)>;

/// Encodes `summary` as Prometheus text.
pub fn encode(summary: &Summary) -> String {
    let mut registry = Registry::default();
    let container_cpu = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let container_memory = Family::<Labels, Gauge>::default();
    let pod_cpu = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let pod_memory = Family::<Labels, Gauge>::default();
    let node_cpu: Counter<f64, AtomicU64> = Counter::default();
    let node_memory: Gauge = Gauge::default();
    let seconds = |ns: u64| ns as f64 / 1e9;
    let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
    node_cpu.inc_by(seconds(summary.node.cpu.usage_core_nano_seconds));
    node_memory.set(bytes(summary.node.memory.working_set_bytes));
    for pod in &summary.pods {
        let pod_labels: Labels = vec![
            ("namespace", pod.pod_ref.namespace.clone()),
            ("pod", pod.pod_ref.name.clone()),
        ];
        pod_cpu
            .get_or_create(&pod_labels)
            .inc_by(seconds(pod.cpu.usage_core_nano_seconds));
        pod_memory
            .get_or_create(&pod_labels)
            .set(bytes(pod.memory.working_set_bytes));
        for container in &pod.containers {
            let mut labels = vec![("container", container.name.clone())];
            labels.extend(pod_labels.iter().cloned());
            container_cpu
                .get_or_create(&labels)
                .inc_by(seconds(container.cpu.usage_core_nano_seconds));
            container_memory
                .get_or_create(&labels)
                .set(bytes(container.memory.working_set_bytes));
        }
    }
    registry.register(
        "container_cpu_usage_seconds",
        "Cumulative CPU time consumed by the container",
        container_cpu,
    );
    registry.register(
        "container_memory_working_set_bytes",
        "Current working set of the container",
        container_memory,
    );
    registry.register(
        "pod_cpu_usage_seconds",
        "Cumulative CPU time consumed by the pod",
        pod_cpu,
    );
    registry.register(
        "pod_memory_working_set_bytes",
        "Current working set of the pod",
        pod_memory,
    );
    registry.register(
        "node_cpu_usage_seconds",
        "Cumulative CPU time consumed by the node",
        node_cpu,
    );
    registry.register(
        "node_memory_working_set_bytes",
        "Current working set of the node",
        node_memory,
    );
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(%error, "cannot encode the agent's metrics");
    }
    out
}

pub(super) async fn serve(State(state): State<ServerState>) -> Response {
    let text = encode(&state.stats.summary());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ContainerStats, CpuStats, MemoryStats, PodReference, PodStats};

    #[test]
    fn container_usage_is_exported_with_cadvisor_names() {
        let summary = Summary {
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u".into(),
                },
                containers: vec![ContainerStats {
                    name: "app".into(),
                    cpu: CpuStats {
                        usage_core_nano_seconds: 1_500_000_000,
                        ..CpuStats::default()
                    },
                    memory: MemoryStats {
                        working_set_bytes: 4096,
                        ..MemoryStats::default()
                    },
                }],
                ..PodStats::default()
            }],
            ..Summary::default()
        };
        let text = encode(&summary);
        assert!(
            text.contains(
                "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 1.5"
            ),
            "{text}"
        );
        assert!(text.contains(
            "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 4096"
        ));
        assert!(text.contains("node_memory_working_set_bytes"));
    }
}
