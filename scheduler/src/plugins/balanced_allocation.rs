//! NodeResourcesBalancedAllocation: prefers nodes where cpu and memory
//! would be used in similar fractions after placing the pod.

use crate::framework::{CycleState, NodeInfo, PodInfo, ScorePlugin, MAX_NODE_SCORE};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

pub struct BalancedAllocation;

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    (requested as f64 / allocatable as f64).min(1.0)
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = fraction(
            node.non_zero_requested.0 + pod.non_zero.0,
            node.allocatable.milli_cpu,
        );
        let mem = fraction(
            node.non_zero_requested.1 + pod.non_zero.1,
            node.allocatable.memory,
        );
        // The standard deviation of two fractions is half their distance.
        let std = (cpu - mem).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::run_scores;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn nodes_left_balanced_score_higher() {
        let nodes = vec![
            // After the pod: cpu 50%, memory 50%.
            MakeNode::new("even").with_pods(vec![MakePod::new("o")
                .req("cpu", "1")
                .req("memory", "4Gi")
                .info()]),
            // After the pod: cpu 100%, memory 25%.
            MakeNode::new("skewed").with_pods(vec![MakePod::new("o").req("cpu", "3").info()]),
        ];
        let pod = MakePod::new("p").req("cpu", "1").req("memory", "4Gi");
        let scores = run_scores(&BalancedAllocation, pod.info(), &nodes);
        assert_eq!(scores[0], 100);
        assert!(scores[1] < 70, "{scores:?}");
    }
}
