//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes no new
//! pods, unless the pod tolerates `node.kubernetes.io/unschedulable`.

use k8s_openapi::api::core::v1::Taint;

use super::helpers::tolerated;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

pub const NAME: &str = "NodeUnschedulable";
const REASON: &str = "node(s) were unschedulable";

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.cordoned {
            return Status::Success;
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
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
    fn cordoned_nodes_reject_pods_that_do_not_tolerate_it() {
        let cases = [
            (
                "schedulable node",
                MakePod::new("p"),
                MakeNode::new("n"),
                true,
            ),
            (
                "cordoned node",
                MakePod::new("p"),
                MakeNode::new("n").unschedulable(),
                false,
            ),
            (
                "tolerating pod",
                MakePod::new("p").toleration(
                    "node.kubernetes.io/unschedulable",
                    "Exists",
                    "",
                    "NoSchedule",
                ),
                MakeNode::new("n").unschedulable(),
                true,
            ),
        ];
        for (name, pod, node, fits) in cases {
            let status = run_filter(&NodeUnschedulable, pod.info(), node.info());
            assert_eq!(status.is_success(), fits, "{name}: {status:?}");
            if !fits {
                assert_eq!(status.reasons(), [REASON]);
            }
        }
    }
}
