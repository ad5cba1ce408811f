//! Circuit-extension handshakes (tor-spec §5.1), client and server side, as pure functions.
//!
//! Every handshake takes its randomness from a caller-supplied [`rand_core::CryptoRng`] and
//! yields the hop's [`HopKeys`](crate::crypto::keys::HopKeys). Nothing here touches I/O.
//!
//! | handshake | cell | spec |
//! |---|---|---|
//! | [`tap`] | CREATE / CREATED, EXTEND / EXTENDED, CREATE2 type 0 | tor-spec §5.1.3 (removed from tor 0.4.9 relays; kept for our own ORs and the seed) |
//! | [`fast`] | CREATE_FAST / CREATED_FAST | tor-spec §5.1.5 |
//! | [`fast_ws`] | the seed's CREATE_FAST_WS (120) / CREATED_FAST_WS (121) | node-Tor README |
//! | [`ntor`] | CREATE2 type 2 | tor-spec §5.1.4 |
//! | [`ntor_v3`] | CREATE2 type 3 | proposal 332 |

use thiserror::Error;

pub mod fast;
pub mod fast_ws;
pub mod ntor;
pub mod ntor_v3;
pub mod tap;

/// CREATE2 handshake type numbers (tor-spec §5.1; ntor-v3 per C tor).
pub mod htype {
    /// TAP inside CREATE2 (refused by tor 0.4.9 relays).
    pub const TAP: u16 = 0x0000;
    /// ntor.
    pub const NTOR: u16 = 0x0002;
    /// ntor-v3 (proposal 332; `ONION_HANDSHAKE_TYPE_NTOR_V3` in C tor).
    pub const NTOR_V3: u16 = 0x0003;
}

/// A circuit-creation handshake (tor-spec §5.1), as chosen by a client or recorded by a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeKind {
    /// ntor-v3 (proposal 332), CREATE2 / EXTEND2 type 3. Needs the relay's Ed25519 identity
    /// and ntor onion key.
    NtorV3,
    /// ntor (tor-spec §5.1.4), CREATE2 / EXTEND2 type 2. Needs the relay's RSA identity and
    /// ntor onion key.
    Ntor,
    /// TAP (tor-spec §5.1.3), CREATE2 / EXTEND2 type 0, or CREATE / EXTEND with the
    /// `*_legacy_tap` methods. Needs the relay's TAP onion key. Refused by tor 0.4.9 relays:
    /// for our own ORs and the seed only.
    Tap,
    /// CREATE_FAST (tor-spec §5.1.5): first hop only, no public-key crypto. The link's TLS
    /// authentication of the relay is all the client gets.
    CreateFast,
    /// The seed's CREATE_FAST_WS: CREATE_FAST with `X` encrypted to the relay's TAP onion key.
    /// First hop only, and only to our own ORs.
    CreateFastWs,
}

impl HandshakeKind {
    /// Whether this handshake can only create the first hop (no EXTEND form). A relay that
    /// sees a circuit created this way knows it is the first hop (tor-spec §5.4).
    pub fn first_hop_only(self) -> bool {
        matches!(
            self,
            HandshakeKind::CreateFast | HandshakeKind::CreateFastWs
        )
    }
}

impl HandshakeKind {
    /// A short lower-case label, e.g. for metrics: `ntor_v3`, `ntor`, `tap`, `create_fast`,
    /// `create_fast_ws`.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeKind::NtorV3 => "ntor_v3",
            HandshakeKind::Ntor => "ntor",
            HandshakeKind::Tap => "tap",
            HandshakeKind::CreateFast => "create_fast",
            HandshakeKind::CreateFastWs => "create_fast_ws",
        }
    }
}

impl std::fmt::Display for HandshakeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandshakeKind::NtorV3 => "ntor-v3",
            HandshakeKind::Ntor => "ntor",
            HandshakeKind::Tap => "TAP",
            HandshakeKind::CreateFast => "CREATE_FAST",
            HandshakeKind::CreateFastWs => "CREATE_FAST_WS",
        })
    }
}

/// Why a handshake failed. Each variant says whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's handshake message has the wrong length or layout (peer's fault).
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// The peer's public value is degenerate or out of range (peer's fault): e.g. a DH value
    /// outside `[2, p-2]` or an all-zero X25519 shared secret.
    #[error("invalid public value in handshake: {0}")]
    BadPublicValue(&'static str),
    /// The peer's proof of key knowledge (KH, AUTH, MAC) did not verify (peer's fault, or an
    /// active attack).
    #[error("handshake authentication failed")]
    AuthFailed,
    /// The client's onion skin could not be decrypted, or names a key this relay does not
    /// hold (client's fault, or a rotated-out key).
    #[error("cannot decrypt onion skin: {0}")]
    Decrypt(&'static str),
    /// A key given by the caller is unusable (caller's fault): e.g. a non-1024-bit TAP key.
    #[error("unusable key: {0}")]
    BadKey(&'static str),
    /// An internal cryptographic operation failed unexpectedly.
    #[error("internal crypto error: {0}")]
    Internal(&'static str),
}

/// Result of a handshake step.
pub type HandshakeResult<T> = Result<T, HandshakeError>;
