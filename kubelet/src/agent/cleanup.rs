//! Removing what a node left on the machine, for `skiff down`: its
//! containers (and their rootfs snapshots), pod networks (veths, IPs,
//! portmap/masquerade rules through CNI DEL), network namespaces, the
//! bridge, and its private containerd. Images and the cluster's objects stay,
//! so the next `skiff up` on the same data dir resumes the cluster.
//!
//! A node writes [`NodeState`] into its data dir when it starts, so the
//! cleanup needs nothing but the data dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AgentConfig;
use crate::cni::{CniConfig, CniNetwork, PodNetwork, SandboxRef};
use crate::containerd::{containers, labels, Connection, DaemonConfig, ManagedContainerd};

/// The file in a node's data dir that describes it.
pub const STATE_FILE: &str = "node-state.json";

/// What is needed to find a node's leftovers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    pub node_name: String,
    pub bridge: String,
    pub pod_cidr: String,
    pub containerd_namespace: String,
    /// An external containerd; `None` for the node's private one.
    pub containerd_address: Option<PathBuf>,
}

impl NodeState {
    pub fn of(config: &AgentConfig) -> Self {
        Self {
            node_name: config.node_name.clone(),
            bridge: config.bridge.clone(),
            pod_cidr: config.pod_cidr.clone(),
            containerd_namespace: config.containerd_namespace.clone(),
            containerd_address: config.containerd_address.clone(),
        }
    }
}

/// Why a node's leftovers could not all be removed.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: String },
    #[error("cannot start the node's containerd to remove its containers: {0}")]
    Containerd(String),
}

/// What was removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub containers: usize,
    pub sandboxes: usize,
    pub bridge: bool,
}

/// Writes the node's [`NodeState`] into its data dir.
pub fn write_state(config: &AgentConfig) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(&NodeState::of(config))?;
    std::fs::write(config.data_dir.join(STATE_FILE), bytes)
}

/// Removes every container, sandbox and network of the node whose data dir
/// is `dir`, then stops its private containerd.
pub async fn remove_node(dir: &Path) -> Result<Removed, CleanupError> {
    let path = dir.join(STATE_FILE);
    let read_error = |error: String| CleanupError::Read {
        path: path.clone(),
        error,
    };
    let bytes = std::fs::read(&path).map_err(|e| read_error(e.to_string()))?;
    let state: NodeState = serde_json::from_slice(&bytes).map_err(|e| read_error(e.to_string()))?;
    let mut removed = Removed::default();
    let network = CniNetwork::new(CniConfig::new(dir, &state.bridge, &state.pod_cidr));
    let (socket, managed) = match &state.containerd_address {
        Some(socket) => (socket.clone(), None),
        None => {
            let managed = ManagedContainerd::start(DaemonConfig::new(dir))
                .await
                .map_err(|e| CleanupError::Containerd(e.to_string()))?;
            (managed.socket().to_path_buf(), Some(managed))
        }
    };
    let connection = Connection::connect(&socket, &state.containerd_namespace)
        .await
        .map_err(|e| CleanupError::Containerd(e.to_string()))?;
    let records = containers::list(&connection, None)
        .await
        .unwrap_or_default();
    let mut uids: Vec<String> = Vec::new();
    for record in records {
        let _ = containers::stop(&connection, &record.id, Duration::from_millis(200)).await;
        if containers::remove(&connection, &record.id).await.is_ok() {
            removed.containers += 1;
        }
        if let Some(uid) = record.labels.get(labels::POD_UID) {
            if !uids.contains(uid) {
                uids.push(uid.clone());
            }
        }
    }
    add_saved_sandboxes(&mut uids, &network).await;
    for pod_uid in uids {
        if network.teardown(&SandboxRef { pod_uid }).await.is_ok() {
            removed.sandboxes += 1;
        }
    }
    // tmpfs emptyDir volumes, so the data dir can be removed.
    crate::containerd::volumes::teardown_all(&dir.join("pods"));
    removed.bridge = std::process::Command::new("ip")
        .args(["link", "delete", &state.bridge])
        .output()
        .is_ok_and(|o| o.status.success());
    if let Some(managed) = managed {
        let pid = managed.pid();
        drop(managed);
        wait_gone(pid).await;
        // A containerd left running by a killed agent was reused, not
        // started: stop it by its config path, which only it has.
        let config = DaemonConfig::new(dir).dir.join("config.toml");
        for pid in pids_with_cmdline(&config.to_string_lossy()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            wait_gone(pid).await;
        }
    }
    Ok(removed)
}

/// Adds to `uids` the pods whose sandbox network is still set up: a pod
/// whose containers are already gone keeps its netns and IP until torn down.
/// The UIDs come from the saved CNI state (whose files are named by netns,
/// not by UID).
async fn add_saved_sandboxes(uids: &mut Vec<String>, network: &impl PodNetwork) {
    for sandbox in network.sandboxes().await {
        if !uids.contains(&sandbox.pod_uid) {
            uids.push(sandbox.pod_uid);
        }
    }
}

/// PIDs of processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

/// Waits up to 5 s for process `pid` to exit.
async fn wait_gone(pid: i32) {
    if pid <= 0 {
        return;
    }
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = AgentConfig::new("n1", dir.path(), 3);
        config.containerd_address = Some(PathBuf::from("/run/containerd/containerd.sock"));
        write_state(&config).expect("write");
        let bytes = std::fs::read(dir.path().join(STATE_FILE)).expect("read");
        let state: NodeState = serde_json::from_slice(&bytes).expect("parse");
        assert_eq!(state, NodeState::of(&config));
        assert_eq!(state.bridge, "skiff3");
    }

    #[tokio::test]
    async fn a_dir_without_node_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = remove_node(dir.path()).await.expect_err("no state");
        assert!(error.to_string().contains(STATE_FILE), "{error}");
    }

    #[tokio::test]
    async fn sandboxes_left_without_containers_are_torn_down_by_their_pod_uid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = CniConfig::new(dir.path(), "skiff3", "10.244.3.0/24");
        let sandbox = SandboxRef {
            pod_uid: "4f1c-uid-of-a-deleted-pod".into(),
        };
        std::fs::create_dir_all(&config.state_dir).expect("state dir");
        let status = crate::cni::PodNetworkStatus {
            netns_path: PathBuf::from("/run/netns").join(sandbox.netns_name()),
            ip: "10.244.3.7".parse().expect("ip"),
            pod_uid: sandbox.pod_uid.clone(),
        };
        std::fs::write(
            config
                .state_dir
                .join(format!("{}.json", sandbox.netns_name())),
            serde_json::to_vec(&status).expect("json"),
        )
        .expect("state file");
        let network = CniNetwork::new(config);
        let mut uids = vec!["uid-with-containers".to_string(), sandbox.pod_uid.clone()];
        add_saved_sandboxes(&mut uids, &network).await;
        assert_eq!(uids, ["uid-with-containers", "4f1c-uid-of-a-deleted-pod"]);
        let mut uids = vec!["uid-with-containers".to_string()];
        add_saved_sandboxes(&mut uids, &network).await;
        assert_eq!(uids, ["uid-with-containers", "4f1c-uid-of-a-deleted-pod"]);
    }
}
