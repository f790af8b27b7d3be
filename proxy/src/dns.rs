//! The cluster DNS server: authoritative for the cluster domain, nothing
//! else.
//!
//! Answers `A` for `<svc>.<ns>.svc.<domain>` (the ClusterIP, or a headless
//! Service's ready endpoint IPs) and `SRV` for
//! `_<port>._<proto>.<svc>.<ns>.svc.<domain>` (named ports), NXDOMAIN for
//! other names in the domain and REFUSED for names outside it: it never
//! forwards a query anywhere. Records are recomputed from the Service watch
//! and swapped in whole; each query only reads them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::endpoints::ServiceView;

/// The TTL of every answer, as CoreDNS' kubernetes plugin.
const TTL: u32 = 5;

/// The records of one name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Entry {
    a: Vec<Ipv4Addr>,
    /// (port, target name)
    srv: Vec<(u16, String)>,
}

/// The zone: every name of the cluster domain that exists.
#[derive(Debug, Default, Clone)]
pub struct Records {
    domain: String,
    names: HashMap<String, Entry>,
}

impl Records {
    /// Records for `services` under `domain` (e.g. `cluster.local`).
    pub fn build(domain: &str, services: &[ServiceView]) -> Self {
        let domain = normalize(domain);
        let mut names: HashMap<String, Entry> = HashMap::new();
        // Intermediate names exist (empty non-terminals answer NOERROR).
        names.entry(format!("svc.{domain}")).or_default();
        for s in services {
            let base = format!("{}.{}.svc.{domain}", s.name, s.namespace).to_ascii_lowercase();
            names
                .entry(format!("{}.svc.{domain}", s.namespace).to_ascii_lowercase())
                .or_default();
            let a = if s.headless {
                s.ready_ips()
            } else {
                s.cluster_ip.into_iter().collect()
            };
            names.entry(base.clone()).or_default().a = a;
            for p in s.ports.iter().filter(|p| !p.name.is_empty()) {
                let srv_name = format!(
                    "_{}._{}.{base}",
                    p.name.to_ascii_lowercase(),
                    p.protocol.to_ascii_lowercase()
                );
                names
                    .entry(srv_name)
                    .or_default()
                    .srv
                    .push((p.port, format!("{base}.")));
            }
        }
        Self { domain, names }
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The live records, shared by the watch (writer) and the servers.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    current: Arc<RwLock<Arc<Records>>>,
}

impl Zone {
    pub fn new(records: Records) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(records))),
        }
    }

    pub fn replace(&self, records: Records) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(records);
    }

    fn get(&self) -> Arc<Records> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The response to the wire-format query `request`, or `None` when it is
/// not a parseable DNS query (it is then dropped).
pub fn answer(records: &Records, request: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = false;
    let code = match (request.metadata.op_code, request.queries.as_slice()) {
        (OpCode::Query, [query]) => {
            response.add_query(query.clone());
            let (code, answers) = lookup(records, query.name(), query.query_type());
            for a in answers {
                response.add_answer(a);
            }
            response.metadata.authoritative = code != ResponseCode::Refused;
            code
        }
        (OpCode::Query, _) => ResponseCode::FormErr,
        _ => ResponseCode::NotImp,
    };
    response.metadata.response_code = code;
    response.to_vec().ok()
}

fn lookup(records: &Records, name: &Name, kind: RecordType) -> (ResponseCode, Vec<Record>) {
    let key = normalize(&name.to_ascii());
    let suffix = format!(".{}", records.domain);
    if key != records.domain && !key.ends_with(&suffix) {
        return (ResponseCode::Refused, Vec::new());
    }
    let Some(entry) = records.names.get(&key) else {
        return (ResponseCode::NXDomain, Vec::new());
    };
    let answers = match kind {
        RecordType::A => entry
            .a
            .iter()
            .map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(*ip))))
            .collect(),
        RecordType::SRV => entry
            .srv
            .iter()
            .filter_map(|(port, target)| {
                let target = Name::from_ascii(target).ok()?;
                Some(Record::from_rdata(
                    name.clone(),
                    TTL,
                    RData::SRV(SRV::new(0, 100, *port, target)),
                ))
            })
            .collect(),
        _ => Vec::new(),
    };
    (ResponseCode::NoError, answers)
}

/// Binds the UDP socket and TCP listener of `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?))
}

/// Serves `zone` on the bound sockets until the task is aborted.
pub async fn serve(udp: UdpSocket, tcp: TcpListener, zone: Zone) {
    tracing::info!(addr = ?udp.local_addr().ok(), "cluster DNS serving");
    let tcp_zone = zone.clone();
    let tcp_task = tokio::spawn(async move {
        loop {
            match tcp.accept().await {
                Ok((stream, _)) => {
                    let zone = tcp_zone.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_tcp(stream, zone).await {
                            tracing::debug!(error = %e, "DNS TCP connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "DNS TCP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    let _abort = AbortOnDrop(tcp_task);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match udp.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        let Some(mut reply) = answer(&zone.get(), &buf[..n]) else {
            continue;
        };
        if reply.len() > 512 {
            // Plain DNS over UDP: truncate and let the client retry on TCP.
            if let Ok(m) = Message::from_vec(&reply) {
                if let Ok(t) = m.truncate().to_vec() {
                    reply = t;
                }
            }
        }
        if let Err(e) = udp.send_to(&reply, peer).await {
            tracing::debug!(error = %e, %peer, "DNS UDP reply failed");
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve_tcp(mut stream: TcpStream, zone: Zone) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_u16())
            .await
        {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        let mut request = vec![0u8; len];
        stream.read_exact(&mut request).await?;
        let Some(reply) = answer(&zone.get(), &request) else {
            return Ok(());
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        stream.write_u16(reply_len).await?;
        stream.write_all(&reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::{Backend, PortView};
    use hickory_proto::op::Query;

    fn view(name: &str, ip: Option<Ipv4Addr>, headless: bool) -> ServiceView {
        ServiceView {
            mode: None,
            namespace: "default".into(),
            name: name.into(),
            cluster_ip: ip,
            headless,
            ports: vec![PortView {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 80,
                node_port: None,
                endpoints: vec![
                    Backend {
                        addr: "10.244.0.7:8080".parse().expect("addr"),
                        pod: None,
                        ready: true,
                        serving: true,
                        terminating: false,
                    },
                    Backend {
                        addr: "10.244.0.8:8080".parse().expect("addr"),
                        pod: None,
                        ready: false,
                        serving: false,
                        terminating: false,
                    },
                ],
            }],
        }
    }

    fn records() -> Records {
        Records::build(
            "cluster.local",
            &[
                view("web", Some(Ipv4Addr::new(10, 96, 0, 20)), false),
                view("db", None, true),
            ],
        )
    }

    fn ask(name: &str, kind: RecordType) -> Message {
        let mut q = Message::query();
        q.metadata.id = 4242;
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
        let bytes = q.to_vec().expect("encode");
        let reply = answer(&records(), &bytes).expect("a reply");
        Message::from_vec(&reply).expect("decode")
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some(ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_service_name_resolves_to_its_cluster_ip() {
        let m = ask("web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.id, 4242);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 96, 0, 20)]);
        let upper = ask("WEB.Default.svc.cluster.local.", RecordType::A);
        assert_eq!(a_records(&upper), vec![Ipv4Addr::new(10, 96, 0, 20)]);
    }

    #[test]
    fn a_headless_service_resolves_to_its_ready_endpoints_only() {
        let m = ask("db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 244, 0, 7)]);
    }

    #[test]
    fn a_named_port_has_an_srv_record() {
        let m = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        match &m.answers.first().map(|r| r.data.clone()) {
            Some(RData::SRV(srv)) => {
                assert_eq!(srv.port, 80);
                assert_eq!(srv.target.to_ascii(), "web.default.svc.cluster.local.");
            }
            other => panic!("no SRV: {other:?}"),
        }
    }

    #[test]
    fn unknown_names_in_the_cluster_domain_are_nxdomain() {
        let m = ask("nope.default.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // Search-list expansions of a full name do not exist either.
        let m = ask(
            "web.default.svc.cluster.local.default.svc.cluster.local.",
            RecordType::A,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn an_existing_name_without_that_record_type_is_an_empty_success() {
        let m = ask("web.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let ns = ask("default.svc.cluster.local.", RecordType::A);
        assert_eq!(ns.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn names_outside_the_cluster_domain_are_refused_never_forwarded() {
        let m = ask("example.com.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(m.answers.is_empty());
        assert!(!m.metadata.recursion_available);
        let m = ask("evilcluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn garbage_is_dropped() {
        assert!(answer(&records(), b"\x00\x01garbage").is_none());
    }
}
