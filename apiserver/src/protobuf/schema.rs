//! The shape of the generated schema in `table.rs`, and lookups into it.

use super::table::{MESSAGES, ROOTS};

/// What a field holds, as far as JSON is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    Str,
    I32,
    I64,
    Bool,
    /// `[]byte`: base64 in JSON.
    Bytes,
    /// `float64`; reachable only from kinds skiff does not serve yet.
    #[allow(dead_code)]
    F64,
    /// Another message, by index into [`MESSAGES`].
    Msg(u16),
    /// meta/v1 Time: RFC 3339 with whole seconds.
    Time,
    /// meta/v1 MicroTime: RFC 3339 with six fractional digits.
    MicroTime,
    /// meta/v1 Duration: a Go duration string such as `1m30s`.
    #[allow(dead_code)]
    Duration,
    /// meta/v1 FieldsV1: raw JSON bytes.
    FieldsV1,
    /// resource.Quantity: its canonical string.
    Quantity,
    /// intstr.IntOrString: a number or a string.
    IntOrString,
    /// runtime.RawExtension: an embedded object.
    #[allow(dead_code)]
    RawExtension,
}

/// Values repeat; they become a JSON array.
pub(super) const REPEATED: u8 = 1;
/// `map<string, V>`: entry messages with the key in field 1 and the value in 2.
pub(super) const MAP: u8 = 2;
/// The Go field is a pointer, so a zero value on the wire was set on purpose.
pub(super) const POINTER: u8 = 4;
/// The Go json tag has `omitempty`: a zero non-pointer value means "unset".
pub(super) const OMITEMPTY: u8 = 8;
/// `json:",inline"`: the message's fields belong to the enclosing object.
pub(super) const INLINE: u8 = 16;

#[derive(Debug)]
pub(super) struct Field {
    pub(super) tag: u32,
    pub(super) json: &'static str,
    pub(super) ty: Ty,
    pub(super) flags: u8,
}

impl Field {
    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

#[derive(Debug)]
pub(super) struct Message {
    pub(super) name: &'static str,
    /// Sorted by tag.
    pub(super) fields: &'static [Field],
}

impl Message {
    pub(super) fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}

/// A kind a client may send, with the message its `raw` bytes hold.
#[derive(Debug)]
pub(super) struct Root {
    /// `*` matches every group version (DeleteOptions is registered in all).
    pub(super) api_version: &'static str,
    pub(super) kind: &'static str,
    pub(super) message: u16,
}

/// The message at `index`. Indices come only from the generated table, whose
/// references a unit test checks, so this cannot go out of bounds.
pub(super) fn message(index: u16) -> &'static Message {
    &MESSAGES[usize::from(index)]
}

/// The message for `apiVersion`/`kind`, if skiff knows it.
pub(super) fn root(api_version: &str, kind: &str) -> Option<&'static Message> {
    ROOTS
        .iter()
        .find(|r| r.kind == kind && (r.api_version == "*" || r.api_version == api_version))
        .map(|r| message(r.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_fields_sorted_by_tag_and_valid_references() {
        for m in MESSAGES {
            assert!(
                m.fields.windows(2).all(|w| w[0].tag < w[1].tag),
                "{} is not sorted",
                m.name
            );
            for f in m.fields {
                if let Ty::Msg(i) = f.ty {
                    assert!(
                        usize::from(i) < MESSAGES.len(),
                        "{}.{} points past the table",
                        m.name,
                        f.json
                    );
                }
                assert_eq!(f.json.is_empty(), f.has(INLINE), "{}.{}", m.name, f.tag);
            }
        }
        for r in ROOTS {
            assert!(
                usize::from(r.message) < MESSAGES.len(),
                "root {} points past the table",
                r.kind
            );
        }
    }

    #[test]
    fn roots_resolve_by_group_version_and_kind() {
        assert_eq!(
            root("apps/v1", "Deployment").map(|m| m.name),
            Some("Deployment")
        );
        assert_eq!(root("v1", "Deployment").map(|m| m.name), None);
        assert_eq!(
            root("apps/v1", "DeleteOptions").map(|m| m.name),
            Some("DeleteOptions")
        );
        assert_eq!(
            root("v1", "DeleteOptions").map(|m| m.name),
            Some("DeleteOptions")
        );
    }

    #[test]
    fn field_lookup_finds_json_names_and_go_presence() {
        let spec = root("v1", "Service")
            .and_then(|svc| svc.field(2))
            .and_then(|f| match f.ty {
                Ty::Msg(i) => Some(message(i)),
                _ => None,
            })
            .expect("ServiceSpec");
        let cluster_ip = spec.field(3).expect("clusterIP");
        assert_eq!((cluster_ip.json, cluster_ip.ty), ("clusterIP", Ty::Str));
        assert!(!cluster_ip.has(POINTER));
        let allocate = spec.field(20).expect("allocateLoadBalancerNodePorts");
        assert!(allocate.has(POINTER));
        assert!(
            spec.field(6).is_none(),
            "tag 6 (deprecated portalIP) does not exist"
        );
    }
}
