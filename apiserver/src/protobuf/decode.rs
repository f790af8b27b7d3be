//! One encoded message → one JSON object, driven by the generated schema.
//!
//! Go's gogo-protobuf marshaller always writes non-pointer scalars, so an
//! object that never set `clusterIP` arrives with `clusterIP: ""`. The JSON
//! side follows Go's encoding/json instead: a zero value of a non-pointer
//! `omitempty` field is dropped, a pointer field keeps whatever was sent
//! (`replicas: 0`, `automountServiceAccountToken: false`), and a zero value
//! of a field without `omitempty` is kept (`containerPort: 0`). Zero times
//! (`creationTimestamp: null` in Go's JSON) are dropped.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::schema::{self, Field, Message, Ty, INLINE, MAP, OMITEMPTY, POINTER, REPEATED};
use super::wire::{Raw, Reader, WireType};
use super::ProtobufError;

/// Deeper than any Kubernetes type nests; bounds recursion on hostile input.
pub(super) const MAX_DEPTH: usize = 64;

pub(super) fn message(
    buf: &[u8],
    msg: &'static Message,
    depth: usize,
) -> Result<Map<String, Value>, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep(MAX_DEPTH));
    }
    let mut out = Map::new();
    let mut reader = Reader::new(buf);
    while !reader.is_empty() {
        let (tag, raw) = reader.field()?;
        // Unknown fields are skipped, as Go's decoder does.
        let Some(field) = msg.field(tag) else {
            continue;
        };
        let cx = Context { msg, field, depth };
        if field.has(MAP) {
            let (key, value) = cx.map_entry(cx.bytes(raw)?)?;
            if let Value::Object(map) = out
                .entry(field.json)
                .or_insert_with(|| Value::Object(Map::new()))
            {
                map.insert(key, value);
            }
        } else if field.has(REPEATED) {
            let mut values = Vec::new();
            match raw {
                Raw::Len(packed) if matches!(field.ty, Ty::I32 | Ty::I64 | Ty::Bool) => {
                    let mut inner = Reader::new(packed);
                    while !inner.is_empty() {
                        values.push(cx.scalar(Raw::Varint(inner.varint()?))?);
                    }
                }
                _ => values.extend(cx.value(raw)?),
            }
            if let Value::Array(items) = out
                .entry(field.json)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                items.extend(values);
            }
        } else if field.has(INLINE) {
            if let Value::Object(inner) = cx.value(raw)?.unwrap_or(Value::Null) {
                out.extend(inner);
            }
        } else {
            match cx.value(raw)? {
                Some(value) if keep(field, &value) => out.insert(field.json.to_string(), value),
                _ => out.remove(field.json),
            };
        }
    }
    Ok(out)
}

/// Whether Go's JSON encoding would show this singular value.
fn keep(field: &Field, value: &Value) -> bool {
    if field.has(POINTER) || !field.has(OMITEMPTY) {
        return true;
    }
    let zero = match (field.ty, value) {
        (Ty::Str | Ty::Bytes, Value::String(s)) => s.is_empty(),
        (Ty::Bool, Value::Bool(b)) => !b,
        (Ty::I32 | Ty::I64 | Ty::F64 | Ty::IntOrString, Value::Number(n)) => {
            n.as_f64() == Some(0.0)
        }
        _ => false,
    };
    !zero
}

/// Where a value sits, for decoding it and for naming it in errors.
struct Context {
    msg: &'static Message,
    field: &'static Field,
    depth: usize,
}

impl Context {
    fn mismatch(&self, expected: WireType, raw: Raw<'_>) -> ProtobufError {
        ProtobufError::WireTypeMismatch {
            message: self.msg.name,
            field: self.field.json,
            expected: expected.name(),
            found: raw.wire_type().name(),
        }
    }

    fn bytes<'a>(&self, raw: Raw<'a>) -> Result<&'a [u8], ProtobufError> {
        match raw {
            Raw::Len(bytes) => Ok(bytes),
            other => Err(self.mismatch(WireType::Len, other)),
        }
    }

    fn string(&self, bytes: &[u8]) -> Result<String, ProtobufError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::InvalidUtf8 {
            message: self.msg.name,
            field: self.field.json,
        })
    }

    /// A varint or fixed-width scalar.
    fn scalar(&self, raw: Raw<'_>) -> Result<Value, ProtobufError> {
        match (self.field.ty, raw) {
            // int32 travels as a sign-extended 64-bit varint; truncating is the decoding.
            (Ty::I32, Raw::Varint(v)) => Ok(Value::from(v as i32)),
            (Ty::I64, Raw::Varint(v)) => Ok(Value::from(v as i64)),
            (Ty::Bool, Raw::Varint(v)) => Ok(Value::Bool(v != 0)),
            (Ty::F64, Raw::Fixed64(bits)) => Number::from_f64(f64::from_bits(bits))
                .map(Value::Number)
                .ok_or(ProtobufError::NonFiniteNumber {
                    message: self.msg.name,
                    field: self.field.json,
                }),
            (Ty::F64, other) => Err(self.mismatch(WireType::Fixed64, other)),
            (_, other) => Err(self.mismatch(WireType::Varint, other)),
        }
    }

    /// The JSON form of one value; `None` for a value Go treats as unset (a zero time).
    fn value(&self, raw: Raw<'_>) -> Result<Option<Value>, ProtobufError> {
        let value = match self.field.ty {
            Ty::I32 | Ty::I64 | Ty::Bool | Ty::F64 => self.scalar(raw)?,
            Ty::Str => Value::String(self.string(self.bytes(raw)?)?),
            Ty::Bytes => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(self.bytes(raw)?))
            }
            Ty::Msg(index) => {
                let inner = schema::message(index);
                Value::Object(message(self.bytes(raw)?, inner, self.depth + 1)?)
            }
            Ty::Time | Ty::MicroTime => return self.time(self.bytes(raw)?),
            Ty::Duration => Value::String(go_duration(self.fields(raw)?.int(1))),
            Ty::Quantity => {
                // Go's zero Quantity prints as "0".
                Value::String(
                    self.fields(raw)?
                        .string(1)
                        .unwrap_or_else(|| "0".to_string()),
                )
            }
            Ty::IntOrString => {
                let f = self.fields(raw)?;
                if f.int(1) == 1 {
                    Value::String(f.string(3).unwrap_or_default())
                } else {
                    // intVal is an int32 on the wire, sign-extended like any other.
                    Value::from(f.int(2) as i32)
                }
            }
            Ty::FieldsV1 | Ty::RawExtension => return self.embedded(self.fields(raw)?.bytes(1)),
        };
        Ok(Some(value))
    }

    fn time(&self, bytes: &[u8]) -> Result<Option<Value>, ProtobufError> {
        // Go writes a zero time as an empty message.
        if bytes.is_empty() {
            return Ok(None);
        }
        let f = self.fields(Raw::Len(bytes))?;
        let (seconds, nanos) = (f.int(1), f.int(2));
        let invalid = ProtobufError::InvalidTimestamp {
            message: self.msg.name,
            field: self.field.json,
            seconds,
            nanos,
        };
        let nanos = u32::try_from(nanos).map_err(|_| invalid.clone())?;
        let t = chrono::DateTime::from_timestamp(seconds, nanos).ok_or(invalid)?;
        let text = match self.field.ty {
            Ty::MicroTime => t.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
            _ => t.format("%Y-%m-%dT%H:%M:%SZ"),
        };
        Ok(Some(Value::String(text.to_string())))
    }

    /// FieldsV1 bytes (JSON) or RawExtension bytes (JSON, or a nested protobuf object).
    fn embedded(&self, raw: Option<&[u8]>) -> Result<Option<Value>, ProtobufError> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        if self.field.ty == Ty::RawExtension && raw.starts_with(&super::MAGIC) {
            return super::decode_at(raw, self.depth + 1).map(Some);
        }
        serde_json::from_slice(raw)
            .map(Some)
            .map_err(|e| ProtobufError::InvalidEmbeddedJson {
                message: self.msg.name,
                field: self.field.json,
                reason: e.to_string(),
            })
    }

    /// A `map<string, V>` entry: key in field 1, value in field 2.
    fn map_entry(&self, entry: &[u8]) -> Result<(String, Value), ProtobufError> {
        let (mut key, mut value) = (String::new(), None);
        let mut reader = Reader::new(entry);
        while !reader.is_empty() {
            match reader.field()? {
                (1, raw) => key = self.string(self.bytes(raw)?)?,
                (2, raw) => value = self.value(raw)?,
                _ => {}
            }
        }
        let value = value.unwrap_or_else(|| match self.field.ty {
            Ty::Msg(_) => Value::Object(Map::new()),
            Ty::Quantity => Value::String("0".to_string()),
            _ => Value::String(String::new()),
        });
        Ok((key, value))
    }

    /// The few fields of a special message (Time, Quantity, IntOrString, ...).
    fn fields<'a>(&self, raw: Raw<'a>) -> Result<SmallFields<'a>, ProtobufError> {
        let mut out = SmallFields::default();
        let mut reader = Reader::new(self.bytes(raw)?);
        while !reader.is_empty() {
            let (tag, raw) = reader.field()?;
            if let Some(slot) = usize::try_from(tag).ok().and_then(|t| out.0.get_mut(t)) {
                *slot = Some(raw);
            }
        }
        Ok(out)
    }
}

/// Fields 1..=3 of a special message; the last occurrence wins, as in protobuf.
#[derive(Default)]
struct SmallFields<'a>([Option<Raw<'a>>; 4]);

impl<'a> SmallFields<'a> {
    fn int(&self, tag: usize) -> i64 {
        match self.0.get(tag) {
            Some(Some(Raw::Varint(v))) => *v as i64,
            _ => 0,
        }
    }

    fn bytes(&self, tag: usize) -> Option<&'a [u8]> {
        match self.0.get(tag) {
            Some(Some(Raw::Len(b))) => Some(b),
            _ => None,
        }
    }

    fn string(&self, tag: usize) -> Option<String> {
        self.bytes(tag)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// Go's `time.Duration.String()`: `1h0m0s`, `1m30s`, `1.5s`, `100ms`, `0s`.
pub(super) fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let u = nanos.unsigned_abs();
    let frac = |v: u64, digits: usize| {
        if v == 0 {
            String::new()
        } else {
            format!(".{:0digits$}", v).trim_end_matches('0').to_string()
        }
    };
    let text = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}{}µs", u / 1_000, frac(u % 1_000, 3))
    } else if u < 1_000_000_000 {
        format!("{}{}ms", u / 1_000_000, frac(u % 1_000_000, 6))
    } else {
        let secs = u / 1_000_000_000;
        let s = format!("{}{}s", secs % 60, frac(u % 1_000_000_000, 9));
        match (secs / 3600, secs / 60 % 60) {
            (0, 0) => s,
            (0, m) => format!("{m}m{s}"),
            (h, m) => format!("{h}h{m}m{s}"),
        }
    };
    if nanos < 0 {
        format!("-{text}")
    } else {
        text
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
