//! RELAY_BEGIN_DIR: a minimal HTTP/1.0 directory server on the stream (dir-spec §4).
//!
//! The request is read up to its blank line (at most [`MAX_REQUEST`] bytes), then answered
//! and the stream ended (END, DONE):
//!
//! - `GET /tor/server/authority` and `GET /tor/server/fp/<our fingerprint>`: our server
//!   descriptor — **not built yet**: answered with 404 for now;
//! - any other `GET` (or HEAD): 404 Not found;
//! - anything else (not HTTP, too long): 400 Bad request.
//!
//! TODO(directory): build and sign our server descriptor (dir-spec §2.1.1: identity and
//! Ed25519 certificates, onion keys and their cross-certificates, exit policy, family,
//! `router-sig-ed25519` and `router-signature`), serve it here, and add directory caching
//! and bridge descriptors.

use crate::server::ServerContext;

/// Longest request accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;

/// A directory stream: the request so far.
#[derive(Debug, Default)]
pub struct DirStream {
    request: Vec<u8>,
    answered: bool,
}

/// A complete request, to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirRequest {
    /// `GET` (or `HEAD`) of this path.
    Get {
        /// The path, as sent.
        path: String,
        /// Whether it was HEAD (no body).
        head: bool,
    },
    /// Not a request we understand.
    Bad,
}

impl DirStream {
    /// A stream waiting for its request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes from the client. Returns the request once its header is complete (once).
    pub fn feed(&mut self, data: &[u8]) -> Option<DirRequest> {
        if self.answered {
            return None;
        }
        self.request.extend_from_slice(data);
        let end = self.request.windows(4).position(|w| w == b"\r\n\r\n");
        let request = match end {
            Some(end) => parse(self.request.get(..end).unwrap_or_default()),
            None if self.request.len() > MAX_REQUEST => DirRequest::Bad,
            None => return None,
        };
        self.answered = true;
        self.request = Vec::new();
        Some(request)
    }
}

/// Parse a request header (without the blank line).
fn parse(header: &[u8]) -> DirRequest {
    if header.len() > MAX_REQUEST {
        return DirRequest::Bad;
    }
    let Ok(text) = std::str::from_utf8(header) else {
        return DirRequest::Bad;
    };
    let line = text.split("\r\n").next().unwrap_or_default();
    let mut words = line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return DirRequest::Bad;
    };
    if !version.starts_with("HTTP/1.") || !path.starts_with('/') {
        return DirRequest::Bad;
    }
    match method {
        "GET" => DirRequest::Get {
            path: path.to_owned(),
            head: false,
        },
        "HEAD" => DirRequest::Get {
            path: path.to_owned(),
            head: true,
        },
        _ => DirRequest::Bad,
    }
}

/// An HTTP/1.0 response.
fn response(status: &str, body: &[u8], head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

impl DirRequest {
    /// The response bytes.
    pub fn build(&self, ctx: &ServerContext) -> Vec<u8> {
        match self {
            DirRequest::Bad => response("400 Bad request", b"", false),
            DirRequest::Get { path, head } => {
                let ours = {
                    let keys = ctx
                        .keys
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let fp = keys.rsa_fingerprint().to_string();
                    path == "/tor/server/authority"
                        || path
                            .strip_prefix("/tor/server/fp/")
                            .is_some_and(|p| p.eq_ignore_ascii_case(&fp))
                };
                // TODO(directory): serve our server descriptor when `ours`.
                let _ = ours;
                response("404 Not found", b"", *head)
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn requests() {
        let mut d = DirStream::new();
        assert_eq!(d.feed(b"GET /tor/server/authority HTTP/1.0\r\n"), None);
        assert_eq!(
            d.feed(b"Host: x\r\n\r\n"),
            Some(DirRequest::Get {
                path: "/tor/server/authority".into(),
                head: false
            })
        );
        // Answered once.
        assert_eq!(d.feed(b"GET / HTTP/1.0\r\n\r\n"), None);
        for bad in [
            &b"POST / HTTP/1.0\r\n\r\n"[..],
            b"GET / SPDY\r\n\r\n",
            b"GET x HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.0 extra\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert_eq!(DirStream::new().feed(bad), Some(DirRequest::Bad), "{bad:?}");
        }
        let mut d = DirStream::new();
        assert_eq!(d.feed(&[b'a'; MAX_REQUEST]), None);
        assert_eq!(d.feed(b"a"), Some(DirRequest::Bad));
        assert_eq!(
            DirStream::new().feed(b"HEAD /x HTTP/1.1\r\n\r\n"),
            Some(DirRequest::Get {
                path: "/x".into(),
                head: true
            })
        );
    }

    #[test]
    fn responses() {
        assert_eq!(
            response("404 Not found", b"", false),
            b"HTTP/1.0 404 Not found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
        );
        assert!(response("200 OK", b"body", true).ends_with(b"Content-Length: 4\r\n\r\n"));
    }
}
