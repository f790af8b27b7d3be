//! Decoding into the real `k8s-openapi` types: wrong JSON types
//! ([`check_typed`]) and fields the schema does not know ([`unknown_fields`]).
//!
//! `k8s-openapi`'s decoders ignore unknown keys and default missing required
//! fields, so a decode then re-encode keeps exactly the known fields: any key
//! of the input missing from the round trip is unknown to the schema.

use k8s_openapi::api::{
    apps, autoscaling, batch, coordination, core, discovery, policy, scheduling,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Something to do with the Rust type of a kind.
trait WithType {
    type Out;
    fn run<T: DeserializeOwned + Serialize>(self) -> Self::Out;
}

/// Calls `op` with the `k8s-openapi` type for `group`/`kind`; `None` for kinds
/// not served.
fn with_type<O: WithType>(group: &str, kind: &str, op: O) -> Option<O::Out> {
    Some(match (group, kind) {
        ("" | "core", "Namespace") => op.run::<core::v1::Namespace>(),
        ("" | "core", "Node") => op.run::<core::v1::Node>(),
        ("" | "core", "Pod") => op.run::<core::v1::Pod>(),
        ("" | "core", "Service") => op.run::<core::v1::Service>(),
        ("" | "core", "Endpoints") => op.run::<core::v1::Endpoints>(),
        ("" | "core", "ConfigMap") => op.run::<core::v1::ConfigMap>(),
        ("" | "core", "Secret") => op.run::<core::v1::Secret>(),
        ("" | "core", "ServiceAccount") => op.run::<core::v1::ServiceAccount>(),
        ("" | "core", "Event") => op.run::<core::v1::Event>(),
        ("apps", "Deployment") => op.run::<apps::v1::Deployment>(),
        ("apps", "ReplicaSet") => op.run::<apps::v1::ReplicaSet>(),
        ("apps", "DaemonSet") => op.run::<apps::v1::DaemonSet>(),
        ("apps", "ControllerRevision") => op.run::<apps::v1::ControllerRevision>(),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            op.run::<autoscaling::v2::HorizontalPodAutoscaler>()
        }
        ("autoscaling", "Scale") => op.run::<autoscaling::v1::Scale>(),
        ("batch", "Job") => op.run::<batch::v1::Job>(),
        ("coordination.k8s.io", "Lease") => op.run::<coordination::v1::Lease>(),
        ("discovery.k8s.io", "EndpointSlice") => op.run::<discovery::v1::EndpointSlice>(),
        ("scheduling.k8s.io", "PriorityClass") => op.run::<scheduling::v1::PriorityClass>(),
        ("policy", "Eviction") => op.run::<policy::v1::Eviction>(),
        (_, "DeleteOptions") => op.run::<DeleteOptions>(),
        _ => return None,
    })
}

/// The object without top-level `apiVersion`/`kind`: those are checked by the
/// caller against the URL, and `k8s-openapi` would reject other versions.
fn without_type_meta(obj: &Value) -> std::borrow::Cow<'_, Value> {
    match obj.as_object() {
        Some(m) if m.contains_key("apiVersion") || m.contains_key("kind") => {
            let mut m = m.clone();
            m.shift_remove("apiVersion");
            m.shift_remove("kind");
            std::borrow::Cow::Owned(Value::Object(m))
        }
        _ => std::borrow::Cow::Borrowed(obj),
    }
}

fn decode_error<T: DeserializeOwned>(v: &Value) -> Option<String> {
    T::deserialize(v).err().map(|e| e.to_string())
}

/// Checks that `obj` decodes into the Kubernetes type of `group`/`kind`.
///
/// The error names the field and the type problem, e.g.
/// `spec.replicas: invalid type: string "three", expected i32`; the caller
/// answers 400 BadRequest with it. Kinds not served are accepted.
pub fn check_typed(group: &str, kind: &str, obj: &Value) -> Result<(), String> {
    struct Check<'a>(&'a Value);
    impl WithType for Check<'_> {
        type Out = Result<(), String>;
        fn run<T: DeserializeOwned + Serialize>(self) -> Self::Out {
            let v = without_type_meta(self.0);
            match decode_error::<T>(&v) {
                None => Ok(()),
                Some(msg) => {
                    let path = locate::<T>(&v, &msg);
                    Err(if path.is_empty() {
                        msg
                    } else {
                        format!("{path}: {msg}")
                    })
                }
            }
        }
    }
    if !obj.is_object() {
        return Err(format!("invalid type: expected a {kind} object"));
    }
    with_type(group, kind, Check(obj)).unwrap_or(Ok(()))
}

/// Paths of the fields of `obj` that the Kubernetes schema for `group`/`kind`
/// does not know, in document order, written as Kubernetes writes them in its
/// strict decoding error (`unknown field "<path>"`): `spec.foo`,
/// `spec.template.spec.containers[0].imagePullPolicyy`.
///
/// Input `null`s are ignored. Returns nothing when `obj` does not decode
/// (that is [`check_typed`]'s error) or the kind is not served.
pub fn unknown_fields(group: &str, kind: &str, obj: &Value) -> Vec<String> {
    struct Unknown<'a>(&'a Value);
    impl WithType for Unknown<'_> {
        type Out = Vec<String>;
        fn run<T: DeserializeOwned + Serialize>(self) -> Self::Out {
            let v = without_type_meta(self.0);
            let Ok(typed) = T::deserialize(&*v) else {
                return Vec::new();
            };
            let Ok(round_trip) = serde_json::to_value(&typed) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            diff_keys(&v, &round_trip, "", &mut out);
            out
        }
    }
    with_type(group, kind, Unknown(obj)).unwrap_or_default()
}

/// [`check_typed`] and, when `unknown` is set, [`unknown_fields`] in one
/// decode: the admission path of every write calls this once.
pub fn check_typed_and_unknown(
    group: &str,
    kind: &str,
    obj: &Value,
    unknown: bool,
) -> Result<Vec<String>, String> {
    struct Both<'a>(&'a Value, bool);
    impl WithType for Both<'_> {
        type Out = Result<Vec<String>, String>;
        fn run<T: DeserializeOwned + Serialize>(self) -> Self::Out {
            let v = without_type_meta(self.0);
            let typed = match T::deserialize(&*v) {
                Ok(t) => t,
                Err(e) => {
                    let msg = e.to_string();
                    let path = locate::<T>(&v, &msg);
                    return Err(if path.is_empty() {
                        msg
                    } else {
                        format!("{path}: {msg}")
                    });
                }
            };
            let mut out = Vec::new();
            if self.1 {
                if let Ok(round_trip) = serde_json::to_value(&typed) {
                    diff_keys(&v, &round_trip, "", &mut out);
                }
            }
            Ok(out)
        }
    }
    if !obj.is_object() {
        return Err(format!("invalid type: expected a {kind} object"));
    }
    with_type(group, kind, Both(obj, unknown)).unwrap_or(Ok(Vec::new()))
}

/// Pushes the paths of keys in `input` that `known` lacks.
fn diff_keys(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(kv) => diff_keys(v, kv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, kv)) in a.iter().zip(b).enumerate() {
                diff_keys(v, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn resolve_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |cur, seg| match seg {
        Seg::Key(k) => cur.get_mut(k.as_str()),
        Seg::Index(i) => cur.get_mut(*i),
    })
}

fn child_count(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    }
}

/// Keeps only the first `n` children (object entries or array items).
fn truncate(v: &mut Value, n: usize) {
    match v {
        Value::Object(m) => {
            let keep: serde_json::Map<String, Value> =
                std::mem::take(m).into_iter().take(n).collect();
            *m = keep;
        }
        Value::Array(a) => a.truncate(n),
        _ => {}
    }
}

/// Finds where decoding `root` first fails with `msg`.
///
/// Decoders read in document order and stop at the first error, so keeping
/// only a prefix of a node's children reproduces the error exactly when the
/// prefix contains the bad child: a binary search per level finds it.
fn locate<T: DeserializeOwned>(root: &Value, msg: &str) -> String {
    let mut path: Vec<Seg> = Vec::new();
    let fails_with = |path: &[Seg], keep: usize| -> bool {
        let mut trial = root.clone();
        if let Some(node) = resolve_mut(&mut trial, path) {
            truncate(node, keep);
        }
        decode_error::<T>(&trial).as_deref() == Some(msg)
    };
    loop {
        let mut probe = root.clone();
        let Some(node) = resolve_mut(&mut probe, &path) else {
            break;
        };
        let n = child_count(node);
        // The node itself is the problem (e.g. an object where a list belongs).
        if n == 0 || fails_with(&path, 0) {
            break;
        }
        let (mut lo, mut hi) = (0usize, n - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if fails_with(&path, mid + 1) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let seg = match &*node {
            Value::Object(m) => match m.keys().nth(lo) {
                Some(k) => Seg::Key(k.clone()),
                None => break,
            },
            _ => Seg::Index(lo),
        };
        path.push(seg);
    }
    render_path(&path)
}

fn render_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                         "annotations": {"a": "b"}, "creationTimestamp": null},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web", "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "resources": {"limits": {"cpu": 1, "memory": "1Gi"}},
                        "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
                    }]}
                }
            },
            "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
        })
    }

    #[test]
    fn one_pass_reports_type_errors_and_unknown_fields_like_the_two_checks() {
        let bad = serde_json::json!({"spec": {"replicas": "three"}});
        assert_eq!(
            check_typed_and_unknown("apps", "Deployment", &bad, true),
            check_typed("apps", "Deployment", &bad).map(|_| Vec::new())
        );
        let extra = serde_json::json!({"metadata": {"name": "a"}, "spec": {"foo": 1}});
        assert_eq!(
            check_typed_and_unknown("apps", "Deployment", &extra, true),
            Ok(unknown_fields("apps", "Deployment", &extra))
        );
        assert_eq!(
            check_typed_and_unknown("apps", "Deployment", &extra, false),
            Ok(Vec::new())
        );
    }

    #[test]
    fn a_well_typed_object_decodes() {
        assert_eq!(check_typed("apps", "Deployment", &deployment()), Ok(()));
    }

    #[test]
    fn wrong_types_are_reported_with_their_field_path() {
        let table = [
            (json!({"spec": {"replicas": "three"}}), "spec.replicas: invalid type: string \"three\""),
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [{"containerPort": "80"}]}]}}}}),
                "spec.template.spec.containers[1].ports[0].containerPort: invalid type: string \"80\"",
            ),
            (json!({"metadata": {"labels": {"app": 5}}}), "metadata.labels.app: invalid type: integer `5`"),
            (json!({"spec": {"template": {"spec": {"containers": {"name": "a"}}}}}), "spec.template.spec.containers: invalid type: map"),
        ];
        for (obj, want) in table {
            let err = check_typed("apps", "Deployment", &obj)
                .err()
                .unwrap_or_default();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn repeated_errors_are_located_at_the_first_one() {
        let obj =
            json!({"spec": {"containers": [{"name": "a", "image": 1}, {"name": "b", "image": 2}]}});
        let err = check_typed("", "Pod", &obj).err().unwrap_or_default();
        assert!(
            err.starts_with("spec.containers[0].image: invalid type: integer `1`"),
            "{err}"
        );
    }

    #[test]
    fn other_api_versions_in_the_body_do_not_break_decoding() {
        let obj =
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"});
        assert_eq!(check_typed("meta.k8s.io", "DeleteOptions", &obj), Ok(()));
        let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": {"maxReplicas": 3}});
        assert_eq!(
            check_typed("autoscaling", "HorizontalPodAutoscaler", &hpa),
            Ok(())
        );
    }

    #[test]
    fn unserved_kinds_and_non_objects() {
        assert_eq!(
            check_typed("example.com", "Widget", &json!({"x": 1})),
            Ok(())
        );
        assert!(check_typed("", "Pod", &json!([1])).is_err());
        assert!(unknown_fields("example.com", "Widget", &json!({"x": 1})).is_empty());
    }

    #[test]
    fn known_fields_survive_the_round_trip() {
        assert_eq!(
            unknown_fields("apps", "Deployment", &deployment()),
            Vec::<String>::new()
        );
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"k": "dmFsdWU="}, "stringData": {"x": "y"}, "type": "Opaque"});
        assert!(unknown_fields("", "Secret", &secret).is_empty());
        let svc = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}],
            "selector": {"app": "x"}}});
        assert!(unknown_fields("", "Service", &svc).is_empty());
        let node = json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4", "pods": 110},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}});
        assert!(unknown_fields("", "Node", &node).is_empty());
        let managed = json!({"metadata": {"name": "n", "managedFields": [{"manager": "kubectl",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]}});
        assert!(unknown_fields("", "ConfigMap", &managed).is_empty());
    }

    #[test]
    fn unknown_fields_are_reported_at_every_depth() {
        let mut d = deployment();
        d["spec"]["foo"] = json!(1);
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
        d["metadata"]["bogus"] = json!({"x": 1});
        d["status"]["nope"] = json!(true);
        d["spec"]["ignored"] = Value::Null;
        assert_eq!(
            unknown_fields("apps", "Deployment", &d),
            vec![
                "metadata.bogus",
                "spec.template.spec.containers[0].imagePullPolicyy",
                "spec.foo",
                "status.nope",
            ]
        );
        assert_eq!(
            unknown_fields("", "Pod", &json!({"extra": 1})),
            vec!["extra"]
        );
    }

    #[test]
    fn undecodable_objects_have_no_unknown_fields_to_report() {
        assert!(unknown_fields(
            "apps",
            "Deployment",
            &json!({"spec": {"replicas": "x"}, "foo": 1})
        )
        .is_empty());
    }
}
