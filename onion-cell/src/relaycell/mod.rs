//! Relay cells (tor-spec §6.1) and the messages they carry, plus the seed's RELAY_WS cell
//! format and its RELAY_ASSOCIATE / RELAY_WS / RELAY_INFO messages.
//!
//! A relay cell body, once the crypto layer has removed the onion layers, is:
//!
//! | offset | field | bytes |
//! |---|---|---|
//! | 0 | relay command | 1 |
//! | 1..3 | recognized ([`RECOGNIZED_RANGE`]) | 2 |
//! | 3..5 | stream id | 2 |
//! | 5..9 | digest ([`DIGEST_RANGE`]) | 4 |
//! | 9..11 | length | 2 |
//! | 11.. | data, then padding | length, rest |
//!
//! An ordinary RELAY / RELAY_EARLY cell body is [`BODY_LEN`] (509) bytes, so data is at most
//! [`MAX_DATA_LEN`] (498). The seed's RELAY_WS cells (channel command 190) carry the same
//! header but a variable-length body of up to [`MAX_WS_BODY_LEN`] bytes and no padding.
//!
//! This module does not look at `recognized` or `digest`: the relay crypto layer checks them
//! before decoding and fills them in after encoding ([`RelayCell::encode`] writes zeros).
//!
//! # Dialects
//!
//! The seed's commands 40-42 collide with Tor's, so decoding takes a [`Dialect`]: under
//! [`Dialect::Tor`] they stay [`RelayMsg::Unrecognized`] (byte for byte); under
//! [`Dialect::Seed`] they decode as [`RelayMsg::Associate`], [`RelayMsg::WsStream`] and
//! [`RelayMsg::Info`].

use std::fmt;
use std::ops::Range;

use crate::bytes::{
    DecodeError, DecodeResult, EncodeError, EncodeResult, Readable, Reader, Writeable, Writer,
};

pub mod linkspec;
pub mod msg;
pub mod seed;

#[cfg(test)]
mod arb;

pub use linkspec::{LinkSpec, LinkSpecType};
pub use msg::{
    AddrTtl, Address, Begin, BeginDir, BeginFlags, Connected, Data, DestroyReason, DropMsg, End,
    EndReason, Extend, Extend2, Extended, Extended2, Resolve, Resolved, ResolvedAnswer,
    ResolvedValue, Sendme, Truncate, Truncated, Unrecognized,
};
pub use seed::{
    Associate, Info, InfoKind, InfoRequest, InfoResponse, OpWsAddr, OrWsAddr, WsStream,
};

/// Length of an ordinary relay cell body (`PAYLOAD_LEN`, the payload of a fixed-size cell).
pub const BODY_LEN: usize = 509;
/// Length of the relay header.
pub const HEADER_LEN: usize = 11;
/// Most data an ordinary relay cell carries (`RELAY_PAYLOAD_SIZE`).
pub const MAX_DATA_LEN: usize = BODY_LEN - HEADER_LEN;
/// Longest body of a seed RELAY_WS cell (its 2-byte cell length field).
pub const MAX_WS_BODY_LEN: usize = u16::MAX as usize;
/// Most data a seed RELAY_WS cell carries.
pub const MAX_WS_DATA_LEN: usize = MAX_WS_BODY_LEN - HEADER_LEN;

/// Offset of the relay command.
pub const CMD_OFFSET: usize = 0;
/// Where `recognized` lies in a body: zero when the cell is for us (with the right digest).
pub const RECOGNIZED_RANGE: Range<usize> = 1..3;
/// Where the stream id lies in a body.
pub const STREAM_ID_RANGE: Range<usize> = 3..5;
/// Where the 4-byte running digest lies in a body.
pub const DIGEST_RANGE: Range<usize> = 5..9;
/// Where the data length lies in a body.
pub const LENGTH_RANGE: Range<usize> = 9..11;
/// Zero bytes written right after the data before the random padding (tor-spec §6.1).
pub const PADDING_ZEROS: usize = 4;

/// A relay command. Open: every byte value is representable, so unknown commands survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayCmd(pub u8);

impl RelayCmd {
    /// Open a stream.
    pub const BEGIN: Self = Self(1);
    /// Stream data.
    pub const DATA: Self = Self(2);
    /// Close a stream.
    pub const END: Self = Self(3);
    /// A stream is open.
    pub const CONNECTED: Self = Self(4);
    /// Flow-control acknowledgement, for a stream or the circuit.
    pub const SENDME: Self = Self(5);
    /// Extend the circuit (TAP).
    pub const EXTEND: Self = Self(6);
    /// Circuit extended (TAP).
    pub const EXTENDED: Self = Self(7);
    /// Cut the circuit after the addressed hop.
    pub const TRUNCATE: Self = Self(8);
    /// Circuit cut.
    pub const TRUNCATED: Self = Self(9);
    /// Long-range dummy.
    pub const DROP: Self = Self(10);
    /// Resolve a hostname.
    pub const RESOLVE: Self = Self(11);
    /// Answers to RESOLVE.
    pub const RESOLVED: Self = Self(12);
    /// Open a directory stream.
    pub const BEGIN_DIR: Self = Self(13);
    /// Extend the circuit.
    pub const EXTEND2: Self = Self(14);
    /// Circuit extended.
    pub const EXTENDED2: Self = Self(15);
    /// The seed's RELAY_ASSOCIATE.
    ///
    /// Collides with Tor's INTRODUCE_ACK (40); therefore only ever exchanged between an OP and
    /// hop 1 when that hop is one of our own ORs, and never forwarded. Decoded only under
    /// [`Dialect::Seed`].
    pub const ASSOCIATE: Self = Self(40);
    /// The seed's RELAY_WS.
    ///
    /// Collides with Tor's PADDING_NEGOTIATE (41); therefore only ever exchanged between an OP
    /// and hop 1 when that hop is one of our own ORs, and never forwarded. Decoded only under
    /// [`Dialect::Seed`].
    pub const WS: Self = Self(41);
    /// The seed's RELAY_INFO.
    ///
    /// Collides with Tor's PADDING_NEGOTIATED (42); therefore only ever exchanged between an
    /// OP and hop 1 when that hop is one of our own ORs, and never forwarded. Decoded only
    /// under [`Dialect::Seed`].
    pub const INFO: Self = Self(42);

    /// What the stream id of a cell with this command must be (tor-spec §6.1).
    ///
    /// Stream commands need a non-zero id, "\[control\]" commands need zero, SENDME takes either
    /// (§7). Commands this crate does not parse, including the seed's 40-42 (whose README does
    /// not say), are not checked.
    pub fn stream_id_rule(self) -> StreamIdRule {
        match self {
            Self::BEGIN
            | Self::DATA
            | Self::END
            | Self::CONNECTED
            | Self::RESOLVE
            | Self::RESOLVED
            | Self::BEGIN_DIR => StreamIdRule::NonZero,
            Self::EXTEND
            | Self::EXTENDED
            | Self::TRUNCATE
            | Self::TRUNCATED
            | Self::DROP
            | Self::EXTEND2
            | Self::EXTENDED2 => StreamIdRule::Zero,
            _ => StreamIdRule::Any,
        }
    }

    /// Whether this is one of the seed's commands (40-42), which collide with Tor's.
    pub fn is_seed_extension(self) -> bool {
        matches!(self, Self::ASSOCIATE | Self::WS | Self::INFO)
    }

    /// Whether `dialect` gives this command a typed message.
    pub fn is_known(self, dialect: Dialect) -> bool {
        matches!(self.0, 1..=15) || (dialect == Dialect::Seed && self.is_seed_extension())
    }

    /// The command's name in `dialect`, if it has a typed message there.
    pub fn name(self, dialect: Dialect) -> Option<&'static str> {
        let n = match self {
            Self::BEGIN => "BEGIN",
            Self::DATA => "DATA",
            Self::END => "END",
            Self::CONNECTED => "CONNECTED",
            Self::SENDME => "SENDME",
            Self::EXTEND => "EXTEND",
            Self::EXTENDED => "EXTENDED",
            Self::TRUNCATE => "TRUNCATE",
            Self::TRUNCATED => "TRUNCATED",
            Self::DROP => "DROP",
            Self::RESOLVE => "RESOLVE",
            Self::RESOLVED => "RESOLVED",
            Self::BEGIN_DIR => "BEGIN_DIR",
            Self::EXTEND2 => "EXTEND2",
            Self::EXTENDED2 => "EXTENDED2",
            Self::ASSOCIATE if dialect == Dialect::Seed => "ASSOCIATE",
            Self::WS if dialect == Dialect::Seed => "WS",
            Self::INFO if dialect == Dialect::Seed => "INFO",
            _ => return None,
        };
        Some(n)
    }
}

impl fmt::Display for RelayCmd {
    /// The Tor name (1-15), `ASSOCIATE`/`WS`/`INFO` with a `seed:` prefix (40-42), or the
    /// number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(Dialect::Tor), self.name(Dialect::Seed)) {
            (Some(n), _) => f.write_str(n),
            (None, Some(n)) => write!(f, "seed:{n}"),
            (None, None) => write!(f, "relay command {}", self.0),
        }
    }
}

/// What a relay command requires of the stream id (tor-spec §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamIdRule {
    /// Circuit-level ("\[control\]") command: the stream id must be zero.
    Zero,
    /// Stream-level command: the stream id must not be zero.
    NonZero,
    /// Either (SENDME; commands not checked).
    Any,
}

impl StreamIdRule {
    /// Whether `id` obeys the rule.
    pub fn allows(self, id: StreamId) -> bool {
        match self {
            StreamIdRule::Zero => id.is_zero(),
            StreamIdRule::NonZero => !id.is_zero(),
            StreamIdRule::Any => true,
        }
    }
}

/// A stream id (zero: the message is about the whole circuit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(pub u16);

impl StreamId {
    /// Zero: no stream.
    pub const ZERO: Self = Self(0);

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// Which relay commands get typed messages when decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Tor's commands (1-15); everything else is [`RelayMsg::Unrecognized`]. Use this on
    /// every circuit, except as below.
    Tor,
    /// Tor's commands plus the seed's 40-42. Use this only for cells exchanged with hop 1 of a
    /// circuit whose hop 1 is one of our own ORs, and for every RELAY_WS cell.
    Seed,
}

/// A relay message: the command and data of a relay cell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayMsg {
    /// RELAY_BEGIN (1).
    Begin(Begin),
    /// RELAY_DATA (2).
    Data(Data),
    /// RELAY_END (3).
    End(End),
    /// RELAY_CONNECTED (4).
    Connected(Connected),
    /// RELAY_SENDME (5).
    Sendme(Sendme),
    /// RELAY_EXTEND (6).
    Extend(Extend),
    /// RELAY_EXTENDED (7).
    Extended(Extended),
    /// RELAY_TRUNCATE (8).
    Truncate(Truncate),
    /// RELAY_TRUNCATED (9).
    Truncated(Truncated),
    /// RELAY_DROP (10).
    Drop(DropMsg),
    /// RELAY_RESOLVE (11).
    Resolve(Resolve),
    /// RELAY_RESOLVED (12).
    Resolved(Resolved),
    /// RELAY_BEGIN_DIR (13).
    BeginDir(BeginDir),
    /// RELAY_EXTEND2 (14).
    Extend2(Extend2),
    /// RELAY_EXTENDED2 (15).
    Extended2(Extended2),
    /// The seed's RELAY_ASSOCIATE (40), [`Dialect::Seed`] only.
    Associate(Associate),
    /// The seed's RELAY_WS (41), [`Dialect::Seed`] only.
    WsStream(WsStream),
    /// The seed's RELAY_INFO (42), [`Dialect::Seed`] only.
    Info(Info),
    /// A command without a typed message in the dialect used, kept byte for byte.
    Unrecognized(Unrecognized),
}

macro_rules! from_msg {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for RelayMsg {
            fn from(m: $ty) -> Self {
                RelayMsg::$variant(m)
            }
        })*
    };
}

from_msg!(
    Begin(Begin),
    Data(Data),
    End(End),
    Connected(Connected),
    Sendme(Sendme),
    Extend(Extend),
    Extended(Extended),
    Truncate(Truncate),
    Truncated(Truncated),
    Drop(DropMsg),
    Resolve(Resolve),
    Resolved(Resolved),
    BeginDir(BeginDir),
    Extend2(Extend2),
    Extended2(Extended2),
    Associate(Associate),
    WsStream(WsStream),
    Info(Info),
    Unrecognized(Unrecognized),
);

impl RelayMsg {
    /// The relay command.
    pub fn cmd(&self) -> RelayCmd {
        match self {
            RelayMsg::Begin(_) => RelayCmd::BEGIN,
            RelayMsg::Data(_) => RelayCmd::DATA,
            RelayMsg::End(_) => RelayCmd::END,
            RelayMsg::Connected(_) => RelayCmd::CONNECTED,
            RelayMsg::Sendme(_) => RelayCmd::SENDME,
            RelayMsg::Extend(_) => RelayCmd::EXTEND,
            RelayMsg::Extended(_) => RelayCmd::EXTENDED,
            RelayMsg::Truncate(_) => RelayCmd::TRUNCATE,
            RelayMsg::Truncated(_) => RelayCmd::TRUNCATED,
            RelayMsg::Drop(_) => RelayCmd::DROP,
            RelayMsg::Resolve(_) => RelayCmd::RESOLVE,
            RelayMsg::Resolved(_) => RelayCmd::RESOLVED,
            RelayMsg::BeginDir(_) => RelayCmd::BEGIN_DIR,
            RelayMsg::Extend2(_) => RelayCmd::EXTEND2,
            RelayMsg::Extended2(_) => RelayCmd::EXTENDED2,
            RelayMsg::Associate(_) => RelayCmd::ASSOCIATE,
            RelayMsg::WsStream(_) => RelayCmd::WS,
            RelayMsg::Info(_) => RelayCmd::INFO,
            RelayMsg::Unrecognized(u) => u.cmd(),
        }
    }

    /// Decode the relay data `data` (the `Length` bytes after the header, no padding) of a
    /// message with command `cmd`.
    ///
    /// Commands without a typed message in `dialect` give [`RelayMsg::Unrecognized`] and
    /// never fail. A known command whose data does not parse fails: the circuit layer treats
    /// that as a protocol violation. Fails with [`DecodeError::BadLength`] if `data` is longer
    /// than [`MAX_WS_DATA_LEN`].
    pub fn decode(cmd: RelayCmd, data: &[u8], dialect: Dialect) -> DecodeResult<Self> {
        if data.len() > MAX_WS_DATA_LEN {
            return Err(DecodeError::BadLength {
                what: "relay data",
                len: data.len(),
            });
        }
        let seed = dialect == Dialect::Seed;
        Ok(match cmd {
            RelayCmd::BEGIN => Begin::from_bytes(data)?.into(),
            RelayCmd::DATA => Data::from_bytes(data)?.into(),
            RelayCmd::END => End::from_bytes(data)?.into(),
            RelayCmd::CONNECTED => Connected::from_bytes(data)?.into(),
            RelayCmd::SENDME => Sendme::from_bytes(data)?.into(),
            RelayCmd::EXTEND => Extend::from_bytes(data)?.into(),
            RelayCmd::EXTENDED => Extended::from_bytes(data)?.into(),
            RelayCmd::TRUNCATE => Truncate::from_bytes(data)?.into(),
            RelayCmd::TRUNCATED => Truncated::from_bytes(data)?.into(),
            RelayCmd::DROP => DropMsg::from_bytes(data)?.into(),
            RelayCmd::RESOLVE => Resolve::from_bytes(data)?.into(),
            RelayCmd::RESOLVED => Resolved::from_bytes(data)?.into(),
            RelayCmd::BEGIN_DIR => BeginDir::from_bytes(data)?.into(),
            RelayCmd::EXTEND2 => Extend2::from_bytes(data)?.into(),
            RelayCmd::EXTENDED2 => Extended2::from_bytes(data)?.into(),
            RelayCmd::ASSOCIATE if seed => Associate::from_bytes(data)?.into(),
            RelayCmd::WS if seed => WsStream::from_bytes(data)?.into(),
            RelayCmd::INFO if seed => Info::from_bytes(data)?.into(),
            _ => Unrecognized::from_wire(cmd, data).into(),
        })
    }

    /// Append the relay data of this message (no header, no padding) to `w`.
    pub fn encode_body<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        match self {
            RelayMsg::Begin(m) => m.write_onto(w),
            RelayMsg::Data(m) => m.write_onto(w),
            RelayMsg::End(m) => m.write_onto(w),
            RelayMsg::Connected(m) => m.write_onto(w),
            RelayMsg::Sendme(m) => m.write_onto(w),
            RelayMsg::Extend(m) => m.write_onto(w),
            RelayMsg::Extended(m) => m.write_onto(w),
            RelayMsg::Truncate(m) => m.write_onto(w),
            RelayMsg::Truncated(m) => m.write_onto(w),
            RelayMsg::Drop(m) => m.write_onto(w),
            RelayMsg::Resolve(m) => m.write_onto(w),
            RelayMsg::Resolved(m) => m.write_onto(w),
            RelayMsg::BeginDir(m) => m.write_onto(w),
            RelayMsg::Extend2(m) => m.write_onto(w),
            RelayMsg::Extended2(m) => m.write_onto(w),
            RelayMsg::Associate(m) => m.write_onto(w),
            RelayMsg::WsStream(m) => m.write_onto(w),
            RelayMsg::Info(m) => m.write_onto(w),
            RelayMsg::Unrecognized(m) => m.write_onto(w),
        }
    }
}

/// A decoded relay cell: a stream id and a message.
///
/// The stream id always obeys [`RelayCmd::stream_id_rule`] of the message's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCell {
    stream_id: StreamId,
    msg: RelayMsg,
}

impl RelayCell {
    /// A cell carrying `msg` on `stream_id`. Fails if the stream id breaks the command's
    /// [`StreamIdRule`].
    pub fn new(stream_id: StreamId, msg: RelayMsg) -> EncodeResult<Self> {
        match msg.cmd().stream_id_rule() {
            rule if rule.allows(stream_id) => Ok(RelayCell { stream_id, msg }),
            StreamIdRule::Zero => Err(EncodeError::BadValue(
                "relay cell: stream id must be zero for this command",
            )),
            _ => Err(EncodeError::BadValue(
                "relay cell: stream id must be non-zero for this command",
            )),
        }
    }

    /// The stream id.
    pub fn stream_id(&self) -> StreamId {
        self.stream_id
    }
    /// The message.
    pub fn msg(&self) -> &RelayMsg {
        &self.msg
    }
    /// The relay command.
    pub fn cmd(&self) -> RelayCmd {
        self.msg.cmd()
    }
    /// Take the stream id and message apart.
    pub fn into_parts(self) -> (StreamId, RelayMsg) {
        (self.stream_id, self.msg)
    }

    /// Decode a decrypted relay cell body: [`BODY_LEN`] bytes for RELAY / RELAY_EARLY, or a
    /// RELAY_WS body (at least [`HEADER_LEN`], at most [`MAX_WS_BODY_LEN`] bytes).
    ///
    /// Checks that the length field fits the body and that the stream id obeys the command's
    /// [`StreamIdRule`]; ignores padding; does not check `recognized` or `digest` (the crypto
    /// layer has). The body of a stream-level SENDME "SHOULD be ignored" (tor-spec §7.4): if
    /// it does not parse, the message is [`Sendme::V0`].
    pub fn decode(body: &[u8], dialect: Dialect) -> DecodeResult<Self> {
        if body.len() > MAX_WS_BODY_LEN {
            return Err(DecodeError::BadLength {
                what: "relay cell body",
                len: body.len(),
            });
        }
        let mut r = Reader::new(body);
        let cmd = RelayCmd(r.take_u8()?);
        let _recognized = r.take_u16()?;
        let stream_id = StreamId(r.take_u16()?);
        let _digest = r.take_u32()?;
        let len = usize::from(r.take_u16()?);
        if len > r.remaining() {
            return Err(DecodeError::BadLength {
                what: "relay cell length",
                len,
            });
        }
        let data = r.take(len)?;
        match cmd.stream_id_rule() {
            rule if rule.allows(stream_id) => {}
            StreamIdRule::Zero => {
                return Err(DecodeError::BadValue(
                    "relay cell: non-zero stream id on a circuit-level command",
                ));
            }
            _ => {
                return Err(DecodeError::BadValue(
                    "relay cell: zero stream id on a stream-level command",
                ));
            }
        }
        let msg = if cmd == RelayCmd::SENDME && !stream_id.is_zero() {
            RelayMsg::Sendme(Sendme::from_bytes(data).unwrap_or(Sendme::V0))
        } else {
            RelayMsg::decode(cmd, data, dialect)?
        };
        Ok(RelayCell { stream_id, msg })
    }

    /// Header (recognized and digest zero) and data, with the length field set; fails if the
    /// data is longer than `max_data`.
    fn encode_unpadded(&self, max_data: usize) -> EncodeResult<Vec<u8>> {
        let mut v = Vec::with_capacity(BODY_LEN);
        v.write_u8(self.cmd().0);
        v.write_u16(0);
        v.write_u16(self.stream_id.0);
        v.write_u32(0);
        v.write_u16(0);
        self.msg.encode_body(&mut v)?;
        let len = v.len().saturating_sub(HEADER_LEN);
        let too_long = EncodeError::TooLong {
            what: "relay cell data",
            len,
            max: max_data,
        };
        if len > max_data {
            return Err(too_long);
        }
        let len16 = u16::try_from(len).map_err(|_| too_long)?;
        if let Some(field) = v.get_mut(LENGTH_RANGE) {
            field.copy_from_slice(&len16.to_be_bytes());
        }
        Ok(v)
    }

    /// Encode into an ordinary [`BODY_LEN`]-byte body, ready for the crypto layer to set the
    /// digest. Fails if the data exceeds [`MAX_DATA_LEN`].
    ///
    /// Padding follows tor-spec §6.1 (and C tor): [`PADDING_ZEROS`] zero bytes after the data
    /// (fewer if the cell ends first), then random bytes. This crate has no RNG:
    /// `fill_random` is called once with the region to randomize (the body from
    /// `HEADER_LEN + length + 4` to the end), and not at all when that region is empty. Pass
    /// e.g. `|buf| rng.fill_bytes(buf)`; a closure that does nothing leaves zeros.
    pub fn encode(&self, fill_random: impl FnOnce(&mut [u8])) -> EncodeResult<[u8; BODY_LEN]> {
        let v = self.encode_unpadded(MAX_DATA_LEN)?;
        let mut out = [0u8; BODY_LEN];
        let (head, padding) = out
            .split_at_mut_checked(v.len())
            .ok_or(EncodeError::TooLong {
                what: "relay cell",
                len: v.len(),
                max: BODY_LEN,
            })?;
        head.copy_from_slice(&v);
        if let Some(random) = padding.get_mut(PADDING_ZEROS..)
            && !random.is_empty()
        {
            fill_random(random);
        }
        Ok(out)
    }

    /// Encode into the variable-length body of a seed RELAY_WS cell: exactly header and data,
    /// no padding. Fails if the data exceeds [`MAX_WS_DATA_LEN`].
    pub fn encode_ws(&self) -> EncodeResult<Vec<u8>> {
        self.encode_unpadded(MAX_WS_DATA_LEN)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    fn data_cell(stream: u16, data: &[u8]) -> RelayCell {
        RelayCell::new(
            StreamId(stream),
            Data::new_ws(data.to_vec()).unwrap().into(),
        )
        .unwrap()
    }

    #[test]
    fn header_known_answer() {
        // C tor's test_cfmt_relay_msg_encoding_simple (RELAY_CELL_FORMAT_V0): DATA "hello
        // world" on stream 0x250.
        let cell = data_cell(0x250, b"hello world");
        let body = cell.encode(|b| b.fill(0xaa)).unwrap();
        let expect = hex::decode(
            "02\
             0000\
             0250\
             00000000\
             000B\
             68656c6c6f20776f726c64\
             00000000",
        )
        .unwrap();
        assert_eq!(&body[..expect.len()], &expect[..]);
        assert!(body[expect.len()..].iter().all(|&b| b == 0xaa));
        assert_eq!(RelayCell::decode(&body, Dialect::Tor), Ok(cell));
        assert_eq!(body[CMD_OFFSET], 2);
        assert_eq!(&body[RECOGNIZED_RANGE], &[0, 0]);
        assert_eq!(&body[STREAM_ID_RANGE], &[0x02, 0x50]);
        assert_eq!(&body[DIGEST_RANGE], &[0; 4]);
        assert_eq!(&body[LENGTH_RANGE], &[0, 11]);
    }

    #[test]
    fn begin_and_sendme_cells() {
        // tor-spec §6.2 BEGIN "www.example.com:80\0" on stream 1.
        let begin = Begin::new(
            Address::Hostname("www.example.com".into()),
            80,
            BeginFlags::NONE,
        )
        .unwrap();
        let cell = RelayCell::new(StreamId(1), begin.into()).unwrap();
        let body = cell.encode(|_| {}).unwrap();
        let mut expect = hex::decode("01 0000 0001 00000000 0013".replace(' ', "")).unwrap();
        expect.extend_from_slice(b"www.example.com:80\0");
        assert_eq!(&body[..expect.len()], &expect[..]);
        assert!(body[expect.len()..].iter().all(|&b| b == 0));
        assert_eq!(RelayCell::decode(&body, Dialect::Tor), Ok(cell));

        // tor-spec §7.3.1: circuit-level SENDME v1.
        let digest = [0x5a; 20];
        let cell = RelayCell::new(StreamId::ZERO, Sendme::V1 { digest }.into()).unwrap();
        let body = cell.encode(|_| {}).unwrap();
        let mut expect =
            hex::decode("05 0000 0000 00000000 0017 01 0014".replace(' ', "")).unwrap();
        expect.extend_from_slice(&digest);
        assert_eq!(&body[..expect.len()], &expect[..]);
        assert_eq!(RelayCell::decode(&body, Dialect::Tor), Ok(cell));
    }

    #[test]
    fn padding_rule() {
        let mut calls = 0;
        for (len, random) in [(498, 0), (495, 0), (494, 0), (493, 1), (0, 494)] {
            let cell = data_cell(1, &vec![0xff; len]);
            let mut got = None;
            let body = cell
                .encode(|b| {
                    got = Some(b.len());
                    b.fill(0x11);
                })
                .unwrap();
            assert_eq!(got.unwrap_or(0), random, "data length {len}");
            calls += usize::from(got.is_some());
            let zeros_end = (HEADER_LEN + len + PADDING_ZEROS).min(BODY_LEN);
            assert!(body[HEADER_LEN + len..zeros_end].iter().all(|&b| b == 0));
            assert!(body[zeros_end..].iter().all(|&b| b == 0x11));
        }
        assert_eq!(calls, 2);
    }

    #[test]
    fn decode_rejections() {
        // Truncated header.
        assert_eq!(
            RelayCell::decode(&[2, 0, 0, 0, 1, 0, 0, 0, 0, 0], Dialect::Tor),
            Err(DecodeError::Truncated { needed: 1 })
        );
        assert_eq!(
            RelayCell::decode(&[], Dialect::Tor),
            Err(DecodeError::Truncated { needed: 1 })
        );
        // Length field larger than the body holds: 499 in an ordinary cell.
        let mut body = [0u8; BODY_LEN];
        body[0] = 2;
        body[4] = 1;
        body[9..11].copy_from_slice(&499u16.to_be_bytes());
        assert_eq!(
            RelayCell::decode(&body, Dialect::Tor),
            Err(DecodeError::BadLength {
                what: "relay cell length",
                len: 499
            })
        );
        body[9..11].copy_from_slice(&498u16.to_be_bytes());
        assert!(RelayCell::decode(&body, Dialect::Tor).is_ok());
        // ...and in a RELAY_WS body.
        let ws = [2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 3, b'a', b'b'];
        assert_eq!(
            RelayCell::decode(&ws, Dialect::Seed),
            Err(DecodeError::BadLength {
                what: "relay cell length",
                len: 3
            })
        );
        // Too long for any cell.
        assert_eq!(
            RelayCell::decode(&vec![0; MAX_WS_BODY_LEN + 1], Dialect::Seed),
            Err(DecodeError::BadLength {
                what: "relay cell body",
                len: MAX_WS_BODY_LEN + 1
            })
        );
        // Stream id rules.
        let mut body = [0u8; BODY_LEN];
        body[0] = RelayCmd::DATA.0;
        assert_eq!(
            RelayCell::decode(&body, Dialect::Tor),
            Err(DecodeError::BadValue(
                "relay cell: zero stream id on a stream-level command"
            ))
        );
        body[0] = RelayCmd::EXTEND2.0;
        body[4] = 7;
        assert_eq!(
            RelayCell::decode(&body, Dialect::Tor),
            Err(DecodeError::BadValue(
                "relay cell: non-zero stream id on a circuit-level command"
            ))
        );
        // A known command with a bad body.
        let mut body = [0u8; BODY_LEN];
        body[0] = RelayCmd::BEGIN.0;
        body[4] = 1;
        body[10] = 3;
        body[11..14].copy_from_slice(b"a.b");
        assert_eq!(
            RelayCell::decode(&body, Dialect::Tor),
            Err(DecodeError::BadValue("BEGIN: ADDRPORT not NUL-terminated"))
        );
    }

    #[test]
    fn encode_rejections() {
        // DATA longer than 498 in an ordinary cell; fine in RELAY_WS.
        let cell = data_cell(1, &[0; 499]);
        assert_eq!(
            cell.encode(|_| {}),
            Err(EncodeError::TooLong {
                what: "relay cell data",
                len: 499,
                max: MAX_DATA_LEN
            })
        );
        let ws = cell.encode_ws().unwrap();
        assert_eq!(ws.len(), HEADER_LEN + 499);
        assert_eq!(RelayCell::decode(&ws, Dialect::Seed), Ok(cell));
        let big = data_cell(1, &vec![0; MAX_WS_DATA_LEN]);
        assert_eq!(big.encode_ws().unwrap().len(), MAX_WS_BODY_LEN);
        // Stream id rules.
        assert_eq!(
            RelayCell::new(StreamId::ZERO, Data::new(vec![]).unwrap().into()),
            Err(EncodeError::BadValue(
                "relay cell: stream id must be non-zero for this command"
            ))
        );
        assert_eq!(
            RelayCell::new(StreamId(3), Truncate.into()),
            Err(EncodeError::BadValue(
                "relay cell: stream id must be zero for this command"
            ))
        );
        assert!(RelayCell::new(StreamId(3), Sendme::V0.into()).is_ok());
        assert!(RelayCell::new(StreamId::ZERO, Sendme::V0.into()).is_ok());
    }

    #[test]
    fn dialects() {
        let ws = WsStream::from_op(
            &OpWsAddr {
                remote_address: "example.com".into(),
                remote_port: 80,
            },
            b"hi".to_vec(),
        )
        .unwrap();
        let cell = RelayCell::new(StreamId(9), ws.clone().into()).unwrap();
        let body = cell.encode_ws().unwrap();
        assert_eq!(RelayCell::decode(&body, Dialect::Seed), Ok(cell));
        // Under Tor's dialect, 41 is PADDING_NEGOTIATE: kept raw, byte for byte.
        let tor = RelayCell::decode(&body, Dialect::Tor).unwrap();
        let RelayMsg::Unrecognized(u) = tor.msg() else {
            panic!("{tor:?}")
        };
        assert_eq!(u.cmd(), RelayCmd::WS);
        assert_eq!(u.body(), ws.to_bytes().unwrap());
        assert_eq!(tor.encode_ws().unwrap(), body);
        // A Tor PADDING_NEGOTIATED (42: version 0, command 1, ...) is not a seed INFO request.
        assert!(RelayMsg::decode(RelayCmd::INFO, &[0, 1, 0, 0], Dialect::Tor).is_ok());
        assert!(RelayMsg::decode(RelayCmd::INFO, &[0, 1, 0, 0], Dialect::Seed).is_ok());
        assert!(
            RelayMsg::decode(RelayCmd::ASSOCIATE, b"", Dialect::Seed).is_err()
                && RelayMsg::decode(RelayCmd::ASSOCIATE, b"", Dialect::Tor).is_ok()
        );
    }

    #[test]
    fn stream_sendme_body_ignored() {
        let mut body = [0u8; BODY_LEN];
        body[0] = RelayCmd::SENDME.0;
        body[4] = 1;
        body[10] = 3;
        body[11..14].copy_from_slice(&[1, 0, 5]); // v1 claiming 5 bytes: does not parse
        let cell = RelayCell::decode(&body, Dialect::Tor).unwrap();
        assert_eq!(cell.msg(), &RelayMsg::Sendme(Sendme::V0));
        // The same body on the circuit level is an error.
        body[4] = 0;
        assert_eq!(
            RelayCell::decode(&body, Dialect::Tor),
            Err(DecodeError::Truncated { needed: 5 })
        );
    }

    #[test]
    fn commands() {
        assert_eq!(RelayCmd::EXTENDED2.to_string(), "EXTENDED2");
        assert_eq!(RelayCmd::WS.to_string(), "seed:WS");
        assert_eq!(RelayCmd(99).to_string(), "relay command 99");
        assert_eq!(RelayCmd::INFO.name(Dialect::Tor), None);
        assert!(RelayCmd::ASSOCIATE.is_seed_extension() && !RelayCmd(43).is_seed_extension());
        assert!(RelayCmd::INFO.is_known(Dialect::Seed) && !RelayCmd::INFO.is_known(Dialect::Tor));
        assert!(!RelayCmd(0).is_known(Dialect::Seed) && !RelayCmd(16).is_known(Dialect::Seed));
        let nonzero = [1, 2, 3, 4, 11, 12, 13];
        let zero = [6, 7, 8, 9, 10, 14, 15];
        for c in 0..=255u8 {
            let rule = RelayCmd(c).stream_id_rule();
            let expect = if nonzero.contains(&c) {
                StreamIdRule::NonZero
            } else if zero.contains(&c) {
                StreamIdRule::Zero
            } else {
                StreamIdRule::Any
            };
            assert_eq!(rule, expect, "command {c}");
        }
        assert!(
            StreamIdRule::Zero.allows(StreamId::ZERO) && !StreamIdRule::Zero.allows(StreamId(1))
        );
    }

    #[test]
    fn strategies_cover_every_message() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = arb::any_msg();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3000 {
            let msg = strategy.new_tree(&mut runner).unwrap().current();
            seen.insert(match msg {
                RelayMsg::Unrecognized(_) => 0,
                m => m.cmd().0,
            });
        }
        let expect: std::collections::BTreeSet<u8> = (0..=15).chain(40..=42).collect();
        assert_eq!(seen, expect);
    }

    proptest! {
        #[test]
        fn msg_round_trip_seed(msg in arb::any_msg()) {
            let mut bytes = Vec::new();
            msg.encode_body(&mut bytes).unwrap();
            let back = RelayMsg::decode(msg.cmd(), &bytes, Dialect::Seed).unwrap();
            prop_assert_eq!(&back, &msg);
            let mut again = Vec::new();
            back.encode_body(&mut again).unwrap();
            prop_assert_eq!(again, bytes);
        }

        #[test]
        fn msg_round_trip_tor(msg in arb::tor_msg()) {
            let mut bytes = Vec::new();
            msg.encode_body(&mut bytes).unwrap();
            let back = RelayMsg::decode(msg.cmd(), &bytes, Dialect::Tor).unwrap();
            prop_assert_eq!(&back, &msg);
        }

        #[test]
        fn cell_round_trip(cell in arb::relay_cell(arb::any_msg()), fill in any::<u8>()) {
            let body = cell.encode(|b| b.fill(fill)).unwrap();
            let back = RelayCell::decode(&body, Dialect::Seed).unwrap();
            prop_assert_eq!(&back, &cell);
            prop_assert_eq!(back.encode(|b| b.fill(fill)).unwrap(), body);
        }

        #[test]
        fn ws_cell_round_trip(cell in arb::relay_cell(arb::ws_msg())) {
            let body = cell.encode_ws().unwrap();
            let mut data = Vec::new();
            cell.msg().encode_body(&mut data).unwrap();
            prop_assert_eq!(body.len(), HEADER_LEN + data.len());
            let back = RelayCell::decode(&body, Dialect::Seed).unwrap();
            prop_assert_eq!(&back, &cell);
            prop_assert_eq!(back.encode_ws().unwrap(), body);
        }

        #[test]
        fn unrecognized_is_byte_identical(
            cmd in any::<u8>(),
            data in proptest::collection::vec(any::<u8>(), 0..=MAX_DATA_LEN),
        ) {
            // Whatever decodes as Unrecognized re-encodes exactly.
            if let Ok(RelayMsg::Unrecognized(u)) = RelayMsg::decode(RelayCmd(cmd), &data, Dialect::Tor) {
                prop_assert_eq!(u.to_bytes().unwrap(), data);
            }
        }

        #[test]
        fn decode_never_panics(
            cmd in 0u8..=45,
            stream in any::<u16>(),
            data in proptest::collection::vec(any::<u8>(), 0..=MAX_DATA_LEN),
            junk in proptest::collection::vec(any::<u8>(), 0..600),
            seed in any::<bool>(),
        ) {
            let dialect = if seed { Dialect::Seed } else { Dialect::Tor };
            // A well-formed header around random data, padded to a full body...
            let mut body = vec![cmd, 0, 0];
            body.extend_from_slice(&stream.to_be_bytes());
            body.extend_from_slice(&[0; 4]);
            body.extend_from_slice(&(data.len() as u16).to_be_bytes());
            body.extend_from_slice(&data);
            body.resize(BODY_LEN, 0);
            if let Ok(cell) = RelayCell::decode(&body, dialect) {
                // ...decodes to something that re-encodes and decodes to itself.
                let again = cell.encode(|_| {}).unwrap();
                prop_assert_eq!(RelayCell::decode(&again, dialect).unwrap(), cell);
            }
            // And arbitrary bytes never panic.
            let _ = RelayCell::decode(&junk, dialect);
        }
    }
}
