//! One pod's worker: keeps the pod's containers as its spec and restart
//! policy say, and writes its status.
//!
//! Each sync (on a pod update — not a status-only one, such as the echo of
//! our own status write —, a container exit, a probe result, or a timer):
//! 1. a finished pod (Succeeded/Failed) only makes sure nothing of it runs;
//! 2. the sandbox and containers are started (or re-adopted, after an agent
//!    restart) — init containers first, one at a time, each to completion
//!    (`Initialized`) — until every container has an instance — an image
//!    that is missing or failed to pull leaves it waiting (`ErrImagePull`,
//!    then `ImagePullBackOff` while the node's pull back-off lasts — see
//!    [`super::pulls`] — or `ErrImageNeverPull`, `InvalidImageName`), and
//!    the start is tried again every [`IMAGE_RETRY`];
//! 3. containers whose liveness or startup probe failed are killed
//!    (`Killing` event) and, like exited containers, restarted per the
//!    restart policy, through CrashLoopBackOff ([`CrashBackoff`]);
//! 4. probe results ([`super::probe`]) set each container's `ready` and
//!    `started`; the probe tasks wake the worker when a result flips, so a
//!    readiness change is written within a probe period;
//! 5. the status is computed ([`super::status`]) and written through
//!    `pods/status` when it changed;
//! 6. a pod that just finished has its sandbox torn down.
//!
//! A pod with a `deletionTimestamp` is stopped with its grace period, then
//! deleted through the API (`gracePeriodSeconds=0`, UID precondition). A pod
//! gone from the API has its containers stopped.
//!
//! A new pod is first admitted against the node's pressure conditions
//! ([`super::eviction::rank::admit`]); a rejected one ends `Failed`,
//! reason `Evicted`. The eviction manager evicts a pod through its worker
//! ([`EvictRequest`]): the containers are killed at once, the pod ends
//! `Failed` (reason `Evicted`, `DisruptionTarget`) and is never restarted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tracing::{info, info_span, warn, Instrument};

use super::backoff::{go_duration, BackoffConfig, CrashBackoff};
use super::events::{EventType, PodEvents};
use super::eviction::rank::{admit, REASON as EVICTED};
use super::eviction::NodePressure;
use super::probe::{EventSink, Exec, ExecFactory, ProbeKind, ProbeManager, Unhealthy};
use super::status::{
    crash_loop_back_off, evicted_status, init_completed, is_terminal, pod_status, qos_class,
    terminated_code, waiting_reason, RestartPolicy, StatusInput,
};
use crate::containerd::pod_runtime::{ExecOutcome, PodRuntime};

/// How often a container waiting for its image tries again.
pub(crate) const IMAGE_RETRY: Duration = Duration::from_secs(2);
/// How often the configMap, secret, downwardAPI and projected volumes of
/// a running pod are re-projected, so its containers see updated objects
/// (Kubernetes: the kubelet's 1 min sync period plus its cache TTL; one GET
/// per object per period here).
pub(crate) const VOLUME_RESYNC: Duration = Duration::from_secs(15);
/// How long a failed sync waits before the next attempt.
const SYNC_RETRY: Duration = Duration::from_secs(2);
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: i64 = 30;

/// Waiting reasons that mean "no instance was created; start again later".
const NOT_CREATED: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "RunContainerError",
];

/// What every worker of a node shares.
#[derive(Debug)]
pub(crate) struct NodeContext {
    pub(crate) name: String,
    pub(crate) host_ip: String,
    pub(crate) backoff: BackoffConfig,
    /// The node's pressure conditions, as the eviction manager last saw
    /// them (for admission).
    pub(crate) pressure: watch::Receiver<NodePressure>,
}

/// The eviction manager's request to evict a pod: `done` gets whether it
/// was (its containers killed and its status written or queued).
#[derive(Debug)]
pub(crate) struct EvictRequest {
    pub(crate) message: String,
    pub(crate) done: oneshot::Sender<bool>,
}

/// A failed step of a sync; the worker logs it and retries.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// The runtime failed.
    #[error("runtime: {0}")]
    Runtime(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The API refused a write.
    #[error("API: {0}")]
    Api(#[from] kube::Error),
}

fn runtime_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> SyncError {
    SyncError::Runtime(Box::new(error))
}

pub(crate) struct Worker<R: PodRuntime> {
    runtime: Arc<R>,
    api: Api<Pod>,
    node: Arc<NodeContext>,
    pod_rx: watch::Receiver<Option<Pod>>,
    wake: Arc<Notify>,
    backoff: CrashBackoff,
    /// The pod IP, once `start_pod` succeeded.
    pod_ip: Option<String>,
    /// Containers `start_pod` could not create, with the reason.
    not_created: HashMap<String, ContainerStatus>,
    /// When each exited container instance was first seen exited.
    exits_seen: HashMap<String, Instant>,
    last_written: Option<PodStatus>,
    finished: bool,
    created: Instant,
    reported_running: bool,
    probes: ProbeManager,
    events: Option<PodEvents>,
    /// Every init container completed, as the last `start_pod` saw.
    initialized: bool,
    /// When the pod's API-data volumes were last re-projected.
    volumes_synced: Instant,
    /// The last `CreateContainerConfigError` message recorded as an event,
    /// per container (so a retry every 2 s records one event, not many).
    config_errors: HashMap<String, String>,
    /// Eviction requests from the eviction manager.
    evictions: mpsc::Receiver<EvictRequest>,
    evictions_open: bool,
    /// An eviction request taken while waiting, served on the next turn.
    pending_eviction: Option<EvictRequest>,
    /// The final status of a pod the worker ended itself (evicted or
    /// rejected) whose write failed; written on the next sync.
    unwritten: Option<PodStatus>,
    /// Whether the pod passed admission.
    admitted: bool,
}

/// App or init containers (they restart differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    App,
    Init,
}

/// `status`, now waiting with `reason`.
fn waiting_status(status: &ContainerStatus, reason: &str) -> ContainerStatus {
    ContainerStatus {
        state: Some(k8s_openapi::api::core::v1::ContainerState {
            waiting: Some(k8s_openapi::api::core::v1::ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message: None,
            }),
            ..Default::default()
        }),
        ready: false,
        started: Some(false),
        ..status.clone()
    }
}

/// Runs exec probes in one container through the runtime.
struct RuntimeExec<R: PodRuntime> {
    runtime: Arc<R>,
    pod: Pod,
    container: String,
}

#[async_trait]
impl<R: PodRuntime> Exec for RuntimeExec<R> {
    async fn exec(&self, command: &[String], timeout: Duration) -> Result<ExecOutcome, String> {
        self.runtime
            .exec_sync(&self.pod, &self.container, command, timeout)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The grace period of a container killed by a failed probe: the probe's
/// own `terminationGracePeriodSeconds`, else the pod's.
fn probe_kill_grace(pod: &Pod, failed: &Unhealthy) -> Duration {
    let container = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .find(|c| c.name == failed.container);
    let probe = container.and_then(|c| match failed.kind {
        ProbeKind::Liveness => c.liveness_probe.as_ref(),
        ProbeKind::Startup => c.startup_probe.as_ref(),
        ProbeKind::Readiness => None,
    });
    let seconds = probe
        .and_then(|p| p.termination_grace_period_seconds)
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// The grace period of a pod being deleted.
fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// Whether `new` differs from `old` only in its status (and the
/// bookkeeping a status write changes: resourceVersion, managedFields).
fn only_status_changed(old: Option<&Pod>, new: Option<&Pod>) -> bool {
    let (Some(old), Some(new)) = (old, new) else {
        return false;
    };
    let strip = |pod: &Pod| {
        let mut pod = pod.clone();
        pod.status = None;
        pod.metadata.resource_version = None;
        pod.metadata.managed_fields = None;
        pod
    };
    strip(old) == strip(new)
}

/// Whether the pod has volumes whose content comes from the API.
fn has_api_volumes(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
        })
}

/// Whether the pod has not started on this node yet (so it goes through
/// admission): no phase or Pending, and no container ever ran.
fn is_new(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return true;
    };
    let pending = status.phase.as_deref().is_none_or(|p| p == "Pending");
    let ran = status
        .container_statuses
        .iter()
        .chain(status.init_container_statuses.iter())
        .flatten()
        .any(|c| {
            c.state.as_ref().is_some_and(|s| s.waiting.is_none())
                || c.last_state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some())
        });
    pending && !ran
}

fn min_wake(current: Option<Duration>, other: Duration) -> Option<Duration> {
    Some(current.map_or(other, |c| c.min(other)))
}

impl<R: PodRuntime> Worker<R> {
    pub(crate) fn new(
        runtime: Arc<R>,
        api: Api<Pod>,
        node: Arc<NodeContext>,
        pod_rx: watch::Receiver<Option<Pod>>,
        wake: Arc<Notify>,
        evictions: mpsc::Receiver<EvictRequest>,
    ) -> Self {
        let backoff = CrashBackoff::new(node.backoff);
        let events = pod_rx
            .borrow()
            .as_ref()
            .map(|pod| PodEvents::new(api.clone().into_client(), &node.name, pod));
        let exec: ExecFactory = {
            let runtime = runtime.clone();
            Arc::new(move |pod: &Pod, container: &str| {
                Arc::new(RuntimeExec {
                    runtime: runtime.clone(),
                    pod: pod.clone(),
                    container: container.to_string(),
                }) as Arc<dyn Exec>
            })
        };
        let sink: EventSink = {
            let events = events.clone();
            Arc::new(move |event: super::probe::ProbeEvent| {
                if let Some(events) = &events {
                    events.publish(
                        &event.container,
                        EventType::Warning,
                        "Unhealthy",
                        format!("{} probe failed: {}", event.kind.name(), event.message),
                    );
                }
            })
        };
        let probes = ProbeManager::new(exec, wake.clone(), sink);
        Self {
            runtime,
            api,
            node,
            pod_rx,
            wake,
            backoff,
            pod_ip: None,
            not_created: HashMap::new(),
            exits_seen: HashMap::new(),
            last_written: None,
            finished: false,
            created: Instant::now(),
            reported_running: false,
            probes,
            events,
            initialized: false,
            volumes_synced: Instant::now(),
            config_errors: HashMap::new(),
            evictions,
            evictions_open: true,
            pending_eviction: None,
            unwritten: None,
            admitted: false,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut last_pod: Option<Pod> = None;
        loop {
            let current = self.pod_rx.borrow_and_update().clone();
            let Some(pod) = current else {
                if let Some(pod) = last_pod {
                    self.stop_gone(&pod).await;
                }
                return;
            };
            let span = info_span!(
                "pod_sync",
                pod = pod.metadata.name.as_deref().unwrap_or_default(),
                namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
                uid = pod.metadata.uid.as_deref().unwrap_or_default(),
                node = %self.node.name,
            );
            if let Some(request) = self.pending_eviction.take() {
                let evicted = self
                    .evict(&pod, &request.message)
                    .instrument(span.clone())
                    .await;
                let _ = request.done.send(evicted);
            }
            let wake = if pod.metadata.deletion_timestamp.is_some() {
                match self.terminate(&pod).instrument(span).await {
                    Ok(()) => return,
                    Err(error) => {
                        warn!(pod = pod.metadata.name.as_deref().unwrap_or_default(), %error, "cannot delete the pod; retrying");
                        Some(SYNC_RETRY)
                    }
                }
            } else {
                match self.sync(&pod).instrument(span).await {
                    Ok(wake) => wake,
                    Err(error) => {
                        warn!(pod = pod.metadata.name.as_deref().unwrap_or_default(), %error, "pod sync failed; retrying");
                        Some(SYNC_RETRY)
                    }
                }
            };
            last_pod = Some(pod);
            let sleep = async {
                match wake {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    changed = self.pod_rx.changed() => {
                        // The manager dropped the sender: gone (None) or shutdown.
                        if changed.is_err() && self.pod_rx.borrow().is_some() {
                            return;
                        }
                        // Our own status write coming back (or anyone's
                        // status-only change) is no reason to sync now, as
                        // in the kubelet: a waiting reason such as
                        // `ErrImagePull` stays until the next sync.
                        let status_only = changed.is_ok()
                            && only_status_changed(last_pod.as_ref(), self.pod_rx.borrow().as_ref());
                        if !status_only {
                            break;
                        }
                    }
                    () = self.wake.notified() => break,
                    () = &mut sleep => break,
                    request = self.evictions.recv(), if self.evictions_open => match request {
                        Some(request) => {
                            self.pending_eviction = Some(request);
                            break;
                        }
                        None => self.evictions_open = false,
                    },
                }
            }
        }
    }

    async fn sync(&mut self, pod: &Pod) -> Result<Option<Duration>, SyncError> {
        let api_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if self.finished || (self.pod_ip.is_none() && api_phase.is_some_and(is_terminal)) {
            if let Some(status) = self.unwritten.take() {
                self.write_final(pod, status).await?;
            }
            if !self.finished {
                // The pod ended while the agent was away: release what is left.
                self.runtime
                    .stop_pod(pod, Duration::ZERO)
                    .await
                    .map_err(runtime_error)?;
                self.finished = true;
            }
            return Ok(None);
        }
        if !self.admitted {
            if is_new(pod) {
                let pressure = *self.node.pressure.borrow();
                if let Err(message) = admit(pod, pressure) {
                    self.reject(pod, message).await?;
                    return Ok(None);
                }
            }
            self.admitted = true;
        }
        if self.pod_ip.is_none() || !self.not_created.is_empty() || !self.initialized {
            let started = self.runtime.start_pod(pod).await.map_err(runtime_error)?;
            self.pod_ip = started.pod_ip.or(self.pod_ip.take());
            self.initialized = started.init_containers.iter().all(init_completed);
            self.not_created = started
                .containers
                .into_iter()
                .chain(started.init_containers)
                .filter(|c| waiting_reason(c).is_some_and(|r| NOT_CREATED.contains(&r)))
                .map(|c| (c.name.clone(), c))
                .collect();
            self.report_config_errors();
        }
        let mut statuses = self.runtime.pod_status(pod).await.map_err(runtime_error)?;
        let mut init_statuses = self.runtime.init_status(pod).await.map_err(runtime_error)?;
        self.probes.sync(pod, &statuses, self.pod_ip.as_deref());
        let unhealthy = self.probes.unhealthy();
        if !unhealthy.is_empty() {
            self.kill_unhealthy(pod, &unhealthy).await?;
            statuses = self.runtime.pod_status(pod).await.map_err(runtime_error)?;
            self.probes.sync(pod, &statuses, self.pod_ip.as_deref());
        }
        let mut wake = (!self.not_created.is_empty()).then_some(IMAGE_RETRY);
        if has_api_volumes(pod) {
            let due = self.volumes_synced + VOLUME_RESYNC;
            if Instant::now() >= due {
                self.runtime
                    .refresh_volumes(pod)
                    .await
                    .map_err(runtime_error)?;
                self.volumes_synced = Instant::now();
            }
            let left =
                (self.volumes_synced + VOLUME_RESYNC).saturating_duration_since(Instant::now());
            wake = min_wake(wake, left);
        }
        if self.initialized {
            self.restart_exited(pod, &mut statuses, Kind::App, &mut wake)
                .await?;
        } else {
            for status in statuses.iter_mut() {
                if waiting_reason(status) == Some("ContainerCreating") {
                    *status = waiting_status(status, "PodInitializing");
                }
            }
        }
        self.restart_exited(pod, &mut init_statuses, Kind::Init, &mut wake)
            .await?;
        for status in init_statuses.iter_mut() {
            status.ready = init_completed(status);
        }
        self.probes.sync(pod, &statuses, self.pod_ip.as_deref());
        self.probes.apply(&mut statuses);
        let mut base = pod.clone();
        if let Some(written) = &self.last_written {
            base.status = Some(written.clone());
        }
        let status = pod_status(StatusInput {
            pod: &base,
            containers: statuses,
            init_containers: init_statuses,
            pod_ip: self.pod_ip.as_deref(),
            host_ip: &self.node.host_ip,
            now: crate::time::now(),
        });
        let phase = status.phase.clone().unwrap_or_default();
        self.write(pod, status).await?;
        if phase == "Running" && !self.reported_running {
            self.reported_running = true;
            info!(
                latency_ms = self.created.elapsed().as_millis() as u64,
                "pod running"
            );
        }
        if is_terminal(&phase) {
            self.probes.clear();
            self.runtime
                .stop_pod(pod, Duration::ZERO)
                .await
                .map_err(runtime_error)?;
            self.finished = true;
            return Ok(None);
        }
        Ok(wake)
    }

    /// Shows containers not created as `not_created` says, and restarts
    /// exited ones per the restart policy through CrashLoopBackOff. Init
    /// containers restart only after a failure.
    async fn restart_exited(
        &mut self,
        pod: &Pod,
        statuses: &mut [ContainerStatus],
        kind: Kind,
        wake: &mut Option<Duration>,
    ) -> Result<(), SyncError> {
        let policy = RestartPolicy::of(pod);
        let now = Instant::now();
        for status in statuses.iter_mut() {
            if let Some(reason) = self.not_created.get(&status.name) {
                if matches!(
                    waiting_reason(status),
                    Some("ContainerCreating" | "PodInitializing")
                ) {
                    *status = reason.clone();
                }
                continue;
            }
            let Some(code) = terminated_code(status) else {
                continue;
            };
            let restarts = match kind {
                Kind::App => policy.restarts(code),
                Kind::Init => code != 0 && policy != RestartPolicy::Never,
            };
            if !restarts {
                continue;
            }
            let id = status.container_id.clone().unwrap_or_default();
            let exited_at = *self.exits_seen.entry(id.clone()).or_insert(now);
            match self.backoff.remaining(&status.name, exited_at, now) {
                Some(left) => {
                    let delay = go_duration(self.backoff.current(&status.name));
                    *status = crash_loop_back_off(status, &delay, pod);
                    *wake = min_wake(*wake, left);
                }
                None => {
                    self.backoff.restarted(&status.name, exited_at);
                    self.exits_seen.remove(&id);
                    *status = self
                        .runtime
                        .restart_container(pod, &status.name)
                        .await
                        .map_err(runtime_error)?;
                    // No new instance (config error, missing image): retried
                    // through `start_pod` like a container never created.
                    if waiting_reason(status).is_some_and(|r| NOT_CREATED.contains(&r)) {
                        self.not_created.insert(status.name.clone(), status.clone());
                        *wake = min_wake(*wake, IMAGE_RETRY);
                        self.report_config_errors();
                    }
                    info!(container = %status.name, restart_count = status.restart_count, "container restarted");
                }
            }
        }
        Ok(())
    }

    /// Records a `Failed` Warning event (`Error: configmap "x" not found`,
    /// Kubernetes' wording) when a container's config error first appears
    /// or changes.
    fn report_config_errors(&mut self) {
        let current: HashMap<String, String> = self
            .not_created
            .values()
            .filter(|s| waiting_reason(s) == Some("CreateContainerConfigError"))
            .map(|s| {
                let message = s
                    .state
                    .as_ref()
                    .and_then(|st| st.waiting.as_ref())
                    .and_then(|w| w.message.clone())
                    .unwrap_or_default();
                (s.name.clone(), message)
            })
            .collect();
        for (container, message) in &current {
            if self.config_errors.get(container) != Some(message) {
                if let Some(events) = &self.events {
                    events.publish(
                        container,
                        EventType::Warning,
                        "Failed",
                        format!("Error: {message}"),
                    );
                }
            }
        }
        self.config_errors = current;
    }

    /// Kills containers whose liveness or startup probe failed; the
    /// restart policy then handles them like any exit.
    async fn kill_unhealthy(
        &mut self,
        pod: &Pod,
        unhealthy: &[Unhealthy],
    ) -> Result<(), SyncError> {
        let restarts = RestartPolicy::of(pod) != RestartPolicy::Never;
        for failed in unhealthy {
            let probe = match failed.kind {
                ProbeKind::Startup => "startup",
                _ => "liveness",
            };
            let mut message = format!("Container {} failed {probe} probe", failed.container);
            if restarts {
                message.push_str(", will be restarted");
            }
            info!(container = %failed.container, probe, reason = %failed.message, "killing an unhealthy container");
            if let Some(events) = &self.events {
                events.publish(&failed.container, EventType::Normal, "Killing", message);
            }
            let grace = probe_kill_grace(pod, failed);
            self.runtime
                .kill_container(pod, &failed.container, grace)
                .await
                .map_err(runtime_error)?;
        }
        Ok(())
    }

    async fn write(&mut self, pod: &Pod, status: PodStatus) -> Result<(), SyncError> {
        if self.last_written.as_ref() == Some(&status) {
            return Ok(());
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({
            "metadata": {"uid": pod.metadata.uid},
            "status": status,
        });
        match self
            .api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            // Deleted meanwhile: the Delete event ends this worker.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
        self.last_written = Some(status);
        Ok(())
    }

    /// Writes the status of a pod this worker ended; a failed write is
    /// kept and retried by the next sync.
    async fn write_final(&mut self, pod: &Pod, status: PodStatus) -> Result<(), SyncError> {
        self.finished = true;
        if let Err(error) = self.write(pod, status.clone()).await {
            self.unwritten = Some(status);
            return Err(error);
        }
        Ok(())
    }

    /// Refuses a new pod, as the kubelet's `rejectPod`: an event with
    /// `message`, and the pod `Failed` with `Pod was rejected: {message}`.
    async fn reject(&mut self, pod: &Pod, message: String) -> Result<(), SyncError> {
        info!(%message, "pod rejected at admission");
        if let Some(events) = &self.events {
            events.publish("", EventType::Warning, EVICTED, message.clone());
        }
        let status = PodStatus {
            phase: Some("Failed".to_string()),
            reason: Some(EVICTED.to_string()),
            message: Some(format!("Pod was rejected: {message}")),
            qos_class: Some(qos_class(pod).to_string()),
            ..Default::default()
        };
        self.write_final(pod, status).await
    }

    /// Evicts the pod for the eviction manager: an `Evicted` event, its
    /// containers killed at once (a hard threshold gives no grace), and
    /// the pod `Failed` for good. `false` when it already finished or its
    /// containers could not be killed.
    async fn evict(&mut self, pod: &Pod, message: &str) -> bool {
        if self.finished {
            return false;
        }
        if let Some(events) = &self.events {
            events.publish("", EventType::Warning, EVICTED, message.to_string());
        }
        self.probes.clear();
        let containers = match self.runtime.stop_pod(pod, Duration::ZERO).await {
            Ok(containers) => containers,
            Err(error) => {
                warn!(%error, "cannot kill the containers of a pod being evicted");
                return false;
            }
        };
        let mut base = pod.clone();
        if let Some(written) = &self.last_written {
            base.status = Some(written.clone());
        }
        let init_containers = base
            .status
            .as_ref()
            .and_then(|s| s.init_container_statuses.clone())
            .unwrap_or_default();
        let now = crate::time::now();
        let status = pod_status(StatusInput {
            pod: &base,
            containers,
            init_containers,
            pod_ip: self.pod_ip.as_deref(),
            host_ip: &self.node.host_ip,
            now: now.clone(),
        });
        let status = evicted_status(status, EVICTED, message, now);
        info!(%message, "pod evicted");
        if let Err(error) = self.write_final(pod, status).await {
            warn!(%error, "cannot write the evicted pod's status; retrying");
        }
        true
    }

    /// Stops the containers with the pod's grace period, then removes the
    /// pod from the API.
    async fn terminate(&mut self, pod: &Pod) -> Result<(), SyncError> {
        let grace = grace_period(pod);
        self.runtime
            .stop_pod(pod, grace)
            .await
            .map_err(runtime_error)?;
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
        info!(grace_s = grace.as_secs(), "pod stopped and deleted");
        Ok(())
    }

    /// The pod left the API without us (force delete): stop what runs.
    async fn stop_gone(&mut self, pod: &Pod) {
        if let Err(error) = self.runtime.stop_pod(pod, grace_period(pod)).await {
            warn!(pod = pod.metadata.name.as_deref().unwrap_or_default(), %error, "cannot stop a deleted pod");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_only_update_does_not_count_as_a_pod_change() {
        let mut old = Pod::default();
        old.metadata.resource_version = Some("1".to_string());
        let mut echoed = old.clone();
        echoed.metadata.resource_version = Some("2".to_string());
        echoed.status = Some(PodStatus {
            phase: Some("Pending".to_string()),
            ..Default::default()
        });
        assert!(only_status_changed(Some(&old), Some(&echoed)));
        let mut deleting = echoed.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(!only_status_changed(Some(&old), Some(&deleting)));
        assert!(!only_status_changed(Some(&old), None));
    }

    #[test]
    fn the_grace_period_comes_from_the_deletion_then_the_spec_then_30s() {
        let mut pod = Pod::default();
        assert_eq!(grace_period(&pod), Duration::from_secs(30));
        pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        });
        assert_eq!(grace_period(&pod), Duration::from_secs(5));
        pod.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(grace_period(&pod), Duration::ZERO);
    }
}
