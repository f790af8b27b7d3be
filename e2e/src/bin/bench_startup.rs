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
//!
//! `bench_startup --agent [--reps R] [--runtime sim|containerd] [--pods N]`
//! measures one node agent alone instead: a `skiff server` and a separate
//! `skiff agent` process joining it; after the node is Ready (and N busybox
//! pods on it are Running, containerd only) and 10 s of idling, the RSS of
//! the agent process (with its Service proxy and DNS) and, apart, of the
//! private containerd it supervises.

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

struct AgentSample {
    agent_mib: f64,
    containerd_mib: Option<f64>,
}

async fn kube_client(kubeconfig: &std::path::Path) -> Result<kube::Client> {
    let start = Instant::now();
    while !kubeconfig.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "no kubeconfig after 30s"
        );
    }
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn agent_one(runtime: &str, pods: u32) -> Result<AgentSample> {
    let server_dir = tempfile::tempdir()?;
    let agent_dir = tempfile::tempdir()?;
    let port = e2e::free_port()?;
    let mut server = Command::new(e2e::skiff_bin())
        .args(["server", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(server_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut agent: Option<std::process::Child> = None;
    let result = async {
        let client = kube_client(&server_dir.path().join("kubeconfig.yaml")).await?;
        let node = "bench-agent";
        if runtime == "containerd" {
            let images = agent_dir.path().join("images");
            std::fs::create_dir_all(&images)?;
            kubelet::containerd::test_image::build_busybox_image(
                &images.join("busybox.tar"),
                e2e::containerd::IMAGE,
                kubelet::containerd::test_image::ArchiveFormat::OciLayout,
            )?;
        }
        let child = agent.insert(
            Command::new(e2e::skiff_bin())
                .args(["agent", "--runtime", runtime, "--node-name", node])
                .args(["--server", &format!("https://127.0.0.1:{port}")])
                .arg("--token-file")
                .arg(server_dir.path().join("node-token"))
                .arg("--data-dir")
                .arg(agent_dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let agent_pid = child.id();
        let api_nodes: Api<Node> = Api::all(client.clone());
        let start = Instant::now();
        loop {
            let ready = api_nodes
                .get_opt(node)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| {
                    n.status
                        .and_then(|s| s.conditions)
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                });
            if ready {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(60),
                "node not Ready after 60s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if pods > 0 {
            use k8s_openapi::api::core::v1::Pod;
            let api_pods: Api<Pod> = Api::default_namespaced(client.clone());
            for i in 0..pods {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("idle-{i}")},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "sleep",
                            "image": e2e::containerd::IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sleep", "3600"],
                        }],
                    },
                }))?;
                api_pods.create(&Default::default(), &pod).await?;
            }
            loop {
                let running = api_pods
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .count();
                if running as u32 >= pods {
                    break;
                }
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(120),
                    "{running} of {pods} pods Running after 120s"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let agent_mib = rss_kib(agent_pid)? as f64 / 1024.0;
        let socket = agent_dir.path().join("containerd");
        let containerd_mib = e2e::containerd::pids_with_cmdline(&socket.display().to_string())
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "containerd")
            })
            .filter_map(|pid| u32::try_from(pid).ok().and_then(|pid| rss_kib(pid).ok()))
            .max()
            .map(|kib| kib as f64 / 1024.0);
        Ok(AgentSample {
            agent_mib,
            containerd_mib,
        })
    }
    .await;
    if let Some(mut child) = agent {
        let _ = child.kill();
        let _ = child.wait();
    }
    if runtime == "containerd" {
        let _ = kubelet::agent::cleanup::remove_node(agent_dir.path()).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    result
}

async fn agent_bench(reps: u32, runtime: &str, pods: u32) -> Result<()> {
    println!("| agent runtime | pods | agent RSS idle, MiB | its containerd RSS, MiB | runs |");
    println!("|---|---:|---:|---:|---:|");
    let mut agent = Vec::new();
    let mut containerd = Vec::new();
    for _ in 0..reps {
        let s = agent_one(runtime, pods).await?;
        agent.push(s.agent_mib);
        containerd.extend(s.containerd_mib);
    }
    let containerd = if containerd.is_empty() {
        "-".to_string()
    } else {
        format!("{:.1}", median(&mut containerd))
    };
    println!(
        "| {runtime} | {pods} | {:.1} | {containerd} | {reps} |",
        median(&mut agent)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut reps = 5;
    let mut agent = false;
    let mut pods = 0;
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
            "--agent" => agent = true,
            "--pods" => {
                pods = args.get(i + 1).context("--pods N")?.parse()?;
                i += 1;
            }
            other => anyhow::bail!(
                "unknown argument {other:?}: use --reps N --nodes 1,3,200 --runtime sim|containerd \
                 [--agent [--pods N]]"
            ),
        }
        i += 1;
    }
    if std::env::var_os("SKIFF_BIN").is_none() {
        if let Some(dir) = std::env::current_exe()?.parent() {
            std::env::set_var("SKIFF_BIN", dir.join("skiff"));
        }
    }
    if agent {
        return agent_bench(reps, &runtime, pods).await;
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
