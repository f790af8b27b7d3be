//! Command-line flags. Flag names follow Kubernetes' where one exists.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "skiff",
    version,
    about = "A lightweight, Kubernetes-compatible container orchestrator"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a whole local cluster in the foreground: API server, scheduler, controllers and N nodes.
    Up(UpArgs),
    /// Run the control plane only (API server, scheduler, controllers).
    Server(ServerArgs),
    /// Run one node agent that joins a server.
    Agent(AgentArgs),
    /// Stop a cluster started with `up` and remove what it left running.
    Down(DownArgs),
    /// Build or import local images for a cluster's nodes (no registry needed).
    Image(ImageArgs),
    /// Stop or start one real node of a running local cluster (failover drills).
    Node(NodeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// Real containers through containerd.
    Containerd,
    /// Simulated nodes (kwok-style), for scale tests.
    Sim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A redb database under the data dir (no external process).
    Embedded,
    /// An external etcd (see --etcd-endpoints).
    Etcd,
}

/// Flags shared by `up` and `server`.
#[derive(Debug, Clone, Args)]
pub struct ControlPlaneArgs {
    /// Where the cluster keeps its state, certificates and kubeconfig.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: std::net::IpAddr,
    /// Storage backend.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,
    /// Comma-separated etcd client URLs (with --store etcd).
    #[arg(
        long,
        value_name = "URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,
    /// How long a node may go without renewing its Lease before it is marked NotReady/Unknown.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "40s")]
    pub node_monitor_grace_period: Duration,
    /// How long a control plane's leader Lease (scheduler, controller
    /// manager) outlives its last renewal; a standby takes over after it.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// Toleration seconds added to pods for the not-ready taint.
    #[arg(long, default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// Toleration seconds added to pods for the unreachable taint.
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
    /// HPA sync period.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// The IPv4 range Service ClusterIPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/16", value_parser = parse_service_cidr)]
    pub service_cluster_ip_range: apiserver::allocator::ServiceCidr,
    /// The `iss` of service-account tokens; tokens must also carry it as an
    /// audience to authenticate to the API server.
    #[arg(long, default_value = apiserver::serviceaccount::DEFAULT_ISSUER)]
    pub service_account_issuer: String,
    /// Admission plugins to turn off, comma separated (e.g. ServiceAccount).
    #[arg(long, value_name = "PLUGINS", value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,
    /// A folder of YAML manifests applied at start and whenever a file changes.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,
    /// How many node agents to run.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Container runtime of the nodes.
    #[arg(long, value_enum, default_value_t = Runtime::Containerd)]
    pub runtime: Runtime,
    /// An existing containerd socket to use instead of starting one.
    #[arg(long, value_name = "SOCKET")]
    pub containerd_address: Option<PathBuf>,
    #[command(flatten)]
    pub dns: ClusterDnsArgs,
    #[command(flatten)]
    pub registries: RegistryArgs,
    #[command(flatten)]
    pub eviction: EvictionArgs,
}

/// Node-pressure eviction flags of the nodes (the kubelet's names).
#[derive(Debug, Clone, Args)]
pub struct EvictionArgs {
    /// Hard eviction thresholds: SIGNAL<QUANTITY or SIGNAL<PERCENT%, comma
    /// separated (signals: memory.available, nodefs.available,
    /// nodefs.inodesFree, imagefs.available, imagefs.inodesFree). Replaces
    /// the defaults (memory.available<100Mi,nodefs.available<10%,
    /// imagefs.available<15%,nodefs.inodesFree<5%): signals not named are
    /// off, and 0% turns one off.
    #[arg(long, value_name = "THRESHOLDS")]
    pub eviction_hard: Option<kubelet::EvictionThresholds>,
    /// How often the nodes compare their signals with the thresholds (for
    /// tests; Kubernetes: 10s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s", hide = true)]
    pub eviction_monitoring_interval: Duration,
}

impl Default for EvictionArgs {
    fn default() -> Self {
        Self {
            eviction_hard: None,
            eviction_monitoring_interval: Duration::from_secs(10),
        }
    }
}

/// Image registry flags of the nodes.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryArgs {
    /// A registry (HOST:PORT, or HOST for any port) the nodes pull from over
    /// plain HTTP instead of HTTPS; repeat for several.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
}

/// Service networking flags of the nodes (kubelet's and kube-proxy's names).
#[derive(Debug, Clone, Args)]
pub struct ClusterDnsArgs {
    /// How ClusterIPs are carried: `nftables` (kernel DNAT, fast, survives a
    /// killed skiff) or `userspace` (a metering proxy that counts requests
    /// and errors per Service). One Service can pick its own with the
    /// annotation `proxy.skiff.io/mode`.
    #[arg(long, value_enum, default_value_t = ProxyModeArg::Nftables)]
    pub proxy_mode: ProxyModeArg,
    /// The cluster DNS server's IP (default: the service network + 10, e.g. 10.96.0.10).
    #[arg(long, value_name = "IP")]
    pub cluster_dns: Option<std::net::Ipv4Addr>,
    /// The cluster domain Service names live under.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

impl Default for ClusterDnsArgs {
    fn default() -> Self {
        Self {
            proxy_mode: ProxyModeArg::Nftables,
            cluster_dns: None,
            cluster_domain: "cluster.local".to_string(),
        }
    }
}

/// `--proxy-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyModeArg {
    Nftables,
    Userspace,
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The API server URL, e.g. https://127.0.0.1:6443.
    #[arg(long)]
    pub server: String,
    /// File holding the node-join token (the server writes DATA_DIR/node-token).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// Name of the Node object.
    #[arg(long)]
    pub node_name: String,
    /// Container runtime.
    #[arg(long, value_enum, default_value_t = Runtime::Containerd)]
    pub runtime: Runtime,
    /// Where the agent keeps its state.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// An existing containerd socket to use instead of starting one.
    #[arg(long, value_name = "SOCKET")]
    pub containerd_address: Option<PathBuf>,
    /// The server's Service ClusterIP range (for the node's service proxy).
    #[arg(long, default_value = "10.96.0.0/16", value_parser = parse_service_cidr)]
    pub service_cluster_ip_range: apiserver::allocator::ServiceCidr,
    #[command(flatten)]
    pub dns: ClusterDnsArgs,
    #[command(flatten)]
    pub registries: RegistryArgs,
    #[command(flatten)]
    pub eviction: EvictionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// The data dir of the cluster to stop.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pack a local executable and the shared libraries it needs into an OCI
    /// image in DATA_DIR/images, where the nodes import it.
    Build {
        /// The executable; it becomes `/bin/<name>`, the image's entrypoint.
        #[arg(long, value_name = "PATH")]
        binary: PathBuf,
        /// The image name pods refer to, e.g. `skiff.local/my-service:1`.
        #[arg(long)]
        name: String,
        /// Extra names in /bin linking to the binary (e.g. busybox applets).
        #[arg(long, value_name = "NAME")]
        link: Vec<String>,
        /// The cluster's data dir (default ~/.skiff).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Write the archive here instead of DATA_DIR/images.
        #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
        output: Option<PathBuf>,
    },
    /// Copy an image archive (`docker save` or OCI layout tar) into
    /// DATA_DIR/images, where the nodes import it.
    Import {
        /// The archive.
        file: PathBuf,
        /// The cluster's data dir (default ~/.skiff).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Stop the node as a crash would: no more heartbeats, containerd
    /// stopped, containers left running.
    Stop(NodeTarget),
    /// Start a stopped node again; it re-adopts or removes its containers.
    Start(NodeTarget),
}

#[derive(Debug, Args)]
pub struct NodeTarget {
    /// The node's name, e.g. `skiff-node-1` (see `kubectl get nodes`).
    pub name: String,
    /// The cluster's data dir (default ~/.skiff).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

fn parse_service_cidr(s: &str) -> Result<apiserver::allocator::ServiceCidr, String> {
    apiserver::allocator::ServiceCidr::parse(s)
        .ok_or_else(|| format!("{s:?} is not an IPv4 CIDR between /8 and /30, e.g. 10.96.0.0/16"))
}

/// Prints a flag error on one line (help and version print as usual).
pub fn report_parse_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim()
                .trim_start_matches("error: ");
            let tip = rendered
                .lines()
                .find(|l| l.trim_start().starts_with("tip:"))
                .map(|t| format!(" ({})", t.trim()))
                .unwrap_or_default();
            eprintln!("error: {first}{tip}; see 'skiff --help'");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_defaults_match_the_documented_contract() {
        let cli = Cli::try_parse_from(["skiff", "up"]).expect("parses");
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.control_plane.port, 6443);
        assert_eq!(up.nodes, 1);
        assert_eq!(up.runtime, Runtime::Containerd);
        assert_eq!(up.control_plane.store, StoreKind::Embedded);
        assert_eq!(
            up.control_plane.node_monitor_grace_period,
            Duration::from_secs(40)
        );
    }

    #[test]
    fn every_documented_up_flag_parses() {
        let cli = Cli::try_parse_from([
            "skiff",
            "up",
            "--data-dir",
            "/tmp/x",
            "--port",
            "7443",
            "--nodes",
            "3",
            "--runtime",
            "sim",
            "--store",
            "etcd",
            "--etcd-endpoints",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--node-monitor-grace-period",
            "20s",
            "--default-not-ready-toleration-seconds",
            "10",
            "--default-unreachable-toleration-seconds",
            "11",
        ]);
        let Ok(Cli {
            command: Command::Up(up),
        }) = cli
        else {
            panic!("did not parse: {cli:?}")
        };
        assert_eq!(up.control_plane.etcd_endpoints.len(), 2);
        assert_eq!(up.runtime, Runtime::Sim);
    }

    #[test]
    fn agent_requires_its_server_and_token() {
        assert!(Cli::try_parse_from(["skiff", "agent", "--node-name", "n1"]).is_err());
        assert!(Cli::try_parse_from([
            "skiff",
            "agent",
            "--server",
            "https://127.0.0.1:6443",
            "--token-file",
            "t",
            "--node-name",
            "n1",
            "--runtime",
            "sim"
        ])
        .is_ok());
    }

    #[test]
    fn a_bad_runtime_is_rejected() {
        assert!(Cli::try_parse_from(["skiff", "up", "--runtime", "docker"]).is_err());
    }

    #[test]
    fn eviction_hard_parses_on_up_and_agent_and_a_bad_value_says_what_to_write() {
        let cli = Cli::try_parse_from([
            "skiff",
            "up",
            "--eviction-hard",
            "memory.available<1Gi,nodefs.available<0%",
            "--eviction-monitoring-interval",
            "2s",
        ]);
        let Ok(Cli {
            command: Command::Up(up),
        }) = cli
        else {
            panic!("did not parse: {cli:?}")
        };
        assert_eq!(
            up.eviction.eviction_hard.map(|t| t.to_string()).as_deref(),
            Some("memory.available<1Gi")
        );
        assert_eq!(
            up.eviction.eviction_monitoring_interval,
            Duration::from_secs(2)
        );
        let agent = Cli::try_parse_from([
            "skiff",
            "agent",
            "--server",
            "https://127.0.0.1:6443",
            "--token-file",
            "t",
            "--node-name",
            "n1",
            "--eviction-hard",
            "nodefs.available<5%",
        ]);
        assert!(agent.is_ok(), "{agent:?}");
        let Err(error) = Cli::try_parse_from(["skiff", "up", "--eviction-hard", "memory<1Gi"])
        else {
            panic!("a bad signal parsed")
        };
        let message = error.to_string();
        let first = message.lines().next().unwrap_or_default();
        assert!(first.contains("--eviction-hard"), "{message}");
        assert!(
            first.contains("unknown eviction signal \"memory\"")
                && first.contains("use memory.available"),
            "{message}"
        );
    }
}
