//! Resource quantities and a pod's effective requests, computed as
//! Kubernetes does: `max(sum(containers) + sidecars, max(init containers))`
//! plus the pod overhead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Requests assumed for scoring when a container asks for no cpu (100m) or
/// memory (200Mi), so that empty pods still spread (Kubernetes' "non-zero").
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource: cpu in millicores, the rest in units (bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Allowed pods (allocatable) or 1 per pod (requests).
    pub pods: i64,
    /// Extended resources (`example.com/gpu`), `hugepages-*`.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a `requests`/`allocatable` map. Unparsable quantities count as 0
    /// (the API server validates them).
    pub fn from_map(map: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Self::default();
        for (name, q) in map.into_iter().flatten() {
            r.set(name, &q.0);
        }
        r
    }

    fn set(&mut self, name: &str, quantity: &str) {
        match name {
            "cpu" => self.milli_cpu = parse_milli(quantity).unwrap_or(0),
            "memory" => self.memory = parse_units(quantity).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = parse_units(quantity).unwrap_or(0),
            "pods" => self.pods = parse_units(quantity).unwrap_or(0),
            other if is_scalar(other) => {
                self.scalar
                    .insert(other.to_string(), parse_units(quantity).unwrap_or(0));
            }
            _ => {}
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each resource set to the larger of the two.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// Extended resources and hugepages are tracked; other names are ignored.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

fn container_requests(c: &Container) -> Resources {
    let res = c.resources.as_ref();
    // Limits stand in for missing requests, as the API server's defaulting does.
    let mut r = Resources::from_map(res.and_then(|r| r.limits.as_ref()));
    let requests = Resources::from_map(res.and_then(|r| r.requests.as_ref()));
    let explicit = res.and_then(|r| r.requests.as_ref());
    for name in explicit.into_iter().flat_map(|m| m.keys()) {
        match name.as_str() {
            "cpu" => r.milli_cpu = requests.milli_cpu,
            "memory" => r.memory = requests.memory,
            "ephemeral-storage" => r.ephemeral_storage = requests.ephemeral_storage,
            other => {
                if let Some(v) = requests.scalar.get(other) {
                    r.scalar.insert(other.to_string(), *v);
                }
            }
        }
    }
    r.pods = 0;
    r
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's effective requests (with `pods: 1`).
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut containers = Resources::default();
    for c in &spec.containers {
        containers.add(&container_requests(c));
    }
    // Init containers run one at a time, next to the sidecars started before
    // them; sidecars keep running alongside the regular containers.
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if is_sidecar(c) {
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_max.max_with(&during);
        }
    }
    containers.add(&sidecars);
    containers.max_with(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        containers.add(&Resources::from_map(Some(overhead)));
    }
    containers.pods = 1;
    containers
}

/// The pod's cpu and memory requests for scoring, with the non-zero defaults
/// for containers that ask for none.
pub fn non_zero_requests(spec: &PodSpec) -> (i64, i64) {
    let non_zero = |c: &Container| {
        let r = container_requests(c);
        let cpu = if r.milli_cpu == 0 {
            DEFAULT_MILLI_CPU_REQUEST
        } else {
            r.milli_cpu
        };
        let mem = if r.memory == 0 {
            DEFAULT_MEMORY_REQUEST
        } else {
            r.memory
        };
        (cpu, mem)
    };
    let (mut cpu, mut mem) = spec
        .containers
        .iter()
        .map(non_zero)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    for c in spec.init_containers.iter().flatten() {
        let (c_cpu, c_mem) = non_zero(c);
        cpu = cpu.max(c_cpu);
        mem = mem.max(c_mem);
    }
    (cpu, mem)
}

/// A quantity in thousandths (`"100m"` → 100, `"2"` → 2000), rounded up and
/// saturating (a request too large to count still cannot fit anywhere).
pub fn parse_milli(q: &str) -> Option<i64> {
    quantity::milli_value(q)
}

/// A quantity in units (`"1Gi"` → 1073741824, `"1.5k"` → 1500), rounded up
/// and saturating.
pub fn parse_units(q: &str) -> Option<i64> {
    quantity::value(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MakePod;

    #[test]
    fn quantities_too_large_to_count_saturate_and_bad_ones_do_not_parse() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_units("1Gi"), Some(1 << 30));
        assert_eq!(parse_milli("8E"), Some(i64::MAX));
        assert_eq!(parse_units("1e40"), Some(i64::MAX));
        assert_eq!(parse_milli("12Qi"), None);
    }

    #[test]
    fn init_containers_count_as_their_maximum_not_their_sum() {
        let pod = MakePod::new("p")
            .req("cpu", "100m")
            .init_req("cpu", "500m")
            .init_req("cpu", "300m")
            .build();
        let r = pod_requests(pod.spec.as_ref().expect("spec"));
        assert_eq!(r.milli_cpu, 500);
        assert_eq!(r.pods, 1);
    }

    #[test]
    fn regular_containers_are_summed_and_win_over_a_smaller_init_container() {
        let pod = MakePod::new("p")
            .req("cpu", "300m")
            .container()
            .req("cpu", "300m")
            .init_req("cpu", "500m")
            .req("memory", "1Gi")
            .build();
        let r = pod_requests(pod.spec.as_ref().expect("spec"));
        assert_eq!(r.milli_cpu, 600);
        assert_eq!(r.memory, 1 << 30);
    }

    #[test]
    fn sidecar_init_containers_add_to_the_running_containers() {
        let pod = MakePod::new("p")
            .req("cpu", "300m")
            .sidecar_req("cpu", "200m")
            .build();
        let r = pod_requests(pod.spec.as_ref().expect("spec"));
        assert_eq!(r.milli_cpu, 500);
    }

    #[test]
    fn containers_without_requests_count_as_defaults_for_scoring_only() {
        let pod = MakePod::new("p").build();
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(pod_requests(spec).milli_cpu, 0);
        assert_eq!(
            non_zero_requests(spec),
            (DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)
        );
    }
}
