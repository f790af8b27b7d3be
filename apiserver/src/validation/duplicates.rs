//! Duplicate keys in a raw JSON body. `serde_json::Value` silently keeps the
//! last of two equal keys, so strict field validation scans the bytes with a
//! path-tracking visitor before they become a `Value`.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Paths of duplicate object keys in the JSON `body`, each once, written as
/// Kubernetes writes them in its strict decoding error
/// (`duplicate field "<path>"`): `metadata.name`, `spec.containers[0].name`.
/// A body that is not valid JSON yields the duplicates found before the
/// syntax error.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    // A syntax error is reported by whoever parses the body for real.
    let _ = Scan {
        path: String::new(),
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// Walks one JSON value at `path`, recording duplicate keys in `found`.
struct Scan<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) && !self.found.contains(&path) {
                self.found.push(path.clone());
            }
            map.next_value_seed(Scan {
                path,
                found: self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let path = format!("{}[{i}]", self.path);
            if seq
                .next_element_seed(Scan {
                    path,
                    found: self.found,
                })?
                .is_none()
            {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(IgnoredAny).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_without_duplicates_report_nothing() {
        let body = br#"{"metadata":{"name":"a","labels":{"x":"1","y":"2"}},"spec":{"containers":[{"name":"a"},{"name":"b"}]}}"#;
        assert!(duplicate_fields(body).is_empty());
    }

    #[test]
    fn duplicates_are_found_at_every_depth() {
        let table: &[(&[u8], &[&str])] = &[
            (br#"{"kind":"Pod","kind":"Pod"}"#, &["kind"]),
            (
                br#"{"metadata":{"name":"a","name":"b"}}"#,
                &["metadata.name"],
            ),
            (
                br#"{"spec":{"containers":[{"name":"a"},{"name":"b","image":"x","image":"y"}]}}"#,
                &["spec.containers[1].image"],
            ),
            (
                br#"{"metadata":{"labels":{"a":"1","a":"2","a":"3"}}}"#,
                &["metadata.labels.a"],
            ),
            (br#"[{"a":1,"a":2}]"#, &["[0].a"]),
            (br#"{"a":{"x":1},"b":{"x":1}}"#, &[]),
            (br#"{"a\u0062":1,"ab":2}"#, &["ab"]),
        ];
        for (body, want) in table {
            assert_eq!(
                duplicate_fields(body),
                *want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn malformed_bodies_report_what_was_seen_before_the_error() {
        assert_eq!(duplicate_fields(br#"{"a":1,"a":2,"#), vec!["a"]);
        assert!(duplicate_fields(b"not json").is_empty());
    }
}
