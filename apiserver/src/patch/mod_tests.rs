use serde_json::json;

use super::*;

fn pod() -> PatchKind {
    PatchKind::builtin("", "Pod")
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}
    })
}

fn apps(kind: &str) -> PatchKind {
    PatchKind::builtin("apps", kind)
}

#[test]
fn content_types_map_to_patch_types_ignoring_parameters_and_case() {
    let cases = [
        ("application/json-patch+json", Some(PatchType::Json)),
        (
            "application/merge-patch+json; charset=utf-8",
            Some(PatchType::Merge),
        ),
        (
            "Application/Strategic-Merge-Patch+JSON",
            Some(PatchType::StrategicMerge),
        ),
        ("application/apply-patch+yaml", Some(PatchType::Apply)),
        ("application/apply-patch+json", None),
        ("application/json", None),
        ("", None),
    ];
    for (content_type, expected) in cases {
        assert_eq!(
            PatchType::from_content_type(content_type),
            expected,
            "{content_type}"
        );
    }
    for t in [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ] {
        assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
    }
}

#[test]
fn json_patch_replaces_and_adds_fields() {
    let body = br#"[
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"}
    ]"#;
    let out = apply_patch(PatchType::Json, &deployment(), body, &apps("Deployment"))
        .expect("patch applies");
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "tier": "front"})
    );
}

#[test]
fn failed_json_patch_test_is_invalid_422() {
    let body = br#"[{"op": "test", "path": "/spec/replicas", "value": 5}]"#;
    let err = apply_patch(PatchType::Json, &deployment(), body, &apps("Deployment"))
        .expect_err("test op fails");
    assert!(matches!(err, PatchError::JsonPatch(_)));
    assert_eq!((err.status_code(), err.reason()), (422, "Invalid"));
}

#[test]
fn json_patch_on_a_missing_path_is_invalid_422() {
    let body = br#"[{"op": "remove", "path": "/spec/paused"}]"#;
    let err = apply_patch(PatchType::Json, &deployment(), body, &apps("Deployment"))
        .expect_err("path is missing");
    assert_eq!(err.status_code(), 422);
}

#[test]
fn malformed_json_patch_is_a_bad_request() {
    for body in [
        &b"{not json"[..],
        br#"{"op": "add"}"#,
        br#"[{"op": "frobnicate", "path": "/a"}]"#,
    ] {
        let err = apply_patch(PatchType::Json, &deployment(), body, &apps("Deployment"))
            .expect_err("malformed");
        assert_eq!((err.status_code(), err.reason()), (400, "BadRequest"));
    }
}

#[test]
fn json_patch_with_too_many_operations_is_too_large() {
    let ops: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
        .map(|_| json!({"op": "test", "path": "/kind", "value": "Deployment"}))
        .collect();
    let body = serde_json::to_vec(&ops).expect("serializes");
    let err = apply_patch(PatchType::Json, &deployment(), &body, &apps("Deployment"))
        .expect_err("too many");
    assert_eq!(err.status_code(), 413);
}

#[test]
fn merge_patch_sets_and_deletes_fields_and_replaces_lists() {
    let body = br#"{"metadata": {"labels": {"app": null, "tier": "db"}},
                    "spec": {"template": {"spec": {"containers": [{"name": "redis", "image": "redis"}]}}}}"#;
    let out =
        apply_patch(PatchType::Merge, &deployment(), body, &apps("Deployment")).expect("merges");
    assert_eq!(out["metadata"]["labels"], json!({"tier": "db"}));
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "redis", "image": "redis"}])
    );
}

#[test]
fn merge_patch_that_is_not_an_object_is_invalid() {
    let err = apply_patch(PatchType::Merge, &deployment(), b"[1]", &apps("Deployment"))
        .expect_err("array patch");
    assert_eq!(err.status_code(), 422);
    let err = apply_patch(PatchType::Merge, &deployment(), b"{", &apps("Deployment"))
        .expect_err("bad json");
    assert_eq!(err.status_code(), 400);
}

#[test]
fn kubectl_scale_style_merge_patch_changes_only_replicas() {
    let out = apply_patch(
        PatchType::Merge,
        &deployment(),
        br#"{"spec":{"replicas":4}}"#,
        &apps("Deployment"),
    )
    .expect("merges");
    let mut expected = deployment();
    expected["spec"]["replicas"] = json!(4);
    assert_eq!(out, expected);
}

#[test]
fn strategic_patch_through_apply_patch_merges_containers_by_name() {
    let body =
        br#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#;
    let out = apply_patch(
        PatchType::StrategicMerge,
        &deployment(),
        body,
        &apps("Deployment"),
    )
    .expect("merges");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "nginx:1.27"}])
    );
}

#[test]
fn strategic_patch_on_a_custom_resource_is_unsupported_media_type() {
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {}});
    let err = apply_patch(
        PatchType::StrategicMerge,
        &widget,
        br#"{"spec":{"size":2}}"#,
        &PatchKind::custom_resource("example.com", "Widget"),
    )
    .expect_err("not for custom resources");
    assert_eq!(
        (err.status_code(), err.reason()),
        (415, "UnsupportedMediaType")
    );
}

#[test]
fn malformed_strategic_directives_are_bad_requests_and_unmergeable_lists_are_invalid() {
    let original = json!({"spec": {"containers": [{"name": "a"}]}});
    let bad = apply_patch(
        PatchType::StrategicMerge,
        &original,
        br#"{"spec":{"$retainKeys":"nope"}}"#,
        &pod(),
    )
    .expect_err("bad retainKeys");
    assert_eq!(bad.status_code(), 400);
    let invalid = apply_patch(
        PatchType::StrategicMerge,
        &original,
        br#"{"spec":{"containers":[{"image":"x"}]}}"#,
        &pod(),
    )
    .expect_err("no merge key");
    assert_eq!((invalid.status_code(), invalid.reason()), (422, "Invalid"));
}

#[test]
fn apply_is_not_accepted_by_apply_patch() {
    let err = apply_patch(PatchType::Apply, &deployment(), b"{}", &apps("Deployment"))
        .expect_err("apply needs a manager");
    assert!(matches!(err, PatchError::ApplyIsNotAPatch));
}
