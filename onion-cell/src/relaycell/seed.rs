//! The seed's (node-Tor / iAnonym) relay messages: RELAY_ASSOCIATE (40), RELAY_WS (41) and
//! RELAY_INFO (42), from the "node-Tor OR and OP" section of the node-Tor README.
//!
//! These command numbers collide with Tor's INTRODUCE_ACK, PADDING_NEGOTIATE and
//! PADDING_NEGOTIATED: they are only ever exchanged between an OP and hop 1 when that hop is
//! one of our own ORs, never forwarded, and only decoded under
//! [`Dialect::Seed`](super::Dialect::Seed).
//!
//! The README gives the layouts but not every detail; where it is silent this module chooses,
//! and says so:
//! - RELAY_ASSOCIATE's payload "is just : \[fake_domain\]": the domain's bytes, no terminator.
//! - RELAY_WS's `Request` is the rest of the relay data after `Addr` (the README's
//!   "CELL_LEN - Length bytes - 14 bytes" counts cell framing).
//! - RELAY_INFO's `X_length` is 2 bytes, big-endian, like every Tor length.

use std::fmt;

use super::MAX_WS_DATA_LEN;
use super::msg::parse_port;
use crate::bytes::{
    DecodeError, DecodeResult, EncodeError, EncodeResult, Readable, Reader, Writeable, Writer,
    write_u16_prefixed,
};

fn check_len(what: &'static str, len: usize) -> EncodeResult<()> {
    if len > MAX_WS_DATA_LEN {
        return Err(EncodeError::TooLong {
            what,
            len,
            max: MAX_WS_DATA_LEN,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// RELAY_ASSOCIATE
// ---------------------------------------------------------------------------------------------

/// RELAY_ASSOCIATE (40): bind a fake domain to the circuit it arrives on.
///
/// The OP sends it on circuit CID (created with CREATE_FAST_WS, never extended); the OR then
/// streams RELAY_WS cells for `fake_domain` on CID. The OR may send one back, in which case
/// the OP must close the page, pick a new fake domain and start again.
///
/// Wire form: the domain's bytes (non-empty UTF-8, no NUL), filling the relay data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Associate {
    fake_domain: String,
}

impl Associate {
    /// An ASSOCIATE for `fake_domain` (non-empty, without NUL).
    pub fn new(fake_domain: String) -> EncodeResult<Self> {
        if fake_domain.is_empty() || fake_domain.contains('\0') {
            return Err(EncodeError::BadValue("ASSOCIATE fake domain"));
        }
        check_len("ASSOCIATE fake domain", fake_domain.len())?;
        Ok(Associate { fake_domain })
    }
    /// The fake domain.
    pub fn fake_domain(&self) -> &str {
        &self.fake_domain
    }
}

impl Readable for Associate {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let d = std::str::from_utf8(r.take_rest())
            .map_err(|_| DecodeError::BadValue("ASSOCIATE: fake domain not UTF-8"))?;
        if d.is_empty() || d.contains('\0') {
            return Err(DecodeError::BadValue("ASSOCIATE: bad fake domain"));
        }
        Ok(Associate {
            fake_domain: d.to_owned(),
        })
    }
}

impl Writeable for Associate {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(self.fake_domain.as_bytes());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// RELAY_WS
// ---------------------------------------------------------------------------------------------

/// RELAY_WS (41): one chunk of a browser request or its response, multiplexed by `Addr`.
///
/// Wire form: `Length [2] | Addr [Length] | Request [rest]`. `Addr` is text whose form
/// depends on the direction: [`OrWsAddr`] from the OR, [`OpWsAddr`] from the OP; this type
/// keeps it raw and parses it on demand ([`WsStream::or_addr`], [`WsStream::op_addr`]). An
/// empty `Request` from the OR means "end this request".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsStream {
    addr: Vec<u8>,
    request: Vec<u8>,
}

impl WsStream {
    /// A RELAY_WS message with a raw `addr`. Fails if the encoding exceeds
    /// [`MAX_WS_DATA_LEN`].
    pub fn new(addr: Vec<u8>, request: Vec<u8>) -> EncodeResult<Self> {
        let total = 2usize
            .saturating_add(addr.len())
            .saturating_add(request.len());
        check_len("RELAY_WS message", total)?;
        Ok(WsStream { addr, request })
    }
    /// A message from the OR: `request` is what the browser sent (empty: end the request).
    pub fn from_or(addr: &OrWsAddr, request: Vec<u8>) -> EncodeResult<Self> {
        Self::new(addr.encode()?, request)
    }
    /// A message from the OP: `response` is what the network answered.
    pub fn from_op(addr: &OpWsAddr, response: Vec<u8>) -> EncodeResult<Self> {
        Self::new(addr.encode()?, response)
    }
    /// The raw `Addr` bytes.
    pub fn addr_bytes(&self) -> &[u8] {
        &self.addr
    }
    /// The `Request` bytes.
    pub fn request(&self) -> &[u8] {
        &self.request
    }
    /// Whether the request is empty, which from the OR means "end this request".
    pub fn is_end(&self) -> bool {
        self.request.is_empty()
    }
    /// Parse `Addr` in the form the OR sends.
    pub fn or_addr(&self) -> DecodeResult<OrWsAddr> {
        OrWsAddr::parse(&self.addr)
    }
    /// Parse `Addr` in the form the OP sends.
    pub fn op_addr(&self) -> DecodeResult<OpWsAddr> {
        OpWsAddr::parse(&self.addr)
    }
}

impl Readable for WsStream {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let len = r.take_u16()?;
        let addr = r.take(usize::from(len))?.to_vec();
        let request = r.take_rest().to_vec();
        Ok(WsStream { addr, request })
    }
}

impl Writeable for WsStream {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        write_u16_prefixed(w, "RELAY_WS Addr", &self.addr)?;
        w.write_all(&self.request);
        Ok(())
    }
}

/// Split `s` into its last `N` `:`-separated fields and what precedes them (the address,
/// which may itself contain `:` when it is an IPv6 address).
fn split_fields<const N: usize>(s: &str) -> Option<(&str, [&str; N])> {
    let mut fields = [""; N];
    let mut head = s;
    for f in fields.iter_mut().rev() {
        let (h, t) = head.rsplit_once(':')?;
        *f = t;
        head = h;
    }
    Some((head, fields))
}

fn ws_text(raw: &[u8]) -> DecodeResult<&str> {
    std::str::from_utf8(raw).map_err(|_| DecodeError::BadValue("RELAY_WS Addr: not UTF-8"))
}

fn check_remote_address(a: &str) -> bool {
    !a.is_empty() && !a.contains('\0')
}

/// `Addr` of a RELAY_WS message from the OR:
/// `remoteAddress:remotePort:connPort:requestId` (the browser's SOCKS request).
///
/// Fields are split from the right, so `remote_address` may contain `:` (IPv6);
/// `request_id` may not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrWsAddr {
    /// The SOCKS request's target host.
    pub remote_address: String,
    /// The SOCKS request's target port.
    pub remote_port: u16,
    /// The port of the browser's SOCKS connection.
    pub conn_port: u16,
    /// The request identifier (opaque text, non-empty, without `:`).
    pub request_id: String,
}

impl OrWsAddr {
    /// Parse the text form.
    pub fn parse(raw: &[u8]) -> DecodeResult<Self> {
        let (remote_address, [rport, cport, request_id]) = split_fields::<3>(ws_text(raw)?)
            .ok_or(DecodeError::BadValue("RELAY_WS OR Addr: missing field"))?;
        let a = OrWsAddr {
            remote_address: remote_address.to_owned(),
            remote_port: parse_port(rport)
                .ok_or(DecodeError::BadValue("RELAY_WS OR Addr: bad remote port"))?,
            conn_port: parse_port(cport).ok_or(DecodeError::BadValue(
                "RELAY_WS OR Addr: bad connection port",
            ))?,
            request_id: request_id.to_owned(),
        };
        if !a.is_valid() {
            return Err(DecodeError::BadValue("RELAY_WS OR Addr: bad field"));
        }
        Ok(a)
    }

    fn is_valid(&self) -> bool {
        check_remote_address(&self.remote_address)
            && !self.request_id.is_empty()
            && !self.request_id.contains([':', '\0'])
    }

    /// The text form, checked.
    pub fn encode(&self) -> EncodeResult<Vec<u8>> {
        if !self.is_valid() {
            return Err(EncodeError::BadValue("RELAY_WS OR Addr"));
        }
        Ok(self.to_string().into_bytes())
    }
}

impl fmt::Display for OrWsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.remote_address, self.remote_port, self.conn_port, self.request_id
        )
    }
}

/// `Addr` of a RELAY_WS message from the OP: `remoteAddress:remotePort`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpWsAddr {
    /// The host the response comes from.
    pub remote_address: String,
    /// Its port.
    pub remote_port: u16,
}

impl OpWsAddr {
    /// Parse the text form.
    pub fn parse(raw: &[u8]) -> DecodeResult<Self> {
        let (remote_address, [rport]) = split_fields::<1>(ws_text(raw)?)
            .ok_or(DecodeError::BadValue("RELAY_WS OP Addr: missing field"))?;
        if !check_remote_address(remote_address) {
            return Err(DecodeError::BadValue("RELAY_WS OP Addr: bad field"));
        }
        Ok(OpWsAddr {
            remote_address: remote_address.to_owned(),
            remote_port: parse_port(rport)
                .ok_or(DecodeError::BadValue("RELAY_WS OP Addr: bad remote port"))?,
        })
    }

    /// The text form, checked.
    pub fn encode(&self) -> EncodeResult<Vec<u8>> {
        if !check_remote_address(&self.remote_address) {
            return Err(EncodeError::BadValue("RELAY_WS OP Addr"));
        }
        Ok(self.to_string().into_bytes())
    }
}

impl fmt::Display for OpWsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.remote_address, self.remote_port)
    }
}

// ---------------------------------------------------------------------------------------------
// RELAY_INFO
// ---------------------------------------------------------------------------------------------

/// Length of a RELAY_INFO transaction id.
pub const INFO_ID_LEN: usize = 16;

/// Which computation a RELAY_INFO transaction asks the OR for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InfoKind {
    /// Type 1: build a TAP onion skin for a relay whose onion key modulus is given.
    OnionSkin,
    /// Type 2: finish a DH exchange with the given `Y`.
    DhSecret,
}

impl InfoKind {
    /// The request type byte.
    pub fn code(self) -> u8 {
        match self {
            InfoKind::OnionSkin => 1,
            InfoKind::DhSecret => 2,
        }
    }
}

/// A RELAY_INFO request (OP to OR): `[type 1][ID 16][public modulus]` or `[type 2][ID 16][Y]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoRequest {
    /// Type 1.
    OnionSkin {
        /// Transaction id, chosen at random by the OP.
        id: [u8; INFO_ID_LEN],
        /// The public modulus of the target relay's onion key (rest of the message).
        modulus: Vec<u8>,
    },
    /// Type 2.
    DhSecret {
        /// Transaction id.
        id: [u8; INFO_ID_LEN],
        /// The relay's DH public value `Y` (rest of the message).
        y: Vec<u8>,
    },
}

impl InfoRequest {
    /// Decode a request; fails on an unknown type byte.
    pub fn decode(body: &[u8]) -> DecodeResult<Self> {
        Self::from_bytes(body)
    }
    /// The kind of request.
    pub fn kind(&self) -> InfoKind {
        match self {
            InfoRequest::OnionSkin { .. } => InfoKind::OnionSkin,
            InfoRequest::DhSecret { .. } => InfoKind::DhSecret,
        }
    }
    /// The transaction id.
    pub fn id(&self) -> &[u8; INFO_ID_LEN] {
        match self {
            InfoRequest::OnionSkin { id, .. } | InfoRequest::DhSecret { id, .. } => id,
        }
    }
}

impl Readable for InfoRequest {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let t = r.take_u8()?;
        let id = r.take_array()?;
        let rest = r.take_rest().to_vec();
        match t {
            1 => Ok(InfoRequest::OnionSkin { id, modulus: rest }),
            2 => Ok(InfoRequest::DhSecret { id, y: rest }),
            _ => Err(DecodeError::BadValue("RELAY_INFO: unknown request type")),
        }
    }
}

impl Writeable for InfoRequest {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_u8(self.kind().code());
        w.write_all(self.id());
        match self {
            InfoRequest::OnionSkin { modulus: v, .. } | InfoRequest::DhSecret { y: v, .. } => {
                w.write_all(v);
            }
        }
        Ok(())
    }
}

/// A RELAY_INFO response (OR to OP). It has no type byte: the OP knows which kind it asked
/// for under that id, and must say so to [`InfoResponse::decode`].
///
/// - [`InfoKind::OnionSkin`]: `[ID 16][X_length 2][X][Onion]`.
/// - [`InfoKind::DhSecret`]: `[ID 16][DH secret]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoResponse {
    /// Answer to [`InfoRequest::OnionSkin`].
    OnionSkin {
        /// Transaction id, echoed.
        id: [u8; INFO_ID_LEN],
        /// The client's DH public value `X` (at most 65535 bytes).
        x: Vec<u8>,
        /// The TAP onion skin (rest of the message).
        onion: Vec<u8>,
    },
    /// Answer to [`InfoRequest::DhSecret`].
    DhSecret {
        /// Transaction id, echoed.
        id: [u8; INFO_ID_LEN],
        /// The DH shared secret (rest of the message).
        secret: Vec<u8>,
    },
}

impl InfoResponse {
    /// Decode a response to a request of kind `expected`. Nothing in the bytes says which
    /// kind they are: the caller looks the id up among its outstanding requests first (the id
    /// is the first 16 bytes either way, see [`Info::id`]).
    pub fn decode(body: &[u8], expected: InfoKind) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let id = r.take_array()?;
        let resp = match expected {
            InfoKind::OnionSkin => {
                let xlen = r.take_u16()?;
                let x = r.take(usize::from(xlen))?.to_vec();
                InfoResponse::OnionSkin {
                    id,
                    x,
                    onion: r.take_rest().to_vec(),
                }
            }
            InfoKind::DhSecret => InfoResponse::DhSecret {
                id,
                secret: r.take_rest().to_vec(),
            },
        };
        Ok(resp)
    }
    /// The kind of response.
    pub fn kind(&self) -> InfoKind {
        match self {
            InfoResponse::OnionSkin { .. } => InfoKind::OnionSkin,
            InfoResponse::DhSecret { .. } => InfoKind::DhSecret,
        }
    }
    /// The transaction id.
    pub fn id(&self) -> &[u8; INFO_ID_LEN] {
        match self {
            InfoResponse::OnionSkin { id, .. } | InfoResponse::DhSecret { id, .. } => id,
        }
    }
}

impl Writeable for InfoResponse {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(self.id());
        match self {
            InfoResponse::OnionSkin { x, onion, .. } => {
                write_u16_prefixed(w, "RELAY_INFO X", x)?;
                w.write_all(onion);
            }
            InfoResponse::DhSecret { secret, .. } => w.write_all(secret),
        }
        Ok(())
    }
}

/// RELAY_INFO (42): a request or a response, kept as raw bytes because responses carry no
/// type byte. Build one with [`Info::from_request`] / [`Info::from_response`]; read one with
/// [`Info::decode_request`] (on the OR) or [`Info::decode_response`] (on the OP, with the kind
/// it asked for).
///
/// The seed used these to have the OR compute RSA-OAEP and DH for a browser that could not;
/// an OP that computes them itself never needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    body: Vec<u8>,
}

impl Info {
    /// A message carrying `req`.
    pub fn from_request(req: &InfoRequest) -> EncodeResult<Self> {
        Self::from_raw(req.to_bytes()?)
    }
    /// A message carrying `resp`.
    pub fn from_response(resp: &InfoResponse) -> EncodeResult<Self> {
        Self::from_raw(resp.to_bytes()?)
    }
    /// A message with a raw body (at most [`MAX_WS_DATA_LEN`] bytes).
    pub fn from_raw(body: Vec<u8>) -> EncodeResult<Self> {
        check_len("RELAY_INFO", body.len())?;
        Ok(Info { body })
    }
    /// The raw body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.body
    }
    /// Read the body as a request (what the OR receives).
    pub fn decode_request(&self) -> DecodeResult<InfoRequest> {
        InfoRequest::decode(&self.body)
    }
    /// Read the body as a response to a request of kind `expected` (what the OP receives).
    pub fn decode_response(&self, expected: InfoKind) -> DecodeResult<InfoResponse> {
        InfoResponse::decode(&self.body, expected)
    }
    /// The transaction id of a response (its first 16 bytes), to find the matching request.
    pub fn id(&self) -> Option<[u8; INFO_ID_LEN]> {
        self.body.first_chunk().copied()
    }
}

impl Readable for Info {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Info {
            body: r.take_rest().to_vec(),
        })
    }
}

impl Writeable for Info {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.body);
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn associate() {
        let a = Associate::new("abcdef.ianonym.com".into()).unwrap();
        assert_eq!(a.to_bytes().unwrap(), b"abcdef.ianonym.com");
        assert_eq!(Associate::from_bytes(b"abcdef.ianonym.com"), Ok(a));
        assert_eq!(
            Associate::from_bytes(b""),
            Err(DecodeError::BadValue("ASSOCIATE: bad fake domain"))
        );
        assert_eq!(
            Associate::from_bytes(b"a\0"),
            Err(DecodeError::BadValue("ASSOCIATE: bad fake domain"))
        );
        assert_eq!(
            Associate::new(String::new()),
            Err(EncodeError::BadValue("ASSOCIATE fake domain"))
        );
    }

    #[test]
    fn ws_layout_and_addrs() {
        let or = OrWsAddr {
            remote_address: "2001:db8::1".into(),
            remote_port: 443,
            conn_port: 51234,
            request_id: "17".into(),
        };
        let m = WsStream::from_or(&or, b"GET / HTTP/1.1\r\n\r\n".to_vec()).unwrap();
        let b = m.to_bytes().unwrap();
        let addr = b"2001:db8::1:443:51234:17";
        assert_eq!(&b[..2], &(addr.len() as u16).to_be_bytes());
        assert_eq!(&b[2..2 + addr.len()], addr);
        assert_eq!(&b[2 + addr.len()..], b"GET / HTTP/1.1\r\n\r\n");
        let back = WsStream::from_bytes(&b).unwrap();
        assert_eq!(back.or_addr(), Ok(or));
        assert!(!back.is_end());

        let op = OpWsAddr {
            remote_address: "www.example.com".into(),
            remote_port: 80,
        };
        let m = WsStream::from_op(&op, vec![]).unwrap();
        assert_eq!(m.to_bytes().unwrap(), b"\x00\x12www.example.com:80");
        let back = WsStream::from_bytes(b"\x00\x12www.example.com:80").unwrap();
        assert_eq!(back.op_addr(), Ok(op));
        assert!(back.is_end());
    }

    #[test]
    fn ws_rejections() {
        assert_eq!(
            WsStream::from_bytes(b"\x00\x10short"),
            Err(DecodeError::Truncated { needed: 11 })
        );
        assert_eq!(
            WsStream::from_bytes(b"\x00"),
            Err(DecodeError::Truncated { needed: 1 })
        );
        let ws = |a: &[u8]| WsStream::new(a.to_vec(), vec![]).unwrap();
        assert_eq!(
            ws(b"host:80:1").or_addr(),
            Err(DecodeError::BadValue("RELAY_WS OR Addr: missing field"))
        );
        assert_eq!(
            ws(b"host:80:x:1").or_addr(),
            Err(DecodeError::BadValue(
                "RELAY_WS OR Addr: bad connection port"
            ))
        );
        assert_eq!(
            ws(b"host:70000:1:1").or_addr(),
            Err(DecodeError::BadValue("RELAY_WS OR Addr: bad remote port"))
        );
        assert_eq!(
            ws(b":80:1:1").or_addr(),
            Err(DecodeError::BadValue("RELAY_WS OR Addr: bad field"))
        );
        assert_eq!(
            ws(b"host:80:1:").or_addr(),
            Err(DecodeError::BadValue("RELAY_WS OR Addr: bad field"))
        );
        assert_eq!(
            ws(b"host").op_addr(),
            Err(DecodeError::BadValue("RELAY_WS OP Addr: missing field"))
        );
        assert_eq!(
            ws(b"\xff:1").op_addr(),
            Err(DecodeError::BadValue("RELAY_WS Addr: not UTF-8"))
        );
        let bad = OrWsAddr {
            remote_address: "h".into(),
            remote_port: 1,
            conn_port: 1,
            request_id: "a:b".into(),
        };
        assert_eq!(bad.encode(), Err(EncodeError::BadValue("RELAY_WS OR Addr")));
        assert!(matches!(
            WsStream::new(vec![0; 10], vec![0; MAX_WS_DATA_LEN]),
            Err(EncodeError::TooLong { .. })
        ));
    }

    #[test]
    fn info_layouts() {
        let id = [0xab; 16];
        let req = InfoRequest::OnionSkin {
            id,
            modulus: vec![1, 2, 3],
        };
        let m = Info::from_request(&req).unwrap();
        assert_eq!(m.as_bytes()[0], 1);
        assert_eq!(&m.as_bytes()[1..17], &id);
        assert_eq!(&m.as_bytes()[17..], &[1, 2, 3]);
        assert_eq!(m.decode_request(), Ok(req));
        let req2 = InfoRequest::DhSecret {
            id,
            y: vec![9; 128],
        };
        assert_eq!(
            Info::from_request(&req2).unwrap().decode_request(),
            Ok(req2)
        );

        let resp = InfoResponse::OnionSkin {
            id,
            x: vec![7; 5],
            onion: vec![8; 186],
        };
        let m = Info::from_response(&resp).unwrap();
        assert_eq!(&m.as_bytes()[16..18], &[0, 5]);
        assert_eq!(m.id(), Some(id));
        assert_eq!(m.decode_response(InfoKind::OnionSkin), Ok(resp));
        let resp2 = InfoResponse::DhSecret {
            id,
            secret: vec![4; 128],
        };
        let m = Info::from_response(&resp2).unwrap();
        assert_eq!(m.as_bytes().len(), 16 + 128);
        assert_eq!(m.decode_response(InfoKind::DhSecret), Ok(resp2));
    }

    #[test]
    fn info_rejections() {
        let mut raw = vec![3];
        raw.extend_from_slice(&[0; 16]);
        assert_eq!(
            InfoRequest::decode(&raw),
            Err(DecodeError::BadValue("RELAY_INFO: unknown request type"))
        );
        assert_eq!(
            InfoRequest::decode(&[1; 10]),
            Err(DecodeError::Truncated { needed: 7 })
        );
        // X_length past the end.
        let mut raw = vec![0; 16];
        raw.extend_from_slice(&[0, 9, 1, 2]);
        assert_eq!(
            InfoResponse::decode(&raw, InfoKind::OnionSkin),
            Err(DecodeError::Truncated { needed: 7 })
        );
        assert_eq!(
            InfoResponse::decode(&[0; 15], InfoKind::DhSecret),
            Err(DecodeError::Truncated { needed: 1 })
        );
    }
}
