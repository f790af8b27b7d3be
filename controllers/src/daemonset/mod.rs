//! The DaemonSet controller: one pod per eligible node (see
//! [`placement`]), each pinned to its node by a `metadata.name` node
//! affinity so the scheduler binds it, replaced revision by revision within
//! `maxUnavailable` (or surge-first with `maxSurge`) on a RollingUpdate,
//! its revision history as ControllerRevisions (see [`history`]), and the
//! status `kubectl rollout status ds` reads.
//!
//! Like the ReplicaSet controller it adopts matching orphans, and uses
//! expectations so a lagging watch never makes it create two pods for one
//! node.

pub mod history;
pub mod placement;
pub mod rollout;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tracing::{info_span, Instrument};

use crate::claim::{self, Claim};
use crate::deployment::hash::template_hash;
use crate::events::{EventType, Recorder};
use crate::expectations::Expectations;
use crate::podutil::{self, new_controller_ref, semantic_eq};
use crate::podwatch::{watch_pods, Observer};
use rollout::{NodePods, REVISION_HASH};

/// What can go wrong reconciling one DaemonSet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the DaemonSet is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// A store's writer went away (its watch task ended).
    #[error("a watch store is gone")]
    StoreGone,
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

/// Runs the DaemonSet controller until its watches end.
pub async fn run(client: Client, config: &crate::Config) {
    let expectations = Arc::new(Expectations::new(config.expectations_timeout));
    let (pods, pod_events) = watch_pods(
        &config.shared_pods,
        client.clone(),
        Some(Observer::new("DaemonSet", expectations.clone())),
    );
    let (nodes, writer) = reflector::store();
    let node_events = reflector::reflector(
        writer,
        watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff(),
    )
    .touched_objects();
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let (for_pods, for_nodes) = (controller.store(), controller.store());
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "daemonset-controller"),
        client,
        pods,
        nodes,
        expectations,
    });
    controller
        .watches_stream(pod_events, move |pod| {
            podutil::pod_owners(&for_pods, &pod, |ds: &DaemonSet| {
                ds.spec.as_ref().map(|s| &s.selector)
            })
        })
        .watches_stream(node_events, move |_node: Node| {
            for_nodes
                .state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(ds: Arc<DaemonSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(daemonset = %podutil::key(&ds.metadata), %error, "sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        daemonset = ds.name_any(),
        namespace = ds.namespace().unwrap_or_default()
    );
    sync(ds, ctx).instrument(span).await
}

/// A RollingUpdate's `maxUnavailable` (default 1) and `maxSurge` (default
/// 0) scaled against `desired` (percentages rounded up, as Kubernetes
/// does); `None` for OnDelete. Both zero (rejected by Kubernetes'
/// validation) acts as `maxUnavailable: 1`.
pub fn rolling(ds: &DaemonSet, desired: usize) -> Option<rollout::Rolling> {
    let strategy = ds.spec.as_ref()?.update_strategy.as_ref();
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return None;
    }
    let rolling_update = strategy.and_then(|s| s.rolling_update.as_ref());
    let scaled = |value: Option<IntOrString>, default: i32| match value
        .unwrap_or(IntOrString::Int(default))
    {
        IntOrString::Int(n) => n.max(0) as usize,
        IntOrString::String(s) => {
            let pct: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * desired).div_ceil(100)
        }
    };
    let max_unavailable = scaled(rolling_update.and_then(|r| r.max_unavailable.clone()), 1);
    let max_surge = scaled(rolling_update.and_then(|r| r.max_surge.clone()), 0);
    Some(rollout::Rolling {
        max_unavailable: if max_surge == 0 {
            max_unavailable.max(1)
        } else {
            max_unavailable
        },
        max_surge,
    })
}

async fn sync(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    for ready in [
        ctx.pods.wait_until_ready().await,
        ctx.nodes.wait_until_ready().await,
    ] {
        ready.map_err(|_| Error::StoreGone)?;
    }
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let Some(template_spec) = spec.template.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let key = podutil::key(&ds.metadata);
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.uid().unwrap_or_default();
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision_count);

    ctx.expectations.retain_deletions(&key, |name| {
        ctx.pods
            .get(&ObjectRef::new(name).within(&ns))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    });
    let needs_sync = ctx.expectations.satisfied(&key);

    // Claim pods, then group the live ones by node, oldest first.
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
    {
        let owned = match claim::decide(&uid, deleting, &spec.selector, &pod.metadata) {
            Claim::Owned => pod,
            Claim::Adopt if podutil::is_active(&pod) => {
                let Some(owner) = new_controller_ref("apps/v1", "DaemonSet", &ds.metadata) else {
                    continue;
                };
                match claim::adopt(&pod_api, &pod.metadata, owner).await {
                    Ok(p) => Arc::new(p),
                    Err(e) if podutil::is_gone(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Claim::Release => {
                match claim::release(&pod_api, &pod.metadata, &uid).await {
                    Ok(_) => {}
                    Err(e) if podutil::is_gone(&e) => {}
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            Claim::Adopt | Claim::Ignore => continue,
        };
        if owned.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = placement::pod_node(&owned) {
            by_node.entry(node).or_default().push(owned);
        }
    }
    for pods in by_node.values_mut() {
        pods.sort_by(|a, b| {
            (&a.metadata.creation_timestamp, &a.metadata.name)
                .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
        });
    }
    let mut nodes: Vec<Arc<Node>> = ctx.nodes.state();
    nodes.sort_by_key(|n| n.name_any());
    let node_pods: Vec<NodePods> = nodes
        .iter()
        .map(|n| {
            let name = n.name_any();
            NodePods {
                placement: placement::placement(template_spec, n),
                pods: by_node
                    .get(&name)
                    .map(|v| v.iter().map(AsRef::as_ref).collect())
                    .unwrap_or_default(),
                node: name,
            }
        })
        .collect();

    if !deleting {
        let in_use: std::collections::HashSet<String> = by_node
            .values()
            .flatten()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH).cloned())
            .collect();
        history::sync(&ctx.client, &ds, &hash, &in_use).await?;
    }

    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut manage_error = None;
    if needs_sync && !deleting {
        let desired = node_pods.iter().filter(|n| n.placement.should_run).count();
        let plan = rollout::plan(&node_pods, &hash, rolling(&ds, desired), min_ready, now);
        if let Err(e) = apply(&ctx, &ds, &key, &pod_api, &hash, plan).await {
            manage_error = Some(e);
        }
    }

    let status = rollout::status(
        &node_pods,
        &hash,
        min_ready,
        ds.metadata.generation,
        collision_count,
        now,
    );
    if !ds.status.as_ref().is_some_and(|s| semantic_eq(s, &status)) {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        podutil::write_status(&api, &ds.name_any(), &status).await?;
    }
    if let Some(e) = manage_error {
        return Err(e);
    }
    let next = node_pods
        .iter()
        .flat_map(|n| n.pods.iter())
        .filter_map(|p| podutil::until_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(d) => Action::requeue(d + Duration::from_millis(100)),
        None if !ctx.expectations.satisfied(&key) => Action::requeue(Duration::from_secs(30)),
        None => Action::await_change(),
    })
}

/// A daemon pod for `node`: the template, labelled with its revision,
/// controlled by the DaemonSet, pinned to the node.
pub fn daemon_pod(ds: &DaemonSet, hash: &str, node: &str) -> Option<Pod> {
    let spec = ds.spec.as_ref()?;
    let tmeta = spec.template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = tmeta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.to_string());
    if let Some(g) = ds.metadata.generation {
        labels.insert("pod-template-generation".into(), g.to_string());
    }
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![new_controller_ref(
                "apps/v1",
                "DaemonSet",
                &ds.metadata,
            )?]),
            ..Default::default()
        },
        spec: Some(placement::pin_to_node(spec.template.spec.as_ref()?, node)),
        status: None,
    })
}

async fn apply(
    ctx: &Context,
    ds: &DaemonSet,
    key: &str,
    pod_api: &Api<Pod>,
    hash: &str,
    plan: rollout::Plan,
) -> Result<(), Error> {
    let mut first_error: Option<kube::Error> = None;
    if plan.delete.is_empty() && plan.create.is_empty() {
        return Ok(());
    }
    ctx.expectations
        .expect(key, plan.create.len(), plan.delete.clone());
    if !plan.delete.is_empty() {
        for name in &plan.delete {
            match pod_api.delete(name, &DeleteParams::default()).await {
                Ok(_) => ctx.recorder.publish(
                    ds,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                ),
                Err(e) => {
                    ctx.expectations.deletion_observed(key, name);
                    if !podutil::is_gone(&e) {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    if !plan.create.is_empty() {
        for node in &plan.create {
            let Some(pod) = daemon_pod(ds, hash, node) else {
                ctx.expectations.creation_observed(key);
                continue;
            };
            match pod_api.create(&PostParams::default(), &pod).await {
                Ok(p) => ctx.recorder.publish(
                    ds,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                ),
                Err(e) => {
                    ctx.expectations.creation_observed(key);
                    ctx.recorder.publish(
                        ds,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}
