//! Container logs in the CRI format that `kubectl logs` reads:
//! `2026-11-22T00:00:00.000000000Z stdout F line` (`P` for a partial line
//! split at [`MAX_LINE`] bytes).
//!
//! The shim writes a container's stdout and stderr to two FIFOs; a copier
//! task per container reads both and appends timestamped lines to the log
//! file. Opening order matters: skiff opens the read end (non-blocking)
//! and a temporary write end *before* `tasks.Create`, so the shim's open
//! succeeds and reads never see a premature EOF; the temporary writer is
//! dropped once the task exists ([`FifoPair::release_writers`]). The
//! copier ends at EOF, when the container's last writer has closed.

use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use tracing::warn;

/// Lines longer than this are split into partial (`P`) records.
pub const MAX_LINE: usize = 16 * 1024;

/// Errors setting up a container's log FIFOs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A FIFO or the log file could not be created or opened.
    #[error("log plumbing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One CRI log record.
pub fn cri_record(timestamp: &str, stream: &str, partial: bool, line: &[u8]) -> Vec<u8> {
    let tag = if partial { "P" } else { "F" };
    let mut record = Vec::with_capacity(line.len() + timestamp.len() + 12);
    record.extend_from_slice(timestamp.as_bytes());
    record.push(b' ');
    record.extend_from_slice(stream.as_bytes());
    record.push(b' ');
    record.extend_from_slice(tag.as_bytes());
    record.push(b' ');
    record.extend_from_slice(line);
    record.push(b'\n');
    record
}

fn now_rfc3339_nano() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Splits `buffer` into complete records, leaving an unfinished line in it.
pub fn drain_records(buffer: &mut Vec<u8>, stream: &str, timestamp: &str, eof: bool) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        if let Some(newline) = buffer
            .iter()
            .position(|b| *b == b'\n')
            .filter(|newline| *newline <= MAX_LINE)
        {
            let line: Vec<u8> = buffer.drain(..=newline).collect();
            out.extend(cri_record(
                timestamp,
                stream,
                false,
                &line[..line.len() - 1],
            ));
        } else if buffer.len() >= MAX_LINE {
            let chunk: Vec<u8> = buffer.drain(..MAX_LINE).collect();
            out.extend(cri_record(timestamp, stream, true, &chunk));
        } else {
            break;
        }
    }
    if eof && !buffer.is_empty() {
        out.extend(cri_record(timestamp, stream, false, buffer));
        buffer.clear();
    }
    out
}

/// The stdout and stderr FIFOs of one container, opened for reading.
#[derive(Debug)]
pub struct FifoPair {
    /// The stdout FIFO path (given to `tasks.Create`).
    pub stdout_path: PathBuf,
    /// The stderr FIFO path.
    pub stderr_path: PathBuf,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    writers: Vec<pipe::Sender>,
}

impl FifoPair {
    /// Creates (if needed) and opens `DIR/ID-stdout` and `DIR/ID-stderr`.
    /// With `hold_writers`, a temporary write end is kept open until
    /// [`FifoPair::release_writers`].
    pub async fn open(dir: &Path, id: &str, hold_writers: bool) -> Result<Self, LogError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { path, source }
        };
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        let stdout_path = dir.join(format!("{id}-stdout"));
        let stderr_path = dir.join(format!("{id}-stderr"));
        let mut receivers = Vec::new();
        let mut writers = Vec::new();
        for path in [&stdout_path, &stderr_path] {
            match nix::unistd::mkfifo(path.as_path(), Mode::from_bits_truncate(0o600)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(errno) => return Err(io(path)(errno.into())),
            }
            receivers.push(
                pipe::OpenOptions::new()
                    .open_receiver(path)
                    .map_err(io(path))?,
            );
            if hold_writers {
                writers.push(
                    pipe::OpenOptions::new()
                        .open_sender(path)
                        .map_err(io(path))?,
                );
            }
        }
        let stderr = receivers.pop();
        let stdout = receivers.pop();
        match (stdout, stderr) {
            (Some(stdout), Some(stderr)) => Ok(Self {
                stdout_path,
                stderr_path,
                stdout,
                stderr,
                writers,
            }),
            _ => Err(io(dir)(std::io::ErrorKind::NotFound.into())),
        }
    }

    /// Drops skiff's temporary write ends, so EOF follows the shim's close.
    pub fn release_writers(&mut self) {
        self.writers.clear();
    }

    /// Copies both streams into `log_path` until both reach EOF.
    pub fn spawn_copier(mut self, log_path: PathBuf) -> JoinHandle<()> {
        self.release_writers();
        tokio::spawn(async move {
            if let Some(parent) = log_path.parent() {
                let _ = tokio::fs::create_dir_all(parent).await;
            }
            let (a, b) = tokio::join!(
                copy_stream(self.stdout, "stdout", log_path.clone()),
                copy_stream(self.stderr, "stderr", log_path.clone()),
            );
            for result in [a, b] {
                if let Err(error) = result {
                    warn!(log = %log_path.display(), %error, "container log copier stopped");
                }
            }
        })
    }
}

async fn copy_stream(
    mut fifo: pipe::Receiver,
    stream: &'static str,
    log_path: PathBuf,
) -> std::io::Result<()> {
    let mut log = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .await?;
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        let read = fifo.read(&mut chunk).await?;
        let eof = read == 0;
        buffer.extend_from_slice(&chunk[..read]);
        let records = drain_records(&mut buffer, stream, &now_rfc3339_nano(), eof);
        if !records.is_empty() {
            log.write_all(&records).await?;
        }
        if eof {
            return log.flush().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_lines_become_full_records_and_the_rest_waits() {
        let mut buffer = b"one\ntwo\nthr".to_vec();
        let out = drain_records(&mut buffer, "stdout", "T", false);
        assert_eq!(out, b"T stdout F one\nT stdout F two\n");
        assert_eq!(buffer, b"thr");
    }

    #[test]
    fn an_overlong_line_is_split_into_partial_records() {
        let mut buffer = vec![b'x'; MAX_LINE + 3];
        buffer.push(b'\n');
        let out = drain_records(&mut buffer, "stderr", "T", false);
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("T stderr P xxx"));
        assert_eq!(lines[1], "T stderr F xxx");
    }

    #[test]
    fn an_unterminated_last_line_is_written_at_eof() {
        let mut buffer = b"tail".to_vec();
        assert_eq!(
            drain_records(&mut buffer, "stdout", "T", true),
            b"T stdout F tail\n"
        );
    }

    #[tokio::test]
    async fn fifo_output_is_copied_as_cri_records_until_the_writer_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut fifos = FifoPair::open(dir.path(), "c1", true).await.expect("open");
        let mut writer = pipe::OpenOptions::new()
            .open_sender(&fifos.stdout_path)
            .expect("writer");
        let stderr_writer = pipe::OpenOptions::new()
            .open_sender(&fifos.stderr_path)
            .expect("writer");
        fifos.release_writers();
        let log = dir.path().join("0.log");
        let copier = fifos.spawn_copier(log.clone());
        writer.write_all(b"hello\nworld\n").await.expect("write");
        drop(writer);
        drop(stderr_writer);
        tokio::time::timeout(std::time::Duration::from_secs(5), copier)
            .await
            .expect("copier ends at EOF")
            .expect("join");
        let text = std::fs::read_to_string(log).expect("log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" stdout F hello"), "{}", lines[0]);
        assert!(lines[0].contains('T') && lines[0].contains('Z'));
    }
}
