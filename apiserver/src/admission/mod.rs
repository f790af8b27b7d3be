//! Admission: what happens to an object between decoding and storage —
//! strict field checks, type checks, defaulting, system fields and validation,
//! and the admission plugins ([`service_account`]).

pub mod service_account;

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, Cause};
use crate::objects::{self, meta_mut};
use crate::registry::ResourceDef;
use crate::{defaults, validation};

/// How `?fieldValidation=` wants unknown or duplicate fields treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation parameter unsupported: {other:?} (supported: Ignore, Warn, Strict)"
            ))),
        }
    }
}

/// Checks a decoded body against its kind, in one typed decode: fills in
/// `apiVersion`/`kind` or rejects ones naming another kind (400), rejects
/// fields of the wrong JSON type (400), and finds fields the schema does not
/// know plus (in a raw JSON body) duplicate keys. Those are returned as
/// warnings for `Warn`, refused with a 400 for `Strict`, skipped for `Ignore`.
pub fn check_body(
    def: &ResourceDef,
    raw: &[u8],
    obj: &mut Value,
    mode: FieldValidation,
) -> ApiResult<Vec<String>> {
    check_type_meta(def, obj)?;
    let want_unknown = mode != FieldValidation::Ignore;
    let unknown = validation::check_typed_and_unknown(def.group, def.kind, obj, want_unknown)
        .map_err(ApiError::BadRequest)?;
    if !want_unknown {
        return Ok(Vec::new());
    }
    let mut problems: Vec<String> = unknown
        .into_iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    // Duplicate keys can only be seen in the raw JSON (YAML bodies are checked by their parser).
    let is_json = raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_json {
        problems.extend(
            validation::duplicate_fields(raw)
                .into_iter()
                .map(|f| format!("duplicate field \"{f}\"")),
        );
    }
    if problems.is_empty() {
        return Ok(Vec::new());
    }
    match mode {
        FieldValidation::Strict => Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            problems.join(", ")
        ))),
        _ => Ok(problems),
    }
}

/// Fills in `apiVersion`/`kind`, or rejects ones that name another kind.
fn check_type_meta(def: &ResourceDef, obj: &mut Value) -> ApiResult<()> {
    let api_version = def.api_version();
    let o = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the object must be a JSON object".to_string()))?;
    match o.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("kind".into(), Value::String(def.kind.to_string()));
        }
        Some(k) if k == def.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the body of the request was in an unknown format: kind {k:?} does not match the resource {:?} (expected kind {:?})",
                def.plural, def.kind
            )))
        }
    }
    match o.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("apiVersion".into(), Value::String(api_version));
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
    }
    Ok(())
}

/// Runs Kubernetes' validation; any failure is a 422 with one cause per field.
pub fn validate(def: &ResourceDef, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    let errs = validation::validate(def.group, def.kind, obj, old);
    if errs.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid {
        group: def.group.to_string(),
        kind: def.kind.to_string(),
        name: objects::name(obj).unwrap_or_default().to_string(),
        causes: errs
            .into_iter()
            .map(|e| Cause {
                reason: e.kind.reason().to_string(),
                message: e.message,
                field: e.field,
            })
            .collect(),
    })
}

/// Defaulting, applied on every create and update.
pub fn default(def: &ResourceDef, obj: &mut Value) {
    objects::drop_empty_metadata(obj);
    defaults::apply_defaults(def.group, def.kind, obj);
}

/// The pod QoS class, from its containers' requests and limits.
pub fn pod_qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod["spec"][*f].as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let l = lim.get(r).filter(|v| !v.is_null());
            let q = req.get(r).filter(|v| !v.is_null());
            if l.is_some() || q.is_some() {
                any = true;
            }
            match (q, l) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && !containers.is_empty() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// System fields of a new object, and per-kind create-time rules.
pub fn prepare_create(def: &ResourceDef, obj: &mut Value, tolerations: (i64, i64)) {
    let now = objects::now_rfc3339();
    if let Some(m) = meta_mut(obj) {
        m.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        m.insert("creationTimestamp".into(), Value::String(now));
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("selfLink");
        if def.has_generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    match (def.group, def.kind) {
        ("", "Pod") => {
            defaults::default_tolerations_for_pod(obj, tolerations.0, tolerations.1);
            let qos = pod_qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
        }
        ("batch", "Job") => {
            generate_job_selector(obj);
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        ("", "Node") | ("", "Event") | ("coordination.k8s.io", _) => {}
        _ if def.subresources.status => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        _ => {}
    }
}

/// As Kubernetes' Job registry does: unless `spec.manualSelector` is true, a
/// new Job selects its pods by its own uid, and its pod template carries the
/// uid and name labels.
fn generate_job_selector(job: &mut Value) {
    if job["spec"]["manualSelector"].as_bool() == Some(true) {
        return;
    }
    let uid = job["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !job["spec"].is_object() {
        return;
    }
    job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    if !job["spec"]["template"]["metadata"].is_object() {
        job["spec"]["template"]["metadata"] = json!({});
    }
    if !job["spec"]["template"]["metadata"]["labels"].is_object() {
        job["spec"]["template"]["metadata"]["labels"] = json!({});
    }
    let labels = &mut job["spec"]["template"]["metadata"]["labels"];
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[k] = json!(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let be = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pod_qos_class(&be), "BestEffort");
        let g = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(pod_qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(pod_qos_class(&b), "Burstable");
    }

    #[test]
    fn a_new_job_selects_its_pods_by_its_uid_unless_the_selector_is_manual() {
        let mut job =
            json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {"template": {"spec": {}}}});
        generate_job_selector(&mut job);
        assert_eq!(
            job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "pi"
        );
        let mut manual = json!({"metadata": {"name": "m", "uid": "u2"}, "spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}}});
        generate_job_selector(&mut manual);
        assert_eq!(
            manual["spec"]["selector"],
            json!({"matchLabels": {"a": "b"}})
        );
    }

    #[test]
    fn field_validation_modes_parse_and_reject_unknown_values() {
        assert_eq!(FieldValidation::parse(None), Ok(FieldValidation::Warn));
        assert_eq!(
            FieldValidation::parse(Some("Strict")),
            Ok(FieldValidation::Strict)
        );
        assert!(FieldValidation::parse(Some("Loose")).is_err());
    }
}
