//! Service data-path benchmark: HTTP throughput and latency direct to a
//! pod vs through its ClusterIP, by the kernel path (nftables DNAT) and by
//! skiff's metering userspace proxy, in one run.
//!
//! Two backends, each measured direct and through both ClusterIP paths,
//! rounds interleaved so drift hits every target alike:
//! - a busybox `httpd` pod (it closes every connection: one TCP connect per
//!   request, the userspace proxy's worst case: two connects per request);
//! - a keep-alive HTTP/1.1 server pod (`keepalive_server`, packed by
//!   `skiff image build`): connections are reused, so this is the data
//!   path's steady-state cost.
//!
//! Clients are keep-alive HTTP/1.1 loops at a fixed concurrency for a fixed
//! time; the table shows medians over rounds of requests/s, p50 and p99.
//!
//! Usage (root, containerd installed; the binary under test is `SKIFF_BIN`
//! or the workspace's target/{debug,release}/skiff):
//! `flock /tmp/skiff-containerd-e2e.lock cargo build --release -p e2e --bin keepalive_server && cargo run --release -p e2e --bin bench_service -- [--seconds 5] [--rounds 5] [--concurrency 16]`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::{wait_for, Cluster, ClusterOptions};
use kubelet::containerd::test_image::{build_busybox_image, ArchiveFormat};
use kubelet::AgentConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
        if let Some(c) = self.cluster.as_mut() {
            let _ = c.stop();
        }
        // What `skiff down` removes: every container (and its shim, which
        // would otherwise outlive the run holding the caller's lock file),
        // pod networks, netns, the bridge and the node's containerd.
        let _ =
            e2e::containerd::block_on(kubelet::agent::cleanup::remove_node(&self.node.data_dir));
        e2e::containerd::remove_service_path();
        // Dropping the cluster removes its data dir, last.
        self.cluster.take();
    }
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

    // The keep-alive backend: this workspace's `keepalive_server`, packed
    // into an image with its libraries by `skiff image build`.
    let server = std::env::current_exe()?.with_file_name("keepalive_server");
    let out = std::process::Command::new(e2e::skiff_bin())
        .args(["image", "build", "--binary"])
        .arg(&server)
        .args(["--name", "skiff.local/keepalive:bench", "--data-dir"])
        .arg(cluster.data_dir.path())
        .output()?;
    if !out.status.success() {
        bail!(
            "skiff image build {}: {} (build it: cargo build -p e2e --bin keepalive_server)",
            server.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut yaml = String::new();
    for (app, image, command) in [
        (
            "bench",
            "skiff-busybox:bench",
            r#"["httpd", "-f", "-p", "8080", "-h", "/www"]"#,
        ),
        (
            "bench-ka",
            "skiff.local/keepalive:bench",
            r#"["keepalive_server", "8080"]"#,
        ),
    ] {
        yaml.push_str(&format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {app}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {image}
        imagePullPolicy: Never
        command: {command}
---
apiVersion: v1
kind: Service
metadata: {{name: {app}}}
spec:
  selector: {{app: {app}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata:
  name: {app}-us
  annotations: {{proxy.skiff.io/mode: userspace}}
spec:
  selector: {{app: {app}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
"#
        ));
    }
    apply(cluster, &yaml)?;
    let pod_ip = |app: &str| {
        wait_for(
            &format!("the {app} pod's IP"),
            Duration::from_secs(90),
            || {
                let out = cluster.kubectl(&[
                    "get",
                    "pods",
                    "-l",
                    &format!("app={app}"),
                    "-o",
                    "jsonpath={.items[?(@.status.phase==\"Running\")].status.podIP}",
                ])?;
                Ok((!out.trim().is_empty()).then(|| out.trim().to_string()))
            },
        )
    };
    let cluster_ip = |svc: &str| -> Result<SocketAddr> {
        let ip = cluster.kubectl(&["get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}"])?;
        Ok(format!("{ip}:80").parse()?)
    };
    let httpd_ip = pod_ip("bench")?;
    let ka_ip = pod_ip("bench-ka")?;
    let targets: Vec<(&str, SocketAddr)> = vec![
        ("httpd pod, direct", format!("{httpd_ip}:8080").parse()?),
        ("httpd pod, ClusterIP (nftables)", cluster_ip("bench")?),
        ("httpd pod, ClusterIP (userspace)", cluster_ip("bench-us")?),
        ("keep-alive pod, direct", format!("{ka_ip}:8080").parse()?),
        (
            "keep-alive pod, ClusterIP (nftables)",
            cluster_ip("bench-ka")?,
        ),
        (
            "keep-alive pod, ClusterIP (userspace)",
            cluster_ip("bench-ka-us")?,
        ),
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
        "ClusterIP / direct throughput: httpd pod nftables {:.0}%, userspace {:.0}%; keep-alive pod nftables {:.0}%, userspace {:.0}%",
        100.0 * rps[1] / rps[0],
        100.0 * rps[2] / rps[0],
        100.0 * rps[4] / rps[3],
        100.0 * rps[5] / rps[3]
    );
    drop(bench);
    Ok(())
}
