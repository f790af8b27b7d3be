//! Small lenient accessors over `serde_json::Value` and field-path builders.
//!
//! Validation treats a field of the wrong JSON type as absent: wrong types are
//! [`super::check_typed`]'s job, and this keeps every rule free of `unwrap`.

use serde_json::{Map, Value};

/// `path.key`, or `key` at the root.
pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// `path[key]`, Kubernetes' notation for a map entry.
pub(crate) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

pub(crate) fn get<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.as_object()
        .and_then(|m| m.get(k))
        .filter(|v| !v.is_null())
}

pub(crate) fn obj<'a>(v: &'a Value, k: &str) -> Option<&'a Map<String, Value>> {
    get(v, k).and_then(Value::as_object)
}

pub(crate) fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    get(v, k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The string at `k`, or "" when absent (Go's zero value).
pub(crate) fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    get(v, k).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn int(v: &Value, k: &str) -> Option<i64> {
    get(v, k).and_then(Value::as_i64)
}

pub(crate) fn boolean(v: &Value, k: &str) -> Option<bool> {
    get(v, k).and_then(Value::as_bool)
}

/// A map of strings (labels, annotations, selectors), skipping non-strings.
pub(crate) fn string_map<'a>(v: &'a Value, k: &str) -> Vec<(&'a str, &'a str)> {
    obj(v, k)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), s)))
                .collect()
        })
        .unwrap_or_default()
}

/// Walks nested object keys, e.g. `at(obj, &["spec", "template"])`.
pub(crate) fn at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |cur, k| get(cur, k))
}

/// Equality that treats absent, null, `{}` and `[]` alike, as Go's
/// `omitempty` round trip does.
pub(crate) fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn empty(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null) => true,
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        }
    }
    if empty(a) && empty(b) {
        return true;
    }
    a == b
}

/// Deep equality that, at every level, treats absent, null, `{}` and `[]`
/// alike (Kubernetes compares decoded structs, where those are all "unset").
pub(crate) fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.iter().all(|(k, v)| semantic_eq(Some(v), y.get(k)))
                && y.iter()
                    .filter(|(k, _)| !x.contains_key(*k))
                    .all(|(_, v)| same(None, Some(v)))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| semantic_eq(Some(p), Some(q)))
        }
        _ => same(a, b),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_are_built_like_kubernetes_field_paths() {
        assert_eq!(child("", "spec"), "spec");
        assert_eq!(child("spec", "containers"), "spec.containers");
        assert_eq!(index("spec.containers", 2), "spec.containers[2]");
        assert_eq!(key("resources.limits", "cpu"), "resources.limits[cpu]");
    }

    #[test]
    fn accessors_treat_wrong_types_and_nulls_as_absent() {
        let v = json!({"a": "x", "n": null, "i": 3, "o": {"b": {"c": true}}});
        assert_eq!(str_of(&v, "a"), "x");
        assert_eq!(str_of(&v, "i"), "");
        assert!(get(&v, "n").is_none());
        assert_eq!(int(&v, "i"), Some(3));
        assert_eq!(at(&v, &["o", "b", "c"]), Some(&json!(true)));
        assert!(arr(&v, "a").is_empty());
    }

    #[test]
    fn semantic_equality_ignores_empty_fields_at_any_depth() {
        let a = json!({"x": {"env": [], "y": 1}, "z": null});
        let b = json!({"x": {"y": 1, "m": {}}});
        assert!(semantic_eq(Some(&a), Some(&b)));
        assert!(!semantic_eq(Some(&a), Some(&json!({"x": {"y": 2}}))));
    }

    #[test]
    fn empty_collections_equal_absent_fields() {
        assert!(same(None, Some(&json!({}))));
        assert!(same(Some(&json!([])), Some(&Value::Null)));
        assert!(!same(Some(&json!([1])), None));
    }
}
