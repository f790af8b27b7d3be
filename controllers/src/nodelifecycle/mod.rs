//! The node lifecycle controller: watches Nodes and their Leases in
//! `kube-node-lease`. A node whose heartbeat (Lease renewal or Ready
//! condition heartbeat) has not changed for `node_monitor_grace_period` gets
//! its kubelet conditions set to Unknown; every node gets the
//! `node.kubernetes.io/*` taints its conditions call for (`unreachable` and
//! `not-ready` NoExecute among them), and loses them when it recovers. Pods
//! of a node that stops being Ready are marked Ready=False.
//!
//! Heartbeats are timed on this process's clock from when a change was
//! observed, as Kubernetes does, so clock skew between nodes and the control
//! plane does not matter. Evicting the pods is the taint eviction
//! controller's job ([`crate::tainteviction`]).

pub mod health;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::time::Instant;
use tracing::{info_span, Instrument};

use crate::events::{EventType, Recorder};
use health::{condition_status, conditions};

/// Where nodes keep their heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How often a node that is down is looked at again (Kubernetes'
/// `--node-monitor-period`), so eviction resumes when the cluster leaves
/// full disruption.
const MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// What can go wrong reconciling one node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the node is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// The Lease store's writer went away (the watch task ended).
    #[error("the lease store is gone")]
    StoreGone,
}

/// What this controller remembers about a node between reconciles.
#[derive(Debug)]
struct Observed {
    /// The last heartbeat seen (Lease renewTime and Ready heartbeat).
    heartbeat: String,
    /// When `heartbeat` last changed, on this process's clock.
    since: Instant,
    /// Whether the node was Ready at the last reconcile.
    ready: Option<bool>,
    /// Whether the node's pods were marked not ready since it went down.
    pods_marked: bool,
}

/// Heartbeat observations of every node.
#[derive(Debug, Default)]
pub struct Heartbeats {
    nodes: Mutex<HashMap<String, Observed>>,
}

impl Heartbeats {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Observed>) -> R) -> R {
        let mut guard = match self.nodes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Records `heartbeat` for `node`; returns how long it has been unchanged.
    /// A node seen for the first time counts as having just heartbeaten.
    pub fn observe(&self, node: &str, heartbeat: &str) -> Duration {
        self.with(|m| {
            let now = Instant::now();
            let o = m.entry(node.to_string()).or_insert_with(|| Observed {
                heartbeat: heartbeat.to_string(),
                since: now,
                ready: None,
                pods_marked: false,
            });
            if o.heartbeat != heartbeat {
                o.heartbeat = heartbeat.to_string();
                o.since = now;
            }
            now - o.since
        })
    }

    /// Records readiness; returns `(was ready before, pods need marking)`.
    fn set_ready(&self, node: &str, ready: bool) -> (Option<bool>, bool) {
        self.with(|m| match m.get_mut(node) {
            Some(o) => {
                let before = o.ready.replace(ready);
                if ready {
                    o.pods_marked = false;
                }
                (before, !ready && !o.pods_marked)
            }
            None => (None, false),
        })
    }

    fn pods_marked(&self, node: &str) {
        self.with(|m| {
            if let Some(o) = m.get_mut(node) {
                o.pods_marked = true;
            }
        })
    }
}

struct Context {
    client: Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    heartbeats: Heartbeats,
    grace: Duration,
    recorder: Recorder,
}

/// Runs the node lifecycle controller until its watches end.
pub async fn run(client: Client, config: &crate::Config) {
    let (leases, writer) = reflector::store();
    let lease_events = reflector::reflector(
        writer,
        watcher::watcher(
            Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .touched_objects();
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "node-controller"),
        nodes: controller.store(),
        client,
        leases,
        heartbeats: Heartbeats::default(),
        grace: config.node_monitor_grace_period,
    });
    controller
        .watches_stream(lease_events, |lease: Lease| {
            Some(ObjectRef::<Node>::new(&lease.name_any()))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(node: Arc<Node>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(node = node.name_any(), %error, "node sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        node = node.name_any(),
        rv = node.resource_version()
    );
    sync(node, ctx).instrument(span).await
}

/// The node's heartbeat: its Lease's renewTime and its Ready condition's
/// lastHeartbeatTime. Either changing means the node agent is alive (a
/// kubelet never posts Unknown, so that heartbeat is this controller's).
fn heartbeat(node: &Node, lease: Option<&Lease>) -> String {
    let renew = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.to_string());
    let ready = conditions(node)
        .iter()
        .find(|c| c.type_ == "Ready" && c.status != "Unknown")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0.to_string());
    format!(
        "{}|{}",
        renew.unwrap_or_default(),
        ready.unwrap_or_default()
    )
}

async fn sync(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.leases
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreGone)?;
    let name = node.name_any();
    let lease = ctx
        .leases
        .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
    let age = ctx
        .heartbeats
        .observe(&name, &heartbeat(&node, lease.as_deref()));
    let stale = age >= ctx.grace;
    let api: Api<Node> = Api::all(ctx.client.clone());
    let now = Time(Timestamp::now());

    let mut conds = conditions(&node).to_vec();
    let mut rv = node.resource_version();
    if stale {
        let updates =
            health::unknown_conditions(&conds, node.metadata.creation_timestamp.as_ref(), &now);
        if !updates.is_empty() {
            tracing::info!(age = ?age, "node stopped heartbeating; marking its conditions Unknown");
            let patch = json!({ "status": { "conditions": updates } });
            let updated = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await?;
            rv = updated.resource_version();
            conds = health::merged(&conds, &updates);
        }
    }

    let ready = condition_status(&conds, "Ready") == Some("True");
    let (was_ready, mark_pods) = ctx.heartbeats.set_ready(&name, ready);
    if was_ready == Some(true) && !ready {
        ctx.recorder.publish(
            node.as_ref(),
            EventType::Normal,
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        );
    } else if was_ready == Some(false) && ready {
        ctx.recorder.publish(
            node.as_ref(),
            EventType::Normal,
            "NodeReady",
            format!("Node {name} status is now: NodeReady"),
        );
    }

    let evict = !all_other_nodes_down(&ctx.nodes, &name) || ready;
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let wanted = health::wanted_taints(&conds, unschedulable, evict);
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if let Some(taints) = health::reconcile_taints(&current, &wanted, &now) {
        tracing::info!(taints = ?wanted, "updating node taints");
        let patch = json!({
            "metadata": { "resourceVersion": rv },
            "spec": { "taints": taints },
        });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }

    if mark_pods {
        mark_pods_not_ready(&ctx, &node).await?;
        ctx.heartbeats.pods_marked(&name);
    }

    Ok(if stale || !ready {
        Action::requeue(MONITOR_PERIOD)
    } else {
        Action::requeue(ctx.grace.saturating_sub(age) + Duration::from_millis(100))
    })
}

/// Whether every node other than `name` is not Ready (or there are none):
/// then Kubernetes assumes a control-plane-side outage and evicts nothing.
fn all_other_nodes_down(nodes: &Store<Node>, name: &str) -> bool {
    nodes
        .state()
        .iter()
        .filter(|n| n.name_any() != name)
        .all(|n| condition_status(conditions(n), "Ready") != Some("True"))
}

/// Sets Ready=False on every pod of the node that still says otherwise, as
/// Kubernetes' `MarkPodsNotReady` does, so Services stop sending it traffic.
async fn mark_pods_not_ready(ctx: &Context, node: &Node) -> Result<(), Error> {
    let name = node.name_any();
    let all: Api<Pod> = Api::all(ctx.client.clone());
    let pods = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
        .await?;
    let now = Time(Timestamp::now());
    for pod in pods.items {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        if ready.is_none() || ready.as_deref() == Some("False") {
            continue;
        }
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = json!({
            "metadata": { "uid": pod.uid() },
            "status": { "conditions": [{
                "type": "Ready",
                "status": "False",
                "lastProbeTime": null,
                "lastTransitionTime": now,
            }]},
        });
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => ctx.recorder.publish(
                &pod,
                EventType::Warning,
                "NodeNotReady",
                "Node is not ready".to_string(),
            ),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_ages_until_it_changes() {
        let h = Heartbeats::default();
        assert_eq!(h.observe("n1", "a"), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(h.observe("n1", "a"), Duration::from_secs(30));
        assert_eq!(h.observe("n1", "b"), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(h.observe("n1", "b"), Duration::from_secs(5));
    }

    #[test]
    fn pods_are_marked_once_per_outage() {
        let h = Heartbeats::default();
        h.observe("n1", "a");
        assert_eq!(h.set_ready("n1", true), (None, false));
        assert_eq!(h.set_ready("n1", false), (Some(true), true));
        h.pods_marked("n1");
        assert_eq!(h.set_ready("n1", false), (Some(false), false));
        assert_eq!(h.set_ready("n1", true), (Some(false), false));
        assert_eq!(h.set_ready("n1", false), (Some(true), true));
    }
}
