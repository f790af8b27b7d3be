//! Starts the Service proxy and cluster DNS (the `proxy` crate) of a
//! process that runs real nodes, and ensures the `kube-system/kube-dns`
//! Service that reserves the cluster DNS IP.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};

/// What `skiff up` / `skiff agent` ask of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub service_cidr: proxy::Ipv4Cidr,
    /// `--cluster-dns`, or the service network + 10.
    pub cluster_dns: Option<Ipv4Addr>,
    pub cluster_domain: String,
    /// `--proxy-mode`.
    pub mode: proxy::ProxyMode,
    /// The API server as this process reaches it: where the
    /// `default/kubernetes` Service's ClusterIP leads.
    pub api_server: Option<std::net::SocketAddr>,
}

impl ProxyOptions {
    pub fn config(&self) -> proxy::Config {
        let mut config = proxy::Config::new(self.service_cidr);
        if let Some(ip) = self.cluster_dns {
            config.cluster_dns_ip = ip;
        }
        config.cluster_domain = self.cluster_domain.clone();
        config.mode = self.mode;
        config.api_server = self.api_server;
        config
    }
}

/// The proxy's per-pod counters as the node agent reads them (the proxy
/// crate does not depend on the kubelet crate).
#[derive(Debug, Clone)]
pub struct AgentCounters(pub proxy::Counters);

impl kubelet::RequestCounters for AgentCounters {
    fn snapshot(&self) -> Vec<kubelet::PodRequestCount> {
        self.0
            .snapshot_pods()
            .into_iter()
            .map(|p| kubelet::PodRequestCount {
                namespace: p.namespace,
                pod: p.pod,
                requests: p.requests,
                errors: p.errors,
            })
            .collect()
    }
}

/// A running proxy: its task and its request counters.
pub struct RunningProxy {
    pub task: tokio::task::JoinHandle<()>,
    pub counters: proxy::Counters,
    pub interface_name: String,
    pub nft_table: String,
}

impl RunningProxy {
    /// Stops the proxy and removes its interface and kernel rules.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Err(e) = proxy::cleanup(&self.interface_name, &self.nft_table).await {
            tracing::warn!(error = %e, "cannot remove the service interface");
        }
    }
}

/// Starts the proxy against the API.
pub async fn start(kubeconfig: &Path, opts: &ProxyOptions) -> Result<RunningProxy> {
    let client = crate::components::client_from_kubeconfig(kubeconfig).await?;
    let config = opts.config();
    let counters = config.counters.clone();
    let interface_name = config.interface_name.clone();
    let nft_table = config.nft_table.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = proxy::run(client, config).await {
            tracing::error!(error = %e, "the service proxy stopped");
            eprintln!("skiff: the service proxy stopped: {e}");
        }
    });
    Ok(RunningProxy {
        task,
        counters,
        interface_name,
        nft_table,
    })
}

/// The proxy's Service metrics as Prometheus text (for another `/metrics`).
pub fn metrics_text(counters: &proxy::Counters) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    counters.register(&mut registry);
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

/// The `kube-system/kube-dns` Service: selectorless, holding `dns_ip`, so
/// the ClusterIP allocator never hands that address out.
fn dns_service(dns_ip: Ipv4Addr) -> Result<Service> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "clusterIP": dns_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }))
    .context("building the kube-dns Service")
}

/// The port of the `default/kubernetes` Service (`https`), as in Kubernetes.
pub const KUBERNETES_SERVICE_PORT: u16 = 443;

/// The `default/kubernetes` Service: selectorless, on the service range's
/// first address, port 443 (`https`) to the API server's `port`, as
/// kube-apiserver keeps it. Node proxies carry it to the API server.
fn kubernetes_service(ip: Ipv4Addr, port: u16) -> Result<Service> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "clusterIP": ip.to_string(),
            "ports": [{
                "name": "https",
                "port": KUBERNETES_SERVICE_PORT,
                "protocol": "TCP",
                "targetPort": port,
            }],
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
    }))
    .context("building the kubernetes Service")
}

/// Creates the cluster's own Services when absent (existing ones are
/// kept): `kube-system/kube-dns` on `dns_ip` and `default/kubernetes` on
/// `api_ip`, leading to the API server's `api_port`.
pub async fn ensure_cluster_services(
    kubeconfig: &Path,
    dns_ip: Ipv4Addr,
    api_ip: Ipv4Addr,
    api_port: u16,
) -> Result<()> {
    let client = crate::components::client_from_kubeconfig(kubeconfig).await?;
    ensure_service(&client, dns_service(dns_ip)?).await?;
    ensure_service(&client, kubernetes_service(api_ip, api_port)?).await
}

async fn ensure_service(client: &kube::Client, service: Service) -> Result<()> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    if api
        .get_opt(&name)
        .await
        .with_context(|| format!("cannot read {namespace}/{name}"))?
        .is_some()
    {
        return Ok(());
    }
    match api.create(&PostParams::default(), &service).await {
        Ok(_) => Ok(()),
        // Another server created it meanwhile.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| {
            let ip = service.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
            format!("cannot create {namespace}/{name} with clusterIP {ip}")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_service_is_selectorless_with_udp_and_tcp_port_53() {
        let s = dns_service(Ipv4Addr::new(10, 96, 0, 10)).expect("service");
        let spec = s.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert!(spec.selector.is_none());
        let ports = spec.ports.expect("ports");
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].protocol.as_deref(), Some("UDP"));
        assert_eq!(ports[1].name.as_deref(), Some("dns-tcp"));
    }

    #[test]
    fn the_kubernetes_service_is_selectorless_https_to_the_api_port() {
        let s = kubernetes_service(Ipv4Addr::new(10, 96, 0, 1), 6443).expect("service");
        assert_eq!(s.metadata.namespace.as_deref(), Some("default"));
        let spec = s.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
        assert!(spec.selector.is_none());
        let ports = spec.ports.expect("ports");
        assert_eq!(ports[0].name.as_deref(), Some("https"));
        assert_eq!(ports[0].port, 443);
        assert_eq!(
            ports[0].target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(6443))
        );
    }

    #[test]
    fn cluster_dns_defaults_to_the_service_network_plus_ten() {
        let opts = ProxyOptions {
            service_cidr: proxy::Ipv4Cidr::parse("10.100.0.0/16").expect("cidr"),
            cluster_dns: None,
            cluster_domain: "cluster.local".into(),
            mode: proxy::ProxyMode::Nftables,
            api_server: None,
        };
        assert_eq!(opts.config().cluster_dns_ip, Ipv4Addr::new(10, 100, 0, 10));
    }
}
