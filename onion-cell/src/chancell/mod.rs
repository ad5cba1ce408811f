//! Channel cells (tor-spec §3): the command byte, the circuit ID, and one typed message per
//! command.
//!
//! A [`ChanCell`] is a [`CircId`] plus a [`ChanMsg`]. This module only knows about message
//! *bodies*; how cells are framed on a byte stream (circuit ID width, fixed 509-byte payloads
//! versus a 2-byte length) is the job of [`crate::codec`].
//!
//! Every command number is kept, known or not: [`ChanCmd`] is an open type and an unknown
//! command decodes to [`ChanMsg::Unrecognized`], which re-encodes byte for byte.
//!
//! Bodies of fixed-length cells are zero-padded to [`PAYLOAD_LEN`] on encoding and their
//! padding is ignored on decoding (tor-spec §3: "Receivers MUST ignore padding bytes").
//! Variable-length bodies are exact, except where tor-spec allows trailing bytes (CERTS,
//! AUTH_CHALLENGE, AUTHENTICATE), which are ignored.
//!
//! Besides the commands of tor-spec §3 this module knows the seed's (node-Tor) WebSocket
//! extension: CREATE_FAST_WS (120), CREATED_FAST_WS (121) and RELAY_WS (190).

use std::fmt;

use crate::bytes::{DecodeError, DecodeResult, EncodeResult, Reader, Writeable, Writer};
use crate::link::{AuthChallenge, Authenticate, Authorize, Certs, Netinfo, Versions};

#[cfg(test)]
pub(crate) mod arb;
mod msg;
#[cfg(test)]
mod testvec;

pub use msg::{
    Create, Create2, CreateFast, CreateFastWs, Created, Created2, CreatedFast, CreatedFastWs,
    Destroy, DestroyReason, Padding, PaddingNegotiate, PaddingNegotiateCmd, Relay, RelayWs,
    Unrecognized, Vpadding,
};

/// Length of the payload of a fixed-length cell (`PAYLOAD_LEN`, tor-spec §0.2).
pub const PAYLOAD_LEN: usize = 509;

/// Define an open `u8` code type: a newtype that accepts every value, with named constants for
/// the known ones, `From` conversions both ways, and `Display` / `Debug` that show the name
/// when there is one.
macro_rules! open_u8 {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$cmeta:meta])* $cname:ident = $val:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis struct $name(u8);

        impl $name {
            $( $(#[$cmeta])* pub const $cname: $name = $name($val); )*

            /// Wrap a raw value; every value is accepted (the type is open).
            pub const fn new(v: u8) -> Self {
                $name(v)
            }

            /// The raw value.
            pub const fn get(self) -> u8 {
                self.0
            }

            /// The name of this value as the specification spells it, if it is a known one.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$cname => Some(stringify!($cname)), )*
                    _ => None,
                }
            }
        }

        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                $name(v)
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v.0
            }
        }

        impl ::std::fmt::Display for $name {
            /// The name if known, else the number.
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}", self.0),
                }
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}({})", stringify!($name), n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }
    };
}
pub(crate) use open_u8;

open_u8! {
    /// A channel cell command (tor-spec §3), including the seed's WebSocket extension.
    ///
    /// Open: any byte is a valid `ChanCmd`; commands this crate does not know decode to
    /// [`ChanMsg::Unrecognized`].
    pub struct ChanCmd {
        /// Link keepalive padding (fixed).
        PADDING = 0,
        /// TAP circuit creation (fixed).
        CREATE = 1,
        /// TAP circuit creation reply (fixed).
        CREATED = 2,
        /// Relay cell (fixed).
        RELAY = 3,
        /// Circuit teardown (fixed).
        DESTROY = 4,
        /// Circuit creation without public-key crypto (fixed).
        CREATE_FAST = 5,
        /// Reply to CREATE_FAST (fixed).
        CREATED_FAST = 6,
        /// Link protocol version negotiation (variable).
        VERSIONS = 7,
        /// Time and address information (fixed).
        NETINFO = 8,
        /// Relay cell that may carry EXTEND/EXTEND2 (fixed).
        RELAY_EARLY = 9,
        /// Extensible circuit creation (fixed).
        CREATE2 = 10,
        /// Reply to CREATE2 (fixed).
        CREATED2 = 11,
        /// Link padding negotiation (fixed; padding-spec §2).
        PADDING_NEGOTIATE = 12,
        /// The seed's CREATE_FAST with X encrypted to the OR's onion key (fixed).
        CREATE_FAST_WS = 120,
        /// The seed's CREATED_FAST with Y encrypted under AES-128-CTR (fixed).
        CREATED_FAST_WS = 121,
        /// Variable-length padding (variable).
        VPADDING = 128,
        /// Certificates (variable).
        CERTS = 129,
        /// Responder's authentication challenge (variable).
        AUTH_CHALLENGE = 130,
        /// Initiator's authentication (variable).
        AUTHENTICATE = 131,
        /// Reserved for scanning resistance (variable).
        AUTHORIZE = 132,
        /// The seed's variable-length relay cell (variable).
        RELAY_WS = 190,
    }
}

impl ChanCmd {
    /// Whether cells with this command are variable-length (tor-spec §3, link protocol 3 and
    /// later): VERSIONS and every command from 128 up. So RELAY_WS (190) is variable while
    /// CREATE_FAST_WS (120) and CREATED_FAST_WS (121) are fixed.
    pub const fn is_var_len(self) -> bool {
        self.0 == Self::VERSIONS.0 || self.0 >= 128
    }

    /// Whether this crate decodes this command into a typed message (rather than
    /// [`ChanMsg::Unrecognized`]).
    pub fn is_recognized(self) -> bool {
        self.name().is_some()
    }

    /// Whether a cell with this command may carry `id` (tor-spec §5.1.1): link-level commands
    /// need circuit ID 0, circuit commands need a nonzero one. Unknown commands accept any.
    pub fn allows_circ_id(self, id: CircId) -> bool {
        match self {
            ChanCmd::PADDING
            | ChanCmd::VERSIONS
            | ChanCmd::NETINFO
            | ChanCmd::PADDING_NEGOTIATE
            | ChanCmd::VPADDING
            | ChanCmd::CERTS
            | ChanCmd::AUTH_CHALLENGE
            | ChanCmd::AUTHENTICATE
            | ChanCmd::AUTHORIZE => id.is_link(),
            ChanCmd::CREATE
            | ChanCmd::CREATED
            | ChanCmd::RELAY
            | ChanCmd::DESTROY
            | ChanCmd::CREATE_FAST
            | ChanCmd::CREATED_FAST
            | ChanCmd::RELAY_EARLY
            | ChanCmd::CREATE2
            | ChanCmd::CREATED2
            | ChanCmd::CREATE_FAST_WS
            | ChanCmd::CREATED_FAST_WS
            | ChanCmd::RELAY_WS => !id.is_link(),
            _ => true,
        }
    }
}

/// A circuit ID (tor-spec §5.1.1). Two bytes on the wire for link protocol 3 and before
/// negotiation, four bytes from link protocol 4. [`CircId::LINK`] (0) marks cells that belong
/// to the link rather than to a circuit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CircId(u32);

impl CircId {
    /// Circuit ID 0: the cell is about the link, not a circuit.
    pub const LINK: CircId = CircId(0);

    /// Wrap a raw circuit ID.
    pub const fn new(id: u32) -> Self {
        CircId(id)
    }

    /// The raw circuit ID.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Whether this is [`CircId::LINK`] (0).
    pub const fn is_link(self) -> bool {
        self.0 == 0
    }
}

impl From<u32> for CircId {
    fn from(id: u32) -> Self {
        CircId(id)
    }
}

impl From<CircId> for u32 {
    fn from(id: CircId) -> u32 {
        id.0
    }
}

impl fmt::Display for CircId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for CircId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CircId({:#x})", self.0)
    }
}

/// One channel cell: the circuit it belongs to and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChanCell {
    /// The circuit, or [`CircId::LINK`] for link-level cells.
    pub circ_id: CircId,
    /// The message.
    pub msg: ChanMsg,
}

impl ChanCell {
    /// Pair a circuit ID with a message.
    pub fn new(circ_id: CircId, msg: impl Into<ChanMsg>) -> Self {
        ChanCell {
            circ_id,
            msg: msg.into(),
        }
    }
}

/// A channel message: the typed body of a cell, one variant per command.
///
/// Decode with [`ChanMsg::decode`]; encode the body (without the fixed-cell padding) with
/// [`Writeable`]. [`crate::codec::ChannelCodec`] does both plus the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChanMsg {
    /// PADDING (0).
    Padding(Padding),
    /// CREATE (1).
    Create(Create),
    /// CREATED (2).
    Created(Created),
    /// RELAY (3).
    Relay(Relay),
    /// DESTROY (4).
    Destroy(Destroy),
    /// CREATE_FAST (5).
    CreateFast(CreateFast),
    /// CREATED_FAST (6).
    CreatedFast(CreatedFast),
    /// VERSIONS (7).
    Versions(Versions),
    /// NETINFO (8).
    Netinfo(Netinfo),
    /// RELAY_EARLY (9): same body as RELAY.
    RelayEarly(Relay),
    /// CREATE2 (10).
    Create2(Create2),
    /// CREATED2 (11).
    Created2(Created2),
    /// PADDING_NEGOTIATE (12).
    PaddingNegotiate(PaddingNegotiate),
    /// CREATE_FAST_WS (120, the seed's extension).
    CreateFastWs(CreateFastWs),
    /// CREATED_FAST_WS (121, the seed's extension).
    CreatedFastWs(CreatedFastWs),
    /// VPADDING (128).
    Vpadding(Vpadding),
    /// CERTS (129).
    Certs(Certs),
    /// AUTH_CHALLENGE (130).
    AuthChallenge(AuthChallenge),
    /// AUTHENTICATE (131).
    Authenticate(Authenticate),
    /// AUTHORIZE (132).
    Authorize(Authorize),
    /// RELAY_WS (190, the seed's extension).
    RelayWs(RelayWs),
    /// Any command this crate does not know.
    Unrecognized(Unrecognized),
}

impl ChanMsg {
    /// The command of this message.
    pub fn cmd(&self) -> ChanCmd {
        match self {
            ChanMsg::Padding(_) => ChanCmd::PADDING,
            ChanMsg::Create(_) => ChanCmd::CREATE,
            ChanMsg::Created(_) => ChanCmd::CREATED,
            ChanMsg::Relay(_) => ChanCmd::RELAY,
            ChanMsg::Destroy(_) => ChanCmd::DESTROY,
            ChanMsg::CreateFast(_) => ChanCmd::CREATE_FAST,
            ChanMsg::CreatedFast(_) => ChanCmd::CREATED_FAST,
            ChanMsg::Versions(_) => ChanCmd::VERSIONS,
            ChanMsg::Netinfo(_) => ChanCmd::NETINFO,
            ChanMsg::RelayEarly(_) => ChanCmd::RELAY_EARLY,
            ChanMsg::Create2(_) => ChanCmd::CREATE2,
            ChanMsg::Created2(_) => ChanCmd::CREATED2,
            ChanMsg::PaddingNegotiate(_) => ChanCmd::PADDING_NEGOTIATE,
            ChanMsg::CreateFastWs(_) => ChanCmd::CREATE_FAST_WS,
            ChanMsg::CreatedFastWs(_) => ChanCmd::CREATED_FAST_WS,
            ChanMsg::Vpadding(_) => ChanCmd::VPADDING,
            ChanMsg::Certs(_) => ChanCmd::CERTS,
            ChanMsg::AuthChallenge(_) => ChanCmd::AUTH_CHALLENGE,
            ChanMsg::Authenticate(_) => ChanCmd::AUTHENTICATE,
            ChanMsg::Authorize(_) => ChanCmd::AUTHORIZE,
            ChanMsg::RelayWs(_) => ChanCmd::RELAY_WS,
            ChanMsg::Unrecognized(u) => u.cmd(),
        }
    }

    /// Decode the payload of a cell with command `cmd`.
    ///
    /// For a fixed-length command, `payload` must be exactly [`PAYLOAD_LEN`] bytes, and
    /// whatever follows the message is padding and ignored. For a variable-length command it
    /// is the whole payload (at most 65535 bytes); trailing bytes are ignored only where
    /// tor-spec allows them (CERTS, AUTH_CHALLENGE, AUTHENTICATE), and VERSIONS must be exact.
    /// Unknown commands keep their payload as is in [`ChanMsg::Unrecognized`].
    pub fn decode(cmd: ChanCmd, payload: &[u8]) -> DecodeResult<ChanMsg> {
        let len_ok = if cmd.is_var_len() {
            payload.len() <= usize::from(u16::MAX)
        } else {
            payload.len() == PAYLOAD_LEN
        };
        if !len_ok {
            return Err(DecodeError::BadLength {
                what: if cmd.is_var_len() {
                    "variable-length cell payload"
                } else {
                    "fixed-length cell payload"
                },
                len: payload.len(),
            });
        }
        let mut r = Reader::new(payload);
        let msg = match cmd {
            ChanCmd::PADDING => ChanMsg::Padding(r.extract()?),
            ChanCmd::CREATE => ChanMsg::Create(r.extract()?),
            ChanCmd::CREATED => ChanMsg::Created(r.extract()?),
            ChanCmd::RELAY => ChanMsg::Relay(r.extract()?),
            ChanCmd::DESTROY => ChanMsg::Destroy(r.extract()?),
            ChanCmd::CREATE_FAST => ChanMsg::CreateFast(r.extract()?),
            ChanCmd::CREATED_FAST => ChanMsg::CreatedFast(r.extract()?),
            ChanCmd::VERSIONS => ChanMsg::Versions(r.extract()?),
            ChanCmd::NETINFO => ChanMsg::Netinfo(r.extract()?),
            ChanCmd::RELAY_EARLY => ChanMsg::RelayEarly(r.extract()?),
            ChanCmd::CREATE2 => ChanMsg::Create2(r.extract()?),
            ChanCmd::CREATED2 => ChanMsg::Created2(r.extract()?),
            ChanCmd::PADDING_NEGOTIATE => ChanMsg::PaddingNegotiate(r.extract()?),
            ChanCmd::CREATE_FAST_WS => ChanMsg::CreateFastWs(r.extract()?),
            ChanCmd::CREATED_FAST_WS => ChanMsg::CreatedFastWs(r.extract()?),
            ChanCmd::VPADDING => ChanMsg::Vpadding(r.extract()?),
            ChanCmd::CERTS => ChanMsg::Certs(r.extract()?),
            ChanCmd::AUTH_CHALLENGE => ChanMsg::AuthChallenge(r.extract()?),
            ChanCmd::AUTHENTICATE => ChanMsg::Authenticate(r.extract()?),
            ChanCmd::AUTHORIZE => ChanMsg::Authorize(r.extract()?),
            ChanCmd::RELAY_WS => ChanMsg::RelayWs(r.extract()?),
            _ => ChanMsg::Unrecognized(Unrecognized::new(cmd, r.take_rest().to_vec())),
        };
        // Whatever is left is padding (fixed cells), or bytes tor-spec says to ignore (CERTS,
        // AUTH_CHALLENGE, AUTHENTICATE). Every other variable-length body consumes its whole
        // payload.
        Ok(msg)
    }
}

impl Writeable for ChanMsg {
    /// Append the message body, without the padding of fixed-length cells and without the
    /// length field of variable-length cells.
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        match self {
            ChanMsg::Padding(m) => m.write_onto(w),
            ChanMsg::Create(m) => m.write_onto(w),
            ChanMsg::Created(m) => m.write_onto(w),
            ChanMsg::Relay(m) => m.write_onto(w),
            ChanMsg::Destroy(m) => m.write_onto(w),
            ChanMsg::CreateFast(m) => m.write_onto(w),
            ChanMsg::CreatedFast(m) => m.write_onto(w),
            ChanMsg::Versions(m) => m.write_onto(w),
            ChanMsg::Netinfo(m) => m.write_onto(w),
            ChanMsg::RelayEarly(m) => m.write_onto(w),
            ChanMsg::Create2(m) => m.write_onto(w),
            ChanMsg::Created2(m) => m.write_onto(w),
            ChanMsg::PaddingNegotiate(m) => m.write_onto(w),
            ChanMsg::CreateFastWs(m) => m.write_onto(w),
            ChanMsg::CreatedFastWs(m) => m.write_onto(w),
            ChanMsg::Vpadding(m) => m.write_onto(w),
            ChanMsg::Certs(m) => m.write_onto(w),
            ChanMsg::AuthChallenge(m) => m.write_onto(w),
            ChanMsg::Authenticate(m) => m.write_onto(w),
            ChanMsg::Authorize(m) => m.write_onto(w),
            ChanMsg::RelayWs(m) => m.write_onto(w),
            ChanMsg::Unrecognized(m) => m.write_onto(w),
        }
    }
}

/// `From<Body> for ChanMsg` for bodies that map to exactly one command.
macro_rules! into_chanmsg {
    ($($body:ident),* $(,)?) => {
        $(
            impl From<$body> for ChanMsg {
                fn from(m: $body) -> ChanMsg {
                    ChanMsg::$body(m)
                }
            }
        )*
    };
}

// A `Relay` body converts to RELAY; build `ChanMsg::RelayEarly` explicitly for RELAY_EARLY.
into_chanmsg!(
    Padding,
    Create,
    Created,
    Relay,
    Destroy,
    CreateFast,
    CreatedFast,
    Versions,
    Netinfo,
    Create2,
    Created2,
    PaddingNegotiate,
    CreateFastWs,
    CreatedFastWs,
    Vpadding,
    Certs,
    AuthChallenge,
    Authenticate,
    Authorize,
    RelayWs,
    Unrecognized,
);

#[cfg(test)]
mod test {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use super::*;
    use crate::bytes::EncodeError;

    /// Encode a body as the codec would: fixed bodies padded to `PAYLOAD_LEN`.
    fn payload_of(msg: &ChanMsg) -> Vec<u8> {
        let mut p = msg.to_bytes().unwrap();
        if !msg.cmd().is_var_len() {
            assert!(p.len() <= PAYLOAD_LEN);
            p.resize(PAYLOAD_LEN, 0);
        }
        p
    }

    fn fixed(prefix: &[u8]) -> Vec<u8> {
        let mut p = prefix.to_vec();
        p.resize(PAYLOAD_LEN, 0);
        p
    }

    #[test]
    fn command_numbers_and_lengths() {
        let table: &[(ChanCmd, u8, bool, &str)] = &[
            (ChanCmd::PADDING, 0, false, "PADDING"),
            (ChanCmd::CREATE, 1, false, "CREATE"),
            (ChanCmd::CREATED, 2, false, "CREATED"),
            (ChanCmd::RELAY, 3, false, "RELAY"),
            (ChanCmd::DESTROY, 4, false, "DESTROY"),
            (ChanCmd::CREATE_FAST, 5, false, "CREATE_FAST"),
            (ChanCmd::CREATED_FAST, 6, false, "CREATED_FAST"),
            (ChanCmd::VERSIONS, 7, true, "VERSIONS"),
            (ChanCmd::NETINFO, 8, false, "NETINFO"),
            (ChanCmd::RELAY_EARLY, 9, false, "RELAY_EARLY"),
            (ChanCmd::CREATE2, 10, false, "CREATE2"),
            (ChanCmd::CREATED2, 11, false, "CREATED2"),
            (ChanCmd::PADDING_NEGOTIATE, 12, false, "PADDING_NEGOTIATE"),
            (ChanCmd::CREATE_FAST_WS, 120, false, "CREATE_FAST_WS"),
            (ChanCmd::CREATED_FAST_WS, 121, false, "CREATED_FAST_WS"),
            (ChanCmd::VPADDING, 128, true, "VPADDING"),
            (ChanCmd::CERTS, 129, true, "CERTS"),
            (ChanCmd::AUTH_CHALLENGE, 130, true, "AUTH_CHALLENGE"),
            (ChanCmd::AUTHENTICATE, 131, true, "AUTHENTICATE"),
            (ChanCmd::AUTHORIZE, 132, true, "AUTHORIZE"),
            (ChanCmd::RELAY_WS, 190, true, "RELAY_WS"),
        ];
        for &(cmd, num, var, name) in table {
            assert_eq!(cmd.get(), num);
            assert_eq!(ChanCmd::from(num), cmd);
            assert_eq!(cmd.is_var_len(), var, "{name}");
            assert_eq!(cmd.to_string(), name);
            assert!(cmd.is_recognized());
        }
        // Unknown commands: fixed below 128 (except 7), variable from 128.
        assert!(!ChanCmd::new(13).is_var_len());
        assert!(!ChanCmd::new(127).is_var_len());
        assert!(ChanCmd::new(133).is_var_len());
        assert!(ChanCmd::new(255).is_var_len());
        assert!(!ChanCmd::new(200).is_recognized());
        assert_eq!(ChanCmd::new(200).to_string(), "200");
        assert_eq!(format!("{:?}", ChanCmd::new(200)), "ChanCmd(200)");
        assert_eq!(format!("{:?}", ChanCmd::RELAY), "ChanCmd(RELAY)");
    }

    #[test]
    fn destroy_reasons() {
        let names = [
            "NONE",
            "PROTOCOL",
            "INTERNAL",
            "REQUESTED",
            "HIBERNATING",
            "RESOURCELIMIT",
            "CONNECTFAILED",
            "OR_IDENTITY",
            "CHANNEL_CLOSED",
            "FINISHED",
            "TIMEOUT",
            "DESTROYED",
            "NOSUCHSERVICE",
        ];
        for (i, name) in names.iter().enumerate() {
            assert_eq!(DestroyReason::new(i as u8).to_string(), *name);
        }
        assert_eq!(DestroyReason::CHANNEL_CLOSED.get(), 8);
        assert_eq!(DestroyReason::new(13).name(), None);
    }

    #[test]
    fn circ_id_rules() {
        let c = CircId::new(0x8000_0001);
        assert!(CircId::LINK.is_link());
        assert!(!c.is_link());
        assert_eq!(c.to_string(), "0x80000001");
        assert!(ChanCmd::NETINFO.allows_circ_id(CircId::LINK));
        assert!(!ChanCmd::NETINFO.allows_circ_id(c));
        assert!(ChanCmd::CREATE2.allows_circ_id(c));
        assert!(!ChanCmd::CREATE2.allows_circ_id(CircId::LINK));
        assert!(!ChanCmd::RELAY_WS.allows_circ_id(CircId::LINK));
        assert!(ChanCmd::new(200).allows_circ_id(CircId::LINK));
        assert!(ChanCmd::new(200).allows_circ_id(c));
    }

    #[test]
    fn fixed_payload_must_be_full() {
        for len in [0, 508, 510] {
            assert_eq!(
                ChanMsg::decode(ChanCmd::DESTROY, &vec![0; len]),
                Err(DecodeError::BadLength {
                    what: "fixed-length cell payload",
                    len
                })
            );
        }
        assert_eq!(
            ChanMsg::decode(ChanCmd::VPADDING, &vec![0; 65536]),
            Err(DecodeError::BadLength {
                what: "variable-length cell payload",
                len: 65536
            })
        );
    }

    #[test]
    fn padding_ignored_in_fixed_cells() {
        let mut p = fixed(&[0x04]);
        p[100] = 0xff;
        assert_eq!(
            ChanMsg::decode(ChanCmd::DESTROY, &p),
            Ok(Destroy::new(DestroyReason::HIBERNATING).into())
        );
        assert_eq!(
            ChanMsg::decode(ChanCmd::PADDING, &[0xaa; PAYLOAD_LEN]),
            Ok(ChanMsg::Padding(Padding))
        );
    }

    #[test]
    fn create2_hlen_must_fit() {
        // HLEN 505 fits exactly.
        let mut p = vec![0, 2, 0x01, 0xf9];
        p.resize(PAYLOAD_LEN, 7);
        let Ok(ChanMsg::Create2(c)) = ChanMsg::decode(ChanCmd::CREATE2, &p) else {
            panic!("CREATE2 with HLEN 505 must decode");
        };
        assert_eq!(c.hdata().len(), 505);
        // HLEN 506 does not.
        let p = fixed(&[0, 2, 0x01, 0xfa]);
        assert_eq!(
            ChanMsg::decode(ChanCmd::CREATE2, &p),
            Err(DecodeError::BadLength {
                what: "CREATE2 HLEN",
                len: 506
            })
        );
        let p = fixed(&[0xff, 0xff]);
        assert_eq!(
            ChanMsg::decode(ChanCmd::CREATED2, &p),
            Err(DecodeError::BadLength {
                what: "CREATED2 HLEN",
                len: 65535
            })
        );
        assert!(Create2::new(2, vec![0; 505]).is_ok());
        assert!(matches!(
            Create2::new(2, vec![0; 506]),
            Err(EncodeError::TooLong {
                len: 506,
                max: 505,
                ..
            })
        ));
        assert!(Created2::new(vec![0; 507]).is_ok());
        assert!(matches!(
            Created2::new(vec![0; 508]),
            Err(EncodeError::TooLong {
                len: 508,
                max: 507,
                ..
            })
        ));
    }

    #[test]
    fn relay_ws_length_bounds() {
        assert_eq!(
            ChanMsg::decode(ChanCmd::RELAY_WS, &[0; 10]),
            Err(DecodeError::BadLength {
                what: "RELAY_WS body",
                len: 10
            })
        );
        let m = ChanMsg::decode(ChanCmd::RELAY_WS, &[9; 11]).unwrap();
        assert_eq!(m, RelayWs::new(vec![9; 11]).unwrap().into());
        let big = vec![1; RelayWs::MAX_LEN];
        let m = ChanMsg::decode(ChanCmd::RELAY_WS, &big).unwrap();
        assert_eq!(payload_of(&m), big);
        assert!(matches!(
            RelayWs::new(vec![0; 10]),
            Err(EncodeError::BadValue(_))
        ));
        assert!(matches!(
            RelayWs::new(vec![0; 65536]),
            Err(EncodeError::TooLong { .. })
        ));
    }

    #[test]
    fn seed_ws_cells() {
        // CREATE_FAST_WS: a 128-byte RSA-1024 OAEP block, then padding.
        let enc_x: [u8; 128] = std::array::from_fn(|i| i as u8);
        let m = ChanMsg::from(CreateFastWs::new(enc_x));
        let p = payload_of(&m);
        assert_eq!(&p[..128], &enc_x[..]);
        assert!(p[128..].iter().all(|&b| b == 0));
        assert_eq!(ChanMsg::decode(ChanCmd::CREATE_FAST_WS, &p), Ok(m));
        // CREATED_FAST_WS: encrypted Y then KH.
        let m = ChanMsg::from(CreatedFastWs::new([1; 20], [2; 20]));
        let p = payload_of(&m);
        assert_eq!(&p[..40], &[[1; 20], [2; 20]].concat()[..]);
        assert_eq!(ChanMsg::decode(ChanCmd::CREATED_FAST_WS, &p), Ok(m));
    }

    #[test]
    fn padding_negotiate_layout() {
        // padding-spec §2.5 / tor-spec §7.2: version, command, ito_low_ms, ito_high_ms.
        let m = ChanMsg::from(PaddingNegotiate::start(1500, 9500));
        assert_eq!(payload_of(&m)[..6], [0, 2, 0x05, 0xdc, 0x25, 0x1c]);
        let m = ChanMsg::from(PaddingNegotiate::stop());
        assert_eq!(payload_of(&m)[..6], [0, 1, 0, 0, 0, 0]);
        // An unknown version is kept for the recipient to judge.
        let Ok(ChanMsg::PaddingNegotiate(p)) =
            ChanMsg::decode(ChanCmd::PADDING_NEGOTIATE, &fixed(&[0x90, 3, 3]))
        else {
            panic!("must decode");
        };
        assert_eq!(p.version(), 0x90);
        assert_eq!(p.command(), PaddingNegotiateCmd::new(3));
        assert_eq!(p.ito_low_ms(), 0x0300);
    }

    #[test]
    fn unrecognized_is_byte_identical() {
        let mut p = fixed(b"A mage's name is better hidden than a herring in the sea");
        p[508] = 0x5a; // non-zero "padding" survives
        let m = ChanMsg::decode(ChanCmd::new(101), &p).unwrap();
        assert_eq!(m.cmd(), ChanCmd::new(101));
        assert!(matches!(m, ChanMsg::Unrecognized(_)));
        assert_eq!(payload_of(&m), p);
        let v = b"better guarded than a dragon's den";
        let m = ChanMsg::decode(ChanCmd::new(244), v).unwrap();
        assert_eq!(m, Unrecognized::new(ChanCmd::new(244), v.to_vec()).into());
        assert_eq!(payload_of(&m), v);
    }

    #[test]
    fn cmd_of_every_variant() {
        let relay = Relay::new(Box::new([3; PAYLOAD_LEN]));
        assert_eq!(ChanMsg::Relay(relay.clone()).cmd(), ChanCmd::RELAY);
        assert_eq!(ChanMsg::RelayEarly(relay).cmd(), ChanCmd::RELAY_EARLY);
        // The round-trip strategy covers every known command (and unknown ones).
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut seen = BTreeSet::new();
        for _ in 0..2000 {
            let m = arb::chan_msg().new_tree(&mut runner).unwrap().current();
            seen.insert(m.cmd().get());
        }
        let known = (0..=255u8).filter(|c| ChanCmd::new(*c).is_recognized());
        for c in known {
            assert!(
                seen.contains(&c),
                "strategy never generates {}",
                ChanCmd::new(c)
            );
        }
        assert!(seen.iter().any(|c| !ChanCmd::new(*c).is_recognized()));
    }

    proptest! {
        #[test]
        fn body_round_trip(m in arb::chan_msg()) {
            let p = payload_of(&m);
            let d = ChanMsg::decode(m.cmd(), &p).unwrap();
            prop_assert_eq!(&d, &m);
            prop_assert_eq!(payload_of(&d), p);
        }

        /// Any payload for any command: decoding never panics, and whatever decodes
        /// re-encodes to something that decodes to the same message.
        #[test]
        fn hostile_payloads(cmd in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let cmd = ChanCmd::new(cmd);
            let mut p = bytes;
            if !cmd.is_var_len() {
                p.resize(PAYLOAD_LEN, 0);
            }
            if let Ok(m) = ChanMsg::decode(cmd, &p) {
                prop_assert_eq!(m.cmd(), cmd);
                let p2 = payload_of(&m);
                prop_assert_eq!(ChanMsg::decode(cmd, &p2), Ok(m));
            }
        }
    }
}
