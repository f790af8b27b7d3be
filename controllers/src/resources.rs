//! The resource kinds the API serves, from discovery: what the garbage
//! collector watches and what namespace deletion empties.

use std::collections::HashMap;

use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::Client;

/// One served kind.
#[derive(Clone, Debug)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// Every listable, watchable, deletable kind, by `(apiVersion, kind)`.
#[derive(Clone, Debug, Default)]
pub struct Kinds {
    pub all: Vec<Kind>,
    by_type: HashMap<(String, String), usize>,
}

impl Kinds {
    /// Asks the API server (legacy discovery) for its kinds.
    pub async fn discover(client: Client) -> kube::Result<Self> {
        let discovery = Discovery::new(client).run().await?;
        let mut kinds = Kinds::default();
        for group in discovery.groups() {
            for (resource, caps) in group.recommended_resources() {
                kinds.push(resource, &caps);
            }
        }
        Ok(kinds)
    }

    fn push(&mut self, resource: ApiResource, caps: &ApiCapabilities) {
        let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
            .iter()
            .all(|v| caps.supports_operation(v));
        if !usable {
            return;
        }
        let key = (resource.api_version.clone(), resource.kind.clone());
        self.by_type.insert(key, self.all.len());
        self.all.push(Kind {
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        });
    }

    /// The kind of an ownerReference (`apiVersion`, `kind`).
    pub fn lookup(&self, api_version: &str, kind: &str) -> Option<&Kind> {
        self.by_type
            .get(&(api_version.to_string(), kind.to_string()))
            .map(|i| &self.all[*i])
    }
}
