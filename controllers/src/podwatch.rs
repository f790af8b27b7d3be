//! One pod watch shared by every controller of a controller manager, as
//! kube-controller-manager's shared informer factory does: a single watch
//! and a single reflector store, fanned out to each controller's stream
//! and its expectations.
//!
//! Every event passes through the store first and then through the
//! observer, so by the time an expectation is marked observed the pod is
//! visible to the next reconcile. A controller that subscribes late (or
//! restarts) first gets the current pods as a fresh `Init` .. `InitDone`.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::mpsc;

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
    pub fn observe<P: Borrow<Pod>>(&mut self, event: &Event<P>) {
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => self.applied(pod.borrow()),
            Event::Delete(pod) => {
                let pod = pod.borrow();
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

type Subscriber = mpsc::UnboundedSender<Event<Arc<Pod>>>;

/// Where the shared watch is in its list/watch cycle.
enum Phase {
    /// No list started yet.
    Idle,
    /// Between `Init` and `InitDone`: the pods listed so far.
    Listing(Vec<Arc<Pod>>),
    /// Listed; live events flow.
    Synced,
}

struct Fanout {
    writer: reflector::store::Writer<Pod>,
    phase: Phase,
    subscribers: Vec<Subscriber>,
}

struct Informer {
    store: Store<Pod>,
    fanout: Mutex<Fanout>,
}

impl Informer {
    fn new() -> Arc<Self> {
        let (store, writer) = reflector::store();
        Arc::new(Informer {
            store,
            fanout: Mutex::new(Fanout {
                writer,
                phase: Phase::Idle,
                subscribers: Vec::new(),
            }),
        })
    }

    fn fanout(&self) -> std::sync::MutexGuard<'_, Fanout> {
        self.fanout.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one event to the store, then hands it to every subscriber,
    /// under one lock so a subscriber joining never misses or reorders one.
    fn publish(&self, event: Event<Pod>) {
        let mut f = self.fanout();
        f.writer.apply_watcher_event(&event);
        let event = match event {
            Event::Apply(p) => Event::Apply(Arc::new(p)),
            Event::Delete(p) => Event::Delete(Arc::new(p)),
            Event::InitApply(p) => Event::InitApply(Arc::new(p)),
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
        };
        match &event {
            Event::Init => f.phase = Phase::Listing(Vec::new()),
            Event::InitApply(p) => {
                if let Phase::Listing(listed) = &mut f.phase {
                    listed.push(p.clone());
                }
            }
            Event::InitDone => f.phase = Phase::Synced,
            Event::Apply(_) | Event::Delete(_) => {}
        }
        f.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<Event<Arc<Pod>>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut f = self.fanout();
        // The receiver is alive here, so these sends cannot fail.
        match &f.phase {
            Phase::Idle => {}
            Phase::Listing(listed) => {
                let _ = tx.send(Event::Init);
                for p in listed {
                    let _ = tx.send(Event::InitApply(p.clone()));
                }
            }
            Phase::Synced => {
                let _ = tx.send(Event::Init);
                for p in self.store.state() {
                    let _ = tx.send(Event::InitApply(p));
                }
                let _ = tx.send(Event::InitDone);
            }
        }
        f.subscribers.push(tx);
        rx
    }
}

/// The pod watch shared by the controllers started with clones of one
/// [`crate::Config`]; started by the first controller that asks.
#[derive(Clone, Default)]
pub struct SharedPods {
    informer: Arc<Mutex<Option<Arc<Informer>>>>,
}

impl std::fmt::Debug for SharedPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedPods")
    }
}

impl SharedPods {
    fn informer(&self, client: Client) -> Arc<Informer> {
        let mut slot = self.informer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = slot.as_ref() {
            return i.clone();
        }
        let informer = Informer::new();
        let feed = informer.clone();
        tokio::spawn(async move {
            let mut events = watcher(Api::<Pod>::all(client), watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => feed.publish(event),
                    Err(e) => {
                        tracing::warn!(error = %e, "the controllers' shared pod watch failed; retrying")
                    }
                }
            }
        });
        *slot = Some(informer.clone());
        informer
    }
}

/// Subscribes to the shared pod watch: returns its store and the stream of
/// touched pods (which must be polled, e.g. as a controller's trigger).
pub fn watch_pods(
    shared: &SharedPods,
    client: Client,
    observer: Option<Observer>,
) -> (
    Store<Pod>,
    impl Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
) {
    let informer = shared.informer(client);
    let rx = informer.subscribe();
    let mut observer = observer;
    let stream = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
    )
    .filter_map(move |event| {
        if let Some(o) = observer.as_mut() {
            o.observe(&event);
        }
        let pod = match event {
            Event::Apply(p) | Event::InitApply(p) | Event::Delete(p) => Some(Ok((*p).clone())),
            Event::Init | Event::InitDone => None,
        };
        futures::future::ready(pod)
    });
    (informer.store.clone(), stream)
}

use kube::runtime::watcher::watcher;

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

    fn names(rx: &mut mpsc::UnboundedReceiver<Event<Arc<Pod>>>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            out.push(match ev {
                Event::Init => "Init".to_string(),
                Event::InitDone => "InitDone".to_string(),
                Event::InitApply(p) => {
                    format!("InitApply {}", p.metadata.name.as_deref().unwrap_or(""))
                }
                Event::Apply(p) => format!("Apply {}", p.metadata.name.as_deref().unwrap_or("")),
                Event::Delete(p) => format!("Delete {}", p.metadata.name.as_deref().unwrap_or("")),
            });
        }
        out
    }

    #[test]
    fn every_subscriber_of_the_shared_pod_watch_sees_the_same_events_in_order() {
        let informer = Informer::new();
        let mut early = informer.subscribe();
        informer.publish(Event::Init);
        informer.publish(Event::InitApply(owned_pod("a")));
        let mut during_list = informer.subscribe();
        informer.publish(Event::InitDone);
        informer.publish(Event::Apply(owned_pod("b")));
        let mut late = informer.subscribe();
        informer.publish(Event::Delete(owned_pod("a")));
        assert_eq!(
            names(&mut early),
            ["Init", "InitApply a", "InitDone", "Apply b", "Delete a"]
        );
        assert_eq!(
            names(&mut during_list),
            ["Init", "InitApply a", "InitDone", "Apply b", "Delete a"]
        );
        // A late subscriber starts with the current pods (in store order).
        let mut got = names(&mut late);
        got[1..3].sort();
        assert_eq!(
            got,
            ["Init", "InitApply a", "InitApply b", "InitDone", "Delete a"]
        );
        assert_eq!(
            informer.store.state().len(),
            1,
            "the store saw the deletion"
        );
    }
}
