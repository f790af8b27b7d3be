//! Unpacking image layers onto snapshots, per the OCI image spec.
//!
//! Layer `n` is applied on top of a snapshot of layers `0..n`, named by the
//! chain ID of `0..=n`: `ChainID(L0) = DiffID(L0)`,
//! `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))`.
//! For each layer not yet unpacked: snapshots `Prepare` (parent = previous
//! chain ID), diff `Apply` of the layer blob onto its mounts (the applied
//! digest must equal the diff ID), snapshots `Commit` under the chain ID.
//! All calls carry the import's lease, so nothing is collected half-way.

use std::time::{SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::ApplyRequest;
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor;
use tracing::debug;

use super::archive::sha256_digest;
use super::connection::{Connection, Lease, RpcError, SNAPSHOTTER};

/// Errors unpacking layers.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The manifest and the config disagree on the number of layers.
    #[error("{layers} layers but {diff_ids} diff IDs in the image config")]
    LayerCount {
        /// Layers in the manifest.
        layers: usize,
        /// Diff IDs in the config.
        diff_ids: usize,
    },
    /// The image has no layers.
    #[error("the image has no layers")]
    NoLayers,
    /// Applying a layer gave another digest than the config says.
    #[error("layer {layer} unpacked to {actual}, but the config says {expected}")]
    DiffIdMismatch {
        /// The layer blob.
        layer: String,
        /// The config's diff ID.
        expected: String,
        /// What the diff service computed.
        actual: String,
    },
    /// A containerd call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// The chain IDs of a stack of diff IDs, bottom first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// Makes sure every layer is unpacked; returns the top chain ID.
pub async fn unpack_layers(
    connection: &Connection,
    lease: &Lease,
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<String, UnpackError> {
    if layers.len() != diff_ids.len() {
        return Err(UnpackError::LayerCount {
            layers: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let chain = chain_ids(diff_ids);
    let top = chain.last().cloned().ok_or(UnpackError::NoLayers)?;
    for (index, layer) in layers.iter().enumerate() {
        let chain_id = &chain[index];
        if snapshot_exists(connection, chain_id).await? {
            continue;
        }
        let parent = if index == 0 {
            String::new()
        } else {
            chain[index - 1].clone()
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let key = format!("skiff-extract-{nanos}-{chain_id}");
        let result = apply_layer(
            connection,
            lease,
            layer,
            &key,
            &parent,
            chain_id,
            &diff_ids[index],
        )
        .await;
        if result.is_err() {
            let request = RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.clone(),
            };
            let _ = connection
                .snapshots()
                .remove(connection.request(request))
                .await;
        }
        result?;
        debug!(layer = %layer.digest, chain_id = %chain_id, "layer unpacked");
    }
    Ok(top)
}

async fn apply_layer(
    connection: &Connection,
    lease: &Lease,
    layer: &Descriptor,
    key: &str,
    parent: &str,
    chain_id: &str,
    diff_id: &str,
) -> Result<(), UnpackError> {
    let prepare = PrepareSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key: key.to_string(),
        parent: parent.to_string(),
        labels: Default::default(),
    };
    let mounts = connection
        .snapshots()
        .prepare(connection.leased_request(prepare, lease))
        .await
        .map_err(RpcError::call("snapshots.Prepare"))?
        .into_inner()
        .mounts;
    let apply = ApplyRequest {
        diff: Some(layer.clone()),
        mounts,
        payloads: Default::default(),
        sync_fs: false,
    };
    let applied = connection
        .diff()
        .apply(connection.leased_request(apply, lease))
        .await
        .map_err(RpcError::call("diff.Apply"))?
        .into_inner()
        .applied
        .map(|descriptor| descriptor.digest)
        .unwrap_or_default();
    if applied != diff_id {
        return Err(UnpackError::DiffIdMismatch {
            layer: layer.digest.clone(),
            expected: diff_id.to_string(),
            actual: applied,
        });
    }
    let commit = CommitSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        name: chain_id.to_string(),
        key: key.to_string(),
        labels: Default::default(),
    };
    match connection
        .snapshots()
        .commit(connection.leased_request(commit, lease))
        .await
    {
        Ok(_) => Ok(()),
        // Another import committed the same chain first: ours is redundant.
        Err(status) if status.code() == Code::AlreadyExists => {
            let request = RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            };
            let _ = connection
                .snapshots()
                .remove(connection.request(request))
                .await;
            Ok(())
        }
        Err(status) => Err(RpcError::call("snapshots.Commit")(status).into()),
    }
}

/// Whether a snapshot (committed or active) named `key` exists.
pub async fn snapshot_exists(connection: &Connection, key: &str) -> Result<bool, RpcError> {
    let request = StatSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key: key.to_string(),
    };
    match connection
        .snapshots()
        .stat(connection.request(request))
        .await
    {
        Ok(_) => Ok(true),
        Err(status) if status.code() == Code::NotFound => Ok(false),
        Err(status) => Err(RpcError::call("snapshots.Stat")(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_chain_id_is_the_first_diff_id() {
        let ids = chain_ids(&["sha256:aa".to_string()]);
        assert_eq!(ids, vec!["sha256:aa".to_string()]);
    }

    #[test]
    fn later_chain_ids_hash_the_parent_a_space_and_the_diff_id() {
        let ids = chain_ids(&["sha256:aa".to_string(), "sha256:bb".to_string()]);
        assert_eq!(ids[1], sha256_digest(b"sha256:aa sha256:bb"));
    }
}
