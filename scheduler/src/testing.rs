//! Small builders for test pods and nodes, in the style of kube-scheduler's
//! `MakePod().Name("p").Node("n1")`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::framework::{NodeInfo, PodInfo};

/// Builds a Pod. `req` sets a request on the current container (the first
/// is created on demand); `container()` starts another one; every
/// `init_req`/`sidecar_req` adds one init container.
pub struct MakePod {
    v: Value,
    priority: i32,
}

impl MakePod {
    pub fn new(name: &str) -> Self {
        Self {
            v: json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {}},
                "spec": {"containers": [], "schedulerName": "default-scheduler"},
            }),
            priority: 0,
        }
    }

    fn spec(&mut self) -> &mut serde_json::Map<String, Value> {
        self.v["spec"].as_object_mut().expect("spec is an object")
    }

    fn array(&mut self, key: &str) -> &mut Vec<Value> {
        let spec = self.spec();
        spec.entry(key).or_insert_with(|| json!([]));
        spec.get_mut(key)
            .and_then(Value::as_array_mut)
            .expect("an array")
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.v["metadata"]["namespace"] = json!(ns);
        self
    }

    pub fn node(mut self, node: &str) -> Self {
        self.v["spec"]["nodeName"] = json!(node);
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.v["metadata"]["labels"][k] = json!(v);
        self
    }

    pub fn priority(mut self, p: i32) -> Self {
        self.priority = p;
        self.v["spec"]["priority"] = json!(p);
        self
    }

    pub fn container(mut self) -> Self {
        let n = self.array("containers").len();
        self.array("containers")
            .push(json!({"name": format!("c{n}"), "image": "img"}));
        self
    }

    pub fn req(mut self, resource: &str, quantity: &str) -> Self {
        if self.array("containers").is_empty() {
            self = self.container();
        }
        let c = self.array("containers").last_mut().expect("a container");
        c["resources"]["requests"][resource] = json!(quantity);
        self
    }

    pub fn init_req(mut self, resource: &str, quantity: &str) -> Self {
        let n = self.array("initContainers").len();
        self.array("initContainers")
            .push(json!({"name": format!("i{n}"), "image": "img",
            "resources": {"requests": {resource: quantity}}}));
        self
    }

    pub fn sidecar_req(mut self, resource: &str, quantity: &str) -> Self {
        let n = self.array("initContainers").len();
        self.array("initContainers")
            .push(json!({"name": format!("s{n}"), "image": "img",
            "restartPolicy": "Always", "resources": {"requests": {resource: quantity}}}));
        self
    }

    pub fn host_port(mut self, port: i32) -> Self {
        if self.array("containers").is_empty() {
            self = self.container();
        }
        let c = self.array("containers").last_mut().expect("a container");
        c["ports"] = json!([{"containerPort": port, "hostPort": port}]);
        self
    }

    pub fn owner(mut self, uid: &str) -> Self {
        self.v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": uid, "uid": uid, "controller": true}]);
        self
    }

    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.v["spec"]["nodeSelector"][k] = json!(v);
        self
    }

    pub fn toleration(mut self, key: &str, op: &str, value: &str, effect: &str) -> Self {
        let mut t = json!({"key": key, "operator": op});
        if !value.is_empty() {
            t["value"] = json!(value);
        }
        if !effect.is_empty() {
            t["effect"] = json!(effect);
        }
        self.array("tolerations").push(t);
        self
    }

    /// Adds a required node affinity term with one expression.
    pub fn node_affinity(mut self, key: &str, op: &str, values: &[&str]) -> Self {
        let terms = &mut self.v["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        if !terms.is_array() {
            *terms = json!([]);
        }
        if let Some(a) = terms.as_array_mut() {
            a.push(json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]}));
        }
        self
    }

    pub fn preferred_node_affinity(mut self, weight: i32, key: &str, values: &[&str]) -> Self {
        let prefs = &mut self.v["spec"]["affinity"]["nodeAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"];
        if !prefs.is_array() {
            *prefs = json!([]);
        }
        if let Some(a) = prefs.as_array_mut() {
            a.push(
                json!({"weight": weight, "preference": {"matchExpressions": [
                {"key": key, "operator": "In", "values": values}]}}),
            );
        }
        self
    }

    fn pod_term(mut self, kind: &str, key: &str, value: &str, topology: &str) -> Self {
        let terms =
            &mut self.v["spec"]["affinity"][kind]["requiredDuringSchedulingIgnoredDuringExecution"];
        if !terms.is_array() {
            *terms = json!([]);
        }
        if let Some(a) = terms.as_array_mut() {
            a.push(
                json!({"labelSelector": {"matchLabels": {key: value}}, "topologyKey": topology}),
            );
        }
        self
    }

    /// Required anti-affinity to pods labelled `key=value` on one hostname.
    pub fn anti_affinity(self, key: &str, value: &str) -> Self {
        self.pod_term("podAntiAffinity", key, value, "kubernetes.io/hostname")
    }

    /// Required affinity to pods labelled `key=value` on one hostname.
    pub fn affinity(self, key: &str, value: &str) -> Self {
        self.pod_term("podAffinity", key, value, "kubernetes.io/hostname")
    }

    pub fn spread(
        mut self,
        max_skew: i32,
        topology: &str,
        when: &str,
        key: &str,
        value: &str,
    ) -> Self {
        self.array("topologySpreadConstraints")
            .push(json!({"maxSkew": max_skew,
            "topologyKey": topology, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {key: value}}}));
        self
    }

    pub fn build(mut self) -> Pod {
        if self.array("containers").is_empty() {
            self = self.container();
        }
        serde_json::from_value(self.v).expect("a valid pod")
    }

    pub fn info(self) -> PodInfo {
        let priority = self.priority;
        PodInfo::new(self.build(), priority)
    }
}

/// Builds a Node: Ready, schedulable, cpu 4 / memory 16Gi / 110 pods.
pub struct MakeNode {
    v: Value,
}

impl MakeNode {
    pub fn new(name: &str) -> Self {
        Self {
            v: json!({
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "spec": {},
                "status": {
                    "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }),
        }
    }

    pub fn capacity(mut self, resource: &str, quantity: &str) -> Self {
        self.v["status"]["allocatable"][resource] = json!(quantity);
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.v["metadata"]["labels"][k] = json!(v);
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let taints = &mut self.v["spec"]["taints"];
        if !taints.is_array() {
            *taints = json!([]);
        }
        if let Some(a) = taints.as_array_mut() {
            let mut t = json!({"key": key, "effect": effect});
            if !value.is_empty() {
                t["value"] = json!(value);
            }
            a.push(t);
        }
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.v["spec"]["unschedulable"] = json!(true);
        self
    }

    pub fn not_ready(mut self) -> Self {
        self.v["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        self
    }

    pub fn build(self) -> Node {
        serde_json::from_value(self.v).expect("a valid node")
    }

    pub fn info(self) -> NodeInfo {
        NodeInfo::new(self.build())
    }

    /// The node with these pods already running on it.
    pub fn with_pods(self, pods: Vec<PodInfo>) -> NodeInfo {
        let mut n = self.info();
        for p in pods {
            n.add_pod(std::sync::Arc::new(p));
        }
        n
    }
}

/// Labels as a map, for assertions.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
