//! An in-memory view of namespaces, fed by the watch cache, so admission can
//! check "does the namespace exist, and is it terminating" without a store
//! read on every create (as kube-apiserver's namespace lifecycle admission
//! does with an informer). A miss falls back to the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;

use crate::store::{Store, StoreError};
use crate::watchcache::{decode_object, CachedEvent, EventType, Subscription, WatchCache};

const PREFIX: &str = "/registry/core/namespaces/";

/// What admission needs to know about a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Active,
    Terminating,
}

fn phase_of(obj: &serde_json::Value) -> Phase {
    if crate::objects::is_deleting(obj) {
        Phase::Terminating
    } else {
        Phase::Active
    }
}

/// The view. Cheap to clone.
#[derive(Clone, Default)]
pub struct NamespaceCache {
    known: Arc<RwLock<HashMap<String, Phase>>>,
}

impl NamespaceCache {
    /// Loads the namespaces and keeps following their changes.
    pub async fn start(store: Arc<dyn Store>, cache: WatchCache) -> Result<Self, StoreError> {
        let view = Self::default();
        let revision = view.load(store.as_ref()).await?;
        let feeder = view.clone();
        tokio::spawn(async move { feeder.follow(store, cache, revision).await });
        Ok(view)
    }

    /// The namespace's phase, if the view knows it.
    pub fn get(&self, name: &str) -> Option<Phase> {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }

    /// Records what a store read found, for namespaces the view has not seen yet.
    pub fn note(&self, name: &str, obj: Option<&serde_json::Value>) {
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        match obj {
            Some(o) => {
                known.insert(name.to_string(), phase_of(o));
            }
            None => {
                known.remove(name);
            }
        }
    }

    async fn load(&self, store: &dyn Store) -> Result<i64, StoreError> {
        let list = store.list(PREFIX, None, 0).await?;
        let mut fresh = HashMap::new();
        for kv in &list.items {
            let obj = decode_object(&kv.value, kv.mod_revision)?;
            if let Some(name) = kv.key.strip_prefix(PREFIX) {
                fresh.insert(name.to_string(), phase_of(&obj));
            }
        }
        *self.known.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(list.revision)
    }

    fn apply(&self, ev: &CachedEvent) {
        let Some(name) = ev.key.strip_prefix(PREFIX) else {
            return;
        };
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        match ev.kind {
            EventType::Deleted => {
                known.remove(name);
            }
            _ => {
                known.insert(name.to_string(), phase_of(&ev.object));
            }
        }
    }

    async fn follow(self, store: Arc<dyn Store>, cache: WatchCache, mut revision: i64) {
        loop {
            match cache.subscribe(PREFIX, revision).await {
                Ok(Subscription::Cached { backlog, mut live }) => {
                    for ev in backlog {
                        revision = ev.revision;
                        self.apply(&ev);
                    }
                    while let Ok(ev) = live.recv().await {
                        if ev.revision > revision && ev.key.starts_with(PREFIX) {
                            revision = ev.revision;
                            self.apply(&ev);
                        }
                    }
                }
                Ok(Subscription::Store(mut stream)) => {
                    while let Some(Ok(ev)) = stream.next().await {
                        if let Ok(ev) = CachedEvent::from_store(&ev) {
                            revision = ev.revision;
                            self.apply(&ev);
                        }
                    }
                }
                Err(StoreError::Compacted { .. }) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "namespace view cannot follow changes; retrying")
                }
            }
            // Fell behind or the stream ended: reload and follow again.
            match self.load(store.as_ref()).await {
                Ok(r) => revision = r,
                Err(e) => tracing::warn!(error = %e, "namespace view cannot reload; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
