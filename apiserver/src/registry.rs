//! The resource registry: every kind the API serves is one [`ResourceDef`]
//! entry in [`builtin`]. Handlers, discovery, OpenAPI and tables are all driven
//! from these entries, so adding a kind is one entry, not a new handler.

/// Which subresources a resource serves besides the main object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subresources {
    /// `/status`: writes to it change only `.status`; main writes ignore `.status`.
    pub status: bool,
    /// `/scale`: an `autoscaling/v1` `Scale` view of `.spec.replicas`.
    pub scale: bool,
    /// `/binding` (pods): sets `spec.nodeName` once.
    pub binding: bool,
    /// `/eviction` (pods): a deletion that respects disruption rules.
    pub eviction: bool,
}

/// One kind served by the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group; `""` for the core (legacy) group served under `/api/v1`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment, e.g. `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: Subresources,
    /// Updates to `.spec` (anything outside metadata and status) bump
    /// `metadata.generation`, as for Deployments; kinds without a spec/status
    /// split (ConfigMap, Secret, ...) keep generation unset.
    pub has_generation: bool,
}

impl ResourceDef {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group name used in storage keys (`core` for the legacy group).
    pub fn storage_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    /// The storage prefix of all objects of this kind, ending in `/`.
    pub fn storage_prefix(&self) -> String {
        format!("/registry/{}/{}/", self.storage_group(), self.plural)
    }

    /// The storage key of one object (`namespace` is ignored for cluster-scoped kinds).
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/{}", self.storage_prefix(), ns, name),
            _ => format!("{}{}", self.storage_prefix(), name),
        }
    }

    /// The verbs advertised by discovery.
    pub fn verbs(&self) -> &'static [&'static str] {
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// All resources, looked up by group, version and plural.
#[derive(Clone, Debug)]
pub struct Registry {
    defs: Vec<ResourceDef>,
}

impl Registry {
    pub fn new(defs: Vec<ResourceDef>) -> Self {
        Self { defs }
    }

    /// The kinds skiff serves out of the box.
    pub fn builtin() -> Self {
        Self::new(builtin())
    }

    pub fn all(&self) -> &[ResourceDef] {
        &self.defs
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
    }

    pub fn find_kind(&self, group: &str, kind: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.kind == kind)
    }

    /// The distinct `(group, version)` pairs served, core first, in a stable order.
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&'static str, &'static str)> = Vec::new();
        for d in &self.defs {
            if !out.contains(&(d.group, d.version)) {
                out.push((d.group, d.version));
            }
        }
        out
    }
}

const NONE: Subresources = Subresources {
    status: false,
    scale: false,
    binding: false,
    eviction: false,
};
const STATUS: Subresources = Subresources {
    status: true,
    ..NONE
};
const STATUS_SCALE: Subresources = Subresources {
    status: true,
    scale: true,
    ..NONE
};

#[allow(clippy::too_many_arguments)]
const fn def(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: Subresources,
    has_generation: bool,
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories: &[],
        subresources,
        has_generation,
    }
}

fn builtin() -> Vec<ResourceDef> {
    let all: &'static [&'static str] = &["all"];
    vec![
        def(
            "",
            "v1",
            "Namespace",
            "namespaces",
            "namespace",
            false,
            &["ns"],
            STATUS,
            false,
        ),
        def(
            "",
            "v1",
            "Node",
            "nodes",
            "node",
            false,
            &["no"],
            STATUS,
            false,
        ),
        ResourceDef {
            categories: all,
            subresources: Subresources {
                status: true,
                binding: true,
                eviction: true,
                ..NONE
            },
            ..def("", "v1", "Pod", "pods", "pod", true, &["po"], NONE, false)
        },
        ResourceDef {
            categories: all,
            ..def(
                "",
                "v1",
                "Service",
                "services",
                "service",
                true,
                &["svc"],
                STATUS,
                false,
            )
        },
        def(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            "endpoints",
            true,
            &["ep"],
            NONE,
            false,
        ),
        def(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            "configmap",
            true,
            &["cm"],
            NONE,
            false,
        ),
        def(
            "",
            "v1",
            "Secret",
            "secrets",
            "secret",
            true,
            &[],
            NONE,
            false,
        ),
        def(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            true,
            &["sa"],
            NONE,
            false,
        ),
        def(
            "",
            "v1",
            "Event",
            "events",
            "event",
            true,
            &["ev"],
            NONE,
            false,
        ),
        ResourceDef {
            categories: all,
            ..def(
                "apps",
                "v1",
                "Deployment",
                "deployments",
                "deployment",
                true,
                &["deploy"],
                STATUS_SCALE,
                true,
            )
        },
        ResourceDef {
            categories: all,
            ..def(
                "apps",
                "v1",
                "ReplicaSet",
                "replicasets",
                "replicaset",
                true,
                &["rs"],
                STATUS_SCALE,
                true,
            )
        },
        ResourceDef {
            categories: all,
            ..def(
                "apps",
                "v1",
                "DaemonSet",
                "daemonsets",
                "daemonset",
                true,
                &["ds"],
                STATUS,
                true,
            )
        },
        def(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            "controllerrevision",
            true,
            &[],
            NONE,
            false,
        ),
        ResourceDef {
            categories: all,
            ..def(
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                "horizontalpodautoscaler",
                true,
                &["hpa"],
                STATUS,
                false,
            )
        },
        ResourceDef {
            categories: all,
            ..def("batch", "v1", "Job", "jobs", "job", true, &[], STATUS, true)
        },
        def(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            "lease",
            true,
            &[],
            NONE,
            false,
        ),
        def(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            "endpointslice",
            true,
            &[],
            NONE,
            false,
        ),
        def(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            "priorityclass",
            false,
            &["pc"],
            NONE,
            false,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_by_its_group_version_and_plural() {
        let r = Registry::builtin();
        for d in r.all() {
            assert_eq!(r.find(d.group, d.version, d.plural), Some(d));
        }
    }

    #[test]
    fn storage_keys_separate_namespaces_and_kinds() {
        let r = Registry::builtin();
        let pods = r.find("", "v1", "pods").expect("pods");
        assert_eq!(
            pods.storage_key(Some("default"), "a"),
            "/registry/core/pods/default/a"
        );
        let nodes = r.find("", "v1", "nodes").expect("nodes");
        assert_eq!(nodes.storage_key(None, "n1"), "/registry/core/nodes/n1");
        let deploys = r.find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(deploys.api_version(), "apps/v1");
    }
}
