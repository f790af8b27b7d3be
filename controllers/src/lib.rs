//! skiff's controller manager: ReplicaSets, Deployments, garbage collection,
//! namespaces, node lifecycle, endpoints and autoscaling.
//!
//! Owns: one reconcile loop per controller, built on `kube-runtime`. Talks to
//! the cluster only through the Kubernetes API with `kube`; it must never depend
//! on the `apiserver` crate.

/// Configuration of the controller manager (filled in by the controllers issue).
#[derive(Debug, Clone, Default)]
pub struct Config {}
