//! Pod and pod template checks (`ValidatePodSpec`, `ValidatePodUpdate`
//! upstream): containers, ports, volumes, resources, tolerations.

use std::collections::HashSet;

use serde_json::Value;

use super::meta;
use super::names;
use super::value::{arr, child, get, index, int, key, obj, semantic_eq, str_of, string_map};
use super::{push_invalid, FieldError};
use quantity::Quantity;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
const MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Whether a spec belongs to a Pod or to a template (templates may leave
/// `image` empty for something else to fill in, as upstream allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpecOf {
    Pod,
    Template,
}

pub(crate) fn validate_pod(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let spec = get(o, "spec").unwrap_or(&empty);
    validate_pod_spec(spec, "spec", SpecOf::Pod, errs);
    if let Some(old) = old {
        validate_pod_update(spec, get(old, "spec").unwrap_or(&empty), errs);
    }
}

/// A `PodTemplateSpec` at `path` (e.g. `spec.template`).
pub(crate) fn validate_pod_template(tmpl: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let meta = get(tmpl, "metadata").unwrap_or(&empty);
    let meta_path = child(path, "metadata");
    meta::validate_labels(meta, &meta_path, errs);
    meta::validate_annotations(meta, &meta_path, errs);
    let spec = get(tmpl, "spec").unwrap_or(&empty);
    validate_pod_spec(spec, &child(path, "spec"), SpecOf::Template, errs);
}

pub(crate) fn validate_pod_spec(spec: &Value, path: &str, of: SpecOf, errs: &mut Vec<FieldError>) {
    let volumes = validate_volumes(spec, path, errs);
    let containers = arr(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(child(path, "containers"), ""));
    }
    let mut names = HashSet::new();
    for list in ["initContainers", "containers"] {
        let list_path = child(path, list);
        for (i, c) in arr(spec, list).iter().enumerate() {
            let p = index(&list_path, i);
            let name = str_of(c, "name");
            if !name.is_empty() && !names.insert(name) {
                errs.push(FieldError::duplicate(child(&p, "name"), name));
            }
            validate_container(c, &p, &volumes, of, errs);
        }
    }
    let restart = str_of(spec, "restartPolicy");
    if !restart.is_empty() && !RESTART_POLICIES.contains(&restart) {
        errs.push(FieldError::not_supported(
            child(path, "restartPolicy"),
            restart,
            RESTART_POLICIES,
        ));
    }
    let dns = str_of(spec, "dnsPolicy");
    if !dns.is_empty() && !DNS_POLICIES.contains(&dns) {
        errs.push(FieldError::not_supported(
            child(path, "dnsPolicy"),
            dns,
            DNS_POLICIES,
        ));
    }
    if let Some(ads) = int(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&ads) {
            let detail = format!("must be between 1 and {}, inclusive", i32::MAX);
            errs.push(FieldError::invalid(
                child(path, "activeDeadlineSeconds"),
                ads,
                &detail,
            ));
        }
    }
    for (k, v) in string_map(spec, "nodeSelector") {
        let p = child(path, "nodeSelector");
        push_invalid(errs, &p, k, names::qualified_name(k));
        push_invalid(errs, &p, v, names::label_value(v));
    }
    for field in ["hostname", "subdomain"] {
        let v = str_of(spec, field);
        if !v.is_empty() {
            push_invalid(errs, child(path, field), v, names::dns1123_label(v));
        }
    }
    let sa = str_of(spec, "serviceAccountName");
    if !sa.is_empty() {
        push_invalid(
            errs,
            child(path, "serviceAccountName"),
            sa,
            names::dns1123_subdomain(sa),
        );
    }
    validate_tolerations(arr(spec, "tolerations"), &child(path, "tolerations"), errs);
}

/// Checks `volumes` and returns their names.
fn validate_volumes<'a>(
    spec: &'a Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    let vol_path = child(path, "volumes");
    for (i, v) in arr(spec, "volumes").iter().enumerate() {
        let p = child(&index(&vol_path, i), "name");
        let name = str_of(v, "name");
        if name.is_empty() {
            errs.push(FieldError::required(p, ""));
            continue;
        }
        push_invalid(errs, &p, name, names::dns1123_label(name));
        if !seen.insert(name) {
            errs.push(FieldError::duplicate(p, name));
        }
        let sources = v.as_object().map_or(0, |m| {
            m.iter()
                .filter(|(k, v)| *k != "name" && !v.is_null())
                .count()
        });
        if sources > 1 {
            errs.push(FieldError::forbidden(
                index(&vol_path, i),
                "may not specify more than 1 volume type",
            ));
        }
    }
    seen
}

fn validate_container(
    c: &Value,
    path: &str,
    volumes: &HashSet<&str>,
    of: SpecOf,
    errs: &mut Vec<FieldError>,
) {
    let name = str_of(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(child(path, "name"), ""));
    } else {
        push_invalid(errs, child(path, "name"), name, names::dns1123_label(name));
    }
    let image = str_of(c, "image");
    // Every container needs an image, in pods and templates alike; only pods
    // are held to the whitespace rule (templates may carry a placeholder).
    if image.is_empty() {
        errs.push(FieldError::required(child(path, "image"), ""));
    } else if of == SpecOf::Pod && image.trim() != image {
        errs.push(FieldError::invalid(
            child(path, "image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    for (field, allowed) in [
        ("imagePullPolicy", PULL_POLICIES),
        ("terminationMessagePolicy", MESSAGE_POLICIES),
    ] {
        let v = str_of(c, field);
        if !v.is_empty() && !allowed.contains(&v) {
            errs.push(FieldError::not_supported(child(path, field), v, allowed));
        }
    }
    validate_ports(c, path, errs);
    for (i, e) in arr(c, "env").iter().enumerate() {
        if str_of(e, "name").is_empty() {
            errs.push(FieldError::required(
                child(&index(&child(path, "env"), i), "name"),
                "",
            ));
        }
    }
    validate_volume_mounts(c, path, volumes, errs);
    validate_resources(c, &child(path, "resources"), errs);
}

fn validate_ports(c: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mut port_names = HashSet::new();
    let ports_path = child(path, "ports");
    for (i, p) in arr(c, "ports").iter().enumerate() {
        let pp = index(&ports_path, i);
        let name = str_of(p, "name");
        if !name.is_empty() {
            push_invalid(errs, child(&pp, "name"), name, names::port_name(name));
            if !port_names.insert(name) {
                errs.push(FieldError::duplicate(child(&pp, "name"), name));
            }
        }
        match int(p, "containerPort").unwrap_or(0) {
            0 => errs.push(FieldError::required(child(&pp, "containerPort"), "")),
            port => {
                if let Some(msg) = names::port_number(port) {
                    errs.push(FieldError::invalid(child(&pp, "containerPort"), port, &msg));
                }
            }
        }
        let host_port = int(p, "hostPort").unwrap_or(0);
        if host_port != 0 {
            if let Some(msg) = names::port_number(host_port) {
                errs.push(FieldError::invalid(child(&pp, "hostPort"), host_port, &msg));
            }
        }
        validate_protocol(p, &pp, errs);
    }
}

/// `protocol`, when set, is TCP, UDP or SCTP.
pub(crate) fn validate_protocol(port: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let proto = str_of(port, "protocol");
    if !proto.is_empty() && !PROTOCOLS.contains(&proto) {
        errs.push(FieldError::not_supported(
            child(path, "protocol"),
            proto,
            PROTOCOLS,
        ));
    }
}

fn validate_volume_mounts(
    c: &Value,
    path: &str,
    volumes: &HashSet<&str>,
    errs: &mut Vec<FieldError>,
) {
    let mut mount_paths = HashSet::new();
    let mounts_path = child(path, "volumeMounts");
    for (i, m) in arr(c, "volumeMounts").iter().enumerate() {
        let mp = index(&mounts_path, i);
        let name = str_of(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(child(&mp, "name"), ""));
        } else if !volumes.contains(name) {
            errs.push(FieldError::not_found(child(&mp, "name"), name));
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(child(&mp, "mountPath"), ""));
        } else if !mount_paths.insert(mount_path) {
            errs.push(FieldError::invalid(
                child(&mp, "mountPath"),
                mount_path,
                "must be unique",
            ));
        }
    }
}

/// A quantity field's text, whether it was sent as a string or a number.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses every quantity of a `ResourceList` at `path`, reporting bad ones.
pub(crate) fn resource_list(
    list: Option<&serde_json::Map<String, Value>>,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<(String, String, Quantity)> {
    let mut out = Vec::new();
    for (name, v) in list.into_iter().flatten() {
        let p = key(path, name);
        let Some(text) = quantity_text(v) else {
            continue;
        };
        match Quantity::parse(&text) {
            Ok(q) if q.is_negative() => {
                errs.push(FieldError::invalid(
                    p,
                    text.as_str(),
                    "must be greater than or equal to 0",
                ));
            }
            Ok(q) => out.push((name.clone(), text, q)),
            Err(e) => errs.push(FieldError::invalid(p, text.as_str(), &e.to_string())),
        }
    }
    out
}

pub(crate) fn validate_resources(c: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let res = get(c, "resources").unwrap_or(&empty);
    let limits = resource_list(obj(res, "limits"), &child(path, "limits"), errs);
    let requests = resource_list(obj(res, "requests"), &child(path, "requests"), errs);
    for (name, text, req) in &requests {
        if let Some((_, lim_text, lim)) = limits.iter().find(|(n, _, _)| n == name) {
            if req > lim {
                let detail = format!("must be less than or equal to {name} limit of {lim_text}");
                errs.push(FieldError::invalid(
                    key(&child(path, "requests"), name),
                    text.as_str(),
                    &detail,
                ));
            }
        }
    }
}

pub(crate) fn validate_tolerations(tolerations: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = index(path, i);
        let k = str_of(t, "key");
        let op = str_of(t, "operator");
        if !k.is_empty() {
            push_invalid(errs, child(&p, "key"), k, names::qualified_name(k));
        } else if op != "Exists" {
            errs.push(FieldError::invalid(
                child(&p, "operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        match op {
            "" | "Equal" => {
                let v = str_of(t, "value");
                push_invalid(errs, child(&p, "value"), v, names::label_value(v));
            }
            "Exists" => {
                if !str_of(t, "value").is_empty() {
                    errs.push(FieldError::invalid(
                        child(&p, "operator"),
                        str_of(t, "value"),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                child(&p, "operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        let effect = str_of(t, "effect");
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                child(&p, "effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                child(&p, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
    }
}

/// Upstream's rule: a Pod's spec is immutable except images, a shrinking
/// `activeDeadlineSeconds`, added tolerations and a negative grace period
/// becoming 1.
fn validate_pod_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let ads_path = "spec.activeDeadlineSeconds";
    match (
        int(new, "activeDeadlineSeconds"),
        int(old, "activeDeadlineSeconds"),
    ) {
        (Some(n), Some(o)) if n > o => {
            errs.push(FieldError::invalid(
                ads_path,
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => {
            errs.push(FieldError::invalid(
                ads_path,
                Value::Null,
                "must not update from a positive integer to nil value",
            ));
            return;
        }
        _ => {}
    }
    let mut masked = new.clone();
    if let Some(m) = masked.as_object_mut() {
        for list in ["containers", "initContainers"] {
            let old_list = arr(old, list);
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                if cs.len() == old_list.len() {
                    for (c, oc) in cs.iter_mut().zip(old_list) {
                        if let (Some(c), Some(img)) = (c.as_object_mut(), get(oc, "image")) {
                            c.insert("image".to_string(), img.clone());
                        }
                    }
                }
            }
        }
        restore(m, old, "activeDeadlineSeconds");
        let old_tols = arr(old, "tolerations");
        let new_tols = arr(new, "tolerations");
        if old_tols.iter().all(|t| new_tols.contains(t)) {
            restore(m, old, "tolerations");
        }
        if int(old, "terminationGracePeriodSeconds").is_some_and(|g| g < 0)
            && int(new, "terminationGracePeriodSeconds") == Some(1)
        {
            restore(m, old, "terminationGracePeriodSeconds");
        }
        // Set by admission on create; a client's full update may omit them.
        for field in ["priority", "preemptionPolicy"] {
            if get(new, field).is_none() {
                restore(m, old, field);
            }
        }
        let old_gates = arr(old, "schedulingGates");
        if arr(new, "schedulingGates")
            .iter()
            .all(|g| old_gates.contains(g))
        {
            restore(m, old, "schedulingGates");
        }
    }
    if !semantic_eq(Some(&masked), Some(old)) {
        errs.push(FieldError::forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
}

/// Sets `m[field]` to `old[field]` (or removes it), masking an allowed change.
fn restore(m: &mut serde_json::Map<String, Value>, old: &Value, field: &str) {
    match get(old, field) {
        Some(v) => {
            m.insert(field.to_string(), v.clone());
        }
        None => {
            m.remove(field);
        }
    }
}

#[cfg(test)]
#[path = "pod_tests.rs"]
mod tests;
