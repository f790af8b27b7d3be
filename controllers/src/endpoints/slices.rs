//! The pure part of the EndpointSlice controller: the slices a Service's
//! pods make (ready, serving and terminating conditions, terminating pods
//! kept), and the creates, updates and deletes that turn the existing
//! slices into them with as few writes as possible.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::subsets::{
    hostname, is_headless, pod_ip, resolve_port, service_ports, should_include, target_ref,
};
use crate::podutil::{is_ready, new_controller_ref, semantic_eq};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Kubernetes' default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// One slice's worth of content.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub address_type: String,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// The labels of every slice of `svc`: the Service's own, plus the
/// service-name and managed-by labels.
pub fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

fn endpoint(svc: &Service, pod: &Pod, ip: &str) -> Endpoint {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let serving = publish || is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname(pod, svc),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(target_ref(pod)),
        ..Default::default()
    }
}

/// The slices `svc` needs for `pods` (those it selects): grouped by address
/// type and resolved ports, at most [`MAX_ENDPOINTS_PER_SLICE`] each; one
/// empty placeholder slice when there are no endpoints.
pub fn desired(svc: &Service, pods: &[&Pod]) -> Vec<Desired> {
    let ports = service_ports(svc);
    let mut groups: BTreeMap<(String, String), (Vec<EndpointPort>, Vec<Endpoint>)> =
        BTreeMap::new();
    let mut sorted: Vec<&&Pod> = pods.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for pod in sorted {
        if !should_include(pod, true) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let resolved: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|p| {
                Some(EndpointPort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(resolve_port(pod, p)?),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        if resolved.is_empty() && !(ports.is_empty() && is_headless(svc)) {
            continue;
        }
        let address_type = if ip.contains(':') { "IPv6" } else { "IPv4" };
        let key = (
            address_type.to_string(),
            serde_json::to_string(&resolved).unwrap_or_default(),
        );
        groups
            .entry(key)
            .or_insert_with(|| (resolved, Vec::new()))
            .1
            .push(endpoint(svc, pod, ip));
    }
    let mut out = Vec::new();
    for ((address_type, _), (ports, endpoints)) in groups {
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(Desired {
                address_type: address_type.clone(),
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    if out.is_empty() {
        out.push(Desired {
            address_type: "IPv4".into(),
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    out
}

/// The writes that turn the existing slices into the desired ones.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    /// Existing slices (name and resourceVersion kept) with new content.
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

fn same_content(e: &EndpointSlice, d: &Desired, labels: &BTreeMap<String, String>) -> bool {
    e.address_type == d.address_type
        && semantic_eq(&e.ports.clone().unwrap_or_default(), &d.ports)
        && semantic_eq(&e.endpoints, &d.endpoints)
        && e.metadata.labels.as_ref() == Some(labels)
}

/// Plans the writes: existing slices already equal to a desired one stay,
/// others are reused (same address type) before new ones are created, and
/// the rest are deleted.
pub fn plan(svc: &Service, desired: Vec<Desired>, existing: &[&EndpointSlice]) -> Plan {
    let labels = labels(svc);
    let owner = new_controller_ref("v1", "Service", &svc.metadata);
    let mut used = vec![false; existing.len()];
    let mut rest = Vec::new();
    for d in desired {
        match existing
            .iter()
            .enumerate()
            .find(|(i, e)| !used[*i] && same_content(e, &d, &labels))
        {
            Some((i, _)) => used[i] = true,
            None => rest.push(d),
        }
    }
    let mut plan = Plan::default();
    for d in rest {
        let reuse = existing
            .iter()
            .enumerate()
            .find(|(i, e)| !used[*i] && e.address_type == d.address_type);
        let metadata = match reuse {
            Some((i, e)) => {
                used[i] = true;
                ObjectMeta {
                    labels: Some(labels.clone()),
                    owner_references: owner.clone().map(|o| vec![o]),
                    ..e.metadata.clone()
                }
            }
            None => ObjectMeta {
                generate_name: Some(format!(
                    "{}-",
                    svc.metadata.name.as_deref().unwrap_or_default()
                )),
                namespace: svc.metadata.namespace.clone(),
                labels: Some(labels.clone()),
                owner_references: owner.clone().map(|o| vec![o]),
                ..Default::default()
            },
        };
        let slice = EndpointSlice {
            metadata,
            address_type: d.address_type,
            endpoints: d.endpoints,
            ports: (!d.ports.is_empty()).then_some(d.ports),
        };
        if reuse.is_some() {
            plan.update.push(slice);
        } else {
            plan.create.push(slice);
        }
    }
    plan.delete = existing
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .filter_map(|(e, _)| e.metadata.name.clone())
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::super::subsets::testing::*;
    use super::*;
    use crate::podutil::testing::ts;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn conditions(e: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
        let c = e.conditions.clone().unwrap_or_default();
        (c.ready, c.serving, c.terminating)
    }

    #[test]
    fn terminating_pods_stay_in_slices_as_serving_but_not_ready() {
        let svc = service("web", IntOrString::Int(8080));
        let mut a = serving("a", "10.0.0.2", true);
        a.metadata.deletion_timestamp = Some(Time(ts(5)));
        let b = serving("b", "10.0.0.3", false);
        let d = desired(&svc, &[&a, &b]);
        assert_eq!(d.len(), 1);
        assert_eq!(
            conditions(&d[0].endpoints[0]),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(
            conditions(&d[0].endpoints[1]),
            (Some(false), Some(false), Some(false))
        );
        assert_eq!(d[0].ports[0].port, Some(8080));
        assert_eq!(d[0].endpoints[0].node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn a_service_without_endpoints_gets_one_empty_placeholder() {
        let svc = service("web", IntOrString::Int(8080));
        let d = desired(&svc, &[]);
        assert_eq!(d.len(), 1);
        assert!(d[0].endpoints.is_empty());
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints() {
        let svc = service("web", IntOrString::Int(8080));
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                serving(
                    &format!("p{i:03}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    true,
                )
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let sizes: Vec<usize> = desired(&svc, &refs)
            .iter()
            .map(|d| d.endpoints.len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn new_slices_are_labelled_and_owned_by_their_service() {
        let svc = service("web", IntOrString::Int(8080));
        let a = serving("a", "10.0.0.2", true);
        let p = plan(&svc, desired(&svc, &[&a]), &[]);
        assert_eq!(p.create.len(), 1);
        let s = &p.create[0];
        let labels = s.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
        let owner = &s.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "uid-web")
        );
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    }

    #[test]
    fn an_unchanged_slice_is_not_written_and_a_changed_one_is_updated_in_place() {
        let svc = service("web", IntOrString::Int(8080));
        let a = serving("a", "10.0.0.2", true);
        let mut existing = plan(&svc, desired(&svc, &[&a]), &[]).create.remove(0);
        existing.metadata.name = Some("web-x1".into());
        let p = plan(&svc, desired(&svc, &[&a]), &[&existing]);
        assert!(p.create.is_empty() && p.update.is_empty() && p.delete.is_empty());
        let b = serving("b", "10.0.0.3", true);
        let p = plan(&svc, desired(&svc, &[&a, &b]), &[&existing]);
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].metadata.name.as_deref(), Some("web-x1"));
        assert_eq!(p.update[0].endpoints.len(), 2);
    }

    #[test]
    fn surplus_slices_are_deleted() {
        let svc = service("web", IntOrString::Int(8080));
        let a = serving("a", "10.0.0.2", true);
        let mut one = plan(&svc, desired(&svc, &[&a]), &[]).create.remove(0);
        one.metadata.name = Some("web-1".into());
        let mut two = one.clone();
        two.metadata.name = Some("web-2".into());
        let p = plan(&svc, desired(&svc, &[&a]), &[&one, &two]);
        assert_eq!(p.delete, ["web-2"]);
    }
}
