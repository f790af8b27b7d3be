//! One container's lifecycle in containerd: create (container record +
//! snapshot from the image's chain ID), start (task with stdio FIFOs),
//! state, stop (SIGTERM, then SIGKILL after the grace period) and remove
//! (task, container and snapshot).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::container::Runtime as ContainerRuntimeInfo;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest, GetContainerRequest, GetRequest,
    KillRequest, ListContainersRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::v1::Status as TaskStatus;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::connection::{Connection, Lease, RpcError, SNAPSHOTTER};
use super::logs::{FifoPair, LogError};

/// containerd's runc shim.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// Errors of a container operation.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A containerd call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The log FIFOs could not be set up.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The container's stored OCI spec is missing or not JSON.
    #[error("container {id} has no readable OCI spec")]
    BadSpec {
        /// The container ID.
        id: String,
    },
}

/// How a command run in a container (`exec`) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// It exited.
    Exited {
        /// Its exit code.
        code: i32,
        /// Its stdout and stderr, combined (at most [`MAX_EXEC_OUTPUT`]).
        output: String,
    },
    /// It ran past its timeout and was killed.
    TimedOut,
}

/// How much of an exec's output is kept (Kubernetes keeps 10 KiB).
pub const MAX_EXEC_OUTPUT: usize = 10 * 1024;

/// A FIFO receiving an exec's stdout and stderr; removed on drop.
struct OutputFifo {
    path: PathBuf,
    receiver: Option<pipe::Receiver>,
    writer: Option<pipe::Sender>,
}

impl OutputFifo {
    fn create(dir: &Path, exec_id: &str) -> Result<Self, LogError> {
        let path = dir.join(format!("{exec_id}-output"));
        let io = |source: std::io::Error| LogError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        match nix::unistd::mkfifo(path.as_path(), Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(errno) => return Err(io(errno.into())),
        }
        let receiver = pipe::OpenOptions::new().open_receiver(&path).map_err(io)?;
        // Held until the process started, so no read sees EOF before the
        // shim opened its end.
        let writer = pipe::OpenOptions::new().open_sender(&path).map_err(io)?;
        Ok(Self {
            path,
            receiver: Some(receiver),
            writer: Some(writer),
        })
    }

    /// Reads up to [`MAX_EXEC_OUTPUT`] bytes until EOF, in the background.
    fn spawn_reader(&mut self) -> Option<tokio::task::JoinHandle<String>> {
        let mut receiver = self.receiver.take()?;
        Some(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut buf = [0_u8; 4096];
            while let Ok(n) = receiver.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = MAX_EXEC_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
            String::from_utf8_lossy(&out).into_owned()
        }))
    }
}

impl Drop for OutputFifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Everything needed to create one container.
#[derive(Debug, Clone)]
pub struct CreateContainer {
    /// The containerd container ID (also the snapshot key).
    pub id: String,
    /// The OCI runtime spec.
    pub spec: Value,
    /// The image's normalised name.
    pub image: String,
    /// The image's top chain ID (the snapshot parent).
    pub chain_id: String,
    /// Labels (pod UID, container name...) for re-adoption.
    pub labels: HashMap<String, String>,
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// No task (never started, or deleted).
    Absent,
    /// Created, not started.
    Created,
    /// Running (or paused).
    Running {
        /// The init process ID on the host.
        pid: u32,
    },
    /// Exited.
    Exited {
        /// Exit code.
        code: u32,
        /// When, as Unix seconds and nanos.
        at: Option<(i64, i32)>,
    },
}

/// Creates the container record and its snapshot (under `lease`, so the
/// snapshot cannot be collected before the record references it).
pub async fn create(
    connection: &Connection,
    lease: &Lease,
    request: &CreateContainer,
) -> Result<(), ContainerError> {
    let prepare = PrepareSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key: request.id.clone(),
        parent: request.chain_id.clone(),
        labels: HashMap::new(),
    };
    match connection
        .snapshots()
        .prepare(connection.leased_request(prepare, lease))
        .await
    {
        Ok(_) => {}
        Err(status) if status.code() == Code::AlreadyExists => {}
        Err(status) => return Err(RpcError::call("snapshots.Prepare")(status).into()),
    }
    let container = Container {
        id: request.id.clone(),
        labels: request.labels.clone(),
        image: request.image.clone(),
        runtime: Some(ContainerRuntimeInfo {
            name: RUNC_RUNTIME.to_string(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: SPEC_TYPE_URL.to_string(),
            value: request.spec.to_string().into_bytes(),
        }),
        snapshotter: SNAPSHOTTER.to_string(),
        snapshot_key: request.id.clone(),
        created_at: None,
        updated_at: None,
        extensions: HashMap::new(),
        sandbox: String::new(),
    };
    connection
        .containers()
        .create(connection.leased_request(
            CreateContainerRequest {
                container: Some(container),
            },
            lease,
        ))
        .await
        .map_err(RpcError::call("containers.Create"))?;
    Ok(())
}

/// Creates and starts the task with stdout/stderr on `fifos` (and stdin
/// on the FIFO at `stdin`, if any); returns the init process ID.
pub async fn start(
    connection: &Connection,
    id: &str,
    fifos: &mut FifoPair,
    stdin: Option<&std::path::Path>,
) -> Result<u32, ContainerError> {
    let mounts = connection
        .snapshots()
        .mounts(
            connection.request(containerd_client::services::v1::snapshots::MountsRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: id.to_string(),
            }),
        )
        .await
        .map_err(RpcError::call("snapshots.Mounts"))?
        .into_inner()
        .mounts;
    let create = CreateTaskRequest {
        container_id: id.to_string(),
        rootfs: mounts,
        stdin: stdin.map(|p| p.display().to_string()).unwrap_or_default(),
        stdout: fifos.stdout_path.display().to_string(),
        stderr: fifos.stderr_path.display().to_string(),
        terminal: false,
        checkpoint: None,
        options: None,
        runtime_path: String::new(),
    };
    connection
        .tasks()
        .create(connection.request(create))
        .await
        .map_err(RpcError::call("tasks.Create"))?;
    fifos.release_writers();
    let started = connection
        .tasks()
        .start(connection.request(StartRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        }))
        .await
        .map_err(RpcError::call("tasks.Start"))?;
    Ok(started.into_inner().pid)
}

/// The task's current state.
pub async fn state(connection: &Connection, id: &str) -> Result<TaskState, ContainerError> {
    let request = GetRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
    };
    let process = match connection.tasks().get(connection.request(request)).await {
        Ok(response) => response.into_inner().process,
        Err(status) if status.code() == Code::NotFound => return Ok(TaskState::Absent),
        Err(status) => return Err(RpcError::call("tasks.Get")(status).into()),
    };
    let Some(process) = process else {
        return Ok(TaskState::Absent);
    };
    Ok(match TaskStatus::try_from(process.status) {
        Ok(TaskStatus::Created) => TaskState::Created,
        Ok(TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing) => {
            TaskState::Running { pid: process.pid }
        }
        Ok(TaskStatus::Stopped) => TaskState::Exited {
            code: process.exit_status,
            at: process.exited_at.map(|t| (t.seconds, t.nanos)),
        },
        _ => TaskState::Absent,
    })
}

/// Waits for the task to exit; returns its exit code and time.
pub async fn wait(
    connection: &Connection,
    id: &str,
) -> Result<(u32, Option<(i64, i32)>), ContainerError> {
    let request = WaitRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
    };
    let response = connection
        .tasks()
        .wait(connection.request(request))
        .await
        .map_err(RpcError::call("tasks.Wait"))?
        .into_inner();
    Ok((
        response.exit_status,
        response.exited_at.map(|t| (t.seconds, t.nanos)),
    ))
}

async fn signal(connection: &Connection, id: &str, signal: Signal) -> Result<(), ContainerError> {
    let request = KillRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
        signal: signal as u32,
        all: false,
    };
    match connection.tasks().kill(connection.request(request)).await {
        Ok(_) => Ok(()),
        Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => Ok(()),
        Err(status) => Err(RpcError::call("tasks.Kill")(status).into()),
    }
}

/// Stops the task: SIGTERM, then SIGKILL once `grace` has passed. Returns
/// the exit code and time, or `None` when there was no task.
pub async fn stop(
    connection: &Connection,
    id: &str,
    grace: Duration,
) -> Result<Option<(u32, Option<(i64, i32)>)>, ContainerError> {
    match state(connection, id).await? {
        TaskState::Absent => return Ok(None),
        TaskState::Exited { code, at } => return Ok(Some((code, at))),
        TaskState::Created | TaskState::Running { .. } => {}
    }
    // Subscribe to the exit before signalling, so it cannot be missed.
    let waiter = {
        let connection = connection.clone();
        let id = id.to_string();
        tokio::spawn(async move { wait(&connection, &id).await })
    };
    signal(connection, id, Signal::SIGTERM).await?;
    let mut waiter = waiter;
    let exit = match tokio::time::timeout(grace, &mut waiter).await {
        Ok(joined) => joined,
        Err(_) => {
            signal(connection, id, Signal::SIGKILL).await?;
            match tokio::time::timeout(Duration::from_secs(10), waiter).await {
                Ok(joined) => joined,
                Err(_) => return Ok(None),
            }
        }
    };
    match exit {
        Ok(Ok(exit)) => Ok(Some(exit)),
        Ok(Err(error)) => Err(error),
        Err(_) => Ok(None),
    }
}

/// Runs `args` in the running task of container `id` (with the
/// container's environment, user and working dir), waits up to `timeout`
/// for it to exit, and removes the process. Its output goes through a FIFO
/// under `io_dir`.
pub async fn exec(
    connection: &Connection,
    id: &str,
    exec_id: &str,
    args: &[String],
    timeout: Duration,
    io_dir: &Path,
) -> Result<ExecOutcome, ContainerError> {
    let record = connection
        .containers()
        .get(connection.request(GetContainerRequest { id: id.to_string() }))
        .await
        .map_err(RpcError::call("containers.Get"))?
        .into_inner()
        .container;
    let bad_spec = || ContainerError::BadSpec { id: id.to_string() };
    let spec: Value = record
        .and_then(|c| c.spec)
        .and_then(|any| serde_json::from_slice(&any.value).ok())
        .ok_or_else(bad_spec)?;
    let mut process = spec.get("process").cloned().ok_or_else(bad_spec)?;
    process["args"] = Value::from(args.to_vec());
    process["terminal"] = Value::Bool(false);
    let mut fifo = OutputFifo::create(io_dir, exec_id)?;
    let output_path = fifo.path.display().to_string();
    let request = ExecProcessRequest {
        container_id: id.to_string(),
        stdin: String::new(),
        stdout: output_path.clone(),
        stderr: output_path,
        terminal: false,
        spec: Some(prost_types::Any {
            type_url: PROCESS_TYPE_URL.to_string(),
            value: process.to_string().into_bytes(),
        }),
        exec_id: exec_id.to_string(),
    };
    connection
        .tasks()
        .exec(connection.request(request))
        .await
        .map_err(RpcError::call("tasks.Exec"))?;
    let reader = fifo.spawn_reader();
    let outcome = run_exec(connection, id, exec_id, timeout, &mut fifo).await;
    let outcome = match (outcome, reader) {
        (Ok(ExecOutcome::Exited { code, .. }), Some(reader)) => {
            let output = tokio::time::timeout(Duration::from_secs(1), reader)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            Ok(ExecOutcome::Exited { code, output })
        }
        (outcome, reader) => {
            if let Some(reader) = reader {
                reader.abort();
            }
            outcome
        }
    };
    let delete = DeleteProcessRequest {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
    };
    match connection
        .tasks()
        .delete_process(connection.request(delete))
        .await
    {
        Ok(_) => {}
        Err(status) if status.code() == Code::NotFound => {}
        Err(status) => {
            tracing::debug!(id, exec_id, error = %status, "cannot delete an exec process");
        }
    }
    outcome
}

async fn run_exec(
    connection: &Connection,
    id: &str,
    exec_id: &str,
    timeout: Duration,
    fifo: &mut OutputFifo,
) -> Result<ExecOutcome, ContainerError> {
    connection
        .tasks()
        .start(connection.request(StartRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        }))
        .await
        .map_err(RpcError::call("tasks.Start"))?;
    fifo.writer = None;
    let mut tasks = connection.tasks();
    let wait = tasks.wait(connection.request(WaitRequest {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
    }));
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(response)) => Ok(ExecOutcome::Exited {
            code: i32::try_from(response.into_inner().exit_status).unwrap_or(i32::MAX),
            output: String::new(),
        }),
        Ok(Err(status)) => Err(RpcError::call("tasks.Wait")(status).into()),
        Err(_) => {
            let kill = KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal: Signal::SIGKILL as u32,
                all: false,
            };
            let _ = connection.tasks().kill(connection.request(kill)).await;
            let mut tasks = connection.tasks();
            let wait = tasks.wait(connection.request(WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }));
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
            Ok(ExecOutcome::TimedOut)
        }
    }
}

/// Deletes the task, the container record and its snapshot; each step
/// tolerates an object already gone.
pub async fn remove(connection: &Connection, id: &str) -> Result<(), ContainerError> {
    let ignore_missing =
        |op: &'static str, result: Result<(), containerd_client::tonic::Status>| match result {
            Ok(()) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(ContainerError::from(RpcError::call(op)(status))),
        };
    let task = connection
        .tasks()
        .delete(connection.request(DeleteTaskRequest {
            container_id: id.to_string(),
        }))
        .await
        .map(|_| ());
    ignore_missing("tasks.Delete", task)?;
    let container = connection
        .containers()
        .delete(connection.request(DeleteContainerRequest { id: id.to_string() }))
        .await
        .map(|_| ());
    ignore_missing("containers.Delete", container)?;
    let snapshot = connection
        .snapshots()
        .remove(connection.request(RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: id.to_string(),
        }))
        .await
        .map(|_| ());
    ignore_missing("snapshots.Remove", snapshot)
}

/// Containers whose label `key` equals `value` (all skiff containers when
/// `label` is `None`).
pub async fn list(
    connection: &Connection,
    label: Option<(&str, &str)>,
) -> Result<Vec<Container>, ContainerError> {
    let filters = label
        .map(|(key, value)| vec![format!("labels.\"{key}\"=={value}")])
        .unwrap_or_default();
    let response = connection
        .containers()
        .list(connection.request(ListContainersRequest { filters }))
        .await
        .map_err(RpcError::call("containers.List"))?;
    Ok(response.into_inner().containers)
}
