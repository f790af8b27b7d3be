//! The containerd runtime: skiff's node agent running pods as real
//! containers through containerd 1.6 and runc.
//!
//! What lives here:
//! - [`daemon`]: starting and supervising a private containerd (or using an
//!   existing socket).
//! - [`connection`]: a gRPC channel bound to skiff's own containerd namespace.
//! - [`archive`], [`images`], [`unpack`]: importing image archives (OCI layout
//!   and `docker save`) through the content, images, leases, diff and
//!   snapshots services — containerd 1.6 has no Transfer service.
//! - [`registry`], [`keyring`]: pulling from registries (distribution API
//!   v2, Basic and Bearer auth) with credentials from pull secrets; the
//!   pull itself lands through the same content/unpack path
//!   ([`ImageStore::pull`]), and an [`images::ImageManager`] decides when.
//! - [`spec`]: the OCI runtime spec built from a Kubernetes container.
//! - [`containers`], [`logs`]: one container's lifecycle (create, start, wait,
//!   kill, delete) and its CRI-format log file.
//! - [`exec`]: interactive `kubectl exec` processes (stdio FIFOs, resizes).
//! - [`reference`]: image names normalised like Kubernetes.
//! - [`status`]: `ContainerStatus` from containerd records and task states.
//! - [`runtime`]: [`ContainerdRuntime`], which runs whole pods and implements
//!   the extended [`pod_runtime::PodRuntime`] interface.
//! - [`volumes`]: pod volumes (emptyDir, configMap, secret, downwardAPI,
//!   projected, hostPath) and env `valueFrom`, read through [`volumes::PodApi`].
//! - [`build`]: single-layer images built offline from local files
//!   (`skiff image build`); [`test_image`], the busybox image of the tests.
//!
//! This module talks to containerd only through `containerd-client`, to
//! the network only through [`crate::cni`] and to registries; it never
//! talks to the API server itself (ConfigMaps and Secrets come through the
//! [`volumes::PodApi`] the agent gives it).

pub mod archive;
pub mod build;
pub mod connection;
pub mod containers;
pub mod daemon;
pub mod exec;
pub mod images;
pub mod keyring;
pub mod logs;
pub mod pod_runtime;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod spec;
pub mod status;
pub mod stdin;
pub mod test_image;
pub mod unpack;
pub mod volumes;

pub use connection::{Connection, RpcError};
pub use daemon::{ContainerdEndpoint, DaemonConfig, ManagedContainerd};
pub use images::{ImageStore, ResolvedImage};
pub use pod_runtime::PodRuntime;
pub use runtime::{ContainerdRuntime, ContainerdRuntimeConfig};

/// Label keys skiff puts on the containerd objects it creates, so that a
/// restarted agent can find (re-adopt) them.
pub mod labels {
    /// The pod's UID.
    pub const POD_UID: &str = "io.skiff.pod.uid";
    /// The pod's name.
    pub const POD_NAME: &str = "io.skiff.pod.name";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "io.skiff.pod.namespace";
    /// The container's name in the pod spec.
    pub const CONTAINER_NAME: &str = "io.skiff.container.name";
    /// The image reference as written in the pod spec.
    pub const IMAGE: &str = "io.skiff.container.image";
    /// The image ID (config digest) the container runs.
    pub const IMAGE_ID: &str = "io.skiff.container.image-id";
    /// How many times this container was restarted before this instance.
    pub const RESTART_COUNT: &str = "io.skiff.container.restart-count";
    /// The previous instance's exit code (its `lastState.terminated`).
    pub const LAST_EXIT_CODE: &str = "io.skiff.container.last-exit-code";
    /// The previous instance's start, as Unix seconds.
    pub const LAST_STARTED_AT: &str = "io.skiff.container.last-started-at";
    /// The previous instance's exit, as Unix seconds.
    pub const LAST_FINISHED_AT: &str = "io.skiff.container.last-finished-at";
    /// The previous instance's containerd ID.
    pub const LAST_CONTAINER_ID: &str = "io.skiff.container.last-id";
    /// The previous instance's termination reason when not derived from
    /// its exit code (`OOMKilled`).
    pub const LAST_REASON: &str = "io.skiff.container.last-reason";
}
