//! The root CA publisher (kube-controller-manager's `root-ca-cert-publisher`):
//! every active namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt`
//! is the cluster CA bundle, so pods can verify the API server (the
//! ServiceAccount admission plugin projects it into every pod at
//! `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`). It is created
//! when the namespace appears, and put back when it is edited or deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;

use crate::per_namespace;

/// The ConfigMap's name in every namespace.
pub const CONFIG_MAP_NAME: &str = "kube-root-ca.crt";
/// Its one key.
pub const CA_KEY: &str = "ca.crt";
/// The annotation describing what the ConfigMap is for.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Kubernetes' description of the ConfigMap.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Runs the controller until its watches end; without a root CA in the
/// config there is nothing to publish and it returns at once.
pub async fn run(client: Client, config: &crate::Config) {
    let Some(root_ca) = config.root_ca.clone() else {
        tracing::info!("no root CA configured: not publishing kube-root-ca.crt");
        // Nothing to do; park rather than be restarted in a loop.
        return std::future::pending().await;
    };
    let root_ca: Arc<str> = root_ca.into();
    per_namespace::run(client, CONFIG_MAP_NAME, CONFIG_MAP_NAME, move |api| {
        ensure(api, Arc::clone(&root_ca))
    })
    .await
}

/// The ConfigMap's data.
fn wanted_data(root_ca: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(CA_KEY.to_string(), root_ca.to_string())])
}

/// The ConfigMap as it should be: `None` when `current` is already right,
/// else `current` (or a new one) with the data and annotation set, other
/// fields kept.
fn desired(current: Option<&ConfigMap>, root_ca: &str) -> Option<ConfigMap> {
    let data = wanted_data(root_ca);
    match current {
        Some(cm) => {
            let described = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .is_some_and(|d| !d.is_empty());
            if cm.data.as_ref() == Some(&data) && described {
                return None;
            }
            let mut cm = cm.clone();
            cm.data = Some(data);
            cm.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string());
            Some(cm)
        }
        None => Some(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP_NAME.to_string()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }),
    }
}

/// Creates or corrects the namespace's ConfigMap.
async fn ensure(api: Api<ConfigMap>, root_ca: Arc<str>) -> Result<(), kube::Error> {
    let current = api.get_opt(CONFIG_MAP_NAME).await?;
    let Some(want) = desired(current.as_ref(), &root_ca) else {
        return Ok(());
    };
    match &current {
        Some(_) => {
            api.replace(CONFIG_MAP_NAME, &PostParams::default(), &want)
                .await?
        }
        None => api.create(&PostParams::default(), &want).await?,
    };
    tracing::info!(created = current.is_none(), "published kube-root-ca.crt");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";

    fn described(data: &str, extra: Option<(&str, &str)>) -> ConfigMap {
        let mut annotations =
            BTreeMap::from([(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string())]);
        if let Some((k, v)) = extra {
            annotations.insert(k.to_string(), v.to_string());
        }
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP_NAME.into()),
                annotations: Some(annotations),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(CA_KEY.to_string(), data.to_string())])),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_config_map_is_created_with_the_ca_and_description() {
        let cm = desired(None, CA);
        let cm = cm.as_ref();
        assert_eq!(
            cm.and_then(|c| c.metadata.name.as_deref()),
            Some("kube-root-ca.crt")
        );
        assert_eq!(
            cm.and_then(|c| c.data.as_ref())
                .and_then(|d| d.get("ca.crt"))
                .map(String::as_str),
            Some(CA)
        );
        assert_eq!(
            cm.and_then(|c| c.metadata.annotations.as_ref())
                .and_then(|a| a.get("kubernetes.io/description"))
                .map(String::as_str),
            Some(DESCRIPTION)
        );
    }

    #[test]
    fn a_correct_config_map_is_left_alone() {
        assert!(desired(Some(&described(CA, None)), CA).is_none());
    }

    #[test]
    fn an_edited_config_map_gets_the_ca_back_and_keeps_other_annotations() {
        let mut edited = described("tampered", Some(("team", "x")));
        edited
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert("extra".into(), "y".into());
        let fixed = desired(Some(&edited), CA);
        let fixed = fixed.as_ref();
        assert_eq!(
            fixed.and_then(|c| c.data.clone()),
            Some(wanted_data(CA)),
            "the data is exactly the CA"
        );
        assert_eq!(
            fixed
                .and_then(|c| c.metadata.annotations.as_ref())
                .and_then(|a| a.get("team"))
                .map(String::as_str),
            Some("x")
        );
    }

    #[test]
    fn a_config_map_without_the_description_gets_it_back() {
        let mut bare = described(CA, None);
        bare.metadata.annotations = None;
        let fixed = desired(Some(&bare), CA);
        assert_eq!(
            fixed
                .as_ref()
                .and_then(|c| c.metadata.annotations.as_ref())
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .map(String::as_str),
            Some(DESCRIPTION)
        );
    }
}
