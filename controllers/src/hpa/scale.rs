//! The scale target: `scaleTargetRef` (apiVersion, kind) to a resource, and
//! its `scale` subresource.

use k8s_openapi::api::autoscaling::v1::Scale;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;

/// Kinds known without asking discovery: (group, kind) → plural.
const KNOWN: &[(&str, &str, &str)] = &[
    ("apps", "Deployment", "deployments"),
    ("apps", "ReplicaSet", "replicasets"),
    ("apps", "StatefulSet", "statefulsets"),
    ("", "ReplicationController", "replicationcontrollers"),
    ("", "Service", "services"),
    ("", "Pod", "pods"),
];

/// Why a target could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid API version {0:?}")]
    ApiVersion(String),
    #[error("unable to determine resource for {kind} in {api_version}: {source}")]
    Discovery {
        api_version: String,
        kind: String,
        #[source]
        source: kube::Error,
    },
}

/// The group and version of an `apiVersion` (`apps/v1`, `v1`).
pub fn group_version(api_version: &str) -> Result<(&str, &str), ResolveError> {
    let bad = || ResolveError::ApiVersion(api_version.to_string());
    match api_version.split_once('/') {
        Some((g, v)) if !g.is_empty() && !v.is_empty() && !v.contains('/') => Ok((g, v)),
        None if !api_version.is_empty() => Ok(("", api_version)),
        _ => Err(bad()),
    }
}

/// The resource of `kind` in `api_version`, from the table or discovery.
pub async fn resolve(
    client: &Client,
    api_version: &str,
    kind: &str,
) -> Result<ApiResource, ResolveError> {
    let (group, version) = group_version(api_version)?;
    let gvk = GroupVersionKind::gvk(group, version, kind);
    if let Some((_, _, plural)) = KNOWN.iter().find(|(g, k, _)| *g == group && *k == kind) {
        return Ok(ApiResource::from_gvk_with_plural(&gvk, plural));
    }
    kube::discovery::pinned_kind(client, &gvk)
        .await
        .map(|(resource, _)| resource)
        .map_err(|source| ResolveError::Discovery {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            source,
        })
}

/// The custom metrics API's name for a resource: the plural, qualified
/// with the group outside the core group (`services`, `deployments.apps`).
pub fn qualified_plural(resource: &ApiResource) -> String {
    if resource.group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// Reads the target's Scale.
pub async fn get(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
) -> Result<Scale, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    api.get_scale(name).await
}

/// Writes `replicas` to the target's Scale with a merge patch of
/// `spec.replicas` (as `kubectl scale` does), without the resourceVersion
/// of the Scale read before: that version is the whole object's, and the
/// target's status changes many times a second while its pods start, so a
/// guarded write would keep conflicting (measured: the first rescale of a
/// fresh Deployment failed three guarded attempts in a row). A size changed
/// by someone else in the few milliseconds since the read is corrected at
/// the next sync.
pub async fn update(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> Result<Scale, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let patch = serde_json::json!({ "spec": { "replicas": replicas } });
    api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(group_version("apps/v1").ok(), Some(("apps", "v1")));
        assert_eq!(group_version("v1").ok(), Some(("", "v1")));
        assert!(group_version("a/b/c").is_err());
        assert!(group_version("").is_err());
    }

    #[test]
    fn grouped_resources_are_qualified_for_custom_metrics() {
        let svc = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Service"),
            "services",
        );
        let dep = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        );
        assert_eq!(qualified_plural(&svc), "services");
        assert_eq!(qualified_plural(&dep), "deployments.apps");
    }
}
