//! Exit streams: RELAY_BEGIN and RELAY_RESOLVE as tasks.
//!
//! A BEGIN task resolves the target (IP literals are used as they are; names with
//! `tokio::net::lookup_host`), checks **every** resolved address with the exit guard (the
//! internal-address guard, then the exit policy: a name that resolves to loopback or a
//! private range is refused outright), connects over TCP (`TCP_NODELAY`, within
//! [`CONNECT_TIMEOUT`]) and then moves bytes both ways until either side ends:
//!
//! - exit → client: the task reads only while it holds credit (the link task gives it back
//!   as the circuit's windows take the bytes), so at most
//!   `limits.max_queued_bytes_per_stream` bytes wait per stream;
//! - client → exit: the link task hands DATA over a bounded channel; each write is reported
//!   back ([`StreamEvent::Flushed`]), and the stream's SENDMEs wait for those reports.
//!
//! Every outcome is a [`StreamEvent`] for the link task: CONNECTED with the address and
//! [`EXIT_TTL`], or END with its reason: EXITPOLICY (with the refused address) for
//! guard and policy refusals, RESOLVEFAILED, CONNECTREFUSED, TIMEOUT, NOROUTE, DONE when the
//! exit connection ends, CONNRESET when it breaks, MISC otherwise.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use onion_cell::relaycell::{
    Address, BeginFlags, End, EndReason, Resolved, ResolvedAnswer, ResolvedValue, StreamId,
};
use onion_core::policy::{ExitGuard, ExitRefusal, is_internal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use crate::router::{LinkMsg, Owner, StreamEvent};

/// Time allowed to resolve a name.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the TCP connection to one address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The TTL given with CONNECTED, END (EXITPOLICY) and RESOLVED answers, in seconds (C tor
/// clips DNS TTLs to 60 s to 1 h before giving them out; the system resolver tells none).
pub const EXIT_TTL: u32 = 60;
/// Most bytes read from an exit connection at once.
pub const EXIT_READ_CHUNK: usize = 16 * 1024;

/// The link task's handle on an exit stream.
#[derive(Debug)]
pub struct ExitStream {
    /// DATA from the client, toward the connection (dropped when the client ends).
    pub to_exit: Option<mpsc::Sender<Vec<u8>>>,
    /// The task's read credit, in bytes; given back as the client's windows take data.
    pub credit: Arc<Semaphore>,
    /// The task.
    pub abort: AbortHandle,
}

/// A BEGIN to carry out.
#[derive(Debug)]
pub struct BeginTask {
    /// The circuit.
    pub owner: Owner,
    /// The stream.
    pub stream: StreamId,
    /// The target host.
    pub target: Address,
    /// The target port.
    pub port: u16,
    /// The BEGIN flags.
    pub flags: BeginFlags,
    /// The exit policy and internal-address guard.
    pub guard: Arc<ExitGuard>,
    /// Read credit (see [`ExitStream::credit`]).
    pub credit: Arc<Semaphore>,
    /// DATA from the client.
    pub from_client: mpsc::Receiver<Vec<u8>>,
}

/// The END reason for a failed connection.
pub fn connect_error_reason(e: &io::Error) -> EndReason {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => EndReason::CONNECTREFUSED,
        io::ErrorKind::TimedOut => EndReason::TIMEOUT,
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => EndReason::NOROUTE,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => EndReason::CONNRESET,
        _ => EndReason::MISC,
    }
}

/// The addresses `target` stands for: an IP literal as it is, a name resolved (in the
/// resolver's order, without duplicates). `Err` is the END to send.
async fn resolve_target(target: &Address, port: u16) -> Result<Vec<IpAddr>, End> {
    match target {
        Address::Ipv4(a) => Ok(vec![IpAddr::V4(*a)]),
        Address::Ipv6(a) => Ok(vec![IpAddr::V6(*a)]),
        Address::Hostname(name) => {
            let found = tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((name.as_str(), port)),
            )
            .await;
            let mut addrs: Vec<IpAddr> = Vec::new();
            match found {
                Ok(Ok(iter)) => {
                    for a in iter {
                        if !addrs.contains(&a.ip()) {
                            addrs.push(a.ip());
                        }
                    }
                }
                Ok(Err(_)) | Err(_) => return Err(End::new(EndReason::RESOLVEFAILED)),
            }
            if addrs.is_empty() {
                return Err(End::new(EndReason::RESOLVEFAILED));
            }
            Ok(addrs)
        }
    }
}

/// Order the allowed addresses of a name by the BEGIN flags (tor-spec §6.2): IPv6 only if
/// IPV6_OK, IPv4 unless IPV4_NOT_OK, IPv6 first if IPV6_PREFERRED. IP literals are taken
/// as asked.
fn by_flags(mut addrs: Vec<IpAddr>, flags: BeginFlags, literal: bool) -> Vec<IpAddr> {
    if literal {
        return addrs;
    }
    let v6_ok = flags.contains(BeginFlags::IPV6_OK);
    let v4_ok = !flags.contains(BeginFlags::IPV4_NOT_OK);
    addrs.retain(|a| if a.is_ipv6() { v6_ok } else { v4_ok });
    if flags.contains(BeginFlags::IPV6_PREFERRED) {
        addrs.sort_by_key(|a| !a.is_ipv6());
    }
    addrs
}

impl BeginTask {
    /// Carry the BEGIN out, then relay bytes until the stream ends.
    pub async fn run(self) {
        let BeginTask {
            owner,
            stream,
            target,
            port,
            flags,
            guard,
            credit,
            from_client,
        } = self;
        let report = Reporter {
            owner: &owner,
            stream,
        };
        let literal = !matches!(target, Address::Hostname(_));
        let addrs = match resolve_target(&target, port).await {
            Ok(a) => a,
            Err(end) => return report.send(StreamEvent::End(end)).await,
        };
        // Every address is checked: one internal address refuses the whole name.
        let allowed = match guard.check_resolved(&addrs, port) {
            Ok(a) => by_flags(a, flags, literal),
            Err(
                refusal @ (ExitRefusal::Internal { addr, .. } | ExitRefusal::Policy { addr, .. }),
            ) => {
                tracing::debug!("exit refused: {refusal}");
                let end = End::exit_policy(addr, EXIT_TTL);
                return report.send(StreamEvent::End(end)).await;
            }
            Err(_) => {
                return report
                    .send(StreamEvent::End(End::new(EndReason::RESOLVEFAILED)))
                    .await;
            }
        };
        if allowed.is_empty() {
            return report
                .send(StreamEvent::End(End::new(EndReason::RESOLVEFAILED)))
                .await;
        }
        let mut last = EndReason::MISC;
        let mut tcp = None;
        for addr in allowed {
            let sa = std::net::SocketAddr::new(addr, port);
            match onion_net::tcp_connect(sa, CONNECT_TIMEOUT).await {
                Ok(s) => {
                    tcp = Some((s, addr));
                    break;
                }
                Err(e) => last = connect_error_reason(&e),
            }
        }
        let Some((tcp, addr)) = tcp else {
            return report.send(StreamEvent::End(End::new(last))).await;
        };
        if !report
            .send_ok(StreamEvent::Connected {
                addr,
                ttl: EXIT_TTL,
            })
            .await
        {
            return;
        }
        if let Some(end) = relay(tcp, &report, &credit, from_client).await {
            report.send(StreamEvent::End(end)).await;
        }
    }
}

/// Sends a stream's events to its circuit's link task.
struct Reporter<'a> {
    owner: &'a Owner,
    stream: StreamId,
}

impl Reporter<'_> {
    async fn send_ok(&self, event: StreamEvent) -> bool {
        self.owner
            .tx
            .send(LinkMsg::Stream {
                circ: self.owner.circ,
                token: self.owner.token,
                stream: self.stream,
                event,
            })
            .await
            .is_ok()
    }

    async fn send(&self, event: StreamEvent) {
        let _ = self.send_ok(event).await;
    }
}

/// Move bytes both ways. Returns the END to send, or `None` if the client ended the stream
/// (or the circuit is gone).
async fn relay(
    tcp: TcpStream,
    report: &Reporter<'_>,
    credit: &Semaphore,
    mut from_client: mpsc::Receiver<Vec<u8>>,
) -> Option<End> {
    let (mut rd, mut wr) = tcp.into_split();
    let upstream = async {
        while let Some(data) = from_client.recv().await {
            if let Err(e) = wr.write_all(&data).await {
                return Some(End::new(connect_error_reason(&e)));
            }
            if !report.send_ok(StreamEvent::Flushed(data.len())).await {
                return None;
            }
        }
        // The client sent END.
        let _ = wr.shutdown().await;
        None
    };
    let downstream = async {
        let mut buf = vec![0u8; EXIT_READ_CHUNK];
        let chunk = EXIT_READ_CHUNK.min(credit_size(credit));
        let chunk_u32 = u32::try_from(chunk).unwrap_or(u32::MAX);
        loop {
            let Ok(permit) = credit.acquire_many(chunk_u32).await else {
                return None;
            };
            permit.forget();
            let got = rd.read(buf.get_mut(..chunk).unwrap_or_default()).await;
            let n = *got.as_ref().unwrap_or(&0);
            credit.add_permits(chunk.saturating_sub(n));
            match got {
                Ok(0) => return Some(End::new(EndReason::DONE)),
                Ok(n) => {
                    let data = buf.get(..n).unwrap_or_default().to_vec();
                    if !report.send_ok(StreamEvent::Data(data)).await {
                        return None;
                    }
                }
                Err(e) => return Some(End::new(connect_error_reason(&e))),
            }
        }
    };
    tokio::select! {
        end = upstream => end,
        end = downstream => end,
    }
}

/// The credit a stream starts with: its semaphore's permits when nothing is taken.
fn credit_size(credit: &Semaphore) -> usize {
    credit.available_permits().max(1)
}

/// Answer a RESOLVE: the addresses of `query` (IPv4 first), without internal addresses
/// unless `allow_internal`; an error answer if there is none. Reverse lookups
/// (`in-addr.arpa`, `ip6.arpa`) are not supported and get a non-transient error.
pub async fn resolve(owner: Owner, stream: StreamId, query: String, allow_internal: bool) {
    let report = Reporter {
        owner: &owner,
        stream,
    };
    let lower = query.to_ascii_lowercase();
    let error = |transient: bool| {
        let value = if transient {
            ResolvedValue::TransientError(Vec::new())
        } else {
            ResolvedValue::NontransientError(Vec::new())
        };
        vec![ResolvedAnswer {
            value,
            ttl: EXIT_TTL,
        }]
    };
    let answers = if lower.ends_with(".in-addr.arpa") || lower.ends_with(".ip6.arpa") {
        error(false)
    } else {
        match tokio::time::timeout(
            RESOLVE_TIMEOUT,
            tokio::net::lookup_host((query.as_str(), 0)),
        )
        .await
        {
            Ok(Ok(found)) => {
                let mut v4 = Vec::new();
                let mut v6 = Vec::new();
                for a in found {
                    let ip = a.ip();
                    if !allow_internal && is_internal(&ip).is_some() {
                        continue;
                    }
                    let value = match ip {
                        IpAddr::V4(a) => ResolvedValue::Ipv4(a),
                        IpAddr::V6(a) => ResolvedValue::Ipv6(a),
                    };
                    let answer = ResolvedAnswer {
                        value,
                        ttl: EXIT_TTL,
                    };
                    let list = if ip.is_ipv4() { &mut v4 } else { &mut v6 };
                    if !list.contains(&answer) {
                        list.push(answer);
                    }
                }
                v4.extend(v6);
                if v4.is_empty() { error(false) } else { v4 }
            }
            Ok(Err(_)) => error(false),
            Err(_) => error(true),
        }
    };
    let resolved = Resolved::new(answers).unwrap_or_default();
    report.send(StreamEvent::Resolved(resolved)).await;
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn flags_order_and_filter_names_only() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let both = vec![v4, v6];
        assert_eq!(by_flags(both.clone(), BeginFlags::NONE, false), [v4]);
        assert_eq!(by_flags(both.clone(), BeginFlags::IPV6_OK, false), [v4, v6]);
        assert_eq!(
            by_flags(
                both.clone(),
                BeginFlags(BeginFlags::IPV6_OK.0 | BeginFlags::IPV6_PREFERRED.0),
                false
            ),
            [v6, v4]
        );
        assert_eq!(
            by_flags(
                both.clone(),
                BeginFlags(BeginFlags::IPV6_OK.0 | BeginFlags::IPV4_NOT_OK.0),
                false
            ),
            [v6]
        );
        // A literal IPv6 address is what the client asked for.
        assert_eq!(by_flags(vec![v6], BeginFlags::NONE, true), [v6]);
    }

    #[test]
    fn connect_errors_map_to_end_reasons() {
        for (kind, reason) in [
            (io::ErrorKind::ConnectionRefused, EndReason::CONNECTREFUSED),
            (io::ErrorKind::TimedOut, EndReason::TIMEOUT),
            (io::ErrorKind::HostUnreachable, EndReason::NOROUTE),
            (io::ErrorKind::ConnectionReset, EndReason::CONNRESET),
            (io::ErrorKind::Other, EndReason::MISC),
        ] {
            assert_eq!(connect_error_reason(&io::Error::from(kind)), reason);
        }
    }

    #[tokio::test]
    async fn literals_are_not_resolved() {
        let a = Address::Ipv6("::1".parse().unwrap());
        assert_eq!(
            resolve_target(&a, 80).await.unwrap(),
            ["::1".parse::<IpAddr>().unwrap()]
        );
        // localhost comes from the hosts file, not from DNS.
        let got = resolve_target(&Address::Hostname("localhost".into()), 80)
            .await
            .unwrap();
        assert!(got.iter().all(|a| a.is_loopback()), "{got:?}");
    }
}
