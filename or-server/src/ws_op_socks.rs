//! The seed's WS_OP_SOCKS listener: a SOCKS5 server (`[seed] ws_op_socks`, off by default)
//! whose CONNECTs to an associated fake domain are relayed, as RELAY_WS streams, to the in-page
//! OP that associated it; see [`crate::seed`] for the mapping and the wire form.
//!
//! Per connection: the SOCKS5 handshake (the core's [`SocksServer`]: no authentication or any
//! username/password, CONNECT only), within [`HANDSHAKE_TIMEOUT`]; the host is looked up in the
//! association table ([`SeedState::lookup`](crate::seed::SeedState::lookup)); no association,
//! an IP address, or a circuit that is gone is answered "host unreachable" (0x04), another
//! command "command not supported" (0x07). Then two halves: a reader that reads the browser
//! only with credit (`limits.max_queued_bytes_per_stream` bytes, given back by the link task
//! as the circuit takes them) and a writer that writes what the OP answers, until either side
//! ends. At most [`MAX_CONNECTIONS`] connections are served at once; more are closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use onion_cell::relaycell::OrWsAddr;
use onion_core::socks::{
    SocksAddr, SocksCommand, SocksConfig, SocksReply, SocksReplyCode, SocksRequest, SocksServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::router::{LinkMsg, Owner};
use crate::seed::{SeedMsg, TO_SOCKS_MSGS, WS_CHUNK, WsDown};
use crate::server::{ServerContext, accept_next};

/// Time a client has to complete the SOCKS5 handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most SOCKS connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// Accept SOCKS connections until shutdown.
pub async fn serve(listener: TcpListener, ctx: Arc<ServerContext>) {
    if listener.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            "ws_op_socks listens on a non-loopback address: whoever reaches it browses through \
             the in-page OPs that associated a fake domain"
        );
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    while let Some((tcp, peer)) =
        accept_next(&listener, &ctx.shutdown, &mut conns, "ws_op_socks").await
    {
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("ws_op_socks: connection limit reached: closing");
            continue;
        };
        let ctx = Arc::clone(&ctx);
        conns.spawn(async move {
            let shutdown = ctx.shutdown.clone();
            tokio::select! {
                () = shutdown.wait() => {}
                () = connection(tcp, peer, ctx) => {}
            }
            drop(slot);
        });
    }
    conns.shutdown().await;
}

/// The SOCKS5 handshake: the request and the client's early data, or `None` if it failed
/// (the reply the protocol prescribes is written).
async fn handshake(tcp: &mut TcpStream) -> Option<(SocksRequest, Vec<u8>)> {
    let mut socks = SocksServer::new(SocksConfig {
        allow_no_auth: true,
        allow_user_pass: true,
        prefer_no_auth: true,
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        let fed = socks.feed(chunk);
        let out = socks.take_output();
        if !out.is_empty() {
            tcp.write_all(&out).await.ok()?;
        }
        let used = match fed {
            Ok(used) => used,
            Err(e) => {
                tracing::debug!("ws_op_socks: {e}");
                return None;
            }
        };
        if let Some(req) = socks.request() {
            let early = chunk.get(used..).unwrap_or_default().to_vec();
            return Some((req.clone(), early));
        }
    }
}

async fn reply(tcp: &mut TcpStream, r: SocksReply) -> bool {
    tcp.write_all(&r.to_bytes()).await.is_ok()
}

/// Serve one SOCKS connection.
async fn connection(mut tcp: TcpStream, peer: SocketAddr, ctx: Arc<ServerContext>) {
    let _ = tcp.set_nodelay(true);
    let Ok(Some((req, early))) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut tcp)).await
    else {
        return;
    };
    let unreachable = SocksReply::Failed(SocksReplyCode::HOST_UNREACHABLE);
    if req.command != SocksCommand::Connect {
        reply(
            &mut tcp,
            SocksReply::Failed(SocksReplyCode::COMMAND_NOT_SUPPORTED),
        )
        .await;
        return;
    }
    let host = match &req.addr {
        SocksAddr::Hostname(h) => h.clone(),
        SocksAddr::Ip(_) => {
            reply(&mut tcp, unreachable).await;
            return;
        }
    };
    let Some((domain, owner)) = ctx.seed.lookup(&host) else {
        tracing::info!("ws_op_socks: no association for the requested host");
        reply(&mut tcp, unreachable).await;
        return;
    };
    let request = ctx.seed.next_request();
    let credit = Arc::new(Semaphore::new(
        usize::try_from(ctx.config.limits.max_queued_bytes_per_stream)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS),
    ));
    let (to_socks, mut from_link) = mpsc::channel(TO_SOCKS_MSGS);
    let (open_tx, open_rx) = oneshot::channel();
    let open = SeedMsg::Open {
        request,
        addr: OrWsAddr {
            remote_address: host,
            remote_port: req.port,
            conn_port: peer.port(),
            // Filled in by the link task (the stream id).
            request_id: String::new(),
        },
        to_socks,
        credit: Arc::clone(&credit),
        reply: open_tx,
    };
    if send(&owner, open).await.is_err() || !matches!(open_rx.await, Ok(true)) {
        tracing::debug!("ws_op_socks: the circuit of {domain} refused the request");
        reply(&mut tcp, unreachable).await;
        return;
    }
    if !reply(&mut tcp, SocksReply::Succeeded { bound: None }).await {
        let _ = send(&owner, SeedMsg::End { request }).await;
        return;
    }
    let (mut rd, mut wr) = tcp.into_split();
    // The browser -> OP half.
    let reader_owner = owner.clone();
    let reader = tokio::spawn(async move {
        let owner = reader_owner;
        if !early.is_empty() {
            // Early data is small (it came with the handshake); it is sent without credit.
            if send(
                &owner,
                SeedMsg::Data {
                    request,
                    data: early,
                },
            )
            .await
            .is_err()
            {
                return;
            }
        }
        let mut buf = vec![0u8; WS_CHUNK];
        loop {
            let Ok(first) = credit.acquire().await else {
                break;
            };
            first.forget();
            let more = credit.available_permits().min(WS_CHUNK.saturating_sub(1));
            let extra = u32::try_from(more)
                .ok()
                .and_then(|m| credit.try_acquire_many(m).ok());
            let held = 1 + extra.map_or(0, |p| {
                let n = p.num_permits();
                p.forget();
                n
            });
            // A read error ends the request like EOF.
            let n: usize = rd
                .read(buf.get_mut(..held).unwrap_or_default())
                .await
                .unwrap_or_default();
            credit.add_permits(held.saturating_sub(n));
            if n == 0 {
                break;
            }
            let data = buf.get(..n).unwrap_or_default().to_vec();
            if send(&owner, SeedMsg::Data { request, data }).await.is_err() {
                return;
            }
        }
        let _ = send(&owner, SeedMsg::End { request }).await;
    });
    // The OP -> browser half.
    while let Some(WsDown::Data(bytes)) = from_link.recv().await {
        if wr.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
    reader.abort();
    let _ = send(&owner, SeedMsg::End { request }).await;
}

/// Send a message to the link task that owns the circuit.
async fn send(owner: &Owner, msg: SeedMsg) -> Result<(), ()> {
    owner
        .tx
        .send(LinkMsg::Seed {
            circ: owner.circ,
            token: owner.token,
            msg,
        })
        .await
        .map_err(|_| ())
}
