//! Service discovery kinds: Service, Endpoints and EndpointSlice
//! (`ValidateService`, `ValidateEndpoints`, `ValidateEndpointSlice` upstream).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::names;
use super::pod::validate_protocol;
use super::value::{arr, child, get, index, int, str_of, string_map};
use super::{push_invalid, FieldError, IMMUTABLE};

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

fn empty() -> &'static Value {
    &Value::Null
}

pub(crate) fn validate_service(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = get(o, "spec").unwrap_or(empty());
    let kind = str_of(spec, "type");
    if !kind.is_empty() && !SERVICE_TYPES.contains(&kind) {
        errs.push(FieldError::not_supported("spec.type", kind, SERVICE_TYPES));
    }
    let cluster_ip = str_of(spec, "clusterIP");
    let headless = cluster_ip == "None";
    let ports = arr(spec, "ports");
    if kind == "ExternalName" {
        let name = str_of(spec, "externalName");
        if name.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            push_invalid(
                errs,
                "spec.externalName",
                name,
                names::dns1123_subdomain(name.strip_suffix('.').unwrap_or(name)),
            );
        }
    } else if ports.is_empty() && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    validate_service_ports(ports, kind, errs);
    if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<IpAddr>().is_err() {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            cluster_ip,
            IP_MSG,
        ));
    }
    let affinity = str_of(spec, "sessionAffinity");
    if !affinity.is_empty() && !["ClientIP", "None"].contains(&affinity) {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            affinity,
            &["ClientIP", "None"],
        ));
    }
    for field in ["externalTrafficPolicy", "internalTrafficPolicy"] {
        let v = str_of(spec, field);
        if !v.is_empty() && !TRAFFIC_POLICIES.contains(&v) {
            errs.push(FieldError::not_supported(
                child("spec", field),
                v,
                TRAFFIC_POLICIES,
            ));
        }
    }
    for (k, v) in string_map(spec, "selector") {
        push_invalid(errs, "spec.selector", k, names::qualified_name(k));
        push_invalid(errs, "spec.selector", v, names::label_value(v));
    }
    if let Some(old) = old {
        let old_spec = get(old, "spec").unwrap_or(empty());
        let old_ip = str_of(old_spec, "clusterIP");
        let type_switch = kind == "ExternalName" || str_of(old_spec, "type") == "ExternalName";
        // An empty clusterIP on update means "keep it": the caller carries the
        // old value over, as upstream's REST layer does.
        if !type_switch && !old_ip.is_empty() && !cluster_ip.is_empty() && old_ip != cluster_ip {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                cluster_ip,
                "may not change once set",
            ));
        }
    }
}

fn validate_service_ports(ports: &[Value], kind: &str, errs: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = index("spec.ports", i);
        let name = str_of(p, "name");
        if name.is_empty() {
            if ports.len() > 1 {
                errs.push(FieldError::required(child(&pp, "name"), ""));
            }
        } else {
            push_invalid(errs, child(&pp, "name"), name, names::dns1123_label(name));
            if !seen.insert(name) {
                errs.push(FieldError::duplicate(child(&pp, "name"), name));
            }
        }
        let port = int(p, "port").unwrap_or(0);
        if let Some(msg) = names::port_number(port) {
            errs.push(FieldError::invalid(child(&pp, "port"), port, &msg));
        }
        validate_protocol(p, &pp, errs);
        match get(p, "targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                if let Some(msg) = names::port_number(n) {
                    errs.push(FieldError::invalid(child(&pp, "targetPort"), n, &msg));
                }
            }
            Some(Value::String(s)) => {
                push_invalid(
                    errs,
                    child(&pp, "targetPort"),
                    s.as_str(),
                    names::port_name(s),
                );
            }
            _ => {}
        }
        if int(p, "nodePort").unwrap_or(0) != 0 && (kind == "ClusterIP" || kind.is_empty()) {
            errs.push(FieldError::forbidden(
                child(&pp, "nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
}

pub(crate) fn validate_endpoints(o: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    for (i, subset) in arr(o, "subsets").iter().enumerate() {
        let sp = index("subsets", i);
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr(subset, list).iter().enumerate() {
                let ip = str_of(a, "ip");
                if ip.parse::<IpAddr>().is_err() {
                    errs.push(FieldError::invalid(
                        child(&index(&child(&sp, list), j), "ip"),
                        ip,
                        IP_MSG,
                    ));
                }
            }
        }
        let ports = arr(subset, "ports");
        for (j, p) in ports.iter().enumerate() {
            let pp = index(&child(&sp, "ports"), j);
            let name = str_of(p, "name");
            if name.is_empty() && ports.len() > 1 {
                errs.push(FieldError::required(child(&pp, "name"), ""));
            } else if !name.is_empty() {
                push_invalid(errs, child(&pp, "name"), name, names::dns1123_label(name));
            }
            let port = int(p, "port").unwrap_or(0);
            if let Some(msg) = names::port_number(port) {
                errs.push(FieldError::invalid(child(&pp, "port"), port, &msg));
            }
            validate_protocol(p, &pp, errs);
        }
    }
}

const ADDRESS_TYPES: &[&str] = &["IPv4", "IPv6", "FQDN"];
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;

pub(crate) fn validate_endpoint_slice(o: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let address_type = str_of(o, "addressType");
    if address_type.is_empty() {
        errs.push(FieldError::required("addressType", ""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        errs.push(FieldError::not_supported(
            "addressType",
            address_type,
            ADDRESS_TYPES,
        ));
    }
    let endpoints = arr(o, "endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(FieldError::too_many(
            "endpoints",
            endpoints.len(),
            MAX_ENDPOINTS,
        ));
    }
    for (i, e) in endpoints.iter().enumerate() {
        let ap = child(&index("endpoints", i), "addresses");
        let addresses = arr(e, "addresses");
        if addresses.is_empty() {
            errs.push(FieldError::required(&ap, "must contain at least 1 address"));
        } else if addresses.len() > MAX_ADDRESSES {
            errs.push(FieldError::too_many(&ap, addresses.len(), MAX_ADDRESSES));
        }
        for (j, a) in addresses.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let problem = match address_type {
                "IPv4" => a
                    .parse::<Ipv4Addr>()
                    .is_err()
                    .then(|| "must be a valid IPv4 address".to_string()),
                "IPv6" => a
                    .parse::<Ipv6Addr>()
                    .is_err()
                    .then(|| "must be a valid IPv6 address".to_string()),
                "FQDN" => names::dns1123_subdomain(a).into_iter().next(),
                _ => None,
            };
            if let Some(msg) = problem {
                errs.push(FieldError::invalid(index(&ap, j), a, &msg));
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, p) in arr(o, "ports").iter().enumerate() {
        let pp = index("ports", i);
        let name = str_of(p, "name");
        if !name.is_empty() {
            push_invalid(errs, child(&pp, "name"), name, names::dns1123_label(name));
        }
        if !seen.insert(name) {
            errs.push(FieldError::duplicate(child(&pp, "name"), name));
        }
        if let Some(port) = int(p, "port") {
            if !(0..=65535).contains(&port) {
                errs.push(FieldError::invalid(
                    child(&pp, "port"),
                    port,
                    "must be between 0 and 65535, inclusive",
                ));
            }
        }
        validate_protocol(p, &pp, errs);
    }
    if let Some(old) = old {
        let old_type = str_of(old, "addressType");
        if old_type != address_type {
            errs.push(FieldError::invalid("addressType", address_type, IMMUTABLE));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::validate;
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn only_fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn services_need_ports_unless_headless_or_external_name() {
        let good =
            svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}));
        assert!(validate("", "Service", &good, None).is_empty());
        assert_eq!(
            only_fields(&validate("", "Service", &svc(json!({})), None)),
            ["spec.ports"]
        );
        assert!(validate("", "Service", &svc(json!({"clusterIP": "None"})), None).is_empty());
        let ext = svc(json!({"type": "ExternalName", "externalName": "db.example.com"}));
        assert!(validate("", "Service", &ext, None).is_empty());
        let ext = svc(json!({"type": "ExternalName"}));
        assert_eq!(
            only_fields(&validate("", "Service", &ext, None)),
            ["spec.externalName"]
        );
    }

    #[test]
    fn service_names_are_dns_1035_labels() {
        let mut o = svc(json!({"ports": [{"port": 80}]}));
        o["metadata"]["name"] = json!("1web");
        let errs = validate("", "Service", &o, None);
        assert_eq!(only_fields(&errs), ["metadata.name"]);
        assert!(errs[0].message.contains("a DNS-1035 label"));
    }

    #[test]
    fn service_port_rules_report_the_bad_field() {
        let table = [
            (json!([{"port": 0}]), "spec.ports[0].port"),
            (
                json!([{"port": 80, "name": "a"}, {"port": 81}]),
                "spec.ports[1].name",
            ),
            (
                json!([{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]),
                "spec.ports[1].name",
            ),
            (
                json!([{"port": 80, "protocol": "ICMP"}]),
                "spec.ports[0].protocol",
            ),
            (
                json!([{"port": 80, "targetPort": 70000}]),
                "spec.ports[0].targetPort",
            ),
            (
                json!([{"port": 80, "targetPort": "HTTP"}]),
                "spec.ports[0].targetPort",
            ),
            (
                json!([{"port": 80, "nodePort": 30080}]),
                "spec.ports[0].nodePort",
            ),
        ];
        for (ports, field) in table {
            let errs = validate(
                "",
                "Service",
                &svc(json!({"type": "ClusterIP", "ports": ports})),
                None,
            );
            assert_eq!(only_fields(&errs), [field], "{ports}");
        }
        let np = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
        assert!(validate("", "Service", &np, None).is_empty());
    }

    #[test]
    fn cluster_ip_may_not_change_once_set() {
        let old = svc(json!({"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}));
        let moved = svc(json!({"clusterIP": "10.0.0.6", "ports": [{"port": 80}]}));
        let errs = validate("", "Service", &moved, Some(&old));
        assert_eq!(
            errs[0].to_string(),
            "spec.clusterIPs[0]: Invalid value: \"10.0.0.6\": may not change once set"
        );
        let kept = svc(json!({"clusterIP": "10.0.0.5", "ports": [{"port": 81}]}));
        assert!(validate("", "Service", &kept, Some(&old)).is_empty());
        let bad_ip = svc(json!({"clusterIP": "10.0.0.300", "ports": [{"port": 80}]}));
        assert_eq!(
            only_fields(&validate("", "Service", &bad_ip, None)),
            ["spec.clusterIPs[0]"]
        );
    }

    #[test]
    fn endpoints_need_ip_addresses_and_valid_ports() {
        let base = json!({"metadata": {"name": "web", "namespace": "default"}});
        let mut good = base.clone();
        good["subsets"] = json!([{"addresses": [{"ip": "10.1.0.4"}], "ports": [{"port": 8080, "protocol": "TCP"}]}]);
        assert!(validate("", "Endpoints", &good, None).is_empty());
        let mut bad = base;
        bad["subsets"] = json!([{"addresses": [{"ip": "pod-a"}], "ports": [{"port": 0}]}]);
        assert_eq!(
            only_fields(&validate("", "Endpoints", &bad, None)),
            ["subsets[0].addresses[0].ip", "subsets[0].ports[0].port"]
        );
    }

    #[test]
    fn endpoint_slices_check_address_type_and_addresses() {
        let good = json!({"metadata": {"name": "web-abc", "namespace": "default"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.4"]}], "ports": [{"name": "http", "port": 8080}]});
        assert!(validate("discovery.k8s.io", "EndpointSlice", &good, None).is_empty());
        let mut bad = good.clone();
        bad["endpoints"] = json!([{"addresses": ["fe80::1"]}, {"addresses": []}]);
        assert_eq!(
            only_fields(&validate("discovery.k8s.io", "EndpointSlice", &bad, None)),
            ["endpoints[0].addresses[0]", "endpoints[1].addresses"]
        );
        let mut retyped = good.clone();
        retyped["addressType"] = json!("IPv6");
        retyped["endpoints"] = json!([{"addresses": ["fe80::1"]}]);
        assert_eq!(
            only_fields(&validate(
                "discovery.k8s.io",
                "EndpointSlice",
                &retyped,
                Some(&good)
            )),
            ["addressType"]
        );
    }
}
