//! The storage contract the API server is written against.
//!
//! A [`Store`] is a flat, ordered key-value space with a single global revision
//! counter, exactly the slice of etcd's v3 model the Kubernetes API needs:
//! every successful write gets the next revision, reads report the revision
//! they saw, conditional updates compare a key's `mod_revision`, and a watch
//! replays every change after a revision in order, then follows live changes.
//!
//! Two backends implement it and pass the same conformance suite
//! ([`conformance`]): [`embedded::EmbeddedStore`] (redb on local disk, the
//! default) and [`etcd::EtcdStore`] (an external etcd 3.4+).

pub mod conformance;
pub mod embedded;
pub mod etcd;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A store revision. Strictly increasing across all keys, never reused, and
/// preserved across restarts. `0` means "before anything was written".
pub type Revision = i64;

/// One stored key with the revisions that describe its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (unchanged by updates).
    pub create_revision: Revision,
    /// Revision of the last write to this key. For a value returned by
    /// [`Store::delete`] or carried by a delete [`WatchEvent`], the revision
    /// of the deletion itself.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created (`kv.create_revision == kv.mod_revision`) or updated.
    Put,
    /// The key was deleted; `kv.value` is the last value it held and
    /// `kv.mod_revision` the revision of the deletion.
    Delete,
}

/// One change, as delivered by [`Store::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The value the key held just before this change, when there was one.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// The result of [`Store::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// Keys under the prefix, in ascending key order.
    pub items: Vec<KeyValue>,
    /// The store revision this list is consistent with.
    pub revision: Revision,
    /// True when `limit` cut the list short and more keys follow the last item.
    pub more: bool,
}

/// Errors a store reports. Callers map them to API status codes.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// `create` found the key already present.
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// The key is absent.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A conditional write found another revision than the one expected.
    #[error("key {key:?} is at revision {actual}, not {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// The history needed to replay from `requested` has been compacted away.
    #[error("revision {requested} has been compacted; the oldest available is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// The backend could not be reached or failed to persist; retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored bytes could not be decoded; the store needs repair.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of changes in revision order. It ends with an error item when the
/// backend fails; it never skips or repeats a revision while it runs.
pub type WatchStream = BoxStream<'static, Result<WatchEvent>>;

/// The storage contract. All methods are safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Lists keys starting with `prefix` in ascending order, starting strictly
    /// after `start_after` when given, returning at most `limit` items
    /// (`0` means no limit).
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult>;

    /// Lists as [`Store::list`] does, but as the keys stood at `revision`
    /// (so the pages of one list stay consistent while writes go on). Fails
    /// with [`StoreError::Compacted`] when that revision's history is gone.
    /// `ListResult::revision` is `revision`.
    async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Revision,
    ) -> Result<ListResult>;

    /// Creates a key that must not exist yet.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces the value of an existing key whose `mod_revision` must equal
    /// `expected_revision`.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: Revision,
    ) -> Result<KeyValue>;

    /// Deletes a key, only if its `mod_revision` equals `expected_revision`
    /// when one is given. Returns the deleted value with `mod_revision` set to
    /// the revision of the deletion.
    async fn delete(&self, key: &str, expected_revision: Option<Revision>) -> Result<KeyValue>;

    /// Streams every change to keys starting with `prefix` with a revision
    /// greater than `after_revision`, in order, then live changes. Fails with
    /// [`StoreError::Compacted`] when that history is gone.
    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream>;

    /// The latest revision of the store.
    async fn current_revision(&self) -> Result<Revision>;

    /// Discards history at and below `revision`; later watches from an older
    /// revision fail with [`StoreError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;
}
