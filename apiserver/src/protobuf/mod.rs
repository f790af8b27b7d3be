//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! decoded into the same JSON objects the rest of the server works on.
//!
//! kubectl's typed clients (`kubectl create namespace|configmap|secret|
//! deployment|service|job|...`) send built-in kinds this way. A body is the
//! magic `k8s\0` followed by a `runtime.Unknown` message:
//!
//! ```text
//! 1 typeMeta        { 1 apiVersion, 2 kind }
//! 2 raw             the typed object, e.g. k8s.io.api.core.v1.Namespace
//! 3 contentEncoding must be empty
//! 4 contentType     ignored
//! ```
//!
//! `raw` is decoded by a generic wire-format walker ([`decode`](self::decode))
//! driven by a generated schema ([`table`](self::table)): per message, each
//! field's number, JSON name, type and Go presence flags. Only responses
//! stay JSON: clients accept JSON replies to protobuf requests.
//!
//! Owns nothing else; must not depend on the store or the HTTP layer.

mod decode;
mod schema;
#[rustfmt::skip]
mod table;
mod wire;

use serde_json::{Map, Value};

use wire::{Raw, Reader};

/// What every Kubernetes protobuf body starts with.
const MAGIC: [u8; 4] = *b"k8s\0";

/// Why a protobuf body could not be decoded. All of these are client errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("protobuf body does not start with the Kubernetes magic number \"k8s\\x00\"")]
    MissingMagic,
    /// A length or varint runs past the end of its message.
    #[error("protobuf message is truncated")]
    Truncated,
    /// A varint is longer than 64 bits.
    #[error("protobuf varint overflows 64 bits")]
    VarintOverflow,
    /// Field number 0, or one above 2^32.
    #[error("invalid protobuf field number {0}")]
    InvalidFieldNumber(u64),
    /// Groups (wire types 3 and 4) or an undefined wire type.
    #[error("protobuf field {field} uses unsupported wire type {wire_type}")]
    UnsupportedWireType { field: u32, wire_type: u8 },
    /// A known field arrived with the wrong wire type.
    #[error("{message}.{field}: expected a {expected} value, got {found}")]
    WireTypeMismatch {
        message: &'static str,
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    /// A string field holds bytes that are not UTF-8.
    #[error("{message}.{field} is not valid UTF-8")]
    InvalidUtf8 {
        message: &'static str,
        field: &'static str,
    },
    /// A `Time`/`MicroTime` outside what RFC 3339 can express.
    #[error("{message}.{field}: timestamp {seconds}s {nanos}ns is out of range")]
    InvalidTimestamp {
        message: &'static str,
        field: &'static str,
        seconds: i64,
        nanos: i64,
    },
    /// A `double` that is NaN or infinite, which JSON cannot carry.
    #[error("{message}.{field} is not a finite number")]
    NonFiniteNumber {
        message: &'static str,
        field: &'static str,
    },
    /// `RawExtension`/`FieldsV1` bytes that are neither JSON nor protobuf.
    #[error("{message}.{field} holds invalid JSON: {reason}")]
    InvalidEmbeddedJson {
        message: &'static str,
        field: &'static str,
        reason: String,
    },
    /// Nesting deeper than any Kubernetes type.
    #[error("protobuf object nests deeper than {0} levels")]
    TooDeep(usize),
    /// A kind the schema does not cover (custom resources are never protobuf).
    #[error(
        "protobuf is not supported for kind {kind:?} in {api_version:?}; send application/json"
    )]
    UnsupportedKind { api_version: String, kind: String },
    /// `runtime.Unknown.contentEncoding` was set (Kubernetes never sets it).
    #[error("protobuf content encoding {0:?} is not supported")]
    UnsupportedContentEncoding(String),
}

/// Decodes a Kubernetes protobuf body into its JSON object, `apiVersion` and
/// `kind` first, with the field names and value forms of Kubernetes' JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_at(body, 0)
}

/// [`decode`] for an envelope nested `depth` messages deep (a `RawExtension`).
fn decode_at(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(&MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown = Unknown::parse(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedContentEncoding(
            unknown.content_encoding,
        ));
    }
    let msg = schema::root(&unknown.api_version, &unknown.kind).ok_or_else(|| {
        ProtobufError::UnsupportedKind {
            api_version: unknown.api_version.clone(),
            kind: unknown.kind.clone(),
        }
    })?;
    let fields = decode::message(unknown.raw, msg, depth + 1)?;
    let mut object = Map::with_capacity(fields.len() + 2);
    object.insert("apiVersion".to_string(), Value::String(unknown.api_version));
    object.insert("kind".to_string(), Value::String(unknown.kind));
    object.extend(fields);
    Ok(Value::Object(object))
}

/// `runtime.Unknown`, the envelope around every protobuf object.
#[derive(Debug, Default)]
struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Unknown<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut out = Unknown::default();
        let mut reader = Reader::new(buf);
        while !reader.is_empty() {
            match reader.field()? {
                (1, Raw::Len(type_meta)) => {
                    let mut tm = Reader::new(type_meta);
                    while !tm.is_empty() {
                        match tm.field()? {
                            (1, Raw::Len(s)) => out.api_version = envelope_string(s, "apiVersion")?,
                            (2, Raw::Len(s)) => out.kind = envelope_string(s, "kind")?,
                            _ => {}
                        }
                    }
                }
                (2, Raw::Len(raw)) => out.raw = raw,
                (3, Raw::Len(s)) => out.content_encoding = envelope_string(s, "contentEncoding")?,
                _ => {}
            }
        }
        Ok(out)
    }
}

fn envelope_string(bytes: &[u8], field: &'static str) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::InvalidUtf8 {
        message: "Unknown",
        field,
    })
}

#[cfg(test)]
mod fixtures;
