//! InterPodAffinity (required terms): the pod's `podAffinity` terms need a
//! matching pod in the node's topology domain, its `podAntiAffinity` terms
//! need none, and no existing pod's anti-affinity may match the pod in that
//! domain. Any `topologyKey` works; `kubernetes.io/hostname` is the common
//! one. A `namespaceSelector` of `{}` means all namespaces; other namespace
//! selectors are not evaluated (the term's own namespaces apply).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::PodAffinityTerm;

use super::helpers::label_selector_matches;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

pub const NAME: &str = "InterPodAffinity";
const AFFINITY: &str = "node(s) didn't match pod affinity rules";
const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

pub struct InterPodAffinity;

fn required(pod: &PodInfo, anti: bool) -> &[PodAffinityTerm] {
    let affinity = pod.spec().and_then(|s| s.affinity.as_ref());
    let terms = if anti {
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
    } else {
        affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
    };
    terms.map(Vec::as_slice).unwrap_or_default()
}

/// Whether `term`, written in `owner`'s pod spec, selects `target`.
fn term_selects(term: &PodAffinityTerm, owner: &PodInfo, target: &PodInfo) -> bool {
    let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    });
    let namespaces = term.namespaces.as_deref().unwrap_or_default();
    let namespace_ok = all_namespaces
        || if namespaces.is_empty() {
            target.namespace == owner.namespace
        } else {
            namespaces.contains(&target.namespace)
        };
    namespace_ok
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| label_selector_matches(s, target.labels()))
}

#[derive(Default)]
struct State {
    /// Per affinity term: the domains holding a matching pod.
    affinity: Vec<HashSet<String>>,
    /// Whether any pod anywhere matches all affinity terms.
    any_affinity_match: bool,
    /// Per anti-affinity term: the domains holding a matching pod.
    anti_affinity: Vec<HashSet<String>>,
    /// `(topologyKey, value)` domains where an existing pod repels this one.
    repelled: HashSet<(String, String)>,
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, nodes: &[NodeInfo], state: &mut CycleState) -> Status {
        let affinity = required(pod, false);
        let anti = required(pod, true);
        let any_existing_anti = nodes.iter().any(|n| n.pods_with_required_anti_affinity > 0);
        if affinity.is_empty() && anti.is_empty() && !any_existing_anti {
            return Status::Success;
        }
        let mut s = State {
            affinity: vec![HashSet::new(); affinity.len()],
            anti_affinity: vec![HashSet::new(); anti.len()],
            ..State::default()
        };
        for node in nodes {
            let labels = node.labels();
            for other in &node.pods {
                let mut all_match = !affinity.is_empty();
                for (term, domains) in affinity.iter().zip(s.affinity.iter_mut()) {
                    if term_selects(term, pod, other) {
                        if let Some(v) = labels.get(&term.topology_key) {
                            domains.insert(v.clone());
                        }
                    } else {
                        all_match = false;
                    }
                }
                s.any_affinity_match |= all_match;
                for (term, domains) in anti.iter().zip(s.anti_affinity.iter_mut()) {
                    if term_selects(term, pod, other) {
                        if let Some(v) = labels.get(&term.topology_key) {
                            domains.insert(v.clone());
                        }
                    }
                }
                if other.has_required_anti_affinity {
                    for term in required(other, true) {
                        if term_selects(term, other, pod) {
                            if let Some(v) = labels.get(&term.topology_key) {
                                s.repelled.insert((term.topology_key.clone(), v.clone()));
                            }
                        }
                    }
                }
            }
        }
        state.write(s);
        Status::Success
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<State>() else {
            return Status::Success;
        };
        let labels = node.labels();
        let affinity = required(pod, false);
        if !affinity.is_empty() {
            // The first pod of a group that selects itself may go anywhere
            // its terms' topology keys exist.
            let first_of_group =
                !s.any_affinity_match && affinity.iter().all(|t| term_selects(t, pod, pod));
            let ok = affinity.iter().zip(&s.affinity).all(|(term, domains)| {
                labels
                    .get(&term.topology_key)
                    .is_some_and(|v| first_of_group || domains.contains(v))
            });
            if !ok {
                return Status::unresolvable(AFFINITY);
            }
        }
        for (term, domains) in required(pod, true).iter().zip(&s.anti_affinity) {
            if labels
                .get(&term.topology_key)
                .is_some_and(|v| domains.contains(v))
            {
                return Status::unschedulable(ANTI_AFFINITY);
            }
        }
        if s.repelled.iter().any(|(k, v)| labels.get(k) == Some(v)) {
            return Status::unschedulable(EXISTING_ANTI_AFFINITY);
        }
        Status::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::run_filters_on;
    use crate::testing::{MakeNode, MakePod};

    fn web(n: &str) -> PodInfo {
        MakePod::new(n).label("app", "web").info()
    }

    #[test]
    fn required_anti_affinity_keeps_matching_pods_apart() {
        let nodes = vec![
            MakeNode::new("a").with_pods(vec![web("1")]),
            MakeNode::new("b").with_pods(vec![MakePod::new("2").label("app", "db").info()]),
        ];
        let pod = MakePod::new("p")
            .label("app", "web")
            .anti_affinity("app", "web");
        let statuses = run_filters_on(&InterPodAffinity, pod.info(), &nodes);
        assert_eq!(
            statuses,
            vec![Status::unschedulable(ANTI_AFFINITY), Status::Success]
        );
    }

    #[test]
    fn an_existing_pods_anti_affinity_repels_the_incoming_pod() {
        let guard = MakePod::new("g")
            .label("app", "guard")
            .anti_affinity("app", "web")
            .info();
        let nodes = vec![
            MakeNode::new("a").with_pods(vec![guard]),
            MakeNode::new("b").with_pods(vec![]),
        ];
        let statuses = run_filters_on(&InterPodAffinity, web("p"), &nodes);
        assert_eq!(
            statuses,
            vec![
                Status::unschedulable(EXISTING_ANTI_AFFINITY),
                Status::Success
            ]
        );
    }

    #[test]
    fn required_affinity_follows_matching_pods_except_for_the_first_of_a_group() {
        let nodes = vec![
            MakeNode::new("a").with_pods(vec![MakePod::new("db").label("app", "db").info()]),
            MakeNode::new("b").with_pods(vec![]),
        ];
        let near_db = MakePod::new("p").affinity("app", "db");
        let statuses = run_filters_on(&InterPodAffinity, near_db.info(), &nodes);
        assert_eq!(
            statuses,
            vec![Status::Success, Status::unresolvable(AFFINITY)]
        );

        let first_cache = MakePod::new("c")
            .label("app", "cache")
            .affinity("app", "cache");
        let statuses = run_filters_on(&InterPodAffinity, first_cache.info(), &nodes);
        assert_eq!(statuses, vec![Status::Success, Status::Success]);

        let orphan = MakePod::new("o").affinity("app", "cache");
        let statuses = run_filters_on(&InterPodAffinity, orphan.info(), &nodes);
        assert!(statuses.iter().all(|s| !s.is_success()));
    }
}
