//! The `skiff` command's contract: one-line errors for the mistakes a
//! newcomer makes, a data dir that only one cluster may use, and `down`.

use std::process::{Command, Output};
use std::time::Duration;

use e2e::{skiff_bin, wait_for, Cluster};

fn skiff(args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(skiff_bin()).args(args).output()?)
}

fn one_line_error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got {:?}",
        out.status
    );
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn a_bad_flag_is_one_line_naming_it() -> anyhow::Result<()> {
    let err = one_line_error(&skiff(&["up", "--runtime", "docker"])?);
    assert!(err.contains("docker") && err.contains("--runtime"), "{err}");
    let err = one_line_error(&skiff(&["up", "--no-such-flag"])?);
    assert!(err.contains("--no-such-flag"), "{err}");
    Ok(())
}

#[test]
fn a_port_in_use_is_one_line_naming_the_port_and_the_fix() -> anyhow::Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port().to_string();
    let dir = tempfile::tempdir()?;
    let data = dir.path().display().to_string();
    let err = one_line_error(&skiff(&[
        "up",
        "--nodes",
        "0",
        "--runtime",
        "sim",
        "--port",
        &port,
        "--data-dir",
        &data,
    ])?);
    assert!(
        err.contains(&port) && err.contains("already in use") && err.contains("--port"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_data_dir_serves_one_cluster_at_a_time_and_down_stops_it() -> anyhow::Result<()> {
    let c = Cluster::start_default()?;
    let data = c.data_dir.path().display().to_string();
    let port = e2e::free_port()?.to_string();
    let err = one_line_error(&skiff(&[
        "up",
        "--nodes",
        "0",
        "--runtime",
        "sim",
        "--port",
        &port,
        "--data-dir",
        &data,
    ])?);
    assert!(
        err.contains("in use by another running skiff") && err.contains("skiff down"),
        "{err}"
    );
    let out = skiff(&["down", "--data-dir", &data])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the API to stop answering", Duration::from_secs(20), || {
        Ok((!c
            .kubectl_output(&["get", "--raw", "/readyz", "--request-timeout=1s"])?
            .status
            .success())
        .then_some(()))
    })?;
    Ok(())
}

#[test]
fn a_restarted_cluster_resumes_with_its_objects() -> anyhow::Result<()> {
    let mut c = Cluster::start_default()?;
    c.kubectl(&["create", "configmap", "keep", "--from-literal=a=b"])?;
    c.restart()?;
    let v = c.kubectl(&["get", "configmap", "keep", "-o", "jsonpath={.data.a}"])?;
    assert_eq!(v, "b");
    Ok(())
}
