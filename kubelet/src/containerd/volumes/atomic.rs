//! Kubernetes' atomic writer: the files of an API-data volume (configMap,
//! secret, downwardAPI, projected) change all at once.
//!
//! Layout of a volume dir, as the kubelet writes it:
//!
//! ```text
//! ..2026_11_22_08_00_00.123456789/   the current files (a fresh dir per update)
//! ..data -> ..2026_11_22_08_00_00.123456789
//! key -> ..data/key                  one symlink per top-level name
//! ```
//!
//! An update writes a new timestamped dir, points `..data_tmp` at it and
//! renames it over `..data` (one atomic `rename`), adds the missing
//! top-level symlinks, drops those no longer in the payload, and removes
//! the old dir. A reader following `key` sees the old or the new files,
//! never a mix. Blocking: run it on a blocking thread.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::projection::Payload;

/// The symlink to the current data dir.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// Whether the files under `..data` are exactly `payload`.
fn unchanged(dir: &Path, payload: &Payload) -> bool {
    let data = dir.join(DATA_DIR);
    let Ok(target) = fs::read_link(&data) else {
        return false;
    };
    let same_files = payload.iter().all(|(path, file)| {
        let path = data.join(path);
        let mode_ok = fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o7777 == file.mode)
            .unwrap_or(false);
        mode_ok && fs::read(&path).is_ok_and(|bytes| bytes == file.data)
    });
    same_files && count_files(&dir.join(target)) == payload.len()
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => count_files(&entry.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// The first component of each payload path: the names visible at the
/// volume's root.
fn top_level(payload: &Payload) -> BTreeSet<String> {
    payload
        .keys()
        .filter_map(|path| path.split('/').find(|c| !c.is_empty() && *c != "."))
        .map(str::to_string)
        .collect()
}

/// Makes `dir` hold exactly `payload`, atomically. Returns whether
/// anything changed.
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    fs::create_dir_all(dir)?;
    if unchanged(dir, payload) {
        return Ok(false);
    }
    let old = fs::read_link(dir.join(DATA_DIR)).ok();
    let now = chrono::Utc::now();
    let name = format!("..{}", now.format("%Y_%m_%d_%H_%M_%S.%f"));
    let fresh = dir.join(&name);
    fs::create_dir(&fresh)?;
    fs::set_permissions(&fresh, fs::Permissions::from_mode(0o755))?;
    for (path, file) in payload {
        let target = fresh.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&target, &file.data)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))?;
    }
    let tmp = dir.join(DATA_DIR_TMP);
    match fs::remove_file(&tmp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    symlink(&name, &tmp)?;
    fs::rename(&tmp, dir.join(DATA_DIR))?;
    let visible = top_level(payload);
    for entry in &visible {
        let link = dir.join(entry);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(entry), &link)?;
        }
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let file_name = entry.file_name().to_string_lossy().to_string();
        if file_name.starts_with("..") || visible.contains(&file_name) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old.filter(|old| old.as_os_str() != name.as_str()) {
        let old = dir.join(old);
        if old.starts_with(dir) {
            fs::remove_dir_all(old)?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::projection::FileProjection;
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(path, data, mode)| {
                (
                    path.to_string(),
                    FileProjection {
                        data: data.as_bytes().to_vec(),
                        mode: *mode,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn files_appear_through_the_data_symlink_with_their_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let changed = write(
            dir.path(),
            &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]),
        )
        .expect("write");
        assert!(changed);
        assert_eq!(fs::read_to_string(dir.path().join("a")).expect("a"), "1");
        assert_eq!(
            fs::read_to_string(dir.path().join("sub/b")).expect("b"),
            "2"
        );
        assert_eq!(
            fs::read_link(dir.path().join("a")).expect("link"),
            Path::new("..data/a")
        );
        let mode = fs::metadata(dir.path().join("sub/b"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o400);
    }

    #[test]
    fn an_update_swaps_all_files_drops_removed_keys_and_the_old_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            &payload(&[("a", "1", 0o644), ("b", "2", 0o644)]),
        )
        .expect("first");
        let first = fs::read_link(dir.path().join(DATA_DIR)).expect("data");
        let changed = write(dir.path(), &payload(&[("a", "new", 0o644)])).expect("second");
        assert!(changed);
        assert_eq!(fs::read_to_string(dir.path().join("a")).expect("a"), "new");
        assert!(fs::symlink_metadata(dir.path().join("b")).is_err());
        assert!(!dir.path().join(first).exists());
        let dirs = fs::read_dir(dir.path())
            .expect("read")
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .count();
        assert_eq!(dirs, 1);
    }

    #[test]
    fn writing_the_same_payload_again_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = payload(&[("a", "1", 0o644)]);
        write(dir.path(), &files).expect("first");
        let before = fs::read_link(dir.path().join(DATA_DIR)).expect("data");
        assert!(!write(dir.path(), &files).expect("second"));
        assert_eq!(
            fs::read_link(dir.path().join(DATA_DIR)).expect("data"),
            before
        );
    }

    #[test]
    fn an_empty_payload_gives_an_empty_volume() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), &Payload::new()).expect("write");
        let visible = fs::read_dir(dir.path())
            .expect("read")
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
            .count();
        assert_eq!(visible, 0);
    }
}
