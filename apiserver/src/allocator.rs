//! Service ClusterIP and NodePort allocation.
//!
//! Each address or port handed out is a key in the store, created with
//! "must not exist", so several API servers sharing one etcd can never give
//! the same address twice. The keys live outside `/registry/` so the watch
//! cache never sees them.

use std::net::Ipv4Addr;

use bytes::Bytes;
use rand::Rng;

use crate::store::{Store, StoreError};

const IP_PREFIX: &str = "/skiff/allocations/clusterips/";
const PORT_PREFIX: &str = "/skiff/allocations/nodeports/";

/// The NodePort range, as Kubernetes' default `--service-node-port-range`.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Why an allocation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("provided IP is already allocated")]
    IpTaken,
    #[error("provided IP is not in the valid range. The range of valid IPs is {0}")]
    IpOutOfRange(String),
    #[error("provided port is already allocated")]
    PortTaken,
    #[error("provided port is not in the valid range. The range of valid ports is 30000-32767")]
    PortOutOfRange,
    #[error("range is full")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An IPv4 service range such as `10.96.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCidr {
    network: u32,
    prefix: u8,
}

impl ServiceCidr {
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if !(8..=30).contains(&prefix) {
            return None;
        }
        let mask = u32::MAX << (32 - prefix);
        Some(Self {
            network: u32::from(addr) & mask,
            prefix,
        })
    }

    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.network
    }

    /// The first usable address, kept for the `kubernetes` Service.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        let off = u32::from(ip).wrapping_sub(self.network);
        self.contains(ip) && off != 0 && off != self.size() - 1
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

async fn claim(store: &dyn Store, key: &str, owner: &str) -> Result<bool, StoreError> {
    match store.create(key, Bytes::from(owner.to_string())).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reserves `requested`, or a free address of `cidr` (never the first,
/// which belongs to the `kubernetes` Service, unless asked for by name).
pub async fn allocate_ip(
    store: &dyn Store,
    cidr: &ServiceCidr,
    requested: Option<Ipv4Addr>,
    owner: &str,
) -> Result<Ipv4Addr, AllocError> {
    if let Some(ip) = requested {
        if !cidr.usable(ip) {
            return Err(AllocError::IpOutOfRange(cidr.to_string()));
        }
        return if claim(store, &format!("{IP_PREFIX}{ip}"), owner).await? {
            Ok(ip)
        } else {
            Err(AllocError::IpTaken)
        };
    }
    let size = cidr.size();
    let start = rand::rng().random_range(2..size - 1);
    // Random start, then linear probing: few collisions while the range is sparse.
    for i in 0..size {
        let off = 2 + (start - 2 + i) % (size - 3);
        let ip = Ipv4Addr::from(cidr.network + off);
        if claim(store, &format!("{IP_PREFIX}{ip}"), owner).await? {
            return Ok(ip);
        }
    }
    Err(AllocError::Full)
}

/// Reserves `requested`, or a free port of [`NODE_PORTS`].
pub async fn allocate_port(
    store: &dyn Store,
    requested: Option<u16>,
    owner: &str,
) -> Result<u16, AllocError> {
    if let Some(p) = requested {
        if !NODE_PORTS.contains(&p) {
            return Err(AllocError::PortOutOfRange);
        }
        return if claim(store, &format!("{PORT_PREFIX}{p}"), owner).await? {
            Ok(p)
        } else {
            Err(AllocError::PortTaken)
        };
    }
    let span = u32::from(*NODE_PORTS.end() - *NODE_PORTS.start()) + 1;
    let start = rand::rng().random_range(0..span);
    for i in 0..span {
        let p = *NODE_PORTS.start() + ((start + i) % span) as u16;
        if claim(store, &format!("{PORT_PREFIX}{p}"), owner).await? {
            return Ok(p);
        }
    }
    Err(AllocError::Full)
}

/// Frees an address (absent is fine).
pub async fn release_ip(store: &dyn Store, ip: &str) {
    release(store, &format!("{IP_PREFIX}{ip}")).await;
}

/// Frees a port (absent is fine).
pub async fn release_port(store: &dyn Store, port: u16) {
    release(store, &format!("{PORT_PREFIX}{port}")).await;
}

async fn release(store: &dyn Store, key: &str) {
    match store.delete(key, None).await {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => {
            tracing::warn!(key, error = %e, "cannot release an allocation; it stays reserved")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ranges_parse_and_contain_their_addresses() {
        let c = ServiceCidr::parse("10.96.0.0/16").expect("cidr");
        assert!(c.contains("10.96.3.4".parse().expect("ip")));
        assert!(!c.contains("10.97.0.1".parse().expect("ip")));
        assert_eq!(c.first(), "10.96.0.1".parse::<Ipv4Addr>().expect("ip"));
        assert!(!c.usable("10.96.0.0".parse().expect("ip")));
        assert!(!c.usable("10.96.255.255".parse().expect("ip")));
        assert!(ServiceCidr::parse("10.96.0.0").is_none());
        assert!(ServiceCidr::parse("nope/16").is_none());
    }

    #[tokio::test]
    async fn addresses_and_ports_are_never_handed_out_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::embedded::EmbeddedStore::open(
            crate::store::embedded::EmbeddedConfig::new(dir.path().join("db")),
        )
        .await
        .expect("store");
        let cidr = ServiceCidr::parse("10.0.0.0/29").expect("cidr");
        // 8 addresses: network, .1 (kubernetes), broadcast are never random picks: 5 left.
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..5 {
            let ip = allocate_ip(&store, &cidr, None, &format!("s{i}"))
                .await
                .expect("free ip");
            assert!(seen.insert(ip), "{ip} handed out twice");
        }
        assert_eq!(
            allocate_ip(&store, &cidr, None, "x").await,
            Err(AllocError::Full)
        );
        let first = *seen.iter().next().expect("one");
        assert_eq!(
            allocate_ip(&store, &cidr, Some(first), "y").await,
            Err(AllocError::IpTaken)
        );
        release_ip(&store, &first.to_string()).await;
        assert_eq!(
            allocate_ip(&store, &cidr, Some(first), "y").await,
            Ok(first)
        );
        let p = allocate_port(&store, Some(30080), "a").await.expect("port");
        assert_eq!(p, 30080);
        assert_eq!(
            allocate_port(&store, Some(30080), "b").await,
            Err(AllocError::PortTaken)
        );
        assert_eq!(
            allocate_port(&store, Some(80), "b").await,
            Err(AllocError::PortOutOfRange)
        );
    }
}
