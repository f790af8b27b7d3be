//! The Node object of a simulated node: labels, capacity, conditions, and
//! its registration (create, or refresh the status of an existing Node).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

use super::{PodCidr, SimConfig, SimError, SimNode};

/// The Node as a freshly started simulated kubelet reports it.
pub(crate) fn build(config: &SimConfig, node: &SimNode, runtime_version: &str) -> Node {
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", node.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", config.arch.as_str()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", config.arch.as_str()),
        ("type", "sim"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.extend(node.labels.clone());
    let cidr = PodCidr::for_index(node.index).to_cidr_string();
    Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "skiff.io/simulated".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr]),
            provider_id: Some(format!("sim://{}", node.name)),
            taints: (!node.taints.is_empty()).then(|| node.taints.clone()),
            ..Default::default()
        }),
        status: Some(status(config, node, runtime_version)),
    }
}

/// The node's status: capacity, Ready and the pressure conditions, addresses.
pub(crate) fn status(config: &SimConfig, node: &SimNode, runtime_version: &str) -> NodeStatus {
    let c = &config.capacity;
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", &c.cpu),
        ("memory", &c.memory),
        ("pods", &c.pods),
        ("ephemeral-storage", &c.ephemeral_storage),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v.clone())))
    .collect();
    let now = crate::time::now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: node.name.clone(),
            },
        ]),
        // No agent API (logs, stats): port 0 tells the API server to skip it.
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 0 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: config.arch.clone(),
            operating_system: "linux".into(),
            os_image: "skiff simulated node".into(),
            kernel_version: "sim".into(),
            container_runtime_version: runtime_version.to_string(),
            kubelet_version: concat!("v1.33.0-skiff.", env!("CARGO_PKG_VERSION")).into(),
            kube_proxy_version: String::new(),
            machine_id: node.name.clone(),
            system_uuid: node.name.clone(),
            boot_id: node.name.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the Node, or refreshes an existing one's status (a restarted
/// simulated kubelet keeps the spec, e.g. a cordon, as a real one does).
pub(crate) async fn register(
    client: &Client,
    config: &SimConfig,
    node: &SimNode,
    runtime_version: &str,
) -> Result<(), SimError> {
    let api: Api<Node> = Api::all(client.clone());
    let desired = build(config, node, runtime_version);
    let err = |source| SimError::Register {
        node: node.name.clone(),
        source,
    };
    match api.create(&PostParams::default(), &desired).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(err(e)),
    }
    let patch = serde_json::json!({ "status": desired.status });
    api.patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond<'a>(n: &'a Node, kind: &str) -> &'a NodeCondition {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == kind))
            .unwrap_or_else(|| panic!("no {kind} condition"))
    }

    #[test]
    fn a_simulated_node_is_ready_with_default_capacity_and_standard_labels() {
        let config = SimConfig::numbered("n", 2);
        let n = build(&config, &config.nodes[1], "sim://0.1");
        assert_eq!(cond(&n, "Ready").status, "True");
        assert_eq!(cond(&n, "MemoryPressure").status, "False");
        let status = n.status.as_ref().expect("status");
        let alloc = status.allocatable.as_ref().expect("allocatable");
        assert_eq!(alloc["cpu"].0, "4");
        assert_eq!(alloc["memory"].0, "16Gi");
        assert_eq!(alloc["pods"].0, "110");
        let labels = n.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert!(labels.contains_key("kubernetes.io/arch"));
        let spec = n.spec.as_ref().expect("spec");
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.128.1.0/24"));
    }

    #[test]
    fn configured_capacity_and_labels_are_reported() {
        let mut config = SimConfig::numbered("n", 1);
        config.capacity.cpu = "32".into();
        config.nodes[0].labels.insert("zone".into(), "a".into());
        let n = build(&config, &config.nodes[0], "sim://0.1");
        let status = n.status.as_ref().expect("status");
        assert_eq!(status.capacity.as_ref().expect("capacity")["cpu"].0, "32");
        assert_eq!(n.metadata.labels.as_ref().expect("labels")["zone"], "a");
    }
}
