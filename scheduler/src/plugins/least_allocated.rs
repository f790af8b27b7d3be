//! NodeResourcesLeastAllocated: prefers nodes with more cpu and memory left
//! after placing the pod (non-zero requests, equal weights).

use crate::framework::{CycleState, NodeInfo, PodInfo, ScorePlugin, MAX_NODE_SCORE};

pub const NAME: &str = "NodeResourcesLeastAllocated";

pub struct LeastAllocated;

fn free_fraction(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = free_fraction(
            node.non_zero_requested.0 + pod.non_zero.0,
            node.allocatable.milli_cpu,
        );
        let mem = free_fraction(
            node.non_zero_requested.1 + pod.non_zero.1,
            node.allocatable.memory,
        );
        (cpu + mem) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::run_scores;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn emptier_nodes_score_higher() {
        let nodes = vec![
            MakeNode::new("empty").info(),
            MakeNode::new("half").with_pods(vec![MakePod::new("o")
                .req("cpu", "2")
                .req("memory", "8Gi")
                .info()]),
            MakeNode::new("full").with_pods(vec![MakePod::new("o")
                .req("cpu", "4")
                .req("memory", "16Gi")
                .info()]),
        ];
        let pod = MakePod::new("p").req("cpu", "400m").req("memory", "1Gi");
        assert_eq!(
            run_scores(&LeastAllocated, pod.info(), &nodes),
            vec![91, 41, 0]
        );
    }
}
