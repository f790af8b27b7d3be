//! `GET /exec/{ns}/{pod}/{container}?command=..` and
//! `GET /attach/{ns}/{pod}/{container}`: WebSocket sessions speaking the
//! channel protocol of [`super::stream`].
//!
//! The container is looked up before the upgrade, so a missing pod or
//! container is a plain HTTP error the API server can turn into a
//! `Status`; once upgraded, failures travel on the error channel.
//!
//! `exec` runs the command through an [`ExecRuntime`] (containerd's
//! `Tasks.Exec`) and pumps stdin, stdout, stderr and resizes. `attach`
//! streams what the container writes from now on, read from its CRI log
//! (the runtime's stdout/stderr copier is the only reader of the
//! container's FIFOs); it ends when the container stops. With `stdin`,
//! the client's input goes to the container's own stdin when its spec
//! asked for one (`stdin: true`; see [`AttachStdin`]); otherwise it is
//! dropped.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, oneshot};

use super::stream::{self, ClientMessage, Protocol, StreamOptions, TerminalSize};
use super::ServerState;
use crate::stats::ContainerSource;

/// How long output may still arrive after the process exited (a
/// background child can hold the pipes open forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How often an attached container's log is polled.
const ATTACH_POLL: Duration = Duration::from_millis(100);
/// Messages queued towards the client before the pumps wait.
const OUTGOING_QUEUE: usize = 64;

/// What `exec` asks the runtime to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Wire the process's stdin.
    pub stdin: bool,
    /// Capture stdout (the terminal's output, with `tty`).
    pub stdout: bool,
    /// Capture stderr (never with `tty`).
    pub stderr: bool,
    /// Run the process on a terminal.
    pub tty: bool,
}

/// A started process. Dropping `stdin` closes the process's stdin;
/// `stdout`/`stderr` end at EOF; `exit` resolves once the process has
/// exited and its output was delivered.
#[derive(Debug)]
pub struct ExecProcess {
    /// Input for the process, when requested.
    pub stdin: Option<mpsc::Sender<Vec<u8>>>,
    /// Its stdout (or terminal output).
    pub stdout: Option<mpsc::Receiver<Vec<u8>>>,
    /// Its stderr.
    pub stderr: Option<mpsc::Receiver<Vec<u8>>>,
    /// Terminal resizes (with `tty`).
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// The exit code, or why it is unknown.
    pub exit: oneshot::Receiver<Result<i32, String>>,
}

/// Why a container cannot be reached (answered before the upgrade).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No pod of that name runs on this node.
    #[error("pod does not exist")]
    PodNotFound,
    /// The pod has no running container of that name.
    #[error("container not found ({0:?})")]
    ContainerNotFound(String),
    /// The runtime could not be asked.
    #[error("cannot reach the container runtime: {0}")]
    Runtime(String),
}

/// Runs commands in running containers.
#[async_trait]
pub trait ExecRuntime: Send + Sync + std::fmt::Debug {
    /// The runtime ID of the running instance of `container`.
    async fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<String, LookupError>;
    /// Starts `request` in the container with runtime ID `id`; the error
    /// says why it could not start (e.g. no such executable).
    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecProcess, String>;
    /// The stdin of the container with runtime ID `id`, when it was
    /// started with one that is still open.
    fn stdin(&self, _id: &str) -> Option<Arc<dyn AttachStdin>> {
        None
    }
}

/// A container's own stdin, written by attach sessions.
#[async_trait]
pub trait AttachStdin: Send + Sync + std::fmt::Debug {
    /// Writes `bytes`; an error once stdin was closed.
    async fn write(&self, bytes: &[u8]) -> std::io::Result<()>;
    /// The session ended or its client closed stdin (`stdinOnce` then
    /// closes the container's stdin).
    async fn session_ended(&self);
}

impl IntoResponse for LookupError {
    fn into_response(self) -> Response {
        let code = match self {
            LookupError::PodNotFound | LookupError::ContainerNotFound(_) => StatusCode::NOT_FOUND,
            LookupError::Runtime(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (code, self.to_string()).into_response()
    }
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

/// The checks shared by exec and attach, before the upgrade; the error is
/// the 400's message.
fn upgrade_of(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    options: &StreamOptions,
) -> Result<WebSocketUpgrade, &'static str> {
    if !options.stdin && !options.stdout && !options.stderr {
        return Err("you must specify at least 1 of stdin, stdout, stderr");
    }
    let ws = ws.map_err(|_| "Upgrade request required")?;
    Ok(ws.protocols(stream::PROTOCOLS))
}

pub(super) async fn exec(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let options = StreamOptions::from_pairs(&pairs);
    if options.command.is_empty() {
        return bad_request("you must specify at least one command for the container");
    }
    let ws = match upgrade_of(ws, &options) {
        Ok(ws) => ws,
        Err(message) => return bad_request(message),
    };
    let Some(runtime) = state.exec.clone() else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "this node's runtime cannot exec",
        )
            .into_response();
    };
    let id = match runtime.find(&namespace, &pod, &container).await {
        Ok(id) => id,
        Err(error) => return error.into_response(),
    };
    tracing::info!(%namespace, %pod, %container, command = ?options.command, tty = options.tty, "exec");
    ws.on_upgrade(move |socket| async move {
        let protocol = negotiated(&socket);
        exec_session(socket, protocol, runtime, id, options).await;
    })
}

/// The negotiated protocol; a client that asked for none gets v4's
/// framing (the same bytes, without the close signal).
fn negotiated(socket: &WebSocket) -> Protocol {
    socket
        .protocol()
        .and_then(|p| p.to_str().ok())
        .and_then(Protocol::from_name)
        .unwrap_or(Protocol::V4)
}

/// Sends messages from the queue until it closes, then closes the socket.
fn spawn_writer(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
) -> (mpsc::Sender<Message>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Message>(OUTGOING_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (tx, writer)
}

fn binary(channel: u8, data: &[u8]) -> Message {
    Message::Binary(stream::frame(channel, data).into())
}

async fn finish(out: mpsc::Sender<Message>, writer: tokio::task::JoinHandle<()>, status: Value) {
    let body = serde_json::to_vec(&status).unwrap_or_default();
    let _ = out.send(binary(stream::ERROR, &body)).await;
    let _ = out
        .send(Message::Close(Some(CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// Forwards one output stream to the client; keeps draining (and
/// discarding) once the client is gone, so the process never blocks.
async fn pump_output(rx: Option<mpsc::Receiver<Vec<u8>>>, channel: u8, out: mpsc::Sender<Message>) {
    let Some(mut rx) = rx else { return };
    let mut connected = true;
    while let Some(chunk) = rx.recv().await {
        if connected && out.send(binary(channel, &chunk)).await.is_err() {
            connected = false;
        }
    }
}

async fn exec_session(
    socket: WebSocket,
    protocol: Protocol,
    runtime: Arc<dyn ExecRuntime>,
    id: String,
    options: StreamOptions,
) {
    let (sink, mut incoming) = socket.split();
    let (out, writer) = spawn_writer(sink);
    let _ = out.send(binary(options.first_channel(), &[])).await;
    let request = ExecRequest {
        command: options.command.clone(),
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr,
        tty: options.tty,
    };
    let process = match runtime.exec(&id, request).await {
        Ok(process) => process,
        Err(error) => {
            tracing::info!(id, %error, "exec could not start");
            finish(out, writer, stream::internal_error(&error)).await;
            return;
        }
    };
    let ExecProcess {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = process;
    let reader = tokio::spawn(async move {
        let mut stdin = stdin;
        while let Some(Ok(message)) = incoming.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            match stream::parse(protocol, &data) {
                ClientMessage::Stdin(bytes) => {
                    if let Some(tx) = &stdin {
                        if tx.send(bytes).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                ClientMessage::Resize(size) => {
                    if let Some(tx) = &resize {
                        let _ = tx.try_send(size);
                    }
                }
                ClientMessage::Close(stream::STDIN) => stdin = None,
                ClientMessage::Close(_) | ClientMessage::Ignored => {}
            }
        }
    });
    let outputs = tokio::spawn(futures::future::join(
        pump_output(stdout, stream::STDOUT, out.clone()),
        pump_output(stderr, stream::STDERR, out.clone()),
    ));
    let status = match exit.await {
        Ok(Ok(code)) => stream::exit_status(&options.command, code),
        Ok(Err(error)) => stream::internal_error(&error),
        Err(_) => stream::internal_error("the runtime stopped watching the process"),
    };
    if tokio::time::timeout(OUTPUT_DRAIN, outputs).await.is_err() {
        tracing::debug!(id, "exec output still open after the process exited");
    }
    reader.abort();
    finish(out, writer, status).await;
}

pub(super) async fn attach(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let options = StreamOptions::from_pairs(&pairs);
    let ws = match upgrade_of(ws, &options) {
        Ok(ws) => ws,
        Err(message) => return bad_request(message),
    };
    let running = state.containers.running().await;
    let Some(target) = running
        .iter()
        .find(|c| c.namespace == namespace && c.pod == pod && c.container == container)
        .cloned()
    else {
        let pod_exists = running
            .iter()
            .any(|c| c.namespace == namespace && c.pod == pod);
        return if pod_exists {
            LookupError::ContainerNotFound(container).into_response()
        } else {
            LookupError::PodNotFound.into_response()
        };
    };
    let root = state.logs_root.clone();
    let uid = target.uid.clone();
    let (ns, name, cname) = (namespace.clone(), pod.clone(), container.clone());
    let found = tokio::task::spawn_blocking(move || {
        super::logs::find_log(&root, &ns, &name, &cname, false, Some(&uid))
    })
    .await;
    let log = match found {
        Ok(Ok(log)) => log,
        Ok(Err(error)) => return (StatusCode::NOT_FOUND, error.to_string()).into_response(),
        Err(error) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    };
    let stdin = match (&state.exec, options.stdin) {
        (Some(exec), true) => match exec.find(&namespace, &pod, &container).await {
            Ok(id) => exec.stdin(&id),
            Err(_) => None,
        },
        _ => None,
    };
    tracing::info!(%namespace, %pod, %container, stdin = stdin.is_some(), "attach");
    let containers = state.containers.clone();
    ws.on_upgrade(move |socket| async move {
        let protocol = negotiated(&socket);
        let follow = AttachFollow {
            path: log.path,
            target,
            containers,
            options,
            stdin,
        };
        attach_session(socket, protocol, follow).await;
    })
}

/// What an attach follows: a container instance's log file.
struct AttachFollow {
    path: std::path::PathBuf,
    target: crate::stats::RunningContainer,
    containers: Arc<dyn ContainerSource>,
    options: StreamOptions,
    /// The container's stdin, when the client sends input and the
    /// container has one.
    stdin: Option<Arc<dyn AttachStdin>>,
}

impl AttachFollow {
    async fn still_running(&self) -> bool {
        self.containers.running().await.contains(&self.target)
    }
}

/// Splits complete CRI records into (stream, bytes), restoring the
/// newline of full (`F`) records; returns how many bytes were used.
pub fn cri_output(content: &[u8]) -> (Vec<(u8, Vec<u8>)>, usize) {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut used = 0;
    while let Some(end) = content[used..].iter().position(|b| *b == b'\n') {
        let record = &content[used..used + end];
        used += end + 1;
        let mut fields = record.splitn(4, |b| *b == b' ');
        let (Some(_ts), Some(stream_name), Some(tag)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let channel = if stream_name == b"stderr" {
            stream::STDERR
        } else {
            stream::STDOUT
        };
        let mut line = fields.next().unwrap_or_default().to_vec();
        if tag != b"P" {
            line.push(b'\n');
        }
        match out.last_mut() {
            Some((last, data)) if *last == channel => data.extend_from_slice(&line),
            _ => out.push((channel, line)),
        }
    }
    (out, used)
}

async fn attach_session(socket: WebSocket, protocol: Protocol, follow: AttachFollow) {
    let (sink, mut incoming) = socket.split();
    let (out, writer) = spawn_writer(sink);
    let _ = out.send(binary(follow.options.first_channel(), &[])).await;
    // Attach starts at the log's current end: only new output is sent.
    let mut offset = tokio::fs::metadata(&follow.path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
    let stdin = follow.stdin.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            match message {
                Message::Close(_) => break,
                Message::Binary(data) => match (stream::parse(protocol, &data), &stdin) {
                    (ClientMessage::Stdin(bytes), Some(stdin)) => {
                        if let Err(error) = stdin.write(&bytes).await {
                            tracing::debug!(%error, "the container's stdin is closed");
                        }
                    }
                    (ClientMessage::Stdin(bytes), None) => {
                        tracing::debug!(
                            bytes = bytes.len(),
                            "the container has no stdin; input dropped"
                        );
                    }
                    (ClientMessage::Close(stream::STDIN), Some(stdin)) => {
                        stdin.session_ended().await;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        if let Some(stdin) = &stdin {
            stdin.session_ended().await;
        }
        let _ = closed_tx.send(());
    });
    let mut polls: u32 = 0;
    loop {
        tokio::select! {
            _ = &mut closed_rx => break,
            () = tokio::time::sleep(ATTACH_POLL) => {}
        }
        polls += 1;
        let stopped = polls.is_multiple_of(10) && !follow.still_running().await;
        let mut content = Vec::new();
        if let Ok(mut file) = tokio::fs::File::open(&follow.path).await {
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                let _ = file.read_to_end(&mut content).await;
            }
        }
        let (chunks, used) = cri_output(&content);
        offset += used as u64;
        for (channel, data) in chunks {
            let wanted = match channel {
                stream::STDERR => follow.options.stderr,
                _ => follow.options.stdout,
            };
            if wanted && out.send(binary(channel, &data)).await.is_err() {
                reader.abort();
                return;
            }
        }
        if stopped {
            break;
        }
    }
    reader.abort();
    finish(out, writer, stream::success()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{RequestStats, RunningContainer, StatsHandle, Summary};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    /// `cat` echoes stdin to stdout until stdin closes; `fail` writes to
    /// both streams and exits 3; `size` reports each resize on stdout.
    #[derive(Debug)]
    struct FakeRuntime;

    #[async_trait]
    impl ExecRuntime for FakeRuntime {
        async fn find(&self, _: &str, pod: &str, container: &str) -> Result<String, LookupError> {
            match (pod, container) {
                ("web", "app") => Ok("c1".into()),
                ("web", other) => Err(LookupError::ContainerNotFound(other.into())),
                _ => Err(LookupError::PodNotFound),
            }
        }

        async fn exec(&self, _: &str, request: ExecRequest) -> Result<ExecProcess, String> {
            let (stdin_tx, mut stdin_rx) = mpsc::channel::<Vec<u8>>(4);
            let (out_tx, out_rx) = mpsc::channel(4);
            let (err_tx, err_rx) = mpsc::channel(4);
            let (resize_tx, mut resize_rx) = mpsc::channel::<TerminalSize>(4);
            let (exit_tx, exit) = oneshot::channel();
            match request.command[0].as_str() {
                "cat" => {
                    tokio::spawn(async move {
                        while let Some(chunk) = stdin_rx.recv().await {
                            let _ = out_tx.send(chunk).await;
                        }
                        let _ = exit_tx.send(Ok(0));
                    });
                }
                "fail" => {
                    tokio::spawn(async move {
                        let _ = out_tx.send(b"out".to_vec()).await;
                        let _ = err_tx.send(b"err".to_vec()).await;
                        let _ = exit_tx.send(Ok(3));
                    });
                }
                "size" => {
                    tokio::spawn(async move {
                        if let Some(size) = resize_rx.recv().await {
                            let text = format!("{}x{}", size.width, size.height);
                            let _ = out_tx.send(text.into_bytes()).await;
                        }
                        let _ = exit_tx.send(Ok(0));
                    });
                }
                other => return Err(format!("exec: {other:?}: not found")),
            }
            Ok(ExecProcess {
                stdin: request.stdin.then_some(stdin_tx),
                stdout: Some(out_rx),
                stderr: request.stderr.then_some(err_rx),
                resize: request.tty.then_some(resize_tx),
                exit,
            })
        }
    }

    #[derive(Debug)]
    struct NoContainers;

    #[async_trait]
    impl ContainerSource for NoContainers {
        async fn running(&self) -> Vec<RunningContainer> {
            Vec::new()
        }
    }

    async fn serve() -> std::net::SocketAddr {
        let app = super::super::router(ServerState {
            stats: StatsHandle::fixed(Summary::default(), RequestStats::default()),
            containers: Arc::new(NoContainers),
            logs_root: std::env::temp_dir(),
            exec: Some(Arc::new(FakeRuntime)),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    async fn connect(addr: std::net::SocketAddr, query: &str, protocol: &str) -> Client {
        let mut request = format!("ws://{addr}/exec/default/web/app?{query}")
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let (client, response) = tokio_tungstenite::client_async(request, tcp)
            .await
            .expect("handshake");
        assert_eq!(
            response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol)
        );
        client
    }

    /// Every data message until the server closes, as (channel, bytes).
    async fn drain(client: &mut Client) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), client.next())
                .await
                .expect("the server ends the session");
            match next {
                Some(Ok(WsMessage::Binary(data))) => {
                    frames.push((data[0], data[1..].to_vec()));
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return frames,
                Some(Ok(_)) => {}
            }
        }
    }

    fn status_of(frames: &[(u8, Vec<u8>)]) -> Value {
        let (_, body) = frames
            .iter()
            .find(|(c, _)| *c == stream::ERROR)
            .expect("a status message");
        serde_json::from_slice(body).expect("status JSON")
    }

    #[tokio::test]
    async fn v5_echoes_stdin_and_ends_when_the_client_closes_stdin() {
        let addr = serve().await;
        let mut client = connect(addr, "command=cat&stdin=true&stdout=true", stream::V5).await;
        client
            .send(WsMessage::Binary(
                stream::frame(stream::STDIN, b"hello").into(),
            ))
            .await
            .expect("send");
        client
            .send(WsMessage::Binary(vec![stream::CLOSE, stream::STDIN].into()))
            .await
            .expect("close stdin");
        let frames = drain(&mut client).await;
        assert_eq!(frames[0], (stream::STDOUT, Vec::new()), "the ready message");
        assert!(frames.contains(&(stream::STDOUT, b"hello".to_vec())));
        assert_eq!(status_of(&frames)["status"], "Success");
    }

    #[tokio::test]
    async fn v4_reports_both_streams_and_the_exit_code() {
        let addr = serve().await;
        let mut client = connect(addr, "command=fail&stdout=1&stderr=1", stream::V4).await;
        let frames = drain(&mut client).await;
        assert!(frames.contains(&(stream::STDOUT, b"out".to_vec())));
        assert!(frames.contains(&(stream::STDERR, b"err".to_vec())));
        let status = status_of(&frames);
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
    }

    #[tokio::test]
    async fn a_resize_reaches_the_terminal_process() {
        let addr = serve().await;
        let mut client = connect(addr, "command=size&tty=true", stream::V5).await;
        client
            .send(WsMessage::Binary(
                stream::frame(stream::RESIZE, br#"{"Width":120,"Height":40}"#).into(),
            ))
            .await
            .expect("resize");
        let frames = drain(&mut client).await;
        assert!(
            frames.contains(&(stream::STDOUT, b"120x40".to_vec())),
            "{frames:?}"
        );
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_is_an_internal_error_status() {
        let addr = serve().await;
        let mut client = connect(addr, "command=nope", stream::V5).await;
        let status = status_of(&drain(&mut client).await);
        assert_eq!(status["reason"], "InternalError");
        assert!(status["message"]
            .as_str()
            .is_some_and(|m| m.contains("error executing command in container")));
    }

    #[tokio::test]
    async fn missing_pods_containers_and_commands_are_refused_before_the_upgrade() {
        let addr = serve().await;
        let get = |path: &'static str| async move {
            let request = format!("ws://{addr}{path}")
                .into_client_request()
                .expect("request");
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
            match tokio_tungstenite::client_async(request, tcp).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    let body = response.body().clone().unwrap_or_default();
                    (
                        response.status().as_u16(),
                        String::from_utf8_lossy(&body).to_string(),
                    )
                }
                other => panic!("expected an HTTP error, got {:?}", other.map(|_| ())),
            }
        };
        assert_eq!(
            get("/exec/default/ghost/app?command=true").await,
            (404, "pod does not exist".to_string())
        );
        assert_eq!(
            get("/exec/default/web/db?command=true").await,
            (404, "container not found (\"db\")".to_string())
        );
        assert_eq!(get("/exec/default/web/app").await.0, 400);
        assert_eq!(
            get("/attach/default/web/app").await,
            (404, "pod does not exist".to_string())
        );
    }

    #[test]
    fn cri_records_become_stream_chunks_with_their_newlines() {
        let log = b"T stdout F one\nT stdout P par\nT stdout F tial\nT stderr F oops\nT stdout F unfinished";
        let (chunks, used) = cri_output(log);
        assert_eq!(
            chunks,
            vec![
                (stream::STDOUT, b"one\npartial\n".to_vec()),
                (stream::STDERR, b"oops\n".to_vec()),
            ]
        );
        assert_eq!(used, log.len() - "T stdout F unfinished".len());
    }
}
