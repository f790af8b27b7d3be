//! The agent's HTTPS API (the "kubelet API" the API server calls):
//! `/containerLogs/{ns}/{pod}/{container}`, `/exec/...` and `/attach/...`
//! (WebSocket, [`exec`]), `/portForward/...` (SPDY in WebSocket,
//! [`portforward`]), `/stats/summary`, `/stats/requests` and
//! `/metrics`.
//!
//! Served on `host_ip:server_port` with a self-signed certificate; every
//! client must present a certificate signed by the cluster CA ([`tls`]).
//! [`Server::bind`] runs before the Node is registered so the actual port
//! lands in `status.daemonEndpoints.kubeletEndpoint.Port`.

pub mod exec;
pub mod logs;
mod metrics;
pub mod portforward;
pub mod spdy;
pub mod stream;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

use crate::stats::{ContainerSource, StatsHandle};
use logs::{ByteLimit, LogLookupError, LogOptions};

/// How often a followed log is polled for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Where and how the server listens.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address (`host_ip:server_port`; port 0 = ephemeral).
    pub bind: SocketAddr,
    /// Names for the serving certificate (the node's IP and name).
    pub names: Vec<String>,
    /// DER certificates of the CA that signs client certificates.
    pub client_ca: Vec<Vec<u8>>,
    /// `DATA/logs/pods`, where the container logs live.
    pub logs_root: PathBuf,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address cannot be bound.
    #[error("the agent's server cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    local_addr: SocketAddr,
    logs_root: PathBuf,
    exec: Option<Arc<dyn exec::ExecRuntime>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// What the handlers read.
#[derive(Clone)]
pub struct ServerState {
    /// The latest samples.
    pub stats: StatsHandle,
    /// The running containers (to find a pod's UID and end `follow`).
    pub containers: Arc<dyn ContainerSource>,
    /// `DATA/logs/pods`.
    pub logs_root: PathBuf,
    /// Runs `exec` commands (`None`: exec answers 501).
    pub exec: Option<Arc<dyn exec::ExecRuntime>>,
}

impl Server {
    /// Binds the address and prepares TLS.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        let tls = tls::server_config(&config.names, &config.client_ca)?;
        let bind_error = |source| ServerError::Bind {
            addr: config.bind,
            source,
        };
        let listener = TcpListener::bind(config.bind).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
            local_addr,
            logs_root: config.logs_root,
            exec: None,
        })
    }

    /// Serves `exec` with `runtime`.
    pub fn with_exec(mut self, runtime: Arc<dyn exec::ExecRuntime>) -> Self {
        self.exec = Some(runtime);
        self
    }

    /// The bound address (with the actual port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the task is dropped.
    pub async fn serve(self, stats: StatsHandle, containers: Arc<dyn ContainerSource>) {
        let app = router(ServerState {
            stats,
            containers,
            logs_root: self.logs_root.clone(),
            exec: self.exec.clone(),
        });
        tracing::info!(addr = %self.local_addr, "agent server listening");
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "agent server accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = self.acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "agent server TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
                let service = TowerToHyperService::new(app);
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%peer, %error, "agent server connection ended");
                }
            });
        }
    }
}

/// The routes, without TLS (tests call it directly).
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(exec::exec).post(exec::exec),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(exec::attach).post(exec::attach),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(portforward::port_forward),
        )
        .route("/stats/summary", get(summary))
        .route("/stats/requests", get(requests))
        .route("/metrics", get(metrics::serve))
        .with_state(state)
}

async fn summary(State(state): State<ServerState>) -> Response {
    Json(state.stats.summary().as_ref().clone()).into_response()
}

async fn requests(State(state): State<ServerState>) -> Response {
    Json(state.stats.requests().as_ref().clone()).into_response()
}

/// Errors of the log endpoint, as plain text with the matching code.
#[derive(Debug, thiserror::Error)]
enum LogsError {
    #[error(transparent)]
    Lookup(#[from] LogLookupError),
    #[error("cannot read the log {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl IntoResponse for LogsError {
    fn into_response(self) -> Response {
        let code = match &self {
            LogsError::Lookup(LogLookupError::NoPrevious { .. }) => StatusCode::BAD_REQUEST,
            LogsError::Lookup(_) => StatusCode::NOT_FOUND,
            LogsError::Read { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (code, self.to_string()).into_response()
    }
}

async fn container_logs(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(options): Query<LogOptions>,
) -> Result<Response, LogsError> {
    let running = state.containers.running().await;
    let running_uid = running
        .iter()
        .find(|c| c.namespace == namespace && c.pod == pod)
        .map(|c| c.uid.clone());
    let root = state.logs_root.clone();
    let (ns, name, cname, previous) = (
        namespace.clone(),
        pod.clone(),
        container.clone(),
        options.previous,
    );
    let file = tokio::task::spawn_blocking(move || {
        logs::find_log(&root, &ns, &name, &cname, previous, running_uid.as_deref())
    })
    .await
    .map_err(|e| LogsError::Read {
        path: state.logs_root.clone(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let read_error = |source| LogsError::Read {
        path: file.path.clone(),
        source,
    };
    let content = tokio::fs::read(&file.path).await.map_err(read_error)?;
    let (lines, used) = logs::parse_cri(&content);
    let mut first = logs::render(
        &logs::select(lines, &options, chrono::Utc::now()),
        options.timestamps,
    );
    let mut limit = ByteLimit::new(options.limit_bytes);
    let exhausted = limit.take(&mut first);
    let text_plain = [(header::CONTENT_TYPE, "text/plain")];
    if !options.follow || options.previous || exhausted {
        return Ok((text_plain, first).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let follow = Follow {
        path: file.path.clone(),
        next_instance: file
            .path
            .with_file_name(format!("{}.log", file.restart + 1)),
        offset: used as u64,
        uid: file.uid.clone(),
        namespace,
        pod,
        container,
        timestamps: options.timestamps,
        limit,
        containers: state.containers.clone(),
    };
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(first).await.is_err() {
            return;
        }
        follow.run(tx).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(axum::body::Bytes::from(chunk)), rx))
    });
    Ok((text_plain, Body::from_stream(stream)).into_response())
}

/// A followed log: new complete lines are sent as they are written, until
/// the container stops, the client goes away or `limitBytes` is reached.
struct Follow {
    path: PathBuf,
    /// The log of the container's next instance: once it exists, this one
    /// has ended (the container restarted).
    next_instance: PathBuf,
    offset: u64,
    uid: String,
    namespace: String,
    pod: String,
    container: String,
    timestamps: bool,
    limit: ByteLimit,
    containers: Arc<dyn ContainerSource>,
}

impl Follow {
    async fn still_running(&self) -> bool {
        self.containers.running().await.iter().any(|c| {
            c.uid == self.uid
                && c.namespace == self.namespace
                && c.pod == self.pod
                && c.container == self.container
        })
    }

    /// Reads what was appended since `offset`; returns the rendered lines.
    async fn read_more(&mut self) -> std::io::Result<Vec<u8>> {
        let mut file = tokio::fs::File::open(&self.path).await?;
        file.seek(std::io::SeekFrom::Start(self.offset)).await?;
        let mut content = Vec::new();
        file.read_to_end(&mut content).await?;
        let (lines, used) = logs::parse_cri(&content);
        self.offset += used as u64;
        Ok(logs::render(&lines, self.timestamps))
    }

    async fn run(mut self, tx: tokio::sync::mpsc::Sender<Vec<u8>>) {
        let mut polls: u32 = 0;
        loop {
            tokio::time::sleep(FOLLOW_POLL).await;
            polls += 1;
            let mut chunk = match self.read_more().await {
                Ok(chunk) => chunk,
                Err(error) => {
                    tracing::debug!(log = %self.path.display(), %error, "followed log unreadable");
                    return;
                }
            };
            let done = self.limit.take(&mut chunk);
            if !chunk.is_empty() && tx.send(chunk).await.is_err() {
                return;
            }
            if done || tx.is_closed() {
                return;
            }
            // Once a second: stop when the container has stopped (after a
            // last read of what it wrote).
            let restarted = tokio::fs::try_exists(&self.next_instance)
                .await
                .unwrap_or(false);
            if restarted || (polls.is_multiple_of(5) && !self.still_running().await) {
                if let Ok(mut rest) = self.read_more().await {
                    self.limit.take(&mut rest);
                    if !rest.is_empty() {
                        let _ = tx.send(rest).await;
                    }
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{NodeStats, RequestStats, RunningContainer, Summary};
    use axum::http::Request;
    use http_body_util::BodyExt;
    use std::sync::Mutex;
    use tower::ServiceExt;

    #[derive(Debug, Default)]
    struct Containers(Mutex<Vec<RunningContainer>>);

    #[async_trait::async_trait]
    impl ContainerSource for Containers {
        async fn running(&self) -> Vec<RunningContainer> {
            self.0.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    fn app_container() -> RunningContainer {
        RunningContainer {
            namespace: "default".into(),
            pod: "web".into(),
            uid: "u1".into(),
            container: "app".into(),
            cgroup: "/skiff/podu1/x".into(),
        }
    }

    fn record(line: &str) -> String {
        format!("2026-11-22T00:00:00.000000000Z stdout F {line}\n")
    }

    fn setup() -> (tempfile::TempDir, PathBuf, Arc<Containers>, Router) {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("default_web_u1/app");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let log = dir.join("0.log");
        std::fs::write(&log, record("one") + &record("two")).expect("write");
        let containers = Arc::new(Containers(Mutex::new(vec![app_container()])));
        let summary = Summary {
            node: NodeStats {
                node_name: "n1".into(),
                ..NodeStats::default()
            },
            pods: Vec::new(),
        };
        let app = router(ServerState {
            stats: StatsHandle::fixed(summary, RequestStats::default()),
            containers: containers.clone(),
            logs_root: root.path().to_path_buf(),
            exec: None,
        });
        (root, log, containers, app)
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
        let request = Request::get(uri).body(Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("response");
        let code = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (code, String::from_utf8_lossy(&body).to_string())
    }

    #[tokio::test]
    async fn container_logs_honour_tail_lines_and_report_missing_logs() {
        let (_root, _log, _containers, app) = setup();
        assert_eq!(
            get(&app, "/containerLogs/default/web/app").await,
            (StatusCode::OK, "one\ntwo\n".to_string())
        );
        assert_eq!(
            get(&app, "/containerLogs/default/web/app?tailLines=1").await,
            (StatusCode::OK, "two\n".to_string())
        );
        assert_eq!(
            get(&app, "/containerLogs/default/web/app?limitBytes=2").await,
            (StatusCode::OK, "on".to_string())
        );
        assert_eq!(
            get(&app, "/containerLogs/default/nope/app").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&app, "/containerLogs/default/web/app?previous=true")
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn a_followed_log_streams_new_lines_and_ends_when_the_container_stops() {
        let (_root, log, containers, app) = setup();
        let request = Request::get("/containerLogs/default/web/app?follow=true&tailLines=1")
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let first = body.frame().await.expect("frame").expect("ok");
        assert_eq!(first.into_data().expect("data"), "two\n");
        {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open");
            file.write_all(record("three").as_bytes()).expect("append");
        }
        let next = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a new line within 5s")
            .expect("frame")
            .expect("ok");
        assert_eq!(next.into_data().expect("data"), "three\n");
        containers.0.lock().expect("lock").clear();
        let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the stream ends once the container stopped");
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn a_followed_log_ends_when_the_container_restarts() {
        let (_root, log, _containers, app) = setup();
        let request = Request::get("/containerLogs/default/web/app?follow=true")
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("response");
        let mut body = response.into_body();
        let first = body.frame().await.expect("frame").expect("ok");
        assert_eq!(first.into_data().expect("data"), "one\ntwo\n");
        std::fs::write(log.with_file_name("1.log"), record("again")).expect("write");
        let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the stream ends once a new instance logs");
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn the_summary_is_served_as_summary_api_json() {
        let (_root, _log, _containers, app) = setup();
        let (code, body) = get(&app, "/stats/summary").await;
        assert_eq!(code, StatusCode::OK);
        let summary: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(summary["node"]["nodeName"], "n1");
        assert_eq!(summary["node"]["memory"]["workingSetBytes"], 0);
    }
}
