//! Name and key syntax checks (`k8s.io/apimachinery/pkg/util/validation`).
//!
//! Each checker returns the list of problems as Kubernetes words them; the
//! callers wrap them into [`super::FieldError`]s with their own field path.

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_PART_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_REGEX_TAIL: &str =
    "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// How a kind's `metadata.name` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// DNS-1123 subdomain: most kinds.
    Subdomain,
    /// DNS-1123 label: Namespace.
    Dns1123Label,
    /// DNS-1035 label: Service.
    Dns1035Label,
    /// Anything usable as a URL path segment: HorizontalPodAutoscaler.
    PathSegment,
}

impl NameRule {
    /// Problems with `name`; with `prefix`, `name` is a `generateName` and may
    /// end in a dash.
    pub(crate) fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && name.ends_with('-') {
            masked = format!("{}a", &name[..name.len() - 1]);
            masked.as_str()
        } else {
            name
        };
        match self {
            Self::Subdomain => dns1123_subdomain(name),
            Self::Dns1123Label => dns1123_label(name),
            Self::Dns1035Label => dns1035_label(name),
            Self::PathSegment => path_segment_name(name, prefix),
        }
    }
}

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f)
                && is_lower_alnum(l)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

pub(crate) fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len(DNS1123_LABEL_MAX));
    }
    if !matches_dns1123_label(s) {
        if matches_dns1123_subdomain(s) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(DNS1123_LABEL_MSG.to_string());
        }
    }
    errs
}

pub(crate) fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len(DNS1123_SUBDOMAIN_MAX));
    }
    if !matches_dns1123_subdomain(s) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

pub(crate) fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len(DNS1123_LABEL_MAX));
    }
    let starts_alpha = s.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !(starts_alpha && matches_dns1123_label(s)) {
        errs.push(DNS1035_LABEL_MSG.to_string());
    }
    errs
}

fn path_segment_name(s: &str, prefix: bool) -> Vec<String> {
    if !prefix && (s == "." || s == "..") {
        return vec![format!("may not be '{s}'")];
    }
    if let Some(bad) = ["/", "%"].into_iter().find(|bad| s.contains(bad)) {
        return vec![format!("may not contain '{bad}'")];
    }
    Vec::new()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A qualified name: an optional DNS subdomain prefix and `/`, then a name of
/// at most 63 characters. Used for label keys, annotation keys, finalizers,
/// taint and toleration keys.
pub(crate) fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {QUALIFIED_NAME_PART_MSG} {QUALIFIED_NAME_REGEX_TAIL} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len(QUALIFIED_NAME_MAX)));
    }
    if !name.is_empty() && !matches_qualified_part(name) {
        errs.push(format!(
            "name part {QUALIFIED_NAME_PART_MSG} {QUALIFIED_NAME_REGEX_TAIL}"
        ));
    }
    errs
}

pub(crate) fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(max_len(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !matches_qualified_part(s) {
        errs.push(LABEL_VALUE_MSG.to_string());
    }
    errs
}

/// An IANA service name (container and service port names).
pub(crate) fn port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len(15));
    }
    if !s.bytes().all(|c| is_lower_alnum(c) || c == b'-') || s.is_empty() {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// A ConfigMap or Secret key.
pub(crate) fn config_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len(DNS1123_SUBDOMAIN_MAX));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        errs.push(CONFIG_KEY_MSG.to_string());
    }
    if s == "." {
        errs.push("must not be '.'".to_string());
    } else if s == ".." {
        errs.push("must not be '..'".to_string());
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// `1 <= port <= 65535`, or the Kubernetes message.
pub(crate) fn port_number(port: i64) -> Option<String> {
    (!(1..=65535).contains(&port)).then(|| "must be between 1 and 65535, inclusive".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_labels_accept_lowercase_alphanumerics_and_inner_dashes() {
        for good in ["a", "abc", "a-b", "0a", "123", &"a".repeat(63)] {
            assert!(dns1123_label(good).is_empty(), "{good}");
        }
        let table: &[(&str, &str)] = &[
            ("", "a lowercase RFC 1123 label"),
            ("-a", "a lowercase RFC 1123 label"),
            ("a-", "a lowercase RFC 1123 label"),
            ("Abc", "a lowercase RFC 1123 label"),
            ("a_b", "a lowercase RFC 1123 label"),
            ("a.b", "must not contain dots"),
        ];
        for (bad, want) in table {
            let errs = dns1123_label(bad);
            assert!(errs.iter().any(|e| e.starts_with(want)), "{bad}: {errs:?}");
        }
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn dns1123_subdomains_allow_dots_between_labels() {
        for good in ["a.b", "example.com", "a-1.b-2.c"] {
            assert!(dns1123_subdomain(good).is_empty(), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "A.b", "a_b.c"] {
            assert!(!dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
    }

    #[test]
    fn dns1035_labels_must_start_with_a_letter() {
        assert!(dns1035_label("my-svc").is_empty());
        assert!(!dns1035_label("1svc").is_empty());
        assert!(!dns1035_label("svc.x").is_empty());
    }

    #[test]
    fn generate_name_prefixes_may_end_with_a_dash() {
        assert!(NameRule::Subdomain.check("web-", true).is_empty());
        assert!(!NameRule::Subdomain.check("web-", false).is_empty());
    }

    #[test]
    fn qualified_names_take_an_optional_subdomain_prefix() {
        for good in [
            "app",
            "App_1.x",
            "example.com/app",
            "kubernetes.io/metadata.name",
            &"a".repeat(63),
        ] {
            assert!(qualified_name(good).is_empty(), "{good}");
        }
        let table: &[(&str, &str)] = &[
            ("", "name part must be non-empty"),
            ("/a", "prefix part must be non-empty"),
            (
                "Example.com/a",
                "prefix part a lowercase RFC 1123 subdomain",
            ),
            ("a/b/c", "a qualified name must consist"),
            ("-a", "name part must consist"),
            ("example.com/", "name part must be non-empty"),
        ];
        for (bad, want) in table {
            let errs = qualified_name(bad);
            assert!(errs.iter().any(|e| e.starts_with(want)), "{bad}: {errs:?}");
        }
        assert!(qualified_name(&"a".repeat(64))
            .iter()
            .any(|e| e == "name part must be no more than 63 characters"));
    }

    #[test]
    fn label_values_may_be_empty_but_not_malformed() {
        for good in ["", "v1", "a.b_c-d"] {
            assert!(label_value(good).is_empty(), "{good}");
        }
        for bad in ["-x", "x-", "a b", &"a".repeat(64)] {
            assert!(!label_value(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn port_names_follow_iana_service_name_syntax() {
        assert!(port_name("http").is_empty());
        assert!(port_name("http-8080").is_empty());
        assert!(!port_name("8080").is_empty());
        assert!(!port_name("HTTP").is_empty());
        assert!(!port_name("a--b").is_empty());
        assert!(!port_name("averyveryverylongname").is_empty());
    }

    #[test]
    fn config_keys_allow_dots_dashes_and_underscores() {
        assert!(config_key("app.properties").is_empty());
        assert!(config_key("KEY_1-x").is_empty());
        for bad in ["", "a/b", ".", "..", "..a", "a b"] {
            assert!(!config_key(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn path_segment_names_reject_slashes_and_dot_names() {
        assert!(NameRule::PathSegment.check("web", false).is_empty());
        assert!(!NameRule::PathSegment.check("a/b", false).is_empty());
        assert!(!NameRule::PathSegment.check("..", false).is_empty());
    }

    #[test]
    fn port_numbers_are_between_1_and_65535() {
        assert!(port_number(1).is_none());
        assert!(port_number(65535).is_none());
        assert!(port_number(0).is_some());
        assert!(port_number(65536).is_some());
    }
}
