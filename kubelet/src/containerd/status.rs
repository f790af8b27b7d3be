//! Kubernetes `ContainerStatus`es from containerd's containers and tasks.

use containerd_client::services::v1::Container as ContainerdContainer;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::containers::TaskState;
use super::labels;

/// A container that is not running yet, with the Kubernetes reason
/// (`ErrImageNeverPull`, `ErrImagePull`, `CreateContainerConfigError`...).
pub fn waiting(container: &Container, reason: &str, message: String) -> ContainerStatus {
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message: Some(message),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A containerd timestamp as a Kubernetes time.
pub fn timestamp(at: Option<(i64, i32)>) -> Option<Time> {
    let (seconds, nanos) = at?;
    Timestamp::new(seconds, nanos).ok().map(Time)
}

/// The status of a container from its containerd record and task state.
pub fn status_from(
    container: &Container,
    record: &ContainerdContainer,
    state: TaskState,
) -> ContainerStatus {
    let label = |key: &str| record.labels.get(key).cloned();
    let restart_count = label(labels::RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let started_at = timestamp(record.created_at.as_ref().map(|t| (t.seconds, t.nanos)));
    let container_state = match state {
        TaskState::Running { .. } => ContainerState {
            running: Some(ContainerStateRunning { started_at }),
            ..Default::default()
        },
        TaskState::Exited { code, at } => {
            let exit_code = i32::try_from(code).unwrap_or(i32::MAX);
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code,
                    reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.to_string()),
                    started_at,
                    finished_at: timestamp(at),
                    container_id: Some(format!("containerd://{}", record.id)),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        TaskState::Created | TaskState::Absent => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".to_string()),
                message: None,
            }),
            ..Default::default()
        },
    };
    let running = matches!(state, TaskState::Running { .. });
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: label(labels::IMAGE_ID).unwrap_or_default(),
        container_id: Some(format!("containerd://{}", record.id)),
        ready: running && container.readiness_probe.is_none(),
        started: Some(running),
        restart_count,
        state: Some(container_state),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_image_with_pull_policy_never_waits_with_err_image_never_pull() {
        let container = Container {
            name: "c".to_string(),
            image: Some("busybox:1.36".to_string()),
            ..Default::default()
        };
        let status = waiting(&container, "ErrImageNeverPull", "m".to_string());
        let reason = status.state.and_then(|s| s.waiting).and_then(|w| w.reason);
        assert_eq!(reason.as_deref(), Some("ErrImageNeverPull"));
    }
}
