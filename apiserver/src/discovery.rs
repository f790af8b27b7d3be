//! Discovery documents: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}`,
//! `/apis/{group}/{version}`, and aggregated discovery (`apidiscovery.k8s.io/v2`
//! and `v2beta1`) for `/api` and `/apis`.
//!
//! Everything here is a pure function of the [`Registry`]: no I/O, no state.
//! Handlers pick a [`DiscoveryFormat`] with [`negotiate_discovery`] from the
//! request's `Accept` header, build the document, and answer with
//! [`DiscoveryFormat::content_type`] as `Content-Type` (plus `Vary: Accept`,
//! because the same URL serves two shapes).
//!
//! Subresources are described once, in [`subresources_of`], which both
//! discovery and OpenAPI use.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::registry::{Registry, ResourceDef};

/// The Kubernetes release whose API skiff serves.
pub const KUBERNETES_MAJOR: &str = "1";
/// See [`KUBERNETES_MAJOR`].
pub const KUBERNETES_MINOR: &str = "33";
/// `gitVersion` reported by `/version`. Build metadata (`+skiff`) rather than a
/// pre-release suffix (`-skiff`): semver ranges such as Helm's
/// `kubeVersion: ">=1.25.0"` reject pre-release versions, but ignore build
/// metadata, as they do for k3s (`v1.33.0+k3s1`).
pub const GIT_VERSION: &str = "v1.33.0+skiff";

/// `Content-Type` of legacy discovery documents (and of `/version`).
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Type` of an aggregated discovery v2 answer. client-go compares the
/// `g`, `v` and `as` parameters of the response's `Content-Type` (in any
/// order) and, when they do not match, parses the body as legacy discovery.
pub const CONTENT_TYPE_AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// `Content-Type` of an aggregated discovery v2beta1 answer (clients before 1.30).
pub const CONTENT_TYPE_AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which discovery document a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryFormat {
    /// `APIVersions` / `APIGroupList` (plain `application/json`).
    Legacy,
    /// `apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`.
    AggregatedV2,
    /// `apidiscovery.k8s.io/v2beta1` `APIGroupDiscoveryList`.
    AggregatedV2Beta1,
}

impl DiscoveryFormat {
    /// The `Content-Type` the response must carry for the client to accept it.
    pub fn content_type(self) -> &'static str {
        match self {
            DiscoveryFormat::Legacy => CONTENT_TYPE_JSON,
            DiscoveryFormat::AggregatedV2 => CONTENT_TYPE_AGGREGATED_V2,
            DiscoveryFormat::AggregatedV2Beta1 => CONTENT_TYPE_AGGREGATED_V2BETA1,
        }
    }

    fn aggregated_api_version(self) -> Option<&'static str> {
        match self {
            DiscoveryFormat::Legacy => None,
            DiscoveryFormat::AggregatedV2 => Some("apidiscovery.k8s.io/v2"),
            DiscoveryFormat::AggregatedV2Beta1 => Some("apidiscovery.k8s.io/v2beta1"),
        }
    }
}

/// Picks the discovery format for an `Accept` header, or `None` when nothing
/// the client accepts can be served (answer 406).
///
/// kubectl 1.32 sends
/// `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,`
/// `application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,`
/// `application/json`: media ranges are tried by descending `q`, then in the
/// order given. Newer clients also send `profile=nopeer`; skiff has no peer
/// proxying, so that is the same document. An empty header means anything.
pub fn negotiate_discovery(accept: &str) -> Option<DiscoveryFormat> {
    if accept.trim().is_empty() {
        return Some(DiscoveryFormat::Legacy);
    }
    let mut ranges: Vec<(f32, usize, MediaRange<'_>)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, r)| MediaRange::parse(r).map(|m| (m.q, i, m)))
        .filter(|(q, _, _)| *q > 0.0)
        .collect();
    // Stable: equal q keeps the client's order.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.into_iter().find_map(|(_, _, m)| m.format())
}

/// One entry of an `Accept` header.
struct MediaRange<'a> {
    essence: String,
    q: f32,
    g: Option<&'a str>,
    v: Option<&'a str>,
    kind: Option<&'a str>,
}

impl<'a> MediaRange<'a> {
    fn parse(raw: &'a str) -> Option<Self> {
        let mut parts = raw.split(';');
        let essence = parts.next()?.trim().to_ascii_lowercase();
        if essence.is_empty() {
            return None;
        }
        let mut range = MediaRange {
            essence,
            q: 1.0,
            g: None,
            v: None,
            kind: None,
        };
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim() {
                "q" => range.q = value.parse().unwrap_or(0.0),
                "g" => range.g = Some(value),
                "v" => range.v = Some(value),
                "as" => range.kind = Some(value),
                _ => {}
            }
        }
        Some(range)
    }

    fn format(&self) -> Option<DiscoveryFormat> {
        let json_like = matches!(
            self.essence.as_str(),
            "application/json" | "application/*" | "*/*"
        );
        if !json_like {
            return None;
        }
        match (self.g, self.v, self.kind) {
            (None, None, None) => Some(DiscoveryFormat::Legacy),
            (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => {
                Some(DiscoveryFormat::AggregatedV2)
            }
            (Some("apidiscovery.k8s.io"), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                Some(DiscoveryFormat::AggregatedV2Beta1)
            }
            // Some other typed view (Table, PartialObjectMetadata, ...): not for discovery.
            _ => None,
        }
    }
}

/// The `/version` document (`version.Info`). Every field is a string, as the
/// Python client requires all of them.
pub fn version_info() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": option_env!("SKIFF_GIT_COMMIT").unwrap_or(""),
        "gitTreeState": "clean",
        "buildDate": option_env!("SKIFF_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        // Kubernetes reports the Go toolchain here; skiff is built with rustc.
        "goVersion": concat!("rust (skiff ", env!("CARGO_PKG_VERSION"), ")"),
        "compiler": "rustc",
        "platform": platform(),
    })
}

/// `os/arch` with Go's names, as `kubectl version` shows them.
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{}", std::env::consts::OS, arch)
}

/// The legacy `/api` document (`APIVersions`). `server_address` is the
/// `host:port` clients should use, e.g. `127.0.0.1:6443`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            { "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }
        ],
    })
}

/// The named groups served (not the core group), each with its versions, the
/// preferred (first registered) version first.
fn named_groups(reg: &Registry) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (group, version) in reg.group_versions() {
        if group.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, versions)) => versions.push(version),
            None => groups.push((group, vec![version])),
        }
    }
    // Served by crate::metrics_api, not the registry.
    for (group, version) in crate::metrics_api::GROUPS {
        groups.push((group, vec![version]));
    }
    groups
}

fn group_version_for_discovery(group: &str, version: &str) -> Value {
    json!({ "groupVersion": format!("{group}/{version}"), "version": version })
}

fn api_group_entry(group: &str, versions: &[&str]) -> Value {
    let listed: Vec<Value> = versions
        .iter()
        .map(|v| group_version_for_discovery(group, v))
        .collect();
    let preferred = listed.first().cloned().unwrap_or(Value::Null);
    json!({ "name": group, "versions": listed, "preferredVersion": preferred })
}

/// The legacy `/apis` document (`APIGroupList`) of all named groups.
pub fn api_group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = named_groups(reg)
        .iter()
        .map(|(g, vs)| api_group_entry(g, vs))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// The `/apis/{group}` document (`APIGroup`), or `None` for an unknown group.
pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    let groups = named_groups(reg);
    let (name, versions) = groups.iter().find(|(g, _)| *g == group)?;
    let mut doc = json!({ "kind": "APIGroup", "apiVersion": "v1" });
    if let (Value::Object(out), Value::Object(entry)) = (&mut doc, api_group_entry(name, versions))
    {
        out.extend(entry);
    }
    Some(doc)
}

/// A subresource as discovery and OpenAPI describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubresourceDef {
    /// The URL segment after the object name, e.g. `status`.
    pub name: &'static str,
    /// Group, version and kind of the object the subresource reads and writes.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const CREATE: &[&str] = &["create"];

/// Subresources served by handlers that are not flags of
/// [`crate::registry::Subresources`], keyed by `(group, plural)`.
///
/// This is the hook for `pods/log`, `pods/exec`, `pods/attach` and
/// `pods/portforward`: when their handlers land, add here (or, better, add a
/// flag to `Subresources` and a line to [`subresources_of`]):
///
/// ```text
/// ("", "pods", SubresourceDef { name: "log", group: "", version: "v1", kind: "Pod", verbs: &["get"] }),
/// ("", "pods", SubresourceDef { name: "exec", group: "", version: "v1", kind: "PodExecOptions", verbs: &["create", "get"] }),
/// ("", "pods", SubresourceDef { name: "attach", group: "", version: "v1", kind: "PodAttachOptions", verbs: &["create", "get"] }),
/// ("", "pods", SubresourceDef { name: "portforward", group: "", version: "v1", kind: "PodPortForwardOptions", verbs: &["create", "get"] }),
/// ```
///
/// Discovery and OpenAPI both pick entries up from here.
pub const EXTRA_SUBRESOURCES: &[(&str, &str, SubresourceDef)] = &[
    (
        "",
        "pods",
        SubresourceDef {
            name: "log",
            group: "",
            version: "v1",
            kind: "Pod",
            verbs: &["get"],
        },
    ),
    (
        "",
        "pods",
        SubresourceDef {
            name: "exec",
            group: "",
            version: "v1",
            kind: "PodExecOptions",
            verbs: &["create", "get"],
        },
    ),
    (
        "",
        "pods",
        SubresourceDef {
            name: "attach",
            group: "",
            version: "v1",
            kind: "PodAttachOptions",
            verbs: &["create", "get"],
        },
    ),
    (
        "",
        "pods",
        SubresourceDef {
            name: "portforward",
            group: "",
            version: "v1",
            kind: "PodPortForwardOptions",
            verbs: &["create", "get"],
        },
    ),
    (
        "",
        "serviceaccounts",
        SubresourceDef {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"],
        },
    ),
];

/// Every subresource of `def`, in the order discovery lists them.
pub fn subresources_of(def: &ResourceDef) -> Vec<SubresourceDef> {
    let mut out = Vec::new();
    let flags = def.subresources;
    if flags.binding {
        out.push(SubresourceDef {
            name: "binding",
            group: "",
            version: "v1",
            kind: "Binding",
            verbs: CREATE,
        });
    }
    if flags.eviction {
        out.push(SubresourceDef {
            name: "eviction",
            group: "policy",
            version: "v1",
            kind: "Eviction",
            verbs: CREATE,
        });
    }
    if flags.scale {
        out.push(SubresourceDef {
            name: "scale",
            group: "autoscaling",
            version: "v1",
            kind: "Scale",
            verbs: GET_PATCH_UPDATE,
        });
    }
    if flags.status {
        out.push(SubresourceDef {
            name: "status",
            group: def.group,
            version: def.version,
            kind: def.kind,
            verbs: GET_PATCH_UPDATE,
        });
    }
    out.extend(
        EXTRA_SUBRESOURCES
            .iter()
            .filter(|(g, plural, _)| *g == def.group && *plural == def.plural)
            .map(|(_, _, sub)| *sub),
    );
    out
}

/// `storageVersionHash` as Kubernetes computes it: the first 8 bytes of
/// SHA-256 over `group/version/kind` of the storage version, base64.
pub fn storage_version_hash(def: &ResourceDef) -> String {
    use base64::Engine as _;
    let digest = Sha256::digest(format!("{}/{}/{}", def.group, def.version, def.kind));
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

/// The `/api/v1` or `/apis/{group}/{version}` document (`APIResourceList`),
/// or `None` when the group-version is not served.
pub fn api_resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    if let Some(list) = crate::metrics_api::resource_list(group, version) {
        return Some(list);
    }
    let defs: Vec<&ResourceDef> = reg
        .all()
        .iter()
        .filter(|d| d.group == group && d.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for def in defs {
        let mut entry = Map::new();
        entry.insert("name".into(), def.plural.into());
        entry.insert("singularName".into(), def.singular.into());
        entry.insert("namespaced".into(), def.namespaced.into());
        entry.insert("kind".into(), def.kind.into());
        entry.insert("verbs".into(), strings(def.verbs()));
        if !def.short_names.is_empty() {
            entry.insert("shortNames".into(), strings(def.short_names));
        }
        if !def.categories.is_empty() {
            entry.insert("categories".into(), strings(def.categories));
        }
        entry.insert(
            "storageVersionHash".into(),
            storage_version_hash(def).into(),
        );
        resources.push(Value::Object(entry));

        for sub in subresources_of(def) {
            let mut entry = Map::new();
            entry.insert("name".into(), format!("{}/{}", def.plural, sub.name).into());
            entry.insert("singularName".into(), "".into());
            entry.insert("namespaced".into(), def.namespaced.into());
            // Group and version are given only when they differ from the list's.
            if sub.group != group || sub.version != version {
                entry.insert("group".into(), sub.group.into());
                entry.insert("version".into(), sub.version.into());
            }
            entry.insert("kind".into(), sub.kind.into());
            entry.insert("verbs".into(), strings(sub.verbs));
            resources.push(Value::Object(entry));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

fn aggregated_resource(def: &ResourceDef) -> Value {
    let mut entry = Map::new();
    entry.insert("resource".into(), def.plural.into());
    entry.insert("responseKind".into(), gvk(def.group, def.version, def.kind));
    let scope = if def.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    };
    entry.insert("scope".into(), scope.into());
    entry.insert("singularResource".into(), def.singular.into());
    entry.insert("verbs".into(), strings(def.verbs()));
    if !def.short_names.is_empty() {
        entry.insert("shortNames".into(), strings(def.short_names));
    }
    if !def.categories.is_empty() {
        entry.insert("categories".into(), strings(def.categories));
    }
    let subs: Vec<Value> = subresources_of(def)
        .iter()
        .map(|s| {
            json!({
                "subresource": s.name,
                "responseKind": gvk(s.group, s.version, s.kind),
                "verbs": strings(s.verbs),
            })
        })
        .collect();
    if !subs.is_empty() {
        entry.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(entry)
}

fn aggregated_group(reg: &Registry, group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let resources: Vec<Value> = reg
                .all()
                .iter()
                .filter(|d| d.group == group && d.version == *version)
                .map(aggregated_resource)
                .chain(crate::metrics_api::aggregated_resources(group, version))
                .collect();
            json!({ "version": version, "resources": resources, "freshness": "Current" })
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({ "creationTimestamp": null })
    } else {
        json!({ "name": group, "creationTimestamp": null })
    };
    json!({ "metadata": metadata, "versions": versions })
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`):
/// for `/api` with `legacy_core` (the core group only), for `/apis` without
/// (every named group), each version listed preferred first.
pub fn aggregated_discovery(reg: &Registry, legacy_core: bool) -> Value {
    aggregated_discovery_as(reg, legacy_core, DiscoveryFormat::AggregatedV2).unwrap_or(Value::Null)
}

/// Like [`aggregated_discovery`] in the version `format` names (`v2` or
/// `v2beta1`, whose shapes are the same); `None` for [`DiscoveryFormat::Legacy`].
pub fn aggregated_discovery_as(
    reg: &Registry,
    legacy_core: bool,
    format: DiscoveryFormat,
) -> Option<Value> {
    let api_version = format.aggregated_api_version()?;
    let items: Vec<Value> = if legacy_core {
        let core: Vec<&str> = reg
            .group_versions()
            .into_iter()
            .filter(|(g, _)| g.is_empty())
            .map(|(_, v)| v)
            .collect();
        if core.is_empty() {
            Vec::new()
        } else {
            vec![aggregated_group(reg, "", &core)]
        }
    } else {
        named_groups(reg)
            .iter()
            .map(|(g, vs)| aggregated_group(reg, g, vs))
            .collect()
    };
    Some(json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    }))
}

/// The document for `/api` (`legacy_core`) or `/apis` in `format`: what a
/// handler serves after [`negotiate_discovery`].
pub fn root_discovery(
    reg: &Registry,
    legacy_core: bool,
    format: DiscoveryFormat,
    server_address: &str,
) -> Value {
    match (format, legacy_core) {
        (DiscoveryFormat::Legacy, true) => api_versions(server_address),
        (DiscoveryFormat::Legacy, false) => api_group_list(reg),
        (aggregated, _) => {
            aggregated_discovery_as(reg, legacy_core, aggregated).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_1_32_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    fn resource<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == name))
            .unwrap_or_else(|| panic!("resource {name} missing"))
    }

    #[test]
    fn kubectl_gets_aggregated_v2_and_the_content_type_it_checks() {
        let format = negotiate_discovery(KUBECTL_1_32_ACCEPT);
        assert_eq!(format, Some(DiscoveryFormat::AggregatedV2));
        assert_eq!(
            DiscoveryFormat::AggregatedV2.content_type(),
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
    }

    #[test]
    fn older_clients_get_v2beta1_and_plain_clients_get_legacy() {
        let v2beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate_discovery(v2beta1),
            Some(DiscoveryFormat::AggregatedV2Beta1)
        );
        assert_eq!(
            negotiate_discovery("application/json"),
            Some(DiscoveryFormat::Legacy)
        );
        assert_eq!(negotiate_discovery(""), Some(DiscoveryFormat::Legacy));
        assert_eq!(negotiate_discovery("*/*"), Some(DiscoveryFormat::Legacy));
        assert_eq!(
            negotiate_discovery("application/json; charset=utf-8"),
            Some(DiscoveryFormat::Legacy)
        );
    }

    #[test]
    fn negotiation_honours_q_values_and_refuses_what_it_cannot_serve() {
        let prefers_legacy = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5,application/json";
        assert_eq!(
            negotiate_discovery(prefers_legacy),
            Some(DiscoveryFormat::Legacy)
        );
        assert_eq!(negotiate_discovery("application/yaml"), None);
        assert_eq!(
            negotiate_discovery("application/json;as=Table;v=v1;g=meta.k8s.io"),
            None
        );
        assert_eq!(negotiate_discovery("application/json;q=0"), None);
    }

    #[test]
    fn newer_clients_asking_for_nopeer_get_v2() {
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;profile=nopeer,application/json";
        assert_eq!(
            negotiate_discovery(accept),
            Some(DiscoveryFormat::AggregatedV2)
        );
    }

    #[test]
    fn version_reports_kubernetes_1_33_with_every_field_a_string() {
        let v = version_info();
        assert_eq!(v["major"], "1");
        assert_eq!(v["minor"], "33");
        assert!(v["gitVersion"]
            .as_str()
            .is_some_and(|s| s.starts_with("v1.33.0")));
        for field in [
            "gitCommit",
            "gitTreeState",
            "buildDate",
            "goVersion",
            "compiler",
            "platform",
        ] {
            assert!(v[field].is_string(), "{field} must be a string");
        }
    }

    #[test]
    fn api_versions_lists_v1_and_the_server_address() {
        let v = api_versions("127.0.0.1:6443");
        assert_eq!(v["kind"], "APIVersions");
        assert_eq!(v["versions"], json!(["v1"]));
        assert_eq!(
            v["serverAddressByClientCIDRs"][0],
            json!({"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"})
        );
    }

    #[test]
    fn group_list_has_every_named_group_with_its_preferred_version_but_not_core() {
        let reg = Registry::builtin();
        let list = api_group_list(&reg);
        let groups = list["groups"].as_array().cloned().unwrap_or_default();
        assert!(groups.iter().all(|g| g["name"] != ""));
        let apps = groups
            .iter()
            .find(|g| g["name"] == "apps")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            apps["preferredVersion"],
            json!({"groupVersion": "apps/v1", "version": "v1"})
        );
        assert!(groups.iter().any(|g| g["name"] == "coordination.k8s.io"));
        let group = api_group(&reg, "apps").unwrap_or_default();
        assert_eq!(group["kind"], "APIGroup");
        assert_eq!(group["versions"][0]["groupVersion"], "apps/v1");
        assert!(api_group(&reg, "nope").is_none());
    }

    #[test]
    fn core_resource_list_has_pods_and_their_subresources_with_kinds_and_verbs() {
        let reg = Registry::builtin();
        let list = api_resource_list(&reg, "", "v1").unwrap_or_default();
        assert_eq!(list["groupVersion"], "v1");
        let pods = resource(&list, "pods");
        assert_eq!(pods["kind"], "Pod");
        assert_eq!(pods["singularName"], "pod");
        assert_eq!(pods["namespaced"], true);
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(pods["storageVersionHash"]
            .as_str()
            .is_some_and(|h| h.len() == 12));
        assert_eq!(resource(&list, "pods/status")["kind"], "Pod");
        assert_eq!(
            resource(&list, "pods/status")["verbs"],
            json!(["get", "patch", "update"])
        );
        assert_eq!(resource(&list, "pods/binding")["kind"], "Binding");
        assert_eq!(resource(&list, "pods/binding")["verbs"], json!(["create"]));
        let eviction = resource(&list, "pods/eviction");
        assert_eq!(eviction["kind"], "Eviction");
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["version"], "v1");
        let nodes = resource(&list, "nodes");
        assert_eq!(nodes["namespaced"], false);
    }

    #[test]
    fn deployments_list_scale_as_autoscaling_v1_and_status_as_deployment() {
        let reg = Registry::builtin();
        let list = api_resource_list(&reg, "apps", "v1").unwrap_or_default();
        assert_eq!(list["groupVersion"], "apps/v1");
        let scale = resource(&list, "deployments/scale");
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["version"], "v1");
        let status = resource(&list, "deployments/status");
        assert_eq!(status["kind"], "Deployment");
        assert!(status.get("group").is_none());
        assert!(api_resource_list(&reg, "apps", "v9").is_none());
    }

    #[test]
    fn storage_version_hash_matches_kubernetes_for_pods() {
        let reg = Registry::builtin();
        let pods = reg.find("", "v1", "pods").cloned();
        // The value a Kubernetes 1.33 API server reports for v1 pods.
        assert_eq!(
            pods.map(|p| storage_version_hash(&p)),
            Some("xPOwRZ+Yhw8=".to_string())
        );
    }

    #[test]
    fn aggregated_core_document_has_only_the_core_group_with_full_resource_entries() {
        let reg = Registry::builtin();
        let doc = aggregated_discovery(&reg, true);
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = doc["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1);
        assert!(items[0]["metadata"].get("name").is_none());
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let pods = v1["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["resource"] == "pods"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        let eviction = pods["subresources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["subresource"] == "eviction"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            eviction["responseKind"],
            json!({"group": "policy", "version": "v1", "kind": "Eviction"})
        );
        assert_eq!(eviction["verbs"], json!(["create"]));
    }

    #[test]
    fn aggregated_apis_document_has_every_named_group_and_cluster_scopes() {
        let reg = Registry::builtin();
        let doc = aggregated_discovery(&reg, false);
        let items = doc["items"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = items
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        assert_eq!(names.len(), items.len());
        assert!(names.contains(&"apps") && names.contains(&"scheduling.k8s.io"));
        let scheduling = items
            .iter()
            .find(|i| i["metadata"]["name"] == "scheduling.k8s.io")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            scheduling["versions"][0]["resources"][0]["scope"],
            "Cluster"
        );
        let beta = aggregated_discovery_as(&reg, false, DiscoveryFormat::AggregatedV2Beta1)
            .unwrap_or_default();
        assert_eq!(beta["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        assert!(aggregated_discovery_as(&reg, false, DiscoveryFormat::Legacy).is_none());
    }

    #[test]
    fn root_discovery_serves_legacy_shapes_for_plain_json() {
        let reg = Registry::builtin();
        let api = root_discovery(&reg, true, DiscoveryFormat::Legacy, "10.0.0.1:6443");
        assert_eq!(api["kind"], "APIVersions");
        let apis = root_discovery(&reg, false, DiscoveryFormat::Legacy, "10.0.0.1:6443");
        assert_eq!(apis["kind"], "APIGroupList");
        let agg = root_discovery(&reg, false, DiscoveryFormat::AggregatedV2, "10.0.0.1:6443");
        assert_eq!(agg["kind"], "APIGroupDiscoveryList");
    }
}
