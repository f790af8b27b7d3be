//! The taint eviction controller (Kubernetes' taint manager): a pod on a
//! node with a NoExecute taint it does not tolerate is deleted at once; a
//! pod that tolerates every such taint for a limited `tolerationSeconds` is
//! deleted when the first of those runs out (counted from the taint's
//! `timeAdded`); a pod tolerating them without limit stays.
//!
//! Reconciles per node: a node without NoExecute taints costs a store
//! lookup, so pod churn on healthy nodes is cheap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{info_span, Instrument};

use crate::events::{EventType, Recorder};
use crate::podutil::is_active;
use crate::podwatch::watch_pods;
use crate::taints::{matching_toleration, NO_EXECUTE};

/// What can go wrong reconciling one node's pods.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the node is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// The pod store's writer went away (the watch task ended).
    #[error("the pod store is gone")]
    StoreGone,
}

/// What happens to one pod on a node with NoExecute taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A taint is not tolerated (or its toleration ran out): delete now.
    Evict,
    /// Every taint is tolerated until this moment.
    EvictAt(Timestamp),
    /// Every taint is tolerated forever.
    Keep,
}

/// Judges a pod with `tolerations` against the NoExecute `taints` at `now`;
/// `added(taint)` is when each taint appeared.
pub fn verdict(
    tolerations: &[Toleration],
    taints: &[Taint],
    added: impl Fn(&Taint) -> Timestamp,
    now: Timestamp,
) -> Verdict {
    let mut deadline: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let Some(toleration) = matching_toleration(tolerations, taint) else {
            return Verdict::Evict;
        };
        let Some(seconds) = toleration.toleration_seconds else {
            continue;
        };
        let at = added(taint).saturating_add(SignedDuration::from_secs(seconds.max(0)));
        let at = at.unwrap_or(now);
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    match deadline {
        Some(d) if d <= now => Verdict::Evict,
        Some(d) => Verdict::EvictAt(d),
        None => Verdict::Keep,
    }
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    /// When a NoExecute taint without `timeAdded` was first seen, by
    /// `node/key`.
    first_seen: Mutex<HashMap<String, Timestamp>>,
    recorder: Recorder,
}

/// Runs the taint eviction controller until its watches end.
pub async fn run(client: Client, config: &crate::Config) {
    let (pods, pod_events) = watch_pods(&config.shared_pods, client.clone(), None);
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "taint-eviction-controller"),
        client,
        pods,
        first_seen: Mutex::new(HashMap::new()),
    });
    controller
        .watches_stream(pod_events, |pod: Pod| {
            let node = pod.spec.as_ref()?.node_name.clone()?;
            Some(ObjectRef::<Node>::new(&node))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(node: Arc<Node>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(node = node.name_any(), %error, "taint eviction failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!("reconcile", node = node.name_any());
    sync(node, ctx).instrument(span).await
}

async fn sync(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = node.name_any();
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .cloned()
        .collect();
    let now = Timestamp::now();
    let added = {
        let mut seen = match ctx.first_seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let prefix = format!("{name}/");
        seen.retain(|k, _| {
            !k.starts_with(&prefix) || taints.iter().any(|t| *k == format!("{name}/{}", t.key))
        });
        taints
            .iter()
            .map(|t| {
                let at = t
                    .time_added
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or_else(|| *seen.entry(format!("{name}/{}", t.key)).or_insert(now));
                (t.key.clone(), at)
            })
            .collect::<HashMap<_, _>>()
    };
    if taints.is_empty() {
        return Ok(Action::await_change());
    }
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreGone)?;
    let mut next: Option<Timestamp> = None;
    for pod in ctx.pods.state() {
        let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str());
        if !on_node || !is_active(&pod) {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        let at = |t: &Taint| added.get(&t.key).copied().unwrap_or(now);
        match verdict(tolerations, &taints, at, now) {
            Verdict::Evict => evict(&ctx, &pod).await?,
            Verdict::EvictAt(t) => next = Some(next.map_or(t, |n| n.min(t))),
            Verdict::Keep => {}
        }
    }
    Ok(match next {
        Some(t) => {
            let wait = t.duration_since(Timestamp::now());
            let wait = Duration::try_from(wait).unwrap_or_default();
            Action::requeue(wait + Duration::from_millis(50))
        }
        None => Action::await_change(),
    })
}

/// Deletes a pod for a NoExecute taint, first marking it with the
/// `DisruptionTarget` condition as Kubernetes does.
async fn evict(ctx: &Context, pod: &Pod) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    tracing::info!(pod = %name, namespace = %ns, "evicting a pod for a NoExecute taint");
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "metadata": { "uid": pod.uid() },
        "status": { "conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Time(Timestamp::now()),
        }]},
    });
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {
            ctx.recorder.publish(
                pod,
                EventType::Normal,
                "TaintManagerEviction",
                format!("Marking for deletion Pod {ns}/{name}"),
            );
            Ok(())
        }
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podutil::testing::ts;
    use crate::taints::{taint, NOT_READY, UNREACHABLE};

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn a_pod_without_a_matching_toleration_is_evicted_at_once() {
        let taints = [taint(UNREACHABLE, NO_EXECUTE)];
        let tols = [toleration(NOT_READY, Some(300))];
        assert_eq!(verdict(&tols, &taints, |_| ts(0), ts(1)), Verdict::Evict);
    }

    #[test]
    fn a_pod_is_evicted_when_its_toleration_seconds_run_out_from_the_taints_time() {
        let taints = [taint(UNREACHABLE, NO_EXECUTE)];
        let tols = [toleration(UNREACHABLE, Some(5))];
        assert_eq!(
            verdict(&tols, &taints, |_| ts(100), ts(102)),
            Verdict::EvictAt(ts(105))
        );
        assert_eq!(
            verdict(&tols, &taints, |_| ts(100), ts(105)),
            Verdict::Evict
        );
    }

    #[test]
    fn the_shortest_toleration_among_the_taints_wins() {
        let taints = [taint(UNREACHABLE, NO_EXECUTE), taint(NOT_READY, NO_EXECUTE)];
        let tols = [
            toleration(UNREACHABLE, Some(50)),
            toleration(NOT_READY, Some(20)),
        ];
        assert_eq!(
            verdict(&tols, &taints, |_| ts(0), ts(1)),
            Verdict::EvictAt(ts(20))
        );
    }

    #[test]
    fn a_toleration_without_seconds_keeps_the_pod_forever() {
        let taints = [taint(UNREACHABLE, NO_EXECUTE)];
        let tols = [toleration(UNREACHABLE, None)];
        assert_eq!(verdict(&tols, &taints, |_| ts(0), ts(1_000)), Verdict::Keep);
    }

    #[test]
    fn negative_toleration_seconds_evict_at_once() {
        let taints = [taint(UNREACHABLE, NO_EXECUTE)];
        let tols = [toleration(UNREACHABLE, Some(-1))];
        assert_eq!(verdict(&tols, &taints, |_| ts(10), ts(10)), Verdict::Evict);
    }

    #[test]
    fn no_schedule_taints_do_not_evict() {
        let taints = [taint(UNREACHABLE, "NoSchedule")];
        assert_eq!(verdict(&[], &taints, |_| ts(0), ts(1)), Verdict::Keep);
    }
}
