//! Counting HTTP/1.x responses in the backend→client byte stream.
//!
//! A small state machine follows the response framing (status line and
//! headers, then a `Content-Length` body, a chunked body, or a body that
//! lasts until the connection closes) so that keep-alive and pipelined
//! responses are each counted once, with their status code. It only looks
//! at bytes; it never buffers a body. A stream that does not start with
//! `HTTP/` (or stops following HTTP framing) turns the meter *opaque*: the
//! connection then counts as one request with no status code.
//!
//! Known limit: the request direction is not parsed, so a response to a
//! `HEAD` request that carries a `Content-Length` makes the meter skip that
//! many bytes of the next response; it then usually goes opaque.

/// Response heads larger than this are not HTTP as far as the meter cares.
const MAX_HEAD: usize = 16 * 1024;
/// A chunk-size line longer than this is malformed.
const MAX_CHUNK_LINE: usize = 1024;
/// Headers parsed per response head.
const MAX_HEADERS: usize = 64;

/// Where the meter is in the response stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Collecting a status line and headers (bytes kept in `head`).
    Head,
    /// Skipping `remaining` body bytes.
    Body { remaining: u64 },
    /// Reading a chunk-size line (bytes kept in `line`).
    ChunkSize,
    /// Skipping chunk data and then its CRLF (`remaining` includes the 2).
    ChunkData { remaining: u64 },
    /// Reading trailer lines after the last chunk, until an empty line.
    Trailers,
    /// The body lasts until the connection closes (or 101 switched protocol).
    UntilClose,
    /// Not HTTP (or framing lost): nothing more is parsed.
    Opaque,
}

/// Follows one connection's backend→client bytes.
#[derive(Debug)]
pub struct ResponseMeter {
    state: State,
    head: Vec<u8>,
    line: Vec<u8>,
    responses: u64,
}

impl Default for ResponseMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseMeter {
    pub fn new() -> Self {
        Self {
            state: State::Head,
            head: Vec::new(),
            line: Vec::new(),
            responses: 0,
        }
    }

    /// How many responses were counted so far.
    pub fn responses(&self) -> u64 {
        self.responses
    }

    /// Whether the stream turned out not to be (or stopped being) HTTP.
    pub fn is_opaque(&self) -> bool {
        self.state == State::Opaque
    }

    /// Feeds the next bytes; calls `on_response(status)` for every
    /// response head completed in them.
    pub fn feed(&mut self, mut data: &[u8], on_response: &mut impl FnMut(u16)) {
        while !data.is_empty() {
            match &mut self.state {
                State::Opaque | State::UntilClose => return,
                State::Body { remaining } => {
                    let take = (*remaining).min(data.len() as u64);
                    *remaining -= take;
                    data = &data[take as usize..];
                    if *remaining == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkData { remaining } => {
                    let take = (*remaining).min(data.len() as u64);
                    *remaining -= take;
                    data = &data[take as usize..];
                    if *remaining == 0 {
                        self.state = State::ChunkSize;
                    }
                }
                State::Head => {
                    // Skip stray CRLFs between responses (RFC 9112 §2.2).
                    if self.head.is_empty() {
                        let skip = data
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        data = &data[skip..];
                        if data.is_empty() {
                            return;
                        }
                    }
                    let start = self.head.len();
                    self.head.extend_from_slice(data);
                    if !looks_like_http(&self.head) {
                        self.become_opaque();
                        return;
                    }
                    // Search only where the terminator can newly appear.
                    let from = start.saturating_sub(3);
                    match find(&self.head[from..], b"\r\n\r\n") {
                        Some(at) => {
                            let end = from + at + 4;
                            let consumed = end - start;
                            data = &data[consumed..];
                            let head = std::mem::take(&mut self.head);
                            self.finish_head(&head[..end], on_response);
                        }
                        None => {
                            if self.head.len() > MAX_HEAD {
                                self.become_opaque();
                            }
                            return;
                        }
                    }
                }
                State::ChunkSize | State::Trailers => {
                    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(data);
                        if self.line.len() > MAX_CHUNK_LINE {
                            self.become_opaque();
                        }
                        return;
                    };
                    self.line.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.finish_line(&line);
                }
            }
        }
    }

    fn become_opaque(&mut self) {
        self.state = State::Opaque;
        self.head = Vec::new();
        self.line = Vec::new();
    }

    fn finish_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.state == State::Trailers {
            if line.is_empty() {
                self.state = State::Head;
            }
            return;
        }
        let size = line.split(|b| *b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size)
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim(), 16).ok());
        self.state = match size {
            Some(0) => State::Trailers,
            Some(n) => match n.checked_add(2) {
                Some(remaining) => State::ChunkData { remaining },
                None => State::Opaque,
            },
            None => State::Opaque,
        };
    }

    fn finish_head(&mut self, head: &[u8], on_response: &mut impl FnMut(u16)) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = response.parse(head) else {
            self.become_opaque();
            return;
        };
        let Some(code) = response.code else {
            self.become_opaque();
            return;
        };
        let mut chunked = false;
        let mut length = None;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = std::str::from_utf8(h.value)
                    .map(|v| {
                        v.rsplit(',')
                            .next()
                            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
                    })
                    .unwrap_or(false);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            }
        }
        // 1xx interim responses (except 101) are followed by the real one.
        if (100..200).contains(&code) && code != 101 {
            self.state = State::Head;
            return;
        }
        self.responses += 1;
        on_response(code);
        self.state = if code == 101 {
            State::UntilClose
        } else if code == 204 || code == 304 {
            State::Head
        } else if chunked {
            State::ChunkSize
        } else {
            match length {
                Some(0) => State::Head,
                Some(n) => State::Body { remaining: n },
                None => State::UntilClose,
            }
        };
    }
}

/// Whether `bytes` can still be the start of an HTTP/1.x status line.
fn looks_like_http(bytes: &[u8]) -> bool {
    let prefix = b"HTTP/";
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(chunks: &[&[u8]]) -> (Vec<u16>, ResponseMeter) {
        let mut meter = ResponseMeter::new();
        let mut seen = Vec::new();
        for chunk in chunks {
            meter.feed(chunk, &mut |c| seen.push(c));
        }
        (seen, meter)
    }

    #[test]
    fn a_content_length_response_counts_once_with_its_status() {
        let (seen, meter) = codes(&[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"]);
        assert_eq!(seen, vec![200]);
        assert!(!meter.is_opaque());
    }

    #[test]
    fn keep_alive_responses_split_at_any_byte_each_count_once() {
        let stream: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\nHTTP/1.1 404 NF\r\nContent-Length: 2\r\n\r\nno";
        for split in 1..stream.len() {
            let (seen, _) = codes(&[&stream[..split], &stream[split..]]);
            assert_eq!(seen, vec![200, 503, 404], "split at {split}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(codes(&bytes).0, vec![200, 503, 404]);
    }

    #[test]
    fn a_body_that_looks_like_a_response_is_not_counted() {
        let (seen, _) = codes(&[
            b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
        ]);
        assert_eq!(seen, vec![200]);
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers_are_followed_to_the_next_response() {
        let stream: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\nHTTP/1.1 502 Bad\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for split in 1..stream.len() {
            let (seen, meter) = codes(&[&stream[..split], &stream[split..]]);
            assert_eq!(seen, vec![200, 502], "split at {split}");
            assert!(!meter.is_opaque());
        }
    }

    #[test]
    fn interim_100_continue_is_not_a_response_but_204_and_304_have_no_body() {
        let (seen, _) = codes(&[
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        ]);
        assert_eq!(seen, vec![204, 304, 201]);
    }

    #[test]
    fn a_response_without_length_lasts_until_the_connection_closes() {
        let (seen, _) =
            codes(&[b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nHTTP/1.1 500 x\r\n\r\n"]);
        assert_eq!(seen, vec![200]);
    }

    #[test]
    fn non_http_bytes_make_the_meter_opaque() {
        let (seen, meter) = codes(&[b"SSH-2.0-OpenSSH_9.2\r\n"]);
        assert!(seen.is_empty());
        assert!(meter.is_opaque());
        let (_, meter) = codes(&[b"HT", b"TX/1.1"]);
        assert!(meter.is_opaque());
    }

    #[test]
    fn a_malformed_chunk_size_makes_the_meter_opaque_after_the_head() {
        let (seen, meter) =
            codes(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]);
        assert_eq!(seen, vec![200]);
        assert!(meter.is_opaque());
    }

    #[test]
    fn an_endless_head_is_given_up_on() {
        let mut meter = ResponseMeter::new();
        meter.feed(b"HTTP/1.1 200 OK\r\n", &mut |_| {});
        let filler = vec![b'a'; MAX_HEAD + 1];
        meter.feed(&filler, &mut |_| {});
        assert!(meter.is_opaque());
    }
}
