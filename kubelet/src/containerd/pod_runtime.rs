//! The runtime interface a real container runtime needs — the proposed
//! extension of `crate::runtime::Runtime` (which was shaped for `sim`).
//!
//! Differences from the current trait:
//! - the runtime owns the sandbox, so `start_pod` *returns* the pod IP
//!   (CNI allocates it) instead of taking one;
//! - `start_pod` is idempotent and re-adopts running containers, so a
//!   restarted agent never starts duplicates;
//! - `pod_status` polls container states (exit codes, restarts) and
//!   `exits` pushes exit events, for restart policies and probes;
//! - `stop_pod` takes the grace period (`terminationGracePeriodSeconds`);
//! - `list_pods` finds what runs on the node, to clean up pods deleted
//!   while the agent was down;
//! - `log_path` says where `kubectl logs` reads a container's log;
//! - `exec_sync` runs a command in a container (exec probes) and
//!   `kill_container` stops one instance (failed liveness probes), leaving
//!   it exited for the restart policy;
//! - `refresh_volumes` re-projects API-data volumes of a running pod.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use tokio::sync::broadcast;

pub use super::containers::ExecOutcome;

/// What starting (or re-adopting) a pod gave.
#[derive(Debug, Clone, Default)]
pub struct StartedSandboxPod {
    /// The pod IP allocated by the network plugin.
    pub pod_ip: Option<String>,
    /// One status per container of the spec, in order.
    pub containers: Vec<ContainerStatus>,
    /// One status per init container of the spec, in order.
    pub init_containers: Vec<ContainerStatus>,
}

/// A container of the node found in the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeContainer {
    /// Its name in the pod spec.
    pub name: String,
    /// The runtime's container ID (without the `containerd://` prefix).
    pub id: String,
    /// Whether its task is running.
    pub running: bool,
}

/// A pod of the node found in the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePod {
    /// The pod's UID.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Its containers.
    pub containers: Vec<RuntimeContainer>,
}

/// A container's process exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    /// The pod's UID.
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
    /// The exit code.
    pub exit_code: i32,
}

/// A runtime that owns pod sandboxes and reports container lifecycles.
#[async_trait]
pub trait PodRuntime: Send + Sync + 'static {
    /// The error type.
    type Error: std::error::Error + Send + Sync + 'static;
    /// `containerd://1.6.20`, for `nodeInfo.containerRuntimeVersion`.
    fn version(&self) -> &str;
    /// Sets up the sandbox and starts every container (or re-adopts those
    /// already running). Init containers run first, one per call: the app
    /// containers start on the call that finds every init container
    /// exited with 0.
    async fn start_pod(&self, pod: &Pod) -> Result<StartedSandboxPod, Self::Error>;
    /// Replaces the latest instance of `container` (stopped first if it
    /// still runs) by a new one with a restart count one higher, whose
    /// `lastState` tells how the old one ended.
    async fn restart_container(
        &self,
        pod: &Pod,
        container: &str,
    ) -> Result<ContainerStatus, Self::Error>;
    /// The containers' current statuses, in spec order.
    async fn pod_status(&self, pod: &Pod) -> Result<Vec<ContainerStatus>, Self::Error>;
    /// The init containers' current statuses, in spec order (those not
    /// created yet wait `PodInitializing`).
    async fn init_status(&self, pod: &Pod) -> Result<Vec<ContainerStatus>, Self::Error>;
    /// Stops every container (SIGTERM, SIGKILL after `grace`), removes
    /// them and the sandbox; returns the final statuses.
    async fn stop_pod(
        &self,
        pod: &Pod,
        grace: Duration,
    ) -> Result<Vec<ContainerStatus>, Self::Error>;
    /// Every pod the runtime knows on this node (with containers, or only
    /// a network sandbox).
    async fn list_pods(&self) -> Result<Vec<RuntimePod>, Self::Error>;
    /// Exit events; a lagging receiver must resync with `pod_status`.
    fn exits(&self) -> broadcast::Receiver<ContainerExit>;
    /// The CRI-format log file of a container instance.
    fn log_path(&self, pod: &Pod, container: &str, restart_count: i32) -> PathBuf;
    /// Runs `command` in the running instance of `container` and waits up
    /// to `timeout` for its exit code (the CRI's `ExecSync`).
    async fn exec_sync(
        &self,
        pod: &Pod,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutcome, Self::Error>;
    /// Re-projects the pod's configMap, secret, downwardAPI and projected
    /// volumes, so running containers see updated objects. A failure keeps
    /// the files as they were (as Kubernetes does) and is only logged.
    async fn refresh_volumes(&self, pod: &Pod) -> Result<(), Self::Error> {
        let _ = pod;
        Ok(())
    }
    /// Stops the running instance of `container` (SIGTERM, SIGKILL after
    /// `grace`) and leaves it exited, for the restart policy to handle.
    async fn kill_container(
        &self,
        pod: &Pod,
        container: &str,
        grace: Duration,
    ) -> Result<(), Self::Error>;
}
