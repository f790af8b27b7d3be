//! The embedded store against the shared conformance suite, plus what only
//! a local file can show: data and revisions survive reopening.

use std::sync::Arc;

use apiserver::store::conformance;
use apiserver::store::embedded::{EmbeddedConfig, EmbeddedStore};
use apiserver::store::{Store, StoreError};
use bytes::Bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path().join("db")))
        .await
        .expect("open");
    conformance::run_all(Arc::new(store), "/conformance/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_revisions_survive_reopening_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let (rev, created) = {
        let store = EmbeddedStore::open(EmbeddedConfig::new(&path))
            .await
            .expect("open");
        let created = store
            .create("/k/a", Bytes::from_static(b"1"))
            .await
            .expect("create");
        store
            .create("/k/b", Bytes::from_static(b"2"))
            .await
            .expect("create");
        (store.current_revision().await.expect("rev"), created)
    };
    // Reopening needs the previous handle's file lock to be released.
    let store = loop {
        match EmbeddedStore::open(EmbeddedConfig::new(&path)).await {
            Ok(s) => break s,
            Err(StoreError::Unavailable(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("reopen failed: {e}"),
        }
    };
    assert_eq!(store.current_revision().await.expect("rev"), rev);
    assert_eq!(store.get("/k/a").await.expect("get"), Some(created));
    let next = store
        .create("/k/c", Bytes::from_static(b"3"))
        .await
        .expect("create");
    assert_eq!(
        next.mod_revision,
        rev + 1,
        "revisions continue after a restart"
    );
    // History from before the restart can still be replayed.
    let mut w = store.watch("/k/", 0).await.expect("watch");
    use futures::StreamExt;
    let first = w.next().await.expect("event").expect("ok");
    assert_eq!(first.kv.key, "/k/a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_beyond_the_window_is_compacted_automatically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EmbeddedConfig::new(dir.path().join("db"));
    config.history = 16;
    let store = EmbeddedStore::open(config).await.expect("open");
    for i in 0..200 {
        store
            .create(&format!("/h/{i}"), Bytes::from(i.to_string()))
            .await
            .expect("create");
    }
    match store.watch("/h/", 1).await {
        Err(StoreError::Compacted {
            requested: 1,
            oldest,
        }) => assert!(oldest > 100, "oldest {oldest}"),
        other => panic!("expected Compacted, got {:?}", other.map(|_| "a stream")),
    }
    assert!(
        store.watch("/h/", 190).await.is_ok(),
        "recent history stays available"
    );
}
