//! A local HTTP/1.1 server serving the deterministic body ([`crate::body`]), and a minimal
//! GET client over any byte stream (a [`DataStream`](onion_op::DataStream) through a circuit).
//!
//! `GET /bytes/N` answers `200` with the first `N` bytes of the stream (at most
//! [`MAX_BODY`]), `Content-Length: N`, then closes the connection.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::body::BodyGen;
use crate::{Error, Result};

/// The largest body served.
pub const MAX_BODY: usize = 256 * 1024 * 1024;
/// The most request-header bytes read.
const MAX_REQUEST: usize = 8 * 1024;

/// The server; stopped on drop.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Listen on 127.0.0.1 (a free port) and serve in the background.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::io("bind the HTTP server"))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("HTTP server address"))?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = serve(tcp).await;
                });
            }
        });
        Ok(HttpServer { addr, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answer one request.
async fn serve(mut tcp: TcpStream) -> Result<()> {
    let _ = tcp.set_nodelay(true);
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp
            .read(&mut buf)
            .await
            .map_err(Error::io("read request"))?;
        if n == 0 || req.len() > MAX_REQUEST {
            return Err(Error::other("bad request"));
        }
        req.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = String::from_utf8_lossy(&req);
    let len = line
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.strip_prefix("/bytes/"))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n <= MAX_BODY);
    let Some(len) = len else {
        let msg = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        tcp.write_all(msg).await.map_err(Error::io("write 404"))?;
        return Ok(());
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes())
        .await
        .map_err(Error::io("write head"))?;
    let mut g = BodyGen::default();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        let piece = chunk.get_mut(..n).unwrap_or_default();
        g.fill(piece);
        tcp.write_all(piece)
            .await
            .map_err(Error::io("write body"))?;
        left -= n;
    }
    tcp.shutdown().await.map_err(Error::io("close"))?;
    Ok(())
}

/// `GET /bytes/{len}` from `host` over `stream`; the body, after checking the status and
/// that the connection closed after exactly `Content-Length` bytes.
pub async fn get_bytes<S>(stream: &mut S, host: &str, len: usize) -> Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = format!(
        "GET /bytes/{len} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: onion-tests\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(Error::io("send the request"))?;
    stream
        .flush()
        .await
        .map_err(Error::io("flush the request"))?;
    let mut all = Vec::with_capacity(len.saturating_add(512));
    stream
        .read_to_end(&mut all)
        .await
        .map_err(Error::io("read the response"))?;
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::other("no end of headers in the response"))?;
    let (head, rest) = all.split_at(split);
    let body = rest.get(4..).unwrap_or_default();
    let head = String::from_utf8_lossy(head);
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(Error::other(format!("unexpected response: {head}")));
    }
    let declared = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .ok_or_else(|| Error::other("no Content-Length"))?;
    if declared != body.len() {
        return Err(Error::other(format!(
            "Content-Length {declared}, got {} bytes",
            body.len()
        )));
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod test {
    use super::*;

    #[tokio::test]
    async fn serves_the_deterministic_body() {
        let server = HttpServer::start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        let got = get_bytes(&mut tcp, "127.0.0.1", 200_000).await.unwrap();
        assert!(crate::body::check(&got, 200_000));
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(b"GET /nothing HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut all = Vec::new();
        tcp.read_to_end(&mut all).await.unwrap();
        assert!(all.starts_with(b"HTTP/1.1 404"));
    }
}
