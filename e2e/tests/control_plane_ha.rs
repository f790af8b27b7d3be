//! High availability: two control planes (`skiff up`) on one etcd. Only the
//! holder of the `kube-scheduler` and `kube-controller-manager` Leases runs
//! those components; when it is killed with SIGKILL the standby takes the
//! Leases over within 15 s and keeps the cluster working.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::{wait_for, Cluster, ClusterOptions, Etcd};

fn on_etcd(etcd: &Etcd, nodes: u32) -> Result<Cluster> {
    Cluster::start(ClusterOptions {
        extra_args: vec![
            "--store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            etcd.client_url.clone(),
        ],
        nodes,
        ..ClusterOptions::default()
    })
}

fn holder(cluster: &Cluster, lease: &str) -> Result<String> {
    cluster.kubectl(&[
        "get",
        "lease",
        lease,
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

#[test]
fn a_standby_control_plane_takes_the_leases_within_15s_of_the_leader_being_killed() -> Result<()> {
    let etcd = Etcd::start()?;
    let mut leader = on_etcd(&etcd, 0)?;
    let leases = ["kube-scheduler", "kube-controller-manager"];
    let first: Vec<String> = leases
        .iter()
        .map(|l| {
            wait_for(&format!("{l} lease held"), Duration::from_secs(30), || {
                Ok(holder(&leader, l).ok().filter(|h| !h.is_empty()))
            })
        })
        .collect::<Result<_>>()?;
    // The standby has its own API server and two simulated nodes.
    let standby = on_etcd(&etcd, 2)?;
    wait_for("2 nodes registered", Duration::from_secs(30), || {
        let out = standby.kubectl(&["get", "nodes", "-o", "name"])?;
        Ok((out.lines().count() == 2).then_some(()))
    })?;
    // While the leader lives, the standby does not take the Leases.
    std::thread::sleep(Duration::from_secs(3));
    for (lease, holder_before) in leases.iter().zip(&first) {
        assert_eq!(&holder(&standby, lease)?, holder_before, "{lease} moved");
    }
    // The leader still works for the whole cluster: it schedules pods on
    // the standby's nodes.
    standby.kubectl(&[
        "create",
        "deployment",
        "before",
        "--image=busybox",
        "--replicas=2",
    ])?;
    wait_for("2 pods Running (leader)", Duration::from_secs(30), || {
        let out = standby.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=before",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])?;
        Ok((out.split_whitespace().filter(|p| *p == "Running").count() == 2).then_some(()))
    })?;

    leader.kill9()?;
    let killed = Instant::now();
    for (lease, holder_before) in leases.iter().zip(&first) {
        let new = wait_for(
            &format!("{lease} taken over"),
            Duration::from_secs(20),
            || {
                Ok(holder(&standby, lease)
                    .ok()
                    .filter(|h| !h.is_empty() && h != holder_before))
            },
        )?;
        eprintln!(
            "{lease}: {holder_before} → {new} after {:?}",
            killed.elapsed()
        );
    }
    let takeover = killed.elapsed();
    assert!(
        takeover <= Duration::from_secs(15),
        "the standby took {takeover:?} to lead"
    );
    // The new leader's controllers and scheduler act.
    standby.kubectl(&[
        "create",
        "deployment",
        "after",
        "--image=busybox",
        "--replicas=3",
    ])?;
    wait_for("3 pods Running (standby)", Duration::from_secs(30), || {
        let out = standby.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=after",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])?;
        Ok((out.split_whitespace().filter(|p| *p == "Running").count() == 3).then_some(()))
    })
    .context(standby.logs())?;
    Ok(())
}
