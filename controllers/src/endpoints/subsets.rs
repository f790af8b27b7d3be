//! The pure part of the Endpoints controller: which pods back a Service,
//! their ports resolved by `targetPort`, and the Endpoints subsets they
//! make, as Kubernetes' endpoints controller computes them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::podutil::is_ready;

/// The Service's pod selector; `None` for Services without one, which this
/// controller leaves alone.
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether the Service's selector selects `pod` (same namespace assumed).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = service_selector(svc) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
}

/// Whether the pod belongs in the Service's endpoints at all: it has an IP,
/// will run again (not finished for good) and, unless `include_terminating`,
/// is not being deleted.
pub fn should_include(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ip(pod).is_none() {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let restart = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    match restart {
        Some("Never") => !matches!(phase, Some("Succeeded" | "Failed")),
        Some("OnFailure") => phase != Some("Succeeded"),
        _ => true,
    }
}

/// The pod's port for a Service port: `targetPort` as a number, or the
/// container port with that name and protocol; defaults to `port`.
pub fn resolve_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.as_deref().unwrap_or_default())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The pod's hostname for DNS, when its subdomain is the Service's name.
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| host.clone())
}

pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The Endpoints subsets of `svc` over the pods it selects: ready pods in
/// `addresses`, others in `notReadyAddresses`, terminating pods left out
/// (unless `publishNotReadyAddresses`), addresses with the same resolved
/// ports grouped in one subset. Sorted, so equal inputs give equal output.
pub fn subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let publish = publish_not_ready(svc);
    let ports = service_ports(svc);
    // Resolved ports (as a sortable key) -> (ports, ready, not-ready addresses).
    type PortKey = Vec<(String, i32, String)>;
    type Group = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<PortKey, (Vec<EndpointPort>, Group)> = BTreeMap::new();
    for pod in pods {
        if !should_include(pod, publish) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let mut resolved: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|p| {
                Some(EndpointPort {
                    name: p.name.clone(),
                    port: resolve_port(pod, p)?,
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        if resolved.is_empty() && !(ports.is_empty() && is_headless(svc)) {
            // No port of this pod resolves: it cannot serve the Service.
            continue;
        }
        resolved
            .sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
        let key = resolved
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port,
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect();
        let entry = groups
            .entry(key)
            .or_insert_with(|| (resolved, Default::default()));
        if publish || is_ready(pod) {
            entry.1 .0.push(address);
        } else {
            entry.1 .1.push(address);
        }
    }
    groups
        .into_values()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

#[cfg(test)]
pub mod testing {
    //! Builders for Services and serving pods.
    use super::*;
    use crate::podutil::testing::{pod, PodExt};
    use k8s_openapi::api::core::v1::{Container, ContainerPort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub fn service(name: &str, target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    target_port: Some(target),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// A running pod with `ip` on node `n1`, labelled `app=web`, serving
    /// port 8080 named `web`.
    pub fn serving(name: &str, ip: &str, ready: bool) -> Pod {
        let mut p = pod(name).node("n1").phase("Running");
        if ready {
            p = p.ready_at(1);
        }
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.labels = Some(BTreeMap::from([("app".into(), "web".into())]));
        if let Some(s) = p.spec.as_mut() {
            s.containers = vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("web".into()),
                    container_port: 8080,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }];
        }
        if let Some(s) = p.status.as_mut() {
            s.pod_ip = Some(ip.into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::podutil::testing::ts;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ips(a: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        a.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_pods_are_addresses_and_unready_ones_not_ready_addresses() {
        let svc = service("web", IntOrString::Int(8080));
        let (a, b) = (
            serving("a", "10.0.0.2", true),
            serving("b", "10.0.0.1", false),
        );
        let s = subsets(&svc, &[&a, &b]);
        assert_eq!(s.len(), 1);
        assert_eq!(ips(&s[0].addresses), ["10.0.0.2"]);
        assert_eq!(ips(&s[0].not_ready_addresses), ["10.0.0.1"]);
        let addr = &s[0].addresses.as_ref().expect("addresses")[0];
        assert_eq!(addr.node_name.as_deref(), Some("n1"));
        let target = addr.target_ref.as_ref().expect("targetRef");
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert_eq!(target.uid.as_deref(), Some("uid-a"));
    }

    #[test]
    fn a_named_target_port_resolves_to_the_container_port() {
        let svc = service("web", IntOrString::String("web".into()));
        let a = serving("a", "10.0.0.2", true);
        let s = subsets(&svc, &[&a]);
        let port = &s[0].ports.as_ref().expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    }

    #[test]
    fn a_pod_whose_named_port_does_not_resolve_is_left_out() {
        let svc = service("web", IntOrString::String("metrics".into()));
        let a = serving("a", "10.0.0.2", true);
        assert!(subsets(&svc, &[&a]).is_empty());
    }

    #[test]
    fn terminating_and_address_less_pods_are_left_out() {
        let svc = service("web", IntOrString::Int(8080));
        let mut a = serving("a", "10.0.0.2", true);
        a.metadata.deletion_timestamp = Some(Time(ts(5)));
        let mut b = serving("b", "10.0.0.3", true);
        if let Some(s) = b.status.as_mut() {
            s.pod_ip = None;
        }
        assert!(subsets(&svc, &[&a, &b]).is_empty());
    }

    #[test]
    fn finished_pods_that_never_restart_are_left_out() {
        let svc = service("web", IntOrString::Int(8080));
        let mut a = serving("a", "10.0.0.2", false);
        if let Some(s) = a.spec.as_mut() {
            s.restart_policy = Some("Never".into());
        }
        if let Some(s) = a.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        assert!(!should_include(&a, true));
        assert!(subsets(&svc, &[&a]).is_empty());
    }

    #[test]
    fn publish_not_ready_addresses_lists_every_pod_as_ready() {
        let mut svc = service("web", IntOrString::Int(8080));
        if let Some(s) = svc.spec.as_mut() {
            s.publish_not_ready_addresses = Some(true);
        }
        let b = serving("b", "10.0.0.1", false);
        let s = subsets(&svc, &[&b]);
        assert_eq!(ips(&s[0].addresses), ["10.0.0.1"]);
    }

    #[test]
    fn a_service_without_a_selector_selects_nothing() {
        let mut svc = service("web", IntOrString::Int(8080));
        if let Some(s) = svc.spec.as_mut() {
            s.selector = None;
        }
        assert!(!selects(&svc, &serving("a", "10.0.0.2", true)));
        assert!(service_selector(&svc).is_none());
    }
}
