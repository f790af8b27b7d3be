//! The `ServiceAccount` admission plugin (kube-apiserver's
//! `plugin/pkg/admission/serviceaccount`), on pod CREATE:
//!
//! - a pod that names no service account runs as `default`;
//! - the named ServiceAccount must exist (`default` is waited for a little,
//!   since the controller manager creates it just after the namespace);
//! - unless the pod (first) or its ServiceAccount says
//!   `automountServiceAccountToken: false`, a projected `kube-api-access-*`
//!   volume (a bound token, the cluster CA from `kube-root-ca.crt`, the
//!   namespace) is mounted read-only at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` in every container and
//!   init container that mounts nothing there already;
//! - a pod without `imagePullSecrets` gets its ServiceAccount's;
//! - mirror pods are left unchanged, and may not use service accounts,
//!   secrets or token projections.
//!
//! The pod mutation is pure ([`mutate`]); the lookup is in [`admit`].

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::objects;
use crate::store::Store;

/// The plugin's name (`--disable-admission-plugins=ServiceAccount`).
pub const PLUGIN_NAME: &str = "ServiceAccount";
/// The service account of pods that name none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where the credentials are mounted in every container.
pub const DEFAULT_API_TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the injected volume's name; a random 5-character suffix follows.
pub const VOLUME_NAME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap every namespace has with the cluster CA (`ca.crt`).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The injected token's lifetime: Kubernetes' `WarnOnlyBoundTokenExpirationSeconds`
/// (one hour and 7 seconds, so the API server can tell these tokens apart).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The annotation marking a kubelet's mirror of a static pod.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// How long a missing `default` ServiceAccount is waited for. Upstream
/// retries ten times 100–200 ms apart; skiff's controller manager shares the
/// process and two cores with the API server, so it gets a little longer.
const DEFAULT_SERVICE_ACCOUNT_WAIT: Duration = Duration::from_secs(5);

/// Whether the pod is a kubelet's mirror pod.
fn is_mirror_pod(pod: &Value) -> bool {
    pod["metadata"]["annotations"]
        .get(MIRROR_POD_ANNOTATION)
        .is_some()
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .filter_map(|f| spec.get(f).and_then(Value::as_array))
        .flatten()
}

/// Whether anything in the pod names a Secret (`VisitPodSecretNames`).
fn references_secrets(spec: &Value) -> bool {
    let pull = spec["imagePullSecrets"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    let volumes = spec["volumes"].as_array().into_iter().flatten().any(|v| {
        v.get("secret").is_some_and(|s| !s.is_null())
            || v["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s.get("secret").is_some_and(|s| !s.is_null()))
    });
    let env = containers(spec).any(|c| {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| !e["valueFrom"]["secretKeyRef"].is_null())
            || c["envFrom"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| !e["secretRef"].is_null())
    });
    pull || volumes || env
}

/// What a mirror pod may not do, as a Forbidden message.
fn mirror_pod_violation(spec: &Value) -> Option<&'static str> {
    if str_at(spec, "serviceAccountName").is_some() {
        return Some("a mirror pod may not reference service accounts");
    }
    if references_secrets(spec) {
        return Some("a mirror pod may not reference secrets");
    }
    let projects_token = spec["volumes"].as_array().into_iter().flatten().any(|v| {
        v["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| !s["serviceAccountToken"].is_null())
    });
    projects_token.then_some("a mirror pod may not use ServiceAccountToken volume projections")
}

/// The projected volume source of the injected credentials (`TokenVolumeSource`).
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
            {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    })
}

/// Whether the token is mounted: the pod's `automountServiceAccountToken`
/// wins, then the ServiceAccount's, else yes.
fn should_automount(service_account: &Value, pod: &Value) -> bool {
    pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| service_account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

/// Mounts the credentials volume in every container and init container that
/// mounts nothing at the default path; adds the volume once (reusing an
/// existing `kube-api-access-*` volume) if any container needed it.
fn mount_service_account_token(spec: &mut Value, volume_suffix: &str) {
    let existing = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| str_at(v, "name"))
        .find(|n| n.starts_with(VOLUME_NAME_PREFIX))
        .map(str::to_string);
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_NAME_PREFIX}{volume_suffix}"));
    let mount = json!({"name": name, "readOnly": true, "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let mounted = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"].as_str() == Some(DEFAULT_API_TOKEN_MOUNT_PATH));
            if mounted {
                continue;
            }
            if !c["volumeMounts"].is_array() {
                c["volumeMounts"] = json!([]);
            }
            if let Some(mounts) = c["volumeMounts"].as_array_mut() {
                mounts.push(mount.clone());
                needs_volume = true;
            }
        }
    }
    if existing.is_none() && needs_volume {
        if !spec["volumes"].is_array() {
            spec["volumes"] = json!([]);
        }
        if let Some(volumes) = spec["volumes"].as_array_mut() {
            volumes.push(json!({"name": name, "projected": token_volume_source()}));
        }
    }
}

/// Defaults `spec.serviceAccountName` to `default` (mirrored in the
/// deprecated `spec.serviceAccount`) and returns it.
pub fn default_service_account_name(pod: &mut Value) -> String {
    let name = str_at(&pod["spec"], "serviceAccountName")
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
        .to_string();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("serviceAccountName".into(), json!(name));
        spec.insert("serviceAccount".into(), json!(name));
    }
    name
}

/// The changes the plugin makes to a (non-mirror) pod once its
/// ServiceAccount is known. `volume_suffix` names a new credentials volume.
pub fn mutate(pod: &mut Value, service_account: &Value, volume_suffix: &str) {
    if !pod["spec"].is_object() {
        return;
    }
    if should_automount(service_account, pod) {
        mount_service_account_token(&mut pod["spec"], volume_suffix);
    }
    let has_pull_secrets = pod["spec"]["imagePullSecrets"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    let sa_pull_secrets: Vec<Value> = service_account["imagePullSecrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| str_at(s, "name"))
        .map(|n| json!({"name": n}))
        .collect();
    if !has_pull_secrets && !sa_pull_secrets.is_empty() {
        pod["spec"]["imagePullSecrets"] = Value::Array(sa_pull_secrets);
    }
}

/// Reads a ServiceAccount; `default` is waited for up to
/// [`DEFAULT_SERVICE_ACCOUNT_WAIT`], any other name is read once.
async fn get_service_account(
    store: &dyn Store,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, String> {
    let key = format!("/registry/core/serviceaccounts/{namespace}/{name}");
    let deadline = tokio::time::Instant::now() + DEFAULT_SERVICE_ACCOUNT_WAIT;
    loop {
        if let Some(kv) = store.get(&key).await.map_err(|e| e.to_string())? {
            return serde_json::from_slice(&kv.value)
                .map(Some)
                .map_err(|e| format!("cannot decode serviceaccount {name:?}: {e}"));
        }
        if name != DEFAULT_SERVICE_ACCOUNT || tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 100;
        tokio::time::sleep(Duration::from_millis(100 + jitter)).await;
    }
}

/// Runs the plugin on a pod being created in `namespace`.
pub async fn admit(store: &dyn Store, namespace: &str, pod: &mut Value) -> ApiResult<()> {
    let pod_name = objects::name(pod).unwrap_or_default().to_string();
    let forbidden =
        |why: String| ApiError::Forbidden(format!("pods {pod_name:?} is forbidden: {why}"));
    if is_mirror_pod(pod) {
        return match mirror_pod_violation(&pod["spec"]) {
            Some(why) => Err(forbidden(why.to_string())),
            None => Ok(()),
        };
    }
    let name = default_service_account_name(pod);
    let service_account = get_service_account(store, namespace, &name)
        .await
        .map_err(|e| forbidden(format!("error looking up service account {namespace}/{name}: {e}")))?
        .ok_or_else(|| {
            forbidden(format!(
                "error looking up service account {namespace}/{name}: serviceaccount {name:?} not found"
            ))
        })?;
    let suffix = objects::generate_name("");
    mutate(pod, &service_account, &suffix);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "team"}, "spec": spec})
    }

    fn injected_mount() -> Value {
        json!({"name": "kube-api-access-abcde", "readOnly": true, "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH})
    }

    fn injected_volume() -> Value {
        json!({"name": "kube-api-access-abcde", "projected": token_volume_source()})
    }

    #[test]
    fn the_admission_mutation_follows_kubernetes() {
        let sa = json!({"metadata": {"name": "default"}});
        let sa_opt_out =
            json!({"metadata": {"name": "default"}, "automountServiceAccountToken": false});
        let own = json!({"name": "mine", "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH});
        struct Case {
            what: &'static str,
            spec: Value,
            sa: Value,
            want_volumes: Value,
            want_mounts: Vec<Value>,
        }
        let cases = [
            Case {
                what: "a plain pod gets the volume and a mount in every container",
                spec: json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}, {"name": "b"}]}),
                sa: sa.clone(),
                want_volumes: json!([injected_volume()]),
                want_mounts: vec![json!([injected_mount()]); 3],
            },
            Case {
                what: "the pod opting out gets nothing",
                spec: json!({"automountServiceAccountToken": false, "containers": [{"name": "a"}]}),
                sa: sa.clone(),
                want_volumes: Value::Null,
                want_mounts: vec![Value::Null],
            },
            Case {
                what: "the service account opting out gets nothing",
                spec: json!({"containers": [{"name": "a"}]}),
                sa: sa_opt_out.clone(),
                want_volumes: Value::Null,
                want_mounts: vec![Value::Null],
            },
            Case {
                what: "the pod's choice wins over the service account's",
                spec: json!({"automountServiceAccountToken": true, "containers": [{"name": "a"}]}),
                sa: sa_opt_out,
                want_volumes: json!([injected_volume()]),
                want_mounts: vec![json!([injected_mount()])],
            },
            Case {
                what: "a container mounting the path keeps its own mount",
                spec: json!({"volumes": [{"name": "mine", "emptyDir": {}}], "containers": [{"name": "a", "volumeMounts": [own.clone()]}, {"name": "b"}]}),
                sa: sa.clone(),
                want_volumes: json!([{"name": "mine", "emptyDir": {}}, injected_volume()]),
                want_mounts: vec![json!([own.clone()]), json!([injected_mount()])],
            },
            Case {
                what: "no volume is added when every container mounts the path",
                spec: json!({"volumes": [{"name": "mine", "emptyDir": {}}], "containers": [{"name": "a", "volumeMounts": [own.clone()]}]}),
                sa: sa.clone(),
                want_volumes: json!([{"name": "mine", "emptyDir": {}}]),
                want_mounts: vec![json!([own])],
            },
            Case {
                what: "an existing kube-api-access volume is reused",
                spec: json!({"volumes": [{"name": "kube-api-access-zzzzz", "emptyDir": {}}], "containers": [{"name": "a"}]}),
                sa,
                want_volumes: json!([{"name": "kube-api-access-zzzzz", "emptyDir": {}}]),
                want_mounts: vec![
                    json!([{"name": "kube-api-access-zzzzz", "readOnly": true, "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}]),
                ],
            },
        ];
        for case in cases {
            let mut p = pod(case.spec);
            mutate(&mut p, &case.sa, "abcde");
            assert_eq!(p["spec"]["volumes"], case.want_volumes, "{}", case.what);
            let mounts: Vec<Value> = ["initContainers", "containers"]
                .iter()
                .filter_map(|l| p["spec"][*l].as_array())
                .flatten()
                .map(|c| c["volumeMounts"].clone())
                .collect();
            assert_eq!(mounts, case.want_mounts, "{}", case.what);
        }
    }

    #[test]
    fn the_injected_volume_is_kubernetes_token_volume_source() {
        let v = token_volume_source();
        assert_eq!(v["defaultMode"], 420);
        assert_eq!(v["sources"][0]["serviceAccountToken"]["path"], "token");
        assert_eq!(
            v["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        assert_eq!(v["sources"][1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            v["sources"][1]["configMap"]["items"],
            json!([{"key": "ca.crt", "path": "ca.crt"}])
        );
        assert_eq!(
            v["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }

    #[test]
    fn the_service_account_name_defaults_to_default_and_is_mirrored() {
        let mut p = pod(json!({"containers": []}));
        assert_eq!(default_service_account_name(&mut p), "default");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let mut named = pod(json!({"serviceAccountName": "robot"}));
        assert_eq!(default_service_account_name(&mut named), "robot");
        assert_eq!(named["spec"]["serviceAccount"], "robot");
    }

    #[test]
    fn the_service_account_pull_secrets_fill_only_an_empty_list() {
        let sa =
            json!({"imagePullSecrets": [{"name": "reg"}], "automountServiceAccountToken": false});
        let mut p = pod(json!({"containers": [{"name": "a"}]}));
        mutate(&mut p, &sa, "abcde");
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));
        let mut own = pod(json!({"imagePullSecrets": [{"name": "mine"}], "containers": []}));
        mutate(&mut own, &sa, "abcde");
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
    }

    async fn store_with(
        accounts: &[Value],
    ) -> (crate::store::embedded::EmbeddedStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::embedded::EmbeddedStore::open(
            crate::store::embedded::EmbeddedConfig::new(dir.path().join("db")),
        )
        .await
        .expect("store");
        for sa in accounts {
            let name = sa["metadata"]["name"].as_str().unwrap_or_default();
            let key = format!("/registry/core/serviceaccounts/team/{name}");
            store
                .create(&key, bytes::Bytes::from(sa.to_string()))
                .await
                .expect("create");
        }
        (store, dir)
    }

    #[tokio::test]
    async fn admission_refuses_a_missing_service_account_and_mutates_with_an_existing_one() {
        let (store, _dir) = store_with(&[json!({"metadata": {"name": "robot"}})]).await;
        let mut ghost = pod(json!({"serviceAccountName": "ghost", "containers": [{"name": "a"}]}));
        let err = admit(&store, "team", &mut ghost)
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            ApiError::Forbidden(
                r#"pods "p" is forbidden: error looking up service account team/ghost: serviceaccount "ghost" not found"#
                    .to_string()
            )
        );
        let mut robot = pod(json!({"serviceAccountName": "robot", "containers": [{"name": "a"}]}));
        admit(&store, "team", &mut robot).await.expect("admitted");
        let volume = robot["spec"]["volumes"][0]["name"]
            .as_str()
            .unwrap_or_default();
        assert!(
            volume.starts_with(VOLUME_NAME_PREFIX) && volume.len() == VOLUME_NAME_PREFIX.len() + 5,
            "{volume}"
        );
        assert_eq!(
            robot["spec"]["containers"][0]["volumeMounts"][0]["name"],
            volume
        );
    }

    #[tokio::test]
    async fn mirror_pods_are_admitted_unchanged() {
        let (store, _dir) = store_with(&[]).await;
        let mut mirror = json!({
            "metadata": {"name": "static", "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"containers": [{"name": "a"}]},
        });
        let before = mirror.clone();
        admit(&store, "team", &mut mirror).await.expect("admitted");
        assert_eq!(mirror, before);
        mirror["spec"]["serviceAccountName"] = json!("default");
        assert!(admit(&store, "team", &mut mirror).await.is_err());
    }

    #[test]
    fn mirror_pods_may_not_use_service_accounts_secrets_or_tokens() {
        assert_eq!(mirror_pod_violation(&json!({"containers": []})), None);
        assert_eq!(
            mirror_pod_violation(&json!({"serviceAccountName": "x"})),
            Some("a mirror pod may not reference service accounts")
        );
        assert_eq!(
            mirror_pod_violation(
                &json!({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]})
            ),
            Some("a mirror pod may not reference secrets")
        );
        assert_eq!(
            mirror_pod_violation(
                &json!({"volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]})
            ),
            Some("a mirror pod may not use ServiceAccountToken volume projections")
        );
    }
}
