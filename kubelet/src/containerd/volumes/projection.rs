//! The files of configMap, secret, downwardAPI and projected volumes,
//! computed from the objects they read (pure: no I/O).
//!
//! Kubernetes' rules: without `items` every key becomes a file named after
//! it; with `items` only the listed keys, each at its `path`, and a listed
//! key that is missing fails the volume unless the source is `optional`. A
//! missing object fails the volume unless `optional` (then it is empty).
//! Each file gets its item's `mode`, else the volume's `defaultMode`
//! (0644 when unset).

use std::collections::BTreeMap;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret,
};

use super::downward::{field_value, resource_value, NodeFacts};
use super::VolumeError;

/// Kubernetes' default file mode of API-data volumes.
pub const DEFAULT_MODE: u32 = 0o644;

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// Its content.
    pub data: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

/// The files of a volume by relative path.
pub type Payload = BTreeMap<String, FileProjection>;

/// Which API object a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A ConfigMap (`data` and `binaryData`).
    ConfigMap,
    /// A Secret (`data`).
    Secret,
}

impl SourceKind {
    /// `configmap` / `secret`, as Kubernetes' messages say.
    pub fn noun(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "configmap",
            SourceKind::Secret => "secret",
        }
    }
}

/// The key/value data of a ConfigMap (`binaryData` included).
pub fn config_map_data(config_map: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = config_map
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (key, value) in config_map.binary_data.iter().flatten() {
        data.insert(key.clone(), value.0.clone());
    }
    data
}

/// The key/value data of a Secret.
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    // stringData is write-only in the API, but honour it if present.
    for (key, value) in secret.string_data.iter().flatten() {
        data.insert(key.clone(), value.clone().into_bytes());
    }
    data
}

/// A file mode from the API (`int32`), keeping permission bits only.
pub fn file_mode(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map(|m| m & 0o7777)
        .unwrap_or(default)
}

/// Checks that `path` is relative and stays inside the volume (no `..`
/// element, not starting with `..`, as Kubernetes validates).
pub fn check_relative_path(path: &str) -> Result<(), VolumeError> {
    let invalid = |reason: &str| VolumeError::InvalidPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if path.starts_with("..") {
        return Err(invalid("must not start with '..'"));
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(invalid("must not contain '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid("must be a relative path"))
            }
        }
    }
    Ok(())
}

/// The files of a configMap or secret source.
///
/// `data` is `None` when the object does not exist.
pub fn key_payload(
    kind: SourceKind,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let Some(data) = data else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(VolumeError::NotFound {
                kind,
                name: name.to_string(),
            })
        };
    };
    let mut payload = Payload::new();
    match items.filter(|items| !items.is_empty()) {
        None => {
            for (key, value) in data {
                check_relative_path(key)?;
                payload.insert(
                    key.clone(),
                    FileProjection {
                        data: value.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                check_relative_path(&item.path)?;
                let Some(value) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(VolumeError::MissingKey {
                        kind,
                        name: name.to_string(),
                        key: item.key.clone(),
                    });
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: value.clone(),
                        mode: file_mode(item.mode, default_mode),
                    },
                );
            }
        }
    }
    Ok(payload)
}

/// The files of a downwardAPI source: each item a pod field or a
/// container resource.
pub fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    facts: &NodeFacts,
) -> Result<Payload, VolumeError> {
    let containers: Vec<&Container> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .collect();
    let mut payload = Payload::new();
    for item in items {
        check_relative_path(&item.path)?;
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), _) => field_value(pod, field, facts, false)?,
            (None, Some(resource)) => {
                let wanted = resource.container_name.clone().unwrap_or_default();
                let container = containers
                    .iter()
                    .find(|c| c.name == wanted)
                    .ok_or_else(|| {
                        VolumeError::ResourceField(format!(
                            "{}: no container {wanted:?}",
                            resource.resource
                        ))
                    })?;
                resource_value(container, resource, facts)?
            }
            (None, None) => {
                return Err(VolumeError::InvalidPath {
                    path: item.path.clone(),
                    reason: "needs a fieldRef or a resourceFieldRef".to_string(),
                })
            }
        };
        payload.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: file_mode(item.mode, default_mode),
            },
        );
    }
    Ok(payload)
}

/// Adds `more` to `payload`; a path given twice keeps the later one, as
/// Kubernetes' projected volumes do.
pub fn merge(payload: &mut Payload, more: Payload) {
    payload.extend(more);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.to_string(),
            path: path.to_string(),
            mode,
        }
    }

    #[test]
    fn without_items_every_key_becomes_a_file_with_the_default_mode() {
        let d = data(&[("a", "1"), ("b.conf", "2")]);
        let payload = key_payload(SourceKind::ConfigMap, "cfg", Some(&d), None, 0o600, false)
            .expect("payload");
        assert_eq!(payload.len(), 2);
        assert_eq!(payload["a"].data, b"1");
        assert_eq!(payload["b.conf"].mode, 0o600);
    }

    #[test]
    fn items_select_keys_place_them_at_their_paths_and_may_set_a_mode() {
        let d = data(&[("a", "1"), ("b", "2")]);
        let items = [item("a", "dir/renamed", Some(0o400))];
        let payload = key_payload(
            SourceKind::ConfigMap,
            "cfg",
            Some(&d),
            Some(&items),
            DEFAULT_MODE,
            false,
        )
        .expect("payload");
        assert_eq!(payload.keys().collect::<Vec<_>>(), vec!["dir/renamed"]);
        assert_eq!(payload["dir/renamed"].mode, 0o400);
        assert_eq!(payload["dir/renamed"].data, b"1");
    }

    #[test]
    fn a_missing_item_key_fails_unless_the_source_is_optional() {
        let d = data(&[("a", "1")]);
        let items = [item("nope", "x", None), item("a", "a", None)];
        let error = key_payload(
            SourceKind::Secret,
            "s",
            Some(&d),
            Some(&items),
            0o644,
            false,
        )
        .expect_err("missing key");
        assert_eq!(
            error.to_string(),
            "secret \"s\" references non-existent secret key: nope"
        );
        let payload = key_payload(SourceKind::Secret, "s", Some(&d), Some(&items), 0o644, true)
            .expect("optional");
        assert_eq!(payload.keys().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn a_missing_object_fails_with_kubernetes_wording_unless_optional() {
        let error =
            key_payload(SourceKind::ConfigMap, "x", None, None, 0o644, false).expect_err("missing");
        assert_eq!(error.to_string(), "configmap \"x\" not found");
        assert!(error.is_missing_object());
        let payload =
            key_payload(SourceKind::ConfigMap, "x", None, None, 0o644, true).expect("optional");
        assert!(payload.is_empty());
    }

    #[test]
    fn item_paths_must_stay_inside_the_volume() {
        assert!(check_relative_path("a/b").is_ok());
        assert!(check_relative_path("../etc/passwd").is_err());
        assert!(check_relative_path("a/../../b").is_err());
        assert!(check_relative_path("/abs").is_err());
        assert!(check_relative_path("..data").is_err());
        let d = data(&[("a", "1")]);
        let items = [item("a", "../escape", None)];
        assert!(key_payload(
            SourceKind::ConfigMap,
            "c",
            Some(&d),
            Some(&items),
            0o644,
            false
        )
        .is_err());
    }

    #[test]
    fn modes_keep_permission_bits_and_default_when_unset() {
        assert_eq!(file_mode(None, 0o644), 0o644);
        assert_eq!(file_mode(Some(0o755), 0o644), 0o755);
        assert_eq!(file_mode(Some(0o100_644), 0o600), 0o644);
        assert_eq!(file_mode(Some(-1), 0o600), 0o600);
    }

    #[test]
    fn binary_data_of_a_config_map_becomes_files_too() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([("t".to_string(), "text".to_string())])),
            binary_data: Some(BTreeMap::from([(
                "b".to_string(),
                k8s_openapi::ByteString(vec![0, 1, 2]),
            )])),
            ..Default::default()
        };
        let d = config_map_data(&cm);
        assert_eq!(d["t"], b"text");
        assert_eq!(d["b"], vec![0, 1, 2]);
    }

    #[test]
    fn downward_items_write_pod_fields_and_container_resources() {
        use k8s_openapi::api::core::v1::{
            ObjectFieldSelector, PodSpec, ResourceFieldSelector, ResourceRequirements,
        };
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".to_string());
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "app".to_string(),
                resources: Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([(
                        "memory".to_string(),
                        Quantity("32Mi".to_string()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        let items = [
            DownwardAPIVolumeFile {
                path: "name".to_string(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            DownwardAPIVolumeFile {
                path: "mem".to_string(),
                mode: Some(0o400),
                resource_field_ref: Some(ResourceFieldSelector {
                    container_name: Some("app".to_string()),
                    resource: "limits.memory".to_string(),
                    divisor: Some(Quantity("1Mi".to_string())),
                }),
                ..Default::default()
            },
        ];
        let payload =
            downward_payload(&pod, &items, 0o644, &NodeFacts::default()).expect("payload");
        assert_eq!(payload["name"].data, b"p");
        assert_eq!(payload["mem"].data, b"32");
        assert_eq!(payload["mem"].mode, 0o400);
    }
}
