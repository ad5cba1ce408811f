//! The client's stream table: open streams with their windows, and streams it has ended but
//! whose last cells may still be on their way (tor-spec §6.3).

use std::collections::{BTreeMap, VecDeque};

use onion_cell::relaycell::StreamId;

use crate::crypto::relay::HopNum;
use crate::flow::{DeliverWindow, StreamWindows};

/// What a stream was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// RELAY_BEGIN to a host and port.
    Connect,
    /// RELAY_BEGIN_DIR.
    Dir,
    /// RELAY_RESOLVE: no data flows; the answer is one RESOLVED.
    Resolve,
}

/// One open stream.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The hop the stream ends at (the last hop when it was opened).
    pub(crate) hop: HopNum,
    /// What it was opened for.
    pub(crate) kind: StreamKind,
    /// Whether CONNECTED has arrived (never for RESOLVE).
    pub(crate) connected: bool,
    /// Package and deliver windows.
    pub(crate) windows: StreamWindows,
    /// Bytes handed out in events that the driver has not reported consumed (only counted
    /// with [`CircuitConfig::manual_stream_sendme`](super::CircuitConfig::manual_stream_sendme)).
    pub(crate) unconsumed: usize,
}

/// A stream we sent END on (or stopped waiting for): the exit may still send what it had in
/// flight. We accept at most what the stream could still legally carry.
#[derive(Debug)]
pub(crate) struct HalfClosed {
    /// The hop the stream ended at.
    pub(crate) hop: HopNum,
    /// What it was opened for.
    pub(crate) kind: StreamKind,
    /// Whether a CONNECTED may still arrive.
    pub(crate) connected_allowed: bool,
    /// DATA cells still acceptable.
    pub(crate) deliver: DeliverWindow,
}

/// What the table holds for a stream id.
pub(crate) enum Lookup<'a> {
    /// An open stream.
    Open(&'a mut Stream),
    /// A stream we ended.
    HalfClosed(&'a mut HalfClosed),
    /// Nothing: never opened, or forgotten.
    Unknown,
}

/// The streams of one circuit, bounded.
#[derive(Debug)]
pub(crate) struct StreamTable {
    /// Open streams, by id (ordered, so events come out deterministically).
    open: BTreeMap<StreamId, Stream>,
    /// Half-closed streams, by id.
    half_closed: BTreeMap<StreamId, HalfClosed>,
    /// Half-closed ids, oldest first, for eviction.
    half_closed_order: VecDeque<StreamId>,
    /// The next id to try.
    next_id: u16,
    /// Most open streams; also the most half-closed ones remembered.
    max: usize,
}

impl StreamTable {
    /// An empty table; ids are handed out from `first_id` (random, as C tor does) upward.
    pub(crate) fn new(max: usize, first_id: u16) -> Self {
        StreamTable {
            open: BTreeMap::new(),
            half_closed: BTreeMap::new(),
            half_closed_order: VecDeque::new(),
            next_id: first_id,
            max,
        }
    }

    /// Most open streams.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// How many streams are open.
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether another stream can be opened.
    pub(crate) fn has_room(&self) -> bool {
        self.open.len() < self.max
    }

    /// A fresh non-zero id used by no open or half-closed stream, or `None` when the table
    /// is full.
    pub(crate) fn allocate_id(&mut self) -> Option<StreamId> {
        if !self.has_room() {
            return None;
        }
        // At most `2 * max` ids are in use, far fewer than 65535: this ends quickly.
        for _ in 0..=u16::MAX {
            let id = StreamId(self.next_id);
            self.next_id = self.next_id.wrapping_add(1);
            if !id.is_zero() && !self.open.contains_key(&id) && !self.half_closed.contains_key(&id)
            {
                return Some(id);
            }
        }
        None
    }

    /// Register a new open stream under an id from [`StreamTable::allocate_id`].
    pub(crate) fn insert(&mut self, id: StreamId, hop: HopNum, kind: StreamKind) {
        self.open.insert(
            id,
            Stream {
                hop,
                kind,
                connected: false,
                windows: StreamWindows::new(),
                unconsumed: 0,
            },
        );
    }

    /// Look up a stream id.
    pub(crate) fn lookup(&mut self, id: StreamId) -> Lookup<'_> {
        if let Some(s) = self.open.get_mut(&id) {
            Lookup::Open(s)
        } else if let Some(h) = self.half_closed.get_mut(&id) {
            Lookup::HalfClosed(h)
        } else {
            Lookup::Unknown
        }
    }

    /// An open stream.
    pub(crate) fn get(&self, id: StreamId) -> Option<&Stream> {
        self.open.get(&id)
    }

    /// An open stream, mutably.
    pub(crate) fn get_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.open.get_mut(&id)
    }

    /// Forget an open stream (the far end closed it, or its answer arrived).
    pub(crate) fn remove(&mut self, id: StreamId) -> Option<Stream> {
        self.open.remove(&id)
    }

    /// Forget a half-closed stream (its END arrived).
    pub(crate) fn remove_half_closed(&mut self, id: StreamId) {
        if self.half_closed.remove(&id).is_some() {
            self.half_closed_order.retain(|x| *x != id);
        }
    }

    /// Move an open stream to the half-closed set (we sent END, or gave up on a RESOLVE).
    /// The oldest half-closed stream is forgotten when the set is full.
    pub(crate) fn half_close(&mut self, id: StreamId) -> bool {
        let Some(s) = self.open.remove(&id) else {
            return false;
        };
        while self.half_closed.len() >= self.max.max(1) {
            match self.half_closed_order.pop_front() {
                Some(old) => {
                    self.half_closed.remove(&old);
                }
                None => break,
            }
        }
        self.half_closed.insert(
            id,
            HalfClosed {
                hop: s.hop,
                kind: s.kind,
                connected_allowed: !s.connected && s.kind != StreamKind::Resolve,
                deliver: s.windows.deliver,
            },
        );
        self.half_closed_order.push_back(id);
        true
    }

    /// Remove every stream (open or half-closed) at a hop beyond `hops`; returns the open
    /// ones' ids.
    pub(crate) fn drop_beyond(&mut self, hops: usize) -> Vec<StreamId> {
        let beyond = |h: HopNum| usize::from(h.get()) > hops;
        let gone: Vec<StreamId> = self
            .open
            .iter()
            .filter(|(_, s)| beyond(s.hop))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.open.remove(id);
        }
        self.half_closed.retain(|_, h| !beyond(h.hop));
        let half = &self.half_closed;
        self.half_closed_order.retain(|id| half.contains_key(id));
        gone
    }

    /// Remove every stream; returns the open ones' ids.
    pub(crate) fn drain(&mut self) -> Vec<StreamId> {
        self.half_closed.clear();
        self.half_closed_order.clear();
        std::mem::take(&mut self.open).into_keys().collect()
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn hop(n: u8) -> HopNum {
        HopNum::new(n).unwrap()
    }

    #[test]
    fn ids_nonzero_unique_bounded() {
        let mut t = StreamTable::new(4, u16::MAX - 1);
        let a = t.allocate_id().unwrap();
        t.insert(a, hop(3), StreamKind::Connect);
        let b = t.allocate_id().unwrap();
        t.insert(b, hop(3), StreamKind::Connect);
        // Wrapped past 0 without handing it out.
        assert_eq!((a, b), (StreamId(u16::MAX - 1), StreamId(u16::MAX)));
        let c = t.allocate_id().unwrap();
        assert_eq!(c, StreamId(1));
        t.insert(c, hop(3), StreamKind::Dir);
        let d = t.allocate_id().unwrap();
        t.insert(d, hop(3), StreamKind::Resolve);
        assert_eq!(t.len(), 4);
        assert_eq!(t.allocate_id(), None);
        // Half-closed ids are not reused while remembered.
        assert!(t.half_close(a));
        assert!(!t.half_close(a));
        t.next_id = a.0;
        let e = t.allocate_id().unwrap();
        assert_ne!(e, a);
        assert!(matches!(t.lookup(a), Lookup::HalfClosed(_)));
        t.remove_half_closed(a);
        assert!(matches!(t.lookup(a), Lookup::Unknown));
    }

    #[test]
    fn half_closed_is_bounded_and_drop_beyond() {
        let mut t = StreamTable::new(2, 10);
        let mut ended = Vec::new();
        for _ in 0..5 {
            let id = t.allocate_id().unwrap();
            t.insert(id, hop(2), StreamKind::Connect);
            t.half_close(id);
            ended.push(id);
        }
        // Only the last two are remembered.
        assert!(matches!(t.lookup(ended[2]), Lookup::Unknown));
        assert!(matches!(t.lookup(ended[3]), Lookup::HalfClosed(_)));
        assert!(matches!(t.lookup(ended[4]), Lookup::HalfClosed(h) if h.connected_allowed));
        let a = t.allocate_id().unwrap();
        t.insert(a, hop(1), StreamKind::Connect);
        let b = t.allocate_id().unwrap();
        t.insert(b, hop(3), StreamKind::Connect);
        assert_eq!(t.drop_beyond(2), vec![b]);
        assert!(matches!(t.lookup(ended[4]), Lookup::HalfClosed(_)));
        assert_eq!(t.drop_beyond(1), Vec::<StreamId>::new());
        assert!(matches!(t.lookup(ended[4]), Lookup::Unknown));
        assert_eq!(t.drain(), vec![a]);
        assert_eq!(t.len(), 0);
    }
}
