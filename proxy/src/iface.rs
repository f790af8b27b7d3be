//! The interface holding every ClusterIP (and the cluster DNS IP) as a
//! /32, so the host owns those addresses: pods reach them through their
//! default route to the bridge gateway, the host directly.
//!
//! A `dummy` link is preferred; kernels built without the dummy driver
//! (as this project's CI machines: `ip link add ... type dummy` answers
//! "Unknown device type") get an empty, port-less `bridge` instead, which
//! holds local addresses just the same. Driven through iproute2's `ip`,
//! as the CNI code does. Only the link named in the config is touched.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::ProxyError;

async fn ip(args: &[&str]) -> Result<std::process::Output, ProxyError> {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| ProxyError::Exec {
            program: "ip".to_string(),
            source,
        })
}

fn failed(args: &[&str], out: &std::process::Output) -> ProxyError {
    ProxyError::Interface {
        command: format!("ip {}", args.join(" ")),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// Creates `name` (dummy, else bridge) if missing, brings it up and removes
/// addresses a previous run left on it.
pub async fn ensure(name: &str) -> Result<(), ProxyError> {
    let exists = ip(&["link", "show", "dev", name]).await?.status.success();
    if !exists {
        let dummy = ["link", "add", name, "type", "dummy"];
        let out = ip(&dummy).await?;
        if !out.status.success() {
            let bridge = ["link", "add", name, "type", "bridge"];
            let fallback = ip(&bridge).await?;
            if !fallback.status.success() {
                return Err(failed(&bridge, &fallback));
            }
            tracing::info!(interface = name, "no dummy driver: using an empty bridge");
        }
    }
    for args in [
        ["link", "set", "dev", name, "up"].as_slice(),
        ["-4", "addr", "flush", "dev", name].as_slice(),
    ] {
        let out = ip(args).await?;
        if !out.status.success() {
            return Err(failed(args, &out));
        }
    }
    Ok(())
}

/// Adds and removes /32 addresses on `name` in one `ip -batch` run.
pub async fn update(
    name: &str,
    add: &BTreeSet<Ipv4Addr>,
    remove: &BTreeSet<Ipv4Addr>,
) -> Result<(), ProxyError> {
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    let mut script = String::new();
    for a in add {
        script.push_str(&format!("addr replace {a}/32 dev {name}\n"));
    }
    for a in remove {
        script.push_str(&format!("addr del {a}/32 dev {name}\n"));
    }
    let exec = |source| ProxyError::Exec {
        program: "ip".to_string(),
        source,
    };
    let mut child = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(exec)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(exec)?;
    }
    let out = child.wait_with_output().await.map_err(exec)?;
    if !out.status.success() {
        // `-force` keeps going past one failure; report, but the rest applied.
        return Err(failed(&["-force", "-batch", "-"], &out));
    }
    Ok(())
}

/// Deletes `name` (no error when it is already gone).
pub async fn remove(name: &str) -> Result<(), ProxyError> {
    let out = ip(&["link", "delete", "dev", name]).await?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.contains("Cannot find device") && !stderr.contains("does not exist") {
            return Err(failed(&["link", "delete", "dev", name], &out));
        }
    }
    Ok(())
}
