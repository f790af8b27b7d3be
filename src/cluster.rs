//! Running the subcommands: the data dir layout, tokens and kubeconfig, and
//! starting components in order.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;

use crate::cli::{
    AgentArgs, Cli, ClusterDnsArgs, Command, ControlPlaneArgs, DownArgs, Runtime, StoreKind, UpArgs,
};

/// Files of a cluster's data dir.
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn resolve(dir: Option<&Path>) -> Result<Self> {
        let root = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let home = std::env::var_os("HOME")
                    .ok_or_else(|| anyhow!("HOME is not set: pass --data-dir DIR"))?;
                PathBuf::from(home).join(".skiff")
            }
        };
        Ok(Self { root })
    }
    fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    fn tokens(&self) -> PathBuf {
        self.root.join("tokens.csv")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig.yaml")
    }
    fn node_token(&self) -> PathBuf {
        self.root.join("node-token")
    }
    fn pid(&self) -> PathBuf {
        self.root.join("skiff.pid")
    }
    fn db(&self) -> PathBuf {
        self.root.join("db").join("state.redb")
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(args) => up(args).await,
        Command::Server(args) => serve_control_plane(&args.control_plane, None).await,
        Command::Agent(args) => agent(args).await,
        Command::Down(args) => down(args).await,
        Command::Image(args) => crate::image::run(args),
        Command::Node(args) => node_command(args),
    }
}

/// Holds the data dir's lock for the life of the process, so two clusters
/// never share one data dir.
struct DirLock {
    _file: File,
}

fn lock_data_dir(dir: &DataDir) -> Result<DirLock> {
    std::fs::create_dir_all(&dir.root).with_context(|| {
        format!(
            "cannot create the data dir {}: check its permissions",
            dir.root.display()
        )
    })?;
    let path = dir.root.join("skiff.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "the data dir {} is in use by another running skiff: stop it with `skiff down --data-dir {}` or choose another --data-dir",
            dir.root.display(),
            dir.root.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => return Err(e).context("cannot lock the data dir"),
    }
    std::fs::write(dir.pid(), std::process::id().to_string())
        .context("cannot write the pid file")?;
    Ok(DirLock { _file: file })
}

/// The admin and node tokens: created once, then reused.
fn ensure_tokens(dir: &DataDir) -> Result<(String, String)> {
    let path = dir.tokens();
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut admin = None;
        let mut node = None;
        for line in text.lines() {
            let parts: Vec<&str> = line.split(',').collect();
            match parts.as_slice() {
                [t, "admin", ..] => admin = Some(t.to_string()),
                [t, "system:node-bootstrap", ..] => node = Some(t.to_string()),
                _ => {}
            }
        }
        if let (Some(a), Some(n)) = (admin, node) {
            return Ok((a, n));
        }
    }
    let admin = apiserver::auth::random_token();
    let node = apiserver::auth::random_token();
    let text = format!("{admin},admin,system:masters\n{node},system:node-bootstrap,system:nodes\n");
    write_private(&path, &text)?;
    Ok((admin, node))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn write_kubeconfig(dir: &DataDir, server: &str, ca_pem: &str, token: &str) -> Result<()> {
    write_kubeconfig_file(&dir.kubeconfig(), server, ca_pem, token)
}

/// A kubeconfig for `server`, trusting `ca_pem`, authenticating with `token`.
pub fn write_kubeconfig_file(path: &Path, server: &str, ca_pem: &str, token: &str) -> Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "skiff", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "skiff-user", "user": {"token": token}}],
        "contexts": [{"name": "skiff", "context": {"cluster": "skiff", "user": "skiff-user"}}],
        "current-context": "skiff",
    });
    let yaml = serde_saphyr::to_string(&config).context("cannot render the kubeconfig")?;
    write_private(path, &yaml)
}

fn server_config(
    cp: &ControlPlaneArgs,
    dir: &DataDir,
    tokens: apiserver::auth::TokenAuthenticator,
) -> apiserver::Config {
    let store = match cp.store {
        StoreKind::Embedded => apiserver::StoreConfig::Embedded { path: dir.db() },
        StoreKind::Etcd => apiserver::StoreConfig::Etcd {
            endpoints: cp.etcd_endpoints.clone(),
            prefix: String::new(),
        },
    };
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
        // The `kubernetes` Service's ClusterIP, which in-cluster clients dial.
        cp.service_cluster_ip_range.first().to_string(),
    ];
    let bind = cp.bind_address.to_string();
    if !cp.bind_address.is_unspecified() && !sans.contains(&bind) {
        sans.push(bind);
    }
    apiserver::Config {
        bind: std::net::SocketAddr::new(cp.bind_address, cp.port),
        store,
        pki_dir: dir.pki(),
        tls_sans: sans,
        tokens,
        // Watchers older than this window replay from the store's own history,
        // decoding every event again for each of them, and a live watcher that
        // falls this far behind is closed and resumes from there: at 1,024 the
        // scheduler benchmark's watchers (a few thousand events a second)
        // dropped to the store path and a tenth of the CPU went to re-decoding.
        // Each event holds about one decoded object (the previous state is
        // shared with the key's preceding event).
        watch_cache_events: 8192,
        default_not_ready_toleration_seconds: cp.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds: cp.default_unreachable_toleration_seconds,
        service_cidr: cp.service_cluster_ip_range,
        service_account_issuer: cp.service_account_issuer.clone(),
        disable_admission_plugins: cp.disable_admission_plugins.clone(),
    }
}

/// This control plane's name in leader Leases: the host and a hash of the
/// data dir, stable across restarts so a restarted process takes its own
/// Leases back at once.
fn control_plane_identity(dir: &DataDir) -> String {
    use sha2::Digest;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let path = dir.root.canonicalize().unwrap_or_else(|_| dir.root.clone());
    let digest = sha2::Sha256::digest(path.to_string_lossy().as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{host}_{hex}")
}

async fn up(args: UpArgs) -> Result<()> {
    serve_control_plane(&args.control_plane, Some(&args)).await
}

async fn serve_control_plane(cp: &ControlPlaneArgs, up: Option<&UpArgs>) -> Result<()> {
    let started = Instant::now();
    let dir = DataDir::resolve(cp.data_dir.as_deref())?;
    // Flag mistakes fail before anything starts.
    if let Some(manifests) = cp.manifests.as_ref().filter(|m| !m.is_dir()) {
        bail!(
            "the manifests folder {} does not exist: create it or fix --manifests",
            manifests.display()
        );
    }
    let _lock = lock_data_dir(&dir)?;
    let (admin, node_token) = ensure_tokens(&dir)?;
    let tokens = std::fs::read_to_string(dir.tokens()).context("cannot read the token file")?;
    let config = server_config(
        cp,
        &dir,
        apiserver::auth::TokenAuthenticator::parse(&tokens),
    );
    let store_name = match cp.store {
        StoreKind::Embedded => format!("embedded ({})", dir.db().display()),
        StoreKind::Etcd => format!("etcd ({})", cp.etcd_endpoints.join(",")),
    };
    let server = apiserver::start(config).await.map_err(|e| match e {
        apiserver::ServerError::Store(s) if cp.store == StoreKind::Etcd => anyhow!(
            "cannot reach etcd at {}: {s}; start etcd or pass --etcd-endpoints",
            cp.etcd_endpoints.join(",")
        ),
        other => anyhow!(other),
    })?;
    // Where this process's clients (kubeconfig, node proxies) reach the API
    // server: its bind address, or loopback when bound to every address.
    let api_addr = std::net::SocketAddr::new(
        if cp.bind_address.is_unspecified() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            cp.bind_address
        },
        server.local_addr.port(),
    );
    // SocketAddr's Display brackets IPv6 addresses, as URLs want.
    let url = format!("https://{api_addr}");
    let ca =
        std::fs::read_to_string(dir.pki().join("ca.crt")).context("cannot read the cluster CA")?;
    write_kubeconfig(&dir, &url, &ca, &admin)?;
    write_private(
        &dir.node_token(),
        &format!("{}\n", crate::join::node_token(&ca, &node_token)),
    )?;
    println!("skiff: store {store_name} ready");
    println!(
        "skiff: API server ready at {url} ({:.2}s)",
        started.elapsed().as_secs_f64()
    );
    let mut tasks = crate::components::start_control_plane(
        &dir.kubeconfig(),
        cp,
        &server.metrics,
        &control_plane_identity(&dir),
    )
    .await?;
    let mut dns = proxy_options(
        &cp.service_cluster_ip_range,
        up.map(|u| &u.dns).unwrap_or(&ClusterDnsArgs::default()),
    )?;
    // This process's nodes reach the API server where its kubeconfig does.
    dns.api_server = Some(api_addr);
    crate::components::proxy::ensure_cluster_services(
        &dir.kubeconfig(),
        dns.config().cluster_dns_ip,
        cp.service_cluster_ip_range.first(),
        server.local_addr.port(),
    )
    .await?;
    let mut service_proxy = None;
    if up.is_some_and(|u| u.nodes > 0 && u.runtime == Runtime::Containerd) {
        let running = crate::components::proxy::start(&dir.kubeconfig(), &dns).await?;
        let counters = running.counters.clone();
        server.metrics.add_collector(std::sync::Arc::new(move || {
            crate::components::proxy::metrics_text(&counters)
        }));
        service_proxy = Some(running);
    }
    if let Some(up) = up.filter(|u| u.nodes > 0) {
        let node_started = Instant::now();
        tasks.extend(
            crate::components::start_nodes(crate::components::NodeOptions {
                kubeconfig: dir.kubeconfig(),
                data_dir: dir.root.join("nodes"),
                count: up.nodes,
                name: "skiff-node".to_string(),
                runtime: up.runtime,
                containerd_address: up.containerd_address.clone(),
                insecure_registries: up.registries.insecure_registries.clone(),
                eviction_hard: up.eviction.eviction_hard.clone(),
                eviction_monitoring_interval: up.eviction.eviction_monitoring_interval,
                cluster_dns: Some(dns.config().cluster_dns_ip.to_string()),
                cluster_domain: dns.cluster_domain.clone(),
                kubernetes_service: Some((
                    cp.service_cluster_ip_range.first(),
                    crate::components::proxy::KUBERNETES_SERVICE_PORT,
                )),
                request_counters: service_proxy.as_ref().map(|p| {
                    std::sync::Arc::new(crate::components::proxy::AgentCounters(p.counters.clone()))
                        as std::sync::Arc<dyn kubelet::RequestCounters>
                }),
            })
            .await?,
        );
        if !tasks.is_empty() {
            println!(
                "skiff: {} node(s) started ({:.2}s)",
                up.nodes,
                node_started.elapsed().as_secs_f64()
            );
        }
    }
    let manifests_dir = cp
        .manifests
        .clone()
        .unwrap_or_else(|| dir.root.join("manifests"));
    if manifests_dir.is_dir() {
        let client = crate::components::client_from_kubeconfig(&dir.kubeconfig()).await?;
        println!("skiff: applying manifests from {}", manifests_dir.display());
        tasks.push(tokio::spawn(crate::manifests::run(
            client,
            crate::manifests::Config {
                dir: manifests_dir,
                interval: Duration::from_secs(1),
            },
        )));
    }
    println!("skiff: export KUBECONFIG={}", dir.kubeconfig().display());
    wait_for_signal().await?;
    println!("skiff: stopping");
    for t in &tasks {
        t.abort();
    }
    if let Some(p) = service_proxy {
        p.stop().await;
    }
    server.shutdown().await;
    let _ = std::fs::remove_file(dir.pid());
    Ok(())
}

/// The proxy's options from the service range and the DNS flags.
fn proxy_options(
    cidr: &apiserver::allocator::ServiceCidr,
    dns: &ClusterDnsArgs,
) -> Result<crate::components::proxy::ProxyOptions> {
    let service_cidr = proxy::Ipv4Cidr::parse(&cidr.to_string())
        .ok_or_else(|| anyhow!("invalid service range {cidr}"))?;
    if let Some(ip) = dns.cluster_dns {
        if !service_cidr.contains(ip) {
            bail!("--cluster-dns {ip} is outside --service-cluster-ip-range {cidr}");
        }
    }
    Ok(crate::components::proxy::ProxyOptions {
        service_cidr,
        cluster_dns: dns.cluster_dns,
        cluster_domain: dns.cluster_domain.clone(),
        mode: match dns.proxy_mode {
            crate::cli::ProxyModeArg::Nftables => proxy::ProxyMode::Nftables,
            crate::cli::ProxyModeArg::Userspace => proxy::ProxyMode::Userspace,
        },
        api_server: None,
    })
}

/// The socket address of an API server URL (`https://host:port`), as an
/// agent's Service proxy connects to it for the `kubernetes` Service.
async fn api_server_address(server: &str) -> Result<std::net::SocketAddr> {
    let uri: http::Uri = server
        .parse()
        .with_context(|| format!("invalid --server {server}: use https://HOST:PORT"))?;
    let host = uri
        .host()
        .ok_or_else(|| anyhow!("--server {server} has no host: use https://HOST:PORT"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve the API server host {host}"))?;
    addrs
        .next()
        .ok_or_else(|| anyhow!("the API server host {host} has no address"))
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn agent(args: AgentArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.token_file).with_context(|| {
        format!(
            "cannot read the token file {}: copy DATA_DIR/node-token from the server",
            args.token_file.display()
        )
    })?;
    let (ca_hash, token) = crate::join::parse_node_token(&text)?;
    let dir = DataDir::resolve(args.data_dir.as_deref())?;
    let _lock = lock_data_dir(&dir)?;
    let ca = crate::join::fetch_ca(&args.server, &ca_hash).await?;
    let kubeconfig = dir.root.join("agent-kubeconfig.yaml");
    crate::join::write_agent_kubeconfig(&kubeconfig, &args.server, &ca, &token)?;
    let started = Instant::now();
    let mut dns = proxy_options(&args.service_cluster_ip_range, &args.dns)?;
    dns.api_server = Some(api_server_address(&args.server).await?);
    let service_proxy = if args.runtime == Runtime::Containerd {
        Some(crate::components::proxy::start(&kubeconfig, &dns).await?)
    } else {
        None
    };
    let tasks = crate::components::start_nodes(crate::components::NodeOptions {
        kubeconfig,
        data_dir: dir.root.join("nodes"),
        count: 1,
        name: args.node_name.clone(),
        runtime: args.runtime,
        containerd_address: args.containerd_address.clone(),
        insecure_registries: args.registries.insecure_registries.clone(),
        eviction_hard: args.eviction.eviction_hard.clone(),
        eviction_monitoring_interval: args.eviction.eviction_monitoring_interval,
        cluster_dns: Some(dns.config().cluster_dns_ip.to_string()),
        cluster_domain: dns.cluster_domain.clone(),
        kubernetes_service: Some((
            args.service_cluster_ip_range.first(),
            crate::components::proxy::KUBERNETES_SERVICE_PORT,
        )),
        request_counters: service_proxy.as_ref().map(|p| {
            std::sync::Arc::new(crate::components::proxy::AgentCounters(p.counters.clone()))
                as std::sync::Arc<dyn kubelet::RequestCounters>
        }),
    })
    .await?;
    println!(
        "skiff: node {} joined {} ({:.2}s)",
        args.node_name,
        args.server,
        started.elapsed().as_secs_f64()
    );
    wait_for_signal().await?;
    println!("skiff: stopping node {}", args.node_name);
    for t in &tasks {
        t.abort();
    }
    if let Some(p) = service_proxy {
        p.stop().await;
    }
    let _ = std::fs::remove_file(dir.pid());
    Ok(())
}

async fn down(args: DownArgs) -> Result<()> {
    let dir = DataDir::resolve(args.data_dir.as_deref())?;
    if !dir.root.exists() {
        bail!(
            "no cluster data dir at {}: pass the --data-dir the cluster was started with",
            dir.root.display()
        );
    }
    stop_cluster_process(&dir).await?;
    remove_node_leftovers(&dir).await;
    // Normally removed by the stopping process; not after a SIGKILL.
    if dir.root.join("nodes").is_dir() {
        let _ = proxy::cleanup(proxy::DEFAULT_INTERFACE, proxy::DEFAULT_NFT_TABLE).await;
    }
    Ok(())
}

/// `skiff node stop|start NAME`: sets or clears the node's stop marker,
/// which the running cluster watches.
fn node_command(args: crate::cli::NodeArgs) -> Result<()> {
    let (stop, args) = match args.command {
        crate::cli::NodeCommand::Stop(target) => (true, target),
        crate::cli::NodeCommand::Start(target) => (false, target),
    };
    let dir = DataDir::resolve(args.data_dir.as_deref())?;
    let node_dir = dir.root.join("nodes").join(&args.name);
    if !node_dir.join(kubelet::agent::cleanup::STATE_FILE).exists() {
        bail!(
            "no containerd node {} in {}: pass a name from `kubectl get nodes` and the cluster's --data-dir (simulated nodes cannot be stopped one by one)",
            args.name,
            dir.root.display()
        );
    }
    let marker = crate::components::stop_marker(&node_dir);
    match stop {
        true => {
            std::fs::write(&marker, b"")
                .with_context(|| format!("cannot write {}", marker.display()))?;
            println!(
                "skiff: node {} stopping: its Lease is no longer renewed, so it turns NotReady after --node-monitor-grace-period",
                args.name
            );
        }
        false => {
            match std::fs::remove_file(&marker) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("skiff: node {} is not stopped", args.name);
                    return Ok(());
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", marker.display()))
                }
            }
            println!("skiff: node {} starting", args.name);
        }
    }
    Ok(())
}

/// Stops the process running the cluster (SIGTERM, SIGKILL after 20 s).
async fn stop_cluster_process(dir: &DataDir) -> Result<()> {
    let pid = std::fs::read_to_string(dir.pid())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let Some(pid) = pid else {
        println!("skiff: no running cluster in {}", dir.root.display());
        return Ok(());
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, None).is_err() {
        println!(
            "skiff: no running cluster in {} (stale pid file removed)",
            dir.root.display()
        );
        let _ = std::fs::remove_file(dir.pid());
        return Ok(());
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .context("cannot signal the cluster process")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if nix::sys::signal::kill(pid, None).is_err() {
            println!("skiff: cluster in {} stopped", dir.root.display());
            let _ = std::fs::remove_file(dir.pid());
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = std::fs::remove_file(dir.pid());
    // A killed process could not remove its service interface.
    let _ = proxy::cleanup(proxy::DEFAULT_INTERFACE, proxy::DEFAULT_NFT_TABLE).await;
    println!(
        "skiff: cluster in {} did not stop within 20s and was killed",
        dir.root.display()
    );
    Ok(())
}

/// Removes the containers, pod networks, bridges and containerd of every
/// real node of the data dir (simulated nodes leave nothing behind).
async fn remove_node_leftovers(dir: &DataDir) {
    let nodes = dir.root.join("nodes");
    for entry in std::fs::read_dir(&nodes).into_iter().flatten().flatten() {
        let node_dir = entry.path();
        if !node_dir.join(kubelet::agent::cleanup::STATE_FILE).exists() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        match kubelet::agent::cleanup::remove_node(&node_dir).await {
            Ok(removed) => println!(
                "skiff: node {name}: removed {} containers, {} pod networks{}",
                removed.containers,
                removed.sandboxes,
                if removed.bridge {
                    " and its bridge"
                } else {
                    ""
                }
            ),
            Err(e) => eprintln!("skiff: node {name}: {e}"),
        }
    }
}
