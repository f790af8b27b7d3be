//! The OCI runtime spec of one container, built from its Kubernetes spec
//! and its image config, with containerd's defaults (mounts, capabilities,
//! masked paths) and the pod's sandbox (network namespace, hostname,
//! `/etc/hosts`, `/etc/resolv.conf`).
//!
//! [`SpecBuilder`] is pure: it reads no file and calls no service, so every
//! rule here is unit-tested.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{json, Value};

use super::images::ImageConfig;

/// The CFS period used with quotas, as the kubelet does (100ms).
pub const CPU_PERIOD_US: i64 = 100_000;
/// The smallest CFS quota the kubelet sets (1ms).
pub const MIN_CPU_QUOTA_US: i64 = 1_000;
/// The smallest cpu.shares value (BestEffort containers get it).
pub const MIN_CPU_SHARES: u64 = 2;

/// containerd's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Errors building a spec: the pod spec asks for something impossible.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// Neither the container nor the image says what to run.
    #[error("container {0}: no command given and the image has no Entrypoint or Cmd")]
    NoCommand(String),
    /// A resource quantity cannot be parsed.
    #[error("container {container}: invalid {resource} quantity {value:?}")]
    InvalidQuantity {
        /// The container.
        container: String,
        /// `cpu` or `memory`.
        resource: &'static str,
        /// The quantity as written.
        value: String,
    },
    /// The image's `User` is a name: resolving names needs the rootfs.
    #[error(
        "container {container}: image user {user:?} is not numeric (names are not supported yet)"
    )]
    UserName {
        /// The container.
        container: String,
        /// The user as written in the image.
        user: String,
    },
}

/// Which cgroup hierarchy the machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

impl CgroupVersion {
    /// Detects the hierarchy mounted at `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        }
    }
}

/// The command line Kubernetes runs: `command` replaces the image's
/// Entrypoint (and drops its Cmd); `args` replaces the image's Cmd.
pub fn process_args(container: &Container, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let args = match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => {
            let mut all = command.clone();
            all.extend(args.iter().flatten().cloned());
            all
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut all = image.entrypoint.clone().unwrap_or_default();
            all.extend(args.iter().cloned());
            all
        }
        _ => {
            let mut all = image.entrypoint.clone().unwrap_or_default();
            all.extend(image.cmd.iter().flatten().cloned());
            all
        }
    };
    if args.is_empty() {
        Err(SpecError::NoCommand(container.name.clone()))
    } else {
        Ok(args)
    }
}

/// The image's environment overridden by the container's plain `env`
/// values (a later definition of a name replaces an earlier one in place).
/// `valueFrom` entries are resolved by the caller and passed as `extra`.
pub fn environment(
    container: &Container,
    image: &ImageConfig,
    extra: &[(String, String)],
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: String, value: String| {
        if let Some(slot) = env.iter_mut().find(|(existing, _)| *existing == name) {
            slot.1 = value;
        } else {
            env.push((name, value));
        }
    };
    for entry in image.env.iter().flatten() {
        let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set(name.to_string(), value.to_string());
    }
    for var in container.env.iter().flatten() {
        if var.value_from.is_none() {
            set(var.name.clone(), var.value.clone().unwrap_or_default());
        }
    }
    for (name, value) in extra {
        set(name.clone(), value.clone());
    }
    env.into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

fn resource(
    container: &Container,
    which: fn(&k8s_openapi::api::core::v1::ResourceRequirements) -> Option<&Quantity>,
    name: &'static str,
) -> Result<Option<f64>, SpecError> {
    let Some(quantity) = container.resources.as_ref().and_then(which) else {
        return Ok(None);
    };
    quantity::as_f64(&quantity.0)
        .filter(|v| *v >= 0.0)
        .map(Some)
        .ok_or_else(|| SpecError::InvalidQuantity {
            container: container.name.clone(),
            resource: name,
            value: quantity.0.clone(),
        })
}

/// The Linux resources of a container: memory limit, CFS quota from the cpu
/// limit, cpu shares from the cpu request (the limit when no request).
pub fn linux_resources(container: &Container) -> Result<Value, SpecError> {
    let cpu_limit = resource(container, |r| r.limits.as_ref()?.get("cpu"), "cpu")?;
    let cpu_request = resource(container, |r| r.requests.as_ref()?.get("cpu"), "cpu")?;
    let memory_limit = resource(container, |r| r.limits.as_ref()?.get("memory"), "memory")?;
    let cpu_request = cpu_request.or(cpu_limit);
    let shares = cpu_request
        .map(|cpus| ((cpus * 1024.0).ceil() as u64).max(MIN_CPU_SHARES))
        .unwrap_or(MIN_CPU_SHARES);
    let mut cpu = json!({ "shares": shares });
    if let Some(cpus) = cpu_limit {
        let quota = ((cpus * CPU_PERIOD_US as f64).ceil() as i64).max(MIN_CPU_QUOTA_US);
        cpu["quota"] = json!(quota);
        cpu["period"] = json!(CPU_PERIOD_US);
    }
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "cpu": cpu,
    });
    if let Some(bytes) = memory_limit {
        resources["memory"] = json!({ "limit": bytes.ceil() as i64 });
    }
    Ok(resources)
}

/// Builds the OCI runtime spec of one container of a pod.
#[derive(Debug, Clone)]
pub struct SpecBuilder<'a> {
    container: &'a Container,
    image: &'a ImageConfig,
    hostname: String,
    netns: Option<PathBuf>,
    etc_hosts: Option<PathBuf>,
    resolv_conf: Option<PathBuf>,
    cgroups_path: Option<String>,
    cgroup_version: CgroupVersion,
    extra_env: Vec<(String, String)>,
    volume_mounts: Vec<Value>,
}

impl<'a> SpecBuilder<'a> {
    /// Starts a spec for `container` running from an image with `image`.
    pub fn new(container: &'a Container, image: &'a ImageConfig) -> Self {
        Self {
            container,
            image,
            hostname: String::new(),
            netns: None,
            etc_hosts: None,
            resolv_conf: None,
            cgroups_path: None,
            cgroup_version: CgroupVersion::V2,
            extra_env: Vec::new(),
            volume_mounts: Vec::new(),
        }
    }

    /// The hostname (the pod's name).
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = hostname.to_string();
        self
    }

    /// Joins the pod's network namespace at `path`.
    pub fn network_namespace(mut self, path: &Path) -> Self {
        self.netns = Some(path.to_path_buf());
        self
    }

    /// Bind-mounts `hosts` at `/etc/hosts` and `resolv` at `/etc/resolv.conf`.
    pub fn etc_files(mut self, hosts: &Path, resolv: &Path) -> Self {
        self.etc_hosts = Some(hosts.to_path_buf());
        self.resolv_conf = Some(resolv.to_path_buf());
        self
    }

    /// The cgroup path (runc's cgroupfs driver: `/skiff/pod<uid>/<id>`).
    pub fn cgroups_path(mut self, path: &str) -> Self {
        self.cgroups_path = Some(path.to_string());
        self
    }

    /// The machine's cgroup hierarchy.
    pub fn cgroup_version(mut self, version: CgroupVersion) -> Self {
        self.cgroup_version = version;
        self
    }

    /// The container's env resolved by [`super::volumes::env::resolve`]
    /// (`envFrom`, then `env` with `valueFrom`), in order: applied after
    /// the image's env and the plain values, a later name wins.
    pub fn extra_env(mut self, env: Vec<(String, String)>) -> Self {
        self.extra_env = env;
        self
    }

    /// The container's volume mounts (OCI mounts, parents first); a
    /// volume mounted at `/etc/hosts` or `/etc/resolv.conf` replaces the
    /// pod's file.
    pub fn volume_mounts(mut self, mounts: Vec<Value>) -> Self {
        self.volume_mounts = mounts;
        self
    }

    /// The spec as JSON, ready for containerd's containers service.
    pub fn build(self) -> Result<Value, SpecError> {
        let container = self.container;
        let args = process_args(&self.expanded_command(), self.image)?;
        let env = environment(container, self.image, &self.extra_env);
        let cwd = container
            .working_dir
            .clone()
            .filter(|dir| !dir.is_empty())
            .or_else(|| self.image.working_dir.clone().filter(|d| !d.is_empty()))
            .unwrap_or_else(|| "/".to_string());
        let (uid, gid) = self.user()?;
        let security = container.security_context.as_ref();
        let no_new_privileges = !security
            .and_then(|s| s.allow_privilege_escalation)
            .unwrap_or(false);
        let capabilities: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
        let readonly_rootfs = security
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false);

        let mut namespaces = vec![
            json!({"type": "pid"}),
            json!({"type": "ipc"}),
            json!({"type": "uts"}),
            json!({"type": "mount"}),
        ];
        match &self.netns {
            Some(path) => namespaces.push(json!({"type": "network", "path": path})),
            None => namespaces.push(json!({"type": "network"})),
        }
        if self.cgroup_version == CgroupVersion::V2 {
            namespaces.push(json!({"type": "cgroup"}));
        }

        let mut linux = json!({
            "resources": linux_resources(container)?,
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        });
        if let Some(path) = &self.cgroups_path {
            linux["cgroupsPath"] = json!(path);
        }
        // cgroup v2: an OOM kill ends the whole container, not one of its
        // processes, as the kubelet sets it since Kubernetes 1.28.
        if self.cgroup_version == CgroupVersion::V2 && linux["resources"].get("memory").is_some() {
            linux["resources"]["unified"] = json!({"memory.oom.group": "1"});
        }

        Ok(json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": false,
                "user": {"uid": uid, "gid": gid},
                "args": args,
                "env": env,
                "cwd": cwd,
                "capabilities": {
                    "bounding": capabilities,
                    "effective": capabilities,
                    "permitted": capabilities,
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": no_new_privileges,
            },
            "root": {"path": "rootfs", "readonly": readonly_rootfs},
            "hostname": self.hostname,
            "mounts": self.mounts(),
            "linux": linux,
        }))
    }

    /// The container with `$(VAR)` in its `command` and `args` expanded
    /// from its env, as Kubernetes does (the image's are left alone).
    fn expanded_command(&self) -> Container {
        let lookup = super::volumes::env::lookup_in(&self.extra_env);
        let expand = |items: &Option<Vec<String>>| {
            items.as_ref().map(|items| {
                items
                    .iter()
                    .map(|item| super::volumes::env::expand(item, &lookup))
                    .collect()
            })
        };
        Container {
            name: self.container.name.clone(),
            command: expand(&self.container.command),
            args: expand(&self.container.args),
            ..Default::default()
        }
    }

    fn user(&self) -> Result<(u32, u32), SpecError> {
        let security = self.container.security_context.as_ref();
        let image_user = self.image.user.clone().unwrap_or_default();
        let (image_uid, image_gid) = match image_user.split_once(':') {
            Some((user, group)) => (user.to_string(), Some(group.to_string())),
            None => (image_user.clone(), None),
        };
        let numeric = |value: &str| -> Result<u32, SpecError> {
            value.parse().map_err(|_| SpecError::UserName {
                container: self.container.name.clone(),
                user: image_user.clone(),
            })
        };
        let uid = match security.and_then(|s| s.run_as_user) {
            Some(uid) => u32::try_from(uid).unwrap_or(0),
            None if image_uid.is_empty() => 0,
            None => numeric(&image_uid)?,
        };
        let gid = match (security.and_then(|s| s.run_as_group), image_gid) {
            (Some(gid), _) => u32::try_from(gid).unwrap_or(0),
            (None, Some(group)) if !group.is_empty() => numeric(&group)?,
            _ => 0,
        };
        Ok((uid, gid))
    }

    fn mounts(&self) -> Vec<Value> {
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc",
                   "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                   "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                   "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
            json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                   "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                   "options": ["nosuid", "noexec", "nodev", "ro"]}),
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                   "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        ];
        let mounted = |path: &str| self.volume_mounts.iter().any(|m| m["destination"] == path);
        if let Some(hosts) = self.etc_hosts.as_ref().filter(|_| !mounted("/etc/hosts")) {
            mounts.push(json!({"destination": "/etc/hosts", "type": "bind",
                               "source": hosts, "options": ["rbind", "rprivate", "rw"]}));
        }
        if let Some(resolv) = self
            .resolv_conf
            .as_ref()
            .filter(|_| !mounted("/etc/resolv.conf"))
        {
            mounts.push(json!({"destination": "/etc/resolv.conf", "type": "bind",
                               "source": resolv, "options": ["rbind", "rprivate", "rw"]}));
        }
        mounts.extend(self.volume_mounts.iter().cloned());
        mounts
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};

    use super::*;

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Container {
            name: "c".to_string(),
            command: command.map(strings),
            args: args.map(strings),
            ..Default::default()
        }
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ImageConfig {
            entrypoint: entrypoint.map(strings),
            cmd: cmd.map(strings),
            ..Default::default()
        }
    }

    #[test]
    fn without_command_or_args_the_image_entrypoint_and_cmd_run() {
        let args = process_args(&container(None, None), &image(Some(&["/ep"]), Some(&["a"])));
        assert_eq!(args, Ok(vec!["/ep".to_string(), "a".to_string()]));
    }

    #[test]
    fn a_command_replaces_the_entrypoint_and_drops_the_image_cmd() {
        let args = process_args(
            &container(Some(&["sleep"]), None),
            &image(Some(&["/ep"]), Some(&["a"])),
        );
        assert_eq!(args, Ok(vec!["sleep".to_string()]));
    }

    #[test]
    fn args_alone_replace_the_image_cmd_after_the_entrypoint() {
        let args = process_args(
            &container(None, Some(&["x"])),
            &image(Some(&["/ep"]), Some(&["a"])),
        );
        assert_eq!(args, Ok(vec!["/ep".to_string(), "x".to_string()]));
    }

    #[test]
    fn nothing_to_run_is_an_error_naming_the_container() {
        let args = process_args(&container(None, None), &image(None, None));
        assert_eq!(args, Err(SpecError::NoCommand("c".to_string())));
    }

    #[test]
    fn container_env_overrides_image_env_in_place() {
        let mut c = container(None, None);
        c.env = Some(vec![
            EnvVar {
                name: "PATH".to_string(),
                value: Some("/x".to_string()),
                ..Default::default()
            },
            EnvVar {
                name: "NEW".to_string(),
                value: Some("1".to_string()),
                ..Default::default()
            },
        ]);
        let img = ImageConfig {
            env: Some(vec!["PATH=/bin".to_string(), "HOME=/root".to_string()]),
            ..Default::default()
        };
        assert_eq!(
            environment(&c, &img, &[]),
            vec!["PATH=/x", "HOME=/root", "NEW=1"]
        );
    }

    fn with_resources(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect::<BTreeMap<_, _>>()
        };
        Container {
            name: "c".to_string(),
            resources: Some(ResourceRequirements {
                limits: Some(map(limits)),
                requests: Some(map(requests)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn limits_become_memory_limit_and_cfs_quota_and_requests_become_shares() {
        let c = with_resources(&[("cpu", "500m"), ("memory", "64Mi")], &[("cpu", "250m")]);
        let resources = linux_resources(&c).expect("resources");
        assert_eq!(resources["memory"]["limit"], json!(64 * 1024 * 1024));
        assert_eq!(resources["cpu"]["quota"], json!(50_000));
        assert_eq!(resources["cpu"]["period"], json!(100_000));
        assert_eq!(resources["cpu"]["shares"], json!(256));
    }

    #[test]
    fn a_container_without_resources_gets_minimal_shares_and_no_limits() {
        let resources = linux_resources(&container(None, None)).expect("resources");
        assert_eq!(resources["cpu"]["shares"], json!(2));
        assert!(resources.get("memory").is_none());
        assert!(resources["cpu"].get("quota").is_none());
    }

    #[test]
    fn an_invalid_quantity_is_reported_with_the_container_name() {
        let c = with_resources(&[("memory", "lots")], &[]);
        assert!(matches!(
            linux_resources(&c),
            Err(SpecError::InvalidQuantity {
                resource: "memory",
                ..
            })
        ));
    }

    #[test]
    fn the_spec_joins_the_pod_netns_and_mounts_its_etc_files() {
        let c = container(Some(&["sleep", "1"]), None);
        let img = ImageConfig::default();
        let spec = SpecBuilder::new(&c, &img)
            .hostname("web-0")
            .network_namespace(Path::new("/run/netns/skiff-x"))
            .etc_files(Path::new("/d/hosts"), Path::new("/d/resolv.conf"))
            .cgroups_path("/skiff/podx/c1")
            .cgroup_version(CgroupVersion::V1)
            .build()
            .expect("spec");
        assert_eq!(spec["hostname"], "web-0");
        assert_eq!(spec["process"]["cwd"], "/");
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["linux"]["cgroupsPath"], "/skiff/podx/c1");
        let namespaces = spec["linux"]["namespaces"].as_array().expect("array");
        assert!(namespaces.contains(&json!({"type": "network", "path": "/run/netns/skiff-x"})));
        assert!(!namespaces.contains(&json!({"type": "cgroup"})));
        let mounts = spec["mounts"].as_array().expect("array");
        assert!(mounts
            .iter()
            .any(|m| m["destination"] == "/etc/resolv.conf" && m["source"] == "/d/resolv.conf"));
        let caps = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("array");
        assert!(caps.contains(&json!("CAP_NET_BIND_SERVICE")));
        assert!(!caps.contains(&json!("CAP_SYS_ADMIN")));
    }

    #[test]
    fn on_cgroup_v2_a_memory_limit_makes_the_oom_killer_take_the_whole_container() {
        let mut c = with_resources(&[("memory", "32Mi")], &[]);
        c.command = Some(vec!["true".to_string()]);
        let img = ImageConfig::default();
        let v2 = SpecBuilder::new(&c, &img)
            .cgroup_version(CgroupVersion::V2)
            .build()
            .expect("spec");
        assert_eq!(v2["linux"]["resources"]["unified"]["memory.oom.group"], "1");
        let v1 = SpecBuilder::new(&c, &img)
            .cgroup_version(CgroupVersion::V1)
            .build()
            .expect("spec");
        assert!(v1["linux"]["resources"].get("unified").is_none());
    }

    #[test]
    fn command_and_args_expand_the_container_env() {
        let c = container(
            Some(&["echo", "$(GREETING)"]),
            Some(&["$(NAME)", "$$(NAME)"]),
        );
        let img = ImageConfig::default();
        let spec = SpecBuilder::new(&c, &img)
            .extra_env(vec![
                ("GREETING".to_string(), "hi".to_string()),
                ("NAME".to_string(), "web".to_string()),
            ])
            .build()
            .expect("spec");
        assert_eq!(
            spec["process"]["args"],
            json!(["echo", "hi", "web", "$(NAME)"])
        );
    }

    #[test]
    fn an_image_user_name_is_refused_until_passwd_lookup_exists() {
        let c = container(Some(&["true"]), None);
        let img = ImageConfig {
            user: Some("nobody".to_string()),
            ..Default::default()
        };
        assert!(matches!(
            SpecBuilder::new(&c, &img).build(),
            Err(SpecError::UserName { .. })
        ));
    }
}
