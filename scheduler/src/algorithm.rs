//! One scheduling decision, pure and synchronous: filter a sample of the
//! nodes, score the feasible ones, pick the best. No I/O here.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rand::Rng;

use crate::framework::{CycleState, FailedPlugins, Framework, NodeInfo, PodInfo, Status};

/// Fewest nodes to find feasible before stopping (Kubernetes: 100).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Lowest adaptive percentage (Kubernetes: 5).
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes to look for among `all` nodes, as Kubernetes'
/// `numFeasibleNodesToFind`: every node below 100; else `percentage`%, or
/// when it is 0 an adaptive `50 - all/125`% (at least 5%), never below 100.
pub fn num_feasible_nodes_to_find(all: usize, percentage: u32) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return all;
    }
    let pct = if percentage == 0 {
        50usize
            .saturating_sub(all / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE)
    } else {
        percentage as usize
    };
    (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Why no node fit: a reason histogram over the nodes, in Kubernetes' form.
#[derive(Debug, Clone, Default)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// reason → number of nodes rejected with it.
    pub reasons: BTreeMap<Cow<'static, str>, usize>,
    /// Nodes rejected only for reasons preemption could help with.
    pub resolvable_nodes: Vec<String>,
    pub failed_plugins: FailedPlugins,
    /// Appended after the histogram (the preemption outcome).
    pub post_filter_message: Option<String>,
}

impl FitError {
    /// `0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gold}, 2 Insufficient cpu.`
    pub fn message(&self) -> String {
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        parts.sort();
        let mut msg = format!("0/{} nodes are available", self.num_all_nodes);
        if parts.is_empty() {
            msg.push('.');
        } else {
            msg.push_str(&format!(": {}.", parts.join(", ")));
        }
        if let Some(post) = &self.post_filter_message {
            msg.push_str(&format!(" {post}."));
        }
        msg
    }
}

/// Walks the nodes from a rotating start, so successive pods look at
/// different samples, as kube-scheduler's `nextStartNodeIndex`.
pub struct Algorithm {
    pub framework: Framework,
    pub percentage_of_nodes_to_score: u32,
    next_start: usize,
}

/// The outcome of a successful decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub node: String,
    pub evaluated: usize,
    pub feasible: usize,
}

/// Runs every filter on one node, stopping at the first rejection.
pub fn run_filters(
    framework: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Result<(), (&'static str, Status)> {
    for f in &framework.filters {
        let s = f.filter(state, pod, node);
        if !s.is_success() {
            return Err((f.name(), s));
        }
    }
    Ok(())
}

/// Pre-filters; a rejection here rejects every node.
pub fn pre_filter(
    framework: &Framework,
    pod: &PodInfo,
    nodes: &[NodeInfo],
) -> Result<CycleState, (&'static str, Status)> {
    let mut state = CycleState::default();
    for f in &framework.filters {
        let s = f.pre_filter(pod, nodes, &mut state);
        if !s.is_success() {
            return Err((f.name(), s));
        }
    }
    Ok(state)
}

impl Algorithm {
    pub fn new(framework: Framework, percentage_of_nodes_to_score: u32) -> Self {
        Self {
            framework,
            percentage_of_nodes_to_score,
            next_start: 0,
        }
    }

    pub fn schedule(
        &mut self,
        pod: &PodInfo,
        nodes: &[NodeInfo],
    ) -> Result<Decision, Box<FitError>> {
        let mut fit_error = Box::new(FitError {
            num_all_nodes: nodes.len(),
            ..FitError::default()
        });
        if nodes.is_empty() {
            return Err(fit_error);
        }
        let mut state = match pre_filter(&self.framework, pod, nodes) {
            Ok(state) => state,
            Err((plugin, status)) => {
                for r in status.reasons() {
                    fit_error.reasons.insert(r.clone(), nodes.len());
                }
                fit_error.failed_plugins.insert(plugin);
                return Err(fit_error);
            }
        };
        let want = num_feasible_nodes_to_find(nodes.len(), self.percentage_of_nodes_to_score);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(nodes.len()));
        let start = self.next_start % nodes.len();
        let mut evaluated = 0;
        for i in 0..nodes.len() {
            let node = &nodes[(start + i) % nodes.len()];
            evaluated += 1;
            match run_filters(&self.framework, &state, pod, node) {
                Ok(()) => {
                    feasible.push(node);
                    if feasible.len() >= want {
                        break;
                    }
                }
                Err((plugin, status)) => {
                    fit_error.failed_plugins.insert(plugin);
                    if matches!(status, Status::Unschedulable(_)) {
                        fit_error.resolvable_nodes.push(node.name.clone());
                    }
                    for r in status.reasons() {
                        *fit_error.reasons.entry(r.clone()).or_default() += 1;
                    }
                }
            }
        }
        self.next_start = (start + evaluated) % nodes.len();
        if feasible.is_empty() {
            return Err(fit_error);
        }
        let node = if feasible.len() == 1 {
            feasible[0].name.clone()
        } else {
            self.select(pod, nodes, &feasible, &mut state)
        };
        Ok(Decision {
            node,
            evaluated,
            feasible: feasible.len(),
        })
    }

    /// Scores the feasible nodes and picks the highest total, breaking ties
    /// at random.
    fn select(
        &self,
        pod: &PodInfo,
        all: &[NodeInfo],
        feasible: &[&NodeInfo],
        state: &mut CycleState,
    ) -> String {
        let mut totals = vec![0i64; feasible.len()];
        for (plugin, _) in &self.framework.scores {
            plugin.pre_score(pod, all, feasible, state);
        }
        let mut scores = vec![0i64; feasible.len()];
        for (plugin, weight) in &self.framework.scores {
            for (s, node) in scores.iter_mut().zip(feasible) {
                *s = plugin.score(state, pod, node);
            }
            plugin.normalize(&mut scores);
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        let best = totals.iter().copied().max().unwrap_or(0);
        let mut rng = rand::rng();
        let mut chosen = 0;
        let mut ties = 0;
        for (i, t) in totals.iter().enumerate() {
            if *t == best {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    chosen = i;
                }
            }
        }
        feasible[chosen].name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_framework;
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn small_clusters_evaluate_every_node_and_large_ones_a_sample() {
        let cases = [
            (5, 0, 5),
            (99, 0, 99),
            (1000, 0, 420),
            (5000, 0, 500),
            (5000, 50, 2500),
            (200, 10, 100),
            (10000, 100, 10000),
        ];
        for (all, pct, want) in cases {
            assert_eq!(
                num_feasible_nodes_to_find(all, pct),
                want,
                "{all} nodes at {pct}%"
            );
        }
    }

    #[test]
    fn the_message_counts_each_reason_in_kubernetes_form() {
        let nodes = vec![
            MakeNode::new("a")
                .taint("dedicated", "gold", "NoSchedule")
                .info(),
            MakeNode::new("b").capacity("cpu", "1").info(),
            MakeNode::new("c").capacity("cpu", "1").info(),
        ];
        let mut alg = Algorithm::new(default_framework(), 0);
        let err = alg
            .schedule(&MakePod::new("p").req("cpu", "2").info(), &nodes)
            .expect_err("nothing fits");
        assert_eq!(
            err.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gold}, 2 Insufficient cpu."
        );
    }

    #[test]
    fn an_empty_cluster_says_so() {
        let mut alg = Algorithm::new(default_framework(), 0);
        let err = alg
            .schedule(&MakePod::new("p").info(), &[])
            .expect_err("no nodes");
        assert_eq!(err.message(), "0/0 nodes are available.");
    }

    #[test]
    fn the_pod_goes_to_the_node_it_fits_best() {
        let nodes = vec![
            MakeNode::new("busy").with_pods(vec![MakePod::new("o").req("cpu", "3").info()]),
            MakeNode::new("idle").info(),
            MakeNode::new("cordoned").unschedulable().info(),
        ];
        let mut alg = Algorithm::new(default_framework(), 0);
        let d = alg
            .schedule(&MakePod::new("p").req("cpu", "500m").info(), &nodes)
            .expect("fits");
        assert_eq!(d.node, "idle");
        assert_eq!(d.feasible, 2);
    }

    #[test]
    fn sampling_stops_after_enough_feasible_nodes_and_rotates_the_start() {
        let nodes: Vec<_> = (0..1000)
            .map(|i| MakeNode::new(&format!("n{i}")).info())
            .collect();
        let mut alg = Algorithm::new(default_framework(), 10);
        let first = alg
            .schedule(&MakePod::new("p").info(), &nodes)
            .expect("fits");
        assert_eq!(first.evaluated, 100);
        let second = alg
            .schedule(&MakePod::new("q").info(), &nodes)
            .expect("fits");
        assert_eq!(second.evaluated, 100);
        let n: usize = second.node[1..].parse().expect("a number");
        assert!(
            (100..200).contains(&n),
            "the second sample starts where the first ended: {n}"
        );
    }
}
