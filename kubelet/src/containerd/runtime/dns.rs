//! A pod's `/etc/resolv.conf`, as the kubelet's DNS configurer writes it
//! from `dnsPolicy`, `dnsConfig`, the node's cluster DNS and the host's
//! resolv.conf:
//!
//! - `ClusterFirst` (the default): `nameserver <cluster DNS>`, `search
//!   <ns>.svc.<domain> svc.<domain> <domain>` followed by the host's
//!   searches, `options ndots:5`. Without a cluster DNS, and for
//!   `hostNetwork` pods, it falls back to `Default`.
//! - `ClusterFirstWithHostNet`: as `ClusterFirst`, also for `hostNetwork`.
//! - `Default`: the host's nameservers, searches and options.
//! - `None`: nothing but `dnsConfig`.
//!
//! `dnsConfig` is then merged: nameservers and searches appended without
//! duplicates, options overriding same-named ones. At most 3 nameservers
//! and 32 search domains (2048 characters) are kept, as in Kubernetes.

use k8s_openapi::api::core::v1::Pod;

/// Kubernetes' `MaxDNSNameservers`.
const MAX_NAMESERVERS: usize = 3;
/// Kubernetes' `MaxDNSSearchPaths`.
const MAX_SEARCHES: usize = 32;
/// Kubernetes' `MaxDNSSearchListChars`.
const MAX_SEARCH_CHARS: usize = 2048;

/// The parts of a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, in order.
    pub nameservers: Vec<String>,
    /// The `search` list.
    pub searches: Vec<String>,
    /// `options` (`ndots:5`, `edns0`...).
    pub options: Vec<String>,
}

/// The cluster's DNS settings (kubelet `--cluster-dns`, `--cluster-domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The cluster DNS server; `None` makes `ClusterFirst` act as `Default`.
    pub server: Option<String>,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
}

impl ResolvConf {
    /// Parses a resolv.conf (`domain` lines count as searches; the last
    /// `search`/`domain` line wins, as in glibc).
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => conf.nameservers.extend(fields.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    conf.searches = fields.map(str::to_string).collect();
                }
                Some("options") => conf.options.extend(fields.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

fn option_name(option: &str) -> &str {
    option.split(':').next().unwrap_or(option)
}

/// The resolv.conf of `pod` on a node whose own file is `host`.
pub fn pod_resolv_conf(pod: &Pod, host: &ResolvConf, cluster: &ClusterDns) -> ResolvConf {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut conf = match (policy, cluster_first, &cluster.server) {
        ("None", _, _) => ResolvConf::default(),
        (_, true, Some(server)) => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let domain = &cluster.domain;
            let mut searches = vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.clone(),
            ];
            push_unique(&mut searches, host.searches.iter().cloned());
            ResolvConf {
                nameservers: vec![server.clone()],
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
        _ => host.clone(),
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        push_unique(
            &mut conf.nameservers,
            extra.nameservers.clone().unwrap_or_default(),
        );
        push_unique(
            &mut conf.searches,
            extra.searches.clone().unwrap_or_default(),
        );
        for option in extra.options.iter().flatten() {
            let Some(name) = option.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let rendered = match option.value.as_deref() {
                Some(value) => format!("{name}:{value}"),
                None => name.to_string(),
            };
            match conf.options.iter_mut().find(|o| option_name(o) == name) {
                Some(existing) => *existing = rendered,
                None => conf.options.push(rendered),
            }
        }
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    while conf.searches.join(" ").len() > MAX_SEARCH_CHARS {
        conf.searches.pop();
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};

    const HOST: &str = "# host\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example\noptions edns0 ndots:2\n";

    fn cluster() -> ClusterDns {
        ClusterDns {
            server: Some("10.96.0.10".to_string()),
            domain: "cluster.local".to_string(),
        }
    }

    fn pod(policy: Option<&str>, config: Option<PodDNSConfig>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("shop".to_string());
        pod.spec = Some(PodSpec {
            dns_policy: policy.map(str::to_string),
            dns_config: config,
            ..Default::default()
        });
        pod
    }

    fn render(pod: &Pod, cluster: &ClusterDns) -> String {
        pod_resolv_conf(pod, &ResolvConf::parse(HOST), cluster).render()
    }

    #[test]
    fn cluster_first_points_at_the_cluster_dns_with_namespace_searches_and_ndots_5() {
        assert_eq!(
            render(&pod(None, None), &cluster()),
            "nameserver 10.96.0.10\n\
             search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn cluster_first_without_a_cluster_dns_or_on_the_host_network_uses_the_host_file() {
        let no_dns = ClusterDns {
            server: None,
            ..cluster()
        };
        let host = "nameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example\noptions edns0 ndots:2\n";
        assert_eq!(render(&pod(Some("ClusterFirst"), None), &no_dns), host);
        let mut host_net = pod(None, None);
        if let Some(spec) = host_net.spec.as_mut() {
            spec.host_network = Some(true);
        }
        assert_eq!(render(&host_net, &cluster()), host);
        if let Some(spec) = host_net.spec.as_mut() {
            spec.dns_policy = Some("ClusterFirstWithHostNet".to_string());
        }
        assert!(render(&host_net, &cluster()).starts_with("nameserver 10.96.0.10\n"));
    }

    #[test]
    fn default_keeps_the_host_file() {
        assert_eq!(
            render(&pod(Some("Default"), None), &cluster()),
            "nameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example\noptions edns0 ndots:2\n"
        );
    }

    #[test]
    fn none_uses_only_the_dns_config() {
        let config = PodDNSConfig {
            nameservers: Some(vec!["1.2.3.4".to_string()]),
            searches: Some(vec!["ns1.svc.cluster-domain.example".to_string()]),
            options: Some(vec![PodDNSConfigOption {
                name: Some("ndots".to_string()),
                value: Some("2".to_string()),
            }]),
        };
        assert_eq!(
            render(&pod(Some("None"), Some(config)), &cluster()),
            "nameserver 1.2.3.4\nsearch ns1.svc.cluster-domain.example\noptions ndots:2\n"
        );
        assert_eq!(render(&pod(Some("None"), None), &cluster()), "");
    }

    #[test]
    fn dns_config_is_merged_without_duplicates_and_overrides_options_by_name() {
        let config = PodDNSConfig {
            nameservers: Some(vec!["10.96.0.10".to_string(), "8.8.8.8".to_string()]),
            searches: Some(vec![
                "svc.cluster.local".to_string(),
                "extra.example".to_string(),
            ]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".to_string()),
                    value: Some("1".to_string()),
                },
                PodDNSConfigOption {
                    name: Some("single-request-reopen".to_string()),
                    value: None,
                },
            ]),
        };
        assert_eq!(
            render(&pod(None, Some(config)), &cluster()),
            "nameserver 10.96.0.10\nnameserver 8.8.8.8\n\
             search shop.svc.cluster.local svc.cluster.local cluster.local corp.example extra.example\n\
             options ndots:1 single-request-reopen\n"
        );
    }

    #[test]
    fn at_most_three_nameservers_and_32_searches_are_kept() {
        let config = PodDNSConfig {
            nameservers: Some((1..=5).map(|i| format!("10.0.0.{i}")).collect()),
            searches: Some((0..40).map(|i| format!("d{i}.example")).collect()),
            options: None,
        };
        let conf = pod_resolv_conf(
            &pod(Some("Default"), Some(config)),
            &ResolvConf::parse(HOST),
            &cluster(),
        );
        assert_eq!(
            conf.nameservers,
            vec!["192.168.1.1", "192.168.1.2", "10.0.0.1"]
        );
        assert_eq!(conf.searches.len(), 32);
    }

    #[test]
    fn parsing_ignores_comments_and_takes_the_last_search_line() {
        let conf = ResolvConf::parse(
            "domain a.example\nsearch b.example c.example # x\n; c\nnameserver 9.9.9.9",
        );
        assert_eq!(conf.searches, vec!["b.example", "c.example"]);
        assert_eq!(conf.nameservers, vec!["9.9.9.9"]);
    }
}
