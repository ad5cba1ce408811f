//! RELAY_BEGIN_DIR: a small HTTP/1.0 directory server on the stream (dir-spec §4-6, App. B).
//!
//! The request is read up to its blank line (at most [`MAX_REQUEST`] bytes: a longer one,
//! a malformed one, or anything but `GET`/`HEAD` gets 400), answered, and the stream ended
//! (END, DONE). What is served:
//!
//! | URL (each also with `.z`) | what |
//! |---|---|
//! | `/tor/server/authority`, `/tor/server/fp/<F>[+<F>...]`, `/tor/server/d/<D>[+<D>...]` | our own server descriptor ([`crate::descriptor`]), if asked for by our fingerprint or its digest |
//! | `/tor/status-vote/current/consensus-microdesc[/<F1>+<F2>...]` | the cached, verified consensus ([`crate::dircache`]); with authority fingerprint prefixes, only if more than half of them signed it |
//! | `/tor/micro/d/<D1>-<D2>...` | the cached microdescriptors among those asked for |
//! | `/onion/relay-list` ([`onion_core::netdesc::RELAY_LIST_PATH`]) | the own network's signed relay list, if we are its authority ([`crate::authority`]) |
//! | `/tor/keys/all`, `/tor/keys/fp/<F>+...`, `/tor/keys/sk/<S>+...`, `/tor/keys/fp-sk/<F>-<S>+...` | the cached authority certificates |
//!
//! Anything else, or nothing found, is 404. Encoding (dir-spec §6.1): with an
//! `Accept-Encoding` header, `deflate` if it is listed, else `identity`; without one, `deflate`
//! for a `.z` URL. `deflate` is the zlib format (RFC 1950), as C tor sends it, announced by
//! `Content-Encoding`.
//!
//! Large documents (the consensus, our descriptor, `/tor/keys/all`) are kept encoded both
//! ways and shared between streams ([`Document`]); answers assembled per request
//! (microdescriptors, some certificates) take their size from a global budget
//! ([`DIR_RESPONSE_BUDGET`]) while they are being sent, and get 503 when it is spent. A
//! stream copies at most [`REPLY_CHUNK`] bytes of its answer at a time.

use std::io::Write;
use std::sync::Arc;

use flate2::{Compression, Decompress, FlushDecompress, Status};
use onion_core::dir::encode::{b64_decode_array, hex20};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::router::now_unix;
use crate::server::ServerContext;

/// Longest request accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Most items (fingerprints, digests) in one request.
pub const MAX_ITEMS: usize = 512;
/// Most bytes of answers assembled per request and in flight at once, over all streams.
pub const DIR_RESPONSE_BUDGET: usize = 32 * 1024 * 1024;
/// Most bytes of an answer a stream holds as pending output at a time.
pub const REPLY_CHUNK: usize = 16 * 1024;

/// A content encoding we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As is.
    Identity,
    /// zlib (RFC 1950), HTTP's `deflate`.
    Deflate,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Deflate => "deflate",
        }
    }
}

/// Compress `data` in the zlib format.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Why compressed data could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The data is not valid zlib.
    #[error("invalid zlib data: {0}")]
    Corrupt(String),
    /// The data ends in the middle of a stream.
    #[error("truncated zlib data")]
    Truncated,
    /// The inflated data would exceed the limit.
    #[error("inflated data larger than {0} bytes")]
    TooLarge(usize),
}

/// Inflate zlib data (one stream, or several concatenated: dir-spec §6.1 makes them
/// equivalent), refusing to produce more than `max` bytes.
pub fn inflate_bounded(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(4).min(max));
    let mut input = data;
    while !input.is_empty() {
        let mut z = Decompress::new(true);
        loop {
            if out.len() > max {
                return Err(InflateError::TooLarge(max));
            }
            if out.len() == out.capacity() {
                // Room for one byte past `max`, to notice a document that is too large.
                let more = out.len().max(4096).min(max + 1 - out.len());
                out.reserve_exact(more);
            }
            let before_in = z.total_in();
            let before_out = z.total_out();
            let status = z
                .decompress_vec(input, &mut out, FlushDecompress::None)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            let used = usize::try_from(z.total_in() - before_in).unwrap_or(usize::MAX);
            input = input.get(used..).unwrap_or_default();
            let produced = z.total_out() != before_out;
            if out.len() > max {
                return Err(InflateError::TooLarge(max));
            }
            match status {
                Status::StreamEnd => break,
                _ if used == 0 && !produced && out.len() < out.capacity() => {
                    return Err(InflateError::Truncated);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// A document served as is: its bytes, and their zlib form, shared between streams.
#[derive(Debug, Clone)]
pub struct Document {
    plain: Arc<[u8]>,
    deflated: Arc<[u8]>,
}

impl Document {
    /// Keep `plain` and compress it.
    pub fn new(plain: Vec<u8>) -> Self {
        let deflated = deflate(&plain).into();
        Document {
            plain: plain.into(),
            deflated,
        }
    }

    /// The bytes.
    pub fn plain(&self) -> &[u8] {
        &self.plain
    }

    /// The zlib form.
    pub fn deflated(&self) -> &[u8] {
        &self.deflated
    }

    fn encoded(&self, enc: Encoding) -> Arc<[u8]> {
        match enc {
            Encoding::Identity => Arc::clone(&self.plain),
            Encoding::Deflate => Arc::clone(&self.deflated),
        }
    }
}

/// Why a request got 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRequest {
    /// The request line and headers exceed [`MAX_REQUEST`].
    #[error("request too long")]
    TooLong,
    /// Not UTF-8.
    #[error("request is not UTF-8")]
    NotUtf8,
    /// The request line is not `METHOD PATH HTTP/1.x`.
    #[error("malformed request line")]
    RequestLine,
    /// A method other than GET and HEAD.
    #[error("method not allowed")]
    Method,
    /// A header line without a name and a colon, or with control characters.
    #[error("malformed header")]
    Header,
    /// A malformed variation of a URL we serve (bad hex or base64, too many items).
    #[error("malformed URL")]
    Url,
}

/// A request, once its header is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirRequest {
    /// `GET` (or `HEAD`) of `path`.
    Get {
        /// The path, as sent.
        path: String,
        /// Whether it was HEAD (no body).
        head: bool,
        /// The encodings the `Accept-Encoding` header allows, if it was sent.
        accept: Option<Vec<Encoding>>,
    },
    /// A request we refuse with 400.
    Bad(BadRequest),
}

/// A directory stream: the request so far, then the answer being sent.
#[derive(Debug, Default)]
pub struct DirStream {
    request: Vec<u8>,
    answered: bool,
    reply: Option<Reply>,
}

impl DirStream {
    /// A stream waiting for its request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes from the client. Returns the request once its header is complete (once);
    /// bytes after it are ignored.
    pub fn feed(&mut self, data: &[u8]) -> Option<DirRequest> {
        if self.answered {
            return None;
        }
        // Search for the blank line only in what is new (and the 3 bytes before).
        let from = self.request.len().saturating_sub(3);
        let room = (MAX_REQUEST + 4).saturating_sub(self.request.len());
        self.request
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        let end = self
            .request
            .get(from..)
            .unwrap_or_default()
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + from);
        let request = match end {
            Some(end) if end <= MAX_REQUEST => parse(self.request.get(..end).unwrap_or_default()),
            Some(_) => DirRequest::Bad(BadRequest::TooLong),
            None if self.request.len() > MAX_REQUEST => DirRequest::Bad(BadRequest::TooLong),
            None => return None,
        };
        self.answered = true;
        self.request = Vec::new();
        Some(request)
    }

    /// Start sending `reply`.
    pub fn set_reply(&mut self, reply: Reply) {
        self.reply = Some(reply);
    }

    /// Move the next bytes of the answer into `out`, until it holds [`REPLY_CHUNK`] bytes or
    /// the answer is all out.
    pub fn fill(&mut self, out: &mut Vec<u8>) {
        if let Some(r) = &mut self.reply {
            r.fill(out, REPLY_CHUNK);
            if r.remaining() == 0 {
                self.reply = None;
            }
        }
    }
}

/// Parse a request header (without the blank line).
fn parse(header: &[u8]) -> DirRequest {
    if header.len() > MAX_REQUEST {
        return DirRequest::Bad(BadRequest::TooLong);
    }
    let Ok(text) = std::str::from_utf8(header) else {
        return DirRequest::Bad(BadRequest::NotUtf8);
    };
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut words = line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return DirRequest::Bad(BadRequest::RequestLine);
    };
    if !version.starts_with("HTTP/1.")
        || !path.starts_with('/')
        || !path.bytes().all(|b| b.is_ascii_graphic())
    {
        return DirRequest::Bad(BadRequest::RequestLine);
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return DirRequest::Bad(BadRequest::Method),
    };
    let mut accept: Option<Vec<Encoding>> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return DirRequest::Bad(BadRequest::Header);
        };
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_graphic())
            || value.chars().any(|c| c.is_control() && c != '\t')
        {
            return DirRequest::Bad(BadRequest::Header);
        }
        if name.eq_ignore_ascii_case("accept-encoding") {
            let list = accept.get_or_insert_with(Vec::new);
            for enc in accepted_encodings(value) {
                if !list.contains(&enc) {
                    list.push(enc);
                }
            }
        }
    }
    DirRequest::Get {
        path: path.to_owned(),
        head,
        accept,
    }
}

/// The encodings we speak among those of an `Accept-Encoding` value (`q=0` excluded).
fn accepted_encodings(value: &str) -> impl Iterator<Item = Encoding> + '_ {
    value.split(',').filter_map(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if refused {
            return None;
        }
        if name.eq_ignore_ascii_case("deflate") {
            Some(Encoding::Deflate)
        } else if name.eq_ignore_ascii_case("identity") {
            Some(Encoding::Identity)
        } else {
            None
        }
    })
}

/// What a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `/tor/server/authority`: our descriptor.
    OurDescriptor,
    /// `/tor/server/fp/...`: descriptors by RSA fingerprint.
    ServerByFingerprint(Vec<[u8; 20]>),
    /// `/tor/server/d/...`: descriptors by digest.
    ServerByDigest(Vec<[u8; 20]>),
    /// `/tor/status-vote/current/consensus-microdesc[/F1+F2...]`: the microdesc consensus,
    /// with the authority fingerprint prefixes that must have signed it.
    MicrodescConsensus(Option<Vec<Vec<u8>>>),
    /// `/tor/micro/d/...`: microdescriptors by SHA-256 digest.
    Microdescs(Vec<[u8; 32]>),
    /// `/tor/keys/all`.
    KeysAll,
    /// `/tor/keys/fp/...`: certificates by authority identity.
    KeysByIdentity(Vec<[u8; 20]>),
    /// `/tor/keys/sk/...`: certificates by signing key digest.
    KeysBySigningKey(Vec<[u8; 20]>),
    /// `/tor/keys/fp-sk/...`: certificates by (identity, signing key digest).
    KeysByBoth(Vec<([u8; 20], [u8; 20])>),
    /// [`onion_core::netdesc::RELAY_LIST_PATH`]: the own network's signed relay list, when
    /// we are its authority ([`crate::authority`]).
    RelayList,
    /// Anything else.
    Unknown,
}

/// Split a `sep`-separated list of at most [`MAX_ITEMS`] items, each parsed by `item`.
fn list<T>(s: &str, sep: char, item: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, BadRequest> {
    let mut out = Vec::new();
    for part in s.split(sep) {
        if out.len() >= MAX_ITEMS {
            return Err(BadRequest::Url);
        }
        out.push(item(part).ok_or(BadRequest::Url)?);
    }
    Ok(out)
}

/// An even number (2 to 40) of hex digits: a fingerprint or its prefix.
fn hex_prefix(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() > 40 {
        return None;
    }
    hex::decode(s).ok()
}

/// What `path` names, and whether it ends with `.z`.
pub fn parse_resource(path: &str) -> Result<(Resource, bool), BadRequest> {
    let (path, z) = match path.strip_suffix(".z") {
        Some(p) => (p, true),
        None => (path, false),
    };
    let r = if path == onion_core::netdesc::RELAY_LIST_PATH {
        Resource::RelayList
    } else if path == "/tor/server/authority" {
        Resource::OurDescriptor
    } else if let Some(rest) = path.strip_prefix("/tor/server/fp/") {
        Resource::ServerByFingerprint(list(rest, '+', hex20)?)
    } else if let Some(rest) = path.strip_prefix("/tor/server/d/") {
        Resource::ServerByDigest(list(rest, '+', hex20)?)
    } else if path == "/tor/status-vote/current/consensus-microdesc" {
        Resource::MicrodescConsensus(None)
    } else if let Some(rest) = path.strip_prefix("/tor/status-vote/current/consensus-microdesc/") {
        if rest.starts_with("diff/") {
            // Consensus diffs (dir-spec §4.5): not made here.
            Resource::Unknown
        } else {
            Resource::MicrodescConsensus(Some(list(rest, '+', hex_prefix)?))
        }
    } else if let Some(rest) = path.strip_prefix("/tor/micro/d/") {
        Resource::Microdescs(list(rest, '-', b64_decode_array::<32>)?)
    } else if path == "/tor/keys/all" {
        Resource::KeysAll
    } else if let Some(rest) = path.strip_prefix("/tor/keys/fp/") {
        Resource::KeysByIdentity(list(rest, '+', hex20)?)
    } else if let Some(rest) = path.strip_prefix("/tor/keys/sk/") {
        Resource::KeysBySigningKey(list(rest, '+', hex20)?)
    } else if let Some(rest) = path.strip_prefix("/tor/keys/fp-sk/") {
        Resource::KeysByBoth(list(rest, '+', |pair| {
            let (f, s) = pair.split_once('-')?;
            Some((hex20(f)?, hex20(s)?))
        })?)
    } else {
        Resource::Unknown
    };
    Ok((r, z))
}

/// What a resource resolved to.
#[derive(Debug)]
pub enum Found {
    /// A shared document.
    Document(Document),
    /// Texts to concatenate (and maybe compress) for this request.
    Pieces(Vec<Arc<str>>),
    /// Nothing (404).
    Nothing,
}

/// Look `resource` up in what the relay has.
pub fn lookup(resource: &Resource, ctx: &ServerContext) -> Found {
    let ours = || {
        ctx.descriptor
            .get()
            .map_or(Found::Nothing, |d| Found::Document(d.document().clone()))
    };
    let cache = || ctx.dir_cache.snapshot();
    match resource {
        Resource::OurDescriptor => ours(),
        Resource::ServerByFingerprint(fps) => {
            let me = *ctx
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .rsa_fingerprint()
                .as_bytes();
            if fps.contains(&me) {
                ours()
            } else {
                Found::Nothing
            }
        }
        Resource::ServerByDigest(digests) => match ctx.descriptor.get() {
            Some(d) if digests.contains(d.digest()) => Found::Document(d.document().clone()),
            _ => Found::Nothing,
        },
        Resource::MicrodescConsensus(want) => {
            let state = cache();
            let Some(c) = state.consensus(now_unix()) else {
                return Found::Nothing;
            };
            if let Some(want) = want {
                let have = want
                    .iter()
                    .filter(|p| c.signers().iter().any(|s| s.as_bytes().starts_with(p)))
                    .count();
                if have < want.len() / 2 + 1 {
                    return Found::Nothing;
                }
            }
            Found::Document(c.document().clone())
        }
        Resource::Microdescs(digests) => {
            let state = cache();
            pieces(digests.iter().filter_map(|d| state.microdesc(d).cloned()))
        }
        Resource::KeysAll => cache()
            .certs_document()
            .map_or(Found::Nothing, |d| Found::Document(d.clone())),
        Resource::KeysByIdentity(ids) => {
            let state = cache();
            pieces(state.certs_matching(|fp, _| ids.contains(fp)))
        }
        Resource::KeysBySigningKey(sks) => {
            let state = cache();
            pieces(state.certs_matching(|_, sk| sks.contains(sk)))
        }
        Resource::KeysByBoth(pairs) => {
            let state = cache();
            pieces(state.certs_matching(|fp, sk| pairs.iter().any(|(f, s)| f == fp && s == sk)))
        }
        Resource::RelayList => ctx
            .authority
            .as_ref()
            .and_then(|a| a.document())
            .map_or(Found::Nothing, Found::Document),
        Resource::Unknown => Found::Nothing,
    }
}

fn pieces(it: impl Iterator<Item = Arc<str>>) -> Found {
    let v: Vec<Arc<str>> = it.collect();
    if v.is_empty() {
        Found::Nothing
    } else {
        Found::Pieces(v)
    }
}

/// The body of an answer.
#[derive(Debug)]
enum Body {
    Shared(Arc<[u8]>),
    Owned {
        bytes: Vec<u8>,
        _budget: Option<OwnedSemaphorePermit>,
    },
}

impl Body {
    fn bytes(&self) -> &[u8] {
        match self {
            Body::Shared(b) => b,
            Body::Owned { bytes, .. } => bytes,
        }
    }
}

/// An HTTP answer being sent: its header, then its body (absent for HEAD and errors).
#[derive(Debug)]
pub struct Reply {
    head: Vec<u8>,
    body: Option<Body>,
    pos: usize,
}

impl Reply {
    /// An answer with no body.
    fn status(status: &str) -> Reply {
        Reply {
            head: format!(
                "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
            body: None,
            pos: 0,
        }
    }

    /// 200 with `body` in `enc`; the body is left out for HEAD.
    fn ok(body: Body, enc: Encoding, head: bool) -> Reply {
        let content_type = match enc {
            Encoding::Identity => "text/plain",
            Encoding::Deflate => "application/octet-stream",
        };
        let head_bytes = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: {content_type}\r\nContent-Encoding: {}\r\nContent-Length: {}\r\n\r\n",
            enc.as_str(),
            body.bytes().len()
        )
        .into_bytes();
        Reply {
            head: head_bytes,
            body: (!head).then_some(body),
            pos: 0,
        }
    }

    fn total(&self) -> usize {
        self.head.len() + self.body.as_ref().map_or(0, |b| b.bytes().len())
    }

    /// Bytes not sent yet.
    pub fn remaining(&self) -> usize {
        self.total().saturating_sub(self.pos)
    }

    /// Append the next bytes to `out`, until it holds `upto` bytes or all is out.
    pub fn fill(&mut self, out: &mut Vec<u8>, upto: usize) {
        while out.len() < upto && self.remaining() > 0 {
            let want = upto - out.len();
            let (src, at) = if self.pos < self.head.len() {
                (self.head.as_slice(), self.pos)
            } else {
                let b = self.body.as_ref().map_or(&[][..], Body::bytes);
                (b, self.pos - self.head.len())
            };
            let chunk = src.get(at..).unwrap_or_default();
            let chunk = chunk.get(..want.min(chunk.len())).unwrap_or_default();
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(chunk);
            self.pos += chunk.len();
        }
    }

    /// The whole answer (for tests and logs).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        if let Some(b) = &self.body {
            v.extend_from_slice(b.bytes());
        }
        v
    }
}

/// The encoding to answer with.
fn choose_encoding(accept: Option<&[Encoding]>, z: bool) -> Encoding {
    match accept {
        Some(list) if list.contains(&Encoding::Deflate) => Encoding::Deflate,
        Some(_) => Encoding::Identity,
        None if z => Encoding::Deflate,
        None => Encoding::Identity,
    }
}

/// Answer `request` from what the relay has; `budget` bounds answers made for one request.
pub fn respond(request: &DirRequest, ctx: &ServerContext) -> Reply {
    answer(request, |r| lookup(r, ctx), &ctx.dir_budget)
}

fn answer(
    request: &DirRequest,
    lookup: impl FnOnce(&Resource) -> Found,
    budget: &Arc<Semaphore>,
) -> Reply {
    let (path, head, accept) = match request {
        DirRequest::Bad(_) => return Reply::status("400 Bad request"),
        DirRequest::Get { path, head, accept } => (path, *head, accept.as_deref()),
    };
    let (resource, z) = match parse_resource(path) {
        Ok(r) => r,
        Err(_) => return Reply::status("400 Bad request"),
    };
    let enc = choose_encoding(accept, z);
    match lookup(&resource) {
        Found::Nothing => Reply::status("404 Not found"),
        Found::Document(d) => Reply::ok(Body::Shared(d.encoded(enc)), enc, head),
        Found::Pieces(pieces) => {
            let len: usize = pieces.iter().map(|p| p.len()).sum();
            let permit = u32::try_from(len)
                .ok()
                .and_then(|n| Arc::clone(budget).try_acquire_many_owned(n).ok());
            let Some(permit) = permit else {
                return Reply::status("503 Directory busy, try again later");
            };
            let mut plain = Vec::with_capacity(len);
            for p in &pieces {
                plain.extend_from_slice(p.as_bytes());
            }
            let bytes = match enc {
                Encoding::Identity => plain,
                Encoding::Deflate => deflate(&plain),
            };
            Reply::ok(
                Body::Owned {
                    bytes,
                    _budget: Some(permit),
                },
                enc,
                head,
            )
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn get(path: &str) -> DirRequest {
        DirRequest::Get {
            path: path.into(),
            head: false,
            accept: None,
        }
    }

    #[test]
    fn requests() {
        let mut d = DirStream::new();
        assert_eq!(d.feed(b"GET /tor/server/authority HTTP/1.0\r\n"), None);
        assert_eq!(d.feed(b"Host: x\r\n\r"), None);
        assert_eq!(d.feed(b"\n"), Some(get("/tor/server/authority")));
        // Answered once.
        assert_eq!(d.feed(b"GET / HTTP/1.0\r\n\r\n"), None);
        for (bad, why) in [
            (&b"POST / HTTP/1.0\r\n\r\n"[..], BadRequest::Method),
            (b"GET / SPDY\r\n\r\n", BadRequest::RequestLine),
            (b"GET x HTTP/1.0\r\n\r\n", BadRequest::RequestLine),
            (b"GET / HTTP/1.0 extra\r\n\r\n", BadRequest::RequestLine),
            (b"GET /\x01 HTTP/1.0\r\n\r\n", BadRequest::RequestLine),
            (b"\xff\xfe\r\n\r\n", BadRequest::NotUtf8),
            (b"GET / HTTP/1.0\r\nno colon\r\n\r\n", BadRequest::Header),
            (b"GET / HTTP/1.0\r\n: empty\r\n\r\n", BadRequest::Header),
            (b"GET / HTTP/1.0\r\nA: b\x07\r\n\r\n", BadRequest::Header),
        ] {
            assert_eq!(
                DirStream::new().feed(bad),
                Some(DirRequest::Bad(why)),
                "{bad:?}"
            );
        }
        let mut d = DirStream::new();
        assert_eq!(d.feed(&[b'a'; MAX_REQUEST]), None);
        assert_eq!(d.feed(b"a"), Some(DirRequest::Bad(BadRequest::TooLong)));
        // A blank line just past the limit is too late; one at the limit is fine.
        let mut long = b"GET /".to_vec();
        long.resize(MAX_REQUEST - " HTTP/1.0".len(), b'a');
        long.extend_from_slice(b" HTTP/1.0\r\n\r\n");
        assert!(matches!(
            DirStream::new().feed(&long),
            Some(DirRequest::Get { .. })
        ));
        long.insert(5, b'a');
        assert_eq!(
            DirStream::new().feed(&long),
            Some(DirRequest::Bad(BadRequest::TooLong))
        );
        // A huge write is not buffered whole.
        let mut d = DirStream::new();
        assert_eq!(
            d.feed(&vec![b'a'; 1 << 20]),
            Some(DirRequest::Bad(BadRequest::TooLong))
        );
        assert_eq!(
            DirStream::new().feed(b"HEAD /x HTTP/1.1\r\n\r\n"),
            Some(DirRequest::Get {
                path: "/x".into(),
                head: true,
                accept: None
            })
        );
    }

    #[test]
    fn accept_encoding() {
        let accept = |h: &str| match DirStream::new()
            .feed(format!("GET /x HTTP/1.0\r\n{h}\r\n\r\n").as_bytes())
        {
            Some(DirRequest::Get { accept, .. }) => accept,
            other => panic!("{other:?}"),
        };
        use Encoding::*;
        // What C tor 0.4.9 clients send.
        assert_eq!(
            accept("Accept-Encoding: deflate, identity, x-tor-lzma, x-zstd"),
            Some(vec![Deflate, Identity])
        );
        assert_eq!(
            accept("accept-encoding:identity;q=1, DEFLATE;q=0"),
            Some(vec![Identity])
        );
        assert_eq!(accept("Accept-Encoding: x-zstd"), Some(vec![]));
        assert_eq!(accept("X-Other: deflate"), None);
        assert_eq!(
            accept("Accept-Encoding: identity\r\nAccept-Encoding: deflate"),
            Some(vec![Identity, Deflate])
        );
        assert_eq!(choose_encoding(None, false), Identity);
        assert_eq!(choose_encoding(None, true), Deflate);
        assert_eq!(choose_encoding(Some(&[Identity]), true), Identity);
        assert_eq!(choose_encoding(Some(&[]), true), Identity);
        assert_eq!(choose_encoding(Some(&[Identity, Deflate]), false), Deflate);
    }

    const FP: &str = "27B6B5996C426270A5C95488AA5BCEB6BCC86956";
    const SK: &str = "0123456789abcdef0123456789ABCDEF01234567";

    #[test]
    fn resources() {
        let fp = hex20(FP).unwrap();
        let sk = hex20(SK).unwrap();
        let mut d32 = [0xffu8; 32];
        d32[0] = 0xfb;
        let d32b = onion_core::dir::encode::b64_unpadded(&d32);
        assert!(
            d32b.starts_with("+/"),
            "a digest with + and / in it: {d32b}"
        );
        let ok = |p: &str| parse_resource(p).unwrap();
        assert_eq!(
            ok("/tor/server/authority"),
            (Resource::OurDescriptor, false)
        );
        assert_eq!(
            ok("/tor/server/authority.z"),
            (Resource::OurDescriptor, true)
        );
        assert_eq!(
            ok(&format!("/tor/server/fp/{FP}+{}.z", FP.to_lowercase())),
            (Resource::ServerByFingerprint(vec![fp, fp]), true)
        );
        assert_eq!(
            ok(&format!("/tor/server/d/{SK}")),
            (Resource::ServerByDigest(vec![sk]), false)
        );
        assert_eq!(
            ok("/tor/status-vote/current/consensus-microdesc.z"),
            (Resource::MicrodescConsensus(None), true)
        );
        assert_eq!(
            ok("/tor/status-vote/current/consensus-microdesc/27B6B5+ED03BB.z"),
            (
                Resource::MicrodescConsensus(Some(vec![
                    vec![0x27, 0xB6, 0xB5],
                    vec![0xED, 0x03, 0xBB]
                ])),
                true
            )
        );
        assert_eq!(
            ok("/tor/status-vote/current/consensus-microdesc/diff/AB/CD.z").0,
            Resource::Unknown
        );
        assert_eq!(
            ok(&format!("/tor/micro/d/{d32b}-{d32b}")),
            (Resource::Microdescs(vec![d32, d32]), false)
        );
        assert_eq!(ok("/tor/keys/all.z"), (Resource::KeysAll, true));
        assert_eq!(
            ok(&format!("/tor/keys/fp/{FP}")).0,
            Resource::KeysByIdentity(vec![fp])
        );
        assert_eq!(
            ok(&format!("/tor/keys/sk/{SK}")).0,
            Resource::KeysBySigningKey(vec![sk])
        );
        assert_eq!(
            ok(&format!("/tor/keys/fp-sk/{FP}-{SK}+{SK}-{FP}.z")).0,
            Resource::KeysByBoth(vec![(fp, sk), (sk, fp)])
        );
        for unknown in [
            "/",
            "/tor/status-vote/current/consensus",
            "/tor/keys/authority",
            "/tor/server/all",
            "/tor/extra/authority",
        ] {
            assert_eq!(ok(unknown).0, Resource::Unknown, "{unknown}");
        }
        for bad in [
            "/tor/server/fp/".to_owned(),
            "/tor/server/fp/ABC".to_owned(),
            format!("/tor/server/fp/{FP}+"),
            format!("/tor/server/fp/{FP}X"),
            "/tor/status-vote/current/consensus-microdesc/ABC".to_owned(),
            "/tor/status-vote/current/consensus-microdesc/".to_owned(),
            "/tor/micro/d/abc".to_owned(),
            format!("/tor/micro/d/{d32b}+{d32b}"),
            format!("/tor/keys/fp-sk/{FP}"),
            format!("/tor/keys/fp-sk/{FP}-{SK}-{SK}"),
            format!("/tor/keys/fp/{}", vec![FP; MAX_ITEMS + 1].join("+")),
        ] {
            assert_eq!(parse_resource(&bad), Err(BadRequest::Url), "{bad}");
        }
        assert_eq!(
            parse_resource(&format!("/tor/keys/fp/{}", vec![FP; MAX_ITEMS].join("+")))
                .unwrap()
                .0,
            Resource::KeysByIdentity(vec![fp; MAX_ITEMS])
        );
    }

    fn split(reply: &Reply) -> (String, Vec<u8>) {
        let all = reply.to_vec();
        let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        (
            String::from_utf8(all[..end].to_vec()).unwrap(),
            all[end..].to_vec(),
        )
    }

    #[test]
    fn answers() {
        let budget = Arc::new(Semaphore::new(100));
        let doc = Document::new(b"router x\nsigned\n".to_vec());
        let found = |_: &Resource| Found::Document(doc.clone());
        let (h, b) = split(&answer(&get("/tor/server/authority"), found, &budget));
        assert_eq!(
            h,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: identity\r\nContent-Length: 16\r\n\r\n"
        );
        assert_eq!(b, b"router x\nsigned\n");
        let (h, b) = split(&answer(&get("/tor/server/authority.z"), found, &budget));
        assert!(h.contains("Content-Encoding: deflate\r\n"), "{h}");
        assert!(
            h.contains(&format!("Content-Length: {}\r\n", b.len())),
            "{h}"
        );
        assert_eq!(inflate_bounded(&b, 100).unwrap(), doc.plain());
        // HEAD: the same header, no body.
        let head = DirRequest::Get {
            path: "/tor/server/authority.z".into(),
            head: true,
            accept: None,
        };
        let (h2, b) = split(&answer(&head, found, &budget));
        assert_eq!((h2, b.len()), (h, 0));

        let nothing = |_: &Resource| Found::Nothing;
        assert!(
            answer(&get("/tor/keys/all"), nothing, &budget)
                .to_vec()
                .starts_with(b"HTTP/1.0 404 Not found\r\n")
        );
        assert!(
            answer(&get("/tor/keys/fp/zz"), found, &budget)
                .to_vec()
                .starts_with(b"HTTP/1.0 400 Bad request\r\n")
        );
        assert!(
            answer(&DirRequest::Bad(BadRequest::Method), found, &budget)
                .to_vec()
                .starts_with(b"HTTP/1.0 400 ")
        );

        // Pieces are concatenated, and take from the budget while the answer lives.
        let pieces = |_: &Resource| Found::Pieces(vec!["a\n".into(), "bb\n".into()]);
        let accept = DirRequest::Get {
            path: "/tor/micro/d/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            head: false,
            accept: Some(vec![Encoding::Deflate]),
        };
        let reply = answer(&accept, pieces, &budget);
        assert_eq!(budget.available_permits(), 95);
        let (h, b) = split(&reply);
        assert!(h.contains("Content-Encoding: deflate\r\n"), "{h}");
        assert_eq!(inflate_bounded(&b, 100).unwrap(), b"a\nbb\n");
        drop(reply);
        assert_eq!(budget.available_permits(), 100);
        let big = |_: &Resource| Found::Pieces(vec!["x".repeat(101).into()]);
        assert!(
            answer(&accept, big, &budget)
                .to_vec()
                .starts_with(b"HTTP/1.0 503 ")
        );
    }

    #[test]
    fn reply_chunks() {
        let budget = Arc::new(Semaphore::new(1));
        let body: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let doc = Document::new(body.clone());
        let mut s = DirStream::new();
        let req = s.feed(b"GET /tor/keys/all HTTP/1.0\r\n\r\n").unwrap();
        s.set_reply(answer(&req, |_| Found::Document(doc.clone()), &budget));
        let mut all = Vec::new();
        let mut out = Vec::new();
        loop {
            s.fill(&mut out);
            if out.is_empty() {
                break;
            }
            assert!(out.len() <= REPLY_CHUNK);
            // Take part of it, as the windows would.
            let n = out.len().min(7_000);
            all.extend(out.drain(..n));
        }
        let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(&all[end..], &body[..]);
    }

    proptest::proptest! {
        /// Hostile bytes: never a panic, at most one answer, and the buffer stays bounded.
        #[test]
        fn feed_never_panics(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000), 0..8)) {
            let mut d = DirStream::new();
            let mut answers = 0;
            for c in &chunks {
                if d.feed(c).is_some() {
                    answers += 1;
                }
                proptest::prop_assert!(d.request.len() <= MAX_REQUEST + 4);
            }
            proptest::prop_assert!(answers <= 1);
        }

        /// However a request is cut into cells, it reads the same.
        #[test]
        fn split_requests_read_the_same(
            path in "/[a-zA-Z0-9/+.-]{0,200}",
            header in "[A-Za-z-]{1,20}: [ -~]{0,100}",
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let req = format!("GET {path} HTTP/1.0\r\n{header}\r\nAccept-Encoding: deflate\r\n\r\n");
            let whole = DirStream::new().feed(req.as_bytes());
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(req.len())).collect();
            cuts.sort_unstable();
            let mut d = DirStream::new();
            let mut got = None;
            let mut at = 0;
            for c in cuts.into_iter().chain([req.len()]) {
                if let Some(r) = d.feed(&req.as_bytes()[at..c]) {
                    got = Some(r);
                }
                at = c;
            }
            proptest::prop_assert_eq!(&got, &whole);
            let is_get = matches!(whole, Some(DirRequest::Get { .. }));
            proptest::prop_assert!(is_get);
        }

        #[test]
        fn resource_parsing_never_panics(path in "[ -~]{0,300}") {
            let _ = parse_resource(&path);
        }

        #[test]
        fn inflate_round_trip_and_garbage(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5000),
                                          garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..500)) {
            proptest::prop_assert_eq!(inflate_bounded(&deflate(&data), data.len()).unwrap(), data.clone());
            if let Ok(out) = inflate_bounded(&garbage, 1000) {
                proptest::prop_assert!(out.len() <= 1000);
            }
        }
    }

    #[test]
    fn inflate_limits() {
        let data = vec![b'z'; 100_000];
        let z = deflate(&data);
        assert!(z.len() < 1000);
        assert_eq!(inflate_bounded(&z, 100_000).unwrap(), data);
        assert_eq!(
            inflate_bounded(&z, 99_999),
            Err(InflateError::TooLarge(99_999))
        );
        assert_eq!(
            inflate_bounded(&z[..z.len() - 5], 200_000),
            Err(InflateError::Truncated)
        );
        assert!(matches!(
            inflate_bounded(b"not zlib at all", 100),
            Err(InflateError::Corrupt(_))
        ));
        // Concatenated streams are one document.
        let mut two = deflate(b"first ");
        two.extend(deflate(b"second"));
        assert_eq!(inflate_bounded(&two, 100).unwrap(), b"first second");
        assert_eq!(inflate_bounded(b"", 100).unwrap(), b"");
        // RFC 1950 / RFC 1951 example: zlib of "a" made by Python's zlib.compress(b"a").
        assert_eq!(
            inflate_bounded(&hex::decode("789c4b040000620062").unwrap(), 10).unwrap(),
            b"a"
        );
    }
}

#[cfg(test)]
mod relay_list_resource_test {
    use super::*;

    #[test]
    fn relay_list_path_is_a_resource() {
        let path = onion_core::netdesc::RELAY_LIST_PATH;
        assert_eq!(parse_resource(path), Ok((Resource::RelayList, false)));
        assert_eq!(
            parse_resource(&format!("{path}.z")),
            Ok((Resource::RelayList, true))
        );
        assert_eq!(
            parse_resource(&format!("{path}/x")),
            Ok((Resource::Unknown, false))
        );
    }
}
