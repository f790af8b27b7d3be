//! Object validation and strict field checking, as pure functions over
//! `serde_json::Value`.
//!
//! What this module owns:
//! - [`validate`]: Kubernetes' semantic rules for create and update
//!   (`pkg/apis/*/validation` upstream), returning one [`FieldError`] per bad
//!   field, with Kubernetes' field paths and messages.
//! - [`check_typed`]: decoding into the real `k8s-openapi` type, to reject
//!   wrong JSON types (`replicas: "three"`) with a 400.
//! - [`unknown_fields`] and [`duplicate_fields`]: the `fieldValidation=Strict`
//!   / `Warn` checks, formatted like Kubernetes' strict decoding errors.
//!
//! It must not depend on storage, HTTP or async code: every function here is
//! synchronous and side-effect free, so handlers and tests call it directly.

mod cluster;
mod config;
mod duplicates;
mod meta;
mod names;
mod pod;
mod service;
mod typed;
mod value;
mod workloads;

use std::fmt;

use serde_json::Value;

pub use duplicates::duplicate_fields;
pub use typed::{check_typed, check_typed_and_unknown, unknown_fields};

/// One invalid field, as Kubernetes reports it in a `Status`'s `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
    /// What is wrong with it.
    pub kind: FieldErrorKind,
    /// Kubernetes' error body for the cause's `message`, e.g.
    /// `Invalid value: "Foo": a lowercase RFC 1123 subdomain must ...` or
    /// `Required value`. `Display` renders `field: message`, which is what
    /// Kubernetes prints after `<Kind> "<name>" is invalid: `.
    pub message: String,
}

/// The kind of a [`FieldError`], mirroring `field.ErrorType` upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// A required field is missing or empty.
    Required,
    /// The value is malformed or out of range.
    Invalid,
    /// The value repeats one that must be unique.
    Duplicate,
    /// The value is not one of an enumerated set.
    NotSupported,
    /// The field may not be set (or changed) here.
    Forbidden,
    /// The value is longer than allowed.
    TooLong,
    /// The list has more items than allowed.
    TooMany,
    /// The value refers to something that does not exist (e.g. a volumeMount
    /// naming no volume).
    NotFound,
}

impl FieldErrorKind {
    /// The `StatusCause.reason` string Kubernetes uses for this kind.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::NotFound => "FieldValueNotFound",
        }
    }

    /// The words Kubernetes starts the error body with.
    fn title(&self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::Duplicate => "Duplicate value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::NotFound => "Not found",
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Renders a bad value the way newer Kubernetes versions do: JSON.
fn render(value: &Value) -> String {
    value.to_string()
}

fn body(kind: FieldErrorKind, value: Option<&Value>, detail: &str) -> String {
    let mut s = kind.title().to_string();
    if let Some(v) = value {
        s.push_str(": ");
        s.push_str(&render(v));
    }
    if !detail.is_empty() {
        s.push_str(": ");
        s.push_str(detail);
    }
    s
}

impl FieldError {
    /// `Required value[: detail]`.
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        Self::new(field, FieldErrorKind::Required, None, detail)
    }

    /// `Invalid value: <value>: detail`.
    pub fn invalid(field: impl Into<String>, value: impl Into<Value>, detail: &str) -> Self {
        Self::new(field, FieldErrorKind::Invalid, Some(&value.into()), detail)
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(field, FieldErrorKind::Duplicate, Some(&value.into()), "")
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let detail = format!("supported values: {}", quoted.join(", "));
        Self::new(
            field,
            FieldErrorKind::NotSupported,
            Some(&value.into()),
            &detail,
        )
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self::new(field, FieldErrorKind::Forbidden, None, detail)
    }

    /// `Too long: must have at most <max> bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        let detail = format!("must have at most {max} bytes");
        Self::new(field, FieldErrorKind::TooLong, None, &detail)
    }

    /// `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        let detail = format!("must have at most {max} items");
        Self::new(
            field,
            FieldErrorKind::TooMany,
            Some(&Value::from(actual)),
            &detail,
        )
    }

    /// `Not found: <value>`.
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(field, FieldErrorKind::NotFound, Some(&value.into()), "")
    }

    fn new(
        field: impl Into<String>,
        kind: FieldErrorKind,
        value: Option<&Value>,
        detail: &str,
    ) -> Self {
        Self {
            field: field.into(),
            kind,
            message: body(kind, value, detail),
        }
    }
}

/// Pushes one `Invalid` error for `value` when a syntax checker found
/// problems, joining its messages (one error per bad field).
fn push_invalid(
    errs: &mut Vec<FieldError>,
    field: impl Into<String>,
    value: &str,
    msgs: Vec<String>,
) {
    if !msgs.is_empty() {
        errs.push(FieldError::invalid(field, value, &msgs.join(", ")));
    }
}

/// `field is immutable`, the message for fields that may not change on update.
const IMMUTABLE: &str = "field is immutable";

/// Validates `obj` of `group`/`kind` for create (`old == None`) or update.
///
/// Expects the object after defaulting (as Kubernetes validates after
/// decoding, which defaults). Kinds this module does not know get no errors.
/// Fields with the wrong JSON type are left to [`check_typed`].
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(rules) = rules_for(group, kind) else {
        return errs;
    };
    if let Some(name_rule) = rules.name {
        meta::validate_object_meta(obj, name_rule, rules.namespaced, &mut errs);
        if let Some(old) = old {
            meta::validate_object_meta_update(obj, old, &mut errs);
        }
    }
    (rules.spec)(obj, old, &mut errs);
    errs
}

/// A kind's validation rules: how its name is checked (None: no metadata
/// checks, for subresource bodies), whether it lives in a namespace, and its
/// kind-specific checks.
struct Rules {
    name: Option<names::NameRule>,
    namespaced: bool,
    spec: SpecRule,
}

/// A kind's own checks: `(object, old object on update, errors)`.
type SpecRule = fn(&Value, Option<&Value>, &mut Vec<FieldError>);

fn rules_for(group: &str, kind: &str) -> Option<Rules> {
    use names::NameRule::{Dns1035Label, Dns1123Label, PathSegment, Subdomain};
    let (name, namespaced, spec): (Option<names::NameRule>, bool, SpecRule) = match (group, kind) {
        ("" | "core", "Namespace") => (Some(Dns1123Label), false, cluster::validate_namespace),
        ("" | "core", "Node") => (Some(Subdomain), false, cluster::validate_node),
        ("" | "core", "Pod") => (Some(Subdomain), true, pod::validate_pod),
        ("" | "core", "Service") => (Some(Dns1035Label), true, service::validate_service),
        ("" | "core", "Endpoints") => (Some(Subdomain), true, service::validate_endpoints),
        ("" | "core", "ConfigMap") => (Some(Subdomain), true, config::validate_config_map),
        ("" | "core", "Secret") => (Some(Subdomain), true, config::validate_secret),
        ("" | "core", "ServiceAccount") => (Some(Subdomain), true, nothing),
        ("" | "core", "Event") => (Some(Subdomain), true, cluster::validate_event),
        ("apps", "Deployment") => (Some(Subdomain), true, workloads::validate_deployment),
        ("apps", "ReplicaSet") => (Some(Subdomain), true, workloads::validate_replica_set),
        ("apps", "DaemonSet") => (Some(Subdomain), true, workloads::validate_daemon_set),
        ("apps", "ControllerRevision") => (
            Some(Subdomain),
            true,
            workloads::validate_controller_revision,
        ),
        ("batch", "Job") => (Some(Subdomain), true, workloads::validate_job),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            (Some(PathSegment), true, workloads::validate_hpa)
        }
        ("autoscaling", "Scale") => (None, true, workloads::validate_scale),
        ("coordination.k8s.io", "Lease") => (Some(Subdomain), true, cluster::validate_lease),
        ("discovery.k8s.io", "EndpointSlice") => {
            (Some(Subdomain), true, service::validate_endpoint_slice)
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            (Some(Subdomain), false, cluster::validate_priority_class)
        }
        ("policy", "Eviction") => (None, true, cluster::validate_eviction),
        (_, "DeleteOptions") => (None, false, cluster::validate_delete_options),
        _ => return None,
    };
    Some(Rules {
        name,
        namespaced,
        spec,
    })
}

fn nothing(_: &Value, _: Option<&Value>, _: &mut Vec<FieldError>) {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reasons_match_kubernetes_cause_types() {
        let table = [
            (FieldErrorKind::Required, "FieldValueRequired"),
            (FieldErrorKind::Invalid, "FieldValueInvalid"),
            (FieldErrorKind::Duplicate, "FieldValueDuplicate"),
            (FieldErrorKind::NotSupported, "FieldValueNotSupported"),
            (FieldErrorKind::Forbidden, "FieldValueForbidden"),
            (FieldErrorKind::TooLong, "FieldValueTooLong"),
            (FieldErrorKind::TooMany, "FieldValueTooMany"),
            (FieldErrorKind::NotFound, "FieldValueNotFound"),
        ];
        for (kind, reason) in table {
            assert_eq!(kind.reason(), reason);
        }
    }

    #[test]
    fn error_bodies_are_formatted_like_kubernetes() {
        let cases = [
            (FieldError::required("spec.containers", ""), "spec.containers: Required value"),
            (
                FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                FieldError::not_supported("spec.restartPolicy", "Sometimes", &["Always", "OnFailure", "Never"]),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ),
            (
                FieldError::duplicate("spec.containers[1].name", "web"),
                "spec.containers[1].name: Duplicate value: \"web\"",
            ),
            (
                FieldError::too_long("metadata.annotations", 262144),
                "metadata.annotations: Too long: must have at most 262144 bytes",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn unknown_kinds_are_not_validated() {
        assert!(validate("example.com", "Widget", &json!({}), None).is_empty());
    }

    #[test]
    fn a_minimal_valid_object_of_every_kind_passes() {
        let cases = [
            ("", "Namespace", json!({"metadata": {"name": "team-a"}})),
            ("", "Node", json!({"metadata": {"name": "node-1.example"}})),
            (
                "",
                "ConfigMap",
                json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a.txt": "x"}}),
            ),
            (
                "",
                "Secret",
                json!({"metadata": {"name": "s", "namespace": "default"}, "type": "Opaque"}),
            ),
            (
                "",
                "ServiceAccount",
                json!({"metadata": {"name": "default", "namespace": "default"}}),
            ),
            (
                "coordination.k8s.io",
                "Lease",
                json!({"metadata": {"name": "node-1", "namespace": "kube-node-lease"}}),
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": {"name": "high"}, "value": 1000}),
            ),
        ];
        for (group, kind, obj) in cases {
            let errs = validate(group, kind, &obj, None);
            assert!(errs.is_empty(), "{kind}: {errs:?}");
        }
    }
}
