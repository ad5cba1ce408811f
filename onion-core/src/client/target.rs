//! What the client knows of a relay ([`HopTarget`]), which handshake to run with it
//! ([`HandshakeKind`]), and the client half of every handshake behind one type.

use std::fmt;
use std::net::{SocketAddrV4, SocketAddrV6};

use onion_cell::relaycell::LinkSpec;
use onion_cell::relaycell::linkspec::{ED25519_ID_LEN, RSA_ID_LEN};
use rand_core::CryptoRng;

use super::error::CircuitError;
use crate::crypto::keys::HopKeys;
use crate::crypto::relay::HopNum;
use crate::handshake::ntor::NtorPublicKey;
use crate::handshake::ntor_v3::{self, NtorV3Extension, NtorV3PublicKey};
use crate::handshake::{HandshakeError, fast, fast_ws, htype, ntor, tap};

pub use crate::handshake::HandshakeKind;

/// What the client knows of a relay to reach it and to run a handshake with it: the link
/// specifiers that go into EXTEND2, and its onion keys.
///
/// Fill in what the directory (or the configuration, for our own ORs) says. Nothing here is
/// checked until a handshake or an extend cell needs it.
#[derive(Clone, Default)]
pub struct HopTarget {
    /// The relay's IPv4 ORPort (link specifier type 0; also the legacy EXTEND address).
    pub ipv4: Option<SocketAddrV4>,
    /// The relay's IPv6 ORPort (link specifier type 1).
    pub ipv6: Option<SocketAddrV6>,
    /// SHA-1 of the relay's RSA identity key (type 2; ntor's `ID`; legacy EXTEND).
    pub rsa_id: Option<[u8; RSA_ID_LEN]>,
    /// The relay's Ed25519 identity (type 3; ntor-v3's `ID`).
    pub ed_id: Option<[u8; ED25519_ID_LEN]>,
    /// The relay's ntor onion key (`ntor-onion-key`), for ntor and ntor-v3.
    pub ntor_onion_key: Option<x25519_dalek::PublicKey>,
    /// The relay's TAP onion key (`onion-key`, RSA-1024), for TAP and CREATE_FAST_WS.
    pub tap_onion_key: Option<rsa::PublicKey>,
    /// Whether the relay speaks ntor-v3 (`Relay=4` in its protocol versions).
    pub supports_ntor_v3: bool,
}

impl fmt::Debug for HopTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HopTarget")
            .field("ipv4", &self.ipv4)
            .field("ipv6", &self.ipv6)
            .field("rsa_id", &self.rsa_id.map(hex::encode))
            .field("ed_id", &self.ed_id.map(hex::encode))
            .field("ntor_onion_key", &self.ntor_onion_key.is_some())
            .field("tap_onion_key", &self.tap_onion_key.is_some())
            .field("supports_ntor_v3", &self.supports_ntor_v3)
            .finish()
    }
}

impl HopTarget {
    /// The best handshake this relay allows for a hop after the first: ntor-v3 if the relay
    /// has an Ed25519 identity and an ntor key and speaks ntor-v3, else ntor if it has an RSA
    /// identity and an ntor key, else TAP if it has a TAP onion key. `None` if none applies.
    pub fn best_handshake(&self) -> Option<HandshakeKind> {
        let ntor_key = self.ntor_onion_key.is_some();
        if ntor_key && self.ed_id.is_some() && self.supports_ntor_v3 {
            Some(HandshakeKind::NtorV3)
        } else if ntor_key && self.rsa_id.is_some() {
            Some(HandshakeKind::Ntor)
        } else if self.tap_onion_key.is_some() {
            Some(HandshakeKind::Tap)
        } else {
            None
        }
    }

    /// The link specifiers of an EXTEND2 to this relay, in the order tor-spec §5.1.2
    /// recommends: IPv4, RSA identity, Ed25519 identity, IPv6.
    pub fn link_specs(&self) -> Vec<LinkSpec> {
        let mut v = Vec::with_capacity(4);
        if let Some(a) = self.ipv4 {
            v.push(LinkSpec::Ipv4 {
                addr: *a.ip(),
                port: a.port(),
            });
        }
        if let Some(id) = self.rsa_id {
            v.push(LinkSpec::RsaId(id));
        }
        if let Some(id) = self.ed_id {
            v.push(LinkSpec::Ed25519Id(id));
        }
        if let Some(a) = self.ipv6 {
            v.push(LinkSpec::Ipv6 {
                addr: *a.ip(),
                port: a.port(),
            });
        }
        v
    }

    /// The link specifiers for an EXTEND2 to this relay, checked: at least one address and
    /// one identity (an extending OR must verify the identity, tor-spec §5.1.2).
    pub(crate) fn extend2_link_specs(
        &self,
        kind: HandshakeKind,
    ) -> Result<Vec<LinkSpec>, CircuitError> {
        if self.ipv4.is_none() && self.ipv6.is_none() {
            return Err(CircuitError::MissingTargetInfo {
                kind,
                what: "no IPv4 or IPv6 ORPort to extend to",
            });
        }
        if self.rsa_id.is_none() && self.ed_id.is_none() {
            return Err(CircuitError::MissingTargetInfo {
                kind,
                what: "no RSA or Ed25519 identity to extend to",
            });
        }
        Ok(self.link_specs())
    }

    /// The TAP onion key, or the error for `kind`.
    fn tap_key(&self, kind: HandshakeKind) -> Result<&rsa::PublicKey, CircuitError> {
        self.tap_onion_key
            .as_ref()
            .ok_or(CircuitError::MissingTargetInfo {
                kind,
                what: "no TAP onion key",
            })
    }

    /// The ntor onion key, or the error for `kind`.
    fn ntor_key(&self, kind: HandshakeKind) -> Result<x25519_dalek::PublicKey, CircuitError> {
        self.ntor_onion_key.ok_or(CircuitError::MissingTargetInfo {
            kind,
            what: "no ntor onion key",
        })
    }
}

/// The client's secret state between sending its half of a handshake and receiving the
/// relay's.
pub(crate) enum ClientHandshake {
    /// TAP.
    Tap(tap::TapClientState),
    /// CREATE_FAST.
    Fast(fast::FastClientState),
    /// CREATE_FAST_WS.
    FastWs(fast_ws::FastWsClientState),
    /// ntor.
    Ntor(ntor::NtorClientState),
    /// ntor-v3.
    NtorV3(ntor_v3::NtorV3ClientState),
    /// TAP whose onion skin and `g^xy` are computed elsewhere (the seed's RELAY_INFO): the
    /// relay's reply waits here, once it came, for [`ClientHandshake::finish_tap_remote`].
    TapRemote(Option<Vec<u8>>),
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientHandshake::Tap(_) => "ClientHandshake::Tap",
            ClientHandshake::Fast(_) => "ClientHandshake::Fast",
            ClientHandshake::FastWs(_) => "ClientHandshake::FastWs",
            ClientHandshake::Ntor(_) => "ClientHandshake::Ntor",
            ClientHandshake::NtorV3(_) => "ClientHandshake::NtorV3",
            ClientHandshake::TapRemote(_) => "ClientHandshake::TapRemote",
        })
    }
}

/// The client's first handshake message.
pub(crate) struct Onionskin {
    /// The CREATE2 / EXTEND2 handshake type (meaningless for CREATE_FAST and CREATE_FAST_WS).
    pub(crate) htype: u16,
    /// The handshake data.
    pub(crate) data: Vec<u8>,
}

/// Client, step 1, of handshake `kind` with `target`.
///
/// Errors are the caller's: missing keys ([`CircuitError::MissingTargetInfo`]) or an unusable
/// key ([`CircuitError::HandshakeSetup`]).
pub(crate) fn client1<R: CryptoRng + ?Sized>(
    rng: &mut R,
    target: &HopTarget,
    kind: HandshakeKind,
) -> Result<(ClientHandshake, Onionskin), CircuitError> {
    let setup = |source| CircuitError::HandshakeSetup { kind, source };
    Ok(match kind {
        HandshakeKind::NtorV3 => {
            let id = target.ed_id.ok_or(CircuitError::MissingTargetInfo {
                kind,
                what: "no Ed25519 identity",
            })?;
            let relay = NtorV3PublicKey {
                id,
                pk: target.ntor_key(kind)?,
            };
            // We ask for nothing (no congestion control): an empty extension list.
            let cm = ntor_v3::encode_extensions(&[]).map_err(CircuitError::Encode)?;
            let (state, data) =
                ntor_v3::client1(rng, &relay, &cm, ntor_v3::CIRCUIT_EXTEND_VERIFICATION)
                    .map_err(setup)?;
            (
                ClientHandshake::NtorV3(state),
                Onionskin {
                    htype: htype::NTOR_V3,
                    data,
                },
            )
        }
        HandshakeKind::Ntor => {
            let id = target.rsa_id.ok_or(CircuitError::MissingTargetInfo {
                kind,
                what: "no RSA identity",
            })?;
            let relay = NtorPublicKey {
                id,
                pk: target.ntor_key(kind)?,
            };
            let (state, data) = ntor::client1(rng, &relay);
            (
                ClientHandshake::Ntor(state),
                Onionskin {
                    htype: htype::NTOR,
                    data: data.to_vec(),
                },
            )
        }
        HandshakeKind::Tap => {
            let (state, data) = tap::client1(rng, target.tap_key(kind)?).map_err(setup)?;
            (
                ClientHandshake::Tap(state),
                Onionskin {
                    htype: htype::TAP,
                    data: data.to_vec(),
                },
            )
        }
        HandshakeKind::CreateFast => {
            let (state, data) = fast::client1(rng);
            (
                ClientHandshake::Fast(state),
                Onionskin {
                    htype: htype::TAP,
                    data: data.to_vec(),
                },
            )
        }
        HandshakeKind::CreateFastWs => {
            let (state, data) = fast_ws::client1(rng, target.tap_key(kind)?).map_err(setup)?;
            (
                ClientHandshake::FastWs(state),
                Onionskin {
                    htype: htype::TAP,
                    data: data.to_vec(),
                },
            )
        }
    })
}

/// Client, step 1, of TAP with an onion skin computed elsewhere (the seed's RELAY_INFO):
/// `onion_skin` must be [`tap::TAP_C_HANDSHAKE_LEN`] bytes. Step 2 is
/// [`ClientHandshake::finish_tap_remote`] with the shared secret computed elsewhere too.
pub(crate) fn tap_remote_client1(
    onion_skin: &[u8],
) -> Result<(ClientHandshake, Onionskin), CircuitError> {
    if onion_skin.len() != tap::TAP_C_HANDSHAKE_LEN {
        return Err(CircuitError::HandshakeSetup {
            kind: HandshakeKind::Tap,
            source: HandshakeError::Malformed("TAP onion skin must be 186 bytes"),
        });
    }
    Ok((
        ClientHandshake::TapRemote(None),
        Onionskin {
            htype: htype::TAP,
            data: onion_skin.to_vec(),
        },
    ))
}

impl ClientHandshake {
    /// Whether this is a [`ClientHandshake::TapRemote`] (its step 2 needs the shared secret).
    pub(crate) fn is_tap_remote(&self) -> bool {
        matches!(self, ClientHandshake::TapRemote(_))
    }

    /// Step 2 of [`tap_remote_client1`]: check the relay's `reply` (`g^y | KH`) against the
    /// shared secret `g^xy` computed elsewhere and derive the keys of hop `hop`.
    pub(crate) fn finish_tap_remote(
        hop: HopNum,
        secret: &crate::crypto::dh::SharedSecret,
        reply: &[u8],
    ) -> Result<HopKeys, CircuitError> {
        tap::client2_from_secret(secret, reply)
            .map_err(|source| CircuitError::Handshake { hop, source })
    }

    /// Client, step 2: check the relay's reply and derive the keys of hop `hop`.
    pub(crate) fn finish(self, hop: HopNum, reply: &[u8]) -> Result<HopKeys, CircuitError> {
        let fail = |source| CircuitError::Handshake { hop, source };
        match self {
            ClientHandshake::TapRemote(_) => Err(CircuitError::Internal(
                "TAP with RELAY_INFO finishes with the shared secret",
            )),
            ClientHandshake::Tap(s) => tap::client2(s, reply).map_err(fail),
            ClientHandshake::Fast(s) => fast::client2(s, reply).map_err(fail),
            ClientHandshake::FastWs(s) => fast_ws::client2(s, reply).map_err(fail),
            ClientHandshake::Ntor(s) => ntor::client2(s, reply).map_err(fail),
            ClientHandshake::NtorV3(s) => {
                let (sm, keys) = ntor_v3::client2(s, reply, ntor_v3::CIRCUIT_EXTEND_VERIFICATION)
                    .map_err(fail)?;
                check_server_message(&sm).map_err(fail)?;
                Ok(keys)
            }
        }
    }
}

/// Check the relay's ntor-v3 message. We asked for nothing, so it may only hold extensions we
/// do not know (ignored, proposal 332 §A.2); an accepted congestion control would make both
/// ends disagree on flow control. An empty message is read as an empty list.
fn check_server_message(sm: &[u8]) -> Result<(), HandshakeError> {
    if sm.is_empty() {
        return Ok(());
    }
    let exts = ntor_v3::decode_extensions(sm)
        .map_err(|_| HandshakeError::Malformed("ntor-v3 relay message is not an extension list"))?;
    if exts
        .iter()
        .any(|e| matches!(e, NtorV3Extension::CcResponse { .. }))
    {
        return Err(HandshakeError::Malformed(
            "ntor-v3 relay message accepts congestion control, which we did not request",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn full_target() -> HopTarget {
        HopTarget {
            ipv4: Some(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9001)),
            ipv6: Some(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9002, 0, 0)),
            rsa_id: Some([2; 20]),
            ed_id: Some([3; 32]),
            ntor_onion_key: Some(x25519_dalek::PublicKey::from([9; 32])),
            tap_onion_key: None,
            supports_ntor_v3: true,
        }
    }

    #[test]
    fn best_handshake_choice() {
        let mut t = full_target();
        assert_eq!(t.best_handshake(), Some(HandshakeKind::NtorV3));
        t.supports_ntor_v3 = false;
        assert_eq!(t.best_handshake(), Some(HandshakeKind::Ntor));
        t.supports_ntor_v3 = true;
        t.ed_id = None;
        assert_eq!(t.best_handshake(), Some(HandshakeKind::Ntor));
        t.rsa_id = None;
        assert_eq!(t.best_handshake(), None);
        t.tap_onion_key = Some(crate::handshake::tap::test::test_keys().0.to_public_key());
        assert_eq!(t.best_handshake(), Some(HandshakeKind::Tap));
        assert_eq!(HopTarget::default().best_handshake(), None);
    }

    #[test]
    fn link_spec_order() {
        let t = full_target();
        let types: Vec<u8> = t.link_specs().iter().map(|s| s.lstype().0).collect();
        assert_eq!(types, [0, 2, 3, 1]);
        let mut no_addr = full_target();
        no_addr.ipv4 = None;
        no_addr.ipv6 = None;
        assert!(matches!(
            no_addr.extend2_link_specs(HandshakeKind::Ntor),
            Err(CircuitError::MissingTargetInfo { .. })
        ));
        let mut no_id = full_target();
        no_id.rsa_id = None;
        no_id.ed_id = None;
        assert!(matches!(
            no_id.extend2_link_specs(HandshakeKind::Ntor),
            Err(CircuitError::MissingTargetInfo { .. })
        ));
    }

    #[test]
    fn tap_remote_takes_a_186_byte_skin() {
        let (h, skin) = tap_remote_client1(&[7u8; tap::TAP_C_HANDSHAKE_LEN]).unwrap();
        assert!(h.is_tap_remote());
        assert_eq!(skin.htype, htype::TAP);
        assert_eq!(skin.data, vec![7u8; tap::TAP_C_HANDSHAKE_LEN]);
        // Its ordinary step 2 is refused: it needs the shared secret.
        assert!(h.finish(HopNum::FIRST, &[0u8; 148]).is_err());
        for len in [
            0,
            tap::TAP_C_HANDSHAKE_LEN - 1,
            tap::TAP_C_HANDSHAKE_LEN + 1,
        ] {
            assert!(matches!(
                tap_remote_client1(&vec![0u8; len]),
                Err(CircuitError::HandshakeSetup { .. })
            ));
        }
    }

    #[test]
    fn missing_keys_are_caller_errors() {
        let mut rng = crate::testing::seeded_rng(1);
        let t = HopTarget::default();
        for kind in [
            HandshakeKind::NtorV3,
            HandshakeKind::Ntor,
            HandshakeKind::Tap,
            HandshakeKind::CreateFastWs,
        ] {
            let err = client1(&mut rng, &t, kind).err();
            assert!(
                matches!(err, Some(CircuitError::MissingTargetInfo { kind: k, .. }) if k == kind),
                "{kind}: {err:?}"
            );
        }
        assert!(client1(&mut rng, &t, HandshakeKind::CreateFast).is_ok());
        // A 2048-bit TAP key is refused by the handshake itself.
        let t = HopTarget {
            tap_onion_key: Some(crate::handshake::tap::test::test_keys().2.to_public_key()),
            ..HopTarget::default()
        };
        assert!(matches!(
            client1(&mut rng, &t, HandshakeKind::Tap).err(),
            Some(CircuitError::HandshakeSetup {
                source: HandshakeError::BadKey(_),
                ..
            })
        ));
    }

    #[test]
    fn server_message_checks() {
        assert_eq!(check_server_message(&[]), Ok(()));
        assert_eq!(check_server_message(&[0]), Ok(()));
        let unknown = ntor_v3::encode_extensions(&[NtorV3Extension::Unrecognized {
            ty: 77,
            body: vec![1, 2],
        }])
        .unwrap();
        assert_eq!(check_server_message(&unknown), Ok(()));
        let cc =
            ntor_v3::encode_extensions(&[NtorV3Extension::CcResponse { sendme_inc: 31 }]).unwrap();
        assert!(matches!(
            check_server_message(&cc),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(matches!(
            check_server_message(&[3, 1]),
            Err(HandshakeError::Malformed(_))
        ));
    }
}
