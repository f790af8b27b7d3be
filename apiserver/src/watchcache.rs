//! The watch cache: one store watch feeds an in-memory window of recent
//! events that every API watcher is served from, so each change is decoded
//! once however many clients watch.
//!
//! A watcher asking for a revision inside the window is replayed from it; an
//! older revision falls back to the store's own history (embedded log or
//! etcd), and if that is gone too the watcher gets 410 Expired. Subscribing
//! happens under the same lock the feeder publishes under, so nothing falls
//! between the replay and the live stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::store::{EventKind, Revision, Store, StoreError, WatchEvent};

/// The type of an API watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One decoded change.
#[derive(Debug)]
pub struct CachedEvent {
    pub revision: Revision,
    pub key: String,
    pub kind: EventType,
    /// The object after the change (for deletions: its last state) as
    /// stored: its resourceVersion is `revision`, which `object` itself
    /// need not carry (use [`object_json`](Self::object_json) or
    /// [`object_with_revision`](Self::object_with_revision) to serve it).
    pub object: Arc<Value>,
    /// The object before the change, when there was one (as `object`, its
    /// resourceVersion need not be set).
    pub prev: Option<Arc<Value>>,
    /// `object` serialized once, shared by every JSON watcher.
    json: std::sync::OnceLock<Vec<u8>>,
    /// Its `PartialObjectMetadata`, serialized once for metadata watchers.
    metadata_json: std::sync::OnceLock<Vec<u8>>,
}

/// Decodes stored bytes into an object carrying its resourceVersion.
pub fn decode_object(value: &[u8], revision: Revision) -> Result<Value, StoreError> {
    let mut obj: Value =
        serde_json::from_slice(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    set_resource_version(&mut obj, revision);
    Ok(obj)
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    if let Some(o) = obj.as_object_mut() {
        let meta = o
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(m) = meta.as_object_mut() {
            m.insert(
                "resourceVersion".to_string(),
                Value::String(revision.to_string()),
            );
        }
    }
}

fn decode_stored(value: &[u8]) -> Result<Value, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl CachedEvent {
    pub fn from_store(ev: &WatchEvent) -> Result<Self, StoreError> {
        Self::from_store_with(ev, None, None)
    }

    /// Like [`from_store`](Self::from_store), with objects already decoded:
    /// the previous one (the window's newest event for the key, when its
    /// revision is `ev.prev`'s) and the new one (the object the API server
    /// wrote, when these are its bytes). They are shared instead of decoded
    /// again.
    fn from_store_with(
        ev: &WatchEvent,
        known_prev: Option<Arc<Value>>,
        written: Option<Arc<Value>>,
    ) -> Result<Self, StoreError> {
        let revision = ev.revision();
        let prev = match (&ev.prev, known_prev) {
            (Some(_), Some(known)) => Some(known),
            (Some(p), None) => Some(Arc::new(decode_stored(&p.value)?)),
            (None, _) => None,
        };
        // A deletion carries the last state, which is `prev` when known.
        let object = match (&ev.kind, &ev.prev, &prev, written) {
            (EventKind::Put, _, _, Some(written)) => written,
            (EventKind::Delete, Some(p), Some(known), _) if p.value == ev.kv.value => known.clone(),
            _ => Arc::new(decode_stored(&ev.kv.value)?),
        };
        let kind = match ev.kind {
            EventKind::Delete => EventType::Deleted,
            EventKind::Put if ev.kv.create_revision == ev.kv.mod_revision => EventType::Added,
            EventKind::Put => EventType::Modified,
        };
        Ok(Self {
            revision,
            key: ev.kv.key.clone(),
            kind,
            object,
            prev,
            json: std::sync::OnceLock::new(),
            metadata_json: std::sync::OnceLock::new(),
        })
    }

    /// The object as JSON bytes with its resourceVersion, serialized on
    /// first use.
    pub fn object_json(&self) -> &[u8] {
        self.json.get_or_init(|| {
            serde_json::to_vec(&crate::objects::WithRevision {
                object: &self.object,
                revision: Some(self.revision),
            })
            .unwrap_or_default()
        })
    }

    /// The object's `PartialObjectMetadata` as JSON bytes, serialized on
    /// first use.
    pub fn metadata_json(&self) -> &[u8] {
        self.metadata_json.get_or_init(|| {
            serde_json::to_vec(&crate::objects::PartialMetadata {
                object: &self.object,
                revision: Some(self.revision),
            })
            .unwrap_or_default()
        })
    }

    /// A copy of the object with its resourceVersion set.
    pub fn object_with_revision(&self) -> Value {
        let mut obj = (*self.object).clone();
        set_resource_version(&mut obj, self.revision);
        obj
    }
}

/// Objects the API server is writing, already decoded, by store key: the
/// feeder takes the one whose stored bytes an event carries instead of
/// decoding them again.
/// Objects handed over by writes, by key, until their event arrives.
type Handoffs = HashMap<String, Vec<(Bytes, Arc<Value>)>>;
type Pending = Mutex<Handoffs>;

/// More pending writes than this means events were missed (the feeder
/// restarted past them): the table is dropped rather than grown.
const MAX_PENDING_KEYS: usize = 16_384;

/// A write announced to the cache with [`WatchCache::expect_write`]. Unless
/// [`written`](Self::written) is called (the store accepted it), dropping it
/// withdraws the object.
pub struct PendingWrite {
    pending: Arc<Pending>,
    key: String,
    object: Arc<Value>,
    armed: bool,
}

impl PendingWrite {
    /// The store accepted the write: its event will take the object.
    pub fn written(mut self) {
        self.armed = false;
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = p.get_mut(&self.key) {
            list.retain(|(_, o)| !Arc::ptr_eq(o, &self.object));
            if list.is_empty() {
                p.remove(&self.key);
            }
        }
    }
}

struct Window {
    events: VecDeque<Arc<CachedEvent>>,
    /// Events with a revision above this are all in `events` (or still coming).
    oldest: Revision,
    /// The newest revision the cache has seen.
    newest: Revision,
    /// The newest event of each key still in `events`, so the next change
    /// of that key reuses its decoded object as `prev`.
    latest: HashMap<String, Arc<CachedEvent>>,
    sender: broadcast::Sender<Arc<CachedEvent>>,
}

fn lock_pending(p: &Pending) -> std::sync::MutexGuard<'_, Handoffs> {
    p.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cache. Cheap to clone.
#[derive(Clone)]
pub struct WatchCache {
    store: Arc<dyn Store>,
    window: Arc<Mutex<Window>>,
    pending: Arc<Pending>,
    capacity: usize,
}

/// Where a watcher's events come from.
pub enum Subscription {
    /// Replay from the window, then live events.
    Cached {
        backlog: Vec<Arc<CachedEvent>>,
        live: broadcast::Receiver<Arc<CachedEvent>>,
    },
    /// The store's own history stream (for revisions older than the window).
    Store(crate::store::WatchStream),
}

fn lock(w: &Mutex<Window>) -> std::sync::MutexGuard<'_, Window> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl WatchCache {
    /// Starts feeding the cache from `prefix` of the store.
    pub async fn start(
        store: Arc<dyn Store>,
        prefix: &str,
        capacity: usize,
    ) -> Result<Self, StoreError> {
        let start = store.current_revision().await?;
        let (sender, _) = broadcast::channel(capacity.max(1024));
        let cache = Self {
            store: store.clone(),
            window: Arc::new(Mutex::new(Window {
                events: VecDeque::with_capacity(capacity),
                oldest: start,
                newest: start,
                latest: HashMap::new(),
                sender,
            })),
            pending: Arc::default(),
            capacity: capacity.max(1),
        };
        let feeder = cache.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move { feeder.feed(prefix).await });
        Ok(cache)
    }

    /// The newest revision the cache has applied.
    pub fn newest(&self) -> Revision {
        lock(&self.window).newest
    }

    async fn feed(self, prefix: String) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let from = self.newest();
            match self.store.watch(&prefix, from).await {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(100);
                    while let Some(item) = stream.next().await {
                        let decoded = item.and_then(|ev| {
                            let known = ev
                                .prev
                                .as_ref()
                                .and_then(|p| self.latest_object(&ev.kv.key, p.mod_revision));
                            let written = match ev.kind {
                                EventKind::Put => self.take_written(&ev.kv.key, &ev.kv.value),
                                EventKind::Delete => None,
                            };
                            CachedEvent::from_store_with(&ev, known, written)
                        });
                        match decoded {
                            Ok(ev) => self.publish(Arc::new(ev)),
                            Err(e) => {
                                tracing::warn!(error = %e, "watch cache feed failed; restarting");
                                break;
                            }
                        }
                    }
                }
                Err(StoreError::Compacted { oldest, .. }) => {
                    // History we had not seen is gone: watchers from before it must relist.
                    tracing::warn!(
                        oldest,
                        "watch cache fell behind compaction; resetting window"
                    );
                    let mut w = lock(&self.window);
                    w.events.clear();
                    w.latest.clear();
                    w.oldest = oldest;
                    w.newest = oldest;
                    // Close live receivers so their watchers end and clients relist.
                    let (sender, _) = broadcast::channel(self.capacity.max(1024));
                    w.sender = sender;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache cannot watch the store; retrying")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn publish(&self, ev: Arc<CachedEvent>) {
        let mut w = lock(&self.window);
        if ev.revision <= w.newest {
            return;
        }
        w.newest = ev.revision;
        if w.events.len() == self.capacity {
            if let Some(old) = w.events.pop_front() {
                w.oldest = old.revision;
                if w.latest.get(&old.key).is_some_and(|l| Arc::ptr_eq(l, &old)) {
                    w.latest.remove(&old.key);
                }
            }
        }
        w.events.push_back(ev.clone());
        if ev.kind == EventType::Deleted {
            w.latest.remove(&ev.key);
        } else {
            w.latest.insert(ev.key.clone(), ev.clone());
        }
        let _ = w.sender.send(ev);
    }

    /// Announces that `object`, stored as `bytes`, is being written to
    /// `key`: the change's event then shares it instead of decoding `bytes`.
    /// Call [`PendingWrite::written`] once the store accepted the write.
    pub fn expect_write(&self, key: &str, bytes: &Bytes, object: &Arc<Value>) -> PendingWrite {
        let mut p = lock_pending(&self.pending);
        if p.len() >= MAX_PENDING_KEYS && !p.contains_key(key) {
            p.clear();
        }
        p.entry(key.to_string())
            .or_default()
            .push((bytes.clone(), object.clone()));
        PendingWrite {
            pending: self.pending.clone(),
            key: key.to_string(),
            object: object.clone(),
            armed: true,
        }
    }

    /// The announced object whose stored bytes are `value`, if any.
    fn take_written(&self, key: &str, value: &Bytes) -> Option<Arc<Value>> {
        let mut p = lock_pending(&self.pending);
        let list = p.get_mut(key)?;
        let at = list.iter().position(|(b, _)| b == value);
        let found = at.map(|i| list.swap_remove(i).1);
        if list.is_empty() {
            p.remove(key);
        }
        found
    }

    /// The newest object of `key` the window holds, with its revision
    /// (without resourceVersion set). It may lag the store, never lead it.
    pub fn latest(&self, key: &str) -> Option<(Revision, Arc<Value>)> {
        let w = lock(&self.window);
        w.latest.get(key).map(|e| (e.revision, e.object.clone()))
    }

    /// The decoded object of `key` at `revision`, if it is the newest
    /// change of that key in the window.
    fn latest_object(&self, key: &str, revision: Revision) -> Option<Arc<Value>> {
        let w = lock(&self.window);
        w.latest
            .get(key)
            .filter(|e| e.revision == revision)
            .map(|e| e.object.clone())
    }

    /// Subscribes to changes after `after` under `prefix`.
    pub async fn subscribe(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<Subscription, StoreError> {
        {
            let w = lock(&self.window);
            if after >= w.oldest {
                let backlog = w
                    .events
                    .iter()
                    .filter(|e| e.revision > after && e.key.starts_with(prefix))
                    .cloned()
                    .collect();
                return Ok(Subscription::Cached {
                    backlog,
                    live: w.sender.subscribe(),
                });
            }
        }
        Ok(Subscription::Store(self.store.watch(prefix, after).await?))
    }
}
