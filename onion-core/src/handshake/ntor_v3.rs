//! The ntor-v3 handshake (proposal 332; CREATE2 handshake type 3), client and server side,
//! and the extension list its encrypted messages carry.
//!
//! ntor-v3 adds to ntor an encrypted, authenticated message in each direction: the client's
//! (`CM`, no forward secrecy) reaches only the relay whose onion key is `B`; the relay reads
//! it and chooses its reply (`SM`). Both sides also bind a *verification string* that must
//! be equal on both sides; circuit extension uses [`CIRCUIT_EXTEND_VERIFICATION`].
//!
//! ```text
//! client -> relay:  ID (32) | B (32) | X (32) | ENC(ENC_K1, CM) | MAC (32)
//! relay  -> client: Y (32) | AUTH (32) | ENC(ENC_KEY, SM)
//!
//! ENCAP(s) = u64_be(len(s)) | s
//! H(s, t) = SHA3-256(ENCAP(t) | s)     MAC(k, m, t) = SHA3-256(ENCAP(t) | ENCAP(k) | m)
//! KDF(s, t) = SHAKE-256(ENCAP(t) | s)  ENC = AES-256-CTR, zero IV
//!
//! ENC_K1 | MAC_K1 = KDF(EXP(B,x) | ID | X | B | PROTOID | ENCAP(VER), t_msgkdf)
//! MAC             = MAC(MAC_K1, ID | B | X | ENC(ENC_K1, CM), t_msgmac)
//! secret_input    = EXP(X,y) | EXP(X,b) | ID | B | X | Y | PROTOID | ENCAP(VER)
//! key_seed        = H(secret_input, t_key_seed)    verify = H(secret_input, t_verify)
//! ENC_KEY | Df | Db | Kf | Kb | KH | ... = KDF(key_seed, t_final)
//! AUTH = H(verify | ID | B | Y | X | MAC | ENCAP(ENC(ENC_KEY, SM)) | PROTOID | "Server",
//!          t_auth)
//! ```
//!
//! The relay's key material is the keystream after `ENC_KEY`: its first [`HopKeys::LEN`]
//! bytes are `Df | Db | Kf | Kb` (tor-spec §5.2.2 order), followed by the 20-byte onion
//! service nonce `KH`, which circuit extension does not use (C tor `onion_skin_create`).
//!
//! The messages themselves are extension lists ([`NtorV3Extension`]): a count byte, then
//! `type (1) | length (1) | body` per extension (C tor's `trn_extension`). The client asks
//! for congestion control (proposal 324 §10.3) with [`NtorV3Extension::CcRequest`], and the
//! relay answers with [`NtorV3Extension::CcResponse`].
//!
//! [`HopKeys::LEN`]: crate::crypto::keys::HopKeys::LEN

use onion_cell::bytes::{
    DecodeError, DecodeResult, EncodeError, EncodeResult, Readable, Reader, Writeable, Writer,
    write_u8_prefixed,
};
use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};

// The handshake proper (`ntor_v3/handshake.rs`: `client1`, `server`, `client2` and the
// proposal 332 §X.2 test vector) needs SHAKE-256, which sha3 0.12 moved to the `shake` crate.
// Once onion-core depends on `shake = "0.1.0"`, enable it by uncommenting these two lines:
mod handshake;
pub use handshake::{NtorV3ClientState, client1, client2, server};

/// The ntor-v3 protocol identifier for circuit extension, `PROTOID` (proposal 332 §A.2).
pub const PROTOID: &[u8] = b"ntor3-curve25519-sha3_256-1";

/// The verification string C tor and Arti use for circuit extension (CREATE2 / EXTEND2).
pub const CIRCUIT_EXTEND_VERIFICATION: &[u8] = b"circuit extend";

/// Length of a relay's Ed25519 identity (`ID_LEN`).
pub const ID_LEN: usize = 32;
/// Length of a Curve25519 public key (`PUB_KEY_LEN`).
pub const PUB_KEY_LEN: usize = 32;
/// Length of the message MAC (`MAC_LEN`) and of `AUTH` (`DIGEST_LEN`).
pub const MAC_LEN: usize = 32;
/// Length of the client's handshake without its encrypted message: `ID | B | X | MAC`.
pub const CLIENT_HANDSHAKE_OVERHEAD: usize = ID_LEN + 2 * PUB_KEY_LEN + MAC_LEN;
/// Length of the relay's reply without its encrypted message: `Y | AUTH`.
pub const SERVER_HANDSHAKE_OVERHEAD: usize = PUB_KEY_LEN + MAC_LEN;

/// What a client knows about a relay to run ntor-v3 with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtorV3PublicKey {
    /// The relay's Ed25519 identity key.
    pub id: [u8; ID_LEN],
    /// The relay's ntor onion key `B`.
    pub pk: PublicKey,
}

/// One of a relay's ntor onion keys, with its public half.
#[derive(Clone)]
pub struct NtorV3SecretKey {
    /// The public half, as clients know it.
    pub pk: NtorV3PublicKey,
    /// The secret onion key `b`.
    pub sk: StaticSecret,
}

impl NtorV3SecretKey {
    /// Build the key pair of secret onion key `sk` for the relay whose Ed25519 identity is
    /// `id`.
    pub fn new(id: [u8; ID_LEN], sk: StaticSecret) -> Self {
        let pk = PublicKey::from(&sk);
        NtorV3SecretKey {
            pk: NtorV3PublicKey { id, pk },
            sk,
        }
    }

    /// Generate a fresh onion key for the relay whose Ed25519 identity is `id`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, id: [u8; ID_LEN]) -> Self {
        Self::new(id, StaticSecret::random_from_rng(rng))
    }
}

impl std::fmt::Debug for NtorV3SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtorV3SecretKey")
            .field("pk", &self.pk)
            .finish_non_exhaustive()
    }
}

/// Extension type numbers of the ntor-v3 messages.
pub mod ext_type {
    /// Congestion control request, client to relay (proposal 324 §10.3).
    pub const CC_REQUEST: u8 = 0x01;
    /// Congestion control response, relay to client (proposal 324 §10.3).
    pub const CC_RESPONSE: u8 = 0x02;
}

/// One extension of an ntor-v3 client or relay message.
///
/// Per proposal 332 §A.2 a party ignores the extension types it does not know, and all but
/// the first occurrence of a type; the decoder keeps every extension, in order, and leaves
/// that choice to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NtorV3Extension {
    /// The client wants congestion control on this circuit (type 1, empty body).
    CcRequest,
    /// The relay accepts congestion control (type 2): its `cc_sendme_inc`.
    CcResponse {
        /// The SENDME increment, in cells, both ends will use.
        sendme_inc: u8,
    },
    /// An extension of another type, kept as is.
    ///
    /// `ty` should not be a type listed in [`ext_type`]: such an extension would encode
    /// fine but decode as its own variant.
    Unrecognized {
        /// The extension type.
        ty: u8,
        /// The extension body (at most 255 bytes).
        body: Vec<u8>,
    },
}

impl NtorV3Extension {
    /// This extension's type number.
    pub fn ext_type(&self) -> u8 {
        match self {
            NtorV3Extension::CcRequest => ext_type::CC_REQUEST,
            NtorV3Extension::CcResponse { .. } => ext_type::CC_RESPONSE,
            NtorV3Extension::Unrecognized { ty, .. } => *ty,
        }
    }
}

impl Readable for NtorV3Extension {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let ty = r.take_u8()?;
        let len = usize::from(r.take_u8()?);
        let body = r.take(len)?;
        match ty {
            ext_type::CC_REQUEST => {
                if body.is_empty() {
                    Ok(NtorV3Extension::CcRequest)
                } else {
                    Err(DecodeError::BadLength {
                        what: "ntor-v3 congestion control request",
                        len,
                    })
                }
            }
            ext_type::CC_RESPONSE => match body {
                [sendme_inc] => Ok(NtorV3Extension::CcResponse {
                    sendme_inc: *sendme_inc,
                }),
                _ => Err(DecodeError::BadLength {
                    what: "ntor-v3 congestion control response",
                    len,
                }),
            },
            ty => Ok(NtorV3Extension::Unrecognized {
                ty,
                body: body.to_vec(),
            }),
        }
    }
}

impl Writeable for NtorV3Extension {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        const WHAT: &str = "ntor-v3 extension body";
        w.write_u8(self.ext_type());
        match self {
            NtorV3Extension::CcRequest => write_u8_prefixed(w, WHAT, &[]),
            NtorV3Extension::CcResponse { sendme_inc } => {
                write_u8_prefixed(w, WHAT, &[*sendme_inc])
            }
            NtorV3Extension::Unrecognized { body, .. } => write_u8_prefixed(w, WHAT, body),
        }
    }
}

/// Encode an ntor-v3 message: `N_EXTENSIONS (1) | extension*`.
///
/// # Errors
///
/// [`EncodeError::TooLong`] if there are more than 255 extensions or a body is longer than
/// 255 bytes.
pub fn encode_extensions(exts: &[NtorV3Extension]) -> EncodeResult<Vec<u8>> {
    let n = u8::try_from(exts.len()).map_err(|_| EncodeError::TooLong {
        what: "ntor-v3 extension list",
        len: exts.len(),
        max: u8::MAX.into(),
    })?;
    let mut out = vec![n];
    for e in exts {
        out.write(e)?;
    }
    Ok(out)
}

/// Decode an ntor-v3 message: `N_EXTENSIONS (1) | extension*`, filling `msg` exactly.
///
/// # Errors
///
/// [`DecodeError::Truncated`] if `msg` is empty or ends inside the list;
/// [`DecodeError::ExtraBytes`] if bytes follow the last extension;
/// [`DecodeError::BadLength`] if a congestion control extension has the wrong body length.
pub fn decode_extensions(msg: &[u8]) -> DecodeResult<Vec<NtorV3Extension>> {
    let mut r = Reader::new(msg);
    let n = r.take_u8()?;
    let exts = (0..n)
        .map(|_| r.extract::<NtorV3Extension>())
        .collect::<DecodeResult<Vec<_>>>()?;
    r.should_be_exhausted()?;
    Ok(exts)
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        assert_eq!(encode_extensions(&[]).unwrap(), [0]);
        assert_eq!(
            encode_extensions(&[NtorV3Extension::CcRequest]).unwrap(),
            [1, 1, 0]
        );
        assert_eq!(
            encode_extensions(&[NtorV3Extension::CcResponse { sendme_inc: 31 }]).unwrap(),
            [1, 2, 1, 31]
        );
        let v = [
            NtorV3Extension::CcRequest,
            NtorV3Extension::Unrecognized {
                ty: 3,
                body: vec![1, 2],
            },
        ];
        let b = encode_extensions(&v).unwrap();
        assert_eq!(b, [2, 1, 0, 3, 2, 1, 2]);
        assert_eq!(decode_extensions(&b).unwrap(), v);
        assert_eq!(v[1].ext_type(), 3);
    }

    #[test]
    fn keeps_duplicates_in_order() {
        let b = [3, 2, 1, 31, 2, 1, 7, 9, 0];
        assert_eq!(
            decode_extensions(&b).unwrap(),
            [
                NtorV3Extension::CcResponse { sendme_inc: 31 },
                NtorV3Extension::CcResponse { sendme_inc: 7 },
                NtorV3Extension::Unrecognized {
                    ty: 9,
                    body: vec![]
                },
            ]
        );
    }

    #[test]
    fn truncated_lists_rejected() {
        for b in [
            &[][..],           // no count
            &[1][..],          // count, no extension
            &[1, 2][..],       // type, no length
            &[1, 2, 1][..],    // length, no body
            &[2, 1, 0][..],    // one of two extensions
            &[1, 9, 3, 0][..], // body shorter than its length
        ] {
            assert!(
                matches!(decode_extensions(b), Err(DecodeError::Truncated { .. })),
                "{b:?}"
            );
        }
    }

    #[test]
    fn trailing_bytes_rejected() {
        assert_eq!(decode_extensions(&[0, 0]), Err(DecodeError::ExtraBytes(1)));
        assert_eq!(
            decode_extensions(&[1, 1, 0, 5, 6]),
            Err(DecodeError::ExtraBytes(2))
        );
    }

    #[test]
    fn bad_cc_lengths_rejected() {
        assert!(matches!(
            decode_extensions(&[1, 1, 1, 0]),
            Err(DecodeError::BadLength { len: 1, .. })
        ));
        assert!(matches!(
            decode_extensions(&[1, 2, 0]),
            Err(DecodeError::BadLength { len: 0, .. })
        ));
        assert!(matches!(
            decode_extensions(&[1, 2, 2, 31, 0]),
            Err(DecodeError::BadLength { len: 2, .. })
        ));
    }

    #[test]
    fn too_long_rejected() {
        let big = NtorV3Extension::Unrecognized {
            ty: 7,
            body: vec![0; 256],
        };
        assert!(matches!(
            encode_extensions(&[big]),
            Err(EncodeError::TooLong { len: 256, .. })
        ));
        let many = vec![NtorV3Extension::CcRequest; 256];
        assert!(matches!(
            encode_extensions(&many),
            Err(EncodeError::TooLong { len: 256, .. })
        ));
        let max = vec![NtorV3Extension::CcRequest; 255];
        assert_eq!(
            decode_extensions(&encode_extensions(&max).unwrap()).unwrap(),
            max
        );
    }

    fn ext() -> impl Strategy<Value = NtorV3Extension> {
        prop_oneof![
            Just(NtorV3Extension::CcRequest),
            any::<u8>().prop_map(|sendme_inc| NtorV3Extension::CcResponse { sendme_inc }),
            (3u8.., prop::collection::vec(any::<u8>(), 0..=255))
                .prop_map(|(ty, body)| NtorV3Extension::Unrecognized { ty, body }),
            (Just(0u8), prop::collection::vec(any::<u8>(), 0..=3))
                .prop_map(|(ty, body)| NtorV3Extension::Unrecognized { ty, body }),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_encode(v in prop::collection::vec(ext(), 0..8)) {
            let b = encode_extensions(&v).unwrap();
            let d = decode_extensions(&b).unwrap();
            prop_assert_eq!(&d, &v);
            prop_assert_eq!(encode_extensions(&d).unwrap(), b);
        }

        #[test]
        fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(d) = decode_extensions(&b) {
                prop_assert_eq!(encode_extensions(&d).unwrap(), b);
            }
        }
    }
}
