//! Preemption (kube-scheduler's DefaultPreemption, simplified): when no node
//! fits a pod, find the node where evicting the fewest, lowest-priority pods
//! makes it fit, nominate that node (`status.nominatedNodeName`) and delete
//! those pods. The pod itself is scheduled again once they are gone.
//!
//! Only nodes rejected for reasons that removing pods can change are tried
//! (`Unschedulable`, not `UnschedulableAndUnresolvable`). Victims have a
//! lower priority than the preemptor. Pre-filter state (pod affinity,
//! spreading) is computed once with all pods present, so those rules are
//! judged conservatively.

use std::sync::Arc;

use crate::algorithm::{pre_filter, run_filters, FitError};
use crate::framework::{Framework, NodeInfo, PodInfo};

/// Most candidate nodes evaluated per attempt (Kubernetes samples too).
const MAX_CANDIDATES: usize = 100;

/// Where to preempt and whom.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// The preemption outcome when no candidate exists, in Kubernetes' words.
pub fn no_candidate_message(num_all_nodes: usize, fit: &FitError) -> String {
    let hopeless = num_all_nodes - fit.resolvable_nodes.len();
    let mut parts = Vec::new();
    if !fit.resolvable_nodes.is_empty() {
        parts.push(format!(
            "{} No preemption victims found for incoming pod",
            fit.resolvable_nodes.len()
        ));
    }
    if hopeless > 0 {
        parts.push(format!(
            "{hopeless} Preemption is not helpful for scheduling"
        ));
    }
    parts.sort();
    format!(
        "preemption: 0/{num_all_nodes} nodes are available: {}",
        parts.join(", ")
    )
}

pub fn eligible(pod: &PodInfo) -> bool {
    pod.spec()
        .and_then(|s| s.preemption_policy.as_deref())
        .unwrap_or("PreemptLowerPriority")
        != "Never"
}

/// Finds the best node to preempt on, if any.
pub fn find_candidate(
    framework: &Framework,
    pod: &PodInfo,
    nodes: &[NodeInfo],
    fit: &FitError,
) -> Option<Candidate> {
    let state = pre_filter(framework, pod, nodes).ok()?;
    let mut best: Option<(Candidate, (i32, i64, usize))> = None;
    let mut found = 0;
    for name in &fit.resolvable_nodes {
        let Some(node) = nodes.iter().find(|n| &n.name == name) else {
            continue;
        };
        let mut lower: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority < pod.priority)
            .cloned()
            .collect();
        if lower.is_empty() {
            continue;
        }
        let mut trial = node.clone();
        for v in &lower {
            trial.remove_pod(&v.uid);
        }
        if run_filters(framework, &state, pod, &trial).is_err() {
            continue;
        }
        // Reprieve the most important pods that can stay.
        lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
        let mut victims = Vec::new();
        for v in lower {
            trial.add_pod(v.clone());
            if run_filters(framework, &state, pod, &trial).is_err() {
                trial.remove_pod(&v.uid);
                victims.push(v);
            }
        }
        let rank = (
            victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
            victims.iter().map(|v| i64::from(v.priority)).sum::<i64>(),
            victims.len(),
        );
        if best.as_ref().is_none_or(|(_, r)| rank < *r) {
            best = Some((
                Candidate {
                    node: name.clone(),
                    victims,
                },
                rank,
            ));
        }
        found += 1;
        if found >= MAX_CANDIDATES {
            break;
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Algorithm;
    use crate::plugins::default_framework;
    use crate::testing::{MakeNode, MakePod};

    fn fit_error(pod: &PodInfo, nodes: &[NodeInfo]) -> Box<FitError> {
        Algorithm::new(default_framework(), 0)
            .schedule(pod, nodes)
            .expect_err("does not fit")
    }

    #[test]
    fn the_node_with_the_least_important_victims_is_chosen() {
        let nodes = vec![
            MakeNode::new("a")
                .capacity("cpu", "2")
                .with_pods(vec![MakePod::new("a1").priority(50).req("cpu", "2").info()]),
            MakeNode::new("b").capacity("cpu", "2").with_pods(vec![
                MakePod::new("b1").priority(10).req("cpu", "1").info(),
                MakePod::new("b2").priority(10).req("cpu", "1").info(),
            ]),
        ];
        let pod = MakePod::new("p").priority(100).req("cpu", "1").info();
        let fit = fit_error(&pod, &nodes);
        let c = find_candidate(&default_framework(), &pod, &nodes, &fit).expect("a candidate");
        assert_eq!(c.node, "b");
        assert_eq!(
            c.victims.len(),
            1,
            "one 1-cpu pod is enough: {:?}",
            c.victims
        );
    }

    #[test]
    fn pods_of_equal_or_higher_priority_are_never_victims() {
        let nodes = vec![MakeNode::new("a")
            .capacity("cpu", "1")
            .with_pods(vec![MakePod::new("same")
                .priority(100)
                .req("cpu", "1")
                .info()])];
        let pod = MakePod::new("p").priority(100).req("cpu", "1").info();
        let fit = fit_error(&pod, &nodes);
        assert!(find_candidate(&default_framework(), &pod, &nodes, &fit).is_none());
        assert_eq!(
            no_candidate_message(1, &fit),
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod"
        );
    }

    #[test]
    fn unresolvable_nodes_are_not_candidates() {
        let nodes = vec![MakeNode::new("a")
            .taint("dedicated", "gold", "NoSchedule")
            .with_pods(vec![MakePod::new("low").req("cpu", "4").info()])];
        let pod = MakePod::new("p").priority(100).req("cpu", "1").info();
        let fit = fit_error(&pod, &nodes);
        assert!(find_candidate(&default_framework(), &pod, &nodes, &fit).is_none());
        assert_eq!(
            no_candidate_message(1, &fit),
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling"
        );
    }
}
