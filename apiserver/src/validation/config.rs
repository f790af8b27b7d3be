//! ConfigMap and Secret: keys, total size, and `immutable`
//! (`ValidateConfigMap`, `ValidateSecret` upstream).

use std::collections::HashSet;

use serde_json::Value;

use super::names;
use super::value::{boolean, child, get, key, obj, same, str_of};
use super::{push_invalid, FieldError, IMMUTABLE};

/// Upstream's size limit for a ConfigMap's or Secret's data (1 MiB).
const MAX_DATA_BYTES: usize = 1024 * 1024;
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

/// Checks the keys of every map in `fields`, summing the sizes of their values
/// (base64 values count by their decoded size, approximately).
fn validate_data(o: &Value, fields: &[&str], errs: &mut Vec<FieldError>) -> usize {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for field in fields {
        for (k, v) in obj(o, field).into_iter().flatten() {
            let p = key(field, k);
            push_invalid(errs, &p, k.as_str(), names::config_key(k));
            if !seen.insert(k.as_str()) {
                errs.push(FieldError::invalid(
                    &p,
                    k.as_str(),
                    "duplicate of key present in other data fields",
                ));
            }
            let len = v.as_str().map_or(0, str::len);
            total +=
                if *field == "binaryData" || (*field == "data" && fields.contains(&"stringData")) {
                    len / 4 * 3
                } else {
                    len
                };
        }
    }
    total
}

fn validate_immutable_data(
    o: &Value,
    old: Option<&Value>,
    fields: &[&str],
    errs: &mut Vec<FieldError>,
) {
    let Some(old) = old else {
        return;
    };
    if boolean(old, "immutable") != Some(true) {
        return;
    }
    if boolean(o, "immutable") != Some(true) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_SET));
    }
    for field in fields {
        if !same(get(o, field), get(old, field)) {
            errs.push(FieldError::forbidden(*field, IMMUTABLE_SET));
        }
    }
}

pub(crate) fn validate_config_map(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let total = validate_data(o, &["data", "binaryData"], errs);
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("data", MAX_DATA_BYTES));
    }
    validate_immutable_data(o, old, &["data", "binaryData"], errs);
}

pub(crate) fn validate_secret(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let total = validate_data(o, &["data", "stringData"], errs);
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("data", MAX_DATA_BYTES));
    }
    let kind = str_of(o, "type");
    if kind == "kubernetes.io/service-account-token" {
        let annotation = "kubernetes.io/service-account.name";
        let has = get(o, "metadata")
            .and_then(|m| obj(m, "annotations"))
            .is_some_and(|a| a.contains_key(annotation));
        if !has {
            errs.push(FieldError::required(
                child("metadata.annotations", annotation),
                "",
            ));
        }
    }
    if let Some(old) = old {
        let old_kind = str_of(old, "type");
        if !old_kind.is_empty() && old_kind != kind {
            errs.push(FieldError::invalid("type", kind, IMMUTABLE));
        }
    }
    validate_immutable_data(o, old, &["data"], errs);
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
    fn config_map_keys_must_be_config_keys() {
        let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"ok.txt": "1", "no/slash": "2"}});
        let errs = validate("", "ConfigMap", &cm, None);
        assert_eq!(fields(&errs), ["data[no/slash]"]);
    }

    #[test]
    fn keys_may_not_repeat_across_data_and_binary_data() {
        let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"k": "1"}, "binaryData": {"k": "AA=="}});
        assert_eq!(
            fields(&validate("", "ConfigMap", &cm, None)),
            ["binaryData[k]"]
        );
    }

    #[test]
    fn config_maps_over_one_mebibyte_are_too_long() {
        let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"k": "x".repeat(MAX_DATA_BYTES + 1)}});
        let errs = validate("", "ConfigMap", &cm, None);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].kind, super::super::FieldErrorKind::TooLong);
    }

    #[test]
    fn immutable_config_maps_and_secrets_keep_their_data() {
        let old = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"k": "1"}});
        let changed = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"k": "2"}});
        assert_eq!(
            fields(&validate("", "ConfigMap", &changed, Some(&old))),
            ["data"]
        );
        let unset = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"k": "1"}});
        assert_eq!(
            fields(&validate("", "ConfigMap", &unset, Some(&old))),
            ["immutable"]
        );
        let relabeled = json!({"metadata": {"name": "c", "namespace": "d", "labels": {"a": "b"}}, "immutable": true, "data": {"k": "1"}});
        assert!(validate("", "ConfigMap", &relabeled, Some(&old)).is_empty());
        let mut old_secret = old.clone();
        old_secret["data"] = json!({"k": "MQ=="});
        let mut new_secret = changed.clone();
        new_secret["data"] = json!({"k": "Mg=="});
        assert_eq!(
            fields(&validate("", "Secret", &new_secret, Some(&old_secret))),
            ["data"]
        );
    }

    #[test]
    fn secret_type_is_immutable() {
        let old = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"});
        let new = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls"});
        assert_eq!(fields(&validate("", "Secret", &new, Some(&old))), ["type"]);
    }

    #[test]
    fn service_account_token_secrets_name_their_account() {
        let s = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/service-account-token"});
        assert_eq!(
            fields(&validate("", "Secret", &s, None)),
            ["metadata.annotations.kubernetes.io/service-account.name"]
        );
    }
}
