//! OwnerSpread: spreads the pods of one controller (the same controlling
//! ownerReference) across nodes, preferring nodes with fewer of them. Pods
//! without a controller are grouped by namespace and identical labels.
//! This is the old SelectorSpread behaviour, cheap enough for every pod.

use crate::framework::{default_normalize, CycleState, NodeInfo, PodInfo, ScorePlugin};

pub const NAME: &str = "OwnerSpread";

pub struct OwnerSpread;

impl ScorePlugin for OwnerSpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.spread_group
            .map_or(0, |g| i64::from(node.pods_in_group(g)))
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::run_scores;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn nodes_with_fewer_pods_of_the_same_owner_score_higher() {
        let mine = |n: &str| MakePod::new(n).owner("rs-1").info();
        let theirs = |n: &str| MakePod::new(n).owner("rs-2").info();
        let nodes = vec![
            MakeNode::new("a").with_pods(vec![mine("1"), mine("2")]),
            MakeNode::new("b").with_pods(vec![mine("3"), theirs("4"), theirs("5")]),
            MakeNode::new("c").with_pods(vec![theirs("6")]),
        ];
        let scores = run_scores(&OwnerSpread, MakePod::new("p").owner("rs-1").info(), &nodes);
        assert_eq!(scores, vec![0, 50, 100]);
    }

    #[test]
    fn pods_without_an_owner_spread_by_identical_labels() {
        let web = |n: &str| MakePod::new(n).label("app", "web").info();
        let nodes = vec![
            MakeNode::new("a").with_pods(vec![web("1")]),
            MakeNode::new("b").with_pods(vec![MakePod::new("2").label("app", "db").info()]),
        ];
        let scores = run_scores(
            &OwnerSpread,
            MakePod::new("p").label("app", "web").info(),
            &nodes,
        );
        assert_eq!(scores, vec![0, 100]);
    }
}
