//! The ReplicaSet controller: keeps exactly `spec.replicas` active pods
//! matching a ReplicaSet's selector, adopting orphans and releasing pods
//! that stopped matching, and reports the counts in its status.
//!
//! Expectations (see [`crate::expectations`]) stop it from acting on a
//! ReplicaSet again before its watch has seen the pods it created or
//! deleted, and it never acts before its pod store is fully listed.

mod ranking;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info_span, Instrument};

use crate::claim::{self, Claim};
use crate::events::{EventType, Recorder};
use crate::expectations::Expectations;
use crate::podutil::{self, is_active, new_controller_ref};
use crate::podwatch::{watch_pods, Observer};

pub use ranking::{calculate_status, less_valuable_first, pods_to_delete};

/// At most this many pods are created or deleted in one sync (Kubernetes' burstReplicas).
const BURST_REPLICAS: usize = 500;

/// What can go wrong reconciling one ReplicaSet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the ReplicaSet is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// The pod store's writer went away (the watch task ended).
    #[error("the pod store is gone")]
    StoreGone,
    /// Some pods could not be created; the rest of the sync was skipped.
    #[error("cannot create pods: {0}")]
    CreatePods(kube::Error),
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

/// Runs the ReplicaSet controller until its watches end.
pub async fn run(client: Client, config: &crate::Config) {
    let expectations = Arc::new(Expectations::new(config.expectations_timeout));
    let (pods, pod_events) = watch_pods(
        &config.shared_pods,
        client.clone(),
        Some(Observer::new("ReplicaSet", expectations.clone())),
    );
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let replicasets = controller.store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "replicaset-controller"),
        client,
        pods,
        expectations,
    });
    controller
        .watches_stream(pod_events, move |pod| {
            podutil::pod_owners(&replicasets, &pod, |rs: &ReplicaSet| {
                rs.spec.as_ref().map(|s| &s.selector)
            })
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(rs: Arc<ReplicaSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(replicaset = %podutil::key(&rs.metadata), %error, "sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        replicaset = rs.name_any(),
        namespace = rs.namespace().unwrap_or_default()
    );
    sync(rs, ctx).instrument(span).await
}

async fn sync(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreGone)?;
    let key = podutil::key(&rs.metadata);
    let ns = rs.namespace().unwrap_or_default();
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let uid = rs.uid().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    // Pods we deleted that the store no longer has are gone for sure.
    ctx.expectations.retain_deletions(&key, |name| {
        ctx.pods
            .get(&ObjectRef::new(name).within(&ns))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    });
    let needs_sync = ctx.expectations.satisfied(&key);

    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for pod in ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
    {
        match claim::decide(&uid, deleting, &spec.selector, &pod.metadata) {
            Claim::Owned => owned.push(pod),
            Claim::Ignore => {}
            Claim::Adopt if is_active(&pod) => {
                let Some(owner) = new_controller_ref("apps/v1", "ReplicaSet", &rs.metadata) else {
                    continue;
                };
                match claim::adopt(&pod_api, &pod.metadata, owner).await {
                    Ok(p) => owned.push(Arc::new(p)),
                    Err(e) if podutil::is_gone(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Claim::Adopt => {}
            Claim::Release => match claim::release(&pod_api, &pod.metadata, &uid).await {
                Ok(_) => {}
                Err(e) if podutil::is_gone(&e) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    let active: Vec<&Pod> = owned
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| is_active(p))
        .collect();

    let mut manage_error = None;
    if needs_sync && !deleting {
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        if let Err(e) = manage_replicas(&ctx, &rs, &key, &pod_api, &active, want).await {
            manage_error = Some(e);
        }
    }

    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let status = calculate_status(
        rs.status.as_ref(),
        &active,
        &template_labels,
        min_ready,
        rs.metadata.generation,
        now,
    );
    if rs.status.as_ref() != Some(&status) {
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        podutil::write_status(&rs_api, &rs.name_any(), &status).await?;
    }
    if let Some(e) = manage_error {
        return Err(e);
    }
    // Come back when a ready pod becomes available, or when expectations expire.
    let next = active
        .iter()
        .filter_map(|p| podutil::until_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(d) => Action::requeue(d + Duration::from_millis(100)),
        None if !ctx.expectations.satisfied(&key) => Action::requeue(Duration::from_secs(30)),
        None => Action::await_change(),
    })
}

/// Creates or deletes pods to reach `want` active pods.
async fn manage_replicas(
    ctx: &Context,
    rs: &ReplicaSet,
    key: &str,
    pod_api: &Api<Pod>,
    active: &[&Pod],
    want: usize,
) -> Result<(), Error> {
    if active.len() < want {
        let count = (want - active.len()).min(BURST_REPLICAS);
        create_pods(ctx, rs, key, pod_api, count).await
    } else if active.len() > want {
        let count = (active.len() - want).min(BURST_REPLICAS);
        let victims = pods_to_delete(active.to_vec(), count);
        let names: Vec<String> = victims.iter().map(|p| p.name_any()).collect();
        ctx.expectations.expect_deletions(key, names);
        let deletes = victims.iter().map(|pod| async move {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let name = pod.name_any();
            let result = pod_api.delete(&name, &dp).await;
            (name, result)
        });
        let mut first_error = None;
        for (name, result) in futures::future::join_all(deletes).await {
            match result {
                Ok(_) => ctx.recorder.publish(
                    rs,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                ),
                Err(e) => {
                    ctx.expectations.deletion_observed(key, &name);
                    if !podutil::is_gone(&e) {
                        ctx.recorder.publish(
                            rs,
                            EventType::Warning,
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        );
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        first_error.map_or(Ok(()), |e| Err(e.into()))
    } else {
        Ok(())
    }
}

/// Creates `count` pods in batches of 1, 2, 4, … stopping at the first
/// failing batch (Kubernetes' slow start), so a broken template costs one
/// error, not hundreds.
async fn create_pods(
    ctx: &Context,
    rs: &ReplicaSet,
    key: &str,
    pod_api: &Api<Pod>,
    count: usize,
) -> Result<(), Error> {
    let Some(pod) = pod_from_template(rs) else {
        return Ok(());
    };
    ctx.expectations.expect_creations(key, count);
    let mut remaining = count;
    let mut batch = 1;
    while remaining > 0 {
        let n = batch.min(remaining);
        remaining -= n;
        let pp = PostParams::default();
        let creates = (0..n).map(|_| pod_api.create(&pp, &pod));
        let mut failure = None;
        for result in futures::future::join_all(creates).await {
            match result {
                Ok(p) => ctx.recorder.publish(
                    rs,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                ),
                Err(e) => {
                    ctx.expectations.creation_observed(key);
                    ctx.recorder.publish(
                        rs,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    );
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            for _ in 0..remaining {
                ctx.expectations.creation_observed(key);
            }
            return Err(Error::CreatePods(e));
        }
        batch *= 2;
    }
    Ok(())
}

/// A new pod for `rs`: its template, named `<rs>-<random>`, controlled by `rs`.
pub fn pod_from_template(rs: &ReplicaSet) -> Option<Pod> {
    let template: &PodTemplateSpec = rs.spec.as_ref()?.template.as_ref()?;
    let tmeta = template.metadata.clone().unwrap_or_default();
    let owner = new_controller_ref("apps/v1", "ReplicaSet", &rs.metadata)?;
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use std::collections::BTreeMap;

    #[test]
    fn pods_from_a_template_are_controlled_by_their_replicaset_and_named_after_it() {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels.clone()),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        };
        let pod = pod_from_template(&rs).expect("a pod");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.metadata.labels, Some(labels));
        let owner = &pod.metadata.owner_references.expect("owner")[0];
        assert_eq!(owner.uid, "u1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
}
