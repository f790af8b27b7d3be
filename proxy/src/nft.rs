//! The kernel data path: ClusterIP Services as nftables DNAT rules, as
//! kube-proxy's nftables mode does, driven through Debian's `nft`.
//!
//! One table of skiff's own ([`crate::Config::nft_table`]) holds it all and
//! is replaced whole in one `nft -f` transaction on every change, so a
//! ruleset is never seen half-written. Its chains:
//! - `prerouting` (pods) and `output` (the host) jump to `services`, which
//!   matches `ClusterIP . protocol . port` and goes to that port's chain;
//! - each port's chain picks an endpoint with `numgen random` (no session
//!   affinity) and goes to the endpoint's chain, which DNATs;
//! - `postrouting` masquerades hairpin connections (a pod reaching itself
//!   through its Service: the endpoint chain marks them, as kube-proxy
//!   does). Other pods keep their address, as in Kubernetes: with bridged
//!   traffic passing netfilter (`bridge-nf-call-iptables`, which
//!   [`enable_bridge_netfilter`] turns on), replies between two pods on
//!   one bridge are un-NATed on the bridge. Where it cannot be turned on,
//!   every pod's Service connection is masqueraded instead.
//!
//! Connections from the host itself are never masqueraded: they leave
//! with a ClusterIP as source, so the backend sees a source distinct from
//! the host's direct connections to pod IPs. (Masquerading them behind the
//! bridge address made their TCP timestamps collide with the direct
//! connections' TIME_WAIT entries in the pod: SYNs were dropped and
//! connection-per-request clients fell to a quarter of the direct rate.)
//!
//! Ports with no eligible endpoint get no rule: the ClusterIP is a local
//! address of the host and nothing listens on it, so a client's connect
//! is refused at once, as with kube-proxy's reject rule.
//!
//! The rules outlive the process (they are kernel state): a skiff killed
//! with SIGKILL leaves running pods reachable through their ClusterIPs
//! (fail-static). A new run replaces the table; [`remove`] deletes it.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::{Ipv4Cidr, ProxyError};

/// One ClusterIP port handled by the kernel, with the endpoints it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPort {
    /// `namespace/name:port/PROTOCOL`, kept as a rule comment.
    pub comment: String,
    pub cluster_ip: Ipv4Addr,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    pub port: u16,
    /// Never empty (ports without endpoints get no rule).
    pub endpoints: Vec<SocketAddr>,
}

/// The whole table as an `nft -f` script: create it if missing, delete it,
/// and write it again, all in one transaction.
/// The packet mark (kube-proxy's bit) of connections to masquerade.
const MASQUERADE_MARK: &str = "0x00004000";

/// `masquerade_pods`: masquerade every pod's Service connection (when
/// bridged traffic bypasses netfilter), not only hairpin ones.
pub fn render(
    table: &str,
    service_cidr: Ipv4Cidr,
    ports: &[KernelPort],
    masquerade_pods: bool,
) -> String {
    let mut out = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(out, "table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
    let _ = writeln!(out, "table ip {table} {{");
    for (hook, priority) in [("prerouting", "dstnat"), ("output", "-100")] {
        let _ = writeln!(
            out,
            "\tchain {hook} {{\n\t\ttype nat hook {hook} priority {priority}; policy accept;\n\t\tjump services\n\t}}"
        );
    }
    let _ = writeln!(
        out,
        "\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tmeta mark & {MASQUERADE_MARK} == {MASQUERADE_MARK} masquerade"
    );
    if masquerade_pods {
        let _ = writeln!(
            out,
            "\t\tct status dnat ct original ip daddr {service_cidr} fib saddr type != local masquerade"
        );
    }
    let _ = writeln!(out, "\t}}");
    let _ = writeln!(out, "\tchain services {{");
    for (i, p) in ports.iter().enumerate() {
        let _ = writeln!(
            out,
            "\t\tip daddr {} {} dport {} goto svc-{i} comment {:?}",
            p.cluster_ip,
            p.protocol,
            p.port,
            sanitize(&p.comment)
        );
    }
    let _ = writeln!(out, "\t}}");
    for (i, p) in ports.iter().enumerate() {
        let targets: Vec<String> = (0..p.endpoints.len())
            .map(|j| format!("{j} : goto ep-{i}-{j}"))
            .collect();
        let _ = writeln!(
            out,
            "\tchain svc-{i} {{\n\t\tnumgen random mod {} vmap {{ {} }}\n\t}}",
            p.endpoints.len(),
            targets.join(", ")
        );
        for (j, ep) in p.endpoints.iter().enumerate() {
            let _ = writeln!(
                out,
                "\tchain ep-{i}-{j} {{\n\t\tip saddr {} meta mark set meta mark | {MASQUERADE_MARK}\n\t\tmeta l4proto {} dnat to {ep}\n\t}}",
                ep.ip(),
                p.protocol
            );
        }
    }
    let _ = writeln!(out, "}}");
    out
}

/// Keeps a comment printable and free of quotes (nft's string syntax).
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(120)
        .collect()
}

async fn nft(args: &[&str], stdin: Option<&str>) -> Result<std::process::Output, ProxyError> {
    let exec = |source| ProxyError::Exec {
        program: "nft".to_string(),
        source,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(exec)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.map_err(exec)?;
        drop(pipe);
    }
    child.wait_with_output().await.map_err(exec)
}

/// Applies a script from [`render`] in one transaction.
pub async fn apply(script: &str) -> Result<(), ProxyError> {
    let out = nft(&["-f", "-"], Some(script)).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProxyError::Nft {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Where the kernel says whether bridged IPv4 passes netfilter.
const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Makes bridged IPv4 traffic pass netfilter (as kube-proxy requires), so
/// two pods on one bridge can talk through a ClusterIP without
/// masquerading. Returns whether it is on.
pub fn enable_bridge_netfilter() -> bool {
    match std::fs::read_to_string(BRIDGE_NF) {
        Ok(v) if v.trim() == "1" => true,
        Ok(_) => match std::fs::write(BRIDGE_NF, "1") {
            Ok(()) => {
                tracing::info!(sysctl = BRIDGE_NF, "enabled netfilter on bridged traffic");
                true
            }
            Err(e) => {
                tracing::warn!(sysctl = BRIDGE_NF, error = %e, "cannot enable netfilter on bridged traffic: pods' Service connections are masqueraded");
                false
            }
        },
        Err(e) => {
            tracing::warn!(sysctl = BRIDGE_NF, error = %e, "no br_netfilter: pods' Service connections are masqueraded");
            false
        }
    }
}

/// UDP ports whose endpoints changed between two rule sets (a port new in
/// `after` counts): their conntrack entries must go, or a client that kept
/// sending while the port had no endpoint (or to a removed one) stays
/// stuck on its old entry, as kube-proxy knows.
pub fn stale_udp<'a>(before: &[KernelPort], after: &'a [KernelPort]) -> Vec<&'a KernelPort> {
    after
        .iter()
        .filter(|p| p.protocol == "udp")
        .filter(|p| {
            !before.iter().any(|b| {
                b.protocol == "udp"
                    && b.cluster_ip == p.cluster_ip
                    && b.port == p.port
                    && b.endpoints == p.endpoints
            })
        })
        .collect()
}

/// Deletes the conntrack entries of UDP `ip:port` (Debian's `conntrack`).
pub async fn flush_udp(ip: Ipv4Addr, port: u16) -> Result<(), ProxyError> {
    let out = Command::new("conntrack")
        .args(["-D", "-p", "udp", "--orig-dst", &ip.to_string(), "--dport"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| ProxyError::Exec {
            program: "conntrack".to_string(),
            source,
        })?;
    // Exit 1 with "0 flow entries have been deleted" is not a failure.
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || stderr.contains("0 flow entries") {
        Ok(())
    } else {
        Err(ProxyError::Nft {
            stderr: format!("conntrack: {}", stderr.trim()),
        })
    }
}

/// Deletes `table` (absent is fine).
pub async fn remove(table: &str) -> Result<(), ProxyError> {
    let listed = nft(&["list", "table", "ip", table], None).await?;
    if !listed.status.success() {
        return Ok(());
    }
    let out = nft(&["delete", "table", "ip", table], None).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProxyError::Nft {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ip: &str, protocol: &'static str, eps: &[&str]) -> KernelPort {
        KernelPort {
            comment: "default/web:80/TCP".into(),
            cluster_ip: ip.parse().expect("ip"),
            protocol,
            port: 80,
            endpoints: eps.iter().map(|e| e.parse().expect("endpoint")).collect(),
        }
    }

    #[test]
    fn the_script_replaces_the_table_in_one_transaction() {
        let cidr = Ipv4Cidr::parse("10.96.0.0/16").expect("cidr");
        let script = render("skiff-proxy", cidr, &[], false);
        let lines: Vec<&str> = script.lines().take(3).collect();
        assert_eq!(
            lines,
            [
                "table ip skiff-proxy",
                "delete table ip skiff-proxy",
                "table ip skiff-proxy {"
            ]
        );
        assert!(script.contains("meta mark & 0x00004000 == 0x00004000 masquerade"));
        assert!(
            !script.contains("fib saddr"),
            "only hairpin connections are masqueraded"
        );
        assert!(script.contains("type nat hook output priority -100"));
        let fallback = render("skiff-proxy", cidr, &[], true);
        assert!(fallback.contains(
            "ct status dnat ct original ip daddr 10.96.0.0/16 fib saddr type != local masquerade"
        ));
    }

    #[test]
    fn each_port_spreads_at_random_over_its_endpoints() {
        let cidr = Ipv4Cidr::parse("10.96.0.0/16").expect("cidr");
        let script = render(
            "t",
            cidr,
            &[
                port("10.96.0.20", "tcp", &["10.42.0.5:8080", "10.42.0.6:8080"]),
                port("10.96.0.21", "udp", &["10.42.0.7:5353"]),
            ],
            false,
        );
        assert!(script.contains("ip saddr 10.42.0.6 meta mark set meta mark | 0x00004000"));
        assert!(script.contains(
            "ip daddr 10.96.0.20 tcp dport 80 goto svc-0 comment \"default/web:80/TCP\""
        ));
        assert!(script.contains("numgen random mod 2 vmap { 0 : goto ep-0-0, 1 : goto ep-0-1 }"));
        assert!(script.contains("meta l4proto tcp dnat to 10.42.0.6:8080"));
        assert!(script.contains("ip daddr 10.96.0.21 udp dport 80 goto svc-1"));
        assert!(script.contains("meta l4proto udp dnat to 10.42.0.7:5353"));
    }

    #[tokio::test]
    async fn the_kernel_accepts_a_rendered_ruleset_in_check_mode() {
        let cidr = Ipv4Cidr::parse("10.96.0.0/16").expect("cidr");
        let script = render(
            "skiff-proxy-check",
            cidr,
            &[
                port("10.96.0.20", "tcp", &["10.42.0.5:8080", "10.42.0.6:8080"]),
                port("10.96.0.21", "udp", &["10.42.0.7:5353"]),
            ],
            true,
        );
        // `nft -c` parses and validates against the kernel, changing nothing.
        let out = nft(&["-c", "-f", "-"], Some(&script))
            .await
            .expect("nft runs (package nftables)");
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn udp_ports_with_new_or_changed_endpoints_need_their_conntrack_entries_flushed() {
        let before = [
            port("10.96.0.21", "udp", &["10.42.0.7:53"]),
            port("10.96.0.22", "udp", &["10.42.0.8:53"]),
            port("10.96.0.20", "tcp", &["10.42.0.5:80"]),
        ];
        let after = [
            port("10.96.0.21", "udp", &["10.42.0.7:53"]),
            port("10.96.0.22", "udp", &["10.42.0.9:53"]),
            port("10.96.0.23", "udp", &["10.42.0.9:53"]),
            port("10.96.0.20", "tcp", &["10.42.0.6:80"]),
        ];
        let stale: Vec<String> = stale_udp(&before, &after)
            .iter()
            .map(|p| p.cluster_ip.to_string())
            .collect();
        assert_eq!(stale, ["10.96.0.22", "10.96.0.23"]);
    }

    #[test]
    fn comments_cannot_break_out_of_their_quotes() {
        assert_eq!(sanitize("a\"b\\c d;e"), "abcd;e");
    }
}
