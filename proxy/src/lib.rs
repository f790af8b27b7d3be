//! The Service data path of a node: ClusterIPs as kernel DNAT rules
//! (nftables) or through a metering userspace L4 proxy, NodePorts through
//! the userspace proxy, and the cluster DNS server.
//!
//! Owns: the `skiff-svc` interface holding every ClusterIP as a /32 (and
//! the cluster DNS IP), the nftables table [`Config::nft_table`] (see
//! [`nft`]), one TCP listener per metered ClusterIP:port and per nodePort,
//! load balancing over ready endpoints (watched Services and
//! EndpointSlices), per-Service and per-pod request counters metered from
//! HTTP/1.x responses, and the DNS answers for `<svc>.<ns>.svc.<domain>`.
//!
//! Which path a ClusterIP takes: [`Config::mode`] (default nftables),
//! overridden per Service by the `proxy.skiff.io/mode` annotation
//! (`userspace` for Services whose requests and errors must be counted,
//! e.g. for an autoscaler on `requests_per_second`). When `nft` cannot be
//! run, every Service falls back to the userspace proxy.
//!
//! Must not depend on: the `apiserver` crate (the API is reached only
//! through kube-rs), nor the `kubelet` crate (the binary adapts
//! [`Counters`] to the agent's request-counter trait). It never forwards
//! DNS queries outside the cluster domain, and only touches the interface
//! named in [`Config::interface_name`].
//!
//! UDP Service ports are carried by the kernel path only; the userspace
//! proxy speaks TCP.

pub mod counters;
pub mod dns;
pub mod endpoints;
mod forward;
mod iface;
pub mod meter;
pub mod nft;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;

pub use counters::{Counters, PodCount};

pub use endpoints::{ProxyMode, PROXY_MODE_ANNOTATION};

use endpoints::{Backend, Backends, ServiceView, SERVICE_NAME_LABEL};
use forward::{ConnContext, Route};

/// Errors of the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `ip` could not be run.
    #[error("running {program}: {source}")]
    Exec {
        program: String,
        source: std::io::Error,
    },
    /// An `ip` command changing the service interface failed.
    #[error("{command} failed: {stderr}")]
    Interface { command: String, stderr: String },
    /// The DNS server could not bind its address.
    #[error("cannot serve cluster DNS on {addr}: {source}")]
    DnsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// `nft` rejected a ruleset or a command.
    #[error("nft failed: {stderr}")]
    Nft { stderr: String },
    /// A watch stream ended (it never should: it retries with backoff).
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// An IPv4 CIDR such as `10.96.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/n`; the host bits are cleared.
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let network = Ipv4Addr::from(u32::from(addr) & Self::mask(prefix));
        Some(Self { network, prefix })
    }

    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.network)
    }

    /// The network address plus `offset` (`+10` is the cluster DNS IP).
    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(offset))
    }
}

/// The interface [`Config::new`] names.
pub const DEFAULT_INTERFACE: &str = "skiff-svc";

/// The nftables table [`Config::new`] names.
pub const DEFAULT_NFT_TABLE: &str = "skiff-proxy";

/// The proxy's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// ClusterIPs outside this range are ignored.
    pub service_cidr: Ipv4Cidr,
    /// Where the DNS server listens (UDP and TCP port 53).
    pub cluster_dns_ip: Ipv4Addr,
    /// The cluster domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The link holding the ClusterIPs (created, and removed by [`cleanup`]).
    pub interface_name: String,
    /// The data path of ClusterIPs whose Service has no mode annotation.
    pub mode: ProxyMode,
    /// The nftables table of the kernel path (replaced whole, and removed
    /// by [`cleanup`]).
    pub nft_table: String,
    /// Masquerade every pod's kernel-path Service connection, not only
    /// hairpin ones (set when bridged traffic cannot pass netfilter).
    pub masquerade_pods: bool,
    /// The address nodePorts listen on (`0.0.0.0`: every node address,
    /// loopback included).
    pub node_port_bind: IpAddr,
    /// How long a backend may take to accept before the next is tried.
    pub connect_timeout: Duration,
    /// How often listeners that failed to bind are retried.
    pub resync_period: Duration,
    /// The Service this proxy must not proxy (the DNS server owns its IP).
    pub dns_service: (String, String),
    /// Where request counts go (shared with the caller).
    pub counters: Counters,
    /// The API server as this node reaches it. When set, the
    /// `default/kubernetes` Service is carried by the userspace proxy to this
    /// address, whatever its endpoints say: the API server may listen on
    /// loopback only, which the kernel path cannot DNAT pods to (k3s's
    /// agents proxy it the same way).
    pub api_server: Option<SocketAddr>,
}

impl Config {
    /// Defaults for `service_cidr`: DNS at network + 10, `cluster.local`,
    /// interface `skiff-svc`, nodePorts on `0.0.0.0`.
    pub fn new(service_cidr: Ipv4Cidr) -> Self {
        Self {
            service_cidr,
            cluster_dns_ip: service_cidr.nth(10),
            cluster_domain: "cluster.local".to_string(),
            interface_name: DEFAULT_INTERFACE.to_string(),
            mode: ProxyMode::Nftables,
            nft_table: DEFAULT_NFT_TABLE.to_string(),
            masquerade_pods: false,
            node_port_bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            connect_timeout: Duration::from_secs(1),
            resync_period: Duration::from_secs(5),
            dns_service: ("kube-system".to_string(), "kube-dns".to_string()),
            counters: Counters::new(),
            api_server: None,
        }
    }
}

/// The Service every pod reaches the API server through.
pub const KUBERNETES_SERVICE: (&str, &str) = ("default", "kubernetes");

/// Removes the service interface and the kernel rules (for `skiff down`
/// and shutdown).
pub async fn cleanup(interface_name: &str, nft_table: &str) -> Result<(), ProxyError> {
    let rules = nft::remove(nft_table).await;
    iface::remove(interface_name).await?;
    match rules {
        // No `nft` on the machine: there were no rules either.
        Err(ProxyError::Exec { .. }) => Ok(()),
        other => other,
    }
}

/// Runs the proxy and the DNS server until the task is dropped.
pub async fn run(client: kube::Client, mut config: Config) -> Result<(), ProxyError> {
    iface::ensure(&config.interface_name).await?;
    // The kernel path starts empty (a previous run's rules are replaced at
    // the first reconcile, not before: pods stay reachable meanwhile). A
    // machine where `nft` cannot run gets the userspace proxy throughout.
    let kernel = match nft::apply(&format!("table ip {}\n", config.nft_table)).await {
        Ok(()) => {
            config.masquerade_pods = !nft::enable_bridge_netfilter();
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "nftables unavailable: every ClusterIP goes through the userspace proxy");
            config.mode = ProxyMode::Userspace;
            false
        }
    };
    let dns_ip = config.cluster_dns_ip;
    iface::update(
        &config.interface_name,
        &BTreeSet::from([dns_ip]),
        &BTreeSet::new(),
    )
    .await?;
    let dns_addr = SocketAddr::from((dns_ip, 53));
    let (udp, tcp) = dns::bind(dns_addr)
        .await
        .map_err(|source| ProxyError::DnsBind {
            addr: dns_addr,
            source,
        })?;
    let zone = dns::Zone::new(dns::Records::build(&config.cluster_domain, &[]));
    let dns_task = tokio::spawn(dns::serve(udp, tcp, zone.clone()));
    let _dns_guard = AbortOnDrop(dns_task);

    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector(
        services_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|e| e.map(|e| (true, matches!(e, watcher::Event::InitDone))));
    let slice_events = reflector(
        slices_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|e| e.map(|e| (false, matches!(e, watcher::Event::InitDone))));
    let mut events = futures::stream::select(service_events.boxed(), slice_events.boxed());

    let mut state = State::new(config, zone, kernel);
    let mut services_listed = false;
    let mut slices_listed = false;
    let mut resync = tokio::time::interval(state.config.resync_period);
    loop {
        tokio::select! {
            event = events.next() => {
                let mut handle = |event| match event {
                    Some(Ok((is_service, init_done))) => {
                        if init_done && is_service { services_listed = true; }
                        if init_done && !is_service { slices_listed = true; }
                        Ok(())
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "service proxy watch failed; retrying");
                        Ok(())
                    }
                    None => Err(ProxyError::WatchEnded("Service/EndpointSlice")),
                };
                handle(event)?;
                // Coalesce a burst of events into one reconcile.
                while let Some(event) = events.next().now_or_never() {
                    handle(event)?;
                }
            }
            _ = resync.tick() => {}
        }
        if services_listed && slices_listed {
            state.reconcile(&services.state(), &slices.state()).await;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A bound address and what it forwards to.
struct Listening {
    key: (String, String),
    route: Arc<Route>,
    /// Dropping it stops the accept loop (open connections go on).
    _task: AbortOnDrop,
}

/// What one address should forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Desired {
    key: (String, String),
    endpoints: Vec<Backend>,
}

struct State {
    config: Config,
    zone: dns::Zone,
    ctx: ConnContext,
    listeners: HashMap<SocketAddr, Listening>,
    addresses: BTreeSet<Ipv4Addr>,
    /// Whether `nft` works here.
    kernel: bool,
    /// The last ruleset `nft` accepted (re-applied only when it changes).
    applied_rules: Option<String>,
    /// The ports that ruleset carries.
    applied_ports: Vec<nft::KernelPort>,
}

impl State {
    fn new(config: Config, zone: dns::Zone, kernel: bool) -> Self {
        let ctx = ConnContext {
            counters: config.counters.clone(),
            connect_timeout: config.connect_timeout,
        };
        let addresses = BTreeSet::from([config.cluster_dns_ip]);
        Self {
            config,
            zone,
            ctx,
            listeners: HashMap::new(),
            addresses,
            kernel,
            applied_rules: None,
            applied_ports: Vec::new(),
        }
    }

    async fn reconcile(&mut self, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) {
        let mut views = views(services, slices);
        if let Some(api_server) = self.config.api_server {
            route_to_api_server(&mut views, api_server);
        }
        self.zone
            .replace(dns::Records::build(&self.config.cluster_domain, &views));
        let desired = desired_listeners(&self.config, &views);
        let kernel_ports = if self.kernel {
            kernel_ports(&self.config, &views)
        } else {
            Vec::new()
        };

        let mut wanted_ips: BTreeSet<Ipv4Addr> = desired
            .keys()
            .filter_map(|a| match a.ip() {
                IpAddr::V4(ip) if self.config.service_cidr.contains(ip) => Some(ip),
                _ => None,
            })
            .chain(kernel_cluster_ips(&self.config, &views))
            .collect();
        wanted_ips.insert(self.config.cluster_dns_ip);
        let add: BTreeSet<_> = wanted_ips.difference(&self.addresses).copied().collect();
        if let Err(e) = iface::update(&self.config.interface_name, &add, &BTreeSet::new()).await {
            tracing::warn!(error = %e, "cannot add ClusterIPs to the service interface");
        }

        if self.kernel {
            let script = nft::render(
                &self.config.nft_table,
                self.config.service_cidr,
                &kernel_ports,
                self.config.masquerade_pods,
            );
            if self.applied_rules.as_deref() != Some(script.as_str()) {
                match nft::apply(&script).await {
                    Ok(()) => {
                        tracing::debug!(ports = kernel_ports.len(), "kernel service rules applied");
                        for p in nft::stale_udp(&self.applied_ports, &kernel_ports) {
                            if let Err(e) = nft::flush_udp(p.cluster_ip, p.port).await {
                                tracing::warn!(service = %p.comment, error = %e, "cannot flush stale UDP conntrack entries");
                            }
                        }
                        self.applied_rules = Some(script);
                        self.applied_ports = kernel_ports;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot apply the kernel service rules; retrying at the next resync");
                        self.applied_rules = None;
                    }
                }
            }
        }

        // Every pod a metering route may reach is reported from now on (at
        // zero until its first request); pods only the kernel path reaches
        // are not, so their request metrics read as missing, not zero.
        for want in desired.values() {
            for pod in want.endpoints.iter().filter_map(|b| b.pod.as_deref()) {
                self.config.counters.pod(&want.key.0, pod);
            }
        }

        // Stale or re-assigned listeners stop accepting (open connections drain).
        self.listeners
            .retain(|addr, l| desired.get(addr).is_some_and(|d| d.key == l.key));
        for (addr, want) in &desired {
            let backends = Backends::new(&want.endpoints);
            if let Some(existing) = self.listeners.get(addr) {
                existing.route.set_backends(backends);
                continue;
            }
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    let route = Arc::new(Route::new(
                        &want.key.0,
                        &want.key.1,
                        backends,
                        &self.config.counters,
                    ));
                    let task = tokio::spawn(forward::accept_loop(
                        listener,
                        route.clone(),
                        self.ctx.clone(),
                    ));
                    tracing::info!(namespace = %want.key.0, service = %want.key.1, %addr, "proxying");
                    self.listeners.insert(
                        *addr,
                        Listening {
                            key: want.key.clone(),
                            route,
                            _task: AbortOnDrop(task),
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(namespace = %want.key.0, service = %want.key.1, %addr, error = %e, "cannot listen; retrying at the next resync");
                }
            }
        }

        let remove: BTreeSet<_> = self
            .addresses
            .union(&add)
            .filter(|ip| !wanted_ips.contains(ip))
            .copied()
            .collect();
        if let Err(e) = iface::update(&self.config.interface_name, &BTreeSet::new(), &remove).await
        {
            tracing::warn!(error = %e, "cannot remove ClusterIPs from the service interface");
        }
        self.addresses = wanted_ips;
    }
}

/// Every Service's view, with the slices labelled for it.
fn views(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Vec<ServiceView> {
    let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let (Some(ns), Some(name)) = (
            slice.metadata.namespace.clone(),
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .cloned(),
        ) else {
            continue;
        };
        by_service.entry((ns, name)).or_default().push(slice);
    }
    services
        .iter()
        .filter_map(|s| {
            let key = (
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default(),
            );
            let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            endpoints::service_view(s, slices)
        })
        .collect()
}

/// Points the `default/kubernetes` Service's ports at `api_server`, on the
/// userspace path.
fn route_to_api_server(views: &mut [ServiceView], api_server: SocketAddr) {
    for view in views
        .iter_mut()
        .filter(|v| (v.namespace.as_str(), v.name.as_str()) == KUBERNETES_SERVICE)
    {
        view.mode = Some(ProxyMode::Userspace);
        for port in &mut view.ports {
            port.endpoints = vec![Backend {
                addr: api_server,
                pod: None,
                ready: true,
                serving: true,
                terminating: false,
            }];
        }
    }
}

/// The data path of `view`'s ClusterIP.
fn mode_of(config: &Config, view: &ServiceView) -> ProxyMode {
    view.mode.unwrap_or(config.mode)
}

fn is_dns(config: &Config, view: &ServiceView) -> bool {
    config.dns_service.0 == view.namespace && config.dns_service.1 == view.name
}

/// The ClusterIP (in the service CIDR) of `view`, unless it is the DNS
/// Service's.
fn proxied_cluster_ip(config: &Config, view: &ServiceView) -> Option<Ipv4Addr> {
    view.cluster_ip
        .filter(|ip| config.service_cidr.contains(*ip) && !is_dns(config, view))
}

/// ClusterIPs of kernel-path Services (held on the interface whether or
/// not they have endpoints, so a connect is refused, not routed away).
fn kernel_cluster_ips<'a>(
    config: &'a Config,
    views: &'a [ServiceView],
) -> impl Iterator<Item = Ipv4Addr> + 'a {
    views
        .iter()
        .filter(|v| mode_of(config, v) == ProxyMode::Nftables)
        .filter_map(|v| proxied_cluster_ip(config, v))
}

/// The kernel rules `views` call for: every TCP and UDP port of a
/// kernel-path ClusterIP that has an eligible endpoint (ready ones, or
/// else serving terminating ones, as the userspace proxy chooses).
fn kernel_ports(config: &Config, views: &[ServiceView]) -> Vec<nft::KernelPort> {
    let mut out = Vec::new();
    for view in views
        .iter()
        .filter(|v| mode_of(config, v) == ProxyMode::Nftables)
    {
        let Some(ip) = proxied_cluster_ip(config, view) else {
            continue;
        };
        for port in &view.ports {
            let protocol = match port.protocol.as_str() {
                "TCP" => "tcp",
                "UDP" => "udp",
                _ => continue,
            };
            let endpoints: Vec<SocketAddr> = Backends::new(&port.endpoints)
                .eligible()
                .iter()
                .map(|b| b.addr)
                .collect();
            if endpoints.is_empty() {
                continue;
            }
            out.push(nft::KernelPort {
                comment: format!(
                    "{}/{}:{}/{}",
                    view.namespace, view.name, port.port, port.protocol
                ),
                cluster_ip: ip,
                protocol,
                port: port.port,
                endpoints,
            });
        }
    }
    out
}

/// The listeners `views` call for: every TCP port on a userspace-path
/// ClusterIP (in the service CIDR) and every nodePort, except the DNS
/// Service's.
fn desired_listeners(config: &Config, views: &[ServiceView]) -> BTreeMap<SocketAddr, Desired> {
    let mut out = BTreeMap::new();
    for view in views {
        let key = (view.namespace.clone(), view.name.clone());
        if key == config.dns_service {
            continue;
        }
        let userspace_ip = proxied_cluster_ip(config, view)
            .filter(|_| mode_of(config, view) == ProxyMode::Userspace);
        for port in view.ports.iter().filter(|p| p.protocol == "TCP") {
            let want = Desired {
                key: key.clone(),
                endpoints: port.endpoints.clone(),
            };
            if let Some(ip) = userspace_ip {
                out.insert(SocketAddr::from((ip, port.port)), want.clone());
            }
            if let Some(node_port) = port.node_port {
                out.insert(SocketAddr::new(config.node_port_bind, node_port), want);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use endpoints::PortView;

    fn config() -> Config {
        Config::new(Ipv4Cidr::parse("10.96.0.0/16").expect("cidr"))
    }

    fn view(ns: &str, name: &str, ip: &str, protocol: &str, node_port: Option<u16>) -> ServiceView {
        ServiceView {
            mode: None,
            namespace: ns.into(),
            name: name.into(),
            cluster_ip: ip.parse().ok(),
            headless: ip == "None",
            ports: vec![PortView {
                name: String::new(),
                protocol: protocol.into(),
                port: 80,
                node_port,
                endpoints: Vec::new(),
            }],
        }
    }

    #[test]
    fn the_default_dns_ip_is_the_service_network_plus_ten() {
        let c = config();
        assert_eq!(c.cluster_dns_ip, Ipv4Addr::new(10, 96, 0, 10));
        assert!(c.service_cidr.contains(Ipv4Addr::new(10, 96, 255, 1)));
        assert!(!c.service_cidr.contains(Ipv4Addr::new(10, 97, 0, 1)));
    }

    #[test]
    fn cluster_ip_and_node_port_listeners_skip_dns_udp_headless_and_foreign_ips() {
        let views = [
            view("default", "web", "10.96.0.20", "TCP", Some(30080)),
            view("kube-system", "kube-dns", "10.96.0.10", "TCP", None),
            view("default", "udp", "10.96.0.21", "UDP", None),
            view("default", "headless", "None", "TCP", None),
            view("default", "foreign", "192.168.0.1", "TCP", None),
        ];
        let mut userspace = config();
        userspace.mode = ProxyMode::Userspace;
        let desired = desired_listeners(&userspace, &views);
        let addrs: Vec<String> = desired.keys().map(ToString::to_string).collect();
        assert_eq!(addrs, vec!["0.0.0.0:30080", "10.96.0.20:80"]);
    }

    fn backend(addr: &str, ready: bool) -> Backend {
        Backend {
            addr: addr.parse().expect("addr"),
            pod: None,
            ready,
            serving: ready,
            terminating: false,
        }
    }

    #[test]
    fn by_default_cluster_ips_go_to_the_kernel_and_only_node_ports_are_listened_on() {
        let mut web = view("default", "web", "10.96.0.20", "TCP", Some(30080));
        web.ports[0].endpoints = vec![
            backend("10.42.0.5:8080", true),
            backend("10.42.0.6:8080", false),
        ];
        let mut udp = view("default", "udp", "10.96.0.21", "UDP", None);
        udp.ports[0].endpoints = vec![backend("10.42.0.7:5353", true)];
        let empty = view("default", "empty", "10.96.0.22", "TCP", None);
        let dns = view("kube-system", "kube-dns", "10.96.0.10", "UDP", None);
        let views = [web, udp, empty, dns];

        let addrs: Vec<String> = desired_listeners(&config(), &views)
            .keys()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addrs, vec!["0.0.0.0:30080"]);

        let ports = kernel_ports(&config(), &views);
        let summary: Vec<(String, Vec<SocketAddr>)> = ports
            .iter()
            .map(|p| (p.comment.clone(), p.endpoints.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "default/web:80/TCP".to_string(),
                    vec!["10.42.0.5:8080".parse().expect("addr")]
                ),
                (
                    "default/udp:80/UDP".to_string(),
                    vec!["10.42.0.7:5353".parse().expect("addr")]
                ),
            ],
            "not-ready endpoints, endpoint-less ports and the DNS Service get no rule"
        );
        let ips: Vec<Ipv4Addr> = kernel_cluster_ips(&config(), &views).collect();
        assert_eq!(
            ips.len(),
            3,
            "{ips:?}: the endpoint-less ClusterIP is held too"
        );
    }

    #[test]
    fn the_kubernetes_service_is_proxied_to_the_api_server_whatever_its_endpoints() {
        let mut api = view("default", "kubernetes", "10.96.0.1", "TCP", None);
        api.ports[0].port = 443;
        api.ports[0].endpoints = vec![backend("192.0.2.9:6443", true)];
        let other = view("team", "kubernetes", "10.96.0.2", "TCP", None);
        let mut views = vec![api, other];
        let api_server: SocketAddr = "127.0.0.1:6443".parse().expect("addr");
        route_to_api_server(&mut views, api_server);
        let mut config = config();
        config.api_server = Some(api_server);
        assert_eq!(
            kernel_ports(&config, &views)
                .iter()
                .map(|p| p.cluster_ip.to_string())
                .collect::<Vec<_>>(),
            Vec::<String>::new(),
            "only Services with endpoints get kernel rules, and the API's is userspace"
        );
        let desired = desired_listeners(&config, &views);
        let api_listener = desired
            .get(&"10.96.0.1:443".parse().expect("addr"))
            .expect("the API Service is listened on");
        let backends: Vec<SocketAddr> = api_listener.endpoints.iter().map(|b| b.addr).collect();
        assert_eq!(backends, vec![api_server]);
        assert_eq!(
            views[1].mode, None,
            "a same-named Service elsewhere is untouched"
        );
    }

    #[test]
    fn the_mode_annotation_moves_one_service_to_the_metered_userspace_path() {
        let mut metered = view("default", "metered", "10.96.0.30", "TCP", None);
        metered.mode = Some(ProxyMode::Userspace);
        metered.ports[0].endpoints = vec![backend("10.42.0.5:8080", true)];
        let views = [metered];
        assert!(kernel_ports(&config(), &views).is_empty());
        let addrs: Vec<String> = desired_listeners(&config(), &views)
            .keys()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addrs, vec!["10.96.0.30:80"]);
    }
}
