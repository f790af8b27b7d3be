//! Resource usage of the node and its containers, sampled every second
//! from cgroups ([`cgroup`]), and per-pod HTTP request rates from the
//! service proxy's counters ([`RequestCounters`]).
//!
//! The [`Sampler`] keeps the latest [`Summary`] (the Kubernetes Summary
//! API's subset that metrics consumers read) and [`RequestStats`]; the
//! agent's HTTPS server ([`crate::server`]) serves them.

pub mod cgroup;
mod rate;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

pub use rate::RateTracker;
pub use source::{ContainerSource, RunningContainer, RuntimeSource};

use cgroup::{CgroupReader, Usage};

/// Cumulative per-pod HTTP counts observed by the service proxy.
pub trait RequestCounters: Send + Sync + std::fmt::Debug {
    /// Cumulative counts per backend pod since the process started.
    fn snapshot(&self) -> Vec<PodRequestCount>;
}

/// Requests and errors (5xx or failed connections) sent to one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRequestCount {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Requests since the process started.
    pub requests: u64,
    /// Errors since the process started.
    pub errors: u64,
}

/// CPU usage as the Summary API reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When it was sampled (RFC 3339).
    pub time: String,
    /// Average usage over the last sampling interval, nanocores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// Cumulative usage, core-nanoseconds.
    pub usage_core_nano_seconds: u64,
}

/// Memory usage as the Summary API reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// When it was sampled (RFC 3339).
    pub time: String,
    /// Usage minus inactive file pages, bytes.
    pub working_set_bytes: u64,
    /// Usage including the page cache, bytes.
    pub usage_bytes: u64,
}

/// One container's usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// Its name in the pod spec.
    pub name: String,
    /// CPU.
    pub cpu: CpuStats,
    /// Memory.
    pub memory: MemoryStats,
}

/// Which pod a [`PodStats`] is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodReference {
    /// The pod's name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's UID.
    pub uid: String,
}

/// One pod's usage: its containers and their sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// The pod.
    pub pod_ref: PodReference,
    /// Its running containers.
    pub containers: Vec<ContainerStats>,
    /// Sum over the containers.
    pub cpu: CpuStats,
    /// Sum over the containers.
    pub memory: MemoryStats,
}

/// The node's own usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The Node's name.
    pub node_name: String,
    /// CPU of the whole machine.
    pub cpu: CpuStats,
    /// Memory of the whole machine.
    pub memory: MemoryStats,
}

/// `GET /stats/summary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The node.
    pub node: NodeStats,
    /// Every pod with a running container.
    pub pods: Vec<PodStats>,
}

/// One pod's request rates, in `GET /stats/requests`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRequestRate {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Requests per second over the last window.
    pub requests_per_second: f64,
    /// Errors per second over the last window.
    pub errors_per_second: f64,
    /// Cumulative requests.
    pub requests_total: u64,
    /// Cumulative errors.
    pub errors_total: u64,
}

/// `GET /stats/requests`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestStats {
    /// When it was computed (RFC 3339).
    pub time: String,
    /// The window of the rates (`1s`).
    pub window: String,
    /// Per pod.
    pub pods: Vec<PodRequestRate>,
}

/// How and where the sampler reads.
#[derive(Debug, Clone)]
pub struct StatsConfig {
    /// The Node's name.
    pub node_name: String,
    /// How often usage is sampled (1 s, the window of the rates).
    pub interval: Duration,
    /// The cgroup hierarchy to read.
    pub cgroups: CgroupReader,
}

/// The latest samples, cheap to clone and read.
#[derive(Debug, Clone)]
pub struct StatsHandle {
    summary: watch::Receiver<Arc<Summary>>,
    requests: watch::Receiver<Arc<RequestStats>>,
}

impl StatsHandle {
    /// The latest summary.
    pub fn summary(&self) -> Arc<Summary> {
        self.summary.borrow().clone()
    }

    /// The latest request rates.
    pub fn requests(&self) -> Arc<RequestStats> {
        self.requests.borrow().clone()
    }

    /// A handle serving fixed values (for tests of the readers).
    pub fn fixed(summary: Summary, requests: RequestStats) -> Self {
        let (_, summary) = watch::channel(Arc::new(summary));
        let (_, requests) = watch::channel(Arc::new(requests));
        Self { summary, requests }
    }
}

/// Samples usage and request counters every interval.
pub struct Sampler {
    config: StatsConfig,
    source: Arc<dyn ContainerSource>,
    counters: Option<Arc<dyn RequestCounters>>,
    summary: watch::Sender<Arc<Summary>>,
    requests: watch::Sender<Arc<RequestStats>>,
    cpu: RateTracker<String>,
    request_rates: RateTracker<(String, String, bool)>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("node", &self.config.node_name)
            .finish()
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Sampler {
    /// A sampler of `source`'s containers and the optional proxy counters.
    pub fn new(
        config: StatsConfig,
        source: Arc<dyn ContainerSource>,
        counters: Option<Arc<dyn RequestCounters>>,
    ) -> (Self, StatsHandle) {
        let (summary, summary_rx) = watch::channel(Arc::new(Summary {
            node: NodeStats {
                node_name: config.node_name.clone(),
                ..NodeStats::default()
            },
            pods: Vec::new(),
        }));
        let (requests, requests_rx) = watch::channel(Arc::new(RequestStats {
            time: now_rfc3339(),
            window: "1s".into(),
            pods: Vec::new(),
        }));
        let sampler = Self {
            config,
            source,
            counters,
            summary,
            requests,
            cpu: RateTracker::default(),
            request_rates: RateTracker::default(),
        };
        let handle = StatsHandle {
            summary: summary_rx,
            requests: requests_rx,
        };
        (sampler, handle)
    }

    /// Samples forever (until the task is dropped).
    pub async fn run(mut self) {
        let mut interval = tokio::time::interval(self.config.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            self.sample_once().await;
        }
    }

    /// One round: reads every running container's cgroup and the node.
    pub async fn sample_once(&mut self) {
        let containers = self.source.running().await;
        let reader = self.config.cgroups.clone();
        let cgroups: Vec<String> = containers.iter().map(|c| c.cgroup.clone()).collect();
        let read = tokio::task::spawn_blocking(move || {
            let usages: Vec<Option<Usage>> = cgroups.iter().map(|c| reader.read(c)).collect();
            (cgroup::read_node(), usages)
        })
        .await;
        let Ok((node, usages)) = read else {
            tracing::warn!(node = %self.config.node_name, "the stats reader panicked");
            return;
        };
        let at = Instant::now();
        let time = now_rfc3339();
        let summary = self.build_summary(&containers, &usages, node, at, &time);
        self.summary.send_replace(Arc::new(summary));
        if let Some(counters) = &self.counters {
            let snapshot = counters.snapshot();
            let rates = self.request_rates(&snapshot, at, time);
            self.requests.send_replace(Arc::new(rates));
        }
    }

    fn cpu_stats(&mut self, key: String, cpu_ns: u64, at: Instant, time: &str) -> CpuStats {
        let rate = self.cpu.observe(key, cpu_ns, at);
        CpuStats {
            time: time.to_string(),
            usage_nano_cores: rate.map(|r| r.round() as u64),
            usage_core_nano_seconds: cpu_ns,
        }
    }

    fn build_summary(
        &mut self,
        containers: &[RunningContainer],
        usages: &[Option<Usage>],
        node: Option<Usage>,
        at: Instant,
        time: &str,
    ) -> Summary {
        let node_usage = node.unwrap_or_default();
        let node_stats = NodeStats {
            node_name: self.config.node_name.clone(),
            cpu: self.cpu_stats("node".into(), node_usage.cpu_ns, at, time),
            memory: MemoryStats {
                time: time.to_string(),
                working_set_bytes: node_usage.memory_working_set,
                usage_bytes: node_usage.memory_usage,
            },
        };
        let mut pods: Vec<PodStats> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (container, usage) in containers.iter().zip(usages) {
            let Some(usage) = usage else { continue };
            let cpu = self.cpu_stats(container.cgroup.clone(), usage.cpu_ns, at, time);
            let stats = ContainerStats {
                name: container.container.clone(),
                cpu,
                memory: MemoryStats {
                    time: time.to_string(),
                    working_set_bytes: usage.memory_working_set,
                    usage_bytes: usage.memory_usage,
                },
            };
            let slot = *index.entry(container.uid.clone()).or_insert_with(|| {
                pods.push(PodStats {
                    pod_ref: PodReference {
                        name: container.pod.clone(),
                        namespace: container.namespace.clone(),
                        uid: container.uid.clone(),
                    },
                    cpu: CpuStats {
                        time: time.to_string(),
                        usage_nano_cores: Some(0),
                        usage_core_nano_seconds: 0,
                    },
                    memory: MemoryStats {
                        time: time.to_string(),
                        ..MemoryStats::default()
                    },
                    containers: Vec::new(),
                });
                pods.len() - 1
            });
            let pod = &mut pods[slot];
            pod.cpu.usage_core_nano_seconds += stats.cpu.usage_core_nano_seconds;
            pod.cpu.usage_nano_cores = match (pod.cpu.usage_nano_cores, stats.cpu.usage_nano_cores)
            {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
            pod.memory.working_set_bytes += stats.memory.working_set_bytes;
            pod.memory.usage_bytes += stats.memory.usage_bytes;
            pod.containers.push(stats);
        }
        let mut live: Vec<String> = containers.iter().map(|c| c.cgroup.clone()).collect();
        live.push("node".into());
        self.cpu.retain(|key| live.contains(key));
        Summary {
            node: node_stats,
            pods,
        }
    }

    fn request_rates(
        &mut self,
        snapshot: &[PodRequestCount],
        at: Instant,
        time: String,
    ) -> RequestStats {
        let mut pods = Vec::with_capacity(snapshot.len());
        for count in snapshot {
            let key = |errors| (count.namespace.clone(), count.pod.clone(), errors);
            let requests = self.request_rates.observe(key(false), count.requests, at);
            let errors = self.request_rates.observe(key(true), count.errors, at);
            pods.push(PodRequestRate {
                namespace: count.namespace.clone(),
                name: count.pod.clone(),
                requests_per_second: requests.unwrap_or(0.0),
                errors_per_second: errors.unwrap_or(0.0),
                requests_total: count.requests,
                errors_total: count.errors,
            });
        }
        self.request_rates
            .retain(|(ns, pod, _)| snapshot.iter().any(|c| &c.namespace == ns && &c.pod == pod));
        RequestStats {
            time,
            window: "1s".into(),
            pods,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug)]
    struct FixedContainers(Vec<RunningContainer>);

    #[async_trait::async_trait]
    impl ContainerSource for FixedContainers {
        async fn running(&self) -> Vec<RunningContainer> {
            self.0.clone()
        }
    }

    #[derive(Debug, Default)]
    struct Counters(Mutex<Vec<PodRequestCount>>);

    impl RequestCounters for Counters {
        fn snapshot(&self) -> Vec<PodRequestCount> {
            self.0.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    fn write_v1(root: &std::path::Path, cgroup: &str, cpu_ns: u64, memory: u64) {
        let cpu = root.join("cpuacct").join(cgroup);
        let mem = root.join("memory").join(cgroup);
        std::fs::create_dir_all(&cpu).expect("mkdir");
        std::fs::create_dir_all(&mem).expect("mkdir");
        std::fs::write(cpu.join("cpuacct.usage"), cpu_ns.to_string()).expect("write");
        std::fs::write(mem.join("memory.usage_in_bytes"), memory.to_string()).expect("write");
    }

    #[tokio::test(start_paused = true)]
    async fn container_cpu_rate_is_the_usage_delta_over_the_interval() {
        let root = tempfile::tempdir().expect("tempdir");
        write_v1(root.path(), "skiff/poda/c1", 1_000_000_000, 4096);
        let source = Arc::new(FixedContainers(vec![RunningContainer {
            namespace: "default".into(),
            pod: "web".into(),
            uid: "a".into(),
            container: "app".into(),
            cgroup: "/skiff/poda/c1".into(),
        }]));
        let config = StatsConfig {
            node_name: "n1".into(),
            interval: Duration::from_secs(1),
            cgroups: CgroupReader::new(root.path(), crate::containerd::spec::CgroupVersion::V1),
        };
        let (mut sampler, handle) = Sampler::new(config, source, None);
        sampler.sample_once().await;
        let first = handle.summary();
        assert_eq!(first.pods[0].containers[0].cpu.usage_nano_cores, None);
        // Half a core over two seconds.
        write_v1(root.path(), "skiff/poda/c1", 2_000_000_000, 8192);
        tokio::time::advance(Duration::from_secs(2)).await;
        sampler.sample_once().await;
        let summary = handle.summary();
        let pod = &summary.pods[0];
        assert_eq!(pod.pod_ref.name, "web");
        assert_eq!(pod.containers[0].cpu.usage_nano_cores, Some(500_000_000));
        assert_eq!(pod.cpu.usage_nano_cores, Some(500_000_000));
        assert_eq!(pod.memory.working_set_bytes, 8192);
        assert_eq!(summary.node.node_name, "n1");
    }

    #[tokio::test(start_paused = true)]
    async fn request_counters_become_per_second_rates() {
        let counters = Arc::new(Counters::default());
        let count = |requests, errors| PodRequestCount {
            namespace: "default".into(),
            pod: "web-1".into(),
            requests,
            errors,
        };
        if let Ok(mut c) = counters.0.lock() {
            *c = vec![count(10, 0)];
        }
        let config = StatsConfig {
            node_name: "n1".into(),
            interval: Duration::from_secs(1),
            cgroups: CgroupReader::new(
                std::path::Path::new("/nonexistent"),
                crate::containerd::spec::CgroupVersion::V2,
            ),
        };
        let (mut sampler, handle) = Sampler::new(
            config,
            Arc::new(FixedContainers(Vec::new())),
            Some(counters.clone()),
        );
        sampler.sample_once().await;
        if let Ok(mut c) = counters.0.lock() {
            *c = vec![count(30, 4)];
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        sampler.sample_once().await;
        let stats = handle.requests();
        assert_eq!(stats.window, "1s");
        assert_eq!(stats.pods[0].requests_per_second, 10.0);
        assert_eq!(stats.pods[0].errors_per_second, 2.0);
        assert_eq!(stats.pods[0].requests_total, 30);
    }
}
