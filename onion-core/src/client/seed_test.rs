//! The client's side of the seed's messages ([`ClientCircuit::send_seed`],
//! [`ClientCircuit::seed_ws_cell`]) against the OR side ([`OrCircuit`]).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::net::{Ipv4Addr, SocketAddrV4};

use onion_cell::chancell::ChanMsg;
use onion_cell::relaycell::{
    Associate, Data, MAX_WS_DATA_LEN, OpWsAddr, RelayMsg, StreamId, WsStream,
};
use rand_core::Rng;
use x25519_dalek::StaticSecret;

use super::*;
use crate::handshake::tap;
use crate::relay::{CircuitEvent, ForwardAction, OnionKeys, OrCircuit};
use crate::testing::seeded_rng;

/// A one-hop circuit: the client (hop 1 ours or not) and the OR side from a client link.
fn one_hop(hop1_is_ours: bool) -> (ClientCircuit, OrCircuit, rand::rngs::StdRng) {
    let mut rng = seeded_rng(41);
    let (a, _, _) = tap::test::test_keys();
    let mut rsa_id = [0u8; 20];
    rng.fill_bytes(&mut rsa_id);
    let mut ed_id = [0u8; 32];
    rng.fill_bytes(&mut ed_id);
    let keys = OnionKeys::new(rsa_id, ed_id, StaticSecret::random_from_rng(&mut rng), a).unwrap();
    let target = HopTarget {
        ipv4: Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 443)),
        ipv6: None,
        rsa_id: Some(rsa_id),
        ed_id: Some(ed_id),
        ntor_onion_key: Some(keys.ntor_public().unwrap().pk),
        tap_onion_key: Some(keys.tap_public()),
        supports_ntor_v3: true,
    };
    let config = CircuitConfig {
        hop1_is_ours,
        ..CircuitConfig::default()
    };
    let (pending, create) =
        ClientCircuit::start(&mut rng, &target, HandshakeKind::Ntor, config).unwrap();
    let (or, created) = OrCircuit::accept_create(&mut rng, &keys, &create, true).unwrap();
    (pending.handle_created(created).unwrap(), or, rng)
}

#[test]
fn seed_messages_reach_hop_1() {
    let (mut c, mut or, mut rng) = one_hop(true);
    // ASSOCIATE in a RELAY cell.
    let assoc = Associate::new("abc.fake.test".into()).unwrap();
    c.send_seed(&mut rng, StreamId::ZERO, assoc.clone().into())
        .unwrap();
    let cell = c.poll_outgoing().unwrap();
    assert!(c.poll_outgoing().is_none());
    let mut body = cell.body;
    assert_eq!(
        or.handle_forward(&mut rng, &mut body, false),
        Ok(ForwardAction::Event(CircuitEvent::SeedAssociate {
            stream: StreamId::ZERO,
            msg: assoc.clone(),
        }))
    );
    // A RELAY_WS message longer than a RELAY cell, in a RELAY_WS cell.
    let addr = OpWsAddr {
        remote_address: "www.example.com".into(),
        remote_port: 80,
    };
    let big = vec![0x42; MAX_WS_DATA_LEN - 100];
    let ws = WsStream::from_op(&addr, big).unwrap();
    let cell = c.seed_ws_cell(StreamId(7), ws.clone().into()).unwrap();
    let ChanMsg::RelayWs(w) = cell else {
        panic!("{cell:?}")
    };
    let mut body = w.into_body();
    assert_eq!(
        or.handle_forward_ws(&mut rng, &mut body),
        Ok(ForwardAction::Event(CircuitEvent::SeedWs {
            stream: StreamId(7),
            msg: ws.clone(),
        }))
    );
    // The order of encryption is the order of sending: not while cells wait.
    c.send_seed(&mut rng, StreamId::ZERO, assoc.into()).unwrap();
    assert_eq!(
        c.seed_ws_cell(StreamId(7), ws.clone().into()),
        Err(CircuitError::QueueFull)
    );
    let mut body = c.poll_outgoing().unwrap().body;
    assert!(matches!(
        or.handle_forward(&mut rng, &mut body, false),
        Ok(ForwardAction::Event(CircuitEvent::SeedAssociate { .. }))
    ));
    assert!(c.seed_ws_cell(StreamId(7), ws.into()).is_ok());
}

#[test]
fn seed_messages_only_to_our_hop_1() {
    let (mut c, _, mut rng) = one_hop(false);
    let assoc = Associate::new("abc.fake.test".into()).unwrap();
    assert!(matches!(
        c.send_seed(&mut rng, StreamId::ZERO, assoc.clone().into()),
        Err(CircuitError::Encode(_))
    ));
    assert!(matches!(
        c.seed_ws_cell(StreamId::ZERO, assoc.into()),
        Err(CircuitError::Encode(_))
    ));
    let (mut c, _, mut rng) = one_hop(true);
    let data: RelayMsg = Data::new(b"x".to_vec()).unwrap().into();
    assert!(matches!(
        c.send_seed(&mut rng, StreamId(1), data.clone()),
        Err(CircuitError::Encode(_))
    ));
    assert!(matches!(
        c.seed_ws_cell(StreamId(1), data),
        Err(CircuitError::Encode(_))
    ));
    // Nothing was queued or encrypted: the circuit still works.
    assert!(c.poll_outgoing().is_none());
    assert!(c.is_open());
}
