//! Small HTTP/1.1 servers and a client, on hyper: what the authority ([`crate::authority`])
//! and the dev network ([`crate::dev`]) serve, and how ORs publish their descriptors.
//!
//! - [`serve`]: accept loop for one listener with a [`Handler`] (bounded connections,
//!   header read timeout, stops at shutdown).
//! - [`StaticSite`]: the page (`www/`), the generated JS package (`pkg/`) and
//!   `/network.json`, from the repository's directory. Only plain file names are served (no
//!   `..`, no hidden files); a missing `pkg/` gets a page that says how to build it.
//! - [`demo_site`]: the built-in demo site the dev network's exit reaches: a few pages,
//!   [`DEMO_FILE_PATH`], [`DEMO_FILE_LEN`] bytes of deterministic content
//!   ([`demo_file_bytes`]), and [`DEMO_ECHO_PATH`], which sends a request's body back with its
//!   SHA-256. Served by [`serve_numbered`], whose responses tell which connection carried
//!   them ([`CONNECTION_HEADER`]).
//! - [`http_request`]: one request over any byte stream (TCP, or a Tor stream such as a
//!   BEGIN_DIR stream), with a bounded answer.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;

/// Most simultaneous connections to one listener.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send its request header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest file [`StaticSite`] serves.
pub const MAX_FILE: u64 = 64 << 20;
/// The demo site's binary file.
pub const DEMO_FILE_PATH: &str = "/files/5mb.bin";
/// Its length: 5 MiB.
pub const DEMO_FILE_LEN: usize = 5 << 20;
/// The demo site's echo: a POST's body is sent back, with [`ECHO_SHA256_HEADER`].
pub const DEMO_ECHO_PATH: &str = "/echo";
/// The SHA-256 of the echoed body (lowercase hex), computed by the server.
pub const ECHO_SHA256_HEADER: &str = "x-body-sha256";
/// The largest body the echo takes: 16 MiB.
pub const MAX_ECHO: usize = 16 << 20;

/// A response with its whole body.
pub type HttpResponse = Response<Full<Bytes>>;
/// A boxed future of a response.
pub type ResponseFuture = Pin<Box<dyn Future<Output = HttpResponse> + Send>>;
/// What answers the requests of one listener.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> ResponseFuture + Send + Sync>;

/// A response with `status`, `content_type` and `body`.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    response(status, "text/plain; charset=utf-8", body)
}

/// The response header [`serve_numbered`] adds: the connection's number on its listener.
pub const CONNECTION_HEADER: &str = "x-connection";

/// Serve `listener` with `handler` until `shutdown`. `what` names the listener in logs.
/// Connections are kept alive between requests (HTTP/1.1).
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    shutdown: Shutdown,
    what: &'static str,
) {
    serve_inner(listener, handler, shutdown, what, false).await;
}

/// [`serve`], and every response carries [`CONNECTION_HEADER`]: the number of the connection
/// it was sent on (1, 2, ... per listener), so that a test client can tell whether two
/// requests shared a connection (keep-alive). For the demo site.
pub async fn serve_numbered(
    listener: TcpListener,
    handler: Handler,
    shutdown: Shutdown,
    what: &'static str,
) {
    serve_inner(listener, handler, shutdown, what, true).await;
}

async fn serve_inner(
    listener: TcpListener,
    handler: Handler,
    shutdown: Shutdown,
    what: &'static str,
    numbered: bool,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = shutdown.wait() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!("{what}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        let shutdown = shutdown.clone();
        connections = connections.wrapping_add(1);
        let number = numbered.then(|| HeaderValue::from(connections));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let fut = handler(req);
                let number = number.clone();
                async move {
                    let mut resp = fut.await;
                    if let Some(n) = number {
                        resp.headers_mut().insert(CONNECTION_HEADER, n);
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.wait() => {}
                r = conn => if let Err(e) = r {
                    tracing::debug!("{what}: {e}");
                }
            }
            drop(permit);
        });
    }
}

/// Read a request's body, at most `max` bytes, within [`BODY_TIMEOUT`].
pub async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, HttpResponse> {
    let read = Limited::new(req.into_body(), max).collect();
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body missing or larger than {max} bytes\n"),
        )),
        Err(_) => Err(text(StatusCode::REQUEST_TIMEOUT, "body too slow\n")),
    }
}

/// Why an HTTP request failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request could not be made (bad host or path).
    #[error("invalid request: {0}")]
    Request(String),
    /// The connection or the HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The answer's body was larger than allowed.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Send one HTTP/1.1 request over `io` (`body`, with its content type, for a POST) and
/// return the status and the body (at most `max_body` bytes), all within `timeout`.
pub async fn http_request<T>(
    io: T,
    method: Method,
    host: &str,
    path: &str,
    body: Option<(Vec<u8>, &'static str)>,
    max_body: usize,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ClientError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        let conn = tokio::spawn(conn);
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host);
        let payload = match body {
            Some((bytes, ct)) => {
                b = b
                    .header(CONTENT_TYPE, ct)
                    .header(CONTENT_LENGTH, bytes.len());
                Bytes::from(bytes)
            }
            None => Bytes::new(),
        };
        let req = b
            .body(Full::new(payload))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|_| ClientError::TooLarge(max_body))?
            .to_bytes();
        conn.abort();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

/// The content type of a file, by its extension.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "css" => "text/css; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The relative path of a URL path if every segment is a plain name (`A-Z a-z 0-9 . _ -`,
/// not starting with a dot); `index.html` for a directory.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let trimmed = path.trim_start_matches('/');
    for seg in trimmed.split('/') {
        if seg.is_empty() {
            continue;
        }
        if seg.starts_with('.')
            || !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return None;
        }
        out.push(seg);
    }
    if path.ends_with('/') || out.as_os_str().is_empty() {
        out.push("index.html");
    }
    Some(out)
}

/// The page served for `/pkg/...` when `pkg/` has not been built.
const NO_PKG_PAGE: &str = "<!doctype html>\n<meta charset=\"utf-8\">\n<title>pkg/ not built</title>\n\
<h1>The JavaScript package (<code>pkg/</code>) is not built</h1>\n\
<p>The in-page Onion Proxy is WebAssembly generated into <code>pkg/</code>. Build it from the \
repository's directory (see the README's commands), then reload this page.</p>\n";

/// The page, the JS package and the network description, from a repository directory.
#[derive(Debug, Clone)]
pub struct StaticSite {
    www: PathBuf,
    pkg: PathBuf,
    network_json: Arc<RwLock<Option<String>>>,
}

impl StaticSite {
    /// Serve `root/www` at `/` and `root/pkg` at `/pkg/`.
    pub fn new(root: &Path) -> Self {
        StaticSite {
            www: root.join("www"),
            pkg: root.join("pkg"),
            network_json: Arc::default(),
        }
    }

    /// Serve `json` at `/network.json`.
    pub fn set_network_json(&self, json: String) {
        *self
            .network_json
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(json);
    }

    /// The handler.
    pub fn handler(self) -> Handler {
        let site = Arc::new(self);
        Arc::new(move |req| {
            let site = Arc::clone(&site);
            Box::pin(async move { site.answer(req.method(), req.uri().path()).await })
        })
    }

    async fn answer(&self, method: &Method, path: &str) -> HttpResponse {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        if path == "/network.json" {
            let json = self
                .network_json
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            return match json {
                Some(j) => {
                    let mut r = response(StatusCode::OK, "application/json", j);
                    r.headers_mut().insert(
                        hyper::header::CACHE_CONTROL,
                        HeaderValue::from_static("no-store"),
                    );
                    r
                }
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no network description yet\n",
                ),
            };
        }
        let (dir, rest, is_pkg) = match path.strip_prefix("/pkg/") {
            Some(rest) => (&self.pkg, rest, true),
            None => (&self.www, path, false),
        };
        if is_pkg && !self.pkg.is_dir() {
            return response(
                StatusCode::NOT_FOUND,
                "text/html; charset=utf-8",
                NO_PKG_PAGE,
            );
        }
        let Some(rel) = safe_relative(rest) else {
            return text(StatusCode::NOT_FOUND, "not found\n");
        };
        let file = dir.join(&rel);
        match tokio::fs::metadata(&file).await {
            Ok(m) if m.is_file() && m.len() <= MAX_FILE => {}
            _ => return text(StatusCode::NOT_FOUND, "not found\n"),
        }
        match tokio::fs::read(&file).await {
            Ok(bytes) => {
                let name = rel.to_string_lossy();
                response(StatusCode::OK, content_type(&name), bytes)
            }
            Err(_) => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// The demo file's content: byte `i` of a xorshift64 stream seeded with a constant, so a
/// client can check every byte it got.
pub fn demo_file_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(x.to_le_bytes().get(..take).unwrap_or_default());
    }
    out
}

/// The demo site's home page.
pub const DEMO_INDEX: &str = "<!doctype html>\n<meta charset=\"utf-8\">\n<title>onion-wasm demo site</title>\n\
<h1>onion-wasm demo site</h1>\n\
<p>You reached this page through a circuit of the local dev network: the exit fetched it \
for you.</p>\n<ul>\n<li><a href=\"/about.html\">About</a></li>\n\
<li><a href=\"/files/5mb.bin\">A 5 MiB file</a> (deterministic content)</li>\n</ul>\n";

/// The demo site's second page.
pub const DEMO_ABOUT: &str = "<!doctype html>\n<meta charset=\"utf-8\">\n<title>About</title>\n\
<h1>About</h1>\n<p>A built-in site of <code>or-server dev</code>, to browse offline.</p>\n\
<p><a href=\"/\">Back</a></p>\n";

/// The echo: the body of any request (at most [`MAX_ECHO`] bytes, `Content-Length` or
/// chunked) back with the request's content type, its SHA-256 in [`ECHO_SHA256_HEADER`] and
/// the method in `x-method`.
async fn echo(req: Request<Incoming>) -> HttpResponse {
    use sha2::{Digest, Sha256};
    let method = HeaderValue::from_str(req.method().as_str()).ok();
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let body = match read_body(req, MAX_ECHO).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let digest = hex::encode(Sha256::digest(&body));
    let mut r = response(StatusCode::OK, "application/octet-stream", body);
    let h = r.headers_mut();
    if let Some(ct) = content_type {
        h.insert(CONTENT_TYPE, ct);
    }
    if let Ok(v) = HeaderValue::from_str(&digest) {
        h.insert(ECHO_SHA256_HEADER, v);
    }
    if let Some(m) = method {
        h.insert("x-method", m);
    }
    r
}

/// The demo site's handler.
pub fn demo_site() -> Handler {
    let file = Bytes::from(demo_file_bytes(DEMO_FILE_LEN));
    Arc::new(move |req| {
        let file = file.clone();
        Box::pin(async move {
            if req.uri().path() == DEMO_ECHO_PATH {
                return echo(req).await;
            }
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
            }
            match req.uri().path() {
                "/" | "/index.html" => {
                    response(StatusCode::OK, "text/html; charset=utf-8", DEMO_INDEX)
                }
                "/about.html" => response(StatusCode::OK, "text/html; charset=utf-8", DEMO_ABOUT),
                DEMO_FILE_PATH => response(StatusCode::OK, "application/octet-stream", file),
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            }
        })
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn only_plain_names_are_served() {
        assert_eq!(safe_relative("/"), Some(PathBuf::from("index.html")));
        assert_eq!(safe_relative("/a/b.js"), Some(PathBuf::from("a/b.js")));
        assert_eq!(safe_relative("/a/"), Some(PathBuf::from("a/index.html")));
        assert_eq!(safe_relative("/../etc/passwd"), None);
        assert_eq!(safe_relative("/.git/config"), None);
        assert_eq!(safe_relative("/a%2F..%2Fb"), None);
    }

    #[test]
    fn demo_file_is_deterministic() {
        let a = demo_file_bytes(1000);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, demo_file_bytes(1000));
        assert_eq!(demo_file_bytes(1003).get(..1000), Some(&a[..]));
        // Not constant.
        assert!(a.iter().any(|&b| b != a[0]));
    }

    /// The echo returns the body and its SHA-256 (Content-Length and chunked requests), and
    /// requests on one kept-alive connection carry one connection number.
    #[tokio::test]
    async fn demo_echo_and_connection_numbers() {
        use sha2::{Digest, Sha256};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(serve_numbered(l, demo_site(), shutdown, "test"));
        let body: Vec<u8> = demo_file_bytes(100_000);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (status, echoed) = http_request(
            tcp,
            Method::POST,
            "x",
            DEMO_ECHO_PATH,
            Some((body.clone(), "application/octet-stream")),
            1 << 20,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed, body);
        // Raw: a chunked POST then a GET on the same connection; both on connection 2.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut all = Vec::new();
        tcp.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8_lossy(&all).to_ascii_lowercase();
        let sha = hex::encode(Sha256::digest(b"abcde"));
        assert!(text.contains(&format!("x-body-sha256: {sha}")), "{text}");
        assert!(text.contains("x-method: post"), "{text}");
        assert_eq!(text.matches("x-connection: 2\r\n").count(), 2, "{text}");
        assert!(text.contains("\r\n\r\nabcde"), "{text}");
        trigger.trigger();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn static_site_and_client() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        std::fs::write(dir.path().join("www/index.html"), "hello").unwrap();
        let site = StaticSite::new(dir.path());
        site.set_network_json("{}".into());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(serve(l, site.handler(), shutdown, "test"));
        let get = |path: &'static str| async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            http_request(
                tcp,
                Method::GET,
                "x",
                path,
                None,
                1 << 20,
                Duration::from_secs(10),
            )
            .await
            .unwrap()
        };
        assert_eq!(get("/").await, (StatusCode::OK, Bytes::from("hello")));
        assert_eq!(get("/network.json").await.1, Bytes::from("{}"));
        assert_eq!(get("/nope.html").await.0, StatusCode::NOT_FOUND);
        let (status, body) = get("/pkg/onion.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(std::str::from_utf8(&body).unwrap().contains("not built"));
        trigger.trigger();
        task.await.unwrap();
    }
}
