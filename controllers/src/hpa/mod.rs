//! The HorizontalPodAutoscaler controller (`autoscaling/v2`), as
//! Kubernetes' `pkg/controller/podautoscaler`.
//!
//! Every `sync_period`, and at once when an HPA's spec changes, each HPA
//! reads its target's `scale` subresource, takes the pods of the Scale's
//! `status.selector` from a pod watch, reads metrics through the API
//! (`metrics.k8s.io/v1beta1` PodMetrics and `custom.metrics.k8s.io/v1beta2`,
//! see [`metrics`]), proposes a size per metric ([`replicas`]), takes the
//! largest, applies `behavior` ([`behavior`]) and the min/max bounds, writes
//! the Scale, and writes the status with Kubernetes' conditions
//! (`AbleToScale`, `ScalingActive`, `ScalingLimited`) and events
//! (`SuccessfulRescale`, `FailedGetResourceMetric`, …).
//!
//! Memory kept between syncs (recent recommendations and scale events, per
//! HPA) lives in this process only, as in Kubernetes.

pub mod behavior;
mod decide;
mod metric;
pub mod metrics;
mod quantity;
pub mod replicas;
mod scale;
mod selector;
mod status;
#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, PredicateConfig, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::time::Instant;
use tracing::{info_span, Instrument};

use crate::events::{EventType, Recorder};
use crate::podutil;
use crate::podwatch::watch_pods;
use behavior::History;
use decide::{decide, Inputs, Pods};
use metrics::{ApiMetrics, MetricsSource};
use replicas::Calculator;
use selector::Selector;
use status::{set_condition, ABLE_TO_SCALE};

/// Settings of the HPA controller (Kubernetes' kube-controller-manager
/// `--horizontal-pod-autoscaler-*` flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// How often each HPA is reconciled (`--horizontal-pod-autoscaler-sync-period`).
    /// Kubernetes uses 15 s; skiff defaults to 1 s so a metric change is
    /// acted on within about a second. One sync costs a Scale GET and one
    /// metrics GET per metric (pods come from a watch). Measured
    /// 2026-11-22 (debug build, 2 cores, `skiff up --runtime sim`, 50
    /// Deployments each with a cpu HPA, metrics API not served): the skiff
    /// process used 0.06 core at 1 s against 0.002 core without HPAs, i.e.
    /// about 1.2 ms of CPU per HPA sync; listing pods through the API on
    /// every sync instead cost 0.24 core.
    pub sync_period: Duration,
    /// Changes of the usage ratio within this fraction of 1.0 are ignored
    /// (`--horizontal-pod-autoscaler-tolerance`, 0.1).
    pub tolerance: f64,
    /// Default scale-down stabilization window
    /// (`--horizontal-pod-autoscaler-downscale-stabilization`, 5 min).
    pub downscale_stabilization: Duration,
    /// How long after a pod starts its cpu samples may predate readiness
    /// (`--horizontal-pod-autoscaler-cpu-initialization-period`, 5 min).
    pub cpu_initialization_period: Duration,
    /// How long after a pod starts an unready pod is taken as never ready
    /// (`--horizontal-pod-autoscaler-initial-readiness-delay`, 30 s).
    pub initial_readiness_delay: Duration,
    /// The same warning event (reason) about one HPA is recorded at most
    /// once per this interval; client-go's recorder would aggregate them
    /// into one Event with a count, which skiff's recorder does not do.
    pub warning_event_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sync_period: Duration::from_secs(1),
            tolerance: 0.1,
            downscale_stabilization: Duration::from_secs(300),
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
            warning_event_interval: Duration::from_secs(60),
        }
    }
}

impl Config {
    fn calculator(&self) -> Calculator {
        Calculator {
            tolerance: self.tolerance,
            cpu_initialization_period: self.cpu_initialization_period,
            initial_readiness_delay: self.initial_readiness_delay,
        }
    }
}

/// What can go wrong reconciling one HPA; it is retried after the sync period.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request (the status write) failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// The pod store's writer went away (the pod watch ended).
    #[error("the pod store is gone")]
    StoreGone,
}

/// Per-HPA memory between syncs.
struct Memory {
    uid: Option<String>,
    history: History,
    warned: HashMap<&'static str, Instant>,
    last_error: Option<String>,
    seen: Instant,
}

/// Memory of an HPA not seen for this long is dropped (it was deleted).
const FORGET_AFTER: Duration = Duration::from_secs(600);

struct Context {
    client: Client,
    /// Every pod, from one watch (Kubernetes' pod lister).
    pods: Store<Pod>,
    /// Every HPA (the controller's own store).
    hpas: Store<HorizontalPodAutoscaler>,
    /// The last selector each HPA synced with, by key, with the HPA's uid.
    selectors: Mutex<HashMap<String, (Option<String>, Selector)>>,
    config: Config,
    metrics: Arc<dyn MetricsSource>,
    recorder: Recorder,
    memory: Mutex<HashMap<String, Memory>>,
}

impl Context {
    /// Takes the memory of `key` out (a reconcile of one HPA never runs
    /// twice at once), starting afresh when the HPA was re-created.
    fn take(&self, key: &str, uid: Option<String>, now: Instant) -> Memory {
        let mut all = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, m| now.duration_since(m.seen) < FORGET_AFTER);
        match all.remove(key) {
            Some(m) if m.uid == uid => m,
            _ => Memory {
                uid,
                history: History::default(),
                warned: HashMap::new(),
                last_error: None,
                seen: now,
            },
        }
    }

    /// Records `key`'s selector and returns the other live HPAs of `ns`
    /// whose last selector selects one of `pods` (upstream's
    /// `hpasControllingPodsUnderSelector`).
    fn other_hpas_selecting(
        &self,
        key: &str,
        uid: Option<String>,
        ns: &str,
        selector: &Selector,
        pods: &[Pod],
    ) -> Vec<String> {
        let mut all = self.selectors.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(key.to_string(), (uid, selector.clone()));
        let alive = |other: &str, uid: &Option<String>| {
            let name = other.split_once('/').map_or(other, |(_, n)| n);
            self.hpas
                .get(&reflector::ObjectRef::new(name).within(ns))
                .is_some_and(|h| &h.metadata.uid == uid)
        };
        all.retain(|k, (uid, _)| k == key || !k.starts_with(&format!("{ns}/")) || alive(k, uid));
        let mut others: Vec<String> = all
            .iter()
            .filter(|(k, _)| k.as_str() != key && k.starts_with(&format!("{ns}/")))
            .filter(|(_, (_, sel))| pods.iter().any(|p| sel.matches(p.labels())))
            .map(|(k, _)| k.clone())
            .collect();
        others.sort();
        others
    }

    fn put(&self, key: String, mut memory: Memory, now: Instant) {
        memory.seen = now;
        let mut all = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(key, memory);
    }
}

/// Runs the HPA controller until its watch ends.
pub async fn run(client: Client, config: &crate::Config) {
    let shared_pods = config.shared_pods.clone();
    let config = config.horizontal_pod_autoscaler.clone();
    let metrics: Arc<dyn MetricsSource> = Arc::new(ApiMetrics::new(client.clone()));
    let (pods, pod_events) = watch_pods(&shared_pods, client.clone(), None);
    let (reader, writer) = reflector::store();
    let ctx = Arc::new(Context {
        hpas: reader.clone(),
        selectors: Mutex::new(HashMap::new()),
        recorder: Recorder::new(client.clone(), "horizontal-pod-autoscaler"),
        client: client.clone(),
        pods,
        config,
        metrics,
        memory: Mutex::new(HashMap::new()),
    });
    let api = Api::<HorizontalPodAutoscaler>::all(client);
    // Only spec changes (and new HPAs) trigger an immediate sync: the
    // controller's own status writes must not, or every sync would run
    // twice. (skiff's API server keeps no `generation` for HPAs.)
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_hash, PredicateConfig::default());
    let controller = Controller::for_stream(changes, reader)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    // Pod changes only feed the store: each HPA reads it at its next sync.
    let pod_watch = pod_events.for_each(|_| futures::future::ready(()));
    tokio::select! {
        () = controller => {}
        () = pod_watch => {}
    }
}

fn spec_hash(hpa: &HorizontalPodAutoscaler) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hpa.metadata.uid.hash(&mut h);
    serde_json::to_string(&hpa.spec).ok()?.hash(&mut h);
    Some(h.finish())
}

fn error_policy(hpa: Arc<HorizontalPodAutoscaler>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(hpa = %podutil::key(&hpa.metadata), %error, "sync failed");
    Action::requeue(ctx.config.sync_period)
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = info_span!(
        "reconcile",
        hpa = hpa.name_any(),
        namespace = hpa.namespace().unwrap_or_default()
    );
    async {
        sync(&hpa, &ctx).await?;
        Ok(Action::requeue(ctx.config.sync_period))
    }
    .instrument(span)
    .await
}

async fn sync(hpa: &HorizontalPodAutoscaler, ctx: &Context) -> Result<(), Error> {
    if hpa.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let Some(spec) = hpa.spec.as_ref() else {
        return Ok(());
    };
    let ns = hpa.namespace().unwrap_or_default();
    let key = podutil::key(&hpa.metadata);
    let (now, instant) = (Timestamp::now(), Instant::now());
    let mut memory = ctx.take(&key, hpa.uid(), instant);
    let result = sync_with(hpa, spec, &ns, ctx, &mut memory, now, instant).await;
    ctx.put(key, memory, instant);
    result
}

#[allow(clippy::too_many_arguments)]
async fn sync_with(
    hpa: &HorizontalPodAutoscaler,
    spec: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec,
    ns: &str,
    ctx: &Context,
    memory: &mut Memory,
    now: Timestamp,
    instant: Instant,
) -> Result<(), Error> {
    let target = &spec.scale_target_ref;
    let api_version = target.api_version.as_deref().unwrap_or_default();
    let got = match scale::resolve(&ctx.client, api_version, &target.kind).await {
        Ok(resource) => scale::get(&ctx.client, &resource, ns, &target.name)
            .await
            .map(|s| (resource, s))
            .map_err(|e| metrics::message(&e)),
        Err(e) => Err(e.to_string()),
    };
    let (resource, current_scale) = match got {
        Ok(v) => v,
        Err(e) => {
            publish(
                ctx,
                memory,
                hpa,
                EventType::Warning,
                "FailedGetScale",
                e.clone(),
                instant,
            );
            let mut status = hpa.status.clone().unwrap_or_default();
            set_condition(
                &mut status,
                ABLE_TO_SCALE,
                false,
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {e}"),
                now,
            );
            log_error(memory, Some(format!("cannot read the target's scale: {e}")));
            return write_status(ctx, hpa, ns, &status).await;
        }
    };
    let selector = current_scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let listed: Vec<Pod>;
    let invalid: String;
    let pods = if selector.is_empty() {
        Pods::MissingSelector
    } else {
        match Selector::parse(&selector) {
            Ok(parsed) => {
                ctx.pods
                    .wait_until_ready()
                    .await
                    .map_err(|_| Error::StoreGone)?;
                listed = ctx
                    .pods
                    .state()
                    .iter()
                    .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
                    .filter(|p| parsed.matches(p.labels()))
                    .map(|p| Pod::clone(p))
                    .collect();
                let key = podutil::key(&hpa.metadata);
                let others = ctx.other_hpas_selecting(&key, hpa.uid(), ns, &parsed, &listed);
                if others.is_empty() {
                    Pods::Listed(&listed)
                } else {
                    let mut all = others;
                    all.push(key);
                    all.sort();
                    invalid = format!(
                        "pods by selector {selector} are controlled by multiple HPAs: [{}]",
                        all.join(" ")
                    );
                    Pods::Ambiguous(&invalid)
                }
            }
            Err(e) => {
                invalid = e.to_string();
                Pods::InvalidSelector(&invalid)
            }
        }
    };
    let behavior = spec.behavior.as_ref();
    let up = behavior::scale_up_rules(behavior);
    let down = behavior::scale_down_rules(behavior, ctx.config.downscale_stabilization);
    let inputs = Inputs {
        hpa,
        scale: &current_scale,
        pods,
        metrics: ctx.metrics.as_ref(),
        calculator: ctx.config.calculator(),
        rules: (&up, &down),
        now,
        instant,
    };
    let mut plan = decide(inputs, &mut memory.history).await;
    if let Some(desired) = plan.rescale {
        let result = scale::update(&ctx.client, &resource, ns, &target.name, desired)
            .await
            .map(|_| ())
            .map_err(|e| metrics::message(&e));
        if result.is_ok() {
            tracing::info!(current = plan.current, desired, reason = %plan.reason, "rescaled");
        }
        plan = plan.finish(result, &mut memory.history, (&up, &down), now, instant);
    }
    for e in std::mem::take(&mut plan.events) {
        publish(ctx, memory, hpa, e.type_, e.reason, e.message, instant);
    }
    log_error(memory, plan.error.take());
    write_status(ctx, hpa, ns, &plan.status).await
}

/// Logs a sync's error at warn level when it changes, not at every sync.
fn log_error(memory: &mut Memory, error: Option<String>) {
    match &error {
        Some(e) if memory.last_error.as_ref() != Some(e) => {
            tracing::warn!(error = %e, "autoscaling is impaired");
        }
        Some(e) => tracing::debug!(error = %e, "autoscaling is impaired"),
        None if memory.last_error.is_some() => tracing::info!("autoscaling recovered"),
        None => {}
    }
    memory.last_error = error;
}

/// Records an event; a warning with the same reason as one recorded less
/// than `warning_event_interval` ago is dropped.
fn publish(
    ctx: &Context,
    memory: &mut Memory,
    hpa: &HorizontalPodAutoscaler,
    type_: EventType,
    reason: &'static str,
    message: String,
    now: Instant,
) {
    if matches!(type_, EventType::Warning) {
        let recent = memory
            .warned
            .get(reason)
            .is_some_and(|at| now.duration_since(*at) < ctx.config.warning_event_interval);
        if recent {
            return;
        }
        memory.warned.insert(reason, now);
    }
    ctx.recorder.publish(hpa, type_, reason, message);
}

/// Writes `status` unless it equals the HPA's current one.
async fn write_status(
    ctx: &Context,
    hpa: &HorizontalPodAutoscaler,
    ns: &str,
    status: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus,
) -> Result<(), Error> {
    let old = hpa.status.clone().unwrap_or_default();
    if podutil::semantic_eq(&old, status) {
        return Ok(());
    }
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), ns);
    let body = status::patch_body(status);
    match api
        .patch_status(
            &hpa.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if podutil::is_gone(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus;

    #[test]
    fn only_spec_changes_trigger_an_immediate_sync() {
        let hpa = testing::hpa(1, 5, vec![testing::cpu_utilization(50)]);
        let mut status_only = hpa.clone();
        status_only.status = Some(HorizontalPodAutoscalerStatus {
            desired_replicas: 3,
            ..Default::default()
        });
        status_only.metadata.resource_version = Some("42".into());
        assert_eq!(spec_hash(&hpa), spec_hash(&status_only));
        let mut spec_changed = hpa.clone();
        if let Some(spec) = spec_changed.spec.as_mut() {
            spec.min_replicas = Some(2);
        }
        assert_ne!(spec_hash(&hpa), spec_hash(&spec_changed));
        let mut recreated = hpa.clone();
        recreated.metadata.uid = Some("another".into());
        assert_ne!(spec_hash(&hpa), spec_hash(&recreated));
    }

    #[test]
    fn the_default_config_matches_kubernetes_except_the_sync_period() {
        let c = Config::default();
        assert_eq!(c.sync_period, Duration::from_secs(1));
        assert_eq!(c.tolerance, 0.1);
        assert_eq!(c.downscale_stabilization, Duration::from_secs(300));
        assert_eq!(c.cpu_initialization_period, Duration::from_secs(300));
        assert_eq!(c.initial_readiness_delay, Duration::from_secs(30));
    }
}
