//! Test harness for skiff's end-to-end suite: starts a real `skiff up` on a
//! temporary data dir and a free port, and hands out clients for it
//! (kubectl, kube-rs, raw HTTPS). Every cluster is stopped and its data dir
//! removed when the handle drops, even when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod containerd;
pub mod load;
pub mod plot;

/// The `skiff` binary under test: `$SKIFF_BIN`, else the workspace's
/// `target/{debug,release}/skiff`, built by `cargo test` beforehand.
pub fn skiff_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("skiff");
        if p.exists() {
            return p;
        }
    }
    target.join("debug").join("skiff")
}

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind an ephemeral port")?;
    Ok(l.local_addr()?.port())
}

/// Waits for `f` to return `Ok(Some(x))`, polling every 50 ms until `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(x)) => return Ok(x),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            match last_err {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}: last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls the async `f` every 100 ms until it returns `Some`, failing after
/// `timeout` with the last error seen.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!(": last error: {e:#}"),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}{last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Options for a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Extra `skiff up` flags, e.g. `["--store", "etcd", "--etcd-endpoints", url]`.
    pub extra_args: Vec<String>,
    pub nodes: u32,
    pub runtime: &'static str,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            extra_args: Vec::new(),
            nodes: 0,
            runtime: "sim",
        }
    }
}

/// A running `skiff up` process.
pub struct Cluster {
    pub data_dir: tempfile::TempDir,
    pub port: u16,
    pub options: ClusterOptions,
    child: Option<Child>,
    log: PathBuf,
}

impl Cluster {
    /// Starts a cluster and waits until its kubeconfig is written and the API answers.
    pub fn start(options: ClusterOptions) -> Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("skiff-e2e-").tempdir()?;
        let port = free_port()?;
        let log = data_dir.path().join("skiff.log");
        let mut c = Cluster {
            data_dir,
            port,
            options,
            child: None,
            log,
        };
        c.spawn()?;
        Ok(c)
    }

    /// Starts with default options (sim runtime, no nodes, embedded store).
    pub fn start_default() -> Result<Self> {
        Self::start(ClusterOptions::default())
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(skiff_bin());
        cmd.arg("up")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--nodes")
            .arg(self.options.nodes.to_string())
            .arg("--runtime")
            .arg(self.options.runtime)
            .args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {}: run `cargo build` first",
                skiff_bin().display()
            )
        })?;
        self.child = Some(child);
        let kubeconfig = self.kubeconfig();
        let start = Instant::now();
        wait_for("the API server to answer", Duration::from_secs(60), || {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("skiff up exited with {status}: {}", self.logs());
                }
            }
            if !kubeconfig.exists() {
                return Ok(None);
            }
            let out = self.kubectl_output(&["get", "--raw", "/readyz"])?;
            Ok(out.status.success().then_some(()))
        })?;
        eprintln!(
            "cluster on port {} ready in {:?}",
            self.port,
            start.elapsed()
        );
        Ok(())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("kubeconfig.yaml")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The admin bearer token.
    pub fn token(&self) -> Result<String> {
        let text = std::fs::read_to_string(self.data_dir.path().join("tokens.csv"))?;
        text.lines()
            .find(|l| l.contains(",admin,"))
            .and_then(|l| l.split(',').next())
            .map(str::to_string)
            .context("no admin token")
    }

    /// The cluster CA in PEM.
    pub fn ca_pem(&self) -> Result<String> {
        Ok(std::fs::read_to_string(
            self.data_dir.path().join("pki").join("ca.crt"),
        )?)
    }

    /// Everything the cluster printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs kubectl against the cluster and returns its raw output.
    pub fn kubectl_output(&self, args: &[&str]) -> Result<Output> {
        Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run kubectl")
    }

    /// Runs kubectl with `stdin` as its input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<Output> {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run kubectl")?;
        if let Some(mut s) = child.stdin.take() {
            s.write_all(stdin.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// Runs kubectl and returns stdout, failing with stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl_output(args)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A kube-rs client for the cluster.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Stops the cluster with SIGKILL (no cleanup), keeping the data dir.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Stops the cluster with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("the cluster is not running");
        };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let status = wait_for("skiff to exit", Duration::from_secs(30), || {
            Ok(c.try_wait()?)
        })?;
        Ok(status)
    }

    /// Starts the cluster again on the same data dir and port.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn()
    }

    /// The process id of the running `skiff up`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- skiff log ({}) ---\n{}",
                self.log.display(),
                self.logs()
            );
        }
    }
}

/// A real etcd from Debian's etcd-server on free loopback ports, killed on drop.
pub struct Etcd {
    pub client_url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("skiff-etcd-").tempdir()?;
        let client = free_port()?;
        let peer = free_port()?;
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start etcd: install Debian's etcd-server")?;
        let etcd = Etcd {
            client_url,
            child,
            _dir: dir,
        };
        wait_for("etcd to listen", Duration::from_secs(30), || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", client))
                .ok()
                .map(|_| ()))
        })?;
        Ok(etcd)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which store a test cluster runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Embedded,
    Etcd,
}

/// A cluster and, for the etcd store, its etcd. Fields drop in order, so
/// skiff stops before its etcd does.
pub struct StoreCluster {
    pub cluster: Cluster,
    pub etcd: Option<Etcd>,
}

impl std::ops::Deref for StoreCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for StoreCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

/// Starts a cluster on `store` (a real etcd for [`Store::Etcd`]). Blocking:
/// from a multi-thread tokio test it runs in `block_in_place`.
pub fn start_on(store: Store) -> Result<StoreCluster> {
    let start = || match store {
        Store::Embedded => Ok(StoreCluster {
            cluster: Cluster::start_default()?,
            etcd: None,
        }),
        Store::Etcd => {
            let etcd = Etcd::start()?;
            let cluster = Cluster::start(ClusterOptions {
                extra_args: vec![
                    "--store".to_string(),
                    "etcd".to_string(),
                    "--etcd-endpoints".to_string(),
                    etcd.client_url.clone(),
                ],
                ..ClusterOptions::default()
            })?;
            Ok(StoreCluster {
                cluster,
                etcd: Some(etcd),
            })
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(start),
        Err(_) => start(),
    }
}

/// Runs an async test body `async fn NAME(store: e2e::Store) -> anyhow::Result<()>`
/// once per store, as `NAME::on_the_embedded_store` and `NAME::on_the_etcd_store`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn on_the_embedded_store() -> anyhow::Result<()> {
                super::$name($crate::Store::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn on_the_etcd_store() -> anyhow::Result<()> {
                super::$name($crate::Store::Etcd).await
            }
        }
    )*};
}
