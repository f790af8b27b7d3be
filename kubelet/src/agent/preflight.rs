//! What a real node needs before it starts: root, and the containerd, runc,
//! CNI plugin and iproute2 binaries from Debian's packages. Each missing
//! piece is one line naming the package to install.

use std::path::{Path, PathBuf};

use super::{AgentConfig, AgentError};

/// One required program and where Debian installs it.
struct Requirement {
    what: &'static str,
    paths: &'static [&'static str],
    package: &'static str,
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        what: "runc",
        paths: &["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"],
        package: "runc",
    },
    Requirement {
        what: "the CNI bridge plugin",
        paths: &["/usr/lib/cni/bridge", "/opt/cni/bin/bridge"],
        package: "containernetworking-plugins",
    },
    Requirement {
        what: "the CNI host-local plugin",
        paths: &["/usr/lib/cni/host-local", "/opt/cni/bin/host-local"],
        package: "containernetworking-plugins",
    },
    Requirement {
        what: "the CNI loopback plugin",
        paths: &["/usr/lib/cni/loopback", "/opt/cni/bin/loopback"],
        package: "containernetworking-plugins",
    },
    Requirement {
        what: "ip",
        paths: &["/usr/sbin/ip", "/sbin/ip", "/bin/ip", "/usr/bin/ip"],
        package: "iproute2",
    },
];

/// The effective user ID, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn missing(what: &'static str, paths: &[&str], package: &'static str) -> AgentError {
    AgentError::Missing {
        what,
        paths: paths.iter().map(PathBuf::from).collect(),
        package,
    }
}

/// Checks root and the binaries; `containerd_binary` is `None` when an
/// existing containerd is used.
pub(super) fn check(
    config: &AgentConfig,
    containerd_binary: Option<&Path>,
) -> Result<(), AgentError> {
    if effective_uid() != Some(0) {
        return Err(AgentError::NotRoot);
    }
    if let Some(binary) = containerd_binary {
        if !binary.exists() {
            return Err(AgentError::Missing {
                what: "containerd",
                paths: vec![binary.to_path_buf()],
                package: "containerd",
            });
        }
    }
    if let Some(socket) = &config.containerd_address {
        if !socket.exists() {
            return Err(AgentError::NoSocket(socket.clone()));
        }
    }
    for requirement in REQUIREMENTS {
        if !requirement.paths.iter().any(|p| Path::new(p).exists()) {
            return Err(missing(
                requirement.what,
                requirement.paths,
                requirement.package,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_component_names_its_debian_package_in_one_line() {
        let error = missing("runc", &["/usr/sbin/runc"], "runc").to_string();
        assert!(error.contains("apt-get install runc"), "{error}");
        assert!(error.contains("--runtime sim"), "{error}");
        assert_eq!(error.lines().count(), 1);
    }

    #[test]
    fn not_being_root_says_how_to_proceed() {
        let error = AgentError::NotRoot.to_string();
        assert_eq!(
            error,
            "the containerd runtime needs root: run as root or use --runtime sim"
        );
    }
}
