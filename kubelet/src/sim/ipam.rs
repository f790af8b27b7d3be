//! Pod CIDRs of simulated nodes and the pod IPs handed out from them. The
//! addresses are never routed: nothing sends traffic to a simulated pod.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// A node's `/24` pod range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidr {
    base: Ipv4Addr,
}

impl PodCidr {
    /// Node `i` gets `10.(128 + i/256).(i%256).0/24`: 32,768 nodes fit.
    pub fn for_index(i: u32) -> Self {
        let i = i % (128 * 256);
        Self {
            base: Ipv4Addr::new(10, (128 + i / 256) as u8, (i % 256) as u8, 0),
        }
    }

    pub fn to_cidr_string(self) -> String {
        format!("{}/24", self.base)
    }

    fn host(self, n: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.base.octets();
        Ipv4Addr::new(a, b, c, n)
    }
}

/// The IPs in use on one node, keyed by pod uid.
#[derive(Debug)]
pub struct PodIps {
    cidr: PodCidr,
    by_pod: HashMap<String, Ipv4Addr>,
    used: BTreeSet<u8>,
    next: u8,
}

impl PodIps {
    pub fn new(cidr: PodCidr) -> Self {
        Self {
            cidr,
            by_pod: HashMap::new(),
            used: BTreeSet::new(),
            next: 2,
        }
    }

    /// The pod's IP: the one it already has, else the next free host address
    /// (`.2`..`.254`, round robin so a freed address is not reused at once).
    pub fn assign(&mut self, uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(uid) {
            return Some(*ip);
        }
        for _ in 0..253 {
            let n = self.next;
            self.next = if self.next >= 254 { 2 } else { self.next + 1 };
            if self.used.insert(n) {
                let ip = self.cidr.host(n);
                self.by_pod.insert(uid.to_string(), ip);
                return Some(ip);
            }
        }
        None
    }

    /// Records an IP a pod already reports (after a restart of the process).
    pub fn adopt(&mut self, uid: &str, ip: Ipv4Addr) {
        if ip.octets()[..3] == self.cidr.base.octets()[..3] {
            self.used.insert(ip.octets()[3]);
            self.by_pod.insert(uid.to_string(), ip);
        }
    }

    pub fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_pod.remove(uid) {
            self.used.remove(&ip.octets()[3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_indexes_get_distinct_slash_24_ranges() {
        assert_eq!(PodCidr::for_index(0).to_cidr_string(), "10.128.0.0/24");
        assert_eq!(PodCidr::for_index(257).to_cidr_string(), "10.129.1.0/24");
        assert_ne!(PodCidr::for_index(1), PodCidr::for_index(2));
    }

    #[test]
    fn a_pod_keeps_its_ip_and_a_released_ip_is_not_reused_at_once() {
        let mut ips = PodIps::new(PodCidr::for_index(3));
        let a = ips.assign("a");
        assert_eq!(a, Some(Ipv4Addr::new(10, 128, 3, 2)));
        assert_eq!(ips.assign("a"), a);
        ips.release("a");
        assert_eq!(ips.assign("b"), Some(Ipv4Addr::new(10, 128, 3, 3)));
    }

    #[test]
    fn a_full_range_hands_out_no_address() {
        let mut ips = PodIps::new(PodCidr::for_index(0));
        for i in 0..253 {
            assert!(ips.assign(&i.to_string()).is_some());
        }
        assert_eq!(ips.assign("one-too-many"), None);
    }
}
