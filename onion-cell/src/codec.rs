//! Framing: turning a byte stream into [`ChanCell`]s and back (tor-spec §3).
//!
//! A [`ChannelCodec`] knows the link protocol version, hence the width of circuit IDs:
//!
//! | link protocol | CIRCID_LEN | fixed cell | variable cell |
//! |---|---|---|---|
//! | before negotiation, 3 | 2 | 512 bytes | 5 + length |
//! | 4, 5 | 4 | 514 bytes | 7 + length |
//!
//! Variable-length cells are VERSIONS (7) and every command from 128 (tor-spec §3, link
//! protocol 3 and later); their header carries a 2-byte payload length.
//!
//! The first VERSIONS cell each side sends (and anything before it) always uses 2-byte
//! circuit IDs: decode it with [`ChannelCodec::unnegotiated`], then switch to
//! [`ChannelCodec::new`] with the negotiated version. Later VERSIONS cells use the negotiated
//! width (tor-spec §4.1: they "MUST have a CIRCID_LEN matching the version negotiated"); a
//! framer cannot tell a 2-byte-ID VERSIONS cell from the start of a 4-byte-ID cell anyway.
//!
//! The codec is sans-IO: [`ChannelCodec::decode`] looks at the caller's buffer and says how
//! many bytes one cell took, [`ChannelCodec::encode`] appends to the caller's `Vec`.
//!
//! ```
//! use onion_cell::chancell::{ChanCell, ChanMsg, CircId};
//! use onion_cell::codec::{ChannelCodec, LINK_VERSIONS};
//! use onion_cell::link::Versions;
//!
//! let codec = ChannelCodec::unnegotiated();
//! let mut out = Vec::new();
//! let versions = Versions::new(LINK_VERSIONS.to_vec()).unwrap();
//! codec.encode(&ChanCell::new(CircId::LINK, versions), &mut out).unwrap();
//! assert_eq!(out, [0, 0, 7, 0, 6, 0, 3, 0, 4, 0, 5]);
//!
//! assert_eq!(codec.decode(&out[..4]), Ok(None)); // need more bytes
//! let (cell, used) = codec.decode(&out).unwrap().unwrap();
//! assert_eq!(used, out.len());
//! let ChanMsg::Versions(theirs) = cell.msg else { unreachable!() };
//! let v = theirs.best_shared(&LINK_VERSIONS).unwrap();
//! assert_eq!(ChannelCodec::new(v).unwrap().fixed_cell_len(), 514);
//! ```

use thiserror::Error;

use crate::bytes::{DecodeError, EncodeError, EncodeResult, Reader, Writeable, Writer};
use crate::chancell::{ChanCell, ChanCmd, ChanMsg, CircId, PAYLOAD_LEN};

/// The link protocol versions this codec can frame (and this project offers).
pub const LINK_VERSIONS: [u16; 3] = [3, 4, 5];

/// The longest cell on the wire: a 4-byte circuit ID, the command, a 2-byte length and a
/// 65535-byte payload. A receive buffer of this size can always hold one whole cell.
pub const MAX_CELL_LEN: usize = 4 + 1 + 2 + u16::MAX as usize;

/// Why bytes from the peer could not be framed or decoded into a cell.
///
/// Every variant is the peer's fault (or a caller passing a cut-off message to
/// [`ChannelCodec::decode_one`]); a link that produces one should be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended inside a cell header (circuit ID, command, and for variable-length
    /// cells the length). Only from [`ChannelCodec::decode_one`].
    #[error("truncated cell header: {have} of {need} bytes")]
    TruncatedHeader {
        /// Bytes present.
        have: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// The input ended inside a cell payload. Only from [`ChannelCodec::decode_one`].
    #[error("truncated {cmd} cell: {have} of {need} payload bytes")]
    TruncatedPayload {
        /// The cell's command.
        cmd: ChanCmd,
        /// Payload bytes present.
        have: usize,
        /// Payload bytes the header announces.
        need: usize,
    },
    /// Bytes followed the cell. Only from [`ChannelCodec::decode_one`].
    #[error("{0} trailing byte(s) after cell")]
    TrailingBytes(usize),
    /// The cell was framed correctly but its payload is malformed for its command.
    #[error("malformed {cmd} cell on circuit {circ_id}: {source}")]
    Body {
        /// The cell's command.
        cmd: ChanCmd,
        /// The cell's circuit ID.
        circ_id: CircId,
        /// What was wrong with the payload.
        #[source]
        source: DecodeError,
    },
}

/// Frames cells for one link protocol version. Cheap to copy; replace it when the link
/// version is negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelCodec {
    /// `None` before negotiation.
    link_version: Option<u16>,
}

/// The result of looking for one cell at the start of a buffer.
enum Frame<'a> {
    /// The buffer ends inside the header.
    ShortHeader { have: usize, need: usize },
    /// The buffer ends inside the payload.
    ShortPayload {
        cmd: ChanCmd,
        have: usize,
        need: usize,
    },
    /// A whole cell of `len` bytes.
    Whole {
        circ_id: CircId,
        cmd: ChanCmd,
        payload: &'a [u8],
        len: usize,
    },
}

impl ChannelCodec {
    /// The codec for cells before the link version is negotiated, including the first
    /// VERSIONS cell: 2-byte circuit IDs, framed as link protocol 3.
    pub const fn unnegotiated() -> Self {
        ChannelCodec { link_version: None }
    }

    /// The codec for negotiated link protocol `link_version`; `None` unless it is one of
    /// [`LINK_VERSIONS`] (3, 4, 5).
    pub const fn new(link_version: u16) -> Option<Self> {
        match link_version {
            3..=5 => Some(ChannelCodec {
                link_version: Some(link_version),
            }),
            _ => None,
        }
    }

    /// The negotiated link protocol version, or `None` before negotiation.
    pub const fn link_version(&self) -> Option<u16> {
        self.link_version
    }

    /// `CIRCID_LEN`: 4 for link protocol 4 and later, 2 otherwise.
    pub const fn circ_id_len(&self) -> usize {
        match self.link_version {
            Some(v) if v >= 4 => 4,
            _ => 2,
        }
    }

    /// Length of a fixed-length cell on the wire: 512 or 514 bytes.
    pub const fn fixed_cell_len(&self) -> usize {
        self.circ_id_len() + 1 + PAYLOAD_LEN
    }

    /// Decode the cell at the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` does not hold a whole cell yet (nothing is consumed; call
    /// again with more bytes), else the cell and how many bytes of `buf` it took. Unknown
    /// commands decode to [`ChanMsg::Unrecognized`]. Never panics, whatever `buf` holds.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(ChanCell, usize)>, CodecError> {
        match self.frame(buf) {
            Frame::ShortHeader { .. } | Frame::ShortPayload { .. } => Ok(None),
            Frame::Whole {
                circ_id,
                cmd,
                payload,
                len,
            } => Ok(Some((Self::decode_msg(circ_id, cmd, payload)?, len))),
        }
    }

    /// Decode `buf` as exactly one cell (for transports that deliver whole cells, such as
    /// one cell per WebSocket message): a cut-off cell or trailing bytes are errors.
    pub fn decode_one(&self, buf: &[u8]) -> Result<ChanCell, CodecError> {
        match self.frame(buf) {
            Frame::ShortHeader { have, need } => Err(CodecError::TruncatedHeader { have, need }),
            Frame::ShortPayload { cmd, have, need } => {
                Err(CodecError::TruncatedPayload { cmd, have, need })
            }
            Frame::Whole {
                circ_id,
                cmd,
                payload,
                len,
            } => match buf.len().saturating_sub(len) {
                0 => Self::decode_msg(circ_id, cmd, payload),
                extra => Err(CodecError::TrailingBytes(extra)),
            },
        }
    }

    /// Append `cell` to `out`: header, body, and for fixed-length cells zero padding up to
    /// [`PAYLOAD_LEN`].
    ///
    /// Fails (leaving `out` as it was) if the circuit ID does not fit `CIRCID_LEN`, or the
    /// body does not fit its cell (more than 509 bytes for a fixed cell, more than 65535 for a
    /// variable one, or a field too long for its length prefix).
    pub fn encode(&self, cell: &ChanCell, out: &mut Vec<u8>) -> EncodeResult<()> {
        let start = out.len();
        let res = self.encode_inner(cell, out);
        if res.is_err() {
            out.truncate(start);
        }
        res
    }

    fn encode_inner(&self, cell: &ChanCell, out: &mut Vec<u8>) -> EncodeResult<()> {
        let cmd = cell.msg.cmd();
        if self.circ_id_len() == 2 {
            let id = u16::try_from(cell.circ_id.get())
                .map_err(|_| EncodeError::BadValue("circuit ID wider than 2 bytes"))?;
            out.write_u16(id);
        } else {
            out.write_u32(cell.circ_id.get());
        }
        out.write_u8(cmd.get());
        if cmd.is_var_len() {
            let len_at = out.len();
            out.write_u16(0);
            let body_at = out.len();
            cell.msg.write_onto(out)?;
            let len = out.len().saturating_sub(body_at);
            let len16 = u16::try_from(len).map_err(|_| EncodeError::TooLong {
                what: "variable-length cell payload",
                len,
                max: u16::MAX.into(),
            })?;
            if let Some([hi, lo]) = out.get_mut(len_at..body_at) {
                [*hi, *lo] = len16.to_be_bytes();
            }
        } else {
            let body_at = out.len();
            cell.msg.write_onto(out)?;
            let len = out.len().saturating_sub(body_at);
            let pad = PAYLOAD_LEN.checked_sub(len).ok_or(EncodeError::TooLong {
                what: "fixed-length cell payload",
                len,
                max: PAYLOAD_LEN,
            })?;
            out.write_zeros(pad);
        }
        Ok(())
    }

    /// Find the cell boundaries at the start of `buf`.
    fn frame<'a>(&self, buf: &'a [u8]) -> Frame<'a> {
        let id_len = self.circ_id_len();
        let mut r = Reader::new(buf);
        let circ_id = if id_len == 2 {
            r.take_u16().map(u32::from)
        } else {
            r.take_u32()
        };
        let (Ok(circ_id), Ok(cmd)) = (circ_id, r.take_u8()) else {
            return Frame::ShortHeader {
                have: buf.len(),
                need: id_len + 1,
            };
        };
        let cmd = ChanCmd::new(cmd);
        let payload_len = if cmd.is_var_len() {
            match r.take_u16() {
                Ok(n) => usize::from(n),
                Err(_) => {
                    return Frame::ShortHeader {
                        have: buf.len(),
                        need: id_len + 3,
                    };
                }
            }
        } else {
            PAYLOAD_LEN
        };
        let header_len = r.consumed();
        match r.take(payload_len) {
            Ok(payload) => Frame::Whole {
                circ_id: CircId::new(circ_id),
                cmd,
                payload,
                len: header_len + payload_len,
            },
            Err(_) => Frame::ShortPayload {
                cmd,
                have: r.remaining(),
                need: payload_len,
            },
        }
    }

    fn decode_msg(circ_id: CircId, cmd: ChanCmd, payload: &[u8]) -> Result<ChanCell, CodecError> {
        let msg = ChanMsg::decode(cmd, payload).map_err(|source| CodecError::Body {
            cmd,
            circ_id,
            source,
        })?;
        Ok(ChanCell { circ_id, msg })
    }
}

#[cfg(test)]
mod test {
    use proptest::prelude::*;

    use super::*;
    use crate::chancell::{
        Create2, Destroy, DestroyReason, PaddingNegotiate, Relay, RelayWs, Unrecognized, Vpadding,
        arb,
    };
    use crate::link::{AuthChallenge, CertType, Certs, Netinfo};

    fn v3() -> ChannelCodec {
        ChannelCodec::new(3).unwrap()
    }
    fn v4() -> ChannelCodec {
        ChannelCodec::new(4).unwrap()
    }
    fn all_codecs() -> [ChannelCodec; 4] {
        [
            ChannelCodec::unnegotiated(),
            v3(),
            v4(),
            ChannelCodec::new(5).unwrap(),
        ]
    }

    fn encode(codec: ChannelCodec, cell: &ChanCell) -> Vec<u8> {
        let mut out = Vec::new();
        codec.encode(cell, &mut out).unwrap();
        out
    }

    fn body_err(cmd: ChanCmd, circ_id: u32, source: DecodeError) -> CodecError {
        CodecError::Body {
            cmd,
            circ_id: CircId::new(circ_id),
            source,
        }
    }

    #[test]
    fn versions() {
        assert_eq!(ChannelCodec::new(2), None);
        assert_eq!(ChannelCodec::new(6), None);
        assert!(
            LINK_VERSIONS
                .iter()
                .all(|v| ChannelCodec::new(*v).is_some())
        );
        let c = ChannelCodec::default();
        assert_eq!(c, ChannelCodec::unnegotiated());
        assert_eq!(c.link_version(), None);
        assert_eq!((c.circ_id_len(), c.fixed_cell_len()), (2, 512));
        assert_eq!((v3().circ_id_len(), v3().fixed_cell_len()), (2, 512));
        assert_eq!((v4().circ_id_len(), v4().fixed_cell_len()), (4, 514));
        assert_eq!(ChannelCodec::new(5).unwrap().fixed_cell_len(), 514);
        assert_eq!(v4().link_version(), Some(4));
    }

    #[test]
    fn real_versions_cell() {
        // What tor 0.4.9 sends first (tornet notes: "VERSIONS offers 3, 4, 5").
        let wire = hex::decode("0000070006000300040005").unwrap();
        let codec = ChannelCodec::unnegotiated();
        let (cell, used) = codec.decode(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(cell.circ_id, CircId::LINK);
        let ChanMsg::Versions(v) = &cell.msg else {
            panic!("not VERSIONS: {cell:?}");
        };
        assert_eq!(v.versions(), &[3, 4, 5]);
        assert_eq!(v.best_shared(&[3, 4]), Some(4));
        assert_eq!(v.best_shared(&LINK_VERSIONS), Some(5));
        assert_eq!(encode(codec, &cell), wire);
        assert_eq!(codec.decode_one(&wire), Ok(cell));
        // No padding allowed: an odd payload is malformed.
        let wire = hex::decode("000007000300030000").unwrap();
        assert_eq!(
            codec.decode(&wire),
            Err(body_err(
                ChanCmd::VERSIONS,
                0,
                DecodeError::BadLength {
                    what: "VERSIONS payload",
                    len: 3
                }
            ))
        );
    }

    #[test]
    fn fixed_cell_layout() {
        let cell = ChanCell::new(
            CircId::new(0x8000_0102),
            Destroy::new(DestroyReason::FINISHED),
        );
        let wire = encode(v4(), &cell);
        assert_eq!(wire.len(), 514);
        assert_eq!(&wire[..6], &[0x80, 0, 1, 2, 4, 9]);
        assert!(wire[6..].iter().all(|&b| b == 0));
        let cell = ChanCell::new(CircId::new(0x0102), Destroy::new(DestroyReason::FINISHED));
        let wire = encode(v3(), &cell);
        assert_eq!(wire.len(), 512);
        assert_eq!(&wire[..4], &[1, 2, 4, 9]);
        // Appends, does not overwrite.
        let mut out = vec![0xee];
        v3().encode(&cell, &mut out).unwrap();
        assert_eq!(out.len(), 513);
        assert_eq!(&out[..2], &[0xee, 1]);
    }

    #[test]
    fn var_cell_layout() {
        let cell = ChanCell::new(CircId::new(7), RelayWs::new(vec![0xab; 300]).unwrap());
        let wire = encode(v4(), &cell);
        assert_eq!(wire.len(), 7 + 300);
        assert_eq!(&wire[..7], &[0, 0, 0, 7, 190, 0x01, 0x2c]);
        let wire = encode(v3(), &ChanCell::new(CircId::LINK, Vpadding::new(0)));
        assert_eq!(wire, [0, 0, 128, 0, 0]);
    }

    /// A conversation in link protocol 4, feeding the byte stream split in two at every
    /// position: a prefix never yields a cell it does not wholly contain.
    #[test]
    fn stream_split_at_every_position() {
        for codec in all_codecs() {
            let mut certs = Certs::new();
            certs.push(CertType::RSA_ID, vec![0x30; 40]);
            certs.push(CertType::ED_ID_SIGNING, vec![1; 20]);
            let cells = vec![
                ChanCell::new(CircId::LINK, Vpadding::new(3)),
                ChanCell::new(CircId::LINK, certs),
                ChanCell::new(
                    CircId::LINK,
                    AuthChallenge::new(
                        [5; 32],
                        vec![crate::link::auth_method::ED25519_SHA256_RFC5705],
                    ),
                ),
                ChanCell::new(
                    CircId::LINK,
                    Netinfo::for_client("10.0.0.1".parse().unwrap()),
                ),
                ChanCell::new(CircId::LINK, PaddingNegotiate::stop()),
                ChanCell::new(CircId::new(0x8001), Create2::new(2, vec![9; 84]).unwrap()),
                ChanCell::new(CircId::new(0x8001), Relay::new(Box::new([0x42; 509]))),
                ChanCell::new(CircId::new(0x8001), RelayWs::new(vec![1; 11]).unwrap()),
                ChanCell::new(
                    CircId::new(3),
                    Unrecognized::new(ChanCmd::new(200), vec![1, 2]),
                ),
                ChanCell::new(
                    CircId::new(3),
                    Unrecognized::new(ChanCmd::new(50), vec![3; 509]),
                ),
            ];
            let mut wire = Vec::new();
            let mut ends = Vec::new();
            for c in &cells {
                codec.encode(c, &mut wire).unwrap();
                ends.push(wire.len());
            }
            for split in 0..=wire.len() {
                let mut got = Vec::new();
                let mut buf = Vec::new();
                for (i, chunk) in [&wire[..split], &wire[split..]].into_iter().enumerate() {
                    buf.extend_from_slice(chunk);
                    while let Some((cell, used)) = codec.decode(&buf).unwrap() {
                        got.push(cell);
                        buf.drain(..used);
                    }
                    // After the first chunk, exactly the cells wholly inside it came out.
                    if i == 0 {
                        let whole = ends.iter().filter(|&&e| e <= split).count();
                        assert_eq!(got.len(), whole, "split {split}");
                    }
                }
                assert!(buf.is_empty());
                assert_eq!(got, cells, "split {split}");
            }
        }
    }

    #[test]
    fn partial_input_needs_more() {
        let cell = ChanCell::new(CircId::new(1), Destroy::new(DestroyReason::NONE));
        let wire = encode(v4(), &cell);
        for n in 0..wire.len() {
            assert_eq!(v4().decode(&wire[..n]), Ok(None), "prefix {n}");
        }
        assert_eq!(v4().decode(&wire), Ok(Some((cell, 514))));
    }

    #[test]
    fn decode_one_rejects_cut_and_extra() {
        let c = ChannelCodec::unnegotiated();
        // Truncated variable-length cell header: circ id, command, one length byte.
        assert_eq!(
            c.decode_one(&[0, 0, 0x81, 0x00]),
            Err(CodecError::TruncatedHeader { have: 4, need: 5 })
        );
        assert_eq!(c.decode(&[0, 0, 0x81, 0x00]), Ok(None));
        assert_eq!(
            v4().decode_one(&[0, 0, 0, 0, 0x81, 0x00]),
            Err(CodecError::TruncatedHeader { have: 6, need: 7 })
        );
        assert_eq!(
            v4().decode_one(&[0, 0]),
            Err(CodecError::TruncatedHeader { have: 2, need: 5 })
        );
        assert_eq!(
            c.decode_one(&[0, 0, 0x81, 0x00, 0x05, 1, 2]),
            Err(CodecError::TruncatedPayload {
                cmd: ChanCmd::CERTS,
                have: 2,
                need: 5
            })
        );
        assert_eq!(
            c.decode_one(&[0, 1, 3, 0]),
            Err(CodecError::TruncatedPayload {
                cmd: ChanCmd::RELAY,
                have: 1,
                need: 509
            })
        );
        assert_eq!(
            c.decode_one(&[0, 0, 0x80, 0, 0, 0xff]),
            Err(CodecError::TrailingBytes(1))
        );
    }

    #[test]
    fn reject_create2_hlen_beyond_payload() {
        let mut wire = vec![0x80, 0, 0, 1, 10, 0x00, 0x02, 0x01, 0xfa];
        wire.resize(514, 0);
        assert_eq!(
            v4().decode(&wire),
            Err(body_err(
                ChanCmd::CREATE2,
                0x8000_0001,
                DecodeError::BadLength {
                    what: "CREATE2 HLEN",
                    len: 506
                }
            ))
        );
    }

    #[test]
    fn reject_netinfo_truncated_address() {
        // 255 IPv6 addresses announced; the 509-byte payload ends after 10 of the 16 bytes of
        // the 28th: 11 + 27 * 18 + 2 + 10 = 509.
        let mut wire = vec![0, 0, 0, 0, 8, 0, 0, 0, 0, 4, 4, 127, 0, 0, 1, 255];
        while wire.len() < 514 {
            wire.extend_from_slice(&[6, 16]);
            wire.extend_from_slice(&[0x20; 16]);
        }
        wire.truncate(514);
        assert_eq!(
            v4().decode(&wire),
            Err(body_err(
                ChanCmd::NETINFO,
                0,
                DecodeError::Truncated { needed: 6 }
            ))
        );
    }

    #[test]
    fn reject_certs_count_beyond_entries() {
        let wire = hex::decode("0000 81 000A 03 01 0002 AABB 02 0001 CC".replace(' ', "")).unwrap();
        assert_eq!(
            v3().decode(&wire),
            Err(body_err(
                ChanCmd::CERTS,
                0,
                DecodeError::Truncated { needed: 1 }
            ))
        );
    }

    #[test]
    fn reject_short_relay_ws() {
        let mut wire = vec![0, 0, 0, 9, 190, 0, 10];
        wire.extend_from_slice(&[0; 10]);
        let err = v4().decode(&wire).unwrap_err();
        assert_eq!(
            err,
            body_err(
                ChanCmd::RELAY_WS,
                9,
                DecodeError::BadLength {
                    what: "RELAY_WS body",
                    len: 10
                }
            )
        );
        assert_eq!(
            err.to_string(),
            "malformed RELAY_WS cell on circuit 0x9: bad length for RELAY_WS body: 10"
        );
    }

    #[test]
    fn encode_errors_leave_output_alone() {
        let mut out = vec![1, 2, 3];
        let wide = ChanCell::new(CircId::new(0x1_0000), Destroy::new(DestroyReason::NONE));
        assert_eq!(
            v3().encode(&wide, &mut out),
            Err(EncodeError::BadValue("circuit ID wider than 2 bytes"))
        );
        assert!(v4().encode(&wide, &mut Vec::new()).is_ok());
        let long_fixed = ChanCell::new(
            CircId::new(1),
            Unrecognized::new(ChanCmd::new(50), vec![0; 510]),
        );
        assert_eq!(
            v4().encode(&long_fixed, &mut out),
            Err(EncodeError::TooLong {
                what: "fixed-length cell payload",
                len: 510,
                max: 509
            })
        );
        let long_var = ChanCell::new(
            CircId::new(1),
            Unrecognized::new(ChanCmd::new(250), vec![0; 65536]),
        );
        assert_eq!(
            v4().encode(&long_var, &mut out),
            Err(EncodeError::TooLong {
                what: "variable-length cell payload",
                len: 65536,
                max: 65535
            })
        );
        let mut certs = Certs::new();
        certs.push(CertType::RSA_ID, vec![0; 40000]);
        certs.push(CertType::RSA_LINK, vec![0; 40000]);
        assert!(matches!(
            v4().encode(&ChanCell::new(CircId::LINK, certs), &mut out),
            Err(EncodeError::TooLong { .. })
        ));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn largest_cell() {
        let cell = ChanCell::new(CircId::new(u32::MAX), RelayWs::new(vec![7; 65535]).unwrap());
        let wire = encode(v4(), &cell);
        assert_eq!(wire.len(), MAX_CELL_LEN);
        assert_eq!(v4().decode(&wire[..MAX_CELL_LEN - 1]), Ok(None));
        assert_eq!(v4().decode_one(&wire), Ok(cell));
    }

    #[test]
    fn unrecognized_cells_are_byte_identical() {
        let mut fixed = vec![0, 0, 0, 5, 101];
        fixed.extend((0..509).map(|i| i as u8));
        let mut var = vec![0, 0, 0, 5, 244, 0, 4];
        var.extend_from_slice(b"\x00\xffAB");
        for wire in [fixed, var] {
            let cell = v4().decode_one(&wire).unwrap();
            assert!(matches!(cell.msg, ChanMsg::Unrecognized(_)));
            assert_eq!(encode(v4(), &cell), wire);
        }
    }

    fn circ_id_for(codec: ChannelCodec) -> BoxedStrategy<CircId> {
        if codec.circ_id_len() == 2 {
            any::<u16>().prop_map(|c| CircId::new(c.into())).boxed()
        } else {
            any::<u32>().prop_map(CircId::new).boxed()
        }
    }

    proptest! {
        /// encode -> decode -> encode, for every message type and every circuit ID width.
        #[test]
        fn cell_round_trip(
            (codec, circ_id) in prop::sample::select(all_codecs().to_vec())
                .prop_flat_map(|c| (Just(c), circ_id_for(c))),
            msg in arb::chan_msg(),
        ) {
            let cell = ChanCell::new(circ_id, msg);
            let wire = encode(codec, &cell);
            if cell.msg.cmd().is_var_len() {
                prop_assert_eq!(wire.len(), codec.circ_id_len() + 3 + cell.msg.to_bytes().unwrap().len());
            } else {
                prop_assert_eq!(wire.len(), codec.fixed_cell_len());
            }
            let (back, used) = codec.decode(&wire).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(&back, &cell);
            prop_assert_eq!(encode(codec, &back), wire.clone());
            prop_assert_eq!(codec.decode_one(&wire), Ok(cell));
        }

        /// Hostile bytes never panic, and a reported length never exceeds the input.
        #[test]
        fn hostile_streams(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            for codec in all_codecs() {
                if let Ok(Some((_, used))) = codec.decode(&bytes) {
                    prop_assert!(used <= bytes.len());
                }
                let _ = codec.decode_one(&bytes);
            }
        }

        /// Streams whose header says "variable-length" with random lengths and bodies.
        #[test]
        fn hostile_var_cells(cmd in 128u8.., len in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut wire = vec![0, 0, cmd];
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend_from_slice(&body);
            let r = v3().decode(&wire);
            if usize::from(len) > body.len() {
                prop_assert_eq!(r, Ok(None));
            } else if let Ok(Some((cell, used))) = r {
                prop_assert_eq!(used, 5 + usize::from(len));
                prop_assert_eq!(cell.msg.cmd(), ChanCmd::new(cmd));
            }
        }
    }
}
