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
    /// The object after the change (for deletions: its last state), with
    /// `metadata.resourceVersion` set to `revision`.
    pub object: Arc<Value>,
    /// The object before the change, when there was one.
    pub prev: Option<Arc<Value>>,
    /// `object` serialized once, shared by every JSON watcher.
    json: std::sync::OnceLock<Vec<u8>>,
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

impl CachedEvent {
    pub fn from_store(ev: &WatchEvent) -> Result<Self, StoreError> {
        Self::from_store_with(ev, None)
    }

    /// Like [`from_store`](Self::from_store), with the previous object
    /// already decoded (the window's newest event for the key, when its
    /// revision is `ev.prev`'s): it is shared instead of decoded again.
    fn from_store_with(
        ev: &WatchEvent,
        known_prev: Option<Arc<Value>>,
    ) -> Result<Self, StoreError> {
        let revision = ev.revision();
        let prev = match (&ev.prev, known_prev) {
            (Some(_), Some(known)) => Some(known),
            (Some(p), None) => Some(Arc::new(decode_object(&p.value, p.mod_revision)?)),
            (None, _) => None,
        };
        // A deletion carries the last state, which is `prev` when known.
        let object = match (&ev.kind, &ev.prev, &prev) {
            (EventKind::Delete, Some(p), Some(known)) if p.value == ev.kv.value => {
                let mut obj = (**known).clone();
                set_resource_version(&mut obj, revision);
                Arc::new(obj)
            }
            _ => Arc::new(decode_object(&ev.kv.value, revision)?),
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
        })
    }

    /// The object as JSON bytes, serialized on first use.
    pub fn object_json(&self) -> &[u8] {
        self.json
            .get_or_init(|| serde_json::to_vec(&*self.object).unwrap_or_default())
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

/// The cache. Cheap to clone.
#[derive(Clone)]
pub struct WatchCache {
    store: Arc<dyn Store>,
    window: Arc<Mutex<Window>>,
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
                            CachedEvent::from_store_with(&ev, known)
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
