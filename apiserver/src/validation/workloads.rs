//! Workload controllers and their scaling: Deployment, ReplicaSet, DaemonSet,
//! Job, HorizontalPodAutoscaler and the Scale subresource body
//! (`pkg/apis/{apps,batch,autoscaling}/validation` upstream).

use serde_json::Value;

use super::meta;
use super::names::{self, NameRule};
use super::pod::validate_pod_template;
use super::value::{arr, at, boolean, child, get, index, int, same, semantic_eq, str_of};
use super::{push_invalid, FieldError, IMMUTABLE};

const NON_NEGATIVE: &str = "must be greater than or equal to 0";
const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";
const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

fn non_negative(o: &Value, path: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(v) = int(o, field) {
        if v < 0 {
            errs.push(FieldError::invalid(child(path, field), v, NON_NEGATIVE));
        }
    }
}

fn empty() -> &'static Value {
    &Value::Null
}

/// Which controller owns a template, for the words of its messages.
#[derive(Clone, Copy)]
enum Owner {
    Deployment,
    ReplicaSet,
    DaemonSet,
    Job,
}

/// `spec.selector` and `spec.template`, shared by every pod controller.
fn validate_selector_and_template(spec: &Value, owner: Owner, errs: &mut Vec<FieldError>) {
    let tmpl = get(spec, "template").unwrap_or(empty());
    match get(spec, "selector") {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            meta::validate_label_selector(sel, "spec.selector", errs);
            let word = match owner {
                Owner::DaemonSet => Some("daemonset"),
                Owner::Deployment | Owner::ReplicaSet => Some("deployment"),
                // An empty Job selector matches every pod; upstream allows it.
                Owner::Job => None,
            };
            if let Some(word) = word.filter(|_| meta::selector_is_empty(sel)) {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    sel.clone(),
                    &format!("empty selector is invalid for {word}"),
                ));
            } else if !meta::selector_matches(sel, at(tmpl, &["metadata", "labels"])) {
                let labels = at(tmpl, &["metadata", "labels"])
                    .cloned()
                    .unwrap_or(Value::Null);
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    labels,
                    SELECTOR_MISMATCH,
                ));
            }
        }
    }
    validate_pod_template(tmpl, "spec.template", errs);
    let restart = str_of(tmpl.get("spec").unwrap_or(empty()), "restartPolicy");
    let (allowed, deadline_owner): (&[&str], Option<&str>) = match owner {
        Owner::Deployment | Owner::ReplicaSet => (&["Always"], Some("ReplicaSet")),
        Owner::DaemonSet => (&["Always"], Some("DaemonSet")),
        Owner::Job => (&["OnFailure", "Never"], None),
    };
    if !allowed.contains(&restart) && (!restart.is_empty() || matches!(owner, Owner::Job)) {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            restart,
            allowed,
        ));
    }
    if let Some(owner) = deadline_owner {
        if at(tmpl, &["spec", "activeDeadlineSeconds"]).is_some() {
            errs.push(FieldError::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                &format!("activeDeadlineSeconds in {owner} is not Supported"),
            ));
        }
    }
}

/// An int-or-percent value's number, when it is well formed.
fn int_or_percent(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Option<i64> {
    match v {
        Value::Number(n) => {
            let n = n.as_i64()?;
            if n < 0 {
                errs.push(FieldError::invalid(path, n, NON_NEGATIVE));
            }
            Some(n)
        }
        Value::String(s) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
            match digits.and_then(|d| d.parse::<i64>().ok()) {
                Some(p) => Some(p),
                None => {
                    errs.push(FieldError::invalid(path, s.as_str(), PERCENT_MSG));
                    None
                }
            }
        }
        _ => None,
    }
}

fn is_percent_over_100(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str)
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|d| d.parse::<i64>().ok())
        .is_some_and(|p| p > 100)
}

fn validate_immutable_selector(new: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    if let Some(old) = old {
        let (n, o) = (
            at(new, &["spec", "selector"]),
            at(old, &["spec", "selector"]),
        );
        if !semantic_eq(n, o) {
            errs.push(FieldError::invalid(
                "spec.selector",
                n.cloned().unwrap_or(Value::Null),
                IMMUTABLE,
            ));
        }
    }
}

pub(crate) fn validate_deployment(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = get(o, "spec").unwrap_or(empty());
    for field in [
        "replicas",
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        non_negative(spec, "spec", field, errs);
    }
    if let Some(pds) = int(spec, "progressDeadlineSeconds") {
        if pds <= int(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    validate_selector_and_template(spec, Owner::Deployment, errs);
    let strategy = get(spec, "strategy").unwrap_or(empty());
    let rolling = get(strategy, "rollingUpdate");
    match str_of(strategy, "type") {
        "" => {}
        "Recreate" => {
            if rolling.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = rolling {
                let p = "spec.strategy.rollingUpdate";
                let mu_path = child(p, "maxUnavailable");
                let mu = get(ru, "maxUnavailable").and_then(|v| int_or_percent(v, &mu_path, errs));
                let ms = get(ru, "maxSurge")
                    .and_then(|v| int_or_percent(v, &child(p, "maxSurge"), errs));
                if mu == Some(0) && ms == Some(0) {
                    errs.push(FieldError::invalid(
                        &mu_path,
                        0,
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                if is_percent_over_100(get(ru, "maxUnavailable")) {
                    let v = get(ru, "maxUnavailable").cloned().unwrap_or(Value::Null);
                    errs.push(FieldError::invalid(
                        &mu_path,
                        v,
                        "must not be greater than 100%",
                    ));
                }
            }
        }
        other => errs.push(FieldError::not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    validate_immutable_selector(o, old, errs);
}

pub(crate) fn validate_replica_set(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = get(o, "spec").unwrap_or(empty());
    for field in ["replicas", "minReadySeconds"] {
        non_negative(spec, "spec", field, errs);
    }
    validate_selector_and_template(spec, Owner::ReplicaSet, errs);
    validate_immutable_selector(o, old, errs);
}

/// A ControllerRevision: a non-negative `revision`, and `data` is
/// immutable (only the revision number may change, as on a rollback).
pub(crate) fn validate_controller_revision(
    o: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    match get(o, "revision").and_then(Value::as_i64) {
        Some(r) if r < 0 => errs.push(FieldError::invalid(
            "revision",
            r,
            "must be greater than or equal to 0",
        )),
        Some(_) => {}
        None => errs.push(FieldError::required("revision", "")),
    }
    if let Some(old) = old {
        if get(o, "data") != get(old, "data") {
            let v = get(o, "data").cloned().unwrap_or(Value::Null);
            errs.push(FieldError::invalid("data", v, "field is immutable"));
        }
    }
}

pub(crate) fn validate_daemon_set(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = get(o, "spec").unwrap_or(empty());
    for field in ["minReadySeconds", "revisionHistoryLimit"] {
        non_negative(spec, "spec", field, errs);
    }
    validate_selector_and_template(spec, Owner::DaemonSet, errs);
    let strategy = get(spec, "updateStrategy").unwrap_or(empty());
    match str_of(strategy, "type") {
        "" | "OnDelete" => {}
        "RollingUpdate" => {
            if let Some(ru) = get(strategy, "rollingUpdate") {
                let p = "spec.updateStrategy.rollingUpdate";
                let mu = get(ru, "maxUnavailable")
                    .and_then(|v| int_or_percent(v, &child(p, "maxUnavailable"), errs));
                let ms = get(ru, "maxSurge")
                    .and_then(|v| int_or_percent(v, &child(p, "maxSurge"), errs));
                let (has_mu, has_ms) = (mu.unwrap_or(0) != 0, ms.unwrap_or(0) != 0);
                if has_mu && has_ms {
                    let v = get(ru, "maxSurge").cloned().unwrap_or(Value::Null);
                    errs.push(FieldError::invalid(
                        child(p, "maxSurge"),
                        v,
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_mu && !has_ms {
                    errs.push(FieldError::required(
                        child(p, "maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
                for field in ["maxUnavailable", "maxSurge"] {
                    if is_percent_over_100(get(ru, field)) {
                        let v = get(ru, field).cloned().unwrap_or(Value::Null);
                        errs.push(FieldError::invalid(
                            child(p, field),
                            v,
                            "must not be greater than 100%",
                        ));
                    }
                }
            }
        }
        other => errs.push(FieldError::not_supported(
            "spec.updateStrategy.type",
            other,
            &["RollingUpdate", "OnDelete"],
        )),
    }
    validate_immutable_selector(o, old, errs);
}

pub(crate) fn validate_job(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = get(o, "spec").unwrap_or(empty());
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        non_negative(spec, "spec", field, errs);
    }
    match str_of(spec, "completionMode") {
        "" | "NonIndexed" => {}
        "Indexed" => {
            if int(spec, "completions").is_none() {
                errs.push(FieldError::required(
                    "spec.completions",
                    "when completion mode is Indexed",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            "spec.completionMode",
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    validate_selector_and_template(spec, Owner::Job, errs);
    let Some(old) = old else {
        return;
    };
    validate_immutable_selector(o, Some(old), errs);
    let old_spec = get(old, "spec").unwrap_or(empty());
    // Upstream lets a suspended Job that never started change its template.
    let never_started = at(old, &["status", "startTime"]).is_none();
    let template_mutable = boolean(old_spec, "suspend") == Some(true) && never_started;
    if !template_mutable && !semantic_eq(get(spec, "template"), get(old_spec, "template")) {
        errs.push(FieldError::invalid(
            "spec.template",
            get(spec, "template").cloned().unwrap_or(Value::Null),
            IMMUTABLE,
        ));
    }
    for field in ["completions", "completionMode"] {
        if !same(get(spec, field), get(old_spec, field)) {
            errs.push(FieldError::invalid(
                child("spec", field),
                get(spec, field).cloned().unwrap_or(Value::Null),
                IMMUTABLE,
            ));
        }
    }
}

pub(crate) fn validate_hpa(o: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = get(o, "spec").unwrap_or(empty());
    let target = get(spec, "scaleTargetRef").unwrap_or(empty());
    for field in ["kind", "name"] {
        let v = str_of(target, field);
        let p = child("spec.scaleTargetRef", field);
        if v.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else {
            push_invalid(errs, &p, v, NameRule::PathSegment.check(v, false));
        }
    }
    let min = int(spec, "minReplicas");
    if let Some(min) = min.filter(|m| *m < 1) {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            min,
            "must be greater than or equal to 1",
        ));
    }
    let max = int(spec, "maxReplicas").unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than 0",
        ));
    } else if min.is_some_and(|m| max < m) {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    for (i, m) in arr(spec, "metrics").iter().enumerate() {
        validate_metric(m, &index("spec.metrics", i), errs);
    }
    if let Some(b) = get(spec, "behavior") {
        for dir in ["scaleUp", "scaleDown"] {
            if let Some(rules) = get(b, dir) {
                validate_scaling_rules(rules, &child("spec.behavior", dir), errs);
            }
        }
    }
}

fn validate_metric(m: &Value, path: &str, errs: &mut Vec<FieldError>) {
    const TYPES: &[&str] = &[
        "ContainerResource",
        "External",
        "Object",
        "Pods",
        "Resource",
    ];
    let kind = str_of(m, "type");
    if kind.is_empty() {
        errs.push(FieldError::required(
            child(path, "type"),
            "must specify a metric source type",
        ));
        return;
    }
    if !TYPES.contains(&kind) {
        errs.push(FieldError::not_supported(child(path, "type"), kind, TYPES));
        return;
    }
    if kind == "Resource" {
        let p = child(path, "resource");
        let Some(res) = get(m, "resource") else {
            errs.push(FieldError::required(
                p,
                "must populate information for the given metric source",
            ));
            return;
        };
        if str_of(res, "name").is_empty() {
            errs.push(FieldError::required(
                child(&p, "name"),
                "must specify a resource name",
            ));
        }
        let target = get(res, "target").unwrap_or(empty());
        let tp = child(&p, "target");
        match str_of(target, "type") {
            "Utilization" => {
                if int(target, "averageUtilization").is_none_or(|u| u < 1) {
                    let v = get(target, "averageUtilization")
                        .cloned()
                        .unwrap_or(Value::Null);
                    errs.push(FieldError::invalid(
                        child(&tp, "averageUtilization"),
                        v,
                        "must be greater than 0",
                    ));
                }
            }
            "Value" | "AverageValue" => {}
            other => errs.push(FieldError::not_supported(
                child(&tp, "type"),
                other,
                &["AverageValue", "Utilization", "Value"],
            )),
        }
    }
}

fn validate_scaling_rules(rules: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let select = str_of(rules, "selectPolicy");
    if !select.is_empty() && !["Disabled", "Max", "Min"].contains(&select) {
        errs.push(FieldError::not_supported(
            child(path, "selectPolicy"),
            select,
            &["Disabled", "Max", "Min"],
        ));
    }
    if let Some(w) = int(rules, "stabilizationWindowSeconds") {
        if !(0..=3600).contains(&w) {
            errs.push(FieldError::invalid(
                child(path, "stabilizationWindowSeconds"),
                w,
                "must be less than or equal to 3600",
            ));
        }
    }
    for (i, p) in arr(rules, "policies").iter().enumerate() {
        let pp = index(&child(path, "policies"), i);
        let kind = str_of(p, "type");
        if !["Pods", "Percent"].contains(&kind) {
            errs.push(FieldError::not_supported(
                child(&pp, "type"),
                kind,
                &["Percent", "Pods"],
            ));
        }
        if int(p, "value").unwrap_or(0) <= 0 {
            errs.push(FieldError::invalid(
                child(&pp, "value"),
                int(p, "value").unwrap_or(0),
                "must be greater than zero",
            ));
        }
        let period = int(p, "periodSeconds").unwrap_or(0);
        if !(1..=1800).contains(&period) {
            errs.push(FieldError::invalid(
                child(&pp, "periodSeconds"),
                period,
                "must be between 1 and 1800, inclusive",
            ));
        }
    }
}

/// The body of a `/scale` subresource update.
pub(crate) fn validate_scale(o: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    non_negative(get(o, "spec").unwrap_or(empty()), "spec", "replicas", errs);
    let name = at(o, &["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or("");
    if !name.is_empty() {
        push_invalid(errs, "metadata.name", name, names::dns1123_subdomain(name));
    }
}

#[cfg(test)]
#[path = "workloads_tests.rs"]
mod tests;
