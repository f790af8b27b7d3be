//! The ServiceAccounts controller: every active namespace has a `default`
//! ServiceAccount, created when the namespace appears and again if it is
//! deleted (kube-controller-manager's `serviceaccount` controller). Pods that
//! name no service account run as `default`, and their tokens need it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info_span, Instrument};

/// The ServiceAccount every namespace gets.
pub const DEFAULT: &str = "default";

/// What can go wrong ensuring one namespace's ServiceAccount.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the namespace is retried.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
}

/// Runs the controller until its watches end.
pub async fn run(client: Client, _config: &crate::Config) {
    let ctx = Arc::new(Context {
        client: client.clone(),
    });
    let accounts = Api::<ServiceAccount>::all(client.clone());
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .watches(
            accounts,
            watcher::Config::default().fields(&format!("metadata.name={DEFAULT}")),
            |sa| sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(ns: Arc<Namespace>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = ns.name_any(), %error, "ensuring the default ServiceAccount failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    let span = info_span!("reconcile", namespace = %name);
    async move {
        if !wants_default(&ns) {
            return Ok(Action::await_change());
        }
        let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
        if api.get_opt(DEFAULT).await?.is_some() {
            return Ok(Action::await_change());
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!("created the default ServiceAccount"),
            // Someone else made it, or the namespace started terminating or went away.
            Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 409) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Action::await_change())
    }
    .instrument(span)
    .await
}

/// A namespace that is not being deleted gets the default ServiceAccount.
fn wants_default(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Active")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    fn ns(phase: Option<&str>, deleting: bool) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                deletion_timestamp: deleting.then_some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    ),
                ),
                ..Default::default()
            },
            status: Some(NamespaceStatus {
                phase: phase.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_active_namespaces_get_the_default_service_account() {
        assert!(wants_default(&ns(Some("Active"), false)));
        assert!(wants_default(&ns(None, false)));
        assert!(!wants_default(&ns(Some("Terminating"), false)));
        assert!(!wants_default(&ns(Some("Active"), true)));
    }
}
