//! skiff's scheduler: places pending pods onto nodes by their requests and rules.
//!
//! Owns: the scheduling queue, filter and score plugins, and binding through the
//! `pods/binding` subresource. Talks to the cluster only through the Kubernetes
//! API with `kube`; it must never depend on the `apiserver` crate.

/// Configuration of the scheduler (filled in by the scheduler issue).
#[derive(Debug, Clone, Default)]
pub struct Config {}
