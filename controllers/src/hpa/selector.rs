//! Label selector strings as a Scale's `status.selector` holds them
//! (`app=web,tier in (a,b),!legacy`), parsed as Kubernetes' `labels.Parse`
//! and matched against pod labels.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    DoesNotExist(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed selector: every requirement must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// Why a selector string does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement {requirement:?}: {reason}")]
pub struct ParseError {
    requirement: String,
    reason: &'static str,
}

/// Splits at commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    let values: Vec<String> = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    values.iter().all(|v| valid_value(v)).then_some(values)
}

fn requirement(term: &str) -> Result<Requirement, ParseError> {
    let fail = |reason| ParseError {
        requirement: term.to_string(),
        reason,
    };
    let t = term.trim();
    if let Some(key) = t.strip_prefix('!') {
        let key = key.trim();
        return valid_key(key)
            .then(|| Requirement::DoesNotExist(key.to_string()))
            .ok_or(fail("invalid key"));
    }
    for (op, build) in [
        (
            "!=",
            (|k, v| Requirement::NotIn(k, vec![v])) as fn(String, String) -> Requirement,
        ),
        ("==", |k, v| Requirement::In(k, vec![v])),
        ("=", |k, v| Requirement::In(k, vec![v])),
    ] {
        if let Some((k, v)) = t.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            if !valid_key(k) || !valid_value(v) {
                return Err(fail("invalid key or value"));
            }
            return Ok(build(k.to_string(), v.to_string()));
        }
    }
    for (op, gt) in [(">", true), ("<", false)] {
        if let Some((k, v)) = t.split_once(op) {
            let k = k.trim();
            let n: i64 = v.trim().parse().map_err(|_| fail("not an integer"))?;
            if !valid_key(k) {
                return Err(fail("invalid key"));
            }
            return Ok(if gt {
                Requirement::GreaterThan(k.to_string(), n)
            } else {
                Requirement::LessThan(k.to_string(), n)
            });
        }
    }
    let mut words = t.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim_start();
    if !valid_key(key) {
        return Err(fail("invalid key"));
    }
    if rest.is_empty() {
        return Ok(Requirement::Exists(key.to_string()));
    }
    if let Some(values) = rest.strip_prefix("notin") {
        return set(values)
            .map(|v| Requirement::NotIn(key.to_string(), v))
            .ok_or(fail("invalid set"));
    }
    if let Some(values) = rest.strip_prefix("in") {
        return set(values)
            .map(|v| Requirement::In(key.to_string(), v))
            .ok_or(fail("invalid set"));
    }
    Err(fail("unknown operator"))
}

impl Selector {
    /// Parses a selector string; an empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.trim().is_empty() {
            return Ok(Selector(Vec::new()));
        }
        terms(s)
            .into_iter()
            .map(requirement)
            .collect::<Result<_, _>>()
            .map(Selector)
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::GreaterThan(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::LessThan(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(s: &str) -> Selector {
        Selector::parse(s).expect("parses")
    }

    #[test]
    fn equality_and_set_requirements_match_as_in_kubernetes() {
        let web = labels(&[("app", "web"), ("tier", "a")]);
        assert!(parse("app=web").matches(&web));
        assert!(parse("app==web,tier in (a, b)").matches(&web));
        assert!(!parse("app=web,tier notin (a,b)").matches(&web));
        assert!(parse("app!=api").matches(&web));
        assert!(parse("app,!legacy").matches(&web));
        assert!(!parse("legacy").matches(&web));
        assert!(parse("").matches(&web));
    }

    #[test]
    fn numeric_comparisons_need_an_integer_label() {
        let l = labels(&[("gen", "5")]);
        assert!(parse("gen>3").matches(&l));
        assert!(!parse("gen<3").matches(&l));
        assert!(!parse("other>3").matches(&l));
    }

    #[test]
    fn malformed_selectors_are_errors() {
        assert!(Selector::parse("app in a,b").is_err());
        assert!(Selector::parse("app=we b").is_err());
        assert!(Selector::parse("app ~ x").is_err());
        assert!(Selector::parse("=x").is_err());
    }
}
