//! A pod watch feeding a reflector store and a controller's expectations.
//!
//! Every event passes through the store first and then through the
//! observer, so by the time an expectation is marked observed the pod is
//! visible to the next reconcile.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use crate::expectations::Expectations;
use crate::podutil::controller_ref;

/// Marks creations and deletions of pods controlled by `owner_kind` as
/// observed in `expectations`.
pub struct Observer {
    owner_kind: &'static str,
    expectations: Arc<Expectations>,
    seen: HashSet<String>,
    relisting: Option<HashSet<String>>,
}

impl Observer {
    pub fn new(owner_kind: &'static str, expectations: Arc<Expectations>) -> Self {
        Self {
            owner_kind,
            expectations,
            seen: HashSet::new(),
            relisting: None,
        }
    }

    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let r = controller_ref(&pod.metadata)?;
        (r.kind == self.owner_kind).then(|| {
            format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                r.name
            )
        })
    }

    fn applied(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let new = !self.seen.contains(&uid);
        if let Some(next) = self.relisting.as_mut() {
            next.insert(uid.clone());
        }
        self.seen.insert(uid);
        let Some(key) = self.owner_key(pod) else {
            return;
        };
        if new {
            self.expectations.creation_observed(&key);
        }
        if pod.metadata.deletion_timestamp.is_some() {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            self.expectations.deletion_observed(&key, name);
        }
    }

    /// Takes one watch event into account.
    pub fn observe(&mut self, event: &Event<Pod>) {
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => self.applied(pod),
            Event::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.seen.remove(uid);
                }
                if let Some(key) = self.owner_key(pod) {
                    let name = pod.metadata.name.as_deref().unwrap_or_default();
                    self.expectations.deletion_observed(&key, name);
                }
            }
            Event::Init => self.relisting = Some(HashSet::new()),
            Event::InitDone => {
                if let Some(next) = self.relisting.take() {
                    self.seen = next;
                }
            }
        }
    }
}

/// Watches all pods: returns the store and the stream of touched pods
/// (which must be polled, e.g. as a controller's trigger).
pub fn watch_pods(
    client: Client,
    observer: Option<Observer>,
) -> (
    Store<Pod>,
    impl Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let mut observer = observer;
    let stream = reflector(
        writer,
        watcher(Api::<Pod>::all(client), watcher::Config::default()).default_backoff(),
    )
    .inspect_ok(move |event| {
        if let Some(o) = observer.as_mut() {
            o.observe(event);
        }
    })
    .touched_objects();
    (store, stream)
}

use kube::runtime::{reflector::reflector, watcher::watcher};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podutil::new_controller_ref;
    use crate::podutil::testing::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::time::Duration;

    fn owned_pod(name: &str) -> Pod {
        let owner = ObjectMeta {
            name: Some("rs".into()),
            uid: Some("u-rs".into()),
            ..Default::default()
        };
        let mut p = pod(name);
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.owner_references =
            new_controller_ref("apps/v1", "ReplicaSet", &owner).map(|r| vec![r]);
        p
    }

    #[test]
    fn an_update_of_a_known_pod_is_not_counted_as_a_creation() {
        let e = Arc::new(Expectations::new(Duration::from_secs(300)));
        let mut o = Observer::new("ReplicaSet", e.clone());
        o.observe(&Event::Apply(owned_pod("a")));
        e.expect_creations("default/rs", 1);
        o.observe(&Event::Apply(owned_pod("a")));
        assert!(!e.satisfied("default/rs"));
        o.observe(&Event::Apply(owned_pod("b")));
        assert!(e.satisfied("default/rs"));
    }

    #[test]
    fn a_terminating_pod_counts_as_an_observed_deletion() {
        let e = Arc::new(Expectations::new(Duration::from_secs(300)));
        let mut o = Observer::new("ReplicaSet", e.clone());
        e.expect_deletions("default/rs", ["a".to_string()]);
        let mut p = owned_pod("a");
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(5)));
        o.observe(&Event::Apply(p));
        assert!(e.satisfied("default/rs"));
    }
}
