//! An open-loop HTTP load generator with a rate profile, for the
//! game-launch scenario: steady baseline, a step or ramp to 50x, a plateau,
//! then back down. Each second it records the request rate, latency
//! p50/p99, the error count and (optionally) a Deployment's desired and
//! Ready replicas, so one run gives the whole story of an autoscaling event.
//!
//! Open loop: requests are sent at the profile's rate whether or not
//! earlier ones finished (as real users do), up to `max_in_flight`; a
//! request that cannot be sent because of that cap counts as an error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// One phase of a profile: `duration` at a rate going linearly from
/// `from` to `to` requests per second.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub duration: Duration,
    pub from: f64,
    pub to: f64,
}

impl Phase {
    /// Parses `DURATION@RPS` or `DURATION@FROM..TO`, e.g. `10s@5` or `3s@5..250`.
    pub fn parse(s: &str) -> Result<Self> {
        let (duration, rate) = s.split_once('@').with_context(|| {
            format!("phase {s:?}: expected DURATION@RPS or DURATION@FROM..TO, e.g. 10s@5")
        })?;
        let duration = humantime::parse_duration(duration)
            .with_context(|| format!("phase {s:?}: bad duration {duration:?}"))?;
        let parse_rate = |r: &str| -> Result<f64> {
            let v: f64 = r
                .parse()
                .with_context(|| format!("phase {s:?}: bad rate {r:?}"))?;
            if !(0.0..=1_000_000.0).contains(&v) {
                bail!("phase {s:?}: rate {v} is out of range 0..1000000");
            }
            Ok(v)
        };
        let (from, to) = match rate.split_once("..") {
            Some((a, b)) => (parse_rate(a)?, parse_rate(b)?),
            None => {
                let r = parse_rate(rate)?;
                (r, r)
            }
        };
        Ok(Self { duration, from, to })
    }
}

/// A sequence of phases.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    pub phases: Vec<Phase>,
}

impl Profile {
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// The target rate `t` into the run (0 after the end).
    pub fn rate_at(&self, t: Duration) -> f64 {
        let mut start = Duration::ZERO;
        for p in &self.phases {
            let end = start + p.duration;
            if t < end {
                let frac = if p.duration.is_zero() {
                    1.0
                } else {
                    (t - start).as_secs_f64() / p.duration.as_secs_f64()
                };
                return p.from + (p.to - p.from) * frac;
            }
            start = end;
        }
        0.0
    }

    /// The baseline: the first phase's starting rate.
    pub fn baseline(&self) -> f64 {
        self.phases.first().map_or(0.0, |p| p.from)
    }

    /// The peak rate of the profile.
    pub fn peak(&self) -> f64 {
        self.phases
            .iter()
            .map(|p| p.from.max(p.to))
            .fold(0.0, f64::max)
    }

    /// When the spike starts (the rate first rises above the baseline)
    /// and when it ends (the rate is back at or below the baseline after
    /// the peak), in whole seconds.
    pub fn spike_window(&self) -> (u64, u64) {
        let base = self.baseline();
        let total = self.total().as_secs();
        let start = (0..total)
            .find(|&s| {
                self.rate_at(Duration::from_secs(s) + Duration::from_millis(999)) > base * 1.01
            })
            .unwrap_or(total);
        let peak = self.peak();
        let peak_at = (start..total)
            .find(|&s| self.rate_at(Duration::from_secs(s)) >= peak * 0.99)
            .unwrap_or(start);
        let end = (peak_at..total)
            .find(|&s| self.rate_at(Duration::from_secs(s)) <= base * 1.01)
            .unwrap_or(total);
        (start, end)
    }
}

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub url: String,
    pub profile: Profile,
    /// A request not answered within this is an error.
    pub timeout: Duration,
    /// The most requests in flight; beyond it a due request is an error.
    pub max_in_flight: usize,
}

/// One second of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Second {
    /// Seconds since the run started.
    pub t: u64,
    pub target_rps: f64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The Deployment's `spec.replicas` and `status.readyReplicas`, when sampled.
    pub desired: Option<i32>,
    pub ready: Option<i32>,
}

#[derive(Default)]
struct Bucket {
    sent: u64,
    ok: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

type Buckets = Arc<Mutex<Vec<Bucket>>>;

fn record(buckets: &Buckets, second: usize, f: impl FnOnce(&mut Bucket)) {
    if let Ok(mut b) = buckets.lock() {
        if b.len() <= second {
            b.resize_with(second + 1, Bucket::default);
        }
        f(&mut b[second]);
    }
}

/// Runs the profile against `config.url`; `sample` is called once a
/// second (e.g. to read replicas) and its answer stored in that second.
pub async fn run<S, F>(config: &LoadConfig, mut sample: S) -> Result<Vec<Second>>
where
    S: FnMut() -> F,
    F: std::future::Future<Output = (Option<i32>, Option<i32>)>,
{
    let uri: hyper::Uri = config
        .url
        .parse()
        .with_context(|| format!("bad --url {:?}", config.url))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(config.max_in_flight)
        .build_http();
    let buckets: Buckets = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
    let total = config.profile.total();
    let started = Instant::now();
    let tick = Duration::from_millis(2);
    let mut credit = 0.0_f64;
    let mut last = Duration::ZERO;
    let mut samples: Vec<(Option<i32>, Option<i32>)> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let now = started.elapsed();
        if now >= total {
            break;
        }
        if now >= next_sample {
            samples.push(sample().await);
            next_sample += Duration::from_secs(1);
        }
        credit += config.profile.rate_at(now) * (now - last).as_secs_f64();
        last = now;
        while credit >= 1.0 {
            credit -= 1.0;
            let second = now.as_secs() as usize;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                record(&buckets, second, |b| {
                    b.sent += 1;
                    b.errors += 1;
                });
                continue;
            };
            record(&buckets, second, |b| b.sent += 1);
            let (client, uri, buckets, timeout) =
                (client.clone(), uri.clone(), buckets.clone(), config.timeout);
            tokio::spawn(async move {
                let sent_at = Instant::now();
                let ok = tokio::time::timeout(timeout, async {
                    let resp = client.get(uri).await.ok()?;
                    let status = resp.status();
                    resp.into_body().collect().await.ok()?;
                    Some(status.is_success() || status.is_redirection())
                })
                .await
                .ok()
                .flatten()
                .unwrap_or(false);
                let ms = sent_at.elapsed().as_secs_f64() * 1000.0;
                record(&buckets, second, |b| {
                    if ok {
                        b.ok += 1;
                        b.latencies_ms.push(ms);
                    } else {
                        b.errors += 1;
                    }
                });
                drop(permit);
            });
        }
    }
    // Let the last requests finish (or time out).
    let _ = tokio::time::timeout(
        config.timeout + Duration::from_secs(1),
        in_flight.acquire_many(config.max_in_flight as u32),
    )
    .await;
    let buckets = std::mem::take(&mut *buckets.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let seconds = total.as_secs() as usize;
    let mut out = Vec::with_capacity(seconds);
    let mut buckets = buckets.into_iter();
    for t in 0..seconds {
        let mut b = buckets.next().unwrap_or_default();
        b.latencies_ms.sort_by(f64::total_cmp);
        let (desired, ready) = samples.get(t).copied().unwrap_or((None, None));
        out.push(Second {
            t: t as u64,
            target_rps: config
                .profile
                .rate_at(Duration::from_secs(t as u64) + Duration::from_millis(500)),
            sent: b.sent,
            ok: b.ok,
            errors: b.errors,
            p50_ms: quantile(&b.latencies_ms, 0.5),
            p99_ms: quantile(&b.latencies_ms, 0.99),
            desired,
            ready,
        });
    }
    Ok(out)
}

/// The figures of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub spike_start_s: u64,
    pub spike_end_s: u64,
    /// From the spike's start to `ready >= capacity_replicas`.
    pub time_to_capacity_s: Option<u64>,
    pub spike_requests: u64,
    pub spike_errors: u64,
    pub spike_error_pct: f64,
    /// The most replicas asked for beyond `capacity_replicas`.
    pub overshoot: i32,
    /// Whether `desired` went down while the load was at its plateau.
    pub flapped: bool,
    /// From the load's end to `desired <= min_replicas`.
    pub time_to_scale_back_s: Option<u64>,
    pub spike_p50_ms: f64,
    pub spike_p99_ms: f64,
}

/// Computes the [`Summary`] of `seconds` for `profile`.
pub fn summarize(
    profile: &Profile,
    seconds: &[Second],
    capacity_replicas: i32,
    min_replicas: i32,
) -> Summary {
    let (start, end) = profile.spike_window();
    let in_spike = |s: &&Second| s.t >= start && s.t < end;
    let spike: Vec<&Second> = seconds.iter().filter(in_spike).collect();
    let spike_requests: u64 = spike.iter().map(|s| s.sent).sum();
    let spike_errors: u64 = spike.iter().map(|s| s.errors).sum();
    let time_to_capacity_s = seconds
        .iter()
        .filter(|s| s.t >= start)
        .find(|s| s.ready.is_some_and(|r| r >= capacity_replicas))
        .map(|s| s.t - start);
    let overshoot = seconds
        .iter()
        .filter_map(|s| s.desired)
        .max()
        .map_or(0, |m| (m - capacity_replicas).max(0));
    let peak = profile.peak();
    let plateau: Vec<i32> = seconds
        .iter()
        .filter(|s| s.target_rps >= peak * 0.99)
        .filter_map(|s| s.desired)
        .collect();
    let flapped = plateau.windows(2).any(|w| w[1] < w[0]);
    let time_to_scale_back_s = seconds
        .iter()
        .filter(|s| s.t >= end)
        .find(|s| s.desired.is_some_and(|d| d <= min_replicas))
        .map(|s| s.t - end);
    let mut p50: Vec<f64> = spike
        .iter()
        .filter(|s| s.ok > 0)
        .map(|s| s.p50_ms)
        .collect();
    let mut p99: Vec<f64> = spike
        .iter()
        .filter(|s| s.ok > 0)
        .map(|s| s.p99_ms)
        .collect();
    p50.sort_by(f64::total_cmp);
    p99.sort_by(f64::total_cmp);
    Summary {
        spike_start_s: start,
        spike_end_s: end,
        time_to_capacity_s,
        spike_requests,
        spike_errors,
        spike_error_pct: if spike_requests == 0 {
            0.0
        } else {
            100.0 * spike_errors as f64 / spike_requests as f64
        },
        overshoot,
        flapped,
        time_to_scale_back_s,
        spike_p50_ms: quantile(&p50, 0.5),
        spike_p99_ms: quantile(&p99, 0.5),
    }
}

/// The timeline as CSV (one row a second).
pub fn to_csv(seconds: &[Second]) -> String {
    let mut out = String::from("t,target_rps,sent,ok,errors,p50_ms,p99_ms,desired,ready\n");
    let opt = |v: Option<i32>| v.map(|v| v.to_string()).unwrap_or_default();
    for s in seconds {
        out.push_str(&format!(
            "{},{:.1},{},{},{},{:.1},{:.1},{},{}\n",
            s.t,
            s.target_rps,
            s.sent,
            s.ok,
            s.errors,
            s.p50_ms,
            s.p99_ms,
            opt(s.desired),
            opt(s.ready)
        ));
    }
    out
}

/// Reads a timeline written by [`to_csv`].
pub fn from_csv(text: &str) -> Result<Vec<Second>> {
    let opt =
        |v: &str| -> Result<Option<i32>> { Ok(if v.is_empty() { None } else { Some(v.parse()?) }) };
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 9 {
                bail!("timeline row {line:?}: expected 9 fields");
            }
            Ok(Second {
                t: f[0].parse()?,
                target_rps: f[1].parse()?,
                sent: f[2].parse()?,
                ok: f[3].parse()?,
                errors: f[4].parse()?,
                p50_ms: f[5].parse()?,
                p99_ms: f[6].parse()?,
                desired: opt(f[7])?,
                ready: opt(f[8])?,
            })
        })
        .collect()
}

/// A keep-alive HTTP/1.1 server answering `ok` to every request on
/// `listener` (the backend of the Service benchmark, in a pod or in
/// process), until the task is dropped.
pub async fn serve_keep_alive(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut pending = Vec::new();
            loop {
                let n = match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                let mut replies = Vec::new();
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    pending.drain(..end + 4);
                    replies.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
                }
                if stream.write_all(&replies).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(specs: &[&str]) -> Profile {
        Profile {
            phases: specs
                .iter()
                .map(|s| Phase::parse(s).expect("phase"))
                .collect(),
        }
    }

    #[test]
    fn phases_parse_steps_and_ramps_and_reject_nonsense() {
        assert_eq!(
            Phase::parse("10s@5").expect("step"),
            Phase {
                duration: Duration::from_secs(10),
                from: 5.0,
                to: 5.0
            }
        );
        assert_eq!(
            Phase::parse("3s@5..250").expect("ramp"),
            Phase {
                duration: Duration::from_secs(3),
                from: 5.0,
                to: 250.0
            }
        );
        assert!(Phase::parse("10s").is_err());
        assert!(Phase::parse("ten@5").is_err());
        assert!(Phase::parse("10s@-1").is_err());
    }

    #[test]
    fn the_rate_follows_steps_and_linear_ramps() {
        let p = profile(&["10s@5", "2s@5..105", "10s@105"]);
        assert_eq!(p.rate_at(Duration::from_secs(3)), 5.0);
        assert_eq!(p.rate_at(Duration::from_secs(11)), 55.0);
        assert_eq!(p.rate_at(Duration::from_secs(15)), 105.0);
        assert_eq!(p.rate_at(Duration::from_secs(30)), 0.0);
        assert_eq!(p.total(), Duration::from_secs(22));
        assert_eq!(p.peak(), 105.0);
    }

    #[test]
    fn the_spike_window_runs_from_the_first_rise_to_the_return_to_baseline() {
        let p = profile(&["10s@5", "2s@5..250", "20s@250", "1s@250..5", "30s@5"]);
        assert_eq!(p.spike_window(), (10, 33));
    }

    #[test]
    fn a_timeline_round_trips_through_csv() {
        let rows = vec![
            Second {
                t: 0,
                target_rps: 5.0,
                sent: 5,
                ok: 4,
                errors: 1,
                p50_ms: 1.5,
                p99_ms: 3.0,
                desired: Some(1),
                ready: None,
            },
            Second {
                t: 1,
                target_rps: 7.5,
                sent: 7,
                ok: 7,
                errors: 0,
                p50_ms: 1.0,
                p99_ms: 2.0,
                desired: None,
                ready: Some(2),
            },
        ];
        assert_eq!(from_csv(&to_csv(&rows)).expect("parse"), rows);
        assert!(from_csv("header\n1,2\n").is_err());
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_summary_reports_capacity_time_errors_overshoot_flapping_and_scale_back() {
        let p = profile(&["2s@1", "4s@10", "3s@1"]);
        let row = |t, desired, ready, sent, errors| Second {
            t,
            target_rps: p.rate_at(Duration::from_secs(t) + Duration::from_millis(500)),
            sent,
            ok: sent - errors,
            errors,
            p50_ms: 1.0,
            p99_ms: 2.0,
            desired: Some(desired),
            ready: Some(ready),
        };
        let seconds = vec![
            row(0, 1, 1, 1, 0),
            row(1, 1, 1, 1, 0),
            row(2, 5, 1, 10, 1),
            row(3, 5, 4, 10, 0),
            row(4, 4, 4, 10, 0),
            row(5, 4, 4, 10, 0),
            row(6, 4, 4, 1, 0),
            row(7, 2, 2, 1, 0),
            row(8, 1, 1, 1, 0),
        ];
        let s = summarize(&p, &seconds, 4, 1);
        assert_eq!((s.spike_start_s, s.spike_end_s), (2, 6));
        assert_eq!(s.time_to_capacity_s, Some(1));
        assert_eq!((s.spike_requests, s.spike_errors), (40, 1));
        assert_eq!(s.overshoot, 1);
        assert!(s.flapped, "5 → 4 during the plateau is a scale-down");
        assert_eq!(s.time_to_scale_back_s, Some(2));
    }
}
