//! Interactive `exec` through containerd (`kubectl exec`): `Tasks.Exec`
//! with a process spec derived from the container's own (environment,
//! user, working dir, capabilities), stdio on FIFOs in a per-exec dir,
//! `ResizePty` for terminal resizes and `CloseIO` for stdin EOF.
//!
//! FIFO opening order, as for container logs ([`super::logs`]): skiff
//! opens the read ends of stdout/stderr non-blocking and holds a temporary
//! write end until `Tasks.Start`, so the shim's open succeeds and no read
//! sees EOF early; stdin is opened read-write so opening never blocks on
//! a missing reader. The exit is reported once the output reached EOF (or
//! after a short grace, when a background child keeps the pipes open);
//! then the process is deleted and its dir removed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, GetContainerRequest,
    ListContainersRequest, ResizePtyRequest, StartRequest, WaitRequest,
};
use nix::sys::stat::Mode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use super::connection::{Connection, RpcError};
use super::containers::{self, TaskState};
use super::labels;
use super::stdin::{StdinPipes, StdinWriter};
use crate::server::exec::{AttachStdin, ExecProcess, ExecRequest, ExecRuntime, LookupError};
use crate::server::stream::TerminalSize;

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// Chunks of output or input queued between the FIFOs and the session.
const CHUNK_QUEUE: usize = 16;
/// How long output may still arrive after the process exited.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

static EXEC_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Errors setting up an exec.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A containerd call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The container's stored OCI spec is missing or not JSON.
    #[error("container {id} has no readable OCI spec")]
    BadSpec {
        /// The container ID.
        id: String,
    },
    /// A FIFO could not be created or opened.
    #[error("exec FIFO {path}: {source}")]
    Fifo {
        /// The FIFO.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs `kubectl exec` commands in containerd containers.
#[derive(Debug, Clone)]
pub struct ContainerdExec {
    connection: Connection,
    io_root: PathBuf,
    stdin: StdinPipes,
}

impl ContainerdExec {
    /// Execs over `connection`, with FIFOs under `io_root` (one dir per exec).
    pub fn new(connection: Connection, io_root: PathBuf) -> Self {
        Self {
            connection,
            io_root,
            stdin: StdinPipes::default(),
        }
    }

    /// Finds containers' own stdin (for attach) in `pipes`, which the
    /// runtime fills.
    pub fn with_stdin(mut self, pipes: StdinPipes) -> Self {
        self.stdin = pipes;
        self
    }

    async fn find_running(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<String, LookupError> {
        let filters = vec![format!(
            "labels.\"{}\"=={namespace},labels.\"{}\"=={pod}",
            labels::POD_NAMESPACE,
            labels::POD_NAME
        )];
        let records = self
            .connection
            .containers()
            .list(self.connection.request(ListContainersRequest { filters }))
            .await
            .map_err(|status| LookupError::Runtime(status.message().to_string()))?
            .into_inner()
            .containers;
        if records.is_empty() {
            return Err(LookupError::PodNotFound);
        }
        let mut candidates: Vec<(i64, String)> = records
            .iter()
            .filter(|r| r.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(container))
            .map(|r| {
                let restarts = r
                    .labels
                    .get(labels::RESTART_COUNT)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                (restarts, r.id.clone())
            })
            .collect();
        candidates.sort();
        for (_, id) in candidates.into_iter().rev() {
            if let Ok(TaskState::Running { .. }) = containers::state(&self.connection, &id).await {
                return Ok(id);
            }
        }
        Err(LookupError::ContainerNotFound(container.to_string()))
    }

    /// The container's process spec with `request`'s command and terminal.
    async fn process_spec(&self, id: &str, request: &ExecRequest) -> Result<Value, ExecError> {
        let record = self
            .connection
            .containers()
            .get(
                self.connection
                    .request(GetContainerRequest { id: id.to_string() }),
            )
            .await
            .map_err(RpcError::call("containers.Get"))?
            .into_inner()
            .container;
        let bad_spec = || ExecError::BadSpec { id: id.to_string() };
        let spec: Value = record
            .and_then(|c| c.spec)
            .and_then(|any| serde_json::from_slice(&any.value).ok())
            .ok_or_else(bad_spec)?;
        let mut process = spec.get("process").cloned().ok_or_else(bad_spec)?;
        process["args"] = Value::from(request.command.clone());
        process["terminal"] = Value::Bool(request.tty);
        if request.tty {
            let env = process["env"].as_array().cloned().unwrap_or_default();
            if !env
                .iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with("TERM=")))
            {
                let mut env = env;
                env.push(Value::from("TERM=xterm"));
                process["env"] = Value::from(env);
            }
        }
        Ok(process)
    }

    async fn start(&self, id: &str, request: ExecRequest) -> Result<ExecProcess, ExecError> {
        let process = self.process_spec(id, &request).await?;
        let exec_id = format!(
            "exec-{}-{}",
            std::process::id(),
            EXEC_SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.io_root.join(&exec_id);
        let mut fifos = ExecFifos::open(&dir, &request)?;
        let path_of = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let exec = ExecProcessRequest {
            container_id: id.to_string(),
            stdin: path_of(&fifos.stdin_path),
            stdout: path_of(&fifos.stdout_path),
            stderr: path_of(&fifos.stderr_path),
            terminal: request.tty,
            spec: Some(prost_types::Any {
                type_url: PROCESS_TYPE_URL.to_string(),
                value: process.to_string().into_bytes(),
            }),
            exec_id: exec_id.clone(),
        };
        let cleanup = |dir: PathBuf| async move {
            let _ = tokio::fs::remove_dir_all(dir).await;
        };
        if let Err(status) = self
            .connection
            .tasks()
            .exec(self.connection.request(exec))
            .await
        {
            cleanup(dir).await;
            return Err(RpcError::call("tasks.Exec")(status).into());
        }
        let started = self
            .connection
            .tasks()
            .start(self.connection.request(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.clone(),
            }))
            .await;
        if let Err(status) = started {
            self.delete_process(id, &exec_id).await;
            cleanup(dir).await;
            return Err(RpcError::call("tasks.Start")(status).into());
        }
        fifos.writers.clear();
        let handle = ProcessHandle {
            connection: self.connection.clone(),
            container_id: id.to_string(),
            exec_id,
        };
        let (stdout_tx, stdout_rx) = mpsc::channel(CHUNK_QUEUE);
        let (stderr_tx, stderr_rx) = mpsc::channel(CHUNK_QUEUE);
        let mut pumps = Vec::new();
        let stdout = fifos.stdout.take().map(|fifo| {
            pumps.push(tokio::spawn(read_fifo(fifo, stdout_tx)));
            stdout_rx
        });
        let stderr = fifos.stderr.take().map(|fifo| {
            pumps.push(tokio::spawn(read_fifo(fifo, stderr_tx)));
            stderr_rx
        });
        let stdin = fifos.stdin.take().map(|fifo| {
            let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
            tokio::spawn(write_fifo(fifo, rx, handle.clone()));
            tx
        });
        let resize = request.tty.then(|| {
            let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
            tokio::spawn(resize_pty(rx, handle.clone()));
            tx
        });
        let (exit_tx, exit) = oneshot::channel();
        tokio::spawn(async move {
            let code = handle.wait().await;
            let drained = futures::future::join_all(pumps);
            if tokio::time::timeout(OUTPUT_GRACE, drained).await.is_err() {
                tracing::debug!(exec_id = %handle.exec_id, "exec output still open after exit");
            }
            let _ = exit_tx.send(code);
            handle.delete().await;
            drop(fifos);
            cleanup(dir).await;
        });
        Ok(ExecProcess {
            stdin,
            stdout,
            stderr,
            resize,
            exit,
        })
    }

    async fn delete_process(&self, id: &str, exec_id: &str) {
        ProcessHandle {
            connection: self.connection.clone(),
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        }
        .delete()
        .await;
    }
}

#[async_trait]
impl ExecRuntime for ContainerdExec {
    async fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<String, LookupError> {
        self.find_running(namespace, pod, container).await
    }

    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecProcess, String> {
        self.start(id, request).await.map_err(|e| match e {
            ExecError::Rpc(RpcError::Call { status, .. }) => status.message().to_string(),
            other => other.to_string(),
        })
    }

    fn stdin(&self, id: &str) -> Option<Arc<dyn AttachStdin>> {
        let writer = self.stdin.writer(id)?;
        Some(Arc::new(ContainerStdin {
            writer,
            task: ProcessHandle {
                connection: self.connection.clone(),
                container_id: id.to_string(),
                // The task's init process.
                exec_id: String::new(),
            },
        }))
    }
}

/// A container's own stdin, for attach.
#[derive(Debug)]
struct ContainerStdin {
    writer: StdinWriter,
    task: ProcessHandle,
}

#[async_trait]
impl AttachStdin for ContainerStdin {
    async fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write(bytes).await
    }

    async fn session_ended(&self) {
        if self.writer.session_ended().await {
            self.task.close_stdin().await;
        }
    }
}

/// One exec process in containerd.
#[derive(Debug, Clone)]
struct ProcessHandle {
    connection: Connection,
    container_id: String,
    exec_id: String,
}

impl ProcessHandle {
    async fn wait(&self) -> Result<i32, String> {
        let response = self
            .connection
            .tasks()
            .wait(self.connection.request(WaitRequest {
                container_id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
            }))
            .await
            .map_err(|status| format!("tasks.Wait: {}", status.message()))?;
        Ok(i32::try_from(response.into_inner().exit_status).unwrap_or(i32::MAX))
    }

    async fn close_stdin(&self) {
        let request = CloseIoRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            stdin: true,
        };
        if let Err(status) = self
            .connection
            .tasks()
            .close_io(self.connection.request(request))
            .await
        {
            tracing::debug!(exec_id = %self.exec_id, error = %status.message(), "CloseIO failed");
        }
    }

    async fn resize(&self, size: TerminalSize) {
        let request = ResizePtyRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            width: u32::from(size.width),
            height: u32::from(size.height),
        };
        if let Err(status) = self
            .connection
            .tasks()
            .resize_pty(self.connection.request(request))
            .await
        {
            tracing::debug!(exec_id = %self.exec_id, error = %status.message(), "ResizePty failed");
        }
    }

    async fn delete(&self) {
        let request = DeleteProcessRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        };
        if let Err(status) = self
            .connection
            .tasks()
            .delete_process(self.connection.request(request))
            .await
        {
            tracing::debug!(exec_id = %self.exec_id, error = %status.message(), "cannot delete an exec process");
        }
    }
}

async fn read_fifo(mut fifo: pipe::Receiver, tx: mpsc::Sender<Vec<u8>>) {
    let mut buffer = vec![0_u8; 32 * 1024];
    let mut connected = true;
    loop {
        match fifo.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                // Keep draining once the session is gone, so the process
                // never blocks on a full pipe.
                if connected && tx.send(buffer[..n].to_vec()).await.is_err() {
                    connected = false;
                }
            }
        }
    }
}

async fn write_fifo(
    mut fifo: pipe::Sender,
    mut rx: mpsc::Receiver<Vec<u8>>,
    handle: ProcessHandle,
) {
    while let Some(chunk) = rx.recv().await {
        if fifo.write_all(&chunk).await.is_err() {
            break;
        }
    }
    drop(fifo);
    handle.close_stdin().await;
}

async fn resize_pty(mut rx: mpsc::Receiver<TerminalSize>, handle: ProcessHandle) {
    while let Some(size) = rx.recv().await {
        handle.resize(size).await;
    }
}

/// The FIFOs of one exec, opened on skiff's side.
struct ExecFifos {
    stdin_path: Option<PathBuf>,
    stdout_path: Option<PathBuf>,
    stderr_path: Option<PathBuf>,
    stdin: Option<pipe::Sender>,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    /// Temporary write ends of stdout/stderr, held until the start.
    writers: Vec<pipe::Sender>,
}

fn make_fifo(dir: &Path, name: &str) -> Result<PathBuf, ExecError> {
    let path = dir.join(name);
    match nix::unistd::mkfifo(path.as_path(), Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(path),
        Err(errno) => Err(ExecError::Fifo {
            path,
            source: errno.into(),
        }),
    }
}

impl ExecFifos {
    fn open(dir: &Path, request: &ExecRequest) -> Result<Self, ExecError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecError::Fifo { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut fifos = Self {
            stdin_path: None,
            stdout_path: None,
            stderr_path: None,
            stdin: None,
            stdout: None,
            stderr: None,
            writers: Vec::new(),
        };
        if request.stdin {
            let path = make_fifo(dir, "stdin")?;
            fifos.stdin = Some(
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(&path)
                    .map_err(io(&path))?,
            );
            fifos.stdin_path = Some(path);
        }
        let mut output = |name: &str| -> Result<(PathBuf, pipe::Receiver), ExecError> {
            let path = make_fifo(dir, name)?;
            let receiver = pipe::OpenOptions::new()
                .open_receiver(&path)
                .map_err(io(&path))?;
            fifos.writers.push(
                pipe::OpenOptions::new()
                    .open_sender(&path)
                    .map_err(io(&path))?,
            );
            Ok((path, receiver))
        };
        let stdout = request.stdout.then(|| output("stdout")).transpose()?;
        let stderr = (request.stderr && !request.tty)
            .then(|| output("stderr"))
            .transpose()?;
        if let Some((path, receiver)) = stdout {
            fifos.stdout_path = Some(path);
            fifos.stdout = Some(receiver);
        }
        if let Some((path, receiver)) = stderr {
            fifos.stderr_path = Some(path);
            fifos.stderr = Some(receiver);
        }
        Ok(fifos)
    }
}
