//! A test-only fake relay network, built from the core pieces only (server handshakes,
//! [`RelayLayer`], [`RelayCell`], the flow-control accounting), to drive a
//! [`ClientCircuit`](super::ClientCircuit) end to end in memory with real crypto.
//!
//! [`FakeNet`] plays every hop of one circuit: it answers the create cell, peels the client's
//! cells hop by hop, and at the hop that recognizes a cell answers EXTEND2 / EXTEND (by
//! creating the next hop itself, from its list of known relays), BEGIN / BEGIN_DIR / RESOLVE,
//! echoes DATA within its own windows, and honours (and checks) SENDMEs. It panics on anything
//! a correct client would not do, so tests fail loudly.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use onion_cell::chancell::DestroyReason;
use onion_cell::chancell::{ChanMsg, Created, Created2, CreatedFast, CreatedFastWs};
use onion_cell::relaycell::{
    Address, Connected, Data, Dialect, End, EndReason, Extended, Extended2, LinkSpec, RelayCell,
    RelayMsg, Resolved, ResolvedAnswer, ResolvedValue, Sendme, StreamId, Truncated,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_core::{CryptoRng, Rng};
use x25519_dalek::StaticSecret;

use super::HopTarget;
use super::OutCell;
use crate::crypto::keys::HopKeys;
use crate::crypto::relay::{CellDigest, RelayLayer};
use crate::flow::{CircuitReceiver, CircuitSender, StreamWindows, WindowParams};
use crate::handshake::ntor::NtorSecretKey;
use crate::handshake::ntor_v3::{self, NtorV3Extension, NtorV3SecretKey};
use crate::handshake::{HandshakeError, fast, fast_ws, htype, ntor, tap};

/// A relay the fake network knows: identities, onion keys, address.
pub(crate) struct FakeRelay {
    /// RSA identity digest.
    pub(crate) rsa_id: [u8; 20],
    /// Ed25519 identity.
    pub(crate) ed_id: [u8; 32],
    /// ntor key (same secret as `ntor_v3`, as a real relay's `ntor-onion-key`).
    ntor: NtorSecretKey,
    /// ntor-v3 view of the same key.
    ntor_v3: NtorV3SecretKey,
    /// TAP onion key.
    tap: rsa::PrivateKey,
    /// ORPort.
    pub(crate) addr: SocketAddrV4,
}

impl FakeRelay {
    /// A relay numbered `n` with fresh identities and ntor key, and TAP key `tap`.
    pub(crate) fn new<R: CryptoRng>(rng: &mut R, n: u8, tap: rsa::PrivateKey) -> Self {
        let mut rsa_id = [0u8; 20];
        rng.fill_bytes(&mut rsa_id);
        let mut ed_id = [0u8; 32];
        rng.fill_bytes(&mut ed_id);
        let sk = StaticSecret::random_from_rng(&mut *rng);
        FakeRelay {
            rsa_id,
            ed_id,
            ntor: NtorSecretKey::new(rsa_id, sk.clone()),
            ntor_v3: NtorV3SecretKey::new(ed_id, sk),
            tap,
            addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), 9001),
        }
    }

    /// What a client knows of this relay.
    pub(crate) fn target(&self) -> HopTarget {
        HopTarget {
            ipv4: Some(self.addr),
            ipv6: None,
            rsa_id: Some(self.rsa_id),
            ed_id: Some(self.ed_id),
            ntor_onion_key: Some(self.ntor.pk.pk),
            tap_onion_key: Some(self.tap.to_public_key()),
            supports_ntor_v3: true,
        }
    }

    /// Answer a CREATE2 / EXTEND2 handshake. `v3_reply` is the ntor-v3 server message.
    fn answer_create2(
        &self,
        rng: &mut StdRng,
        ty: u16,
        hdata: &[u8],
        v3_reply: &[u8],
    ) -> Result<(HopKeys, Vec<u8>), HandshakeError> {
        match ty {
            htype::TAP => tap::server(rng, &[&self.tap], hdata).map(|(k, r)| (k, r.to_vec())),
            htype::NTOR => ntor::server(rng, std::slice::from_ref(&self.ntor), hdata)
                .map(|(k, r)| (k, r.to_vec())),
            htype::NTOR_V3 => ntor_v3::server(
                rng,
                std::slice::from_ref(&self.ntor_v3),
                hdata,
                ntor_v3::CIRCUIT_EXTEND_VERIFICATION,
                |cm| {
                    // The client asks for nothing: an empty extension list.
                    let exts = ntor_v3::decode_extensions(cm).ok()?;
                    assert!(exts.is_empty(), "client sent ntor-v3 extensions {exts:?}");
                    Some(v3_reply.to_vec())
                },
            )
            .map(|(k, r, _)| (k, r)),
            other => panic!("fake relay: unknown CREATE2 type {other}"),
        }
    }
}

/// A stream at the fake exit.
#[derive(Default)]
struct FakeStream {
    /// Windows of the exit's side.
    windows: StreamWindows,
    /// Bytes to echo, waiting for window.
    pending: VecDeque<Vec<u8>>,
}

/// One hop of the fake circuit.
struct FakeHop {
    /// Which relay of [`FakeNet::relays`] this is.
    relay: usize,
    /// Its crypto.
    layer: RelayLayer,
    /// RELAY_EARLY cells seen (tor-spec §5.6: at most 8).
    early_seen: u8,
    /// Circuit package window toward the client.
    sender: CircuitSender,
    /// Circuit deliver window from the client.
    receiver: CircuitReceiver,
    /// Streams ending here.
    streams: BTreeMap<StreamId, FakeStream>,
}

impl FakeHop {
    /// A fresh hop with `keys`.
    fn new(relay: usize, keys: &HopKeys) -> Self {
        FakeHop {
            relay,
            layer: RelayLayer::new(keys),
            early_seen: 0,
            // Our client always sends authenticated SENDMEs: insist on them.
            sender: CircuitSender::new(WindowParams::CIRCUIT, 1),
            receiver: CircuitReceiver::new(WindowParams::CIRCUIT),
            streams: BTreeMap::new(),
        }
    }
}

/// What the fake network counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Circuit SENDMEs (all v1) received from the client.
    pub(crate) circ_sendmes_in: usize,
    /// Circuit SENDMEs sent to the client.
    pub(crate) circ_sendmes_out: usize,
    /// Stream SENDMEs received from the client.
    pub(crate) stream_sendmes_in: usize,
    /// Stream SENDMEs sent to the client.
    pub(crate) stream_sendmes_out: usize,
    /// DATA cells received from the client.
    pub(crate) data_in: usize,
    /// DATA bytes received from the client.
    pub(crate) bytes_in: usize,
    /// RELAY_EARLY cells received.
    pub(crate) early_in: usize,
    /// RELAY cells received.
    pub(crate) relay_in: usize,
}

/// The fake relays of one circuit.
pub(crate) struct FakeNet {
    /// Relays that can be created or extended to.
    pub(crate) relays: Vec<FakeRelay>,
    /// The circuit's hops, hop 1 first.
    hops: Vec<FakeHop>,
    /// The relays' randomness.
    rng: StdRng,
    /// Echo DATA back (else: swallow it).
    pub(crate) echo: bool,
    /// Keep SENDMEs for [`FakeNet::release_sendmes`] instead of sending them.
    pub(crate) withhold_sendmes: bool,
    /// SENDMEs kept back: (hop index, stream, message).
    withheld: Vec<(usize, StreamId, RelayMsg)>,
    /// The ntor-v3 server message (an extension list).
    pub(crate) v3_reply: Vec<u8>,
    /// Counters.
    pub(crate) stats: Stats,
    /// Backward cells produced by the current step, encrypted, in order.
    out: Vec<Vec<u8>>,
}

impl FakeNet {
    /// `n` relays with fresh keys, from `seed`. TAP keys alternate between the two test keys.
    pub(crate) fn new(n: u8, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let (a, b, _) = tap::test::test_keys();
        let relays = (1..=n)
            .map(|i| {
                let key = if i % 2 == 1 { a.clone() } else { b.clone() };
                FakeRelay::new(&mut rng, i, key)
            })
            .collect();
        FakeNet {
            relays,
            hops: Vec::new(),
            rng,
            echo: true,
            withhold_sendmes: false,
            withheld: Vec::new(),
            v3_reply: vec![0],
            stats: Stats::default(),
            out: Vec::new(),
        }
    }

    /// How many hops the fake circuit has.
    pub(crate) fn n_hops(&self) -> usize {
        self.hops.len()
    }

    /// RELAY_EARLY cells seen by hop `i` (0-based).
    pub(crate) fn early_seen(&self, i: usize) -> u8 {
        self.hops[i].early_seen
    }

    /// Relay `relay` answers the client's create cell as hop 1.
    pub(crate) fn create(&mut self, relay: usize, msg: &ChanMsg) -> ChanMsg {
        assert!(self.hops.is_empty(), "second create on the fake circuit");
        let r = &self.relays[relay];
        let rng = &mut self.rng;
        let (keys, reply): (HopKeys, ChanMsg) = match msg {
            ChanMsg::Create(c) => {
                let (k, reply) = tap::server(rng, &[&r.tap], c.handshake()).unwrap();
                (k, Created::new(reply).into())
            }
            ChanMsg::Create2(c) => {
                let (k, reply) = r
                    .answer_create2(rng, c.htype(), c.hdata(), &self.v3_reply)
                    .unwrap();
                (k, Created2::new(reply).unwrap().into())
            }
            ChanMsg::CreateFast(c) => {
                let (k, reply) = fast::server(rng, c.x()).unwrap();
                let (y, kh) = reply.split_at(20);
                (
                    k,
                    CreatedFast::new(y.try_into().unwrap(), kh.try_into().unwrap()).into(),
                )
            }
            ChanMsg::CreateFastWs(c) => {
                let (k, reply) = fast_ws::server(rng, &[&r.tap], c.enc_x()).unwrap();
                let (y, kh) = reply.split_at(20);
                (
                    k,
                    CreatedFastWs::new(y.try_into().unwrap(), kh.try_into().unwrap()).into(),
                )
            }
            other => panic!("fake relay: not a create cell: {:?}", other.cmd()),
        };
        self.hops.push(FakeHop::new(relay, &keys));
        reply
    }

    /// A cell from the client: peel it hop by hop, act at the hop that recognizes it, and
    /// return the backward cells (encrypted, for the client) that resulted.
    pub(crate) fn forward(&mut self, cell: OutCell) -> Vec<Vec<u8>> {
        if cell.early {
            self.stats.early_in += 1;
        } else {
            self.stats.relay_in += 1;
        }
        let mut body = cell.body.to_vec();
        for i in 0..self.hops.len() {
            let hop = &mut self.hops[i];
            if cell.early {
                hop.early_seen += 1;
                assert!(hop.early_seen <= 8, "hop {} saw a 9th RELAY_EARLY", i + 1);
            }
            if let Some(digest) = hop.layer.decrypt_forward(&mut body).unwrap() {
                self.handle(i, &digest, &body, cell.early);
                return std::mem::take(&mut self.out);
            }
        }
        panic!("fake relay: cell recognized by no hop");
    }

    /// Originate `msg` at hop `i` toward the client.
    fn send_back(&mut self, i: usize, sid: StreamId, msg: RelayMsg) -> CellDigest {
        let cell = RelayCell::new(sid, msg).unwrap();
        let rng = &mut self.rng;
        let mut body = cell.encode(|b| rng.fill_bytes(b)).unwrap().to_vec();
        let d = self.hops[i].layer.originate_backward(&mut body).unwrap();
        for j in (0..i).rev() {
            self.hops[j].layer.encrypt_backward(&mut body).unwrap();
        }
        self.out.push(body);
        d
    }

    /// Send (or withhold) a SENDME from hop `i`.
    fn sendme(&mut self, i: usize, sid: StreamId, msg: RelayMsg) {
        if sid.is_zero() {
            self.stats.circ_sendmes_out += 1;
        } else {
            self.stats.stream_sendmes_out += 1;
        }
        if self.withhold_sendmes {
            self.withheld.push((i, sid, msg));
        } else {
            self.send_back(i, sid, msg);
        }
    }

    /// Send every withheld SENDME; returns the cells.
    pub(crate) fn release_sendmes(&mut self) -> Vec<Vec<u8>> {
        for (i, sid, msg) in std::mem::take(&mut self.withheld) {
            self.send_back(i, sid, msg);
        }
        std::mem::take(&mut self.out)
    }

    /// How many SENDMEs are withheld.
    pub(crate) fn withheld(&self) -> usize {
        self.withheld.len()
    }

    /// Hop `i` sends `msg` on `sid`, whatever the protocol says (to test the client's checks).
    pub(crate) fn inject(&mut self, i: usize, sid: StreamId, msg: RelayMsg) -> Vec<u8> {
        self.send_back(i, sid, msg);
        let mut out = std::mem::take(&mut self.out);
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    /// Hop `i` loses its next hop: everything beyond is dropped and hop `i` says TRUNCATED.
    pub(crate) fn truncate_after(&mut self, i: usize, reason: DestroyReason) -> Vec<u8> {
        self.hops.truncate(i + 1);
        self.inject(i, StreamId::ZERO, Truncated::new(reason).into())
    }

    /// Open streams at hop `i`.
    pub(crate) fn stream_count(&self, i: usize) -> usize {
        self.hops[i].streams.len()
    }

    /// Act on a cell recognized by hop `i`.
    fn handle(&mut self, i: usize, digest: &CellDigest, body: &[u8], early: bool) {
        let cell = RelayCell::decode(body, Dialect::Tor).unwrap();
        let (sid, msg) = cell.into_parts();
        match msg {
            RelayMsg::Extend2(e) => {
                assert!(early, "EXTEND2 not in a RELAY_EARLY cell");
                assert_eq!(i + 1, self.hops.len(), "EXTEND2 to a middle hop");
                let found = self.relays.iter().position(|r| {
                    e.link_specs().iter().any(|ls| match ls {
                        LinkSpec::RsaId(id) => *id == r.rsa_id,
                        LinkSpec::Ed25519Id(id) => *id == r.ed_id,
                        _ => false,
                    })
                });
                let Some(j) = found else {
                    self.send_back(
                        i,
                        StreamId::ZERO,
                        Truncated::new(DestroyReason::CONNECTFAILED).into(),
                    );
                    return;
                };
                let (keys, reply) = self.relays[j]
                    .answer_create2(&mut self.rng, e.htype(), e.hdata(), &self.v3_reply)
                    .unwrap();
                self.hops.push(FakeHop::new(j, &keys));
                self.send_back(i, StreamId::ZERO, Extended2::new(reply).unwrap().into());
            }
            RelayMsg::Extend(e) => {
                assert!(early, "EXTEND not in a RELAY_EARLY cell");
                let j = self
                    .relays
                    .iter()
                    .position(|r| r.rsa_id == *e.rsa_id() && r.addr.ip() == &e.addr())
                    .expect("EXTEND to an unknown relay");
                let (keys, reply) =
                    tap::server(&mut self.rng, &[&self.relays[j].tap], e.onion_skin()).unwrap();
                self.hops.push(FakeHop::new(j, &keys));
                self.send_back(i, StreamId::ZERO, Extended::new(reply).into());
            }
            RelayMsg::Begin(b) => {
                let reply: RelayMsg = match b.address() {
                    Address::Hostname(h) if h == "refused.example" => {
                        End::new(EndReason::CONNECTREFUSED).into()
                    }
                    Address::Hostname(h) if h == "policy.example" => {
                        End::exit_policy(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66)), 600).into()
                    }
                    _ => {
                        self.hops[i].streams.insert(sid, FakeStream::default());
                        Connected::new_with_addr(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 300)
                            .unwrap()
                            .into()
                    }
                };
                self.send_back(i, sid, reply);
            }
            RelayMsg::BeginDir(_) => {
                self.hops[i].streams.insert(sid, FakeStream::default());
                self.send_back(i, sid, Connected::new_empty().into());
            }
            RelayMsg::Resolve(r) => {
                assert_eq!(r.query(), "example.com");
                let answer = ResolvedAnswer {
                    value: ResolvedValue::Ipv4(Ipv4Addr::new(192, 0, 2, 7)),
                    ttl: 60,
                };
                self.send_back(i, sid, Resolved::new(vec![answer]).unwrap().into());
            }
            RelayMsg::Data(d) => self.on_data(i, digest, sid, d.into_bytes()),
            RelayMsg::Sendme(s) => {
                let hop = &mut self.hops[i];
                if sid.is_zero() {
                    let Sendme::V1 { digest } = s else {
                        panic!("client sent a circuit SENDME {s:?}, not v1");
                    };
                    hop.sender.on_sendme(1, &digest).unwrap();
                    self.stats.circ_sendmes_in += 1;
                } else {
                    assert_eq!(s, Sendme::V0, "stream SENDMEs are empty");
                    let st = hop.streams.get_mut(&sid).expect("SENDME on unknown stream");
                    st.windows.package.on_sendme().unwrap();
                    self.stats.stream_sendmes_in += 1;
                }
                self.flush(i);
            }
            RelayMsg::End(_) => {
                self.hops[i].streams.remove(&sid);
            }
            RelayMsg::Drop(_) => {}
            other => panic!("fake relay: unexpected {:?} from the client", other.cmd()),
        }
    }

    /// DATA from the client at hop `i`: windows, SENDMEs, echo.
    fn on_data(&mut self, i: usize, digest: &CellDigest, sid: StreamId, bytes: Vec<u8>) {
        self.stats.data_in += 1;
        self.stats.bytes_in += bytes.len();
        let hop = &mut self.hops[i];
        let circ = hop.receiver.on_data_received(digest).unwrap();
        let st = hop
            .streams
            .get_mut(&sid)
            .expect("DATA on an unknown stream");
        st.windows.deliver.on_data_received().unwrap();
        let stream_due = st.windows.deliver.sendme_due();
        if stream_due {
            st.windows.deliver.on_sendme_sent().unwrap();
        }
        if self.echo {
            st.pending.push_back(bytes);
        }
        if let Some(tag) = circ {
            let msg = Sendme::V1 {
                digest: *tag.as_bytes(),
            };
            self.sendme(i, StreamId::ZERO, msg.into());
        }
        if stream_due {
            self.sendme(i, sid, Sendme::V0.into());
        }
        self.flush(i);
    }

    /// Echo what the windows of hop `i` allow.
    fn flush(&mut self, i: usize) {
        let ids: Vec<StreamId> = self.hops[i].streams.keys().copied().collect();
        for sid in ids {
            loop {
                let hop = &mut self.hops[i];
                let can = hop.sender.can_send();
                let Some(st) = hop.streams.get_mut(&sid) else {
                    break;
                };
                if !can || !st.windows.package.can_send() {
                    break;
                }
                let Some(chunk) = st.pending.pop_front() else {
                    break;
                };
                st.windows.package.on_data_sent().unwrap();
                let d = self.send_back(i, sid, Data::new(chunk).unwrap().into());
                self.hops[i].sender.on_data_sent(&d).unwrap();
            }
        }
    }

    /// The relay index hop `i` is.
    pub(crate) fn relay_of(&self, i: usize) -> usize {
        self.hops[i].relay
    }

    /// The ntor-v3 reply message accepting congestion control (to test the client refuses it).
    pub(crate) fn cc_accepting_reply() -> Vec<u8> {
        ntor_v3::encode_extensions(&[NtorV3Extension::CcResponse { sendme_inc: 31 }]).unwrap()
    }
}
