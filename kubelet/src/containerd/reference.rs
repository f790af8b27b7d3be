//! Image references, normalised like Kubernetes and Docker do.

/// Normalises an image reference like Kubernetes (and Docker) do:
/// `busybox` → `docker.io/library/busybox:latest`,
/// `me/app:1` → `docker.io/me/app:1`, `reg:5000/app` → `reg:5000/app:latest`.
/// Returns `None` for an empty or malformed reference.
pub fn normalize_image_name(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name.starts_with('/') {
        return None;
    }
    let (remote, digest) = match name.split_once('@') {
        Some((remote, digest)) => (remote, Some(digest)),
        None => (name, None),
    };
    let (domain, path) = match remote.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        Some(_) => ("docker.io".to_string(), remote.to_string()),
        None => ("docker.io".to_string(), remote.to_string()),
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if path.is_empty() || path.ends_with('/') || path.contains("//") {
        return None;
    }
    let (repository, tag) = match path.rsplit_once('/') {
        Some((dirs, last)) => match last.split_once(':') {
            Some((name, tag)) => (format!("{dirs}/{name}"), Some(tag)),
            None => (path.clone(), None),
        },
        None => match path.split_once(':') {
            Some((name, tag)) => (name.to_string(), Some(tag)),
            None => (path.clone(), None),
        },
    };
    if !repository.split('/').all(valid_path_component) || !tag.is_none_or(valid_tag) {
        return None;
    }
    let has_tag = tag.is_some();
    let mut full = format!("{domain}/{path}");
    if !has_tag && digest.is_none() {
        full.push_str(":latest");
    }
    if let Some(digest) = digest {
        full.push('@');
        full.push_str(digest);
    }
    Some(full)
}

/// A repository path component: lowercase letters and digits, separated
/// by `.`, `_`, `__` or `-` (the distribution reference grammar).
fn valid_path_component(c: &str) -> bool {
    let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    c.starts_with(alnum)
        && c.ends_with(alnum)
        && c.chars()
            .all(|ch| alnum(ch) || matches!(ch, '.' | '_' | '-'))
}

/// A tag: up to 128 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
fn valid_tag(t: &str) -> bool {
    (1..=128).contains(&t.len())
        && !t.starts_with(['.', '-'])
        && t.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_name_gets_docker_io_library_and_its_tag() {
        assert_eq!(
            normalize_image_name("busybox:1.36").as_deref(),
            Some("docker.io/library/busybox:1.36")
        );
    }

    #[test]
    fn a_name_without_a_tag_gets_latest() {
        assert_eq!(
            normalize_image_name("busybox").as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(
            normalize_image_name("me/app").as_deref(),
            Some("docker.io/me/app:latest")
        );
    }

    #[test]
    fn a_registry_with_a_port_is_kept_and_not_taken_for_a_tag() {
        assert_eq!(
            normalize_image_name("localhost:5000/app").as_deref(),
            Some("localhost:5000/app:latest")
        );
        assert_eq!(
            normalize_image_name("registry.example/team/app:2").as_deref(),
            Some("registry.example/team/app:2")
        );
    }

    #[test]
    fn a_digest_reference_gets_no_latest_tag() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize_image_name(&format!("busybox@{digest}")),
            Some(format!("docker.io/library/busybox@{digest}"))
        );
    }

    #[test]
    fn empty_and_spaced_names_are_refused() {
        assert_eq!(normalize_image_name(""), None);
        assert_eq!(normalize_image_name("bad name"), None);
    }

    #[test]
    fn uppercase_repositories_and_bad_tags_are_refused() {
        assert_eq!(normalize_image_name("Busybox:1"), None);
        assert_eq!(normalize_image_name("me/App"), None);
        assert_eq!(normalize_image_name("busybox:-1"), None);
        assert_eq!(normalize_image_name("busybox:"), None);
        assert_eq!(
            normalize_image_name("skiff.local/game_api-x:V1.2").as_deref(),
            Some("skiff.local/game_api-x:V1.2")
        );
    }
}
