//! Cluster-level and bookkeeping kinds: Namespace, Node, Event, Lease,
//! PriorityClass, and the Eviction / DeleteOptions request bodies.

use serde_json::Value;

use super::names;
use super::value::{arr, at, boolean, child, get, index, int, same, str_of};
use super::{push_invalid, FieldError};

fn empty() -> &'static Value {
    &Value::Null
}

pub(crate) fn validate_namespace(o: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = get(o, "spec").unwrap_or(empty());
    for (i, f) in arr(spec, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        if f != "kubernetes" {
            push_invalid(
                errs,
                index("spec.finalizers", i),
                f,
                names::qualified_name(f),
            );
        }
    }
}

pub(crate) fn validate_node(o: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    const EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
    let spec = get(o, "spec").unwrap_or(empty());
    let mut seen = Vec::new();
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let p = index("spec.taints", i);
        let k = str_of(t, "key");
        push_invalid(errs, child(&p, "key"), k, names::qualified_name(k));
        let v = str_of(t, "value");
        push_invalid(errs, child(&p, "value"), v, names::label_value(v));
        let effect = str_of(t, "effect");
        if effect.is_empty() {
            errs.push(FieldError::required(child(&p, "effect"), ""));
        } else if !EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                child(&p, "effect"),
                effect,
                EFFECTS,
            ));
        }
        if seen.contains(&(k, effect)) {
            errs.push(FieldError::duplicate(&p, t.clone()));
        }
        seen.push((k, effect));
    }
}

pub(crate) fn validate_event(o: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let ns = at(o, &["metadata", "namespace"])
        .and_then(Value::as_str)
        .unwrap_or("");
    let involved_ns = at(o, &["involvedObject", "namespace"])
        .and_then(Value::as_str)
        .unwrap_or("");
    // Events about cluster-scoped objects live in "default" (or no namespace).
    let ok = if involved_ns.is_empty() {
        ns.is_empty() || ns == "default"
    } else {
        ns == involved_ns
    };
    if !ok {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        ));
    }
    let count = int(o, "count").unwrap_or(0);
    if count < 0 {
        errs.push(FieldError::invalid(
            "count",
            count,
            "must be greater than or equal to 0",
        ));
    }
}

pub(crate) fn validate_lease(o: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = get(o, "spec").unwrap_or(empty());
    if let Some(d) = int(spec, "leaseDurationSeconds") {
        if d <= 0 {
            errs.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                d,
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = int(spec, "leaseTransitions") {
        if t < 0 {
            errs.push(FieldError::invalid(
                "spec.leaseTransitions",
                t,
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// The highest priority a user-created PriorityClass may have.
const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
/// The built-in classes, which the API server creates itself.
const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

pub(crate) fn validate_priority_class(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let name = at(o, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("");
    let value = int(o, "value").unwrap_or(0);
    if let Some((_, want)) = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) {
        if value != *want {
            errs.push(FieldError::forbidden(
                "value",
                &format!("value of {name} must be {want}"),
            ));
        }
    } else if name.starts_with("system-") {
        errs.push(FieldError::forbidden(
            "metadata.name",
            "priority class names with 'system-' prefix are reserved",
        ));
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ));
    }
    let policy = str_of(o, "preemptionPolicy");
    if !policy.is_empty() && !["Never", "PreemptLowerPriority"].contains(&policy) {
        errs.push(FieldError::not_supported(
            "preemptionPolicy",
            policy,
            &["Never", "PreemptLowerPriority"],
        ));
    }
    if let Some(old) = old {
        if !same(get(o, "value"), get(old, "value")) {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        if !same(get(o, "preemptionPolicy"), get(old, "preemptionPolicy")) {
            errs.push(FieldError::invalid(
                "preemptionPolicy",
                policy,
                super::IMMUTABLE,
            ));
        }
    }
}

pub(crate) fn validate_eviction(o: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    if let Some(opts) = get(o, "deleteOptions") {
        delete_options(opts, "deleteOptions", errs);
    }
}

pub(crate) fn validate_delete_options(o: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    delete_options(o, "", errs);
}

fn delete_options(o: &Value, path: &str, errs: &mut Vec<FieldError>) {
    const POLICIES: &[&str] = &["Foreground", "Background", "Orphan"];
    let policy = str_of(o, "propagationPolicy");
    if boolean(o, "orphanDependents").is_some() && !policy.is_empty() {
        errs.push(FieldError::invalid(
            child(path, "propagationPolicy"),
            policy,
            "orphanDependents and deletionPropagation cannot be both set",
        ));
    }
    if !policy.is_empty() && !POLICIES.contains(&policy) {
        errs.push(FieldError::not_supported(
            child(path, "propagationPolicy"),
            policy,
            POLICIES,
        ));
    }
    for (i, d) in arr(o, "dryRun").iter().enumerate() {
        let d = d.as_str().unwrap_or("");
        if d != "All" {
            errs.push(FieldError::not_supported(
                index(&child(path, "dryRun"), i),
                d,
                &["All"],
            ));
        }
    }
    if let Some(g) = int(o, "gracePeriodSeconds") {
        if g < 0 {
            errs.push(FieldError::invalid(
                child(path, "gracePeriodSeconds"),
                g,
                "must be greater than or equal to 0",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::validate;
    use super::*;

    fn fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        let ns = json!({"metadata": {"name": "team.a"}});
        let errs = validate("", "Namespace", &ns, None);
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Invalid value: \"team.a\": must not contain dots"
        );
    }

    #[test]
    fn node_taints_need_a_key_and_known_effect() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "x", "effect": "Sometimes"},
            {"key": "dedicated", "value": "cpu", "effect": "NoSchedule"}
        ]}});
        assert_eq!(
            fields(&validate("", "Node", &node, None)),
            ["spec.taints[1].effect", "spec.taints[2]"]
        );
    }

    #[test]
    fn events_live_in_their_objects_namespace() {
        let ok = json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {"kind": "Node", "name": "n1"}});
        assert!(validate("", "Event", &ok, None).is_empty());
        let bad = json!({"metadata": {"name": "e", "namespace": "a"}, "involvedObject": {"kind": "Pod", "namespace": "b"}});
        assert_eq!(
            fields(&validate("", "Event", &bad, None)),
            ["involvedObject.namespace"]
        );
    }

    #[test]
    fn leases_need_a_positive_duration() {
        let l = json!({"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": {"leaseDurationSeconds": 0}});
        assert_eq!(
            fields(&validate("coordination.k8s.io", "Lease", &l, None)),
            ["spec.leaseDurationSeconds"]
        );
    }

    #[test]
    fn priority_classes_respect_the_user_ceiling_and_reserved_names() {
        let table = [
            (
                json!({"metadata": {"name": "high"}, "value": 2_000_000_000}),
                vec!["value"],
            ),
            (
                json!({"metadata": {"name": "system-mine"}, "value": 1}),
                vec!["metadata.name"],
            ),
            (
                json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000}),
                vec![],
            ),
            (
                json!({"metadata": {"name": "p"}, "value": 1, "preemptionPolicy": "Always"}),
                vec!["preemptionPolicy"],
            ),
        ];
        for (pc, want) in table {
            assert_eq!(
                fields(&validate("scheduling.k8s.io", "PriorityClass", &pc, None)),
                want,
                "{pc}"
            );
        }
        let old = json!({"metadata": {"name": "p"}, "value": 1});
        let new = json!({"metadata": {"name": "p"}, "value": 2});
        assert_eq!(
            fields(&validate(
                "scheduling.k8s.io",
                "PriorityClass",
                &new,
                Some(&old)
            )),
            ["value"]
        );
    }

    #[test]
    fn delete_options_check_propagation_and_dry_run() {
        let opts =
            json!({"kind": "DeleteOptions", "propagationPolicy": "Later", "dryRun": ["Some"]});
        assert_eq!(
            fields(&validate("meta.k8s.io", "DeleteOptions", &opts, None)),
            ["propagationPolicy", "dryRun[0]"]
        );
        let both = json!({"orphanDependents": true, "propagationPolicy": "Orphan"});
        assert_eq!(
            fields(&validate("", "DeleteOptions", &both, None)),
            ["propagationPolicy"]
        );
        let eviction = json!({"metadata": {"name": "p", "namespace": "d"}, "deleteOptions": {"gracePeriodSeconds": -5}});
        assert_eq!(
            fields(&validate("policy", "Eviction", &eviction, None)),
            ["deleteOptions.gracePeriodSeconds"]
        );
    }
}
