//! Reading handshake cells one at a time, and writing them with a running digest.
//!
//! The handshake reader never takes a byte past the end of the cell it is reading, so the
//! bytes after the last handshake cell stay with the caller (they belong to the channel), and
//! the link version negotiated by VERSIONS applies from the very next cell. It checks each
//! cell's command as soon as the header is in, so junk fails fast.

use onion_cell::chancell::{ChanCell, ChanCmd, PAYLOAD_LEN};
use onion_cell::codec::ChannelCodec;
use sha2::{Digest, Sha256};

use super::{ChannelError, MAX_HANDSHAKE_BYTES};

/// Collects the bytes of one cell at a time.
#[derive(Debug, Default)]
pub(super) struct CellReader {
    /// The cell being read: never more than one cell ([`super::MAX_CELL_LEN`]).
    buf: Vec<u8>,
    /// Bytes read so far in the whole handshake.
    total: usize,
}

impl CellReader {
    /// How many bytes `buf` must hold for the next step, and whether that is the whole cell
    /// (rather than just enough to learn its length).
    fn needed(&self, codec: ChannelCodec) -> (usize, bool) {
        let hdr = codec.circ_id_len() + 1;
        let Some(&cmd) = self.buf.get(hdr - 1) else {
            return (hdr, false);
        };
        if !ChanCmd::new(cmd).is_var_len() {
            return (hdr + PAYLOAD_LEN, true);
        }
        match self.buf.get(hdr..hdr + 2) {
            Some(&[hi, lo]) => (hdr + 2 + usize::from(u16::from_be_bytes([hi, lo])), true),
            _ => (hdr + 2, false),
        }
    }

    /// Take bytes from `input` up to the end of the current cell. `check` sees the command of
    /// each cell as soon as its header is complete, and may refuse it.
    ///
    /// Returns how many bytes of `input` were taken, and the raw bytes of the cell if it is
    /// now complete.
    pub(super) fn read(
        &mut self,
        codec: ChannelCodec,
        input: &[u8],
        mut check: impl FnMut(ChanCmd) -> Result<(), ChannelError>,
    ) -> Result<(usize, Option<Vec<u8>>), ChannelError> {
        let hdr = codec.circ_id_len() + 1;
        let mut used = 0;
        loop {
            let (need, whole) = self.needed(codec);
            if whole && self.buf.len() >= need {
                return Ok((used, Some(std::mem::take(&mut self.buf))));
            }
            let rest = input.get(used..).unwrap_or_default();
            let n = need.saturating_sub(self.buf.len()).min(rest.len());
            if n == 0 {
                return Ok((used, None));
            }
            self.total = self.total.saturating_add(n);
            if self.total > MAX_HANDSHAKE_BYTES {
                return Err(ChannelError::HandshakeTooLong {
                    limit: MAX_HANDSHAKE_BYTES,
                });
            }
            let before = self.buf.len();
            self.buf
                .extend_from_slice(rest.get(..n).unwrap_or_default());
            used += n;
            if before < hdr
                && let Some(&cmd) = self.buf.get(hdr - 1)
            {
                check(ChanCmd::new(cmd))?;
            }
        }
    }

    /// Bytes of an incomplete cell held.
    pub(super) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// A handshake phase, as [`read_cells`] checks it.
pub(super) trait HandshakePhase: Copy {
    /// The phase as errors name it.
    fn name(self) -> &'static str;

    /// Whether the peer may send `cmd` now (order and duplicates are checked later).
    fn allows(self, cmd: ChanCmd) -> bool;
}

/// One side of the link handshake, fed whole cells by [`read_cells`].
pub(super) trait HandshakeSide {
    /// The side's phases.
    type Phase: HandshakePhase;

    /// The current phase, or `None` once the side reads no more handshake cells.
    fn reading_phase(&self) -> Option<Self::Phase>;

    /// The cell reader, and the codec of the link version in force.
    fn reader(&mut self) -> (&mut CellReader, ChannelCodec);

    /// Handle one whole cell, received at `now_unix`.
    fn handle_cell(&mut self, now_unix: u64, raw: &[u8]) -> Result<(), ChannelError>;
}

/// Feed `bytes` to `side` one whole cell at a time for as long as it reads handshake cells,
/// refusing a cell its phase does not allow as soon as the cell's header is in. Returns how
/// many bytes were consumed: the rest belong to the channel.
pub(super) fn read_cells<S: HandshakeSide>(
    side: &mut S,
    now_unix: u64,
    bytes: &[u8],
) -> Result<usize, ChannelError> {
    let mut used = 0;
    while let Some(phase) = side.reading_phase() {
        let rest = bytes.get(used..).unwrap_or_default();
        let (reader, codec) = side.reader();
        let (n, cell) = reader.read(codec, rest, |cmd| {
            if phase.allows(cmd) {
                Ok(())
            } else {
                Err(ChannelError::UnexpectedCell {
                    cmd,
                    state: phase.name(),
                })
            }
        })?;
        used += n;
        match cell {
            Some(raw) => side.handle_cell(now_unix, &raw)?,
            None => break,
        }
    }
    Ok(used)
}

/// Decode one whole cell read by [`CellReader`], and check its circuit ID.
pub(super) fn decode_cell(codec: ChannelCodec, raw: &[u8]) -> Result<ChanCell, ChannelError> {
    let cell = codec.decode_one(raw)?;
    let cmd = cell.msg.cmd();
    if !cmd.allows_circ_id(cell.circ_id) {
        return Err(ChannelError::BadCircId {
            cmd,
            circ_id: cell.circ_id,
        });
    }
    Ok(cell)
}

/// Output waiting for the driver, with a digest of everything written.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    out: Vec<u8>,
    digest: Sha256,
}

impl Outbox {
    /// Encode `cell` with `codec`, queue it, and add it to the digest.
    pub(super) fn send(
        &mut self,
        codec: ChannelCodec,
        cell: &ChanCell,
    ) -> Result<(), ChannelError> {
        let start = self.out.len();
        codec
            .encode(cell, &mut self.out)
            .map_err(ChannelError::Encode)?;
        self.digest
            .update(self.out.get(start..).unwrap_or_default());
        Ok(())
    }

    /// SHA-256 of everything sent so far.
    pub(super) fn digest(&self) -> [u8; 32] {
        self.digest.clone().finalize().into()
    }

    /// Everything queued, if anything.
    pub(super) fn take(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Whether output is waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use onion_cell::codec::MAX_CELL_LEN;

    fn ok(_: ChanCmd) -> Result<(), ChannelError> {
        Ok(())
    }

    #[test]
    fn reads_exactly_one_cell() {
        let codec = ChannelCodec::unnegotiated();
        // A VERSIONS cell followed by the start of another cell.
        let wire = hex::decode("0000070006000300040005 0000".replace(' ', "")).unwrap();
        let mut r = CellReader::default();
        let (used, cell) = r.read(codec, &wire, ok).unwrap();
        assert_eq!(used, 11);
        assert_eq!(cell.as_deref(), Some(&wire[..11]));
        assert_eq!(r.buffered(), 0);
        // One byte at a time.
        let mut r = CellReader::default();
        for (i, b) in wire[..11].iter().enumerate() {
            let (used, cell) = r.read(codec, &[*b], ok).unwrap();
            assert_eq!(used, 1);
            assert_eq!(cell.is_some(), i == 10);
        }
        // A fixed cell with 4-byte circuit IDs needs 514 bytes.
        let codec = ChannelCodec::new(4).unwrap();
        let mut r = CellReader::default();
        let (used, cell) = r.read(codec, &[0, 0, 0, 0, 8], ok).unwrap();
        assert_eq!((used, cell), (5, None));
        let (used, cell) = r.read(codec, &[0; 600], ok).unwrap();
        assert_eq!(used, 509);
        assert_eq!(cell.map(|c| c.len()), Some(514));
    }

    #[test]
    fn command_checked_at_header() {
        let codec = ChannelCodec::unnegotiated();
        let refuse = |cmd: ChanCmd| {
            Err(ChannelError::UnexpectedCell {
                cmd,
                state: "in test",
            })
        };
        let mut r = CellReader::default();
        assert_eq!(r.read(codec, b"GE", refuse), Ok((2, None)));
        assert_eq!(
            r.read(codec, b"T / HTTP/1.1\r\n", refuse),
            Err(ChannelError::UnexpectedCell {
                cmd: ChanCmd::new(b'T'),
                state: "in test"
            })
        );
    }

    #[test]
    fn total_is_bounded() {
        let codec = ChannelCodec::unnegotiated();
        let mut vpadding = vec![0, 0, 128, 0xff, 0xff];
        vpadding.resize(5 + 0xffff, 0);
        let mut r = CellReader::default();
        let mut total = 0;
        let err = loop {
            match r.read(codec, &vpadding, ok) {
                Ok((used, cell)) => {
                    assert_eq!(used, vpadding.len());
                    assert!(cell.is_some());
                    total += used;
                }
                Err(e) => break e,
            }
            assert!(r.buffered() <= MAX_CELL_LEN);
        };
        assert_eq!(
            err,
            ChannelError::HandshakeTooLong {
                limit: MAX_HANDSHAKE_BYTES
            }
        );
        assert!(total <= MAX_HANDSHAKE_BYTES);
    }
}
