//! A gRPC connection to containerd, bound to one containerd namespace.
//!
//! Every request skiff sends carries the `containerd-namespace` header, so
//! all of skiff's objects live in a namespace of its own (`skiff` or
//! `skiff-<node>`) and never mix with another client's.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    events_client::EventsClient, images_client::ImagesClient, leases_client::LeasesClient,
    snapshots::snapshots_client::SnapshotsClient, tasks_client::TasksClient,
    version_client::VersionClient, CreateRequest as CreateLeaseRequest,
    DeleteRequest as DeleteLeaseRequest,
};
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{self, Code, Request};

/// The snapshotter skiff uses for images and containers.
pub const SNAPSHOTTER: &str = "overlayfs";

/// Errors from talking to containerd.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The socket could not be connected to.
    #[error("connecting to containerd at {socket}: {source}")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// A containerd call failed.
    #[error("containerd {op}: {status}")]
    Call {
        /// The service and method, e.g. `tasks.Create`.
        op: &'static str,
        /// containerd's answer.
        status: Box<tonic::Status>,
    },
    /// The namespace or lease name cannot be sent as a gRPC header.
    #[error("invalid containerd header value {0:?}")]
    InvalidHeader(String),
}

impl RpcError {
    /// Wraps a gRPC status for operation `op`.
    pub fn call(op: &'static str) -> impl FnOnce(tonic::Status) -> RpcError {
        move |status| RpcError::Call {
            op,
            status: Box::new(status),
        }
    }

    /// The gRPC code of a failed call, if this error is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            RpcError::Call { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// Whether containerd answered NotFound.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    /// Whether containerd answered AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(Code::AlreadyExists)
    }
}

/// A channel to containerd plus the namespace every request is sent in.
#[derive(Clone, Debug)]
pub struct Connection {
    channel: Channel,
    namespace: String,
    namespace_header: MetadataValue<Ascii>,
}

impl Connection {
    /// Connects to the containerd socket at `socket`, using `namespace`.
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Self, RpcError> {
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|source| RpcError::Connect {
                    socket: socket.to_path_buf(),
                    source,
                })?;
        Self::from_channel(channel, namespace)
    }

    /// Wraps an existing channel.
    pub fn from_channel(channel: Channel, namespace: &str) -> Result<Self, RpcError> {
        let namespace_header = header_value(namespace)?;
        Ok(Self {
            channel,
            namespace: namespace.to_string(),
            namespace_header,
        })
    }

    /// The containerd namespace of this connection.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A request carrying the namespace header.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.namespace_header.clone());
        request
    }

    /// A request carrying the namespace header and a lease, so that what it
    /// creates is protected from garbage collection until the lease ends.
    pub fn leased_request<T>(&self, message: T, lease: &Lease) -> Request<T> {
        let mut request = self.request(message);
        request
            .metadata_mut()
            .insert("containerd-lease", lease.header.clone());
        request
    }

    /// containerd's version string, e.g. `1.6.20~ds1`.
    pub async fn version(&self) -> Result<String, RpcError> {
        let response = VersionClient::new(self.channel.clone())
            .version(())
            .await
            .map_err(RpcError::call("version.Version"))?;
        Ok(response.into_inner().version)
    }

    /// Creates a lease that expires by itself after `expire` (so a crash
    /// never pins content forever). Delete it with [`Connection::delete_lease`].
    pub async fn create_lease(&self, purpose: &str, expire: Duration) -> Result<Lease, RpcError> {
        let now = SystemTime::now();
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let id = format!("skiff-{purpose}-{nanos}");
        let expires_at = chrono::DateTime::<chrono::Utc>::from(now + expire)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let request = CreateLeaseRequest {
            id: id.clone(),
            labels: [("containerd.io/gc.expire".to_string(), expires_at)].into(),
        };
        self.leases()
            .create(self.request(request))
            .await
            .map_err(RpcError::call("leases.Create"))?;
        let header = header_value(&id)?;
        Ok(Lease { id, header })
    }

    /// Deletes a lease; what it protected becomes collectable unless
    /// something else references it.
    pub async fn delete_lease(&self, lease: Lease) -> Result<(), RpcError> {
        let request = DeleteLeaseRequest {
            id: lease.id,
            sync: false,
        };
        match self.leases().delete(self.request(request)).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(RpcError::call("leases.Delete")(status)),
        }
    }

    /// The containers service.
    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    /// The content service.
    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
    }
    /// The diff service.
    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }
    /// The events service.
    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
    }
    /// The images service.
    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    /// The leases service.
    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
    /// The snapshots service.
    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }
    /// The tasks service.
    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }
}

/// A containerd lease held while objects are being created.
#[derive(Debug)]
pub struct Lease {
    id: String,
    header: MetadataValue<Ascii>,
}

impl Lease {
    /// The lease's ID.
    pub fn id(&self) -> &str {
        &self.id
    }
}

fn header_value(value: &str) -> Result<MetadataValue<Ascii>, RpcError> {
    value
        .parse()
        .map_err(|_| RpcError::InvalidHeader(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_with_a_newline_is_rejected_as_a_header() {
        assert!(matches!(
            header_value("skiff\nx"),
            Err(RpcError::InvalidHeader(_))
        ));
    }

    #[test]
    fn not_found_statuses_are_recognised() {
        let error = RpcError::call("tasks.Get")(tonic::Status::not_found("no task"));
        assert!(error.is_not_found());
        assert!(!error.is_already_exists());
    }
}
