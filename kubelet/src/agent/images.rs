//! The cluster's image folder (`DATA_DIR/images/`): every `*.tar` archive
//! (OCI layout or `docker save`) is imported when the agent starts, and the
//! folder is scanned again every [`AgentConfig::image_rescan_interval`] for
//! new or changed archives. Write an archive under another name and rename
//! it to `*.tar`, so a half-written file is never read.
//!
//! [`AgentConfig::image_rescan_interval`]: super::AgentConfig::image_rescan_interval

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::containerd::ImageStore;

/// Imports the archives of one folder, each once per (mtime, size).
pub(crate) struct ImageDir {
    dir: PathBuf,
    store: Arc<ImageStore>,
    imported: HashMap<PathBuf, (SystemTime, u64)>,
}

impl ImageDir {
    pub(crate) fn new(dir: PathBuf, store: Arc<ImageStore>) -> Self {
        Self {
            dir,
            store,
            imported: HashMap::new(),
        }
    }

    /// Imports new or changed archives; returns the image names imported.
    /// A failing archive is logged and retried on the next scan.
    pub(crate) async fn scan(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return names;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != "tar") {
                continue;
            }
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            let stamp = (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            );
            if self.imported.get(&path) == Some(&stamp) {
                continue;
            }
            match self.store.import_archive(&path).await {
                Ok(imported) => {
                    info!(archive = %path.display(), images = ?imported, "images imported");
                    names.extend(imported);
                    self.imported.insert(path, stamp);
                }
                Err(error) => {
                    warn!(archive = %path.display(), %error, "cannot import the image archive")
                }
            }
        }
        names
    }

    /// Scans every `interval`, forever.
    pub(crate) async fn rescan_forever(mut self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.scan().await;
        }
    }
}
