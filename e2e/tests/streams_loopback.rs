//! `kubectl port-forward` and `kubectl exec` through the real `skiff` API
//! server to a real agent API server, all on loopback and without
//! containerd (so without root or the containerd lock): a node agent
//! server (kubelet's `Server`, mTLS against the cluster CA) runs in the
//! test and is registered as Node `loopback-agent`; pod `fwd` is bound to
//! it with `status.podIP: 127.0.0.1`, a plain TCP server on loopback plays
//! the pod's port, and a scripted exec runtime plays containerd. kubectl
//! 1.31+ tunnels SPDY/3.1 in a WebSocket (`SPDY/3.1+portforward.k8s.io`)
//! for port-forward and speaks `v5.channel.k8s.io` for exec; the API
//! server splices both to the agent. The containerd variants are in
//! `exec.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::Cluster;
use kubelet::server::exec::{ExecProcess, ExecRequest, ExecRuntime, LookupError};
use kubelet::server::{Server, ServerConfig};
use kubelet::stats::{ContainerSource, RequestStats, RunningContainer, StatsHandle, Summary};
use tokio::sync::{mpsc, oneshot};

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

/// `exit N` writes `out`/`err` and exits N; `cat` echoes stdin until it
/// closes.
#[derive(Debug)]
struct ScriptedExec;

#[async_trait::async_trait]
impl ExecRuntime for ScriptedExec {
    async fn find(&self, _: &str, pod: &str, container: &str) -> Result<String, LookupError> {
        match (pod, container) {
            ("fwd", "app") => Ok("c1".into()),
            _ => Err(LookupError::ContainerNotFound(container.into())),
        }
    }

    async fn exec(&self, _: &str, request: ExecRequest) -> Result<ExecProcess, String> {
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<Vec<u8>>(4);
        let (out_tx, out_rx) = mpsc::channel(4);
        let (err_tx, err_rx) = mpsc::channel(4);
        let (exit_tx, exit) = oneshot::channel();
        match request.command.first().map(String::as_str) {
            Some("exit") => {
                let code = request
                    .command
                    .get(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                tokio::spawn(async move {
                    let _ = out_tx.send(b"out\n".to_vec()).await;
                    let _ = err_tx.send(b"err\n".to_vec()).await;
                    let _ = exit_tx.send(Ok(code));
                });
            }
            Some("cat") => {
                tokio::spawn(async move {
                    while let Some(chunk) = stdin_rx.recv().await {
                        let _ = out_tx.send(chunk).await;
                    }
                    let _ = exit_tx.send(Ok(0));
                });
            }
            other => return Err(format!("{other:?}: executable file not found in $PATH")),
        }
        Ok(ExecProcess {
            stdin: request.stdin.then_some(stdin_tx),
            stdout: Some(out_rx),
            stderr: request.stderr.then_some(err_rx),
            resize: None,
            exit,
        })
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
fn kubectl_port_forward_and_exec_reach_the_pod_through_the_api_server_and_agent() -> Result<()> {
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
    let server = server.with_exec(Arc::new(ScriptedExec));
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

    // exec: both streams, the exit code, stdin with its close signal.
    let run = cluster.kubectl_output(&["exec", "fwd", "--", "exit", "3"])?;
    ensure!(run.status.code() == Some(3), "exec exit: {:?}", run.status);
    ensure!(String::from_utf8_lossy(&run.stdout) == "out\n");
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure!(
        stderr.contains("err\n") && stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );
    let echoed = cluster.kubectl_stdin(&["exec", "-i", "fwd", "--", "cat"], "round trip\n")?;
    ensure!(
        echoed.status.success(),
        "{}",
        String::from_utf8_lossy(&echoed.stderr)
    );
    ensure!(String::from_utf8_lossy(&echoed.stdout) == "round trip\n");
    let missing = cluster.kubectl_output(&["exec", "fwd", "--", "nope"])?;
    ensure!(!missing.status.success());
    ensure!(
        String::from_utf8_lossy(&missing.stderr).contains("executable file not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

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
