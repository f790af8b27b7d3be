//! The Job controller: runs a Job's pods to `completions` with at most
//! `parallelism` at once, replaces failed pods after a backoff until
//! `backoffLimit`, sets the status and conditions as Kubernetes 1.33 does
//! (see [`status`]), and deletes finished Jobs after
//! `ttlSecondsAfterFinished` (Kubernetes' TTL-after-finished controller).
//!
//! A Job's pods are those its controller ownerReference names; when the
//! Job has a selector, matching orphans are adopted too. (Kubernetes'
//! API server generates that selector and the `controller-uid` labels; this
//! controller never does.)

pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{info_span, Instrument};

use crate::claim::{self, Claim};
use crate::events::{EventType, Recorder};
use crate::expectations::Expectations;
use crate::podutil::{self, controller_ref, new_controller_ref, semantic_eq};
use crate::podwatch::{watch_pods, Observer};

/// What can go wrong reconciling one Job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the Job is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// The pod store's writer went away (the watch task ended).
    #[error("the pod store is gone")]
    StoreGone,
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

/// Runs the Job controller until its watches end.
pub async fn run(client: Client, config: &crate::Config) {
    let expectations = Arc::new(Expectations::new(config.expectations_timeout));
    let (pods, pod_events) = watch_pods(
        &config.shared_pods,
        client.clone(),
        Some(Observer::new("Job", expectations.clone())),
    );
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let jobs = controller.store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "job-controller"),
        client,
        pods,
        expectations,
    });
    controller
        .watches_stream(pod_events, move |pod| {
            podutil::pod_owners(&jobs, &pod, |j: &Job| {
                j.spec.as_ref().and_then(|s| s.selector.as_ref())
            })
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn has_selector(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| {
            s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
        })
}

fn error_policy(job: Arc<Job>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %podutil::key(&job.metadata), %error, "sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        job = job.name_any(),
        namespace = job.namespace().unwrap_or_default()
    );
    sync(job, ctx).instrument(span).await
}

/// Deletes a finished Job once its `ttlSecondsAfterFinished` ran out, or
/// says when to look again.
async fn ttl_after_finished(
    ctx: &Context,
    job: &Job,
    finished: Timestamp,
) -> Result<Action, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let expires = finished
        .saturating_add(SignedDuration::from_secs(i64::from(ttl)))
        .unwrap_or(finished);
    let now = Timestamp::now();
    if expires > now {
        let left = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
        return Ok(Action::requeue(left + Duration::from_millis(100)));
    }
    tracing::info!("deleting a finished Job after its TTL");
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(kube::api::Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &dp).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if podutil::is_gone(&e) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

async fn sync(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if let Some(finished) = status::finished_at(&job) {
        return ttl_after_finished(&ctx, &job, finished).await;
    }
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreGone)?;
    let key = podutil::key(&job.metadata);
    let ns = job.namespace().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.expectations.retain_deletions(&key, |name| {
        ctx.pods
            .get(&ObjectRef::new(name).within(&ns))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    });
    let selector = job.spec.as_ref().and_then(|s| s.selector.clone());
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for pod in ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
    {
        let Some(sel) = selector.as_ref().filter(|_| has_selector(&job)) else {
            // No selector: the controller ownerReference alone decides.
            if controller_ref(&pod.metadata).is_some_and(|r| r.uid == uid) {
                owned.push(pod);
            }
            continue;
        };
        match claim::decide(&uid, false, sel, &pod.metadata) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt if podutil::is_active(&pod) => {
                let Some(owner) = new_controller_ref("batch/v1", "Job", &job.metadata) else {
                    continue;
                };
                match claim::adopt(&pod_api, &pod.metadata, owner).await {
                    Ok(p) => owned.push(Arc::new(p)),
                    Err(e) if podutil::is_gone(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Claim::Release => match claim::release(&pod_api, &pod.metadata, &uid).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Claim::Adopt | Claim::Ignore => {}
        }
    }
    let pods: Vec<&Pod> = owned.iter().map(AsRef::as_ref).collect();
    let now = Timestamp::now();
    let decision = status::decide(&job, &pods, now);
    let mut manage_error = None;
    if ctx.expectations.satisfied(&key) {
        if let Err(e) = manage(&ctx, &job, &key, &pod_api, &decision).await {
            manage_error = Some(e);
        }
    }
    if !job
        .status
        .as_ref()
        .is_some_and(|s| semantic_eq(s, &decision.status))
    {
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({ "status": decision.status });
        match api
            .patch_status(
                &job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if podutil::is_gone(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
        match decision.added.as_ref().map(|(t, r, m)| (t.as_str(), r, m)) {
            Some(("Complete", _, _)) => ctx.recorder.publish(
                job.as_ref(),
                EventType::Normal,
                "Completed",
                "Job completed".to_string(),
            ),
            Some(("Failed" | "FailureTarget", reason, message)) => {
                ctx.recorder
                    .publish(job.as_ref(), EventType::Warning, reason, message.clone())
            }
            _ => {}
        }
    }
    if let Some(e) = manage_error {
        return Err(e);
    }
    let deadline = job
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map(|d| Duration::from_secs(d.max(0) as u64));
    Ok(match (decision.wait, deadline) {
        (Some(w), _) => Action::requeue(w + Duration::from_millis(100)),
        (None, Some(d)) => Action::requeue(d.min(Duration::from_secs(60))),
        (None, None) => Action::await_change(),
    })
}

async fn manage(
    ctx: &Context,
    job: &Job,
    key: &str,
    pod_api: &Api<Pod>,
    decision: &status::Decision,
) -> Result<(), Error> {
    if decision.create == 0 && decision.delete.is_empty() {
        return Ok(());
    }
    ctx.expectations
        .expect(key, decision.create, decision.delete.clone());
    let mut first_error: Option<kube::Error> = None;
    for name in &decision.delete {
        match pod_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => ctx.recorder.publish(
                job,
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
    let pod = job_pod(job);
    for _ in 0..decision.create {
        let Some(pod) = pod.as_ref() else {
            ctx.expectations.creation_observed(key);
            continue;
        };
        match pod_api.create(&PostParams::default(), pod).await {
            Ok(p) => ctx.recorder.publish(
                job,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created pod: {}", p.name_any()),
            ),
            Err(e) => {
                ctx.expectations.creation_observed(key);
                ctx.recorder.publish(
                    job,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                );
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// A pod for `job`: its template, named `<job>-<random>`, controlled by it.
pub fn job_pod(job: &Job) -> Option<Pod> {
    let template = &job.spec.as_ref()?.template;
    let tmeta = template.metadata.clone().unwrap_or_default();
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", job.name_any())),
            namespace: job.namespace(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![new_controller_ref("batch/v1", "Job", &job.metadata)?]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}
