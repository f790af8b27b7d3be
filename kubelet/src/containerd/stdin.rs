//! Containers' own stdin, for `kubectl attach -i`.
//!
//! A container whose spec sets `stdin: true` is started with a stdin FIFO
//! (`DIR/ID-stdin`). The agent opens the FIFO read-write before the task
//! starts and keeps that end for the container's life: the shim then never
//! sees EOF between attach sessions, as with the CRI runtimes. Attach
//! sessions write through the same end. With `stdinOnce`, the end is
//! closed when the first attach session ends, and the task's stdin with
//! it (containerd's `CloseIO`), so the container reads EOF, as Kubernetes
//! documents.
//!
//! The ends are held in memory: after an agent restart, a re-adopted
//! container's stdin has no writer left (the shim saw EOF when the old
//! agent's end closed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::stat::Mode;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;

use super::logs::LogError;

/// One container's stdin: the agent's write end of its FIFO.
#[derive(Debug)]
struct Pipe {
    sender: Arc<tokio::sync::Mutex<Option<pipe::Sender>>>,
    once: bool,
}

/// The stdin FIFOs of a node's running containers, by container ID.
#[derive(Debug, Clone, Default)]
pub struct StdinPipes {
    pipes: Arc<Mutex<HashMap<String, Pipe>>>,
}

/// An attach session's handle on a container's stdin.
#[derive(Debug, Clone)]
pub struct StdinWriter {
    id: String,
    sender: Arc<tokio::sync::Mutex<Option<pipe::Sender>>>,
    once: bool,
    pipes: StdinPipes,
}

impl StdinPipes {
    /// Creates `DIR/ID-stdin` and keeps its write end; returns its path,
    /// for the task's stdin.
    pub fn create(&self, dir: &Path, id: &str, once: bool) -> Result<PathBuf, LogError> {
        let path = dir.join(format!("{id}-stdin"));
        let io = |source| LogError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| LogError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        match nix::unistd::mkfifo(path.as_path(), Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(errno) => return Err(io(errno.into())),
        }
        // Read-write: opening never waits for the shim, and the FIFO has
        // a writer from before the task starts.
        let sender = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&path)
            .map_err(io)?;
        if let Ok(mut pipes) = self.pipes.lock() {
            pipes.insert(
                id.to_string(),
                Pipe {
                    sender: Arc::new(tokio::sync::Mutex::new(Some(sender))),
                    once,
                },
            );
        }
        Ok(path)
    }

    /// Forgets container `id`'s stdin (its task is gone), closing it.
    pub fn remove(&self, id: &str) {
        if let Ok(mut pipes) = self.pipes.lock() {
            pipes.remove(id);
        }
    }

    /// A writer on container `id`'s stdin, if it was started with one and
    /// it is still open.
    pub fn writer(&self, id: &str) -> Option<StdinWriter> {
        let pipes = self.pipes.lock().ok()?;
        let pipe = pipes.get(id)?;
        Some(StdinWriter {
            id: id.to_string(),
            sender: pipe.sender.clone(),
            once: pipe.once,
            pipes: self.clone(),
        })
    }
}

impl StdinWriter {
    /// Writes `bytes` to the container's stdin; an error when it was
    /// closed.
    pub async fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut sender = self.sender.lock().await;
        match sender.as_mut() {
            Some(sender) => sender.write_all(bytes).await,
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// The session ended (or its client closed stdin): with `stdinOnce`
    /// skiff's end is closed for good, and `true` says the caller must
    /// close the task's stdin too (the shim holds a write end of its own
    /// until `CloseIO`).
    pub async fn session_ended(&self) -> bool {
        if self.once {
            self.sender.lock().await.take();
            self.pipes.remove(&self.id);
        }
        self.once
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn bytes_written_by_attach_sessions_reach_the_fifos_reader(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pipes = StdinPipes::default();
        let path = pipes.create(dir.path(), "c1", false)?;
        let mut reader = pipe::OpenOptions::new().open_receiver(&path)?;
        let writer = pipes.writer("c1").ok_or("no writer")?;
        writer.write(b"hello\n").await?;
        assert!(!writer.session_ended().await);
        // Not stdinOnce: a second session can still write.
        pipes
            .writer("c1")
            .ok_or("closed")?
            .write(b"again\n")
            .await?;
        let mut buffer = vec![0_u8; 64];
        let mut got = Vec::new();
        while got.len() < 12 {
            let n = reader.read(&mut buffer).await?;
            got.extend_from_slice(&buffer[..n]);
        }
        assert_eq!(got, b"hello\nagain\n");
        Ok(())
    }

    #[tokio::test]
    async fn with_stdin_once_the_first_session_closes_stdin_and_the_reader_sees_eof(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pipes = StdinPipes::default();
        let path = pipes.create(dir.path(), "c1", true)?;
        let mut reader = pipe::OpenOptions::new().open_receiver(&path)?;
        let writer = pipes.writer("c1").ok_or("no writer")?;
        writer.write(b"once\n").await?;
        assert!(writer.session_ended().await);
        assert!(pipes.writer("c1").is_none());
        assert!(writer.write(b"late").await.is_err());
        let mut got = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            reader.read_to_end(&mut got),
        )
        .await??;
        assert_eq!(read, 5);
        assert_eq!(got, b"once\n");
        Ok(())
    }

    #[test]
    fn a_container_without_stdin_has_no_writer() {
        assert!(StdinPipes::default().writer("nope").is_none());
    }
}
