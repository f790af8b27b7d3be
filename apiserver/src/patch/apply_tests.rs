use serde_json::{json, Value};

use super::*;

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-01T00:01:00Z";
const T2: &str = "2025-01-01T00:02:00Z";

fn kind() -> PatchKind {
    PatchKind::builtin("apps", "Deployment")
}

fn manifest(replicas: Option<i64>, labels: Value) -> Value {
    let mut m = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}
            }
        }
    });
    if let Some(r) = replicas {
        m["spec"]["replicas"] = json!(r);
    }
    m
}

fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    server_side_apply(live, config, manager, force, &kind(), now)
}

fn entry<'v>(obj: &'v Value, manager: &str) -> Option<&'v Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
}

#[test]
fn first_apply_creates_the_object_with_an_apply_entry() {
    let config = manifest(Some(2), json!({"app": "web"}));
    let out = apply(None, &config, "kubectl", false, T0).expect("applies");
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    let fields = out["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    assert_eq!(fields.len(), 1);
    let e = &fields[0];
    assert_eq!(
        (
            &e["manager"],
            &e["operation"],
            &e["apiVersion"],
            &e["time"],
            &e["fieldsType"]
        ),
        (
            &json!("kubectl"),
            &json!("Apply"),
            &json!("apps/v1"),
            &json!(T0),
            &json!("FieldsV1")
        )
    );
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {}, "f:image": {}, "f:name": {}
                    }}}
                }
            }
        })
    );
}

#[test]
fn reapplying_without_a_field_removes_it() {
    let first = manifest(Some(2), json!({"app": "web", "tier": "front"}));
    let live = apply(None, &first, "kubectl", false, T0).expect("first apply");
    let second = manifest(None, json!({"app": "web"}));
    let out = apply(Some(&live), &second, "kubectl", false, T1).expect("second apply");
    assert!(out["spec"].get("replicas").is_none(), "{out}");
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    let e = entry(&out, "kubectl").expect("entry");
    assert!(e["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert_eq!(e["time"], T1);
}

#[test]
fn removing_a_container_from_the_config_removes_it_from_the_object() {
    let mut first = manifest(None, json!({"app": "web"}));
    first["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "nginx", "image": "nginx"}, {"name": "sidecar", "image": "envoy"}]);
    let live = apply(None, &first, "kubectl", false, T0).expect("first apply");
    let out = apply(
        Some(&live),
        &manifest(None, json!({"app": "web"})),
        "kubectl",
        false,
        T1,
    )
    .expect("second apply");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:1.27"}])
    );
}

#[test]
fn a_field_another_applier_also_owns_survives_when_one_stops_applying_it() {
    let both = manifest(None, json!({"app": "web", "shared": "yes"}));
    let live = apply(None, &both, "alice", false, T0).expect("alice");
    let live = apply(Some(&live), &both, "bob", false, T1).expect("bob shares without conflict");
    let out = apply(
        Some(&live),
        &manifest(None, json!({"app": "web"})),
        "alice",
        false,
        T2,
    )
    .expect("alice drops the label");
    assert_eq!(out["metadata"]["labels"]["shared"], "yes");
}

#[test]
fn applying_another_value_for_a_field_another_applier_owns_conflicts() {
    let live = apply(
        None,
        &manifest(Some(2), json!({"app": "web"})),
        "alice",
        false,
        T0,
    )
    .expect("alice");
    let err = apply(
        Some(&live),
        &manifest(Some(5), json!({"app": "web"})),
        "bob",
        false,
        T1,
    )
    .expect_err("conflict");
    let ApplyError::Conflicts(conflicts) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        conflicts,
        &[Conflict {
            manager: "alice".into(),
            operation: "Apply".into(),
            api_version: "apps/v1".into(),
            field: ".spec.replicas".into(),
        }]
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
    );
    assert_eq!((err.status_code(), err.reason()), (409, "Conflict"));
}

#[test]
fn force_takes_ownership_of_conflicting_fields() {
    let live = apply(
        None,
        &manifest(Some(2), json!({"app": "web"})),
        "alice",
        false,
        T0,
    )
    .expect("alice");
    let out = apply(
        Some(&live),
        &manifest(Some(5), json!({"app": "web"})),
        "bob",
        true,
        T1,
    )
    .expect("forced");
    assert_eq!(out["spec"]["replicas"], 5);
    let alice = entry(&out, "alice").expect("alice keeps the rest");
    assert!(alice["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert!(entry(&out, "bob").expect("bob")["fieldsV1"]["f:spec"]
        .get("f:replicas")
        .is_some());
    // Alice no longer owns replicas: dropping it from her config keeps bob's value.
    let out = apply(
        Some(&out),
        &manifest(None, json!({"app": "web"})),
        "alice",
        false,
        T2,
    )
    .expect("alice re-applies");
    assert_eq!(out["spec"]["replicas"], 5);
}

#[test]
fn kubectl_scale_style_update_then_apply_of_replicas_conflicts() {
    let live = apply(
        None,
        &manifest(Some(2), json!({"app": "web"})),
        "kubectl",
        false,
        T0,
    )
    .expect("apply");
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(7);
    record_update(
        Some(&live),
        &mut scaled,
        "kubectl-client-side-apply",
        "apps/v1",
        T1,
    );
    let updater = entry(&scaled, "kubectl-client-side-apply").expect("update entry");
    assert_eq!(updater["operation"], "Update");
    assert_eq!(updater["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    let applier = entry(&scaled, "kubectl").expect("apply entry");
    assert!(applier["fieldsV1"]["f:spec"].get("f:replicas").is_none());

    let err = apply(
        Some(&scaled),
        &manifest(Some(2), json!({"app": "web"})),
        "kubectl",
        false,
        T2,
    )
    .expect_err("replicas now belong to the updater");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let ApplyError::Conflicts(conflicts) = err else {
        panic!("conflicts")
    };
    assert_eq!(
        conflicts[0].cause_message(),
        "conflict with \"kubectl-client-side-apply\" using apps/v1"
    );
}

#[test]
fn several_conflicts_are_listed_per_manager() {
    let live = apply(
        None,
        &manifest(Some(2), json!({"app": "web", "a": "1"})),
        "alice",
        false,
        T0,
    )
    .expect("alice");
    let err = apply(
        Some(&live),
        &manifest(Some(3), json!({"app": "web", "a": "2"})),
        "bob",
        false,
        T1,
    )
    .expect_err("two conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .metadata.labels.a\n- .spec.replicas"
    );
}

#[test]
fn fields_set_by_an_updater_are_kept_when_an_applier_does_not_mention_them() {
    let live = apply(
        None,
        &manifest(None, json!({"app": "web"})),
        "kubectl",
        false,
        T0,
    )
    .expect("apply");
    let mut edited = live.clone();
    edited["metadata"]["annotations"] = json!({"note": "hand edit"});
    edited["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "debug", "image": "busybox"}));
    record_update(Some(&live), &mut edited, "kubectl-edit", "apps/v1", T1);
    let out = apply(
        Some(&edited),
        &manifest(None, json!({"app": "web"})),
        "kubectl",
        false,
        T2,
    )
    .expect("re-apply");
    assert_eq!(out["metadata"]["annotations"]["note"], "hand edit");
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(2), "{containers}");
}

#[test]
fn record_update_on_create_owns_everything_but_server_metadata() {
    let mut created = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "uid": "u", "resourceVersion": "1", "labels": {"a": "b"}},
        "data": {"k": "v"}
    });
    record_update(None, &mut created, "kubectl-create", "v1", T0);
    let e = entry(&created, "kubectl-create").expect("entry");
    assert_eq!(e["operation"], "Update");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
    );
}

#[test]
fn record_update_without_changes_keeps_managed_fields_as_they_were() {
    let live = apply(
        None,
        &manifest(Some(2), json!({"app": "web"})),
        "kubectl",
        false,
        T0,
    )
    .expect("apply");
    let mut same = live.clone();
    record_update(Some(&live), &mut same, "kubectl-edit", "apps/v1", T1);
    assert_eq!(same, live);
}

#[test]
fn a_single_empty_managed_fields_entry_strips_managed_fields() {
    let live = apply(
        None,
        &manifest(Some(2), json!({"app": "web"})),
        "kubectl",
        false,
        T0,
    )
    .expect("apply");
    let mut stripped = live.clone();
    stripped["metadata"]["managedFields"] = json!([{}]);
    record_update(Some(&live), &mut stripped, "kubectl-patch", "apps/v1", T1);
    assert!(stripped["metadata"].get("managedFields").is_none());
    let mut kept = live.clone();
    kept["metadata"]["managedFields"] = json!([]);
    record_update(Some(&live), &mut kept, "kubectl-patch", "apps/v1", T1);
    assert_eq!(kept, live);
}

#[test]
fn apply_ignores_status_and_server_set_metadata_of_builtin_kinds() {
    let mut config = manifest(None, json!({"app": "web"}));
    config["metadata"]["creationTimestamp"] = Value::Null;
    config["metadata"]["resourceVersion"] = json!("42");
    config["status"] = json!({});
    let live = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "u1",
                     "creationTimestamp": "2024-01-01T00:00:00Z", "resourceVersion": "7"},
        "status": {"replicas": 1}
    });
    let out = apply(Some(&live), &config, "kubectl", false, T0).expect("applies");
    assert_eq!(out["metadata"]["creationTimestamp"], "2024-01-01T00:00:00Z");
    assert_eq!(out["metadata"]["resourceVersion"], "7");
    assert_eq!(out["status"], json!({"replicas": 1}));
    let fields = &entry(&out, "kubectl").expect("entry")["fieldsV1"];
    assert!(fields.get("f:status").is_none());
    assert_eq!(fields["f:metadata"], json!({"f:labels": {"f:app": {}}}));
}

#[test]
fn apply_requires_a_field_manager_and_type_meta() {
    let config = manifest(None, json!({}));
    assert_eq!(
        apply(None, &config, "", false, T0),
        Err(ApplyError::MissingFieldManager)
    );
    assert_eq!(ApplyError::MissingFieldManager.status_code(), 422);
    let mut no_kind = config.clone();
    no_kind.as_object_mut().map(|m| m.shift_remove("kind"));
    let err = apply(None, &no_kind, "kubectl", false, T0).expect_err("kind required");
    assert_eq!((err, 400), (ApplyError::MissingTypeMeta("kind"), 400));
    assert_eq!(
        apply(None, &json!([]), "kubectl", false, T0),
        Err(ApplyError::ConfigNotObject)
    );
}

#[test]
fn custom_resource_lists_are_atomic_and_owned_whole() {
    let cr = PatchKind::custom_resource("example.com", "Widget");
    let config = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                        "spec": {"items": [{"name": "a"}]}, "status": {"ok": true}});
    let out = server_side_apply(None, &config, "op", false, &cr, T0).expect("applies");
    assert_eq!(out["status"], json!({"ok": true}));
    assert_eq!(
        entry(&out, "op").expect("entry")["fieldsV1"]["f:spec"],
        json!({"f:items": {}})
    );
}

#[test]
fn finalizers_are_a_set_each_applier_owns_its_own_items() {
    let mut mine = manifest(None, json!({"app": "web"}));
    mine["metadata"]["finalizers"] = json!(["a.example.com/x", "a.example.com/y"]);
    let live = apply(None, &mine, "alice", false, T0).expect("alice");
    let mut theirs = manifest(None, json!({"app": "web"}));
    theirs["metadata"]["finalizers"] = json!(["b.example.com/z"]);
    let live = apply(Some(&live), &theirs, "bob", false, T1).expect("bob adds his own item");
    assert_eq!(
        live["metadata"]["finalizers"],
        json!(["a.example.com/x", "a.example.com/y", "b.example.com/z"])
    );
    mine["metadata"]["finalizers"] = json!(["a.example.com/x"]);
    let out = apply(Some(&live), &mine, "alice", false, T2).expect("alice drops y");
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["a.example.com/x", "b.example.com/z"])
    );
    assert_eq!(
        entry(&out, "alice").expect("alice")["fieldsV1"]["f:metadata"]["f:finalizers"],
        json!({"v:\"a.example.com/x\"": {}})
    );
}
