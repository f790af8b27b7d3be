//! The downward API: pod fields (`fieldRef`) and container resources
//! (`resourceFieldRef`) as strings, as Kubernetes formats them for env
//! vars and downwardAPI volume files.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ObjectFieldSelector, Pod, ResourceFieldSelector, ResourceRequirements,
};

use super::VolumeError;

/// What the node knows about a pod that its object may not say yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFacts {
    /// The pod IP (`status.podIP`), once the sandbox has one.
    pub pod_ip: Option<String>,
    /// The node's IP (`status.hostIP`).
    pub host_ip: Option<String>,
    /// Allocatable CPU of the node in cores: the value of `limits.cpu`
    /// for a container without a CPU limit.
    pub allocatable_cpu: f64,
    /// Allocatable memory of the node in bytes, likewise.
    pub allocatable_memory: f64,
    /// Variables every container starts with, before its own: the
    /// `KUBERNETES_SERVICE_*` / `KUBERNETES_PORT*` set of the API's Service.
    pub service_env: Vec<(String, String)>,
}

/// Go's `%q` of a string: double-quoted with Go escapes.
pub fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() => {
                let code = u32::from(c);
                if code < 0x100 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Labels or annotations as the downward API writes them: `key="value"`
/// lines sorted by key, without a trailing newline (Kubernetes' `FormatMap`).
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `metadata.labels['app']` → `("metadata.labels", "app")`.
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (head, rest) = path.split_once('[')?;
    let key = rest.strip_suffix(']')?;
    let key = key
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))?;
    Some((head, key))
}

/// The value of a `fieldRef`. `env` allows the `spec.*` and `status.*`
/// fields, which volumes do not (Kubernetes' validation).
pub fn field_value(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    facts: &NodeFacts,
    env: bool,
) -> Result<String, VolumeError> {
    let meta = &pod.metadata;
    let path = selector.field_path.as_str();
    if let Some((head, key)) = subscript(path) {
        let map = match head {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return Err(VolumeError::FieldPath(path.to_string())),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(format_map(&meta.labels.clone().unwrap_or_default())),
        "metadata.annotations" => Some(format_map(&meta.annotations.clone().unwrap_or_default())),
        "spec.nodeName" if env => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" if env => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" | "status.hostIPs" if env => facts
            .host_ip
            .clone()
            .or_else(|| status.and_then(|s| s.host_ip.clone())),
        "status.podIP" | "status.podIPs" if env => facts
            .pod_ip
            .clone()
            .or_else(|| status.and_then(|s| s.pod_ip.clone())),
        _ => return Err(VolumeError::FieldPath(path.to_string())),
    };
    Ok(value.unwrap_or_default())
}

fn quantity(resources: Option<&ResourceRequirements>, limits: bool, name: &str) -> Option<f64> {
    let resources = resources?;
    let map = if limits {
        resources.limits.as_ref()
    } else {
        resources.requests.as_ref()
    };
    map?.get(name).and_then(|q| quantity::as_f64(&q.0))
}

/// The value of a `resourceFieldRef` on `container`: limits default to the
/// node's allocatable (requests to the limit, then 0 for cpu), divided by
/// the divisor and rounded up, as Kubernetes does.
pub fn resource_value(
    container: &Container,
    selector: &ResourceFieldSelector,
    facts: &NodeFacts,
) -> Result<String, VolumeError> {
    let resources = container.resources.as_ref();
    let invalid = || VolumeError::ResourceField(selector.resource.clone());
    let (limits, name) = match selector.resource.split_once('.') {
        Some(("limits", name)) => (true, name),
        Some(("requests", name)) => (false, name),
        _ => return Err(invalid()),
    };
    let allocatable = match name {
        "cpu" => facts.allocatable_cpu,
        "memory" => facts.allocatable_memory,
        "ephemeral-storage" => 0.0,
        _ => return Err(invalid()),
    };
    let value = if limits {
        quantity(resources, true, name).unwrap_or(allocatable)
    } else {
        quantity(resources, false, name)
            .or_else(|| quantity(resources, true, name))
            .unwrap_or(0.0)
    };
    let divisor = match &selector.divisor {
        Some(q) => quantity::as_f64(&q.0)
            .filter(|d| *d > 0.0)
            .ok_or_else(invalid)?,
        None => 1.0,
    };
    let ratio = if name == "cpu" {
        // Kubernetes compares millicores: ceil(milli(value) / milli(divisor)).
        (value * 1000.0).ceil() / (divisor * 1000.0).ceil()
    } else {
        value / divisor
    };
    Ok(format!("{}", ratio.ceil() as i64))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn selector(path: &str) -> ObjectFieldSelector {
        ObjectFieldSelector {
            field_path: path.to_string(),
            ..Default::default()
        }
    }

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".to_string());
        pod.metadata.namespace = Some("prod".to_string());
        pod.metadata.uid = Some("u-1".to_string());
        pod.metadata.labels = Some(BTreeMap::from([
            ("tier".to_string(), "front".to_string()),
            ("app".to_string(), "a \"b\"".to_string()),
        ]));
        pod
    }

    #[test]
    fn labels_are_sorted_go_quoted_lines_without_a_trailing_newline() {
        let value = field_value(
            &pod(),
            &selector("metadata.labels"),
            &NodeFacts::default(),
            false,
        )
        .expect("labels");
        assert_eq!(value, "app=\"a \\\"b\\\"\"\ntier=\"front\"");
    }

    #[test]
    fn metadata_fields_and_one_label_resolve() {
        let facts = NodeFacts::default();
        let get = |path: &str| field_value(&pod(), &selector(path), &facts, false).expect(path);
        assert_eq!(get("metadata.name"), "web");
        assert_eq!(get("metadata.namespace"), "prod");
        assert_eq!(get("metadata.uid"), "u-1");
        assert_eq!(get("metadata.labels['tier']"), "front");
    }

    #[test]
    fn status_fields_are_for_env_only_and_use_the_node_facts() {
        let facts = NodeFacts {
            pod_ip: Some("10.244.0.5".to_string()),
            ..Default::default()
        };
        assert_eq!(
            field_value(&pod(), &selector("status.podIP"), &facts, true).expect("pod ip"),
            "10.244.0.5"
        );
        assert!(matches!(
            field_value(&pod(), &selector("status.podIP"), &facts, false),
            Err(VolumeError::FieldPath(_))
        ));
    }

    fn limited(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect::<BTreeMap<_, _>>()
        };
        Container {
            name: "c".to_string(),
            resources: Some(ResourceRequirements {
                limits: Some(map(limits)),
                requests: Some(map(requests)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn resource(name: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            resource: name.to_string(),
            divisor: divisor.map(|d| Quantity(d.to_string())),
            ..Default::default()
        }
    }

    #[test]
    fn resources_are_divided_and_rounded_up_and_limits_default_to_allocatable() {
        let facts = NodeFacts {
            allocatable_cpu: 2.0,
            allocatable_memory: 4.0 * 1024.0 * 1024.0 * 1024.0,
            ..Default::default()
        };
        let c = limited(&[("memory", "64Mi"), ("cpu", "500m")], &[("cpu", "250m")]);
        let get = |c: &Container, name: &str, divisor: Option<&str>| {
            resource_value(c, &resource(name, divisor), &facts).expect(name)
        };
        assert_eq!(get(&c, "limits.memory", Some("1Mi")), "64");
        assert_eq!(get(&c, "limits.memory", None), "67108864");
        assert_eq!(get(&c, "limits.cpu", None), "1");
        assert_eq!(get(&c, "limits.cpu", Some("1m")), "500");
        assert_eq!(get(&c, "requests.cpu", Some("1m")), "250");
        let bare = limited(&[], &[]);
        assert_eq!(get(&bare, "limits.cpu", None), "2");
        assert_eq!(get(&bare, "limits.memory", Some("1Gi")), "4");
        assert!(resource_value(&bare, &resource("limits.gpu", None), &facts).is_err());
    }
}
