//! A container's environment from its spec: `envFrom` (configMapRef,
//! secretRef, with `prefix`) first, then `env` in order — plain values and
//! `valueFrom` (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef).
//! A later definition of a name wins, as in Kubernetes.
//!
//! Values and `command`/`args` expand `$(NAME)` references as Kubernetes
//! does ([`expand`]): a name defined earlier is replaced, `$$(NAME)` stays
//! literal `$(NAME)`, anything else is kept as written.
//!
//! A missing object or key fails with Kubernetes' message (the container
//! then waits `CreateContainerConfigError`), unless the reference is
//! `optional`, in which case the variable is left out.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::downward::{field_value, resource_value, NodeFacts};
use super::projection::{config_map_data, secret_data, SourceKind};
use super::{PodApi, VolumeError};

type Data = Option<BTreeMap<String, Vec<u8>>>;

/// Objects read while resolving one container's env, each once.
struct Lookups<'a> {
    api: Option<&'a dyn PodApi>,
    namespace: &'a str,
    seen: HashMap<(SourceKind, String), Data>,
}

impl Lookups<'_> {
    async fn get(&mut self, kind: SourceKind, name: &str) -> Result<&Data, VolumeError> {
        let key = (kind, name.to_string());
        if !self.seen.contains_key(&key) {
            let data = fetch(self.api, self.namespace, kind, name).await?;
            self.seen.insert(key.clone(), data);
        }
        Ok(self.seen.entry(key).or_default())
    }
}

/// Reads a ConfigMap's or Secret's data (`None`: it does not exist).
pub(super) async fn fetch(
    api: Option<&dyn PodApi>,
    namespace: &str,
    kind: SourceKind,
    name: &str,
) -> Result<Data, VolumeError> {
    let api = api.ok_or_else(|| VolumeError::NoApi {
        kind,
        name: name.to_string(),
    })?;
    let lookup = |source| VolumeError::Lookup {
        kind,
        name: name.to_string(),
        source,
    };
    Ok(match kind {
        SourceKind::ConfigMap => api
            .config_map(namespace, name)
            .await
            .map_err(lookup)?
            .map(|cm| config_map_data(&cm)),
        SourceKind::Secret => api
            .secret(namespace, name)
            .await
            .map_err(lookup)?
            .map(|s| secret_data(&s)),
    })
}

fn key_missing(kind: SourceKind, namespace: &str, name: &str, key: &str) -> VolumeError {
    let object = match kind {
        SourceKind::ConfigMap => "ConfigMap",
        SourceKind::Secret => "Secret",
    };
    VolumeError::EnvKey(format!(
        "couldn't find key {key} in {object} {namespace}/{name}"
    ))
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes `lookup(NAME)` when
/// defined and stays as written otherwise; `$$` is an escaped `$`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A lookup over resolved variables (the last definition of a name wins).
pub fn lookup_in(env: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// The variables Kubernetes gives every container for the API's Service
/// (`default/kubernetes` at `ip:port`), in the Docker-links form the kubelet
/// uses: `KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`, the named
/// port's `KUBERNETES_SERVICE_PORT_HTTPS` and the `KUBERNETES_PORT*` set.
pub fn kubernetes_service_env(ip: std::net::Ipv4Addr, port: u16) -> Vec<(String, String)> {
    let url = format!("tcp://{ip}:{port}");
    let prefix = format!("KUBERNETES_PORT_{port}_TCP");
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), ip.to_string()),
        ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
        ("KUBERNETES_PORT".into(), url.clone()),
        (prefix.clone(), url),
        (format!("{prefix}_PROTO"), "tcp".into()),
        (format!("{prefix}_PORT"), port.to_string()),
        (format!("{prefix}_ADDR"), ip.to_string()),
    ]
}

/// The container's variables, in definition order (later ones override).
pub async fn resolve(
    pod: &Pod,
    container: &Container,
    api: Option<&dyn PodApi>,
    facts: &NodeFacts,
) -> Result<Vec<(String, String)>, VolumeError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut lookups = Lookups {
        api,
        namespace,
        seen: HashMap::new(),
    };
    // Service variables first, so the container's own can use and
    // override them, as the kubelet orders them.
    let mut env = facts.service_env.clone();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = match (&source.config_map_ref, &source.secret_ref) {
            (Some(cm), _) => (SourceKind::ConfigMap, cm.name.clone(), cm.optional),
            (None, Some(secret)) => (SourceKind::Secret, secret.name.clone(), secret.optional),
            (None, None) => continue,
        };
        match lookups.get(kind, &name).await? {
            Some(data) => {
                for (key, value) in data {
                    if key.contains('=') || key.is_empty() {
                        continue;
                    }
                    env.push((
                        format!("{prefix}{key}"),
                        String::from_utf8_lossy(value).into_owned(),
                    ));
                }
            }
            None if optional.unwrap_or(false) => {}
            None => return Err(VolumeError::NotFound { kind, name }),
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            let value = expand(var.value.as_deref().unwrap_or(""), &lookup_in(&env));
            env.push((var.name.clone(), value));
            continue;
        };
        let keyed = match (&from.config_map_key_ref, &from.secret_key_ref) {
            (Some(r), _) => Some((SourceKind::ConfigMap, &r.name, &r.key, r.optional)),
            (None, Some(r)) => Some((SourceKind::Secret, &r.name, &r.key, r.optional)),
            (None, None) => None,
        };
        let value = if let Some((kind, name, key, optional)) = keyed {
            let optional = optional.unwrap_or(false);
            match lookups.get(kind, name).await? {
                Some(data) => match data.get(key) {
                    Some(value) => String::from_utf8_lossy(value).into_owned(),
                    None if optional => continue,
                    None => return Err(key_missing(kind, namespace, name, key)),
                },
                None if optional => continue,
                None => {
                    return Err(VolumeError::NotFound {
                        kind,
                        name: name.clone(),
                    })
                }
            }
        } else if let Some(field) = &from.field_ref {
            field_value(pod, field, facts, true)?
        } else if let Some(resource) = &from.resource_field_ref {
            let target = match resource.container_name.as_deref() {
                None | Some("") => container,
                Some(other) => pod
                    .spec
                    .iter()
                    .flat_map(|s| {
                        s.containers
                            .iter()
                            .chain(s.init_containers.iter().flatten())
                    })
                    .find(|c| c.name == other)
                    .ok_or_else(|| {
                        VolumeError::ResourceField(format!(
                            "{}: no container {other:?}",
                            resource.resource
                        ))
                    })?,
            };
            resource_value(target, resource, facts)?
        } else {
            String::new()
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, Secret, SecretKeySelector,
    };

    use super::super::LookupError;
    use super::*;

    #[derive(Debug, Default)]
    struct Fake {
        config_maps: BTreeMap<String, BTreeMap<String, String>>,
        secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
        reads: Mutex<usize>,
    }

    #[async_trait]
    impl PodApi for Fake {
        async fn config_map(&self, _: &str, name: &str) -> Result<Option<ConfigMap>, LookupError> {
            *self.reads.lock().expect("lock") += 1;
            Ok(self.config_maps.get(name).map(|data| ConfigMap {
                data: Some(data.clone()),
                ..Default::default()
            }))
        }
        async fn secret(&self, _: &str, name: &str) -> Result<Option<Secret>, LookupError> {
            Ok(self.secrets.get(name).map(|data| Secret {
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone())))
                        .collect(),
                ),
                ..Default::default()
            }))
        }
        async fn service_account_token(
            &self,
            _: &str,
            _: &str,
            _: &k8s_openapi::api::authentication::v1::TokenRequest,
        ) -> Result<k8s_openapi::api::authentication::v1::TokenRequest, LookupError> {
            Err("no tokens here".into())
        }
        fn warn(&self, _: &Pod, _: &str, _: String) {}
    }

    fn fake() -> Fake {
        Fake {
            config_maps: BTreeMap::from([(
                "cfg".to_string(),
                BTreeMap::from([
                    ("color".to_string(), "blue".to_string()),
                    ("size".to_string(), "L".to_string()),
                ]),
            )]),
            secrets: BTreeMap::from([(
                "creds".to_string(),
                BTreeMap::from([("password".to_string(), b"hunter2".to_vec())]),
            )]),
            ..Default::default()
        }
    }

    fn var(name: &str, from: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.to_string(),
            value_from: Some(from),
            ..Default::default()
        }
    }

    fn cm_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
        EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: name.to_string(),
                key: key.to_string(),
                optional,
            }),
            ..Default::default()
        }
    }

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".to_string());
        pod.metadata.namespace = Some("ns".to_string());
        pod
    }

    #[tokio::test]
    async fn env_from_then_env_with_value_from_and_later_names_win() {
        let api = fake();
        let container = Container {
            name: "c".to_string(),
            env_from: Some(vec![EnvFromSource {
                prefix: Some("CFG_".to_string()),
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".to_string(),
                    optional: None,
                }),
                ..Default::default()
            }]),
            env: Some(vec![
                var("COLOR", cm_key("cfg", "color", None)),
                var(
                    "PASSWORD",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "creds".to_string(),
                            key: "password".to_string(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                var(
                    "POD",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".to_string(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                EnvVar {
                    name: "CFG_size".to_string(),
                    value: Some("override".to_string()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let env = resolve(&pod(), &container, Some(&api), &NodeFacts::default())
            .await
            .expect("env");
        let final_value = |name: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(final_value("CFG_color").as_deref(), Some("blue"));
        assert_eq!(final_value("CFG_size").as_deref(), Some("override"));
        assert_eq!(final_value("COLOR").as_deref(), Some("blue"));
        assert_eq!(final_value("PASSWORD").as_deref(), Some("hunter2"));
        assert_eq!(final_value("POD").as_deref(), Some("p"));
        assert_eq!(*api.reads.lock().expect("lock"), 1, "cfg read once");
    }

    #[test]
    fn references_expand_escapes_stay_literal_and_unknown_names_are_kept() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        let lookup = lookup_in(&env);
        assert_eq!(expand("$(A)-$(B)", &lookup), "1-two");
        assert_eq!(expand("$$(A)", &lookup), "$(A)");
        assert_eq!(expand("$(NOPE)", &lookup), "$(NOPE)");
        assert_eq!(expand("cost: $5 $", &lookup), "cost: $5 $");
        assert_eq!(expand("$(A", &lookup), "$(A");
    }

    fn plain(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.to_string(),
            value: Some(value.to_string()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_value_expands_variables_defined_before_it() {
        let api = fake();
        let container = Container {
            name: "c".to_string(),
            env: Some(vec![
                plain("EARLY", "$(COLOR)"),
                var("COLOR", cm_key("cfg", "color", None)),
                plain("URL", "http://$(COLOR):80"),
            ]),
            ..Default::default()
        };
        let env = resolve(&pod(), &container, Some(&api), &NodeFacts::default())
            .await
            .expect("env");
        let lookup = lookup_in(&env);
        assert_eq!(lookup("EARLY").as_deref(), Some("$(COLOR)"));
        assert_eq!(lookup("URL").as_deref(), Some("http://blue:80"));
    }

    #[tokio::test]
    async fn containers_get_the_api_service_variables_and_may_use_or_override_them() {
        let container = Container {
            name: "c".to_string(),
            env: Some(vec![
                plain(
                    "API",
                    "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)",
                ),
                plain("KUBERNETES_SERVICE_PORT_HTTPS", "8443"),
            ]),
            ..Default::default()
        };
        let facts = NodeFacts {
            service_env: kubernetes_service_env("10.96.0.1".parse().expect("ip"), 443),
            ..Default::default()
        };
        let env = resolve(&pod(), &container, None, &facts)
            .await
            .expect("env");
        let lookup = lookup_in(&env);
        assert_eq!(
            lookup("KUBERNETES_SERVICE_HOST").as_deref(),
            Some("10.96.0.1")
        );
        assert_eq!(
            lookup("KUBERNETES_PORT").as_deref(),
            Some("tcp://10.96.0.1:443")
        );
        assert_eq!(
            lookup("KUBERNETES_PORT_443_TCP_ADDR").as_deref(),
            Some("10.96.0.1")
        );
        assert_eq!(lookup("API").as_deref(), Some("https://10.96.0.1:443"));
        assert_eq!(
            lookup("KUBERNETES_SERVICE_PORT_HTTPS").as_deref(),
            Some("8443")
        );
    }

    #[tokio::test]
    async fn missing_objects_and_keys_fail_unless_optional() {
        let api = fake();
        let run = |env: Vec<EnvVar>| {
            let container = Container {
                name: "c".to_string(),
                env: Some(env),
                ..Default::default()
            };
            let api = &api;
            async move { resolve(&pod(), &container, Some(api), &NodeFacts::default()).await }
        };
        let error = run(vec![var("X", cm_key("nope", "k", None))])
            .await
            .expect_err("missing configmap");
        assert_eq!(error.to_string(), "configmap \"nope\" not found");
        let error = run(vec![var("X", cm_key("cfg", "k", None))])
            .await
            .expect_err("missing key");
        assert_eq!(error.to_string(), "couldn't find key k in ConfigMap ns/cfg");
        let env = run(vec![
            var("X", cm_key("nope", "k", Some(true))),
            var("Y", cm_key("cfg", "k", Some(true))),
        ])
        .await
        .expect("optional");
        assert!(env.is_empty());
    }
}
