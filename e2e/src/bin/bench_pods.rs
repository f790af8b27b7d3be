//! Pod start-up latency on a real containerd node, beside the raw
//! containerd floor, in one run.
//!
//! Starts `skiff up --runtime containerd --nodes 1`, imports the busybox
//! test image, then measures create → `Running` seen through a watch for:
//! 1 pod (R times), 10 pods one after another, and 30 pods created at
//! once. The floor is `ctr run --rm` of the same image in the node's own
//! containerd (create, start, exit and delete of one container), R times.
//! Prints p50/p99 and the ratio of skiff's single-pod p50 to the floor's.
//!
//! ```text
//! cargo build --release -p skiff -p e2e --bins
//! SKIFF_BIN=target/release/skiff target/release/bench_pods [--reps 10]
//! ```
//! Needs root, containerd, runc, CNI plugins and busybox-static.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::load::quantile;
use e2e::{Cluster, ClusterOptions};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

const IMAGE: &str = "skiff-busybox:bench";
const NODE: &str = "skiff-node";

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }],
        },
    }))?)
}

/// Creates `names` (all at once when `parallel`) and returns each pod's
/// create → Running latency in seconds.
async fn run_batch(
    api: &Api<Pod>,
    seen: &Seen,
    names: &[String],
    parallel: bool,
) -> Result<Vec<f64>> {
    let mut started = HashMap::new();
    if parallel {
        let creates = names.iter().map(|n| {
            let api = api.clone();
            let n = n.clone();
            async move {
                let t = Instant::now();
                api.create(&PostParams::default(), &pod(&n)?).await?;
                anyhow::Ok((n, t))
            }
        });
        for r in futures::future::join_all(creates).await {
            let (n, t) = r?;
            started.insert(n, t);
        }
    }
    let mut latencies = Vec::new();
    for name in names {
        if !parallel {
            started.insert(name.clone(), Instant::now());
            api.create(&PostParams::default(), &pod(name)?).await?;
        }
        if !parallel {
            latencies.push(wait_running(seen, name, started[name]).await?);
        }
    }
    if parallel {
        for name in names {
            latencies.push(wait_running(seen, name, started[name]).await?);
        }
    }
    Ok(latencies)
}

async fn wait_running(seen: &Seen, name: &str, created: Instant) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(at) = seen
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .get(name)
        {
            return Ok(at.saturating_duration_since(created).as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("pod {name} not Running after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn delete_all(api: &Api<Pod>) -> Result<()> {
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("bench=pods"),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !api
        .list(&ListParams::default().labels("bench=pods"))
        .await?
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("bench pods not deleted after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn summary(label: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "| {label} | {} | {:.0} | {:.0} |",
        v.len(),
        quantile(&v, 0.5) * 1000.0,
        quantile(&v, 0.99) * 1000.0
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut reps = 10usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n] = args.as_slice() {
        if flag == "--reps" {
            reps = n.parse().context("--reps N")?;
        }
    } else if !args.is_empty() {
        bail!("usage: bench_pods [--reps N]");
    }
    let cluster = Cluster::start(ClusterOptions {
        nodes: 1,
        runtime: "containerd",
        ..Default::default()
    })?;
    let data_dir = cluster.data_dir.path().to_path_buf();
    let result = bench(&cluster, reps).await;
    // Remove containers, netns and the bridge whatever happened.
    let _ = Command::new(e2e::skiff_bin())
        .arg("down")
        .arg("--data-dir")
        .arg(&data_dir)
        .output();
    result
}

async fn bench(cluster: &Cluster, reps: usize) -> Result<()> {
    let images = cluster.data_dir.path().join("images");
    std::fs::create_dir_all(&images)?;
    let partial = images.join("bench.tar.partial");
    kubelet::containerd::test_image::build_busybox_image(
        &partial,
        IMAGE,
        kubelet::containerd::test_image::ArchiveFormat::OciLayout,
    )?;
    std::fs::rename(&partial, images.join("bench.tar"))?;
    let client = cluster.client().await?;
    let api: Api<Pod> = Api::namespaced(client, "default");
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let watch = {
        let (api, seen) = (api.clone(), seen.clone());
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default().labels("bench=pods"))
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(p)) = stream.next().await {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if let (true, Some(name)) = (running, p.metadata.name) {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    // Warm-up: waits until the image is imported and the node runs pods.
    run_batch(&api, &seen, &["warmup".to_string()], false).await?;
    delete_all(&api).await?;

    let mut single = Vec::new();
    for i in 0..reps {
        single.extend(run_batch(&api, &seen, &[format!("single-{i}")], false).await?);
        delete_all(&api).await?;
    }
    let names: Vec<String> = (0..10).map(|i| format!("seq-{i}")).collect();
    let sequential = run_batch(&api, &seen, &names, false).await?;
    delete_all(&api).await?;
    let names: Vec<String> = (0..30).map(|i| format!("par-{i}")).collect();
    let parallel = run_batch(&api, &seen, &names, true).await?;
    delete_all(&api).await?;
    watch.abort();

    // The floor: ctr run --rm of the same image in the node's containerd.
    let socket = cluster
        .data_dir
        .path()
        .join("nodes")
        .join(NODE)
        .join("containerd/containerd.sock");
    let namespace = format!("skiff-{NODE}");
    let mut floor = Vec::new();
    for i in 0..reps {
        let t = Instant::now();
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", &namespace, "run", "--rm"])
            .args([
                &format!("docker.io/library/{IMAGE}"),
                &format!("ctr-floor-{i}"),
                "true",
            ])
            .output()
            .context("cannot run ctr: install Debian's containerd")?;
        if !out.status.success() {
            bail!("ctr run: {}", String::from_utf8_lossy(&out.stderr));
        }
        floor.push(t.elapsed().as_secs_f64());
    }
    println!("| what | pods | p50, ms | p99, ms |");
    println!("|---|---:|---:|---:|");
    let mut sorted = single.clone();
    sorted.sort_by(f64::total_cmp);
    let single_p50 = quantile(&sorted, 0.5);
    summary("1 pod (create → Running seen on a watch)", single);
    summary("10 pods, one after another", sequential);
    summary("30 pods created at once", parallel);
    let mut f = floor.clone();
    f.sort_by(f64::total_cmp);
    let floor_p50 = quantile(&f, 0.5);
    summary("floor: `ctr run --rm` of the same image", floor);
    println!(
        "\nskiff single-pod p50 / ctr run p50 = {:.2}",
        single_p50 / floor_p50.max(1e-9)
    );
    Ok(())
}
