//! NodeReady: a node whose `Ready` condition is not `True` takes no new pods,
//! unless the pod tolerates `node.kubernetes.io/not-ready` with `NoSchedule`
//! (as the node lifecycle controller's taint would require).

use k8s_openapi::api::core::v1::Taint;

use super::helpers::tolerated;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

pub const NAME: &str = "NodeReady";
const REASON: &str = "node(s) were not ready";

pub struct NodeReady;

impl FilterPlugin for NodeReady {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if node.ready {
            return Status::Success;
        }
        let taint = Taint {
            key: "node.kubernetes.io/not-ready".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if tolerated(pod.tolerations(), &taint) {
            Status::Success
        } else {
            Status::unresolvable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::run_filter;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn not_ready_nodes_reject_pods_unless_tolerated_for_no_schedule() {
        let cases = [
            ("ready", MakePod::new("p"), MakeNode::new("n"), true),
            (
                "not ready",
                MakePod::new("p"),
                MakeNode::new("n").not_ready(),
                false,
            ),
            (
                "default NoExecute toleration does not help",
                MakePod::new("p").toleration(
                    "node.kubernetes.io/not-ready",
                    "Exists",
                    "",
                    "NoExecute",
                ),
                MakeNode::new("n").not_ready(),
                false,
            ),
            (
                "NoSchedule toleration",
                MakePod::new("p").toleration(
                    "node.kubernetes.io/not-ready",
                    "Exists",
                    "",
                    "NoSchedule",
                ),
                MakeNode::new("n").not_ready(),
                true,
            ),
        ];
        for (name, pod, node, fits) in cases {
            let status = run_filter(&NodeReady, pod.info(), node.info());
            assert_eq!(status.is_success(), fits, "{name}: {status:?}");
        }
    }
}
