//! End-to-end tests of [`ClientCircuit`] against the in-memory [`FakeNet`]: every handshake,
//! 1 to 5 hops, a megabyte each way with SENDME v1, window exhaustion, stream ends,
//! TRUNCATED, DESTROY, tampering, protocol violations and caller misuse.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::net::{IpAddr, Ipv4Addr};

use onion_cell::chancell::{ChanCmd, ChanMsg, Created2, CreatedFast, Destroy, DestroyReason};
use onion_cell::relaycell::{
    AddrTtl, Address, Begin, BeginFlags, Connected, Data, DropMsg, End, EndReason, Extended2,
    RelayCmd, RelayMsg, ResolvedValue, Sendme, StreamId, Unrecognized,
};
use rand::rngs::StdRng;

use super::fake::FakeNet;
use super::*;
use crate::crypto::relay::{CryptError, HopNum};
use crate::flow::FlowError;
use crate::handshake::HandshakeError;
use crate::testing::seeded_rng;

fn hop(n: u8) -> HopNum {
    HopNum::new(n).unwrap()
}

/// A client circuit wired to a fake network.
struct Harness {
    client: ClientCircuit,
    net: FakeNet,
    rng: StdRng,
}

impl Harness {
    /// Create hop 1 on relay 0 with `kind` (`legacy`: TAP in CREATE), among `n_relays`.
    fn create(n_relays: u8, kind: HandshakeKind, legacy: bool, config: CircuitConfig) -> Self {
        let mut net = FakeNet::new(n_relays, 1000 + u64::from(n_relays));
        let mut rng = seeded_rng(7);
        let target = net.relays[0].target();
        let (pending, create) = if legacy {
            ClientCircuit::start_legacy_tap(&mut rng, &target, config).unwrap()
        } else {
            ClientCircuit::start(&mut rng, &target, kind, config).unwrap()
        };
        assert_eq!(pending.kind(), kind);
        let expected = match (kind, legacy) {
            (HandshakeKind::CreateFast, _) => ChanCmd::CREATE_FAST,
            (HandshakeKind::CreateFastWs, _) => ChanCmd::CREATE_FAST_WS,
            (HandshakeKind::Tap, true) => ChanCmd::CREATE,
            _ => ChanCmd::CREATE2,
        };
        assert_eq!(create.cmd(), expected);
        if let ChanMsg::Create2(c) = &create {
            let ty = match kind {
                HandshakeKind::NtorV3 => 3,
                HandshakeKind::Ntor => 2,
                _ => 0,
            };
            assert_eq!(c.htype(), ty);
        }
        let reply = net.create(0, &create);
        let client = pending.handle_created(reply).unwrap();
        assert_eq!(client.n_hops(), 1);
        Harness { client, net, rng }
    }

    /// A circuit over relays 0..kinds.len(): hop 1 with `kinds[0]`, then extensions.
    fn build(kinds: &[HandshakeKind]) -> Self {
        let n = u8::try_from(kinds.len()).unwrap();
        let mut h = Self::create(n + 1, kinds[0], false, CircuitConfig::default());
        for (i, kind) in kinds.iter().enumerate().skip(1) {
            h.extend_to(i, *kind, false);
        }
        h
    }

    /// Extend to relay `relay`, check the new hop.
    fn extend_to(&mut self, relay: usize, kind: HandshakeKind, legacy: bool) {
        let target = self.net.relays[relay].target();
        let before = self.client.n_hops();
        let early_before = self.client.relay_early_left();
        let new = if legacy {
            self.client.extend_legacy_tap(&mut self.rng, &target)
        } else {
            self.client.extend(&mut self.rng, &target, kind)
        }
        .unwrap();
        assert!(self.client.is_extending());
        assert_eq!(usize::from(new.get()), before + 1);
        // The EXTEND2 is the only cell queued, and it is RELAY_EARLY.
        assert_eq!(self.client.queued_cells(), 1);
        assert_eq!(self.client.relay_early_left(), early_before - 1);
        let events = self.pump();
        assert_eq!(events, vec![ClientEvent::HopAdded { hop: new }]);
        assert_eq!(self.client.n_hops(), before + 1);
        assert_eq!(self.net.n_hops(), before + 1);
        assert_eq!(self.net.relay_of(before), relay);
        assert!(!self.client.is_extending());
    }

    /// Move cells both ways until nothing moves; return the client's events.
    fn pump(&mut self) -> Vec<ClientEvent> {
        let mut events = Vec::new();
        loop {
            let mut back = Vec::new();
            while let Some(cell) = self.client.poll_outgoing() {
                back.extend(self.net.forward(cell));
            }
            if back.is_empty() {
                return events;
            }
            for mut b in back {
                events.extend(self.client.handle_relay(&mut self.rng, &mut b).unwrap());
            }
        }
    }

    /// Deliver backward cells to the client.
    fn deliver(&mut self, cells: Vec<Vec<u8>>) -> Vec<ClientEvent> {
        let mut events = Vec::new();
        for mut b in cells {
            events.extend(self.client.handle_relay(&mut self.rng, &mut b).unwrap());
        }
        events
    }

    /// Deliver one injected cell, expecting an error.
    fn deliver_err(&mut self, mut cell: Vec<u8>) -> CircuitError {
        self.client
            .handle_relay(&mut self.rng, &mut cell)
            .unwrap_err()
    }

    /// Open a stream to `host:80` and wait for CONNECTED.
    fn connect(&mut self, host: &str) -> StreamId {
        let s = self
            .client
            .begin(
                &mut self.rng,
                Address::parse(host).unwrap(),
                80,
                BeginFlags::NONE,
            )
            .unwrap();
        let events = self.pump();
        assert_eq!(
            events,
            vec![ClientEvent::StreamConnected {
                stream: s,
                addr: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                ttl: Some(300),
            }]
        );
        s
    }

    /// Send `data` on `stream` and collect the echo.
    fn echo(&mut self, stream: StreamId, data: &[u8]) -> Vec<u8> {
        let mut sent = 0;
        let mut got = Vec::new();
        let mut stalls = 0;
        while sent < data.len() || got.len() < data.len() {
            let n = if sent < data.len() {
                self.client
                    .send_data(&mut self.rng, stream, &data[sent..])
                    .unwrap()
            } else {
                0
            };
            sent += n;
            let mut moved = n > 0;
            for ev in self.pump() {
                moved = true;
                match ev {
                    ClientEvent::StreamData { stream: s, bytes } => {
                        assert_eq!(s, stream);
                        got.extend_from_slice(&bytes);
                    }
                    other => panic!("unexpected event {other:?}"),
                }
            }
            if !moved {
                stalls += 1;
                assert!(
                    stalls < 3,
                    "transfer stalled at {sent} sent, {} got",
                    got.len()
                );
            } else {
                stalls = 0;
            }
        }
        got
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

#[test]
fn every_first_hop_handshake() {
    let cases = [
        (HandshakeKind::NtorV3, false),
        (HandshakeKind::Ntor, false),
        (HandshakeKind::Tap, false),
        (HandshakeKind::Tap, true),
        (HandshakeKind::CreateFast, false),
        (HandshakeKind::CreateFastWs, false),
    ];
    for (kind, legacy) in cases {
        let mut h = Harness::create(1, kind, legacy, CircuitConfig::default());
        let s = h.client.begin_dir(&mut h.rng).unwrap();
        // Cells to hop 1 are never RELAY_EARLY.
        let cell = h.client.poll_outgoing().unwrap();
        assert!(!cell.early);
        let back = h.net.forward(cell);
        let events = h.deliver(back);
        assert_eq!(
            events,
            vec![ClientEvent::StreamConnected {
                stream: s,
                addr: None,
                ttl: None
            }]
        );
        let data = pattern(1200);
        assert_eq!(h.echo(s, &data), data, "{kind} legacy={legacy}");
        assert_eq!(h.client.relay_early_left(), 8);
        assert_eq!(h.net.stats.early_in, 0);
    }
}

#[test]
fn extend_with_each_handshake() {
    for kind in [
        HandshakeKind::NtorV3,
        HandshakeKind::Ntor,
        HandshakeKind::Tap,
    ] {
        let mut h = Harness::build(&[HandshakeKind::NtorV3, kind, kind]);
        assert_eq!(h.client.relay_early_left(), 6);
        assert_eq!(h.net.early_seen(0), 2);
        assert_eq!(h.net.early_seen(1), 1);
        let s = h.connect("www.example.com");
        let data = pattern(5000);
        assert_eq!(h.echo(s, &data), data, "{kind}");
    }
    // Legacy EXTEND (TAP) for hops 2 and 3, after a legacy CREATE.
    let mut h = Harness::create(3, HandshakeKind::Tap, true, CircuitConfig::default());
    h.extend_to(1, HandshakeKind::Tap, true);
    h.extend_to(2, HandshakeKind::Tap, true);
    let s = h.connect("192.0.2.200");
    assert_eq!(h.echo(s, b"legacy"), b"legacy");
}

#[test]
fn one_to_five_hops() {
    for n in 1..=5usize {
        let kinds = vec![HandshakeKind::NtorV3; n];
        let mut h = Harness::build(&kinds);
        assert_eq!(h.client.n_hops(), n);
        let early_after_build = 8 - (n as u8 - 1);
        assert_eq!(h.client.relay_early_left(), early_after_build);
        let s = h.connect("[2001:db8::1]");
        // BEGIN went RELAY_EARLY unless the circuit has one hop.
        let expect = if n == 1 { 8 } else { early_after_build - 1 };
        assert_eq!(h.client.relay_early_left(), expect);
        let data = pattern(3000);
        assert_eq!(h.echo(s, &data), data, "{n} hops");
        // The exit got them; no middle hop saw a stream.
        assert_eq!(h.net.stream_count(n - 1), 1);
        for i in 0..n - 1 {
            assert_eq!(h.net.stream_count(i), 0);
        }
        // Early cells were used up and then plain RELAY cells followed.
        if n > 1 {
            assert_eq!(h.client.relay_early_left(), 0);
            assert_eq!(h.net.stats.early_in, 8);
        }
    }
}

#[test]
fn megabyte_both_ways_with_authenticated_sendmes() {
    let mut h = Harness::build(&[
        HandshakeKind::NtorV3,
        HandshakeKind::Ntor,
        HandshakeKind::NtorV3,
    ]);
    let s = h.connect("bulk.example");
    let data = pattern(1 << 20);
    let got = h.echo(s, &data);
    assert!(got == data, "echo differs");
    let cells = (1usize << 20).div_ceil(498);
    let st = h.net.stats.clone();
    assert_eq!(st.data_in, cells);
    assert_eq!(st.bytes_in, 1 << 20);
    // Circuit SENDMEs (v1, digests checked by both sides) flowed both ways: one per 100
    // cells, and stream SENDMEs one per 50.
    assert_eq!(st.circ_sendmes_out, cells / 100);
    assert_eq!(st.circ_sendmes_in, cells / 100);
    assert_eq!(st.stream_sendmes_out, cells / 50);
    assert_eq!(st.stream_sendmes_in, cells / 50);
    assert!(h.client.is_writable(s));
}

#[test]
fn windows_exhaust_and_reopen_on_sendme() {
    let mut h = Harness::build(&[HandshakeKind::Ntor, HandshakeKind::Ntor]);
    h.net.echo = false;
    h.net.withhold_sendmes = true;
    let a = h.connect("a.example");
    let b = h.connect("b.example");
    let c = h.connect("c.example");
    let big = pattern(600 * 498);
    // Stream a: exactly 500 cells (the stream window), in batches of the queue limit.
    let mut sent_a = 0;
    loop {
        let n = h.client.send_data(&mut h.rng, a, &big[sent_a..]).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= DATA_QUEUE_LIMIT * 498);
        sent_a += n;
        assert!(h.pump().is_empty());
    }
    assert_eq!(sent_a, 500 * 498);
    assert!(!h.client.is_writable(a));
    assert!(h.client.is_writable(b));
    // Stream b: 500 more fill the circuit window (1000).
    let mut sent_b = 0;
    while h.client.is_writable(b) {
        sent_b += h.client.send_data(&mut h.rng, b, &big[sent_b..]).unwrap();
        h.pump();
    }
    assert_eq!(sent_b, 500 * 498);
    // Stream c has a fresh stream window but the circuit window is closed.
    assert!(!h.client.is_writable(c));
    assert_eq!(h.client.send_data(&mut h.rng, c, b"blocked").unwrap(), 0);
    assert_eq!(h.client.queued_cells(), 0);
    // The exit owes 10 circuit SENDMEs and 10 + 10 stream SENDMEs.
    assert_eq!(h.net.withheld(), 30);
    let cells = h.net.release_sendmes();
    assert!(h.deliver(cells).is_empty());
    assert!(h.client.is_writable(a) && h.client.is_writable(b) && h.client.is_writable(c));
    assert_eq!(h.client.send_data(&mut h.rng, c, b"flows").unwrap(), 5);
    h.pump();
    assert_eq!(h.net.stats.bytes_in, 1000 * 498 + 5);
}

#[test]
fn stream_end_reasons_and_resolve() {
    let mut h = Harness::build(&[HandshakeKind::NtorV3, HandshakeKind::NtorV3]);
    let flags = BeginFlags::IPV6_OK;
    let r = h
        .client
        .begin(
            &mut h.rng,
            Address::parse("refused.example").unwrap(),
            443,
            flags,
        )
        .unwrap();
    let p = h
        .client
        .begin(
            &mut h.rng,
            Address::parse("policy.example").unwrap(),
            25,
            flags,
        )
        .unwrap();
    let q = h.client.resolve(&mut h.rng, "example.com").unwrap();
    assert_eq!(h.client.stream_count(), 3);
    let events = h.pump();
    assert_eq!(
        events,
        vec![
            ClientEvent::StreamEnded {
                stream: r,
                reason: StreamEndReason::Remote {
                    reason: EndReason::CONNECTREFUSED,
                    exit_policy: None
                }
            },
            ClientEvent::StreamEnded {
                stream: p,
                reason: StreamEndReason::Remote {
                    reason: EndReason::EXITPOLICY,
                    exit_policy: Some(AddrTtl {
                        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66)),
                        ttl: 600
                    })
                }
            },
            ClientEvent::Resolved {
                stream: q,
                answers: vec![onion_cell::relaycell::ResolvedAnswer {
                    value: ResolvedValue::Ipv4(Ipv4Addr::new(192, 0, 2, 7)),
                    ttl: 60
                }]
            },
        ]
    );
    assert_eq!(h.client.stream_count(), 0);
    // Ids were distinct and are free again; ending them now is a caller error.
    assert!(r != p && p != q && !r.is_zero());
    assert_eq!(
        h.client.end_stream(&mut h.rng, r, EndReason::DONE),
        Err(CircuitError::NoSuchStream(r))
    );

    // An exit-side END with another reason on an open stream.
    let s = h.connect("x.example");
    let cell = h.net.inject(1, s, End::new(EndReason::TIMEOUT).into());
    assert_eq!(
        h.deliver(vec![cell]),
        vec![ClientEvent::StreamEnded {
            stream: s,
            reason: StreamEndReason::Remote {
                reason: EndReason::TIMEOUT,
                exit_policy: None
            }
        }]
    );

    // We end a stream; the exit's data in flight and its END are absorbed silently.
    let t = h.connect("y.example");
    let at_exit = h.net.stream_count(1);
    h.client.end_stream(&mut h.rng, t, EndReason::DONE).unwrap();
    assert!(h.pump().is_empty());
    assert_eq!(h.net.stream_count(1), at_exit - 1);
    assert!(!h.client.is_writable(t));
    let late = h
        .net
        .inject(1, t, Data::new(b"late".to_vec()).unwrap().into());
    let end = h.net.inject(1, t, End::new(EndReason::DONE).into());
    assert!(h.deliver(vec![late, end]).is_empty());
    // Once forgotten, more is simply dropped too (unknown stream from the last hop).
    let later = h
        .net
        .inject(1, t, Data::new(b"later".to_vec()).unwrap().into());
    assert!(h.deliver(vec![later]).is_empty());
    assert!(h.client.is_open());
}

#[test]
fn truncated_cuts_hops_and_streams_then_reextends() {
    let mut h = Harness::build(&[
        HandshakeKind::NtorV3,
        HandshakeKind::NtorV3,
        HandshakeKind::NtorV3,
    ]);
    let s = h.connect("z.example");
    // Hop 2 loses hop 3.
    let cell = h.net.truncate_after(1, DestroyReason::CHANNEL_CLOSED);
    assert_eq!(
        h.deliver(vec![cell]),
        vec![
            ClientEvent::StreamEnded {
                stream: s,
                reason: StreamEndReason::Truncated(DestroyReason::CHANNEL_CLOSED)
            },
            ClientEvent::Truncated {
                hops: 2,
                reason: DestroyReason::CHANNEL_CLOSED,
                extend_failed: false
            }
        ]
    );
    assert_eq!(h.client.n_hops(), 2);
    assert_eq!(h.client.stream_count(), 0);
    // Extend again, to relay 3 this time, and use it.
    h.extend_to(3, HandshakeKind::Ntor, false);
    let s = h.connect("z.example");
    assert_eq!(h.echo(s, b"again"), b"again");

    // An extension the last hop cannot make ends in TRUNCATED: the extension failed.
    let mut stranger = h.net.relays[0].target();
    stranger.rsa_id = Some([0xee; 20]);
    stranger.ed_id = Some([0xee; 32]);
    h.client
        .extend(&mut h.rng, &stranger, HandshakeKind::Ntor)
        .unwrap();
    let events = h.pump();
    assert_eq!(
        events,
        vec![ClientEvent::Truncated {
            hops: 3,
            reason: DestroyReason::CONNECTFAILED,
            extend_failed: true
        }]
    );
    assert!(!h.client.is_extending());
    // The stream at hop 3 survived.
    assert_eq!(h.echo(s, b"still"), b"still");
}

#[test]
fn destroy_fails_every_stream() {
    let mut h = Harness::build(&[HandshakeKind::CreateFast, HandshakeKind::NtorV3]);
    let a = h.connect("a.example");
    let b = h.connect("b.example");
    let events = h
        .client
        .handle_cell(&mut h.rng, Destroy::new(DestroyReason::HIBERNATING).into())
        .unwrap();
    let why = CloseReason::Destroyed(DestroyReason::HIBERNATING);
    assert_eq!(
        events,
        vec![
            ClientEvent::StreamEnded {
                stream: a,
                reason: StreamEndReason::CircuitClosed(why.clone())
            },
            ClientEvent::StreamEnded {
                stream: b,
                reason: StreamEndReason::CircuitClosed(why.clone())
            },
            ClientEvent::CircuitClosed { reason: why }
        ]
    );
    assert!(!h.client.is_open());
    assert_eq!(
        h.client.send_data(&mut h.rng, a, b"x"),
        Err(CircuitError::Closed)
    );
    assert_eq!(h.client.begin_dir(&mut h.rng), Err(CircuitError::Closed));
    assert!(h.client.handle_destroy(DestroyReason::NONE).is_empty());
    // Nothing to send back: hop 1 already tore it down.
    assert_eq!(
        h.client.close(),
        Closing {
            destroy: None,
            events: vec![]
        }
    );
}

#[test]
fn local_close_sends_destroy_none() {
    let mut h = Harness::build(&[HandshakeKind::Ntor]);
    let a = h.connect("a.example");
    let closing = h.client.close();
    assert_eq!(
        closing.destroy,
        Some(ChanMsg::Destroy(Destroy::new(DestroyReason::NONE)))
    );
    assert_eq!(
        closing.events,
        vec![
            ClientEvent::StreamEnded {
                stream: a,
                reason: StreamEndReason::CircuitClosed(CloseReason::Local)
            },
            ClientEvent::CircuitClosed {
                reason: CloseReason::Local
            }
        ]
    );
    assert_eq!(h.client.close().destroy, None);
}

#[test]
fn tampered_cell_kills_the_circuit() {
    let mut h = Harness::build(&[
        HandshakeKind::NtorV3,
        HandshakeKind::NtorV3,
        HandshakeKind::NtorV3,
    ]);
    let s = h.connect("t.example");
    h.client.send_data(&mut h.rng, s, b"ping").unwrap();
    let cell = h.client.poll_outgoing().unwrap();
    let mut back = h.net.forward(cell);
    assert_eq!(back.len(), 1);
    back[0][200] ^= 0x10;
    let err = h.deliver_err(back.remove(0));
    assert_eq!(err, CircuitError::Crypt(CryptError::Unrecognized));
    assert_eq!(err.fault(), Fault::Peer);
    assert!(!h.client.is_open());
    assert_eq!(
        h.client.send_data(&mut h.rng, s, b"x"),
        Err(CircuitError::Closed)
    );
    let closing = h.client.close();
    assert!(closing.destroy.is_some());
    let failed = CloseReason::Failed(CircuitError::Crypt(CryptError::Unrecognized));
    assert_eq!(
        closing.events,
        vec![
            ClientEvent::StreamEnded {
                stream: s,
                reason: StreamEndReason::CircuitClosed(failed.clone())
            },
            ClientEvent::CircuitClosed { reason: failed }
        ]
    );
}

/// A fresh 3-hop circuit with one connected stream, for one protocol-violation check.
fn violated(msg: impl FnOnce(StreamId) -> (usize, StreamId, RelayMsg)) -> CircuitError {
    let mut h = Harness::build(&[
        HandshakeKind::NtorV3,
        HandshakeKind::NtorV3,
        HandshakeKind::NtorV3,
    ]);
    let s = h.connect("v.example");
    let (i, sid, m) = msg(s);
    let cell = h.net.inject(i, sid, m);
    let err = h.deliver_err(cell);
    assert!(err.is_fatal(), "{err}");
    assert_eq!(err.fault(), Fault::Peer);
    assert!(!h.client.is_open());
    err
}

#[test]
fn protocol_violations_are_fatal() {
    let proto = |hop: u8, cmd: RelayCmd| move |e: CircuitError| matches!(e, CircuitError::Protocol { hop: h, cmd: c, .. } if h == HopNum::new(hop).unwrap() && c == cmd);
    // A forward-only command from the exit.
    let begin = Begin::new(Address::parse("evil.example").unwrap(), 1, BeginFlags::NONE).unwrap();
    assert!(proto(3, RelayCmd::BEGIN)(violated(|s| (
        2,
        s,
        begin.into()
    ))));
    // EXTENDED2 with no extension pending.
    let e2 = Extended2::new(vec![0; 64]).unwrap();
    assert!(proto(3, RelayCmd::EXTENDED2)(violated(|_| (
        2,
        StreamId::ZERO,
        e2.into()
    ))));
    // Stream data from a middle hop.
    let d = || Data::new(b"x".to_vec()).unwrap();
    assert!(proto(2, RelayCmd::DATA)(violated(|s| (1, s, d().into()))));
    assert!(proto(2, RelayCmd::DATA)(violated(|_| (
        1,
        StreamId(999),
        d().into()
    ))));
    // A second CONNECTED.
    let c = Connected::new_empty();
    assert!(proto(3, RelayCmd::CONNECTED)(violated(|s| (
        2,
        s,
        c.into()
    ))));
    // A circuit SENDME nothing asked for, and one with a wrong digest.
    let v1 = Sendme::V1 { digest: [7; 20] };
    assert_eq!(
        violated(|_| (2, StreamId::ZERO, v1.into())),
        CircuitError::Flow {
            hop: hop(3),
            source: FlowError::UnexpectedSendme
        }
    );
    // A stream SENDME beyond the window.
    assert_eq!(
        violated(|s| (2, s, Sendme::V0.into())),
        CircuitError::Flow {
            hop: hop(3),
            source: FlowError::WindowOverflow {
                would_be: 550,
                start: 500
            }
        }
    );
    // A malformed message (END is fine with anything; CONNECTED with a bad address type
    // is not).
    let bad = Unrecognized::new(RelayCmd::CONNECTED, vec![0, 0, 0, 0, 9]).unwrap();
    assert!(matches!(
        violated(|s| (2, s, bad.into())),
        CircuitError::Malformed { hop: h, .. } if h == hop(3)
    ));
}

#[test]
fn data_before_connected_and_wrong_sendme_digest() {
    let mut h = Harness::build(&[HandshakeKind::Ntor, HandshakeKind::Ntor]);
    let s = h
        .client
        .begin(
            &mut h.rng,
            Address::parse("slow.example").unwrap(),
            80,
            BeginFlags::NONE,
        )
        .unwrap();
    let _begin = h.client.poll_outgoing().unwrap(); // never reaches the exit
    let cell = h
        .net
        .inject(1, s, Data::new(b"early".to_vec()).unwrap().into());
    assert!(matches!(
        h.deliver_err(cell),
        CircuitError::Protocol {
            cmd: RelayCmd::DATA,
            what: "DATA before CONNECTED",
            ..
        }
    ));

    // Wrong digest in a SENDME v1 after 100 DATA cells.
    let mut h = Harness::build(&[HandshakeKind::Ntor, HandshakeKind::Ntor]);
    h.net.echo = false;
    h.net.withhold_sendmes = true;
    let s = h.connect("d.example");
    let data = pattern(100 * 498);
    let mut sent = 0;
    while sent < data.len() {
        sent += h.client.send_data(&mut h.rng, s, &data[sent..]).unwrap();
        h.pump();
    }
    let cell = h
        .net
        .inject(1, StreamId::ZERO, Sendme::V1 { digest: [1; 20] }.into());
    assert_eq!(
        h.deliver_err(cell),
        CircuitError::Flow {
            hop: hop(2),
            source: FlowError::SendmeDigestMismatch
        }
    );
}

#[test]
fn ignorable_cells_are_ignored() {
    let mut h = Harness::build(&[
        HandshakeKind::NtorV3,
        HandshakeKind::NtorV3,
        HandshakeKind::NtorV3,
    ]);
    let s = h.connect("i.example");
    let drop_mid = h.net.inject(1, StreamId::ZERO, DropMsg::default().into());
    let drop_exit = h.net.inject(
        2,
        StreamId::ZERO,
        DropMsg::new(vec![1; 100]).unwrap().into(),
    );
    // Tor's PADDING_NEGOTIATED (42) under the Tor dialect: unknown, dropped.
    let unknown = h.net.inject(
        0,
        StreamId::ZERO,
        Unrecognized::new(RelayCmd(42), vec![0, 1]).unwrap().into(),
    );
    // Unknown stream at the exit: END, CONNECTED, SENDME ignored.
    let end = h
        .net
        .inject(2, StreamId(4242), End::new(EndReason::DONE).into());
    let conn = h
        .net
        .inject(2, StreamId(4242), Connected::new_empty().into());
    let sendme = h.net.inject(2, StreamId(4242), Sendme::V0.into());
    assert!(
        h.deliver(vec![drop_mid, drop_exit, unknown, end, conn, sendme])
            .is_empty()
    );
    assert_eq!(h.echo(s, b"fine"), b"fine");
}

#[test]
fn inbound_relay_early_and_stray_cells_are_fatal() {
    let mut h = Harness::build(&[HandshakeKind::Ntor]);
    let cell = OutCell {
        early: true,
        body: Box::new([0; 509]),
    };
    assert_eq!(
        h.client.handle_cell(&mut h.rng, cell.into_chan_msg()),
        Err(CircuitError::UnexpectedCell(ChanCmd::RELAY_EARLY))
    );
    assert!(!h.client.is_open());

    let mut h = Harness::build(&[HandshakeKind::Ntor]);
    let stray = Created2::new(vec![1, 2, 3]).unwrap();
    assert_eq!(
        h.client.handle_cell(&mut h.rng, stray.into()),
        Err(CircuitError::UnexpectedCell(ChanCmd::CREATED2))
    );
    // A RELAY_WS on a circuit not marked as ours.
    let mut h = Harness::build(&[HandshakeKind::Ntor]);
    let ws = onion_cell::chancell::RelayWs::new(vec![0; 20]).unwrap();
    assert_eq!(
        h.client.handle_cell(&mut h.rng, ws.into()),
        Err(CircuitError::UnexpectedCell(ChanCmd::RELAY_WS))
    );
}

#[test]
fn seed_dialect_only_from_our_hop_1() {
    let config = CircuitConfig {
        hop1_is_ours: true,
        ..CircuitConfig::default()
    };
    let mut h = Harness::create(2, HandshakeKind::CreateFastWs, false, config);
    h.extend_to(1, HandshakeKind::NtorV3, false);
    let body = b"fake.example".to_vec();
    let assoc = Unrecognized::new(RelayCmd::ASSOCIATE, body.clone()).unwrap();
    let cell = h.net.inject(0, StreamId(5), assoc.clone().into());
    let events = h.deliver(vec![cell]);
    assert!(matches!(
        &events[..],
        [ClientEvent::SeedMessage {
            stream: StreamId(5),
            msg: RelayMsg::Associate(_)
        }]
    ));
    // The same command from hop 2 is Tor's (INTRODUCE_ACK): unknown, dropped.
    let cell = h.net.inject(1, StreamId::ZERO, assoc.into());
    assert!(h.deliver(vec![cell]).is_empty());
}

#[test]
fn caller_misuse_changes_nothing() {
    let mut h = Harness::build(&[HandshakeKind::NtorV3, HandshakeKind::NtorV3]);
    let target = h.net.relays[2].target();
    assert_eq!(
        h.client
            .extend(&mut h.rng, &target, HandshakeKind::CreateFast),
        Err(CircuitError::FirstHopOnly(HandshakeKind::CreateFast))
    );
    let mut no_v3 = target.clone();
    no_v3.ed_id = None;
    assert!(matches!(
        h.client.extend(&mut h.rng, &no_v3, HandshakeKind::NtorV3),
        Err(CircuitError::MissingTargetInfo { .. })
    ));
    let mut no_addr = target.clone();
    no_addr.ipv4 = None;
    assert!(matches!(
        h.client.extend_legacy_tap(&mut h.rng, &no_addr),
        Err(CircuitError::MissingTargetInfo { .. })
    ));
    h.client
        .extend(&mut h.rng, &target, HandshakeKind::NtorV3)
        .unwrap();
    assert_eq!(
        h.client.extend(&mut h.rng, &target, HandshakeKind::NtorV3),
        Err(CircuitError::ExtendPending)
    );
    assert_eq!(
        h.client.send_data(&mut h.rng, StreamId(77), b"x"),
        Err(CircuitError::NoSuchStream(StreamId(77)))
    );
    let bad_host = Address::Hostname("a:b".into());
    assert!(matches!(
        h.client.begin(&mut h.rng, bad_host, 80, BeginFlags::NONE),
        Err(CircuitError::Encode(_))
    ));
    let q = h.client.resolve(&mut h.rng, "example.com").unwrap();
    assert!(matches!(
        h.client.send_data(&mut h.rng, q, b"x"),
        Err(CircuitError::StreamMisuse { .. })
    ));
    assert!(!h.client.is_writable(q));
    // All of that left the circuit working: the extension completes, the resolve answers.
    let events = h.pump();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], ClientEvent::HopAdded { hop: hop(3) });
    assert!(matches!(events[1], ClientEvent::Resolved { stream, .. } if stream == q));
    assert!(h.client.is_open());
}

#[test]
fn stream_and_queue_limits() {
    let config = CircuitConfig {
        max_streams: 2,
        ..CircuitConfig::default()
    };
    let mut h = Harness::create(1, HandshakeKind::Ntor, false, config);
    let a = h.client.begin_dir(&mut h.rng).unwrap();
    let _b = h.client.begin_dir(&mut h.rng).unwrap();
    assert_eq!(
        h.client.begin_dir(&mut h.rng),
        Err(CircuitError::TooManyStreams(2))
    );
    h.pump();
    h.client.end_stream(&mut h.rng, a, EndReason::DONE).unwrap();
    let c = h.client.begin_dir(&mut h.rng).unwrap();
    assert_ne!(c, a, "a half-closed id is not reused");

    // The queue refuses more cells once full, consuming nothing.
    let mut h = Harness::create(1, HandshakeKind::Ntor, false, CircuitConfig::default());
    let mut opened = Vec::new();
    loop {
        match h.client.resolve(&mut h.rng, "example.com") {
            Ok(s) => opened.push(s),
            Err(e) => {
                assert_eq!(e, CircuitError::QueueFull);
                break;
            }
        }
    }
    assert_eq!(opened.len(), QUEUE_LIMIT);
    let mut junk = vec![0u8; 509];
    assert_eq!(
        h.client.handle_relay(&mut h.rng, &mut junk),
        Err(CircuitError::QueueFull)
    );
    assert!(h.client.is_open());
    let events = h.pump();
    assert_eq!(events.len(), QUEUE_LIMIT);
}

#[test]
fn relay_early_budget_and_max_hops() {
    // A 2-hop circuit that spends its budget on stream cells cannot extend.
    let mut h = Harness::build(&[HandshakeKind::Ntor, HandshakeKind::Ntor]);
    let s = h.connect("e.example"); // 1 early
    for _ in 0..6 {
        h.client.send_data(&mut h.rng, s, b"x").unwrap();
    }
    h.pump();
    assert_eq!(h.client.relay_early_left(), 0);
    let target = h.net.relays[2].target();
    assert_eq!(
        h.client.extend(&mut h.rng, &target, HandshakeKind::Ntor),
        Err(CircuitError::RelayEarlyExhausted)
    );
    assert_eq!(h.net.stats.early_in, 8);
    assert!(h.client.is_open());

    // Eight hops use seven EXTEND2s; a ninth hop is refused.
    let mut h = Harness::build(&[HandshakeKind::NtorV3; 8]);
    assert_eq!(h.client.n_hops(), 8);
    assert_eq!(h.client.relay_early_left(), 1);
    let target = h.net.relays[8].target();
    assert_eq!(
        h.client.extend(&mut h.rng, &target, HandshakeKind::NtorV3),
        Err(CircuitError::TooManyHops(8))
    );
    let s = h.connect("far.example");
    assert_eq!(h.echo(s, b"eight"), b"eight");
}

#[test]
fn create_replies() {
    let net = FakeNet::new(1, 5);
    let target = net.relays[0].target();
    let mut rng = seeded_rng(3);
    let start = |rng: &mut StdRng, kind| {
        ClientCircuit::start(rng, &target, kind, CircuitConfig::default())
            .unwrap()
            .0
    };
    // DESTROY instead of CREATED2.
    let p = start(&mut rng, HandshakeKind::Ntor);
    assert_eq!(
        p.handle_created(Destroy::new(DestroyReason::RESOURCELIMIT).into())
            .unwrap_err(),
        CircuitError::Refused(DestroyReason::RESOURCELIMIT)
    );
    // The wrong reply kind.
    let p = start(&mut rng, HandshakeKind::Ntor);
    assert_eq!(
        p.handle_created(CreatedFast::new([0; 20], [0; 20]).into())
            .unwrap_err(),
        CircuitError::UnexpectedReply {
            expected: ChanCmd::CREATED2,
            got: ChanCmd::CREATED_FAST
        }
    );
    // A forged reply.
    for kind in [HandshakeKind::Ntor, HandshakeKind::NtorV3] {
        let mut net = FakeNet::new(1, 6);
        let target = net.relays[0].target();
        let (p, create) =
            ClientCircuit::start(&mut rng, &target, kind, CircuitConfig::default()).unwrap();
        let ChanMsg::Created2(reply) = net.create(0, &create) else {
            panic!("not CREATED2");
        };
        let mut hdata = reply.into_hdata();
        hdata[40] ^= 1; // inside AUTH
        let err = p
            .handle_created(Created2::new(hdata).unwrap().into())
            .unwrap_err();
        assert_eq!(
            err,
            CircuitError::Handshake {
                hop: HopNum::FIRST,
                source: HandshakeError::AuthFailed
            },
            "{kind}"
        );
        assert_eq!(err.fault(), Fault::Peer);
    }
    // CREATE_FAST with a wrong KH.
    let p = start(&mut rng, HandshakeKind::CreateFast);
    assert_eq!(
        p.handle_created(CreatedFast::new([1; 20], [2; 20]).into())
            .unwrap_err(),
        CircuitError::Handshake {
            hop: HopNum::FIRST,
            source: HandshakeError::AuthFailed
        }
    );
}

#[test]
fn ntor_v3_relay_accepting_congestion_control_is_refused() {
    let mut net = FakeNet::new(2, 9);
    net.v3_reply = FakeNet::cc_accepting_reply();
    let mut rng = seeded_rng(4);
    let (p, create) = ClientCircuit::start(
        &mut rng,
        &net.relays[0].target(),
        HandshakeKind::NtorV3,
        CircuitConfig::default(),
    )
    .unwrap();
    let reply = net.create(0, &create);
    assert!(matches!(
        p.handle_created(reply),
        Err(CircuitError::Handshake {
            source: HandshakeError::Malformed(_),
            ..
        })
    ));
    // The same during an extension is fatal.
    let mut h = Harness::build(&[HandshakeKind::Ntor, HandshakeKind::Ntor]);
    h.net.v3_reply = FakeNet::cc_accepting_reply();
    let target = h.net.relays[2].target();
    h.client
        .extend(&mut h.rng, &target, HandshakeKind::NtorV3)
        .unwrap();
    let cell = h.client.poll_outgoing().unwrap();
    let back = h.net.forward(cell);
    let err = h.deliver_err(back.into_iter().next().unwrap());
    assert!(matches!(
        err,
        CircuitError::Handshake { hop: h3, source: HandshakeError::Malformed(_) } if h3 == hop(3)
    ));
    assert!(!h.client.is_open());
}

#[test]
fn manual_stream_sendmes_wait_for_the_reader() {
    let config = CircuitConfig {
        manual_stream_sendme: true,
        ..CircuitConfig::default()
    };
    let mut h = Harness::create(2, HandshakeKind::Ntor, false, config);
    h.extend_to(1, HandshakeKind::Ntor, false);
    let s = h.connect("slow-reader.example");
    let data = pattern(600 * 498);
    let mut sent = 0;
    let mut got = Vec::new();
    let collect = |events: Vec<ClientEvent>, got: &mut Vec<u8>| {
        for ev in events {
            match ev {
                ClientEvent::StreamData { stream, bytes } if stream == s => {
                    got.extend_from_slice(&bytes)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    // The reader consumes nothing: our data still flows (the exit acknowledges it), but the
    // exit's echo stops after one stream window because we send no stream SENDME.
    loop {
        let n = h.client.send_data(&mut h.rng, s, &data[sent..]).unwrap();
        sent += n;
        let events = h.pump();
        let idle = n == 0 && events.is_empty();
        collect(events, &mut got);
        if idle {
            break;
        }
    }
    assert_eq!(sent, data.len());
    assert_eq!(got.len(), 500 * 498);
    assert_eq!(h.net.stats.stream_sendmes_in, 0);
    // Consuming most of it, but leaving more than ten cells' worth, releases nothing.
    h.client.stream_consumed(&mut h.rng, s, 450 * 498).unwrap();
    assert_eq!(h.client.queued_cells(), 0);
    // Ten cells' worth left: the ten SENDMEs due go out, and the echo completes.
    h.client.stream_consumed(&mut h.rng, s, 40 * 498).unwrap();
    assert_eq!(h.client.queued_cells(), 10);
    let events = h.pump();
    collect(events, &mut got);
    assert_eq!(h.net.stats.stream_sendmes_in, 10);
    assert!(got == data, "echo differs");
    // 110 cells' worth unconsumed, window 400: two SENDMEs due once the reader catches up.
    h.client.stream_consumed(&mut h.rng, s, usize::MAX).unwrap();
    assert_eq!(h.client.queued_cells(), 2);
    h.pump();
    assert_eq!(h.net.stats.stream_sendmes_in, 12);
    assert_eq!(
        h.client.stream_consumed(&mut h.rng, StreamId(9), 1),
        Err(CircuitError::NoSuchStream(StreamId(9)))
    );
}
