//! Matching rules shared by several plugins: tolerations against taints,
//! node selector terms against nodes, label selectors against pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `t` tolerates `taint` (Kubernetes' `ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty()) {
        if key != taint.key {
            return false;
        }
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
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
            let (Some(have), Some(want)) = (
                value.and_then(number),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// One term: all its expressions (on labels) and fields (on the name) hold.
/// A term with neither matches no node.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = if r.key == "metadata.name" { name } else { None };
            requirement_matches(r, value)
        })
}

/// Terms are ORed.
pub fn node_selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

/// A label selector against labels; an empty selector matches everything.
pub fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|r| {
            let value = labels.get(&r.key);
            let values = r.values.as_deref().unwrap_or_default();
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{labels, MakeNode};
    use serde_json::json;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).expect("toleration")
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        serde_json::from_value(json!({"key": key, "value": value, "effect": effect}))
            .expect("taint")
    }

    #[test]
    fn tolerations_match_taints_by_key_value_operator_and_effect() {
        let gold = taint("dedicated", "gold", "NoSchedule");
        let cases = [
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "gold"}),
                true,
            ),
            (
                json!({"key": "dedicated", "value": "gold", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "dedicated", "value": "silver"}), false),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (
                json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
            (json!({"key": "other", "operator": "Exists"}), false),
        ];
        for (t, want) in cases {
            assert_eq!(tolerates(&toleration(t.clone()), &gold), want, "{t}");
        }
    }

    #[test]
    fn node_selector_operators_behave_as_in_kubernetes() {
        let node = MakeNode::new("n1")
            .label("zone", "a")
            .label("gen", "5")
            .build();
        let cases = [
            ("zone", "In", vec!["a", "b"], true),
            ("zone", "In", vec!["b"], false),
            ("zone", "NotIn", vec!["b"], true),
            ("missing", "NotIn", vec!["b"], true),
            ("zone", "Exists", vec![], true),
            ("missing", "DoesNotExist", vec![], true),
            ("zone", "DoesNotExist", vec![], false),
            ("gen", "Gt", vec!["4"], true),
            ("gen", "Gt", vec!["5"], false),
            ("gen", "Lt", vec!["6"], true),
            ("zone", "Lt", vec!["6"], false),
        ];
        for (key, op, values, want) in cases {
            let term: NodeSelectorTerm = serde_json::from_value(
                json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]}),
            )
            .expect("term");
            assert_eq!(term_matches(&term, &node), want, "{key} {op} {values:?}");
        }
    }

    #[test]
    fn match_fields_select_a_node_by_name_and_an_empty_term_matches_nothing() {
        let node = MakeNode::new("n1").build();
        let by_name: NodeSelectorTerm = serde_json::from_value(json!({"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}))
        .expect("term");
        assert!(term_matches(&by_name, &node));
        assert!(!term_matches(&NodeSelectorTerm::default(), &node));
    }

    #[test]
    fn label_selectors_combine_labels_and_expressions() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let sel = |v| serde_json::from_value::<LabelSelector>(v).expect("selector");
        assert!(label_selector_matches(&sel(json!({})), &l));
        assert!(label_selector_matches(
            &sel(json!({"matchLabels": {"app": "web"}})),
            &l
        ));
        assert!(!label_selector_matches(
            &sel(json!({"matchLabels": {"app": "db"}})),
            &l
        ));
        assert!(label_selector_matches(
            &sel(
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]})
            ),
            &l
        ));
        assert!(!label_selector_matches(
            &sel(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})),
            &l
        ));
    }
}
