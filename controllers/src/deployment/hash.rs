//! ReplicaSet names from a hash of the pod template, as Kubernetes'
//! `ComputeHash`: FNV-32a of the template (plus the collision count) and
//! the decimal digits mapped onto an alphabet without vowels, so names
//! never spell words and stay valid DNS labels.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The label every ReplicaSet of a Deployment and its pods carry.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The template with the `pod-template-hash` label removed.
pub fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    if let Some(m) = t.metadata.as_mut() {
        if m.labels.as_ref().is_some_and(|l| l.is_empty()) {
            m.labels = None;
        }
    }
    t
}

/// Drops nulls, empty objects and empty arrays, recursively: Kubernetes
/// compares templates semantically, where an empty `resources: {}` equals
/// none at all (clients such as `kubectl rollout undo` send such fields).
pub(crate) fn normalized(v: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let m: serde_json::Map<String, Value> = m
                .into_iter()
                .filter_map(|(k, v)| normalized(v).map(|v| (k, v)))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(a) => {
            let a: Vec<Value> = a
                .into_iter()
                .map(|v| normalized(v).unwrap_or(Value::Null))
                .collect();
            (!a.is_empty()).then_some(Value::Array(a))
        }
        other => Some(other),
    }
}

fn semantic(template: &PodTemplateSpec) -> Option<serde_json::Value> {
    serde_json::to_value(without_hash(template))
        .ok()
        .and_then(normalized)
}

/// Whether two templates are equal once their hash labels are ignored.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    semantic(a) == semantic(b)
}

/// The `pod-template-hash` of a template.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = semantic(template)
        .and_then(|v| serde_json::to_vec(&v).ok())
        .unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    fnv32a(&bytes)
        .to_string()
        .bytes()
        .map(|d| char::from(ALPHABET[usize::from(d) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn template(image: &str, hash: Option<&str>) -> PodTemplateSpec {
        let mut labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        if let Some(h) = hash {
            labels.insert(POD_TEMPLATE_HASH.into(), h.into());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": ObjectMeta { labels: Some(labels), ..Default::default() },
            "spec": { "containers": [{ "name": "c", "image": image }] }
        }))
        .expect("a template")
    }

    #[test]
    fn the_hash_label_does_not_change_the_hash() {
        assert_eq!(
            template_hash(&template("nginx", None), None),
            template_hash(&template("nginx", Some("abc")), None)
        );
        assert!(equal_ignoring_hash(
            &template("nginx", None),
            &template("nginx", Some("abc"))
        ));
    }

    #[test]
    fn empty_fields_do_not_make_templates_differ() {
        let a = template("nginx", None);
        let mut b = template("nginx", Some("x"));
        if let Some(spec) = b.spec.as_mut() {
            spec.containers[0].resources = Some(Default::default());
        }
        assert!(equal_ignoring_hash(&a, &b));
        assert_eq!(template_hash(&a, None), template_hash(&b, None));
    }

    #[test]
    fn a_different_template_or_collision_count_gives_a_different_name() {
        let a = template_hash(&template("nginx:1", None), None);
        assert_ne!(a, template_hash(&template("nginx:2", None), None));
        assert_ne!(a, template_hash(&template("nginx:1", None), Some(1)));
    }

    #[test]
    fn hashes_are_made_of_safe_characters() {
        let h = template_hash(&template("nginx", None), None);
        assert!(!h.is_empty() && h.len() <= 10);
        assert!(h.bytes().all(|c| ALPHABET.contains(&c)));
    }
}
