//! The scheduling loop: pop a pod, decide under the cache lock, assume it,
//! bind in the background; or explain the failure, try preemption and park
//! the pod in the queue. One `schedule` span per attempt.

use std::sync::Arc;
use std::time::Instant;

use kube::Client;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::algorithm::{Algorithm, FitError};
use crate::framework::PodInfo;
use crate::informers::Shared;
use crate::metrics::{AttemptResult, Metrics};
use crate::queue::QueuedPod;
use crate::{api, preemption, PreemptionPolicy};

pub struct Loop {
    pub client: Client,
    pub shared: Shared,
    pub algorithm: Algorithm,
    pub metrics: Metrics,
    pub preemption: PreemptionPolicy,
    /// Bounds bindings in flight; the loop waits for a slot when all are busy.
    pub binds: Arc<Semaphore>,
    /// Bounds status/event writes in flight; the loop waits likewise.
    pub writes: Arc<Semaphore>,
}

impl Loop {
    pub async fn run(mut self) {
        while let Some(qp) = self.shared.queue.pop().await {
            let span = tracing::info_span!(
                "schedule",
                pod = %qp.info.name,
                namespace = %qp.info.namespace,
                attempt = qp.attempts,
                node = tracing::field::Empty,
            );
            self.schedule_one(qp).instrument(span).await;
        }
    }

    async fn schedule_one(&mut self, qp: QueuedPod) {
        let started = Instant::now();
        let pod = qp.info.clone();
        let decision = {
            let mut cache = self.shared.cache();
            let d = self.algorithm.schedule(&pod, cache.nodes());
            if let Ok(d) = &d {
                cache.assume(pod.clone(), &d.node);
            }
            d
        };
        match decision {
            Ok(d) => {
                tracing::Span::current().record("node", d.node.as_str());
                tracing::trace!(evaluated = d.evaluated, feasible = d.feasible, "assumed");
                self.bind(pod, d.node, started).await;
            }
            Err(fit) => self.unschedulable(pod, fit, started).await,
        }
    }

    async fn bind(&self, pod: Arc<PodInfo>, node: String, started: Instant) {
        let Ok(permit) = self.binds.clone().acquire_owned().await else {
            return;
        };
        let client = self.client.clone();
        let shared = self.shared.clone();
        let metrics = self.metrics.clone();
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                match api::bind(&client, &pod, &node).await {
                    Ok(()) => {
                        shared.queue.done(&pod.uid);
                        metrics.observe_attempt(AttemptResult::Scheduled, started.elapsed());
                        tracing::trace!("bound");
                    }
                    Err(e) => {
                        shared.cache().forget(&pod.uid);
                        metrics.observe_attempt(AttemptResult::Error, started.elapsed());
                        match &e {
                            // Deleted, or bound by someone else: nothing to retry.
                            kube::Error::Api(s) if s.code == 404 || s.code == 409 => {
                                tracing::info!(error = %e, "binding refused; dropping the pod");
                                shared.queue.delete(&pod.uid);
                            }
                            _ => {
                                tracing::warn!(error = %e, "binding failed; retrying after backoff");
                                shared.queue.retry_after_backoff(&pod.uid);
                            }
                        }
                    }
                }
                drop(permit);
            }
            .instrument(span),
        );
    }

    async fn unschedulable(&mut self, pod: Arc<PodInfo>, mut fit: Box<FitError>, started: Instant) {
        let mut nominated = None;
        let mut victims = Vec::new();
        if self.preemption == PreemptionPolicy::Enabled && preemption::eligible(&pod) {
            self.metrics.observe_preemption_attempt();
            let candidate = {
                let cache = self.shared.cache();
                preemption::find_candidate(&self.algorithm.framework, &pod, cache.nodes(), &fit)
            };
            match candidate {
                Some(c) => {
                    tracing::info!(node = %c.node, victims = c.victims.len(), "preempting");
                    nominated = Some(c.node);
                    victims = c.victims;
                }
                None => {
                    fit.post_filter_message =
                        Some(preemption::no_candidate_message(fit.num_all_nodes, &fit));
                }
            }
        }
        let message = fit.message();
        tracing::debug!(%message, "unschedulable");
        self.shared
            .queue
            .unschedulable(&pod.uid, std::mem::take(&mut fit.failed_plugins));
        self.metrics
            .observe_attempt(AttemptResult::Unschedulable, started.elapsed());
        let Ok(permit) = self.writes.clone().acquire_owned().await else {
            return;
        };
        let client = self.client.clone();
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                if let Some(node) = nominated.as_deref() {
                    for v in &victims {
                        evict(&client, &pod, v, node).await;
                    }
                }
                if let Err(e) =
                    api::record_unschedulable(&client, &pod, &message, nominated.as_deref()).await
                {
                    tracing::warn!(error = %e, "cannot record the scheduling failure");
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Deletes a victim (with its grace period) and says why on the victim.
async fn evict(client: &Client, preemptor: &PodInfo, victim: &PodInfo, node: &str) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, Preconditions};
    let api: Api<Pod> = Api::namespaced(client.clone(), &victim.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(victim.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&victim.name, &params).await {
        Ok(_) => {
            let msg = format!("Preempted by pod {} on node {node}", preemptor.uid);
            if let Err(e) = api::event(client, victim, "Normal", "Preempted", &msg).await {
                tracing::debug!(error = %e, "cannot record the preemption event");
            }
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(victim = %victim.key(), error = %e, "cannot preempt"),
    }
}
