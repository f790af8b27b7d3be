//! Container probes, as the kubelet's prober runs them: one tokio task per
//! probe (liveness, readiness, startup) per container instance.
//!
//! - Each task waits `initialDelaySeconds` after the container started,
//!   then runs its check ([`check`]) every `periodSeconds`, bounded by
//!   `timeoutSeconds`.
//! - A result flips after `successThreshold` consecutive successes or
//!   `failureThreshold` consecutive failures (liveness and startup always
//!   use a success threshold of 1).
//! - Readiness starts as failed (the container is not ready until it
//!   passes), liveness as passed, startup as not yet passed. While a
//!   startup probe has not passed, liveness and readiness are not run.
//! - Every flip is stored in the container's [`ProbeState`] and pokes the
//!   pod worker (`wake`), which writes the status (readiness) or kills the
//!   container (liveness and startup failures).
//! - A new container instance (a restart) gets fresh tasks; the old ones
//!   are aborted.
//!
//! `Unhealthy` events are reported on the first failure of a streak and
//! when the failure threshold is crossed (Kubernetes reports each failed
//! run and aggregates them; this keeps the API writes bounded).

pub mod check;
pub mod grpc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info};

pub use check::{Exec, HttpGet, ProbeResult};
pub use grpc::GrpcCheck;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `livenessProbe`: failing kills the container.
    Liveness,
    /// `readinessProbe`: gates `ready`.
    Readiness,
    /// `startupProbe`: gates the other two; failing kills the container.
    Startup,
}

impl ProbeKind {
    /// `Liveness`, `Readiness`, `Startup` (as in event messages).
    pub fn name(self) -> &'static str {
        match self {
            Self::Liveness => "Liveness",
            Self::Readiness => "Readiness",
            Self::Startup => "Startup",
        }
    }

    fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            Self::Liveness => container.liveness_probe.as_ref(),
            Self::Readiness => container.readiness_probe.as_ref(),
            Self::Startup => container.startup_probe.as_ref(),
        }
    }
}

/// A probe's timing, with Kubernetes' defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    /// `initialDelaySeconds` (0).
    pub initial_delay: Duration,
    /// `periodSeconds` (10, at least 1).
    pub period: Duration,
    /// `timeoutSeconds` (1, at least 1).
    pub timeout: Duration,
    /// `successThreshold` (1; always 1 for liveness and startup).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
}

fn seconds(value: Option<i32>, default: u64, min: u64) -> Duration {
    let value = value.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0);
    Duration::from_secs(value.unwrap_or(default).max(min))
}

fn count(value: Option<i32>, default: u32) -> u32 {
    value
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

impl ProbeTiming {
    /// The timing of `probe` used as a `kind` probe.
    pub fn of(kind: ProbeKind, probe: &Probe) -> Self {
        let success = match kind {
            ProbeKind::Readiness => count(probe.success_threshold, 1),
            ProbeKind::Liveness | ProbeKind::Startup => 1,
        };
        Self {
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            success_threshold: success,
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// What a probe checks, resolved against the container and pod IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// `httpGet` (plain HTTP).
    Http(HttpGet),
    /// `tcpSocket`.
    Tcp {
        /// The address.
        host: String,
        /// The port.
        port: u16,
    },
    /// `exec`.
    Exec(Vec<String>),
    /// `grpc`: `grpc.health.v1.Health/Check` on the pod IP.
    Grpc(GrpcCheck),
}

/// Why a probe cannot run; each run then fails with this message, as in
/// Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeSpecError {
    /// No handler is set.
    #[error("probe has no handler (httpGet, tcpSocket, exec or grpc)")]
    NoHandler,
    /// A named port is not among the container's ports.
    #[error("couldn't find port {0:?} in the container's ports")]
    UnknownPort(String),
    /// A port number outside 1–65535.
    #[error("invalid port number: {0}")]
    InvalidPort(i64),
    /// The pod has no IP yet and the probe names no host.
    #[error("the pod has no IP yet")]
    NoPodIp,
}

/// Resolves `port` (a number, a numeric string or a named container port).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, ProbeSpecError> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| i64::from(p.container_port))
                .ok_or_else(|| ProbeSpecError::UnknownPort(s.clone()))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(ProbeSpecError::InvalidPort(number))
}

/// What `probe` checks for `container` of a pod whose IP is `pod_ip`.
pub fn action(
    probe: &Probe,
    container: &Container,
    pod_ip: Option<&str>,
) -> Result<ProbeAction, ProbeSpecError> {
    let host = |explicit: Option<&String>| {
        explicit
            .filter(|h| !h.is_empty())
            .cloned()
            .or_else(|| pod_ip.map(str::to_string))
            .ok_or(ProbeSpecError::NoPodIp)
    };
    if let Some(exec) = &probe.exec {
        return Ok(ProbeAction::Exec(exec.command.clone().unwrap_or_default()));
    }
    if let Some(http) = &probe.http_get {
        let https = http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
        let path = http.path.clone().unwrap_or_default();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        return Ok(ProbeAction::Http(HttpGet {
            host: host(http.host.as_ref())?,
            port: resolve_port(&http.port, container)?,
            path,
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            https,
        }));
    }
    if let Some(tcp) = &probe.tcp_socket {
        return Ok(ProbeAction::Tcp {
            host: host(tcp.host.as_ref())?,
            port: resolve_port(&tcp.port, container)?,
        });
    }
    if let Some(grpc) = &probe.grpc {
        // `grpc.port` is a number only (no named ports), on the pod IP.
        let port = u16::try_from(grpc.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(ProbeSpecError::InvalidPort(i64::from(grpc.port)))?;
        return Ok(ProbeAction::Grpc(GrpcCheck {
            host: host(None)?,
            port,
            service: grpc.service.clone().unwrap_or_default(),
        }));
    }
    Err(ProbeSpecError::NoHandler)
}

/// Runs one check of `action`.
pub async fn run_check(action: &ProbeAction, exec: &dyn Exec, timeout: Duration) -> ProbeResult {
    match action {
        ProbeAction::Http(get) => check::http_get(get, timeout).await,
        ProbeAction::Tcp { host, port } => check::tcp_socket(host, *port, timeout).await,
        ProbeAction::Exec(command) => check::exec(exec, command, timeout).await,
        ProbeAction::Grpc(check) => grpc::grpc(check, timeout).await,
    }
}

/// The probe results of one container instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeState {
    /// The readiness probe passed (or there is none).
    pub readiness_passed: bool,
    /// The startup probe passed (or there is none).
    pub started: bool,
    /// Why the liveness probe failed, once it did.
    pub liveness_failure: Option<String>,
    /// Why the startup probe failed, once it did.
    pub startup_failure: Option<String>,
}

impl ProbeState {
    /// The state before any probe ran, for `container`.
    pub fn initial(container: &Container) -> Self {
        Self {
            readiness_passed: container.readiness_probe.is_none(),
            started: container.startup_probe.is_none(),
            liveness_failure: None,
            startup_failure: None,
        }
    }

    /// Whether the container counts as ready.
    pub fn ready(&self) -> bool {
        self.started && self.readiness_passed
    }
}

/// Something that happened to a probe, for events and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    /// The container.
    pub container: String,
    /// The probe.
    pub kind: ProbeKind,
    /// The failure message (`Liveness probe failed: <message>`).
    pub message: String,
}

/// Receives `Unhealthy` probe events.
pub type EventSink = Arc<dyn Fn(ProbeEvent) + Send + Sync>;

/// One probe task's inputs.
pub struct ProbeTask {
    /// The container's name.
    pub container: String,
    /// Which probe.
    pub kind: ProbeKind,
    /// Its timing.
    pub timing: ProbeTiming,
    /// What it checks (or why it cannot).
    pub action: Result<ProbeAction, ProbeSpecError>,
    /// Runs `exec` checks in the container.
    pub exec: Arc<dyn Exec>,
    /// The container's shared results.
    pub state: Arc<Mutex<ProbeState>>,
    /// Poked when a result flips.
    pub wake: Arc<Notify>,
    /// Receives failures.
    pub events: EventSink,
}

fn update(state: &Mutex<ProbeState>, f: impl FnOnce(&mut ProbeState) -> bool) -> bool {
    state.lock().map(|mut s| f(&mut s)).unwrap_or(false)
}

impl ProbeTask {
    /// Runs the probe until its container is killed (liveness or startup
    /// failure), the startup probe passes, or the task is aborted.
    pub async fn run(self) {
        tokio::time::sleep(self.timing.initial_delay).await;
        let mut interval = tokio::time::interval(self.timing.period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut successes, mut failures) = (0_u32, 0_u32);
        loop {
            interval.tick().await;
            let started = self.state.lock().map(|s| s.started).unwrap_or(false);
            if self.kind != ProbeKind::Startup && !started {
                continue;
            }
            let result = match &self.action {
                Ok(action) => run_check(action, self.exec.as_ref(), self.timing.timeout).await,
                Err(error) => ProbeResult::Failure(error.to_string()),
            };
            let message = match result {
                ProbeResult::Success => {
                    successes += 1;
                    failures = 0;
                    if successes >= self.timing.success_threshold && self.pass() {
                        info!(container = %self.container, probe = self.kind.name(), "probe passed");
                        self.wake.notify_one();
                    }
                    if self.kind == ProbeKind::Startup {
                        return;
                    }
                    continue;
                }
                ProbeResult::Failure(message) => message,
            };
            successes = 0;
            failures += 1;
            debug!(container = %self.container, probe = self.kind.name(), failures, %message, "probe failed");
            let crossed = failures >= self.timing.failure_threshold;
            if failures == 1 || failures == self.timing.failure_threshold {
                (self.events)(ProbeEvent {
                    container: self.container.clone(),
                    kind: self.kind,
                    message: message.clone(),
                });
            }
            if crossed && self.fail(&message) {
                info!(container = %self.container, probe = self.kind.name(), %message, "probe failed past its threshold");
                self.wake.notify_one();
                if self.kind != ProbeKind::Readiness {
                    // The container is killed; its next instance gets a new task.
                    return;
                }
            }
        }
    }

    /// Records a pass; whether the state changed.
    fn pass(&self) -> bool {
        update(&self.state, |s| {
            let before = s.clone();
            match self.kind {
                ProbeKind::Readiness => s.readiness_passed = true,
                ProbeKind::Startup => s.started = true,
                ProbeKind::Liveness => {}
            }
            *s != before
        })
    }

    /// Records a failure past the threshold; whether the state changed.
    fn fail(&self, message: &str) -> bool {
        update(&self.state, |s| {
            let before = s.clone();
            match self.kind {
                ProbeKind::Readiness => s.readiness_passed = false,
                ProbeKind::Liveness => s.liveness_failure = Some(message.to_string()),
                ProbeKind::Startup => s.startup_failure = Some(message.to_string()),
            }
            *s != before
        })
    }
}

/// The probes of one running container instance.
struct Instance {
    container_id: String,
    state: Arc<Mutex<ProbeState>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Makes the exec runner of a pod's container.
pub type ExecFactory = Arc<dyn Fn(&Pod, &str) -> Arc<dyn Exec> + Send + Sync>;

/// A container whose liveness or startup probe failed: it must be killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    /// The container.
    pub container: String,
    /// The probe that failed.
    pub kind: ProbeKind,
    /// Why.
    pub message: String,
}

/// One pod's probe tasks, per running container instance.
pub struct ProbeManager {
    instances: HashMap<String, Instance>,
    exec: ExecFactory,
    wake: Arc<Notify>,
    events: EventSink,
}

impl std::fmt::Debug for ProbeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeManager")
            .field("containers", &self.instances.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn is_running(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.running.is_some())
}

impl ProbeManager {
    /// A manager that pokes `wake` on changes and reports to `events`.
    pub fn new(exec: ExecFactory, wake: Arc<Notify>, events: EventSink) -> Self {
        Self {
            instances: HashMap::new(),
            exec,
            wake,
            events,
        }
    }

    /// Starts probe tasks for running container instances that have
    /// probes and none yet, and drops those of instances no longer running.
    pub fn sync(&mut self, pod: &Pod, statuses: &[ContainerStatus], pod_ip: Option<&str>) {
        let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
        let mut live = Vec::new();
        for container in containers {
            let Some(status) = statuses.iter().find(|s| s.name == container.name) else {
                continue;
            };
            let id = status.container_id.clone().unwrap_or_default();
            if !is_running(status) || id.is_empty() {
                continue;
            }
            live.push(container.name.clone());
            if self
                .instances
                .get(&container.name)
                .is_some_and(|i| i.container_id == id)
            {
                continue;
            }
            let state = Arc::new(Mutex::new(ProbeState::initial(container)));
            let mut tasks = Vec::new();
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                let Some(probe) = kind.of(container) else {
                    continue;
                };
                let task = ProbeTask {
                    container: container.name.clone(),
                    kind,
                    timing: ProbeTiming::of(kind, probe),
                    action: action(probe, container, pod_ip),
                    exec: (self.exec)(pod, &container.name),
                    state: state.clone(),
                    wake: self.wake.clone(),
                    events: self.events.clone(),
                };
                tasks.push(tokio::spawn(task.run()));
            }
            self.instances.insert(
                container.name.clone(),
                Instance {
                    container_id: id,
                    state,
                    tasks,
                },
            );
        }
        self.instances.retain(|name, _| live.contains(name));
    }

    /// Stops every probe task (the pod finished).
    pub fn clear(&mut self) {
        self.instances.clear();
    }

    /// Sets `ready` and `started` of running containers from their probes.
    pub fn apply(&self, statuses: &mut [ContainerStatus]) {
        for status in statuses.iter_mut().filter(|s| is_running(s)) {
            let Some(instance) = self.instances.get(&status.name) else {
                continue;
            };
            if status.container_id.as_deref() != Some(instance.container_id.as_str()) {
                continue;
            }
            if let Ok(state) = instance.state.lock() {
                status.ready = state.ready();
                status.started = Some(state.started);
            }
        }
    }

    /// Running containers whose liveness or startup probe failed.
    pub fn unhealthy(&self) -> Vec<Unhealthy> {
        let mut out = Vec::new();
        for (name, instance) in &self.instances {
            let Ok(state) = instance.state.lock() else {
                continue;
            };
            let failure = [
                (ProbeKind::Startup, &state.startup_failure),
                (ProbeKind::Liveness, &state.liveness_failure),
            ]
            .into_iter()
            .find_map(|(kind, f)| f.clone().map(|m| (kind, m)));
            if let Some((kind, message)) = failure {
                out.push(Unhealthy {
                    container: name.clone(),
                    kind,
                    message,
                });
            }
        }
        out.sort_by(|a, b| a.container.cmp(&b.container));
        out
    }
}

#[cfg(test)]
mod tests;
