//! PodTopologySpread: `topologySpreadConstraints`. A `DoNotSchedule`
//! constraint rejects a node when placing the pod there would make
//! `count(domain) - min(domains) > maxSkew` (filter); `ScheduleAnyway`
//! constraints prefer domains with fewer matching pods (score).
//!
//! Domains are the values of `topologyKey` on nodes that pass the pod's
//! node selector and required node affinity (`nodeAffinityPolicy: Honor`,
//! the default); taints are ignored (`nodeTaintsPolicy: Ignore`).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use super::helpers::label_selector_matches;
use super::node_affinity::required_matches;
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "PodTopologySpread";
const REASON: &str = "node(s) didn't match pod topology spread constraints";
const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

pub struct PodTopologySpread;

fn constraints<'a>(pod: &'a PodInfo, when: &str) -> Vec<&'a TopologySpreadConstraint> {
    pod.spec()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .collect()
}

fn counts_pod(c: &TopologySpreadConstraint, pod: &PodInfo, other: &PodInfo) -> bool {
    other.namespace == pod.namespace
        && other.pod.metadata.deletion_timestamp.is_none()
        && c.label_selector
            .as_ref()
            .is_some_and(|s| label_selector_matches(s, other.labels()))
}

/// Matching pods per domain, one map per constraint.
struct Counts(Vec<HashMap<String, i64>>);

fn count(pod: &PodInfo, cs: &[&TopologySpreadConstraint], nodes: &[NodeInfo]) -> Counts {
    let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cs.len()];
    for node in nodes {
        if !required_matches(pod, node) {
            continue;
        }
        let labels = node.labels();
        if !cs.iter().all(|c| labels.contains_key(&c.topology_key)) {
            continue;
        }
        for (c, map) in cs.iter().zip(counts.iter_mut()) {
            let n = node.pods.iter().filter(|o| counts_pod(c, pod, o)).count() as i64;
            *map.entry(labels[&c.topology_key].clone()).or_default() += n;
        }
    }
    Counts(counts)
}

struct FilterState {
    constraints: Vec<TopologySpreadConstraint>,
    counts: Counts,
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, nodes: &[NodeInfo], state: &mut CycleState) -> Status {
        let cs = constraints(pod, "DoNotSchedule");
        if !cs.is_empty() {
            let counts = count(pod, &cs, nodes);
            state.write(FilterState {
                constraints: cs.into_iter().cloned().collect(),
                counts,
            });
        }
        Status::Success
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<FilterState>() else {
            return Status::Success;
        };
        let labels = node.labels();
        for (c, domains) in s.constraints.iter().zip(&s.counts.0) {
            let Some(value) = labels.get(&c.topology_key) else {
                return Status::unresolvable(MISSING_LABEL);
            };
            let self_match = c
                .label_selector
                .as_ref()
                .is_some_and(|sel| label_selector_matches(sel, pod.labels()));
            let enough_domains = c.min_domains.is_none_or(|m| domains.len() as i32 >= m);
            let min = if enough_domains {
                domains.values().copied().min().unwrap_or(0)
            } else {
                0
            };
            let here = domains.get(value).copied().unwrap_or(0);
            if here + i64::from(self_match) - min > i64::from(c.max_skew) {
                return Status::unschedulable(REASON);
            }
        }
        Status::Success
    }
}

struct ScoreState {
    constraints: Vec<TopologySpreadConstraint>,
    counts: Counts,
}

/// Marks nodes without a constraint's key; they get the lowest score.
const NO_DOMAIN: i64 = -1;

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(&self, pod: &PodInfo, all: &[NodeInfo], _: &[&NodeInfo], state: &mut CycleState) {
        let cs = constraints(pod, "ScheduleAnyway");
        if !cs.is_empty() {
            let counts = count(pod, &cs, all);
            state.write(ScoreState {
                constraints: cs.into_iter().cloned().collect(),
                counts,
            });
        }
    }

    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<ScoreState>() else {
            return 0;
        };
        let labels = node.labels();
        let mut total = 0;
        for (c, domains) in s.constraints.iter().zip(&s.counts.0) {
            let Some(value) = labels.get(&c.topology_key) else {
                return NO_DOMAIN;
            };
            total += domains.get(value).copied().unwrap_or(0);
        }
        total
    }

    /// Fewer matching pods is better: `100 * (max - s) / (max - min)`.
    fn normalize(&self, scores: &mut [i64]) {
        let valid = scores.iter().copied().filter(|s| *s != NO_DOMAIN);
        let (min, max) = valid.fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for s in scores.iter_mut() {
            *s = if *s == NO_DOMAIN {
                0
            } else if max == min {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max - *s) / (max - min)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{run_filters_on, run_scores};
    use crate::testing::{MakeNode, MakePod};

    fn web(n: &str) -> PodInfo {
        MakePod::new(n).label("app", "web").info()
    }

    #[test]
    fn do_not_schedule_rejects_domains_that_would_exceed_max_skew() {
        let nodes = vec![
            MakeNode::new("a")
                .label("zone", "1")
                .with_pods(vec![web("1"), web("2")]),
            MakeNode::new("b")
                .label("zone", "2")
                .with_pods(vec![web("3")]),
            MakeNode::new("c").with_pods(vec![]),
        ];
        let pod =
            MakePod::new("p")
                .label("app", "web")
                .spread(1, "zone", "DoNotSchedule", "app", "web");
        let statuses = run_filters_on(&PodTopologySpread, pod.info(), &nodes);
        assert_eq!(
            statuses[0],
            Status::unschedulable(REASON),
            "zone 1 has 2, min 1"
        );
        assert_eq!(statuses[1], Status::Success, "zone 2 would have 2");
        assert_eq!(statuses[2], Status::unresolvable(MISSING_LABEL));
    }

    #[test]
    fn a_larger_max_skew_and_other_namespaces_are_respected() {
        let nodes = vec![
            MakeNode::new("a")
                .label("zone", "1")
                .with_pods(vec![web("1"), web("2")]),
            MakeNode::new("b")
                .label("zone", "2")
                .with_pods(vec![MakePod::new("x")
                    .namespace("other")
                    .label("app", "web")
                    .info()]),
        ];
        // Zone 2's pod is in another namespace, so zone 2 counts 0.
        let skew2 =
            MakePod::new("p")
                .label("app", "web")
                .spread(2, "zone", "DoNotSchedule", "app", "web");
        assert!(!run_filters_on(&PodTopologySpread, skew2.info(), &nodes)[0].is_success());
        let skew3 =
            MakePod::new("p")
                .label("app", "web")
                .spread(3, "zone", "DoNotSchedule", "app", "web");
        assert!(run_filters_on(&PodTopologySpread, skew3.info(), &nodes)[0].is_success());
    }

    #[test]
    fn schedule_anyway_prefers_domains_with_fewer_matching_pods() {
        let nodes = vec![
            MakeNode::new("a")
                .label("zone", "1")
                .with_pods(vec![web("1"), web("2")]),
            MakeNode::new("b")
                .label("zone", "2")
                .with_pods(vec![web("3")]),
            MakeNode::new("c").label("zone", "3").with_pods(vec![]),
            MakeNode::new("d").with_pods(vec![]),
        ];
        let pod =
            MakePod::new("p")
                .label("app", "web")
                .spread(1, "zone", "ScheduleAnyway", "app", "web");
        let scores = run_scores(&PodTopologySpread, pod.info(), &nodes);
        assert_eq!(scores, vec![0, 50, 100, 0]);
    }
}
