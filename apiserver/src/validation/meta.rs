//! `metadata` checks shared by every kind, and label selectors
//! (`ValidateObjectMeta`, `ValidateLabels`, `ValidateLabelSelector` upstream).

use serde_json::Value;

use super::names::{self, NameRule};
use super::value::{arr, child, get, index, obj, same, str_of, string_map};
use super::{push_invalid, FieldError, IMMUTABLE};

/// Kubernetes' limit on the summed size of all annotation keys and values.
pub(crate) const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

pub(crate) fn validate_object_meta(
    o: &Value,
    rule: NameRule,
    namespaced: bool,
    errs: &mut Vec<FieldError>,
) {
    let empty = Value::Null;
    let meta = get(o, "metadata").unwrap_or(&empty);
    let name = str_of(meta, "name");
    let generate_name = str_of(meta, "generateName");
    if !generate_name.is_empty() {
        push_invalid(
            errs,
            "metadata.generateName",
            generate_name,
            rule.check(generate_name, true),
        );
    }
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        push_invalid(errs, "metadata.name", name, rule.check(name, false));
    }
    let namespace = str_of(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            push_invalid(
                errs,
                "metadata.namespace",
                namespace,
                names::dns1123_label(namespace),
            );
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    validate_labels(meta, "metadata", errs);
    validate_annotations(meta, "metadata", errs);
    validate_owner_references(meta, errs);
    for (i, f) in arr(meta, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        push_invalid(
            errs,
            index("metadata.finalizers", i),
            f,
            names::qualified_name(f),
        );
    }
    if let Some(g) = get(meta, "generation").and_then(Value::as_i64) {
        if g < 0 {
            errs.push(FieldError::invalid(
                "metadata.generation",
                g,
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// `labels` of the object `meta` (a `metadata` or template `metadata`), with
/// errors under `path.labels`.
pub(crate) fn validate_labels(meta: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let field = child(path, "labels");
    for (k, v) in string_map(meta, "labels") {
        push_invalid(errs, &field, k, names::qualified_name(k));
        push_invalid(errs, &field, v, names::label_value(v));
    }
}

pub(crate) fn validate_annotations(meta: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let field = child(path, "annotations");
    let mut total = 0usize;
    for (k, v) in string_map(meta, "annotations") {
        push_invalid(errs, &field, k, names::qualified_name(&k.to_lowercase()));
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(&field, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_owner_references(meta: &Value, errs: &mut Vec<FieldError>) {
    let path = "metadata.ownerReferences";
    let refs = arr(meta, "ownerReferences");
    let mut controllers = Vec::new();
    for r in refs {
        for (field, what) in [
            ("apiVersion", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ] {
            if str_of(r, field).is_empty() {
                errs.push(FieldError::invalid(
                    child(path, field),
                    "",
                    &format!("{what} must not be empty"),
                ));
            }
        }
        if get(r, "controller").and_then(Value::as_bool) == Some(true) {
            controllers.push(format!("{}/{}", str_of(r, "kind"), str_of(r, "name")));
        }
    }
    if controllers.len() > 1 {
        let detail = format!(
            "Only one reference can have Controller set to true. Found \"true\" in references for {}",
            controllers.join(" and ")
        );
        errs.push(FieldError::invalid(
            path,
            Value::Array(refs.to_vec()),
            &detail,
        ));
    }
}

/// Fields of `metadata` that never change after create.
pub(crate) fn validate_object_meta_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let new_meta = get(new, "metadata").unwrap_or(&empty);
    let old_meta = get(old, "metadata").unwrap_or(&empty);
    for field in ["name", "namespace", "uid", "creationTimestamp"] {
        let (n, o) = (get(new_meta, field), get(old_meta, field));
        if !same(n, o) {
            let shown = n.cloned().unwrap_or(Value::String(String::new()));
            errs.push(FieldError::invalid(
                child("metadata", field),
                shown,
                IMMUTABLE,
            ));
        }
    }
}

/// Checks a `LabelSelector` at `path` (`matchLabels` and `matchExpressions`).
pub(crate) fn validate_label_selector(sel: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let ml = child(path, "matchLabels");
    for (k, v) in string_map(sel, "matchLabels") {
        push_invalid(errs, &ml, k, names::qualified_name(k));
        push_invalid(errs, &ml, v, names::label_value(v));
    }
    for (i, e) in arr(sel, "matchExpressions").iter().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        let values = arr(e, "values");
        match str_of(e, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                child(&p, "operator"),
                other,
                "not a valid selector operator",
            )),
        }
        let k = str_of(e, "key");
        push_invalid(errs, child(&p, "key"), k, names::qualified_name(k));
        for v in values {
            let v = v.as_str().unwrap_or("");
            push_invalid(
                errs,
                index(&child(&p, "values"), i),
                v,
                names::label_value(v),
            );
        }
    }
}

/// True when the selector has neither `matchLabels` nor `matchExpressions`.
pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    obj(sel, "matchLabels").is_none_or(|m| m.is_empty()) && arr(sel, "matchExpressions").is_empty()
}

/// Whether `labels` (an object of strings, or absent) satisfies `sel`.
pub(crate) fn selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| labels.and_then(|l| get(l, k)).and_then(Value::as_str);
    let labels_match = string_map(sel, "matchLabels")
        .into_iter()
        .all(|(k, v)| label(k) == Some(v));
    labels_match
        && arr(sel, "matchExpressions").iter().all(|e| {
            let values: Vec<&str> = arr(e, "values").iter().filter_map(Value::as_str).collect();
            let have = label(str_of(e, "key"));
            match str_of(e, "operator") {
                "In" => have.is_some_and(|h| values.contains(&h)),
                "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta_errs(o: Value, rule: NameRule, namespaced: bool) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_object_meta(&o, rule, namespaced, &mut errs);
        errs
    }

    #[test]
    fn names_are_required_unless_generate_name_is_set() {
        let errs = meta_errs(
            json!({"metadata": {"namespace": "default"}}),
            NameRule::Subdomain,
            true,
        );
        assert_eq!(
            errs,
            vec![FieldError::required(
                "metadata.name",
                "name or generateName is required"
            )]
        );
        // The API server fills `name` from `generateName` before validating.
        let errs = meta_errs(
            json!({"metadata": {"generateName": "web-", "name": "web-x1", "namespace": "default"}}),
            NameRule::Subdomain,
            true,
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn names_follow_the_kinds_rule() {
        let table = [
            (NameRule::Subdomain, "web.v1", true),
            (NameRule::Subdomain, "Web", false),
            (NameRule::Dns1123Label, "web.v1", false),
            (NameRule::Dns1035Label, "1web", false),
            (NameRule::Dns1035Label, "web-1", true),
        ];
        for (rule, name, ok) in table {
            let errs = meta_errs(
                json!({"metadata": {"name": name, "namespace": "ns"}}),
                rule,
                true,
            );
            assert_eq!(errs.is_empty(), ok, "{rule:?} {name}: {errs:?}");
            if !ok {
                assert_eq!(errs[0].field, "metadata.name");
            }
        }
    }

    #[test]
    fn namespaced_kinds_need_a_valid_namespace() {
        let errs = meta_errs(
            json!({"metadata": {"name": "a"}}),
            NameRule::Subdomain,
            true,
        );
        assert_eq!(errs[0].to_string(), "metadata.namespace: Required value");
        let errs = meta_errs(
            json!({"metadata": {"name": "a", "namespace": "Bad"}}),
            NameRule::Subdomain,
            true,
        );
        assert_eq!(errs[0].field, "metadata.namespace");
        let errs = meta_errs(
            json!({"metadata": {"name": "a", "namespace": "x"}}),
            NameRule::Subdomain,
            false,
        );
        assert_eq!(errs[0].kind, super::super::FieldErrorKind::Forbidden);
    }

    #[test]
    fn label_keys_and_values_are_checked() {
        let o = json!({"metadata": {"name": "a", "namespace": "n", "labels": {
            "app": "web", "example.com/tier": "front", "bad key": "x", "ok": "-bad"
        }}});
        let errs = meta_errs(o, NameRule::Subdomain, true);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.field == "metadata.labels"));
        assert!(errs[0]
            .message
            .starts_with("Invalid value: \"bad key\": name part must consist"));
    }

    #[test]
    fn annotations_may_not_exceed_256_kib_in_total() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let o = json!({"metadata": {"name": "a", "namespace": "n", "annotations": {"k": big}}});
        let errs = meta_errs(o, NameRule::Subdomain, true);
        assert_eq!(
            errs[0].to_string(),
            "metadata.annotations: Too long: must have at most 262144 bytes"
        );
    }

    #[test]
    fn owner_references_need_identity_and_at_most_one_controller() {
        let o = json!({"metadata": {"name": "a", "namespace": "n", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs2", "uid": "", "controller": true}
        ]}});
        let errs = meta_errs(o, NameRule::Subdomain, true);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].field, "metadata.ownerReferences.uid");
        assert!(errs[1]
            .message
            .contains("Only one reference can have Controller set to true"));
    }

    #[test]
    fn name_namespace_and_uid_are_immutable() {
        let old = json!({"metadata": {"name": "a", "namespace": "n", "uid": "1"}});
        let new = json!({"metadata": {"name": "b", "namespace": "n", "uid": "1"}});
        let mut errs = Vec::new();
        validate_object_meta_update(&new, &old, &mut errs);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Invalid value: \"b\": field is immutable"
        );
    }

    #[test]
    fn label_selectors_check_operators_and_values() {
        let sel = json!({"matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Near", "values": ["x"]}
        ]});
        let mut errs = Vec::new();
        validate_label_selector(&sel, "spec.selector", &mut errs);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator"
            ]
        );
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        let table = [
            (json!({"matchLabels": {"app": "web"}}), true),
            (json!({"matchLabels": {"app": "db"}}), false),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "x"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "Exists"}]}),
                false,
            ),
        ];
        for (sel, want) in table {
            assert_eq!(selector_matches(&sel, Some(&labels)), want, "{sel}");
        }
        assert!(selector_is_empty(&json!({"matchLabels": {}})));
    }
}
