//! The seed's RELAY_INFO in the engine ([`EngineConfig::use_relay_info`]): the test plays the
//! entry OR of CID and answers with the core's TAP functions (what or-server's `[seed]
//! relay_info` does); the hops' own OR circuits run the relay side of TAP, so a circuit only
//! works if the keys derived from the OR's answers equal TAP's.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use onion_cell::relaycell::{Info, InfoRequest, InfoResponse, RelayMsg};

use super::seed::or_send;
use super::*;
use crate::handshake::tap::TapClientState;

/// What the test's OR did.
#[derive(Default)]
struct Helper {
    /// Type-1 states by ID.
    states: Vec<([u8; 16], TapClientState)>,
    /// Type-1 requests answered, with the modulus asked for.
    skins: Vec<Vec<u8>>,
    /// Type-2 requests answered.
    secrets: usize,
    /// Flip a bit of every shared secret answered.
    corrupt: bool,
}

impl Helper {
    /// Answer every RELAY_INFO request hop 1 of CID received, until none is left; the
    /// engine's events meanwhile.
    fn serve(&mut self, net: &mut Net, e: &mut Engine<StdRng>) -> Vec<Event> {
        let mut events = net.pump(e);
        loop {
            let mut reqs = Vec::new();
            net.seed_in.retain(|(_, _, ev)| match ev {
                CircuitEvent::SeedInfo { stream, msg } => {
                    reqs.push((*stream, msg.decode_request().expect("RELAY_INFO request")));
                    false
                }
                _ => true,
            });
            if reqs.is_empty() {
                return events;
            }
            for (stream, req) in reqs {
                let resp = match req {
                    InfoRequest::OnionSkin { id, modulus } => {
                        let key = tap::onion_key_from_modulus(&modulus).unwrap();
                        let (state, onion) = tap::client1(&mut net.rng, &key).unwrap();
                        let x = state.dh_public().to_vec();
                        self.states.push((id, state));
                        self.skins.push(modulus);
                        InfoResponse::OnionSkin {
                            id,
                            x,
                            onion: onion.to_vec(),
                        }
                    }
                    InfoRequest::DhSecret { id, y } => {
                        let i = self.states.iter().position(|(s, _)| *s == id).unwrap();
                        let (_, state) = self.states.remove(i);
                        let mut secret = tap::dh_shared_secret(state, &y)
                            .unwrap()
                            .as_bytes()
                            .to_vec();
                        if self.corrupt {
                            secret[127] ^= 1;
                        }
                        self.secrets += 1;
                        InfoResponse::DhSecret { id, secret }
                    }
                };
                let msg = Info::from_response(&resp).unwrap();
                or_send(net, stream.0, RelayMsg::Info(msg));
            }
            events.extend(net.pump(e));
        }
    }
}

fn relay_info_config() -> EngineConfig {
    EngineConfig {
        handshake: Some(HandshakeKind::Tap),
        use_relay_info: true,
        pool_size: 1,
        ..config()
    }
}

#[test]
fn tap_hops_through_relay_info_give_working_circuits() {
    let mut net = Net::new(4, 1);
    let (mut e, events) = boot(&mut net, relay_info_config(), 71);
    // The exit circuit waits for CID: nothing asked, nothing built beyond hop 1.
    assert!(
        !built(&events)
            .iter()
            .any(|c| c.purpose == CircuitPurpose::Exit),
        "{events:?}"
    );
    assert!(net.seed_in.is_empty());
    e.associate(net.now, "info.fake.test", None).unwrap();
    let mut helper = Helper::default();
    let events = helper.serve(&mut net, &mut e);
    let exit = built(&events)
        .into_iter()
        .find(|c| c.purpose == CircuitPurpose::Exit)
        .expect("exit circuit built");
    assert!(
        exit.path
            .iter()
            .all(|h| h.handshake == Some(HandshakeKind::Tap))
    );
    // Hops 2 and 3 went through the OR (hop 1 computed locally), with their own onion keys.
    assert_eq!(helper.skins.len(), 2);
    assert_eq!(helper.secrets, 2);
    assert!(helper.states.is_empty());
    let chain = net
        .chains()
        .into_iter()
        .find(|c| c.len() == 3)
        .expect("3-hop chain");
    for (modulus, relay) in helper.skins.iter().zip(&chain[1..]) {
        use rsa::traits::PublicKeyParts;
        let want = net.relays[*relay].keys.tap_public();
        assert_eq!(*modulus, want.n().to_be_bytes().to_vec());
    }
    // The keys from the OR's g^xy are the relays' keys: data goes through and back.
    let s = open_stream(&mut net, &mut e, 80, None);
    assert_eq!(echo(&mut net, &mut e, s, b"relay info"), b"relay info");
}

#[test]
fn a_wrong_shared_secret_fails_the_hop() {
    let mut net = Net::new(4, 1);
    let (mut e, _) = boot(&mut net, relay_info_config(), 72);
    e.associate(net.now, "info.fake.test", None).unwrap();
    let mut helper = Helper {
        corrupt: true,
        ..Helper::default()
    };
    let events = helper.serve(&mut net, &mut e);
    assert!(helper.secrets >= 1);
    assert!(
        !built(&events)
            .iter()
            .any(|c| c.purpose == CircuitPurpose::Exit),
        "{events:?}"
    );
    let failed: Vec<&String> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::CircuitFailed { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    // KH does not match the secret: the hop's handshake fails (hop 2, the first via the OR).
    assert!(
        failed
            .iter()
            .any(|f| f.contains("hop #2 failed: handshake authentication failed")),
        "{failed:?}"
    );
}

#[test]
fn off_by_default_no_relay_info() {
    let mut net = Net::new(4, 1);
    let cfg = EngineConfig {
        handshake: Some(HandshakeKind::Tap),
        pool_size: 1,
        ..config()
    };
    assert!(!cfg.use_relay_info);
    let (mut e, events) = boot(&mut net, cfg, 73);
    assert!(
        built(&events)
            .iter()
            .any(|c| c.purpose == CircuitPurpose::Exit)
    );
    e.associate(net.now, "info.fake.test", None).unwrap();
    net.pump(&mut e);
    assert!(
        !net.seed_in
            .iter()
            .any(|(_, _, ev)| matches!(ev, CircuitEvent::SeedInfo { .. }))
    );
}
