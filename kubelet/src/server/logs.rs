//! `GET /containerLogs/{ns}/{pod}/{container}`: reading the CRI log files
//! the runtime writes (see [`crate::containerd::logs`]) with Kubernetes'
//! options (`tailLines`, `sinceSeconds`, `timestamps`, `limitBytes`,
//! `previous`, `follow`).
//!
//! Files live at `DATA/logs/pods/{ns}_{pod}_{uid}/{container}/{restarts}.log`;
//! the current instance is the highest restart count, `previous` the one
//! before it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Query parameters of a log request (Kubernetes' `PodLogOptions`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    /// Keep streaming new lines until the container stops.
    #[serde(default, deserialize_with = "flag")]
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Only lines from this RFC 3339 time on (`sinceSeconds` wins if both).
    pub since_time: Option<String>,
    /// The previous instance of the container.
    #[serde(default, deserialize_with = "flag")]
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    #[serde(default, deserialize_with = "flag")]
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<i64>,
}

fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(matches!(text.as_deref(), Some("true" | "1" | "")))
}

/// Why a log cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogLookupError {
    /// No log of that pod on this node.
    #[error("pod {namespace}/{pod} has no logs on this node")]
    PodNotFound {
        /// The namespace.
        namespace: String,
        /// The pod.
        pod: String,
    },
    /// The pod has no such container (or it never started).
    #[error("container {container:?} in pod {pod:?} has no logs")]
    ContainerNotFound {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// `previous` asked for an instance that does not exist.
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPrevious {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
}

/// The log file of a container instance, found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// The file.
    pub path: PathBuf,
    /// The pod's UID.
    pub uid: String,
    /// The instance's restart count.
    pub restart: u32,
}

/// Finds the log file of `container` of pod `namespace/pod`. `prefer_uid`
/// (the running pod's UID) wins over older pods of the same name; else the
/// most recently written pod dir does. Blocking.
pub fn find_log(
    logs_root: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
    previous: bool,
    prefer_uid: Option<&str>,
) -> Result<LogFile, LogLookupError> {
    let prefix = format!("{namespace}_{pod}_");
    let mut candidates: Vec<(String, PathBuf, std::time::SystemTime)> =
        std::fs::read_dir(logs_root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().to_string();
                let uid = name.strip_prefix(&prefix)?.to_string();
                let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
                Some((uid, entry.path(), modified))
            })
            .collect();
    candidates.sort_by_key(|(uid, _, modified)| (Some(uid.as_str()) == prefer_uid, *modified));
    let (uid, dir, _) = candidates
        .pop()
        .ok_or_else(|| LogLookupError::PodNotFound {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
        })?;
    let mut restarts: Vec<u32> = std::fs::read_dir(dir.join(container))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    restarts.sort_unstable();
    let pick = if previous {
        restarts
            .iter()
            .rev()
            .nth(1)
            .copied()
            .ok_or_else(|| LogLookupError::NoPrevious {
                pod: pod.to_string(),
                container: container.to_string(),
            })?
    } else {
        restarts
            .last()
            .copied()
            .ok_or_else(|| LogLookupError::ContainerNotFound {
                pod: pod.to_string(),
                container: container.to_string(),
            })?
    };
    Ok(LogFile {
        path: dir.join(container).join(format!("{pick}.log")),
        uid,
        restart: pick,
    })
}

/// One log line, partial records joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The timestamp as written (RFC 3339 with nanoseconds).
    pub timestamp: String,
    /// The content, ending in a newline.
    pub content: Vec<u8>,
}

/// Parses the complete records of CRI log `content`; returns the lines and
/// how many bytes they used (an unterminated last record waits for more).
pub fn parse_cri(content: &[u8]) -> (Vec<LogLine>, usize) {
    let mut lines = Vec::new();
    let mut used = 0;
    let mut partial: Option<LogLine> = None;
    let mut consumed_complete = 0;
    while let Some(end) = content[used..].iter().position(|b| *b == b'\n') {
        let record = &content[used..used + end];
        used += end + 1;
        let mut fields = record.splitn(4, |b| *b == b' ');
        let (Some(ts), Some(_stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let message = fields.next().unwrap_or_default();
        let line = partial.get_or_insert_with(|| LogLine {
            timestamp: String::from_utf8_lossy(ts).to_string(),
            content: Vec::new(),
        });
        line.content.extend_from_slice(message);
        if tag != b"P" {
            if let Some(mut line) = partial.take() {
                line.content.push(b'\n');
                lines.push(line);
            }
            consumed_complete = used;
        }
    }
    (lines, consumed_complete)
}

/// Applies `sinceSeconds` (relative to `now`) and `tailLines`.
pub fn select(lines: Vec<LogLine>, options: &LogOptions, now: DateTime<Utc>) -> Vec<LogLine> {
    let since = match (options.since_seconds, options.since_time.as_deref()) {
        (Some(s), _) => Some(now - chrono::Duration::seconds(s.max(0))),
        (None, Some(t)) => DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        (None, None) => None,
    };
    let mut lines: Vec<LogLine> = lines
        .into_iter()
        .filter(|line| match since {
            Some(since) => DateTime::parse_from_rfc3339(&line.timestamp)
                .map(|t| t.with_timezone(&Utc) >= since)
                .unwrap_or(true),
            None => true,
        })
        .collect();
    if let Some(tail) = options.tail_lines.filter(|t| *t >= 0) {
        let tail = tail as usize;
        if lines.len() > tail {
            lines.drain(..lines.len() - tail);
        }
    }
    lines
}

/// Renders lines as `kubectl logs` prints them.
pub fn render(lines: &[LogLine], timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        if timestamps {
            out.extend_from_slice(line.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&line.content);
    }
    out
}

/// Counts down `limitBytes` over a stream.
#[derive(Debug, Clone, Copy)]
pub struct ByteLimit(Option<u64>);

impl ByteLimit {
    /// From the option (`None` or negative: no limit).
    pub fn new(limit: Option<i64>) -> Self {
        Self(limit.filter(|l| *l >= 0).map(|l| l as u64))
    }

    /// Cuts `chunk` to what is left; true when nothing is left after it.
    pub fn take(&mut self, chunk: &mut Vec<u8>) -> bool {
        match &mut self.0 {
            None => false,
            Some(left) => {
                if chunk.len() as u64 > *left {
                    chunk.truncate(*left as usize);
                }
                *left -= chunk.len() as u64;
                *left == 0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2026-11-22T00:00:00.000000001Z stdout F one\n\
2026-11-22T00:00:10.000000000Z stderr P tw\n\
2026-11-22T00:00:10.000000001Z stderr F o\n\
2026-11-22T00:00:20.000000000Z stdout F three\n\
2026-11-22T00:00:30.000000000Z stdout F unfinish";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T00:00:25Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn cri_records_become_lines_with_partials_joined_and_the_unterminated_tail_left() {
        let (lines, used) = parse_cri(LOG);
        let text: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.content).to_string())
            .collect();
        assert_eq!(text, ["one\n", "two\n", "three\n"]);
        assert_eq!(lines[1].timestamp, "2026-11-22T00:00:10.000000000Z");
        assert_eq!(
            &LOG[used..],
            b"2026-11-22T00:00:30.000000000Z stdout F unfinish"
        );
    }

    #[test]
    fn tail_lines_keeps_the_last_lines() {
        let (lines, _) = parse_cri(LOG);
        let options = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        assert_eq!(
            render(&select(lines, &options, now()), false),
            b"two\nthree\n"
        );
    }

    #[test]
    fn since_seconds_drops_older_lines_and_timestamps_prefix_each_line() {
        let (lines, _) = parse_cri(LOG);
        let options = LogOptions {
            since_seconds: Some(10),
            ..LogOptions::default()
        };
        assert_eq!(
            render(&select(lines, &options, now()), true),
            b"2026-11-22T00:00:20.000000000Z three\n"
        );
    }

    #[test]
    fn since_time_drops_lines_written_before_it() {
        let (lines, _) = parse_cri(LOG);
        let options = LogOptions {
            since_time: Some("2026-11-22T00:00:10Z".into()),
            ..LogOptions::default()
        };
        assert_eq!(
            render(&select(lines, &options, now()), false),
            b"two\nthree\n"
        );
    }

    #[test]
    fn limit_bytes_cuts_the_stream_and_then_stops_it() {
        let mut limit = ByteLimit::new(Some(5));
        let mut first = b"abc".to_vec();
        assert!(!limit.take(&mut first));
        let mut second = b"defgh".to_vec();
        assert!(limit.take(&mut second));
        assert_eq!(second, b"de");
        assert!(!ByteLimit::new(None).take(&mut b"x".to_vec()));
    }

    #[test]
    fn options_parse_from_a_query_string_as_kubectl_sends_them() {
        let options: LogOptions = serde_json::from_value(
            serde_json::json!({"follow": "true", "tailLines": 3, "previous": "false"}),
        )
        .expect("parse");
        assert!(options.follow);
        assert!(!options.previous);
        assert_eq!(options.tail_lines, Some(3));
    }

    #[test]
    fn the_current_instance_is_the_highest_restart_and_previous_the_one_before() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("default_web_u1/app");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for n in [0, 1, 2] {
            std::fs::write(dir.join(format!("{n}.log")), b"").expect("write");
        }
        let current = find_log(root.path(), "default", "web", "app", false, None).expect("log");
        assert_eq!((current.restart, current.uid.as_str()), (2, "u1"));
        let previous = find_log(root.path(), "default", "web", "app", true, None).expect("log");
        assert_eq!(previous.restart, 1);
        assert_eq!(
            find_log(root.path(), "default", "web", "db", false, None),
            Err(LogLookupError::ContainerNotFound {
                pod: "web".into(),
                container: "db".into()
            })
        );
        assert!(matches!(
            find_log(root.path(), "default", "other", "app", false, None),
            Err(LogLookupError::PodNotFound { .. })
        ));
    }

    #[test]
    fn a_container_that_never_restarted_has_no_previous_log() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("default_web_u1/app");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("0.log"), b"").expect("write");
        assert!(matches!(
            find_log(root.path(), "default", "web", "app", true, None),
            Err(LogLookupError::NoPrevious { .. })
        ));
    }
}
