//! The scheduler's view of the cluster: nodes and the pods on them, fed by
//! the pod and node watches, plus *assumed* pods — placed by the scheduler
//! but not yet confirmed by the watch — so the next pod sees their requests
//! at once. A failed binding forgets its assumed pod.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::framework::{NodeInfo, PodInfo};

#[derive(Debug)]
struct PodEntry {
    node: String,
    assumed: bool,
}

/// Nodes (in a stable order, for sampling) and the pods placed on them.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, PodEntry>,
    /// Pods bound to nodes the node watch has not shown yet.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
}

impl Cache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Adds or replaces a node; returns whether anything a filter reads
    /// changed (labels, taints, cordon, allocatable, conditions).
    pub fn upsert_node(&mut self, node: Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.index.get(&name) {
            Some(&i) => {
                let changed = schedulable_view(&self.nodes[i].node) != schedulable_view(&node);
                self.nodes[i].set_node(node);
                changed
            }
            None => {
                let mut info = NodeInfo::new(node);
                for pod in self.orphans.remove(&name).unwrap_or_default() {
                    info.add_pod(pod);
                }
                self.index.insert(name, self.nodes.len());
                self.nodes.push(info);
                true
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        // Its pods stay known: they come back if the node does.
        if !info.pods.is_empty() {
            self.orphans.insert(info.name.clone(), info.pods);
        }
    }

    fn attach(&mut self, node: &str, pod: Arc<PodInfo>) {
        match self.index.get(node) {
            Some(&i) => self.nodes[i].add_pod(pod),
            None => self.orphans.entry(node.to_string()).or_default().push(pod),
        }
    }

    fn detach(&mut self, node: &str, uid: &str) {
        match self.index.get(node) {
            Some(&i) => {
                self.nodes[i].remove_pod(uid);
            }
            None => {
                if let Some(list) = self.orphans.get_mut(node) {
                    list.retain(|p| p.uid != uid);
                    if list.is_empty() {
                        self.orphans.remove(node);
                    }
                }
            }
        }
    }

    /// Places a pod the scheduler chose, before the API confirms it.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.uid);
        self.pods.insert(
            pod.uid.clone(),
            PodEntry {
                node: node.to_string(),
                assumed: true,
            },
        );
        self.attach(node, pod);
    }

    /// Drops an assumed pod whose binding failed.
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|e| e.assumed) {
            self.remove_pod(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|e| e.assumed)
    }

    /// A pod the watch shows bound to `node` (confirms an assumed one).
    pub fn upsert_bound_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.uid);
        self.pods.insert(
            pod.uid.clone(),
            PodEntry {
                node: node.to_string(),
                assumed: false,
            },
        );
        self.attach(node, pod);
    }

    /// Removes a pod; returns whether it was placed on a node.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        match self.pods.remove(uid) {
            Some(entry) => {
                self.detach(&entry.node, uid);
                true
            }
            None => false,
        }
    }

    /// Uids of every pod placed, assumed or confirmed.
    pub fn pod_uids(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    pub fn pod_uids_contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }
}

/// What of a Node the filters read; heartbeats do not count.
fn schedulable_view(node: &Node) -> impl PartialEq {
    let status = node.status.as_ref();
    let conditions: Vec<(String, String)> = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    (
        node.metadata.labels.clone(),
        node.spec.clone(),
        status.and_then(|s| s.allocatable.clone()),
        conditions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn an_assumed_pod_counts_at_once_and_is_forgotten_when_binding_fails() {
        let mut c = Cache::default();
        c.upsert_node(MakeNode::new("n").build());
        c.assume(Arc::new(MakePod::new("p").req("cpu", "1").info()), "n");
        assert_eq!(c.node("n").map(|n| n.requested.milli_cpu), Some(1000));
        assert!(c.is_assumed("uid-p"));
        c.forget("uid-p");
        assert_eq!(c.node("n").map(|n| n.requested.milli_cpu), Some(0));
    }

    #[test]
    fn the_watch_confirms_an_assumed_pod_without_counting_it_twice() {
        let mut c = Cache::default();
        c.upsert_node(MakeNode::new("n").build());
        let pod = Arc::new(MakePod::new("p").req("cpu", "1").info());
        c.assume(pod.clone(), "n");
        c.upsert_bound_pod(pod, "n");
        assert!(!c.is_assumed("uid-p"));
        c.forget("uid-p");
        assert_eq!(c.node("n").map(|n| n.requested.milli_cpu), Some(1000));
    }

    #[test]
    fn pods_seen_before_their_node_are_counted_when_it_arrives() {
        let mut c = Cache::default();
        c.upsert_bound_pod(Arc::new(MakePod::new("p").req("cpu", "1").info()), "late");
        c.upsert_node(MakeNode::new("late").build());
        assert_eq!(c.node("late").map(|n| n.requested.milli_cpu), Some(1000));
    }

    #[test]
    fn removing_a_node_keeps_the_index_of_the_others_right() {
        let mut c = Cache::default();
        for n in ["a", "b", "c"] {
            c.upsert_node(MakeNode::new(n).build());
        }
        c.remove_node("a");
        assert_eq!(c.node("c").map(|n| n.name.as_str()), Some("c"));
        assert_eq!(c.nodes().len(), 2);
    }

    #[test]
    fn a_heartbeat_is_not_a_change_but_a_cordon_is() {
        let mut c = Cache::default();
        assert!(c.upsert_node(MakeNode::new("n").build()));
        assert!(!c.upsert_node(MakeNode::new("n").build()));
        assert!(c.upsert_node(MakeNode::new("n").unschedulable().build()));
    }
}
