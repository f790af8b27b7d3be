//! One container instance at a time: restarting a container (a new
//! instance whose labels remember how the previous one ended), and the
//! log copiers and exit watchers attached to each running instance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use containerd_client::services::v1::Container as ContainerdContainer;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::super::containers;
use super::super::labels;
use super::super::logs::FifoPair;
use super::super::pod_runtime::{ContainerExit, ExecOutcome};
use super::super::status::{restart_count, LastExit};
use super::{
    pod_ref, ContainerdRuntime, ContainerdRuntimeError, PodRef, Sandbox, POD_LEASE_EXPIRY,
};
use crate::cni::SandboxRef;

/// Makes exec process IDs unique within the agent.
static EXEC_SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl ContainerdRuntime {
    /// Replaces the latest instance of container `name` (stopping it if it
    /// still runs) by a new one whose restart count is one higher and whose
    /// labels record how the old one ended, for `lastState`.
    pub(super) async fn restart_container_inner(
        &self,
        pod: &Pod,
        name: &str,
    ) -> Result<ContainerStatus, ContainerdRuntimeError> {
        let pod_ref = pod_ref(pod)?;
        let container = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| ContainerdRuntimeError::UnknownContainer {
                pod: pod_ref.name.to_string(),
                container: name.to_string(),
            })?;
        let existing = self.pod_containers(pod_ref.uid).await?;
        let (next, last) = match existing.get(name) {
            Some(record) => {
                let exit = containers::stop(&self.connection, &record.id, Duration::ZERO).await?;
                let (code, at) = exit.unwrap_or((137, None));
                let last = LastExit {
                    exit_code: i32::try_from(code).unwrap_or(i32::MAX),
                    started_at: record.created_at.as_ref().map(|t| t.seconds),
                    finished_at: at.map(|(seconds, _)| seconds),
                    container_id: record.id.clone(),
                    reason: self.exit_reason_of(pod_ref.uid, &record.id),
                };
                self.forget(&record.id).await;
                containers::remove(&self.connection, &record.id).await?;
                (restart_count(record) + 1, Some(last))
            }
            None => (0, None),
        };
        let network = self
            .network
            .setup(&SandboxRef {
                pod_uid: pod_ref.uid.to_string(),
            })
            .await?;
        let etc = self.write_pod_files(pod, &pod_ref, &network).await?;
        let volumes = self.prepare_volumes(pod, &pod_ref, &network).await;
        let lease = self
            .connection
            .create_lease("container", POD_LEASE_EXPIRY)
            .await?;
        let sandbox = Sandbox {
            pod: pod.clone(),
            network,
            etc,
            lease,
            volumes,
        };
        let status = self
            .start_container(&pod_ref, container, &sandbox, next, last.as_ref())
            .await;
        self.connection.delete_lease(sandbox.lease).await?;
        status
    }

    /// The ID of the latest instance of container `name`, if it runs.
    async fn running_instance(
        &self,
        pod: &Pod,
        name: &str,
    ) -> Result<String, ContainerdRuntimeError> {
        let pod_ref = pod_ref(pod)?;
        let not_running = || ContainerdRuntimeError::NotRunning {
            pod: pod_ref.name.to_string(),
            container: name.to_string(),
        };
        let existing = self.pod_containers(pod_ref.uid).await?;
        let record = existing.get(name).ok_or_else(not_running)?;
        match containers::state(&self.connection, &record.id).await? {
            containers::TaskState::Running { .. } => Ok(record.id.clone()),
            _ => Err(not_running()),
        }
    }

    /// Runs `command` in the running instance of container `name`.
    pub(super) async fn exec_inner(
        &self,
        pod: &Pod,
        name: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutcome, ContainerdRuntimeError> {
        let id = self.running_instance(pod, name).await?;
        let exec_id = format!("probe-{}", EXEC_SEQUENCE.fetch_add(1, Ordering::Relaxed));
        let io_dir = self.pod_dir(pod_ref(pod)?.uid).join("io");
        Ok(containers::exec(&self.connection, &id, &exec_id, command, timeout, &io_dir).await?)
    }

    /// Stops the running instance of container `name`; it stays, exited.
    pub(super) async fn kill_inner(
        &self,
        pod: &Pod,
        name: &str,
        grace: Duration,
    ) -> Result<(), ContainerdRuntimeError> {
        let id = match self.running_instance(pod, name).await {
            Ok(id) => id,
            Err(ContainerdRuntimeError::NotRunning { .. }) => return Ok(()),
            Err(error) => return Err(error),
        };
        let exit = containers::stop(&self.connection, &id, grace).await?;
        info!(container = name, id = %id, exit = ?exit.map(|(code, _)| code), "container killed");
        Ok(())
    }

    /// Stops copying a container instance's logs (after its exit).
    pub(super) async fn forget(&self, id: &str) {
        let copier = self
            .copiers
            .lock()
            .ok()
            .and_then(|mut copiers| copiers.remove(id));
        if let Some(copier) = copier {
            let _ = tokio::time::timeout(Duration::from_secs(2), copier).await;
        }
    }

    pub(super) fn track(&self, id: &str, copier: JoinHandle<()>) {
        if let Ok(mut copiers) = self.copiers.lock() {
            copiers.insert(id.to_string(), copier);
        }
    }

    pub(super) fn watch_exit(&self, pod_uid: &str, name: &str, id: &str) {
        let connection = self.connection.clone();
        let exits = self.exits.clone();
        let stdin = self.stdin.clone();
        let (pod_uid, name, id) = (pod_uid.to_string(), name.to_string(), id.to_string());
        tokio::spawn(async move {
            if let Ok((code, _)) = containers::wait(&connection, &id).await {
                stdin.remove(&id);
                // No receiver is fine: the pod loop may not listen yet.
                let _ = exits.send(ContainerExit {
                    pod_uid,
                    container: name,
                    exit_code: i32::try_from(code).unwrap_or(i32::MAX),
                });
            }
        });
    }

    /// Re-attaches log copying and exit watching to a container found
    /// running after an agent restart.
    pub(super) async fn adopt(
        &self,
        pod: &PodRef<'_>,
        container: &Container,
        record: &ContainerdContainer,
    ) {
        let already = self
            .copiers
            .lock()
            .map(|copiers| copiers.contains_key(&record.id))
            .unwrap_or(true);
        if already {
            return;
        }
        let restart_count = record
            .labels
            .get(labels::RESTART_COUNT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match FifoPair::open(&self.pod_dir(pod.uid).join("io"), &record.id, false).await {
            Ok(fifos) => {
                let copier = fifos.spawn_copier(self.log_file(pod, &container.name, restart_count));
                self.track(&record.id, copier);
            }
            Err(error) => warn!(id = %record.id, %error, "cannot re-attach container logs"),
        }
        self.watch_exit(pod.uid, &container.name, &record.id);
        info!(container = %container.name, id = %record.id, "container re-adopted");
    }
}
