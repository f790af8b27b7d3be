//! The container runtime seen by the pod loop.
//!
//! A runtime starts and stops a pod's containers and reports their statuses;
//! the pod loop owns everything that talks to the API (status writes,
//! deletion). `sim` is the only implementation today; containerd will be the
//! second.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Errors a runtime reports for one pod.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The pod's spec cannot run on this runtime (missing containers...).
    #[error("pod spec cannot run: {0}")]
    InvalidSpec(String),
}

/// What a runtime reports after starting a pod.
#[derive(Debug, Clone)]
pub struct StartedPod {
    /// One status per container of the spec, in order.
    pub containers: Vec<ContainerStatus>,
    /// One status per init container of the spec, in order.
    pub init_containers: Vec<ContainerStatus>,
}

/// A container runtime: runs pods given their spec and sandbox IP.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name and version, as shown in `nodeInfo.containerRuntimeVersion`.
    fn version(&self) -> &str;
    /// Starts every container of `pod` in a sandbox that owns `pod_ip`.
    async fn start_pod(&self, pod: &Pod, pod_ip: &str) -> Result<StartedPod, RuntimeError>;
    /// Stops every container of `pod` and removes its sandbox; returns the
    /// containers' final (terminated) statuses.
    async fn stop_pod(&self, pod: &Pod) -> Result<Vec<ContainerStatus>, RuntimeError>;
}
