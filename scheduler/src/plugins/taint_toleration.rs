//! TaintToleration: a node's `NoSchedule`/`NoExecute` taints must be
//! tolerated (filter); fewer untolerated `PreferNoSchedule` taints score
//! higher.

use super::helpers::tolerated;
use crate::framework::{
    default_normalize, CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Status,
};

pub const NAME: &str = "TaintToleration";

pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let tolerations = pod.tolerations();
        let untolerated = node.taints().iter().find(|t| {
            matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(tolerations, t)
        });
        match untolerated {
            None => Status::Success,
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The number of `PreferNoSchedule` taints the pod does not tolerate
    /// (only tolerations without an effect or with `PreferNoSchedule` count).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let prefer: Vec<_> = pod
            .tolerations()
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        node.taints()
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&prefer, t))
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{run_filter, run_scores};
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn untolerated_hard_taints_reject_the_node_with_the_taint_in_the_message() {
        let gold = || MakeNode::new("n").taint("dedicated", "gold", "NoSchedule");
        let cases = [
            ("no taints", MakePod::new("p"), MakeNode::new("n"), None),
            (
                "untolerated",
                MakePod::new("p"),
                gold(),
                Some("node(s) had untolerated taint {dedicated: gold}"),
            ),
            (
                "tolerated",
                MakePod::new("p").toleration("dedicated", "Equal", "gold", "NoSchedule"),
                gold(),
                None,
            ),
            (
                "NoExecute untolerated",
                MakePod::new("p"),
                MakeNode::new("n").taint("evict", "", "NoExecute"),
                Some("node(s) had untolerated taint {evict: }"),
            ),
            (
                "PreferNoSchedule never rejects",
                MakePod::new("p"),
                MakeNode::new("n").taint("soft", "x", "PreferNoSchedule"),
                None,
            ),
        ];
        for (name, pod, node, reason) in cases {
            let status = run_filter(&TaintToleration, pod.info(), node.info());
            match reason {
                None => assert!(status.is_success(), "{name}: {status:?}"),
                Some(r) => assert_eq!(status, Status::unresolvable(r), "{name}"),
            }
        }
    }

    #[test]
    fn nodes_with_fewer_untolerated_soft_taints_score_higher() {
        let nodes = vec![
            MakeNode::new("clean").info(),
            MakeNode::new("one")
                .taint("a", "", "PreferNoSchedule")
                .info(),
            MakeNode::new("two")
                .taint("a", "", "PreferNoSchedule")
                .taint("b", "", "PreferNoSchedule")
                .info(),
        ];
        let scores = run_scores(&TaintToleration, MakePod::new("p").info(), &nodes);
        assert_eq!(scores, vec![100, 50, 0]);
        let tolerant = MakePod::new("p").toleration("", "Exists", "", "");
        let scores = run_scores(&TaintToleration, tolerant.info(), &nodes);
        assert_eq!(scores, vec![100, 100, 100]);
    }
}
