//! Service data-path benchmark: HTTP throughput and latency direct to a
//! backend vs through its ClusterIP (skiff's userspace proxy), in one run.
//!
//! Two backends, each measured direct and through a ClusterIP, rounds
//! interleaved so drift hits both sides alike:
//! - a busybox `httpd` pod (it closes every connection: one TCP connect per
//!   request, the proxy's worst case: it makes two connects per request);
//! - a keep-alive HTTP/1.1 server in this process on 127.0.0.1, behind a
//!   selectorless Service with a hand-written EndpointSlice (connections
//!   are reused: the proxy's steady-state splice cost).
//!
//! Clients are keep-alive HTTP/1.1 loops at a fixed concurrency for a fixed
//! time; the table shows medians over rounds of requests/s, p50 and p99.
//!
//! Usage (root, containerd installed; the binary under test is `SKIFF_BIN`
//! or the workspace's target/{debug,release}/skiff):
//! `flock /tmp/skiff-containerd-e2e.lock cargo run --release -p e2e --bin bench_service -- [--seconds 5] [--rounds 5] [--concurrency 16]`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::{wait_for, Cluster, ClusterOptions};
use kubelet::containerd::test_image::{build_busybox_image, ArchiveFormat};
use kubelet::AgentConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NODE: &str = "skiff-node";

struct Args {
    seconds: u64,
    rounds: usize,
    concurrency: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        seconds: 5,
        rounds: 5,
        concurrency: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().context("a flag without a value")?;
        match flag.as_str() {
            "--seconds" => a.seconds = value.parse()?,
            "--rounds" => a.rounds = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// The cluster and what it leaves on the machine, removed on drop.
struct Bench {
    cluster: Option<Cluster>,
    node: AgentConfig,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.as_ref() {
            let _ = c.kubectl(&["delete", "deployment", "bench", "--wait=true"]);
            let _ = wait_for("the bench pod to go", Duration::from_secs(30), || {
                let out = c.kubectl(&["get", "pods", "-o", "name"])?;
                Ok(out.trim().is_empty().then_some(()))
            });
        }
        if let Some(mut c) = self.cluster.take() {
            let _ = c.stop();
        }
        let config = self.node.data_dir.join("containerd/config.toml");
        let needle = config.display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(&needle)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for link in [self.node.bridge.as_str(), "skiff-svc"] {
            let _ = std::process::Command::new("ip")
                .args(["link", "delete", link])
                .output();
        }
    }
}

/// A keep-alive HTTP/1.1 server answering `ok` to every request.
async fn keep_alive_server() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut pending = Vec::new();
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    let mut replies = Vec::new();
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        replies
                            .extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
                    }
                    if stream.write_all(&replies).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Reads one response; returns whether the connection may be reused.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before a response");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") && !head.starts_with("http/1.0 200") {
        bail!("unexpected response {head:?}");
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no content-length")?;
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed inside a body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(!head.contains("connection: close"))
}

struct Outcome {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// `concurrency` keep-alive clients against `addr` for `duration`.
async fn load(addr: SocketAddr, concurrency: usize, duration: Duration) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut conn: Option<TcpStream> = None;
                let mut buf = Vec::with_capacity(8192);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let result: Result<bool> = async {
                        if conn.is_none() {
                            let s = TcpStream::connect(addr).await?;
                            s.set_nodelay(true)?;
                            conn = Some(s);
                        }
                        let s = conn.as_mut().context("connection")?;
                        s.write_all(b"GET /index.html HTTP/1.1\r\nHost: bench\r\n\r\n")
                            .await?;
                        read_response(s, &mut buf).await
                    }
                    .await;
                    match result {
                        Ok(reuse) => {
                            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                            if !reuse {
                                conn = None;
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((l, e)) = w.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Outcome {
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn apply(cluster: &Cluster, yaml: &str) -> Result<()> {
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], yaml)?;
    if !out.status.success() {
        bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cluster = Cluster::start(ClusterOptions {
        nodes: 1,
        runtime: "containerd",
        ..Default::default()
    })?;
    let node = AgentConfig::new(
        NODE,
        &cluster.data_dir.path().join("nodes").join(NODE),
        AgentConfig::index_for_name(NODE),
    );
    let bench = Bench {
        cluster: Some(cluster),
        node,
    };
    let cluster = bench.cluster.as_ref().context("cluster")?;
    let images = cluster.data_dir.path().join("images");
    std::fs::create_dir_all(&images)?;
    let partial = images.join("busybox.tar.partial");
    build_busybox_image(&partial, "skiff-busybox:bench", ArchiveFormat::OciLayout)?;
    std::fs::rename(&partial, images.join("busybox.tar"))?;

    let ka = runtime.block_on(keep_alive_server())?;
    apply(
        cluster,
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: bench}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: bench}}}}
  template:
    metadata: {{labels: {{app: bench}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: skiff-busybox:bench
        imagePullPolicy: Never
        command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
---
apiVersion: v1
kind: Service
metadata: {{name: bench}}
spec:
  selector: {{app: bench}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: bench-ka}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bench-ka-1
  labels: {{kubernetes.io/service-name: bench-ka}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
"#,
            port = ka.port()
        ),
    )?;
    let pod_ip = wait_for("the bench pod's IP", Duration::from_secs(90), || {
        let out = cluster.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=bench",
            "-o",
            "jsonpath={.items[?(@.status.phase==\"Running\")].status.podIP}",
        ])?;
        Ok((!out.trim().is_empty()).then(|| out.trim().to_string()))
    })?;
    let cip = cluster.kubectl(&["get", "svc", "bench", "-o", "jsonpath={.spec.clusterIP}"])?;
    let cip_ka =
        cluster.kubectl(&["get", "svc", "bench-ka", "-o", "jsonpath={.spec.clusterIP}"])?;
    let targets: Vec<(&str, SocketAddr)> = vec![
        ("httpd pod, direct", format!("{pod_ip}:8080").parse()?),
        ("httpd pod, ClusterIP", format!("{cip}:80").parse()?),
        ("keep-alive, direct", ka),
        ("keep-alive, ClusterIP", format!("{cip_ka}:80").parse()?),
    ];
    for (name, addr) in &targets {
        wait_for(
            &format!("{name} to answer"),
            Duration::from_secs(30),
            || {
                let o = runtime.block_on(load(*addr, 1, Duration::from_millis(200)));
                Ok((o.rps > 0.0 && o.errors == 0).then_some(()))
            },
        )?;
    }
    let duration = Duration::from_secs(args.seconds);
    let mut results: Vec<Vec<Outcome>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        for (i, (name, addr)) in targets.iter().enumerate() {
            let o = runtime.block_on(load(*addr, args.concurrency, duration));
            eprintln!(
                "round {round} {name}: {:.0} req/s p50 {:.2} ms p99 {:.2} ms errors {}",
                o.rps, o.p50_ms, o.p99_ms, o.errors
            );
            results[i].push(o);
        }
    }
    println!(
        "service data path: {} rounds x {} s, {} keep-alive clients, skiff {}",
        args.rounds,
        args.seconds,
        args.concurrency,
        e2e::skiff_bin().display()
    );
    println!("| target | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|");
    let mut rps = Vec::new();
    for ((name, _), outcomes) in targets.iter().zip(&results) {
        let r = median(outcomes.iter().map(|o| o.rps).collect());
        rps.push(r);
        println!(
            "| {name} | {r:.0} | {:.2} | {:.2} | {} |",
            median(outcomes.iter().map(|o| o.p50_ms).collect()),
            median(outcomes.iter().map(|o| o.p99_ms).collect()),
            outcomes.iter().map(|o| o.errors).sum::<u64>()
        );
    }
    println!(
        "ClusterIP / direct throughput: httpd pod {:.0}%, keep-alive {:.0}%",
        100.0 * rps[1] / rps[0],
        100.0 * rps[3] / rps[2]
    );
    drop(bench);
    Ok(())
}
