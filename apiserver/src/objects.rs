//! Small helpers over objects held as JSON: metadata access, the
//! system-managed fields the server stamps on writes, and body decoding.

use rand::Rng;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The largest request body accepted, as in Kubernetes (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let o = obj.as_object_mut()?;
    o.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name").filter(|s| !s.is_empty())
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|s| !s.is_empty())
}

pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if let Some(m) = meta_mut(obj) {
        m.insert(field.to_string(), value);
    }
}

pub fn remove_meta(obj: &mut Value, field: &str) {
    if let Some(m) = meta_mut(obj) {
        m.remove(field);
    }
}

/// Drops empty `labels`, `annotations`, `finalizers` and `ownerReferences`:
/// Kubernetes never stores them empty (Go's omitempty), so clients that
/// remove the last key see the field disappear.
pub fn drop_empty_metadata(obj: &mut Value) {
    if let Some(m) = meta_mut(obj) {
        for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
            let empty = match m.get(f) {
                Some(Value::Object(o)) => o.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                m.remove(f);
            }
        }
    }
}

/// The revision a client sent in `metadata.resourceVersion`, if any.
pub fn resource_version(obj: &Value) -> ApiResult<Option<i64>> {
    match meta_str(obj, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
            ApiError::BadRequest(format!("invalid resourceVersion {s:?}: not a number"))
        }),
    }
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    meta(obj).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|v| !v.is_null()))
}

/// Now, formatted as Kubernetes' `metav1.Time` (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Now with microseconds, as Kubernetes' `metav1.MicroTime` (leases, events).
pub fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A name from `generateName`: the prefix plus five random characters from
/// Kubernetes' alphabet (no vowels, no confusable digits).
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    // Kubernetes trims the prefix so the result stays within 63 characters.
    let max_prefix = 63 - 5;
    let p = if prefix.len() > max_prefix {
        &prefix[..max_prefix]
    } else {
        prefix
    };
    format!("{p}{suffix}")
}

/// Everything outside `metadata` and `status`: what a spec change means for
/// `metadata.generation`.
pub fn spec_part(obj: &Value) -> Value {
    match obj.as_object() {
        Some(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => Value::Null,
    }
}

/// Decodes a request body (JSON or YAML by content type) into an object.
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> ApiResult<Value> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(MAX_BODY_BYTES));
    }
    let ct = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let value: Value = if ct.contains("yaml") {
        serde_saphyr::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?
    } else if ct.contains("protobuf") {
        crate::protobuf::decode(body).map_err(|e| match e {
            crate::protobuf::ProtobufError::UnsupportedKind { .. } => {
                ApiError::UnsupportedMediaType(format!("{e}; send this kind as application/json"))
            }
            other => ApiError::BadRequest(format!("cannot decode the protobuf body: {other}")),
        })?
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}"))
        })?
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON or YAML object".to_string(),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_keep_the_prefix_and_add_five_characters() {
        let n = generate_name("web-");
        assert!(n.starts_with("web-"));
        assert_eq!(n.len(), 9);
    }

    #[test]
    fn oversized_and_non_object_bodies_are_rejected() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            decode_body(None, &big),
            Err(ApiError::TooLarge(MAX_BODY_BYTES))
        );
        assert!(matches!(
            decode_body(None, b"[1]"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            decode_body(None, b"{nope"),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn empty_metadata_maps_are_dropped_and_others_kept() {
        let mut v = serde_json::json!({"metadata": {"labels": {}, "annotations": {"a": "b"}, "finalizers": []}});
        drop_empty_metadata(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"metadata": {"annotations": {"a": "b"}}})
        );
    }

    #[test]
    fn yaml_bodies_decode_like_json() {
        let v = decode_body(
            Some("application/yaml"),
            b"kind: Pod\nmetadata:\n  name: a\n",
        )
        .expect("yaml");
        assert_eq!(v["metadata"]["name"], "a");
    }
}
