//! Answering a CREATE, CREATE_FAST, CREATE2 or CREATE_FAST_WS cell (tor-spec §5.1): run the
//! right server handshake and build the CREATED-family reply.
//!
//! | cell | handshake | reply |
//! |---|---|---|
//! | CREATE | TAP | CREATED |
//! | CREATE_FAST | CREATE_FAST | CREATED_FAST |
//! | CREATE2 type 0 | TAP | CREATED2 |
//! | CREATE2 type 2 | ntor | CREATED2 |
//! | CREATE2 type 3 | ntor-v3, verification string `"circuit extend"` | CREATED2 |
//! | CREATE_FAST_WS (seed) | CREATE_FAST with X under the TAP key | CREATED_FAST_WS |
//!
//! The old CREATE format with a 16-byte handshake type tag (`ntorNTORntorNTOR`) is not
//! supported: clients "SHOULD NOT send" it (tor-spec §5.1), and it fails as a TAP onion skin.
//!
//! ntor-v3: the client's message is an extension list; a congestion control request
//! (proposal 324 §10.3) is answered by not negotiating it (an empty reply list), since these
//! circuits use fixed windows. A client message that is not a valid extension list refuses the
//! handshake.

use onion_cell::bytes::EncodeError;
use onion_cell::chancell::{
    ChanCmd, ChanMsg, Created, Created2, CreatedFast, CreatedFastWs, DestroyReason,
};
use rand_core::CryptoRng;
use thiserror::Error;

use super::keys::OnionKeys;
use crate::crypto::keys::{HASH_LEN, HopKeys};
use crate::handshake::ntor_v3::{self, CIRCUIT_EXTEND_VERIFICATION};
use crate::handshake::{HandshakeError, fast, fast_ws, htype, ntor, tap};

pub use crate::handshake::HandshakeKind;

/// Why a circuit could not be created. The driver answers with a DESTROY carrying
/// [`CreateError::destroy_reason`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The message is not a circuit-creation message (caller's fault).
    #[error("not a circuit-creation message: {0}")]
    NotCreate(ChanCmd),
    /// A CREATE2 cell with a handshake type this relay does not know (peer's fault).
    #[error("unknown CREATE2 handshake type {0:#06x}")]
    UnknownHandshakeType(u16),
    /// The handshake is refused by the relay's [`CreatePolicy`](super::CreatePolicy).
    #[error("{0:?} handshakes are refused by this relay")]
    Refused(HandshakeKind),
    /// The seed's CREATE_FAST_WS arrived on a link that is not an unauthenticated client link
    /// (peer's fault: only an OP sends it, to its first hop).
    #[error("CREATE_FAST_WS on a link that is not a client link")]
    FastWsNotFromClient,
    /// The handshake failed: a malformed or undecryptable onion skin, a bad public value, or
    /// a key of ours that is unusable (see [`HandshakeError`] for whose fault).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The reply could not be encoded (internal error).
    #[error("cannot encode the reply: {0}")]
    Encode(#[from] EncodeError),
}

impl CreateError {
    /// The reason the DESTROY answering the create cell carries: PROTOCOL when the client is
    /// at fault (C tor: "Bogus/unrecognized create cell"), INTERNAL when we are.
    pub fn destroy_reason(&self) -> DestroyReason {
        match self {
            CreateError::NotCreate(_)
            | CreateError::Encode(_)
            | CreateError::Handshake(HandshakeError::BadKey(_) | HandshakeError::Internal(_)) => {
                DestroyReason::INTERNAL
            }
            CreateError::UnknownHandshakeType(_)
            | CreateError::Refused(_)
            | CreateError::FastWsNotFromClient
            | CreateError::Handshake(_) => DestroyReason::PROTOCOL,
        }
    }
}

/// Split a CREATED_FAST-style reply `A | B` (2 × 20 bytes).
fn split_pair(reply: &[u8; 2 * HASH_LEN]) -> ([u8; HASH_LEN], [u8; HASH_LEN]) {
    let mut a = [0u8; HASH_LEN];
    let mut b = [0u8; HASH_LEN];
    let (ra, rb) = reply.split_at(HASH_LEN);
    a.copy_from_slice(ra);
    b.copy_from_slice(rb);
    (a, b)
}

/// The ntor-v3 reply message for client message `cm`: an empty extension list (congestion
/// control is never negotiated), or `None` (refusing the handshake) if `cm` is not a valid
/// extension list.
fn ntor_v3_reply(cm: &[u8]) -> Option<Vec<u8>> {
    ntor_v3::decode_extensions(cm).ok()?;
    ntor_v3::encode_extensions(&[]).ok()
}

/// Run the server handshake `msg` asks for. Returns the handshake kind, the hop's keys and
/// the reply message.
pub(crate) fn server_handshake<R: CryptoRng + ?Sized>(
    rng: &mut R,
    keys: &OnionKeys,
    msg: &ChanMsg,
    from_client: bool,
) -> Result<(HandshakeKind, HopKeys, ChanMsg), CreateError> {
    let policy = keys.policy;
    let refuse_tap = || CreateError::Refused(HandshakeKind::Tap);
    match msg {
        ChanMsg::CreateFast(c) => {
            if !policy.accept_create_fast {
                return Err(CreateError::Refused(HandshakeKind::CreateFast));
            }
            let (hop, reply) = fast::server(rng, c.x())?;
            let (y, kh) = split_pair(&reply);
            Ok((
                HandshakeKind::CreateFast,
                hop,
                ChanMsg::CreatedFast(CreatedFast::new(y, kh)),
            ))
        }
        ChanMsg::CreateFastWs(c) => {
            if !from_client {
                return Err(CreateError::FastWsNotFromClient);
            }
            if !policy.accept_create_fast_ws {
                return Err(CreateError::Refused(HandshakeKind::CreateFastWs));
            }
            let (hop, reply) =
                keys.with_tap_keys(|tap_keys| fast_ws::server(rng, tap_keys, c.enc_x()))?;
            let (enc_y, kh) = split_pair(&reply);
            Ok((
                HandshakeKind::CreateFastWs,
                hop,
                ChanMsg::CreatedFastWs(CreatedFastWs::new(enc_y, kh)),
            ))
        }
        ChanMsg::Create(c) => {
            if !policy.accept_tap {
                return Err(refuse_tap());
            }
            let (hop, reply) =
                keys.with_tap_keys(|tap_keys| tap::server(rng, tap_keys, c.handshake()))?;
            Ok((
                HandshakeKind::Tap,
                hop,
                ChanMsg::Created(Created::new(reply)),
            ))
        }
        ChanMsg::Create2(c) => {
            let (kind, hop, reply) = match c.htype() {
                htype::TAP => {
                    if !policy.accept_tap {
                        return Err(refuse_tap());
                    }
                    let (hop, reply) =
                        keys.with_tap_keys(|tap_keys| tap::server(rng, tap_keys, c.hdata()))?;
                    (HandshakeKind::Tap, hop, reply.to_vec())
                }
                htype::NTOR => {
                    let (hop, reply) = ntor::server(rng, keys.ntor_keys(), c.hdata())?;
                    (HandshakeKind::Ntor, hop, reply.to_vec())
                }
                htype::NTOR_V3 => {
                    let (hop, reply, _cm) = ntor_v3::server(
                        rng,
                        keys.ntor_v3_keys(),
                        c.hdata(),
                        CIRCUIT_EXTEND_VERIFICATION,
                        ntor_v3_reply,
                    )?;
                    (HandshakeKind::NtorV3, hop, reply)
                }
                other => return Err(CreateError::UnknownHandshakeType(other)),
            };
            Ok((kind, hop, ChanMsg::Created2(Created2::new(reply)?)))
        }
        other => Err(CreateError::NotCreate(other.cmd())),
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(
            CreateError::UnknownHandshakeType(7).destroy_reason(),
            DestroyReason::PROTOCOL
        );
        assert_eq!(
            CreateError::Handshake(HandshakeError::AuthFailed).destroy_reason(),
            DestroyReason::PROTOCOL
        );
        assert_eq!(
            CreateError::Handshake(HandshakeError::BadKey("x")).destroy_reason(),
            DestroyReason::INTERNAL
        );
        assert_eq!(
            CreateError::NotCreate(ChanCmd::RELAY).destroy_reason(),
            DestroyReason::INTERNAL
        );
        assert_eq!(
            CreateError::Refused(HandshakeKind::Tap).to_string(),
            "Tap handshakes are refused by this relay"
        );
    }

    #[test]
    fn ntor_v3_reply_never_negotiates() {
        use crate::handshake::ntor_v3::NtorV3Extension;
        let cc = ntor_v3::encode_extensions(&[NtorV3Extension::CcRequest]).unwrap();
        assert_eq!(ntor_v3_reply(&cc), Some(vec![0]));
        assert_eq!(ntor_v3_reply(&[0]), Some(vec![0]));
        assert_eq!(ntor_v3_reply(&[]), None);
        assert_eq!(ntor_v3_reply(&[1, 1, 0, 9]), None);
        assert!(!HandshakeKind::Ntor.first_hop_only());
        assert!(HandshakeKind::CreateFastWs.first_hop_only());
    }
}
