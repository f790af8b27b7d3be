//! Where a DaemonSet's pods go, as Kubernetes' daemon controller decides:
//! which nodes should run one (nodeSelector, required node affinity,
//! taints against the template's and the standard DaemonSet tolerations),
//! and the pod for one node, pinned to it by node affinity so the
//! scheduler binds it.

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};

use crate::taints::{self, matching_toleration, NO_EXECUTE, NO_SCHEDULE};

/// Whether a node should run the daemon pod, and whether a pod already
/// there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub should_run: bool,
    pub should_continue: bool,
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|s| number(s)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether one node selector term matches: all its label expressions and
/// field (`metadata.name`) requirements. An empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name" && requirement_matches(r, node.metadata.name.as_deref())
        })
}

fn required_affinity(spec: &PodSpec) -> Option<&NodeSelector> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
}

/// The tolerations Kubernetes gives every DaemonSet pod: it survives
/// not-ready and unreachable nodes, and runs despite pressure and cordons.
pub fn daemon_tolerations() -> Vec<Toleration> {
    let exists = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    vec![
        exists(taints::NOT_READY, NO_EXECUTE),
        exists(taints::UNREACHABLE, NO_EXECUTE),
        exists(taints::DISK_PRESSURE, NO_SCHEDULE),
        exists(taints::MEMORY_PRESSURE, NO_SCHEDULE),
        exists(taints::PID_PRESSURE, NO_SCHEDULE),
        exists(taints::UNSCHEDULABLE, NO_SCHEDULE),
    ]
}

/// `spec.tolerations` with the standard DaemonSet tolerations added (the
/// pod's own come first, so they win where both match).
pub fn with_daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut out = spec.tolerations.clone().unwrap_or_default();
    for t in daemon_tolerations() {
        let present = out.iter().any(|o| o.key == t.key && o.effect == t.effect);
        if !present {
            out.push(t);
        }
    }
    out
}

/// Whether the DaemonSet with pod `spec` should run on `node`.
pub fn placement(spec: &PodSpec, node: &Node) -> Placement {
    let no = Placement {
        should_run: false,
        should_continue: false,
    };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity_ok = required_affinity(spec)
        .is_none_or(|s| s.node_selector_terms.iter().any(|t| term_matches(t, node)));
    if !selector_ok || !affinity_ok || node.metadata.deletion_timestamp.is_some() {
        return no;
    }
    let tolerations = with_daemon_tolerations(spec);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .any(|t| t.effect == effect && matching_toleration(&tolerations, t).is_none())
    };
    if untolerated(NO_EXECUTE) {
        return no;
    }
    Placement {
        should_run: !untolerated(NO_SCHEDULE),
        should_continue: true,
    }
}

/// The pod `spec` for `node`: the standard tolerations added and the
/// required node affinity replaced by one term selecting the node by name.
pub fn pin_to_node(spec: &PodSpec, node: &str) -> PodSpec {
    let mut spec = spec.clone();
    spec.tolerations = Some(with_daemon_tolerations(&spec));
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    spec
}

/// The node a daemon pod is for: where it is bound, or the node its
/// affinity pins it to.
pub fn pod_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    required_affinity(spec)?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn node(name: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn yes() -> Placement {
        Placement {
            should_run: true,
            should_continue: true,
        }
    }

    #[test]
    fn a_node_selector_limits_the_nodes() {
        let spec = PodSpec {
            node_selector: Some(BTreeMap::from([("disk".into(), "ssd".into())])),
            ..Default::default()
        };
        assert_eq!(
            placement(&spec, &node("a", &[("disk", "ssd")], vec![])),
            yes()
        );
        assert!(!placement(&spec, &node("b", &[], vec![])).should_run);
    }

    #[test]
    fn daemon_pods_run_on_cordoned_and_unreachable_nodes() {
        let spec = PodSpec::default();
        let n = node(
            "a",
            &[],
            vec![
                taints::taint(taints::UNSCHEDULABLE, NO_SCHEDULE),
                taints::taint(taints::UNREACHABLE, NO_EXECUTE),
            ],
        );
        assert_eq!(placement(&spec, &n), yes());
    }

    #[test]
    fn an_untolerated_no_schedule_taint_keeps_existing_pods_but_starts_none() {
        let n = node("a", &[], vec![taints::taint("dedicated", NO_SCHEDULE)]);
        assert_eq!(
            placement(&PodSpec::default(), &n),
            Placement {
                should_run: false,
                should_continue: true
            }
        );
        let n = node("a", &[], vec![taints::taint("dedicated", NO_EXECUTE)]);
        assert!(!placement(&PodSpec::default(), &n).should_continue);
    }

    #[test]
    fn a_pinned_pod_selects_its_node_by_name_and_carries_the_daemon_tolerations() {
        let spec = pin_to_node(&PodSpec::default(), "n7");
        let pod = Pod {
            spec: Some(spec.clone()),
            ..Default::default()
        };
        assert_eq!(pod_node(&pod).as_deref(), Some("n7"));
        let terms = &required_affinity(&spec)
            .expect("affinity")
            .node_selector_terms;
        assert!(term_matches(&terms[0], &node("n7", &[], vec![])));
        assert!(!term_matches(&terms[0], &node("n8", &[], vec![])));
        assert_eq!(spec.tolerations.expect("tolerations").len(), 6);
    }

    #[test]
    fn gt_and_lt_compare_numbers() {
        let r = NodeSelectorRequirement {
            key: "cores".into(),
            operator: "Gt".into(),
            values: Some(vec!["4".into()]),
        };
        assert!(requirement_matches(&r, Some("8")));
        assert!(!requirement_matches(&r, Some("2")));
        assert!(!requirement_matches(&r, None));
    }
}
