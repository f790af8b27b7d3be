//! skiff's node agent: registers a Node, heartbeats its Lease and runs bound pods.
//!
//! Owns: the runtime abstraction (containerd and simulated nodes), pod sync,
//! probes, logs/exec streams and stats. Talks to the cluster only through the
//! Kubernetes API with `kube`; it must never depend on the `apiserver` crate.

/// Configuration of one node agent (filled in by the kubelet issue).
#[derive(Debug, Clone, Default)]
pub struct Config {}
