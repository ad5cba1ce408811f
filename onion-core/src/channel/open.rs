//! The open channel: framing cells for the negotiated link protocol, after the handshake.

use onion_cell::chancell::{ChanCell, ChanCmd, ChanMsg, CircId};
use onion_cell::codec::{ChannelCodec, MAX_CELL_LEN};
use rand_core::CryptoRng;

use super::{ChannelError, CircIdAllocator, CircIdRange};

/// An open link (sans-IO): decodes the peer's bytes into cells and encodes ours.
///
/// It answers nothing by itself and keeps no circuit state. Incoming:
/// - PADDING and VPADDING are dropped (keepalives), as are cells with an unknown command
///   (tor-spec §3: "an OR must drop the cell");
/// - a later VERSIONS cell is ignored (tor-spec §4.1), and so are NETINFO and AUTHORIZE (as C
///   tor does);
/// - CERTS, AUTH_CHALLENGE and AUTHENTICATE are errors
///   ([`ChannelError::HandshakeCellAfterOpen`]), as in C tor;
/// - a cell whose circuit ID is not allowed with its command (0 for circuit cells, nonzero for
///   link cells) is an error ([`ChannelError::BadCircId`]).
///
/// Whether the peer chose the ID of a CREATE* cell from its half is for the driver to check
/// with [`CircIdAllocator::peer_may_create`] (C tor answers DESTROY, the link stays up).
#[derive(Debug)]
pub struct Channel {
    codec: ChannelCodec,
    circ_ids: CircIdAllocator,
    /// Received bytes; `buf[start..]` are not decoded yet.
    buf: Vec<u8>,
    start: usize,
}

impl Channel {
    /// The most received bytes a channel holds: one cell of the largest size, so a whole cell
    /// always fits.
    pub const INPUT_CAPACITY: usize = MAX_CELL_LEN;

    /// A channel for link protocol `link_version` (3, 4 or 5), on which we choose circuit IDs
    /// from `range`. Handshakes make their channel with this; it is public for drivers and
    /// tests that negotiate some other way.
    pub fn new(link_version: u16, range: CircIdRange) -> Result<Self, ChannelError> {
        let codec = ChannelCodec::new(link_version)
            .ok_or(ChannelError::Misuse("link version must be 3, 4 or 5"))?;
        Ok(Channel {
            codec,
            circ_ids: CircIdAllocator::new(range, link_version),
            buf: Vec::new(),
            start: 0,
        })
    }

    /// The link protocol version.
    pub fn link_version(&self) -> u16 {
        self.codec.link_version().unwrap_or_default()
    }

    /// The codec (circuit ID width, cell sizes).
    pub fn codec(&self) -> ChannelCodec {
        self.codec
    }

    /// The circuit ID rules of this channel.
    pub fn circ_ids(&self) -> &CircIdAllocator {
        &self.circ_ids
    }

    /// Choose an ID for a new circuit (see [`CircIdAllocator::allocate`]).
    pub fn allocate_circ_id<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        in_use: impl FnMut(CircId) -> bool,
    ) -> Result<CircId, ChannelError> {
        self.circ_ids.allocate(rng, in_use)
    }

    /// Take received bytes, as many as fit in the buffer; returns how many were taken. Call
    /// [`Channel::poll_cell`] until it returns `None` before passing the rest.
    pub fn handle_input(&mut self, bytes: &[u8]) -> usize {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let n = Self::INPUT_CAPACITY
            .saturating_sub(self.buf.len())
            .min(bytes.len());
        self.buf
            .extend_from_slice(bytes.get(..n).unwrap_or_default());
        n
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// The next cell for the driver, or `None` if no whole cell is buffered. Dropped and
    /// ignored cells are skipped (see [`Channel`]). After an error the channel is unusable.
    pub fn poll_cell(&mut self) -> Result<Option<ChanCell>, ChannelError> {
        loop {
            let pending = self.buf.get(self.start..).unwrap_or_default();
            let Some((cell, used)) = self.codec.decode(pending)? else {
                return Ok(None);
            };
            let cmd = cell.msg.cmd();
            if !cmd.allows_circ_id(cell.circ_id) {
                return Err(ChannelError::BadCircId {
                    cmd,
                    circ_id: cell.circ_id,
                });
            }
            self.start += used;
            match &cell.msg {
                ChanMsg::Padding(_)
                | ChanMsg::Vpadding(_)
                | ChanMsg::Versions(_)
                | ChanMsg::Netinfo(_)
                | ChanMsg::Authorize(_)
                | ChanMsg::Unrecognized(_) => continue,
                ChanMsg::Certs(_) | ChanMsg::AuthChallenge(_) | ChanMsg::Authenticate(_) => {
                    return Err(ChannelError::HandshakeCellAfterOpen(cmd));
                }
                _ => return Ok(Some(cell)),
            }
        }
    }

    /// Append `cell`, encoded, to `out` (which is left as it was on error).
    ///
    /// Refuses the handshake commands (VERSIONS, CERTS, AUTH_CHALLENGE, AUTHENTICATE, NETINFO,
    /// AUTHORIZE), a circuit ID not allowed with the command, and a CREATE* cell whose ID is
    /// not in our range: all bugs of the caller ([`ChannelError::Misuse`]).
    pub fn encode(&self, cell: &ChanCell, out: &mut Vec<u8>) -> Result<(), ChannelError> {
        let cmd = cell.msg.cmd();
        if matches!(
            cmd,
            ChanCmd::VERSIONS
                | ChanCmd::CERTS
                | ChanCmd::AUTH_CHALLENGE
                | ChanCmd::AUTHENTICATE
                | ChanCmd::NETINFO
                | ChanCmd::AUTHORIZE
        ) {
            return Err(ChannelError::Misuse(
                "handshake cells cannot be sent on an open channel",
            ));
        }
        if !cmd.allows_circ_id(cell.circ_id) {
            return Err(ChannelError::Misuse(
                "circuit ID not allowed with this command",
            ));
        }
        let creates = matches!(
            cmd,
            ChanCmd::CREATE | ChanCmd::CREATE2 | ChanCmd::CREATE_FAST | ChanCmd::CREATE_FAST_WS
        );
        if creates && !self.circ_ids.is_ours(cell.circ_id) {
            return Err(ChannelError::Misuse(
                "CREATE* circuit ID outside our range (use allocate_circ_id)",
            ));
        }
        self.codec.encode(cell, out).map_err(ChannelError::Encode)
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use onion_cell::chancell::{
        Create2, CreateFast, Created2, Destroy, DestroyReason, Padding, Relay, Unrecognized,
        Vpadding,
    };
    use onion_cell::link::{Certs, Netinfo, Versions};

    use super::*;
    use crate::testing::seeded_rng;

    fn wire(codec: ChannelCodec, cells: &[ChanCell]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in cells {
            codec.encode(c, &mut out).unwrap();
        }
        out
    }

    fn drain(ch: &mut Channel, mut bytes: &[u8]) -> Result<Vec<ChanCell>, ChannelError> {
        let mut cells = Vec::new();
        loop {
            let n = ch.handle_input(bytes);
            bytes = &bytes[n..];
            while let Some(c) = ch.poll_cell()? {
                cells.push(c);
            }
            if bytes.is_empty() {
                return Ok(cells);
            }
            assert!(n > 0, "no progress");
        }
    }

    #[test]
    fn cells_both_ways_padding_dropped() {
        let mut rng = seeded_rng(1);
        let client = Channel::new(5, CircIdRange::High).unwrap();
        let mut relay = Channel::new(5, CircIdRange::Low).unwrap();
        assert_eq!(client.link_version(), 5);
        let id = client.allocate_circ_id(&mut rng, |_| false).unwrap();
        assert!(id.get() & 0x8000_0000 != 0);
        let create = ChanCell::new(id, Create2::new(2, vec![7; 84]).unwrap());
        let relay_cell = ChanCell::new(id, Relay::new(Box::new([9; 509])));
        let mut out = Vec::new();
        client.encode(&create, &mut out).unwrap();
        client
            .encode(&ChanCell::new(CircId::LINK, Padding), &mut out)
            .unwrap();
        client
            .encode(&ChanCell::new(CircId::LINK, Vpadding::new(30)), &mut out)
            .unwrap();
        client.encode(&relay_cell, &mut out).unwrap();
        // An unknown command, dropped by the receiver.
        client
            .encode(
                &ChanCell::new(id, Unrecognized::new(ChanCmd::new(200), vec![1, 2, 3])),
                &mut out,
            )
            .unwrap();
        assert_eq!(out.len(), 514 * 3 + 7 + 30 + 7 + 3);
        // Whole, and one byte at a time.
        let got = drain(&mut relay, &out).unwrap();
        assert_eq!(got, [create.clone(), relay_cell.clone()]);
        assert!(relay.circ_ids().peer_may_create(id));
        let mut relay = Channel::new(5, CircIdRange::Low).unwrap();
        let mut got = Vec::new();
        for b in &out {
            got.extend(drain(&mut relay, std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(got, [create, relay_cell]);
        assert_eq!(relay.buffered(), 0);

        // And back, on link protocol 3 (2-byte IDs, 512-byte cells).
        let mut client = Channel::new(3, CircIdRange::Any).unwrap();
        let relay = Channel::new(3, CircIdRange::Nothing).unwrap();
        let created = ChanCell::new(CircId::new(0x1234), Created2::new(vec![1; 64]).unwrap());
        let destroy = ChanCell::new(CircId::new(0x1234), Destroy::new(DestroyReason::FINISHED));
        let mut out = Vec::new();
        relay.encode(&created, &mut out).unwrap();
        relay.encode(&destroy, &mut out).unwrap();
        assert_eq!(out.len(), 2 * 512);
        assert_eq!(drain(&mut client, &out).unwrap(), [created, destroy]);
        assert_eq!(
            relay.allocate_circ_id(&mut rng, |_| false),
            Err(ChannelError::NoCircIdRange)
        );
    }

    #[test]
    fn late_link_cells() {
        let codec = ChannelCodec::new(4).unwrap();
        let destroy = ChanCell::new(CircId::new(5), Destroy::new(DestroyReason::NONE));
        // VERSIONS, NETINFO (and AUTHORIZE) again are ignored.
        let ignored = [
            ChanCell::new(CircId::LINK, Versions::new(vec![3, 4, 5]).unwrap()),
            ChanCell::new(
                CircId::LINK,
                Netinfo::for_client("127.0.0.1".parse().unwrap()),
            ),
            ChanCell::new(CircId::LINK, onion_cell::link::Authorize::new(vec![1, 2])),
            destroy.clone(),
        ];
        let mut ch = Channel::new(4, CircIdRange::Low).unwrap();
        assert_eq!(drain(&mut ch, &wire(codec, &ignored)).unwrap(), [destroy]);
        // CERTS, AUTH_CHALLENGE and AUTHENTICATE are errors.
        let bad = [
            ChanMsg::from(Certs::new()),
            onion_cell::link::AuthChallenge::new([0; 32], vec![3]).into(),
            onion_cell::link::Authenticate::new(3, vec![0; 8]).into(),
        ];
        for msg in bad {
            let cmd = msg.cmd();
            let mut ch = Channel::new(4, CircIdRange::Low).unwrap();
            let bytes = wire(
                codec,
                &[ChanCell {
                    circ_id: CircId::LINK,
                    msg,
                }],
            );
            assert_eq!(
                drain(&mut ch, &bytes),
                Err(ChannelError::HandshakeCellAfterOpen(cmd))
            );
        }
    }

    #[test]
    fn circ_id_rules_enforced() {
        let codec = ChannelCodec::new(5).unwrap();
        let cases = [
            ChanCell::new(CircId::LINK, CreateFast::new([1; 20])),
            ChanCell::new(CircId::new(9), Padding),
            ChanCell::new(CircId::LINK, Relay::new(Box::new([0; 509]))),
        ];
        for cell in cases {
            let mut ch = Channel::new(5, CircIdRange::Low).unwrap();
            let expect = ChannelError::BadCircId {
                cmd: cell.msg.cmd(),
                circ_id: cell.circ_id,
            };
            assert_eq!(drain(&mut ch, &wire(codec, &[cell])), Err(expect));
        }
        // Our own cells are checked too.
        let ch = Channel::new(5, CircIdRange::High).unwrap();
        let mut out = vec![0xaa];
        let low = ChanCell::new(CircId::new(1), CreateFast::new([1; 20]));
        assert!(matches!(
            ch.encode(&low, &mut out),
            Err(ChannelError::Misuse(_))
        ));
        let zero = ChanCell::new(CircId::LINK, Destroy::new(DestroyReason::NONE));
        assert!(matches!(
            ch.encode(&zero, &mut out),
            Err(ChannelError::Misuse(_))
        ));
        let versions = ChanCell::new(CircId::LINK, Versions::new(vec![4]).unwrap());
        assert!(matches!(
            ch.encode(&versions, &mut out),
            Err(ChannelError::Misuse(_))
        ));
        assert_eq!(out, [0xaa]);
        // A 4-byte ID does not fit a link protocol 3 cell.
        let ch = Channel::new(3, CircIdRange::Any).unwrap();
        let wide = ChanCell::new(CircId::new(0x1_0000), Destroy::new(DestroyReason::NONE));
        assert!(matches!(
            ch.encode(&wide, &mut out),
            Err(ChannelError::Encode(_))
        ));
        assert!(matches!(
            Channel::new(2, CircIdRange::Any),
            Err(ChannelError::Misuse(_))
        ));
    }

    /// One cell the strategy below can make: (kind, circuit ID, body bytes).
    fn make_cell(kind: u8, id: u32, body: &[u8]) -> ChanCell {
        let id = CircId::new(id | 1);
        match kind % 5 {
            0 => ChanCell::new(
                id,
                Create2::new(2, body.iter().copied().take(505).collect()).unwrap(),
            ),
            1 => {
                let mut b = [0u8; 509];
                b.iter_mut().zip(body).for_each(|(d, s)| *d = *s);
                ChanCell::new(id, Relay::new(Box::new(b)))
            }
            2 => ChanCell::new(
                id,
                Destroy::new(DestroyReason::new(body.first().copied().unwrap_or(0))),
            ),
            3 => ChanCell::new(CircId::LINK, Padding),
            _ => ChanCell::new(CircId::LINK, Vpadding::new(body.len() as u16)),
        }
    }

    proptest::proptest! {
        /// Cells encoded by one channel come out of the other, in order, whatever the pieces
        /// the bytes arrive in; padding is dropped.
        #[test]
        fn round_trip(
            version in 3u16..=5,
            cells in proptest::collection::vec(
                (proptest::prelude::any::<u8>(), proptest::prelude::any::<u32>(),
                 proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)),
                0..20,
            ),
            chunk in 1usize..2000,
        ) {
            let mask = if version >= 4 { u32::MAX } else { 0xffff };
            let cells: Vec<ChanCell> = cells
                .iter()
                .map(|(k, id, body)| make_cell(*k, id & mask, body))
                .collect();
            let tx = Channel::new(version, CircIdRange::Any).unwrap();
            let mut rx = Channel::new(version, CircIdRange::Nothing).unwrap();
            let mut bytes = Vec::new();
            for c in &cells {
                tx.encode(c, &mut bytes).unwrap();
            }
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                got.extend(drain(&mut rx, piece).unwrap());
            }
            let want: Vec<ChanCell> = cells
                .into_iter()
                .filter(|c| !matches!(c.msg, ChanMsg::Padding(_) | ChanMsg::Vpadding(_)))
                .collect();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(rx.buffered(), 0);
        }
    }

    #[test]
    fn input_is_bounded() {
        let mut ch = Channel::new(5, CircIdRange::Low).unwrap();
        // A huge VPADDING cell, then more: the channel takes one buffer's worth at a time.
        let codec = ch.codec();
        let big = ChanCell::new(CircId::LINK, Vpadding::new(u16::MAX));
        let bytes = wire(codec, &[big.clone(), big.clone(), big]);
        let n = ch.handle_input(&bytes);
        assert_eq!(n, Channel::INPUT_CAPACITY);
        assert_eq!(ch.handle_input(&bytes[n..]), 0);
        assert_eq!(ch.poll_cell(), Ok(None));
        assert_eq!(ch.buffered(), 0);
        assert_eq!(drain(&mut ch, &bytes[n..]), Ok(vec![]));
        // Garbage that is not a cell at all is an error, not a hang.
        let mut ch = Channel::new(5, CircIdRange::Low).unwrap();
        let mut junk = vec![0, 0, 0, 1, 10];
        junk.extend([0xff; 509]);
        assert!(matches!(drain(&mut ch, &junk), Err(ChannelError::Codec(_))));
    }
}
