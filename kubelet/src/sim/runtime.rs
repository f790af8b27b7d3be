//! The simulated runtime: every container starts at once and runs forever.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    Pod,
};

use crate::runtime::{Runtime, RuntimeError, StartedPod};

/// A runtime whose containers exist only as statuses.
#[derive(Debug, Default)]
pub struct SimRuntime;

fn container_id(pod: &Pod, c: &Container) -> String {
    format!(
        "sim://{}/{}",
        pod.metadata.uid.as_deref().unwrap_or_default(),
        c.name
    )
}

fn status(pod: &Pod, c: &Container, state: ContainerState, ready: bool) -> ContainerStatus {
    let image = c.image.clone().unwrap_or_default();
    ContainerStatus {
        name: c.name.clone(),
        image_id: format!("sim://{image}"),
        image,
        container_id: Some(container_id(pod, c)),
        ready,
        started: Some(ready),
        restart_count: 0,
        state: Some(state),
        ..Default::default()
    }
}

fn terminated(reason: &str, exit_code: i32) -> ContainerState {
    let now = crate::time::now();
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some(reason.to_string()),
            started_at: Some(now.clone()),
            finished_at: Some(now),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[async_trait]
impl Runtime for SimRuntime {
    fn version(&self) -> &str {
        concat!("sim://", env!("CARGO_PKG_VERSION"))
    }

    async fn start_pod(&self, pod: &Pod, _pod_ip: &str) -> Result<StartedPod, RuntimeError> {
        let spec = pod
            .spec
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidSpec("the pod has no spec".into()))?;
        let running = ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(crate::time::now()),
            }),
            ..Default::default()
        };
        Ok(StartedPod {
            containers: spec
                .containers
                .iter()
                .map(|c| status(pod, c, running.clone(), true))
                .collect(),
            init_containers: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| status(pod, c, terminated("Completed", 0), false))
                .collect(),
        })
    }

    async fn stop_pod(&self, pod: &Pod) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
        Ok(containers
            .unwrap_or_default()
            .iter()
            .map(|c| status(pod, c, terminated("Error", 137), false))
            .collect())
    }
}
