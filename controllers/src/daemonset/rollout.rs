//! The pure part of a DaemonSet sync: which nodes get a new pod, which pods
//! go (extras, failed ones, ones on nodes that no longer qualify, and old
//! revisions within `maxUnavailable`, or after their surge replacement is
//! available with `maxSurge`), and the status counts `kubectl rollout
//! status ds` reads.

use k8s_openapi::api::apps::v1::DaemonSetStatus;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::placement::Placement;
use crate::podutil::{is_available, is_ready};

/// The label holding the hash of the template a daemon pod was made from.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// One node and the DaemonSet's non-terminating pods on it, oldest first.
#[derive(Debug)]
pub struct NodePods<'a> {
    pub node: String,
    pub placement: Placement,
    pub pods: Vec<&'a Pod>,
}

/// Nodes to create a pod on and names of pods to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<String>,
}

fn is_failed(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

pub fn is_updated(p: &Pod, hash: &str) -> bool {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH))
        .map(String::as_str)
        == Some(hash)
}

/// A RollingUpdate's limits, scaled against the desired node count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    pub max_unavailable: usize,
    /// Above 0, old pods are replaced surge-first: the new pod starts next
    /// to the old one, which goes once the new one is available.
    pub max_surge: usize,
}

/// Plans one sync. `rolling` is `Some` for RollingUpdate, `None` for
/// OnDelete.
pub fn plan(
    nodes: &[NodePods],
    hash: &str,
    rolling: Option<Rolling>,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let surge = rolling.is_some_and(|r| r.max_surge > 0);
    // Rolling update bookkeeping: unavailable nodes and old pods to replace.
    let mut unavailable = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    // Surge bookkeeping: nodes running an old and a not yet available new
    // pod, and nodes whose available old pod waits for a surge slot.
    let mut surging = 0;
    let mut surge_candidates = Vec::new();
    for n in nodes {
        let (failed, running): (Vec<&Pod>, Vec<&Pod>) = n.pods.iter().partition(|p| is_failed(p));
        plan.delete.extend(failed.iter().map(|p| name(p)));
        if !n.placement.should_continue {
            plan.delete.extend(running.iter().map(|p| name(p)));
            continue;
        }
        match running.as_slice() {
            [] if n.placement.should_run => {
                plan.create.push(n.node.clone());
                unavailable += 1;
            }
            [] => {}
            [pod] if n.placement.should_run => {
                let available = is_available(pod, min_ready_seconds, now);
                if is_updated(pod, hash) {
                    if !available {
                        unavailable += 1;
                    }
                } else if surge {
                    if available {
                        surge_candidates.push(n.node.clone());
                    } else {
                        // Nothing to keep serving: replace at once.
                        plan.create.push(n.node.clone());
                    }
                } else if !available {
                    replace_now.push(name(pod));
                } else {
                    candidates.push(name(pod));
                }
            }
            [_] => {}
            // One old and one new pod, in either order (creation times
            // have one-second resolution, so the new pod may sort first).
            [a, b]
                if surge
                    && n.placement.should_run
                    && is_updated(a, hash) != is_updated(b, hash) =>
            {
                let (old, new) = if is_updated(a, hash) { (b, a) } else { (a, b) };
                if is_available(new, min_ready_seconds, now) {
                    plan.delete.push(name(old));
                } else {
                    surging += 1;
                }
            }
            [_, extra @ ..] => {
                // Keep the oldest; the node is not settled yet.
                plan.delete.extend(extra.iter().map(|p| name(p)));
                unavailable += 1;
            }
        }
    }
    match rolling {
        Some(r) if surge => {
            let budget = r.max_surge.saturating_sub(surging);
            plan.create
                .extend(surge_candidates.into_iter().take(budget));
        }
        Some(r) => {
            let budget = r
                .max_unavailable
                .saturating_sub(unavailable)
                .min(candidates.len());
            plan.delete.extend(replace_now);
            plan.delete.extend(candidates.into_iter().take(budget));
        }
        None => {}
    }
    plan
}

/// The DaemonSet status counts over the nodes.
pub fn status(
    nodes: &[NodePods],
    hash: &str,
    min_ready_seconds: i32,
    generation: Option<i64>,
    collision_count: Option<i32>,
    now: Timestamp,
) -> DaemonSetStatus {
    let mut s = DaemonSetStatus {
        observed_generation: generation,
        collision_count,
        ..Default::default()
    };
    for n in nodes {
        let oldest = n.pods.iter().find(|p| !is_failed(p));
        if n.placement.should_run {
            s.desired_number_scheduled += 1;
            if let Some(pod) = oldest {
                s.current_number_scheduled += 1;
                if is_ready(pod) {
                    s.number_ready += 1;
                }
                if is_available(pod, min_ready_seconds, now) {
                    *s.number_available.get_or_insert(0) += 1;
                }
                if is_updated(pod, hash) {
                    *s.updated_number_scheduled.get_or_insert(0) += 1;
                }
            }
        } else if oldest.is_some() {
            s.number_misscheduled += 1;
        }
    }
    let available = s.number_available.unwrap_or(0);
    s.number_available = Some(available);
    s.updated_number_scheduled = Some(s.updated_number_scheduled.unwrap_or(0));
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podutil::testing::*;
    use std::collections::BTreeMap;

    const RUN: Placement = Placement {
        should_run: true,
        should_continue: true,
    };

    fn daemon_pod(name: &str, hash: &str, ready: bool) -> Pod {
        let mut p = pod(name).phase("Running");
        if ready {
            p = p.ready_at(1);
        }
        p.metadata.labels = Some(BTreeMap::from([(REVISION_HASH.into(), hash.into())]));
        p
    }

    fn unavailable(max_unavailable: usize) -> Option<Rolling> {
        Some(Rolling {
            max_unavailable,
            max_surge: 0,
        })
    }

    fn surge(max_surge: usize) -> Option<Rolling> {
        Some(Rolling {
            max_unavailable: 0,
            max_surge,
        })
    }

    fn node<'a>(n: &str, pods: Vec<&'a Pod>) -> NodePods<'a> {
        NodePods {
            node: n.into(),
            placement: RUN,
            pods,
        }
    }

    #[test]
    fn every_eligible_node_without_a_pod_gets_one() {
        let nodes = [node("a", vec![]), node("b", vec![])];
        let p = plan(&nodes, "h1", unavailable(1), 0, ts(10));
        assert_eq!(p.create, ["a", "b"]);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn extra_pods_on_a_node_are_deleted_keeping_the_oldest() {
        let (a, b) = (daemon_pod("a", "h1", true), daemon_pod("b", "h1", true));
        let p = plan(&[node("n", vec![&a, &b])], "h1", unavailable(1), 0, ts(10));
        assert_eq!(p.delete, ["b"]);
    }

    #[test]
    fn a_rolling_update_replaces_at_most_max_unavailable_pods_at_once() {
        let pods: Vec<Pod> = (0..4)
            .map(|i| daemon_pod(&format!("p{i}"), "old", true))
            .collect();
        let nodes: Vec<NodePods> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| node(&format!("n{i}"), vec![p]))
            .collect();
        let p = plan(&nodes, "new", unavailable(1), 0, ts(10));
        assert_eq!(p.delete, ["p0"]);
        let p = plan(&nodes, "new", unavailable(2), 0, ts(10));
        assert_eq!(p.delete.len(), 2);
        assert!(
            plan(&nodes, "new", None, 0, ts(10)).delete.is_empty(),
            "OnDelete waits"
        );
    }

    #[test]
    fn an_unavailable_new_pod_uses_up_the_budget_but_unavailable_old_pods_go_at_once() {
        let fresh = daemon_pod("fresh", "new", false);
        let (old, broken) = (
            daemon_pod("old", "old", true),
            daemon_pod("broken", "old", false),
        );
        let nodes = [
            node("a", vec![&fresh]),
            node("b", vec![&old]),
            node("c", vec![&broken]),
        ];
        let p = plan(&nodes, "new", unavailable(1), 0, ts(10));
        assert_eq!(p.delete, ["broken"]);
    }

    #[test]
    fn with_max_surge_new_pods_start_beside_old_ones_within_the_surge_budget() {
        let pods: Vec<Pod> = (0..3)
            .map(|i| daemon_pod(&format!("p{i}"), "old", true))
            .collect();
        let nodes: Vec<NodePods> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| node(&format!("n{i}"), vec![p]))
            .collect();
        let p = plan(&nodes, "new", surge(1), 0, ts(10));
        assert_eq!(p.create, ["n0"], "one surge pod at a time");
        assert!(p.delete.is_empty(), "no old pod goes before its successor");
        assert_eq!(plan(&nodes, "new", surge(2), 0, ts(10)).create.len(), 2);
    }

    #[test]
    fn with_max_surge_the_old_pod_goes_once_its_successor_is_available() {
        let (old0, new0) = (
            daemon_pod("old0", "old", true),
            daemon_pod("new0", "new", false),
        );
        let old1 = daemon_pod("old1", "old", true);
        let waiting = [node("n0", vec![&old0, &new0]), node("n1", vec![&old1])];
        let p = plan(&waiting, "new", surge(1), 0, ts(10));
        assert_eq!(p, Plan::default(), "the surge slot is taken: wait");

        // The new pod may sort first (same creation second).
        let swapped = [node("n0", vec![&new0, &old0]), node("n1", vec![&old1])];
        assert_eq!(
            plan(&swapped, "new", surge(1), 0, ts(10)),
            Plan::default(),
            "the old pod stays until its successor is available, whatever the order"
        );

        let ready0 = daemon_pod("new0", "new", true);
        let done = [node("n0", vec![&old0, &ready0]), node("n1", vec![&old1])];
        let p = plan(&done, "new", surge(1), 0, ts(10));
        assert_eq!(p.delete, ["old0"]);
        assert_eq!(p.create, ["n1"], "the freed slot goes to the next node");
    }

    #[test]
    fn with_max_surge_an_unavailable_old_pod_is_replaced_without_waiting_for_a_slot() {
        let (old0, new0) = (
            daemon_pod("old0", "old", true),
            daemon_pod("new0", "new", false),
        );
        let broken = daemon_pod("broken", "old", false);
        let nodes = [node("n0", vec![&old0, &new0]), node("n1", vec![&broken])];
        let p = plan(&nodes, "new", surge(1), 0, ts(10));
        assert_eq!(p.create, ["n1"]);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn pods_on_nodes_that_no_longer_qualify_are_deleted() {
        let a = daemon_pod("a", "h1", true);
        let mut n = node("n", vec![&a]);
        n.placement = Placement {
            should_run: false,
            should_continue: false,
        };
        assert_eq!(plan(&[n], "h1", unavailable(1), 0, ts(10)).delete, ["a"]);
    }

    #[test]
    fn status_counts_nodes_as_rollout_status_reads_them() {
        let (a, b) = (daemon_pod("a", "new", true), daemon_pod("b", "old", false));
        let nodes = [node("x", vec![&a]), node("y", vec![&b]), node("z", vec![])];
        let s = status(&nodes, "new", 0, Some(3), None, ts(10));
        assert_eq!(s.desired_number_scheduled, 3);
        assert_eq!(s.current_number_scheduled, 2);
        assert_eq!(s.number_ready, 1);
        assert_eq!(s.number_available, Some(1));
        assert_eq!(s.updated_number_scheduled, Some(1));
        assert_eq!(s.number_unavailable, Some(2));
        assert_eq!(s.observed_generation, Some(3));
    }
}
