//! Flow control: circuit and stream windows and authenticated SENDME v1 (tor-spec §7.3,
//! §7.3.1, §7.4; param-spec `circwindow`, `sendme_emit_min_version`,
//! `sendme_accept_min_version`).
//!
//! Only RELAY_DATA cells count. Each side of a circuit hop (and of a stream) has
//!
//! - a **package window**: how many more DATA cells it may send. It starts at the window
//!   start, drops by one per DATA cell sent, sending stops at zero, and each SENDME received
//!   raises it by the increment. A SENDME that would raise it above its start is a protocol
//!   error.
//! - a **deliver window**: how many more DATA cells it will accept. It drops by one per DATA
//!   cell received; a peer that goes past zero breaks the protocol. Once it is down by a full
//!   increment a SENDME is due, and sending it raises the window by the increment.
//!
//! | level | start | increment |
//! |---|---|---|
//! | circuit ([`WindowParams::CIRCUIT`]) | 1000 | 100 |
//! | stream ([`WindowParams::STREAM`]) | 500 | 50 |
//!
//! # Authenticated SENDME (v1)
//!
//! A circuit-level SENDME v1 carries the [`CellDigest`] of the DATA cell that triggered it:
//! proof that the far end really received the cells. The sender ([`CircuitSender`]) records
//! the digest of every increment-th DATA cell it originates (the one whose sending takes the
//! package window down to a multiple of the increment, which is the cell the receiver's
//! deliver window triggers on) and matches each SENDME against the oldest recorded digest,
//! in constant time. The receiver ([`CircuitReceiver`]) answers the triggering cell with a
//! SENDME v1 carrying that cell's digest. We always emit v1, which satisfies any
//! `sendme_emit_min_version` up to 1.
//!
//! Storage is bounded by the window itself: a sender cannot send more than `start` cells
//! without a SENDME, so it never holds more than `start / increment` digests (10 for a
//! circuit), whatever the peer does.
//!
//! This is the fixed-window algorithm. Circuits that negotiate congestion control (proposal
//! 324) replace the package window with a congestion window and are out of scope here.

use std::collections::VecDeque;

use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::crypto::keys::HASH_LEN;
use crate::crypto::relay::CellDigest;

/// Initial circuit-level window (tor-spec §7.3; param-spec `circwindow` default).
pub const CIRCWINDOW_START: u16 = 1000;
/// Circuit-level window increment: DATA cells per circuit SENDME.
pub const CIRCWINDOW_INCREMENT: u16 = 100;
/// Initial stream-level window (tor-spec §7.4).
pub const STREAMWINDOW_START: u16 = 500;
/// Stream-level window increment: DATA cells per stream SENDME.
pub const STREAMWINDOW_INCREMENT: u16 = 50;
/// The SENDME version this module emits: authenticated SENDME (tor-spec §7.3.1).
pub const SENDME_VERSION_AUTHENTICATED: u8 = 1;

/// Why a flow-control step was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The package window is zero: no DATA cell may be sent until a SENDME arrives (caller's
    /// fault: check `can_send` first).
    #[error("package window exhausted")]
    WindowExhausted,
    /// A SENDME would raise the package window above its start (peer's fault: close).
    #[error("SENDME would raise the package window to {would_be}, above its start {start}")]
    WindowOverflow {
        /// The window the SENDME would have produced.
        would_be: u32,
        /// The window's start.
        start: u16,
    },
    /// The peer sent a DATA cell with the deliver window at zero (peer's fault: close).
    #[error("DATA cell beyond the deliver window")]
    DeliverWindowExceeded,
    /// A circuit SENDME arrived while no DATA cell was awaiting acknowledgement (peer's
    /// fault: close).
    #[error("unexpected circuit SENDME: no cell digest awaiting acknowledgement")]
    UnexpectedSendme,
    /// A SENDME v1 carried a digest other than the expected one (peer's fault: close).
    #[error("SENDME v1 digest does not match the expected cell digest")]
    SendmeDigestMismatch,
    /// A SENDME's version is below `sendme_accept_min_version` (peer's fault: close).
    #[error("SENDME version {version} below the minimum accepted version {min}")]
    SendmeVersionRejected {
        /// The SENDME's version.
        version: u8,
        /// The minimum accepted version.
        min: u8,
    },
    /// A SENDME has a version this implementation does not know (peer's fault: close).
    #[error("unknown SENDME version {0}")]
    UnknownSendmeVersion(u8),
    /// A SENDME v1's DATA is shorter than a digest (peer's fault: close).
    #[error("SENDME v1 data too short: {len} bytes, need {HASH_LEN}")]
    SendmeDigestTruncated {
        /// The DATA length.
        len: usize,
    },
    /// `on_sendme_sent` was called with no SENDME due (caller's fault).
    #[error("no SENDME is due")]
    SendmeNotDue,
    /// Window parameters are unusable (caller's fault): the increment must be nonzero and
    /// divide the start.
    #[error("invalid window parameters: start {start}, increment {increment}")]
    BadParams {
        /// The requested start.
        start: u16,
        /// The requested increment.
        increment: u16,
    },
}

impl FlowError {
    /// Whether the peer broke the protocol (the circuit, or for stream windows the stream,
    /// must be closed), as opposed to a misuse by the caller.
    pub fn is_protocol_violation(&self) -> bool {
        match self {
            FlowError::WindowOverflow { .. }
            | FlowError::DeliverWindowExceeded
            | FlowError::UnexpectedSendme
            | FlowError::SendmeDigestMismatch
            | FlowError::SendmeVersionRejected { .. }
            | FlowError::UnknownSendmeVersion(_)
            | FlowError::SendmeDigestTruncated { .. } => true,
            FlowError::WindowExhausted | FlowError::SendmeNotDue | FlowError::BadParams { .. } => {
                false
            }
        }
    }
}

/// A window's start and increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowParams {
    /// Initial (and largest) window.
    start: u16,
    /// Cells per SENDME.
    increment: u16,
}

impl WindowParams {
    /// Circuit level: start 1000, increment 100.
    pub const CIRCUIT: WindowParams = WindowParams {
        start: CIRCWINDOW_START,
        increment: CIRCWINDOW_INCREMENT,
    };
    /// Stream level: start 500, increment 50.
    pub const STREAM: WindowParams = WindowParams {
        start: STREAMWINDOW_START,
        increment: STREAMWINDOW_INCREMENT,
    };

    /// Custom parameters, e.g. a consensus `circwindow` (100..=1000) with increment 100.
    /// The increment must be nonzero and divide `start`, so that both ends of a circuit agree
    /// on which cell triggers each SENDME.
    pub fn new(start: u16, increment: u16) -> Result<Self, FlowError> {
        match start.checked_rem(increment) {
            Some(0) if start > 0 => Ok(WindowParams { start, increment }),
            _ => Err(FlowError::BadParams { start, increment }),
        }
    }

    /// The initial window.
    pub fn start(self) -> u16 {
        self.start
    }

    /// Cells per SENDME.
    pub fn increment(self) -> u16 {
        self.increment
    }

    /// Most SENDMEs that can be outstanding: `start / increment`.
    pub fn max_outstanding(self) -> usize {
        usize::from(self.start.checked_div(self.increment).unwrap_or(0))
    }
}

/// The sending side's window: how many more DATA cells may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageWindow {
    /// Start and increment.
    params: WindowParams,
    /// Current window.
    window: u16,
}

impl PackageWindow {
    /// A full window.
    pub fn new(params: WindowParams) -> Self {
        PackageWindow {
            params,
            window: params.start,
        }
    }

    /// The current window.
    pub fn window(&self) -> u16 {
        self.window
    }

    /// Whether a DATA cell may be sent now.
    pub fn can_send(&self) -> bool {
        self.window > 0
    }

    /// Account for one DATA cell sent. Refused (and nothing changes) at zero.
    pub fn on_data_sent(&mut self) -> Result<(), FlowError> {
        self.window = self
            .window
            .checked_sub(1)
            .ok_or(FlowError::WindowExhausted)?;
        Ok(())
    }

    /// Account for a SENDME received: raise the window by the increment. Refused (and
    /// nothing changes) if that would exceed the start.
    pub fn on_sendme(&mut self) -> Result<(), FlowError> {
        let would_be = u32::from(self.window) + u32::from(self.params.increment);
        if would_be > u32::from(self.params.start) {
            return Err(FlowError::WindowOverflow {
                would_be,
                start: self.params.start,
            });
        }
        self.window = self.window.saturating_add(self.params.increment);
        Ok(())
    }

    /// Whether the cell about to be sent is one whose digest a SENDME will echo: sending it
    /// takes the window to a multiple of the increment.
    fn next_cell_triggers_sendme(&self) -> bool {
        self.window
            .checked_sub(1)
            .and_then(|w| w.checked_rem(self.params.increment))
            == Some(0)
    }
}

/// The receiving side's window: how many more DATA cells will be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverWindow {
    /// Start and increment.
    params: WindowParams,
    /// Current window.
    window: u16,
}

impl DeliverWindow {
    /// A full window.
    pub fn new(params: WindowParams) -> Self {
        DeliverWindow {
            params,
            window: params.start,
        }
    }

    /// The current window.
    pub fn window(&self) -> u16 {
        self.window
    }

    /// Account for one DATA cell received. A cell with the window at zero is a protocol
    /// violation (nothing changes).
    pub fn on_data_received(&mut self) -> Result<(), FlowError> {
        self.window = self
            .window
            .checked_sub(1)
            .ok_or(FlowError::DeliverWindowExceeded)?;
        Ok(())
    }

    /// Whether a SENDME is due: the window is down by at least a full increment. (For
    /// streams, tor-spec §7.4 also waits until fewer than ten cells remain to be flushed to
    /// the application; that is the caller's part.)
    pub fn sendme_due(&self) -> bool {
        self.window <= self.params.start.saturating_sub(self.params.increment)
    }

    /// Account for a SENDME sent: raise the window by the increment. Refused if none is due.
    pub fn on_sendme_sent(&mut self) -> Result<(), FlowError> {
        if !self.sendme_due() {
            return Err(FlowError::SendmeNotDue);
        }
        self.window = self.window.saturating_add(self.params.increment);
        Ok(())
    }
}

/// A stream's two windows (tor-spec §7.4). Stream SENDMEs carry no digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamWindows {
    /// DATA cells this end may still send on the stream.
    pub package: PackageWindow,
    /// DATA cells this end will still accept on the stream.
    pub deliver: DeliverWindow,
}

impl StreamWindows {
    /// Both windows full, with [`WindowParams::STREAM`].
    pub fn new() -> Self {
        StreamWindows {
            package: PackageWindow::new(WindowParams::STREAM),
            deliver: DeliverWindow::new(WindowParams::STREAM),
        }
    }
}

impl Default for StreamWindows {
    fn default() -> Self {
        Self::new()
    }
}

/// The sending side of circuit-level flow control toward one hop (the client, per hop it
/// sends DATA to; a relay, toward the client): the package window and the digests that SENDME
/// v1 cells must echo.
#[derive(Debug, Clone)]
pub struct CircuitSender {
    /// The package window.
    window: PackageWindow,
    /// Digests of the triggering DATA cells not yet acknowledged, oldest first. At most
    /// `params.max_outstanding()` long (see the module docs).
    expected: VecDeque<CellDigest>,
    /// `sendme_accept_min_version`.
    accept_min_version: u8,
}

impl CircuitSender {
    /// A full window. `accept_min_version` is the consensus `sendme_accept_min_version`
    /// (default 0: unauthenticated v0 SENDMEs are accepted; 1: only v1).
    pub fn new(params: WindowParams, accept_min_version: u8) -> Self {
        CircuitSender {
            window: PackageWindow::new(params),
            expected: VecDeque::with_capacity(params.max_outstanding()),
            accept_min_version,
        }
    }

    /// The current package window.
    pub fn window(&self) -> u16 {
        self.window.window()
    }

    /// Whether a DATA cell may be sent now.
    pub fn can_send(&self) -> bool {
        self.window.can_send()
    }

    /// How many digests await a SENDME.
    pub fn pending_digests(&self) -> usize {
        self.expected.len()
    }

    /// Account for a RELAY_DATA cell originated toward this hop, with the digest its
    /// encryption returned. Refused (and nothing changes) when the window is zero.
    pub fn on_data_sent(&mut self, digest: &CellDigest) -> Result<(), FlowError> {
        let record = self.window.next_cell_triggers_sendme();
        self.window.on_data_sent()?;
        if record {
            self.expected.push_back(*digest);
        }
        Ok(())
    }

    /// Account for a circuit-level SENDME (stream id 0) from this hop; `version` and `data`
    /// are the SENDME's VERSION and DATA fields (tor-spec §7.3.1). For v1, the first 20 bytes
    /// of `data` must equal the digest of the oldest unacknowledged triggering cell. Any error
    /// is a protocol violation: close the circuit.
    pub fn on_sendme(&mut self, version: u8, data: &[u8]) -> Result<(), FlowError> {
        if version < self.accept_min_version {
            return Err(FlowError::SendmeVersionRejected {
                version,
                min: self.accept_min_version,
            });
        }
        let tag = match version {
            0 => None,
            1 => Some(
                data.first_chunk::<HASH_LEN>()
                    .ok_or(FlowError::SendmeDigestTruncated { len: data.len() })?,
            ),
            v => return Err(FlowError::UnknownSendmeVersion(v)),
        };
        // Pop whatever the version, so v0 SENDMEs do not let digests pile up.
        let expected = self
            .expected
            .pop_front()
            .ok_or(FlowError::UnexpectedSendme)?;
        if let Some(tag) = tag
            && !bool::from(expected.as_bytes().ct_eq(tag))
        {
            return Err(FlowError::SendmeDigestMismatch);
        }
        self.window.on_sendme()
    }
}

/// The receiving side of circuit-level flow control from one hop: the deliver window, and
/// the SENDME v1 each full increment of DATA cells calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitReceiver {
    /// The deliver window.
    window: DeliverWindow,
}

impl CircuitReceiver {
    /// A full window.
    pub fn new(params: WindowParams) -> Self {
        CircuitReceiver {
            window: DeliverWindow::new(params),
        }
    }

    /// The current deliver window.
    pub fn window(&self) -> u16 {
        self.window.window()
    }

    /// Account for a RELAY_DATA cell received from this hop, with the digest its decryption
    /// returned. Returns `Some(digest)` when this cell triggers a SENDME: the caller must send
    /// a circuit-level SENDME v1 carrying that digest now (the window is already credited).
    /// A cell beyond the window is a protocol violation.
    pub fn on_data_received(
        &mut self,
        digest: &CellDigest,
    ) -> Result<Option<CellDigest>, FlowError> {
        self.window.on_data_received()?;
        if self.window.sendme_due() {
            // The increment divides the start, so the window is due exactly when this cell
            // took it to a multiple of the increment: this cell is the trigger.
            self.window.on_sendme_sent()?;
            Ok(Some(*digest))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::crypto::keys::HopKeys;
    use crate::crypto::relay::{ClientCrypt, HopNum, RELAY_BODY_LEN, RelayLayer};
    use proptest::prelude::*;

    fn d(n: u32) -> CellDigest {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&n.to_be_bytes());
        CellDigest::new(b)
    }

    #[test]
    fn params() {
        assert_eq!(WindowParams::CIRCUIT.start(), 1000);
        assert_eq!(WindowParams::CIRCUIT.increment(), 100);
        assert_eq!(WindowParams::STREAM.start(), 500);
        assert_eq!(WindowParams::STREAM.increment(), 50);
        assert_eq!(WindowParams::CIRCUIT.max_outstanding(), 10);
        assert_eq!(WindowParams::new(1000, 100), Ok(WindowParams::CIRCUIT));
        assert_eq!(WindowParams::new(300, 100).map(|p| p.start()), Ok(300));
        for (s, i) in [(1000, 0), (0, 100), (150, 100), (50, 100), (0, 0)] {
            assert_eq!(
                WindowParams::new(s, i),
                Err(FlowError::BadParams {
                    start: s,
                    increment: i
                })
            );
        }
    }

    #[test]
    fn package_window_arithmetic() {
        let mut w = PackageWindow::new(WindowParams::CIRCUIT);
        assert_eq!(w.window(), 1000);
        assert_eq!(
            w.on_sendme(),
            Err(FlowError::WindowOverflow {
                would_be: 1100,
                start: 1000
            })
        );
        for _ in 0..1000 {
            assert!(w.can_send());
            w.on_data_sent().unwrap();
        }
        assert!(!w.can_send());
        assert_eq!(w.on_data_sent(), Err(FlowError::WindowExhausted));
        assert_eq!(w.window(), 0);
        w.on_sendme().unwrap();
        assert_eq!(w.window(), 100);
        for _ in 0..9 {
            w.on_sendme().unwrap();
        }
        assert_eq!(w.window(), 1000);
        assert!(w.on_sendme().is_err());
        assert_eq!(w.window(), 1000);
    }

    #[test]
    fn stream_windows() {
        let mut s = StreamWindows::new();
        assert_eq!(s.package.window(), 500);
        assert_eq!(
            s.package.on_sendme(),
            Err(FlowError::WindowOverflow {
                would_be: 550,
                start: 500
            })
        );
        for _ in 0..49 {
            s.package.on_data_sent().unwrap();
        }
        // 451 + 50 > 500: still an overflow.
        assert!(matches!(
            s.package.on_sendme(),
            Err(FlowError::WindowOverflow { would_be: 501, .. })
        ));
        s.package.on_data_sent().unwrap();
        s.package.on_sendme().unwrap();
        assert_eq!(s.package.window(), 500);

        assert_eq!(s.deliver.on_sendme_sent(), Err(FlowError::SendmeNotDue));
        for i in 1..=50 {
            assert!(!s.deliver.sendme_due());
            s.deliver.on_data_received().unwrap();
            assert_eq!(s.deliver.sendme_due(), i == 50);
        }
        assert_eq!(s.deliver.window(), 450);
        // The application is slow: keep receiving without sending the SENDME.
        for _ in 0..450 {
            s.deliver.on_data_received().unwrap();
        }
        assert_eq!(
            s.deliver.on_data_received(),
            Err(FlowError::DeliverWindowExceeded)
        );
        for _ in 0..10 {
            s.deliver.on_sendme_sent().unwrap();
        }
        assert_eq!(s.deliver.window(), 500);
        assert_eq!(s.deliver.on_sendme_sent(), Err(FlowError::SendmeNotDue));
    }

    #[test]
    fn circuit_receiver_triggers_every_hundredth_cell() {
        let mut r = CircuitReceiver::new(WindowParams::CIRCUIT);
        for n in 1..=2500u32 {
            let got = r.on_data_received(&d(n)).unwrap();
            if n % 100 == 0 {
                assert_eq!(got, Some(d(n)));
                assert_eq!(r.window(), 1000);
            } else {
                assert_eq!(got, None);
                assert_eq!(r.window(), 1000 - (n % 100) as u16);
            }
        }
    }

    #[test]
    fn sender_records_hundredth_cells_bounded() {
        let mut s = CircuitSender::new(WindowParams::CIRCUIT, 1);
        for n in 1..=1000u32 {
            s.on_data_sent(&d(n)).unwrap();
            assert_eq!(s.pending_digests(), (n / 100) as usize);
        }
        // A peer that never sends SENDME cannot make us store more.
        assert!(!s.can_send());
        assert_eq!(s.on_data_sent(&d(1001)), Err(FlowError::WindowExhausted));
        assert_eq!(s.pending_digests(), 10);
        // SENDMEs in order release the window.
        for k in 1..=10u32 {
            s.on_sendme(1, d(k * 100).as_bytes()).unwrap();
            assert_eq!(s.window(), (k * 100) as u16);
        }
        assert_eq!(s.pending_digests(), 0);
        assert_eq!(
            s.on_sendme(1, d(1100).as_bytes()),
            Err(FlowError::UnexpectedSendme)
        );
    }

    #[test]
    fn sendme_rejections() {
        let mut s = CircuitSender::new(WindowParams::CIRCUIT, 1);
        // Nothing sent yet: any SENDME is unexpected.
        assert_eq!(s.on_sendme(1, &[0; 20]), Err(FlowError::UnexpectedSendme));
        for n in 1..=200u32 {
            s.on_data_sent(&d(n)).unwrap();
        }
        assert_eq!(
            s.on_sendme(0, &[]),
            Err(FlowError::SendmeVersionRejected { version: 0, min: 1 })
        );
        assert_eq!(
            s.on_sendme(2, &[0; 20]),
            Err(FlowError::UnknownSendmeVersion(2))
        );
        assert_eq!(
            s.on_sendme(1, &[0; 19]),
            Err(FlowError::SendmeDigestTruncated { len: 19 })
        );
        // None of those consumed anything.
        assert_eq!(s.pending_digests(), 2);
        assert_eq!(s.window(), 800);
        // Extra DATA bytes after the digest are ignored.
        let mut long = d(100).as_bytes().to_vec();
        long.extend_from_slice(&[0xff; 5]);
        s.on_sendme(1, &long).unwrap();
        assert_eq!(s.window(), 900);
        // Out of order / wrong digest.
        assert_eq!(
            s.on_sendme(1, d(300).as_bytes()),
            Err(FlowError::SendmeDigestMismatch)
        );
        assert!(FlowError::SendmeDigestMismatch.is_protocol_violation());
        assert!(!FlowError::WindowExhausted.is_protocol_violation());
    }

    #[test]
    fn sendme_v0_when_accepted() {
        let mut s = CircuitSender::new(WindowParams::CIRCUIT, 0);
        for n in 1..=100u32 {
            s.on_data_sent(&d(n)).unwrap();
        }
        s.on_sendme(0, &[]).unwrap();
        assert_eq!(s.pending_digests(), 0);
        assert_eq!(s.window(), 1000);
        assert_eq!(s.on_sendme(0, &[]), Err(FlowError::UnexpectedSendme));
    }

    /// Both ends with the real relay crypto: the client sends DATA cells to hop 3 until its
    /// window closes, the exit's receiver answers with SENDME v1 digests, and the client
    /// accepts every one of them; then the other direction.
    #[test]
    fn end_to_end_with_relay_crypto() {
        let mut rng = crate::testing::seeded_rng(21);
        let mut client = ClientCrypt::new();
        let mut relays = Vec::new();
        for _ in 0..3 {
            let mut b = [0u8; HopKeys::LEN];
            rand::Rng::fill_bytes(&mut rng, &mut b);
            let k = HopKeys::from_bytes(&b);
            client.add_hop(&k).unwrap();
            relays.push(RelayLayer::new(&k));
        }
        let hop3 = HopNum::new(3).unwrap();

        // Forward: client sends, exit receives.
        let mut sender = CircuitSender::new(WindowParams::CIRCUIT, 1);
        let mut receiver = CircuitReceiver::new(WindowParams::CIRCUIT);
        let mut sendmes = Vec::new();
        for round in 0..3 {
            while sender.can_send() {
                let mut body = [round as u8; RELAY_BODY_LEN];
                body[0] = 2; // RELAY_DATA
                let cd = client.encrypt(&mut body, hop3).unwrap();
                sender.on_data_sent(&cd).unwrap();
                assert!(relays[0].decrypt_forward(&mut body).unwrap().is_none());
                assert!(relays[1].decrypt_forward(&mut body).unwrap().is_none());
                let rd = relays[2].decrypt_forward(&mut body).unwrap().unwrap();
                if let Some(tag) = receiver.on_data_received(&rd).unwrap() {
                    sendmes.push(tag);
                }
            }
            assert_eq!(sendmes.len(), 10);
            assert_eq!(sender.window(), 0);
            for tag in sendmes.drain(..) {
                sender.on_sendme(1, tag.as_bytes()).unwrap();
            }
            assert_eq!(sender.window(), 1000);
        }

        // Backward: exit sends, client receives, interleaving SENDMEs as they come.
        let mut sender = CircuitSender::new(WindowParams::CIRCUIT, 1);
        let mut receiver = CircuitReceiver::new(WindowParams::CIRCUIT);
        for _ in 0..2500 {
            assert!(sender.can_send());
            let mut body = [7u8; RELAY_BODY_LEN];
            body[0] = 2;
            let rd = relays[2].originate_backward(&mut body).unwrap();
            sender.on_data_sent(&rd).unwrap();
            relays[1].encrypt_backward(&mut body).unwrap();
            relays[0].encrypt_backward(&mut body).unwrap();
            let (h, cd) = client.decrypt(&mut body).unwrap();
            assert_eq!(h, hop3);
            if let Some(tag) = receiver.on_data_received(&cd).unwrap() {
                sender.on_sendme(1, tag.as_bytes()).unwrap();
            }
        }
        assert_eq!(sender.window(), 1000);
    }

    proptest! {
        /// Random interleavings of sends and correct SENDMEs keep the window and the digest
        /// queue consistent: pending = start/inc - ceil(window/inc), window <= start.
        #[test]
        fn sender_invariants(ops in proptest::collection::vec(any::<bool>(), 0..3000)) {
            let p = WindowParams::CIRCUIT;
            let mut s = CircuitSender::new(p, 1);
            let mut sent = 0u32;
            let mut acked = 0u32;
            for send in ops {
                if send {
                    let r = s.on_data_sent(&d(sent + 1));
                    if s.window() == 0 && r.is_err() {
                        prop_assert_eq!(r, Err(FlowError::WindowExhausted));
                    } else {
                        prop_assert!(r.is_ok());
                        sent += 1;
                    }
                } else {
                    let next = (acked + 1) * 100;
                    let r = s.on_sendme(1, d(next).as_bytes());
                    if next <= sent {
                        prop_assert!(r.is_ok());
                        acked += 1;
                    } else {
                        prop_assert_eq!(r, Err(FlowError::UnexpectedSendme));
                    }
                }
                let w = s.window();
                prop_assert!(w <= p.start());
                prop_assert_eq!(u32::from(w), 1000 + acked * 100 - sent);
                let expect = p.max_outstanding() - usize::from(w.div_ceil(p.increment()));
                prop_assert_eq!(s.pending_digests(), expect);
            }
        }
    }
}
