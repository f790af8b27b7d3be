//! The embedded store: durable key-value storage in one redb file under the
//! data dir, with no external process.
//!
//! Writes go through one committer thread that groups every request waiting
//! in its queue into a single redb write transaction, so many concurrent
//! writers share one fsync (group commit). A write is acknowledged only after
//! its transaction committed with immediate durability, so an acknowledged
//! write survives `kill -9`. Each committed change is also appended to a log
//! table, from which watches replay history; the log is trimmed to a bounded
//! window (`history`), and older revisions answer [`StoreError::Compacted`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{
    EventKind, KeyValue, ListResult, Result, Revision, Store, StoreError, WatchEvent, WatchStream,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Settings of the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// The database file, created when absent.
    pub path: PathBuf,
    /// How many revisions of history watches can replay.
    pub history: u64,
    /// The most write requests grouped into one transaction.
    pub max_batch: usize,
}

impl EmbeddedConfig {
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            history: 100_000,
            max_batch: 512,
        }
    }
}

enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<KeyValue>>,
}

/// Live state shared between the committer and watchers. The committer
/// publishes under this lock, so a watcher that subscribes under it sees
/// every later event and can replay everything up to `revision` from the log.
struct Live {
    revision: Revision,
    compacted: Revision,
    sender: broadcast::Sender<Arc<WatchEvent>>,
}

/// A [`Store`] kept in a local redb database.
pub struct EmbeddedStore {
    db: Arc<Database>,
    writes: mpsc::Sender<WriteRequest>,
    live: Arc<Mutex<Live>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn lock(live: &Mutex<Live>) -> std::sync::MutexGuard<'_, Live> {
    // A poisoned lock only means a panic elsewhere; the data is a counter and a sender.
    live.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stored value layout: create_revision (8 bytes BE), mod_revision (8), value.
fn encode_kv(create: Revision, modr: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create.to_be_bytes());
    out.extend_from_slice(&modr.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode_kv(key: &str, raw: &[u8]) -> Result<KeyValue> {
    if raw.len() < 16 {
        return Err(StoreError::Corrupt(format!(
            "value of {key:?} is {} bytes",
            raw.len()
        )));
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&raw[0..8]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[8..16]);
    Ok(KeyValue {
        key: key.to_string(),
        value: Bytes::copy_from_slice(&raw[16..]),
        create_revision: i64::from_be_bytes(a),
        mod_revision: i64::from_be_bytes(b),
    })
}

/// Log entry layout: kind (1 byte: 0 put, 1 delete), key length (4 BE), key,
/// current value (create/mod revisions + bytes, see [`encode_kv`]), then
/// optionally the previous value in the same layout prefixed by its length.
fn encode_event(ev: &WatchEvent) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(match ev.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    out.extend_from_slice(&(ev.kv.key.len() as u32).to_be_bytes());
    out.extend_from_slice(ev.kv.key.as_bytes());
    let cur = encode_kv(ev.kv.create_revision, ev.kv.mod_revision, &ev.kv.value);
    out.extend_from_slice(&(cur.len() as u32).to_be_bytes());
    out.extend_from_slice(&cur);
    if let Some(prev) = &ev.prev {
        let p = encode_kv(prev.create_revision, prev.mod_revision, &prev.value);
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(&p);
    }
    out
}

fn decode_event(raw: &[u8]) -> Result<WatchEvent> {
    let corrupt = || StoreError::Corrupt("truncated log entry".to_string());
    let take_len = |at: usize| -> Result<usize> {
        let s = raw.get(at..at + 4).ok_or_else(corrupt)?;
        let mut b = [0u8; 4];
        b.copy_from_slice(s);
        Ok(u32::from_be_bytes(b) as usize)
    };
    let kind = match raw.first() {
        Some(0) => EventKind::Put,
        Some(1) => EventKind::Delete,
        _ => return Err(corrupt()),
    };
    let klen = take_len(1)?;
    let key = std::str::from_utf8(raw.get(5..5 + klen).ok_or_else(corrupt)?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .to_string();
    let mut at = 5 + klen;
    let clen = take_len(at)?;
    let kv = decode_kv(&key, raw.get(at + 4..at + 4 + clen).ok_or_else(corrupt)?)?;
    at += 4 + clen;
    let prev = if at < raw.len() {
        let plen = take_len(at)?;
        Some(decode_kv(
            &key,
            raw.get(at + 4..at + 4 + plen).ok_or_else(corrupt)?,
        )?)
    } else {
        None
    };
    Ok(WatchEvent { kind, kv, prev })
}

impl EmbeddedStore {
    /// Opens (or creates) the database and starts the committer thread.
    pub async fn open(config: EmbeddedConfig) -> Result<Self> {
        let path = config.path.clone();
        let db = tokio::task::spawn_blocking(move || -> Result<Database> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(unavailable)?;
            }
            let db = Database::create(&path).map_err(unavailable)?;
            let txn = db.begin_write().map_err(unavailable)?;
            {
                txn.open_table(KV).map_err(unavailable)?;
                txn.open_table(LOG).map_err(unavailable)?;
                txn.open_table(META).map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(db)
        })
        .await
        .map_err(unavailable)??;
        let db = Arc::new(db);
        let (revision, compacted) = {
            let txn = db.begin_read().map_err(unavailable)?;
            let meta = txn.open_table(META).map_err(unavailable)?;
            let get = |k: &str| -> Result<u64> {
                Ok(meta
                    .get(k)
                    .map_err(unavailable)?
                    .map(|v| v.value())
                    .unwrap_or(0))
            };
            (
                get(META_REVISION)? as Revision,
                get(META_COMPACTED)? as Revision,
            )
        };
        let (sender, _) = broadcast::channel(4096);
        let live = Arc::new(Mutex::new(Live {
            revision,
            compacted,
            sender,
        }));
        let (writes, rx) = mpsc::channel(4 * config.max_batch);
        let committer = Committer {
            db: db.clone(),
            live: live.clone(),
            history: config.history.max(1),
            max_batch: config.max_batch.max(1),
            revision,
            compacted,
        };
        std::thread::Builder::new()
            .name("skiff-store-commit".to_string())
            .spawn(move || committer.run(rx))
            .map_err(unavailable)?;
        tracing::info!(revision, path = %config.path.display(), "embedded store opened");
        Ok(Self { db, writes, live })
    }

    async fn write(&self, op: WriteOp) -> Result<KeyValue> {
        let (reply, rx) = oneshot::channel();
        self.writes
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store committer stopped".to_string()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store committer stopped".to_string()))?
    }

    fn read_log(
        db: &Database,
        after: Revision,
        upto: Revision,
        prefix: &str,
    ) -> Result<Vec<WatchEvent>> {
        let txn = db.begin_read().map_err(unavailable)?;
        let log = txn.open_table(LOG).map_err(unavailable)?;
        let mut out = Vec::new();
        let start = (after + 1).max(0) as u64;
        for item in log
            .range(start..=(upto.max(0) as u64))
            .map_err(unavailable)?
        {
            let (_, v) = item.map_err(unavailable)?;
            let ev = decode_event(v.value())?;
            if ev.kv.key.starts_with(prefix) {
                out.push(ev);
            }
        }
        Ok(out)
    }
}

struct Committer {
    db: Arc<Database>,
    live: Arc<Mutex<Live>>,
    history: u64,
    max_batch: usize,
    revision: Revision,
    compacted: Revision,
}

impl Committer {
    fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<WriteRequest>) {
        let start_revision = self.revision;
        let start_compacted = self.compacted;
        match self.apply(&batch) {
            Ok((results, events)) => {
                {
                    let mut live = lock(&self.live);
                    live.revision = self.revision;
                    live.compacted = self.compacted;
                    for ev in events {
                        // No receivers is fine: nobody watches right now.
                        let _ = live.sender.send(Arc::new(ev));
                    }
                }
                for (req, res) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(res);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded store commit failed");
                self.revision = start_revision;
                self.compacted = start_compacted;
                for req in batch {
                    let _ = req.reply.send(Err(e.clone()));
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn apply(
        &mut self,
        batch: &[WriteRequest],
    ) -> Result<(Vec<Result<KeyValue>>, Vec<WatchEvent>)> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        let mut results = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        {
            let mut kv = txn.open_table(KV).map_err(unavailable)?;
            let mut log = txn.open_table(LOG).map_err(unavailable)?;
            for req in batch {
                let current =
                    |kv: &redb::Table<&str, &[u8]>, key: &str| -> Result<Option<KeyValue>> {
                        match kv.get(key).map_err(unavailable)? {
                            Some(v) => Ok(Some(decode_kv(key, v.value())?)),
                            None => Ok(None),
                        }
                    };
                let outcome = match &req.op {
                    WriteOp::Create { key, value } => match current(&kv, key)? {
                        Some(_) => Err(StoreError::AlreadyExists(key.clone())),
                        None => {
                            let rev = self.revision + 1;
                            let new = KeyValue {
                                key: key.clone(),
                                value: value.clone(),
                                create_revision: rev,
                                mod_revision: rev,
                            };
                            Ok((
                                new.clone(),
                                WatchEvent {
                                    kind: EventKind::Put,
                                    kv: new,
                                    prev: None,
                                },
                            ))
                        }
                    },
                    WriteOp::Update {
                        key,
                        value,
                        expected,
                    } => match current(&kv, key)? {
                        None => Err(StoreError::NotFound(key.clone())),
                        Some(old) if old.mod_revision != *expected => Err(StoreError::Conflict {
                            key: key.clone(),
                            expected: *expected,
                            actual: old.mod_revision,
                        }),
                        Some(old) => {
                            let new = KeyValue {
                                key: key.clone(),
                                value: value.clone(),
                                create_revision: old.create_revision,
                                mod_revision: self.revision + 1,
                            };
                            Ok((
                                new.clone(),
                                WatchEvent {
                                    kind: EventKind::Put,
                                    kv: new,
                                    prev: Some(old),
                                },
                            ))
                        }
                    },
                    WriteOp::Delete { key, expected } => match current(&kv, key)? {
                        None => Err(StoreError::NotFound(key.clone())),
                        Some(old) if expected.is_some_and(|e| e != old.mod_revision) => {
                            Err(StoreError::Conflict {
                                key: key.clone(),
                                expected: expected.unwrap_or_default(),
                                actual: old.mod_revision,
                            })
                        }
                        Some(old) => {
                            let gone = KeyValue {
                                mod_revision: self.revision + 1,
                                ..old.clone()
                            };
                            Ok((
                                gone.clone(),
                                WatchEvent {
                                    kind: EventKind::Delete,
                                    kv: gone,
                                    prev: Some(old),
                                },
                            ))
                        }
                    },
                    WriteOp::Compact { revision } => {
                        let target = (*revision).min(self.revision);
                        if target > self.compacted {
                            self.trim(&mut log, target)?;
                        }
                        results.push(Ok(KeyValue {
                            key: String::new(),
                            value: Bytes::new(),
                            create_revision: 0,
                            mod_revision: self.compacted,
                        }));
                        continue;
                    }
                };
                match outcome {
                    Ok((result, event)) => {
                        self.revision += 1;
                        match event.kind {
                            EventKind::Put => {
                                let enc = encode_kv(
                                    result.create_revision,
                                    result.mod_revision,
                                    &result.value,
                                );
                                kv.insert(result.key.as_str(), enc.as_slice())
                                    .map_err(unavailable)?;
                            }
                            EventKind::Delete => {
                                kv.remove(result.key.as_str()).map_err(unavailable)?;
                            }
                        }
                        log.insert(self.revision as u64, encode_event(&event).as_slice())
                            .map_err(unavailable)?;
                        events.push(event);
                        results.push(Ok(result));
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            // Keep the replayable history bounded.
            let floor = self.revision - self.history as i64;
            if floor > self.compacted + (self.history as i64 / 8).max(1) {
                self.trim(&mut log, floor)?;
            }
            let mut meta = txn.open_table(META).map_err(unavailable)?;
            meta.insert(META_REVISION, self.revision as u64)
                .map_err(unavailable)?;
            meta.insert(META_COMPACTED, self.compacted.max(0) as u64)
                .map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;
        Ok((results, events))
    }

    /// Removes log entries at and below `upto`.
    fn trim(&mut self, log: &mut redb::Table<u64, &[u8]>, upto: Revision) -> Result<()> {
        let from = self.compacted.max(0) as u64;
        log.retain_in(from..=(upto as u64), |_, _| false)
            .map_err(unavailable)?;
        self.compacted = upto;
        Ok(())
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let db = self.db.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(unavailable)?;
            let kv = txn.open_table(KV).map_err(unavailable)?;
            let v = kv.get(key.as_str()).map_err(unavailable)?;
            v.map(|v| decode_kv(&key, v.value())).transpose()
        })
        .await
        .map_err(unavailable)?
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        let db = self.db.clone();
        let live = self.live.clone();
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(unavailable)?;
            // The snapshot revision: what was committed when this read began.
            let meta = txn.open_table(META).map_err(unavailable)?;
            let revision = meta
                .get(META_REVISION)
                .map_err(unavailable)?
                .map(|v| v.value() as Revision)
                .unwrap_or_else(|| lock(&live).revision);
            let kv = txn.open_table(KV).map_err(unavailable)?;
            // Start at the prefix, or after `start_after` when that lies beyond it.
            let start = match &start_after {
                Some(s) if s.as_str() > prefix.as_str() => s.clone(),
                _ => prefix.clone(),
            };
            let mut items = Vec::new();
            let mut more = false;
            for item in kv.range(start.as_str()..).map_err(unavailable)? {
                let (k, v) = item.map_err(unavailable)?;
                let key = k.value();
                if !key.starts_with(&prefix) {
                    break;
                }
                if start_after.as_deref() == Some(key) {
                    continue;
                }
                if limit > 0 && items.len() == limit {
                    more = true;
                    break;
                }
                items.push(decode_kv(key, v.value())?);
            }
            Ok(ListResult {
                items,
                revision,
                more,
            })
        })
        .await
        .map_err(unavailable)?
    }

    async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Revision,
    ) -> Result<ListResult> {
        let db = self.db.clone();
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(unavailable)?;
            let meta = txn.open_table(META).map_err(unavailable)?;
            let read = |k: &str| -> Result<Revision> {
                Ok(meta
                    .get(k)
                    .map_err(unavailable)?
                    .map(|v| v.value() as Revision)
                    .unwrap_or(0))
            };
            let (now, compacted) = (read(META_REVISION)?, read(META_COMPACTED)?);
            if revision < compacted {
                return Err(StoreError::Compacted {
                    requested: revision,
                    oldest: compacted,
                });
            }
            // Today's keys, then every change after `revision` undone, oldest first wins.
            let kv = txn.open_table(KV).map_err(unavailable)?;
            let mut state = std::collections::BTreeMap::new();
            for item in kv.range(prefix.as_str()..).map_err(unavailable)? {
                let (k, v) = item.map_err(unavailable)?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                state.insert(k.value().to_string(), decode_kv(k.value(), v.value())?);
            }
            if revision < now {
                let log = txn.open_table(LOG).map_err(unavailable)?;
                let mut undone = std::collections::BTreeSet::new();
                for item in log
                    .range((revision + 1) as u64..=now as u64)
                    .map_err(unavailable)?
                {
                    let (_, v) = item.map_err(unavailable)?;
                    let ev = decode_event(v.value())?;
                    if !ev.kv.key.starts_with(&prefix) || !undone.insert(ev.kv.key.clone()) {
                        continue;
                    }
                    match (ev.kind, ev.prev) {
                        (_, Some(prev)) => {
                            state.insert(ev.kv.key.clone(), prev);
                        }
                        (_, None) => {
                            state.remove(&ev.kv.key);
                        }
                    }
                }
            }
            let mut items = Vec::new();
            let mut more = false;
            for (key, kv) in state {
                if start_after.as_deref().is_some_and(|s| key.as_str() <= s) {
                    continue;
                }
                if limit > 0 && items.len() == limit {
                    more = true;
                    break;
                }
                items.push(kv);
            }
            Ok(ListResult {
                items,
                revision: revision.min(now),
                more,
            })
        })
        .await
        .map_err(unavailable)?
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(WriteOp::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        self.write(WriteOp::Update {
            key: key.to_string(),
            value,
            expected: expected_revision,
        })
        .await
    }

    async fn delete(&self, key: &str, expected_revision: Option<Revision>) -> Result<KeyValue> {
        self.write(WriteOp::Delete {
            key: key.to_string(),
            expected: expected_revision,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let (rx, upto) = {
            let live = lock(&self.live);
            if after_revision < live.compacted {
                return Err(StoreError::Compacted {
                    requested: after_revision,
                    oldest: live.compacted,
                });
            }
            (live.sender.subscribe(), live.revision)
        };
        let db = self.db.clone();
        let prefix_owned = prefix.to_string();
        let backlog = {
            let db = db.clone();
            let prefix = prefix_owned.clone();
            tokio::task::spawn_blocking(move || Self::read_log(&db, after_revision, upto, &prefix))
                .await
                .map_err(unavailable)??
        };
        let state = WatchState {
            db,
            live: self.live.clone(),
            prefix: prefix_owned,
            pending: backlog.into(),
            rx,
            // The newest revision covered by the backlog.
            last: upto.max(after_revision),
            failed: false,
        };
        Ok(futures::stream::unfold(state, WatchState::next).boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(lock(&self.live).revision)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(WriteOp::Compact { revision }).await.map(|_| ())
    }
}

struct WatchState {
    db: Arc<Database>,
    live: Arc<Mutex<Live>>,
    prefix: String,
    pending: VecDeque<WatchEvent>,
    rx: broadcast::Receiver<Arc<WatchEvent>>,
    /// The newest revision already delivered or queued.
    last: Revision,
    failed: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some((Ok(ev), self));
            }
            match self.rx.recv().await {
                Ok(ev) => {
                    if ev.revision() <= self.last {
                        continue;
                    }
                    self.last = ev.revision();
                    if ev.kv.key.starts_with(&self.prefix) {
                        return Some((Ok((*ev).clone()), self));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the live channel: catch up from the log.
                    let (rx, upto, compacted) = {
                        let live = lock(&self.live);
                        (live.sender.subscribe(), live.revision, live.compacted)
                    };
                    if self.last < compacted {
                        self.failed = true;
                        return Some((
                            Err(StoreError::Compacted {
                                requested: self.last,
                                oldest: compacted,
                            }),
                            self,
                        ));
                    }
                    self.rx = rx;
                    let (db, after, prefix) = (self.db.clone(), self.last, self.prefix.clone());
                    let res = tokio::task::spawn_blocking(move || {
                        Self::catch_up(&db, after, upto, &prefix)
                    })
                    .await;
                    match res {
                        Ok(Ok(evs)) => {
                            self.pending = evs.into();
                            self.last = upto;
                        }
                        Ok(Err(e)) => {
                            self.failed = true;
                            return Some((Err(e), self));
                        }
                        Err(e) => {
                            self.failed = true;
                            return Some((Err(unavailable(e)), self));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn catch_up(
        db: &Database,
        after: Revision,
        upto: Revision,
        prefix: &str,
    ) -> Result<Vec<WatchEvent>> {
        EmbeddedStore::read_log(db, after, upto, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_round_trip_with_and_without_a_previous_value() {
        let kv = KeyValue {
            key: "/a".into(),
            value: Bytes::from_static(b"v2"),
            create_revision: 1,
            mod_revision: 2,
        };
        let with_prev = WatchEvent {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev: Some(KeyValue {
                value: Bytes::from_static(b"v1"),
                mod_revision: 1,
                ..kv.clone()
            }),
        };
        assert_eq!(decode_event(&encode_event(&with_prev)), Ok(with_prev));
        let without = WatchEvent {
            kind: EventKind::Delete,
            kv,
            prev: None,
        };
        assert_eq!(decode_event(&encode_event(&without)), Ok(without));
    }

    #[test]
    fn a_truncated_log_entry_is_reported_as_corrupt() {
        assert!(matches!(
            decode_event(&[0, 0, 0, 0, 9, b'a']),
            Err(StoreError::Corrupt(_))
        ));
    }
}
