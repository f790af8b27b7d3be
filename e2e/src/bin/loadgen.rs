//! `loadgen`: drives a Service with a rate profile and records what the
//! autoscaler did (see `e2e::load`).
//!
//! ```text
//! loadgen --url http://10.96.0.20/ --kubeconfig DIR/kubeconfig.yaml \
//!   --deployment game-api --phase 20s@5 --phase 5s@5..250 --phase 60s@250 \
//!   --phase 2s@250..5 --phase 120s@5 --capacity-replicas 8 --out target/game-launch
//! ```
//! writes `timeline.csv`, `summary.txt` and `plot.svg` under `--out`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use e2e::load::{run, summarize, to_csv, LoadConfig, Phase, Profile, Summary};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

#[derive(Parser, Debug)]
#[command(about = "Open-loop HTTP load with a rate profile; records replicas and latency")]
struct Args {
    /// The URL to GET (a ClusterIP, NodePort or pod address).
    #[arg(long)]
    url: String,
    /// A phase `DURATION@RPS` or `DURATION@FROM..TO`; repeat in order.
    #[arg(long = "phase", value_parser = Phase::parse, required = true)]
    phases: Vec<Phase>,
    /// The cluster to read replicas from.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The Deployment whose desired/Ready replicas are recorded.
    #[arg(long)]
    deployment: Option<String>,
    /// Replicas needed to serve the peak (for "time to capacity").
    #[arg(long, default_value_t = 8)]
    capacity_replicas: i32,
    /// The autoscaler's minReplicas (for "time to scale back").
    #[arg(long, default_value_t = 1)]
    min_replicas: i32,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[arg(long, default_value_t = 2000)]
    max_in_flight: usize,
    /// Where timeline.csv, summary.txt and plot.svg go.
    #[arg(long, default_value = "target/loadgen")]
    out: PathBuf,
    /// The plot's title.
    #[arg(long, default_value = "skiff")]
    title: String,
    /// Another run drawn beside this one: `TITLE=path/to/timeline.csv`.
    #[arg(long)]
    beside: Vec<String>,
}

/// The summary as the lines `summary.txt` and BENCHMARKS.md show.
pub fn render(summary: &Summary) -> String {
    let opt = |v: Option<u64>| v.map_or("never".to_string(), |v| format!("{v} s"));
    format!(
        "spike: {}s..{}s\ntime to capacity: {}\nfailed during spike: {} of {} ({:.2}%)\n\
         latency during spike: p50 {:.1} ms, p99 {:.1} ms (medians of per-second values)\n\
         overshoot: {} replicas\nscale-down during plateau: {}\ntime to scale back: {}\n",
        summary.spike_start_s,
        summary.spike_end_s,
        opt(summary.time_to_capacity_s),
        summary.spike_errors,
        summary.spike_requests,
        summary.spike_error_pct,
        summary.spike_p50_ms,
        summary.spike_p99_ms,
        summary.overshoot,
        if summary.flapped { "yes" } else { "no" },
        opt(summary.time_to_scale_back_s),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let profile = Profile {
        phases: args.phases.clone(),
    };
    let deployments: Option<Api<Deployment>> = match (&args.kubeconfig, &args.deployment) {
        (Some(path), Some(_)) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .context("bad kubeconfig")?;
            let client = kube::Client::try_from(config)?;
            Some(Api::namespaced(client, &args.namespace))
        }
        _ => None,
    };
    let name = args.deployment.clone().unwrap_or_default();
    let config = LoadConfig {
        url: args.url.clone(),
        profile: profile.clone(),
        timeout: args.timeout,
        max_in_flight: args.max_in_flight,
    };
    let seconds = run(&config, || {
        let (api, name) = (deployments.clone(), name.clone());
        async move {
            let Some(api) = api else { return (None, None) };
            match tokio::time::timeout(Duration::from_millis(500), api.get(&name)).await {
                Ok(Ok(d)) => (
                    d.spec.and_then(|s| s.replicas),
                    Some(d.status.and_then(|s| s.ready_replicas).unwrap_or(0)),
                ),
                _ => (None, None),
            }
        }
    })
    .await?;
    let summary = summarize(
        &profile,
        &seconds,
        args.capacity_replicas,
        args.min_replicas,
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create --out {}", args.out.display()))?;
    std::fs::write(args.out.join("timeline.csv"), to_csv(&seconds))?;
    let text = render(&summary);
    std::fs::write(args.out.join("summary.txt"), &text)?;
    let plot = e2e::plot::svg(&[e2e::plot::Series {
        title: &args.title,
        seconds: &seconds,
    }])?;
    std::fs::write(args.out.join("plot.svg"), plot)?;
    print!("{text}");
    Ok(())
}
