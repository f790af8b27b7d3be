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

/// Serializes an object with `metadata.resourceVersion` replaced by
/// `revision` (or left out when `None`) without copying it: the stored form
/// (no revision) and the served form (the store's revision) of one object.
pub struct WithRevision<'a> {
    pub object: &'a Value,
    pub revision: Option<i64>,
}

struct MetaWithRevision<'a> {
    meta: Option<&'a Map<String, Value>>,
    revision: Option<i64>,
}

impl serde::Serialize for WithRevision<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(root) = self.object else {
            return self.object.serialize(s);
        };
        // As `set_resource_version`: a missing `metadata` is added for the revision.
        let add_meta = self.revision.is_some() && !root.contains_key("metadata");
        let mut map = s.serialize_map(Some(root.len() + usize::from(add_meta)))?;
        for (k, v) in root {
            match v {
                Value::Object(meta) if k == "metadata" => map.serialize_entry(
                    k,
                    &MetaWithRevision {
                        meta: Some(meta),
                        revision: self.revision,
                    },
                )?,
                _ => map.serialize_entry(k, v)?,
            }
        }
        if add_meta {
            map.serialize_entry(
                "metadata",
                &MetaWithRevision {
                    meta: None,
                    revision: self.revision,
                },
            )?;
        }
        map.end()
    }
}

impl serde::Serialize for MetaWithRevision<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let entries = self
            .meta
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != "resourceVersion");
        let mut map = s.serialize_map(None)?;
        for (k, v) in entries {
            map.serialize_entry(k, v)?;
        }
        if let Some(rv) = self.revision {
            map.serialize_entry("resourceVersion", &rv.to_string())?;
        }
        map.end()
    }
}

/// Serializes the `PartialObjectMetadata` of an object (its metadata only,
/// as `meta.k8s.io/v1`), with `metadata.resourceVersion` as in
/// [`WithRevision`].
pub struct PartialMetadata<'a> {
    pub object: &'a Value,
    pub revision: Option<i64>,
}

impl serde::Serialize for PartialMetadata<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("kind", "PartialObjectMetadata")?;
        map.serialize_entry("apiVersion", "meta.k8s.io/v1")?;
        map.serialize_entry(
            "metadata",
            &MetaWithRevision {
                meta: meta(self.object),
                revision: self.revision,
            },
        )?;
        map.end()
    }
}

/// An object's `PartialObjectMetadata`.
pub fn into_partial_metadata(mut obj: Value) -> Value {
    let metadata = obj
        .as_object_mut()
        .and_then(|o| o.remove("metadata"))
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

/// Whether two objects are the same apart from `metadata.resourceVersion`
/// and `metadata.managedFields` (a write that changes nothing else is a
/// no-op), compared in place.
pub fn same_but_bookkeeping(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    let rest = |m: &Map<String, Value>| m.keys().filter(|k| k.as_str() != "metadata").count();
    if rest(a) != rest(b)
        || !a
            .iter()
            .filter(|(k, _)| k.as_str() != "metadata")
            .all(|(k, v)| b.get(k) == Some(v))
    {
        return false;
    }
    let kept = |k: &String| k != "resourceVersion" && k != "managedFields";
    match (a.get("metadata"), b.get("metadata")) {
        (None | Some(Value::Object(_)), None | Some(Value::Object(_))) => {
            let empty = Map::new();
            let ma = match a.get("metadata") {
                Some(Value::Object(m)) => m,
                _ => &empty,
            };
            let mb = match b.get("metadata") {
                Some(Value::Object(m)) => m,
                _ => &empty,
            };
            ma.keys().filter(|k| kept(k)).count() == mb.keys().filter(|k| kept(k)).count()
                && ma
                    .iter()
                    .filter(|(k, _)| kept(k))
                    .all(|(k, v)| mb.get(k) == Some(v))
        }
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn served(object: &Value, revision: Option<i64>) -> Value {
        let bytes = serde_json::to_vec(&WithRevision { object, revision }).unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    #[test]
    fn an_object_is_serialized_with_the_given_revision_in_place_of_its_own() {
        let obj =
            json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "3"}, "spec": {}});
        assert_eq!(
            served(&obj, Some(7)),
            json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "7"}, "spec": {}})
        );
        assert_eq!(
            served(&obj, None),
            json!({"kind": "Pod", "metadata": {"name": "a"}, "spec": {}})
        );
    }

    #[test]
    fn serializing_with_a_revision_matches_setting_it() {
        for obj in [
            json!({"kind": "X"}),
            json!({"metadata": null}),
            json!([1]),
            json!({"metadata": {}}),
        ] {
            let mut set = obj.clone();
            crate::watchcache::set_resource_version(&mut set, 5);
            assert_eq!(served(&obj, Some(5)), set, "{obj}");
        }
    }

    #[test]
    fn objects_differing_only_in_revision_and_managed_fields_are_the_same() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1", "managedFields": [{"manager": "x"}]}, "spec": {"n": 1}});
        let b = json!({"spec": {"n": 1}, "metadata": {"resourceVersion": "2", "name": "a"}});
        assert!(same_but_bookkeeping(&a, &b));
        let c = json!({"metadata": {"name": "a"}, "spec": {"n": 2}});
        assert!(!same_but_bookkeeping(&a, &c));
        let d = json!({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"n": 1}});
        assert!(!same_but_bookkeeping(&a, &d));
        // No metadata at all is the same as metadata holding only bookkeeping.
        assert!(same_but_bookkeeping(
            &json!({"metadata": {"resourceVersion": "1"}}),
            &json!({})
        ));
        assert!(!same_but_bookkeeping(
            &json!({"metadata": null}),
            &json!({})
        ));
    }

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
