//! skiff's node agent: registers a Node, heartbeats its Lease and runs bound pods.
//!
//! Owns: the runtime abstraction ([`runtime::Runtime`], with containerd and
//! simulated implementations), pod sync, probes, logs/exec streams and stats.
//! It ships the real node agent ([`agent`]), running pods as containers
//! through containerd ([`containerd`], [`cni`]), and the simulated nodes
//! ([`sim`]), kwok-style, used by scale tests. Real nodes sample cgroup
//! stats ([`stats`]) and serve logs, stats and metrics to the API server
//! over HTTPS with client certificates ([`server`]). Talks to the cluster only through the Kubernetes API with `kube`; it
//! must never depend on the `apiserver` crate.

pub mod agent;
pub mod cni;
pub mod containerd;
pub mod runtime;
pub mod server;
pub mod sim;
pub mod stats;
mod time;

pub use agent::{Agent, AgentConfig, AgentError, EvictionThresholds, ThresholdError};
pub use sim::{run_sim_nodes, SimConfig, SimNode};
pub use stats::{PodRequestCount, RequestCounters};

/// Configuration of one node agent (filled in by the kubelet issue).
#[derive(Debug, Clone, Default)]
pub struct Config {}
