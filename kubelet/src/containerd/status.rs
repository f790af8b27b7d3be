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

/// The instance number of a container record (its restart count).
pub fn restart_count(record: &ContainerdContainer) -> i32 {
    record
        .labels
        .get(labels::RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// How the previous instance of a container ended, kept on the next
/// instance's labels so `lastState` survives agent restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastExit {
    /// Its exit code.
    pub exit_code: i32,
    /// When it started (Unix seconds).
    pub started_at: Option<i64>,
    /// When it exited (Unix seconds).
    pub finished_at: Option<i64>,
    /// Its containerd ID.
    pub container_id: String,
    /// Its reason when not derived from the exit code (`OOMKilled`).
    pub reason: Option<String>,
}

impl LastExit {
    /// The labels recording this exit.
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (
                labels::LAST_EXIT_CODE.to_string(),
                self.exit_code.to_string(),
            ),
            (
                labels::LAST_CONTAINER_ID.to_string(),
                self.container_id.clone(),
            ),
        ];
        if let Some(reason) = &self.reason {
            out.push((labels::LAST_REASON.to_string(), reason.clone()));
        }
        if let Some(at) = self.started_at {
            out.push((labels::LAST_STARTED_AT.to_string(), at.to_string()));
        }
        if let Some(at) = self.finished_at {
            out.push((labels::LAST_FINISHED_AT.to_string(), at.to_string()));
        }
        out
    }

    /// The exit recorded on `record`, if it is a restarted instance.
    pub fn from_labels(record: &ContainerdContainer) -> Option<Self> {
        let label = |key: &str| record.labels.get(key);
        Some(Self {
            exit_code: label(labels::LAST_EXIT_CODE)?.parse().ok()?,
            started_at: label(labels::LAST_STARTED_AT).and_then(|v| v.parse().ok()),
            finished_at: label(labels::LAST_FINISHED_AT).and_then(|v| v.parse().ok()),
            container_id: label(labels::LAST_CONTAINER_ID)
                .cloned()
                .unwrap_or_default(),
            reason: label(labels::LAST_REASON).cloned(),
        })
    }

    /// As a Kubernetes `lastState`.
    pub fn to_state(&self) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: self.exit_code,
                reason: Some(
                    self.reason
                        .clone()
                        .unwrap_or_else(|| exit_reason(self.exit_code).to_string()),
                ),
                started_at: timestamp(self.started_at.map(|s| (s, 0))),
                finished_at: timestamp(self.finished_at.map(|s| (s, 0))),
                container_id: (!self.container_id.is_empty())
                    .then(|| format!("containerd://{}", self.container_id)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// `Completed` for exit code 0, else `Error` (OOM kills are reported apart,
/// see [`mark_oom_killed`]).
pub fn exit_reason(exit_code: i32) -> &'static str {
    if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// The reason of a container killed by the kernel's OOM killer.
pub const OOM_KILLED: &str = "OOMKilled";

/// Whether a cgroup's OOM killer killed a process: `oom_kill N` with N > 0
/// in `memory.events` (cgroup v2) or `memory.oom_control` (v1).
pub fn oom_kill_count(events: &str) -> u64 {
    events
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Reports a terminated container as `OOMKilled` (Kubernetes' reason for a
/// container its memory limit killed).
pub fn mark_oom_killed(status: &mut ContainerStatus) {
    if let Some(terminated) = status.state.as_mut().and_then(|s| s.terminated.as_mut()) {
        terminated.reason = Some(OOM_KILLED.to_string());
    }
}

/// The status of a container from its containerd record and task state.
pub fn status_from(
    container: &Container,
    record: &ContainerdContainer,
    state: TaskState,
) -> ContainerStatus {
    let label = |key: &str| record.labels.get(key).cloned();
    let restart_count = restart_count(record);
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
                    reason: Some(exit_reason(exit_code).to_string()),
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
        last_state: LastExit::from_labels(record).map(|last| last.to_state()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_instance_reports_the_previous_exit_as_last_state() {
        let container = Container {
            name: "c".to_string(),
            ..Default::default()
        };
        let last = LastExit {
            exit_code: 1,
            started_at: Some(1_700_000_000),
            finished_at: Some(1_700_000_002),
            container_id: "abc-c-0".to_string(),
            reason: None,
        };
        let mut record = ContainerdContainer {
            id: "abc-c-1".to_string(),
            ..Default::default()
        };
        record.labels.extend(last.labels());
        record
            .labels
            .insert(labels::RESTART_COUNT.to_string(), "1".to_string());
        let status = status_from(&container, &record, TaskState::Running { pid: 1 });
        assert_eq!(status.restart_count, 1);
        let terminated = status
            .last_state
            .and_then(|s| s.terminated)
            .expect("last state");
        assert_eq!(terminated.exit_code, 1);
        assert_eq!(terminated.reason.as_deref(), Some("Error"));
        assert_eq!(
            terminated.container_id.as_deref(),
            Some("containerd://abc-c-0")
        );
    }

    #[test]
    fn an_oom_kill_is_the_last_state_reason_after_a_restart() {
        let container = Container {
            name: "c".to_string(),
            ..Default::default()
        };
        let last = LastExit {
            exit_code: 137,
            started_at: None,
            finished_at: None,
            container_id: "abc-c-0".to_string(),
            reason: Some(OOM_KILLED.to_string()),
        };
        let mut record = ContainerdContainer::default();
        record.labels.extend(last.labels());
        let status = status_from(&container, &record, TaskState::Running { pid: 1 });
        let terminated = status
            .last_state
            .and_then(|s| s.terminated)
            .expect("last state");
        assert_eq!(terminated.reason.as_deref(), Some("OOMKilled"));
        assert_eq!(terminated.exit_code, 137);
    }

    #[test]
    fn oom_kill_counters_are_read_from_v1_and_v2_files() {
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(oom_kill_count(v2), 1);
        assert_eq!(oom_kill_count(v1), 2);
        assert_eq!(oom_kill_count("oom_kill_disable 0\nunder_oom 0\n"), 0);
    }

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
