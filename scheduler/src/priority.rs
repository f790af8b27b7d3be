//! Pod priority: `spec.priority` when the API server filled it in, else the
//! value of the pod's `priorityClassName`, else the cluster's global default
//! PriorityClass, else 0. PriorityClasses come from a watch.

use std::collections::HashMap;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;

#[derive(Default)]
pub struct PriorityClasses {
    inner: RwLock<Classes>,
}

#[derive(Default)]
struct Classes {
    values: HashMap<String, (i32, bool)>,
}

impl PriorityClasses {
    pub fn upsert(&self, pc: &PriorityClass) {
        let name = pc.metadata.name.clone().unwrap_or_default();
        let mut c = self.inner.write().unwrap_or_else(|e| e.into_inner());
        c.values
            .insert(name, (pc.value, pc.global_default.unwrap_or(false)));
    }

    pub fn remove(&self, name: &str) {
        let mut c = self.inner.write().unwrap_or_else(|e| e.into_inner());
        c.values.remove(name);
    }

    pub fn priority_of(&self, pod: &Pod) -> i32 {
        let spec = pod.spec.as_ref();
        let class = spec.and_then(|s| s.priority_class_name.as_deref());
        let c = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if let Some((value, _)) = class.and_then(|n| c.values.get(n)) {
            return *value;
        }
        if let Some(p) = spec.and_then(|s| s.priority) {
            return p;
        }
        c.values
            .values()
            .find(|(_, global)| *global)
            .map_or(0, |(v, _)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, value: i32, global: bool) -> PriorityClass {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "value": value, "globalDefault": global}),
        )
        .expect("class")
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    #[test]
    fn a_pods_priority_comes_from_its_class_its_spec_or_the_global_default() {
        let pcs = PriorityClasses::default();
        pcs.upsert(&class("high", 1000, false));
        let cases = [
            (json!({"containers": [], "priorityClassName": "high"}), 1000),
            (json!({"containers": [], "priority": 7}), 7),
            (json!({"containers": []}), 0),
            (json!({"containers": [], "priorityClassName": "missing"}), 0),
        ];
        for (spec, want) in cases {
            assert_eq!(pcs.priority_of(&pod(spec.clone())), want, "{spec}");
        }
        pcs.upsert(&class("default", 5, true));
        assert_eq!(pcs.priority_of(&pod(json!({"containers": []}))), 5);
        pcs.remove("high");
        assert_eq!(
            pcs.priority_of(&pod(json!({"containers": [], "priorityClassName": "high"}))),
            5
        );
    }
}
