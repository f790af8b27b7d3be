//! NodePorts: a pod's `hostPort`s must be free on the node (same protocol
//! and port, on the same host IP or a wildcard one).

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

pub const NAME: &str = "NodePorts";
const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod.host_ports.iter().any(|p| node.port_in_use(p)) {
            Status::unschedulable(REASON)
        } else {
            Status::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::run_filter;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn a_host_port_in_use_rejects_the_node() {
        let cases = [
            (
                "no ports",
                MakePod::new("p"),
                vec![MakePod::new("o").host_port(80)],
                true,
            ),
            (
                "free port",
                MakePod::new("p").host_port(81),
                vec![MakePod::new("o").host_port(80)],
                true,
            ),
            (
                "taken port",
                MakePod::new("p").host_port(80),
                vec![MakePod::new("o").host_port(80)],
                false,
            ),
        ];
        for (name, pod, existing, fits) in cases {
            let node =
                MakeNode::new("n").with_pods(existing.into_iter().map(MakePod::info).collect());
            let status = run_filter(&NodePorts, pod.info(), node);
            assert_eq!(status.is_success(), fits, "{name}: {status:?}");
        }
    }
}
