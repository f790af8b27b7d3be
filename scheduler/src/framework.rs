//! The scheduling framework: what plugins see ([`PodInfo`], [`NodeInfo`],
//! [`CycleState`]), what they answer ([`Status`]), and the two narrow
//! extension points ([`FilterPlugin`], [`ScorePlugin`]).
//!
//! Outcomes are domain codes, not errors: a filter that rejects a node says
//! why in Kubernetes' words, and those reasons become the pod's
//! `0/3 nodes are available: ...` message.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

use crate::resources::{non_zero_requests, pod_requests, Resources};

/// The most a score plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// A pod with everything the plugins read precomputed once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub priority: i32,
    pub requests: Resources,
    /// cpu (milli) and memory requests with Kubernetes' non-zero defaults.
    pub non_zero: (i64, i64),
    /// `(hostIP, protocol, hostPort)` of every container port with a hostPort.
    pub host_ports: Vec<(String, String, i32)>,
    /// The uid of the controlling owner (ReplicaSet, StatefulSet, Job...).
    pub owner: Option<String>,
    /// The pods this one spreads away from: a hash of its controlling
    /// owner, or of its namespace and labels when it has none and some.
    pub spread_group: Option<u64>,
    pub has_required_anti_affinity: bool,
}

impl PodInfo {
    pub fn new(pod: Pod, priority: i32) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|p| *p > 0)?;
                let ip = p.host_ip.clone().filter(|i| !i.is_empty());
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                Some((ip.unwrap_or_else(|| "0.0.0.0".into()), proto, port))
            })
            .collect();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        let has_required_anti_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty());
        let spread_group = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            match (&owner, pod.metadata.labels.as_ref()) {
                (Some(o), _) => {
                    ("owner", o).hash(&mut h);
                    Some(h.finish())
                }
                (None, Some(labels)) if !labels.is_empty() => {
                    ("labels", &pod.metadata.namespace, labels).hash(&mut h);
                    Some(h.finish())
                }
                _ => None,
            }
        };
        Self {
            spread_group,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            priority,
            requests: pod_requests(&spec),
            non_zero: non_zero_requests(&spec),
            host_ports,
            owner,
            has_required_anti_affinity,
            pod: Arc::new(pod),
        }
    }

    pub fn spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        self.pod.spec.as_ref()
    }

    pub fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        static EMPTY: std::collections::BTreeMap<String, String> =
            std::collections::BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    pub fn tolerations(&self) -> &[Toleration] {
        self.spec()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default()
    }

    /// `namespace/name`, for logs and messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A node with the pods on it and their summed requests.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub node: Arc<Node>,
    pub allocatable: Resources,
    pub requested: Resources,
    /// Summed non-zero cpu (milli) and memory requests, for scoring.
    pub non_zero_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of `pods` have required pod anti-affinity terms.
    pub pods_with_required_anti_affinity: u32,
    used_ports: HashMap<(String, String, i32), u32>,
    groups: HashMap<u64, u32>,
    /// `Ready=True`, read once per Node update.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub cordoned: bool,
}

impl NodeInfo {
    pub fn new(node: Node) -> Self {
        let allocatable = Resources::from_map(
            node.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())),
        );
        let ready = node_ready(&node);
        let cordoned = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            ready,
            cordoned,
            node: Arc::new(node),
            allocatable,
            requested: Resources::default(),
            non_zero_requested: (0, 0),
            pods: Vec::new(),
            pods_with_required_anti_affinity: 0,
            used_ports: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    /// Replaces the Node object, keeping the pods.
    pub fn set_node(&mut self, node: Node) {
        let fresh = NodeInfo::new(node);
        self.allocatable = fresh.allocatable;
        self.ready = fresh.ready;
        self.cordoned = fresh.cordoned;
        self.node = fresh.node;
    }

    pub fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        static EMPTY: std::collections::BTreeMap<String, String> =
            std::collections::BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.0 += pod.non_zero.0;
        self.non_zero_requested.1 += pod.non_zero.1;
        for p in &pod.host_ports {
            *self.used_ports.entry(p.clone()).or_default() += 1;
        }
        if let Some(g) = pod.spread_group {
            *self.groups.entry(g).or_default() += 1;
        }
        self.pods_with_required_anti_affinity += u32::from(pod.has_required_anti_affinity);
        self.pods.push(pod);
    }

    /// Removes the pod with this uid; returns it if it was here.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.0 -= pod.non_zero.0;
        self.non_zero_requested.1 -= pod.non_zero.1;
        self.pods_with_required_anti_affinity -= u32::from(pod.has_required_anti_affinity);
        for p in &pod.host_ports {
            if let Some(n) = self.used_ports.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    self.used_ports.remove(p);
                }
            }
        }
        if let Some(g) = pod.spread_group {
            if let Some(n) = self.groups.get_mut(&g) {
                *n -= 1;
                if *n == 0 {
                    self.groups.remove(&g);
                }
            }
        }
        Some(pod)
    }

    /// Whether a `(hostIP, protocol, port)` conflicts with a port in use:
    /// same protocol and port, and either IP is the wildcard or they match.
    pub fn port_in_use(&self, (ip, proto, port): &(String, String, i32)) -> bool {
        self.used_ports.keys().any(|(uip, uproto, uport)| {
            uport == port && uproto == proto && (uip == ip || uip == "0.0.0.0" || ip == "0.0.0.0")
        })
    }

    /// How many pods on the node are in this spread group.
    pub fn pods_in_group(&self, group: u64) -> u32 {
        self.groups.get(&group).copied().unwrap_or(0)
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Why a node was rejected, with Kubernetes' codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Success,
    /// Rejected now; preempting pods might help.
    Unschedulable(Vec<Cow<'static, str>>),
    /// Rejected for a reason preemption cannot change (labels, taints, name).
    UnschedulableAndUnresolvable(Vec<Cow<'static, str>>),
}

impl Status {
    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Self {
        Status::Unschedulable(vec![reason.into()])
    }

    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Self {
        Status::UnschedulableAndUnresolvable(vec![reason.into()])
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Status::Success)
    }

    pub fn reasons(&self) -> &[Cow<'static, str>] {
        match self {
            Status::Success => &[],
            Status::Unschedulable(r) | Status::UnschedulableAndUnresolvable(r) => r,
        }
    }
}

/// Per-attempt data that a plugin computes once (in `pre_filter` /
/// `pre_score`) and reads for every node. Keyed by type, so each plugin
/// owns its own state type.
#[derive(Default)]
pub struct CycleState {
    values: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
    }

    pub fn read<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref())
    }
}

/// Decides whether a pod may run on a node.
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Runs once per attempt before any `filter`; may store state. A
    /// non-success status rejects every node with it.
    fn pre_filter(&self, _pod: &PodInfo, _nodes: &[NodeInfo], _state: &mut CycleState) -> Status {
        Status::Success
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Ranks the nodes that passed every filter.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Runs once per attempt before any `score`, with the feasible nodes.
    fn pre_score(
        &self,
        _pod: &PodInfo,
        _all: &[NodeInfo],
        _feasible: &[&NodeInfo],
        _state: &mut CycleState,
    ) {
    }

    /// A raw score; [`normalize`](Self::normalize) brings it to `0..=100`.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;

    /// Rescales the raw scores of all feasible nodes to `0..=MAX_NODE_SCORE`.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Scales `scores` to `0..=100` by the largest, optionally reversed (a
/// higher raw value is worse), as Kubernetes' `DefaultNormalizeScore`.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

/// The plugins a profile runs, in order, with score weights.
pub struct Framework {
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scores: Vec<(Box<dyn ScorePlugin>, i64)>,
}

/// Plugin names whose rejection an event might undo (queueing hints).
pub type FailedPlugins = HashSet<&'static str>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn adding_and_removing_a_pod_restores_the_node_usage() {
        let mut n = NodeInfo::new(MakeNode::new("n").build());
        let p = Arc::new(
            MakePod::new("p")
                .req("cpu", "500m")
                .host_port(80)
                .owner("rs-1")
                .info(),
        );
        n.add_pod(p.clone());
        assert_eq!(n.requested.milli_cpu, 500);
        assert_eq!(n.requested.pods, 1);
        assert!(n.port_in_use(&("0.0.0.0".into(), "TCP".into(), 80)));
        assert_eq!(n.pods_in_group(p.spread_group.expect("owned")), 1);
        assert!(n.remove_pod(&p.uid).is_some());
        assert_eq!(n.requested, Resources::default());
        assert!(!n.port_in_use(&("0.0.0.0".into(), "TCP".into(), 80)));
        assert_eq!(n.pods_in_group(p.spread_group.expect("owned")), 0);
    }

    #[test]
    fn normalizing_scales_to_the_best_and_reverses_on_request() {
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }
}
