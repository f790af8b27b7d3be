//! The loop shared by controllers that keep one object of a fixed name in
//! every active namespace (the `default` ServiceAccount, the
//! `kube-root-ca.crt` ConfigMap): reconcile each namespace when it appears
//! or changes and when its object of that name changes or goes away.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{info_span, Instrument};

/// What one namespace's reconcile can fail with; the namespace is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

struct Context<F> {
    client: Client,
    what: &'static str,
    ensure: F,
}

/// Runs until the watches end: for every active namespace, `ensure` is
/// called with the namespace's API for `K` and makes the object `name` right.
/// Its `403`/`404` (the namespace is terminating or gone) end the reconcile;
/// a `409` (someone else wrote meanwhile) reconciles again at once.
pub async fn run<K, F, Fut>(client: Client, name: &'static str, what: &'static str, ensure: F)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    F: Fn(Api<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), kube::Error>> + Send + 'static,
{
    let ctx = Arc::new(Context {
        client: client.clone(),
        what,
        ensure,
    });
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<K>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
        |obj| obj.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|_| futures::future::ready(()))
    .await;
}

fn error_policy<F>(ns: Arc<Namespace>, error: &Error, ctx: Arc<Context<F>>) -> Action {
    tracing::warn!(namespace = ns.name_any(), %error, what = ctx.what, "reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile<K, F, Fut>(ns: Arc<Namespace>, ctx: Arc<Context<F>>) -> Result<Action, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    F: Fn(Api<K>) -> Fut,
    Fut: Future<Output = Result<(), kube::Error>>,
{
    let name = ns.name_any();
    let span = info_span!("reconcile", namespace = %name, what = ctx.what);
    async move {
        if !is_active(&ns) {
            return Ok(Action::await_change());
        }
        match (ctx.ensure)(Api::namespaced(ctx.client.clone(), &name)).await {
            Ok(()) => Ok(Action::await_change()),
            Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404) => Ok(Action::await_change()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::requeue(Duration::ZERO)),
            Err(e) => Err(e.into()),
        }
    }
    .instrument(span)
    .await
}

/// A namespace that is not being deleted.
pub fn is_active(ns: &Namespace) -> bool {
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
    use kube::api::ObjectMeta;

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
    fn only_namespaces_that_are_active_and_not_being_deleted_count() {
        assert!(is_active(&ns(Some("Active"), false)));
        assert!(is_active(&ns(None, false)));
        assert!(!is_active(&ns(Some("Terminating"), false)));
        assert!(!is_active(&ns(Some("Active"), true)));
    }
}
