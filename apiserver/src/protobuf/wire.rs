//! The protobuf wire format: varints, field keys and length-delimited slices.
//!
//! Only what Kubernetes' gogo-protobuf encoding uses: wire types 0 (varint),
//! 1 (64-bit), 2 (length-delimited) and 5 (32-bit). Groups (3, 4) are
//! rejected; no Kubernetes message has them.

use super::ProtobufError;

/// How a field's value is laid out on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    pub(super) fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::Len => "length-delimited",
            WireType::Fixed32 => "fixed32",
        }
    }
}

/// One field's raw value, before the schema gives it a meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl Raw<'_> {
    pub(super) fn wire_type(&self) -> WireType {
        match self {
            Raw::Varint(_) => WireType::Varint,
            Raw::Fixed64(_) => WireType::Fixed64,
            Raw::Len(_) => WireType::Len,
            Raw::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// A cursor over one encoded message.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or(ProtobufError::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                // The tenth byte may only carry the top bit of a u64.
                if shift == 63 && byte > 1 {
                    return Err(ProtobufError::VarintOverflow);
                }
                return Ok(value);
            }
        }
        Err(ProtobufError::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(n).ok_or(ProtobufError::Truncated)?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(ProtobufError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ProtobufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads the next `(field number, value)` pair.
    pub(super) fn field(&mut self) -> Result<(u32, Raw<'a>), ProtobufError> {
        let key = self.varint()?;
        let number =
            u32::try_from(key >> 3).map_err(|_| ProtobufError::InvalidFieldNumber(key >> 3))?;
        if number == 0 {
            return Err(ProtobufError::InvalidFieldNumber(0));
        }
        let raw = match key & 7 {
            0 => Raw::Varint(self.varint()?),
            1 => Raw::Fixed64(u64::from_le_bytes(self.fixed()?)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Truncated)?;
                Raw::Len(self.take(len)?)
            }
            5 => Raw::Fixed32(u32::from_le_bytes(self.fixed()?)),
            other => {
                return Err(ProtobufError::UnsupportedWireType {
                    field: number,
                    wire_type: other as u8,
                })
            }
        };
        Ok((number, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_varint_spanning_several_bytes_is_little_endian_base_128() {
        let mut r = Reader::new(&[0xac, 0x02, 0x01]);
        assert_eq!(r.varint(), Ok(300));
        assert_eq!(r.varint(), Ok(1));
        assert!(r.is_empty());
    }

    #[test]
    fn the_largest_varint_decodes_and_one_bit_more_is_an_overflow() {
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(
            Reader::new(&too_big).varint(),
            Err(ProtobufError::VarintOverflow)
        );
        let too_long = [0x80; 11];
        assert_eq!(
            Reader::new(&too_long).varint(),
            Err(ProtobufError::VarintOverflow)
        );
    }

    #[test]
    fn fields_of_every_supported_wire_type_are_read() {
        let bytes = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x12, 0x02, b'h', b'i', // 2: "hi"
            0x1d, 1, 0, 0, 0, // 3: fixed32 1
            0x21, 2, 0, 0, 0, 0, 0, 0, 0, // 4: fixed64 2
        ];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.field(), Ok((1, Raw::Varint(150))));
        assert_eq!(r.field(), Ok((2, Raw::Len(b"hi"))));
        assert_eq!(r.field(), Ok((3, Raw::Fixed32(1))));
        assert_eq!(r.field(), Ok((4, Raw::Fixed64(2))));
        assert!(r.is_empty());
    }

    #[test]
    fn a_length_past_the_end_of_the_buffer_is_truncated_not_a_panic() {
        assert_eq!(
            Reader::new(&[0x12, 0x05, b'a']).field(),
            Err(ProtobufError::Truncated)
        );
        let huge = [
            0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(Reader::new(&huge).field(), Err(ProtobufError::Truncated));
        assert_eq!(
            Reader::new(&[0x21, 0x00]).field(),
            Err(ProtobufError::Truncated)
        );
    }

    #[test]
    fn groups_and_field_number_zero_are_rejected() {
        assert_eq!(
            Reader::new(&[0x0b]).field(),
            Err(ProtobufError::UnsupportedWireType {
                field: 1,
                wire_type: 3
            })
        );
        assert_eq!(
            Reader::new(&[0x00, 0x00]).field(),
            Err(ProtobufError::InvalidFieldNumber(0))
        );
    }
}
