//! The SOCKS5 front end of the native OP: a listener whose clients' requests become
//! [`OpClient`] streams and resolves. The handshake itself is
//! [`onion_core::socks::SocksServer`]; this module only moves bytes.
//!
//! SOCKS5 (RFC 1928) CONNECT to host names, IPv4 and IPv6 addresses, Tor's RESOLVE (0xF0)
//! and RESOLVE_PTR (0xF1); username/password (RFC 1929) credentials isolate streams as tor's
//! `IsolateSOCKSAuth`. Failures are SOCKS reply codes ([`ClientError::socks_reply`](super::ClientError::socks_reply)): exit
//! policy 0x02, resolve failed 0x04, connection refused 0x05, timeout 0x06, no route 0x03,
//! anything else 0x01. A stream that fails after it was connected resets the client's TCP
//! connection, so that a cut transfer cannot pass for a complete one. Tor streams have no
//! half-close: when the client ends its side, the stream stays open until the destination
//! ends it (the client's EOF is not forwarded), so a half-closing client still gets its
//! answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use onion_core::engine::{ResolvedAnswer, ResolvedValue};
use onion_core::socks::{
    SocksCommand, SocksConfig, SocksError, SocksReply, SocksReplyCode, SocksRequest, SocksServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{OpClient, OpStream};

/// How long a SOCKS client may take to send its request.
pub const SOCKS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most SOCKS clients served at once; more wait in the listen queue.
pub const MAX_SOCKS_CLIENTS: usize = 1024;

/// Accept SOCKS clients on `listener` forever, each served by its own task
/// ([`serve_socks_client`]) through `op`.
pub async fn serve_socks(listener: TcpListener, op: OpClient) {
    let limit = Arc::new(Semaphore::new(MAX_SOCKS_CLIENTS));
    loop {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let op = op.clone();
        tokio::spawn(async move {
            serve_socks_client(op, tcp).await;
            drop(permit);
        });
    }
}

/// What Tor answers a browser that speaks HTTP to the SOCKS port.
const NOT_AN_HTTP_PROXY: &[u8] = b"HTTP/1.0 501 onion-op is not an HTTP Proxy\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n\
This is a SOCKS5 proxy, not an HTTP proxy: configure your application to use SOCKS5.\r\n";

/// Read the SOCKS handshake; `None` if it failed (the client got its reply).
async fn handshake(tcp: &mut TcpStream) -> Option<(SocksRequest, Vec<u8>)> {
    let mut socks = SocksServer::new(SocksConfig::default());
    let mut buf = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout(SOCKS_HANDSHAKE_TIMEOUT, tcp.read(&mut buf)).await {
            Ok(Ok(0)) => return None,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "SOCKS client read failed");
                return None;
            }
            Err(_) => {
                tracing::debug!("SOCKS handshake timed out");
                return None;
            }
        };
        let data = buf.get(..n).unwrap_or_default();
        let result = socks.feed(data);
        let out = socks.take_output();
        if !out.is_empty() && tcp.write_all(&out).await.is_err() {
            return None;
        }
        match result {
            Ok(used) => {
                if let Some(req) = socks.request() {
                    let early = data.get(used..).unwrap_or_default().to_vec();
                    return Some((req.clone(), early));
                }
            }
            Err(e) => {
                if e == SocksError::HttpRequest {
                    let _ = tcp.write_all(NOT_AN_HTTP_PROXY).await;
                }
                tracing::info!(error = %e, "SOCKS handshake refused");
                return None;
            }
        }
    }
}

/// Serve one SOCKS client: handshake, then the stream (or the resolve) and the reply.
pub async fn serve_socks_client(op: OpClient, mut tcp: TcpStream) {
    let Some((req, early)) = handshake(&mut tcp).await else {
        return;
    };
    let isolation = req.isolation_key();
    let reply = match req.command {
        SocksCommand::Connect => {
            let host = req.addr.host();
            match op.connect(&host, req.port, isolation.as_deref()).await {
                Ok(stream) => {
                    tracing::debug!(dest = %req.addr, port = req.port, "stream open");
                    relay(tcp, stream, early).await;
                    return;
                }
                Err(e) => {
                    tracing::info!(dest = %req.addr, port = req.port, error = %e, "stream failed");
                    SocksReply::Failed(e.socks_reply())
                }
            }
        }
        SocksCommand::Resolve | SocksCommand::ResolvePtr => {
            match op.resolve(&req.resolve_query(), isolation.as_deref()).await {
                Ok(answers) => resolve_reply(req.command, &answers),
                Err(e) => {
                    tracing::info!(query = %req.addr, error = %e, "resolve failed");
                    SocksReply::Failed(e.socks_reply())
                }
            }
        }
    };
    let _ = tcp.write_all(&reply.to_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// The SOCKS reply for RESOLVED answers: the first IPv4 address (else IPv6) for RESOLVE,
/// the first host name for RESOLVE_PTR; host unreachable if there is none.
fn resolve_reply(command: SocksCommand, answers: &[ResolvedAnswer]) -> SocksReply {
    let ip = |want_v4: bool| {
        answers.iter().find_map(|a| match &a.value {
            ResolvedValue::Ipv4(v4) if want_v4 => Some(IpAddr::V4(*v4)),
            ResolvedValue::Ipv6(v6) if !want_v4 => Some(IpAddr::V6(*v6)),
            _ => None,
        })
    };
    let found = match command {
        SocksCommand::ResolvePtr => answers.iter().find_map(|a| match &a.value {
            ResolvedValue::Hostname(h) => Some(SocksReply::ResolvedHostname(h.clone())),
            _ => None,
        }),
        _ => ip(true).or_else(|| ip(false)).map(SocksReply::ResolvedIp),
    };
    found.unwrap_or(SocksReply::Failed(SocksReplyCode::HOST_UNREACHABLE))
}

/// Reply success, then copy both ways until both directions end. A stream failure resets
/// the client's connection, so that it cannot mistake a cut transfer for a complete one.
async fn relay(mut tcp: TcpStream, mut stream: OpStream, early: Vec<u8>) {
    let ok = SocksReply::Succeeded { bound: None }.to_bytes();
    if tcp.write_all(&ok).await.is_err() {
        return;
    }
    if !early.is_empty() && stream.write_all(&early).await.is_err() {
        let _ = tcp.set_zero_linger();
        return;
    }
    match tokio::io::copy_bidirectional(&mut tcp, &mut stream).await {
        Ok((up, down)) => tracing::debug!(up, down, "stream done"),
        Err(e) => {
            tracing::info!(error = %e, "stream failed; resetting the SOCKS connection");
            let _ = tcp.set_zero_linger();
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use onion_core::engine::{EngineError, StreamError};

    use crate::driver::ClientError;

    fn answer(value: ResolvedValue) -> ResolvedAnswer {
        ResolvedAnswer { value, ttl: 60 }
    }

    #[test]
    fn resolve_replies_prefer_ipv4_and_names_for_ptr() {
        let v4 = ResolvedValue::Ipv4("10.0.0.1".parse().unwrap());
        let v6 = ResolvedValue::Ipv6("::1".parse().unwrap());
        let name = ResolvedValue::Hostname("a.example".into());
        let all = [answer(v6.clone()), answer(name.clone()), answer(v4)];
        assert_eq!(
            resolve_reply(SocksCommand::Resolve, &all),
            SocksReply::ResolvedIp("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            resolve_reply(SocksCommand::Resolve, &[answer(v6)]),
            SocksReply::ResolvedIp("::1".parse().unwrap())
        );
        assert_eq!(
            resolve_reply(SocksCommand::ResolvePtr, &all),
            SocksReply::ResolvedHostname("a.example".into())
        );
        let err = [answer(ResolvedValue::TransientError(vec![]))];
        assert_eq!(
            resolve_reply(SocksCommand::Resolve, &err),
            SocksReply::Failed(SocksReplyCode::HOST_UNREACHABLE)
        );
        assert_eq!(
            resolve_reply(SocksCommand::ResolvePtr, &[answer(name)][..0]),
            SocksReply::Failed(SocksReplyCode::HOST_UNREACHABLE)
        );
    }

    #[test]
    fn client_errors_become_socks_codes() {
        let code = |e: ClientError| e.socks_reply().0;
        assert_eq!(code(ClientError::Stream(StreamError::ExitPolicy)), 2);
        assert_eq!(code(ClientError::Stream(StreamError::ResolveFailed)), 4);
        assert_eq!(code(ClientError::Stream(StreamError::ConnectionRefused)), 5);
        assert_eq!(code(ClientError::Stream(StreamError::Timeout)), 6);
        assert_eq!(code(ClientError::Stream(StreamError::NoRoute)), 3);
        assert_eq!(code(ClientError::Engine(EngineError::NotReady)), 3);
        assert_eq!(
            code(ClientError::Engine(EngineError::InvalidTarget("x".into()))),
            8
        );
        assert_eq!(code(ClientError::Stopped), 1);
        assert_eq!(
            ClientError::Stream(StreamError::ConnectionRefused)
                .to_io()
                .kind(),
            std::io::ErrorKind::ConnectionRefused
        );
    }
}
