//! What each Service port forwards to, computed from the Service and its
//! EndpointSlices (pure functions), and the choice of a backend.
//!
//! Endpoints are chosen round-robin among the `ready` ones; only when none
//! is ready do `serving` + `terminating` endpoints take traffic (as
//! kube-proxy's terminating-endpoint fallback). Not-ready endpoints never do.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Service annotation choosing its ClusterIP data path: `userspace`
/// (metered: requests and errors counted) or `nftables` (kernel DNAT).
pub const PROXY_MODE_ANNOTATION: &str = "proxy.skiff.io/mode";

/// How a Service's ClusterIP ports are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// Kernel DNAT rules: near the direct path's throughput, fail-static,
    /// but no HTTP request counts.
    #[default]
    Nftables,
    /// This process splices the connections and meters HTTP responses.
    Userspace,
}

impl ProxyMode {
    /// `nftables` or `userspace`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nftables" => Some(Self::Nftables),
            "userspace" => Some(Self::Userspace),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nftables => "nftables",
            Self::Userspace => "userspace",
        }
    }
}

/// One endpoint of one Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub addr: SocketAddr,
    /// The pod behind it (`targetRef`), for per-pod counters.
    pub pod: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// One port of a Service and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortView {
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Backend>,
}

/// A Service as the proxy and DNS see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub namespace: String,
    pub name: String,
    /// `None` for headless Services (and ones not yet allocated).
    pub cluster_ip: Option<Ipv4Addr>,
    pub headless: bool,
    pub ports: Vec<PortView>,
    /// The [`PROXY_MODE_ANNOTATION`], when set to a known mode.
    pub mode: Option<ProxyMode>,
}

impl ServiceView {
    /// Addresses DNS returns for a headless Service: ready endpoints, once each.
    pub fn ready_ips(&self) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = self
            .ports
            .iter()
            .flat_map(|p| p.endpoints.iter())
            .filter(|b| b.ready)
            .filter_map(|b| match b.addr {
                SocketAddr::V4(v4) => Some(*v4.ip()),
                SocketAddr::V6(_) => None,
            })
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }
}

/// The view of `service` given its slices (those labelled with its name).
pub fn service_view(service: &Service, slices: &[&EndpointSlice]) -> Option<ServiceView> {
    let namespace = service.metadata.namespace.clone()?;
    let name = service.metadata.name.clone()?;
    let spec = service.spec.as_ref()?;
    let raw_ip = spec.cluster_ip.as_deref().unwrap_or("");
    let headless = raw_ip == "None";
    let cluster_ip = raw_ip.parse::<Ipv4Addr>().ok();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let port_name = p.name.clone().unwrap_or_default();
            Some(PortView {
                endpoints: endpoints_for(slices, &port_name),
                name: port_name,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                port,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
            })
        })
        .collect();
    let mode = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROXY_MODE_ANNOTATION))
        .and_then(|m| ProxyMode::parse(m));
    Some(ServiceView {
        namespace,
        name,
        cluster_ip,
        headless,
        ports,
        mode,
    })
}

/// Endpoints of the slice port named `port_name`, across `slices`.
fn endpoints_for(slices: &[&EndpointSlice], port_name: &str) -> Vec<Backend> {
    let mut out = Vec::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let conditions = ep.conditions.as_ref();
            // A nil `ready` means ready; `serving` defaults to `ready`.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            for address in &ep.addresses {
                if let Ok(ip) = address.parse::<Ipv4Addr>() {
                    out.push(Backend {
                        addr: SocketAddr::from((ip, port)),
                        pod: pod.clone(),
                        ready,
                        serving,
                        terminating,
                    });
                }
            }
        }
    }
    out.sort_by_key(|b| b.addr);
    out.dedup_by_key(|b| b.addr);
    out
}

/// The endpoints a port forwards to, and the round-robin position.
#[derive(Debug, Default)]
pub struct Backends {
    eligible: Vec<Backend>,
    next: AtomicUsize,
}

impl Backends {
    /// Keeps the ready endpoints, or else the serving terminating ones.
    pub fn new(endpoints: &[Backend]) -> Self {
        let ready: Vec<Backend> = endpoints.iter().filter(|b| b.ready).cloned().collect();
        let eligible = if ready.is_empty() {
            endpoints
                .iter()
                .filter(|b| b.serving && b.terminating)
                .cloned()
                .collect()
        } else {
            ready
        };
        Self {
            eligible,
            next: AtomicUsize::new(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.eligible.is_empty()
    }

    pub fn eligible(&self) -> &[Backend] {
        &self.eligible
    }

    /// Every eligible endpoint once, starting at the next round-robin
    /// one: the first is tried, the rest are fallbacks when it refuses.
    pub fn attempt_order(&self) -> impl Iterator<Item = &Backend> {
        let n = self.eligible.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |i| &self.eligible[(start + i) % n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ObjectReference, ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn backend(last: u8, ready: bool, serving: bool, terminating: bool) -> Backend {
        Backend {
            addr: SocketAddr::from((Ipv4Addr::new(10, 244, 0, last), 8080)),
            pod: Some(format!("p{last}")),
            ready,
            serving,
            terminating,
        }
    }

    #[test]
    fn round_robin_visits_every_ready_endpoint_and_never_a_not_ready_one() {
        let backends = Backends::new(&[
            backend(1, true, true, false),
            backend(2, false, false, false),
            backend(3, true, true, false),
        ]);
        let firsts: Vec<_> = (0..4)
            .map(|_| backends.attempt_order().next().map(|b| b.addr))
            .collect();
        assert_eq!(firsts[0], firsts[2]);
        assert_eq!(firsts[1], firsts[3]);
        assert_ne!(firsts[0], firsts[1]);
        assert!(firsts
            .iter()
            .all(|a| a.map(|a| a.ip().to_string()) != Some("10.244.0.2".to_string())));
    }

    #[test]
    fn the_attempt_order_holds_every_endpoint_once_for_fallback() {
        let backends = Backends::new(&[
            backend(1, true, true, false),
            backend(2, true, true, false),
            backend(3, true, true, false),
        ]);
        let mut order: Vec<_> = backends.attempt_order().map(|b| b.addr).collect();
        order.sort();
        order.dedup();
        assert_eq!(order.len(), 3);
    }

    #[test]
    fn terminating_serving_endpoints_take_traffic_only_when_none_is_ready() {
        let draining = backend(1, false, true, true);
        let gone = backend(2, false, false, true);
        let only_terminating = Backends::new(&[draining.clone(), gone.clone()]);
        assert_eq!(only_terminating.eligible(), std::slice::from_ref(&draining));
        let with_ready = Backends::new(&[draining, gone, backend(3, true, true, false)]);
        assert_eq!(with_ready.eligible().len(), 1);
        assert!(with_ready.eligible()[0].ready);
        assert!(Backends::new(&[]).attempt_order().next().is_none());
    }

    fn service(cluster_ip: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    node_port: Some(30080),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(ready: Option<bool>) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            metadata: ObjectMeta::default(),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                ..Default::default()
            }]),
            endpoints: vec![Endpoint {
                addresses: vec!["10.244.0.5".into()],
                conditions: Some(EndpointConditions {
                    ready,
                    ..Default::default()
                }),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    name: Some("web-1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_service_port_maps_to_the_slice_port_of_the_same_name() {
        let s = slice(None);
        let view = service_view(&service("10.96.0.20"), &[&s]).expect("view");
        assert_eq!(view.cluster_ip, Some(Ipv4Addr::new(10, 96, 0, 20)));
        let port = &view.ports[0];
        assert_eq!((port.port, port.node_port), (80, Some(30080)));
        assert_eq!(port.protocol, "TCP");
        assert_eq!(port.endpoints.len(), 1);
        assert_eq!(port.endpoints[0].addr.to_string(), "10.244.0.5:8080");
        assert_eq!(port.endpoints[0].pod.as_deref(), Some("web-1"));
        assert!(port.endpoints[0].ready, "nil ready means ready");
    }

    #[test]
    fn a_headless_service_resolves_to_its_ready_endpoint_ips() {
        let ready = slice(Some(true));
        let mut not_ready = slice(Some(false));
        not_ready.endpoints[0].addresses = vec!["10.244.0.6".into()];
        let view = service_view(&service("None"), &[&ready, &not_ready]).expect("view");
        assert!(view.headless);
        assert_eq!(view.cluster_ip, None);
        assert_eq!(view.ready_ips(), vec![Ipv4Addr::new(10, 244, 0, 5)]);
    }
}
