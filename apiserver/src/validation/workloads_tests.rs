use serde_json::{json, Value};

use super::super::{validate, FieldErrorKind};

fn deployment(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn template(labels: Value) -> Value {
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "nginx"}], "restartPolicy": "Always"}})
}

fn good_spec() -> Value {
    json!({"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))})
}

fn with(mut base: Value, key: &str, v: Value) -> Value {
    if let Some(m) = base.as_object_mut() {
        m.insert(key.to_string(), v);
    }
    base
}

fn summary(errs: &[super::FieldError]) -> Vec<String> {
    errs.iter()
        .map(|e| format!("{} {:?}", e.field, e.kind))
        .collect()
}

#[test]
fn a_well_formed_deployment_replica_set_and_daemon_set_pass() {
    for kind in ["Deployment", "ReplicaSet", "DaemonSet"] {
        let errs = validate("apps", kind, &deployment(good_spec()), None);
        assert!(errs.is_empty(), "{kind}: {errs:?}");
    }
}

#[test]
fn controller_spec_rules_report_the_bad_field() {
    let table: Vec<(&str, Value, &str, FieldErrorKind)> = vec![
        (
            "Deployment",
            with(good_spec(), "replicas", json!(-1)),
            "spec.replicas",
            FieldErrorKind::Invalid,
        ),
        (
            "ReplicaSet",
            with(good_spec(), "replicas", json!(-1)),
            "spec.replicas",
            FieldErrorKind::Invalid,
        ),
        (
            "Deployment",
            with(good_spec(), "selector", Value::Null),
            "spec.selector",
            FieldErrorKind::Required,
        ),
        (
            "Deployment",
            with(good_spec(), "selector", json!({})),
            "spec.selector",
            FieldErrorKind::Invalid,
        ),
        (
            "ReplicaSet",
            with(good_spec(), "template", template(json!({"app": "db"}))),
            "spec.template.metadata.labels",
            FieldErrorKind::Invalid,
        ),
        (
            "Deployment",
            with(
                good_spec(),
                "strategy",
                json!({"type": "Recreate", "rollingUpdate": {}}),
            ),
            "spec.strategy.rollingUpdate",
            FieldErrorKind::Forbidden,
        ),
        (
            "Deployment",
            with(
                good_spec(),
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}}),
            ),
            "spec.strategy.rollingUpdate.maxUnavailable",
            FieldErrorKind::Invalid,
        ),
        (
            "Deployment",
            with(
                good_spec(),
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25", "maxSurge": 1}}),
            ),
            "spec.strategy.rollingUpdate.maxUnavailable",
            FieldErrorKind::Invalid,
        ),
        (
            "Deployment",
            with(good_spec(), "strategy", json!({"type": "Canary"})),
            "spec.strategy.type",
            FieldErrorKind::NotSupported,
        ),
        (
            "Deployment",
            with(good_spec(), "progressDeadlineSeconds", json!(5))
                .pipe(|s| with(s, "minReadySeconds", json!(10))),
            "spec.progressDeadlineSeconds",
            FieldErrorKind::Invalid,
        ),
        (
            "DaemonSet",
            with(
                good_spec(),
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}),
            ),
            "spec.updateStrategy.rollingUpdate.maxSurge",
            FieldErrorKind::Invalid,
        ),
        (
            "DaemonSet",
            with(good_spec(), "template", {
                let mut t = template(json!({"app": "web"}));
                t["spec"]["restartPolicy"] = json!("Never");
                t
            }),
            "spec.template.spec.restartPolicy",
            FieldErrorKind::NotSupported,
        ),
    ];
    for (kind, spec, field, err_kind) in table {
        let errs = validate("apps", kind, &deployment(spec.clone()), None);
        assert_eq!(
            summary(&errs),
            vec![format!("{field} {err_kind:?}")],
            "{kind} {spec}"
        );
    }
}

trait Pipe: Sized {
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }
}
impl Pipe for Value {}

#[test]
fn template_containers_are_validated_with_template_paths() {
    let mut spec = good_spec();
    spec["template"]["spec"]["containers"][0]["name"] = json!("Bad_Name");
    let errs = validate("apps", "Deployment", &deployment(spec), None);
    assert_eq!(
        summary(&errs),
        vec!["spec.template.spec.containers[0].name Invalid"]
    );
}

#[test]
fn selector_mismatch_uses_the_kubernetes_message() {
    let spec = with(good_spec(), "template", template(json!({"app": "db"})));
    let errs = validate("apps", "Deployment", &deployment(spec), None);
    assert_eq!(
        errs[0].to_string(),
        "spec.template.metadata.labels: Invalid value: {\"app\":\"db\"}: `selector` does not match template `labels`"
    );
}

#[test]
fn controller_selectors_are_immutable() {
    let old = deployment(good_spec());
    let mut spec = good_spec();
    spec["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
    spec["template"]["metadata"]["labels"]["v"] = json!("2");
    for kind in ["Deployment", "ReplicaSet", "DaemonSet"] {
        let errs = validate("apps", kind, &deployment(spec.clone()), Some(&old));
        assert_eq!(summary(&errs), vec!["spec.selector Invalid"], "{kind}");
        assert!(errs[0].message.ends_with("field is immutable"));
    }
    let scaled = deployment(with(good_spec(), "replicas", json!(9)));
    assert!(validate("apps", "Deployment", &scaled, Some(&old)).is_empty());
}

fn job(spec: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"}, "spec": spec})
}

fn job_spec(restart: &str) -> Value {
    let mut t = template(json!({"job-name": "pi"}));
    t["spec"]["restartPolicy"] = json!(restart);
    json!({"selector": {"matchLabels": {"job-name": "pi"}}, "template": t, "completions": 1, "parallelism": 1})
}

#[test]
fn jobs_need_on_failure_or_never_restart_policy() {
    assert!(validate("batch", "Job", &job(job_spec("Never")), None).is_empty());
    let errs = validate("batch", "Job", &job(job_spec("Always")), None);
    assert_eq!(
        errs[0].to_string(),
        "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
    );
    let errs = validate(
        "batch",
        "Job",
        &job(with(job_spec("Never"), "backoffLimit", json!(-1))),
        None,
    );
    assert_eq!(summary(&errs), vec!["spec.backoffLimit Invalid"]);
}

#[test]
fn job_templates_and_selectors_are_immutable_unless_suspended() {
    let old = job(job_spec("Never"));
    let changed = job(job_spec("OnFailure"));
    let errs = validate("batch", "Job", &changed, Some(&old));
    assert_eq!(summary(&errs), vec!["spec.template Invalid"]);
    let suspended_old = job(with(job_spec("Never"), "suspend", json!(true)));
    assert!(validate("batch", "Job", &changed, Some(&suspended_old)).is_empty());
    let more = job(with(job_spec("Never"), "parallelism", json!(5)));
    assert!(validate("batch", "Job", &more, Some(&old)).is_empty());
}

fn hpa(spec: Value) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn hpa_replica_bounds_and_target_are_checked() {
    let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
    let good = json!({"scaleTargetRef": target, "minReplicas": 1, "maxReplicas": 5,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]});
    assert!(validate(
        "autoscaling",
        "HorizontalPodAutoscaler",
        &hpa(good.clone()),
        None
    )
    .is_empty());
    let table = [
        (
            with(good.clone(), "minReplicas", json!(0)),
            "spec.minReplicas",
        ),
        (
            with(good.clone(), "maxReplicas", json!(0)),
            "spec.maxReplicas",
        ),
        (
            with(
                with(good.clone(), "minReplicas", json!(6)),
                "maxReplicas",
                json!(5),
            ),
            "spec.maxReplicas",
        ),
        (
            with(
                good.clone(),
                "scaleTargetRef",
                json!({"kind": "Deployment"}),
            ),
            "spec.scaleTargetRef.name",
        ),
        (
            with(
                good.clone(),
                "metrics",
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}}]),
            ),
            "spec.metrics[0].resource.target.averageUtilization",
        ),
        (
            with(
                good.clone(),
                "behavior",
                json!({"scaleUp": {"selectPolicy": "Any"}}),
            ),
            "spec.behavior.scaleUp.selectPolicy",
        ),
    ];
    for (spec, field) in table {
        let errs = validate(
            "autoscaling",
            "HorizontalPodAutoscaler",
            &hpa(spec.clone()),
            None,
        );
        assert_eq!(
            errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            vec![field],
            "{spec}"
        );
    }
}

#[test]
fn scale_bodies_need_non_negative_replicas() {
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": -2}});
    let errs = validate("autoscaling", "Scale", &scale, None);
    assert_eq!(
        errs[0].to_string(),
        "spec.replicas: Invalid value: -2: must be greater than or equal to 0"
    );
}
