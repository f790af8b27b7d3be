//! The garbage collector's view of ownership: every object with its
//! ownerReferences, and the reverse edges owner → dependents. Pure: the
//! decisions here are applied by [`super`] through the API.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// One object as the collector sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Index of its kind in [`crate::resources::Kinds::all`].
    pub kind: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: waiting for its dependents.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }
}

/// Objects by uid and their dependents.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

/// What one owner of a dependent is, for the dangling check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not waiting for dependents.
    Solid,
    /// Exists but is being deleted in the foreground.
    Waiting,
    /// Gone (verified).
    Absent,
    /// Not known: must be checked through the API.
    Unknown,
}

/// What to do with a dependent given its owners' states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every owner is solid: nothing to do.
    Keep,
    /// Some owner is solid: drop the references to these (gone or waiting) owners.
    DropRefs(Vec<String>),
    /// No solid owner remains: delete it, in the foreground if an owner
    /// waits for it and it has dependents of its own.
    Delete { foreground: bool },
}

/// Decides a dependent's fate from the state of each ownerReference uid.
pub fn judge(states: &[(String, OwnerState)], has_dependents: bool) -> Verdict {
    let solid = states
        .iter()
        .any(|(_, s)| *s == OwnerState::Solid || *s == OwnerState::Unknown);
    let not_solid: Vec<String> = states
        .iter()
        .filter(|(_, s)| matches!(s, OwnerState::Absent | OwnerState::Waiting))
        .map(|(u, _)| u.clone())
        .collect();
    if solid {
        return if not_solid.is_empty() {
            Verdict::Keep
        } else {
            Verdict::DropRefs(not_solid)
        };
    }
    let waiting = states.iter().any(|(_, s)| *s == OwnerState::Waiting);
    Verdict::Delete {
        foreground: waiting && has_dependents,
    }
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn uids(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
    }

    pub fn dependents(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Dependents that hold a `blockOwnerDeletion` reference to `uid`.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<String> {
        self.dependents(uid)
            .into_iter()
            .filter(|d| {
                self.nodes.get(d).is_some_and(|n| {
                    n.owners
                        .iter()
                        .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
                })
            })
            .collect()
    }

    /// Inserts or updates an object; returns its previous version.
    pub fn upsert(&mut self, uid: String, node: Node) -> Option<Node> {
        let old = self.nodes.insert(uid.clone(), node.clone());
        if let Some(o) = &old {
            for r in &o.owners {
                if let Some(set) = self.dependents.get_mut(&r.uid) {
                    set.remove(&uid);
                }
            }
        }
        for r in &node.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        old
    }

    /// Removes an object; returns it.
    pub fn remove(&mut self, uid: &str) -> Option<Node> {
        let old = self.nodes.remove(uid)?;
        for r in &old.owners {
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
        }
        Some(old)
    }

    /// The state of owner `uid` as far as the graph knows.
    pub fn owner_state(&self, uid: &str) -> OwnerState {
        match self.nodes.get(uid) {
            Some(n) if n.deleting_dependents() => OwnerState::Waiting,
            Some(_) => OwnerState::Solid,
            None => OwnerState::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("n-{uid}"),
            uid: uid.into(),
            controller: None,
            block_owner_deletion: Some(block),
        }
    }

    fn node(owners: Vec<OwnerReference>) -> Node {
        Node {
            kind: 0,
            namespace: Some("default".into()),
            name: "x".into(),
            owners,
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn a_dependent_with_one_remaining_owner_only_loses_the_dangling_reference() {
        let v = judge(
            &[
                ("a".into(), OwnerState::Absent),
                ("b".into(), OwnerState::Solid),
            ],
            false,
        );
        assert_eq!(v, Verdict::DropRefs(vec!["a".into()]));
    }

    #[test]
    fn a_dependent_whose_owners_are_all_gone_is_deleted_in_the_background() {
        let v = judge(&[("a".into(), OwnerState::Absent)], true);
        assert_eq!(v, Verdict::Delete { foreground: false });
    }

    #[test]
    fn a_dependent_of_a_foreground_deletion_with_its_own_dependents_goes_in_the_foreground() {
        assert_eq!(
            judge(&[("a".into(), OwnerState::Waiting)], true),
            Verdict::Delete { foreground: true }
        );
        assert_eq!(
            judge(&[("a".into(), OwnerState::Waiting)], false),
            Verdict::Delete { foreground: false }
        );
    }

    #[test]
    fn an_owner_the_graph_does_not_know_is_never_assumed_gone() {
        assert_eq!(
            judge(&[("a".into(), OwnerState::Unknown)], false),
            Verdict::Keep
        );
    }

    #[test]
    fn only_block_owner_deletion_references_block_a_foreground_deletion() {
        let mut g = Graph::default();
        g.upsert("d1".into(), node(vec![owner_ref("o", true)]));
        g.upsert("d2".into(), node(vec![owner_ref("o", false)]));
        assert_eq!(g.dependents("o").len(), 2);
        assert_eq!(g.blocking_dependents("o"), vec!["d1".to_string()]);
    }

    #[test]
    fn changing_or_removing_owner_references_updates_the_reverse_edges() {
        let mut g = Graph::default();
        g.upsert("d".into(), node(vec![owner_ref("o1", true)]));
        g.upsert("d".into(), node(vec![owner_ref("o2", true)]));
        assert!(g.dependents("o1").is_empty());
        assert_eq!(g.dependents("o2"), vec!["d".to_string()]);
        g.remove("d");
        assert!(g.dependents("o2").is_empty());
    }
}
