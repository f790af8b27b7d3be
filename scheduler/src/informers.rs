//! The watches that feed the cache and the queue: pods (all namespaces),
//! nodes and PriorityClasses, each through kube-runtime's `watcher` with
//! its default backoff. A relist (`Init` .. `InitDone`) drops what vanished
//! while the watch was away.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::watch;

use crate::cache::Cache;
use crate::framework::PodInfo;
use crate::priority::PriorityClasses;
use crate::queue::{ClusterEvent, SchedulingQueue};

/// Shared state the watches update.
#[derive(Clone)]
pub struct Shared {
    pub cache: Arc<Mutex<Cache>>,
    pub queue: Arc<SchedulingQueue>,
    pub priorities: Arc<PriorityClasses>,
    pub scheduler_name: String,
}

impl Shared {
    pub fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_pod(&self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let spec = pod.spec.as_ref();
        let node = spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        match node {
            Some(node) => {
                self.queue.delete(&uid);
                if terminal {
                    if self.cache().remove_pod(&uid) {
                        self.queue.on_event(ClusterEvent::AssignedPodDelete);
                    }
                    return;
                }
                let priority = self.priorities.priority_of(&pod);
                let info = Arc::new(PodInfo::new(pod, priority));
                let mut cache = self.cache();
                let new = !cache.is_assumed(&uid) && !cache.pod_uids_contains(&uid);
                cache.upsert_bound_pod(info, &node);
                drop(cache);
                if new {
                    self.queue.on_event(ClusterEvent::AssignedPodAdd);
                }
            }
            None => {
                let ours = spec
                    .and_then(|s| s.scheduler_name.as_deref())
                    .unwrap_or("default-scheduler")
                    == self.scheduler_name;
                if terminal || !ours || pod.metadata.deletion_timestamp.is_some() {
                    self.queue.delete(&uid);
                    return;
                }
                if self.cache().is_assumed(&uid) {
                    return; // being bound; the watch is behind
                }
                let priority = self.priorities.priority_of(&pod);
                self.queue
                    .add_or_update(Arc::new(PodInfo::new(pod, priority)));
            }
        }
    }

    fn on_pod_deleted(&self, uid: &str) {
        self.queue.delete(uid);
        if self.cache().remove_pod(uid) {
            self.queue.on_event(ClusterEvent::AssignedPodDelete);
        }
    }

    fn on_node(&self, node: Node) {
        let known = self
            .cache()
            .node(node.metadata.name.as_deref().unwrap_or_default())
            .is_some();
        if self.cache().upsert_node(node) {
            self.queue.on_event(if known {
                ClusterEvent::NodeUpdate
            } else {
                ClusterEvent::NodeAdd
            });
        }
    }
}

/// Marks a watch as synced once its first list is complete.
fn synced(tx: &watch::Sender<bool>) {
    tx.send_replace(true);
}

pub async fn watch_pods(client: Client, shared: Shared, ready: watch::Sender<bool>) {
    let api: Api<Pod> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut seen: Option<HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => seen = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(seen), Some(uid)) = (seen.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                shared.on_pod(pod);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(seen) = seen.take() {
                    let gone: Vec<String> = {
                        let cache = shared.cache();
                        cache
                            .pod_uids()
                            .into_iter()
                            .filter(|u| !seen.contains(u) && !cache.is_assumed(u))
                            .collect()
                    };
                    for uid in gone {
                        shared.on_pod_deleted(&uid);
                    }
                }
                synced(&ready);
            }
            Ok(watcher::Event::Apply(pod)) => shared.on_pod(pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    shared.on_pod_deleted(uid);
                }
            }
            Err(e) => tracing::warn!(error = %e, "the scheduler's pod watch failed; retrying"),
        }
    }
}

pub async fn watch_nodes(client: Client, shared: Shared, ready: watch::Sender<bool>) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut seen: Option<HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => seen = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(node)) => {
                if let (Some(seen), Some(name)) = (seen.as_mut(), node.metadata.name.clone()) {
                    seen.insert(name);
                }
                shared.on_node(node);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(seen) = seen.take() {
                    let mut cache = shared.cache();
                    for name in cache.node_names() {
                        if !seen.contains(&name) {
                            cache.remove_node(&name);
                        }
                    }
                }
                synced(&ready);
            }
            Ok(watcher::Event::Apply(node)) => shared.on_node(node),
            Ok(watcher::Event::Delete(node)) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    shared.cache().remove_node(name);
                }
            }
            Err(e) => tracing::warn!(error = %e, "the scheduler's node watch failed; retrying"),
        }
    }
}

pub async fn watch_priority_classes(client: Client, shared: Shared, ready: watch::Sender<bool>) {
    let api: Api<PriorityClass> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitApply(pc) | watcher::Event::Apply(pc)) => {
                shared.priorities.upsert(&pc);
            }
            Ok(watcher::Event::Delete(pc)) => {
                shared
                    .priorities
                    .remove(pc.metadata.name.as_deref().unwrap_or_default());
            }
            Ok(watcher::Event::InitDone) => synced(&ready),
            Ok(watcher::Event::Init) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the scheduler's PriorityClass watch failed; retrying")
            }
        }
    }
}
