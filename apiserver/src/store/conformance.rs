//! The conformance suite every [`Store`] backend must pass.
//!
//! Each check is a `pub async fn` that exercises one part of the contract
//! against a live store, using only keys under the `prefix` it is given, so
//! checks (and test runs) can share one store as long as their prefixes
//! differ. A backend's integration test typically just calls [`run_all`]:
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_store_passes_the_conformance_suite() {
//!     let store: Arc<dyn Store> = Arc::new(MyStore::open(..).await?);
//!     apiserver::store::conformance::run_all(store, "/conformance/").await;
//! }
//! ```
//!
//! **How failures surface:** like `assert!`, a check panics with a message
//! that names the check and what differed (expected vs actual), so it reads
//! well as a test failure. Checks never hang: every wait for a watch event
//! has a deadline ([`EVENT_TIMEOUT`]).
//!
//! Checks need a tokio runtime; [`concurrent_updates_lose_nothing`] spawns
//! tasks, so a multi-thread runtime makes it a real race.
//!
//! [`compacted_history_cannot_be_watched`] compacts the *whole* store, so it
//! must run after every check that watches from an older revision;
//! [`run_all`] runs it last.
//!
//! Where the contract leaves a choice, the suite accepts both: a watch from
//! a compacted revision may fail from [`Store::watch`] itself or with its
//! first stream item.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{EventKind, KeyValue, Result, Revision, Store, StoreError, WatchEvent, WatchStream};

/// How long a check waits for one expected watch event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the whole concurrent-update check may take.
const CONCURRENT_TIMEOUT: Duration = Duration::from_secs(300);

/// Tasks and increments per task in [`concurrent_updates_lose_nothing`].
const WRITERS: usize = 8;
const INCREMENTS_PER_WRITER: usize = 50;

/// Runs every check, each under its own sub-prefix of `prefix`, compaction
/// last. Panics on the first failure.
pub async fn run_all(store: Arc<dyn Store>, prefix: &str) {
    let under = |check: &str| format!("{prefix}{check}/");
    create_get_update_delete(&*store, &under("crud")).await;
    revisions_increase_strictly_across_keys(&*store, &under("revisions")).await;
    list_orders_pages_and_isolates_prefixes(&*store, &under("list")).await;
    list_at_a_revision_ignores_later_writes(&*store, &under("list-at")).await;
    values_are_arbitrary_bytes(&*store, &under("bytes")).await;
    concurrent_updates_lose_nothing(store.clone(), &under("concurrent")).await;
    watch_replays_missed_events_then_follows_live_ones(&*store, &under("watch")).await;
    watch_isolates_prefixes(&*store, &under("watch-prefix")).await;
    delete_events_carry_the_last_value(&*store, &under("watch-delete")).await;
    compacted_history_cannot_be_watched(&*store, &under("compact")).await;
}

/// A list at a past revision shows the keys as they were then: later
/// creates are absent, later updates and deletes are undone, and paging
/// with `start_after` stays at that revision.
pub async fn list_at_a_revision_ignores_later_writes(store: &dyn Store, prefix: &str) {
    let a = ok(
        store.create(&format!("{prefix}a"), bytes("a1")).await,
        "create a",
    );
    ok(
        store.create(&format!("{prefix}b"), bytes("b1")).await,
        "create b",
    );
    let c = ok(
        store.create(&format!("{prefix}c"), bytes("c1")).await,
        "create c",
    );
    let at = c.mod_revision;
    ok(
        store.update(&a.key, bytes("a2"), a.mod_revision).await,
        "update a",
    );
    ok(store.delete(&format!("{prefix}b"), None).await, "delete b");
    ok(
        store.create(&format!("{prefix}d"), bytes("d1")).await,
        "create d",
    );
    let then = ok(
        store.list_at(prefix, None, 0, at).await,
        "list at a past revision",
    );
    let seen: Vec<(String, Bytes)> = then
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (format!("{prefix}a"), bytes("a1")),
            (format!("{prefix}b"), bytes("b1")),
            (format!("{prefix}c"), bytes("c1")),
        ],
        "the list as it stood at revision {at}"
    );
    assert_eq!(then.revision, at, "list_at reports the revision it read at");
    let page = ok(
        store
            .list_at(prefix, Some(&format!("{prefix}a")), 1, at)
            .await,
        "a later page at the same revision",
    );
    assert_eq!(page.items.len(), 1, "limit 1");
    assert_eq!(page.items[0].value, bytes("b1"), "b as it was");
    assert!(page.more, "c follows");
    let now = ok(store.list(prefix, None, 0).await, "list now");
    let keys: Vec<&str> = now.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            format!("{prefix}a"),
            format!("{prefix}c"),
            format!("{prefix}d")
        ],
        "the list today"
    );
}

/// Single-key semantics: `get` of an absent key, `create` then
/// `AlreadyExists`, `update` with a stale revision reports the actual one,
/// `update`/`delete` of an absent key are `NotFound` (and never create it),
/// `delete` returns the last value at the deletion revision, and a re-created
/// key gets a new `create_revision`.
pub async fn create_get_update_delete(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}a");
    let missing = format!("{prefix}missing");

    assert_eq!(
        ok(store.get(&key).await, "get of a key never written"),
        None
    );

    let created = ok(store.create(&key, bytes("v1")).await, "create");
    assert_eq!(created.key, key, "create returns the key");
    assert_eq!(created.value, bytes("v1"), "create returns the value");
    assert!(
        created.create_revision > 0,
        "create gives a positive revision: {created:?}"
    );
    assert_eq!(
        created.create_revision, created.mod_revision,
        "a created key has create_revision == mod_revision"
    );
    assert_eq!(
        store.create(&key, bytes("v2")).await,
        Err(StoreError::AlreadyExists(key.clone())),
        "create of an existing key"
    );
    assert_eq!(
        ok(store.get(&key).await, "get after create"),
        Some(created.clone())
    );

    let stale = created.mod_revision - 1;
    assert_eq!(
        store.update(&key, bytes("v2"), stale).await,
        Err(StoreError::Conflict {
            key: key.clone(),
            expected: stale,
            actual: created.mod_revision
        }),
        "update with a revision that is not the key's"
    );
    let updated = ok(
        store.update(&key, bytes("v2"), created.mod_revision).await,
        "update",
    );
    assert_eq!(updated.key, key, "update returns the key");
    assert_eq!(updated.value, bytes("v2"), "update returns the new value");
    assert_eq!(
        updated.create_revision, created.create_revision,
        "update keeps create_revision"
    );
    assert!(
        updated.mod_revision > created.mod_revision,
        "update moves mod_revision forward: {created:?} then {updated:?}"
    );
    assert_eq!(
        ok(store.get(&key).await, "get after update"),
        Some(updated.clone())
    );
    assert_eq!(
        store.update(&key, bytes("v3"), created.mod_revision).await,
        Err(StoreError::Conflict {
            key: key.clone(),
            expected: created.mod_revision,
            actual: updated.mod_revision
        }),
        "update with the revision before the last update"
    );

    for expected in [0, updated.mod_revision] {
        assert_eq!(
            store.update(&missing, bytes("x"), expected).await,
            Err(StoreError::NotFound(missing.clone())),
            "update of an absent key expecting revision {expected}"
        );
    }
    assert_eq!(
        ok(store.get(&missing).await, "get after a failed update"),
        None
    );
    for expected in [None, Some(updated.mod_revision)] {
        assert_eq!(
            store.delete(&missing, expected).await,
            Err(StoreError::NotFound(missing.clone())),
            "delete of an absent key expecting {expected:?}"
        );
    }

    assert_eq!(
        store.delete(&key, Some(created.mod_revision)).await,
        Err(StoreError::Conflict {
            key: key.clone(),
            expected: created.mod_revision,
            actual: updated.mod_revision
        }),
        "delete with a stale revision"
    );
    assert_eq!(
        ok(store.get(&key).await, "get after a failed delete"),
        Some(updated.clone())
    );
    let deleted = ok(
        store.delete(&key, Some(updated.mod_revision)).await,
        "delete",
    );
    assert_eq!(deleted.key, key, "delete returns the key");
    assert_eq!(deleted.value, bytes("v2"), "delete returns the last value");
    assert_eq!(
        deleted.create_revision, created.create_revision,
        "delete keeps create_revision"
    );
    assert!(
        deleted.mod_revision > updated.mod_revision,
        "delete reports the (new) revision of the deletion: {updated:?} then {deleted:?}"
    );
    assert_eq!(ok(store.get(&key).await, "get after delete"), None);
    let current = ok(store.current_revision().await, "current_revision");
    assert!(
        current >= deleted.mod_revision,
        "current_revision {current} < deletion {deleted:?}"
    );
    assert_eq!(
        store.delete(&key, None).await,
        Err(StoreError::NotFound(key.clone())),
        "delete of a deleted key"
    );

    let again = ok(store.create(&key, bytes("v3")).await, "create after delete");
    assert!(
        again.create_revision > deleted.mod_revision,
        "a re-created key gets a new create_revision: {deleted:?} then {again:?}"
    );
    let gone = ok(store.delete(&key, None).await, "unconditional delete");
    assert_eq!(
        gone.value,
        bytes("v3"),
        "unconditional delete returns the last value"
    );
    assert_eq!(gone.create_revision, again.create_revision);
    assert!(
        gone.mod_revision > again.mod_revision,
        "{again:?} then {gone:?}"
    );
}

/// Every write gets a revision greater than every earlier write, whatever
/// the key, and reads report a revision at least as new as the last write.
pub async fn revisions_increase_strictly_across_keys(store: &dyn Store, prefix: &str) {
    let mut last = ok(store.current_revision().await, "current_revision");
    let mut advance = |what: String, revision: Revision| {
        assert!(
            revision > last,
            "{what} got revision {revision}, not after {last}"
        );
        last = revision;
    };
    let mut kvs = Vec::new();
    for i in 0..5 {
        let kv = ok(
            store.create(&format!("{prefix}k{i}"), bytes("0")).await,
            "create",
        );
        advance(format!("create k{i}"), kv.mod_revision);
        kvs.push(kv);
    }
    for kv in kvs.iter_mut().rev() {
        *kv = ok(
            store.update(&kv.key, bytes("1"), kv.mod_revision).await,
            "update",
        );
        advance(format!("update {}", kv.key), kv.mod_revision);
    }
    for kv in kvs.iter().step_by(2) {
        let deleted = ok(store.delete(&kv.key, Some(kv.mod_revision)).await, "delete");
        advance(format!("delete {}", kv.key), deleted.mod_revision);
    }
    let current = ok(store.current_revision().await, "current_revision");
    assert!(
        current >= last,
        "current_revision {current} is older than the last write {last}"
    );
    let listed = ok(store.list(prefix, None, 0).await, "list");
    assert!(
        listed.revision >= last,
        "list reports revision {} older than the last write {last}",
        listed.revision
    );
}

/// `list` returns exactly the keys under the prefix, ascending, and pages
/// with `start_after` + `limit`, with `more` telling whether keys follow.
pub async fn list_orders_pages_and_isolates_prefixes(store: &dyn Store, prefix: &str) {
    let dir = format!("{prefix}items/");
    // Neighbours that share a string prefix with `dir` but are not under it.
    for outside in [
        format!("{prefix}items"),
        format!("{prefix}itemsx/1"),
        format!("{prefix}item"),
    ] {
        ok(
            store.create(&outside, bytes("outside")).await,
            "create a neighbour",
        );
    }
    let names = ["d", "a", "c/1", "", "b"];
    let mut expected = Vec::new();
    for name in names {
        let key = format!("{dir}{name}");
        expected.push(ok(
            store.create(&key, Bytes::from(key.clone())).await,
            "create",
        ));
    }
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    let last_write = expected
        .iter()
        .map(|kv| kv.mod_revision)
        .max()
        .unwrap_or_default();
    let keys = |items: &[KeyValue]| items.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    let key_of = |name: &str| format!("{dir}{name}");

    let all = ok(store.list(&dir, None, 0).await, "list everything");
    assert_eq!(
        all.items, expected,
        "list returns exactly the keys under {dir:?}, ascending"
    );
    assert!(!all.more, "an unlimited list has no more");
    assert!(
        all.revision >= last_write,
        "list revision {} < last write {last_write}",
        all.revision
    );

    let big = ok(store.list(&dir, None, 100).await, "list with a large limit");
    assert_eq!(
        big.items, expected,
        "a limit above the count returns everything"
    );
    assert!(!big.more, "a limit above the count has no more");

    // Page through with limit 2.
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ok(store.list(&dir, after.as_deref(), 2).await, "list a page");
        assert!(
            page.items.len() <= 2,
            "a page holds at most `limit` items: {page:?}"
        );
        after = page.items.last().map(|kv| kv.key.clone());
        pages.push((keys(&page.items), page.more));
        if !page.more {
            break;
        }
        assert!(pages.len() <= names.len(), "paging does not end: {pages:?}");
    }
    assert_eq!(
        pages,
        vec![
            (vec![key_of(""), key_of("a")], true),
            (vec![key_of("b"), key_of("c/1")], true),
            (vec![key_of("d")], false),
        ],
        "pages of 2 with start_after = last key of the previous page"
    );

    // (what, start_after, limit, expected names, expected more)
    let cases = [
        ("exactly the rest", key_of("b"), 2, &["c/1", "d"][..], false),
        (
            "after an absent key",
            key_of("bb"),
            0,
            &["c/1", "d"][..],
            false,
        ),
        (
            "after a key before the prefix",
            format!("{prefix}item"),
            1,
            &[""][..],
            true,
        ),
        ("after the last key", key_of("d"), 2, &[][..], false),
        ("after every key", key_of("zzz"), 0, &[][..], false),
        ("after the prefix itself", dir.clone(), 1, &["a"][..], true),
    ];
    for (what, start_after, limit, names, more) in cases {
        let page = ok(store.list(&dir, Some(&start_after), limit).await, what);
        let want: Vec<String> = names.iter().map(|name| key_of(name)).collect();
        assert_eq!(
            (keys(&page.items), page.more),
            (want, more),
            "list {what}: start_after {start_after:?}, limit {limit}"
        );
    }

    let empty = ok(
        store.list(&format!("{prefix}nothing/"), None, 0).await,
        "list an empty prefix",
    );
    assert!(
        empty.items.is_empty() && !empty.more,
        "an empty prefix lists nothing: {empty:?}"
    );
    assert!(
        empty.revision >= last_write,
        "even an empty list reports a current revision"
    );

    let nested = ok(
        store.list(&key_of("c/"), None, 0).await,
        "list a nested prefix",
    );
    assert_eq!(
        keys(&nested.items),
        vec![key_of("c/1")],
        "a nested prefix lists only its keys"
    );
}

/// Values are opaque bytes: empty, NUL, every byte value, invalid UTF-8 and
/// large values survive create, get, list, update and watch unchanged.
pub async fn values_are_arbitrary_bytes(store: &dyn Store, prefix: &str) {
    let mut lcg: u32 = 0x2545_f491;
    let large: Vec<u8> = (0..100 * 1024)
        .map(|_| {
            lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (lcg >> 24) as u8
        })
        .collect();
    let values: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(&[0]),
        Bytes::from((0..=255u8).collect::<Vec<_>>()),
        Bytes::from_static(&[0xff, 0xfe, 0xc0, 0x80]),
        Bytes::from_static("ünïcödé ✓".as_bytes()),
        Bytes::from(large),
    ];
    let start = ok(store.current_revision().await, "current_revision");
    let mut written = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let key = format!("{prefix}v{i}");
        let kv = ok(store.create(&key, value.clone()).await, "create");
        assert_eq!(&kv.value, value, "create returns value {i} unchanged");
        let got = ok(store.get(&key).await, "get").map(|kv| kv.value);
        assert_eq!(got.as_ref(), Some(value), "get returns value {i} unchanged");
        written.push(kv);
    }
    let listed = ok(store.list(prefix, None, 0).await, "list");
    assert_eq!(listed.items, written, "list returns every value unchanged");

    // Rotate the values so every one is also written by update.
    for (i, kv) in written.iter_mut().enumerate() {
        let value = values[(i + 1) % values.len()].clone();
        *kv = ok(
            store.update(&kv.key, value.clone(), kv.mod_revision).await,
            "update",
        );
        assert_eq!(kv.value, value, "update returns value {i} unchanged");
        let got = ok(store.get(&kv.key).await, "get").map(|kv| kv.value);
        assert_eq!(
            got,
            Some(value),
            "get after update returns the value unchanged"
        );
    }

    let mut watch = ok(store.watch(prefix, start).await, "watch");
    for round in ["create", "update"] {
        for (i, value) in values.iter().enumerate() {
            let value = match round {
                "create" => value.clone(),
                _ => values[(i + 1) % values.len()].clone(),
            };
            let event = next_event(&mut watch, "values_are_arbitrary_bytes").await;
            assert_eq!(
                (event.kind, event.kv.key.as_str(), &event.kv.value),
                (EventKind::Put, format!("{prefix}v{i}").as_str(), &value),
                "watch delivers the {round} of value {i} unchanged"
            );
        }
    }
}

/// Read-modify-write with retry on `Conflict` from many tasks at once never
/// loses an update: every increment lands exactly once.
pub async fn concurrent_updates_lose_nothing(store: Arc<dyn Store>, prefix: &str) {
    let key = format!("{prefix}counter");
    ok(store.create(&key, bytes("0")).await, "create the counter");

    let run = async {
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = store.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let mut revisions = Vec::with_capacity(INCREMENTS_PER_WRITER);
                let mut conflicts = 0usize;
                for _ in 0..INCREMENTS_PER_WRITER {
                    loop {
                        let current = ok(store.get(&key).await, "get the counter")
                            .unwrap_or_else(|| panic!("writer {writer}: the counter vanished"));
                        let n = parse_counter(&current.value);
                        match store
                            .update(&key, Bytes::from((n + 1).to_string()), current.mod_revision)
                            .await
                        {
                            Ok(kv) => {
                                revisions.push(kv.mod_revision);
                                break;
                            }
                            Err(StoreError::Conflict { actual, .. }) => {
                                assert!(
                                    actual > current.mod_revision,
                                    "writer {writer}: a conflict reports a newer revision \
                                     ({actual}) than the one read ({})",
                                    current.mod_revision
                                );
                                conflicts += 1;
                            }
                            Err(err) => panic!("writer {writer}: update failed: {err}"),
                        }
                    }
                }
                (revisions, conflicts)
            }));
        }
        let mut revisions = Vec::new();
        let mut conflicts = 0;
        for task in tasks {
            match task.await {
                Ok((mut r, c)) => {
                    revisions.append(&mut r);
                    conflicts += c;
                }
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Err(err) => panic!("a writer task did not finish: {err}"),
            }
        }
        (revisions, conflicts)
    };
    let (mut revisions, conflicts) = tokio::time::timeout(CONCURRENT_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| {
            panic!("{WRITERS} writers did not finish within {CONCURRENT_TIMEOUT:?}")
        });

    let total = WRITERS * INCREMENTS_PER_WRITER;
    let last = ok(store.get(&key).await, "get the counter").expect("the counter exists");
    assert_eq!(
        parse_counter(&last.value),
        total as u64,
        "{WRITERS} writers x {INCREMENTS_PER_WRITER} increments ({conflicts} conflicts retried)"
    );
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(
        revisions.len(),
        total,
        "every successful update got its own revision"
    );
    assert_eq!(
        revisions.last().copied(),
        Some(last.mod_revision),
        "the last update is the one stored"
    );
}

/// A watch from a past revision replays exactly the events after it, in
/// order, then the live ones: none missing, none twice, none from outside the
/// prefix, each with the value it wrote and the value it replaced.
pub async fn watch_replays_missed_events_then_follows_live_ones(store: &dyn Store, prefix: &str) {
    let dir = format!("{prefix}w/");
    let outside = [format!("{prefix}w"), format!("{prefix}wx/1")];
    let mut model = Model::default();
    let start = ok(store.current_revision().await, "current_revision");

    // History, with writes outside the prefix in between.
    model.create(store, &format!("{dir}a"), "a1").await;
    model.create(store, &format!("{dir}b"), "b1").await;
    ok(
        store.create(&outside[0], bytes("x")).await,
        "create outside",
    );
    model.update(store, &format!("{dir}a"), "a2").await;
    let middle = model.events.len();
    model.delete(store, &format!("{dir}b")).await;
    model.create(store, &format!("{dir}b"), "b2").await;
    ok(
        store.create(&outside[1], bytes("x")).await,
        "create outside",
    );
    model.update(store, &format!("{dir}b"), "b3").await;
    model.delete(store, &format!("{dir}a")).await;
    let history = model.events.clone();
    let middle_revision = history[middle - 1].revision();

    let mut from_start = ok(
        store.watch(&dir, start).await,
        "watch from before the history",
    );
    let mut from_middle = ok(
        store.watch(&dir, middle_revision).await,
        "watch from the middle",
    );
    expect_events(&mut from_start, &history, "replay from the start").await;
    expect_events(
        &mut from_middle,
        &history[middle..],
        "replay from the middle",
    )
    .await;

    // Live events.
    let now = ok(store.current_revision().await, "current_revision");
    let mut from_now = ok(store.watch(&dir, now).await, "watch from now");
    let live_start = model.events.len();
    model.create(store, &format!("{dir}c"), "c1").await;
    ok(store.delete(&outside[0], None).await, "delete outside");
    model.update(store, &format!("{dir}c"), "c2").await;
    model.delete(store, &format!("{dir}c")).await;
    model.create(store, &format!("{dir}a"), "a3").await;
    model.update(store, &format!("{dir}b"), "b4").await;
    let live = &model.events[live_start..];
    expect_events(&mut from_start, live, "live after replay from the start").await;
    expect_events(&mut from_middle, live, "live after replay from the middle").await;
    expect_events(&mut from_now, live, "live from now").await;

    // Nothing extra is pending: the next event is the next write.
    let marker_at = model.events.len();
    model.create(store, &format!("{dir}zz-marker"), "end").await;
    let marker = &model.events[marker_at..];
    for (stream, what) in [
        (&mut from_start, "marker from the start"),
        (&mut from_middle, "marker from the middle"),
        (&mut from_now, "marker from now"),
    ] {
        expect_events(stream, marker, what).await;
    }
}

/// A watch sees only keys that start with its prefix, even when other keys
/// share a string prefix with it.
pub async fn watch_isolates_prefixes(store: &dyn Store, prefix: &str) {
    let dir = format!("{prefix}a/");
    let now = ok(store.current_revision().await, "current_revision");
    let mut watch = ok(store.watch(&dir, now).await, "watch");
    for outside in [
        format!("{prefix}a"),
        format!("{prefix}ab/x"),
        format!("{prefix}b/x"),
    ] {
        ok(
            store.create(&outside, bytes("outside")).await,
            "create outside the prefix",
        );
    }
    let inside = ok(
        store.create(&format!("{dir}x"), bytes("inside")).await,
        "create inside",
    );
    let event = next_event(&mut watch, "watch_isolates_prefixes").await;
    assert_eq!(
        event,
        WatchEvent {
            kind: EventKind::Put,
            kv: inside,
            prev: None
        },
        "the first event is the first write under {dir:?}"
    );
    ok(
        store
            .create(&format!("{prefix}b/y"), bytes("outside"))
            .await,
        "create outside",
    );
    let inside = ok(
        store.create(&format!("{dir}y"), bytes("inside")).await,
        "create inside",
    );
    let event = next_event(&mut watch, "watch_isolates_prefixes").await;
    assert_eq!(
        event.kv, inside,
        "the next event is the next write under {dir:?}"
    );
}

/// A delete event carries the last value the key held, its original
/// `create_revision` and the revision of the deletion, and agrees with what
/// `delete` returned.
pub async fn delete_events_carry_the_last_value(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}k");
    let created = ok(store.create(&key, bytes("first")).await, "create");
    let updated = ok(
        store
            .update(&key, bytes("last"), created.mod_revision)
            .await,
        "update",
    );
    let mut watch = ok(store.watch(prefix, updated.mod_revision).await, "watch");
    let deleted = ok(store.delete(&key, None).await, "delete");
    let event = next_event(&mut watch, "delete_events_carry_the_last_value").await;
    assert_eq!(event.kind, EventKind::Delete, "{event:?}");
    assert_eq!(
        event.kv,
        KeyValue {
            key: key.clone(),
            value: bytes("last"),
            create_revision: created.create_revision,
            mod_revision: deleted.mod_revision,
        },
        "the delete event's kv"
    );
    assert_eq!(
        event.kv, deleted,
        "the delete event agrees with what delete returned"
    );
    assert_eq!(
        event.prev,
        Some(updated),
        "the delete event's prev is the last stored value"
    );
}

/// After `compact(rev)`, a watch that needs history before `rev` fails with
/// `Compacted` (from `watch` or as its first item), reads still see the
/// latest values, and a watch from `rev` still works. Compacts the whole
/// store.
pub async fn compacted_history_cannot_be_watched(store: &dyn Store, prefix: &str) {
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(ok(
            store.create(&format!("{prefix}k{i}"), bytes("1")).await,
            "create",
        ));
    }
    let first = written[0].mod_revision;
    let k0 = &written[0];
    let updated = ok(
        store.update(&k0.key, bytes("2"), k0.mod_revision).await,
        "update",
    );
    let compact_at = updated.mod_revision;
    ok(store.compact(compact_at).await, "compact");
    ok(
        store.compact(compact_at).await,
        "compact again at the same revision",
    );

    let requested = first - 1;
    let err = match store.watch(prefix, requested).await {
        Err(err) => err,
        Ok(mut stream) => match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
            Ok(Some(Err(err))) => err,
            Ok(Some(Ok(event))) => {
                panic!("a watch from compacted revision {requested} delivered {event:?}")
            }
            Ok(None) => {
                panic!("a watch from compacted revision {requested} ended without an error")
            }
            Err(_) => panic!(
                "a watch from compacted revision {requested} neither failed nor delivered \
                 anything within {EVENT_TIMEOUT:?}"
            ),
        },
    };
    match err {
        StoreError::Compacted {
            requested: r,
            oldest,
        } => {
            assert_eq!(r, requested, "Compacted reports the requested revision");
            assert!(
                oldest > requested && oldest <= compact_at + 1,
                "Compacted reports an oldest revision ({oldest}) after the requested one \
                 ({requested}) and no later than the compaction ({compact_at}) allows"
            );
        }
        other => panic!("a watch from compacted revision {requested} failed with {other:?}"),
    }

    let listed = ok(store.list(prefix, None, 0).await, "list after compaction");
    let mut latest = written.clone();
    latest[0] = updated.clone();
    assert_eq!(
        listed.items, latest,
        "compaction keeps the latest value of every key"
    );

    let mut watch = ok(
        store.watch(prefix, compact_at).await,
        "watch from the compaction revision",
    );
    let after = ok(
        store
            .update(&updated.key, bytes("3"), updated.mod_revision)
            .await,
        "update",
    );
    let event = next_event(&mut watch, "watch from the compaction revision").await;
    assert_eq!(
        event,
        WatchEvent {
            kind: EventKind::Put,
            kv: after,
            prev: Some(updated)
        },
        "a watch from the compaction revision sees the next write"
    );
}

/// What a sequence of writes must produce as watch events.
#[derive(Default)]
struct Model {
    current: HashMap<String, KeyValue>,
    events: Vec<WatchEvent>,
}

impl Model {
    async fn create(&mut self, store: &dyn Store, key: &str, value: &str) {
        let kv = ok(store.create(key, bytes(value)).await, "create");
        self.current.insert(key.to_owned(), kv.clone());
        self.events.push(WatchEvent {
            kind: EventKind::Put,
            kv,
            prev: None,
        });
    }

    async fn update(&mut self, store: &dyn Store, key: &str, value: &str) {
        let prev = self
            .current
            .get(key)
            .cloned()
            .expect("the model knows the key");
        let kv = ok(
            store.update(key, bytes(value), prev.mod_revision).await,
            "update",
        );
        self.current.insert(key.to_owned(), kv.clone());
        self.events.push(WatchEvent {
            kind: EventKind::Put,
            kv,
            prev: Some(prev),
        });
    }

    async fn delete(&mut self, store: &dyn Store, key: &str) {
        let prev = self.current.remove(key).expect("the model knows the key");
        let kv = ok(store.delete(key, Some(prev.mod_revision)).await, "delete");
        self.events.push(WatchEvent {
            kind: EventKind::Delete,
            kv,
            prev: Some(prev),
        });
    }
}

/// The next watch event, or a panic naming `what` if the watch fails, ends
/// or stays silent for [`EVENT_TIMEOUT`].
async fn next_event(stream: &mut WatchStream, what: &str) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(err))) => panic!("{what}: the watch failed: {err}"),
        Ok(None) => panic!("{what}: the watch ended"),
        Err(_) => panic!("{what}: no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// Asserts that the next events of `stream` are exactly `expected`, in order.
async fn expect_events(stream: &mut WatchStream, expected: &[WatchEvent], what: &str) {
    let mut previous: Option<Revision> = None;
    for (i, want) in expected.iter().enumerate() {
        let got = next_event(stream, &format!("{what}: event {i} of {}", expected.len())).await;
        if let Some(previous) = previous {
            assert!(
                got.revision() > previous,
                "{what}: event {i} has revision {} after {previous}: {got:?}",
                got.revision()
            );
        }
        previous = Some(got.revision());
        assert_eq!(&got, want, "{what}: event {i} of {}", expected.len());
    }
}

/// The value of an `Ok`, or a panic naming `what` and the error.
#[track_caller]
fn ok<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what}: unexpected store error: {err}"),
    }
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn parse_counter(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the counter holds {value:?}, not a decimal number"))
}
