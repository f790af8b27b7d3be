//! `GET /portForward/{ns}/{pod}?podIP=..`: `kubectl port-forward`'s SPDY
//! session tunnelled in a WebSocket (subprotocol
//! `SPDY/3.1+portforward.k8s.io`, kubectl 1.31+'s default).
//!
//! Each forwarded connection is a pair of client-opened streams with the
//! same `requestid`: `streamtype: error` and `streamtype: data` naming the
//! `port`. The agent accepts both (SYN_REPLY), connects to that port,
//! copies bytes both ways, and ends both streams (FIN) when the pod side
//! closes; a failed connect is reported on the error stream.
//!
//! As containerd's CRI does for Kubernetes, the connection is made to
//! `127.0.0.1:port` from inside the pod's network namespace, so a port the
//! pod binds only to its loopback is reachable too. A pod without a
//! network namespace of skiff's (host-network pods, and the in-process
//! test agents) is reached on its IP instead.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::{self, Codec, Frame};
use super::ServerState;

/// The WebSocket subprotocol of a tunnelled SPDY port-forward session.
pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const QUEUE: usize = 64;

/// The query of a port-forward request.
#[derive(Debug, Deserialize)]
pub(super) struct PortForwardQuery {
    #[serde(rename = "podIP")]
    pod_ip: Option<IpAddr>,
}

pub(super) async fn port_forward(
    State(state): State<ServerState>,
    Path((namespace, pod)): Path<(String, String)>,
    Query(query): Query<PortForwardQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (StatusCode::BAD_REQUEST, "Upgrade request required").into_response();
    };
    let Some(pod_ip) = query.pod_ip else {
        return (StatusCode::BAD_REQUEST, "the pod has no IP").into_response();
    };
    let running = state.containers.running().await;
    let Some(uid) = running
        .iter()
        .find(|c| c.namespace == namespace && c.pod == pod)
        .map(|c| c.uid.clone())
    else {
        return (StatusCode::NOT_FOUND, "pod does not exist").into_response();
    };
    let sandbox = crate::cni::SandboxRef {
        pod_uid: uid.clone(),
    };
    let netns = std::path::Path::new(crate::cni::NETNS_DIR).join(sandbox.netns_name());
    let target = if netns.exists() {
        Target::Netns {
            path: netns,
            pod: format!("{namespace}/{pod}, uid {uid}"),
        }
    } else {
        Target::Ip(pod_ip)
    };
    tracing::info!(%namespace, %pod, %pod_ip, ?target, "port-forward");
    ws.protocols([PROTOCOL])
        .on_upgrade(move |socket| session(socket, target))
}

/// Where a forwarded connection goes.
#[derive(Debug, Clone)]
enum Target {
    /// `127.0.0.1` inside the network namespace at `path`, of `pod`.
    Netns { path: PathBuf, pod: String },
    /// The pod's IP, from the node's own namespace.
    Ip(IpAddr),
}

impl Target {
    async fn connect(&self, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        match self {
            Target::Ip(ip) => {
                let address = SocketAddr::new(*ip, port);
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
                    .await
                    .map_err(|_| std::io::Error::other("connection timed out"))?
            }
            Target::Netns { path, .. } => {
                // A socket stays in the namespace it was made in, so a
                // short-lived thread of its own joins the pod's namespace,
                // connects and ends: no runtime thread ever changes
                // namespace.
                let path = path.clone();
                let (tx, rx) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(connect_in_netns(&path, port));
                });
                let stream = rx
                    .await
                    .map_err(|_| std::io::Error::other("connect thread ended"))??;
                stream.set_nonblocking(true)?;
                tokio::net::TcpStream::from_std(stream)
            }
        }
    }
}

/// Joins the network namespace at `path` (this thread only) and connects
/// to its loopback.
fn connect_in_netns(path: &std::path::Path, port: u16) -> std::io::Result<std::net::TcpStream> {
    let netns = std::fs::File::open(path)?;
    nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(std::io::Error::from)?;
    std::net::TcpStream::connect_timeout(
        &SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        CONNECT_TIMEOUT,
    )
}

async fn session(socket: WebSocket, target: Target) {
    let (mut sink, mut incoming) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut codec = Codec::new();
    let mut buffer = Vec::new();
    // Data stream ID -> bytes for the pod.
    let mut to_pod: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    // requestid -> its error stream, until the data stream arrives.
    let mut pairs: HashMap<String, u32> = HashMap::new();
    'session: while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Binary(bytes) => buffer.extend_from_slice(&bytes),
            Message::Close(_) => break,
            _ => continue,
        }
        loop {
            let frame = match codec.next_frame(&mut buffer) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    tracing::info!(%error, "port-forward session ended");
                    break 'session;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id, headers, ..
                } => {
                    let header = |name: &str| {
                        headers
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    let port: Option<u16> = header("port").parse().ok().filter(|p| *p > 0);
                    let Some(port) = port else {
                        let _ = out
                            .send(spdy::rst_stream(stream_id, spdy::REFUSED_STREAM))
                            .await;
                        continue;
                    };
                    let _ = out.send(codec.syn_reply(stream_id)).await;
                    let request_id = header("requestid");
                    match header("streamtype").as_str() {
                        "error" => {
                            pairs.insert(request_id, stream_id);
                        }
                        "data" => {
                            // kubectl opens the error stream first; the pair
                            // is complete (and forgotten) with the data one.
                            let error_stream = pairs.remove(&request_id);
                            let (tx, rx) = mpsc::channel(QUEUE);
                            to_pod.insert(stream_id, tx);
                            let forward = Forward {
                                target: target.clone(),
                                port,
                                data_stream: stream_id,
                                error_stream,
                                out: out.clone(),
                            };
                            tokio::spawn(forward.run(rx));
                        }
                        _ => {
                            let _ = out
                                .send(spdy::rst_stream(stream_id, spdy::REFUSED_STREAM))
                                .await;
                        }
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    if let Some(tx) = to_pod.get(&stream_id) {
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            to_pod.remove(&stream_id);
                        }
                    }
                    if flags & spdy::FLAG_FIN != 0 {
                        to_pod.remove(&stream_id);
                    }
                }
                Frame::RstStream { stream_id } => {
                    to_pod.remove(&stream_id);
                }
                Frame::Ping { id } => {
                    let _ = out.send(spdy::ping(id)).await;
                }
                Frame::GoAway => break 'session,
                Frame::Other => {}
            }
        }
    }
    drop(to_pod);
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// Copies one connection between its data stream and the pod's port.
struct Forward {
    target: Target,
    port: u16,
    data_stream: u32,
    error_stream: Option<u32>,
    out: mpsc::Sender<Vec<u8>>,
}

impl Forward {
    async fn run(self, mut from_client: mpsc::Receiver<Vec<u8>>) {
        let tcp = match self.target.connect(self.port).await {
            Ok(tcp) => tcp,
            Err(error) => return self.fail(&error.to_string()).await,
        };
        let (mut read, mut write) = tcp.into_split();
        let upstream = tokio::spawn(async move {
            while let Some(chunk) = from_client.recv().await {
                if write.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = write.shutdown().await;
        });
        let mut buffer = vec![0_u8; 32 * 1024];
        loop {
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if self
                        .out
                        .send(spdy::data(self.data_stream, 0, &buffer[..n]))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        upstream.abort();
        self.finish().await;
    }

    async fn fail(self, reason: &str) {
        let port = self.port;
        let message = match &self.target {
            Target::Ip(ip) => {
                format!("error forwarding port {port} to pod {ip}: failed to connect: {reason}")
            }
            Target::Netns { path, pod } => format!(
                "error forwarding port {port} to pod {pod}: failed to connect to \
                 localhost:{port} inside namespace {}: {reason}",
                path.display()
            ),
        };
        tracing::info!(port = self.port, %reason, "port-forward connect failed");
        if let Some(error_stream) = self.error_stream {
            let _ = self
                .out
                .send(spdy::data(error_stream, 0, message.as_bytes()))
                .await;
        }
        self.finish().await;
    }

    /// Ends both streams of the pair.
    async fn finish(self) {
        let _ = self
            .out
            .send(spdy::data(self.data_stream, spdy::FLAG_FIN, &[]))
            .await;
        if let Some(error_stream) = self.error_stream {
            let _ = self
                .out
                .send(spdy::data(error_stream, spdy::FLAG_FIN, &[]))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ContainerSource, RequestStats, RunningContainer, StatsHandle, Summary};
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    use std::sync::Arc;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    #[derive(Debug)]
    struct OnePod;

    #[async_trait::async_trait]
    impl ContainerSource for OnePod {
        async fn running(&self) -> Vec<RunningContainer> {
            vec![RunningContainer {
                namespace: "default".into(),
                pod: "web".into(),
                uid: "u1".into(),
                container: "app".into(),
                cgroup: String::new(),
            }]
        }
    }

    /// A SYN_STREAM as kubectl writes it (headers compressed with the
    /// SPDY/3 dictionary, shared across the session).
    fn syn_stream(compress: &mut Compress, id: u32, kind: &str, port: u16) -> Vec<u8> {
        let headers = [
            ("streamType", kind.to_string()),
            ("port", port.to_string()),
            ("requestID", "0".to_string()),
        ];
        let mut raw = 3_u32.to_be_bytes().to_vec();
        for (name, value) in &headers {
            for text in [*name, value.as_str()] {
                raw.extend_from_slice(&u32::try_from(text.len()).expect("len").to_be_bytes());
                raw.extend_from_slice(text.as_bytes());
            }
        }
        let mut compressed = Vec::with_capacity(raw.len() + 64);
        compress
            .compress_vec(&raw, &mut compressed, FlushCompress::Sync)
            .expect("compress");
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0; 6]);
        payload.extend(compressed);
        let mut frame = vec![0x80, 3, 0, 1, 0];
        frame.extend_from_slice(&u32::try_from(payload.len()).expect("len").to_be_bytes()[1..]);
        frame.extend(payload);
        frame
    }

    #[tokio::test]
    async fn a_tunnelled_spdy_session_forwards_a_connection_both_ways() {
        // The "pod": echoes what it reads, upper-cased, then closes.
        let pod = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let pod_port = pod.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((mut conn, _)) = pod.accept().await {
                let mut buf = [0_u8; 64];
                if let Ok(n) = conn.read(&mut buf).await {
                    let _ = conn.write_all(&buf[..n].to_ascii_uppercase()).await;
                }
            }
        });
        let app = super::super::router(ServerState {
            stats: StatsHandle::fixed(Summary::default(), RequestStats::default()),
            containers: Arc::new(OnePod),
            logs_root: std::env::temp_dir(),
            exec: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut request = format!("ws://{addr}/portForward/default/web?podIP=127.0.0.1")
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", PROTOCOL.parse().expect("header"));
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let (mut client, _) = tokio_tungstenite::client_async(request, tcp)
            .await
            .expect("handshake");

        let mut compress = Compress::new(Compression::default(), true);
        compress
            .set_dictionary(&spdy::dictionary())
            .expect("dictionary");
        for frame in [
            syn_stream(&mut compress, 1, "error", pod_port),
            syn_stream(&mut compress, 3, "data", pod_port),
            spdy::data(3, 0, b"ping"),
        ] {
            client
                .send(WsMessage::Binary(frame.into()))
                .await
                .expect("send");
        }
        // Collect frames until both streams ended.
        let mut bytes = Vec::new();
        let mut replies = Vec::new();
        let mut payload = Vec::new();
        let mut fins = Vec::new();
        let mut inflate = Decompress::new(true);
        while fins.len() < 2 {
            let message = tokio::time::timeout(Duration::from_secs(5), client.next())
                .await
                .expect("frames within 5s")
                .expect("open")
                .expect("message");
            if let WsMessage::Binary(data) = message {
                bytes.extend_from_slice(&data);
            }
            while bytes.len() >= 8 {
                let len = usize::from(bytes[5]) << 16
                    | usize::from(bytes[6]) << 8
                    | usize::from(bytes[7]);
                if bytes.len() < 8 + len {
                    break;
                }
                let frame: Vec<u8> = bytes.drain(..8 + len).collect();
                if frame[0] & 0x80 != 0 {
                    let id = u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
                    assert_eq!(frame[3], 2, "only SYN_REPLY control frames");
                    let mut out = Vec::with_capacity(64);
                    inflate
                        .decompress_vec(&frame[12..], &mut out, FlushDecompress::Sync)
                        .expect("reply headers");
                    replies.push(id);
                } else {
                    let stream = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                    if stream == 3 {
                        payload.extend_from_slice(&frame[8..]);
                    }
                    if frame[4] & spdy::FLAG_FIN != 0 {
                        fins.push(stream);
                    }
                }
            }
        }
        assert_eq!(replies, vec![1, 3]);
        assert_eq!(payload, b"PING");
        fins.sort_unstable();
        assert_eq!(fins, vec![1, 3]);
    }
}
