//! End-to-end tests of [`OrCircuit`] against a client built from the core pieces
//! ([`ClientCrypt`], the handshakes' client functions, [`RelayCell`] encoding, the flow
//! control accounting): deterministic, in memory, real crypto.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::net::{IpAddr, Ipv4Addr};

use onion_cell::chancell::{
    ChanCmd, ChanMsg, Create, Create2, CreateFast, CreateFastWs, DestroyReason, PAYLOAD_LEN,
};
use onion_cell::relaycell::{
    Address, Associate, Begin, BeginDir, BeginFlags, Data, Dialect, DropMsg, End, EndReason,
    Extend, Extend2, Info, InfoRequest, LinkSpec, OpWsAddr, OrWsAddr, RelayCell, RelayCmd,
    RelayMsg, Resolve, Resolved, ResolvedAnswer, ResolvedValue, Sendme, StreamId, Truncate,
    Unrecognized, WsStream,
};
use rand::rngs::StdRng;
use x25519_dalek::StaticSecret;

use super::*;
use crate::crypto::keys::HopKeys;
use crate::crypto::relay::{CellDigest, ClientCrypt, HopNum, RELAY_BODY_LEN};
use crate::flow::{CircuitReceiver, CircuitSender, FlowError, StreamWindows, WindowParams};
use crate::handshake::ntor_v3::{CIRCUIT_EXTEND_VERIFICATION, NtorV3Extension};
use crate::handshake::tap::test::test_keys;
use crate::handshake::{HandshakeError, fast, fast_ws, htype, ntor, ntor_v3, tap};
use crate::testing::seeded_rng;

const RSA_A: [u8; 20] = [0xa1; 20];
const ED_A: [u8; 32] = [0xa2; 32];
const RSA_B: [u8; 20] = [0xb1; 20];
const ED_B: [u8; 32] = [0xb2; 32];

/// Relay keys with the test TAP keys (current A, previous B).
fn relay_keys(rng: &mut StdRng, rsa: [u8; 20], ed: [u8; 32]) -> OnionKeys {
    let (a, b, _) = test_keys();
    OnionKeys::new(rsa, ed, StaticSecret::random_from_rng(rng), a)
        .unwrap()
        .with_previous_tap(b)
        .unwrap()
}

/// What the client got back in one cell.
#[derive(Debug)]
struct Got {
    hop: u8,
    cell: RelayCell,
    /// A circuit SENDME v1 the client owes the hop for this DATA cell.
    sendme: Option<CellDigest>,
}

/// A client circuit: the crypto of every hop and its circuit windows toward each hop.
struct Client {
    crypt: ClientCrypt,
    send: Vec<CircuitSender>,
    recv: Vec<CircuitReceiver>,
}

impl Client {
    fn new() -> Self {
        Client {
            crypt: ClientCrypt::new(),
            send: Vec::new(),
            recv: Vec::new(),
        }
    }

    fn add_hop(&mut self, keys: &HopKeys) {
        self.crypt.add_hop(keys).unwrap();
        self.send.push(CircuitSender::new(WindowParams::CIRCUIT, 1));
        self.recv.push(CircuitReceiver::new(WindowParams::CIRCUIT));
    }

    /// An encrypted RELAY body carrying `msg` for `hop`, with window accounting.
    fn cell(&mut self, rng: &mut StdRng, hop: u8, stream: u16, msg: RelayMsg) -> Box<[u8; 509]> {
        let is_data = msg.cmd() == RelayCmd::DATA;
        let (body, digest) = self.raw(rng, hop, stream, msg);
        if is_data {
            self.send[hop as usize - 1].on_data_sent(&digest).unwrap();
        }
        body
    }

    /// Like `cell`, ignoring windows.
    fn raw(
        &mut self,
        rng: &mut StdRng,
        hop: u8,
        stream: u16,
        msg: RelayMsg,
    ) -> (Box<[u8; 509]>, CellDigest) {
        let cell = RelayCell::new(StreamId(stream), msg).unwrap();
        let mut body = Box::new(cell.encode(|b| rand::Rng::fill_bytes(rng, b)).unwrap());
        let d = self
            .crypt
            .encrypt(&mut body[..], HopNum::new(hop).unwrap())
            .unwrap();
        (body, d)
    }

    /// An encrypted RELAY_WS body for `hop`.
    fn ws_cell(&mut self, hop: u8, stream: u16, msg: RelayMsg) -> Vec<u8> {
        let mut body = RelayCell::new(StreamId(stream), msg)
            .unwrap()
            .encode_ws()
            .unwrap();
        self.crypt
            .encrypt(&mut body, HopNum::new(hop).unwrap())
            .unwrap();
        body
    }

    /// Decrypt and decode a cell from the circuit.
    fn open(&mut self, msg: ChanMsg) -> Got {
        let mut body = match msg {
            ChanMsg::Relay(r) => r.into_body().to_vec(),
            ChanMsg::RelayWs(w) => w.into_body(),
            other => panic!("not a relay cell: {other:?}"),
        };
        let (hop, digest) = self.crypt.decrypt(&mut body).unwrap();
        let cell = RelayCell::decode(&body, Dialect::Seed).unwrap();
        let hop = hop.get();
        let sendme = if cell.cmd() == RelayCmd::DATA {
            self.recv[hop as usize - 1]
                .on_data_received(&digest)
                .unwrap()
        } else {
            None
        };
        Got { hop, cell, sendme }
    }
}

fn drain(circ: &mut OrCircuit) -> Vec<ChanMsg> {
    std::iter::from_fn(|| circ.poll_backward()).collect()
}

/// Decode every queued cell at the client.
fn replies(circ: &mut OrCircuit, client: &mut Client) -> Vec<Got> {
    drain(circ).into_iter().map(|m| client.open(m)).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Fast,
    FastWs,
    Ntor,
    NtorV3,
    TapCreate,
    TapCreate2,
}

/// The client's create cell for `how`, and how to finish its handshake.
#[allow(clippy::type_complexity)]
fn create_msg(
    rng: &mut StdRng,
    keys: &OnionKeys,
    how: How,
) -> (ChanMsg, Box<dyn FnOnce(&ChanMsg) -> HopKeys>) {
    match how {
        How::Fast => {
            let (st, x) = fast::client1(rng);
            let finish = move |reply: &ChanMsg| {
                let ChanMsg::CreatedFast(c) = reply else {
                    panic!("{reply:?}")
                };
                fast::client2(st, &[&c.y()[..], &c.kh()[..]].concat()).unwrap()
            };
            (ChanMsg::CreateFast(CreateFast::new(x)), Box::new(finish))
        }
        How::FastWs => {
            let (st, enc) = fast_ws::client1(rng, &keys.tap_public()).unwrap();
            let finish = move |reply: &ChanMsg| {
                let ChanMsg::CreatedFastWs(c) = reply else {
                    panic!("{reply:?}")
                };
                fast_ws::client2(st, &[&c.enc_y()[..], &c.kh()[..]].concat()).unwrap()
            };
            (
                ChanMsg::CreateFastWs(CreateFastWs::new(enc)),
                Box::new(finish),
            )
        }
        How::Ntor => {
            let (st, skin) = ntor::client1(rng, keys.ntor_public().unwrap());
            let finish = move |reply: &ChanMsg| {
                let ChanMsg::Created2(c) = reply else {
                    panic!("{reply:?}")
                };
                ntor::client2(st, c.hdata()).unwrap()
            };
            let msg = Create2::new(htype::NTOR, skin.to_vec()).unwrap();
            (ChanMsg::Create2(msg), Box::new(finish))
        }
        How::NtorV3 => {
            // Ask for congestion control: the relay must not negotiate it.
            let cm = ntor_v3::encode_extensions(&[NtorV3Extension::CcRequest]).unwrap();
            let (st, skin) = ntor_v3::client1(
                rng,
                keys.ntor_v3_public().unwrap(),
                &cm,
                CIRCUIT_EXTEND_VERIFICATION,
            )
            .unwrap();
            let finish = move |reply: &ChanMsg| {
                let ChanMsg::Created2(c) = reply else {
                    panic!("{reply:?}")
                };
                let (sm, keys) =
                    ntor_v3::client2(st, c.hdata(), CIRCUIT_EXTEND_VERIFICATION).unwrap();
                assert_eq!(ntor_v3::decode_extensions(&sm).unwrap(), vec![]);
                keys
            };
            let msg = Create2::new(htype::NTOR_V3, skin).unwrap();
            (ChanMsg::Create2(msg), Box::new(finish))
        }
        How::TapCreate | How::TapCreate2 => {
            let (st, skin) = tap::client1(rng, &keys.tap_public()).unwrap();
            let finish = move |reply: &ChanMsg| {
                let hdata = match reply {
                    ChanMsg::Created(c) => c.handshake().to_vec(),
                    ChanMsg::Created2(c) => c.hdata().to_vec(),
                    other => panic!("{other:?}"),
                };
                tap::client2(st, &hdata).unwrap()
            };
            let msg = if how == How::TapCreate {
                ChanMsg::Create(Create::new(skin))
            } else {
                ChanMsg::Create2(Create2::new(htype::TAP, skin.to_vec()).unwrap())
            };
            (msg, Box::new(finish))
        }
    }
}

/// Create a circuit at a relay with `keys` the way `how` says.
fn build(
    rng: &mut StdRng,
    keys: &OnionKeys,
    config: &CircuitConfig,
    how: How,
    from_client: bool,
) -> (OrCircuit, Client) {
    let (msg, finish) = create_msg(rng, keys, how);
    let (circ, reply) =
        OrCircuit::accept_create_with(rng, keys, config, &msg, from_client).unwrap();
    let mut client = Client::new();
    client.add_hop(&finish(&reply));
    (circ, client)
}

/// A one-hop circuit (ntor, not from a client) with the default config.
fn setup(seed: u64) -> (StdRng, OnionKeys, OrCircuit, Client) {
    setup_with(seed, &CircuitConfig::default(), How::Ntor, false)
}

fn setup_with(
    seed: u64,
    config: &CircuitConfig,
    how: How,
    from_client: bool,
) -> (StdRng, OnionKeys, OrCircuit, Client) {
    let mut rng = seeded_rng(seed);
    let keys = relay_keys(&mut rng, RSA_A, ED_A);
    let (circ, client) = build(&mut rng, &keys, config, how, from_client);
    (rng, keys, circ, client)
}

fn begin(host: &str, port: u16) -> RelayMsg {
    Begin::new(Address::parse(host).unwrap(), port, BeginFlags::NONE)
        .unwrap()
        .into()
}

fn data(bytes: &[u8]) -> RelayMsg {
    Data::new_ws(bytes.to_vec()).unwrap().into()
}

/// Open stream `id` to example.com:80 and connect it.
fn open_stream(rng: &mut StdRng, circ: &mut OrCircuit, client: &mut Client, id: u16) {
    let mut b = client.cell(rng, 1, id, begin("example.com", 80));
    let ev = circ.handle_forward(rng, &mut b, false).unwrap();
    assert!(matches!(
        ev,
        ForwardAction::Event(CircuitEvent::BeginRequest { stream, port: 80, .. }) if stream == StreamId(id)
    ));
    circ.stream_connected(rng, StreamId(id), None).unwrap();
    let got = replies(circ, client);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].cell.cmd(), RelayCmd::CONNECTED);
}

/// BEGIN -> event -> CONNECTED with an address, decrypted at the client.
fn check_working(rng: &mut StdRng, circ: &mut OrCircuit, client: &mut Client) {
    let mut b = client.cell(rng, 1, 7, begin("www.example.com", 443));
    let ev = circ.handle_forward(rng, &mut b, false).unwrap();
    let ForwardAction::Event(CircuitEvent::BeginRequest {
        stream,
        target,
        port,
        flags,
    }) = ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (stream, target, port, flags),
        (
            StreamId(7),
            Address::Hostname("www.example.com".into()),
            443,
            BeginFlags::NONE
        )
    );
    let ip = IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34));
    circ.stream_connected(rng, StreamId(7), Some((ip, 300)))
        .unwrap();
    let got = replies(circ, client);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].hop, 1);
    assert_eq!(got[0].cell.stream_id(), StreamId(7));
    let RelayMsg::Connected(c) = got[0].cell.msg() else {
        panic!("{:?}", got[0].cell)
    };
    let a = c.addr().unwrap();
    assert_eq!((a.addr, a.ttl), (ip, 300));
    // Data both ways.
    let mut b = client.cell(rng, 1, 7, data(b"GET / HTTP/1.0\r\n\r\n"));
    assert_eq!(
        circ.handle_forward(rng, &mut b, false).unwrap(),
        ForwardAction::Event(CircuitEvent::StreamData {
            stream: StreamId(7),
            data: b"GET / HTTP/1.0\r\n\r\n".to_vec()
        })
    );
    assert_eq!(
        circ.stream_data(rng, StreamId(7), b"HTTP/1.0 200 OK")
            .unwrap(),
        15
    );
    let got = replies(circ, client);
    assert_eq!(got[0].cell.msg(), &data(b"HTTP/1.0 200 OK"));
}

#[test]
fn every_handshake_creates_a_working_circuit() {
    let cases = [
        (How::Fast, HandshakeKind::CreateFast, false),
        (How::FastWs, HandshakeKind::CreateFastWs, true),
        (How::Ntor, HandshakeKind::Ntor, false),
        (How::NtorV3, HandshakeKind::NtorV3, false),
        (How::TapCreate, HandshakeKind::Tap, false),
        (How::TapCreate2, HandshakeKind::Tap, true),
    ];
    for (i, (how, kind, from_client)) in cases.into_iter().enumerate() {
        let (mut rng, _, mut circ, mut client) =
            setup_with(100 + i as u64, &CircuitConfig::default(), how, from_client);
        assert_eq!(circ.handshake_kind(), kind, "{how:?}");
        assert_eq!(circ.is_from_client(), from_client);
        assert_eq!(
            circ.is_first_hop(),
            from_client || matches!(how, How::Fast | How::FastWs)
        );
        assert_eq!(
            circ.dialect(),
            if from_client {
                Dialect::Seed
            } else {
                Dialect::Tor
            }
        );
        check_working(&mut rng, &mut circ, &mut client);
    }
}

#[test]
fn reply_types_match_create_types() {
    let mut rng = seeded_rng(1);
    let keys = relay_keys(&mut rng, RSA_A, ED_A);
    for (how, want) in [
        (How::Fast, ChanCmd::CREATED_FAST),
        (How::FastWs, ChanCmd::CREATED_FAST_WS),
        (How::TapCreate, ChanCmd::CREATED),
        (How::TapCreate2, ChanCmd::CREATED2),
        (How::NtorV3, ChanCmd::CREATED2),
    ] {
        let (msg, _) = create_msg(&mut rng, &keys, how);
        let (_, reply) = OrCircuit::accept_create(&mut rng, &keys, &msg, true).unwrap();
        assert_eq!(reply.cmd(), want, "{how:?}");
    }
}

#[test]
fn previous_onion_keys_still_work() {
    let mut rng = seeded_rng(2);
    let mut keys = relay_keys(&mut rng, RSA_A, ED_A);
    // Clients that know the old keys.
    let (ntor_msg, ntor_finish) = create_msg(&mut rng, &keys, How::Ntor);
    let (v3_msg, v3_finish) = create_msg(&mut rng, &keys, How::NtorV3);
    let (tap_msg, tap_finish) = create_msg(&mut rng, &keys, How::TapCreate2);
    let (_, _, big) = test_keys();
    let (a, _, _) = test_keys();
    assert!(
        keys.rotate(StaticSecret::random_from_rng(&mut rng), big)
            .is_err()
    );
    // Rotating to the same TAP key is fine for the test: the old one stays as previous.
    keys.rotate(StaticSecret::random_from_rng(&mut rng), a)
        .unwrap();
    for (msg, finish) in [
        (ntor_msg, ntor_finish),
        (v3_msg, v3_finish),
        (tap_msg, tap_finish),
    ] {
        let (mut circ, reply) = OrCircuit::accept_create(&mut rng, &keys, &msg, false).unwrap();
        let mut client = Client::new();
        client.add_hop(&finish(&reply));
        check_working(&mut rng, &mut circ, &mut client);
    }
}

#[test]
fn create_refusals() {
    let mut rng = seeded_rng(3);
    let mut keys = relay_keys(&mut rng, RSA_A, ED_A);
    let fast = create_msg(&mut rng, &keys, How::Fast).0;
    let fast_ws = create_msg(&mut rng, &keys, How::FastWs).0;
    let tap1 = create_msg(&mut rng, &keys, How::TapCreate).0;
    let tap2 = create_msg(&mut rng, &keys, How::TapCreate2).0;
    let ntor_msg = create_msg(&mut rng, &keys, How::Ntor).0;

    let err = |rng: &mut StdRng, keys: &OnionKeys, m: &ChanMsg, from_client| {
        OrCircuit::accept_create(rng, keys, m, from_client).unwrap_err()
    };
    // CREATE_FAST_WS only from a client.
    let e = err(&mut rng, &keys, &fast_ws, false);
    assert_eq!(e, CreateError::FastWsNotFromClient);
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);

    keys.policy = CreatePolicy {
        accept_create_fast: false,
        accept_create_fast_ws: false,
        accept_tap: false,
    };
    assert_eq!(
        err(&mut rng, &keys, &fast, true),
        CreateError::Refused(HandshakeKind::CreateFast)
    );
    assert_eq!(
        err(&mut rng, &keys, &fast_ws, true),
        CreateError::Refused(HandshakeKind::CreateFastWs)
    );
    for m in [&tap1, &tap2] {
        let e = err(&mut rng, &keys, m, true);
        assert_eq!(e, CreateError::Refused(HandshakeKind::Tap));
        assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
    }
    // ntor is always accepted.
    assert!(OrCircuit::accept_create(&mut rng, &keys, &ntor_msg, false).is_ok());

    // Unknown handshake type.
    let e = err(
        &mut rng,
        &keys,
        &ChanMsg::Create2(Create2::new(0x0009, vec![0; 84]).unwrap()),
        false,
    );
    assert_eq!(e, CreateError::UnknownHandshakeType(9));
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
    // Not a create message.
    let e = err(
        &mut rng,
        &keys,
        &ChanMsg::Destroy(onion_cell::chancell::Destroy::new(DestroyReason::NONE)),
        false,
    );
    assert_eq!(e, CreateError::NotCreate(ChanCmd::DESTROY));
    assert_eq!(e.destroy_reason(), DestroyReason::INTERNAL);

    // An ntor onion skin for another relay's key.
    let other = relay_keys(&mut rng, RSA_B, ED_B);
    let foreign = create_msg(&mut rng, &other, How::Ntor).0;
    let e = err(&mut rng, &keys, &foreign, false);
    assert!(matches!(
        e,
        CreateError::Handshake(HandshakeError::Decrypt(_))
    ));
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
    // Truncated ntor-v3 skin.
    let e = err(
        &mut rng,
        &keys,
        &ChanMsg::Create2(Create2::new(htype::NTOR_V3, vec![0; 100]).unwrap()),
        false,
    );
    assert!(matches!(
        e,
        CreateError::Handshake(HandshakeError::Malformed(_))
    ));
}

#[test]
fn ntor_v3_refuses_a_client_message_that_is_not_an_extension_list() {
    let mut rng = seeded_rng(4);
    let keys = relay_keys(&mut rng, RSA_A, ED_A);
    let (_, skin) = ntor_v3::client1(
        &mut rng,
        keys.ntor_v3_public().unwrap(),
        &[3, 1],
        CIRCUIT_EXTEND_VERIFICATION,
    )
    .unwrap();
    let msg = ChanMsg::Create2(Create2::new(htype::NTOR_V3, skin).unwrap());
    let e = OrCircuit::accept_create(&mut rng, &keys, &msg, false).unwrap_err();
    assert!(matches!(
        e,
        CreateError::Handshake(HandshakeError::Malformed(_))
    ));
    // A different verification string fails the MAC.
    let (_, skin) =
        ntor_v3::client1(&mut rng, keys.ntor_v3_public().unwrap(), &[0], b"other").unwrap();
    let msg = ChanMsg::Create2(Create2::new(htype::NTOR_V3, skin).unwrap());
    let e = OrCircuit::accept_create(&mut rng, &keys, &msg, false).unwrap_err();
    assert_eq!(e, CreateError::Handshake(HandshakeError::AuthFailed));
}

/// 2500 DATA cells each way: SENDME v1 (with digests) flow both ways, stream SENDMEs wait
/// for flushing, and both sides' windows stay within bounds.
#[test]
fn bulk_data_both_ways_with_authenticated_sendmes() {
    const CELLS: usize = 2500;
    let config = CircuitConfig {
        sendme_accept_min_version: 1,
        ..CircuitConfig::default()
    };
    let (mut rng, _, mut circ, mut client) = setup_with(5, &config, How::Ntor, false);
    open_stream(&mut rng, &mut circ, &mut client, 1);
    let payload: Vec<u8> = (0..CELLS * 498).map(|i| (i * 7 + i / 498) as u8).collect();

    // Forward: the client uploads, respecting its windows; the driver flushes with a lag.
    let mut client_stream = StreamWindows::new();
    let mut received = Vec::new();
    let mut unflushed = 0usize;
    let (mut circ_sendmes, mut stream_sendmes) = (0, 0);
    let mut chunks = payload.chunks(498);
    let mut next = chunks.next();
    while let Some(chunk) = next {
        if client.send[0].can_send() && client_stream.package.can_send() {
            client_stream.package.on_data_sent().unwrap();
            let mut b = client.cell(&mut rng, 1, 1, data(chunk));
            match circ.handle_forward(&mut rng, &mut b, false).unwrap() {
                ForwardAction::Event(CircuitEvent::StreamData { stream, data }) => {
                    assert_eq!(stream, StreamId(1));
                    unflushed += data.len();
                    received.extend_from_slice(&data);
                }
                other => panic!("{other:?}"),
            }
            next = chunks.next();
        } else {
            // Blocked: the exit connection drains.
            assert!(unflushed > 0, "deadlock");
            circ.stream_flushed(&mut rng, StreamId(1), unflushed)
                .unwrap();
            unflushed = 0;
        }
        if received.len() % (498 * 7) == 0 {
            circ.stream_flushed(&mut rng, StreamId(1), unflushed)
                .unwrap();
            unflushed = 0;
        }
        for got in replies(&mut circ, &mut client) {
            let RelayMsg::Sendme(s) = got.cell.msg() else {
                panic!("{got:?}")
            };
            if got.cell.stream_id().is_zero() {
                let Sendme::V1 { digest } = s else {
                    panic!("{s:?}")
                };
                // Checked against the digest the client recorded.
                client.send[0].on_sendme(1, digest).unwrap();
                circ_sendmes += 1;
            } else {
                assert_eq!(s, &Sendme::V0);
                client_stream.package.on_sendme().unwrap();
                stream_sendmes += 1;
            }
        }
        assert!(circ.deliver_window() > 0);
    }
    assert_eq!(received, payload);
    assert_eq!(circ_sendmes, CELLS / 100);
    // Whatever stream SENDMEs are left wait for the final flush.
    circ.stream_flushed(&mut rng, StreamId(1), unflushed)
        .unwrap();
    for got in replies(&mut circ, &mut client) {
        assert_eq!(got.cell.msg(), &RelayMsg::Sendme(Sendme::V0));
        client_stream.package.on_sendme().unwrap();
        stream_sendmes += 1;
    }
    assert_eq!(stream_sendmes, CELLS / 50);
    assert_eq!(client_stream.package.window(), 500);

    // Backward: the exit downloads as fast as the windows and the queue allow.
    let mut client_stream = StreamWindows::new();
    let mut off = 0;
    let mut received = Vec::new();
    let (mut circ_sendmes, mut stream_sendmes, mut blocked) = (0, 0, 0);
    while off < payload.len() {
        let n = circ
            .stream_data(&mut rng, StreamId(1), &payload[off..])
            .unwrap();
        off += n;
        if n == 0 {
            blocked += 1;
            assert!(blocked < 100, "deadlock");
        }
        for got in replies(&mut circ, &mut client) {
            assert_eq!(got.hop, 1);
            assert_eq!(got.cell.stream_id(), StreamId(1));
            let RelayMsg::Data(d) = got.cell.msg() else {
                panic!("{got:?}")
            };
            received.extend_from_slice(d.as_bytes());
            client_stream.deliver.on_data_received().unwrap();
            if let Some(tag) = got.sendme {
                let mut b = client.cell(
                    &mut rng,
                    1,
                    0,
                    Sendme::V1 {
                        digest: *tag.as_bytes(),
                    }
                    .into(),
                );
                assert_eq!(
                    circ.handle_forward(&mut rng, &mut b, false).unwrap(),
                    ForwardAction::Event(CircuitEvent::PackageWindowOpened { stream: None })
                );
                circ_sendmes += 1;
            }
            if client_stream.deliver.sendme_due() {
                client_stream.deliver.on_sendme_sent().unwrap();
                let mut b = client.cell(&mut rng, 1, 1, Sendme::V0.into());
                assert_eq!(
                    circ.handle_forward(&mut rng, &mut b, false).unwrap(),
                    ForwardAction::Event(CircuitEvent::PackageWindowOpened {
                        stream: Some(StreamId(1))
                    })
                );
                stream_sendmes += 1;
            }
        }
    }
    assert_eq!(received, payload);
    assert_eq!(circ_sendmes, CELLS / 100);
    assert_eq!(stream_sendmes, CELLS / 50);
    assert_eq!(circ.package_window(), 1000);
}

#[test]
fn package_windows_bound_what_the_exit_sends() {
    let config = CircuitConfig {
        max_queued_cells: 2000,
        ..CircuitConfig::default()
    };
    let (mut rng, _, mut circ, mut client) = setup_with(6, &config, How::Fast, false);
    for id in 1..=3 {
        open_stream(&mut rng, &mut circ, &mut client, id);
    }
    let big = vec![0x42u8; 600 * 498];
    // Stream window: 500 cells per stream; circuit window: 1000 cells in all.
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(1), &big).unwrap(),
        500 * 498
    );
    assert_eq!(circ.stream_package_window(StreamId(1)), Some(0));
    assert_eq!(circ.stream_data(&mut rng, StreamId(1), &big).unwrap(), 0);
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(2), &big).unwrap(),
        500 * 498
    );
    assert_eq!(circ.package_window(), 0);
    assert_eq!(circ.stream_data(&mut rng, StreamId(3), &big).unwrap(), 0);
    assert_eq!(circ.queued_cells(), 1000);
    // A partial last cell.
    let got = replies(&mut circ, &mut client);
    assert_eq!(got.len(), 1000);
    // SENDMEs reopen the windows: every hundredth cell's digest, in order.
    let tags: Vec<_> = got.iter().filter_map(|g| g.sendme).collect();
    assert_eq!(tags.len(), 10);
    let mut b = client.cell(
        &mut rng,
        1,
        0,
        Sendme::V1 {
            digest: *tags[0].as_bytes(),
        }
        .into(),
    );
    circ.handle_forward(&mut rng, &mut b, false).unwrap();
    assert_eq!(circ.package_window(), 100);
    let mut b = client.cell(&mut rng, 1, 3, Sendme::V0.into());
    // Stream 3 never sent anything: its window is full, the SENDME overflows it.
    let e = circ.handle_forward(&mut rng, &mut b, false).unwrap_err();
    assert_eq!(
        e,
        CircuitError::StreamFlow {
            stream: StreamId(3),
            error: FlowError::WindowOverflow {
                would_be: 550,
                start: 500
            }
        }
    );
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
    // Dead circuits accept nothing.
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(3), b"x"),
        Err(SendError::Closed(DestroyReason::PROTOCOL))
    );
    assert_eq!(circ.closed_reason(), Some(DestroyReason::PROTOCOL));
}

#[test]
fn data_is_split_into_cells_of_498_bytes() {
    let (mut rng, _, mut circ, mut client) = setup(7);
    open_stream(&mut rng, &mut circ, &mut client, 1);
    let bytes: Vec<u8> = (0..1200u32).map(|i| i as u8).collect();
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(1), &bytes).unwrap(),
        1200
    );
    let got = replies(&mut circ, &mut client);
    let lens: Vec<usize> = got
        .iter()
        .map(|g| match g.cell.msg() {
            RelayMsg::Data(d) => d.as_bytes().len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lens, [498, 498, 204]);
    assert_eq!(circ.stream_data(&mut rng, StreamId(1), &[]).unwrap(), 0);
    // Padding: 4 zero bytes after the data, then random bytes (tor-spec §6.1).
    circ.stream_data(&mut rng, StreamId(1), b"abc").unwrap();
    let ChanMsg::Relay(r) = circ.poll_backward().unwrap() else {
        panic!()
    };
    let mut body = r.into_body();
    client.crypt.decrypt(&mut body[..]).unwrap();
    assert_eq!(&body[14..18], &[0, 0, 0, 0]);
    assert!(body[18..].iter().any(|&b| b != 0));
}

#[test]
fn queue_is_bounded() {
    let config = CircuitConfig {
        max_queued_cells: 16,
        ..CircuitConfig::default()
    };
    let (mut rng, _, mut circ, mut client) = setup_with(8, &config, How::Fast, false);
    open_stream(&mut rng, &mut circ, &mut client, 1);
    let big = vec![1u8; 100 * 498];
    // Bulk data leaves the control reserve free.
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(1), &big).unwrap(),
        (16 - CONTROL_RESERVE) * 498
    );
    assert_eq!(circ.backward_room(), 0);
    assert!(circ.can_accept_forward());
    assert_eq!(circ.stream_data(&mut rng, StreamId(1), &big).unwrap(), 0);
    // Control cells still fit: a DATA for an unknown stream is answered with END.
    for i in 0..CONTROL_RESERVE as u16 {
        let mut b = client.cell(&mut rng, 1, 50 + i, data(b"x"));
        assert_eq!(
            circ.handle_forward(&mut rng, &mut b, false).unwrap(),
            ForwardAction::Consumed
        );
    }
    assert!(!circ.can_accept_forward());
    assert_eq!(
        circ.stream_end(&mut rng, StreamId(1), EndReason::DONE),
        Err(SendError::QueueFull)
    );
    // A client that makes us answer without reading fills the queue: RESOURCELIMIT.
    let mut b = client.cell(&mut rng, 1, 60, data(b"x"));
    let e = circ.handle_forward(&mut rng, &mut b, false).unwrap_err();
    assert_eq!(e, CircuitError::QueueFull);
    assert_eq!(e.destroy_reason(), DestroyReason::RESOURCELIMIT);
    // Nothing may follow the DESTROY: the queue is dropped.
    assert!(drain(&mut circ).is_empty());
    assert_eq!(circ.closed_reason(), Some(DestroyReason::RESOURCELIMIT));
}

#[test]
fn client_ignoring_the_stream_window_is_closed() {
    let (mut rng, _, mut circ, mut client) = setup(9);
    open_stream(&mut rng, &mut circ, &mut client, 1);
    // The exit never flushes: no stream SENDME, 500 cells accepted, the 501st kills.
    for i in 0..500 {
        let mut b = client.cell(&mut rng, 1, 1, data(&[7; 498]));
        assert!(
            matches!(
                circ.handle_forward(&mut rng, &mut b, false).unwrap(),
                ForwardAction::Event(CircuitEvent::StreamData { .. })
            ),
            "cell {i}"
        );
        for got in replies(&mut circ, &mut client) {
            assert!(got.cell.stream_id().is_zero(), "no stream SENDME: {got:?}");
            let RelayMsg::Sendme(Sendme::V1 { digest }) = got.cell.msg() else {
                panic!("{got:?}")
            };
            client.send[0].on_sendme(1, digest).unwrap();
        }
    }
    let mut b = client.cell(&mut rng, 1, 1, data(&[7; 498]));
    let e = circ.handle_forward(&mut rng, &mut b, false).unwrap_err();
    assert_eq!(
        e,
        CircuitError::StreamFlow {
            stream: StreamId(1),
            error: FlowError::DeliverWindowExceeded
        }
    );
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
    let mut b = client.cell(&mut rng, 1, 1, data(b"more"));
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false),
        Err(CircuitError::Closed(DestroyReason::PROTOCOL))
    );
}

#[test]
fn bad_circuit_sendmes_close_the_circuit() {
    // Unexpected SENDME: nothing sent yet.
    let (mut rng, _, mut circ, mut client) = setup(10);
    let mut b = client.cell(&mut rng, 1, 0, Sendme::V1 { digest: [0; 20] }.into());
    let e = circ.handle_forward(&mut rng, &mut b, false).unwrap_err();
    assert_eq!(e, CircuitError::Flow(FlowError::UnexpectedSendme));
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);

    // Wrong digest.
    let (mut rng, _, mut circ, mut client) = setup(11);
    open_stream(&mut rng, &mut circ, &mut client, 1);
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(1), &[1; 60 * 498])
            .unwrap(),
        60 * 498
    );
    drain(&mut circ);
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(1), &[1; 60 * 498])
            .unwrap(),
        60 * 498
    );
    drain(&mut circ);
    let mut b = client.cell(&mut rng, 1, 0, Sendme::V1 { digest: [9; 20] }.into());
    let e = circ.handle_forward(&mut rng, &mut b, false).unwrap_err();
    assert_eq!(e, CircuitError::Flow(FlowError::SendmeDigestMismatch));
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);

    // v0 refused when sendme_accept_min_version is 1, accepted by default.
    for (min, ok) in [(1u8, false), (0, true)] {
        let config = CircuitConfig {
            sendme_accept_min_version: min,
            ..CircuitConfig::default()
        };
        let (mut rng, _, mut circ, mut client) = setup_with(12, &config, How::Ntor, false);
        open_stream(&mut rng, &mut circ, &mut client, 1);
        circ.stream_data(&mut rng, StreamId(1), &[1; 60 * 498])
            .unwrap();
        drain(&mut circ);
        circ.stream_data(&mut rng, StreamId(1), &[1; 60 * 498])
            .unwrap();
        drain(&mut circ);
        let mut b = client.cell(&mut rng, 1, 0, Sendme::V0.into());
        let r = circ.handle_forward(&mut rng, &mut b, false);
        if ok {
            assert_eq!(
                r,
                Ok(ForwardAction::Event(CircuitEvent::PackageWindowOpened {
                    stream: None
                }))
            );
        } else {
            assert_eq!(
                r,
                Err(CircuitError::Flow(FlowError::SendmeVersionRejected {
                    version: 0,
                    min: 1
                }))
            );
        }
    }
}

fn extend2_to_b(rng: &mut StdRng, keys_b: &OnionKeys) -> (Extend2, ntor::NtorClientState) {
    let (st, skin) = ntor::client1(rng, keys_b.ntor_public().unwrap());
    let specs = vec![
        LinkSpec::Ipv4 {
            addr: Ipv4Addr::new(10, 0, 0, 2),
            port: 9001,
        },
        LinkSpec::RsaId(RSA_B),
        LinkSpec::Ed25519Id(ED_B),
    ];
    (Extend2::new(specs, htype::NTOR, skin.to_vec()).unwrap(), st)
}

#[test]
fn extend_outside_relay_early_is_a_protocol_violation() {
    let (mut rng, _, mut circ, mut client) = setup(13);
    let keys_b = relay_keys(&mut rng, RSA_B, ED_B);
    let (ext, _) = extend2_to_b(&mut rng, &keys_b);
    let mut b = client.cell(&mut rng, 1, 0, ext.into());
    let e = circ.handle_forward(&mut rng, &mut b, false).unwrap_err();
    assert_eq!(e, CircuitError::ExtendNotEarly(RelayCmd::EXTEND2));
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
}

#[test]
fn ninth_relay_early_is_a_protocol_violation() {
    let (mut rng, _, mut circ, mut client) = setup(14);
    for i in 0..8u8 {
        let mut b = client.cell(&mut rng, 1, 0, DropMsg::new(vec![i]).unwrap().into());
        assert_eq!(
            circ.handle_forward(&mut rng, &mut b, true).unwrap(),
            ForwardAction::Consumed
        );
        assert_eq!(circ.relay_early_remaining(), 7 - i);
    }
    // Ordinary RELAY cells are still fine.
    let mut b = client.cell(&mut rng, 1, 0, DropMsg::new(vec![]).unwrap().into());
    circ.handle_forward(&mut rng, &mut b, false).unwrap();
    let mut b = client.cell(&mut rng, 1, 0, DropMsg::new(vec![]).unwrap().into());
    let e = circ.handle_forward(&mut rng, &mut b, true).unwrap_err();
    assert_eq!(e, CircuitError::TooManyRelayEarly { max: 8 });
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
}

#[test]
fn unrecognized_cell_at_the_last_hop_is_a_protocol_violation() {
    let (mut rng, _, mut circ, mut client) = setup(15);
    let mut b = client.cell(&mut rng, 1, 1, begin("example.com", 80));
    b[100] ^= 1; // corrupt: the digest no longer matches
    let e = circ.handle_forward(&mut rng, &mut b, false).unwrap_err();
    assert_eq!(e, CircuitError::Unrecognized);
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);

    // A cell for a second hop that does not exist.
    let (mut rng, _, mut circ, mut client) = setup(16);
    client.add_hop(&HopKeys::from_bytes(&[5; HopKeys::LEN]));
    let mut b = client.cell(&mut rng, 2, 0, DropMsg::new(vec![]).unwrap().into());
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, true),
        Err(CircuitError::Unrecognized)
    );
}

#[test]
fn malformed_circuit_level_cell_is_a_protocol_violation() {
    let (mut rng, _, mut circ, mut client) = setup(17);
    // A recognized cell whose length field exceeds the body.
    let mut body = RelayCell::new(StreamId::ZERO, DropMsg::new(vec![]).unwrap().into())
        .unwrap()
        .encode(|_| {})
        .unwrap();
    body[9..11].copy_from_slice(&499u16.to_be_bytes());
    client
        .crypt
        .encrypt(&mut body, HopNum::new(1).unwrap())
        .unwrap();
    let e = circ.handle_forward(&mut rng, &mut body, false).unwrap_err();
    assert!(matches!(e, CircuitError::Malformed(_)), "{e:?}");
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
}

#[test]
fn stream_problems_cost_only_the_stream() {
    let (mut rng, _, mut circ, mut client) = setup(18);
    open_stream(&mut rng, &mut circ, &mut client, 1);

    // DATA and SENDME for a stream that does not exist: END, circuit alive.
    for msg in [data(b"hello"), Sendme::V0.into()] {
        let mut b = client.cell(&mut rng, 1, 99, msg);
        assert_eq!(
            circ.handle_forward(&mut rng, &mut b, false).unwrap(),
            ForwardAction::Consumed
        );
        let got = replies(&mut circ, &mut client);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].cell.stream_id(), StreamId(99));
        assert_eq!(
            got[0].cell.msg(),
            &RelayMsg::End(End::new(EndReason::TORPROTOCOL))
        );
        // The id is now half-closed: more cells on it are absorbed silently.
        let mut b = client.cell(&mut rng, 1, 99, data(b"again"));
        assert_eq!(
            circ.handle_forward(&mut rng, &mut b, false).unwrap(),
            ForwardAction::Consumed
        );
        assert!(drain(&mut circ).is_empty());
        // The client's END for it crosses ours.
        let mut b = client.cell(&mut rng, 1, 99, End::new(EndReason::MISC).into());
        circ.handle_forward(&mut rng, &mut b, false).unwrap();
    }

    // A malformed BEGIN: END TORPROTOCOL on its stream.
    let mut body = RelayCell::new(StreamId(5), begin("a.b", 80))
        .unwrap()
        .encode(|_| {})
        .unwrap();
    let nul = 11 + "a.b:80".len();
    assert_eq!(body[nul], 0);
    body[nul] = b'x'; // no NUL terminator any more
    client
        .crypt
        .encrypt(&mut body, HopNum::new(1).unwrap())
        .unwrap();
    assert_eq!(
        circ.handle_forward(&mut rng, &mut body, false).unwrap(),
        ForwardAction::Consumed
    );
    let got = replies(&mut circ, &mut client);
    assert_eq!(got[0].cell.stream_id(), StreamId(5));
    assert_eq!(
        got[0].cell.msg(),
        &RelayMsg::End(End::new(EndReason::TORPROTOCOL))
    );

    // A BEGIN for a stream already open is dropped.
    let mut b = client.cell(&mut rng, 1, 1, begin("example.org", 80));
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Consumed
    );
    // Two absorbed DATA cells on half-closed streams, and this BEGIN.
    assert_eq!(circ.ignored_cells(), 3);

    // CONNECTED from the client on a live stream is a violation; elsewhere ignored.
    let mut b = client.cell(
        &mut rng,
        1,
        77,
        onion_cell::relaycell::Connected::new_empty().into(),
    );
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Consumed
    );
    assert_eq!(circ.ignored_cells(), 4);

    // The circuit still works.
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(1), b"still here")
            .unwrap(),
        10
    );
    assert_eq!(
        replies(&mut circ, &mut client)[0].cell.msg(),
        &data(b"still here")
    );

    let mut b = client.cell(
        &mut rng,
        1,
        1,
        onion_cell::relaycell::Connected::new_empty().into(),
    );
    let e = circ.handle_forward(&mut rng, &mut b, false).unwrap_err();
    assert_eq!(
        e,
        CircuitError::UnexpectedCommand {
            cmd: RelayCmd::CONNECTED,
            stream: StreamId(1)
        }
    );
}

#[test]
fn stream_lifecycle() {
    let (mut rng, _, mut circ, mut client) = setup(19);
    // DATA before CONNECTED (optimistic data) is delivered; no stream SENDME before it.
    let mut b = client.cell(&mut rng, 1, 3, begin("10.0.0.1", 22));
    let ev = circ.handle_forward(&mut rng, &mut b, false).unwrap();
    assert!(matches!(
        ev,
        ForwardAction::Event(CircuitEvent::BeginRequest {
            target: Address::Ipv4(_),
            ..
        })
    ));
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(3), b"x"),
        Err(SendError::StreamState {
            stream: StreamId(3),
            why: "not connected"
        })
    );
    for _ in 0..60 {
        let mut b = client.cell(&mut rng, 1, 3, data(b"early"));
        circ.handle_forward(&mut rng, &mut b, false).unwrap();
        circ.stream_flushed(&mut rng, StreamId(3), 5).unwrap();
    }
    assert!(drain(&mut circ).is_empty());
    // CONNECTED, then the stream SENDME that was due.
    circ.stream_connected(&mut rng, StreamId(3), None).unwrap();
    let got = replies(&mut circ, &mut client);
    let cmds: Vec<_> = got.iter().map(|g| g.cell.cmd()).collect();
    assert_eq!(cmds, [RelayCmd::CONNECTED, RelayCmd::SENDME]);
    assert_eq!(
        circ.stream_connected(&mut rng, StreamId(3), None),
        Err(SendError::StreamState {
            stream: StreamId(3),
            why: "already connected"
        })
    );
    // The client ends it.
    let mut b = client.cell(&mut rng, 1, 3, End::new(EndReason::MISC).into());
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Event(CircuitEvent::StreamEnd {
            stream: StreamId(3),
            reason: EndReason::MISC
        })
    );
    assert_eq!(circ.stream_count(), 0);
    assert_eq!(
        circ.stream_data(&mut rng, StreamId(3), b"x"),
        Err(SendError::UnknownStream(StreamId(3)))
    );

    // BEGIN_DIR gets an empty CONNECTED even if an address is given.
    let mut b = client.cell(&mut rng, 1, 4, BeginDir.into());
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Event(CircuitEvent::BeginDirRequest {
            stream: StreamId(4)
        })
    );
    circ.stream_connected(
        &mut rng,
        StreamId(4),
        Some((IpAddr::V4(Ipv4Addr::LOCALHOST), 1)),
    )
    .unwrap();
    let got = replies(&mut circ, &mut client);
    assert_eq!(
        got[0].cell.msg(),
        &RelayMsg::Connected(onion_cell::relaycell::Connected::new_empty())
    );
    // We end it (exit policy with address); late DATA from the client is absorbed.
    circ.stream_end_with(
        &mut rng,
        StreamId(4),
        End::exit_policy(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), 60),
    )
    .unwrap();
    let got = replies(&mut circ, &mut client);
    assert_eq!(
        got[0].cell.msg(),
        &RelayMsg::End(End::exit_policy(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), 60))
    );
    let mut b = client.cell(&mut rng, 1, 4, data(b"late"));
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Consumed
    );
    assert!(drain(&mut circ).is_empty());

    // RESOLVE -> RESOLVED.
    let mut b = client.cell(
        &mut rng,
        1,
        5,
        Resolve::new("example.com".into()).unwrap().into(),
    );
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Event(CircuitEvent::ResolveRequest {
            stream: StreamId(5),
            query: "example.com".into()
        })
    );
    assert!(matches!(
        circ.stream_connected(&mut rng, StreamId(5), None),
        Err(SendError::StreamState { .. })
    ));
    let answer = Resolved::new(vec![ResolvedAnswer {
        value: ResolvedValue::Ipv4(Ipv4Addr::new(93, 184, 216, 34)),
        ttl: 60,
    }])
    .unwrap();
    circ.resolved(&mut rng, StreamId(5), answer.clone())
        .unwrap();
    let got = replies(&mut circ, &mut client);
    assert_eq!(got[0].cell.stream_id(), StreamId(5));
    assert_eq!(got[0].cell.msg(), &RelayMsg::Resolved(answer.clone()));
    assert_eq!(circ.stream_count(), 0);
    open_stream(&mut rng, &mut circ, &mut client, 6);
    assert!(matches!(
        circ.resolved(&mut rng, StreamId(6), answer),
        Err(SendError::StreamState { .. })
    ));
    // CONNECTED to 0.0.0.0 does not encode; nothing changes.
    let mut b = client.cell(&mut rng, 1, 8, begin("example.com", 80));
    circ.handle_forward(&mut rng, &mut b, false).unwrap();
    assert!(matches!(
        circ.stream_connected(
            &mut rng,
            StreamId(8),
            Some((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1))
        ),
        Err(SendError::Encode(_))
    ));
    circ.stream_connected(&mut rng, StreamId(8), None).unwrap();
}

#[test]
fn max_streams_limit() {
    let config = CircuitConfig {
        max_streams: 2,
        ..CircuitConfig::default()
    };
    let (mut rng, _, mut circ, mut client) = setup_with(20, &config, How::Ntor, false);
    open_stream(&mut rng, &mut circ, &mut client, 1);
    open_stream(&mut rng, &mut circ, &mut client, 2);
    let mut b = client.cell(&mut rng, 1, 3, begin("example.com", 80));
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Consumed
    );
    let got = replies(&mut circ, &mut client);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].cell.stream_id(), StreamId(3));
    assert_eq!(
        got[0].cell.msg(),
        &RelayMsg::End(End::new(EndReason::RESOURCELIMIT))
    );
    // Its optimistic data is absorbed, not answered again.
    let mut b = client.cell(&mut rng, 1, 3, data(b"optimistic"));
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Consumed
    );
    assert!(drain(&mut circ).is_empty());
    assert_eq!(circ.stream_count(), 2);
    // Once a stream ends there is room again.
    circ.stream_end(&mut rng, StreamId(1), EndReason::DONE)
        .unwrap();
    drain(&mut circ);
    let mut b = client.cell(&mut rng, 1, 3, begin("example.com", 80));
    assert!(matches!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Event(CircuitEvent::BeginRequest { .. })
    ));
}

#[test]
fn unknown_and_misdirected_commands_are_dropped_and_counted() {
    let (mut rng, _, mut circ, mut client) = setup(21);
    for msg in [
        RelayMsg::Unrecognized(Unrecognized::new(RelayCmd(99), vec![1, 2, 3]).unwrap()),
        RelayMsg::Unrecognized(Unrecognized::new(RelayCmd(43), vec![]).unwrap()),
        onion_cell::relaycell::Truncated::new(DestroyReason::NONE).into(),
        onion_cell::relaycell::Extended2::new(vec![1, 2])
            .unwrap()
            .into(),
    ] {
        let mut b = client.cell(&mut rng, 1, 0, msg);
        assert_eq!(
            circ.handle_forward(&mut rng, &mut b, false).unwrap(),
            ForwardAction::Consumed
        );
    }
    assert_eq!(circ.ignored_cells(), 4);
    let mut b = client.cell(&mut rng, 1, 0, DropMsg::new(vec![0; 100]).unwrap().into());
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Consumed
    );
    assert_eq!(circ.ignored_cells(), 4);
    assert!(drain(&mut circ).is_empty());
    check_working(&mut rng, &mut circ, &mut client);
}

fn ws_msg() -> WsStream {
    WsStream::from_op(
        &OpWsAddr {
            remote_address: "example.com".into(),
            remote_port: 80,
        },
        b"HTTP/1.1 200 OK".to_vec(),
    )
    .unwrap()
}

#[test]
fn seed_commands_on_client_circuits() {
    let (mut rng, _, mut circ, mut client) =
        setup_with(22, &CircuitConfig::default(), How::FastWs, true);
    // ASSOCIATE in a RELAY cell.
    let assoc = Associate::new("abcdef.ianonym.com".into()).unwrap();
    let mut b = client.cell(&mut rng, 1, 0, assoc.clone().into());
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Event(CircuitEvent::SeedAssociate {
            stream: StreamId::ZERO,
            msg: assoc.clone()
        })
    );
    // RELAY_WS and RELAY_INFO in RELAY_WS cells.
    let mut body = client.ws_cell(1, 3, ws_msg().into());
    assert_eq!(
        circ.handle_forward_ws(&mut rng, &mut body).unwrap(),
        ForwardAction::Event(CircuitEvent::SeedWs {
            stream: StreamId(3),
            msg: ws_msg()
        })
    );
    let info = Info::from_request(&InfoRequest::DhSecret {
        id: [4; 16],
        y: vec![5; 128],
    })
    .unwrap();
    let mut body = client.ws_cell(1, 0, info.clone().into());
    assert_eq!(
        circ.handle_forward_ws(&mut rng, &mut body).unwrap(),
        ForwardAction::Event(CircuitEvent::SeedInfo {
            stream: StreamId::ZERO,
            msg: info
        })
    );
    // A big DATA cell in RELAY_WS counts as one cell.
    open_stream(&mut rng, &mut circ, &mut client, 9);
    let mut body = client.ws_cell(1, 9, data(&[3; 5000]));
    assert!(matches!(
        circ.handle_forward_ws(&mut rng, &mut body).unwrap(),
        ForwardAction::Event(CircuitEvent::StreamData { data, .. }) if data.len() == 5000
    ));
    assert_eq!(circ.deliver_window(), 999);
    // A Tor PADDING_NEGOTIATE (41) that does not parse as the seed's RELAY_WS is dropped.
    let pad = Unrecognized::new(RelayCmd::WS, vec![0]).unwrap();
    let mut b = client.cell(&mut rng, 1, 0, pad.into());
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Consumed
    );
    assert_eq!(circ.ignored_cells(), 1);

    // Replies: ASSOCIATE in a RELAY cell, RELAY_WS in a RELAY_WS cell.
    circ.send_seed(&mut rng, StreamId::ZERO, assoc.clone().into())
        .unwrap();
    let or_ws = WsStream::from_or(
        &OrWsAddr {
            remote_address: "example.com".into(),
            remote_port: 80,
            conn_port: 5555,
            request_id: "r1".into(),
        },
        b"GET /".to_vec(),
    )
    .unwrap();
    circ.send_seed(&mut rng, StreamId(3), or_ws.clone().into())
        .unwrap();
    let msgs = drain(&mut circ);
    assert_eq!(msgs[0].cmd(), ChanCmd::RELAY);
    assert_eq!(msgs[1].cmd(), ChanCmd::RELAY_WS);
    let got: Vec<_> = msgs.into_iter().map(|m| client.open(m)).collect();
    assert_eq!(got[0].cell.msg(), &RelayMsg::Associate(assoc));
    assert_eq!(got[1].cell.msg(), &RelayMsg::WsStream(or_ws));
    assert_eq!(got[1].cell.stream_id(), StreamId(3));
    assert_eq!(
        circ.send_seed(&mut rng, StreamId(1), data(b"x")),
        Err(SendError::NotSeedMessage(RelayCmd::DATA))
    );
    // The stream still works after RELAY_WS cells moved the keystreams.
    check_working(&mut rng, &mut circ, &mut client);
}

#[test]
fn seed_commands_on_other_circuits() {
    let (mut rng, _, mut circ, mut client) = setup(23);
    // ASSOCIATE (40) is Tor's INTRODUCE_ACK here: dropped, counted, never an event.
    let assoc = Associate::new("abcdef.ianonym.com".into()).unwrap();
    let mut b = client.cell(&mut rng, 1, 0, assoc.clone().into());
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Consumed
    );
    let mut b = client.cell(&mut rng, 1, 2, ws_msg().into());
    assert_eq!(
        circ.handle_forward(&mut rng, &mut b, false).unwrap(),
        ForwardAction::Consumed
    );
    assert_eq!(circ.ignored_cells(), 2);
    assert_eq!(
        circ.send_seed(&mut rng, StreamId::ZERO, assoc.into()),
        Err(SendError::NotClientCircuit)
    );
    // RELAY_WS cells are refused outright.
    let mut body = client.ws_cell(1, 2, ws_msg().into());
    let e = circ.handle_forward_ws(&mut rng, &mut body).unwrap_err();
    assert_eq!(e, CircuitError::RelayWsNotClient);
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
}

#[test]
fn relay_ws_cells_are_never_passed_on() {
    let (mut rng, _, mut circ, mut client) =
        setup_with(24, &CircuitConfig::default(), How::Fast, true);
    let mut body = client.ws_cell(1, 2, ws_msg().into());
    body[20] ^= 0x80;
    assert_eq!(
        circ.handle_forward_ws(&mut rng, &mut body),
        Err(CircuitError::RelayWsUnrecognized)
    );
}

/// Extend `a` (the client's only hop) to relay `b` with ntor over EXTEND2; returns B's
/// circuit.
fn extend_to_b(
    rng: &mut StdRng,
    a: &mut OrCircuit,
    client: &mut Client,
    keys_b: &OnionKeys,
) -> OrCircuit {
    let (ext, st) = extend2_to_b(rng, keys_b);
    let mut b = client.cell(rng, 1, 0, ext.into());
    let ForwardAction::Event(CircuitEvent::ExtendRequest(req)) =
        a.handle_forward(rng, &mut b, true).unwrap()
    else {
        panic!("no extend request")
    };
    assert_eq!(a.next_hop(), NextHop::Extending { legacy: false });
    assert_eq!(req.rsa_id(), &RSA_B);
    assert_eq!(req.ed25519_id(), Some(ED_B));
    assert_eq!(req.ipv4(), Some("10.0.0.2:9001".parse().unwrap()));
    assert_eq!(req.ipv6(), None);
    assert!(!req.is_legacy());
    assert_eq!(req.link_specs().len(), 3);
    assert_eq!(req.create().cmd(), ChanCmd::CREATE2);
    // The next relay sees an ordinary CREATE2 on an authenticated relay link.
    let (circ_b, created) =
        OrCircuit::accept_create(rng, keys_b, &req.into_create(), false).unwrap();
    assert_eq!(circ_b.dialect(), Dialect::Tor);
    assert!(!circ_b.is_first_hop());
    a.extended(rng, &created).unwrap();
    assert_eq!(a.next_hop(), NextHop::Open);
    let got = replies(a, client);
    assert_eq!(got.len(), 1);
    let RelayMsg::Extended2(e) = got[0].cell.msg() else {
        panic!("{:?}", got[0])
    };
    client.add_hop(&ntor::client2(st, e.hdata()).unwrap());
    circ_b
}

#[test]
fn two_hops_a_passes_on_and_b_answers() {
    let (mut rng, _, mut a, mut client) =
        setup_with(25, &CircuitConfig::default(), How::Fast, true);
    let keys_b = relay_keys(&mut rng, RSA_B, ED_B);
    let mut b = extend_to_b(&mut rng, &mut a, &mut client, &keys_b);

    // Forward through A to B, RELAY_EARLY preserved.
    let mut cell = client.cell(&mut rng, 2, 1, begin("example.com", 443));
    assert_eq!(
        a.handle_forward(&mut rng, &mut cell, true).unwrap(),
        ForwardAction::PassOn { early: true }
    );
    assert!(matches!(
        b.handle_forward(&mut rng, &mut cell, true).unwrap(),
        ForwardAction::Event(CircuitEvent::BeginRequest { stream, .. }) if stream == StreamId(1)
    ));
    assert_eq!(a.relay_early_remaining(), 6);
    assert_eq!(b.relay_early_remaining(), 7);

    // Backward from B through A.
    b.stream_connected(&mut rng, StreamId(1), None).unwrap();
    let relay = |a: &mut OrCircuit, b: &mut OrCircuit, client: &mut Client| -> Vec<Got> {
        for m in drain(b) {
            let ChanMsg::Relay(r) = m else { panic!() };
            a.handle_backward_from_next(r.into_body()).unwrap();
        }
        replies(a, client)
    };
    let got = relay(&mut a, &mut b, &mut client);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].hop, 2);
    assert_eq!(got[0].cell.cmd(), RelayCmd::CONNECTED);

    // Bulk data through both, with B's SENDMEs reaching the client and the client's reaching B.
    let payload = vec![0x5a; 300 * 498];
    let mut off = 0;
    let mut received = 0;
    let mut rounds = 0;
    while off < payload.len() {
        rounds += 1;
        assert!(rounds < 1000);
        off += b
            .stream_data(&mut rng, StreamId(1), &payload[off..])
            .unwrap();
        for g in relay(&mut a, &mut b, &mut client) {
            assert_eq!(g.hop, 2);
            let RelayMsg::Data(d) = g.cell.msg() else {
                panic!()
            };
            received += d.as_bytes().len();
            if let Some(tag) = g.sendme {
                let mut cell = client.cell(
                    &mut rng,
                    2,
                    0,
                    Sendme::V1 {
                        digest: *tag.as_bytes(),
                    }
                    .into(),
                );
                assert_eq!(
                    a.handle_forward(&mut rng, &mut cell, false).unwrap(),
                    ForwardAction::PassOn { early: false }
                );
                b.handle_forward(&mut rng, &mut cell, false).unwrap();
            }
        }
        if b.stream_package_window(StreamId(1)) == Some(0) {
            let mut cell = client.cell(&mut rng, 2, 1, Sendme::V0.into());
            a.handle_forward(&mut rng, &mut cell, false).unwrap();
            b.handle_forward(&mut rng, &mut cell, false).unwrap();
        }
    }
    assert_eq!(received, payload.len());
    // A's own windows never moved: it only relayed.
    assert_eq!(a.package_window(), 1000);
    assert_eq!(a.deliver_window(), 1000);

    // Hop 1 still answers for itself.
    let mut cell = client.cell(&mut rng, 1, 0, DropMsg::new(vec![]).unwrap().into());
    assert_eq!(
        a.handle_forward(&mut rng, &mut cell, false).unwrap(),
        ForwardAction::Consumed
    );
    // A second EXTEND2 is refused.
    let (ext, _) = extend2_to_b(&mut rng, &keys_b);
    let mut cell = client.cell(&mut rng, 1, 0, ext.into());
    assert_eq!(
        a.handle_forward(&mut rng, &mut cell, true),
        Err(CircuitError::AlreadyExtended(RelayCmd::EXTEND2))
    );
}

#[test]
fn truncate_flow() {
    let (mut rng, _, mut a, mut client) = setup(26);
    let keys_b = relay_keys(&mut rng, RSA_B, ED_B);
    let mut b = extend_to_b(&mut rng, &mut a, &mut client, &keys_b);
    assert_eq!(a.truncated(&mut rng), Err(SendError::NoTruncatePending));

    let mut cell = client.cell(&mut rng, 1, 0, Truncate.into());
    assert_eq!(
        a.handle_forward(&mut rng, &mut cell, false).unwrap(),
        ForwardAction::Event(CircuitEvent::Truncate)
    );
    assert_eq!(a.next_hop(), NextHop::None);
    // Cells from the old next hop are refused.
    b.stream_end(&mut rng, StreamId(1), EndReason::DONE)
        .unwrap_err();
    let mut dir = client.cell(&mut rng, 1, 0, DropMsg::new(vec![]).unwrap().into());
    a.handle_forward(&mut rng, &mut dir, false).unwrap();
    b.truncated(&mut rng).unwrap_err();
    assert_eq!(
        a.handle_backward_from_next(Box::new([0; RELAY_BODY_LEN])),
        Err(SendError::NoNextHop)
    );
    // The driver destroyed B; A answers.
    a.truncated(&mut rng).unwrap();
    let got = replies(&mut a, &mut client);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].hop, 1);
    assert_eq!(
        got[0].cell.msg(),
        &RelayMsg::Truncated(onion_cell::relaycell::Truncated::new(
            DestroyReason::REQUESTED
        ))
    );
    client.crypt.truncate_to(1);
    // The circuit can be extended again.
    let c = extend_to_b(&mut rng, &mut a, &mut client, &keys_b);
    assert_eq!(c.handshake_kind(), HandshakeKind::Ntor);
}

#[test]
fn extend_failures_and_refusals() {
    let (mut rng, _, mut a, mut client) = setup(27);
    let keys_b = relay_keys(&mut rng, RSA_B, ED_B);
    assert_eq!(
        a.extended(
            &mut rng,
            &ChanMsg::Created2(onion_cell::chancell::Created2::new(vec![]).unwrap())
        ),
        Err(SendError::NoExtendPending)
    );
    assert_eq!(
        a.extend_failed(&mut rng, DestroyReason::CONNECTFAILED),
        Err(SendError::NoExtendPending)
    );
    // The extension fails: TRUNCATED with the reason.
    let (ext, _) = extend2_to_b(&mut rng, &keys_b);
    let mut cell = client.cell(&mut rng, 1, 0, ext.into());
    a.handle_forward(&mut rng, &mut cell, true).unwrap();
    // A created cell of the wrong kind.
    let wrong = ChanMsg::CreatedFast(onion_cell::chancell::CreatedFast::new([0; 20], [0; 20]));
    assert_eq!(
        a.extended(&mut rng, &wrong),
        Err(SendError::CreatedMismatch(ChanCmd::CREATED_FAST))
    );
    a.extend_failed(&mut rng, DestroyReason::CONNECTFAILED)
        .unwrap();
    let got = replies(&mut a, &mut client);
    assert_eq!(
        got[0].cell.msg(),
        &RelayMsg::Truncated(onion_cell::relaycell::Truncated::new(
            DestroyReason::CONNECTFAILED
        ))
    );
    assert_eq!(a.next_hop(), NextHop::None);

    // Refused targets, each on a fresh circuit.
    let skin = vec![0u8; 84];
    let v4 = LinkSpec::Ipv4 {
        addr: Ipv4Addr::new(10, 0, 0, 2),
        port: 9001,
    };
    let cases: Vec<(Vec<LinkSpec>, &str)> = vec![
        (vec![v4.clone()], "no RSA identity"),
        (
            vec![v4.clone(), LinkSpec::RsaId([0; 20])],
            "all-zero RSA identity",
        ),
        (
            vec![v4.clone(), LinkSpec::RsaId(RSA_A)],
            "extend to this relay",
        ),
        (
            vec![
                v4.clone(),
                LinkSpec::RsaId(RSA_B),
                LinkSpec::Ed25519Id(ED_A),
            ],
            "extend to this relay",
        ),
        (vec![LinkSpec::RsaId(RSA_B)], "no address to extend to"),
        (
            vec![
                LinkSpec::Ipv4 {
                    addr: Ipv4Addr::new(10, 0, 0, 2),
                    port: 0,
                },
                LinkSpec::RsaId(RSA_B),
            ],
            "no address to extend to",
        ),
    ];
    for (i, (specs, why)) in cases.into_iter().enumerate() {
        let (mut rng, _, mut circ, mut client) = setup(300 + i as u64);
        let ext = Extend2::new(specs, htype::NTOR, skin.clone()).unwrap();
        let mut cell = client.cell(&mut rng, 1, 0, ext.into());
        let e = circ.handle_forward(&mut rng, &mut cell, true).unwrap_err();
        assert_eq!(e, CircuitError::BadExtend(why));
        assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
    }
    // An all-zero Ed25519 identity means "none" and is accepted.
    let (mut rng, _, mut circ, mut client) = setup(320);
    let ext = Extend2::new(
        vec![v4, LinkSpec::RsaId(RSA_B), LinkSpec::Ed25519Id([0; 32])],
        htype::NTOR,
        skin,
    )
    .unwrap();
    let mut cell = client.cell(&mut rng, 1, 0, ext.into());
    let ForwardAction::Event(CircuitEvent::ExtendRequest(req)) =
        circ.handle_forward(&mut rng, &mut cell, true).unwrap()
    else {
        panic!()
    };
    assert_eq!(req.ed25519_id(), None);
    // A second extension while one is in flight.
    let (ext, _) = extend2_to_b(&mut rng, &keys_b);
    let mut cell = client.cell(&mut rng, 1, 0, ext.into());
    assert_eq!(
        circ.handle_forward(&mut rng, &mut cell, true),
        Err(CircuitError::AlreadyExtended(RelayCmd::EXTEND2))
    );
}

#[test]
fn legacy_extend_with_tap() {
    let (mut rng, _, mut a, mut client) = setup(28);
    let keys_b = relay_keys(&mut rng, RSA_B, ED_B);
    let (st, skin) = tap::client1(&mut rng, &keys_b.tap_public()).unwrap();
    let ext = Extend::new(Ipv4Addr::new(10, 0, 0, 3), 443, skin, RSA_B);
    let mut cell = client.cell(&mut rng, 1, 0, ext.into());
    let ForwardAction::Event(CircuitEvent::ExtendRequest(req)) =
        a.handle_forward(&mut rng, &mut cell, true).unwrap()
    else {
        panic!()
    };
    assert!(req.is_legacy());
    assert_eq!(req.ipv4(), Some("10.0.0.3:443".parse().unwrap()));
    assert_eq!(req.rsa_id(), &RSA_B);
    assert_eq!(req.create().cmd(), ChanCmd::CREATE);
    let (mut b, created) =
        OrCircuit::accept_create(&mut rng, &keys_b, &req.into_create(), false).unwrap();
    assert_eq!(created.cmd(), ChanCmd::CREATED);
    // CREATED2 would not match a legacy EXTEND.
    assert!(matches!(
        a.extended(
            &mut rng,
            &ChanMsg::Created2(onion_cell::chancell::Created2::new(vec![]).unwrap())
        ),
        Err(SendError::CreatedMismatch(ChanCmd::CREATED2))
    ));
    a.extended(&mut rng, &created).unwrap();
    let got = replies(&mut a, &mut client);
    let RelayMsg::Extended(e) = got[0].cell.msg() else {
        panic!("{:?}", got[0])
    };
    client.add_hop(&tap::client2(st, e.handshake()).unwrap());
    // The client reaches B.
    let mut cell = client.cell(&mut rng, 2, 4, BeginDir.into());
    assert_eq!(
        a.handle_forward(&mut rng, &mut cell, false).unwrap(),
        ForwardAction::PassOn { early: false }
    );
    assert_eq!(
        b.handle_forward(&mut rng, &mut cell, false).unwrap(),
        ForwardAction::Event(CircuitEvent::BeginDirRequest {
            stream: StreamId(4)
        })
    );
}

#[test]
fn body_length_is_checked() {
    assert_eq!(PAYLOAD_LEN, RELAY_BODY_LEN);
    let (mut rng, _, mut circ, _) = setup_with(29, &CircuitConfig::default(), How::Fast, true);
    let mut short = vec![0u8; 5];
    let e = circ.handle_forward_ws(&mut rng, &mut short).unwrap_err();
    assert!(matches!(e, CircuitError::Crypt(_)));
    assert_eq!(e.destroy_reason(), DestroyReason::PROTOCOL);
}

mod hostile {
    use proptest::prelude::*;

    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// One hostile input: a plaintext body for hop 1 (encrypted properly, so that it is
    /// recognized and reaches the dispatcher), or raw ciphertext.
    #[derive(Debug, Clone)]
    enum Input {
        Plain {
            cmd: u8,
            stream: u16,
            /// A length field other than the data's.
            len: Option<u16>,
            data: Vec<u8>,
            early: bool,
        },
        /// A well-formed message, encoded by the client (no window accounting).
        Msg(u16, RelayMsg, bool),
        Raw(Vec<u8>, bool),
        Ws {
            cmd: u8,
            stream: u16,
            data: Vec<u8>,
        },
    }

    fn msg() -> impl Strategy<Value = RelayMsg> {
        prop_oneof![
            Just(begin("example.com", 80)),
            Just(BeginDir.into()),
            Just(Resolve::new("example.com".into()).unwrap().into()),
            proptest::collection::vec(any::<u8>(), 0..=498).prop_map(|d| data(&d)),
            any::<u8>().prop_map(|r| End::new(EndReason(r)).into()),
            Just(Sendme::V0.into()),
            any::<[u8; 20]>().prop_map(|digest| Sendme::V1 { digest }.into()),
            Just(Truncate.into()),
            Just(DropMsg::new(vec![]).unwrap().into()),
            Just(ws_msg().into()),
            Just(
                Extend2::new(
                    vec![
                        LinkSpec::Ipv4 {
                            addr: Ipv4Addr::new(10, 0, 0, 2),
                            port: 9001,
                        },
                        LinkSpec::RsaId(RSA_B),
                    ],
                    htype::NTOR,
                    vec![0; 84],
                )
                .unwrap()
                .into()
            ),
        ]
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            24 => (0u16..5, msg(), proptest::bool::weighted(0.1)).prop_filter_map(
                "stream id rule",
                |(stream, m, early)| {
                    let stream = match m.cmd().stream_id_rule() {
                        onion_cell::relaycell::StreamIdRule::Zero => 0,
                        onion_cell::relaycell::StreamIdRule::NonZero if stream == 0 => return None,
                        _ => stream,
                    };
                    Some(Input::Msg(stream, m, early))
                }
            ),
            16 => (
                prop_oneof![0u8..=16, 40u8..=44, any::<u8>()],
                prop_oneof![Just(0u16), 1u16..5, any::<u16>()],
                proptest::option::weighted(0.05, any::<u16>()),
                proptest::collection::vec(any::<u8>(), 0..=498),
                proptest::bool::weighted(0.1),
            )
                .prop_map(|(cmd, stream, len, data, early)| Input::Plain {
                    cmd,
                    stream,
                    len,
                    data,
                    early
                }),
            1 => (proptest::collection::vec(any::<u8>(), 509), any::<bool>())
                .prop_map(|(b, e)| Input::Raw(b, e)),
            2 => (
                prop_oneof![1u8..=3, 40u8..=42],
                0u16..3,
                proptest::collection::vec(any::<u8>(), 0..2000),
            )
                .prop_map(|(cmd, stream, data)| Input::Ws { cmd, stream, data }),
        ]
    }

    fn plain_body(cmd: u8, stream: u16, len: u16, data: &[u8]) -> Vec<u8> {
        let mut body = vec![cmd, 0, 0];
        body.extend_from_slice(&stream.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(data);
        body
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever the client sends: no panic, the limits hold, and after the first error
        /// the circuit stays closed with an empty queue.
        #[test]
        fn hostile_client(
            seed in any::<u64>(),
            from_client in any::<bool>(),
            inputs in proptest::collection::vec(input(), 1..40),
        ) {
            let config = CircuitConfig {
                max_streams: 3,
                max_queued_cells: 12,
                ..CircuitConfig::default()
            };
            let (mut rng, _, mut circ, mut client) =
                setup_with(seed, &config, How::Fast, from_client);
            let mut dead = None;
            for inp in inputs {
                let r = match inp {
                    Input::Plain { cmd, stream, len, data, early } => {
                        let len = len.unwrap_or(u16::try_from(data.len()).unwrap());
                        let mut body = plain_body(cmd, stream, len, &data);
                        body.resize(RELAY_BODY_LEN, 0);
                        client.crypt.encrypt(&mut body, HopNum::FIRST).unwrap();
                        let mut b: [u8; RELAY_BODY_LEN] = body.try_into().unwrap();
                        circ.handle_forward(&mut rng, &mut b, early)
                    }
                    Input::Msg(stream, m, early) => {
                        let (mut b, _) = client.raw(&mut rng, 1, stream, m);
                        circ.handle_forward(&mut rng, &mut b, early)
                    }
                    Input::Raw(body, early) => {
                        let mut b: [u8; RELAY_BODY_LEN] = body.try_into().unwrap();
                        circ.handle_forward(&mut rng, &mut b, early)
                    }
                    Input::Ws { cmd, stream, data } => {
                        let len = u16::try_from(data.len()).unwrap();
                        let mut body = plain_body(cmd, stream, len, &data);
                        client.crypt.encrypt(&mut body, HopNum::FIRST).unwrap();
                        circ.handle_forward_ws(&mut rng, &mut body)
                    }
                };
                prop_assert!(circ.queued_cells() <= 12);
                prop_assert!(circ.stream_count() <= 3);
                match (dead, r) {
                    (Some(reason), r) => prop_assert_eq!(r, Err(CircuitError::Closed(reason))),
                    (None, Err(e)) => {
                        dead = Some(e.destroy_reason());
                        prop_assert_eq!(circ.queued_cells(), 0);
                    }
                    (None, Ok(ForwardAction::PassOn { .. })) => {
                        prop_assert!(false, "passed on with no next hop")
                    }
                    (None, Ok(_)) => {}
                }
                // The driver drains now and then, and answers some streams.
                let roll = rng.next_u32();
                if roll % 3 == 0 {
                    drain(&mut circ);
                }
                if dead.is_none() {
                    let stream = StreamId(1 + (roll >> 8) as u16 % 4);
                    let _ = match roll % 7 {
                        0 => circ.stream_connected(&mut rng, stream, None),
                        1 => circ.stream_data(&mut rng, stream, &[1; 700]).map(|_| ()),
                        2 => circ.stream_flushed(&mut rng, stream, 1000),
                        3 => circ.stream_end(&mut rng, stream, EndReason::DONE),
                        4 => circ.truncated(&mut rng),
                        _ => Ok(()),
                    };
                    prop_assert!(circ.queued_cells() <= 12);
                }
            }
        }
    }
}
