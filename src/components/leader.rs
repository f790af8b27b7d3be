//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` does it: several control planes on one store each run
//! the scheduler and the controller manager only while they hold that
//! component's Lease in `kube-system` (`kube-scheduler`,
//! `kube-controller-manager`).
//!
//! - A candidate takes a Lease that is absent, its own, or not renewed for
//!   `lease_duration` by the clock of this process (the time the record
//!   was last seen to change, so clocks of different machines never
//!   compare).
//! - The leader renews every `retry_period`; if no renewal succeeds for
//!   `renew_deadline`, it has lost the Lease and the process exits (as
//!   kube-scheduler and kube-controller-manager do), so two leaders never
//!   act for long.
//! - The identity is stable per host and data dir, so a restarted `skiff
//!   up` takes its own Lease back at once instead of waiting it out.
//!
//! Hand-written (about 150 lines) because the published crates for this
//! (`kube-leader-election`, `kube-lease-manager`) pin older `kube` majors.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Now, with microseconds (the Lease's `renewTime`).
fn micro_now() -> MicroTime {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_microsecond(micros)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// How a component's Lease is held.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// The Lease's name (`kube-scheduler`, `kube-controller-manager`).
    pub lease_name: String,
    pub namespace: String,
    /// This candidate's `holderIdentity`.
    pub identity: String,
    /// How long a Lease not renewed stays with its holder.
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often to renew, or to try again to acquire.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Kubernetes' timing scaled for a 15 s failover: duration 10 s,
    /// deadline 7 s, retry 2 s.
    pub fn new(lease_name: &str, identity: &str) -> Self {
        Self {
            lease_name: lease_name.to_string(),
            namespace: "kube-system".to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(7),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What the last read of the Lease showed, and when (by our clock).
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

/// One candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    observed: Option<Observed>,
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaderConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = micro_now();
        let ours = previous
            .and_then(|s| s.holder_identity.as_deref())
            .is_some_and(|h| h == self.config.identity);
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: i32::try_from(self.config.lease_duration.as_secs()).ok(),
            acquire_time: if ours {
                previous.and_then(|s| s.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// One attempt: `Ok(true)` when we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let current = match self.api.get_opt(&self.config.lease_name).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.lease_name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != spec.renew_time);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time: spec.renew_time.clone(),
                at: Instant::now(),
            });
        }
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|o| o.at.elapsed() >= duration);
        if holder.is_some() && !ours && !expired {
            return Ok(false);
        }
        let mut lease = current;
        lease.spec = Some(self.spec(Some(&spec)));
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        let mut waiting_logged = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.config.lease_name, identity = %self.config.identity, "became the leader");
                    return;
                }
                Ok(false) if !waiting_logged => {
                    waiting_logged = true;
                    info!(lease = %self.config.lease_name, "another control plane leads; standing by");
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(lease = %self.config.lease_name, error = %e, "cannot read the leader lease")
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews until a renewal fails for longer than `renew_deadline`;
    /// returns when the Lease is lost.
    pub async fn hold(&mut self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let attempt =
                tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => last_renewed = Instant::now(),
                Ok(Ok(false)) => return,
                Ok(Err(e)) => {
                    warn!(lease = %self.config.lease_name, error = %e, "cannot renew the leader lease")
                }
                Err(_) => {
                    warn!(lease = %self.config.lease_name, "renewing the leader lease timed out")
                }
            }
            if last_renewed.elapsed() >= self.config.renew_deadline {
                return;
            }
        }
    }
}

/// Runs `start` once this process leads `config.lease_name`, keeps the
/// Lease, and exits the process if it is lost.
pub fn spawn_as_leader<F, Fut>(
    client: kube::Client,
    config: LeaderConfig,
    start: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Vec<tokio::task::JoinHandle<()>>>> + Send,
{
    tokio::spawn(async move {
        let mut elector = Elector::new(client, config.clone());
        elector.acquire().await;
        let tasks = match start().await {
            Ok(tasks) => tasks,
            Err(e) => {
                error!(lease = %config.lease_name, error = %e, "cannot start the component");
                return;
            }
        };
        elector.hold().await;
        for task in tasks {
            task.abort();
        }
        error!(lease = %config.lease_name, "lost the leader lease; exiting so that one leader acts");
        std::process::exit(1);
    })
}
