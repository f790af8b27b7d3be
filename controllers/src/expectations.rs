//! Controller expectations, as Kubernetes' `ControllerExpectations`: before a
//! controller creates or deletes pods it records what it expects its watch
//! to report, and it does not act again on that owner until the watch has
//! caught up (or the expectations expired). This is what keeps a lagging
//! watch from making a ReplicaSet create the same pods twice.
//!
//! A freshly started controller has no expectations and waits for its pod
//! store to be fully listed before acting, so a restart creates nothing
//! extra either.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
struct Entry {
    /// Creations not yet observed (counted: generated names are unknown
    /// until the create returns, and the watch may report them first).
    adds: i64,
    /// Names of pods whose deletion was requested but not yet observed.
    deletes: HashSet<String>,
    set_at: Instant,
}

/// Expectations of many owners, keyed by `namespace/name`.
#[derive(Debug)]
pub struct Expectations {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Expectations {
    /// `ttl` bounds how long a lost watch event can stall an owner
    /// (Kubernetes: 5 minutes).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> R) -> R {
        let mut guard = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Whether the owner may act: everything it expected was observed, or
    /// the expectations are older than the ttl, or it never expected anything.
    pub fn satisfied(&self, key: &str) -> bool {
        let ttl = self.ttl;
        self.with(|m| match m.get(key) {
            None => true,
            Some(e) => (e.adds <= 0 && e.deletes.is_empty()) || e.set_at.elapsed() > ttl,
        })
    }

    /// Records that `count` pods are about to be created for `key`.
    pub fn expect_creations(&self, key: &str, count: usize) {
        self.with(|m| {
            m.insert(
                key.to_string(),
                Entry {
                    adds: count as i64,
                    deletes: HashSet::new(),
                    set_at: Instant::now(),
                },
            );
        })
    }

    /// Records that the named pods are about to be deleted for `key`.
    pub fn expect_deletions(&self, key: &str, names: impl IntoIterator<Item = String>) {
        self.with(|m| {
            m.insert(
                key.to_string(),
                Entry {
                    adds: 0,
                    deletes: names.into_iter().collect(),
                    set_at: Instant::now(),
                },
            );
        })
    }

    /// Records creations and deletions about to happen in one sync.
    pub fn expect(&self, key: &str, count: usize, names: impl IntoIterator<Item = String>) {
        self.with(|m| {
            m.insert(
                key.to_string(),
                Entry {
                    adds: count as i64,
                    deletes: names.into_iter().collect(),
                    set_at: Instant::now(),
                },
            );
        })
    }

    /// A new pod of `key` was observed (or a create failed and never will be).
    pub fn creation_observed(&self, key: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.adds -= 1;
            }
        })
    }

    /// The named pod of `key` was seen terminating or gone (or its delete failed).
    pub fn deletion_observed(&self, key: &str, name: &str) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.deletes.remove(name);
            }
        })
    }

    /// Keeps only the expected deletions for which `still_there` holds: a pod
    /// missing from a synced store is gone even if its delete event was lost
    /// to a relist.
    pub fn retain_deletions(&self, key: &str, still_there: impl Fn(&str) -> bool) {
        self.with(|m| {
            if let Some(e) = m.get_mut(key) {
                e.deletes.retain(|n| still_there(n));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_without_expectations_may_act() {
        let e = Expectations::new(Duration::from_secs(300));
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn creations_must_all_be_observed_before_acting_again() {
        let e = Expectations::new(Duration::from_secs(300));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn deletions_are_tracked_by_pod_name() {
        let e = Expectations::new(Duration::from_secs(300));
        e.expect_deletions("ns/rs", ["a".to_string(), "b".to_string()]);
        e.deletion_observed("ns/rs", "a");
        e.deletion_observed("ns/rs", "a");
        assert!(!e.satisfied("ns/rs"));
        e.retain_deletions("ns/rs", |n| n != "b");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn observations_of_other_owners_do_not_count() {
        let e = Expectations::new(Duration::from_secs(300));
        e.expect_creations("ns/a", 1);
        e.creation_observed("ns/b");
        assert!(!e.satisfied("ns/a"));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire_after_the_ttl() {
        let e = Expectations::new(Duration::from_secs(300));
        e.expect_creations("ns/rs", 1);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(!e.satisfied("ns/rs"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(e.satisfied("ns/rs"));
    }
}
