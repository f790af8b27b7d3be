//! A scheduler_perf-style benchmark, end to end through the API server:
//! starts `skiff up --runtime sim --nodes N`, creates P pods directly (or
//! through one Deployment), and measures how fast they get bound.
//!
//! ```text
//! cargo build --release --bins
//! SKIFF_BIN=target/release/skiff target/release/bench_scheduler --nodes 1000 --pods 10000 [--deployment]
//! ```
//!
//! Reports: pods/s (average, and p50/p99 of per-second samples), per-pod
//! scheduling latency (create acknowledged → `spec.nodeName` seen on the
//! watch; p50/p99), the create rate, and the RSS of the skiff process.

use std::collections::HashMap;
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

struct Args {
    nodes: u32,
    pods: usize,
    deployment: bool,
    concurrency: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        nodes: 1000,
        pods: 10_000,
        deployment: false,
        concurrency: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--nodes" => args.nodes = it.next().context("--nodes N")?.parse()?,
            "--pods" => args.pods = it.next().context("--pods N")?.parse()?,
            "--concurrency" => args.concurrency = it.next().context("--concurrency N")?.parse()?,
            "--deployment" => args.deployment = true,
            other => bail!(
                "unknown flag {other}: use --nodes N --pods N [--deployment] [--concurrency N]"
            ),
        }
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

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn pod_template() -> serde_json::Value {
    json!({
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}],
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
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
    let rss_before = rss_mib(pid);

    // Watch bindings from the start.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let bound_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = args.pods;
    let watch = tokio::spawn({
        let pods = pods.clone();
        let bound_at = bound_at.clone();
        async move {
            let mut stream = watcher(pods, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(p)) = stream.next().await {
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    let name = p.metadata.name.unwrap_or_default();
                    let mut b = bound_at.lock().unwrap_or_else(|e| e.into_inner());
                    b.entry(name).or_insert_with(Instant::now);
                    if b.len() >= total {
                        return;
                    }
                }
            }
        }
    });

    let t0 = Instant::now();
    if args.deployment {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "bench"},
            "spec": {"replicas": args.pods, "selector": {"matchLabels": {"app": "bench"}},
                "template": {"metadata": {"labels": {"app": "bench"}}, "spec": pod_template()}},
        }))?;
        Api::<Deployment>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &d)
            .await?;
    } else {
        futures::stream::iter(0..args.pods)
            .map(|i| {
                let pods = pods.clone();
                let created_at = created_at.clone();
                async move {
                    let name = format!("bench-{i}");
                    let p: Pod = serde_json::from_value(json!({
                        "metadata": {"name": name, "labels": {"app": "bench"}},
                        "spec": pod_template(),
                    }))?;
                    pods.create(&PostParams::default(), &p).await?;
                    created_at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name, Instant::now());
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(args.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
    }
    let create_elapsed = t0.elapsed();
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
                break Some(t0.elapsed());
            }
            if Instant::now() > deadline {
                bail!("the Deployment did not converge within 30 minutes ({available} available)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        None
    };
    let rss_after = rss_mib(pid);

    let bound = bound_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let created = created_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
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
    let mut latencies: Vec<f64> = created
        .iter()
        .filter_map(|(name, c)| {
            bound
                .get(name)
                .map(|b| b.saturating_duration_since(*c).as_secs_f64())
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));

    let window = (last_bound - first_bound).as_secs_f64().max(0.001);
    println!(
        "bench_scheduler: {} sim nodes, {} pods ({})",
        args.nodes,
        args.pods,
        if args.deployment {
            "one Deployment"
        } else {
            "created directly"
        }
    );
    println!("  cluster + nodes ready:     {:.1}s", setup.as_secs_f64());
    println!(
        "  create rate:               {:.0} pods/s ({:.1}s)",
        args.pods as f64 / create_elapsed.as_secs_f64(),
        create_elapsed.as_secs_f64()
    );
    println!(
        "  all bound after:           {:.1}s",
        all_bound.as_secs_f64()
    );
    if let Some(c) = converged {
        println!(
            "  Deployment converged:      {:.1}s (create -> availableReplicas = {})",
            c.as_secs_f64(),
            args.pods
        );
    }
    println!("  scheduling throughput:     avg {:.0} pods/s (first..last binding), p50 {:.0}, p99 {:.0} of per-second samples",
        bound.len() as f64 / window, percentile(&per_second, 0.5), percentile(&per_second, 0.99));
    if !latencies.is_empty() {
        println!("  per-pod latency:           p50 {:.1} ms, p99 {:.1} ms (create acknowledged -> bound seen)",
            percentile(&latencies, 0.5) * 1000.0, percentile(&latencies, 0.99) * 1000.0);
    }
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        println!("  skiff RSS:                 {b:.0} MiB before pods, {a:.0} MiB after");
    }
    Ok(())
}
