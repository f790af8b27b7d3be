//! Images in containerd: importing archives, pulling from registries and
//! resolving names.
//!
//! An import (or a pull) holds a lease for its whole duration and:
//! 1. extracts the archive to a scratch dir and describes its images
//!    ([`super::archive`]);
//! 2. writes every blob through the content service `Write` stream, with
//!    garbage-collection labels linking manifest → config and layers, and
//!    config → top snapshot;
//! 3. unpacks the layers onto snapshots ([`super::unpack`]);
//! 4. creates (or updates) the image records.
//!
//! Once the lease is deleted, the image records keep everything alive.
//!
//! A pull ([`ImageStore::pull`]) resolves the reference in its registry
//! ([`super::registry`]), and when the image record already points at the
//! digest the registry names (and is unpacked) it downloads nothing; else
//! it fetches only the blobs the content store lacks, each verified
//! against its digest while it streams into containerd. Pulls of one name
//! run one at a time, so two pods starting on one image download it once.
//!
//! Which image a container gets, and when to pull, is an
//! [`ImageManager`]'s call: [`LocalImages`] (archives only) by default; the
//! node agent plugs in its puller (pull policy, pull secrets, back-off,
//! events).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1::{
    AbortRequest, CreateImageRequest, GetImageRequest, Image, Info, InfoRequest,
    ReadContentRequest, UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{info, info_span, Instrument};

use super::archive::{self, media_types, ArchiveError, ArchiveImage, Blob, BlobSource};
use super::connection::{Connection, Lease, RpcError, SNAPSHOTTER};
pub use super::reference::normalize_image_name;
use super::reference::Reference;
use super::registry::{Credentials, RegistryClient, RegistryError, RemoteDescriptor, RemoteImage};
use super::unpack::{chain_ids, snapshot_exists, unpack_layers, UnpackError};

const WRITE_CHUNK: usize = 1 << 20;
static WRITE_SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
const IMPORT_LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// Errors importing or resolving images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The archive could not be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Layers could not be unpacked.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// A containerd call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A blob could not be read from disk.
    #[error("reading blob {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A manifest or config in the content store is malformed.
    #[error("parsing {digest}: {source}")]
    Json {
        /// The blob.
        digest: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// No manifest matches this machine's platform.
    #[error("image {0} has no manifest for this platform")]
    NoPlatform(String),
    /// A blocking task panicked or was cancelled.
    #[error("import task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A blob's bytes could not be fetched or did not match its digest.
    #[error("failed to copy {digest}: {source}")]
    Copy {
        /// The blob.
        digest: String,
        /// The read error (a digest mismatch is `InvalidData`).
        source: std::io::Error,
    },
}

/// Why a pull failed; the message is the `ErrImagePull` message, worded
/// like containerd's CRI plugin.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference could not be resolved to a manifest (not found,
    /// unauthorized, registry unreachable...).
    #[error("failed to pull and unpack image \"{name}\": failed to resolve reference \"{name}\": {source}")]
    Resolve {
        /// The normalised image name.
        name: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// A blob could not be fetched.
    #[error("failed to pull and unpack image \"{name}\": failed to copy: {source}")]
    Fetch {
        /// The normalised image name.
        name: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// Storing or unpacking failed.
    #[error("failed to pull and unpack image \"{name}\": {source}")]
    Store {
        /// The normalised image name.
        name: String,
        /// Why.
        #[source]
        source: ImageError,
    },
}

/// A finished pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The image, resolved.
    pub image: Arc<ResolvedImage>,
    /// Config plus layer sizes, as the registry serves them (the kubelet's
    /// `Image size: N bytes`).
    pub size: u64,
    /// Bytes actually downloaded (0 when the local copy was current).
    pub downloaded: u64,
}

/// Why a container's image is not ready: its waiting reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNotReady {
    /// `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`,
    /// `InvalidImageName`.
    pub reason: &'static str,
    /// The message shown in the container's waiting state.
    pub message: String,
}

/// Decides and provides the image a container starts from (the kubelet's
/// image manager: pull policy, credentials, back-off, events).
#[async_trait]
pub trait ImageManager: Send + Sync {
    /// The image of `container` of `pod`, pulled first if its
    /// `imagePullPolicy` asks for it.
    async fn ensure_image(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<Arc<ResolvedImage>, ImageNotReady>;
}

/// The image manager of a node without registry access: images come only
/// from archives (`DATA_DIR/images`, `skiff image import`).
#[derive(Debug)]
pub struct LocalImages {
    store: Arc<ImageStore>,
}

impl LocalImages {
    /// Local images of `store`.
    pub fn new(store: Arc<ImageStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl ImageManager for LocalImages {
    async fn ensure_image(
        &self,
        _pod: &Pod,
        container: &Container,
    ) -> Result<Arc<ResolvedImage>, ImageNotReady> {
        let reference = container.image.clone().unwrap_or_default();
        match self.store.resolve(&reference).await {
            Ok(Some(image)) => Ok(image),
            Ok(None) if container.image_pull_policy.as_deref() == Some("Never") => {
                Err(ImageNotReady {
                    reason: "ErrImageNeverPull",
                    message: format!(
                        "Container image \"{reference}\" is not present with pull policy of Never"
                    ),
                })
            }
            Ok(None) => Err(ImageNotReady {
                reason: "ErrImagePull",
                message: format!("image \"{reference}\" is not present and this node pulls from no registry; import it into DATA_DIR/images"),
            }),
            Err(error) => Err(ImageNotReady {
                reason: "ErrImagePull",
                message: error.to_string(),
            }),
        }
    }
}

/// The parts of an image config that shape a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// `Env`, as `KEY=value`.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// `WorkingDir`.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// `User`.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigDocument {
    #[serde(default)]
    config: Option<ImageConfig>,
    rootfs: RootfsDocument,
}

#[derive(Debug, Deserialize)]
struct RootfsDocument {
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ManifestDocument {
    config: DescriptorDocument,
    layers: Vec<DescriptorDocument>,
}

#[derive(Debug, Deserialize)]
struct IndexDocument {
    manifests: Vec<DescriptorDocument>,
}

#[derive(Debug, Clone, Deserialize)]
struct DescriptorDocument {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<PlatformDocument>,
}

#[derive(Debug, Clone, Deserialize)]
struct PlatformDocument {
    architecture: String,
    os: String,
}

impl DescriptorDocument {
    fn to_proto(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: Default::default(),
        }
    }
}

/// An image ready to run: its config and its unpacked root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The normalised name.
    pub name: String,
    /// The manifest digest.
    pub manifest_digest: String,
    /// The config digest: the image ID reported in `containerStatuses`.
    pub config_digest: String,
    /// The top layer's chain ID: the parent snapshot of a container.
    pub chain_id: String,
    /// Entrypoint, Cmd, Env...
    pub config: ImageConfig,
    /// Config plus layer sizes (compressed, as stored).
    pub size: u64,
}

/// Imports and resolves images in skiff's containerd namespace.
#[derive(Debug)]
pub struct ImageStore {
    connection: Connection,
    scratch_dir: PathBuf,
    resolved: Mutex<HashMap<String, Arc<ResolvedImage>>>,
    /// One lock per image name being pulled.
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageStore {
    /// A store that extracts archives under `scratch_dir`.
    pub fn new(connection: Connection, scratch_dir: PathBuf) -> Self {
        Self {
            connection,
            scratch_dir,
            resolved: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
        }
    }

    /// Imports every `*.tar` file of `dir` (e.g. `DATA_DIR/images/`);
    /// returns the names imported. A missing dir imports nothing.
    pub async fn import_dir(&self, dir: &Path) -> Result<Vec<String>, ImageError> {
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ImageError::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut names = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|source| ImageError::Io {
                path: dir.to_path_buf(),
                source,
            })?
        {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "tar") {
                names.extend(self.import_archive(&path).await?);
            }
        }
        Ok(names)
    }

    /// Imports an OCI-layout or docker-save tarball; returns the names.
    pub async fn import_archive(&self, path: &Path) -> Result<Vec<String>, ImageError> {
        let span = info_span!("image_import", archive = %path.display());
        self.import_archive_inner(path).instrument(span).await
    }

    async fn import_archive_inner(&self, path: &Path) -> Result<Vec<String>, ImageError> {
        let scratch = self.scratch_dir.join(format!(
            ".import-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        let archive_path = path.to_path_buf();
        let extract_dir = scratch.clone();
        let images = tokio::task::spawn_blocking(move || {
            archive::extract(&archive_path, &extract_dir)?;
            archive::read_images(&extract_dir)
        })
        .await
        .map_err(ImageError::Join)
        .and_then(|result| result.map_err(ImageError::from));
        let result = match images {
            Ok(images) => self.import_images(&images).await,
            Err(error) => Err(error),
        };
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        result
    }

    async fn import_images(&self, images: &[ArchiveImage]) -> Result<Vec<String>, ImageError> {
        let lease = self
            .connection
            .create_lease("import", IMPORT_LEASE_EXPIRY)
            .await?;
        let result = self.import_with_lease(images, &lease).await;
        self.connection.delete_lease(lease).await?;
        result
    }

    async fn import_with_lease(
        &self,
        images: &[ArchiveImage],
        lease: &Lease,
    ) -> Result<Vec<String>, ImageError> {
        let mut names = Vec::new();
        for image in images {
            let top_chain = chain_ids(&image.diff_ids)
                .last()
                .cloned()
                .ok_or(UnpackError::NoLayers)?;
            for layer in &image.layers {
                self.write_blob(lease, layer, HashMap::new()).await?;
            }
            let config_labels = HashMap::from([(
                format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
                top_chain,
            )]);
            self.write_blob(lease, &image.config, config_labels).await?;
            let mut manifest_labels = HashMap::from([(
                "containerd.io/gc.ref.content.config".to_string(),
                image.config.digest.clone(),
            )]);
            for (index, layer) in image.layers.iter().enumerate() {
                manifest_labels.insert(
                    format!("containerd.io/gc.ref.content.l.{index}"),
                    layer.digest.clone(),
                );
            }
            self.write_blob(lease, &image.manifest, manifest_labels)
                .await?;
            let layers: Vec<Descriptor> = image.layers.iter().map(descriptor).collect();
            unpack_layers(&self.connection, lease, &layers, &image.diff_ids).await?;
            for name in &image.names {
                self.put_image_record(lease, name, descriptor(&image.manifest))
                    .await?;
                if let Ok(mut resolved) = self.resolved.lock() {
                    resolved.remove(name);
                }
                info!(image = %name, digest = %image.manifest.digest, "image imported");
                names.push(name.clone());
            }
        }
        Ok(names)
    }

    async fn put_image_record(
        &self,
        lease: &Lease,
        name: &str,
        target: Descriptor,
    ) -> Result<(), ImageError> {
        let image = Image {
            name: name.to_string(),
            labels: Default::default(),
            target: Some(target),
            created_at: None,
            updated_at: None,
        };
        let create = CreateImageRequest {
            image: Some(image.clone()),
            source_date_epoch: None,
        };
        match self
            .connection
            .images()
            .create(self.connection.leased_request(create, lease))
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => {
                let update = UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                    source_date_epoch: None,
                };
                self.connection
                    .images()
                    .update(self.connection.leased_request(update, lease))
                    .await
                    .map_err(RpcError::call("images.Update"))?;
                Ok(())
            }
            Err(status) => Err(RpcError::call("images.Create")(status).into()),
        }
    }

    /// Writes a blob to the content store (or only its labels when the blob
    /// is already there).
    async fn write_blob(
        &self,
        lease: &Lease,
        blob: &Blob,
        labels: HashMap<String, String>,
    ) -> Result<(), ImageError> {
        if self.has_blob(&blob.digest).await? {
            return self.update_labels(&blob.digest, labels).await;
        }
        let reader: Pin<Box<dyn AsyncRead + Send>> = match &blob.source {
            BlobSource::File(path) => Box::pin(tokio::fs::File::open(path).await.map_err(
                |source| ImageError::Io {
                    path: path.clone(),
                    source,
                },
            )?),
            BlobSource::Bytes(bytes) => Box::pin(std::io::Cursor::new(bytes.clone())),
        };
        let source = blob.source.clone();
        let digest = blob.digest.clone();
        self.write_reader(
            lease,
            &blob.digest,
            blob.size,
            reader,
            labels,
            move |source_error| {
                let path = match source {
                    BlobSource::File(path) => path,
                    BlobSource::Bytes(_) => PathBuf::from(digest),
                };
                ImageError::Io {
                    path,
                    source: source_error,
                }
            },
        )
        .await
    }

    /// Whether the content store has `digest`.
    async fn has_blob(&self, digest: &str) -> Result<bool, ImageError> {
        let info = InfoRequest {
            digest: digest.to_string(),
        };
        match self
            .connection
            .content()
            .info(self.connection.request(info))
            .await
        {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(RpcError::call("content.Info")(status).into()),
        }
    }

    /// Streams `reader` into the content store as blob `digest` of `size`
    /// bytes, committing with `labels`. The bytes are hashed on the way:
    /// anything but exactly `digest` is aborted, never committed.
    async fn write_reader(
        &self,
        lease: &Lease,
        digest: &str,
        size: i64,
        reader: Pin<Box<dyn AsyncRead + Send>>,
        labels: HashMap<String, String>,
        read_error: impl FnOnce(std::io::Error) -> ImageError,
    ) -> Result<(), ImageError> {
        // A reference unique to this write: two pulls of one layer never
        // share (and lock) an ingest; the second commit is AlreadyExists.
        let reference = format!(
            "skiff-write-{digest}-{}",
            WRITE_SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let base = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: reference.clone(),
            total: size,
            expected: digest.to_string(),
            offset: 0,
            data: Vec::new(),
            labels: HashMap::new(),
        };
        // A producer task reads the blob into a small channel that tonic
        // streams to containerd (a channel, not a closure-built stream,
        // keeps the import future `Send` for `tokio::spawn`).
        let (chunks, requests) = futures::channel::mpsc::channel(2);
        let producer = tokio::spawn(produce_chunks(reader, base, labels, chunks));
        let outcome = self.stream_write(lease, requests).await;
        let failed_read = match producer.await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(join) => Some(std::io::Error::other(join.to_string())),
        };
        if let Some(source) = failed_read {
            self.abort_write(&reference).await;
            return Err(read_error(source));
        }
        match outcome {
            Ok(()) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => Ok(()),
            Err(status) => {
                self.abort_write(&reference).await;
                Err(RpcError::call("content.Write")(status).into())
            }
        }
    }

    async fn stream_write(
        &self,
        lease: &Lease,
        requests: futures::channel::mpsc::Receiver<WriteContentRequest>,
    ) -> Result<(), containerd_client::tonic::Status> {
        let mut client = self.connection.content();
        let request = self.connection.leased_request(requests, lease);
        let mut responses = client.write(request).await?.into_inner();
        while responses.message().await?.is_some() {}
        Ok(())
    }

    async fn abort_write(&self, reference: &str) {
        let request = AbortRequest {
            r#ref: reference.to_string(),
        };
        let _ = self
            .connection
            .content()
            .abort(self.connection.request(request))
            .await;
    }

    async fn update_labels(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ImageError> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|key| format!("labels.{key}")).collect();
        let request = UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                size: 0,
                created_at: None,
                updated_at: None,
                labels,
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        };
        self.connection
            .content()
            .update(self.connection.request(request))
            .await
            .map_err(RpcError::call("content.Update"))?;
        Ok(())
    }

    /// Pulls `reference` from its registry, authenticating with
    /// `credentials` if the registry asks. Downloads nothing when the image
    /// record already points at the digest the registry names.
    pub async fn pull(
        &self,
        registry: &RegistryClient,
        reference: &Reference,
        credentials: Option<Credentials>,
    ) -> Result<PulledImage, PullError> {
        let span = info_span!("image_pull", image = %reference.name);
        self.pull_inner(registry, reference, credentials)
            .instrument(span)
            .await
    }

    async fn pull_inner(
        &self,
        registry: &RegistryClient,
        reference: &Reference,
        credentials: Option<Credentials>,
    ) -> Result<PulledImage, PullError> {
        let lock = self.pull_lock(&reference.name);
        let _one_at_a_time = lock.lock().await;
        let name = reference.name.clone();
        let store = |source: ImageError| PullError::Store {
            name: name.clone(),
            source,
        };
        let mut session = registry.session(reference, credentials);
        let digest = session.head().await.map_err(|source| PullError::Resolve {
            name: name.clone(),
            source,
        })?;
        if let Some(digest) = &digest {
            if let Some(current) = self.current(&name, digest).await.map_err(store)? {
                info!(image = %name, %digest, "image up to date");
                return Ok(PulledImage {
                    size: current.size,
                    image: current,
                    downloaded: 0,
                });
            }
        }
        let remote =
            session
                .resolve(digest.as_deref())
                .await
                .map_err(|source| PullError::Resolve {
                    name: name.clone(),
                    source,
                })?;
        let lease = self
            .connection
            .create_lease("pull", IMPORT_LEASE_EXPIRY)
            .await
            .map_err(|e| store(e.into()))?;
        let result = self
            .store_remote(&name, &mut session, &remote, &lease)
            .await;
        let deleted = self.connection.delete_lease(lease).await;
        let downloaded = result?;
        deleted.map_err(|e| store(e.into()))?;
        self.forget(&name);
        let image = self
            .resolve(&name)
            .await
            .map_err(store)?
            .ok_or_else(|| store(ImageError::NoPlatform(name.clone())))?;
        info!(image = %name, digest = %remote.target().digest, downloaded, "image pulled");
        Ok(PulledImage {
            size: image.size,
            image,
            downloaded,
        })
    }

    fn pull_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.pulls.lock() {
            Ok(mut pulls) => pulls.entry(name.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut resolved) = self.resolved.lock() {
            resolved.remove(name);
        }
    }

    /// The image `name`, if its record points at `digest` and it resolves.
    async fn current(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<Option<Arc<ResolvedImage>>, ImageError> {
        let request = GetImageRequest {
            name: name.to_string(),
        };
        let target = match self
            .connection
            .images()
            .get(self.connection.request(request))
            .await
        {
            Ok(response) => response.into_inner().image.and_then(|i| i.target),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(RpcError::call("images.Get")(status).into()),
        };
        if target.is_none_or(|t| t.digest != digest) {
            return Ok(None);
        }
        self.resolve(name).await
    }

    /// Fetches what the content store lacks and unpacks it; returns the
    /// bytes downloaded.
    async fn store_remote(
        &self,
        image_name: &str,
        session: &mut super::registry::Session,
        remote: &RemoteImage,
        lease: &Lease,
    ) -> Result<u64, PullError> {
        let image_name = image_name.to_string();
        let fetch = |source| PullError::Fetch {
            name: image_name.clone(),
            source,
        };
        let store = |source: ImageError| PullError::Store {
            name: image_name.clone(),
            source,
        };
        let mut downloaded = 0u64;
        let config_bytes = if self.has_blob(&remote.config.digest).await.map_err(store)? {
            self.read_blob(&remote.config.digest).await.map_err(store)?
        } else {
            let bytes = session.fetch_blob(&remote.config).await.map_err(fetch)?;
            downloaded += bytes.len() as u64;
            bytes.to_vec()
        };
        let config: ConfigDocument = serde_json::from_slice(&config_bytes).map_err(|source| {
            store(ImageError::Json {
                digest: remote.config.digest.clone(),
                source,
            })
        })?;
        let diff_ids = config.rootfs.diff_ids;
        let top_chain = chain_ids(&diff_ids)
            .last()
            .cloned()
            .ok_or_else(|| store(UnpackError::NoLayers.into()))?;
        for layer in &remote.layers {
            if self.has_blob(&layer.digest).await.map_err(store)? {
                continue;
            }
            let reader = session.blob_reader(layer).await.map_err(fetch)?;
            let digest = layer.digest.clone();
            self.write_reader(
                lease,
                &layer.digest,
                layer.size,
                Box::pin(reader),
                HashMap::new(),
                move |source| ImageError::Copy { digest, source },
            )
            .await
            .map_err(store)?;
            downloaded += u64::try_from(layer.size).unwrap_or(0);
        }
        let config_labels = HashMap::from([(
            format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"),
            top_chain,
        )]);
        self.write_blob(
            lease,
            &bytes_blob(&remote.config, config_bytes),
            config_labels,
        )
        .await
        .map_err(store)?;
        let mut manifest_labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_string(),
            remote.config.digest.clone(),
        )]);
        for (index, layer) in remote.layers.iter().enumerate() {
            manifest_labels.insert(
                format!("containerd.io/gc.ref.content.l.{index}"),
                layer.digest.clone(),
            );
        }
        let manifest = &remote.manifest;
        self.write_blob(
            lease,
            &bytes_blob(&manifest.descriptor(), manifest.bytes.to_vec()),
            manifest_labels,
        )
        .await
        .map_err(store)?;
        if let Some(index) = &remote.index {
            let labels = HashMap::from([(
                "containerd.io/gc.ref.content.m.0".to_string(),
                manifest.digest.clone(),
            )]);
            self.write_blob(
                lease,
                &bytes_blob(&index.descriptor(), index.bytes.to_vec()),
                labels,
            )
            .await
            .map_err(store)?;
        }
        let layers: Vec<Descriptor> = remote.layers.iter().map(remote_proto).collect();
        unpack_layers(&self.connection, lease, &layers, &diff_ids)
            .await
            .map_err(|e| store(e.into()))?;
        self.put_image_record(lease, &image_name, remote_proto(&remote.target()))
            .await
            .map_err(store)?;
        Ok(downloaded)
    }

    /// Reads a whole blob from the content store.
    pub async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let request = ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = self
            .connection
            .content()
            .read(self.connection.request(request))
            .await
            .map_err(RpcError::call("content.Read"))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(RpcError::call("content.Read"))?
        {
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }

    /// Resolves an image reference to its config and unpacked rootfs;
    /// `None` when containerd has no image of that name.
    pub async fn resolve(&self, reference: &str) -> Result<Option<Arc<ResolvedImage>>, ImageError> {
        let Some(name) = normalize_image_name(reference) else {
            return Ok(None);
        };
        if let Some(hit) = self
            .resolved
            .lock()
            .ok()
            .and_then(|cache| cache.get(&name).cloned())
        {
            return Ok(Some(hit));
        }
        let request = GetImageRequest { name: name.clone() };
        let image = match self
            .connection
            .images()
            .get(self.connection.request(request))
            .await
        {
            Ok(response) => response.into_inner().image,
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(RpcError::call("images.Get")(status).into()),
        };
        let Some(target) = image.and_then(|image| image.target) else {
            return Ok(None);
        };
        let manifest_descriptor = self.platform_manifest(&name, target).await?;
        let manifest: ManifestDocument = self.read_json(&manifest_descriptor.digest).await?;
        let config_document: ConfigDocument = self.read_json(&manifest.config.digest).await?;
        let diff_ids = config_document.rootfs.diff_ids;
        let chain_id = chain_ids(&diff_ids)
            .last()
            .cloned()
            .ok_or(UnpackError::NoLayers)?;
        if !snapshot_exists(&self.connection, &chain_id).await? {
            // Present in the content store but never unpacked (e.g. pulled
            // by another tool): unpack now.
            let lease = self
                .connection
                .create_lease("unpack", IMPORT_LEASE_EXPIRY)
                .await?;
            let layers: Vec<Descriptor> = manifest.layers.iter().map(|l| l.to_proto()).collect();
            let result = unpack_layers(&self.connection, &lease, &layers, &diff_ids).await;
            self.connection.delete_lease(lease).await?;
            result?;
        }
        let size = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .map(|d| u64::try_from(d.size).unwrap_or(0))
            .sum();
        let resolved = Arc::new(ResolvedImage {
            name: name.clone(),
            manifest_digest: manifest_descriptor.digest,
            config_digest: manifest.config.digest,
            chain_id,
            config: config_document.config.unwrap_or_default(),
            size,
        });
        if let Ok(mut cache) = self.resolved.lock() {
            cache.insert(name, resolved.clone());
        }
        Ok(Some(resolved))
    }

    async fn platform_manifest(
        &self,
        name: &str,
        target: Descriptor,
    ) -> Result<DescriptorDocument, ImageError> {
        let mut current = DescriptorDocument {
            media_type: target.media_type,
            digest: target.digest,
            size: target.size,
            platform: None,
        };
        let arch = archive::host_architecture();
        for _ in 0..4 {
            if current.media_type != media_types::OCI_INDEX
                && current.media_type != media_types::DOCKER_LIST
            {
                return Ok(current);
            }
            let index: IndexDocument = self.read_json(&current.digest).await?;
            current = index
                .manifests
                .into_iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_none_or(|p| p.os == "linux" && p.architecture == arch)
                })
                .ok_or_else(|| ImageError::NoPlatform(name.to_string()))?;
        }
        Err(ImageError::NoPlatform(name.to_string()))
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        digest: &str,
    ) -> Result<T, ImageError> {
        let bytes = self.read_blob(digest).await?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
            digest: digest.to_string(),
            source,
        })
    }
}

fn remote_proto(descriptor: &RemoteDescriptor) -> Descriptor {
    Descriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        annotations: Default::default(),
    }
}

fn bytes_blob(descriptor: &RemoteDescriptor, bytes: Vec<u8>) -> Blob {
    Blob {
        digest: descriptor.digest.clone(),
        size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        media_type: descriptor.media_type.clone(),
        source: BlobSource::Bytes(bytes),
    }
}

fn descriptor(blob: &Blob) -> Descriptor {
    Descriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.clone(),
        size: blob.size,
        annotations: Default::default(),
    }
}

/// Reads `reader` in [`WRITE_CHUNK`] pieces into content write requests
/// (then the commit with `labels`); a read error, or bytes whose size or
/// sha256 differ from the request's `total` and `expected`, end the
/// stream early without a commit.
async fn produce_chunks(
    mut reader: Pin<Box<dyn AsyncRead + Send>>,
    base: WriteContentRequest,
    labels: HashMap<String, String>,
    mut chunks: futures::channel::mpsc::Sender<WriteContentRequest>,
) -> Result<(), std::io::Error> {
    use futures::SinkExt;
    let mut offset = 0i64;
    let mut hasher = Sha256::new();
    loop {
        let mut data = vec![0u8; WRITE_CHUNK];
        let mut filled = 0;
        while filled < data.len() {
            match reader.read(&mut data[filled..]).await? {
                0 => break,
                read => filled += read,
            }
        }
        if filled == 0 {
            let actual = format!("sha256:{}", super::archive::hex(&hasher.finalize()));
            if (!base.expected.is_empty() && actual != base.expected)
                || (base.total > 0 && offset != base.total)
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "digest mismatch: expected {} ({} bytes), got {actual} ({offset} bytes)",
                        base.expected, base.total
                    ),
                ));
            }
            let commit = WriteContentRequest {
                action: WriteAction::Commit as i32,
                offset,
                labels,
                ..base
            };
            // A closed channel means the write failed; the caller reports it.
            let _ = chunks.send(commit).await;
            return Ok(());
        }
        data.truncate(filled);
        hasher.update(&data);
        let write = WriteContentRequest {
            offset,
            data,
            ..base.clone()
        };
        if chunks.send(write).await.is_err() {
            return Ok(());
        }
        offset += i64::try_from(filled).unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_config_reads_docker_field_names() {
        let config: ConfigDocument = serde_json::from_str(
            r#"{"config":{"Entrypoint":null,"Cmd":["sh"],"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#,
        )
        .expect("parse");
        let config = config.config.expect("config");
        assert_eq!(config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(config.entrypoint, None);
    }
}
