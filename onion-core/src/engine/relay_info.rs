//! The seed's RELAY_INFO in the engine ([`EngineConfig::use_relay_info`]): the entry OR of the
//! association (CID, see `engine/seed.rs`) computes the client side of TAP for the hops that
//! use it, as the seed did for browsers without RSA-OAEP or Diffie-Hellman.
//!
//! For an extension to a TAP hop (hop 2 onwards; hop 1's handshake is computed locally: CID
//! itself cannot use RELAY_INFO, and hop 1 knows its own keys anyway):
//!
//! 1. `[01][ID][modulus of the hop's onion key]` on CID (a RELAY_WS cell); the answer
//!    `[ID][X_length][X][Onion]` gives the onion skin, sent in an EXTEND2 of type 0
//!    ([`ClientCircuit::extend_tap_remote`](crate::client::ClientCircuit::extend_tap_remote)).
//! 2. With the hop's reply `g^y | KH`: `[02][ID][g^y]` on CID; the answer `[ID][g^xy]`
//!    completes the hop
//!    ([`ClientCircuit::finish_tap_remote`](crate::client::ClientCircuit::finish_tap_remote),
//!    which checks `KH`).
//!
//! A circuit needing RELAY_INFO before CID is built waits for it (within its hop timeout).
//! Answers with an unknown ID are ignored; a malformed answer fails the circuit it is for.
//! CID closing leaves the waiting circuits to their hop timeout.
//!
//! **Security:** the entry OR learns `g^xy`, hence every key, of those hops: it can read and
//! forge their traffic. Only for one's own network, where the entry OR is trusted anyway.

use std::collections::BTreeMap;

use onion_cell::relaycell::seed::INFO_ID_LEN;
use onion_cell::relaycell::{Info, InfoKind, InfoRequest, InfoResponse, StreamId};
use rand_core::CryptoRng;
use rsa::traits::PublicKeyParts;

use super::Engine;
use crate::crypto::dh::{DH_LEN, SharedSecret};
use crate::engine::NowMs;
use crate::engine::circ::CircState;

/// What a circuit waits for in its RELAY_INFO exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Waiting for CID to be built.
    Cid,
    /// Type 1 sent under this ID.
    Skin([u8; INFO_ID_LEN]),
    /// EXTEND2 sent with the OR's onion skin; waiting for the hop's reply.
    Reply([u8; INFO_ID_LEN]),
    /// Type 2 sent under this ID.
    Secret([u8; INFO_ID_LEN]),
}

/// The engine's RELAY_INFO exchanges, per circuit id (at most one per circuit).
pub(super) type Exchanges = BTreeMap<u64, Step>;

impl<R: CryptoRng> Engine<R> {
    /// Whether hop `n` (0-based) of circuit `id` is to be done through RELAY_INFO.
    pub(super) fn relay_info_wanted(&self, id: u64, n: usize) -> bool {
        if !self.config.use_relay_info || n == 0 {
            return false;
        }
        let Some(c) = self.circs.get(&id) else {
            return false;
        };
        c.purpose != super::CircuitPurpose::Seed
            && c.path
                .get(n)
                .is_some_and(|h| h.kind == crate::client::HandshakeKind::Tap)
    }

    /// Start the RELAY_INFO exchange for hop `n` of circuit `id` (or wait for CID).
    pub(super) fn relay_info_start(&mut self, id: u64, n: usize, now: NowMs) {
        let circs = &self.circs;
        self.relay_info.retain(|c, _| circs.contains_key(c));
        let Some(cid) = self.seed.as_ref().and_then(|s| s.cid_ready()) else {
            self.relay_info.insert(id, Step::Cid);
            return;
        };
        let modulus = match self
            .circs
            .get(&id)
            .and_then(|c| c.path.get(n))
            .and_then(|h| h.target.tap_onion_key.as_ref())
        {
            Some(k) => k.n().to_be_bytes().to_vec(),
            None => {
                self.circuit_error(id, now, "RELAY_INFO: no TAP onion key");
                return;
            }
        };
        let mut tx = [0u8; INFO_ID_LEN];
        self.rng.fill_bytes(&mut tx);
        let req = InfoRequest::OnionSkin { id: tx, modulus };
        if let Err(why) = self.relay_info_send(cid, now, &req) {
            self.circuit_error(id, now, &format!("RELAY_INFO on CID: {why}"));
            return;
        }
        self.relay_info.insert(id, Step::Skin(tx));
    }

    /// Send a RELAY_INFO request on CID (circuit `cid`) in a RELAY_WS cell.
    fn relay_info_send(&mut self, cid: u64, now: NowMs, req: &InfoRequest) -> Result<(), String> {
        let msg = Info::from_request(req).map_err(|e| e.to_string())?;
        // Queued cells first: RELAY_WS cells leave in encryption order.
        self.flush(cid);
        let Some(c) = self.circs.get_mut(&cid) else {
            return Err("CID gone".into());
        };
        let (Some(wire), conn) = (c.wire, c.conn) else {
            return Err("CID gone".into());
        };
        let CircState::Live(client) = &mut c.state else {
            return Err("CID not built".into());
        };
        match client.seed_ws_cell(StreamId::ZERO, msg.into()) {
            Ok(cell) => {
                self.send_cell(conn, wire, cell);
                Ok(())
            }
            Err(e) => {
                let why = e.to_string();
                if e.is_fatal() {
                    self.circuit_error(cid, now, &why);
                }
                Err(why)
            }
        }
    }

    /// Hook: CID is built (associated): start the exchanges that waited for it.
    pub(super) fn relay_info_resume(&mut self, now: NowMs) {
        let waiting: Vec<u64> = self
            .relay_info
            .iter()
            .filter(|(_, s)| **s == Step::Cid)
            .map(|(c, _)| *c)
            .collect();
        for id in waiting {
            self.relay_info.remove(&id);
            self.extend_next(id, now);
        }
    }

    /// Hook: a RELAY_INFO answer arrived on circuit `from`.
    pub(super) fn relay_info_answer(&mut self, from: u64, info: &Info, now: NowMs) {
        if self.seed.as_ref().map(|s| s.circ) != Some(from) {
            return;
        }
        let Some(tx) = info.id() else {
            return;
        };
        let Some((id, step)) = self
            .relay_info
            .iter()
            .find(|(_, s)| matches!(s, Step::Skin(t) | Step::Secret(t) if *t == tx))
            .map(|(c, s)| (*c, *s))
        else {
            return;
        };
        match step {
            Step::Skin(_) => {
                let onion = match info.decode_response(InfoKind::OnionSkin) {
                    Ok(InfoResponse::OnionSkin { onion, .. }) => onion,
                    _ => {
                        self.relay_info.remove(&id);
                        self.circuit_error(id, now, "RELAY_INFO: bad onion skin answer");
                        return;
                    }
                };
                self.relay_info.insert(id, Step::Reply(tx));
                let Some(c) = self.circs.get_mut(&id) else {
                    return;
                };
                let n = match &c.state {
                    CircState::Live(client) => client.n_hops(),
                    _ => return,
                };
                let (Some(hop), CircState::Live(client)) = (c.path.get(n), &mut c.state) else {
                    return;
                };
                let result = client.extend_tap_remote(&mut self.rng, &hop.target, &onion);
                self.flush(id);
                if let Err(e) = result {
                    self.relay_info.remove(&id);
                    self.circuit_error(id, now, &format!("cannot extend: {e}"));
                }
            }
            Step::Secret(_) => {
                self.relay_info.remove(&id);
                let secret = match info.decode_response(InfoKind::DhSecret) {
                    Ok(InfoResponse::DhSecret { secret, .. }) => secret,
                    _ => {
                        self.circuit_error(id, now, "RELAY_INFO: bad DH secret answer");
                        return;
                    }
                };
                let Ok(secret) = <[u8; DH_LEN]>::try_from(secret.as_slice()) else {
                    self.circuit_error(id, now, "RELAY_INFO: DH secret must be 128 bytes");
                    return;
                };
                let secret = SharedSecret::from_bytes(&secret);
                let Some(client) = self.circs.get_mut(&id).and_then(|c| c.live()) else {
                    return;
                };
                match client.finish_tap_remote(&secret) {
                    Ok(hop) => self.hop_added(id, hop, now),
                    Err(e) => self.circuit_error(id, now, &e.to_string()),
                }
            }
            Step::Cid | Step::Reply(_) => {}
        }
    }

    /// Hook, after a cell on circuit `id`: if the hop's reply to an EXTEND2 with the OR's
    /// onion skin came, ask CID for the shared secret.
    pub(super) fn relay_info_reply(&mut self, id: u64, now: NowMs) {
        let Some(Step::Reply(tx)) = self.relay_info.get(&id).copied() else {
            return;
        };
        let Some(y) = self
            .circs
            .get_mut(&id)
            .and_then(|c| c.live())
            .and_then(|c| c.tap_remote_reply())
            .and_then(|r| r.get(..DH_LEN))
            .map(<[u8]>::to_vec)
        else {
            return;
        };
        let Some(cid) = self.seed.as_ref().map(|s| s.circ) else {
            self.relay_info.remove(&id);
            self.circuit_error(id, now, "RELAY_INFO: CID gone");
            return;
        };
        let req = InfoRequest::DhSecret { id: tx, y };
        match self.relay_info_send(cid, now, &req) {
            Ok(()) => {
                self.relay_info.insert(id, Step::Secret(tx));
            }
            Err(why) => {
                self.relay_info.remove(&id);
                self.circuit_error(id, now, &format!("RELAY_INFO on CID: {why}"));
            }
        }
    }
}
