use serde_json::json;

use super::super::{validate, FieldErrorKind};
use super::*;

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

fn fields(errs: &[FieldError]) -> Vec<String> {
    errs.iter()
        .map(|e| format!("{} {:?}", e.field, e.kind))
        .collect()
}

#[test]
fn a_simple_pod_is_valid() {
    let p = pod(
        json!({"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}]}]}),
    );
    assert!(validate("", "Pod", &p, None).is_empty());
}

#[test]
fn pod_spec_rules_report_one_error_per_bad_field() {
    let table: Vec<(Value, &str, FieldErrorKind)> = vec![
        (json!({}), "spec.containers", FieldErrorKind::Required),
        (
            json!({"containers": [{"image": "x"}]}),
            "spec.containers[0].name",
            FieldErrorKind::Required,
        ),
        (
            json!({"containers": [{"name": "Web", "image": "x"}]}),
            "spec.containers[0].name",
            FieldErrorKind::Invalid,
        ),
        (
            json!({"containers": [{"name": "a"}]}),
            "spec.containers[0].image",
            FieldErrorKind::Required,
        ),
        (
            json!({"initContainers": [{"name": "a", "image": "x"}], "containers": [{"name": "a", "image": "x"}]}),
            "spec.containers[0].name",
            FieldErrorKind::Duplicate,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x"}], "restartPolicy": "Sometimes"}),
            "spec.restartPolicy",
            FieldErrorKind::NotSupported,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x"}], "dnsPolicy": "Nope"}),
            "spec.dnsPolicy",
            FieldErrorKind::NotSupported,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}]}),
            "spec.containers[0].ports[0].containerPort",
            FieldErrorKind::Invalid,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "ports": [{}]}]}),
            "spec.containers[0].ports[0].containerPort",
            FieldErrorKind::Required,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}]}),
            "spec.containers[0].ports[0].protocol",
            FieldErrorKind::NotSupported,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": -1}]}]}),
            "spec.containers[0].ports[0].hostPort",
            FieldErrorKind::Invalid,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x"}], "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}),
            "spec.volumes[1].name",
            FieldErrorKind::Duplicate,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "missing", "mountPath": "/d"}]}]}),
            "spec.containers[0].volumeMounts[0].name",
            FieldErrorKind::NotFound,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}}}]}),
            "spec.containers[0].resources.requests[cpu]",
            FieldErrorKind::Invalid,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "resources": {"limits": {"memory": "lots"}}}]}),
            "spec.containers[0].resources.limits[memory]",
            FieldErrorKind::Invalid,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "-1"}}}]}),
            "spec.containers[0].resources.requests[cpu]",
            FieldErrorKind::Invalid,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x"}], "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}),
            "spec.tolerations[0].operator",
            FieldErrorKind::Invalid,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x"}], "tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]}),
            "spec.tolerations[0].effect",
            FieldErrorKind::Invalid,
        ),
        (
            json!({"containers": [{"name": "a", "image": "x"}], "activeDeadlineSeconds": 0}),
            "spec.activeDeadlineSeconds",
            FieldErrorKind::Invalid,
        ),
    ];
    for (spec, field, kind) in table {
        let errs = validate("", "Pod", &pod(spec.clone()), None);
        assert_eq!(fields(&errs), vec![format!("{field} {kind:?}")], "{spec}");
    }
}

#[test]
fn requests_above_limits_name_the_limit() {
    let p = pod(
        json!({"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": 2}}}]}),
    );
    let errs = validate("", "Pod", &p, None);
    assert_eq!(
        errs[0].to_string(),
        "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
    );
}

#[test]
fn templates_need_an_image_but_may_pad_it_with_spaces() {
    let mut errs = Vec::new();
    validate_pod_template(
        &json!({"spec": {"containers": [{"name": "a"}]}}),
        "spec.template",
        &mut errs,
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "spec.template.spec.containers[0].image");
    let mut errs = Vec::new();
    validate_pod_template(
        &json!({"spec": {"containers": [{"name": "a", "image": " busybox "}]}}),
        "spec.template",
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn pod_updates_may_change_only_images_deadlines_and_added_tolerations() {
    let old = pod(
        json!({"containers": [{"name": "a", "image": "x:1"}], "tolerations": [{"key": "k", "operator": "Exists"}]}),
    );
    let allowed = pod(json!({
        "containers": [{"name": "a", "image": "x:2"}],
        "activeDeadlineSeconds": 30,
        "tolerations": [{"key": "k", "operator": "Exists"}, {"key": "j", "operator": "Exists"}]
    }));
    assert!(validate("", "Pod", &allowed, Some(&old)).is_empty());

    let ports_changed = pod(
        json!({"containers": [{"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]}]}),
    );
    let errs = validate("", "Pod", &ports_changed, Some(&old));
    assert_eq!(fields(&errs), vec!["spec Forbidden"]);
    assert!(errs[0]
        .message
        .starts_with("Forbidden: pod updates may not change fields other than"));

    let deadline_up = pod(
        json!({"containers": [{"name": "a", "image": "x:1"}], "activeDeadlineSeconds": 60,
        "tolerations": [{"key": "k", "operator": "Exists"}]}),
    );
    let old_deadline = pod(
        json!({"containers": [{"name": "a", "image": "x:1"}], "activeDeadlineSeconds": 30,
        "tolerations": [{"key": "k", "operator": "Exists"}]}),
    );
    let errs = validate("", "Pod", &deadline_up, Some(&old_deadline));
    assert_eq!(fields(&errs), vec!["spec.activeDeadlineSeconds Invalid"]);
}

#[test]
fn admission_set_priority_may_be_omitted_on_update() {
    let old = pod(
        json!({"containers": [{"name": "a", "image": "x"}], "priority": 1000, "preemptionPolicy": "Never"}),
    );
    let new = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
    assert!(validate("", "Pod", &new, Some(&old)).is_empty());
    let changed = pod(json!({"containers": [{"name": "a", "image": "x"}], "priority": 5}));
    assert_eq!(validate("", "Pod", &changed, Some(&old)).len(), 1);
}
