//! The ServiceAccounts controller: every active namespace has a `default`
//! ServiceAccount, created when the namespace appears and again if it is
//! deleted (kube-controller-manager's `serviceaccount` controller). Pods that
//! name no service account run as `default`, and their tokens need it.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;

use crate::per_namespace;

/// The ServiceAccount every namespace gets.
pub const DEFAULT: &str = "default";

/// Runs the controller until its watches end.
pub async fn run(client: Client, _config: &crate::Config) {
    per_namespace::run(client, DEFAULT, "default ServiceAccount", ensure).await
}

/// Creates the namespace's `default` ServiceAccount unless it exists.
async fn ensure(api: Api<ServiceAccount>) -> Result<(), kube::Error> {
    if api.get_opt(DEFAULT).await?.is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &sa).await?;
    tracing::info!("created the default ServiceAccount");
    Ok(())
}
