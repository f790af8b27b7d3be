//! Which pod goes first, and what it is told: the kubelet's memory
//! ranking (`rankMemoryPressure`), critical pods, admission under
//! pressure, and the eviction messages, as pure functions.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::thresholds::{format_bytes, NodePressure};
use crate::stats::PodStats;

/// `Evicted`: the reason of evicted and rejected pods.
pub const REASON: &str = "Evicted";
/// Pods at or above this priority (`system-cluster-critical` and
/// `system-node-critical`) are never evicted.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// The taint the node lifecycle controller puts on a node with
/// MemoryPressure; a BestEffort pod tolerating it is admitted.
const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";

/// Static and mirror pods, and pods of system-critical priority.
pub fn is_critical(pod: &Pod) -> bool {
    let annotations = pod.metadata.annotations.as_ref();
    let static_pod = annotations.is_some_and(|a| {
        a.contains_key("kubernetes.io/config.mirror")
            || a.get("kubernetes.io/config.source")
                .is_some_and(|s| s != "api")
    });
    static_pod || priority(pod) >= SYSTEM_CRITICAL_PRIORITY
}

/// `spec.priority` (0 when unset).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn container_request(container: &Container, resource: &str) -> Option<f64> {
    let requests = container.resources.as_ref()?.requests.as_ref()?;
    quantity::as_f64(&requests.get(resource)?.0)
}

/// The pod's request of `resource` (Kubernetes' effective request: the
/// sum over the containers or the largest init container, whichever is
/// larger, plus the overhead), in base units.
pub fn pod_request(pod: &Pod, resource: &str) -> u64 {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let containers: f64 = spec
        .containers
        .iter()
        .filter_map(|c| container_request(c, resource))
        .sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .filter_map(|c| container_request(c, resource))
        .fold(0.0, f64::max);
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| quantity::as_f64(&o.get(resource)?.0))
        .unwrap_or(0.0);
    (containers.max(init) + overhead).max(0.0).ceil() as u64
}

/// A pod's memory working set, from the latest stats sample.
fn memory_usage(stats: &HashMap<&str, &PodStats>, pod: &Pod) -> Option<u64> {
    let uid = pod.metadata.uid.as_deref()?;
    stats.get(uid).map(|s| s.memory.working_set_bytes)
}

/// `true` first.
fn true_first(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

/// Orders `pods` for eviction under memory pressure, as the kubelet does:
/// pods without stats first, then pods using more memory than they
/// request, then lower priority, then the largest use above the request.
/// BestEffort pods (no requests) using any memory thus go before
/// Burstable and Guaranteed pods within their requests.
pub fn rank_memory(pods: &mut [&Pod], stats: &HashMap<&str, &PodStats>) {
    pods.sort_by(|a, b| {
        let (ua, ub) = (memory_usage(stats, a), memory_usage(stats, b));
        let (ra, rb) = (pod_request(a, "memory"), pod_request(b, "memory"));
        let no_stats = true_first(ua.is_none(), ub.is_none());
        let exceeds = || true_first(ua.is_some_and(|u| u > ra), ub.is_some_and(|u| u > rb));
        let above =
            |usage: Option<u64>, request: u64| i128::from(usage.unwrap_or(0)) - i128::from(request);
        no_stats
            .then_with(exceeds)
            .then_with(|| priority(a).cmp(&priority(b)))
            .then_with(|| above(ub, rb).cmp(&above(ua, ra)))
    });
}

/// The message of a pod evicted for `resource`: the kubelet's
/// `The node was low on resource: memory. Threshold quantity: 100Mi,
/// available: 51200Ki. Container app was using 12345Ki, request is 0, has
/// larger consumption of memory. ` (one sentence per container using more
/// than it requests).
pub fn eviction_message(
    resource: &str,
    threshold: &str,
    available: &str,
    pod: &Pod,
    stats: Option<&PodStats>,
) -> String {
    let mut message = format!(
        "The node was low on resource: {resource}. Threshold quantity: {threshold}, available: {available}. "
    );
    let (Some(stats), Some(spec), "memory") = (stats, pod.spec.as_ref(), resource) else {
        return message;
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let specs: Vec<&Container> = containers.collect();
    for used in &stats.containers {
        let Some(container) = specs.iter().find(|c| c.name == used.name) else {
            continue;
        };
        let request = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource));
        let request_amount = request.and_then(|q| quantity::as_f64(&q.0)).unwrap_or(0.0);
        let usage = used.memory.working_set_bytes;
        if usage as f64 > request_amount {
            let request_text = request.map_or("0", |q| q.0.as_str());
            message.push_str(&format!(
                "Container {} was using {}, request is {request_text}, has larger consumption of {resource}. ",
                container.name,
                format_bytes(usage),
            ));
        }
    }
    message
}

/// Whether a pod has no requests or limits at all (QoS BestEffort).
fn best_effort(pod: &Pod) -> bool {
    crate::agent::status::qos_class(pod) == "BestEffort"
}

/// Whether the pod tolerates the memory-pressure taint (`NoSchedule`).
fn tolerates_memory_pressure(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.tolerations.iter().flatten())
        .any(|t| {
            let key_matches = match t.key.as_deref() {
                None | Some("") => t.operator.as_deref() == Some("Exists"),
                Some(key) => key == MEMORY_PRESSURE_TAINT,
            };
            let effect_matches =
                matches!(t.effect.as_deref(), None | Some("") | Some("NoSchedule"));
            let value_matches = t.operator.as_deref() == Some("Exists")
                || t.value.as_deref().unwrap_or_default().is_empty();
            key_matches && effect_matches && value_matches
        })
}

/// The kubelet's admission under pressure: with only MemoryPressure, pods
/// that are not BestEffort (or tolerate the memory-pressure taint) are
/// admitted; DiskPressure admits none; critical pods are always admitted.
/// `Err` carries the message (`The node had condition: [MemoryPressure]. `).
pub fn admit(pod: &Pod, pressure: NodePressure) -> Result<(), String> {
    let conditions = pressure.conditions();
    if conditions.is_empty() || is_critical(pod) {
        return Ok(());
    }
    if !pressure.disk && (!best_effort(pod) || tolerates_memory_pressure(pod)) {
        return Ok(());
    }
    Err(format!(
        "The node had condition: [{}]. ",
        conditions.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ContainerStats, MemoryStats, PodReference};
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements, Toleration};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    const MI: u64 = 1024 * 1024;

    /// A pod `name` with one container `app` requesting `memory` (and
    /// limiting it too when `guaranteed`).
    fn pod(name: &str, memory: Option<&str>, priority: Option<i32>) -> Pod {
        let resources = memory.map(|m| {
            let list = [("memory".to_string(), Quantity(m.to_string()))].into();
            ResourceRequirements {
                requests: Some(list),
                ..Default::default()
            }
        });
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.to_string());
        pod.metadata.uid = Some(format!("uid-{name}"));
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "app".to_string(),
                resources,
                ..Default::default()
            }],
            priority,
            ..Default::default()
        });
        pod
    }

    fn stats(pod: &Pod, working_set: u64) -> PodStats {
        let memory = MemoryStats {
            working_set_bytes: working_set,
            ..Default::default()
        };
        PodStats {
            pod_ref: PodReference {
                name: pod.metadata.name.clone().unwrap_or_default(),
                namespace: "default".into(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
            },
            containers: vec![ContainerStats {
                name: "app".into(),
                memory: memory.clone(),
                ..Default::default()
            }],
            memory,
            ..Default::default()
        }
    }

    #[test]
    fn pods_are_ranked_as_the_kubelet_ranks_them_under_memory_pressure() {
        /// (name, memory request, priority, working set in Mi or no stats)
        type Row = (&'static str, Option<&'static str>, Option<i32>, Option<u64>);
        struct Case {
            name: &'static str,
            pods: Vec<Row>,
            expected: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                name: "best effort goes before pods within their requests",
                pods: vec![
                    ("guaranteed", Some("64Mi"), None, Some(10)),
                    ("besteffort", None, None, Some(1)),
                    ("burstable", Some("32Mi"), None, Some(5)),
                ],
                expected: vec!["besteffort", "burstable", "guaranteed"],
            },
            Case {
                name: "exceeding the request beats priority",
                pods: vec![
                    ("low-within", Some("64Mi"), Some(-10), Some(10)),
                    ("high-over", Some("8Mi"), Some(1000), Some(10)),
                ],
                expected: vec!["high-over", "low-within"],
            },
            Case {
                name: "among pods over their requests, lower priority first",
                pods: vec![
                    ("high", Some("8Mi"), Some(100), Some(500)),
                    ("low", Some("8Mi"), Some(1), Some(10)),
                ],
                expected: vec!["low", "high"],
            },
            Case {
                name: "same priority: the largest use above the request first",
                pods: vec![
                    ("small", None, None, Some(10)),
                    ("big", None, None, Some(300)),
                    ("over-request", Some("100Mi"), None, Some(350)),
                ],
                expected: vec!["big", "over-request", "small"],
            },
            Case {
                name: "pods without stats go first",
                pods: vec![
                    ("measured", None, None, Some(100)),
                    ("unmeasured", Some("1Gi"), Some(1000), None),
                ],
                expected: vec!["unmeasured", "measured"],
            },
        ];
        for case in cases {
            let pods: Vec<Pod> = case
                .pods
                .iter()
                .map(|(name, memory, priority, _)| pod(name, *memory, *priority))
                .collect();
            let samples: Vec<PodStats> = pods
                .iter()
                .zip(&case.pods)
                .filter_map(|(p, (.., used))| used.map(|u| stats(p, u * MI)))
                .collect();
            let index: HashMap<&str, &PodStats> = samples
                .iter()
                .map(|s| (s.pod_ref.uid.as_str(), s))
                .collect();
            let mut ranked: Vec<&Pod> = pods.iter().collect();
            rank_memory(&mut ranked, &index);
            let names: Vec<&str> = ranked
                .iter()
                .filter_map(|p| p.metadata.name.as_deref())
                .collect();
            assert_eq!(names, case.expected, "{}", case.name);
        }
    }

    #[test]
    fn the_eviction_message_names_the_resource_and_the_containers_over_their_requests() {
        let besteffort = pod("be", None, None);
        let sample = stats(&besteffort, 12_345 * 1024);
        assert_eq!(
            eviction_message("memory", "100Mi", "51200Ki", &besteffort, Some(&sample)),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. \
             Container app was using 12345Ki, request is 0, has larger consumption of memory. "
        );
        let within = pod("within", Some("64Mi"), None);
        let sample = stats(&within, MI);
        assert_eq!(
            eviction_message("memory", "100Mi", "50Mi", &within, Some(&sample)),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        );
        let over = pod("over", Some("1Mi"), None);
        let sample = stats(&over, 2 * MI);
        assert!(
            eviction_message("memory", "100Mi", "50Mi", &over, Some(&sample)).ends_with(
                "Container app was using 2Mi, request is 1Mi, has larger consumption of memory. "
            )
        );
    }

    #[test]
    fn requests_add_up_over_containers_and_init_containers_count_at_their_largest() {
        let mut p = pod("p", Some("64Mi"), None);
        if let Some(spec) = p.spec.as_mut() {
            spec.containers.push(spec.containers[0].clone());
            let mut init = spec.containers[0].clone();
            init.resources = Some(ResourceRequirements {
                requests: Some([("memory".to_string(), Quantity("200Mi".into()))].into()),
                ..Default::default()
            });
            spec.init_containers = Some(vec![init]);
        }
        assert_eq!(pod_request(&p, "memory"), 200 * MI);
        assert_eq!(
            pod_request(&pod("q", Some("64Mi"), None), "memory"),
            64 * MI
        );
        assert_eq!(pod_request(&pod("r", None, None), "memory"), 0);
    }

    #[test]
    fn critical_pods_are_system_priority_or_static() {
        assert!(!is_critical(&pod("p", None, None)));
        assert!(is_critical(&pod("p", None, Some(2_000_001_000))));
        assert!(!is_critical(&pod("p", None, Some(1_999_999_999))));
        let mut mirror = pod("m", None, None);
        mirror.metadata.annotations =
            Some([("kubernetes.io/config.mirror".to_string(), "x".to_string())].into());
        assert!(is_critical(&mirror));
    }

    #[test]
    fn under_memory_pressure_only_best_effort_pods_are_rejected() {
        let memory = NodePressure {
            memory: true,
            disk: false,
        };
        let disk = NodePressure {
            memory: false,
            disk: true,
        };
        let besteffort = pod("be", None, None);
        let burstable = pod("bu", Some("1Mi"), None);
        let mut tolerating = besteffort.clone();
        if let Some(spec) = tolerating.spec.as_mut() {
            spec.tolerations = Some(vec![Toleration {
                key: Some(MEMORY_PRESSURE_TAINT.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some("NoSchedule".to_string()),
                ..Default::default()
            }]);
        }
        assert_eq!(admit(&besteffort, NodePressure::default()), Ok(()));
        assert_eq!(
            admit(&besteffort, memory),
            Err("The node had condition: [MemoryPressure]. ".to_string())
        );
        assert_eq!(admit(&burstable, memory), Ok(()));
        assert_eq!(admit(&tolerating, memory), Ok(()));
        assert_eq!(
            admit(&burstable, disk),
            Err("The node had condition: [DiskPressure]. ".to_string())
        );
        assert_eq!(
            admit(
                &tolerating,
                NodePressure {
                    memory: true,
                    disk: true
                }
            ),
            Err("The node had condition: [MemoryPressure DiskPressure]. ".to_string())
        );
        assert_eq!(admit(&pod("c", None, Some(2_000_000_000)), memory), Ok(()));
    }
}
