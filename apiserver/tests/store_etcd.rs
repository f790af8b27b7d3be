//! The etcd backend against a real etcd: the shared conformance suite, the
//! key prefix, recovery after an etcd restart, and `Unavailable` (not a
//! hang) while etcd is down.
//!
//! Each test starts its own etcd (`/usr/bin/etcd`, or `$ETCD_BIN`) on free
//! loopback ports with a temporary data dir; [`EtcdServer`] kills it when
//! dropped, also when the test fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::store::etcd::{EtcdConfig, EtcdStore};
use apiserver::store::{conformance, Store, StoreError};
use bytes::Bytes;
use futures::StreamExt;

/// How long etcd may take to start answering on this (slow, shared) machine.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// A real etcd process on 127.0.0.1, killed on drop.
pub struct EtcdServer {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd on free loopback ports with a fresh data dir and waits
    /// until it answers.
    pub async fn start() -> EtcdServer {
        let (client_port, peer_port) = two_free_ports();
        let dir = tempfile::tempdir().expect("create a temporary dir");
        let mut server = EtcdServer {
            child: None,
            client_port,
            peer_port,
            dir,
        };
        server.spawn();
        server.wait_until_answering().await;
        server
    }

    /// The client URL, for [`EtcdConfig::endpoints`].
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// A config for this etcd with the given key prefix.
    pub fn config(&self, prefix: &str) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![self.endpoint()],
            prefix: prefix.to_owned(),
            dial_timeout: Duration::from_secs(5),
        }
    }

    /// Kills etcd (SIGKILL, no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data dir and waits until it
    /// answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_until_answering().await;
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) etcd: a frozen etcd keeps its
    /// connections open but never answers.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("etcd is running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the etcd log");
        let mut command =
            Command::new(std::env::var("ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".into()));
        command
            .arg("--name=default")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        // etcd 3.4 refuses to run on architectures other than amd64 (and
        // ppc64le) unless told so.
        match std::env::consts::ARCH {
            "x86_64" => {}
            "aarch64" => {
                command.env("ETCD_UNSUPPORTED_ARCH", "arm64");
            }
            other => {
                command.env("ETCD_UNSUPPORTED_ARCH", other);
            }
        }
        self.child = Some(
            command
                .spawn()
                .expect("start etcd (is etcd-server installed?)"),
        );
    }

    async fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "etcd exited with {status} while starting:\n{}",
                        self.log_tail()
                    );
                }
            }
            let mut config = self.config("");
            config.dial_timeout = Duration::from_secs(1);
            if EtcdStore::connect(config).await.is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd did not answer within {STARTUP_DEADLINE:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two distinct free loopback ports (held together so they differ).
fn two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let ports = (
        a.local_addr().expect("local addr").port(),
        b.local_addr().expect("local addr").port(),
    );
    drop((a, b));
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_passes_the_conformance_suite() {
    let etcd = EtcdServer::start().await;
    let store = EtcdStore::connect(etcd.config("/skiff"))
        .await
        .expect("connect");
    let started = Instant::now();
    conformance::run_all(Arc::new(store), "/conformance/").await;
    eprintln!(
        "conformance suite against etcd took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_prefix_isolates_stores_and_is_invisible_to_callers() {
    let etcd = EtcdServer::start().await;
    let a = EtcdStore::connect(etcd.config("/a"))
        .await
        .expect("connect a");
    let b = EtcdStore::connect(etcd.config("/b"))
        .await
        .expect("connect b");
    let root = EtcdStore::connect(etcd.config(""))
        .await
        .expect("connect root");

    let in_a = a
        .create("/pods/x", Bytes::from_static(b"in a"))
        .await
        .expect("create in a");
    assert_eq!(
        in_a.key, "/pods/x",
        "keys come back without the store prefix"
    );
    b.create("/pods/x", Bytes::from_static(b"in b"))
        .await
        .expect("the same key in b is another key");

    let listed = a.list("/", None, 0).await.expect("list a");
    assert_eq!(listed.items, vec![in_a.clone()], "a sees only its own keys");
    let seen_from_root = root.get("/a/pods/x").await.expect("get from root");
    assert_eq!(
        seen_from_root.map(|kv| kv.value),
        Some(Bytes::from_static(b"in a"))
    );
    let all = root
        .list("", None, 0)
        .await
        .expect("list everything from root");
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["/a/pods/x", "/b/pods/x"],
        "an empty prefix lists the whole key space"
    );

    let mut watch = a.watch("", 0).await.expect("watch all of a");
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("an event in time")
        .expect("an event")
        .expect("no error");
    assert_eq!(
        event.kv, in_a,
        "a watch over all of a sees a's key only, unprefixed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_recovers_by_itself_after_etcd_restarts() {
    let mut etcd = EtcdServer::start().await;
    let store = EtcdStore::connect(etcd.config("/skiff"))
        .await
        .expect("connect")
        .with_request_timeout(Duration::from_secs(2));
    let before = store
        .create("/k", Bytes::from_static(b"before"))
        .await
        .expect("create");
    let mut watch = store.watch("/", before.mod_revision).await.expect("watch");

    etcd.kill();
    let ended = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("the watch reports the lost etcd within 30 s");
    assert!(
        matches!(ended, Some(Err(StoreError::Unavailable(_)))),
        "a watch on a killed etcd ends with Unavailable, got {ended:?}"
    );

    etcd.restart().await;
    // The store was built before the restart; it must reconnect by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        match store
            .update("/k", Bytes::from_static(b"after"), before.mod_revision)
            .await
        {
            Ok(kv) => break kv,
            Err(StoreError::Unavailable(err)) if Instant::now() < deadline => {
                eprintln!("not yet reconnected: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("update after the etcd restart failed: {err}"),
        }
    };
    assert!(
        after.mod_revision > before.mod_revision,
        "revisions survive the restart"
    );
    assert_eq!(
        after.create_revision, before.create_revision,
        "data survives the restart"
    );

    // Watching again from the last revision seen misses nothing.
    let mut watch = store
        .watch("/", before.mod_revision)
        .await
        .expect("watch again");
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("an event in time")
        .expect("an event")
        .expect("no error");
    assert_eq!(
        event.kv, after,
        "the re-established watch replays the write made after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_reports_unavailable_instead_of_hanging_while_etcd_is_down() {
    let mut etcd = EtcdServer::start().await;
    let request_timeout = Duration::from_secs(2);
    let store = EtcdStore::connect(etcd.config("/skiff"))
        .await
        .expect("connect")
        .with_request_timeout(request_timeout);
    let kv = store
        .create("/k", Bytes::from_static(b"v"))
        .await
        .expect("create");

    // A frozen etcd accepts bytes but never answers: requests time out.
    etcd.signal("STOP");
    let started = Instant::now();
    let (get, create, watch, revision) = tokio::time::timeout(request_timeout * 3, async {
        futures::join!(
            store.get("/k"),
            store.create("/frozen", Bytes::new()),
            store.watch("/", 0),
            store.current_revision(),
        )
    })
    .await
    .expect("requests to a frozen etcd give up within their timeout");
    etcd.signal("CONT");
    eprintln!(
        "requests to a frozen etcd failed after {:?}",
        started.elapsed()
    );
    assert!(
        matches!(get, Err(StoreError::Unavailable(_))),
        "get: {get:?}"
    );
    assert!(
        matches!(create, Err(StoreError::Unavailable(_))),
        "create: {create:?}"
    );
    assert!(
        matches!(watch, Err(StoreError::Unavailable(_))),
        "watch: {:?}",
        watch.map(|_| "a stream")
    );
    assert!(
        matches!(revision, Err(StoreError::Unavailable(_))),
        "current_revision: {revision:?}"
    );
    store.get("/k").await.expect("a thawed etcd answers again");

    // A killed etcd refuses connections: requests fail at once.
    etcd.kill();

    // Each operation fails within its request timeout plus some slack.
    let bound = request_timeout * 3;
    macro_rules! unavailable {
        ($what:literal, $op:expr) => {{
            let started = Instant::now();
            let result = tokio::time::timeout(bound, $op)
                .await
                .unwrap_or_else(|_| panic!("{} hung for {bound:?} while etcd is down", $what));
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{} while etcd is down: expected Unavailable, got {:?}",
                $what,
                result.map(|_| "a success")
            );
            eprintln!("{} failed after {:?}", $what, started.elapsed());
        }};
    }
    unavailable!("get", store.get("/k"));
    unavailable!("list", store.list("/", None, 0));
    unavailable!("create", store.create("/new", Bytes::new()));
    unavailable!("update", store.update("/k", Bytes::new(), kv.mod_revision));
    unavailable!("delete", store.delete("/k", None));
    unavailable!("watch", store.watch("/", 0));
    unavailable!("current_revision", store.current_revision());
    unavailable!("compact", store.compact(kv.mod_revision));

    // Connecting to an etcd that is down fails after the dial timeout.
    let mut config = etcd.config("/skiff");
    config.dial_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let connected = tokio::time::timeout(Duration::from_secs(10), EtcdStore::connect(config))
        .await
        .expect("connect does not hang while etcd is down");
    assert!(
        matches!(connected, Err(StoreError::Unavailable(_))),
        "connect while etcd is down: {:?}",
        connected.map(|_| "a store")
    );
    eprintln!("connect failed after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_revision_fails_from_the_watch_call_itself() {
    let etcd = EtcdServer::start().await;
    let store = EtcdStore::connect(etcd.config("/skiff"))
        .await
        .expect("connect");
    let first = store
        .create("/k", Bytes::from_static(b"1"))
        .await
        .expect("create");
    let second = store
        .update("/k", Bytes::from_static(b"2"), first.mod_revision)
        .await
        .expect("update");
    let third = store
        .update("/k", Bytes::from_static(b"3"), second.mod_revision)
        .await
        .expect("update");
    store.compact(third.mod_revision).await.expect("compact");

    let result = store.watch("/", first.mod_revision - 1).await;
    assert_eq!(
        result.err(),
        Some(StoreError::Compacted {
            requested: first.mod_revision - 1,
            oldest: third.mod_revision
        }),
        "watch() itself reports the compaction, with etcd's compact revision as the oldest"
    );
}
