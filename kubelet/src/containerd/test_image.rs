//! A tiny image built offline from Debian's `busybox-static`, for tests.
//!
//! The layer holds `/bin/busybox`, symlinks to it (`sh`, `sleep`, `httpd`,
//! `cat`, ...), `/www/index.html`, `/etc/passwd` and empty mount points. It is
//! written as an OCI image layout or a `docker save` tarball, with plain
//! `tar` + `sha256` + JSON, so tests do not depend on umoci's or skopeo's
//! versions.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::archive::{host_architecture, media_types, sha256_digest};
use super::images::normalize_image_name;

/// Where Debian's `busybox-static` installs busybox.
pub const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The applets linked into `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "sleep", "httpd", "cat", "echo", "wget", "ls", "env", "true", "false", "id",
    "hostname", "ps", "nc", "printf", "mkdir", "rm", "test", "[", "grep", "head", "kill", "date",
];

/// The archive layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout (`index.json`, `blobs/`).
    OciLayout,
    /// A `docker save` tarball (`manifest.json` with `RepoTags`).
    DockerSave,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The normalised name the archive carries.
    pub name: String,
    /// The config digest (the image ID).
    pub config_digest: String,
    /// The single layer's digest (also its diff ID: it is uncompressed).
    pub layer_digest: String,
}

/// Errors building the test image.
#[derive(Debug, thiserror::Error)]
pub enum TestImageError {
    /// busybox is not installed.
    #[error("busybox not found at {0:?}: install Debian's `busybox-static` package")]
    BusyboxMissing(&'static [&'static str]),
    /// The name is not a valid image reference.
    #[error("invalid image name {0:?}")]
    InvalidName(String),
    /// Writing the archive failed.
    #[error("writing test image {path}: {source}")]
    Io {
        /// The archive path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Builds the busybox test image into the tar file `out`.
pub fn build_busybox_image(
    out: &Path,
    name: &str,
    format: ArchiveFormat,
) -> Result<TestImage, TestImageError> {
    let busybox = BUSYBOX_PATHS
        .iter()
        .map(Path::new)
        .find(|path| path.exists())
        .ok_or(TestImageError::BusyboxMissing(BUSYBOX_PATHS))?;
    let full_name =
        normalize_image_name(name).ok_or_else(|| TestImageError::InvalidName(name.to_string()))?;
    let io = |source| TestImageError::Io {
        path: out.to_path_buf(),
        source,
    };
    let busybox_bytes = std::fs::read(busybox).map_err(io)?;
    let layer = layer_tar(&busybox_bytes).map_err(io)?;
    let layer_digest = sha256_digest(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": host_architecture(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .map_err(|e| io(e.into()))?;
    let config_digest = sha256_digest(&config);
    let file = std::fs::File::create(out).map_err(io)?;
    let mut tar = tar::Builder::new(file);
    match format {
        ArchiveFormat::OciLayout => {
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": media_types::OCI_MANIFEST,
                "config": {"mediaType": media_types::OCI_CONFIG, "digest": config_digest, "size": config.len()},
                "layers": [{"mediaType": media_types::OCI_LAYER, "digest": layer_digest, "size": layer.len()}],
            }))
            .map_err(|e| io(e.into()))?;
            let manifest_digest = sha256_digest(&manifest);
            let tag = full_name.rsplit(':').next().unwrap_or("latest").to_string();
            let index = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": media_types::OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest.len(),
                    "annotations": {
                        "io.containerd.image.name": full_name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }],
            }))
            .map_err(|e| io(e.into()))?;
            append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
            append(&mut tar, "index.json", &index).map_err(io)?;
            for (digest, bytes) in [
                (&manifest_digest, &manifest),
                (&config_digest, &config),
                (&layer_digest, &layer),
            ] {
                let hex = digest.trim_start_matches("sha256:");
                append(&mut tar, &format!("blobs/sha256/{hex}"), bytes).map_err(io)?;
            }
        }
        ArchiveFormat::DockerSave => {
            let config_hex = config_digest.trim_start_matches("sha256:");
            let layer_hex = layer_digest.trim_start_matches("sha256:");
            let manifest = serde_json::to_vec(&json!([{
                "Config": format!("{config_hex}.json"),
                "RepoTags": [name],
                "Layers": [format!("{layer_hex}/layer.tar")],
            }]))
            .map_err(|e| io(e.into()))?;
            append(&mut tar, "manifest.json", &manifest).map_err(io)?;
            append(&mut tar, &format!("{config_hex}.json"), &config).map_err(io)?;
            append(&mut tar, &format!("{layer_hex}/layer.tar"), &layer).map_err(io)?;
        }
    }
    tar.into_inner().and_then(|mut f| f.flush()).map_err(io)?;
    Ok(TestImage {
        name: full_name,
        config_digest,
        layer_digest,
    })
}

/// The single layer: busybox, its applet links and a few files.
fn layer_tar(busybox: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for dir in [
        "bin", "etc", "proc", "sys", "dev", "run", "root", "www", "var",
    ] {
        directory(&mut tar, dir, 0o755)?;
    }
    directory(&mut tar, "tmp", 0o1777)?;
    file(&mut tar, "bin/busybox", busybox, 0o755)?;
    for applet in APPLETS {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")?;
    }
    file(
        &mut tar,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    )?;
    file(
        &mut tar,
        "etc/group",
        b"root:x:0:\nnogroup:x:65534:\n",
        0o644,
    )?;
    file(&mut tar, "www/index.html", b"hello from skiff\n", 0o644)?;
    tar.into_inner()
}

fn directory(tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(mode);
    header.set_mtime(0);
    tar.append_data(&mut header, format!("{path}/"), std::io::empty())
}

fn file(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    tar.append_data(&mut header, path, bytes)
}

fn append(tar: &mut tar::Builder<std::fs::File>, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    tar.append_data(&mut header, path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_image_is_reproducible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = build_busybox_image(&dir.path().join("a.tar"), "t:1", ArchiveFormat::OciLayout)
            .expect("build a");
        let b = build_busybox_image(&dir.path().join("b.tar"), "t:1", ArchiveFormat::OciLayout)
            .expect("build b");
        assert_eq!(a.config_digest, b.config_digest);
        assert_eq!(a.name, "docker.io/library/t:1");
    }
}
