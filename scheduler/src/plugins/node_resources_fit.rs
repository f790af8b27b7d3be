//! NodeResourcesFit: the pod's requests must fit in the node's allocatable
//! minus what the pods already there (and the assumed ones) request.

use std::borrow::Cow;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};
use crate::resources::Resources;

pub const NAME: &str = "NodeResourcesFit";

pub struct NodeResourcesFit;

/// The reasons the pod does not fit next to `requested`, and whether it
/// would not fit even on the empty node.
pub fn insufficient(
    pod: &Resources,
    allocatable: &Resources,
    requested: &Resources,
) -> (Vec<Cow<'static, str>>, bool) {
    let mut reasons = Vec::new();
    let mut never = false;
    if requested.pods + 1 > allocatable.pods {
        reasons.push(Cow::Borrowed("Too many pods"));
        never |= allocatable.pods < 1;
    }
    let mut check = |name: Cow<'static, str>, want: i64, have: i64, used: i64| {
        if want > 0 && want > have - used {
            reasons.push(Cow::Owned(format!("Insufficient {name}")));
            never |= want > have;
        }
    };
    check(
        "cpu".into(),
        pod.milli_cpu,
        allocatable.milli_cpu,
        requested.milli_cpu,
    );
    check(
        "memory".into(),
        pod.memory,
        allocatable.memory,
        requested.memory,
    );
    check(
        "ephemeral-storage".into(),
        pod.ephemeral_storage,
        allocatable.ephemeral_storage,
        requested.ephemeral_storage,
    );
    for (name, want) in &pod.scalar {
        let have = allocatable.scalar.get(name).copied().unwrap_or(0);
        let used = requested.scalar.get(name).copied().unwrap_or(0);
        check(name.clone().into(), *want, have, used);
    }
    (reasons, never)
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let (reasons, never) = insufficient(&pod.requests, &node.allocatable, &node.requested);
        match (reasons.is_empty(), never) {
            (true, _) => Status::Success,
            (false, false) => Status::Unschedulable(reasons),
            (false, true) => Status::UnschedulableAndUnresolvable(reasons),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::run_filter;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn requests_must_fit_in_what_is_left_of_the_node() {
        let busy = || {
            MakeNode::new("n")
                .capacity("cpu", "2")
                .capacity("memory", "4Gi")
                .capacity("pods", "2")
                .with_pods(vec![MakePod::new("o")
                    .req("cpu", "1500m")
                    .req("memory", "1Gi")
                    .info()])
        };
        let cases: Vec<(&str, MakePod, NodeInfo, Status)> = vec![
            (
                "fits",
                MakePod::new("p").req("cpu", "500m"),
                busy(),
                Status::Success,
            ),
            (
                "too much cpu",
                MakePod::new("p").req("cpu", "600m"),
                busy(),
                Status::Unschedulable(vec!["Insufficient cpu".into()]),
            ),
            (
                "cpu and memory",
                MakePod::new("p").req("cpu", "1").req("memory", "3500Mi"),
                busy(),
                Status::Unschedulable(vec![
                    "Insufficient cpu".into(),
                    "Insufficient memory".into(),
                ]),
            ),
            (
                "bigger than the whole node",
                MakePod::new("p").req("cpu", "3"),
                busy(),
                Status::UnschedulableAndUnresolvable(vec!["Insufficient cpu".into()]),
            ),
            (
                "pod count",
                MakePod::new("p"),
                MakeNode::new("n")
                    .capacity("pods", "1")
                    .with_pods(vec![MakePod::new("o").info()]),
                Status::Unschedulable(vec!["Too many pods".into()]),
            ),
            (
                "ephemeral storage",
                MakePod::new("p").req("ephemeral-storage", "200Gi"),
                MakeNode::new("n").info(),
                Status::UnschedulableAndUnresolvable(vec!["Insufficient ephemeral-storage".into()]),
            ),
            (
                "extended resource missing on the node",
                MakePod::new("p").req("example.com/gpu", "1"),
                MakeNode::new("n").info(),
                Status::UnschedulableAndUnresolvable(vec!["Insufficient example.com/gpu".into()]),
            ),
            (
                "init containers count as their max",
                MakePod::new("p").req("cpu", "100m").init_req("cpu", "500m"),
                busy(),
                Status::Success,
            ),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(
                run_filter(&NodeResourcesFit, pod.info(), node),
                want,
                "{name}"
            );
        }
    }
}
