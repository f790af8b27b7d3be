//! Reading CPU and memory usage from cgroup files (v1 and v2) and from
//! `/proc` for the node. The parsers are pure functions over file contents;
//! [`CgroupReader`] does the (blocking) reads.

use std::path::{Path, PathBuf};

use crate::containerd::spec::CgroupVersion;

/// Nanoseconds per `USER_HZ` tick of `/proc/stat` (Linux fixes USER_HZ at 100).
const NANOS_PER_TICK: u64 = 10_000_000;

/// One reading of a cgroup or of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Working set: usage minus inactive file pages, bytes.
    pub memory_working_set: u64,
    /// Usage including the page cache, bytes.
    pub memory_usage: u64,
}

/// `usage_usec` of a v2 `cpu.stat`, in nanoseconds.
pub fn cpu_ns_v2(cpu_stat: &str) -> Option<u64> {
    stat_field(cpu_stat, "usage_usec").map(|us| us.saturating_mul(1000))
}

/// A v1 `cpuacct.usage` (nanoseconds).
pub fn cpu_ns_v1(cpuacct_usage: &str) -> Option<u64> {
    cpuacct_usage.trim().parse().ok()
}

/// A `key value` line of a stat file.
pub fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then_some(())?;
        parts.next()?.parse().ok()
    })
}

/// The working set as the kubelet computes it: usage minus
/// `inactive_file` (v2) / `total_inactive_file` (v1), never negative.
pub fn working_set(usage: u64, memory_stat: &str, version: CgroupVersion) -> u64 {
    let key = match version {
        CgroupVersion::V2 => "inactive_file",
        CgroupVersion::V1 => "total_inactive_file",
    };
    usage.saturating_sub(stat_field(memory_stat, key).unwrap_or(0))
}

/// Busy CPU time of the node from `/proc/stat`'s `cpu` line (every field
/// but idle and iowait), nanoseconds.
pub fn node_cpu_ns(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| *v)
        .sum();
    Some(busy.saturating_mul(NANOS_PER_TICK))
}

/// Node memory from `/proc/meminfo`: (working set, usage) in bytes, with
/// working set = MemTotal − MemAvailable and usage = MemTotal − MemFree.
pub fn node_memory(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?;
    let free = field("MemFree").unwrap_or(available);
    Some((
        total.saturating_sub(available) * 1024,
        total.saturating_sub(free) * 1024,
    ))
}

/// Reads cgroups under a mount point (`/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct CgroupReader {
    root: PathBuf,
    version: CgroupVersion,
}

impl CgroupReader {
    /// A reader of the hierarchy `version` mounted at `root`.
    pub fn new(root: &Path, version: CgroupVersion) -> Self {
        Self {
            root: root.to_path_buf(),
            version,
        }
    }

    fn dir(&self, controller: &str, cgroup: &str) -> PathBuf {
        let relative = cgroup.trim_start_matches('/');
        match self.version {
            CgroupVersion::V2 => self.root.join(relative),
            CgroupVersion::V1 => self.root.join(controller).join(relative),
        }
    }

    /// The usage of cgroup `cgroup` (runc's `cgroupsPath`, e.g.
    /// `/skiff/pod<uid>/<id>`); `None` when it does not exist (yet).
    /// Blocking.
    pub fn read(&self, cgroup: &str) -> Option<Usage> {
        let read = |path: PathBuf| std::fs::read_to_string(path).ok();
        match self.version {
            CgroupVersion::V2 => {
                let dir = self.dir("", cgroup);
                let cpu_ns = cpu_ns_v2(&read(dir.join("cpu.stat"))?)?;
                let usage: u64 = read(dir.join("memory.current"))?.trim().parse().ok()?;
                let stat = read(dir.join("memory.stat")).unwrap_or_default();
                Some(Usage {
                    cpu_ns,
                    memory_working_set: working_set(usage, &stat, self.version),
                    memory_usage: usage,
                })
            }
            CgroupVersion::V1 => {
                let cpu_ns = cpu_ns_v1(&read(self.dir("cpuacct", cgroup).join("cpuacct.usage"))?)?;
                let memory = self.dir("memory", cgroup);
                let usage: u64 = read(memory.join("memory.usage_in_bytes"))
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                let stat = read(memory.join("memory.stat")).unwrap_or_default();
                Some(Usage {
                    cpu_ns,
                    memory_working_set: working_set(usage, &stat, self.version),
                    memory_usage: usage,
                })
            }
        }
    }
}

/// The node's usage from `/proc/stat` and `/proc/meminfo`. Blocking.
pub fn read_node() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let (memory_working_set, memory_usage) = node_memory(&meminfo)?;
    Some(Usage {
        cpu_ns: node_cpu_ns(&stat)?,
        memory_working_set,
        memory_usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_cpu_stat_usage_is_converted_to_nanoseconds() {
        let stat = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(cpu_ns_v2(stat), Some(1_500_000));
        assert_eq!(cpu_ns_v2("user_usec 3\n"), None);
    }

    #[test]
    fn v1_cpuacct_usage_is_already_nanoseconds() {
        assert_eq!(cpu_ns_v1("16290309261040\n"), Some(16_290_309_261_040));
        assert_eq!(cpu_ns_v1("garbage"), None);
    }

    #[test]
    fn working_set_subtracts_inactive_file_of_the_right_hierarchy() {
        let v1 = "cache 100\nrss 50\ninactive_file 7\ntotal_inactive_file 40\n";
        assert_eq!(working_set(1000, v1, CgroupVersion::V1), 960);
        let v2 = "anon 10\ninactive_file 300\n";
        assert_eq!(working_set(1000, v2, CgroupVersion::V2), 700);
        assert_eq!(working_set(100, v2, CgroupVersion::V2), 0);
    }

    #[test]
    fn node_cpu_counts_busy_ticks_but_not_idle_or_iowait() {
        let stat = "cpu  100 1 10 5000 7 2 3 4 0 0\ncpu0 50 0 5 2500 3 1 1 2 0 0\n";
        assert_eq!(node_cpu_ns(stat), Some(120 * NANOS_PER_TICK));
    }

    #[test]
    fn node_memory_working_set_is_total_minus_available() {
        let meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\n";
        assert_eq!(node_memory(meminfo), Some((400 * 1024, 800 * 1024)));
    }

    #[test]
    fn a_v1_cgroup_is_read_from_the_cpuacct_and_memory_controllers() {
        let root = tempfile::tempdir().expect("tempdir");
        let cpu = root.path().join("cpuacct/skiff/poda/c1");
        let memory = root.path().join("memory/skiff/poda/c1");
        std::fs::create_dir_all(&cpu).expect("mkdir");
        std::fs::create_dir_all(&memory).expect("mkdir");
        std::fs::write(cpu.join("cpuacct.usage"), "5000\n").expect("write");
        std::fs::write(memory.join("memory.usage_in_bytes"), "4096\n").expect("write");
        std::fs::write(memory.join("memory.stat"), "total_inactive_file 1024\n").expect("write");
        let reader = CgroupReader::new(root.path(), CgroupVersion::V1);
        assert_eq!(
            reader.read("/skiff/poda/c1"),
            Some(Usage {
                cpu_ns: 5000,
                memory_working_set: 3072,
                memory_usage: 4096
            })
        );
        assert_eq!(reader.read("/skiff/poda/missing"), None);
    }

    #[test]
    fn a_v2_cgroup_is_read_from_one_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("skiff/poda/c1");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("cpu.stat"), "usage_usec 7\n").expect("write");
        std::fs::write(dir.join("memory.current"), "8192\n").expect("write");
        std::fs::write(dir.join("memory.stat"), "inactive_file 192\n").expect("write");
        let reader = CgroupReader::new(root.path(), CgroupVersion::V2);
        let usage = reader.read("/skiff/poda/c1").expect("usage");
        assert_eq!(usage.cpu_ns, 7000);
        assert_eq!(usage.memory_working_set, 8000);
    }
}
