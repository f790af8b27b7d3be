//! Init containers: run one at a time, each to completion (exit 0),
//! before the pod's app containers start. [`super::ContainerdRuntime`]'s
//! `start_pod` calls [`ContainerdRuntime::start_init_containers`] on each
//! sync, which starts the next one once the previous one completed; the
//! pod worker restarts failed ones per the restart policy.

use std::collections::HashMap;

use containerd_client::services::v1::Container as ContainerdContainer;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodSpec};

use super::super::containers::{self, TaskState};
use super::super::status::waiting;
use super::{pod_ref, ContainerdRuntime, ContainerdRuntimeError, PodRef, Sandbox};

impl ContainerdRuntime {
    /// Runs the init containers one at a time: each call re-adopts those
    /// already created and starts the first one not created yet, unless an
    /// earlier one still runs or failed. Returns their statuses (those not
    /// reached wait `PodInitializing`) and whether all completed with 0.
    pub(super) async fn start_init_containers(
        &self,
        pod_ref: &PodRef<'_>,
        spec: &PodSpec,
        existing: &HashMap<String, ContainerdContainer>,
        sandbox: &Sandbox,
    ) -> Result<(Vec<ContainerStatus>, bool), ContainerdRuntimeError> {
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        let mut statuses = Vec::with_capacity(inits.len());
        let mut blocked = false;
        for container in inits {
            if blocked {
                statuses.push(waiting(container, "PodInitializing", String::new()));
                continue;
            }
            let status = match existing.get(&container.name) {
                Some(record) => {
                    let state = containers::state(&self.connection, &record.id).await?;
                    if matches!(state, TaskState::Running { .. }) {
                        self.adopt(pod_ref, container, record).await;
                    }
                    self.status_of(pod_ref.uid, container, record, state)
                }
                None => {
                    self.start_container(pod_ref, container, sandbox, 0, None)
                        .await?
                }
            };
            blocked = !matches!(
                status.state.as_ref().and_then(|s| s.terminated.as_ref()),
                Some(t) if t.exit_code == 0
            );
            statuses.push(status);
        }
        Ok((statuses, !blocked))
    }

    /// The init containers' statuses, in spec order (`PodInitializing`
    /// for those not created yet).
    pub(super) async fn init_status_inner(
        &self,
        pod: &Pod,
    ) -> Result<Vec<ContainerStatus>, ContainerdRuntimeError> {
        let pod_ref = pod_ref(pod)?;
        let inits = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or_default();
        if inits.is_empty() {
            return Ok(Vec::new());
        }
        let existing = self.pod_containers(pod_ref.uid).await?;
        let mut statuses = Vec::new();
        for container in inits {
            match existing.get(&container.name) {
                Some(record) => {
                    let state = containers::state(&self.connection, &record.id).await?;
                    statuses.push(self.status_of(pod_ref.uid, container, record, state));
                }
                None => statuses.push(waiting(container, "PodInitializing", String::new())),
            }
        }
        Ok(statuses)
    }
}
