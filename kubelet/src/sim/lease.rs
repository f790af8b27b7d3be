//! Node heartbeats: one Lease per node in `kube-node-lease`, renewed by a
//! single loop for all the process's simulated nodes.
//!
//! Every [`SimConfig::lease_renew_interval`] each Lease is renewed once. The
//! renewals are spread over the interval in ten batches (so 5,000 nodes make
//! 500 small writes a tick, not 5,000 at once), each batch with at most
//! [`SimConfig::status_concurrency`] writes in flight. A failed renewal is
//! logged and retried on the next round; the node agent never stops.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

use super::{SimConfig, SimError};

pub(crate) const NAMESPACE: &str = "kube-node-lease";
const BATCHES: u32 = 10;

/// Creates the node's Lease if it does not exist (owned by its Node, as the
/// kubelet does, so deleting the Node removes it).
pub(crate) async fn ensure(
    client: &Client,
    config: &SimConfig,
    node: &str,
) -> Result<(), SimError> {
    ensure_lease(client, config.lease_duration, node)
        .await
        .map_err(|source| SimError::Register {
            node: node.to_string(),
            source,
        })
}

/// Creates (or renews) `node`'s Lease, owned by its Node; shared by the
/// simulated nodes and the real node agent.
pub(crate) async fn ensure_lease(
    client: &Client,
    lease_duration: Duration,
    node: &str,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let owner = nodes.get(node).await?;
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.to_string(),
                uid: owner.metadata.uid.unwrap_or_default(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(lease_duration.as_secs() as i32),
            renew_time: Some(crate::time::micro_now()),
            ..Default::default()
        }),
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            renew_lease(&leases, node, lease_duration).await
        }
        Err(e) => Err(e),
    }
}

async fn renew(leases: &Api<Lease>, node: &str, config: &SimConfig) -> Result<(), kube::Error> {
    renew_lease(leases, node, config.lease_duration).await
}

/// Renews `node`'s Lease now.
pub(crate) async fn renew_lease(
    leases: &Api<Lease>,
    node: &str,
    lease_duration: Duration,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": lease_duration.as_secs(),
            "renewTime": crate::time::micro_now(),
        }
    });
    leases
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Renews every node's Lease once per interval, forever.
pub(crate) async fn renew_forever(client: Client, config: SimConfig, nodes: Vec<String>) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let tick = config.lease_renew_interval / BATCHES;
    let mut interval = tokio::time::interval(tick.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await; // the first tick is immediate; registration just renewed
    let batches: Vec<Vec<&String>> = (0..BATCHES as usize)
        .map(|b| nodes.iter().skip(b).step_by(BATCHES as usize).collect())
        .collect();
    for batch in batches.iter().cycle() {
        interval.tick().await;
        futures::stream::iter(batch.iter())
            .for_each_concurrent(config.status_concurrency.max(1), |node| {
                let (leases, config, client) = (&leases, &config, &client);
                async move {
                    let result = match renew(leases, node, config).await {
                        // Someone deleted the Lease: make a new one.
                        Err(kube::Error::Api(s)) if s.code == 404 => ensure(client, config, node)
                            .await
                            .map_err(|e| e.to_string()),
                        other => other.map_err(|e| e.to_string()),
                    };
                    if let Err(e) = result {
                        tracing::warn!(node = %node, error = %e, "cannot renew the node lease");
                    }
                }
            })
            .await;
    }
}
