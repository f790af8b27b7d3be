//! Starting and supervising a private containerd, like k3s does.
//!
//! [`ManagedContainerd::start`] writes `DATA/containerd/config.toml` (root,
//! state and socket under the data dir, the CRI plugin disabled), starts
//! `containerd --config ...`, and waits for the socket to answer with a
//! deadline. A supervisor task restarts it when it exits, with a doubling
//! backoff. Running tasks survive a containerd restart: their shims are
//! separate processes.
//!
//! If a containerd already answers on the socket (a previous agent was
//! killed and left its containerd running), it is used as is and not
//! restarted by this process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::connection::{Connection, RpcError};

/// Errors starting or reaching containerd.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The containerd binary is not installed.
    #[error("containerd binary {0} not found: install Debian's `containerd` package")]
    BinaryMissing(PathBuf),
    /// The data directory or config file could not be written.
    #[error("preparing containerd data dir {path}: {source}")]
    DataDir {
        /// The path being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// containerd could not be spawned.
    #[error("spawning {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The socket did not answer before the deadline.
    #[error("containerd did not answer on {socket} within {timeout:?} (see {log})")]
    NotReady {
        /// The socket path.
        socket: PathBuf,
        /// How long we waited.
        timeout: Duration,
        /// containerd's own log file.
        log: PathBuf,
    },
    /// containerd exited while we waited for it.
    #[error("containerd exited with {status} during startup (see {log})")]
    ExitedEarly {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// containerd's own log file.
        log: PathBuf,
    },
    /// A call to containerd failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// How skiff reaches containerd.
#[derive(Debug, Clone)]
pub enum ContainerdEndpoint {
    /// An existing containerd (`--containerd-address`).
    Existing(PathBuf),
    /// A private containerd started and supervised by skiff.
    Managed(DaemonConfig),
}

/// Configuration of a private containerd.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The containerd binary.
    pub binary: PathBuf,
    /// Directory holding config, root, state, socket and log.
    pub dir: PathBuf,
    /// How long to wait for the socket to answer.
    pub ready_timeout: Duration,
    /// First restart delay; doubles up to `max_restart_backoff`.
    pub restart_backoff: Duration,
    /// Longest restart delay.
    pub max_restart_backoff: Duration,
    /// Running at least this long resets the backoff.
    pub backoff_reset_after: Duration,
}

impl DaemonConfig {
    /// Defaults for a data dir: everything under `DATA/containerd`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            binary: PathBuf::from("/usr/bin/containerd"),
            dir: data_dir.join("containerd"),
            ready_timeout: Duration::from_secs(20),
            restart_backoff: Duration::from_millis(500),
            max_restart_backoff: Duration::from_secs(30),
            backoff_reset_after: Duration::from_secs(60),
        }
    }

    /// The gRPC socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// containerd's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// The `config.toml` contents (containerd 1.6, config version 2).
    pub fn config_toml(&self) -> String {
        let dir = self.dir.display();
        format!(
            r#"# Written by skiff; regenerated at every start.
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"#
        )
    }
}

/// Waits until containerd answers a Version call on `socket`.
pub async fn wait_for_socket(
    socket: &Path,
    timeout: Duration,
) -> Result<Connection, Option<RpcError>> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if socket.exists() {
            match probe(socket).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last = Some(error),
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(last)
}

async fn probe(socket: &Path) -> Result<Connection, RpcError> {
    let connection = Connection::connect(socket, "default").await?;
    connection.version().await?;
    Ok(connection)
}

/// A containerd this process started (or found running) and supervises.
pub struct ManagedContainerd {
    socket: PathBuf,
    pid: Arc<AtomicI32>,
    shutdown: watch::Sender<bool>,
    supervisor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ManagedContainerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedContainerd")
            .field("socket", &self.socket)
            .field("pid", &self.pid.load(Ordering::Relaxed))
            .finish()
    }
}

impl ManagedContainerd {
    /// Starts containerd and waits for its socket.
    pub async fn start(config: DaemonConfig) -> Result<Self, DaemonError> {
        let socket = config.socket();
        let (shutdown, shutdown_rx) = watch::channel(false);
        if probe(&socket).await.is_ok() {
            info!(socket = %socket.display(), "using the containerd already running on the socket");
            return Ok(Self {
                socket,
                pid: Arc::new(AtomicI32::new(0)),
                shutdown,
                supervisor: None,
            });
        }
        if !config.binary.exists() {
            return Err(DaemonError::BinaryMissing(config.binary.clone()));
        }
        prepare_dir(&config).await?;
        let mut child = spawn(&config).await?;
        let pid = Arc::new(AtomicI32::new(child_pid(&child)));
        let deadline = Instant::now() + config.ready_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(DaemonError::ExitedEarly {
                    status,
                    log: config.log_path(),
                });
            }
            if socket.exists() && probe(&socket).await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.start_kill();
                return Err(DaemonError::NotReady {
                    socket,
                    timeout: config.ready_timeout,
                    log: config.log_path(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        info!(socket = %socket.display(), pid = pid.load(Ordering::Relaxed), "containerd ready");
        let supervisor = tokio::spawn(supervise(config, child, pid.clone(), shutdown_rx));
        Ok(Self {
            socket,
            pid,
            shutdown,
            supervisor: Some(supervisor),
        })
    }

    /// The gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The current containerd process ID (0 when not started by us).
    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::Relaxed)
    }

    /// Stops containerd (SIGTERM, then SIGKILL after 10s) and the supervisor.
    /// Containers keep running: their shims outlive containerd.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.await;
        }
    }
}

impl Drop for ManagedContainerd {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        let pid = self.pid.load(Ordering::Relaxed);
        if self.supervisor.is_some() && pid > 0 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
}

async fn prepare_dir(config: &DaemonConfig) -> Result<(), DaemonError> {
    let dir_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DaemonError::DataDir { path, source }
    };
    tokio::fs::create_dir_all(&config.dir)
        .await
        .map_err(dir_error(&config.dir))?;
    let config_path = config.config_path();
    tokio::fs::write(&config_path, config.config_toml())
        .await
        .map_err(dir_error(&config_path))?;
    // A socket left by a dead containerd would make it refuse to start.
    let socket = config.socket();
    match tokio::fs::remove_file(&socket).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DaemonError::DataDir {
            path: socket,
            source,
        }),
    }
}

async fn spawn(config: &DaemonConfig) -> Result<tokio::process::Child, DaemonError> {
    let log_path = config.log_path();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| DaemonError::DataDir {
            path: log_path.clone(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| DaemonError::DataDir {
        path: log_path,
        source,
    })?;
    Command::new(&config.binary)
        .arg("--config")
        .arg(config.config_path())
        // runc and the shim are looked up in PATH (runc lives in /usr/sbin).
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|source| DaemonError::Spawn {
            binary: config.binary.clone(),
            source,
        })
}

fn child_pid(child: &tokio::process::Child) -> i32 {
    child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .unwrap_or(0)
}

/// Restarts containerd whenever it exits, until shutdown is requested.
async fn supervise(
    config: DaemonConfig,
    mut child: tokio::process::Child,
    pid: Arc<AtomicI32>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = config.restart_backoff;
    let mut started = Instant::now();
    loop {
        tokio::select! {
            status = child.wait() => {
                if *shutdown.borrow() {
                    // We stopped it (the agent is shutting down).
                    pid.store(0, Ordering::Relaxed);
                    return;
                }
                warn!(?status, "containerd exited");
                if started.elapsed() >= config.backoff_reset_after {
                    backoff = config.restart_backoff;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(config.max_restart_backoff);
                let _ = prepare_dir(&config).await;
                match spawn(&config).await {
                    Ok(new_child) => {
                        child = new_child;
                        pid.store(child_pid(&child), Ordering::Relaxed);
                        started = Instant::now();
                        info!(pid = pid.load(Ordering::Relaxed), "containerd restarted");
                    }
                    Err(error) => {
                        warn!(%error, "restarting containerd failed; retrying");
                        started = Instant::now();
                        // Keep the loop alive: a finished child reports its exit again at once.
                    }
                }
            }
            _ = shutdown.changed() => {
                stop_child(&mut child).await;
                pid.store(0, Ordering::Relaxed);
                return;
            }
        }
    }
}

async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(raw) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_everything_under_the_data_dir_and_disables_cri() {
        let config = DaemonConfig::new(Path::new("/data"));
        let toml = config.config_toml();
        assert!(toml.contains(r#"root = "/data/containerd/root""#));
        assert!(toml.contains(r#"state = "/data/containerd/state""#));
        assert!(toml.contains(r#"address = "/data/containerd/containerd.sock""#));
        assert!(toml.contains(r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#));
        assert_eq!(
            config.socket(),
            PathBuf::from("/data/containerd/containerd.sock")
        );
    }

    #[tokio::test]
    async fn a_missing_binary_names_the_debian_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = DaemonConfig::new(dir.path());
        config.binary = dir.path().join("no-containerd");
        let error = ManagedContainerd::start(config)
            .await
            .expect_err("must fail");
        assert!(
            error.to_string().contains("`containerd` package"),
            "{error}"
        );
    }
}
