//! An in-cluster API client, for the test that pods reach the API server as
//! Kubernetes promises: packed into an image by `skiff image build` and run
//! as a pod. It builds its client the way in-cluster programs do
//! (kube-rs's `Config::incluster`: `KUBERNETES_SERVICE_HOST`/`_PORT`, the
//! service-account token and CA under
//! `/var/run/secrets/kubernetes.io/serviceaccount`), lists the pods of its
//! namespace and prints their names, one per line, after `pods:`.
//!
//! Usage: `incluster_client` (no arguments); exits non-zero with the error
//! on stderr when any step fails.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = kube::Config::incluster().context("in-cluster configuration")?;
        println!("server: {}", config.cluster_url);
        let namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).context("client")?;
        let pods: Api<Pod> = Api::namespaced(client, &namespace);
        let list = pods
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing the pods of {namespace}"))?;
        println!("pods:");
        for pod in list.items {
            println!("{}", pod.metadata.name.unwrap_or_default());
        }
        Ok(())
    })
}
