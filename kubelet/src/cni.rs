//! Pod networking: one network namespace per pod, wired by the standard CNI
//! plugins (`bridge` + `host-local`, and `loopback`), invoked per the CNI
//! spec (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_PATH` in the environment, the network config on stdin, the result
//! on stdout).
//!
//! Network namespaces are created with `ip netns add skiff-<uid16>`
//! (iproute2), which also makes `/run/netns` a shared mount so the
//! namespace stays valid from any mount namespace. Only the bridge named in
//! [`CniConfig::bridge`] and namespaces named `skiff-*` are ever touched.
//!
//! The OS sits behind two small traits, [`PluginExec`] and [`NetnsOps`], so
//! unit tests run against fakes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The CNI spec version skiff speaks.
pub const CNI_VERSION: &str = "1.0.0";

/// Errors setting up or tearing down a pod's network.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A plugin binary is missing from every plugin dir.
    #[error("CNI plugin {plugin} not found in {dirs:?}: install Debian's `containernetworking-plugins` package")]
    PluginMissing {
        /// The plugin type.
        plugin: String,
        /// Where we looked.
        dirs: Vec<PathBuf>,
    },
    /// A plugin or `ip` could not be run.
    #[error("running {program}: {source}")]
    Exec {
        /// The program.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A plugin reported an error (CNI error JSON on stdout).
    #[error("CNI {command} with {plugin} failed (code {code}): {message}")]
    Plugin {
        /// `ADD` or `DEL`.
        command: &'static str,
        /// The plugin type.
        plugin: String,
        /// The CNI error code.
        code: i64,
        /// The plugin's message and details.
        message: String,
    },
    /// `ip netns` failed.
    #[error("ip netns {action} {name} failed: {stderr}")]
    Netns {
        /// `add` or `delete`.
        action: &'static str,
        /// The namespace.
        name: String,
        /// `ip`'s error output.
        stderr: String,
    },
    /// The plugin's result has no IP address.
    #[error("CNI result has no IP address: {0}")]
    NoAddress(String),
    /// The saved network state of a pod could not be read or written.
    #[error("pod network state {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What a plugin run printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOutput {
    /// Whether it exited 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: Vec<u8>,
}

/// Runs a CNI plugin binary.
#[async_trait]
pub trait PluginExec: Send + Sync + 'static {
    /// Runs `plugin` with `env` and `stdin`.
    async fn run(
        &self,
        plugin: &Path,
        env: &[(&str, String)],
        stdin: &[u8],
    ) -> Result<PluginOutput, CniError>;
}

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Creates and deletes named network namespaces.
#[async_trait]
pub trait NetnsOps: Send + Sync + 'static {
    /// Creates namespace `name` (no error if it exists); returns its path.
    async fn create(&self, name: &str) -> Result<PathBuf, CniError>;
    /// Deletes namespace `name` (no error if it is gone).
    async fn delete(&self, name: &str) -> Result<(), CniError>;
    /// The path of namespace `name`.
    fn path(&self, name: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(name)
    }
}

/// Runs plugins as child processes.
#[derive(Debug, Default, Clone)]
pub struct ProcessExec;

#[async_trait]
impl PluginExec for ProcessExec {
    async fn run(
        &self,
        plugin: &Path,
        env: &[(&str, String)],
        stdin: &[u8],
    ) -> Result<PluginOutput, CniError> {
        let exec_error = |source| CniError::Exec {
            program: plugin.display().to_string(),
            source,
        };
        let mut child = Command::new(plugin)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(exec_error)?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin).await.map_err(exec_error)?;
        }
        let output = child.wait_with_output().await.map_err(exec_error)?;
        Ok(PluginOutput {
            success: output.status.success(),
            stdout: output.stdout,
        })
    }
}

/// Manages namespaces with iproute2's `ip netns`.
#[derive(Debug, Default, Clone)]
pub struct IpNetns;

async fn ip(args: &[&str]) -> Result<std::process::Output, CniError> {
    Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|source| CniError::Exec {
            program: "ip (Debian package `iproute2`)".to_string(),
            source,
        })
}

#[async_trait]
impl NetnsOps for IpNetns {
    async fn create(&self, name: &str) -> Result<PathBuf, CniError> {
        let path = self.path(name);
        if path.exists() {
            return Ok(path);
        }
        let output = ip(&["netns", "add", name]).await?;
        if !output.status.success() {
            return Err(CniError::Netns {
                action: "add",
                name: name.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(path)
    }

    async fn delete(&self, name: &str) -> Result<(), CniError> {
        if !self.path(name).exists() {
            return Ok(());
        }
        let output = ip(&["netns", "delete", name]).await?;
        if !output.status.success() && self.path(name).exists() {
            return Err(CniError::Netns {
                action: "delete",
                name: name.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// One node's pod network.
#[derive(Debug, Clone)]
pub struct CniConfig {
    /// Dirs searched for plugin binaries (`CNI_PATH`).
    pub plugin_dirs: Vec<PathBuf>,
    /// The CNI network name.
    pub network_name: String,
    /// The Linux bridge, one per node (e.g. `skiff0`).
    pub bridge: String,
    /// The node's pod CIDR (e.g. `10.244.1.0/24`).
    pub pod_cidr: String,
    /// host-local's allocation dir (under the node's data dir).
    pub ipam_data_dir: PathBuf,
    /// Masquerade traffic leaving the pod CIDR.
    pub ip_masq: bool,
    /// Where each pod's network state (netns, IP) is saved for re-adoption.
    pub state_dir: PathBuf,
}

impl CniConfig {
    /// Defaults for a node: plugins from Debian's package, state under
    /// `DATA/cni`.
    pub fn new(data_dir: &Path, bridge: &str, pod_cidr: &str) -> Self {
        Self {
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            network_name: "skiff".to_string(),
            bridge: bridge.to_string(),
            pod_cidr: pod_cidr.to_string(),
            ipam_data_dir: data_dir.join("cni").join("networks"),
            ip_masq: true,
            state_dir: data_dir.join("cni").join("pods"),
        }
    }

    /// The `bridge` plugin config.
    pub fn bridge_config(&self) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.network_name,
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": self.ip_masq,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_data_dir,
            },
        })
    }

    /// The `loopback` plugin config.
    pub fn loopback_config(&self) -> Value {
        json!({"cniVersion": CNI_VERSION, "name": "skiff-lo", "type": "loopback"})
    }
}

/// 16 hex digits of the SHA-256 of a pod UID: short enough for netns and
/// container names, and distinct even for UIDs sharing a prefix.
pub fn short_uid(pod_uid: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(pod_uid.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Which pod a sandbox belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRef {
    /// The pod's UID (the CNI container ID).
    pub pod_uid: String,
}

impl SandboxRef {
    /// The netns name: `skiff-` and [`short_uid`] of the pod UID.
    pub fn netns_name(&self) -> String {
        format!("skiff-{}", short_uid(&self.pod_uid))
    }
}

/// A pod's network, once set up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct PodNetworkStatus {
    /// The namespace the pod's containers join.
    pub netns_path: PathBuf,
    /// The pod IP.
    pub ip: IpAddr,
    /// The pod's UID (the CNI container ID), so a sandbox left without
    /// containers can still be torn down.
    #[serde(default)]
    pub pod_uid: String,
}

/// Sets up and tears down pod sandboxes' networks.
#[async_trait]
pub trait PodNetwork: Send + Sync + 'static {
    /// Creates the pod's netns and attaches it; idempotent (a pod already
    /// set up gets its saved status back).
    async fn setup(&self, sandbox: &SandboxRef) -> Result<PodNetworkStatus, CniError>;
    /// Detaches the pod (CNI DEL frees its IP) and deletes its netns;
    /// idempotent.
    async fn teardown(&self, sandbox: &SandboxRef) -> Result<(), CniError>;
    /// Every sandbox set up and not torn down (from the saved state).
    async fn sandboxes(&self) -> Vec<SandboxRef> {
        Vec::new()
    }
}

/// The CNI implementation of [`PodNetwork`].
#[derive(Debug, Clone)]
pub struct CniNetwork<E = ProcessExec, N = IpNetns> {
    config: CniConfig,
    exec: E,
    netns: N,
}

impl CniNetwork<ProcessExec, IpNetns> {
    /// Real plugins and `ip netns`.
    pub fn new(config: CniConfig) -> Self {
        Self::with_ops(config, ProcessExec, IpNetns)
    }
}

#[derive(Debug, Deserialize)]
struct CniResultIp {
    address: String,
}

#[derive(Debug, Deserialize)]
struct CniResult {
    #[serde(default)]
    ips: Vec<CniResultIp>,
}

#[derive(Debug, Deserialize)]
struct CniErrorDoc {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl<E: PluginExec, N: NetnsOps> CniNetwork<E, N> {
    /// With explicit OS operations (fakes in tests).
    pub fn with_ops(config: CniConfig, exec: E, netns: N) -> Self {
        Self {
            config,
            exec,
            netns,
        }
    }

    /// The config.
    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    fn plugin_path(&self, plugin: &str) -> Result<PathBuf, CniError> {
        self.config
            .plugin_dirs
            .iter()
            .map(|dir| dir.join(plugin))
            .find(|path| path.exists())
            .ok_or_else(|| CniError::PluginMissing {
                plugin: plugin.to_string(),
                dirs: self.config.plugin_dirs.clone(),
            })
    }

    async fn invoke(
        &self,
        command: &'static str,
        config: &Value,
        sandbox: &SandboxRef,
        netns: &Path,
        ifname: &str,
    ) -> Result<Vec<u8>, CniError> {
        let plugin = config["type"].as_str().unwrap_or_default().to_string();
        let path = self.plugin_path(&plugin)?;
        let cni_path = std::env::join_paths(&self.config.plugin_dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let env = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", sandbox.pod_uid.clone()),
            ("CNI_NETNS", netns.display().to_string()),
            ("CNI_IFNAME", ifname.to_string()),
            ("CNI_PATH", cni_path),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
        ];
        let output = self
            .exec
            .run(&path, &env, config.to_string().as_bytes())
            .await?;
        if output.success {
            return Ok(output.stdout);
        }
        let doc: CniErrorDoc = serde_json::from_slice(&output.stdout).unwrap_or(CniErrorDoc {
            code: -1,
            msg: String::from_utf8_lossy(&output.stdout).into_owned(),
            details: String::new(),
        });
        Err(CniError::Plugin {
            command,
            plugin,
            code: doc.code,
            message: format!("{} {}", doc.msg, doc.details).trim().to_string(),
        })
    }

    fn state_path(&self, sandbox: &SandboxRef) -> PathBuf {
        self.config
            .state_dir
            .join(format!("{}.json", sandbox.netns_name()))
    }

    async fn saved(&self, sandbox: &SandboxRef) -> Option<PodNetworkStatus> {
        let bytes = tokio::fs::read(self.state_path(sandbox)).await.ok()?;
        let status: PodNetworkStatus = serde_json::from_slice(&bytes).ok()?;
        status.netns_path.exists().then_some(status)
    }

    async fn save(&self, sandbox: &SandboxRef, status: &PodNetworkStatus) -> Result<(), CniError> {
        let path = self.state_path(sandbox);
        let state_error = |source| CniError::State {
            path: path.clone(),
            source,
        };
        tokio::fs::create_dir_all(&self.config.state_dir)
            .await
            .map_err(state_error)?;
        let bytes = serde_json::to_vec(status).map_err(|e| state_error(e.into()))?;
        tokio::fs::write(&path, bytes).await.map_err(state_error)
    }
}

/// The first IP of a CNI result.
pub fn result_ip(stdout: &[u8]) -> Result<IpAddr, CniError> {
    let text = || String::from_utf8_lossy(stdout).into_owned();
    let result: CniResult =
        serde_json::from_slice(stdout).map_err(|_| CniError::NoAddress(text()))?;
    result
        .ips
        .iter()
        .find_map(|ip| ip.address.split('/').next()?.parse().ok())
        .ok_or_else(|| CniError::NoAddress(text()))
}

#[async_trait]
impl<E: PluginExec, N: NetnsOps> PodNetwork for CniNetwork<E, N> {
    async fn setup(&self, sandbox: &SandboxRef) -> Result<PodNetworkStatus, CniError> {
        if let Some(status) = self.saved(sandbox).await {
            return Ok(status);
        }
        let name = sandbox.netns_name();
        let netns = self.netns.create(&name).await?;
        let added = async {
            self.invoke("ADD", &self.config.loopback_config(), sandbox, &netns, "lo")
                .await?;
            let stdout = self
                .invoke("ADD", &self.config.bridge_config(), sandbox, &netns, "eth0")
                .await?;
            result_ip(&stdout)
        }
        .await;
        let ip = match added {
            Ok(ip) => ip,
            Err(error) => {
                let _ = self.teardown(sandbox).await;
                return Err(error);
            }
        };
        let status = PodNetworkStatus {
            netns_path: netns,
            ip,
            pod_uid: sandbox.pod_uid.clone(),
        };
        self.save(sandbox, &status).await?;
        Ok(status)
    }

    async fn sandboxes(&self) -> Vec<SandboxRef> {
        let mut found = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&self.config.state_dir).await else {
            return found;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(bytes) = tokio::fs::read(entry.path()).await else {
                continue;
            };
            if let Ok(status) = serde_json::from_slice::<PodNetworkStatus>(&bytes) {
                if !status.pod_uid.is_empty() {
                    found.push(SandboxRef {
                        pod_uid: status.pod_uid,
                    });
                }
            }
        }
        found
    }

    async fn teardown(&self, sandbox: &SandboxRef) -> Result<(), CniError> {
        let name = sandbox.netns_name();
        let netns = self.netns.path(&name);
        // DEL must succeed even when the netns is gone: host-local still
        // frees the IP and bridge removes its iptables rules.
        self.invoke("DEL", &self.config.bridge_config(), sandbox, &netns, "eth0")
            .await?;
        self.invoke("DEL", &self.config.loopback_config(), sandbox, &netns, "lo")
            .await?;
        self.netns.delete(&name).await?;
        match tokio::fs::remove_file(self.state_path(sandbox)).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CniError::State {
                path: self.state_path(sandbox),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Calls = Arc<Mutex<Vec<(String, Vec<(String, String)>, Value)>>>;

    #[derive(Clone, Default)]
    struct FakeExec {
        calls: Calls,
        fail_bridge_add: bool,
    }

    #[async_trait]
    impl PluginExec for FakeExec {
        async fn run(
            &self,
            plugin: &Path,
            env: &[(&str, String)],
            stdin: &[u8],
        ) -> Result<PluginOutput, CniError> {
            let config: Value = serde_json::from_slice(stdin).expect("config is JSON");
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let command = env
                .iter()
                .find(|(k, _)| k == "CNI_COMMAND")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            self.calls.lock().expect("lock").push((
                plugin.display().to_string(),
                env,
                config.clone(),
            ));
            if config["type"] == "bridge" && command == "ADD" {
                if self.fail_bridge_add {
                    return Ok(PluginOutput {
                        success: false,
                        stdout: br#"{"code":11,"msg":"no IP addresses available"}"#.to_vec(),
                    });
                }
                return Ok(PluginOutput {
                    success: true,
                    stdout: br#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.244.1.7/24","gateway":"10.244.1.1","interface":0}]}"#.to_vec(),
                });
            }
            Ok(PluginOutput {
                success: true,
                stdout: b"{}".to_vec(),
            })
        }
    }

    #[derive(Clone, Default)]
    struct FakeNetns {
        live: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl NetnsOps for FakeNetns {
        async fn create(&self, name: &str) -> Result<PathBuf, CniError> {
            self.live.lock().expect("lock").push(name.to_string());
            Ok(self.path(name))
        }
        async fn delete(&self, name: &str) -> Result<(), CniError> {
            self.live.lock().expect("lock").retain(|n| n != name);
            Ok(())
        }
    }

    fn network(dir: &Path, exec: FakeExec, netns: FakeNetns) -> CniNetwork<FakeExec, FakeNetns> {
        let mut config = CniConfig::new(dir, "skiff0", "10.244.1.0/24");
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).expect("mkdir");
        for plugin in ["bridge", "loopback"] {
            std::fs::write(plugins.join(plugin), b"").expect("write");
        }
        config.plugin_dirs = vec![plugins];
        CniNetwork::with_ops(config, exec, netns)
    }

    fn sandbox() -> SandboxRef {
        SandboxRef {
            pod_uid: "0123abcd-4567-89ef-0123-456789abcdef".to_string(),
        }
    }

    #[tokio::test]
    async fn setup_adds_loopback_then_bridge_on_eth0_and_returns_the_pod_ip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exec = FakeExec::default();
        let net = network(dir.path(), exec.clone(), FakeNetns::default());
        let status = net.setup(&sandbox()).await.expect("setup");
        assert_eq!(status.ip.to_string(), "10.244.1.7");
        assert_eq!(
            status.netns_path,
            Path::new("/run/netns").join(sandbox().netns_name())
        );
        let calls = exec.calls.lock().expect("lock");
        assert_eq!(calls.len(), 2);
        let (_, env, config) = &calls[1];
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("CNI_COMMAND"), Some("ADD"));
        assert_eq!(get("CNI_IFNAME"), Some("eth0"));
        assert_eq!(get("CNI_CONTAINERID"), Some(sandbox().pod_uid.as_str()));
        assert_eq!(config["bridge"], "skiff0");
        assert_eq!(config["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(
            calls[0]
                .1
                .iter()
                .find(|(k, _)| k == "CNI_IFNAME")
                .map(|(_, v)| v.as_str()),
            Some("lo")
        );
    }

    #[tokio::test]
    async fn a_failed_add_reports_the_plugin_message_and_removes_the_netns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exec = FakeExec {
            fail_bridge_add: true,
            ..Default::default()
        };
        let netns = FakeNetns::default();
        let net = network(dir.path(), exec, netns.clone());
        let error = net.setup(&sandbox()).await.expect_err("must fail");
        assert!(
            error.to_string().contains("no IP addresses available"),
            "{error}"
        );
        assert!(netns.live.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn teardown_deletes_bridge_then_loopback_and_the_netns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exec = FakeExec::default();
        let netns = FakeNetns::default();
        let net = network(dir.path(), exec.clone(), netns.clone());
        net.setup(&sandbox()).await.expect("setup");
        net.teardown(&sandbox()).await.expect("teardown");
        let calls = exec.calls.lock().expect("lock");
        let commands: Vec<(String, String)> = calls
            .iter()
            .map(|(_, env, config)| {
                let command = env
                    .iter()
                    .find(|(k, _)| k == "CNI_COMMAND")
                    .map(|(_, v)| v.clone());
                (
                    command.unwrap_or_default(),
                    config["type"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(commands[2], ("DEL".to_string(), "bridge".to_string()));
        assert_eq!(commands[3], ("DEL".to_string(), "loopback".to_string()));
        assert!(netns.live.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_missing_plugin_names_the_debian_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut net = network(dir.path(), FakeExec::default(), FakeNetns::default());
        net.config.plugin_dirs = vec![dir.path().join("nowhere")];
        let error = net.setup(&sandbox()).await.expect_err("must fail");
        assert!(
            error.to_string().contains("containernetworking-plugins"),
            "{error}"
        );
    }

    #[test]
    fn uids_sharing_a_prefix_get_distinct_netns_names() {
        let a = SandboxRef {
            pod_uid: "11111111-aaaa-4bbb-8ccc-000000000001".to_string(),
        };
        let b = SandboxRef {
            pod_uid: "11111111-aaaa-4bbb-8ccc-000000000002".to_string(),
        };
        assert_ne!(a.netns_name(), b.netns_name());
        assert_eq!(a.netns_name().len(), "skiff-".len() + 16);
    }

    #[test]
    fn a_result_without_ips_is_an_error() {
        assert!(matches!(
            result_ip(br#"{"ips":[]}"#),
            Err(CniError::NoAddress(_))
        ));
    }
}
