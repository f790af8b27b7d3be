//! Discovery documents of the metrics groups, which are served by
//! [`super`] rather than the registry.

use serde_json::{json, Value};

use super::{CUSTOM_METRICS, CUSTOM_METRICS_GROUP, METRICS_GROUP};

struct VirtualResource {
    name: &'static str,
    kind: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
}

fn resources(group: &str, version: &str) -> Option<Vec<VirtualResource>> {
    match (group, version) {
        (METRICS_GROUP, "v1beta1") => Some(vec![
            VirtualResource {
                name: "nodes",
                kind: "NodeMetrics",
                namespaced: false,
                verbs: &["get", "list"],
            },
            VirtualResource {
                name: "pods",
                kind: "PodMetrics",
                namespaced: true,
                verbs: &["get", "list"],
            },
        ]),
        (CUSTOM_METRICS_GROUP, "v1beta2") => Some(
            ["pods", "services"]
                .iter()
                .flat_map(|r| {
                    CUSTOM_METRICS.iter().map(move |m| VirtualResource {
                        name: match (*r, *m) {
                            ("pods", "requests_per_second") => "pods/requests_per_second",
                            ("pods", _) => "pods/errors_per_second",
                            (_, "requests_per_second") => "services/requests_per_second",
                            _ => "services/errors_per_second",
                        },
                        kind: "MetricValueList",
                        namespaced: true,
                        verbs: &["get"],
                    })
                })
                .collect(),
        ),
        _ => None,
    }
}

/// The `APIResourceList` of a metrics group-version (legacy discovery).
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = resources(group, version)?
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": r.verbs,
            })
        })
        .collect();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources,
    }))
}

/// The aggregated-discovery resource entries of a metrics group-version
/// (empty for other groups).
pub fn aggregated_resources(group: &str, version: &str) -> Vec<Value> {
    resources(group, version)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            json!({
                "resource": r.name,
                "responseKind": {"group": group, "version": version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": "",
                "verbs": r.verbs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_pod_and_node_metrics_and_custom_metric_resources() {
        let list = resource_list(METRICS_GROUP, "v1beta1").expect("served");
        assert_eq!(list["resources"][1]["kind"], "PodMetrics");
        let custom = aggregated_resources(CUSTOM_METRICS_GROUP, "v1beta2");
        assert!(custom
            .iter()
            .any(|r| r["resource"] == "services/requests_per_second"));
        assert!(resource_list("apps", "v1").is_none());
    }
}
