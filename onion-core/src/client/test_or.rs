//! [`ClientCircuit`] against the real OR side, [`OrCircuit`](crate::relay::OrCircuit): a
//! chain of OR circuits, one per hop, driven the way `or-server` drives them (EXTEND2 answered
//! by creating the next hop's circuit, BEGIN answered with CONNECTED, DATA echoed by the
//! exit within its windows).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use onion_cell::chancell::ChanMsg;
use onion_cell::relaycell::{Address, BeginFlags, EndReason, StreamId};
use rand::rngs::StdRng;
use rand_core::Rng;
use x25519_dalek::StaticSecret;

use super::*;
use crate::handshake::tap;
use crate::relay::{CircuitEvent, ForwardAction, OnionKeys, OrCircuit};
use crate::testing::seeded_rng;

/// The relays and the OR circuits of one client circuit.
struct OrNet {
    /// Every relay's keys.
    keys: Vec<OnionKeys>,
    /// The circuit at each hop, hop 1 first.
    hops: Vec<OrCircuit>,
    /// Bytes the exit still has to echo, per stream.
    echo: BTreeMap<StreamId, Vec<u8>>,
    /// Streams the client ended, as the exit saw them.
    ended: Vec<(StreamId, EndReason)>,
    /// Cells for the client, in order.
    to_client: Vec<ChanMsg>,
    /// The relays' randomness.
    rng: StdRng,
}

impl OrNet {
    /// `n` relays.
    fn new(n: u8, seed: u64) -> Self {
        let mut rng = seeded_rng(seed);
        let (a, b, _) = tap::test::test_keys();
        let keys = (0..n)
            .map(|i| {
                let mut rsa_id = [0u8; 20];
                rng.fill_bytes(&mut rsa_id);
                let mut ed_id = [0u8; 32];
                rng.fill_bytes(&mut ed_id);
                let ntor = StaticSecret::random_from_rng(&mut rng);
                let tap = if i % 2 == 0 { a.clone() } else { b.clone() };
                OnionKeys::new(rsa_id, ed_id, ntor, tap).unwrap()
            })
            .collect();
        OrNet {
            keys,
            hops: Vec::new(),
            echo: BTreeMap::new(),
            ended: Vec::new(),
            to_client: Vec::new(),
            rng,
        }
    }

    /// What a client knows of relay `i`.
    fn target(&self, i: usize) -> HopTarget {
        let k = &self.keys[i];
        HopTarget {
            ipv4: Some(SocketAddrV4::new(
                Ipv4Addr::new(10, 1, 0, u8::try_from(i + 1).unwrap()),
                443,
            )),
            ipv6: None,
            rsa_id: Some(*k.rsa_id()),
            ed_id: Some(*k.ed_id()),
            ntor_onion_key: Some(k.ntor_public().unwrap().pk),
            tap_onion_key: Some(k.tap_public()),
            supports_ntor_v3: true,
        }
    }

    /// Relay 0 answers the client's create cell on a client link.
    fn create(&mut self, msg: &ChanMsg) -> ChanMsg {
        let (circ, reply) = OrCircuit::accept_create(&mut self.rng, &self.keys[0], msg, true)
            .expect("relay refused the create cell");
        self.hops.push(circ);
        reply
    }

    /// A cell from the client, through the hops.
    fn forward(&mut self, cell: OutCell) {
        let mut early = cell.early;
        let mut body = cell.body;
        for i in 0..self.hops.len() {
            let action = self.hops[i]
                .handle_forward(&mut self.rng, &mut body, early)
                .unwrap_or_else(|e| panic!("hop {} failed: {e}", i + 1));
            match action {
                ForwardAction::PassOn { early: e } => early = e,
                ForwardAction::Consumed => break,
                ForwardAction::Event(ev) => {
                    self.on_event(i, ev);
                    break;
                }
            }
        }
        self.flush();
    }

    /// What the driver of hop `i` does for `ev`.
    fn on_event(&mut self, i: usize, ev: CircuitEvent) {
        let rng = &mut self.rng;
        match ev {
            CircuitEvent::ExtendRequest(req) => {
                let j = self
                    .keys
                    .iter()
                    .position(|k| k.rsa_id() == req.rsa_id())
                    .expect("extend to an unknown relay");
                let (circ, created) =
                    OrCircuit::accept_create(rng, &self.keys[j], req.create(), false)
                        .expect("next relay refused the create cell");
                self.hops.push(circ);
                self.hops[i].extended(rng, &created).unwrap();
            }
            CircuitEvent::BeginRequest { stream, .. } => {
                let at = (IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)), 120);
                self.hops[i]
                    .stream_connected(rng, stream, Some(at))
                    .unwrap();
            }
            CircuitEvent::BeginDirRequest { stream } => {
                self.hops[i].stream_connected(rng, stream, None).unwrap();
            }
            CircuitEvent::StreamData { stream, data } => {
                self.hops[i]
                    .stream_flushed(rng, stream, data.len())
                    .unwrap();
                self.echo
                    .entry(stream)
                    .or_default()
                    .extend_from_slice(&data);
            }
            CircuitEvent::StreamEnd { stream, reason } => {
                self.echo.remove(&stream);
                self.ended.push((stream, reason));
            }
            CircuitEvent::PackageWindowOpened { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// Echo what the exit's windows allow, and move backward cells toward the client.
    fn flush(&mut self) {
        loop {
            let mut moved = false;
            if let Some(exit) = self.hops.last_mut() {
                for (stream, buf) in &mut self.echo {
                    if !buf.is_empty() {
                        let n = exit.stream_data(&mut self.rng, *stream, buf).unwrap();
                        buf.drain(..n);
                    }
                }
            }
            for i in (1..self.hops.len()).rev() {
                while self.hops[i - 1].backward_room() > 0 {
                    match self.hops[i].poll_backward() {
                        Some(ChanMsg::Relay(r)) => {
                            self.hops[i - 1]
                                .handle_backward_from_next(r.into_body())
                                .unwrap();
                            moved = true;
                        }
                        Some(other) => panic!("unexpected backward {:?}", other.cmd()),
                        None => break,
                    }
                }
            }
            while let Some(m) = self.hops[0].poll_backward() {
                self.to_client.push(m);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

/// Move cells both ways until nothing moves; the client's events.
fn pump(client: &mut ClientCircuit, net: &mut OrNet, rng: &mut StdRng) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    loop {
        let mut moved = false;
        while let Some(cell) = client.poll_outgoing() {
            net.forward(cell);
            moved = true;
        }
        for m in std::mem::take(&mut net.to_client) {
            events.extend(client.handle_cell(rng, m).unwrap());
            moved = true;
        }
        if !moved {
            return events;
        }
    }
}

#[test]
fn three_hops_through_real_or_circuits() {
    // (hop 1, hop 2, hop 3, legacy EXTEND for TAP)
    let paths = [
        (
            HandshakeKind::CreateFast,
            HandshakeKind::NtorV3,
            HandshakeKind::Tap,
            false,
        ),
        (
            HandshakeKind::Ntor,
            HandshakeKind::Tap,
            HandshakeKind::Ntor,
            true,
        ),
        (
            HandshakeKind::CreateFastWs,
            HandshakeKind::Ntor,
            HandshakeKind::NtorV3,
            false,
        ),
    ];
    for (n, (k1, k2, k3, legacy)) in paths.into_iter().enumerate() {
        let mut net = OrNet::new(3, 40 + n as u64);
        let mut rng = seeded_rng(50 + n as u64);
        let (pending, create) =
            ClientCircuit::start(&mut rng, &net.target(0), k1, CircuitConfig::default()).unwrap();
        let reply = net.create(&create);
        let mut client = pending.handle_created(reply).unwrap();
        for (relay, kind) in [(1, k2), (2, k3)] {
            let target = net.target(relay);
            let new = if legacy && kind == HandshakeKind::Tap {
                client.extend_legacy_tap(&mut rng, &target).unwrap()
            } else {
                client.extend(&mut rng, &target, kind).unwrap()
            };
            let events = pump(&mut client, &mut net, &mut rng);
            assert_eq!(events, vec![ClientEvent::HopAdded { hop: new }]);
        }
        assert_eq!(client.n_hops(), 3);

        let s = client
            .begin(
                &mut rng,
                Address::parse("example.org").unwrap(),
                443,
                BeginFlags::NONE,
            )
            .unwrap();
        let events = pump(&mut client, &mut net, &mut rng);
        assert_eq!(
            events,
            vec![ClientEvent::StreamConnected {
                stream: s,
                addr: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9))),
                ttl: Some(120)
            }]
        );
        let d = client.begin_dir(&mut rng).unwrap();
        let events = pump(&mut client, &mut net, &mut rng);
        assert_eq!(
            events,
            vec![ClientEvent::StreamConnected {
                stream: d,
                addr: None,
                ttl: None
            }]
        );

        // 300 KB echoed: circuit SENDME v1 and stream SENDMEs both ways, checked by both the
        // OR circuit and the client.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        let mut got = Vec::new();
        let mut idle = 0;
        while got.len() < data.len() {
            let taken = client.send_data(&mut rng, s, &data[sent..]).unwrap();
            sent += taken;
            let events = pump(&mut client, &mut net, &mut rng);
            if taken == 0 && events.is_empty() {
                idle += 1;
                assert!(idle < 3, "stalled at {sent} sent, {} echoed", got.len());
            }
            for ev in events {
                match ev {
                    ClientEvent::StreamData { stream, bytes } if stream == s => {
                        got.extend_from_slice(&bytes)
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(got == data, "echo differs on path {n}");
        assert_eq!(net.hops[2].stream_count(), 2);

        client.end_stream(&mut rng, s, EndReason::MISC).unwrap();
        assert!(pump(&mut client, &mut net, &mut rng).is_empty());
        assert_eq!(net.ended, vec![(s, EndReason::MISC)]);
        assert_eq!(net.hops[2].stream_count(), 1);
        // Hop 1 saw both EXTEND2s and the first cells beyond it as RELAY_EARLY: 8 in all.
        assert_eq!(client.relay_early_left(), 0);
        assert_eq!(net.hops[0].relay_early_remaining(), 0);
        let closing = client.close();
        assert!(closing.destroy.is_some());
        assert_eq!(closing.events.len(), 2, "stream d, then the circuit");
    }
}
