//! `kubectl port-forward` through the real `skiff` API server to a real
//! agent API server, all on loopback and without containerd: a node agent
//! server (kubelet's `Server`, mTLS against the cluster CA) runs in the
//! test and is registered as Node `loopback-agent`; pod `fwd` is bound to
//! it with `status.podIP: 127.0.0.1`, and a plain TCP server on loopback
//! plays the pod's port. kubectl 1.31+ tunnels SPDY/3.1 in a WebSocket
//! (`SPDY/3.1+portforward.k8s.io`), which the API server splices to the
//! agent. The containerd variant is in `exec.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::Cluster;
use kubelet::server::{Server, ServerConfig};
use kubelet::stats::{ContainerSource, RequestStats, RunningContainer, StatsHandle, Summary};

#[derive(Debug)]
struct OnePod;

#[async_trait::async_trait]
impl ContainerSource for OnePod {
    async fn running(&self) -> Vec<RunningContainer> {
        vec![RunningContainer {
            namespace: "default".into(),
            pod: "fwd".into(),
            uid: "u1".into(),
            container: "app".into(),
            cgroup: String::new(),
        }]
    }
}

/// The "pod": answers each connection with a small page, or a big one
/// for `GET /big`.
fn serve_pod_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut request = [0_u8; 1024];
                let n = conn.read(&mut request).unwrap_or(0);
                let text = String::from_utf8_lossy(&request[..n]).to_string();
                let body = if text.starts_with("GET /big") {
                    (1..=100_000).map(|i| format!("{i}\n")).collect::<String>()
                } else {
                    "hello-from-the-pod-port\n".to_string()
                };
                let _ = conn.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{body}").as_bytes());
            });
        }
    });
    Ok(port)
}

fn kubectl_ok(cluster: &Cluster, args: &[&str]) -> Result<String> {
    cluster.kubectl(args)
}

#[test]
fn kubectl_port_forward_reaches_a_pod_port_through_the_api_server_and_agent() -> Result<()> {
    let cluster = Cluster::start_default()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client_ca = kubelet::server::tls::pem_certificates(&cluster.ca_pem()?);
    let logs = tempfile::tempdir()?;
    let server = runtime.block_on(Server::bind(ServerConfig {
        bind: "127.0.0.1:0".parse()?,
        names: vec!["127.0.0.1".into()],
        client_ca,
        logs_root: logs.path().to_path_buf(),
    }))?;
    let agent_port = server.local_addr().port();
    runtime.spawn(server.serve(
        StatsHandle::fixed(Summary::default(), RequestStats::default()),
        Arc::new(OnePod),
    ));
    let pod_port = serve_pod_port()?;

    let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"loopback-agent"}}"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], node)?;
    kubectl_ok(
        &cluster,
        &[
            "patch",
            "node",
            "loopback-agent",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{agent_port}}}}}}}}}"#
            ),
        ],
    )?;
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"fwd"},
        "spec":{"nodeName":"loopback-agent","containers":[{"name":"app","image":"busybox"}]}}"#;
    let created = cluster.kubectl_stdin(&["apply", "-f", "-"], pod)?;
    ensure!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    kubectl_ok(
        &cluster,
        &[
            "patch",
            "pod",
            "fwd",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}"#,
        ],
    )?;

    let local = e2e::free_port()?;
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", cluster.kubeconfig())
        .args(["port-forward", "pod/fwd", &format!("{local}:{pod_port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl port-forward")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let result = (|| -> Result<()> {
        let ready = rx
            .recv_timeout(Duration::from_secs(20))
            .context("kubectl port-forward printed nothing")?;
        ensure!(ready.contains("Forwarding from"), "unexpected: {ready}");
        // Several connections in a row: each is a new pair of SPDY streams
        // in the one tunnelled session.
        for _ in 0..3 {
            let page = e2e::containerd::http_get("127.0.0.1", local)?;
            ensure!(page.contains("hello-from-the-pod-port"), "got {page:?}");
        }
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", local))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"GET /big HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        let lines = body.lines().filter(|l| l.parse::<u32>().is_ok()).count();
        ensure!(lines == 100_000, "{lines} lines through the tunnel");
        println!(
            "port-forward of {} bytes took {:?}",
            body.len(),
            started.elapsed()
        );
        Ok(())
    })();
    let _ = child.kill();
    let output = child.wait_with_output()?;
    if result.is_err() {
        eprintln!(
            "kubectl port-forward stderr:\n{}\n--- cluster log ---\n{}",
            String::from_utf8_lossy(&output.stderr),
            cluster.logs()
        );
    }
    result?;

    // A port nothing listens on: the agent reports it on the error stream
    // and kubectl prints it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let local = e2e::free_port()?;
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", cluster.kubeconfig())
        .args(["port-forward", "pod/fwd", &format!("{local}:{closed}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl port-forward")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut first = String::new();
    stdout.read_line(&mut first)?;
    ensure!(first.contains("Forwarding from"), "unexpected: {first}");
    if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", local)) {
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let _ = conn.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    }
    let wanted = format!("error forwarding port {closed} to pod 127.0.0.1");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !seen.iter().any(|l: &String| l.contains(&wanted)) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    ensure!(
        seen.iter().any(|l| l.contains(&wanted)),
        "kubectl stderr lacks {wanted:?}: {seen:?}"
    );
    Ok(())
}
