//! The node's image manager, as the kubelet's `images.imageManager`: called
//! (through [`ImageManager`]) each time a container is about to start.
//!
//! 1. The reference is normalised (`InvalidImageName` when it cannot be).
//! 2. `imagePullPolicy` decides ([`PullPolicy`]; unset, it defaults as the
//!    API server does: `Always` for `:latest` or no tag, else
//!    `IfNotPresent`): `Never` and `IfNotPresent` use a local image (event
//!    `Pulled`, "already present on machine"); `Never` without one waits
//!    `ErrImageNeverPull`; `Always` pulls on every start — the pull
//!    downloads nothing when the registry's digest is the local one.
//! 3. A pull that failed for this pod and image recently waits it out:
//!    `ImagePullBackOff` ("Back-off pulling image"), 10 s doubling to
//!    300 s between attempts ([`PullBackoff`], the kubelet's
//!    `flowcontrol.Backoff` keyed by pod UID and image).
//! 4. Otherwise it pulls (event `Pulling`) with each credential of the
//!    pod's `imagePullSecrets` that matches the registry, in turn (none:
//!    anonymous), and reports `Pulled` ("Successfully pulled image ... in
//!    1.2s") or `Failed` and `ErrImagePull` with containerd's message.
//!
//! A pull runs inside its own pod's worker, so a slow or failing registry
//! never holds up another pod.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;
use kube::Client;
use tokio::time::Instant;
use tracing::{info, warn};

use super::backoff::BackoffConfig;
use super::events::{EventType, PodEvents};
use crate::containerd::images::{ImageManager, ImageNotReady, ImageStore, ResolvedImage};
use crate::containerd::keyring::Keyring;
use crate::containerd::reference::Reference;
use crate::containerd::registry::{Credentials, RegistryClient};

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullPolicy {
    /// Pull on every container start.
    Always,
    /// Pull only when no local image has the name.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The container's policy, defaulted as the API server defaults it.
    pub(crate) fn of(container: &Container, reference: &Reference) -> Self {
        match container.image_pull_policy.as_deref() {
            Some("Always") => Self::Always,
            Some("Never") => Self::Never,
            Some("IfNotPresent") => Self::IfNotPresent,
            _ if reference.digest.is_none()
                && reference.tag.as_deref().is_none_or(|t| t == "latest") =>
            {
                Self::Always
            }
            _ => Self::IfNotPresent,
        }
    }

    /// Whether to pull, given whether the image is present.
    pub(crate) fn should_pull(self, present: bool) -> bool {
        match self {
            Self::Always => true,
            Self::IfNotPresent => !present,
            Self::Never => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
    /// The `BackOff` event of this window was recorded.
    reported: bool,
}

/// Pull back-off per key (`<pod uid>_<image>`), as `flowcontrol.Backoff`:
/// a failure arms `initial`, each failure within `2 × max` of the previous
/// doubles it up to `max`, a longer quiet period starts over.
#[derive(Debug)]
pub(crate) struct PullBackoff {
    config: BackoffConfig,
    entries: HashMap<String, Entry>,
}

impl PullBackoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_update) > self.config.max.saturating_mul(2)
    }

    /// Whether `key` is still waiting after its last failure.
    pub(crate) fn in_backoff(&self, key: &str, now: Instant) -> bool {
        self.entries.get(key).is_some_and(|entry| {
            !self.expired(entry, now)
                && now.saturating_duration_since(entry.last_update) < entry.backoff
        })
    }

    /// Records a failed pull of `key` at `now`.
    pub(crate) fn failed(&mut self, key: &str, now: Instant) {
        let fresh = self.entries.get(key).is_none_or(|e| self.expired(e, now));
        let initial = self.config.initial;
        let max = self.config.max;
        let entry = self.entries.entry(key.to_string()).or_insert(Entry {
            backoff: initial,
            last_update: now,
            reported: false,
        });
        entry.backoff = if fresh {
            initial
        } else {
            entry.backoff.saturating_mul(2).min(max)
        };
        entry.last_update = now;
        entry.reported = false;
    }

    /// The delay armed by `key`'s last failure.
    pub(crate) fn current(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.backoff)
    }

    /// `true` the first time it is asked in a back-off window (one
    /// `BackOff` event per window, not one per sync).
    fn first_report(&mut self, key: &str) -> bool {
        match self.entries.get_mut(key) {
            Some(entry) if !entry.reported => {
                entry.reported = true;
                true
            }
            _ => false,
        }
    }

    /// Forgets keys quiet for `2 × max`.
    pub(crate) fn gc(&mut self, now: Instant) {
        let max2 = self.config.max.saturating_mul(2);
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_update) <= max2);
    }
}

/// A duration as Go prints one truncated to milliseconds (`523ms`,
/// `1.2s`, `1m3.25s`), as in the kubelet's `Pulled` message.
pub(crate) fn go_duration_ms(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let seconds = |ms: u128| {
        let (whole, frac) = (ms / 1000, ms % 1000);
        if frac == 0 {
            format!("{whole}s")
        } else {
            let frac = format!("{frac:03}");
            format!("{whole}.{}s", frac.trim_end_matches('0'))
        }
    };
    let (h, m, rest) = (ms / 3_600_000, (ms % 3_600_000) / 60_000, ms % 60_000);
    match (h, m) {
        (0, 0) => seconds(rest),
        (0, m) => format!("{m}m{}", seconds(rest)),
        (h, m) => format!("{h}h{m}m{}", seconds(rest)),
    }
}

/// The agent's [`ImageManager`]: pulls from registries with the pod's
/// pull secrets, with back-off and kubelet events.
pub(crate) struct ImagePuller {
    store: Arc<ImageStore>,
    registry: RegistryClient,
    client: Client,
    node: String,
    backoff: Mutex<PullBackoff>,
}

impl ImagePuller {
    pub(crate) fn new(
        store: Arc<ImageStore>,
        registry: RegistryClient,
        client: Client,
        node: &str,
        backoff: BackoffConfig,
    ) -> Self {
        Self {
            store,
            registry,
            client,
            node: node.to_string(),
            backoff: Mutex::new(PullBackoff::new(backoff)),
        }
    }

    /// The credentials of the pod's `imagePullSecrets`; a missing or
    /// malformed secret is logged and skipped (the pull may still work).
    async fn keyring(&self, pod: &Pod) -> Keyring {
        let names: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Keyring::default();
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let mut secrets = Vec::new();
        for name in names {
            match api.get_opt(&name).await {
                Ok(Some(secret)) => secrets.push(secret),
                Ok(None) => {
                    warn!(secret = %name, namespace, "pull secret not found; the image pull may not succeed")
                }
                Err(error) => {
                    warn!(secret = %name, namespace, %error, "cannot read the pull secret; the image pull may not succeed")
                }
            }
        }
        Keyring::from_secrets(&secrets).unwrap_or_else(|error| {
            warn!(%error, "cannot parse a pull secret; the image pull may not succeed");
            Keyring::default()
        })
    }

    fn with_backoff<T>(&self, f: impl FnOnce(&mut PullBackoff) -> T) -> Option<T> {
        self.backoff.lock().ok().map(|mut b| f(&mut b))
    }

    async fn pull(
        &self,
        pod: &Pod,
        reference: &Reference,
    ) -> Result<(Arc<ResolvedImage>, u64), String> {
        let keyring = self.keyring(pod).await;
        let mut candidates: Vec<Option<Credentials>> = keyring
            .lookup(&reference.repository_name())
            .into_iter()
            .map(Some)
            .collect();
        if candidates.is_empty() {
            candidates.push(None);
        }
        let mut errors = Vec::new();
        for credentials in candidates {
            match self
                .store
                .pull(&self.registry, reference, credentials)
                .await
            {
                Ok(pulled) => return Ok((pulled.image, pulled.size)),
                Err(error) => errors.push(error.to_string()),
            }
        }
        // The kubelet aggregates one error per credential: `[e1, e2]`.
        Err(match errors.len() {
            1 => errors.remove(0),
            _ => format!("[{}]", errors.join(", ")),
        })
    }
}

#[async_trait]
impl ImageManager for ImagePuller {
    async fn ensure_image(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<Arc<ResolvedImage>, ImageNotReady> {
        let image = container.image.clone().unwrap_or_default();
        let events = PodEvents::new(self.client.clone(), &self.node, pod);
        let publish = |type_, reason: &str, message: String| {
            events.publish(&container.name, type_, reason, message);
        };
        let Some(reference) = Reference::parse(&image) else {
            let message = format!("Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format");
            publish(EventType::Warning, "InspectFailed", message.clone());
            return Err(ImageNotReady {
                reason: "InvalidImageName",
                message,
            });
        };
        let policy = PullPolicy::of(container, &reference);
        let present = match self.store.resolve(&reference.name).await {
            Ok(present) => present,
            Err(error) => {
                warn!(image = %image, %error, "cannot inspect the local image");
                None
            }
        };
        if !policy.should_pull(present.is_some()) {
            return match present {
                Some(local) => {
                    publish(
                        EventType::Normal,
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                    Ok(local)
                }
                None => {
                    let message = format!(
                        "Container image \"{image}\" is not present with pull policy of Never"
                    );
                    publish(EventType::Warning, "ErrImageNeverPull", message.clone());
                    Err(ImageNotReady {
                        reason: "ErrImageNeverPull",
                        message,
                    })
                }
            };
        }
        let key = format!(
            "{}_{image}",
            pod.metadata.uid.as_deref().unwrap_or_default()
        );
        let waiting = self
            .with_backoff(|b| {
                let now = Instant::now();
                b.in_backoff(&key, now).then(|| b.first_report(&key))
            })
            .flatten();
        if let Some(first) = waiting {
            let message = format!("Back-off pulling image \"{image}\"");
            if first {
                publish(EventType::Normal, "BackOff", message.clone());
                publish(
                    EventType::Warning,
                    "Failed",
                    "Error: ImagePullBackOff".to_string(),
                );
            }
            return Err(ImageNotReady {
                reason: "ImagePullBackOff",
                message,
            });
        }
        publish(
            EventType::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let started = Instant::now();
        match self.pull(pod, &reference).await {
            Ok((resolved, size)) => {
                let took = go_duration_ms(started.elapsed());
                info!(image = %image, took = %took, size, "image pulled");
                publish(
                    EventType::Normal,
                    "Pulled",
                    format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."),
                );
                self.with_backoff(|b| b.gc(Instant::now()));
                Ok(resolved)
            }
            Err(message) => {
                let retry_in = self
                    .with_backoff(|b| {
                        b.failed(&key, Instant::now());
                        b.current(&key)
                    })
                    .flatten();
                warn!(image = %image, error = %message, ?retry_in, "image pull failed");
                publish(
                    EventType::Warning,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {message}"),
                );
                publish(
                    EventType::Warning,
                    "Failed",
                    "Error: ErrImagePull".to_string(),
                );
                Err(ImageNotReady {
                    reason: "ErrImagePull",
                    message,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(image: &str, policy: Option<&str>) -> (Container, Reference) {
        let container = Container {
            name: "c".to_string(),
            image: Some(image.to_string()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        };
        (
            container,
            Reference::parse(image).expect("a valid reference"),
        )
    }

    #[test]
    fn latest_and_untagged_images_default_to_always_and_tagged_ones_to_if_not_present() {
        for (image, policy) in [
            ("busybox", PullPolicy::Always),
            ("busybox:latest", PullPolicy::Always),
            ("127.0.0.1:5000/app", PullPolicy::Always),
            ("127.0.0.1:5000/app:1", PullPolicy::IfNotPresent),
            (
                "app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                PullPolicy::IfNotPresent,
            ),
        ] {
            let (c, r) = container(image, None);
            assert_eq!(PullPolicy::of(&c, &r), policy, "{image}");
        }
        let (c, r) = container("busybox:latest", Some("Never"));
        assert_eq!(PullPolicy::of(&c, &r), PullPolicy::Never);
    }

    #[test]
    fn each_policy_pulls_only_when_it_should() {
        assert!(PullPolicy::Always.should_pull(true));
        assert!(PullPolicy::IfNotPresent.should_pull(false));
        assert!(!PullPolicy::IfNotPresent.should_pull(true));
        assert!(!PullPolicy::Never.should_pull(false));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_pulls_back_off_10s_doubling_to_300s() {
        let mut backoff = PullBackoff::new(BackoffConfig::default());
        let key = "uid_127.0.0.1:5000/x:1";
        assert!(!backoff.in_backoff(key, Instant::now()));
        let mut waits = Vec::new();
        for _ in 0..7 {
            backoff.failed(key, Instant::now());
            let armed = backoff.current(key).expect("armed");
            // Just before the delay ends: still backing off; at its end: not.
            tokio::time::advance(armed - Duration::from_millis(1)).await;
            assert!(backoff.in_backoff(key, Instant::now()));
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(!backoff.in_backoff(key, Instant::now()));
            waits.push(armed.as_secs());
        }
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 300, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_quiet_for_ten_minutes_starts_over_and_pods_back_off_apart() {
        let mut backoff = PullBackoff::new(BackoffConfig::default());
        for _ in 0..3 {
            backoff.failed("a", Instant::now());
        }
        assert_eq!(backoff.current("a"), Some(Duration::from_secs(40)));
        assert!(!backoff.in_backoff("b", Instant::now()));
        tokio::time::advance(Duration::from_secs(601)).await;
        backoff.failed("a", Instant::now());
        assert_eq!(backoff.current("a"), Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(601)).await;
        backoff.gc(Instant::now());
        assert_eq!(backoff.current("a"), None);
    }

    #[test]
    fn one_back_off_event_per_window() {
        let mut backoff = PullBackoff::new(BackoffConfig::default());
        let now = Instant::now();
        backoff.failed("k", now);
        assert!(backoff.first_report("k"));
        assert!(!backoff.first_report("k"));
        backoff.failed("k", now);
        assert!(backoff.first_report("k"));
    }

    #[test]
    fn pull_durations_print_like_go() {
        assert_eq!(go_duration_ms(Duration::from_micros(523_400)), "523ms");
        assert_eq!(go_duration_ms(Duration::from_millis(1200)), "1.2s");
        assert_eq!(go_duration_ms(Duration::from_millis(2000)), "2s");
        assert_eq!(go_duration_ms(Duration::from_millis(63_250)), "1m3.25s");
    }
}
