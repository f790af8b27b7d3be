//! The Deployment controller: rolls a Deployment's pods from ReplicaSet to
//! ReplicaSet (RollingUpdate within `maxSurge`/`maxUnavailable`, or
//! Recreate), names ReplicaSets after a hash of their template, keeps
//! revision annotations for `kubectl rollout history/undo`, scales
//! proportionally during a rollout, prunes old ReplicaSets beyond
//! `revisionHistoryLimit` and reports status and conditions.
//!
//! The pure arithmetic lives in [`rolling`], the status in [`status`], the
//! per-sync steps in [`sync`]; this file wires the watches.

pub mod hash;
pub mod rolling;
pub mod status;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use tracing::{info_span, Instrument};

use crate::events::Recorder;
use crate::podutil::{controller_ref, selector_matches};
use crate::podwatch::watch_pods;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// What can go wrong syncing one Deployment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the Deployment is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// `maxSurge` or `maxUnavailable` cannot be resolved.
    #[error(transparent)]
    Strategy(#[from] rolling::InvalidIntOrPercent),
    /// A ReplicaSet with the hashed name exists with another template; the
    /// collision count was bumped and the next sync uses a new name.
    #[error("replica set {0} already exists with another template")]
    HashCollision(String),
    /// A watch store's writer went away.
    #[error("a watch store is gone")]
    StoreGone,
}

pub(crate) struct Context {
    client: Client,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
    /// The generation of each ReplicaSet (by uid) as this controller last
    /// wrote it: a sync waits until its store has caught up with its own
    /// writes, so it never computes a rollout step from sizes it already
    /// changed.
    written: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl Context {
    fn record_write(&self, rs: &ReplicaSet) {
        if let (Some(uid), Some(generation)) = (rs.uid(), rs.metadata.generation) {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            if written.len() > 100_000 {
                written.clear();
            }
            written.insert(uid, generation);
        }
    }

    /// Whether the store still shows a ReplicaSet older than our last write.
    fn is_stale(&self, rs: &ReplicaSet) -> bool {
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        rs.uid()
            .and_then(|u| written.get(&u).copied())
            .is_some_and(|g| rs.metadata.generation.unwrap_or(0) < g)
    }
}

/// Runs the Deployment controller until its watches end.
pub async fn run(client: Client, config: &crate::Config) {
    let (replicasets, rs_writer) = reflector::store();
    let rs_events = reflector::reflector(
        rs_writer,
        watcher(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .touched_objects();
    let (pods, pod_events) = watch_pods(&config.shared_pods, client.clone(), None);
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let deployments2 = deployments.clone();
    let rs_store = replicasets.clone();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client,
        replicasets,
        pods,
        written: Default::default(),
    });
    controller
        .watches_stream(rs_events, move |rs| deployments_of(&deployments, &rs))
        .watches_stream(pod_events, move |pod| {
            deployment_of_pod(&deployments2, &rs_store, &pod)
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The Deployments that care about a ReplicaSet: its controller, or every
/// Deployment of its namespace whose selector matches an orphan.
fn deployments_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(r) = controller_ref(&rs.metadata) {
        return if r.kind == "Deployment" {
            vec![ObjectRef::new(&r.name).within(&ns)]
        } else {
            Vec::new()
        };
    }
    let labels = rs.labels().clone();
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| {
            d.spec
                .as_ref()
                .is_some_and(|s| selector_matches(&s.selector, &labels))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// Rollouts count pods (surge, availability, Recreate waiting for old pods
/// to be gone), so a pod's change wakes its Deployment.
fn deployment_of_pod(
    deployments: &Store<Deployment>,
    replicasets: &Store<ReplicaSet>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace().unwrap_or_default();
    let rs_ref = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let rs = replicasets.get(&ObjectRef::new(&rs_ref.name).within(&ns))?;
    let d_ref = controller_ref(&rs.metadata).filter(|r| r.kind == "Deployment")?;
    let d_key = ObjectRef::new(&d_ref.name).within(&ns);
    deployments.get(&d_key).map(|_| d_key)
}

fn error_policy(d: Arc<Deployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(deployment = %crate::podutil::key(&d.metadata), %error, "sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        deployment = d.name_any(),
        namespace = d.namespace().unwrap_or_default()
    );
    async move {
        ctx.replicasets
            .wait_until_ready()
            .await
            .map_err(|_| Error::StoreGone)?;
        ctx.pods
            .wait_until_ready()
            .await
            .map_err(|_| Error::StoreGone)?;
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        sync::Sync::new(&ctx, &d).await?.run().await
    }
    .instrument(span)
    .await
}
