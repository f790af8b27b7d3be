//! Which lists merge, and by what key: the slice of the Kubernetes schema
//! that strategic merge patch and server-side apply need.
//!
//! Kubernetes keeps this in Go struct tags (`patchStrategy`, `patchMergeKey`)
//! and in the OpenAPI extensions `x-kubernetes-list-type` /
//! `x-kubernetes-list-map-keys`. We keep a hand-written table keyed by the
//! path of field names inside a kind (list indices are not part of the path),
//! e.g. `spec.template.spec.containers` for a Deployment. Lists that are not
//! in the table are atomic: a patch or an apply replaces them whole.
//!
//! Corrections to folklore, checked against the upstream types: Node
//! `spec.taints` and PodSpec `tolerations` have no merge key (atomic), and
//! container `envFrom` is atomic too.

/// How a list is merged, in Kubernetes' words (`x-kubernetes-list-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole (strategic merge patch "replace", the default).
    Atomic,
    /// A set of scalars, merged by value (`patchStrategy: merge` on a list
    /// of primitives, e.g. `metadata.finalizers`).
    Set,
    /// A list of objects merged by the value of one key field
    /// (`patchStrategy: merge`, `patchMergeKey: <key>`).
    Map(&'static str),
}

/// The kind being patched. Merge keys depend on the kind and on the path
/// inside it (a Service's `spec.ports` merge by `port`, a Pod's
/// `spec.containers[*].ports` by `containerPort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchKind {
    group: String,
    kind: String,
    custom_resource: bool,
}

impl PatchKind {
    /// A kind compiled into Kubernetes (core, apps, batch, …): strategic
    /// merge patch is allowed and the merge-key table applies.
    pub fn builtin(group: impl Into<String>, kind: impl Into<String>) -> Self {
        PatchKind {
            group: group.into(),
            kind: kind.into(),
            custom_resource: false,
        }
    }

    /// A custom resource: strategic merge patch is refused (415, as in
    /// Kubernetes) and every list is atomic for server-side apply.
    pub fn custom_resource(group: impl Into<String>, kind: impl Into<String>) -> Self {
        PatchKind {
            group: group.into(),
            kind: kind.into(),
            custom_resource: true,
        }
    }

    /// The kind an object declares in `apiVersion` and `kind`, looked up in
    /// the built-in table (a custom resource's group never matches it).
    pub fn of_object(object: &serde_json::Value) -> Self {
        let field = |name: &str| object.get(name).and_then(|v| v.as_str()).unwrap_or("");
        let group = field("apiVersion")
            .rsplit_once('/')
            .map_or("", |(group, _)| group);
        PatchKind::builtin(group, field("kind"))
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn is_custom_resource(&self) -> bool {
        self.custom_resource
    }

    pub fn supports_strategic_merge(&self) -> bool {
        !self.custom_resource
    }

    /// The list type of the list at `path` (field names from the root of
    /// the object, without list indices).
    pub fn list_type<S: AsRef<str>>(&self, path: &[S]) -> ListType {
        let path: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
        if let Some(found) = metadata_list(&path) {
            return found;
        }
        if self.custom_resource {
            return ListType::Atomic;
        }
        if let Some(rel) = self.pod_spec_relative(&path) {
            if let Some(found) = pod_spec_list(rel) {
                return found;
            }
        }
        self.kind_list(&path).unwrap_or(ListType::Atomic)
    }

    /// Whether the object at `path` is atomic for server-side apply (owned
    /// and replaced as a whole, like `LabelSelector` and `nodeSelector`).
    pub fn is_atomic_map<S: AsRef<str>>(&self, path: &[S]) -> bool {
        if self.custom_resource {
            return false;
        }
        let path: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
        if let Some(rel) = self.pod_spec_relative(&path) {
            if rel == ["nodeSelector"] {
                return true;
            }
        }
        path == ["spec", "selector"]
            && matches!(
                (self.group.as_str(), self.kind.as_str()),
                (
                    "apps",
                    "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
                ) | ("batch", "Job")
                    | ("", "Service" | "ReplicationController")
                    | ("policy", "PodDisruptionBudget")
            )
    }

    /// Where the PodSpec sits inside this kind, if it has one.
    fn pod_spec_root(&self) -> Option<&'static [&'static str]> {
        match (self.group.as_str(), self.kind.as_str()) {
            ("", "Pod") => Some(&["spec"]),
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job")
            | ("", "ReplicationController") => Some(&["spec", "template", "spec"]),
            ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
            ("", "PodTemplate") => Some(&["template", "spec"]),
            _ => None,
        }
    }

    fn pod_spec_relative<'p>(&self, path: &'p [&'p str]) -> Option<&'p [&'p str]> {
        let root = self.pod_spec_root()?;
        path.strip_prefix(root)
    }

    fn kind_list(&self, path: &[&str]) -> Option<ListType> {
        const ADMISSION: &str = "admissionregistration.k8s.io";
        let found = match (self.group.as_str(), self.kind.as_str(), path) {
            (_, _, ["status", "conditions"]) => ListType::Map("type"),
            ("", "Pod", ["status", "podIPs" | "hostIPs"]) => ListType::Map("ip"),
            ("", "Pod", ["status", "resourceClaimStatuses"]) => ListType::Map("name"),
            ("", "Node", ["status", "addresses"]) => ListType::Map("type"),
            ("", "Node", ["spec", "podCIDRs"]) => ListType::Set,
            ("", "Service", ["spec", "ports"]) => ListType::Map("port"),
            ("", "ServiceAccount", ["secrets"]) => ListType::Map("name"),
            (
                ADMISSION,
                "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
                ["webhooks"] | ["webhooks", "matchConditions"],
            ) => ListType::Map("name"),
            (ADMISSION, "ValidatingAdmissionPolicy", ["spec", "matchConditions" | "variables"]) => {
                ListType::Map("name")
            }
            ("storage.k8s.io", "CSINode", ["spec", "drivers"]) => ListType::Map("name"),
            _ => return None,
        };
        Some(found)
    }
}

/// ObjectMeta lists, wherever an ObjectMeta sits (top level or a template).
fn metadata_list(path: &[&str]) -> Option<ListType> {
    match path {
        [.., "metadata", "finalizers"] => Some(ListType::Set),
        [.., "metadata", "ownerReferences"] => Some(ListType::Map("uid")),
        _ => None,
    }
}

/// Lists inside a PodSpec, by path relative to the PodSpec.
fn pod_spec_list(rel: &[&str]) -> Option<ListType> {
    const CONTAINERS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
    let found = match rel {
        [c] if CONTAINERS.contains(c) => ListType::Map("name"),
        [c, "ports"] if CONTAINERS.contains(c) => ListType::Map("containerPort"),
        [c, "env"] if CONTAINERS.contains(c) => ListType::Map("name"),
        [c, "volumeMounts"] if CONTAINERS.contains(c) => ListType::Map("mountPath"),
        [c, "volumeDevices"] if CONTAINERS.contains(c) => ListType::Map("devicePath"),
        [c, "resources", "claims"] if CONTAINERS.contains(c) => ListType::Map("name"),
        ["volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims"] => {
            ListType::Map("name")
        }
        ["hostAliases"] => ListType::Map("ip"),
        ["topologySpreadConstraints"] => ListType::Map("topologyKey"),
        _ => return None,
    };
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(kind: &PatchKind, path: &str) -> ListType {
        let segs: Vec<&str> = path.split('.').collect();
        kind.list_type(&segs)
    }

    #[test]
    fn containers_merge_by_name_in_every_workload_kind() {
        let cases = [
            ("", "Pod", "spec.containers"),
            ("apps", "Deployment", "spec.template.spec.containers"),
            ("apps", "DaemonSet", "spec.template.spec.initContainers"),
            ("batch", "Job", "spec.template.spec.containers"),
            (
                "batch",
                "CronJob",
                "spec.jobTemplate.spec.template.spec.containers",
            ),
            ("", "PodTemplate", "template.spec.ephemeralContainers"),
        ];
        for (group, kind, path) in cases {
            assert_eq!(
                lt(&PatchKind::builtin(group, kind), path),
                ListType::Map("name"),
                "{kind} {path}"
            );
        }
    }

    #[test]
    fn ports_merge_by_container_port_in_pods_but_by_port_in_services() {
        let pod = PatchKind::builtin("", "Pod");
        let svc = PatchKind::builtin("", "Service");
        assert_eq!(
            lt(&pod, "spec.containers.ports"),
            ListType::Map("containerPort")
        );
        assert_eq!(lt(&svc, "spec.ports"), ListType::Map("port"));
    }

    #[test]
    fn tolerations_taints_and_unknown_lists_are_atomic() {
        let pod = PatchKind::builtin("", "Pod");
        let node = PatchKind::builtin("", "Node");
        assert_eq!(lt(&pod, "spec.tolerations"), ListType::Atomic);
        assert_eq!(lt(&node, "spec.taints"), ListType::Atomic);
        assert_eq!(lt(&pod, "spec.containers.args"), ListType::Atomic);
    }

    #[test]
    fn metadata_lists_merge_anywhere_an_object_meta_sits() {
        let deploy = PatchKind::builtin("apps", "Deployment");
        assert_eq!(lt(&deploy, "metadata.finalizers"), ListType::Set);
        assert_eq!(
            lt(&deploy, "metadata.ownerReferences"),
            ListType::Map("uid")
        );
        assert_eq!(
            lt(&deploy, "spec.template.metadata.finalizers"),
            ListType::Set
        );
    }

    #[test]
    fn custom_resources_only_merge_metadata_lists() {
        let cr = PatchKind::custom_resource("example.com", "Widget");
        assert!(!cr.supports_strategic_merge());
        assert_eq!(lt(&cr, "spec.containers"), ListType::Atomic);
        assert_eq!(lt(&cr, "metadata.finalizers"), ListType::Set);
    }

    #[test]
    fn label_selectors_and_node_selectors_are_atomic_maps() {
        let deploy = PatchKind::builtin("apps", "Deployment");
        assert!(deploy.is_atomic_map(&["spec", "selector"]));
        assert!(deploy.is_atomic_map(&["spec", "template", "spec", "nodeSelector"]));
        assert!(!deploy.is_atomic_map(&["spec", "template", "metadata", "labels"]));
    }
}
