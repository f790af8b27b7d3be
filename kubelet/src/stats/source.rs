//! Which containers run on the node, and where their cgroups are.

use std::sync::Arc;

use async_trait::async_trait;

use crate::containerd::pod_runtime::PodRuntime;

/// A running container and its cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID.
    pub uid: String,
    /// The container's name in the pod spec.
    pub container: String,
    /// Its cgroup (runc's `cgroupsPath`).
    pub cgroup: String,
}

/// Lists the node's running containers.
#[async_trait]
pub trait ContainerSource: Send + Sync + std::fmt::Debug {
    /// The running containers (empty when the runtime cannot be asked).
    async fn running(&self) -> Vec<RunningContainer>;
}

/// The running containers of a [`PodRuntime`], whose cgroups are
/// `{cgroup_parent}/pod{uid}/{container id}` as the containerd runtime
/// creates them.
pub struct RuntimeSource<R> {
    runtime: Arc<R>,
    cgroup_parent: String,
}

impl<R> std::fmt::Debug for RuntimeSource<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeSource")
            .field("cgroup_parent", &self.cgroup_parent)
            .finish()
    }
}

impl<R> RuntimeSource<R> {
    /// Containers of `runtime`, whose pods live under `cgroup_parent`.
    pub fn new(runtime: Arc<R>, cgroup_parent: &str) -> Self {
        Self {
            runtime,
            cgroup_parent: cgroup_parent.trim_end_matches('/').to_string(),
        }
    }
}

/// The cgroup of a container, as the containerd runtime names it.
pub fn container_cgroup(cgroup_parent: &str, pod_uid: &str, container_id: &str) -> String {
    format!(
        "{}/pod{pod_uid}/{container_id}",
        cgroup_parent.trim_end_matches('/')
    )
}

#[async_trait]
impl<R: PodRuntime> ContainerSource for RuntimeSource<R> {
    async fn running(&self) -> Vec<RunningContainer> {
        let pods = match self.runtime.list_pods().await {
            Ok(pods) => pods,
            Err(error) => {
                tracing::debug!(%error, "cannot list the runtime's pods for stats");
                return Vec::new();
            }
        };
        pods.into_iter()
            .flat_map(|pod| {
                let parent = self.cgroup_parent.clone();
                pod.containers
                    .into_iter()
                    .filter(|c| c.running)
                    .map(move |c| RunningContainer {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        uid: pod.uid.clone(),
                        cgroup: container_cgroup(&parent, &pod.uid, &c.id),
                        container: c.name,
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_cgroups_follow_the_runtimes_layout() {
        assert_eq!(
            container_cgroup("/skiff/", "u1", "abc-app-0"),
            "/skiff/podu1/abc-app-0"
        );
    }
}
