//! API-server and store benchmark (a benchmark, not a timed test).
//!
//! Starts one real etcd and measures, interleaved in the same run:
//! - raw etcd through etcd-client (the ceiling): puts of ~1 KiB values at
//!   concurrency C and 1 and paced, gets, and prefix ranges of 100 / 1,000;
//! - two `skiff up --nodes 0` clusters, one on the embedded store and one on
//!   `--store etcd` against the same etcd, each through the real HTTPS API with
//!   one shared kube-rs client: creates/s at C and 1, create latency under a
//!   paced open-loop load, get latency, and list latency of 100 and 1,000
//!   ConfigMaps.
//!
//! Every measurement is repeated `--reps` times, rounds interleaved so drift on
//! the shared machine hits all three alike; the printed table holds the medians
//! over rounds. Build with `cargo build --release --bins -p skiff -p e2e` and
//! run `target/release/bench_api` (or `scripts/bench-api.sh`). It uses
//! `$SKIFF_BIN`, else the `skiff` next to its own executable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::{Cluster, ClusterOptions, Etcd};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::Api;

/// Settings, from `--name value` flags.
#[derive(Clone, Debug)]
struct Opts {
    reps: usize,
    concurrency: usize,
    /// Creates (and raw puts) per throughput measurement at `concurrency`.
    creates: usize,
    /// Creates (and raw puts) per measurement at concurrency 1.
    serial: usize,
    /// Paced open-loop create rate, per second.
    rate: u64,
    paced_secs: u64,
    gets: usize,
    lists: usize,
    value_bytes: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            reps: 3,
            concurrency: 16,
            creates: 3000,
            serial: 500,
            rate: 200,
            paced_secs: 10,
            gets: 1000,
            lists: 20,
            value_bytes: 1024,
        }
    }
}

impl Opts {
    fn parse() -> Result<Self> {
        let mut o = Opts::default();
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                println!(
                    "usage: bench_api [--reps N] [--concurrency C] [--creates N] [--serial N] \
                     [--rate PER_S] [--paced-secs S] [--gets N] [--lists N] [--value-bytes B]"
                );
                std::process::exit(0);
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let n: usize = value
                .parse()
                .with_context(|| format!("{flag} {value}: not a number"))?;
            match flag.as_str() {
                "--reps" => o.reps = n,
                "--concurrency" => o.concurrency = n,
                "--creates" => o.creates = n,
                "--serial" => o.serial = n,
                "--rate" => o.rate = n as u64,
                "--paced-secs" => o.paced_secs = n as u64,
                "--gets" => o.gets = n,
                "--lists" => o.lists = n,
                "--value-bytes" => o.value_bytes = n,
                _ => bail!("unknown flag {flag} (see --help)"),
            }
        }
        if o.reps == 0 || o.concurrency == 0 || o.creates == 0 || o.serial == 0 || o.rate == 0 {
            bail!("--reps, --concurrency, --creates, --serial and --rate must be positive");
        }
        Ok(o)
    }
}

/// Latencies of one measurement, sorted.
struct Sample {
    lat: Vec<Duration>,
    elapsed: Duration,
}

impl Sample {
    fn new(mut lat: Vec<Duration>, elapsed: Duration) -> Self {
        lat.sort_unstable();
        Self { lat, elapsed }
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.lat.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.lat.len()) - 1;
        self.lat[i].as_secs_f64() * 1e3
    }
    fn rate(&self) -> f64 {
        self.lat.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Per-round figures, keyed by (row, column); medians taken at the end.
#[derive(Default)]
struct Results(BTreeMap<(String, String), Vec<f64>>);

impl Results {
    fn add(&mut self, row: &str, col: &str, v: f64) {
        self.0
            .entry((row.to_string(), col.to_string()))
            .or_default()
            .push(v);
    }
    fn median(&self, row: &str, col: &str) -> Option<f64> {
        let mut v = self.0.get(&(row.to_string(), col.to_string()))?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }
    fn all(&self, row: &str, col: &str) -> String {
        self.0
            .get(&(row.to_string(), col.to_string()))
            .map(|v| v.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(" / "))
            .unwrap_or_default()
    }
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn payload(bytes: usize) -> String {
    // Printable and incompressible enough; exact size matters, content does not.
    (0..bytes)
        .map(|i| (b'a' + (i * 7 % 26) as u8) as char)
        .collect()
}

/// Runs `n` operations at `concurrency`, each `op(i)`; returns their latencies.
async fn closed_loop<F, Fut>(n: usize, concurrency: usize, op: F) -> Result<Sample>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let op = op.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await??);
    }
    Ok(Sample::new(all, start.elapsed()))
}

/// Issues `rate`×`secs` operations on a fixed schedule (open loop: a slow
/// reply does not delay later sends). Returns latencies measured from each
/// request's scheduled start (so sender lag counts against the server) and
/// from its actual send.
async fn open_loop<F, Fut>(rate: u64, secs: u64, op: F) -> Result<(Sample, Sample)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let n = (rate * secs) as usize;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let t0 = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let scheduled = t0 + period * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let sent = tokio::time::Instant::now();
            op(i).await?;
            let done = tokio::time::Instant::now();
            anyhow::Ok((done - scheduled, done - sent))
        }));
    }
    let mut from_sched = Vec::with_capacity(n);
    let mut from_send = Vec::with_capacity(n);
    for t in tasks {
        let (a, b) = t.await??;
        from_sched.push(a);
        from_send.push(b);
    }
    let elapsed = t0.elapsed();
    Ok((
        Sample::new(from_sched, elapsed),
        Sample::new(from_send, elapsed),
    ))
}

fn configmap(name: String, value: &Arc<String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        data: Some([("v".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

async fn create_ns(client: &kube::Client, name: &str) -> Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("create namespace {name}"))?;
    Ok(())
}

/// Creates `n` ConfigMaps named `{prefix}-{i}` in `ns` at `concurrency`.
async fn creates(
    api: &Api<ConfigMap>,
    value: &Arc<String>,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Result<Sample> {
    let api = api.clone();
    let value = value.clone();
    let prefix = prefix.to_string();
    closed_loop(n, concurrency, move |i| {
        let api = api.clone();
        let cm = configmap(format!("{prefix}-{i}"), &value);
        async move {
            api.create(&PostParams::default(), &cm)
                .await
                .context("create configmap")?;
            Ok(())
        }
    })
    .await
}

/// One skiff cluster under test.
struct Backend {
    name: &'static str,
    client: kube::Client,
}

async fn setup_backend(b: &Backend, o: &Opts, value: &Arc<String>) -> Result<()> {
    for ns in ["bench-w", "bench-l100", "bench-l1000"] {
        create_ns(&b.client, ns).await?;
    }
    let api = |ns: &str| Api::<ConfigMap>::namespaced(b.client.clone(), ns);
    creates(&api("bench-l100"), value, "cm", 100, o.concurrency).await?;
    creates(&api("bench-l1000"), value, "cm", 1000, o.concurrency).await?;
    // Warm-up: connections, TLS sessions, caches.
    creates(&api("bench-w"), value, "warm", 300, o.concurrency).await?;
    Ok(())
}

async fn round_backend(
    b: &Backend,
    o: &Opts,
    value: &Arc<String>,
    rep: usize,
    res: &mut Results,
) -> Result<()> {
    let col = b.name;
    let w = Api::<ConfigMap>::namespaced(b.client.clone(), "bench-w");
    let c = o.concurrency;

    let s = creates(&w, value, &format!("tp{rep}"), o.creates, c).await?;
    res.add(&format!("creates/s, C={c}"), col, s.rate());
    res.add(&format!("create p50 ms, C={c}"), col, s.pct(50.0));
    res.add(&format!("create p99 ms, C={c}"), col, s.pct(99.0));

    let s = creates(&w, value, &format!("ser{rep}"), o.serial, 1).await?;
    res.add("creates/s, C=1", col, s.rate());
    res.add("create p50 ms, C=1", col, s.pct(50.0));
    res.add("create p99 ms, C=1", col, s.pct(99.0));

    let api = w.clone();
    let v = value.clone();
    let (sched, sent) = open_loop(o.rate, o.paced_secs, move |i| {
        let api = api.clone();
        let cm = configmap(format!("paced{rep}-{i}"), &v);
        async move {
            api.create(&PostParams::default(), &cm)
                .await
                .context("create configmap")?;
            Ok(())
        }
    })
    .await?;
    add_paced(res, o.rate, col, &sched, &sent);

    let l1000 = Api::<ConfigMap>::namespaced(b.client.clone(), "bench-l1000");
    let api = l1000.clone();
    let s = closed_loop(o.gets, 1, move |i| {
        let api = api.clone();
        async move {
            api.get(&format!("cm-{}", (i * 7919) % 1000))
                .await
                .context("get configmap")?;
            Ok(())
        }
    })
    .await?;
    res.add("get p50 ms, C=1", col, s.pct(50.0));
    res.add("get p99 ms, C=1", col, s.pct(99.0));

    for (ns, n, lists) in [
        ("bench-l100", 100, o.lists * 5),
        ("bench-l1000", 1000, o.lists),
    ] {
        let api = Api::<ConfigMap>::namespaced(b.client.clone(), ns);
        let s = closed_loop(lists, 1, move |_| {
            let api = api.clone();
            async move {
                let l = api.list(&ListParams::default()).await.context("list")?;
                if l.items.len() != n {
                    bail!("listed {} ConfigMaps in {ns}, want {n}", l.items.len());
                }
                Ok(())
            }
        })
        .await?;
        res.add(&format!("list {n} p50 ms"), col, s.pct(50.0));
        res.add(&format!("list {n} p99 ms"), col, s.pct(99.0));
    }
    Ok(())
}

async fn round_raw(
    etcd: &etcd_client::Client,
    o: &Opts,
    value: &Arc<String>,
    rep: usize,
    res: &mut Results,
) -> Result<()> {
    const RAW: &str = "raw etcd";
    for (c, n) in [(o.concurrency, o.creates), (1, o.serial)] {
        let kv = etcd.kv_client();
        let v = value.clone();
        let s = closed_loop(n, c, move |i| {
            let mut kv = kv.clone();
            let v = v.clone();
            async move {
                kv.put(format!("/bench-raw/{rep}/{c}/{i}"), v.as_bytes(), None)
                    .await
                    .context("etcd put")?;
                Ok(())
            }
        })
        .await?;
        res.add(&format!("creates/s, C={c}"), RAW, s.rate());
        res.add(&format!("create p50 ms, C={c}"), RAW, s.pct(50.0));
        res.add(&format!("create p99 ms, C={c}"), RAW, s.pct(99.0));
    }

    let kv = etcd.kv_client();
    let v = value.clone();
    let (sched, sent) = open_loop(o.rate, o.paced_secs, move |i| {
        let mut kv = kv.clone();
        let v = v.clone();
        async move {
            kv.put(format!("/bench-raw/{rep}/paced/{i}"), v.as_bytes(), None)
                .await
                .context("etcd put")?;
            Ok(())
        }
    })
    .await?;
    add_paced(res, o.rate, RAW, &sched, &sent);

    let kv = etcd.kv_client();
    let s = closed_loop(o.gets, 1, move |i| {
        let mut kv = kv.clone();
        async move {
            let r = kv
                .get(format!("/bench-raw-l1000/cm-{}", (i * 7919) % 1000), None)
                .await
                .context("etcd get")?;
            if r.kvs().len() != 1 {
                bail!("etcd get found {} keys", r.kvs().len());
            }
            Ok(())
        }
    })
    .await?;
    res.add("get p50 ms, C=1", RAW, s.pct(50.0));
    res.add("get p99 ms, C=1", RAW, s.pct(99.0));

    for (n, lists) in [(100, o.lists * 5), (1000, o.lists)] {
        let kv = etcd.kv_client();
        let s = closed_loop(lists, 1, move |_| {
            let mut kv = kv.clone();
            async move {
                let r = kv
                    .get(
                        format!("/bench-raw-l{n}/"),
                        Some(etcd_client::GetOptions::new().with_prefix()),
                    )
                    .await
                    .context("etcd range")?;
                if r.kvs().len() != n {
                    bail!("etcd range found {} keys, want {n}", r.kvs().len());
                }
                Ok(())
            }
        })
        .await?;
        res.add(&format!("list {n} p50 ms"), RAW, s.pct(50.0));
        res.add(&format!("list {n} p99 ms"), RAW, s.pct(99.0));
    }
    Ok(())
}

/// Prefills the keys raw etcd gets and ranges read.
async fn setup_raw(etcd: &etcd_client::Client, o: &Opts, value: &Arc<String>) -> Result<()> {
    for n in [100usize, 1000] {
        let kv = etcd.kv_client();
        let v = value.clone();
        closed_loop(n, o.concurrency, move |i| {
            let mut kv = kv.clone();
            let v = v.clone();
            async move {
                kv.put(format!("/bench-raw-l{n}/cm-{i}"), v.as_bytes(), None)
                    .await
                    .context("etcd put")?;
                Ok(())
            }
        })
        .await?;
    }
    Ok(())
}

fn add_paced(res: &mut Results, rate: u64, col: &str, sched: &Sample, sent: &Sample) {
    let r = rate;
    res.add(&format!("paced {r}/s: achieved/s"), col, sched.rate());
    res.add(
        &format!("paced {r}/s: create p50 ms (from schedule)"),
        col,
        sched.pct(50.0),
    );
    res.add(
        &format!("paced {r}/s: create p99 ms (from schedule)"),
        col,
        sched.pct(99.0),
    );
    res.add(
        &format!("paced {r}/s: create p50 ms (from send)"),
        col,
        sent.pct(50.0),
    );
    res.add(
        &format!("paced {r}/s: create p99 ms (from send)"),
        col,
        sent.pct(99.0),
    );
}

fn print_table(o: &Opts, res: &Results) {
    let cols = ["raw etcd", "embedded", "etcd"];
    let c = o.concurrency;
    let r = o.rate;
    let rows = [
        format!("creates/s, C={c}"),
        format!("create p50 ms, C={c}"),
        format!("create p99 ms, C={c}"),
        "creates/s, C=1".to_string(),
        "create p50 ms, C=1".to_string(),
        "create p99 ms, C=1".to_string(),
        format!("paced {r}/s: achieved/s"),
        format!("paced {r}/s: create p50 ms (from schedule)"),
        format!("paced {r}/s: create p99 ms (from schedule)"),
        format!("paced {r}/s: create p50 ms (from send)"),
        format!("paced {r}/s: create p99 ms (from send)"),
        "get p50 ms, C=1".to_string(),
        "get p99 ms, C=1".to_string(),
        "list 100 p50 ms".to_string(),
        "list 100 p99 ms".to_string(),
        "list 1000 p50 ms".to_string(),
        "list 1000 p99 ms".to_string(),
    ];
    let cell = |row: &str, col: &str| res.median(row, col).map(fmt).unwrap_or_else(|| "–".into());
    println!(
        "Medians of {} rounds. Columns: raw etcd via etcd-client (put, get, prefix range: the ceiling); skiff on the \
         embedded store; skiff on `--store etcd` (same etcd).\n",
        o.reps
    );
    println!("| metric | raw etcd | skiff embedded | skiff etcd |");
    println!("|---|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {row} | {} | {} | {} |",
            cell(row, cols[0]),
            cell(row, cols[1]),
            cell(row, cols[2])
        );
    }
    println!();
    println!("| ratio (medians) | value |");
    println!("|---|---:|");
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    };
    for cc in [format!("C={c}"), "C=1".to_string()] {
        let row = format!("creates/s, {cc}");
        println!(
            "| skiff etcd creates/s ÷ raw etcd puts/s, {cc} | {} |",
            ratio(res.median(&row, "etcd"), res.median(&row, cols[0]))
        );
        println!(
            "| skiff embedded creates/s ÷ raw etcd puts/s, {cc} | {} |",
            ratio(res.median(&row, "embedded"), res.median(&row, cols[0]))
        );
        println!(
            "| skiff embedded creates/s ÷ skiff etcd creates/s, {cc} | {} |",
            ratio(res.median(&row, "embedded"), res.median(&row, "etcd"))
        );
    }
    println!();
    println!("Per-round values (round 1 / 2 / …), for the spread:\n");
    println!("| metric | raw etcd | skiff embedded | skiff etcd |");
    println!("|---|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {row} | {} | {} | {} |",
            res.all(row, cols[0]),
            res.all(row, cols[1]),
            res.all(row, cols[2])
        );
    }
}

async fn run(o: Opts, etcd: &Etcd, embedded: &Cluster, on_etcd: &Cluster) -> Result<()> {
    let value = Arc::new(payload(o.value_bytes));
    let raw = etcd_client::Client::connect([etcd.client_url.as_str()], None)
        .await
        .context("connect to etcd")?;
    let backends = [
        Backend {
            name: "embedded",
            client: embedded.client().await?,
        },
        Backend {
            name: "etcd",
            client: on_etcd.client().await?,
        },
    ];
    for b in &backends {
        eprintln!("setting up {} (prefill 100 + 1000, warm-up 300)", b.name);
        setup_backend(b, &o, &value).await?;
    }
    setup_raw(&raw, &o, &value).await?;
    let mut res = Results::default();
    for rep in 0..o.reps {
        eprintln!("round {}/{}: raw etcd", rep + 1, o.reps);
        round_raw(&raw, &o, &value, rep, &mut res).await?;
        // Alternate the order so neither backend always runs first.
        let order: Vec<&Backend> = if rep % 2 == 0 {
            backends.iter().collect()
        } else {
            backends.iter().rev().collect()
        };
        for b in order {
            eprintln!("round {}/{}: skiff {}", rep + 1, o.reps, b.name);
            round_backend(b, &o, &value, rep, &mut res).await?;
        }
    }
    print_table(&o, &res);
    Ok(())
}

fn main() -> Result<()> {
    let o = Opts::parse()?;
    if std::env::var_os("SKIFF_BIN").is_none() {
        // Prefer the skiff built alongside this binary (release), not e2e's
        // default of target/debug.
        let exe = std::env::current_exe()?;
        let sibling: PathBuf = exe.with_file_name("skiff");
        if !sibling.exists() {
            bail!(
                "no {} : run `cargo build --release --bins -p skiff -p e2e` or set SKIFF_BIN",
                sibling.display()
            );
        }
        // Single-threaded here: no runtime has started yet.
        std::env::set_var("SKIFF_BIN", &sibling);
    }
    eprintln!(
        "skiff binary: {}; options: {o:?}",
        e2e::skiff_bin().display()
    );
    let etcd = Etcd::start()?;
    eprintln!("etcd at {}", etcd.client_url);
    let embedded = Cluster::start(ClusterOptions::default())?;
    let on_etcd = Cluster::start(ClusterOptions {
        extra_args: vec![
            "--store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            etcd.client_url.clone(),
        ],
        ..Default::default()
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(o, &etcd, &embedded, &on_etcd))
}
