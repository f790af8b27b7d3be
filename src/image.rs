//! `skiff image build` and `skiff image import`: put local images where a
//! cluster's node agents import them (`DATA_DIR/images/`, rescanned every
//! 2 s), so a developer's own service runs with no registry.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kubelet::containerd::build::{binary_image, build_image, ArchiveFormat};

use crate::cli::{ImageArgs, ImageCommand};
use crate::cluster::DataDir;

pub fn run(args: ImageArgs) -> Result<()> {
    match args.command {
        ImageCommand::Build {
            binary,
            name,
            link,
            data_dir,
            output,
        } => {
            let out = match output {
                Some(out) => out,
                None => images_dir(data_dir.as_deref())?.join(archive_name(&name)),
            };
            if !binary.is_file() {
                bail!(
                    "no such file {}: pass --binary the path of an executable",
                    binary.display()
                );
            }
            let content = binary_image(&binary, &link)?;
            let tmp = out.with_extension("tar.partial");
            let built = build_image(&tmp, &name, ArchiveFormat::OciLayout, &content)?;
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("cannot move the image to {}", out.display()))?;
            println!(
                "skiff: built {} ({}) into {}",
                built.name,
                built.config_digest,
                out.display()
            );
        }
        ImageCommand::Import { file, data_dir } => {
            if !file.is_file() {
                bail!(
                    "no such file {}: pass the path of an image archive",
                    file.display()
                );
            }
            let images = image_names(&file).map_err(|_| {
                anyhow::anyhow!(
                    "{} is not an image archive: pass a `docker save` tarball or an OCI layout tar",
                    file.display()
                )
            })?;
            if images.is_empty() {
                bail!(
                    "{} holds no named image: tag it (docker save NAME:TAG, or an OCI ref.name annotation)",
                    file.display()
                );
            }
            let dir = images_dir(data_dir.as_deref())?;
            let file_name = file
                .file_name()
                .context("the archive path has no file name")?;
            let out = dir.join(file_name);
            let tmp = out.with_extension("tar.partial");
            std::fs::copy(&file, &tmp).with_context(|| {
                format!("cannot copy {} into {}", file.display(), dir.display())
            })?;
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("cannot move the image to {}", out.display()))?;
            println!(
                "skiff: imported {} into {} (nodes load it within seconds)",
                images.join(", "),
                dir.display()
            );
        }
    }
    Ok(())
}

/// The names of the images in archive `file`.
fn image_names(file: &Path) -> Result<Vec<String>> {
    use kubelet::containerd::archive::{extract, read_images};
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    extract(file, scratch.path())?;
    Ok(read_images(scratch.path())?
        .into_iter()
        .flat_map(|image| image.names)
        .collect())
}

/// `DATA_DIR/images`, created if missing.
fn images_dir(data_dir: Option<&Path>) -> Result<PathBuf> {
    let dir = DataDir::resolve(data_dir)?.root.join("images");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create {}: check --data-dir", dir.display()))?;
    Ok(dir)
}

/// A file name for image `name`: `skiff.local/api:1` → `skiff.local_api_1.tar`.
fn archive_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_flat_file_names() {
        assert_eq!(archive_name("skiff.local/api:1"), "skiff.local_api_1.tar");
    }
}
