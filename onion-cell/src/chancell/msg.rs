//! Bodies of the channel messages that are not link-handshake messages (those live in
//! [`crate::link`]): padding, circuit creation and teardown, relay cells, padding
//! negotiation, the seed's WebSocket extension, and unrecognized commands.
//!
//! Each body implements [`Readable`] (reading from the start of the cell payload; for a fixed
//! cell, the padding after the body is left unread) and [`Writeable`] (writing the body
//! without padding).

use super::{ChanCmd, PAYLOAD_LEN, open_u8};
use crate::bytes::{
    DecodeError, DecodeResult, EncodeError, EncodeResult, Readable, Reader, Writeable, Writer,
};

/// Length of a SHA-1 digest (`HASH_LEN`, tor-spec §0.2): the size of CREATE_FAST's X and of
/// CREATED_FAST's Y and KH.
pub(crate) const HASH_LEN: usize = 20;

/// PADDING (0): a keepalive whose payload is all padding (tor-spec §3, §7.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Padding;

impl Readable for Padding {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        r.take_rest();
        Ok(Padding)
    }
}

impl Writeable for Padding {
    fn write_onto<W: Writer + ?Sized>(&self, _w: &mut W) -> EncodeResult<()> {
        Ok(())
    }
}

/// VPADDING (128): variable-length padding; only its length matters (tor-spec §3, §7.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vpadding {
    len: u16,
}

impl Vpadding {
    /// Padding of `len` bytes (sent as zeros).
    pub fn new(len: u16) -> Self {
        Vpadding { len }
    }

    /// The padding length.
    pub fn len(&self) -> u16 {
        self.len
    }

    /// Whether the padding is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Readable for Vpadding {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let len = r.take_rest().len();
        let len = u16::try_from(len).map_err(|_| DecodeError::BadLength {
            what: "VPADDING payload",
            len,
        })?;
        Ok(Vpadding { len })
    }
}

impl Writeable for Vpadding {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_zeros(usize::from(self.len));
        Ok(())
    }
}

/// CREATE (1): a TAP onion skin (tor-spec §5.1, §5.1.3), `TAP_C_HANDSHAKE_LEN` = 186 bytes.
///
/// The bytes are kept raw: either the TAP handshake itself or the old "HTAG + HDATA" form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    handshake: Box<[u8; Create::LEN]>,
}

impl Create {
    /// Length of the onion skin (`TAP_C_HANDSHAKE_LEN`).
    pub const LEN: usize = 186;

    /// A CREATE cell carrying `handshake`.
    pub fn new(handshake: [u8; Self::LEN]) -> Self {
        Create {
            handshake: Box::new(handshake),
        }
    }

    /// The onion skin.
    pub fn handshake(&self) -> &[u8; Self::LEN] {
        &self.handshake
    }
}

impl Readable for Create {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Create::new(r.take_array()?))
    }
}

impl Writeable for Create {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.handshake[..]);
        Ok(())
    }
}

/// CREATED (2): the TAP server handshake (tor-spec §5.1), `TAP_S_HANDSHAKE_LEN` = 148 bytes
/// (`g^y` and a key hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    handshake: Box<[u8; Created::LEN]>,
}

impl Created {
    /// Length of the server handshake (`TAP_S_HANDSHAKE_LEN` = `DH_LEN + HASH_LEN`).
    pub const LEN: usize = 148;

    /// A CREATED cell carrying `handshake`.
    pub fn new(handshake: [u8; Self::LEN]) -> Self {
        Created {
            handshake: Box::new(handshake),
        }
    }

    /// The server handshake.
    pub fn handshake(&self) -> &[u8; Self::LEN] {
        &self.handshake
    }
}

impl Readable for Created {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Created::new(r.take_array()?))
    }
}

impl Writeable for Created {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.handshake[..]);
        Ok(())
    }
}

/// CREATE_FAST (5): the client's key material X (tor-spec §5.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateFast {
    x: [u8; HASH_LEN],
}

impl CreateFast {
    /// A CREATE_FAST cell carrying `x`.
    pub fn new(x: [u8; HASH_LEN]) -> Self {
        CreateFast { x }
    }

    /// X.
    pub fn x(&self) -> &[u8; HASH_LEN] {
        &self.x
    }
}

impl Readable for CreateFast {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(CreateFast { x: r.take_array()? })
    }
}

impl Writeable for CreateFast {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.x);
        Ok(())
    }
}

/// CREATED_FAST (6): the relay's key material Y and the derivative key data KH
/// (tor-spec §5.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedFast {
    y: [u8; HASH_LEN],
    kh: [u8; HASH_LEN],
}

impl CreatedFast {
    /// A CREATED_FAST cell carrying `y` and `kh`.
    pub fn new(y: [u8; HASH_LEN], kh: [u8; HASH_LEN]) -> Self {
        CreatedFast { y, kh }
    }

    /// Y.
    pub fn y(&self) -> &[u8; HASH_LEN] {
        &self.y
    }

    /// KH, the derivative key data proving knowledge of the shared key.
    pub fn kh(&self) -> &[u8; HASH_LEN] {
        &self.kh
    }
}

impl Readable for CreatedFast {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(CreatedFast {
            y: r.take_array()?,
            kh: r.take_array()?,
        })
    }
}

impl Writeable for CreatedFast {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.y);
        w.write_all(&self.kh);
        Ok(())
    }
}

/// Check a handshake-data length against the room a fixed cell leaves for it.
fn check_hdata_len(what: &'static str, len: usize, max: usize) -> EncodeResult<()> {
    if len > max {
        return Err(EncodeError::TooLong { what, len, max });
    }
    Ok(())
}

/// Read `HLEN` and `HDATA`, rejecting an `HLEN` that cannot fit in a cell payload.
fn take_hdata(r: &mut Reader<'_>, what: &'static str, max: usize) -> DecodeResult<Vec<u8>> {
    let hlen = usize::from(r.take_u16()?);
    if hlen > max {
        return Err(DecodeError::BadLength { what, len: hlen });
    }
    Ok(r.take(hlen)?.to_vec())
}

/// CREATE2 (10): a handshake of type HTYPE (tor-spec §5.1): 0 TAP, 2 ntor, 3 ntor-v3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create2 {
    htype: u16,
    hdata: Vec<u8>,
}

impl Create2 {
    /// The largest HDATA that fits a cell: [`PAYLOAD_LEN`] minus HTYPE and HLEN.
    pub const MAX_HDATA_LEN: usize = PAYLOAD_LEN - 4;

    /// A CREATE2 cell; fails if `hdata` is longer than [`Create2::MAX_HDATA_LEN`].
    pub fn new(htype: u16, hdata: Vec<u8>) -> EncodeResult<Self> {
        check_hdata_len("CREATE2 HDATA", hdata.len(), Self::MAX_HDATA_LEN)?;
        Ok(Create2 { htype, hdata })
    }

    /// The handshake type (HTYPE).
    pub fn htype(&self) -> u16 {
        self.htype
    }

    /// The client handshake data (HDATA).
    pub fn hdata(&self) -> &[u8] {
        &self.hdata
    }

    /// Take the client handshake data.
    pub fn into_hdata(self) -> Vec<u8> {
        self.hdata
    }
}

impl Readable for Create2 {
    /// Fails with [`DecodeError::BadLength`] (`"CREATE2 HLEN"`) if HLEN exceeds
    /// [`Create2::MAX_HDATA_LEN`].
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let htype = r.take_u16()?;
        let hdata = take_hdata(r, "CREATE2 HLEN", Self::MAX_HDATA_LEN)?;
        Ok(Create2 { htype, hdata })
    }
}

impl Writeable for Create2 {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        check_hdata_len("CREATE2 HDATA", self.hdata.len(), Self::MAX_HDATA_LEN)?;
        w.write_u16(self.htype);
        crate::bytes::write_u16_prefixed(w, "CREATE2 HDATA", &self.hdata)
    }
}

/// CREATED2 (11): the server's handshake reply (tor-spec §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created2 {
    hdata: Vec<u8>,
}

impl Created2 {
    /// The largest HDATA that fits a cell: [`PAYLOAD_LEN`] minus HLEN.
    pub const MAX_HDATA_LEN: usize = PAYLOAD_LEN - 2;

    /// A CREATED2 cell; fails if `hdata` is longer than [`Created2::MAX_HDATA_LEN`].
    pub fn new(hdata: Vec<u8>) -> EncodeResult<Self> {
        check_hdata_len("CREATED2 HDATA", hdata.len(), Self::MAX_HDATA_LEN)?;
        Ok(Created2 { hdata })
    }

    /// The server handshake data (HDATA).
    pub fn hdata(&self) -> &[u8] {
        &self.hdata
    }

    /// Take the server handshake data.
    pub fn into_hdata(self) -> Vec<u8> {
        self.hdata
    }
}

impl Readable for Created2 {
    /// Fails with [`DecodeError::BadLength`] (`"CREATED2 HLEN"`) if HLEN exceeds
    /// [`Created2::MAX_HDATA_LEN`].
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let hdata = take_hdata(r, "CREATED2 HLEN", Self::MAX_HDATA_LEN)?;
        Ok(Created2 { hdata })
    }
}

impl Writeable for Created2 {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        check_hdata_len("CREATED2 HDATA", self.hdata.len(), Self::MAX_HDATA_LEN)?;
        crate::bytes::write_u16_prefixed(w, "CREATED2 HDATA", &self.hdata)
    }
}

/// RELAY (3) and RELAY_EARLY (9): the whole 509-byte payload, still onion-encrypted
/// (tor-spec §6.1). Parsing the relay header is [`crate::relaycell`]'s job, after decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    body: Box<[u8; PAYLOAD_LEN]>,
}

impl Relay {
    /// A relay cell body.
    pub fn new(body: Box<[u8; PAYLOAD_LEN]>) -> Self {
        Relay { body }
    }

    /// The (encrypted) body.
    pub fn body(&self) -> &[u8; PAYLOAD_LEN] {
        &self.body
    }

    /// Take the body, e.g. to decrypt it in place.
    pub fn into_body(self) -> Box<[u8; PAYLOAD_LEN]> {
        self.body
    }
}

impl Readable for Relay {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Relay::new(Box::new(r.take_array()?)))
    }
}

impl Writeable for Relay {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.body[..]);
        Ok(())
    }
}

/// RELAY_WS (190, the seed's extension): a variable-length relay cell body, still
/// onion-encrypted, at least a relay header (11 bytes) and at most 65535 bytes.
///
/// The seed (node-Tor README, "node-Tor OR and OP"): "RELAY_WS cells act the same as RELAY
/// cells but with a variable length (limited to 65535 bytes)"; they are encrypted and
/// digested exactly as RELAY cells. The body is the whole cell payload: no padding is
/// stripped, since the bytes are ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayWs {
    body: Vec<u8>,
}

impl RelayWs {
    /// The shortest body: a relay header (command, recognized, stream ID, digest, length).
    pub const MIN_LEN: usize = 11;
    /// The longest body a variable-length cell can carry.
    pub const MAX_LEN: usize = u16::MAX as usize;

    /// A RELAY_WS body; fails unless `MIN_LEN <= body.len() <= MAX_LEN`.
    pub fn new(body: Vec<u8>) -> EncodeResult<Self> {
        if body.len() < Self::MIN_LEN {
            return Err(EncodeError::BadValue(
                "RELAY_WS body shorter than a relay header",
            ));
        }
        if body.len() > Self::MAX_LEN {
            return Err(EncodeError::TooLong {
                what: "RELAY_WS body",
                len: body.len(),
                max: Self::MAX_LEN,
            });
        }
        Ok(RelayWs { body })
    }

    /// The (encrypted) body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Take the body, e.g. to decrypt it in place.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

impl Readable for RelayWs {
    /// Takes the whole rest of the payload; fails with [`DecodeError::BadLength`]
    /// (`"RELAY_WS body"`) if it is shorter than [`RelayWs::MIN_LEN`] or longer than
    /// [`RelayWs::MAX_LEN`].
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let body = r.take_rest();
        if body.len() < Self::MIN_LEN || body.len() > Self::MAX_LEN {
            return Err(DecodeError::BadLength {
                what: "RELAY_WS body",
                len: body.len(),
            });
        }
        Ok(RelayWs {
            body: body.to_vec(),
        })
    }
}

impl Writeable for RelayWs {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.body);
        Ok(())
    }
}

open_u8! {
    /// Why a circuit was torn down (tor-spec §5.4). Open: unknown values are kept.
    pub struct DestroyReason {
        /// No reason given.
        NONE = 0,
        /// Tor protocol violation.
        PROTOCOL = 1,
        /// Internal error.
        INTERNAL = 2,
        /// A client sent a TRUNCATE command.
        REQUESTED = 3,
        /// Not currently operating; trying to save bandwidth.
        HIBERNATING = 4,
        /// Out of memory, sockets, or circuit IDs.
        RESOURCELIMIT = 5,
        /// Unable to reach relay.
        CONNECTFAILED = 6,
        /// Connected to relay, but its OR identity was not as expected.
        OR_IDENTITY = 7,
        /// The OR connection that was carrying this circuit died.
        CHANNEL_CLOSED = 8,
        /// The circuit has expired for being dirty or old.
        FINISHED = 9,
        /// Circuit construction took too long.
        TIMEOUT = 10,
        /// The circuit was destroyed without a client TRUNCATE.
        DESTROYED = 11,
        /// Request for unknown hidden service.
        NOSUCHSERVICE = 12,
    }
}

/// DESTROY (4): tear down a circuit (tor-spec §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destroy {
    reason: DestroyReason,
}

impl Destroy {
    /// A DESTROY cell with `reason`. An OP should always send [`DestroyReason::NONE`].
    pub fn new(reason: DestroyReason) -> Self {
        Destroy { reason }
    }

    /// The reason.
    pub fn reason(&self) -> DestroyReason {
        self.reason
    }
}

impl Readable for Destroy {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Destroy::new(r.take_u8()?.into()))
    }
}

impl Writeable for Destroy {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_u8(self.reason.get());
        Ok(())
    }
}

open_u8! {
    /// The command of a PADDING_NEGOTIATE cell (tor-spec §7.2). Open: unknown values are kept.
    pub struct PaddingNegotiateCmd {
        /// Stop padding.
        STOP = 1,
        /// Start padding.
        START = 2,
    }
}

/// PADDING_NEGOTIATE (12): ask the peer to stop or start link padding (tor-spec §7.2,
/// padding-spec §2.5).
///
/// Decoding keeps every field as is, including an unknown version (only version 0 is
/// defined): the recipient decides what to do with it. Clamping the timeouts to the consensus
/// range is also the recipient's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaddingNegotiate {
    version: u8,
    command: PaddingNegotiateCmd,
    ito_low_ms: u16,
    ito_high_ms: u16,
}

impl PaddingNegotiate {
    /// The only defined version of this cell.
    pub const VERSION: u8 = 0;

    /// A cell with every field given.
    pub fn new(
        version: u8,
        command: PaddingNegotiateCmd,
        ito_low_ms: u16,
        ito_high_ms: u16,
    ) -> Self {
        PaddingNegotiate {
            version,
            command,
            ito_low_ms,
            ito_high_ms,
        }
    }

    /// START with the given inactivity timeout range; `start(0, 0)` asks for the
    /// consensus defaults (padding-spec §2.5).
    pub fn start(ito_low_ms: u16, ito_high_ms: u16) -> Self {
        Self::new(
            Self::VERSION,
            PaddingNegotiateCmd::START,
            ito_low_ms,
            ito_high_ms,
        )
    }

    /// STOP: the peer should not pad this link.
    pub fn stop() -> Self {
        Self::new(Self::VERSION, PaddingNegotiateCmd::STOP, 0, 0)
    }

    /// The cell version (0 is the only defined one).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// START or STOP.
    pub fn command(&self) -> PaddingNegotiateCmd {
        self.command
    }

    /// Low end of the inactivity timeout range, in milliseconds.
    pub fn ito_low_ms(&self) -> u16 {
        self.ito_low_ms
    }

    /// High end of the inactivity timeout range, in milliseconds.
    pub fn ito_high_ms(&self) -> u16 {
        self.ito_high_ms
    }
}

impl Readable for PaddingNegotiate {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(PaddingNegotiate {
            version: r.take_u8()?,
            command: r.take_u8()?.into(),
            ito_low_ms: r.take_u16()?,
            ito_high_ms: r.take_u16()?,
        })
    }
}

impl Writeable for PaddingNegotiate {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_u8(self.version);
        w.write_u8(self.command.get());
        w.write_u16(self.ito_low_ms);
        w.write_u16(self.ito_high_ms);
        Ok(())
    }
}

/// CREATE_FAST_WS (120, the seed's extension): CREATE_FAST with X encrypted to the OR's
/// onion key.
///
/// The seed (node-Tor README): "CREATE_FAST_WS and CREATED_FAST_WS are the same as
/// CREATE_FAST and CREATED_FAST except that X (OP to OR) is encrypted with the public onion
/// key of the OR". The onion key is the OR's TAP key, always RSA-1024, so the RSA-OAEP
/// ciphertext of X is exactly 128 bytes.
///
/// Layout choice: the payload starts with that fixed 128-byte ciphertext and the rest of the
/// fixed cell is padding. There is no length field; a different key size would need a new
/// command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateFastWs {
    enc_x: Box<[u8; CreateFastWs::ENC_X_LEN]>,
}

impl CreateFastWs {
    /// Length of the encrypted X: one RSA-1024 block.
    pub const ENC_X_LEN: usize = 128;

    /// A CREATE_FAST_WS cell carrying the RSA-OAEP encryption of X.
    pub fn new(enc_x: [u8; Self::ENC_X_LEN]) -> Self {
        CreateFastWs {
            enc_x: Box::new(enc_x),
        }
    }

    /// The RSA-OAEP encryption of X.
    pub fn enc_x(&self) -> &[u8; Self::ENC_X_LEN] {
        &self.enc_x
    }
}

impl Readable for CreateFastWs {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(CreateFastWs::new(r.take_array()?))
    }
}

impl Writeable for CreateFastWs {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.enc_x[..]);
        Ok(())
    }
}

/// CREATED_FAST_WS (121, the seed's extension): CREATED_FAST with Y encrypted.
///
/// The seed (node-Tor README): "Y (OR to OP) is encrypted with aes-128-ctr and the 16 first
/// bytes of X". Layout choice: as in CREATED_FAST, the encrypted Y (20 bytes) followed by KH
/// (20 bytes, in clear), then padding; no length field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedFastWs {
    enc_y: [u8; HASH_LEN],
    kh: [u8; HASH_LEN],
}

impl CreatedFastWs {
    /// A CREATED_FAST_WS cell carrying the encrypted Y and KH.
    pub fn new(enc_y: [u8; HASH_LEN], kh: [u8; HASH_LEN]) -> Self {
        CreatedFastWs { enc_y, kh }
    }

    /// Y, AES-128-CTR-encrypted under the first 16 bytes of X.
    pub fn enc_y(&self) -> &[u8; HASH_LEN] {
        &self.enc_y
    }

    /// KH, the derivative key data.
    pub fn kh(&self) -> &[u8; HASH_LEN] {
        &self.kh
    }
}

impl Readable for CreatedFastWs {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(CreatedFastWs {
            enc_y: r.take_array()?,
            kh: r.take_array()?,
        })
    }
}

impl Writeable for CreatedFastWs {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.enc_y);
        w.write_all(&self.kh);
        Ok(())
    }
}

/// A cell whose command this crate does not know, kept whole so that it re-encodes byte for
/// byte. For a fixed-length command the body is the full payload, padding included.
///
/// Only unknown commands decode to this; an `Unrecognized` built with a known command
/// encodes fine but decodes back to the typed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecognized {
    cmd: ChanCmd,
    body: Vec<u8>,
}

impl Unrecognized {
    /// A cell with command `cmd` and payload `body`.
    pub fn new(cmd: ChanCmd, body: Vec<u8>) -> Self {
        Unrecognized { cmd, body }
    }

    /// The command.
    pub fn cmd(&self) -> ChanCmd {
        self.cmd
    }

    /// The payload.
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
