//! NodeAffinity: `nodeSelector` and required node affinity terms must match
//! (filter); matching preferred terms add their weights (score).

use super::helpers::{node_selector_matches, term_matches};
use crate::framework::{
    default_normalize, CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Status,
};

pub const NAME: &str = "NodeAffinity";
const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

/// Whether the node satisfies the pod's `nodeSelector` and required node
/// affinity (also used by topology spreading's `nodeAffinityPolicy`).
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let Some(spec) = pod.spec() else {
        return true;
    };
    let labels = node.labels();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    selector_ok
        && spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_none_or(|sel| node_selector_matches(sel, &node.node))
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if required_matches(pod, node) {
            Status::Success
        } else {
            Status::unresolvable(REASON)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.spec()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|p| p.weight != 0 && term_matches(&p.preference, &node.node))
            .map(|p| i64::from(p.weight))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{run_filter, run_scores};
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn node_selector_and_required_terms_must_match() {
        let node = || MakeNode::new("n").label("disk", "ssd").label("zone", "a");
        let cases = [
            ("nothing required", MakePod::new("p"), true),
            (
                "selector matches",
                MakePod::new("p").node_selector("disk", "ssd"),
                true,
            ),
            (
                "selector differs",
                MakePod::new("p").node_selector("disk", "hdd"),
                false,
            ),
            (
                "term In",
                MakePod::new("p").node_affinity("zone", "In", &["a", "b"]),
                true,
            ),
            (
                "term NotIn",
                MakePod::new("p").node_affinity("zone", "NotIn", &["a"]),
                false,
            ),
            (
                "terms are ORed",
                MakePod::new("p")
                    .node_affinity("zone", "In", &["z"])
                    .node_affinity("disk", "Exists", &[]),
                true,
            ),
            (
                "selector and affinity are ANDed",
                MakePod::new("p")
                    .node_selector("disk", "hdd")
                    .node_affinity("zone", "In", &["a"]),
                false,
            ),
        ];
        for (name, pod, fits) in cases {
            let status = run_filter(&NodeAffinity, pod.info(), node().info());
            assert_eq!(status.is_success(), fits, "{name}: {status:?}");
            if !fits {
                assert_eq!(status.reasons(), [REASON], "{name}");
            }
        }
    }

    #[test]
    fn preferred_terms_score_by_their_weights() {
        let nodes = vec![
            MakeNode::new("a").label("zone", "a").info(),
            MakeNode::new("b").label("zone", "b").info(),
            MakeNode::new("c").info(),
        ];
        let pod = MakePod::new("p")
            .preferred_node_affinity(80, "zone", &["a"])
            .preferred_node_affinity(20, "zone", &["b"]);
        assert_eq!(
            run_scores(&NodeAffinity, pod.info(), &nodes),
            vec![100, 25, 0]
        );
    }
}
