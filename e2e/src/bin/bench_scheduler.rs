//! A scheduler_perf-style benchmark, end to end through the API server:
//! starts `skiff up --runtime sim --nodes N`, creates P pods directly (or
//! through one Deployment), and measures how fast they get bound while they
//! are being created (the scheduler_perf method: throughput is sampled
//! while pods are created and pending).
//!
//! ```text
//! cargo build --release -p skiff --bin skiff -p e2e --bin bench_scheduler
//! SKIFF_BIN=target/release/skiff target/release/bench_scheduler --nodes 1000 --pods 10000 --runs 3 [--deployment]
//! ```
//!
//! Reports, per run and as the median over runs: pods bound per second
//! (average over the first..last binding, and p50/p99 of the per-second
//! samples), the per-pod scheduling latency (the pod first seen on a watch,
//! or its create acknowledged if earlier → `spec.nodeName` seen on the
//! watch; p50/p99), the create rate, the peak and final RSS of the skiff
//! process, and — as a floor on the same cluster, after the measurement —
//! the raw API create throughput of pods no scheduler picks up
//! (`--floor-pods`, same concurrency), so the scheduling figure can be read
//! as a ratio to what the API server alone sustains on this machine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::{Cluster, ClusterOptions};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

#[derive(Clone)]
struct Args {
    nodes: u32,
    pods: usize,
    deployment: bool,
    concurrency: usize,
    runs: usize,
    floor_pods: usize,
}

const USAGE: &str =
    "use --nodes N --pods N [--deployment] [--concurrency N] [--runs N] [--floor-pods N]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        nodes: 1000,
        pods: 10_000,
        deployment: false,
        concurrency: 32,
        runs: 1,
        floor_pods: 2000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nodes" => args.nodes = it.next().context("--nodes N")?.parse()?,
            "--pods" => args.pods = it.next().context("--pods N")?.parse()?,
            "--concurrency" => args.concurrency = it.next().context("--concurrency N")?.parse()?,
            "--runs" => args.runs = it.next().context("--runs N")?.parse()?,
            "--floor-pods" => args.floor_pods = it.next().context("--floor-pods N")?.parse()?,
            "--deployment" => args.deployment = true,
            other => bail!("unknown flag {other}: {USAGE}"),
        }
    }
    if args.runs == 0 || args.pods == 0 {
        bail!("--runs and --pods must be at least 1");
    }
    Ok(args)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, 0.5)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `apiserver_request_total` for pods by verb (LIST/WATCH counts show
/// watchers that fell behind and relisted or re-watched).
async fn pod_requests(client: &kube::Client) -> Result<HashMap<String, f64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut out = HashMap::new();
    for line in text.lines() {
        if !line.starts_with("apiserver_request_total{") || !line.contains("resource=\"pods\"") {
            continue;
        }
        let verb = line
            .split("verb=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?");
        let sub = line
            .split("subresource=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        let n: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let key = if sub.is_empty() {
            verb.to_string()
        } else {
            format!("{verb}/{sub}")
        };
        *out.entry(key).or_default() += n;
    }
    Ok(out)
}

fn pod_template(scheduler: &str) -> serde_json::Value {
    json!({
        "schedulerName": scheduler,
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}],
    })
}

/// Creates `count` pods named `{prefix}-{i}` at `concurrency`; calls
/// `acked` with each name once its create was acknowledged.
async fn create_pods(
    pods: &Api<Pod>,
    prefix: &str,
    count: usize,
    concurrency: usize,
    scheduler: &str,
    acked: impl Fn(String) + Clone,
) -> Result<Duration> {
    let t0 = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            let acked = acked.clone();
            async move {
                let name = format!("{prefix}-{i}");
                let p: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": prefix}},
                    "spec": pod_template(scheduler),
                }))?;
                pods.create(&PostParams::default(), &p).await?;
                acked(name);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(t0.elapsed())
}

/// What one run measured.
#[derive(Debug, Clone)]
struct RunResult {
    setup: f64,
    create_rate: f64,
    all_bound: f64,
    converged: Option<f64>,
    avg: f64,
    p50: f64,
    p99: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    rss_before: f64,
    rss_peak: f64,
    rss_after: f64,
    floor_rate: Option<f64>,
    load_start: String,
    load_end: String,
    pod_requests: String,
}

#[derive(Default)]
struct Seen {
    first: HashMap<String, Instant>,
    bound: HashMap<String, Instant>,
}

async fn run_once(args: &Args) -> Result<RunResult> {
    let load_start = load_average();
    let started = Instant::now();
    let cluster = tokio::task::spawn_blocking({
        let nodes = args.nodes;
        move || {
            Cluster::start(ClusterOptions {
                nodes,
                runtime: "sim",
                ..ClusterOptions::default()
            })
        }
    })
    .await??;
    let client = cluster.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let n = nodes
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        if n >= args.nodes as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let setup = started.elapsed();
    let pid = cluster.pid().context("the cluster is not running")?;
    let rss_before = rss_mib(pid).unwrap_or(0.0);

    // The peak RSS, sampled every 250 ms until the measurement ends.
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut peak = 0f64;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid).unwrap_or(0.0));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        }
    });

    // Watch from the start: when each pod is first seen and when bound.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = args.pods;
    let watch = tokio::spawn({
        let pods = pods.clone();
        let seen = seen.clone();
        async move {
            let mut stream = watcher(pods, watcher::Config::default().labels("app=bench"))
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(p)) = stream.next().await {
                let now = Instant::now();
                let name = p.metadata.name.clone().unwrap_or_default();
                let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                s.first.entry(name.clone()).or_insert(now);
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    s.bound.entry(name).or_insert(now);
                    if s.bound.len() >= total {
                        return;
                    }
                }
            }
        }
    });

    let t0 = Instant::now();
    let create_elapsed = if args.deployment {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "bench"},
            "spec": {"replicas": args.pods, "selector": {"matchLabels": {"app": "bench"}},
                "template": {"metadata": {"labels": {"app": "bench"}},
                    "spec": pod_template("default-scheduler")}},
        }))?;
        Api::<Deployment>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &d)
            .await?;
        None
    } else {
        let acked = acked.clone();
        Some(
            create_pods(
                &pods,
                "bench",
                args.pods,
                args.concurrency,
                "default-scheduler",
                move |name| {
                    acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name, Instant::now());
                },
            )
            .await?,
        )
    };
    tokio::time::timeout(Duration::from_secs(1800), watch)
        .await
        .context("not every pod was bound within 30 minutes")??;
    let all_bound = t0.elapsed();
    // Deployment mode: until the Deployment reports every replica available.
    let converged = if args.deployment {
        let deployments = Api::<Deployment>::namespaced(client.clone(), "default");
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let d = deployments.get("bench").await?;
            let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
            if available as usize >= args.pods {
                break Some(t0.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                bail!("the Deployment did not converge within 30 minutes ({available} available)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        None
    };
    sampling.store(false, Ordering::Relaxed);
    let rss_peak = peak.await?;
    let rss_after = rss_mib(pid).unwrap_or(0.0);
    let load_end = load_average();
    let requests = pod_requests(&client).await.unwrap_or_default();
    let mut requests: Vec<_> = requests.into_iter().collect();
    requests.sort_by(|a, b| a.0.cmp(&b.0));
    let requests = requests
        .iter()
        .map(|(k, v)| format!("{k}={v:.0}"))
        .collect::<Vec<_>>()
        .join(" ");

    // The floor: raw creates of pods nobody schedules, same concurrency.
    let floor_rate = if args.floor_pods > 0 {
        let floor = create_pods(
            &pods,
            "floor",
            args.floor_pods,
            args.concurrency,
            "bench-nobody",
            |_| {},
        )
        .await?;
        Some(args.floor_pods as f64 / floor.as_secs_f64())
    } else {
        None
    };

    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner()));
    let bound = &seen.bound;
    let first_bound = bound.values().min().copied().unwrap_or(t0);
    let last_bound = bound.values().max().copied().unwrap_or(t0);
    // Per-second throughput samples over the binding window.
    let seconds = (last_bound - first_bound).as_secs() as usize + 1;
    let mut per_second = vec![0f64; seconds];
    for t in bound.values() {
        per_second[(*t - first_bound).as_secs() as usize] += 1.0;
    }
    // The last second is partial; leave it out when there are others.
    if per_second.len() > 1 {
        per_second.pop();
    }
    per_second.sort_by(|a, b| a.total_cmp(b));
    let mut latencies: Vec<f64> = bound
        .iter()
        .filter_map(|(name, b)| {
            let first = seen.first.get(name).copied();
            let created = match (first, acked.get(name).copied()) {
                (Some(f), Some(a)) => f.min(a),
                (f, a) => f.or(a)?,
            };
            Some(b.saturating_duration_since(created).as_secs_f64())
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let window = (last_bound - first_bound).as_secs_f64().max(0.001);
    Ok(RunResult {
        setup: setup.as_secs_f64(),
        create_rate: create_elapsed
            .map(|e| args.pods as f64 / e.as_secs_f64())
            .unwrap_or(0.0),
        all_bound: all_bound.as_secs_f64(),
        converged,
        avg: bound.len() as f64 / window,
        p50: percentile(&per_second, 0.5),
        p99: percentile(&per_second, 0.99),
        latency_p50_ms: percentile(&latencies, 0.5) * 1000.0,
        latency_p99_ms: percentile(&latencies, 0.99) * 1000.0,
        rss_before,
        rss_peak: rss_peak.max(rss_after),
        rss_after,
        floor_rate,
        load_start,
        load_end,
        pod_requests: requests,
    })
}

fn print(label: &str, r: &RunResult) {
    let converged = r
        .converged
        .map(|c| format!(", Deployment available {c:.1}s"))
        .unwrap_or_default();
    let floor = r
        .floor_rate
        .map(|f| format!(", raw create floor {f:.0} pods/s (ratio {:.2})", r.avg / f))
        .unwrap_or_default();
    println!(
        "  {label}: bound avg {:.0} pods/s, per-second p50 {:.0} / p99 {:.0}; latency p50 {:.0} ms / p99 {:.0} ms; \
         create {:.0} pods/s; all bound {:.1}s{converged}; RSS {:.0} -> peak {:.0} / after {:.0} MiB{floor}; \
         setup {:.1}s; load {} -> {}{}",
        r.avg, r.p50, r.p99, r.latency_p50_ms, r.latency_p99_ms, r.create_rate, r.all_bound,
        r.rss_before, r.rss_peak, r.rss_after, r.setup, r.load_start, r.load_end,
        if r.pod_requests.is_empty() { String::new() } else { format!("\n    pod API requests: {}", r.pod_requests) },
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    println!(
        "bench_scheduler: {} sim nodes, {} pods ({}), concurrency {}, {} run(s)",
        args.nodes,
        args.pods,
        if args.deployment {
            "one Deployment"
        } else {
            "created directly"
        },
        args.concurrency,
        args.runs
    );
    let mut results = Vec::new();
    for i in 0..args.runs {
        let r = run_once(&args).await?;
        print(&format!("run {}", i + 1), &r);
        results.push(r);
    }
    if results.len() > 1 {
        let m = |f: fn(&RunResult) -> f64| median(results.iter().map(f).collect());
        let floor = results.iter().all(|r| r.floor_rate.is_some());
        let med = RunResult {
            setup: m(|r| r.setup),
            create_rate: m(|r| r.create_rate),
            all_bound: m(|r| r.all_bound),
            converged: results
                .iter()
                .all(|r| r.converged.is_some())
                .then(|| m(|r| r.converged.unwrap_or(0.0))),
            avg: m(|r| r.avg),
            p50: m(|r| r.p50),
            p99: m(|r| r.p99),
            latency_p50_ms: m(|r| r.latency_p50_ms),
            latency_p99_ms: m(|r| r.latency_p99_ms),
            rss_before: m(|r| r.rss_before),
            rss_peak: m(|r| r.rss_peak),
            rss_after: m(|r| r.rss_after),
            floor_rate: floor.then(|| m(|r| r.floor_rate.unwrap_or(0.0))),
            load_start: "-".into(),
            load_end: "-".into(),
            pod_requests: String::new(),
        };
        print("median", &med);
    }
    Ok(())
}
