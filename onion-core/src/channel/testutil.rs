//! Helpers for the channel tests: relay keys, and an in-memory link between an initiator and
//! a responder.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand_core::Rng;
use rsa::PrivateKey;
use sha2::{Digest, Sha256};

use super::{ChannelError, Initiator, Responder};
use crate::certs::RelaySigningMaterial;
use crate::certs::link::AUTH0003_EXPORTER_LABEL;
use crate::testing::seeded_rng;

/// The time of the tests.
pub(crate) const NOW: u64 = 1_700_000_000;

/// The SHA-256 of the responder's (imaginary) TLS certificate.
pub(crate) const TLS_CERT: [u8; 32] = [0x5c; 32];

pub(crate) fn rng(seed: u64) -> StdRng {
    seeded_rng(seed)
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).unwrap()
}

/// A relay's keys and long-lived certificates, made once per seed (RSA key generation is
/// slow).
pub(crate) fn material(seed: u64) -> &'static RelaySigningMaterial {
    static CACHE: OnceLock<Mutex<HashMap<u64, &'static RelaySigningMaterial>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache.entry(seed).or_insert_with(|| {
        let mut rng = seeded_rng(1000 + seed);
        let rsa = PrivateKey::new(&mut rng, 1024).unwrap();
        let mut key = || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            SigningKey::from_bytes(&b)
        };
        let (ed_id, ed_signing) = (key(), key());
        let m =
            RelaySigningMaterial::new(rsa, &ed_id, ed_signing, NOW, &mut seeded_rng(seed)).unwrap();
        Box::leak(Box::new(m))
    })
}

/// The TLS exporter value of an imaginary TLS session `session`.
pub(crate) fn exporter(session: u8, context: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update([session])
        .chain_update(AUTH0003_EXPORTER_LABEL)
        .chain_update(context)
        .finalize()
        .into()
}

/// Pass `input` to `f` in pieces of at most `chunk` bytes, until `f` consumes less than it was
/// given or the input runs out. Returns the bytes consumed, and leaves the rest in `input`.
pub(crate) fn feed<E>(
    input: &mut &[u8],
    chunk: usize,
    mut f: impl FnMut(&[u8]) -> Result<usize, E>,
) -> Result<usize, E> {
    let mut total = 0;
    while !input.is_empty() {
        let k = chunk.min(input.len());
        let n = f(&input[..k])?;
        total += n;
        *input = &input[n..];
        if n < k {
            break;
        }
    }
    Ok(total)
}

/// Which end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Initiator,
    Responder,
}

/// How bytes travel between the two ends.
pub(crate) struct Wire<'a> {
    /// The size of each piece delivered.
    pub chunk: Box<dyn FnMut() -> usize + 'a>,
    /// Sees (and may change) every flight a side sends.
    pub tamper: Box<dyn FnMut(Side, Vec<u8>) -> Vec<u8> + 'a>,
    /// The TLS session the responder computes its exporter value on.
    pub responder_session: u8,
}

impl Wire<'_> {
    /// Every piece of `chunk` bytes, untouched, session 1.
    pub(crate) fn chunked(chunk: usize) -> Self {
        Wire {
            chunk: Box::new(move || chunk),
            tamper: Box::new(|_, b| b),
            responder_session: 1,
        }
    }

    /// Pieces of random sizes from 1 to 700 bytes.
    pub(crate) fn random(seed: u64) -> Self {
        let mut r = seeded_rng(seed);
        Wire {
            chunk: Box::new(move || 1 + (r.next_u32() % 700) as usize),
            tamper: Box::new(|_, b| b),
            responder_session: 1,
        }
    }
}

/// Run a handshake to completion. Returns the bytes each side had not consumed when it was
/// done (toward the responder, toward the initiator), or the first error and where it
/// happened.
pub(crate) fn handshake(
    i: &mut Initiator,
    r: &mut Responder,
    wire: &mut Wire<'_>,
) -> Result<(Vec<u8>, Vec<u8>), (Side, ChannelError)> {
    let (mut to_r, mut to_i) = (Vec::new(), Vec::new());
    loop {
        let mut progress = false;
        if let Some(b) = i.poll_transmit() {
            to_r.extend((wire.tamper)(Side::Initiator, b));
            progress = true;
        }
        if let Some(b) = r.poll_transmit() {
            to_i.extend((wire.tamper)(Side::Responder, b));
            progress = true;
        }
        if i.is_done() && r.is_done() {
            return Ok((to_r, to_i));
        }
        if !to_r.is_empty() && !r.is_done() && r.exporter_request().is_none() {
            let k = (wire.chunk)().clamp(1, to_r.len());
            let n = r
                .handle_input(NOW, &to_r[..k])
                .map_err(|e| (Side::Responder, e))?;
            to_r.drain(..n);
            progress |= n > 0;
        }
        if let Some(req) = r.exporter_request() {
            assert_eq!(req.label, AUTH0003_EXPORTER_LABEL);
            assert_eq!(req.len, 32);
            r.provide_tls_exporter(exporter(wire.responder_session, &req.context))
                .map_err(|e| (Side::Responder, e))?;
            progress = true;
        }
        if !to_i.is_empty() && !i.is_done() {
            let k = (wire.chunk)().clamp(1, to_i.len());
            let n = i
                .handle_input(NOW, &to_i[..k])
                .map_err(|e| (Side::Initiator, e))?;
            to_i.drain(..n);
            progress |= n > 0;
        }
        assert!(progress, "handshake stalled");
    }
}
