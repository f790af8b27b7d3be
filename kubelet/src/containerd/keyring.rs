//! Registry credentials from a pod's `imagePullSecrets`, matched to an
//! image as the kubelet's credential provider keyring does:
//!
//! - `kubernetes.io/dockerconfigjson` secrets (`.dockerconfigjson`:
//!   `{"auths": {"<registry>": {...}}}`) and legacy `kubernetes.io/dockercfg`
//!   ones (`.dockercfg`: `{"<registry>": {...}}`); an entry's `auth`
//!   (base64 `user:password`) wins over its `username`/`password`;
//! - a key is a URL without scheme (`https://` and `http://` are dropped,
//!   and a `/v1/` or `/v2/` path counts as none): it matches an image when
//!   the host parts match one by one (with `*` globs, `*.example.com`),
//!   the ports are equal and the key's path is a prefix of the image's;
//! - every match is returned, the most specific key first (keys sorted in
//!   reverse), so each is tried in turn; Docker Hub images also match
//!   `index.docker.io` keys.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use super::registry::Credentials;

/// The secret type holding a `~/.docker/config.json`.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// The legacy secret type holding a `~/.dockercfg`.
pub const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

#[derive(Debug, Default, Deserialize)]
struct ConfigEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, ConfigEntry>,
}

/// Credentials by registry key, as read from pull secrets.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    /// `(key, credentials)`; a key may appear more than once.
    entries: Vec<(String, Credentials)>,
}

/// Why a pull secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The secret's JSON is malformed.
    #[error("secret {secret}: {source}")]
    Json {
        /// The secret's name.
        secret: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl Keyring {
    /// The credentials of `secrets`, in order; secrets of other types (or
    /// without the key their type needs) are ignored, as the kubelet does.
    pub fn from_secrets(secrets: &[Secret]) -> Result<Self, KeyringError> {
        let mut keyring = Self::default();
        for secret in secrets {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let data = secret.data.clone().unwrap_or_default();
            let json = |source| KeyringError::Json {
                secret: name.clone(),
                source,
            };
            let config: BTreeMap<String, ConfigEntry> = match secret.type_.as_deref() {
                Some(DOCKER_CONFIG_JSON) => match data.get(".dockerconfigjson") {
                    Some(bytes) if !bytes.0.is_empty() => {
                        serde_json::from_slice::<DockerConfigJson>(&bytes.0)
                            .map_err(json)?
                            .auths
                    }
                    _ => continue,
                },
                Some(DOCKER_CFG) => match data.get(".dockercfg") {
                    Some(bytes) if !bytes.0.is_empty() => {
                        serde_json::from_slice(&bytes.0).map_err(json)?
                    }
                    _ => continue,
                },
                _ => continue,
            };
            for (location, entry) in config {
                if let (Some(key), Some(credentials)) = (key_of(&location), credentials_of(entry)) {
                    keyring.entries.push((key, credentials));
                }
            }
        }
        Ok(keyring)
    }

    /// Every credential matching `repository` (`127.0.0.1:5000/team/app`,
    /// `docker.io/library/busybox`: no tag or digest), the most specific
    /// key first.
    pub fn lookup(&self, repository: &str) -> Vec<Credentials> {
        let mut keys: Vec<&str> = self.entries.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.reverse();
        let mut found = Vec::new();
        for key in keys {
            if url_matches(key, repository) {
                found.extend(
                    self.entries
                        .iter()
                        .filter(|(k, _)| k == key)
                        .map(|(_, c)| c.clone()),
                );
            }
        }
        if found.is_empty() && is_default_registry(repository) {
            found.extend(
                self.entries
                    .iter()
                    .filter(|(k, _)| k == DEFAULT_REGISTRY_HOST)
                    .map(|(_, c)| c.clone()),
            );
        }
        found
    }
}

fn credentials_of(entry: ConfigEntry) -> Option<Credentials> {
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let pair = String::from_utf8(decoded).ok()?;
        let (username, password) = pair.split_once(':')?;
        return Some(Credentials {
            username: username.to_string(),
            password: password.trim_matches('\0').to_string(),
        });
    }
    Some(Credentials {
        username: entry.username?,
        password: entry.password.unwrap_or_default(),
    })
}

/// A config location as a keyring key: `host[:port][/path]`, no scheme,
/// `/v1/` and `/v2/` paths dropped.
fn key_of(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return None;
    }
    let path = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/v2/"))
        .map(|p| format!("/{p}"))
        .unwrap_or_else(|| path.to_string());
    let path = path.trim_end_matches('/');
    Some(format!("{host}{path}"))
}

/// Whether an image without an explicit registry goes to Docker Hub.
fn is_default_registry(repository: &str) -> bool {
    let Some((first, _)) = repository.split_once('/') else {
        return !repository.is_empty();
    };
    first == "docker.io"
        || first == DEFAULT_REGISTRY_HOST
        || (!first.contains(['.', ':']) && first != "localhost")
}

/// `(host parts, port, path)` of a schemeless URL.
fn split(url: &str) -> (Vec<&str>, &str, &str) {
    let (authority, path) = match url.find('/') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, port),
        _ => (authority, ""),
    };
    (host.split('.').collect(), port, path)
}

/// The kubelet's `URLsMatchStr(key, image)`.
fn url_matches(key: &str, image: &str) -> bool {
    let (key_parts, key_port, key_path) = split(key);
    let (image_parts, image_port, image_path) = split(image);
    key_port == image_port
        && key_parts.len() == image_parts.len()
        && image_path.starts_with(key_path)
        && key_parts
            .iter()
            .zip(&image_parts)
            .all(|(pattern, part)| glob(pattern, part))
}

/// `filepath.Match` for one host part: `*` (any run) and `?` (one char).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, type_: &str, key: &str, json: &str) -> Secret {
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            type_: Some(type_.to_string()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(json.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    fn user(c: &Credentials) -> &str {
        &c.username
    }

    #[test]
    fn a_dockerconfigjson_secret_matches_its_registry_host_and_port() {
        // "alice:secret" in base64.
        let keyring = Keyring::from_secrets(&[secret(
            "regcred",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6c2VjcmV0"}}}"#,
        )])
        .expect("parse");
        let found = keyring.lookup("127.0.0.1:5000/team/app");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].username, "alice");
        assert_eq!(found[0].password, "secret");
        assert!(keyring.lookup("127.0.0.1:5001/team/app").is_empty());
        assert!(keyring.lookup("127.0.0.2:5000/team/app").is_empty());
    }

    #[test]
    fn a_legacy_dockercfg_secret_and_a_scheme_and_v2_path_are_understood() {
        let keyring = Keyring::from_secrets(&[secret(
            "old",
            DOCKER_CFG,
            ".dockercfg",
            r#"{"https://reg.example.com/v2/":{"username":"bob","password":"pw","email":"b@x"}}"#,
        )])
        .expect("parse");
        let found = keyring.lookup("reg.example.com/app");
        assert_eq!(found.iter().map(user).collect::<Vec<_>>(), vec!["bob"]);
    }

    #[test]
    fn globs_paths_and_specific_keys_first() {
        let keyring = Keyring::from_secrets(&[secret(
            "many",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            r#"{"auths":{
                "*.example.com":{"username":"wild","password":"1"},
                "quay.io":{"username":"host","password":"2"},
                "quay.io/coreos":{"username":"path","password":"3"}
            }}"#,
        )])
        .expect("parse");
        assert_eq!(
            keyring
                .lookup("quay.io/coreos/etcd")
                .iter()
                .map(user)
                .collect::<Vec<_>>(),
            vec!["path", "host"]
        );
        assert_eq!(
            keyring
                .lookup("quay.io/other/app")
                .iter()
                .map(user)
                .collect::<Vec<_>>(),
            vec!["host"]
        );
        assert_eq!(
            keyring
                .lookup("eu.example.com/app")
                .iter()
                .map(user)
                .collect::<Vec<_>>(),
            vec!["wild"]
        );
        // A glob matches one host part, not several.
        assert!(keyring.lookup("a.b.example.com/app").is_empty());
    }

    #[test]
    fn docker_hub_images_use_index_docker_io_credentials() {
        let keyring = Keyring::from_secrets(&[secret(
            "hub",
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"x"}}}"#,
        )])
        .expect("parse");
        assert_eq!(keyring.lookup("docker.io/library/busybox").len(), 1);
        assert!(keyring.lookup("localhost:5000/busybox").is_empty());
    }

    #[test]
    fn secrets_of_other_types_are_ignored_and_bad_json_is_an_error() {
        let opaque = secret(
            "opaque",
            "Opaque",
            ".dockerconfigjson",
            r#"{"auths":{"r.io":{"username":"u","password":"p"}}}"#,
        );
        assert!(Keyring::from_secrets(&[opaque])
            .expect("ignored")
            .lookup("r.io/app")
            .is_empty());
        let broken = secret("broken", DOCKER_CONFIG_JSON, ".dockerconfigjson", "{");
        assert!(Keyring::from_secrets(&[broken]).is_err());
    }
}
