//! The filter and score plugins, one file each, and the default profile.

pub mod balanced_allocation;
pub mod helpers;
pub mod inter_pod_affinity;
pub mod least_allocated;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_ready;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod owner_spread;
pub mod pod_topology_spread;
pub mod taint_toleration;

use crate::framework::Framework;

/// Kubernetes' default plugins, in its order, with its score weights
/// (OwnerSpread stands in for the default topology spreading, weight 2).
pub fn default_framework() -> Framework {
    Framework {
        filters: vec![
            Box::new(node_unschedulable::NodeUnschedulable),
            Box::new(node_name::NodeName),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_ready::NodeReady),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_ports::NodePorts),
            Box::new(node_resources_fit::NodeResourcesFit),
            Box::new(pod_topology_spread::PodTopologySpread),
            Box::new(inter_pod_affinity::InterPodAffinity),
        ],
        scores: vec![
            (Box::new(taint_toleration::TaintToleration), 3),
            (Box::new(node_affinity::NodeAffinity), 2),
            (Box::new(pod_topology_spread::PodTopologySpread), 2),
            (Box::new(owner_spread::OwnerSpread), 2),
            (Box::new(least_allocated::LeastAllocated), 1),
            (Box::new(balanced_allocation::BalancedAllocation), 1),
        ],
    }
}

/// Runs one filter plugin (with its pre-filter) against one node.
#[cfg(test)]
pub(crate) fn run_filter(
    plugin: &dyn crate::framework::FilterPlugin,
    pod: crate::framework::PodInfo,
    node: crate::framework::NodeInfo,
) -> crate::framework::Status {
    run_filters_on(plugin, pod, &[node]).remove(0)
}

/// Runs one filter plugin (with its pre-filter) against every node.
#[cfg(test)]
pub(crate) fn run_filters_on(
    plugin: &dyn crate::framework::FilterPlugin,
    pod: crate::framework::PodInfo,
    nodes: &[crate::framework::NodeInfo],
) -> Vec<crate::framework::Status> {
    let mut state = crate::framework::CycleState::default();
    let pre = plugin.pre_filter(&pod, nodes, &mut state);
    if !pre.is_success() {
        return vec![pre; nodes.len()];
    }
    nodes
        .iter()
        .map(|n| plugin.filter(&state, &pod, n))
        .collect()
}

/// Runs one score plugin (pre-score, score, normalize) over every node.
#[cfg(test)]
pub(crate) fn run_scores(
    plugin: &dyn crate::framework::ScorePlugin,
    pod: crate::framework::PodInfo,
    nodes: &[crate::framework::NodeInfo],
) -> Vec<i64> {
    let mut state = crate::framework::CycleState::default();
    let feasible: Vec<_> = nodes.iter().collect();
    plugin.pre_score(&pod, nodes, &feasible, &mut state);
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| plugin.score(&state, &pod, n))
        .collect();
    plugin.normalize(&mut scores);
    scores
}
