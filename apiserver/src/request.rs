//! Parsing of resource URLs into [`RequestInfo`], and the query parameters
//! the API understands.

use serde::Deserialize;

/// A resource request decoded from its path, as Kubernetes' RequestInfo.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// What a path under `/api` or `/apis` addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiPath {
    /// `/api` or `/apis`: the group list.
    Root,
    /// `/apis/{group}`: one group.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`: the resource list.
    GroupVersion { group: String, version: String },
    /// A resource, collection, object or subresource.
    Resource(RequestInfo),
}

/// Parses the segments after `/api` (`legacy`) or `/apis`.
///
/// `is_cluster_resource` tells whether `namespaces/{x}/{y}` is a
/// subresource of a namespace (`y` not a namespaced plural) or a namespaced
/// collection.
pub fn parse_path(
    legacy: bool,
    rest: &str,
    is_namespaced_plural: impl Fn(&str, &str, &str) -> bool,
) -> Option<ApiPath> {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, tail): (String, String, &[&str]) = if legacy {
        match segs.as_slice() {
            [] => return Some(ApiPath::Root),
            [v, tail @ ..] => (String::new(), v.to_string(), tail),
        }
    } else {
        match segs.as_slice() {
            [] => return Some(ApiPath::Root),
            [g] => return Some(ApiPath::Group(g.to_string())),
            [g, v, tail @ ..] => (g.to_string(), v.to_string(), tail),
        }
    };
    let mut info = RequestInfo {
        group: group.clone(),
        version: version.clone(),
        ..Default::default()
    };
    match tail {
        [] => return Some(ApiPath::GroupVersion { group, version }),
        ["namespaces", ns, plural, rest @ ..] if is_namespaced_plural(&group, &version, plural) => {
            info.namespace = Some(ns.to_string());
            info.resource = plural.to_string();
            match rest {
                [] => {}
                [name] => info.name = Some(name.to_string()),
                [name, sub] => {
                    info.name = Some(name.to_string());
                    info.subresource = Some(sub.to_string());
                }
                _ => return None,
            }
        }
        [plural, rest @ ..] => {
            info.resource = plural.to_string();
            match rest {
                [] => {}
                [name] => info.name = Some(name.to_string()),
                [name, sub] => {
                    info.name = Some(name.to_string());
                    info.subresource = Some(sub.to_string());
                }
                _ => return None,
            }
        }
    }
    Some(ApiPath::Resource(info))
}

fn de_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.map(|s| matches!(s.as_str(), "true" | "1" | "True" | "yes")))
}

/// Query parameters of reads and writes (all optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    #[serde(default, deserialize_with = "de_bool")]
    pub watch: Option<bool>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<i64>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    pub timeout_seconds: Option<u64>,
    #[serde(default, deserialize_with = "de_bool")]
    pub allow_watch_bookmarks: Option<bool>,
    #[serde(default, deserialize_with = "de_bool")]
    pub send_initial_events: Option<bool>,
    pub field_manager: Option<String>,
    pub field_validation: Option<String>,
    pub dry_run: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub force: Option<bool>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    #[serde(default, deserialize_with = "de_bool")]
    pub orphan_dependents: Option<bool>,
    pub include_object: Option<String>,
    // pods/log options (PodLogOptions), passed on to the node's agent.
    pub container: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    pub follow: Option<bool>,
    #[serde(default, deserialize_with = "de_bool")]
    pub previous: Option<bool>,
    #[serde(default, deserialize_with = "de_bool")]
    pub timestamps: Option<bool>,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

impl Query {
    pub fn is_watch(&self) -> bool {
        self.watch.unwrap_or(false)
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run.as_deref().is_some_and(|d| d == "All")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaced(_: &str, _: &str, plural: &str) -> bool {
        matches!(plural, "pods" | "deployments" | "events")
    }

    #[test]
    fn namespaced_objects_and_subresources_are_recognised() {
        let p = parse_path(true, "v1/namespaces/default/pods/web/status", namespaced);
        assert_eq!(
            p,
            Some(ApiPath::Resource(RequestInfo {
                group: String::new(),
                version: "v1".into(),
                namespace: Some("default".into()),
                resource: "pods".into(),
                name: Some("web".into()),
                subresource: Some("status".into()),
            }))
        );
    }

    #[test]
    fn a_namespace_status_is_not_mistaken_for_a_collection() {
        let p = parse_path(true, "v1/namespaces/default/status", namespaced);
        match p {
            Some(ApiPath::Resource(info)) => {
                assert_eq!(info.resource, "namespaces");
                assert_eq!(info.name.as_deref(), Some("default"));
                assert_eq!(info.subresource.as_deref(), Some("status"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn group_paths_are_recognised() {
        assert_eq!(parse_path(false, "", namespaced), Some(ApiPath::Root));
        assert_eq!(
            parse_path(false, "apps", namespaced),
            Some(ApiPath::Group("apps".into()))
        );
        assert_eq!(
            parse_path(false, "apps/v1", namespaced),
            Some(ApiPath::GroupVersion {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        match parse_path(false, "apps/v1/deployments", namespaced) {
            Some(ApiPath::Resource(info)) => {
                assert_eq!(info.namespace, None);
                assert_eq!(info.resource, "deployments");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
