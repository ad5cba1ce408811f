//! A small sans-IO HTTP/1.1 client: build a request (any method, headers, a body with
//! `Content-Length` or chunked), read a response incrementally, tell whether the connection
//! can carry the next request (keep-alive).
//!
//! This is the one HTTP client parser of the project: the engine's directory fetches over
//! BEGIN_DIR use it, and so does the browser OP's `fetch()` over a stream.
//!
//! ```text
//! let req = Request::get("example.com", "/index.html")?.header("Accept", "*/*")?.to_bytes();
//! send(req);
//! let mut parser = ResponseParser::new(Limits::default());
//! loop {
//!     for ev in parser.feed(&received)? {                  // any split of the bytes
//!         match ev {
//!             HttpEvent::Head(head) => ...,                 // status, headers
//!             HttpEvent::Body(chunk) => ...,                // de-chunked body bytes
//!             HttpEvent::End => ...,                        // complete
//!         }
//!     }
//! }
//! // when the connection closes:
//! parser.finish()?;       // End for a body delimited by the close, or an error if truncated
//! // after End: may the connection carry the next request?
//! parser.reusable();
//! ```
//!
//! A request with a body: `Request::new("POST", host, path)?.body(bytes)` sends
//! `Content-Length`; `.chunked()` sends only the head with `Transfer-Encoding: chunked`, then
//! the caller sends [`encode_chunk`] for every piece and [`LAST_CHUNK`] at the end. The caller
//! cannot set `Content-Length`, `Transfer-Encoding` or `Host` itself: the framing is always the
//! one the body was built with, so a request cannot be smuggled into another.
//!
//! The head is parsed with `httparse`; the body is delimited by `Content-Length`, by
//! `Transfer-Encoding: chunked` (chunk extensions and trailers skipped), or by the end of the
//! connection. Informational responses (1xx) are skipped. Everything is bounded by
//! [`Limits`]: the head's size and header count, a chunk-size line, and the body's size.
//! Hostile bytes give a typed [`HttpError`], never a panic.
//!
//! [`inflate`] decodes `deflate` (zlib) bodies, as Tor directory servers send for `.z` URLs.

use thiserror::Error;

/// Why a request could not be built or a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The request's host, path or a header has a forbidden character.
    #[error("invalid request {0}")]
    InvalidRequest(&'static str),
    /// The response head is malformed.
    #[error("malformed response head: {0}")]
    BadHead(String),
    /// The response head is larger than [`Limits::max_head`].
    #[error("response head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The response has more headers than [`Limits::max_headers`].
    #[error("more than {0} response headers")]
    TooManyHeaders(usize),
    /// `Content-Length` is malformed, or given twice with different values.
    #[error("bad Content-Length")]
    BadContentLength,
    /// A transfer coding other than `chunked` (alone or last).
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// The chunked encoding is malformed.
    #[error("bad chunked encoding: {0}")]
    BadChunk(&'static str),
    /// The body is larger than [`Limits::max_body`].
    #[error("response body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The connection closed before the response was complete.
    #[error("connection closed before the end of the response")]
    Truncated,
    /// Bytes arrived after the end of the response.
    #[error("data after the end of the response")]
    TrailingData,
    /// A compressed body could not be inflated (or inflates beyond the limit).
    #[error("cannot inflate the body: {0}")]
    Inflate(&'static str),
}

// ----- requests ------------------------------------------------------------------------

/// An HTTP/1.1 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    body: RequestBody,
}

/// How a request's body is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RequestBody {
    /// No body (`Content-Length: 0` for methods that expect one).
    None,
    /// These bytes, with `Content-Length`.
    Bytes(Vec<u8>),
    /// `Transfer-Encoding: chunked`: the caller sends the chunks after the head.
    Chunked,
}

/// The chunk ending a chunked request body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// One chunk of a chunked body: size in hex, CRLF, the data, CRLF. Empty data gives nothing
/// (an empty chunk would end the body: send [`LAST_CHUNK`] for that).
pub fn encode_chunk(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.reserve(data.len().saturating_add(2));
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// Whether `s` is a token (RFC 9110 §5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `s` has no control character (tab allowed when `tab`).
fn no_ctl(s: &str, tab: bool) -> bool {
    s.bytes()
        .all(|b| !(b.is_ascii_control() && !(tab && b == b'\t')) && b != 0x7f)
}

/// Headers the request sets itself from its host and body.
const FRAMING_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "host"];

impl Request {
    /// `GET path` with `Host: host`. The path must start with `/` and contain no space or
    /// control character; the host no space, `/` or control character.
    pub fn get(host: &str, path: &str) -> Result<Self, HttpError> {
        Self::new("GET", host, path)
    }

    /// `method path` with `Host: host`; the method must be a token (`GET`, `POST`, ...; case
    /// kept), the host and path as for [`Request::get`]. `CONNECT` and `TRACE` are refused.
    pub fn new(method: &str, host: &str, path: &str) -> Result<Self, HttpError> {
        if !is_token(method)
            || method.eq_ignore_ascii_case("CONNECT")
            || method.eq_ignore_ascii_case("TRACE")
        {
            return Err(HttpError::InvalidRequest("method"));
        }
        if !path.starts_with('/') || !no_ctl(path, false) || path.contains(' ') {
            return Err(HttpError::InvalidRequest("path"));
        }
        if host.is_empty() || !no_ctl(host, false) || host.contains([' ', '/']) {
            return Err(HttpError::InvalidRequest("host"));
        }
        Ok(Request {
            method: method.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: RequestBody::None,
        })
    }

    /// Add a header (name a token; value without CR, LF or other control characters).
    /// `Content-Length`, `Transfer-Encoding` and `Host` are refused: the request sets them.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HttpError> {
        if !is_token(name) {
            return Err(HttpError::InvalidRequest("header name"));
        }
        if FRAMING_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return Err(HttpError::InvalidRequest("framing header"));
        }
        if !no_ctl(value, true) {
            return Err(HttpError::InvalidRequest("header value"));
        }
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Send `body` with `Content-Length` (replaces any body set before).
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = RequestBody::Bytes(body);
        self
    }

    /// Send the body chunked: [`Request::to_bytes`] gives the head only, with
    /// `Transfer-Encoding: chunked`; the caller then sends [`encode_chunk`] pieces and
    /// [`LAST_CHUNK`].
    pub fn chunked(mut self) -> Self {
        self.body = RequestBody::Chunked;
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Whether the response to this request has no body whatever its headers say (HEAD).
    pub fn is_head(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }

    /// The request's bytes: the head, then the body if it was given with [`Request::body`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.path, self.host
        );
        for (n, v) in &self.headers {
            s.push_str(n);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        match &self.body {
            RequestBody::Bytes(b) => s.push_str(&format!("Content-Length: {}\r\n", b.len())),
            RequestBody::Chunked => s.push_str("Transfer-Encoding: chunked\r\n"),
            RequestBody::None => {
                // RFC 9110 §8.6: a user agent should send Content-Length for a method that
                // expects content even when there is none.
                if ["POST", "PUT", "PATCH"]
                    .iter()
                    .any(|m| self.method.eq_ignore_ascii_case(m))
                {
                    s.push_str("Content-Length: 0\r\n");
                }
            }
        }
        s.push_str("\r\n");
        let mut out = s.into_bytes();
        if let RequestBody::Bytes(b) = &self.body {
            out.extend_from_slice(b);
        }
        out
    }
}

// ----- responses -----------------------------------------------------------------------

/// Bounds on a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest head (status line and headers), bytes.
    pub max_head: usize,
    /// Most headers.
    pub max_headers: usize,
    /// Largest body (after de-chunking), bytes.
    pub max_body: u64,
}

impl Default for Limits {
    /// 64 KiB of head, 100 headers, 16 MiB of body.
    fn default() -> Self {
        Limits {
            max_head: 64 << 10,
            max_headers: 100,
            max_body: 16 << 20,
        }
    }
}

/// A response's status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The headers, in order (names as received).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ResponseHead {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first header named `name` as text, trimmed, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the `Connection` headers list `token` (case-insensitive).
    fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether the server keeps the connection open after this response: HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.version >= 1 {
            !self.connection_has("close")
        } else {
            self.connection_has("keep-alive") && !self.connection_has("close")
        }
    }
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpEvent {
    /// The head (once, before any body).
    Head(ResponseHead),
    /// Body bytes (de-chunked), in order.
    Body(Vec<u8>),
    /// The response is complete.
    End,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// This many bytes remain.
    Length(u64),
    /// Chunked, in this state.
    Chunked(Chunk),
    /// Until the connection closes.
    UntilClose,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many data bytes of the chunk remain.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines until an empty one.
    Trailer,
}

/// Where the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body(Body),
    Done,
    Failed,
}

/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 << 10;

/// An incremental response parser. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct ResponseParser {
    limits: Limits,
    phase: Phase,
    /// Unparsed bytes: the head so far, or a partial chunk line.
    buf: Vec<u8>,
    /// Body bytes delivered so far.
    body_len: u64,
    /// The request was HEAD: no body whatever the headers say.
    head_request: bool,
    /// The head allows another request on the connection and the body has a known end.
    persistent: bool,
}

impl ResponseParser {
    /// A parser for the response to a GET.
    pub fn new(limits: Limits) -> Self {
        ResponseParser {
            limits,
            phase: Phase::Head,
            buf: Vec::new(),
            body_len: 0,
            head_request: false,
            persistent: false,
        }
    }

    /// A parser for the response to a HEAD request (no body).
    pub fn for_head_request(limits: Limits) -> Self {
        ResponseParser {
            head_request: true,
            ..Self::new(limits)
        }
    }

    /// Whether the response is complete.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Body bytes delivered so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Whether the connection may carry another request: the response is complete, its body
    /// was not delimited by the close, and the server did not ask to close
    /// ([`ResponseHead::keep_alive`]).
    pub fn reusable(&self) -> bool {
        self.phase == Phase::Done && self.persistent
    }

    /// Parse more received bytes. Any error is final.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<HttpEvent>, HttpError> {
        let mut out = Vec::new();
        match self.feed_inner(data, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.phase = Phase::Failed;
                self.buf = Vec::new();
                Err(e)
            }
        }
    }

    /// The connection closed: [`HttpEvent::End`] for a body delimited by the close, nothing
    /// if already complete, else [`HttpError::Truncated`].
    pub fn finish(&mut self) -> Result<Vec<HttpEvent>, HttpError> {
        match self.phase {
            Phase::Done => Ok(Vec::new()),
            Phase::Body(Body::UntilClose) => {
                self.phase = Phase::Done;
                Ok(vec![HttpEvent::End])
            }
            _ => {
                self.phase = Phase::Failed;
                Err(HttpError::Truncated)
            }
        }
    }

    fn feed_inner(&mut self, mut data: &[u8], out: &mut Vec<HttpEvent>) -> Result<(), HttpError> {
        while !data.is_empty() {
            match self.phase {
                Phase::Failed => return Err(HttpError::Truncated),
                Phase::Done => return Err(HttpError::TrailingData),
                Phase::Head => {
                    let room = self.limits.max_head.saturating_sub(self.buf.len());
                    let take = room.min(data.len());
                    let (now, rest) = data.split_at(take);
                    let old = self.buf.len();
                    self.buf.extend_from_slice(now);
                    match self.parse_head(out)? {
                        Some(used) => {
                            // Bytes after the head are body: give them back.
                            let head_part = used.saturating_sub(old);
                            let leftover = now.get(head_part..).unwrap_or_default();
                            self.buf = Vec::new();
                            let mut rest_all = leftover.to_vec();
                            rest_all.extend_from_slice(rest);
                            return self.feed_inner(&rest_all, out);
                        }
                        None if take == 0 || self.buf.len() >= self.limits.max_head => {
                            return Err(HttpError::HeadTooLarge(self.limits.max_head));
                        }
                        None => data = rest,
                    }
                }
                Phase::Body(body) => data = self.body(body, data, out)?,
            }
        }
        Ok(())
    }

    /// Try to parse the buffered head: the bytes it used, `None` if incomplete.
    fn parse_head(&mut self, out: &mut Vec<HttpEvent>) -> Result<Option<usize>, HttpError> {
        let mut headers = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut resp = httparse::Response::new(&mut headers);
        let used = match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::TooManyHeaders(self.limits.max_headers));
            }
            Err(e) => return Err(HttpError::BadHead(e.to_string())),
        };
        let status = resp
            .code
            .ok_or_else(|| HttpError::BadHead("no status".into()))?;
        let head = ResponseHead {
            status,
            reason: resp.reason.unwrap_or_default().to_owned(),
            version: resp.version.unwrap_or(1),
            headers: resp
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
        };
        if (100..200).contains(&status) {
            // Informational: skip it, parse the next head from what follows.
            let rest = self.buf.get(used..).unwrap_or_default().to_vec();
            self.buf = rest;
            return match self.parse_head(out)? {
                Some(n) => Ok(Some(used.saturating_add(n))),
                None => {
                    // Keep what follows as the new head buffer; report "incomplete" but make
                    // the caller's offset arithmetic see no head yet.
                    Ok(None)
                }
            };
        }
        let body = self.body_mode(&head)?;
        self.persistent = head.keep_alive() && body != Some(Body::UntilClose);
        out.push(HttpEvent::Head(head));
        match body {
            None => {
                self.phase = Phase::Done;
                out.push(HttpEvent::End);
            }
            Some(Body::Length(0)) => {
                self.phase = Phase::Done;
                out.push(HttpEvent::End);
            }
            Some(Body::Length(n)) if n > self.limits.max_body => {
                return Err(HttpError::BodyTooLarge(self.limits.max_body));
            }
            Some(b) => self.phase = Phase::Body(b),
        }
        Ok(Some(used))
    }

    /// How the body of a response with `head` is delimited (`None`: no body).
    fn body_mode(&self, head: &ResponseHead) -> Result<Option<Body>, HttpError> {
        if self.head_request || head.status == 204 || head.status == 304 {
            return Ok(None);
        }
        let te: Vec<&[u8]> = head
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .map(|(_, v)| v.as_slice())
            .collect();
        if !te.is_empty() {
            let codings: Vec<String> = te
                .iter()
                .flat_map(|v| v.split(|&b| b == b','))
                .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty())
                .collect();
            return match codings.as_slice() {
                [c] if c == "chunked" => Ok(Some(Body::Chunked(Chunk::Size))),
                [.., last] if last == "chunked" => Err(HttpError::UnsupportedTransferEncoding),
                [] => Ok(Some(Body::UntilClose)),
                // A body not ending with chunked is delimited by the close (RFC 9112 §6.3);
                // but a coding we cannot undo is useless to the caller.
                _ => Err(HttpError::UnsupportedTransferEncoding),
            };
        }
        let mut length: Option<u64> = None;
        for (n, v) in &head.headers {
            if !n.eq_ignore_ascii_case("content-length") {
                continue;
            }
            for part in v.split(|&b| b == b',') {
                let t = std::str::from_utf8(part)
                    .map_err(|_| HttpError::BadContentLength)?
                    .trim();
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HttpError::BadContentLength);
                }
                let n: u64 = t.parse().map_err(|_| HttpError::BadContentLength)?;
                match length {
                    Some(l) if l != n => return Err(HttpError::BadContentLength),
                    _ => length = Some(n),
                }
            }
        }
        Ok(Some(length.map_or(Body::UntilClose, Body::Length)))
    }

    /// Deliver body bytes (checked against the limit).
    fn deliver(&mut self, bytes: &[u8], out: &mut Vec<HttpEvent>) -> Result<(), HttpError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let total = self.body_len.saturating_add(bytes.len() as u64);
        if total > self.limits.max_body {
            return Err(HttpError::BodyTooLarge(self.limits.max_body));
        }
        self.body_len = total;
        match out.last_mut() {
            Some(HttpEvent::Body(b)) => b.extend_from_slice(bytes),
            _ => out.push(HttpEvent::Body(bytes.to_vec())),
        }
        Ok(())
    }

    /// Consume body bytes from `data` in mode `body`; returns what is left.
    fn body<'a>(
        &mut self,
        body: Body,
        data: &'a [u8],
        out: &mut Vec<HttpEvent>,
    ) -> Result<&'a [u8], HttpError> {
        match body {
            Body::UntilClose => {
                self.deliver(data, out)?;
                Ok(&[])
            }
            Body::Length(left) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                let (now, rest) = data.split_at(n);
                self.deliver(now, out)?;
                let left = left.saturating_sub(n as u64);
                if left == 0 {
                    self.phase = Phase::Done;
                    out.push(HttpEvent::End);
                } else {
                    self.phase = Phase::Body(Body::Length(left));
                }
                Ok(rest)
            }
            Body::Chunked(Chunk::Data(left)) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                let (now, rest) = data.split_at(n);
                self.deliver(now, out)?;
                let left = left.saturating_sub(n as u64);
                self.phase = Phase::Body(Body::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                }));
                Ok(rest)
            }
            Body::Chunked(state) => {
                // A line: chunk size, the CRLF after data, or a trailer.
                let Some(pos) = data.iter().position(|&b| b == b'\n') else {
                    if self.buf.len().saturating_add(data.len()) > MAX_LINE {
                        return Err(HttpError::BadChunk("line too long"));
                    }
                    self.buf.extend_from_slice(data);
                    return Ok(&[]);
                };
                let (line_part, rest) = data.split_at(pos);
                let rest = rest.get(1..).unwrap_or_default();
                if self.buf.len().saturating_add(line_part.len()) > MAX_LINE {
                    return Err(HttpError::BadChunk("line too long"));
                }
                let mut line = std::mem::take(&mut self.buf);
                line.extend_from_slice(line_part);
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                self.chunk_line(state, line, out)?;
                Ok(rest)
            }
        }
    }

    /// One complete line of a chunked body (without its line end).
    fn chunk_line(
        &mut self,
        state: Chunk,
        line: &[u8],
        out: &mut Vec<HttpEvent>,
    ) -> Result<(), HttpError> {
        match state {
            Chunk::Size => {
                let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
                let text = std::str::from_utf8(size_part)
                    .map_err(|_| HttpError::BadChunk("chunk size"))?
                    .trim_matches([' ', '\t']);
                if text.is_empty()
                    || text.len() > 16
                    || !text.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(HttpError::BadChunk("chunk size"));
                }
                let size =
                    u64::from_str_radix(text, 16).map_err(|_| HttpError::BadChunk("chunk size"))?;
                if self.body_len.saturating_add(size) > self.limits.max_body {
                    return Err(HttpError::BodyTooLarge(self.limits.max_body));
                }
                self.phase = Phase::Body(Body::Chunked(if size == 0 {
                    Chunk::Trailer
                } else {
                    Chunk::Data(size)
                }));
            }
            Chunk::DataEnd => {
                if !line.is_empty() {
                    return Err(HttpError::BadChunk("no CRLF after chunk data"));
                }
                self.phase = Phase::Body(Body::Chunked(Chunk::Size));
            }
            Chunk::Trailer => {
                if line.is_empty() {
                    self.phase = Phase::Done;
                    out.push(HttpEvent::End);
                }
            }
            Chunk::Data(_) => return Err(HttpError::BadChunk("internal state")),
        }
        Ok(())
    }
}

/// A whole response: the head and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status and headers.
    pub head: ResponseHead,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
}

/// Collects a whole response with a [`ResponseParser`] (for small documents).
#[derive(Debug, Clone)]
pub struct ResponseCollector {
    parser: ResponseParser,
    head: Option<ResponseHead>,
    body: Vec<u8>,
    done: bool,
}

impl ResponseCollector {
    /// A collector with these limits.
    pub fn new(limits: Limits) -> Self {
        ResponseCollector {
            parser: ResponseParser::new(limits),
            head: None,
            body: Vec::new(),
            done: false,
        }
    }

    /// Parse more bytes; `Some` once the response is complete.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Response>, HttpError> {
        let events = self.parser.feed(data)?;
        self.absorb(events)
    }

    /// The connection closed: the response if it is complete now, else an error.
    pub fn finish(&mut self) -> Result<Response, HttpError> {
        let events = self.parser.finish()?;
        match self.absorb(events)? {
            Some(r) => Ok(r),
            None => Err(HttpError::Truncated),
        }
    }

    fn absorb(&mut self, events: Vec<HttpEvent>) -> Result<Option<Response>, HttpError> {
        for ev in events {
            match ev {
                HttpEvent::Head(h) => self.head = Some(h),
                HttpEvent::Body(b) => self.body.extend_from_slice(&b),
                HttpEvent::End => self.done = true,
            }
        }
        if !self.done {
            return Ok(None);
        }
        let head = self.head.take().ok_or(HttpError::Truncated)?;
        self.done = false;
        Ok(Some(Response {
            head,
            body: std::mem::take(&mut self.body),
        }))
    }
}

/// Inflate a `deflate` body (zlib format, as Tor's `.z` documents; raw deflate accepted too)
/// into at most `max` bytes.
pub fn inflate(body: &[u8], max: usize) -> Result<Vec<u8>, HttpError> {
    use miniz_oxide::inflate::{
        DecompressError, TINFLStatus, decompress_to_vec_with_limit,
        decompress_to_vec_zlib_with_limit,
    };
    let map = |e: DecompressError| match e.status {
        TINFLStatus::HasMoreOutput => HttpError::Inflate("larger than the limit"),
        TINFLStatus::FailedCannotMakeProgress => HttpError::Inflate("truncated"),
        _ => HttpError::Inflate("corrupt data"),
    };
    match decompress_to_vec_zlib_with_limit(body, max) {
        Ok(v) => Ok(v),
        Err(e) if e.status == TINFLStatus::HasMoreOutput => Err(map(e)),
        Err(_) => decompress_to_vec_with_limit(body, max).map_err(map),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Feed `bytes` cut at `cuts`, collect the events (bodies merged).
    fn run(bytes: &[u8], cuts: &[usize], limits: Limits) -> Result<Response, HttpError> {
        let mut c = ResponseCollector::new(limits);
        let mut start = 0;
        let mut result = None;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let piece = &bytes[start..cut];
            start = cut;
            if let Some(r) = c.feed(piece)? {
                result = Some(r);
            }
        }
        match result {
            Some(r) => Ok(r),
            None => c.finish(),
        }
    }

    const CL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world";
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
    const CLOSE: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world";

    #[test]
    fn request_bytes() {
        let r = Request::get("example.com", "/a?b=c")
            .unwrap()
            .header("Connection", "close")
            .unwrap();
        assert_eq!(
            r.to_bytes(),
            b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        );
        assert!(Request::get("h", "no-slash").is_err());
        assert!(Request::get("h", "/a b").is_err());
        assert!(Request::get("h\r\n", "/").is_err());
        assert!(
            Request::get("h", "/")
                .unwrap()
                .header("X\r\nY", "v")
                .is_err()
        );
        assert!(
            Request::get("h", "/")
                .unwrap()
                .header("X", "v\r\nY: z")
                .is_err()
        );
    }

    #[test]
    fn request_with_method_and_body() {
        let r = Request::new("POST", "h:8080", "/echo")
            .unwrap()
            .header("Content-Type", "application/octet-stream")
            .unwrap()
            .body(b"abc\r\n\x00".to_vec());
        assert_eq!(r.method(), "POST");
        assert_eq!(
            r.to_bytes(),
            b"POST /echo HTTP/1.1\r\nHost: h:8080\r\nContent-Type: application/octet-stream\r\nContent-Length: 6\r\n\r\nabc\r\n\x00"
        );
        // POST without a body says so; GET and DELETE without one send no length.
        let empty = Request::new("POST", "h", "/").unwrap().to_bytes();
        assert_eq!(
            empty,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
        );
        let del = Request::new("DELETE", "h", "/x").unwrap().to_bytes();
        assert_eq!(del, b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(Request::new("HEAD", "h", "/").unwrap().is_head());
        // Bad methods, and the framing headers the request owns.
        for m in ["", "GE T", "G\r\nET", "CONNECT", "trace"] {
            assert_eq!(
                Request::new(m, "h", "/"),
                Err(HttpError::InvalidRequest("method")),
                "{m:?}"
            );
        }
        for h in ["Content-Length", "transfer-encoding", "HOST"] {
            assert_eq!(
                Request::get("h", "/").unwrap().header(h, "1"),
                Err(HttpError::InvalidRequest("framing header"))
            );
        }
    }

    #[test]
    fn chunked_request_body_round_trips() {
        let r = Request::new("PUT", "h", "/u").unwrap().chunked();
        assert_eq!(
            r.to_bytes(),
            b"PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert!(encode_chunk(b"").is_empty());
        assert_eq!(encode_chunk(&[7u8; 26]).get(..4).unwrap(), b"1a\r\n");
        // Our own parser reads the encoded pieces back (as a response body).
        let pieces: Vec<Vec<u8>> = vec![b"hello".to_vec(), vec![], vec![0xAB; 4000], b"!".to_vec()];
        let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for p in &pieces {
            bytes.extend(encode_chunk(p));
        }
        bytes.extend_from_slice(LAST_CHUNK);
        let r = run(&bytes, &[], Limits::default()).unwrap();
        assert_eq!(r.body, pieces.concat());
    }

    #[test]
    fn keep_alive_only_when_allowed_and_complete() {
        let reusable = |bytes: &[u8]| {
            let mut p = ResponseParser::new(Limits::default());
            let _ = p.feed(bytes).unwrap();
            p.reusable()
        };
        assert!(reusable(CL));
        assert!(reusable(CHUNKED));
        // Incomplete: not yet.
        assert!(!reusable(&CL[..CL.len() - 1]));
        // The server closes, or the body ends with the close, or HTTP/1.0 without keep-alive.
        assert!(!reusable(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\nx"
        ));
        assert!(!reusable(b"HTTP/1.1 200 OK\r\n\r\nbody until close"));
        assert!(!reusable(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"));
        assert!(reusable(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx"
        ));
        assert!(reusable(b"HTTP/1.1 204 No Content\r\n\r\n"));
        let mut closed = ResponseParser::new(Limits::default());
        let _ = closed.feed(CLOSE).unwrap();
        let _ = closed.finish().unwrap();
        assert!(closed.is_done() && !closed.reusable());
    }

    #[test]
    fn content_length_split_at_every_byte() {
        for cut in 0..=CL.len() {
            let r = run(CL, &[cut], Limits::default()).unwrap();
            assert_eq!(r.head.status, 200);
            assert_eq!(r.head.header_str("x-a"), Some("b"));
            assert_eq!(r.body, b"hello world");
        }
        // Every byte separately.
        let cuts: Vec<usize> = (1..CL.len()).collect();
        assert_eq!(
            run(CL, &cuts, Limits::default()).unwrap().body,
            b"hello world"
        );
    }

    #[test]
    fn chunked_split_at_every_byte() {
        for cut in 0..=CHUNKED.len() {
            let r = run(CHUNKED, &[cut], Limits::default()).unwrap();
            assert_eq!(r.body, b"hello world", "cut at {cut}");
        }
        let cuts: Vec<usize> = (1..CHUNKED.len()).collect();
        assert_eq!(
            run(CHUNKED, &cuts, Limits::default()).unwrap().body,
            b"hello world"
        );
    }

    #[test]
    fn body_until_close() {
        for cut in 0..=CLOSE.len() {
            let r = run(CLOSE, &[cut], Limits::default()).unwrap();
            assert_eq!(r.head.version, 0);
            assert_eq!(r.body, b"hello world");
        }
    }

    #[test]
    fn truncated_responses_fail() {
        for bytes in [CL, CHUNKED] {
            for cut in 0..bytes.len() {
                let mut p = ResponseParser::new(Limits::default());
                let mut ended = false;
                for ev in p.feed(&bytes[..cut]).unwrap() {
                    ended |= ev == HttpEvent::End;
                }
                assert!(!ended);
                assert_eq!(p.finish(), Err(HttpError::Truncated), "cut at {cut}");
            }
        }
    }

    #[test]
    fn informational_skipped_and_no_body_statuses() {
        let bytes =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop";
        for cut in 0..=bytes.len() {
            let r = run(bytes, &[cut], Limits::default()).unwrap();
            assert_eq!(r.head.status, 404, "cut {cut}");
            assert_eq!(r.body, b"nop");
        }
        let r = run(b"HTTP/1.1 204 No Content\r\n\r\n", &[], Limits::default()).unwrap();
        assert!(r.body.is_empty());
    }

    #[test]
    fn oversize_refused() {
        let small = Limits {
            max_body: 10,
            ..Limits::default()
        };
        assert_eq!(run(CL, &[], small), Err(HttpError::BodyTooLarge(10)));
        assert_eq!(run(CHUNKED, &[5], small), Err(HttpError::BodyTooLarge(10)));
        assert_eq!(run(CLOSE, &[40], small), Err(HttpError::BodyTooLarge(10)));
        let tiny_head = Limits {
            max_head: 20,
            ..Limits::default()
        };
        assert_eq!(run(CL, &[3], tiny_head), Err(HttpError::HeadTooLarge(20)));
        let few = Limits {
            max_headers: 1,
            ..Limits::default()
        };
        assert_eq!(run(CL, &[], few), Err(HttpError::TooManyHeaders(1)));
        // A chunk-size line that never ends.
        let mut long = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'0', MAX_LINE + 1));
        assert_eq!(
            run(&long, &[], Limits::default()),
            Err(HttpError::BadChunk("line too long"))
        );
    }

    #[test]
    fn malformed_refused() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"NOT HTTP\r\n\r\n",
        ];
        for c in cases {
            assert!(run(c, &[], Limits::default()).is_err(), "{c:?}");
        }
        // Data after a complete response.
        let mut extra = CL.to_vec();
        extra.extend_from_slice(b"junk");
        assert_eq!(
            run(&extra, &[], Limits::default()),
            Err(HttpError::TrailingData)
        );
    }

    #[test]
    fn hostile_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..300)| {
            let mut p = ResponseParser::new(Limits { max_body: 100, ..Limits::default() });
            let cut = cut.min(bytes.len());
            let _ = p.feed(&bytes[..cut]);
            let _ = p.feed(&bytes[cut..]);
            let _ = p.finish();
        });
    }

    #[test]
    fn inflate_zlib_bounded() {
        let data = b"hello hello hello hello hello".repeat(100);
        let z = miniz_oxide::deflate::compress_to_vec_zlib(&data, 6);
        assert_eq!(inflate(&z, 1 << 20).unwrap(), data);
        let raw = miniz_oxide::deflate::compress_to_vec(&data, 6);
        assert_eq!(inflate(&raw, 1 << 20).unwrap(), data);
        assert_eq!(
            inflate(&z, 100),
            Err(HttpError::Inflate("larger than the limit"))
        );
        assert!(inflate(b"\x78\x9cgarbage", 1 << 20).is_err());
    }
}
