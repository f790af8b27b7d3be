//! The node's pods: one watch of the pods bound to this node
//! (`fieldSelector=spec.nodeName=<node>`), one [`Worker`] task per pod UID.
//!
//! Each worker gets the latest Pod through a `watch` channel (only the
//! newest version matters, so the channel never fills), and a `Notify`
//! poked when one of its containers exits. A pod gone from the API (a
//! Delete event, or missing from a re-list) is sent as `None`.
//!
//! After the first list, pods the runtime still runs but the API no longer
//! has (deleted while the agent was down) are stopped and removed.
//!
//! The eviction manager reaches the pods through [`PodCommand`]s: the
//! active pods, and evicting one (done by its worker).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::status::is_terminal;
use super::worker::{EvictRequest, NodeContext, Worker};
use crate::containerd::pod_runtime::PodRuntime;

/// Grace given to containers of pods deleted while the agent was down.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

struct WorkerHandle {
    pod: watch::Sender<Option<Pod>>,
    wake: Arc<Notify>,
    evict: mpsc::Sender<EvictRequest>,
    task: JoinHandle<()>,
}

/// What the eviction manager asks of the node's pods.
#[derive(Debug)]
pub(crate) enum PodCommand {
    /// The pods whose workers run and whose phase is not final.
    Active(oneshot::Sender<Vec<Pod>>),
    /// Evict the pod with this UID (its worker answers `done`).
    Evict {
        uid: String,
        message: String,
        done: oneshot::Sender<bool>,
    },
}

/// Dispatches pod events and container exits to per-pod workers.
pub(crate) struct PodManager<R: PodRuntime> {
    client: Client,
    node: Arc<NodeContext>,
    runtime: Arc<R>,
    workers: HashMap<String, WorkerHandle>,
    commands: mpsc::Receiver<PodCommand>,
}

impl<R: PodRuntime> Drop for PodManager<R> {
    fn drop(&mut self) {
        for worker in self.workers.values() {
            worker.task.abort();
        }
    }
}

impl<R: PodRuntime> PodManager<R> {
    pub(crate) fn new(
        client: Client,
        node: Arc<NodeContext>,
        runtime: Arc<R>,
        commands: mpsc::Receiver<PodCommand>,
    ) -> Self {
        Self {
            client,
            node,
            runtime,
            workers: HashMap::new(),
            commands,
        }
    }

    /// Runs until the task is dropped.
    pub(crate) async fn run(mut self) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.node.name));
        let mut events = watcher(api, config).default_backoff().boxed();
        let mut exits = self.runtime.exits();
        let mut listing: Option<HashSet<String>> = None;
        let mut cleaned_orphans = false;
        let mut commands_open = true;
        loop {
            tokio::select! {
                command = self.commands.recv(), if commands_open => match command {
                    Some(command) => self.command(command),
                    None => commands_open = false,
                },
                event = events.next() => match event {
                    None => return,
                    Some(Ok(watcher::Event::Init)) => listing = Some(HashSet::new()),
                    Some(Ok(watcher::Event::InitApply(pod))) => {
                        if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                            seen.insert(uid);
                        }
                        self.apply(pod);
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        let seen = listing.take().unwrap_or_default();
                        let vanished: Vec<String> = self
                            .workers
                            .keys()
                            .filter(|uid| !seen.contains(*uid))
                            .cloned()
                            .collect();
                        for uid in vanished {
                            self.gone(&uid);
                        }
                        if !cleaned_orphans {
                            cleaned_orphans = true;
                            tokio::spawn(clean_orphans(self.runtime.clone(), seen));
                        }
                    }
                    Some(Ok(watcher::Event::Apply(pod))) => self.apply(pod),
                    Some(Ok(watcher::Event::Delete(pod))) => {
                        if let Some(uid) = pod.metadata.uid.as_deref() {
                            self.gone(uid);
                        }
                    }
                    Some(Err(error)) => warn!(node = %self.node.name, %error, "the pod watch failed; retrying"),
                },
                exit = exits.recv() => match exit {
                    Ok(exit) => {
                        if let Some(worker) = self.workers.get(&exit.pod_uid) {
                            worker.wake.notify_one();
                        }
                    }
                    // Missed exits: every worker resyncs from the runtime.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for worker in self.workers.values() {
                            worker.wake.notify_one();
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => exits = self.runtime.exits(),
                },
            }
        }
    }

    fn command(&self, command: PodCommand) {
        match command {
            PodCommand::Active(reply) => {
                let active = self
                    .workers
                    .values()
                    .filter(|w| !w.task.is_finished())
                    .filter_map(|w| w.pod.borrow().clone())
                    .filter(|pod| {
                        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                        !phase.is_some_and(is_terminal)
                    })
                    .collect();
                let _ = reply.send(active);
            }
            PodCommand::Evict { uid, message, done } => {
                // A worker gone or busy with another eviction drops `done`:
                // the manager reads that as "not evicted".
                if let Some(worker) = self.workers.get(&uid) {
                    let _ = worker.evict.try_send(EvictRequest { message, done });
                }
            }
        }
    }

    fn apply(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(worker) = self.workers.get(&uid) {
            // A finished worker deleted its pod; ignore its last updates.
            if !worker.task.is_finished() {
                worker.pod.send_replace(Some(pod));
            }
            return;
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let (pod_tx, pod_rx) = watch::channel(Some(pod));
        let wake = Arc::new(Notify::new());
        let (evict, evictions) = mpsc::channel(1);
        let worker = Worker::new(
            self.runtime.clone(),
            Api::namespaced(self.client.clone(), &namespace),
            self.node.clone(),
            pod_rx,
            wake.clone(),
            evictions,
        );
        let task = tokio::spawn(worker.run());
        self.workers.insert(
            uid,
            WorkerHandle {
                pod: pod_tx,
                wake,
                evict,
                task,
            },
        );
    }

    fn gone(&mut self, uid: &str) {
        if let Some(worker) = self.workers.remove(uid) {
            // The worker stops the containers and ends; nothing waits on it.
            worker.pod.send_replace(None);
        }
    }
}

/// Stops pods the runtime runs that the API no longer has.
async fn clean_orphans<R: PodRuntime>(runtime: Arc<R>, known: HashSet<String>) {
    let pods = match runtime.list_pods().await {
        Ok(pods) => pods,
        Err(error) => {
            warn!(%error, "cannot list the runtime's pods to clean up orphans");
            return;
        }
    };
    for orphan in pods.into_iter().filter(|p| !known.contains(&p.uid)) {
        let mut pod = Pod::default();
        pod.metadata.uid = Some(orphan.uid.clone());
        pod.metadata.name = Some(orphan.name.clone());
        pod.metadata.namespace = Some(orphan.namespace.clone());
        match runtime.stop_pod(&pod, ORPHAN_GRACE).await {
            Ok(_) => info!(pod = %orphan.name, namespace = %orphan.namespace, uid = %orphan.uid,
                "removed a pod deleted while the agent was down"),
            Err(error) => warn!(pod = %orphan.name, %error, "cannot remove an orphaned pod"),
        }
    }
}
