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

/// A normalised reference split into the parts a registry pull needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The normalised name (`docker.io/library/busybox:1.36`): the image
    /// record's name and the name in pull messages.
    pub name: String,
    /// The registry as written (`docker.io`, `127.0.0.1:5000`).
    pub domain: String,
    /// The repository inside the registry (`library/busybox`).
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest, if any (`sha256:...`); it wins over the tag.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises an image reference as Kubernetes does;
    /// `None` when it is malformed.
    pub fn parse(image: &str) -> Option<Self> {
        let name = normalize_image_name(image)?;
        let (domain, rest) = name.split_once('/')?;
        let (remote, digest) = match rest.split_once('@') {
            Some((remote, digest)) => (remote, Some(digest.to_string())),
            None => (rest, None),
        };
        let (repository, tag) = match remote.rsplit_once('/') {
            Some((dirs, last)) => match last.split_once(':') {
                Some((base, tag)) => (format!("{dirs}/{base}"), Some(tag.to_string())),
                None => (remote.to_string(), None),
            },
            None => match remote.split_once(':') {
                Some((base, tag)) => (base.to_string(), Some(tag.to_string())),
                None => (remote.to_string(), None),
            },
        };
        Some(Self {
            domain: domain.to_string(),
            repository,
            tag,
            digest,
            name,
        })
    }

    /// The host to talk to: Docker Hub's API lives on `registry-1.docker.io`.
    pub fn registry_host(&self) -> &str {
        if self.domain == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.domain
        }
    }

    /// What `/v2/<repository>/manifests/<object>` asks for: the digest,
    /// else the tag.
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The repository without its tag or digest (`docker.io/library/busybox`),
    /// what credentials are matched against.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }
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
    fn a_reference_splits_into_registry_repository_tag_and_digest() {
        let reference = Reference::parse("127.0.0.1:5000/team/app:1").expect("parse");
        assert_eq!(reference.domain, "127.0.0.1:5000");
        assert_eq!(reference.registry_host(), "127.0.0.1:5000");
        assert_eq!(reference.repository, "team/app");
        assert_eq!(reference.object(), "1");
        let hub = Reference::parse("busybox").expect("parse");
        assert_eq!(hub.registry_host(), "registry-1.docker.io");
        assert_eq!(hub.repository, "library/busybox");
        assert_eq!(hub.object(), "latest");
        let digest = format!("sha256:{}", "b".repeat(64));
        let pinned = Reference::parse(&format!("reg.io/app:2@{digest}")).expect("parse");
        assert_eq!(pinned.object(), digest);
        assert_eq!(pinned.repository_name(), "reg.io/app");
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
