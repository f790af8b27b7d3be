//! The garbage collector: deletes objects whose owners are gone
//! (background), deletes the dependents of an owner being deleted in the
//! foreground before releasing its `foregroundDeletion` finalizer, and
//! orphans the dependents of an owner deleted with `orphan`.
//!
//! It watches every served kind (from discovery) into an ownership
//! [`graph`], and only acts once all watches listed. An owner missing from
//! the graph is confirmed gone with a live GET (matching uid) before a
//! dependent is deleted, so a lagging watch never deletes a live object's
//! dependents. Cycles in foreground deletion are broken as Kubernetes does:
//! a dependent whose own dependent waits for it stops blocking its owner.

pub mod graph;

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::resources::{Kind, Kinds};
use graph::{judge, Graph, Node, OwnerState, Verdict, FOREGROUND, ORPHAN};

/// What can go wrong processing one object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the object is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

/// What the collector sees of an object: its metadata.
type Meta = PartialObjectMeta<DynamicObject>;

/// Kinds not worth watching: nothing owns them in practice and they churn.
const SKIPPED: &[&str] = &["events", "leases"];

/// Runs the garbage collector until its watches end.
pub async fn run(client: Client, _config: &crate::Config) {
    let kinds = loop {
        match Kinds::discover(client.clone()).await {
            Ok(k) => break k,
            Err(error) => {
                tracing::warn!(%error, "discovery failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // Bounded: when the collector falls behind, the watches wait.
    let (tx, mut rx) = mpsc::channel::<(usize, Event<Meta>)>(1024);
    let mut watched = 0;
    for (i, kind) in kinds.all.iter().enumerate() {
        if SKIPPED.contains(&kind.resource.plural.as_str()) {
            continue;
        }
        watched += 1;
        // Metadata only (PartialObjectMetadata), as kube-controller-manager's
        // collector: ownership lives there, and whole objects cost the API
        // server and this process a decode of every change of every kind.
        let api: Api<Meta> = Api::all_with(client.clone(), &kind.resource);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = events.next().await {
                if let Ok(ev) = ev {
                    if tx.send((i, ev)).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let mut gc = Collector {
        client,
        kinds,
        graph: Graph::default(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        absent: HashSet::new(),
    };
    let mut synced = HashSet::new();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    let mut failed: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some((kind, ev)) = ev else { return };
                if matches!(ev, Event::InitDone) && synced.insert(kind) && synced.len() == watched {
                    tracing::info!(objects = gc.graph.uids().count(), "garbage collector synced");
                    let all: Vec<String> = gc.graph.uids().cloned().collect();
                    for uid in all {
                        gc.enqueue(uid);
                    }
                }
                gc.observe(kind, ev);
            }
            _ = retry.tick() => {
                for uid in failed.drain(..) {
                    gc.enqueue(uid);
                }
            }
        }
        if synced.len() < watched {
            continue;
        }
        // Drain the queue, but keep taking events between items.
        while rx.is_empty() {
            let Some(uid) = gc.queue.pop_front() else {
                break;
            };
            gc.queued.remove(&uid);
            if let Err(error) = gc.process(&uid).await {
                tracing::warn!(%uid, %error, "garbage collection failed; retrying");
                failed.push(uid);
            }
        }
    }
}

struct Collector {
    client: Client,
    kinds: Kinds,
    graph: Graph,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    /// Owners confirmed gone through the API.
    absent: HashSet<String>,
}

impl Collector {
    fn enqueue(&mut self, uid: String) {
        if self.queued.insert(uid.clone()) {
            self.queue.push_back(uid);
        }
    }

    fn node_of(kind: usize, obj: &Meta) -> Node {
        Node {
            kind,
            namespace: obj.namespace(),
            name: obj.name_any(),
            owners: obj.owner_references().to_vec(),
            deleting: obj.metadata.deletion_timestamp.is_some(),
            finalizers: obj.finalizers().to_vec(),
        }
    }

    fn observe(&mut self, kind: usize, ev: Event<Meta>) {
        match ev {
            Event::Apply(obj) | Event::InitApply(obj) => {
                let Some(uid) = obj.uid() else { return };
                let node = Self::node_of(kind, &obj);
                self.absent.remove(&uid);
                let interesting = !node.owners.is_empty()
                    || (node.deleting
                        && (node.has_finalizer(FOREGROUND) || node.has_finalizer(ORPHAN)));
                let old = self.graph.upsert(uid.clone(), node.clone());
                // Owners waiting for this dependent may be free now.
                let mut owners: Vec<String> = node.owners.iter().map(|r| r.uid.clone()).collect();
                owners.extend(old.into_iter().flat_map(|o| o.owners).map(|r| r.uid));
                for o in owners {
                    if self.graph.get(&o).is_some_and(Node::deleting_dependents) {
                        self.enqueue(o);
                    }
                }
                if node.deleting_dependents() || node.has_finalizer(ORPHAN) && node.deleting {
                    for d in self.graph.dependents(&uid) {
                        self.enqueue(d);
                    }
                }
                if interesting {
                    self.enqueue(uid);
                }
            }
            Event::Delete(obj) => {
                let Some(uid) = obj.uid() else { return };
                if let Some(old) = self.graph.remove(&uid) {
                    for r in old.owners {
                        if self
                            .graph
                            .get(&r.uid)
                            .is_some_and(Node::deleting_dependents)
                        {
                            self.enqueue(r.uid);
                        }
                    }
                }
                self.absent.insert(uid.clone());
                if self.absent.len() > 100_000 {
                    self.absent.clear();
                }
                for d in self.graph.dependents(&uid) {
                    self.enqueue(d);
                }
            }
            Event::Init | Event::InitDone => {}
        }
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| kind.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
            None => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    fn node_api(&self, node: &Node) -> Api<DynamicObject> {
        self.api(&self.kinds.all[node.kind], node.namespace.as_deref())
    }

    async fn process(&mut self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph.get(uid).cloned() else {
            return Ok(());
        };
        if node.deleting && node.has_finalizer(ORPHAN) {
            return self.orphan_dependents(uid, &node).await;
        }
        if node.deleting_dependents() {
            return self.delete_dependents(uid, &node).await;
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(());
        }
        let mut states = Vec::new();
        for r in &node.owners {
            states.push((r.uid.clone(), self.owner_state(&node, r).await?));
        }
        let has_dependents = !self.graph.dependents(uid).is_empty();
        match judge(&states, has_dependents) {
            Verdict::Keep => Ok(()),
            Verdict::DropRefs(uids) => {
                let keep: Vec<&OwnerReference> = node
                    .owners
                    .iter()
                    .filter(|r| !uids.contains(&r.uid))
                    .collect();
                self.patch_owner_refs(uid, &node, json!(keep)).await
            }
            Verdict::Delete { foreground } => {
                if foreground && self.has_waiting_dependent(uid) {
                    // A cycle: stop blocking our owners, or we all wait forever.
                    self.unblock(uid, &node).await?;
                }
                let policy = if foreground {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                };
                tracing::info!(namespace = ?node.namespace, name = %node.name, ?policy, "deleting a dependent whose owners are gone");
                self.delete(uid, &node, policy).await
            }
        }
    }

    fn has_waiting_dependent(&self, uid: &str) -> bool {
        self.graph
            .dependents(uid)
            .iter()
            .any(|d| self.graph.get(d).is_some_and(Node::deleting_dependents))
    }

    /// Whether an owner exists, confirming absence through the API.
    async fn owner_state(&mut self, node: &Node, r: &OwnerReference) -> Result<OwnerState, Error> {
        match self.graph.owner_state(&r.uid) {
            OwnerState::Unknown => {}
            s => return Ok(s),
        }
        if self.absent.contains(&r.uid) {
            return Ok(OwnerState::Absent);
        }
        let Some(kind) = self.kinds.lookup(&r.api_version, &r.kind).cloned() else {
            // A kind we cannot resolve: never assume it is gone.
            return Ok(OwnerState::Unknown);
        };
        let api = self.api(&kind, node.namespace.as_deref());
        match api.get_opt(&r.name).await? {
            Some(owner) if owner.uid().as_deref() == Some(r.uid.as_str()) => Ok(
                if owner.metadata.deletion_timestamp.is_some()
                    && owner.finalizers().iter().any(|f| f == FOREGROUND)
                {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                },
            ),
            _ => {
                self.absent.insert(r.uid.clone());
                Ok(OwnerState::Absent)
            }
        }
    }

    async fn delete(&self, uid: &str, node: &Node, policy: PropagationPolicy) -> Result<(), Error> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.node_api(node).delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn patch_owner_refs(
        &self,
        uid: &str,
        node: &Node,
        refs: serde_json::Value,
    ) -> Result<(), Error> {
        let patch = json!({ "metadata": { "uid": uid, "ownerReferences": refs } });
        match self
            .node_api(node)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets `blockOwnerDeletion: false` on every ownerReference of the object.
    async fn unblock(&self, uid: &str, node: &Node) -> Result<(), Error> {
        let refs: Vec<OwnerReference> = node
            .owners
            .iter()
            .cloned()
            .map(|mut r| {
                r.block_owner_deletion = Some(false);
                r
            })
            .collect();
        self.patch_owner_refs(uid, node, json!(refs)).await
    }

    async fn remove_finalizer(&self, uid: &str, node: &Node, finalizer: &str) -> Result<(), Error> {
        let api = self.node_api(node);
        let Some(current) = api.get_opt(&node.name).await? else {
            return Ok(());
        };
        if current.uid().as_deref() != Some(uid) {
            return Ok(());
        }
        let remaining: Vec<&String> = current
            .finalizers()
            .iter()
            .filter(|f| *f != finalizer)
            .collect();
        let patch = json!({ "metadata": {
            "uid": uid,
            "resourceVersion": current.resource_version(),
            "finalizers": remaining,
        }});
        match api
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Orphan propagation: drop references to the owner, then its finalizer.
    async fn orphan_dependents(&mut self, uid: &str, node: &Node) -> Result<(), Error> {
        for d in self.graph.dependents(uid) {
            let Some(dep) = self.graph.get(&d).cloned() else {
                continue;
            };
            let keep: Vec<&OwnerReference> = dep.owners.iter().filter(|r| r.uid != uid).collect();
            self.patch_owner_refs(&d, &dep, json!(keep)).await?;
        }
        self.remove_finalizer(uid, node, ORPHAN).await
    }

    /// Foreground propagation: delete dependents; release the owner once no
    /// dependent blocks it.
    async fn delete_dependents(&mut self, uid: &str, node: &Node) -> Result<(), Error> {
        let blocking = self.graph.blocking_dependents(uid);
        if blocking.is_empty() {
            return self.remove_finalizer(uid, node, FOREGROUND).await;
        }
        for d in self.graph.dependents(uid) {
            let Some(dep) = self.graph.get(&d).cloned() else {
                continue;
            };
            if dep.deleting {
                continue;
            }
            self.enqueue(d);
        }
        Ok(())
    }
}
