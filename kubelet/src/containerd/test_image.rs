//! A tiny image built offline from Debian's `busybox-static`, for tests.
//!
//! The layer holds `/bin/busybox`, symlinks to it (`sh`, `sleep`, `httpd`,
//! `cat`, ...), `/www/index.html`, `/etc/passwd` and empty mount points. It is
//! written by [`super::build`] (plain `tar` + `sha256` + JSON), so tests do
//! not depend on umoci's or skopeo's versions.

use std::path::Path;

use super::build::{base_entries, build_image, BuildError, BuiltImage, Entry, ImageContent};

/// Where Debian's `busybox-static` installs busybox.
pub const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The applets linked into `/bin`.
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "sleep",
    "httpd",
    "cat",
    "echo",
    "wget",
    "ls",
    "env",
    "true",
    "false",
    "id",
    "hostname",
    "ps",
    "nc",
    "printf",
    "mkdir",
    "rm",
    "test",
    "[",
    "grep",
    "head",
    "kill",
    "date",
    "chmod",
    "sed",
    "awk",
    "seq",
    "tr",
    "wc",
    "cut",
    "sort",
    "md5sum",
    "sha256sum",
    "dd",
    "uptime",
];

pub use super::build::ArchiveFormat;

/// What was built.
pub type TestImage = BuiltImage;

/// Errors building the test image.
#[derive(Debug, thiserror::Error)]
pub enum TestImageError {
    /// busybox is not installed.
    #[error("busybox not found at {0:?}: install Debian's `busybox-static` package")]
    BusyboxMissing(&'static [&'static str]),
    /// Building the archive failed.
    #[error(transparent)]
    Build(#[from] BuildError),
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
    let bytes = std::fs::read(busybox).map_err(|error| BuildError::Read {
        path: busybox.to_path_buf(),
        error,
    })?;
    let mut entries = base_entries();
    entries.push(Entry::Dir {
        path: "www".into(),
        mode: 0o755,
    });
    entries.push(Entry::File {
        path: "bin/busybox".into(),
        bytes,
        mode: 0o755,
    });
    entries.extend(APPLETS.iter().map(|applet| Entry::Symlink {
        path: format!("bin/{applet}"),
        target: "busybox".into(),
    }));
    entries.push(Entry::File {
        path: "www/index.html".into(),
        bytes: b"hello from skiff\n".to_vec(),
        mode: 0o644,
    });
    let content = ImageContent {
        entries,
        entrypoint: Vec::new(),
        cmd: vec!["sh".into()],
    };
    Ok(build_image(out, name, format, &content)?)
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
