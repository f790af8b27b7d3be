//! NodeName: a pod that names a node (`spec.nodeName`) fits only there.

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

pub const NAME: &str = "NodeName";
const REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.spec().and_then(|s| s.node_name.as_deref()) {
            Some(want) if !want.is_empty() && want != node.name => Status::unresolvable(REASON),
            _ => Status::Success,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::run_filter;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn a_pod_naming_a_node_fits_only_that_node() {
        let cases = [
            ("no name", MakePod::new("p"), true),
            ("same name", MakePod::new("p").node("n1"), true),
            ("other name", MakePod::new("p").node("n2"), false),
        ];
        for (name, pod, fits) in cases {
            let status = run_filter(&NodeName, pod.info(), MakeNode::new("n1").info());
            assert_eq!(status.is_success(), fits, "{name}: {status:?}");
        }
    }
}
