//! [`Store`] on an external etcd (3.4 or newer), through the v3 gRPC API.
//!
//! The mapping onto etcd is direct: our keys are etcd keys under
//! [`EtcdConfig::prefix`], our revisions are etcd's revisions, and every
//! conditional write is one etcd transaction, so all the guarantees (one
//! global revision, atomic compare-and-swap, ordered watch history) are etcd's
//! own.
//!
//! - `create` is `txn(create_revision(k) == 0) then put`.
//! - `update` is `txn(mod_revision(k) == expected && version(k) > 0) then put
//!   else get`, so a failed update reports the actual revision (or absence)
//!   seen atomically with the comparison.
//! - `delete` is the same with an optional revision comparison; it returns
//!   the previous value with `mod_revision` set to the transaction revision,
//!   which is the revision of the deletion.
//! - `watch` is an etcd watch with `prev_kv` starting at `after_revision + 1`.
//!
//! # Failures
//!
//! Every unary request is bounded by [`EtcdStore::with_request_timeout`]
//! (default [`DEFAULT_REQUEST_TIMEOUT`]); an unreachable, slow or failing etcd
//! surfaces as [`StoreError::Unavailable`], never as a hang. The underlying
//! gRPC channel reconnects by itself, so once etcd is back the next request
//! succeeds without rebuilding the store. A watch does not resume by itself:
//! its stream ends with an `Unavailable` item and the caller watches again
//! from the last revision it saw, as Kubernetes reflectors do.
//!
//! # Compaction and watches
//!
//! [`Store::watch`] returns `Err(StoreError::Compacted { .. })` itself when
//! `after_revision` is already compacted: it opens the etcd watch, and when
//! history must be replayed, probes the start revision with a revision-pinned
//! read; if etcd says it is compacted, it waits for the watch's cancellation
//! (which carries etcd's compact revision, reported as `oldest`). Only if a
//! compaction races with the opening of the watch does the error arrive as
//! the first stream item instead. A compaction that overtakes a running watch
//! ends its stream with a `Compacted` item whose `requested` is the last
//! revision delivered.
//!
//! `oldest` is etcd's compact revision: watching with `after_revision >=
//! oldest` is always possible. etcd itself still serves a watch from
//! `after_revision == oldest - 1` (the latest value of each key survives
//! compaction), which is more than the contract promises.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions, WatchResponse,
};
use futures::StreamExt;
use tracing::{debug, warn};

use super::{
    EventKind, KeyValue, ListResult, Result, Revision, Store, StoreError, WatchEvent, WatchStream,
};

/// How long [`EtcdStore::connect`] waits for etcd by default: the Kubernetes
/// API server's etcd dial timeout (`storagebackend/factory/etcd3.go`).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one etcd request may take before it fails with
/// [`StoreError::Unavailable`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 keep-alive ping interval and timeout, as in the Kubernetes API
/// server's etcd client: a silent connection is declared dead within 40 s,
/// which ends watches on it instead of leaving them hanging.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest gRPC message accepted from etcd (lists and watch batches can be
/// large; tonic's default of 4 MiB is too small), as in Kubernetes.
const MAX_RECV_MESSAGE_SIZE: usize = i32::MAX as usize;

/// Where etcd is and how to reach it.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Prepended to every key inside etcd (e.g. `""` or `"/skiff"`), so
    /// several clusters can share one etcd. Never visible to callers.
    pub prefix: String,
    /// How long to wait for a connection, both in [`EtcdStore::connect`] and
    /// when reconnecting later.
    pub dial_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: String::new(),
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
        }
    }
}

/// A [`Store`] backed by etcd. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    prefix: Vec<u8>,
    request_timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Why one etcd request failed. Callers see it as
/// [`StoreError::Unavailable`] unless it has a meaning of its own.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// No answer within the request timeout.
    #[error("etcd {op} timed out after {after:?}")]
    TimedOut { op: &'static str, after: Duration },
    /// The client or etcd reported an error.
    #[error("etcd {op} failed: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    /// etcd answered without the response header every answer carries.
    #[error("etcd {op} answered without a response header")]
    NoHeader { op: &'static str },
}

impl CallError {
    /// etcd's `ErrCompacted`: the requested revision has been compacted.
    fn is_compacted(&self) -> bool {
        matches!(self, CallError::Etcd { source: etcd_client::Error::GRpcStatus(status), .. }
            if status.message().contains("required revision has been compacted"))
    }
}

impl From<CallError> for StoreError {
    fn from(err: CallError) -> Self {
        warn!(error = %err, "etcd request failed");
        StoreError::Unavailable(err.to_string())
    }
}

impl EtcdStore {
    /// Connects to etcd and waits (up to [`EtcdConfig::dial_timeout`]) until
    /// it answers a read, so a store that is returned is known to work.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Unavailable(
                "no etcd endpoints configured".to_owned(),
            ));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT);
        // Connecting only builds the (lazy) channel; the probe below is what
        // reaches etcd.
        let client = tokio::time::timeout(
            config.dial_timeout,
            Client::connect(&config.endpoints, Some(options)),
        )
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "connecting to etcd at {:?} timed out after {:?}",
                config.endpoints, config.dial_timeout
            ))
        })?
        .map_err(|err| {
            StoreError::Unavailable(format!(
                "connecting to etcd at {:?}: {err}",
                config.endpoints
            ))
        })?;

        let store = EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RECV_MESSAGE_SIZE),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RECV_MESSAGE_SIZE),
            prefix: config.prefix.into_bytes(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        };
        store
            .wait_until_answering(&config.endpoints, config.dial_timeout)
            .await?;
        Ok(store)
    }

    /// Bounds every later etcd request by `timeout` instead of
    /// [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Probes etcd until it answers or `dial_timeout` has passed, so a store
    /// started together with its etcd does not fail on a refused connection.
    async fn wait_until_answering(
        &self,
        endpoints: &[String],
        dial_timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + dial_timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut kv = self.kv.clone();
            let probe = tokio::time::timeout(
                remaining,
                kv.get(self.probe_key(), Some(GetOptions::new().with_count_only())),
            )
            .await;
            let err = match probe {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(err)) => err.to_string(),
                Err(_) => "no answer".to_owned(),
            };
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "etcd at {endpoints:?} did not answer within {dial_timeout:?}: {err}"
                )));
            }
            debug!(error = %err, "etcd not answering yet");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// A range read, at `revision` when given (etcd keeps MVCC history
    /// until compaction).
    async fn range_list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<ListResult> {
        let Some((start, end)) = self.range(prefix, start_after) else {
            return Ok(ListResult {
                items: Vec::new(),
                revision: match revision {
                    Some(r) => r,
                    None => self.current_revision().await?,
                },
                more: false,
            });
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut options = GetOptions::new().with_range(end).with_limit(limit);
        if let Some(r) = revision {
            options = options.with_revision(r);
        }
        let mut kv = self.kv.clone();
        let mut resp = match self.call("list", kv.get(start, Some(options))).await {
            Ok(r) => r,
            Err(err) if err.is_compacted() => {
                return Err(StoreError::Compacted {
                    requested: revision.unwrap_or_default(),
                    oldest: revision.unwrap_or_default() + 1,
                })
            }
            Err(err) => return Err(err.into()),
        };
        let revision = match revision {
            Some(r) => r,
            None => header_revision("list", resp.header())?,
        };
        let more = resp.more();
        let items = resp
            .take_kvs()
            .into_iter()
            .map(|kv| self.convert(kv))
            .collect::<Result<Vec<_>>>()?;
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    /// Runs one etcd request under the request timeout.
    async fn call<T>(
        &self,
        op: &'static str,
        request: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> std::result::Result<T, CallError> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(source)) => Err(CallError::Etcd { op, source }),
            Err(_) => Err(CallError::TimedOut {
                op,
                after: self.request_timeout,
            }),
        }
    }

    /// The key revision probes read (count only): the store prefix itself,
    /// so a probe stays inside the key range this store may use. Any single
    /// key keeps a probe cheap.
    fn probe_key(&self) -> Vec<u8> {
        if self.prefix.is_empty() {
            vec![0]
        } else {
            self.prefix.clone()
        }
    }

    fn etcd_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key.as_bytes());
        full
    }

    fn convert(&self, kv: etcd_client::KeyValue) -> Result<KeyValue> {
        convert_kv(&self.prefix, kv)
    }

    /// The `[start, end)` etcd range holding `prefix`, starting strictly after
    /// `start_after`. `None` when that range is empty.
    fn range(&self, prefix: &str, start_after: Option<&str>) -> Option<(Vec<u8>, Vec<u8>)> {
        let full_prefix = self.etcd_key(prefix);
        let end = prefix_range_end(&full_prefix);
        let mut start = if full_prefix.is_empty() {
            vec![0]
        } else {
            full_prefix
        };
        if let Some(after) = start_after {
            // The smallest key strictly greater than `after`.
            let mut next = self.etcd_key(after);
            next.push(0);
            if next > start {
                start = next;
            }
        }
        let unbounded = end == [0];
        (unbounded || start < end).then_some((start, end))
    }
}

/// The smallest key greater than every key starting with `prefix`, or `[0]`
/// ("to the end of the key space") when there is none.
fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn convert_kv(prefix: &[u8], kv: etcd_client::KeyValue) -> Result<KeyValue> {
    let create_revision = kv.create_revision();
    let mod_revision = kv.mod_revision();
    let (key, value) = kv.into_key_value();
    Ok(KeyValue {
        key: strip_prefix(prefix, key)?,
        value: Bytes::from(value),
        create_revision,
        mod_revision,
    })
}

fn strip_prefix(prefix: &[u8], key: Vec<u8>) -> Result<String> {
    let Some(rest) = key.strip_prefix(prefix) else {
        return Err(StoreError::Corrupt(format!(
            "etcd returned key {:?} outside the store prefix {:?}",
            String::from_utf8_lossy(&key),
            String::from_utf8_lossy(prefix)
        )));
    };
    String::from_utf8(rest.to_vec()).map_err(|_| {
        StoreError::Corrupt(format!(
            "etcd key {:?} is not UTF-8",
            String::from_utf8_lossy(&key)
        ))
    })
}

fn header_revision(
    op: &'static str,
    header: Option<&etcd_client::ResponseHeader>,
) -> std::result::Result<Revision, CallError> {
    header
        .map(|h| h.revision())
        .ok_or(CallError::NoHeader { op })
}

/// The key-value pairs of the single `get` a transaction branch ran.
fn txn_get_kvs(responses: Vec<TxnOpResponse>) -> Vec<etcd_client::KeyValue> {
    responses
        .into_iter()
        .find_map(|r| match r {
            TxnOpResponse::Get(mut get) => Some(get.take_kvs()),
            _ => None,
        })
        .unwrap_or_default()
}

#[async_trait]
impl Store for EtcdStore {
    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut kv = self.kv.clone();
        let mut resp = self.call("get", kv.get(self.etcd_key(key), None)).await?;
        match resp.take_kvs().into_iter().next() {
            Some(found) => Ok(Some(self.convert(found)?)),
            None => Ok(None),
        }
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        self.range_list(prefix, start_after, limit, None).await
    }

    async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Revision,
    ) -> Result<ListResult> {
        self.range_list(prefix, start_after, limit, Some(revision))
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, value), fields(len = value.len()))]
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let k = self.etcd_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k, value.to_vec(), None)]);
        let mut kv = self.kv.clone();
        let resp = self.call("create", kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        let revision = header_revision("create", resp.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    #[tracing::instrument(level = "debug", skip(self, value), fields(len = value.len()))]
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        let k = self.etcd_key(key);
        // `version > 0`: etcd reports mod_revision 0 for an absent key, and an
        // update must never create one.
        let txn = Txn::new()
            .when([
                Compare::version(k.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(k.clone(), CompareOp::Equal, expected_revision),
            ])
            .and_then([TxnOp::put(
                k.clone(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(k, None)]);
        let mut kv = self.kv.clone();
        let resp = self.call("update", kv.txn(txn)).await?;
        if !resp.succeeded() {
            return match txn_get_kvs(resp.op_responses()).first() {
                Some(current) => Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected: expected_revision,
                    actual: current.mod_revision(),
                }),
                None => Err(StoreError::NotFound(key.to_owned())),
            };
        }
        let revision = header_revision("update", resp.header())?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(put) => put.prev_key().map(|prev| prev.create_revision()),
                _ => None,
            })
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "etcd updated {key:?} but returned no previous value"
                ))
            })?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn delete(&self, key: &str, expected_revision: Option<Revision>) -> Result<KeyValue> {
        let k = self.etcd_key(key);
        let mut compares = vec![Compare::version(k.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected_revision {
            compares.push(Compare::mod_revision(k.clone(), CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                k.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(k, None)]);
        let mut kv = self.kv.clone();
        let resp = self.call("delete", kv.txn(txn)).await?;
        if !resp.succeeded() {
            return match (txn_get_kvs(resp.op_responses()).first(), expected_revision) {
                (Some(current), Some(expected)) => Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    actual: current.mod_revision(),
                }),
                _ => Err(StoreError::NotFound(key.to_owned())),
            };
        }
        let revision = header_revision("delete", resp.header())?;
        let prev = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Delete(mut del) => del.take_prev_kvs().into_iter().next(),
                _ => None,
            })
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "etcd deleted {key:?} but returned no previous value"
                ))
            })?;
        let mut deleted = self.convert(prev)?;
        deleted.mod_revision = revision;
        Ok(deleted)
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let after_revision = after_revision.max(0);
        let full_prefix = self.etcd_key(prefix);
        let end = prefix_range_end(&full_prefix);
        let start = if full_prefix.is_empty() {
            vec![0]
        } else {
            full_prefix
        };
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(after_revision + 1)
            .with_prev_key();
        let mut client = self.watch.clone();
        let etcd = self
            .call("watch", client.watch(start, Some(options)))
            .await?;
        let mut state = WatchState {
            etcd,
            prefix: self.prefix.clone(),
            last_revision: after_revision,
            pending: VecDeque::new(),
            failure: None,
            ended: false,
        };

        // etcd first confirms the watch (or refuses it).
        let created = loop {
            let resp = self
                .call("watch", state.etcd.message())
                .await?
                .ok_or_else(|| StoreError::Unavailable("etcd closed the new watch".to_owned()))?;
            if resp.created() {
                break resp;
            }
            debug!(
                watch_id = resp.watch_id(),
                "ignoring watch response before creation"
            );
        };
        state.absorb(&created)?;
        let current = header_revision("watch", created.header())?;

        // A watch that must replay history: find out now whether that history
        // is gone, so the caller gets `Compacted` from this call.
        if after_revision < current {
            let mut kv = self.kv.clone();
            let probe = GetOptions::new()
                .with_revision(after_revision + 1)
                .with_count_only();
            match self
                .call("watch", kv.get(self.probe_key(), Some(probe)))
                .await
            {
                Ok(_) => {}
                Err(err) if err.is_compacted() => {
                    // etcd cancels the watch with its compact revision within
                    // one watcher sync period (100 ms). Should the watch have
                    // been created before a racing compaction instead, this
                    // is simply its first batch of events.
                    if let Ok(Ok(Some(resp))) =
                        tokio::time::timeout(self.request_timeout, state.etcd.message()).await
                    {
                        state.absorb(&resp)?;
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }

        Ok(futures::stream::unfold(state, WatchState::next).boxed())
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn current_revision(&self) -> Result<Revision> {
        let mut kv = self.kv.clone();
        let options = GetOptions::new().with_count_only();
        let resp = self
            .call("current_revision", kv.get(self.probe_key(), Some(options)))
            .await?;
        Ok(header_revision("current_revision", resp.header())?)
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Ok(());
        }
        let mut kv = self.kv.clone();
        match self.call("compact", kv.compact(revision, None)).await {
            Ok(_) => Ok(()),
            // Already compacted at or beyond `revision`: nothing left to do.
            Err(err) if err.is_compacted() => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// A running watch: the etcd stream, and events taken from it but not yet
/// handed out.
struct WatchState {
    etcd: etcd_client::WatchStream,
    prefix: Vec<u8>,
    /// The revision of the last event taken from etcd (or the start point).
    last_revision: Revision,
    /// Events of the last etcd response, in order. etcd responses are small
    /// (at most one sync batch), so this is bounded by what etcd sends at once.
    pending: VecDeque<WatchEvent>,
    /// The error to hand out once `pending` is drained.
    failure: Option<StoreError>,
    ended: bool,
}

impl WatchState {
    /// Takes one etcd response in: its events are queued in order, a
    /// cancellation becomes an error.
    fn absorb(&mut self, resp: &WatchResponse) -> Result<()> {
        if resp.compact_revision() != 0 {
            return Err(StoreError::Compacted {
                requested: self.last_revision,
                oldest: resp.compact_revision(),
            });
        }
        if resp.canceled() {
            return Err(StoreError::Unavailable(format!(
                "etcd canceled the watch: {}",
                resp.cancel_reason()
            )));
        }
        for event in resp.events() {
            let event = convert_event(&self.prefix, event)?;
            self.last_revision = event.revision();
            self.pending.push_back(event);
        }
        Ok(())
    }

    /// The next stream item: queued events first, then the next etcd
    /// response; the stream ends after its first error.
    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if let Some(failure) = self.failure.take() {
                self.ended = true;
                return Some((Err(failure), self));
            }
            if self.ended {
                return None;
            }
            match self.etcd.message().await {
                Ok(Some(resp)) => {
                    if let Err(failure) = self.absorb(&resp) {
                        self.failure = Some(failure);
                    }
                }
                Ok(None) => {
                    self.failure = Some(StoreError::Unavailable(
                        "etcd closed the watch stream".to_owned(),
                    ))
                }
                Err(err) => {
                    warn!(error = %err, revision = self.last_revision, "etcd watch failed");
                    self.failure =
                        Some(StoreError::Unavailable(format!("etcd watch failed: {err}")))
                }
            }
        }
    }
}

/// An etcd watch event as a [`WatchEvent`]: a delete carries the last value
/// (from `prev_kv`) and the revision of the deletion.
fn convert_event(prefix: &[u8], event: &etcd_client::Event) -> Result<WatchEvent> {
    let kv = event
        .kv()
        .ok_or_else(|| StoreError::Corrupt("etcd sent a watch event without a key".to_owned()))?;
    let prev = event
        .prev_kv()
        .map(|prev| convert_kv(prefix, prev.clone()))
        .transpose()?;
    Ok(match event.event_type() {
        EventType::Put => WatchEvent {
            kind: EventKind::Put,
            kv: convert_kv(prefix, kv.clone())?,
            prev,
        },
        EventType::Delete => {
            // etcd's delete event holds only the key and the deletion
            // revision; the last value comes from `prev_kv` (absent only if
            // it was compacted away meanwhile).
            let (value, create_revision) = prev
                .as_ref()
                .map(|p| (p.value.clone(), p.create_revision))
                .unwrap_or_default();
            WatchEvent {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: strip_prefix(prefix, kv.key().to_vec())?,
                    value,
                    create_revision,
                    mod_revision: kv.mod_revision(),
                },
                prev,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_end_increments_the_last_byte() {
        assert_eq!(
            prefix_range_end(b"/registry/pods/"),
            b"/registry/pods0".to_vec()
        );
        assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
    }

    #[test]
    fn prefix_range_end_of_an_empty_or_all_ff_prefix_is_the_end_of_the_key_space() {
        assert_eq!(prefix_range_end(b""), vec![0]);
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn keys_outside_the_store_prefix_are_reported_as_corrupt() {
        assert!(matches!(
            strip_prefix(b"/skiff/", b"/other/x".to_vec()),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            strip_prefix(b"/skiff/", b"/skiff/x".to_vec()),
            Ok("x".to_owned())
        );
    }

    #[test]
    fn non_utf8_keys_are_reported_as_corrupt() {
        assert!(matches!(
            strip_prefix(b"", vec![0xff, 0xfe]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
