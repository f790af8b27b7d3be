//! The `httpGet`, `tcpSocket` and `exec` probe checks (`grpc` is in
//! [`super::grpc`]), each bounded by the probe's `timeoutSeconds`. Each returns a
//! [`ProbeResult`]; failures carry the message Kubernetes would show
//! (`HTTP probe failed with statuscode: 503`, `dial tcp ...: connect:
//! connection refused`).

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::containerd::pod_runtime::ExecOutcome;

/// The outcome of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The check passed.
    Success,
    /// The check failed, with why.
    Failure(String),
}

impl ProbeResult {
    /// Whether the check passed.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }
}

/// What an `httpGet` probe requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    /// The address to connect to (`httpGet.host`, else the pod IP).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The request path (always starting with `/`).
    pub path: String,
    /// `httpGet.httpHeaders`, in order (a `Host` header overrides the
    /// default one).
    pub headers: Vec<(String, String)>,
    /// `scheme: HTTPS`: TLS without certificate verification, as the
    /// kubelet's prober does.
    pub https: bool,
}

/// The User-Agent Kubernetes' prober sends.
pub(super) const USER_AGENT: &str = "kube-probe/1.31";
/// How much of the response is read to find the status line.
const MAX_HEAD: usize = 16 * 1024;

pub(super) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl HttpGet {
    /// The URL, as Kubernetes prints it in failure messages.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!(
            "{scheme}://{}{}",
            host_port(&self.host, self.port),
            self.path
        )
    }

    /// The request bytes: `GET`, HTTP/1.1, `Connection: close`.
    pub fn request(&self) -> String {
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        let mut request = format!("GET {} HTTP/1.1\r\n", self.path);
        if !has("host") {
            request.push_str(&format!("Host: {}\r\n", host_port(&self.host, self.port)));
        }
        if !has("user-agent") {
            request.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
        }
        if !has("accept") {
            request.push_str("Accept: */*\r\n");
        }
        for (name, value) in &self.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        request
    }
}

/// Parses the status code of an HTTP/1.x status line.
pub fn status_code(head: &[u8]) -> Option<u16> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// Sends `request` and reads up to the status line's code.
async fn exchange<S>(mut stream: S, request: &str) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0_u8; 1024];
    loop {
        if let Some(code) = status_code(&head) {
            return Ok(code);
        }
        if head.len() >= MAX_HEAD {
            return Err("malformed HTTP response".to_string());
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("EOF".to_string());
        }
        head.extend_from_slice(&buf[..n]);
    }
}

/// Runs an `httpGet` check: success for a status in 200–399.
pub async fn http_get(get: &HttpGet, timeout: Duration) -> ProbeResult {
    let url = get.url();
    let attempt = async {
        let stream = TcpStream::connect(host_port(&get.host, get.port))
            .await
            .map_err(|e| format!("dial tcp {}: connect: {e}", host_port(&get.host, get.port)))?;
        if !get.https {
            return exchange(stream, &get.request()).await;
        }
        let name = rustls::pki_types::ServerName::try_from(get.host.clone())
            .map_err(|e| format!("bad host {:?}: {e}", get.host))?;
        let tls = tokio_rustls::TlsConnector::from(tls::unverified_client())
            .connect(name, stream)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        exchange(tls, &get.request()).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(code)) if (200..400).contains(&code) => ProbeResult::Success,
        Ok(Ok(code)) => ProbeResult::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Ok(Err(error)) => ProbeResult::Failure(format!("Get \"{url}\": {error}")),
        Err(_) => ProbeResult::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// TLS for HTTPS probes: the kubelet's prober does not verify the pod's
/// certificate (pods serve self-signed ones), only speaks TLS.
mod tls {
    use std::sync::{Arc, OnceLock};

    use rustls::ClientConfig;

    /// One shared client configuration.
    pub(super) fn unverified_client() -> Arc<ClientConfig> {
        static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        CONFIG
            .get_or_init(|| match tlsutil::unverified_client() {
                Ok(builder) => Arc::new(builder.with_no_client_auth()),
                // The ring provider supports the default versions; a
                // config without them would fail every handshake, which
                // the probe then reports.
                Err(_) => Arc::new(
                    ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                ),
            })
            .clone()
    }
}

/// Runs a `tcpSocket` check: success when a connection opens.
pub async fn tcp_socket(host: &str, port: u16, timeout: Duration) -> ProbeResult {
    let address = host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect(&address)).await {
        Ok(Ok(_)) => ProbeResult::Success,
        Ok(Err(error)) => ProbeResult::Failure(format!("dial tcp {address}: connect: {error}")),
        Err(_) => ProbeResult::Failure(format!("dial tcp {address}: i/o timeout")),
    }
}

/// Runs commands in one container, for `exec` probes.
#[async_trait]
pub trait Exec: Send + Sync + 'static {
    /// Runs `command`, waiting up to `timeout`; an error says why it could
    /// not run.
    async fn exec(&self, command: &[String], timeout: Duration) -> Result<ExecOutcome, String>;
}

/// Runs an `exec` check: success for exit code 0.
pub async fn exec(runner: &dyn Exec, command: &[String], timeout: Duration) -> ProbeResult {
    // The runtime enforces the timeout; this bound covers a stuck runtime.
    let bound = timeout + Duration::from_secs(5);
    match tokio::time::timeout(bound, runner.exec(command, timeout)).await {
        Ok(Ok(ExecOutcome::Exited { code: 0, .. })) => ProbeResult::Success,
        // Kubernetes shows the command's output as the failure message.
        Ok(Ok(ExecOutcome::Exited { code, output })) => {
            let output = output.trim_end();
            ProbeResult::Failure(if output.is_empty() {
                format!("command {command:?} exited with {code}")
            } else {
                output.to_string()
            })
        }
        Ok(Ok(ExecOutcome::TimedOut)) | Err(_) => ProbeResult::Failure(format!(
            "command {command:?} timed out after {}s",
            timeout.as_secs()
        )),
        Ok(Err(error)) => ProbeResult::Failure(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot-per-connection HTTP server answering `status` to every
    /// request and sending each request it read to the returned channel.
    async fn http_server(status: u16) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0_u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_string());
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        (port, rx)
    }

    fn get(port: u16, path: &str) -> HttpGet {
        HttpGet {
            host: "127.0.0.1".to_string(),
            port,
            path: path.to_string(),
            headers: Vec::new(),
            https: false,
        }
    }

    #[tokio::test]
    async fn an_https_probe_speaks_tls_to_a_self_signed_server_and_reads_its_status(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let key = rcgen::KeyPair::generate()?;
        let cert =
            rcgen::CertificateParams::new(vec!["pod.local".to_string()])?.self_signed(&key)?;
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    continue;
                };
                let mut buf = vec![0_u8; 4096];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let path_ok = String::from_utf8_lossy(&buf[..n]).starts_with("GET /ready ");
                let status = if path_ok { 200 } else { 500 };
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
        let mut probe = get(port, "/ready");
        probe.https = true;
        assert_eq!(probe.url(), format!("https://127.0.0.1:{port}/ready"));
        let result = http_get(&probe, Duration::from_secs(5)).await;
        assert_eq!(result, ProbeResult::Success);
        // Plain HTTP to a TLS port fails.
        probe.https = false;
        assert!(!http_get(&probe, Duration::from_secs(2)).await.is_success());
        Ok(())
    }

    #[tokio::test]
    async fn an_http_probe_succeeds_on_2xx_and_3xx_and_fails_on_4xx_and_5xx() {
        for (status, ok) in [
            (200, true),
            (302, true),
            (399, true),
            (404, false),
            (503, false),
        ] {
            let (port, _requests) = http_server(status).await;
            let result = http_get(&get(port, "/healthz"), Duration::from_secs(1)).await;
            assert_eq!(result.is_success(), ok, "{status}: {result:?}");
            if !ok {
                assert_eq!(
                    result,
                    ProbeResult::Failure(format!("HTTP probe failed with statuscode: {status}"))
                );
            }
        }
    }

    #[tokio::test]
    async fn an_http_probe_sends_the_path_the_host_and_custom_headers() {
        let (port, mut requests) = http_server(200).await;
        let mut probe = get(port, "/ready?x=1");
        probe.headers = vec![
            ("Host".to_string(), "example.test".to_string()),
            ("X-Custom".to_string(), "yes".to_string()),
        ];
        assert!(http_get(&probe, Duration::from_secs(1)).await.is_success());
        let request = requests.recv().await.expect("a request");
        assert!(
            request.starts_with("GET /ready?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Host: example.test\r\n"), "{request}");
        assert!(
            !request.contains(&format!("Host: 127.0.0.1:{port}")),
            "{request}"
        );
        assert!(request.contains("X-Custom: yes\r\n"), "{request}");
        assert!(request.contains("User-Agent: kube-probe/"), "{request}");
    }

    #[tokio::test]
    async fn an_http_probe_to_a_closed_port_fails_naming_the_url() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let result = http_get(&get(port, "/"), Duration::from_secs(1)).await;
        let ProbeResult::Failure(message) = result else {
            panic!("a closed port passed");
        };
        assert!(
            message.starts_with(&format!("Get \"http://127.0.0.1:{port}/\": dial tcp")),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_http_probe_that_gets_no_answer_fails_at_its_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let started = std::time::Instant::now();
        let result = http_get(&get(port, "/"), Duration::from_millis(200)).await;
        assert!(
            matches!(&result, ProbeResult::Failure(m) if m.contains("Client.Timeout")),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
    }

    #[tokio::test]
    async fn a_tcp_probe_succeeds_on_an_open_port_and_fails_on_a_closed_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(tcp_socket("127.0.0.1", port, Duration::from_secs(1))
            .await
            .is_success());
        drop(listener);
        let result = tcp_socket("127.0.0.1", port, Duration::from_secs(1)).await;
        assert!(
            matches!(&result, ProbeResult::Failure(m) if m.starts_with("dial tcp 127.0.0.1:")),
            "{result:?}"
        );
    }

    #[test]
    fn status_lines_parse_and_garbage_does_not() {
        assert_eq!(status_code(b"HTTP/1.0 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.1 500"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
    }

    struct Fixed(Result<ExecOutcome, String>);

    #[async_trait]
    impl Exec for Fixed {
        async fn exec(&self, _: &[String], _: Duration) -> Result<ExecOutcome, String> {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn an_exec_probe_passes_on_exit_0_only() {
        let cmd = vec!["cat".to_string(), "/tmp/healthy".to_string()];
        let t = Duration::from_secs(1);
        let exited = |code: i32, output: &str| {
            Fixed(Ok(ExecOutcome::Exited {
                code,
                output: output.to_string(),
            }))
        };
        assert!(exec(&exited(0, "ok\n"), &cmd, t).await.is_success());
        assert_eq!(
            exec(&exited(1, ""), &cmd, t).await,
            ProbeResult::Failure("command [\"cat\", \"/tmp/healthy\"] exited with 1".to_string())
        );
        assert_eq!(
            exec(&exited(1, "cat: can't open '/tmp/healthy'\n"), &cmd, t).await,
            ProbeResult::Failure("cat: can't open '/tmp/healthy'".to_string())
        );
        assert!(
            matches!(exec(&Fixed(Ok(ExecOutcome::TimedOut)), &cmd, t).await,
            ProbeResult::Failure(m) if m.contains("timed out"))
        );
        assert_eq!(
            exec(&Fixed(Err("not running".to_string())), &cmd, t).await,
            ProbeResult::Failure("not running".to_string())
        );
    }
}
