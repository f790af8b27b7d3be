//! `hostPath` volumes: the `type` checks Kubernetes makes before the bind
//! mount (blocking file system calls).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::VolumeError;

fn check_failed(path: &Path, what: &str) -> VolumeError {
    VolumeError::HostPath(format!(
        "hostPath type check failed: {} is not {what}",
        path.display()
    ))
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks (and for `*OrCreate`, creates) the host path as its `type` says.
/// `""` (unset) checks nothing.
pub fn check(path: &Path, kind: &str) -> Result<(), VolumeError> {
    let meta = fs::metadata(path).ok();
    let kind_of = |f: fn(&fs::FileType) -> bool| meta.as_ref().is_some_and(|m| f(&m.file_type()));
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(io_error(path))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io_error(path))
        }
        "DirectoryOrCreate" | "Directory" if kind_of(fs::FileType::is_dir) => Ok(()),
        "DirectoryOrCreate" | "Directory" => Err(check_failed(path, "a directory")),
        "FileOrCreate" if meta.is_none() => fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map(|_| ())
            .map_err(io_error(path)),
        "FileOrCreate" | "File" if kind_of(fs::FileType::is_file) => Ok(()),
        "FileOrCreate" | "File" => Err(check_failed(path, "a file")),
        "Socket" if kind_of(fs::FileType::is_socket) => Ok(()),
        "Socket" => Err(check_failed(path, "a socket file")),
        "CharDevice" if kind_of(fs::FileType::is_char_device) => Ok(()),
        "CharDevice" => Err(check_failed(path, "a character device")),
        "BlockDevice" if kind_of(fs::FileType::is_block_device) => Ok(()),
        "BlockDevice" => Err(check_failed(path, "a block device")),
        other => Err(VolumeError::HostPath(format!(
            "{other} is an invalid volume type"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_or_create_creates_a_missing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b");
        check(&path, "DirectoryOrCreate").expect("created");
        assert!(path.is_dir());
        check(&path, "Directory").expect("now a directory");
    }

    #[test]
    fn file_or_create_creates_an_empty_file_and_keeps_an_existing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        check(&path, "FileOrCreate").expect("created");
        assert_eq!(fs::read(&path).expect("read").len(), 0);
        fs::write(&path, "keep").expect("write");
        check(&path, "FileOrCreate").expect("exists");
        assert_eq!(fs::read_to_string(&path).expect("read"), "keep");
        check(&path, "File").expect("a file");
    }

    #[test]
    fn a_type_mismatch_fails_with_kubernetes_wording() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        fs::write(&file, "x").expect("write");
        let error = check(&file, "Directory").expect_err("not a dir");
        assert_eq!(
            error.to_string(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert!(check(dir.path(), "File").is_err());
        assert!(check(&dir.path().join("missing"), "Directory").is_err());
        assert!(check(&dir.path().join("missing"), "File").is_err());
        assert!(check(&file, "Socket").is_err());
        assert!(check(Path::new("/dev/null"), "CharDevice").is_ok());
        assert!(check(&file, "Bogus").is_err());
        check(&dir.path().join("missing"), "").expect("no type, no check");
    }
}
