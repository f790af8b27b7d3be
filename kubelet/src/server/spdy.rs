//! The subset of SPDY/3.1 framing `kubectl port-forward` needs: kubectl
//! 1.31+ tunnels a SPDY session inside a WebSocket (subprotocol
//! `SPDY/3.1+portforward.k8s.io`), and opens two streams per forwarded
//! connection (`streamtype: error` and `streamtype: data`, with `port` and
//! `requestid` headers).
//!
//! Frames: an 8-byte header, then the payload. Control frames start with
//! the control bit, version 3 and a type (SYN_STREAM 1, SYN_REPLY 2,
//! RST_STREAM 3, SETTINGS 4, PING 6, GOAWAY 7, HEADERS 8, WINDOW_UPDATE 9);
//! data frames start with the 31-bit stream ID. Flag 0x01 is FIN. Header
//! blocks are one zlib stream per direction: the client's is compressed
//! with SPDY/3's preset dictionary; ours is compressed without one (a zlib
//! reader given the dictionary uses it only when the stream asks for it).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// FIN: the sender's last frame on this stream.
pub const FLAG_FIN: u8 = 0x01;
const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
/// Frames longer than this are refused (kubectl sends at most 32 KiB).
const MAX_FRAME: usize = 1 << 24;

/// RST_STREAM status: the stream was refused.
pub const REFUSED_STREAM: u32 = 3;

/// Errors decoding the client's frames.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    /// A header block did not decompress.
    #[error("SPDY header block: {0}")]
    Compression(String),
    /// A frame or header block is malformed.
    #[error("malformed SPDY frame: {0}")]
    Malformed(&'static str),
}

/// A decoded frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A new stream, with its (lower-case) headers.
    SynStream {
        /// The stream ID.
        stream_id: u32,
        /// Frame flags.
        flags: u8,
        /// Header names and values.
        headers: Vec<(String, String)>,
    },
    /// Stream data.
    Data {
        /// The stream ID.
        stream_id: u32,
        /// Frame flags ([`FLAG_FIN`]).
        flags: u8,
        /// The payload.
        data: Vec<u8>,
    },
    /// The stream was reset.
    RstStream {
        /// The stream ID.
        stream_id: u32,
    },
    /// A ping to echo.
    Ping {
        /// Its ID.
        id: u32,
    },
    /// The client is going away.
    GoAway,
    /// Anything else (SETTINGS, WINDOW_UPDATE, HEADERS...): nothing to do.
    Other,
}

/// SPDY/3's header compression dictionary: length-prefixed common header
/// names and values, then common value fragments.
pub(crate) fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,",
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut dict = Vec::with_capacity(1424);
    for word in WORDS {
        let len = u32::try_from(word.len()).unwrap_or(0);
        dict.extend_from_slice(&len.to_be_bytes());
        dict.extend_from_slice(word.as_bytes());
    }
    dict.extend_from_slice(TAIL.as_bytes());
    dict
}

fn be32(bytes: &[u8], at: usize) -> Result<u32, SpdyError> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(SpdyError::Malformed("truncated field"))
}

/// One session's framing state: the two header compression contexts.
pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
    dictionary: Vec<u8>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    /// Fresh compression contexts.
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::default(), true),
            dictionary: dictionary(),
        }
    }

    /// Takes one complete frame off the front of `buffer`, if there is one.
    pub fn next_frame(&mut self, buffer: &mut Vec<u8>) -> Result<Option<Frame>, SpdyError> {
        if buffer.len() < 8 {
            return Ok(None);
        }
        let length =
            usize::from(buffer[5]) << 16 | usize::from(buffer[6]) << 8 | usize::from(buffer[7]);
        if length > MAX_FRAME {
            return Err(SpdyError::Malformed("frame too long"));
        }
        if buffer.len() < 8 + length {
            return Ok(None);
        }
        let frame: Vec<u8> = buffer.drain(..8 + length).collect();
        let flags = frame[4];
        let payload = &frame[8..];
        if frame[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: be32(&frame, 0)? & 0x7fff_ffff,
                flags,
                data: payload.to_vec(),
            }));
        }
        let kind = u16::from_be_bytes([frame[2], frame[3]]);
        Ok(Some(match kind {
            SYN_STREAM => {
                let stream_id = be32(payload, 0)? & 0x7fff_ffff;
                let block = payload
                    .get(10..)
                    .ok_or(SpdyError::Malformed("short SYN_STREAM"))?;
                let headers = parse_headers(&self.inflate(block)?)?;
                Frame::SynStream {
                    stream_id,
                    flags,
                    headers,
                }
            }
            HEADERS => {
                // Decompressed only to keep the zlib context in step.
                let block = payload
                    .get(4..)
                    .ok_or(SpdyError::Malformed("short HEADERS"))?;
                self.inflate(block)?;
                Frame::Other
            }
            RST_STREAM => Frame::RstStream {
                stream_id: be32(payload, 0)? & 0x7fff_ffff,
            },
            PING => Frame::Ping {
                id: be32(payload, 0)?,
            },
            GOAWAY => Frame::GoAway,
            _ => Frame::Other,
        }))
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(1024);
        let mut offset = 0;
        loop {
            if out.capacity() - out.len() < 512 {
                out.reserve(4096);
            }
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let result =
                self.inflate
                    .decompress_vec(&input[offset..], &mut out, FlushDecompress::Sync);
            offset += usize::try_from(self.inflate.total_in() - before_in).unwrap_or(0);
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                    continue;
                }
                Err(error) => return Err(SpdyError::Compression(error.to_string())),
            }
            let progressed =
                self.inflate.total_in() != before_in || self.inflate.total_out() != before_out;
            let room_left = out.capacity() > out.len();
            if (offset >= input.len() && room_left) || !progressed {
                break;
            }
        }
        Ok(out)
    }

    fn deflate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut offset = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            let _ = self
                .deflate
                .compress_vec(&input[offset..], &mut out, FlushCompress::Sync);
            offset += usize::try_from(self.deflate.total_in() - before).unwrap_or(0);
            if offset >= input.len() && out.capacity() > out.len() {
                return out;
            }
        }
    }

    /// SYN_REPLY accepting `stream_id` (no headers).
    pub fn syn_reply(&mut self, stream_id: u32) -> Vec<u8> {
        let mut payload = stream_id.to_be_bytes().to_vec();
        payload.extend(self.deflate(&0_u32.to_be_bytes()));
        control(SYN_REPLY, 0, &payload)
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    frame.extend_from_slice(&len[1..]);
    frame.extend_from_slice(payload);
    frame
}

/// A DATA frame.
pub fn data(stream_id: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    frame.push(flags);
    let len = u32::try_from(data.len()).unwrap_or(0).to_be_bytes();
    frame.extend_from_slice(&len[1..]);
    frame.extend_from_slice(data);
    frame
}

/// The reply to a PING.
pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

/// RST_STREAM with `status`.
pub fn rst_stream(stream_id: u32, status: u32) -> Vec<u8> {
    let mut payload = stream_id.to_be_bytes().to_vec();
    payload.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &payload)
}

/// Decodes a decompressed header block; names are lower-cased.
pub fn parse_headers(block: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
    let count = be32(block, 0)?;
    let mut at = 4;
    let mut headers = Vec::new();
    let field = |at: &mut usize| -> Result<String, SpdyError> {
        let len = usize::try_from(be32(block, *at)?).unwrap_or(usize::MAX);
        let start = *at + 4;
        let bytes = block
            .get(start..start.saturating_add(len))
            .ok_or(SpdyError::Malformed("truncated header"))?;
        *at = start + len;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    };
    for _ in 0..count.min(1024) {
        let name = field(&mut at)?.to_ascii_lowercase();
        let value = field(&mut at)?;
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = u32::try_from(headers.len())
            .expect("count")
            .to_be_bytes()
            .to_vec();
        for (name, value) in headers {
            for text in [name, value] {
                out.extend_from_slice(&u32::try_from(text.len()).expect("len").to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }

    /// A SYN_STREAM as a client writes it: headers compressed with the
    /// preset dictionary.
    fn client_syn_stream(
        compress: &mut Compress,
        stream_id: u32,
        headers: &[(&str, &str)],
    ) -> Vec<u8> {
        let raw = block(headers);
        let mut compressed = Vec::with_capacity(raw.len() + 64);
        compress
            .compress_vec(&raw, &mut compressed, FlushCompress::Sync)
            .expect("compress");
        let mut payload = stream_id.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend(compressed);
        control(SYN_STREAM, 0, &payload)
    }

    #[test]
    fn the_dictionary_has_spdy3s_length() {
        assert_eq!(dictionary().len(), 1423);
    }

    #[test]
    fn syn_streams_compressed_with_the_dictionary_decode_in_sequence() {
        let mut client = Compress::new(Compression::default(), true);
        client.set_dictionary(&dictionary()).expect("dictionary");
        let mut wire = client_syn_stream(
            &mut client,
            1,
            &[
                ("streamType", "error"),
                ("port", "8080"),
                ("requestID", "0"),
            ],
        );
        wire.extend(client_syn_stream(
            &mut client,
            3,
            &[("streamType", "data"), ("port", "8080"), ("requestID", "0")],
        ));
        wire.extend(data(3, FLAG_FIN, b"GET /"));
        let mut codec = Codec::new();
        let first = codec.next_frame(&mut wire).expect("decode");
        assert_eq!(
            first,
            Some(Frame::SynStream {
                stream_id: 1,
                flags: 0,
                headers: vec![
                    ("streamtype".into(), "error".into()),
                    ("port".into(), "8080".into()),
                    ("requestid".into(), "0".into()),
                ]
            })
        );
        let second = codec.next_frame(&mut wire).expect("decode");
        assert!(
            matches!(&second, Some(Frame::SynStream { stream_id: 3, headers, .. }) if headers[0].1 == "data"),
            "{second:?}"
        );
        assert_eq!(
            codec.next_frame(&mut wire).expect("decode"),
            Some(Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: b"GET /".to_vec()
            })
        );
        assert!(wire.is_empty());
    }

    #[test]
    fn an_incomplete_frame_waits_for_more_bytes() {
        let mut codec = Codec::new();
        let mut wire = ping(7);
        let rest = wire.split_off(5);
        assert_eq!(codec.next_frame(&mut wire).expect("partial"), None);
        wire.extend(rest);
        assert_eq!(
            codec.next_frame(&mut wire).expect("whole"),
            Some(Frame::Ping { id: 7 })
        );
    }

    #[test]
    fn our_syn_replies_decompress_with_a_plain_zlib_reader() {
        let mut codec = Codec::new();
        let mut reader = Decompress::new(true);
        for stream_id in [1_u32, 3] {
            let reply = codec.syn_reply(stream_id);
            assert_eq!(reply[..4], [0x80, 3, 0, 2]);
            assert_eq!(be32(&reply, 8).expect("id"), stream_id);
            let mut out = Vec::with_capacity(64);
            reader
                .decompress_vec(&reply[12..], &mut out, FlushDecompress::Sync)
                .expect("inflate");
            assert_eq!(out, vec![0, 0, 0, 0]);
        }
    }
}
