//! The cluster starts, answers kubectl over HTTPS with its token, and
//! refuses anonymous requests.

use e2e::Cluster;

#[test]
fn a_fresh_cluster_serves_its_system_namespaces_to_kubectl() -> anyhow::Result<()> {
    let c = Cluster::start_default()?;
    let out = c.kubectl(&["get", "namespaces", "-o", "name"])?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            out.contains(&format!("namespace/{ns}")),
            "missing {ns} in {out}"
        );
    }
    Ok(())
}
