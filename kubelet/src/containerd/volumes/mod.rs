//! Pod volumes and the API data containers read (env `valueFrom`), as the
//! kubelet provides them.
//!
//! Each volume lives under the pod's dir, as in Kubernetes:
//! `pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`:
//! - `emptyDir`: a dir (mode 0777); `medium: Memory` mounts a tmpfs there
//!   (`size=` the `sizeLimit`, else the pod's memory limit when every
//!   container has one), shared by the pod's containers;
//! - `configMap`, `secret`, `downwardAPI`, `projected` (with
//!   `serviceAccountToken` sources: a token bound to the pod, from
//!   [`PodApi::service_account_token`]): files written by
//!   [`atomic`] (the `..data` symlink swap) from [`projection`], re-written
//!   on each pod sync and always mounted read-only; as in Kubernetes, all
//!   but `configMap` live on a tmpfs, so secrets never reach the disk;
//! - `hostPath`: the host's path after the [`host_path`] type checks.
//!
//! [`setup`] runs before the init containers, [`container_mounts`] turns a
//! container's `volumeMounts` (with `subPath` and `readOnly`) into OCI
//! mounts, and [`teardown`] unmounts tmpfs volumes before the pod dir is
//! removed. [`env`] resolves `env`/`envFrom`.
//!
//! ConfigMaps, Secrets and tokens are read through [`PodApi`], which the node agent
//! implements with the API client; this module never talks to the API
//! server itself. A missing object or key is a [`VolumeError`] whose
//! message is Kubernetes' (`configmap "x" not found`); the runtime shows it
//! as `CreateContainerConfigError` and the worker retries.

pub mod atomic;
pub mod downward;
pub mod env;
pub mod host_path;
pub mod projection;

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume};
use serde_json::{json, Value};

pub use downward::NodeFacts;
use projection::{check_relative_path, Payload, SourceKind, DEFAULT_MODE};

/// A failed API read, as the API client reports it.
pub type LookupError = Box<dyn std::error::Error + Send + Sync>;

/// What the runtime needs from the API for a pod's volumes and env.
#[async_trait]
pub trait PodApi: Send + Sync + std::fmt::Debug {
    /// A ConfigMap of the pod's namespace (`None`: it does not exist).
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, LookupError>;
    /// A Secret of the pod's namespace (`None`: it does not exist).
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError>;
    /// A token for a service account (`serviceaccounts/{name}/token`), as
    /// the TokenRequest's answer. Implementations cache tokens and ask
    /// for a new one only when the cached one is due for refresh.
    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, LookupError>;
    /// Records a Warning event about the pod (best effort).
    fn warn(&self, pod: &Pod, reason: &str, message: String);
}

/// Why a pod's volumes or a container's env cannot be provided. Every
/// variant leaves the container waiting `CreateContainerConfigError`.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A referenced ConfigMap or Secret does not exist.
    #[error("{} {name:?} not found", kind.noun())]
    NotFound {
        /// ConfigMap or Secret.
        kind: SourceKind,
        /// Its name.
        name: String,
    },
    /// A volume item names a key the object does not have.
    #[error("{} {name:?} references non-existent {} key: {key}", kind.noun(), match kind { SourceKind::ConfigMap => "config", SourceKind::Secret => "secret" })]
    MissingKey {
        /// ConfigMap or Secret.
        kind: SourceKind,
        /// Its name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// An env var names a key the object does not have (Kubernetes'
    /// `couldn't find key K in ConfigMap NS/NAME`).
    #[error("{0}")]
    EnvKey(String),
    /// The runtime has no API access to read the object.
    #[error("cannot read {} {name:?}: the runtime has no API client", kind.noun())]
    NoApi {
        /// ConfigMap or Secret.
        kind: SourceKind,
        /// Its name.
        name: String,
    },
    /// Reading the object failed.
    #[error("cannot read {} {name:?}: {source}", kind.noun())]
    Lookup {
        /// ConfigMap or Secret.
        kind: SourceKind,
        /// Its name.
        name: String,
        /// The API error.
        source: LookupError,
    },
    /// A projected `serviceAccountToken` could not be had (the kubelet's
    /// wording).
    #[error("failed to fetch token: {0}")]
    Token(LookupError),
    /// A `fieldRef` path the downward API does not support.
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    /// A `resourceFieldRef` that cannot be resolved.
    #[error("unsupported resourceFieldRef: {0}")]
    ResourceField(String),
    /// A file or subPath that would leave the volume.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as written.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `hostPath` type check failed (Kubernetes' wording).
    #[error("{0}")]
    HostPath(String),
    /// A `volumeMount` names no volume of the pod.
    #[error("unable to find volume {volume:?} for container {container:?}")]
    UnknownVolume {
        /// The container.
        container: String,
        /// The missing volume.
        volume: String,
    },
    /// A volume type this node cannot provide.
    #[error("volume {volume:?}: {what} volumes are not supported on this node")]
    Unsupported {
        /// The volume.
        volume: String,
        /// Its type.
        what: &'static str,
    },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Mounting or unmounting a tmpfs failed.
    #[error("mount {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The system error.
        source: nix::Error,
    },
}

impl VolumeError {
    /// Whether the error is a missing ConfigMap or Secret.
    pub fn is_missing_object(&self) -> bool {
        matches!(self, VolumeError::NotFound { .. })
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A volume ready to be mounted into containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    /// The host path a container's mount binds.
    pub host_path: PathBuf,
    /// API data (configMap, secret, downwardAPI, projected): read-only.
    pub read_only: bool,
}

/// A pod's volumes by name.
pub type PreparedVolumes = HashMap<String, PreparedVolume>;

/// The dir of volume `name` of plugin `plugin` under a pod's dir.
pub fn volume_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

/// What to write for each API-data volume, computed before the blocking
/// file work.
enum Planned {
    Files {
        dir: PathBuf,
        payload: Payload,
        tmpfs: bool,
    },
    EmptyDir {
        dir: PathBuf,
        tmpfs_size: Option<Option<u64>>,
    },
    HostPath {
        path: PathBuf,
        kind: String,
    },
}

fn sum_memory_limits(pod: &Pod) -> Option<u64> {
    let containers = &pod.spec.as_ref()?.containers;
    let mut total = 0u64;
    for container in containers {
        let limit = container
            .resources
            .as_ref()?
            .limits
            .as_ref()?
            .get("memory")?;
        total += quantity::as_f64(&limit.0)? as u64;
    }
    Some(total)
}

/// Reads what a volume needs from the API and computes its files.
async fn plan(
    pod: &Pod,
    volume: &Volume,
    pod_dir: &Path,
    api: Option<&dyn PodApi>,
    facts: &NodeFacts,
    warnings: &mut Vec<String>,
) -> Result<Planned, VolumeError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = volume.name.as_str();
    let mode = |m: Option<i32>| projection::file_mode(m, DEFAULT_MODE);
    if let Some(empty) = &volume.empty_dir {
        let tmpfs_size = match empty.medium.as_deref().unwrap_or("") {
            "" => None,
            "Memory" => Some(
                empty
                    .size_limit
                    .as_ref()
                    .and_then(|q| quantity::as_f64(&q.0))
                    .map(|bytes| bytes.ceil() as u64)
                    .or_else(|| sum_memory_limits(pod)),
            ),
            _ => {
                return Err(VolumeError::Unsupported {
                    volume: name.to_string(),
                    what: "emptyDir medium HugePages",
                })
            }
        };
        return Ok(Planned::EmptyDir {
            dir: volume_dir(pod_dir, "empty-dir", name),
            tmpfs_size,
        });
    }
    if let Some(host) = &volume.host_path {
        return Ok(Planned::HostPath {
            path: PathBuf::from(&host.path),
            kind: host.type_.clone().unwrap_or_default(),
        });
    }
    if let Some(cm) = &volume.config_map {
        let data = env::fetch(api, namespace, SourceKind::ConfigMap, &cm.name).await?;
        let payload = projection::key_payload(
            SourceKind::ConfigMap,
            &cm.name,
            data.as_ref(),
            cm.items.as_deref(),
            mode(cm.default_mode),
            cm.optional.unwrap_or(false),
        )?;
        return Ok(Planned::Files {
            dir: volume_dir(pod_dir, "configmap", name),
            payload,
            tmpfs: false,
        });
    }
    if let Some(secret) = &volume.secret {
        let secret_name = secret.secret_name.clone().unwrap_or_default();
        let data = env::fetch(api, namespace, SourceKind::Secret, &secret_name).await?;
        let payload = projection::key_payload(
            SourceKind::Secret,
            &secret_name,
            data.as_ref(),
            secret.items.as_deref(),
            mode(secret.default_mode),
            secret.optional.unwrap_or(false),
        )?;
        return Ok(Planned::Files {
            dir: volume_dir(pod_dir, "secret", name),
            payload,
            tmpfs: true,
        });
    }
    if let Some(downward) = &volume.downward_api {
        let payload = projection::downward_payload(
            pod,
            downward.items.as_deref().unwrap_or_default(),
            mode(downward.default_mode),
            facts,
        )?;
        return Ok(Planned::Files {
            dir: volume_dir(pod_dir, "downward-api", name),
            payload,
            tmpfs: true,
        });
    }
    if let Some(projected) = &volume.projected {
        let default_mode = mode(projected.default_mode);
        let mut payload = Payload::new();
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let data = env::fetch(api, namespace, SourceKind::ConfigMap, &cm.name).await?;
                let files = projection::key_payload(
                    SourceKind::ConfigMap,
                    &cm.name,
                    data.as_ref(),
                    cm.items.as_deref(),
                    default_mode,
                    cm.optional.unwrap_or(false),
                )?;
                projection::merge(&mut payload, files);
            }
            if let Some(secret) = &source.secret {
                let data = env::fetch(api, namespace, SourceKind::Secret, &secret.name).await?;
                let files = projection::key_payload(
                    SourceKind::Secret,
                    &secret.name,
                    data.as_ref(),
                    secret.items.as_deref(),
                    default_mode,
                    secret.optional.unwrap_or(false),
                )?;
                projection::merge(&mut payload, files);
            }
            if let Some(downward) = &source.downward_api {
                let files = projection::downward_payload(
                    pod,
                    downward.items.as_deref().unwrap_or_default(),
                    default_mode,
                    facts,
                )?;
                projection::merge(&mut payload, files);
            }
            if let Some(token) = &source.service_account_token {
                check_relative_path(&token.path)?;
                let request = token_request(pod, token);
                let service_account = service_account_of(pod);
                let answer = match api {
                    Some(api) => api
                        .service_account_token(namespace, service_account, &request)
                        .await
                        .map_err(VolumeError::Token)?,
                    None => return Err(VolumeError::Token("the runtime has no API client".into())),
                };
                let data = answer
                    .status
                    .map(|s| s.token.into_bytes())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| VolumeError::Token("the API server returned no token".into()))?;
                projection::merge(
                    &mut payload,
                    Payload::from([(
                        token.path.clone(),
                        projection::FileProjection {
                            data,
                            mode: default_mode,
                        },
                    )]),
                );
            }
            if source.cluster_trust_bundle.is_some() {
                warnings.push(format!(
                    "volume {name:?}: clusterTrustBundle source skipped: not supported"
                ));
            }
        }
        return Ok(Planned::Files {
            dir: volume_dir(pod_dir, "projected", name),
            payload,
            tmpfs: true,
        });
    }
    let what = if volume.persistent_volume_claim.is_some() {
        "persistentVolumeClaim"
    } else if volume.nfs.is_some() {
        "nfs"
    } else if volume.csi.is_some() {
        "csi"
    } else if volume.ephemeral.is_some() {
        "ephemeral"
    } else if volume.image.is_some() {
        "image"
    } else {
        "this type of"
    };
    Err(VolumeError::Unsupported {
        volume: name.to_string(),
        what,
    })
}

/// The service account a pod runs as (`default` when it names none).
pub fn service_account_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

/// A projected token's expiry when the pod names none (the API's default).
pub const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// The TokenRequest the kubelet makes for a projected `serviceAccountToken`:
/// its audience (none: the API server's), its lifetime, bound to the pod.
pub fn token_request(
    pod: &Pod,
    projection: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
) -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            audiences: projection
                .audience
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            expiration_seconds: Some(
                projection
                    .expiration_seconds
                    .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS),
            ),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    }
}

/// Whether `dir` is a mount point (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = dir.parent() else {
        return false;
    };
    match (std::fs::metadata(dir), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Creates `dir` and mounts a tmpfs there unless one already is.
fn mount_tmpfs(dir: &Path, mode: u32, size: Option<u64>) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let mut options = format!("mode={mode:04o}");
    if let Some(bytes) = size.filter(|b| *b > 0) {
        options.push_str(&format!(",size={bytes}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|source| VolumeError::Mount {
        path: dir.to_path_buf(),
        source,
    })
}

fn make_empty_dir(dir: &Path, tmpfs_size: Option<Option<u64>>) -> Result<(), VolumeError> {
    use std::os::unix::fs::PermissionsExt;
    match tmpfs_size {
        Some(size) => mount_tmpfs(dir, 0o777, size)?,
        None => std::fs::create_dir_all(dir).map_err(io_at(dir))?,
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(io_at(dir))
}

/// Sets up every volume of the pod under `pod_dir`. Warnings (sources
/// skipped) are recorded as `FailedMount`-style events through `api`.
pub async fn setup(
    pod: &Pod,
    pod_dir: &Path,
    api: Option<&dyn PodApi>,
    facts: &NodeFacts,
) -> Result<(PreparedVolumes, Vec<String>), VolumeError> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut warnings = Vec::new();
    let mut planned = Vec::with_capacity(volumes.len());
    for volume in &volumes {
        let plan = plan(pod, volume, pod_dir, api, facts, &mut warnings).await?;
        planned.push((volume.name.clone(), plan));
    }
    let prepared = tokio::task::spawn_blocking(move || {
        let mut prepared = PreparedVolumes::new();
        for (name, plan) in planned {
            let volume = match plan {
                Planned::EmptyDir { dir, tmpfs_size } => {
                    make_empty_dir(&dir, tmpfs_size)?;
                    PreparedVolume {
                        host_path: dir,
                        read_only: false,
                    }
                }
                Planned::HostPath { path, kind } => {
                    host_path::check(&path, &kind)?;
                    PreparedVolume {
                        host_path: path,
                        read_only: false,
                    }
                }
                Planned::Files {
                    dir,
                    payload,
                    tmpfs,
                } => {
                    if tmpfs {
                        mount_tmpfs(&dir, 0o755, None)?;
                    }
                    atomic::write(&dir, &payload).map_err(io_at(&dir))?;
                    PreparedVolume {
                        host_path: dir,
                        read_only: true,
                    }
                }
            };
            prepared.insert(name, volume);
        }
        Ok::<_, VolumeError>(prepared)
    })
    .await
    .map_err(|join| VolumeError::Io {
        path: pod_dir.to_path_buf(),
        source: std::io::Error::other(join),
    })??;
    Ok((prepared, warnings))
}

/// Unmounts the pod's tmpfs volumes, so its dir can be removed. Blocking.
pub fn teardown(pod_dir: &Path) -> Result<(), VolumeError> {
    let plugins = std::fs::read_dir(pod_dir.join("volumes"))
        .into_iter()
        .flatten()
        .flatten();
    let volumes = plugins.flat_map(|plugin| {
        std::fs::read_dir(plugin.path())
            .into_iter()
            .flatten()
            .flatten()
    });
    for entry in volumes {
        let dir = entry.path();
        if is_mount_point(&dir) {
            nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH).map_err(|source| {
                VolumeError::Mount {
                    path: dir.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// Unmounts the tmpfs volumes of every pod under `pods_dir` (`skiff down`).
pub fn teardown_all(pods_dir: &Path) {
    for entry in std::fs::read_dir(pods_dir).into_iter().flatten().flatten() {
        if let Err(error) = teardown(&entry.path()) {
            tracing::warn!(%error, "cannot unmount a pod volume");
        }
    }
}

/// The host path a mount binds: the volume, or `subPath` inside it
/// (created as a dir when missing, as the kubelet does). A subPath must
/// stay inside the volume, symlinks included.
pub fn sub_path_source(volume: &PreparedVolume, sub_path: &str) -> Result<PathBuf, VolumeError> {
    if sub_path.is_empty() {
        return Ok(volume.host_path.clone());
    }
    let invalid = |reason: &str| VolumeError::InvalidPath {
        path: sub_path.to_string(),
        reason: reason.to_string(),
    };
    if Path::new(sub_path)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid("subPath must be a relative path without '..'"));
    }
    let source = volume.host_path.join(sub_path);
    if std::fs::symlink_metadata(&source).is_err() {
        std::fs::create_dir_all(&source).map_err(io_at(&source))?;
    }
    let root = volume
        .host_path
        .canonicalize()
        .map_err(io_at(&volume.host_path))?;
    let resolved = source.canonicalize().map_err(io_at(&source))?;
    if !resolved.starts_with(&root) {
        return Err(invalid("subPath resolves outside the volume"));
    }
    Ok(resolved)
}

/// The OCI mounts of a container's `volumeMounts`, parents before
/// children.
pub fn container_mounts(
    container: &Container,
    volumes: &PreparedVolumes,
) -> Result<Vec<Value>, VolumeError> {
    let mut mounts: BTreeMap<(usize, String), Value> = BTreeMap::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .get(&mount.name)
            .ok_or_else(|| VolumeError::UnknownVolume {
                container: container.name.clone(),
                volume: mount.name.clone(),
            })?;
        let source = sub_path_source(volume, mount.sub_path.as_deref().unwrap_or(""))?;
        let read_only = volume.read_only || mount.read_only.unwrap_or(false);
        let depth = Path::new(&mount.mount_path).components().count();
        mounts.insert(
            (depth, mount.mount_path.clone()),
            json!({
                "destination": mount.mount_path,
                "type": "bind",
                "source": source,
                "options": ["rbind", "rprivate", if read_only { "ro" } else { "rw" }],
            }),
        );
    }
    Ok(mounts.into_values().collect())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::VolumeMount;

    use super::*;

    fn prepared(dir: &Path, read_only: bool) -> PreparedVolume {
        PreparedVolume {
            host_path: dir.to_path_buf(),
            read_only,
        }
    }

    #[test]
    fn a_sub_path_is_created_inside_the_volume_and_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = prepared(dir.path(), false);
        let source = sub_path_source(&volume, "a/b").expect("sub path");
        assert!(source.is_dir());
        assert_eq!(
            source,
            dir.path().canonicalize().expect("canonical").join("a/b")
        );
    }

    #[test]
    fn a_sub_path_cannot_leave_the_volume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume_dir = dir.path().join("vol");
        std::fs::create_dir(&volume_dir).expect("mkdir");
        let volume = prepared(&volume_dir, false);
        assert!(sub_path_source(&volume, "../x").is_err());
        assert!(sub_path_source(&volume, "/etc").is_err());
        std::os::unix::fs::symlink("/etc", volume_dir.join("escape")).expect("symlink");
        assert!(matches!(
            sub_path_source(&volume, "escape"),
            Err(VolumeError::InvalidPath { .. })
        ));
    }

    #[test]
    fn a_sub_path_of_a_config_map_key_binds_the_file_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payload: Payload = [(
            "app.conf".to_string(),
            projection::FileProjection {
                data: b"x=1".to_vec(),
                mode: 0o644,
            },
        )]
        .into_iter()
        .collect();
        atomic::write(dir.path(), &payload).expect("write");
        let source = sub_path_source(&prepared(dir.path(), true), "app.conf").expect("sub path");
        assert!(source.is_file());
        assert_eq!(std::fs::read_to_string(source).expect("read"), "x=1");
    }

    #[test]
    fn mounts_follow_read_only_rules_and_sort_parents_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volumes = PreparedVolumes::from([
            ("data".to_string(), prepared(dir.path(), false)),
            ("cfg".to_string(), prepared(dir.path(), true)),
        ]);
        let mount = |name: &str, path: &str, read_only: Option<bool>| VolumeMount {
            name: name.to_string(),
            mount_path: path.to_string(),
            read_only,
            ..Default::default()
        };
        let container = Container {
            name: "c".to_string(),
            volume_mounts: Some(vec![
                mount("cfg", "/data/cfg", None),
                mount("data", "/data", None),
                mount("data", "/ro", Some(true)),
            ]),
            ..Default::default()
        };
        let mounts = container_mounts(&container, &volumes).expect("mounts");
        let destinations: Vec<&str> = mounts
            .iter()
            .filter_map(|m| m["destination"].as_str())
            .collect();
        assert_eq!(destinations, vec!["/data", "/ro", "/data/cfg"]);
        assert_eq!(mounts[0]["options"][2], "rw");
        assert_eq!(mounts[1]["options"][2], "ro");
        assert_eq!(mounts[2]["options"][2], "ro", "API data is read-only");
        let bad = Container {
            name: "c".to_string(),
            volume_mounts: Some(vec![mount("nope", "/x", None)]),
            ..Default::default()
        };
        assert!(matches!(
            container_mounts(&bad, &volumes),
            Err(VolumeError::UnknownVolume { .. })
        ));
    }
}
