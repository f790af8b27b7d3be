//! A gRPC server with only the standard health service
//! (`grpc.health.v1.Health`, tonic-health's implementation), for the gRPC
//! probe test: packed into an image by `skiff image build` and run as a pod.
//!
//! Usage: `grpc_health_server PORT [SECONDS]`: the overall health (`""`)
//! is SERVING; service `app` is SERVING, and NOT_SERVING after SECONDS
//! when given.

use std::time::Duration;

use anyhow::{Context, Result};
use tonic_health::ServingStatus;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .context("usage: grpc_health_server PORT [SECONDS]")?
        .parse()
        .context("PORT must be a number")?;
    let flip_after = args
        .next()
        .map(|s| s.parse::<u64>().context("SECONDS must be a number"))
        .transpose()?
        .map(Duration::from_secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("app", ServingStatus::Serving)
            .await;
        if let Some(after) = flip_after {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                reporter
                    .set_service_status("app", ServingStatus::NotServing)
                    .await;
                eprintln!("app: NOT_SERVING");
            });
        }
        eprintln!("grpc health on 0.0.0.0:{port}");
        tonic::transport::Server::builder()
            .add_service(service)
            .serve(([0, 0, 0, 0], port).into())
            .await
            .context("serving")
    })
}
