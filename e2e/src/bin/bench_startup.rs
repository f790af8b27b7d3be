//! Start-up and idle-memory benchmark of `skiff up` with simulated or
//! containerd nodes (containerd's own memory is not counted: it is a
//! separate process, as in k3s' figures).
//!
//! For each node count, starts a fresh cluster R times and measures: time
//! from spawn to the API answering `/readyz` (through kubectl-free HTTPS
//! with the cluster's kubeconfig), time until every Node reports Ready, and
//! the process's RSS after it has idled for a few seconds. Prints medians.
//!
//! Usage: `bench_startup [--reps R] [--nodes 1,3,200] [--runtime sim|containerd]`
//! (uses `SKIFF_BIN`, or the release `skiff` next to this binary). With
//! containerd, each cluster is removed with `skiff down` after its run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

struct Sample {
    api: f64,
    nodes: f64,
    rss_mib: f64,
}

async fn one(nodes: u32, runtime: &str) -> Result<Sample> {
    let dir = tempfile::tempdir()?;
    let port = e2e::free_port()?;
    let start = Instant::now();
    let mut child = Command::new(e2e::skiff_bin())
        .args([
            "up",
            "--runtime",
            runtime,
            "--nodes",
            &nodes.to_string(),
            "--port",
            &port.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let result = async {
        // The kubeconfig is written as soon as the API answers.
        while !kubeconfig.exists() {
            tokio::time::sleep(Duration::from_millis(2)).await;
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "no kubeconfig after 30s"
            );
        }
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let client = kube::Client::try_from(config)?;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            if client.request_text(req).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let api = start.elapsed().as_secs_f64();
        let api_nodes: Api<Node> = Api::all(client);
        loop {
            let list = api_nodes.list(&ListParams::default()).await?;
            let ready = list
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            if ready as u32 >= nodes {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "nodes not Ready after 60s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let nodes_at = start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss = rss_kib(child.id())? as f64 / 1024.0;
        Ok(Sample {
            api,
            nodes: nodes_at,
            rss_mib: rss,
        })
    }
    .await;
    if runtime == "containerd" {
        // Stops the process and removes containerd, bridges and netns.
        let _ = Command::new(e2e::skiff_bin())
            .arg("down")
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut reps = 5;
    let mut counts = vec![1u32, 3, 200];
    let mut runtime = "sim".to_string();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--reps" => {
                reps = args.get(i + 1).context("--reps N")?.parse()?;
                i += 1;
            }
            "--nodes" => {
                counts = args
                    .get(i + 1)
                    .context("--nodes 1,3,200")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
                i += 1;
            }
            "--runtime" => {
                runtime = args.get(i + 1).context("--runtime sim|containerd")?.clone();
                i += 1;
            }
            other => anyhow::bail!(
                "unknown argument {other:?}: use --reps N --nodes 1,3,200 --runtime sim|containerd"
            ),
        }
        i += 1;
    }
    if std::env::var_os("SKIFF_BIN").is_none() {
        if let Some(dir) = std::env::current_exe()?.parent() {
            std::env::set_var("SKIFF_BIN", dir.join("skiff"));
        }
    }
    println!("| {runtime} nodes | API answering, s | all nodes Ready, s | RSS idle, MiB | runs |");
    println!("|---:|---:|---:|---:|---:|");
    for n in counts {
        let mut api = Vec::new();
        let mut ready = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..reps {
            let s = one(n, &runtime).await?;
            api.push(s.api);
            ready.push(s.nodes);
            rss.push(s.rss_mib);
        }
        println!(
            "| {n} | {:.3} | {:.3} | {:.1} | {reps} |",
            median(&mut api),
            median(&mut ready),
            median(&mut rss)
        );
    }
    Ok(())
}
