//! Simulated nodes, kwok-style: real Node objects with real Lease heartbeats
//! and capacity, whose bound pods move to Running with an IP and Ready
//! conditions, and whose deleted pods go away. They use the same API path a
//! real node agent uses, so the scheduler and controllers cannot tell the
//! difference.
//!
//! Many nodes are cheap: all simulated nodes of a process share one pod watch
//! (dispatched by `spec.nodeName`), one lease-renewal loop that renews every
//! node's Lease once per [`SimConfig::lease_renew_interval`] in spread-out
//! batches, and a bounded number of concurrent status writes
//! ([`SimConfig::status_concurrency`]).

mod ipam;
pub(crate) mod lease;
pub(crate) mod node;
mod pods;
mod runtime;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Taint;
use kube::Client;

pub use ipam::PodCidr;
pub use runtime::SimRuntime;

use crate::runtime::Runtime;

/// Errors of the simulated nodes.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A Node or Lease could not be registered with the API server.
    #[error("cannot register node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
    /// The shared pod watch ended with an error it cannot recover from.
    #[error("the pod watch failed: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),
}

/// Per-node capacity, as quantities (`"4"`, `"16Gi"`, `"110"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    pub ephemeral_storage: String,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: "110".into(),
            ephemeral_storage: "100Gi".into(),
        }
    }
}

/// One simulated node.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub name: String,
    /// Picks the node's pod CIDR (see [`PodCidr::for_index`]).
    pub index: u32,
    /// Extra labels on top of the `kubernetes.io/*` ones.
    pub labels: BTreeMap<String, String>,
    /// Taints set when the Node is first created.
    pub taints: Vec<Taint>,
}

impl SimNode {
    /// A node whose pod CIDR index comes from a stable hash of its name (for
    /// agents that join one at a time; a clash only repeats fake addresses).
    pub fn named(name: impl Into<String>) -> Self {
        let name = name.into();
        // FNV-1a: stable across builds and platforms.
        let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        Self::new(name, hash)
    }

    pub fn new(name: impl Into<String>, index: u32) -> Self {
        Self {
            name: name.into(),
            index,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }
}

/// Configuration of a process's simulated nodes.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: Vec<SimNode>,
    pub capacity: Capacity,
    /// `kubernetes.io/arch` and `nodeInfo.architecture`.
    pub arch: String,
    /// The Lease's `leaseDurationSeconds` (Kubernetes: 40s).
    pub lease_duration: Duration,
    /// How often every Lease is renewed (Kubernetes: 10s).
    pub lease_renew_interval: Duration,
    /// How many pod status writes and deletions may be in flight at once.
    /// When all are busy, the shared pod watch waits (back-pressure).
    pub status_concurrency: usize,
    /// How many Node/Lease registrations may be in flight at once.
    pub register_concurrency: usize,
}

impl SimConfig {
    /// `count` nodes named `{prefix}{i}` for `i` in `0..count`.
    pub fn numbered(prefix: &str, count: u32) -> Self {
        Self::new(
            (0..count)
                .map(|i| SimNode::new(format!("{prefix}{i}"), i))
                .collect(),
        )
    }

    pub fn new(nodes: Vec<SimNode>) -> Self {
        Self {
            nodes,
            capacity: Capacity::default(),
            arch: std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
            lease_duration: Duration::from_secs(40),
            lease_renew_interval: Duration::from_secs(10),
            status_concurrency: 32,
            register_concurrency: 16,
        }
    }
}

/// Registered simulated nodes, ready to [`run`](SimNodes::run).
pub struct SimNodes {
    client: Client,
    config: SimConfig,
    runtime: Arc<dyn Runtime>,
}

impl SimNodes {
    /// Creates (or refreshes) every Node and Lease; returns once all exist.
    pub async fn register(client: Client, config: SimConfig) -> Result<Self, SimError> {
        let runtime: Arc<dyn Runtime> = Arc::new(SimRuntime);
        futures::stream::iter(config.nodes.iter().map(|n| {
            let client = client.clone();
            let config = &config;
            let version = runtime.version().to_string();
            async move {
                node::register(&client, config, n, &version).await?;
                lease::ensure(&client, config, &n.name).await
            }
        }))
        .buffer_unordered(config.register_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        Ok(Self {
            client,
            config,
            runtime,
        })
    }

    /// Heartbeats the Leases and runs bound pods until the task is dropped.
    pub async fn run(self) -> Result<(), SimError> {
        let names: Vec<String> = self.config.nodes.iter().map(|n| n.name.clone()).collect();
        let leases = lease::renew_forever(self.client.clone(), self.config.clone(), names);
        let pods = pods::PodLoop::new(self.client, &self.config, self.runtime).run();
        tokio::select! {
            () = leases => Ok(()),
            r = pods => r,
        }
    }
}

/// Registers the nodes, then runs them forever.
pub async fn run_sim_nodes(client: Client, config: SimConfig) -> Result<(), SimError> {
    SimNodes::register(client, config).await?.run().await
}
