//! Builds single-layer OCI images offline, from files on this machine:
//! `skiff image build --binary PATH` (a local executable and the shared
//! libraries it needs) and the busybox test image ([`super::test_image`]).
//!
//! The archive is an OCI image layout or a `docker save` tarball written
//! with plain `tar` + `sha256` + JSON; entries carry mtime 0, so the same
//! inputs give the same image ID.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::archive::{host_architecture, media_types, sha256_digest};
use super::images::normalize_image_name;

/// The archive layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout (`index.json`, `blobs/`).
    OciLayout,
    /// A `docker save` tarball (`manifest.json` with `RepoTags`).
    DockerSave,
}

/// One entry of the image's only layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory (path without a leading `/`).
    Dir { path: String, mode: u32 },
    /// A regular file.
    File {
        path: String,
        bytes: Vec<u8>,
        mode: u32,
    },
    /// A symbolic link to `target`.
    Symlink { path: String, target: String },
}

/// What goes into an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageContent {
    /// Layer entries in order; parents must come before children.
    pub entries: Vec<Entry>,
    /// The config's `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The config's `Cmd`.
    pub cmd: Vec<String>,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The normalised name the archive carries.
    pub name: String,
    /// The config digest (the image ID).
    pub config_digest: String,
    /// The single layer's digest (also its diff ID: it is uncompressed).
    pub layer_digest: String,
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The name is not a valid image reference.
    #[error("invalid image name {0:?}: use e.g. skiff.local/my-service:1")]
    InvalidName(String),
    /// An input file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `ldd` failed on the binary.
    #[error("cannot list the shared libraries of {path} with ldd: {reason}")]
    Ldd { path: PathBuf, reason: String },
    /// Writing the archive failed.
    #[error("cannot write the image archive {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The base every image gets: the usual top-level directories, `/tmp`
/// world-writable, and root/nobody in `/etc/passwd` and `/etc/group`.
pub fn base_entries() -> Vec<Entry> {
    let mut entries: Vec<Entry> = [
        "bin", "etc", "proc", "sys", "dev", "run", "root", "var", "lib",
    ]
    .iter()
    .map(|d| Entry::Dir {
        path: (*d).to_string(),
        mode: 0o755,
    })
    .collect();
    entries.push(Entry::Dir {
        path: "tmp".into(),
        mode: 0o1777,
    });
    entries.push(Entry::File {
        path: "etc/passwd".into(),
        bytes: b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
            .to_vec(),
        mode: 0o644,
    });
    entries.push(Entry::File {
        path: "etc/group".into(),
        bytes: b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        mode: 0o644,
    });
    entries
}

/// The shared libraries `ldd` lists for `binary` (absolute paths,
/// including the dynamic loader); empty for a static binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| BuildError::Ldd {
            path: binary.to_path_buf(),
            reason: e.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stdout.contains("not a dynamic executable")
        || stderr.contains("not a dynamic executable")
        || stdout.contains("statically linked")
    {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        return Err(BuildError::Ldd {
            path: binary.to_path_buf(),
            reason: stderr.trim().to_string(),
        });
    }
    Ok(parse_ldd(&stdout))
}

/// The library paths in `ldd` output (`name => /path (0x…)` and
/// `/path (0x…)` lines; the vDSO has no path).
pub fn parse_ldd(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The entries of every missing parent directory of `path` (relative).
fn parents(path: &str, entries: &mut Vec<Entry>) {
    let mut prefix = String::new();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        let exists = entries
            .iter()
            .any(|e| matches!(e, Entry::Dir { path, .. } if *path == prefix));
        if !exists {
            entries.push(Entry::Dir {
                path: prefix.clone(),
                mode: 0o755,
            });
        }
    }
}

/// The content of `skiff image build --binary PATH`: the binary at
/// `/bin/<name>` as the entrypoint, the shared libraries it needs at their
/// paths, and `links` (e.g. busybox applets) as symlinks to it in `/bin`.
pub fn binary_image(binary: &Path, links: &[String]) -> Result<ImageContent, BuildError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|error| BuildError::Read {
            path: path.to_path_buf(),
            error,
        })
    };
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BuildError::Read {
            path: binary.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?
        .to_string();
    let mut entries = base_entries();
    entries.push(Entry::File {
        path: format!("bin/{name}"),
        bytes: read(binary)?,
        mode: 0o755,
    });
    for lib in shared_libraries(binary)? {
        let inside = lib.to_string_lossy().trim_start_matches('/').to_string();
        parents(&inside, &mut entries);
        entries.push(Entry::File {
            path: inside,
            bytes: read(&lib)?,
            mode: 0o755,
        });
    }
    for link in links {
        if link != &name {
            entries.push(Entry::Symlink {
                path: format!("bin/{link}"),
                target: name.clone(),
            });
        }
    }
    Ok(ImageContent {
        entries,
        entrypoint: vec![format!("/bin/{name}")],
        cmd: Vec::new(),
    })
}

fn layer_tar(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        match entry {
            Entry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(*mode);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            Entry::File { path, bytes, mode } => {
                header.set_size(bytes.len() as u64);
                header.set_mode(*mode);
                tar.append_data(&mut header, path, bytes.as_slice())?;
            }
            Entry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0o777);
                tar.append_link(&mut header, path, target)?;
            }
        }
    }
    tar.into_inner()
}

fn append(tar: &mut tar::Builder<std::fs::File>, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    tar.append_data(&mut header, path, bytes)
}

/// Writes `content` as image `name` into the archive `out`.
pub fn build_image(
    out: &Path,
    name: &str,
    format: ArchiveFormat,
    content: &ImageContent,
) -> Result<BuiltImage, BuildError> {
    let full_name =
        normalize_image_name(name).ok_or_else(|| BuildError::InvalidName(name.to_string()))?;
    let io = |error| BuildError::Write {
        path: out.to_path_buf(),
        error,
    };
    let json_err = |e: serde_json::Error| io(e.into());
    let layer = layer_tar(&content.entries).map_err(io)?;
    let layer_digest = sha256_digest(&layer);
    let mut image_config = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": "/",
    });
    if !content.entrypoint.is_empty() {
        image_config["Entrypoint"] = json!(content.entrypoint);
    }
    if !content.cmd.is_empty() {
        image_config["Cmd"] = json!(content.cmd);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": host_architecture(),
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .map_err(json_err)?;
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
            .map_err(json_err)?;
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
            .map_err(json_err)?;
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
            .map_err(json_err)?;
            append(&mut tar, "manifest.json", &manifest).map_err(io)?;
            append(&mut tar, &format!("{config_hex}.json"), &config).map_err(io)?;
            append(&mut tar, &format!("{layer_hex}/layer.tar"), &layer).map_err(io)?;
        }
    }
    tar.into_inner().and_then(|mut f| f.flush()).map_err(io)?;
    Ok(BuiltImage {
        name: full_name,
        config_digest,
        layer_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_and_loader_paths_but_not_the_vdso() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(out),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn a_dynamic_binary_image_carries_its_libraries_and_their_directories() {
        let content = binary_image(Path::new("/bin/true"), &[]).expect("build /bin/true");
        assert_eq!(content.entrypoint, vec!["/bin/true".to_string()]);
        let files: Vec<&str> = content
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::File { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        assert!(files.contains(&"bin/true"));
        assert!(
            files.iter().any(|f| f.contains("libc.so")),
            "libc missing from {files:?}"
        );
        for file in files.iter().filter(|f| f.contains("libc.so")) {
            let dir = &file[..file.rfind('/').unwrap_or(0)];
            assert!(content
                .entries
                .iter()
                .any(|e| matches!(e, Entry::Dir { path, .. } if path == dir)));
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_image_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = ImageContent {
            entries: base_entries(),
            entrypoint: vec!["/bin/sh".into()],
            cmd: vec![],
        };
        let a = build_image(
            &dir.path().join("a.tar"),
            "x:1",
            ArchiveFormat::OciLayout,
            &content,
        )
        .expect("a");
        let b = build_image(
            &dir.path().join("b.tar"),
            "x:1",
            ArchiveFormat::DockerSave,
            &content,
        )
        .expect("b");
        assert_eq!(a.config_digest, b.config_digest);
        assert_eq!(a.name, "docker.io/library/x:1");
        assert!(matches!(
            build_image(
                &dir.path().join("c.tar"),
                "UPPER:1",
                ArchiveFormat::OciLayout,
                &content
            ),
            Err(BuildError::InvalidName(_))
        ));
    }
}
