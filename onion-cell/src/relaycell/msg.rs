//! The Tor relay messages (tor-spec §5.1.2, §5.4, §6.2-§6.4, §7.3-§7.4): one struct per message.
//!
//! Every struct has private fields and a checking constructor, decodes from the relay data
//! (the `Length` bytes after the relay header) with [`Readable`] and encodes with
//! [`Writeable`]. A message always fills the relay data: `take_from` consumes the whole
//! reader. Where C tor tolerates bytes after a complete message (BEGIN, END, CONNECTED,
//! SENDME, ...) so does this module, and says so on the type; such bytes are not kept, so only
//! [`Unrecognized`] messages re-encode byte for byte from arbitrary input. Messages built with
//! the constructors always survive encode -> decode -> encode unchanged.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::linkspec::{LinkSpec, RSA_ID_LEN, check_identities};
use super::{MAX_WS_DATA_LEN, RelayCmd};
use crate::bytes::{
    DecodeError, DecodeResult, EncodeError, EncodeResult, Readable, Reader, Writeable, Writer,
    write_u8_prefixed, write_u16_prefixed,
};

/// Length of a TAP onion skin, the client side of the TAP handshake (`TAP_C_HANDSHAKE_LEN`).
pub const TAP_C_HANDSHAKE_LEN: usize = 186;
/// Length of a TAP reply, the server side of the TAP handshake (`TAP_S_HANDSHAKE_LEN`).
pub const TAP_S_HANDSHAKE_LEN: usize = 148;
/// Length of the digest in an authenticated (version 1) SENDME (tor-spec §7.3.1).
pub const SENDME_DIGEST_LEN: usize = 20;

// ---------------------------------------------------------------------------------------------
// Addresses and ports
// ---------------------------------------------------------------------------------------------

/// Parse a decimal port string: 1 to 5 ASCII digits, value at most 65535 (0 allowed).
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().and_then(|v| u16::try_from(v).ok())
}

/// A stream target address: what BEGIN's `ADDRESS` holds (tor-spec §6.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A DNS hostname, sent as is. tor-spec §6.2 says it SHOULD be sent in lower case (to
    /// avoid fingerprinting) and MUST be accepted in any case; this type preserves case.
    ///
    /// A valid hostname is non-empty, contains none of NUL, `:`, `[`, `]`, and is not an
    /// IPv4 address in dotted-quad form (use [`Address::Ipv4`] for that).
    Hostname(String),
    /// An IPv4 address, written in dotted-quad form.
    Ipv4(Ipv4Addr),
    /// An IPv6 address, written in square brackets.
    Ipv6(Ipv6Addr),
}

impl Address {
    /// Parse the textual form used on the wire: `[v6 address]`, a dotted-quad IPv4 address,
    /// or a hostname. Use this for user input too.
    pub fn parse(s: &str) -> DecodeResult<Self> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(DecodeError::BadValue("address: unbalanced '['"))?;
            return inner
                .parse::<Ipv6Addr>()
                .map(Address::Ipv6)
                .map_err(|_| DecodeError::BadValue("address: bad IPv6 address in brackets"));
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(Address::Ipv4(v4));
        }
        let a = Address::Hostname(s.to_owned());
        a.check()
            .map_err(|_| DecodeError::BadValue("address: bad hostname"))?;
        Ok(a)
    }

    /// Check that a [`Address::Hostname`] is valid (see its documentation).
    fn check(&self) -> EncodeResult<()> {
        if let Address::Hostname(h) = self {
            let bad_char = h.bytes().any(|b| matches!(b, 0 | b':' | b'[' | b']'));
            if h.is_empty() || bad_char || h.parse::<Ipv4Addr>().is_ok() {
                return Err(EncodeError::BadValue("hostname"));
            }
        }
        Ok(())
    }
}

impl From<IpAddr> for Address {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Address::Ipv4(a),
            IpAddr::V6(a) => Address::Ipv6(a),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Hostname(h) => f.write_str(h),
            Address::Ipv4(a) => write!(f, "{a}"),
            Address::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// An address with the number of seconds it may be cached, as CONNECTED and END
/// (REASON_EXITPOLICY) carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrTtl {
    /// The address.
    pub addr: IpAddr,
    /// Time to live in seconds. C tor treats values above `i32::MAX` as "no TTL".
    pub ttl: u32,
}

// ---------------------------------------------------------------------------------------------
// BEGIN
// ---------------------------------------------------------------------------------------------

/// The FLAGS of a BEGIN message (tor-spec §6.2). Bit 1 is the least significant.
///
/// Reserved bits are kept as received (servers MUST ignore them; clients MUST NOT set them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BeginFlags(pub u32);

impl BeginFlags {
    /// No flag set.
    pub const NONE: Self = Self(0);
    /// Bit 1: we support learning about and connecting to IPv6 addresses.
    pub const IPV6_OK: Self = Self(1);
    /// Bit 2: we don't want to learn about or connect to IPv4 addresses.
    pub const IPV4_NOT_OK: Self = Self(1 << 1);
    /// Bit 3: if there are both IPv4 and IPv6 addresses, connect to the IPv6 one.
    pub const IPV6_PREFERRED: Self = Self(1 << 2);

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for BeginFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// RELAY_BEGIN (1): open a stream to `ADDRESS:PORT` (tor-spec §6.2).
///
/// Wire form: `ADDRESS ':' PORT NUL [FLAGS (4 bytes)]`. As in C tor, FLAGS is written only when
/// non-zero, read only when at least 4 bytes follow the NUL, and anything after it is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    address: Address,
    port: u16,
    flags: BeginFlags,
}

impl Begin {
    /// A BEGIN for `address:port`. Fails if `port` is 0 or the hostname is invalid.
    pub fn new(address: Address, port: u16, flags: BeginFlags) -> EncodeResult<Self> {
        if port == 0 {
            return Err(EncodeError::BadValue("BEGIN port 0"));
        }
        address.check()?;
        Ok(Begin {
            address,
            port,
            flags,
        })
    }
    /// The target address.
    pub fn address(&self) -> &Address {
        &self.address
    }
    /// The target port (never 0).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The flags.
    pub fn flags(&self) -> BeginFlags {
        self.flags
    }
}

impl Readable for Begin {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let addrport = r
            .take_until(0)
            .map_err(|_| DecodeError::BadValue("BEGIN: ADDRPORT not NUL-terminated"))?;
        let addrport = std::str::from_utf8(addrport)
            .map_err(|_| DecodeError::BadValue("BEGIN: ADDRPORT not UTF-8"))?;
        let (addr, port) = addrport
            .rsplit_once(':')
            .ok_or(DecodeError::BadValue("BEGIN: ADDRPORT without port"))?;
        let port = match parse_port(port) {
            Some(p) if p != 0 => p,
            _ => return Err(DecodeError::BadValue("BEGIN: bad port")),
        };
        let address = Address::parse(addr)?;
        let flags = if r.remaining() >= 4 {
            BeginFlags(r.take_u32()?)
        } else {
            BeginFlags::NONE
        };
        r.take_rest();
        Ok(Begin {
            address,
            port,
            flags,
        })
    }
}

impl Writeable for Begin {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        self.address.check()?;
        if self.port == 0 {
            return Err(EncodeError::BadValue("BEGIN port 0"));
        }
        w.write_all(format!("{}:{}", self.address, self.port).as_bytes());
        w.write_u8(0);
        if self.flags != BeginFlags::NONE {
            w.write_u32(self.flags.0);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// DATA
// ---------------------------------------------------------------------------------------------

/// RELAY_DATA (2): stream bytes.
///
/// An ordinary RELAY cell holds at most [`MAX_DATA_LEN`](super::MAX_DATA_LEN) (498) bytes; the
/// seed's RELAY_WS cells hold up to [`MAX_WS_DATA_LEN`]. [`RelayCell`](super::RelayCell)
/// encoding enforces the limit of the cell format used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    body: Vec<u8>,
}

impl Data {
    /// Data for an ordinary RELAY cell: at most 498 bytes.
    pub fn new(body: Vec<u8>) -> EncodeResult<Self> {
        Self::checked(body, super::MAX_DATA_LEN)
    }
    /// Data for a RELAY_WS cell: at most [`MAX_WS_DATA_LEN`] bytes.
    pub fn new_ws(body: Vec<u8>) -> EncodeResult<Self> {
        Self::checked(body, MAX_WS_DATA_LEN)
    }
    fn checked(body: Vec<u8>, max: usize) -> EncodeResult<Self> {
        if body.len() > max {
            return Err(EncodeError::TooLong {
                what: "DATA",
                len: body.len(),
                max,
            });
        }
        Ok(Data { body })
    }
    /// The stream bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.body
    }
    /// The stream bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.body
    }
}

impl Readable for Data {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let body = r.take_rest();
        if body.len() > MAX_WS_DATA_LEN {
            return Err(DecodeError::BadLength {
                what: "DATA",
                len: body.len(),
            });
        }
        Ok(Data {
            body: body.to_vec(),
        })
    }
}

impl Writeable for Data {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.body);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// END
// ---------------------------------------------------------------------------------------------

/// Why a stream closed: the reason byte of RELAY_END (tor-spec §6.3). Open: OPs and ORs MUST
/// accept reasons not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndReason(pub u8);

impl EndReason {
    /// Catch-all for unlisted reasons (also what an empty END means).
    pub const MISC: Self = Self(1);
    /// Couldn't look up hostname.
    pub const RESOLVEFAILED: Self = Self(2);
    /// Remote host refused connection.
    pub const CONNECTREFUSED: Self = Self(3);
    /// OR refuses to connect to host or port; the END may carry an address and TTL.
    pub const EXITPOLICY: Self = Self(4);
    /// Circuit is being destroyed.
    pub const DESTROY: Self = Self(5);
    /// Anonymized TCP connection was closed.
    pub const DONE: Self = Self(6);
    /// Connection timed out, or OR timed out while connecting.
    pub const TIMEOUT: Self = Self(7);
    /// Routing error while attempting to contact destination.
    pub const NOROUTE: Self = Self(8);
    /// OR is temporarily hibernating.
    pub const HIBERNATING: Self = Self(9);
    /// Internal error at the OR.
    pub const INTERNAL: Self = Self(10);
    /// OR has no resources to fulfill request.
    pub const RESOURCELIMIT: Self = Self(11);
    /// Connection was unexpectedly reset.
    pub const CONNRESET: Self = Self(12);
    /// Closing because of Tor protocol violations.
    pub const TORPROTOCOL: Self = Self(13);
    /// Client sent RELAY_BEGIN_DIR to a non-directory relay.
    pub const NOTDIRECTORY: Self = Self(14);
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::MISC => "MISC",
            Self::RESOLVEFAILED => "RESOLVEFAILED",
            Self::CONNECTREFUSED => "CONNECTREFUSED",
            Self::EXITPOLICY => "EXITPOLICY",
            Self::DESTROY => "DESTROY",
            Self::DONE => "DONE",
            Self::TIMEOUT => "TIMEOUT",
            Self::NOROUTE => "NOROUTE",
            Self::HIBERNATING => "HIBERNATING",
            Self::INTERNAL => "INTERNAL",
            Self::RESOURCELIMIT => "RESOURCELIMIT",
            Self::CONNRESET => "CONNRESET",
            Self::TORPROTOCOL => "TORPROTOCOL",
            Self::NOTDIRECTORY => "NOTDIRECTORY",
            Self(n) => return write!(f, "end reason {n}"),
        };
        f.write_str(name)
    }
}

/// RELAY_END (3): close a stream (tor-spec §6.3).
///
/// Wire form: `reason [1]`, and for [`EndReason::EXITPOLICY`] optionally `address [4 or 16] |
/// TTL [4]`. Decoding follows the spec's leniency: an empty message means
/// [`EndReason::MISC`]; an EXITPOLICY address of the wrong length is dropped; a missing TTL
/// reads as `0xffffffff`; bytes after the reason of any other END are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    reason: EndReason,
    exit_policy: Option<AddrTtl>,
}

impl End {
    /// An END with `reason` and no address.
    pub fn new(reason: EndReason) -> Self {
        End {
            reason,
            exit_policy: None,
        }
    }
    /// An END with [`EndReason::EXITPOLICY`] naming the refused address and its TTL.
    pub fn exit_policy(addr: IpAddr, ttl: u32) -> Self {
        End {
            reason: EndReason::EXITPOLICY,
            exit_policy: Some(AddrTtl { addr, ttl }),
        }
    }
    /// The reason.
    pub fn reason(&self) -> EndReason {
        self.reason
    }
    /// The refused address of an EXITPOLICY END, if it carried one.
    pub fn exit_policy_addr(&self) -> Option<AddrTtl> {
        self.exit_policy
    }
}

impl Readable for End {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        if r.remaining() == 0 {
            return Ok(End::new(EndReason::MISC));
        }
        let reason = EndReason(r.take_u8()?);
        let rest = r.take_rest();
        let exit_policy = if reason == EndReason::EXITPOLICY {
            let mut rr = Reader::new(rest);
            let addr: Option<IpAddr> = match rest.len() {
                4 | 8 => Some(Ipv4Addr::from(rr.take_array::<4>()?).into()),
                16 | 20 => Some(Ipv6Addr::from(rr.take_array::<16>()?).into()),
                _ => None,
            };
            match addr {
                Some(addr) => {
                    let ttl = if rr.remaining() == 4 {
                        rr.take_u32()?
                    } else {
                        u32::MAX
                    };
                    Some(AddrTtl { addr, ttl })
                }
                None => None,
            }
        } else {
            None
        };
        Ok(End {
            reason,
            exit_policy,
        })
    }
}

impl Writeable for End {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_u8(self.reason.0);
        if let Some(AddrTtl { addr, ttl }) = self.exit_policy {
            match addr {
                IpAddr::V4(a) => w.write_all(&a.octets()),
                IpAddr::V6(a) => w.write_all(&a.octets()),
            }
            w.write_u32(ttl);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// CONNECTED
// ---------------------------------------------------------------------------------------------

/// RELAY_CONNECTED (4): the stream is open (tor-spec §6.2).
///
/// Wire form: empty (onion services, BEGIN_DIR), or `IPv4 [4] | TTL [4]`, or
/// `0.0.0.0 [4] | type 6 [1] | IPv6 [16] | TTL [4]`. Like Arti, decoding requires the TTL (C
/// tor also accepts a bare IPv4 address); trailing bytes are ignored. The IPv4 address
/// 0.0.0.0 cannot be expressed (it introduces the IPv6 form).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connected {
    addr: Option<AddrTtl>,
}

/// The address type byte of the IPv6 form of CONNECTED.
const CONNECTED_IPV6_TYPE: u8 = 6;

impl Connected {
    /// An empty CONNECTED.
    pub fn new_empty() -> Self {
        Connected { addr: None }
    }
    /// A CONNECTED naming the address the exit connected to. Fails for IPv4 0.0.0.0.
    pub fn new_with_addr(addr: IpAddr, ttl: u32) -> EncodeResult<Self> {
        if addr == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
            return Err(EncodeError::BadValue("CONNECTED address 0.0.0.0"));
        }
        Ok(Connected {
            addr: Some(AddrTtl { addr, ttl }),
        })
    }
    /// The address and TTL, if any.
    pub fn addr(&self) -> Option<AddrTtl> {
        self.addr
    }
}

impl Readable for Connected {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        if r.remaining() == 0 {
            return Ok(Connected::new_empty());
        }
        let v4 = Ipv4Addr::from(r.take_array::<4>()?);
        let addr: IpAddr = if v4.is_unspecified() {
            if r.take_u8()? != CONNECTED_IPV6_TYPE {
                return Err(DecodeError::BadValue("CONNECTED: address type"));
            }
            Ipv6Addr::from(r.take_array::<16>()?).into()
        } else {
            v4.into()
        };
        let ttl = r.take_u32()?;
        r.take_rest();
        Ok(Connected {
            addr: Some(AddrTtl { addr, ttl }),
        })
    }
}

impl Writeable for Connected {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        if let Some(AddrTtl { addr, ttl }) = self.addr {
            match addr {
                IpAddr::V4(a) if a.is_unspecified() => {
                    return Err(EncodeError::BadValue("CONNECTED address 0.0.0.0"));
                }
                IpAddr::V4(a) => w.write_all(&a.octets()),
                IpAddr::V6(a) => {
                    w.write_all(&[0; 4]);
                    w.write_u8(CONNECTED_IPV6_TYPE);
                    w.write_all(&a.octets());
                }
            }
            w.write_u32(ttl);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// SENDME
// ---------------------------------------------------------------------------------------------

/// RELAY_SENDME (5): flow-control acknowledgement (tor-spec §7.3-§7.4).
///
/// Wire form: empty, or `VERSION [1] | DATA_LEN [2] | DATA [DATA_LEN]`.
/// - An empty body or version 0 (whatever its DATA) decodes as [`Sendme::V0`], which encodes
///   as an empty body, as C tor sends it.
/// - Version 1 needs `DATA_LEN >= 20`; the first 20 bytes are the digest, the rest is ignored
///   (§7.3.1). Shorter is an error.
/// - Other versions decode as [`Sendme::Unrecognized`]: the flow-control layer compares the
///   version with `sendme_accept_min_version` and tears the circuit down.
///
/// Stream-level SENDMEs (non-zero stream id) "are still empty; the body still SHOULD be
/// ignored" (§7.4): [`RelayCell::decode`](super::RelayCell::decode) reads them as
/// [`Sendme::V0`] when their body does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sendme {
    /// Unauthenticated SENDME (empty body).
    V0,
    /// Authenticated SENDME (§7.3.1): the rolling digest of the cell that triggered it.
    V1 {
        /// The first 20 bytes of the relay-cell digest being acknowledged.
        digest: [u8; SENDME_DIGEST_LEN],
    },
    /// A version this crate does not know. Encoding fails for versions 0 and 1 or `data`
    /// longer than 65535 bytes.
    Unrecognized {
        /// The version byte.
        version: u8,
        /// The DATA bytes.
        data: Vec<u8>,
    },
}

impl Sendme {
    /// The version this SENDME has on the wire (0 for an empty body).
    pub fn version(&self) -> u8 {
        match self {
            Sendme::V0 => 0,
            Sendme::V1 { .. } => 1,
            Sendme::Unrecognized { version, .. } => *version,
        }
    }
}

impl Readable for Sendme {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        if r.remaining() == 0 {
            return Ok(Sendme::V0);
        }
        let version = r.take_u8()?;
        let data_len = r.take_u16()?;
        let data = r.take(usize::from(data_len))?;
        r.take_rest();
        match version {
            0 => Ok(Sendme::V0),
            1 => {
                let digest =
                    data.first_chunk::<SENDME_DIGEST_LEN>()
                        .ok_or(DecodeError::BadLength {
                            what: "SENDME v1 digest",
                            len: data.len(),
                        })?;
                Ok(Sendme::V1 { digest: *digest })
            }
            _ => Ok(Sendme::Unrecognized {
                version,
                data: data.to_vec(),
            }),
        }
    }
}

impl Writeable for Sendme {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        match self {
            Sendme::V0 => {}
            Sendme::V1 { digest } => {
                w.write_u8(1);
                write_u16_prefixed(w, "SENDME data", digest)?;
            }
            Sendme::Unrecognized { version, data } => {
                if *version <= 1 {
                    return Err(EncodeError::BadValue(
                        "unrecognized SENDME with a known version",
                    ));
                }
                w.write_u8(*version);
                write_u16_prefixed(w, "SENDME data", data)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// EXTEND / EXTENDED (legacy TAP)
// ---------------------------------------------------------------------------------------------

/// RELAY_EXTEND (6): extend the circuit with a TAP handshake (tor-spec §5.1.2).
///
/// Wire form (exactly 212 bytes, as C tor requires): `IPv4 address [4] | port [2] |
/// onion skin [186] | RSA identity fingerprint [20]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extend {
    addr: Ipv4Addr,
    port: u16,
    onion_skin: Box<[u8; TAP_C_HANDSHAKE_LEN]>,
    rsa_id: [u8; RSA_ID_LEN],
}

impl Extend {
    /// An EXTEND to `addr:port` for the relay with RSA identity digest `rsa_id`.
    pub fn new(
        addr: Ipv4Addr,
        port: u16,
        onion_skin: [u8; TAP_C_HANDSHAKE_LEN],
        rsa_id: [u8; RSA_ID_LEN],
    ) -> Self {
        Extend {
            addr,
            port,
            onion_skin: Box::new(onion_skin),
            rsa_id,
        }
    }
    /// The next relay's IPv4 address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    /// The next relay's ORPort.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The TAP onion skin (client handshake).
    pub fn onion_skin(&self) -> &[u8; TAP_C_HANDSHAKE_LEN] {
        &self.onion_skin
    }
    /// The next relay's RSA identity digest.
    pub fn rsa_id(&self) -> &[u8; RSA_ID_LEN] {
        &self.rsa_id
    }
}

impl Readable for Extend {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let addr = Ipv4Addr::from(r.take_array::<4>()?);
        let port = r.take_u16()?;
        let onion_skin = Box::new(r.take_array::<TAP_C_HANDSHAKE_LEN>()?);
        let rsa_id = r.take_array()?;
        r.should_be_exhausted()?;
        Ok(Extend {
            addr,
            port,
            onion_skin,
            rsa_id,
        })
    }
}

impl Writeable for Extend {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.addr.octets());
        w.write_u16(self.port);
        w.write_all(&*self.onion_skin);
        w.write_all(&self.rsa_id);
        Ok(())
    }
}

/// RELAY_EXTENDED (7): the TAP reply, exactly 148 bytes (the payload of a CREATED cell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extended {
    handshake: Box<[u8; TAP_S_HANDSHAKE_LEN]>,
}

impl Extended {
    /// An EXTENDED carrying the TAP server handshake.
    pub fn new(handshake: [u8; TAP_S_HANDSHAKE_LEN]) -> Self {
        Extended {
            handshake: Box::new(handshake),
        }
    }
    /// The TAP server handshake.
    pub fn handshake(&self) -> &[u8; TAP_S_HANDSHAKE_LEN] {
        &self.handshake
    }
}

impl Readable for Extended {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let handshake = Box::new(r.take_array::<TAP_S_HANDSHAKE_LEN>()?);
        r.should_be_exhausted()?;
        Ok(Extended { handshake })
    }
}

impl Writeable for Extended {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&*self.handshake);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// TRUNCATE / TRUNCATED
// ---------------------------------------------------------------------------------------------

/// RELAY_TRUNCATE (8): tear down the circuit beyond the addressed hop (tor-spec §5.4). Empty;
/// any body is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Truncate;

impl Readable for Truncate {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        r.take_rest();
        Ok(Truncate)
    }
}

impl Writeable for Truncate {
    fn write_onto<W: Writer + ?Sized>(&self, _w: &mut W) -> EncodeResult<()> {
        Ok(())
    }
}

/// TRUNCATED reuses the DESTROY reason codes (tor-spec §5.4).
pub use crate::chancell::DestroyReason;

/// RELAY_TRUNCATED (9): the circuit was cut beyond the sending hop (tor-spec §5.4). One
/// reason byte (required); trailing bytes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    reason: DestroyReason,
}

impl Truncated {
    /// A TRUNCATED with `reason`.
    pub fn new(reason: DestroyReason) -> Self {
        Truncated { reason }
    }
    /// The reason.
    pub fn reason(&self) -> DestroyReason {
        self.reason
    }
}

impl Readable for Truncated {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let reason = DestroyReason::new(r.take_u8()?);
        r.take_rest();
        Ok(Truncated { reason })
    }
}

impl Writeable for Truncated {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_u8(self.reason.get());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// DROP
// ---------------------------------------------------------------------------------------------

/// RELAY_DROP (10): a long-range dummy, dropped on receipt (tor-spec §6.2). Its body is
/// arbitrary and kept byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DropMsg {
    body: Vec<u8>,
}

impl DropMsg {
    /// A DROP carrying `body` (at most [`MAX_WS_DATA_LEN`] bytes; a cell format may allow
    /// less).
    pub fn new(body: Vec<u8>) -> EncodeResult<Self> {
        if body.len() > MAX_WS_DATA_LEN {
            return Err(EncodeError::TooLong {
                what: "DROP",
                len: body.len(),
                max: MAX_WS_DATA_LEN,
            });
        }
        Ok(DropMsg { body })
    }
    /// The body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.body
    }
}

impl Readable for DropMsg {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(DropMsg {
            body: r.take_rest().to_vec(),
        })
    }
}

impl Writeable for DropMsg {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.body);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// RESOLVE / RESOLVED
// ---------------------------------------------------------------------------------------------

/// RELAY_RESOLVE (11): look up a hostname, or an `in-addr.arpa` name for a reverse lookup
/// (tor-spec §6.4). Wire form: the name, NUL-terminated; bytes after the NUL are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    query: String,
}

impl Resolve {
    /// A RESOLVE for `query`: non-empty, without NUL.
    pub fn new(query: String) -> EncodeResult<Self> {
        if query.is_empty() || query.contains('\0') {
            return Err(EncodeError::BadValue("RESOLVE query"));
        }
        Ok(Resolve { query })
    }
    /// The name to look up.
    pub fn query(&self) -> &str {
        &self.query
    }
}

impl Readable for Resolve {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let q = r
            .take_until(0)
            .map_err(|_| DecodeError::BadValue("RESOLVE: query not NUL-terminated"))?;
        r.take_rest();
        let q = std::str::from_utf8(q).map_err(|_| DecodeError::BadValue("RESOLVE: not UTF-8"))?;
        if q.is_empty() {
            return Err(DecodeError::BadValue("RESOLVE: empty query"));
        }
        Ok(Resolve {
            query: q.to_owned(),
        })
    }
}

impl Writeable for Resolve {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        if self.query.is_empty() || self.query.contains('\0') {
            return Err(EncodeError::BadValue("RESOLVE query"));
        }
        w.write_all(self.query.as_bytes());
        w.write_u8(0);
        Ok(())
    }
}

/// The value of one RESOLVED answer (tor-spec §6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedValue {
    /// Type 0x00: a hostname (non-empty, not NUL-terminated).
    Hostname(String),
    /// Type 0x04: an IPv4 address.
    Ipv4(Ipv4Addr),
    /// Type 0x06: an IPv6 address.
    Ipv6(Ipv6Addr),
    /// Type 0xF0: transient error. The content MUST be ignored; kept for re-encoding.
    TransientError(Vec<u8>),
    /// Type 0xF1: non-transient error. The content MUST be ignored; kept for re-encoding.
    NontransientError(Vec<u8>),
    /// Another type, kept raw (C tor skips these). Encoding fails for a known type.
    Unrecognized {
        /// The answer type.
        rtype: u8,
        /// The raw value.
        value: Vec<u8>,
    },
}

impl ResolvedValue {
    /// Answer type: hostname.
    pub const TYPE_HOSTNAME: u8 = 0x00;
    /// Answer type: IPv4 address.
    pub const TYPE_IPV4: u8 = 0x04;
    /// Answer type: IPv6 address.
    pub const TYPE_IPV6: u8 = 0x06;
    /// Answer type: transient error.
    pub const TYPE_ERROR_TRANSIENT: u8 = 0xF0;
    /// Answer type: non-transient error.
    pub const TYPE_ERROR_NONTRANSIENT: u8 = 0xF1;

    /// The answer type byte.
    pub fn rtype(&self) -> u8 {
        match self {
            ResolvedValue::Hostname(_) => Self::TYPE_HOSTNAME,
            ResolvedValue::Ipv4(_) => Self::TYPE_IPV4,
            ResolvedValue::Ipv6(_) => Self::TYPE_IPV6,
            ResolvedValue::TransientError(_) => Self::TYPE_ERROR_TRANSIENT,
            ResolvedValue::NontransientError(_) => Self::TYPE_ERROR_NONTRANSIENT,
            ResolvedValue::Unrecognized { rtype, .. } => *rtype,
        }
    }

    /// Whether this is one of the two error types.
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            ResolvedValue::TransientError(_) | ResolvedValue::NontransientError(_)
        )
    }
}

/// One RESOLVED answer: `type [1] | length [1] | value [length] | TTL [4]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAnswer {
    /// The answer.
    pub value: ResolvedValue,
    /// Seconds it may be cached.
    pub ttl: u32,
}

impl Readable for ResolvedAnswer {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let rtype = r.take_u8()?;
        let len = r.take_u8()?;
        let v = r.take(usize::from(len))?;
        let ttl = r.take_u32()?;
        let bad_len = |what| DecodeError::BadLength { what, len: v.len() };
        let value = match rtype {
            ResolvedValue::TYPE_HOSTNAME => {
                if v.is_empty() {
                    return Err(bad_len("RESOLVED hostname"));
                }
                let h = std::str::from_utf8(v)
                    .map_err(|_| DecodeError::BadValue("RESOLVED hostname: not UTF-8"))?;
                ResolvedValue::Hostname(h.to_owned())
            }
            ResolvedValue::TYPE_IPV4 => ResolvedValue::Ipv4(Ipv4Addr::from(
                <[u8; 4]>::try_from(v).map_err(|_| bad_len("RESOLVED IPv4 answer"))?,
            )),
            ResolvedValue::TYPE_IPV6 => ResolvedValue::Ipv6(Ipv6Addr::from(
                <[u8; 16]>::try_from(v).map_err(|_| bad_len("RESOLVED IPv6 answer"))?,
            )),
            ResolvedValue::TYPE_ERROR_TRANSIENT => ResolvedValue::TransientError(v.to_vec()),
            ResolvedValue::TYPE_ERROR_NONTRANSIENT => ResolvedValue::NontransientError(v.to_vec()),
            rtype => ResolvedValue::Unrecognized {
                rtype,
                value: v.to_vec(),
            },
        };
        Ok(ResolvedAnswer { value, ttl })
    }
}

impl Writeable for ResolvedAnswer {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_u8(self.value.rtype());
        match &self.value {
            ResolvedValue::Hostname(h) => {
                if h.is_empty() {
                    return Err(EncodeError::BadValue("RESOLVED empty hostname"));
                }
                write_u8_prefixed(w, "RESOLVED hostname", h.as_bytes())?;
            }
            ResolvedValue::Ipv4(a) => write_u8_prefixed(w, "RESOLVED IPv4", &a.octets())?,
            ResolvedValue::Ipv6(a) => write_u8_prefixed(w, "RESOLVED IPv6", &a.octets())?,
            ResolvedValue::TransientError(v) | ResolvedValue::NontransientError(v) => {
                write_u8_prefixed(w, "RESOLVED error", v)?;
            }
            ResolvedValue::Unrecognized { rtype, value } => {
                if matches!(
                    *rtype,
                    ResolvedValue::TYPE_HOSTNAME
                        | ResolvedValue::TYPE_IPV4
                        | ResolvedValue::TYPE_IPV6
                        | ResolvedValue::TYPE_ERROR_TRANSIENT
                        | ResolvedValue::TYPE_ERROR_NONTRANSIENT
                ) {
                    return Err(EncodeError::BadValue(
                        "unrecognized RESOLVED answer with a known type",
                    ));
                }
                write_u8_prefixed(w, "RESOLVED answer", value)?;
            }
        }
        w.write_u32(self.ttl);
        Ok(())
    }
}

/// RELAY_RESOLVED (12): the answers to a RESOLVE (tor-spec §6.4), filling the relay data
/// exactly (a partial answer is an error). Zero answers is valid on the wire.
///
/// The sender rules "if any answer is an error, no other answer may be given" and "an IPv4
/// answer, if any, comes first" are enforced by [`Resolved::new`], not by decoding (C tor
/// accepts such cells).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    answers: Vec<ResolvedAnswer>,
}

impl Resolved {
    /// A RESOLVED with `answers`, checked against the sender rules of tor-spec §6.4 and the
    /// 255-byte value limit.
    pub fn new(answers: Vec<ResolvedAnswer>) -> EncodeResult<Self> {
        if answers.len() > 1 && answers.iter().any(|a| a.value.is_error()) {
            return Err(EncodeError::BadValue(
                "RESOLVED: an error answer must be alone",
            ));
        }
        let first_v4 = answers
            .iter()
            .position(|a| matches!(a.value, ResolvedValue::Ipv4(_)));
        if first_v4.is_some_and(|i| i != 0) {
            return Err(EncodeError::BadValue(
                "RESOLVED: an IPv4 answer must come first",
            ));
        }
        for a in &answers {
            a.to_bytes()?;
        }
        Ok(Resolved { answers })
    }
    /// The answers, in order.
    pub fn answers(&self) -> &[ResolvedAnswer] {
        &self.answers
    }
}

impl Readable for Resolved {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let mut answers = Vec::new();
        while r.remaining() > 0 {
            answers.push(r.extract()?);
        }
        Ok(Resolved { answers })
    }
}

impl Writeable for Resolved {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        for a in &self.answers {
            a.write_onto(w)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// BEGIN_DIR
// ---------------------------------------------------------------------------------------------

/// RELAY_BEGIN_DIR (13): open a stream to the relay's directory service (tor-spec §6.2.1).
/// Clients send an empty body; relays ignore any body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BeginDir;

impl Readable for BeginDir {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        r.take_rest();
        Ok(BeginDir)
    }
}

impl Writeable for BeginDir {
    fn write_onto<W: Writer + ?Sized>(&self, _w: &mut W) -> EncodeResult<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// EXTEND2 / EXTENDED2
// ---------------------------------------------------------------------------------------------

/// RELAY_EXTEND2 (14): extend the circuit (tor-spec §5.1.2).
///
/// Wire form: `NSPEC [1] | NSPEC link specifiers | HTYPE [2] | HLEN [2] | HDATA [HLEN]`;
/// bytes after HDATA are ignored. Decoding rejects lists with two RSA or two Ed25519
/// identities ([`check_identities`]). Which specifiers are required (C tor wants an RSA
/// identity and an IPv4 address) is the extending OR's policy, not checked here. HTYPE values
/// are listed in `onion_core::handshake::htype`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extend2 {
    link_specs: Vec<LinkSpec>,
    htype: u16,
    hdata: Vec<u8>,
}

impl Extend2 {
    /// An EXTEND2. Fails with more than 255 specifiers, a duplicate identity, or more than
    /// 65535 bytes of handshake.
    pub fn new(link_specs: Vec<LinkSpec>, htype: u16, hdata: Vec<u8>) -> EncodeResult<Self> {
        if link_specs.len() > usize::from(u8::MAX) {
            return Err(EncodeError::TooLong {
                what: "EXTEND2 link specifier list",
                len: link_specs.len(),
                max: usize::from(u8::MAX),
            });
        }
        check_identities(&link_specs)
            .map_err(|_| EncodeError::BadValue("EXTEND2: duplicate identity link specifier"))?;
        if hdata.len() > usize::from(u16::MAX) {
            return Err(EncodeError::TooLong {
                what: "EXTEND2 handshake",
                len: hdata.len(),
                max: usize::from(u16::MAX),
            });
        }
        Ok(Extend2 {
            link_specs,
            htype,
            hdata,
        })
    }
    /// The link specifiers, in wire order (unknown ones included).
    pub fn link_specs(&self) -> &[LinkSpec] {
        &self.link_specs
    }
    /// The handshake type (HTYPE).
    pub fn htype(&self) -> u16 {
        self.htype
    }
    /// The client handshake data (HDATA).
    pub fn hdata(&self) -> &[u8] {
        &self.hdata
    }
}

impl Readable for Extend2 {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let n = r.take_u8()?;
        let link_specs = (0..n)
            .map(|_| r.extract::<LinkSpec>())
            .collect::<DecodeResult<Vec<_>>>()?;
        check_identities(&link_specs)?;
        let htype = r.take_u16()?;
        let hlen = r.take_u16()?;
        let hdata = r.take(usize::from(hlen))?.to_vec();
        r.take_rest();
        Ok(Extend2 {
            link_specs,
            htype,
            hdata,
        })
    }
}

impl Writeable for Extend2 {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        let n = u8::try_from(self.link_specs.len()).map_err(|_| EncodeError::TooLong {
            what: "EXTEND2 link specifier list",
            len: self.link_specs.len(),
            max: usize::from(u8::MAX),
        })?;
        w.write_u8(n);
        for ls in &self.link_specs {
            ls.write_onto(w)?;
        }
        w.write_u16(self.htype);
        write_u16_prefixed(w, "EXTEND2 handshake", &self.hdata)
    }
}

/// RELAY_EXTENDED2 (15): the server handshake (the payload of a CREATED2 cell):
/// `HLEN [2] | HDATA [HLEN]`; bytes after HDATA are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extended2 {
    hdata: Vec<u8>,
}

impl Extended2 {
    /// An EXTENDED2 carrying `hdata` (at most 65535 bytes).
    pub fn new(hdata: Vec<u8>) -> EncodeResult<Self> {
        if hdata.len() > usize::from(u16::MAX) {
            return Err(EncodeError::TooLong {
                what: "EXTENDED2 handshake",
                len: hdata.len(),
                max: usize::from(u16::MAX),
            });
        }
        Ok(Extended2 { hdata })
    }
    /// The server handshake data.
    pub fn hdata(&self) -> &[u8] {
        &self.hdata
    }
}

impl Readable for Extended2 {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let hlen = r.take_u16()?;
        let hdata = r.take(usize::from(hlen))?.to_vec();
        r.take_rest();
        Ok(Extended2 { hdata })
    }
}

impl Writeable for Extended2 {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        write_u16_prefixed(w, "EXTENDED2 handshake", &self.hdata)
    }
}

// ---------------------------------------------------------------------------------------------
// Unrecognized
// ---------------------------------------------------------------------------------------------

/// A relay message whose command is not understood in the [`Dialect`](super::Dialect) it was
/// decoded in (or one built by hand). Its bytes are kept and re-encode byte for byte.
///
/// tor-spec §6.1: a recognized cell with a command that is not understood "must be dropped
/// and ignored", still counting toward digests and windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecognized {
    cmd: RelayCmd,
    body: Vec<u8>,
}

impl Unrecognized {
    /// A raw message: `body` is sent as the relay data of a cell with command `cmd`. Fails if
    /// `body` is longer than [`MAX_WS_DATA_LEN`].
    pub fn new(cmd: RelayCmd, body: Vec<u8>) -> EncodeResult<Self> {
        if body.len() > MAX_WS_DATA_LEN {
            return Err(EncodeError::TooLong {
                what: "relay message",
                len: body.len(),
                max: MAX_WS_DATA_LEN,
            });
        }
        Ok(Unrecognized { cmd, body })
    }
    /// Keep `data` as it arrived (decoding never fails).
    pub(crate) fn from_wire(cmd: RelayCmd, data: &[u8]) -> Self {
        Unrecognized {
            cmd,
            body: data.to_vec(),
        }
    }
    /// The relay command.
    pub fn cmd(&self) -> RelayCmd {
        self.cmd
    }
    /// The relay data.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl Writeable for Unrecognized {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.body);
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::relaycell::linkspec::LinkSpecType;

    fn begin(raw: &[u8]) -> DecodeResult<Begin> {
        Begin::from_bytes(raw)
    }

    #[test]
    fn begin_known_answers() {
        // tor-spec §6.2: ADDRPORT = ADDRESS ':' PORT [00].
        let b = Begin::new(
            Address::Hostname("www.example.com".into()),
            80,
            BeginFlags::NONE,
        )
        .unwrap();
        assert_eq!(b.to_bytes().unwrap(), b"www.example.com:80\0");
        assert_eq!(begin(b"www.example.com:80\0"), Ok(b));

        // The following are C tor's test_cfmt_begin_cells cases.
        let b = begin(b"here-is-a-nice-long.hostname.com:65535\0").unwrap();
        assert_eq!(
            b.address(),
            &Address::Hostname("here-is-a-nice-long.hostname.com".into())
        );
        assert_eq!(b.port(), 65535);
        let b = begin(b"18.9.22.169:80\0").unwrap();
        assert_eq!(b.address(), &Address::Ipv4(Ipv4Addr::new(18, 9, 22, 169)));
        let b = begin(b"[2620::6b0:b:1a1a:0:26e5:480e]:80\0").unwrap();
        assert_eq!(
            b.address(),
            &Address::Ipv6("2620::6b0:b:1a1a:0:26e5:480e".parse().unwrap())
        );
        // Re-encoded in RFC 5952 form, as C tor's fmt_addr prints it.
        assert_eq!(
            b.to_bytes().unwrap(),
            b"[2620:0:6b0:b:1a1a:0:26e5:480e]:80\0"
        );
        // Junk too short for flags: flags 0.
        let b = begin(b"another.example.com:80\0\x01\x02").unwrap();
        assert_eq!((b.port(), b.flags()), (80, BeginFlags::NONE));
        let b = begin(b"another.example.com:443\0\x01\x02\x03\x04").unwrap();
        assert_eq!(b.flags(), BeginFlags(0x0102_0304));
        assert_eq!(
            b.to_bytes().unwrap(),
            b"another.example.com:443\0\x01\x02\x03\x04"
        );
        let b = begin(b"a-further.example.com:22\0\xee\xaa\x00\xffHi mom").unwrap();
        assert_eq!((b.port(), b.flags()), (22, BeginFlags(0xeeaa_00ff)));
        // C tor bug #41245: 3 bytes after the NUL are not flags.
        assert_eq!(
            begin(b"a.b:80\0\x42\x43\x44").unwrap().flags(),
            BeginFlags::NONE
        );
        // Flags bits as tor-spec numbers them (bit 1 = LSB).
        let f = BeginFlags::IPV6_OK | BeginFlags::IPV6_PREFERRED;
        assert_eq!(f, BeginFlags(0b101));
        assert!(f.contains(BeginFlags::IPV6_OK) && !f.contains(BeginFlags::IPV4_NOT_OK));
    }

    #[test]
    fn begin_rejections() {
        let nul = Err(DecodeError::BadValue("BEGIN: ADDRPORT not NUL-terminated"));
        let no_port = Err(DecodeError::BadValue("BEGIN: ADDRPORT without port"));
        let bad_port = Err(DecodeError::BadValue("BEGIN: bad port"));
        assert_eq!(begin(b""), nul);
        assert_eq!(begin(b"a.b:80"), nul);
        assert_eq!(begin(b"a.b\0"), no_port);
        assert_eq!(begin(b"a.b:\0"), bad_port);
        assert_eq!(begin(b"a.b:xyz\0"), bad_port);
        assert_eq!(begin(b"a.b:100000\0"), bad_port);
        assert_eq!(begin(b"a.b:65536\0"), bad_port);
        assert_eq!(begin(b"a.b:0\0"), bad_port);
        assert_eq!(begin(b"a.b:+80\0"), bad_port);
        assert_eq!(
            begin(b"[::1:80\0"),
            Err(DecodeError::BadValue("address: unbalanced '['"))
        );
        assert_eq!(
            begin(b"[nonsense]:80\0"),
            Err(DecodeError::BadValue(
                "address: bad IPv6 address in brackets"
            ))
        );
        assert_eq!(
            begin(b"a:b:80\0"),
            Err(DecodeError::BadValue("address: bad hostname"))
        );
        assert_eq!(
            begin(b":80\0"),
            Err(DecodeError::BadValue("address: bad hostname"))
        );
        assert_eq!(
            begin(b"\xff:80\0"),
            Err(DecodeError::BadValue("BEGIN: ADDRPORT not UTF-8"))
        );
        // Construction.
        let host = |h: &str| Address::Hostname(h.into());
        assert_eq!(
            Begin::new(host("a.b"), 0, BeginFlags::NONE),
            Err(EncodeError::BadValue("BEGIN port 0"))
        );
        for h in ["", "a:b", "[x]", "1.2.3.4", "a\0b"] {
            assert_eq!(
                Begin::new(host(h), 1, BeginFlags::NONE),
                Err(EncodeError::BadValue("hostname")),
                "{h:?}"
            );
        }
    }

    #[test]
    fn connected_known_answers() {
        // C tor's test_cfmt_connected_cells.
        let c = Connected::new_with_addr(Ipv4Addr::new(30, 40, 50, 60).into(), 1024).unwrap();
        assert_eq!(hex::encode(c.to_bytes().unwrap()), "1e28323c00000400");
        let v6: Ipv6Addr = "2620::6b0:b:1a1a:0:26e5:480e".parse().unwrap();
        let c = Connected::new_with_addr(v6.into(), 3600).unwrap();
        assert_eq!(
            hex::encode(c.to_bytes().unwrap()),
            "0000000006\
             2620000006b0000b1a1a000026e5480e00000e10"
        );
        let c6 = Connected::from_bytes(
            &hex::decode(
                "0000000006\
             2607f8b0400c0c020000000000000068\
             00000258",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            c6.addr(),
            Some(AddrTtl {
                addr: "2607:f8b0:400c:c02::68".parse().unwrap(),
                ttl: 600
            })
        );
        let c4 = Connected::from_bytes(b"\x02\x03\x04\x05\x00\x00\x0e\x10").unwrap();
        assert_eq!(
            c4.addr(),
            Some(AddrTtl {
                addr: Ipv4Addr::new(2, 3, 4, 5).into(),
                ttl: 3600
            })
        );
        assert_eq!(Connected::from_bytes(b""), Ok(Connected::new_empty()));
        assert_eq!(Connected::new_empty().to_bytes().unwrap(), b"");
    }

    #[test]
    fn connected_rejections() {
        assert_eq!(
            Connected::from_bytes(b"\x00\x01\x02"),
            Err(DecodeError::Truncated { needed: 1 })
        );
        let bad_family = hex::decode(
            "0000000007".to_owned() + "2607f8b0400c0c02" + "0000000000000068" + "90000258",
        )
        .unwrap();
        assert_eq!(
            Connected::from_bytes(&bad_family),
            Err(DecodeError::BadValue("CONNECTED: address type"))
        );
        let truncated_v6 = hex::decode(
            "0000000006".to_owned() + "2607f8b0400c0c02" + "0000000000000068" + "000002",
        )
        .unwrap();
        assert_eq!(
            Connected::from_bytes(&truncated_v6),
            Err(DecodeError::Truncated { needed: 1 })
        );
        assert_eq!(
            Connected::new_with_addr(Ipv4Addr::UNSPECIFIED.into(), 1),
            Err(EncodeError::BadValue("CONNECTED address 0.0.0.0"))
        );
    }

    #[test]
    fn end_forms() {
        assert_eq!(End::from_bytes(b""), Ok(End::new(EndReason::MISC)));
        assert_eq!(End::from_bytes(b"\x06junk"), Ok(End::new(EndReason::DONE)));
        assert_eq!(
            End::from_bytes(b"\x63"),
            Ok(End::new(EndReason(99))),
            "unknown reasons are accepted"
        );
        let e = End::exit_policy(Ipv4Addr::new(1, 2, 3, 4).into(), 7);
        assert_eq!(
            e.to_bytes().unwrap(),
            b"\x04\x01\x02\x03\x04\x00\x00\x00\x07"
        );
        assert_eq!(End::from_bytes(&e.to_bytes().unwrap()), Ok(e));
        // Missing TTL reads as 0xffffffff; a wrong-length address is dropped.
        assert_eq!(
            End::from_bytes(b"\x04\x01\x02\x03\x04"),
            Ok(End::exit_policy(Ipv4Addr::new(1, 2, 3, 4).into(), u32::MAX))
        );
        assert_eq!(
            End::from_bytes(b"\x04\x01\x02"),
            Ok(End::new(EndReason::EXITPOLICY))
        );
        let v6 = Ipv6Addr::LOCALHOST;
        let e = End::exit_policy(v6.into(), 1);
        assert_eq!(e.to_bytes().unwrap().len(), 1 + 16 + 4);
        assert_eq!(End::from_bytes(&e.to_bytes().unwrap()), Ok(e));
        assert_eq!(EndReason::NOTDIRECTORY.to_string(), "NOTDIRECTORY");
    }

    #[test]
    fn sendme_layouts() {
        // tor-spec §7.3.1: VERSION 1 | DATA_LEN 20 | DIGEST.
        let digest: [u8; 20] = core::array::from_fn(|i| i as u8 + 1);
        let s = Sendme::V1 { digest };
        let bytes = s.to_bytes().unwrap();
        assert_eq!(bytes.len(), 23);
        assert_eq!(&bytes[..3], &[0x01, 0x00, 0x14]);
        assert_eq!(&bytes[3..], &digest);
        assert_eq!(Sendme::from_bytes(&bytes), Ok(s.clone()));
        // Longer DATA: the first 20 bytes are the digest.
        let mut long = vec![1, 0, 22];
        long.extend_from_slice(&digest);
        long.extend_from_slice(&[0xaa, 0xbb]);
        assert_eq!(Sendme::from_bytes(&long), Ok(s));
        // v0: empty, or explicit version 0 with anything.
        assert_eq!(Sendme::V0.to_bytes().unwrap(), b"");
        assert_eq!(Sendme::from_bytes(b""), Ok(Sendme::V0));
        assert_eq!(Sendme::from_bytes(b"\x00\x00\x02ab"), Ok(Sendme::V0));
        // Unknown versions are kept.
        let u = Sendme::from_bytes(b"\x07\x00\x01z").unwrap();
        assert_eq!(
            u,
            Sendme::Unrecognized {
                version: 7,
                data: b"z".to_vec()
            }
        );
        assert_eq!(u.version(), 7);
        assert_eq!(u.to_bytes().unwrap(), b"\x07\x00\x01z");
    }

    #[test]
    fn sendme_rejections() {
        assert_eq!(
            Sendme::from_bytes(&[1, 0, 19].into_iter().chain([0; 19]).collect::<Vec<_>>()),
            Err(DecodeError::BadLength {
                what: "SENDME v1 digest",
                len: 19
            })
        );
        assert_eq!(
            Sendme::from_bytes(b"\x01\x00\x14short"),
            Err(DecodeError::Truncated { needed: 15 })
        );
        assert_eq!(
            Sendme::from_bytes(b"\x01\x00"),
            Err(DecodeError::Truncated { needed: 1 })
        );
        let bad = Sendme::Unrecognized {
            version: 1,
            data: vec![],
        };
        assert!(matches!(bad.to_bytes(), Err(EncodeError::BadValue(_))));
    }

    #[test]
    fn extend_and_extended() {
        let e = Extend::new(Ipv4Addr::new(10, 0, 0, 1), 9001, [7; 186], [9; 20]);
        let b = e.to_bytes().unwrap();
        assert_eq!(b.len(), 212);
        assert_eq!(&b[..6], &[10, 0, 0, 1, 0x23, 0x29]);
        assert_eq!(Extend::from_bytes(&b), Ok(e));
        assert_eq!(
            Extend::from_bytes(&b[..211]),
            Err(DecodeError::Truncated { needed: 1 })
        );
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Extend::from_bytes(&longer), Err(DecodeError::ExtraBytes(1)));

        let x = Extended::new([3; 148]);
        assert_eq!(Extended::from_bytes(&[3; 148]), Ok(x));
        assert_eq!(
            Extended::from_bytes(&[3; 149]),
            Err(DecodeError::ExtraBytes(1))
        );
        assert_eq!(
            Extended::from_bytes(&[3; 147]),
            Err(DecodeError::Truncated { needed: 1 })
        );
    }

    #[test]
    fn truncated_and_reasons() {
        assert_eq!(
            Truncated::from_bytes(b"\x03"),
            Ok(Truncated::new(DestroyReason::REQUESTED))
        );
        assert_eq!(
            Truncated::from_bytes(b""),
            Err(DecodeError::Truncated { needed: 1 })
        );
        assert_eq!(DestroyReason::NOSUCHSERVICE, DestroyReason::new(12));
        assert_eq!(DestroyReason::new(200).name(), None);
        assert_eq!(Truncate::from_bytes(b"ignored"), Ok(Truncate));
        assert_eq!(BeginDir::from_bytes(b"\0\0\0"), Ok(BeginDir));
    }

    #[test]
    fn resolve_forms() {
        let r = Resolve::new("4.3.2.1.in-addr.arpa".into()).unwrap();
        assert_eq!(r.to_bytes().unwrap(), b"4.3.2.1.in-addr.arpa\0");
        assert_eq!(Resolve::from_bytes(b"4.3.2.1.in-addr.arpa\0pad"), Ok(r));
        assert_eq!(
            Resolve::from_bytes(b"example.com"),
            Err(DecodeError::BadValue("RESOLVE: query not NUL-terminated"))
        );
        assert_eq!(
            Resolve::from_bytes(b"\0"),
            Err(DecodeError::BadValue("RESOLVE: empty query"))
        );
        assert_eq!(
            Resolve::new("a\0b".into()),
            Err(EncodeError::BadValue("RESOLVE query"))
        );
    }

    #[test]
    fn resolved_known_answers() {
        // C tor's test_cfmt_resolved_cells: "one of each".
        let raw: Vec<u8> = [
            &b"\xee\x16fault in the AE35 unit\x09\x09\x01\x01"[..],
            b"\xf0\x2bI'm sorry, Dave. I'm afraid I can't do that\x00\x11\x22\x33",
            b"\x06\x10\x20\x02\x90\x90\x00\x00\x00\x00\x00\x00\x00\x00\xf0\xf0\xab\xcd\x02\x00\x00\x01",
            b"\x04\x04\x7f\x00\x02\x0a\x00\x00\x01\x00",
            b"\x00\x11motherbrain.zebes\x00\x00\x00\x00",
        ]
        .concat();
        let r = Resolved::from_bytes(&raw).unwrap();
        let a = r.answers();
        assert_eq!(a.len(), 5);
        assert_eq!(
            a[0].value,
            ResolvedValue::Unrecognized {
                rtype: 0xee,
                value: b"fault in the AE35 unit".to_vec()
            }
        );
        assert_eq!(a[0].ttl, 0x0909_0101);
        assert!(a[1].value.is_error());
        assert_eq!(
            a[2].value,
            ResolvedValue::Ipv6("2002:9090::f0f0:abcd".parse().unwrap())
        );
        assert_eq!(a[2].ttl, 0x0200_0001);
        assert_eq!(
            a[3].value,
            ResolvedValue::Ipv4(Ipv4Addr::new(127, 0, 2, 10))
        );
        assert_eq!(a[3].ttl, 256);
        assert_eq!(
            a[4].value,
            ResolvedValue::Hostname("motherbrain.zebes".into())
        );
        // Decoding keeps everything, so this re-encodes byte for byte...
        assert_eq!(r.to_bytes().unwrap(), raw);
        // ...but it breaks the sender rules.
        assert!(Resolved::new(a.to_vec()).is_err());
        assert_eq!(Resolved::from_bytes(b""), Ok(Resolved::default()));
    }

    #[test]
    fn resolved_rejections() {
        let bad = |raw: &[u8], what, len| {
            assert_eq!(
                Resolved::from_bytes(raw),
                Err(DecodeError::BadLength { what, len })
            );
        };
        bad(b"\x04\x03zzz1234", "RESOLVED IPv4 answer", 3);
        bad(b"\x06\x03zzz1234", "RESOLVED IPv6 answer", 3);
        bad(b"\x00\x00xxxx", "RESOLVED hostname", 0);
        // An item running past the end; a lone type byte.
        assert_eq!(
            Resolved::from_bytes(b"\x04\x04\x7f\x00\x02\x0a\x00\x00\x01"),
            Err(DecodeError::Truncated { needed: 1 })
        );
        assert_eq!(
            Resolved::from_bytes(b"\xee"),
            Err(DecodeError::Truncated { needed: 1 })
        );
        // Sender rules.
        let v4 = ResolvedAnswer {
            value: ResolvedValue::Ipv4(Ipv4Addr::LOCALHOST),
            ttl: 1,
        };
        let v6 = ResolvedAnswer {
            value: ResolvedValue::Ipv6(Ipv6Addr::LOCALHOST),
            ttl: 1,
        };
        assert!(Resolved::new(vec![v4.clone(), v6.clone()]).is_ok());
        assert_eq!(
            Resolved::new(vec![v6, v4]),
            Err(EncodeError::BadValue(
                "RESOLVED: an IPv4 answer must come first"
            ))
        );
        let long = ResolvedAnswer {
            value: ResolvedValue::Hostname("x".repeat(256)),
            ttl: 1,
        };
        assert!(matches!(
            Resolved::new(vec![long]),
            Err(EncodeError::TooLong { len: 256, .. })
        ));
    }

    #[test]
    fn extend2_known_answers() {
        // C tor's test_cfmt_extend_cells: the EXTEND2 with an Ed25519 identity.
        let hs: Vec<u8> = (0..99u8).collect();
        let raw = hex::decode(
            "04\
             000612F40001F0F1\
             0214616e7468726f706f6d6f727068697a6174696f6e\
             032062726f776e73686f6573646f6e746d616b6569742f62726f776e73686f657364\
             011220020000000000000000000000f0c51e1112\
             01050063",
        )
        .unwrap();
        let raw = [raw, hs.clone()].concat();
        let e = Extend2::from_bytes(&raw).unwrap();
        assert_eq!(
            e.link_specs(),
            &[
                LinkSpec::Ipv4 {
                    addr: Ipv4Addr::new(18, 244, 0, 1),
                    port: 61681
                },
                LinkSpec::RsaId(*b"anthropomorphization"),
                LinkSpec::Ed25519Id(*b"brownshoesdontmakeit/brownshoesd"),
                LinkSpec::Ipv6 {
                    addr: "2002::f0:c51e".parse().unwrap(),
                    port: 4370
                },
            ]
        );
        assert_eq!((e.htype(), e.hdata()), (0x0105, &hs[..]));
        assert_eq!(e.to_bytes().unwrap(), raw);

        // Same with the unknown "Konami code" specifier: kept, in place.
        let konami = format!("f020{}", hex::encode("upupdowndownleftrightleftrightba"));
        let raw2 = hex::decode(format!("02000612f40001f0f1{konami}ffff0003616263")).unwrap();
        let e = Extend2::from_bytes(&raw2).unwrap();
        assert_eq!(e.link_specs()[1].lstype(), LinkSpecType(0xf0));
        assert_eq!(e.to_bytes().unwrap(), raw2);
    }

    #[test]
    fn extend2_rejections() {
        // HLEN past the end (C tor: "too-long handshake").
        let mut p = hex::decode("02000612f40001f0f10214").unwrap();
        p.extend_from_slice(b"anarchoindividualist");
        p.extend_from_slice(&[0xff, 0xff, 0x01, 0xd0]);
        p.extend_from_slice(&[0; 100]);
        assert_eq!(
            Extend2::from_bytes(&p),
            Err(DecodeError::Truncated {
                needed: 0x1d0 - 100
            })
        );
        // Two RSA identities.
        let mut p = hex::decode("03000612f40001f0f10214").unwrap();
        p.extend_from_slice(b"anarchoindividualist\x02\x14autodepolymerization");
        p.extend_from_slice(&[0xff, 0xff, 0x00, 0x00]);
        assert_eq!(
            Extend2::from_bytes(&p),
            Err(DecodeError::BadValue(
                "link specifiers: more than one RSA identity"
            ))
        );
        // A specifier with a bad length.
        let p = hex::decode("01000712f40001f0f1ff00000000").unwrap();
        assert_eq!(
            Extend2::from_bytes(&p),
            Err(DecodeError::BadLength {
                what: "IPv4 link specifier",
                len: 7
            })
        );
        // Running out of space in the specifiers.
        let mut p = vec![5, 0x0a, 0xff];
        p.extend_from_slice(&[0; 255]);
        p.extend_from_slice(&[0x0a, 0xff]);
        assert_eq!(
            Extend2::from_bytes(&p),
            Err(DecodeError::Truncated { needed: 255 })
        );
        // Constructor limits.
        assert_eq!(
            Extend2::new(vec![LinkSpec::RsaId([0; 20]); 2], 2, vec![]),
            Err(EncodeError::BadValue(
                "EXTEND2: duplicate identity link specifier"
            ))
        );
        assert!(matches!(
            Extend2::new(vec![], 2, vec![0; 65536]),
            Err(EncodeError::TooLong { len: 65536, .. })
        ));
    }

    #[test]
    fn extended2_forms() {
        // C tor: a 42-byte EXTENDED2; "almost too long" (0x01f0 = 496) parses in 498 bytes.
        let mut p = vec![0x00, 0x2a];
        p.extend_from_slice(&[5; 42]);
        let e = Extended2::from_bytes(&p).unwrap();
        assert_eq!(e.hdata(), &[5; 42]);
        assert_eq!(e.to_bytes().unwrap(), p);
        let mut full = vec![0x01, 0xf0];
        full.extend_from_slice(&[0; 496]);
        assert!(Extended2::from_bytes(&full).is_ok());
        full[1] = 0xf1;
        assert_eq!(
            Extended2::from_bytes(&full),
            Err(DecodeError::Truncated { needed: 1 })
        );
    }

    #[test]
    fn data_limits() {
        assert!(Data::new(vec![0; 498]).is_ok());
        assert_eq!(
            Data::new(vec![0; 499]),
            Err(EncodeError::TooLong {
                what: "DATA",
                len: 499,
                max: 498
            })
        );
        assert!(Data::new_ws(vec![0; MAX_WS_DATA_LEN]).is_ok());
        assert!(Data::new_ws(vec![0; MAX_WS_DATA_LEN + 1]).is_err());
        assert_eq!(
            Data::from_bytes(&vec![0; MAX_WS_DATA_LEN + 1]),
            Err(DecodeError::BadLength {
                what: "DATA",
                len: MAX_WS_DATA_LEN + 1
            })
        );
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("0"), Some(0));
        assert_eq!(parse_port("00080"), Some(80));
        assert_eq!(parse_port("65535"), Some(65535));
        for bad in ["", "65536", "99999", "123456", "-1", "+1", " 1", "1a"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }
}
