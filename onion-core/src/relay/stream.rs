//! The bounded stream table of one circuit at its last hop.
//!
//! - **Active** streams: opened by BEGIN / BEGIN_DIR / RESOLVE and not yet ended. At most
//!   `max_streams`; a BEGIN beyond that is answered with END (RESOURCELIMIT).
//! - **Half-closed** streams: ended by us. tor-spec §6.3: the sender of an END "SHOULD
//!   remember how many cells of which types (CONNECTED, SENDME, DATA) it would have accepted
//!   on that stream, and SHOULD kill the circuit if it receives more than permitted". Cells
//!   the client sent before it saw our END are absorbed silently, within the stream's deliver
//!   window. Streams we refused (END in answer to their BEGIN) are remembered the same way, so
//!   that optimistic DATA sent after the BEGIN is absorbed too. At most `max_streams` (and at
//!   least [`MIN_HALF_CLOSED`]) are remembered; the oldest is forgotten first.

use std::collections::{BTreeMap, VecDeque};

use onion_cell::relaycell::StreamId;

use crate::flow::{DeliverWindow, StreamWindows, WindowParams};

/// Half-closed streams remembered even when `max_streams` is lower.
pub(crate) const MIN_HALF_CLOSED: usize = 16;

/// What opened a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// RELAY_BEGIN.
    Exit,
    /// RELAY_BEGIN_DIR.
    Dir,
    /// RELAY_RESOLVE: no stream is created, only the id awaits its RESOLVED.
    Resolve,
}

/// Where an active stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamState {
    /// Opened by the client, not yet answered.
    Pending,
    /// CONNECTED sent.
    Open,
}

/// An active stream.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    /// What opened it.
    pub(crate) kind: StreamKind,
    /// Pending or open.
    pub(crate) state: StreamState,
    /// Package and deliver windows.
    pub(crate) windows: StreamWindows,
    /// Bytes delivered to the driver and not yet reported flushed.
    pub(crate) unflushed: usize,
}

impl Stream {
    /// A stream just opened by the client.
    fn new(kind: StreamKind) -> Self {
        Stream {
            kind,
            state: StreamState::Pending,
            windows: StreamWindows::new(),
            unflushed: 0,
        }
    }
}

/// What an id refers to.
pub(crate) enum Lookup<'a> {
    /// An active stream.
    Active(&'a mut Stream),
    /// A stream we ended: how many more DATA cells it may still receive.
    HalfClosed(&'a mut DeliverWindow),
    /// Nothing.
    Unknown,
}

/// The streams of a circuit.
#[derive(Debug, Clone)]
pub(crate) struct StreamTable {
    /// Active streams.
    active: BTreeMap<StreamId, Stream>,
    /// Streams we ended, oldest first.
    half_closed: VecDeque<(StreamId, DeliverWindow)>,
    /// Most active streams.
    max: usize,
}

impl StreamTable {
    /// An empty table holding at most `max` active streams.
    pub(crate) fn new(max: usize) -> Self {
        StreamTable {
            active: BTreeMap::new(),
            half_closed: VecDeque::new(),
            max,
        }
    }

    /// Number of active streams.
    pub(crate) fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Number of half-closed streams remembered.
    #[cfg(test)]
    pub(crate) fn half_closed_len(&self) -> usize {
        self.half_closed.len()
    }

    /// Whether another stream may be opened.
    pub(crate) fn has_room(&self) -> bool {
        self.active.len() < self.max
    }

    /// What `id` refers to.
    pub(crate) fn lookup(&mut self, id: StreamId) -> Lookup<'_> {
        if let Some(s) = self.active.get_mut(&id) {
            return Lookup::Active(s);
        }
        match self.half_closed.iter_mut().find(|(h, _)| *h == id) {
            Some((_, w)) => Lookup::HalfClosed(w),
            None => Lookup::Unknown,
        }
    }

    /// The active stream `id`.
    pub(crate) fn get(&self, id: StreamId) -> Option<&Stream> {
        self.active.get(&id)
    }

    /// The active stream `id`, mutably.
    pub(crate) fn get_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.active.get_mut(&id)
    }

    /// Open stream `id` (forgetting a half-closed stream of that id). The caller checked
    /// [`has_room`](Self::has_room) and that `id` is not active.
    pub(crate) fn open(&mut self, id: StreamId, kind: StreamKind) {
        self.forget_half_closed(id);
        self.active.insert(id, Stream::new(kind));
    }

    /// Remove the active stream `id` (the client ended it, or it is answered).
    pub(crate) fn remove(&mut self, id: StreamId) -> Option<Stream> {
        self.active.remove(&id)
    }

    /// Remove the active stream `id` and remember it as half-closed (we ended it).
    pub(crate) fn close(&mut self, id: StreamId) -> Option<Stream> {
        let s = self.active.remove(&id)?;
        if s.kind != StreamKind::Resolve {
            self.push_half_closed(id, s.windows.deliver.clone());
        }
        Some(s)
    }

    /// Remember `id`, which is not active, as half-closed with a full deliver window (we
    /// refused it).
    pub(crate) fn remember_refused(&mut self, id: StreamId) {
        self.push_half_closed(id, DeliverWindow::new(WindowParams::STREAM));
    }

    /// Remember `id` as half-closed, forgetting the oldest beyond the bound.
    fn push_half_closed(&mut self, id: StreamId, window: DeliverWindow) {
        self.forget_half_closed(id);
        while self.half_closed.len() >= self.max.max(MIN_HALF_CLOSED) {
            self.half_closed.pop_front();
        }
        self.half_closed.push_back((id, window));
    }

    /// Forget the half-closed stream `id` (the client's END crossed ours, or the id is
    /// reused).
    pub(crate) fn forget_half_closed(&mut self, id: StreamId) {
        self.half_closed.retain(|(h, _)| *h != id);
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn bounded_tables() {
        let mut t = StreamTable::new(2);
        assert!(t.has_room());
        t.open(StreamId(1), StreamKind::Exit);
        t.open(StreamId(2), StreamKind::Resolve);
        assert!(!t.has_room());
        assert_eq!(t.active_len(), 2);
        // A resolve leaves nothing behind.
        assert!(t.close(StreamId(2)).is_some());
        assert_eq!(t.half_closed_len(), 0);
        assert!(matches!(t.lookup(StreamId(2)), Lookup::Unknown));
        assert!(t.close(StreamId(1)).is_some());
        assert!(matches!(t.lookup(StreamId(1)), Lookup::HalfClosed(_)));
        assert!(t.close(StreamId(1)).is_none());
        for id in 3..40 {
            t.open(StreamId(id), StreamKind::Dir);
            t.close(StreamId(id));
        }
        // Only the most recent are remembered.
        assert_eq!(t.half_closed_len(), MIN_HALF_CLOSED);
        assert!(matches!(t.lookup(StreamId(39)), Lookup::HalfClosed(_)));
        assert!(matches!(t.lookup(StreamId(24)), Lookup::HalfClosed(_)));
        assert!(matches!(t.lookup(StreamId(23)), Lookup::Unknown));
        // Reusing an id forgets its half-closed state.
        t.open(StreamId(39), StreamKind::Exit);
        assert!(matches!(t.lookup(StreamId(39)), Lookup::Active(_)));
        assert_eq!(t.half_closed_len(), MIN_HALF_CLOSED - 1);
        assert_eq!(t.active_len(), 1);
        assert!(t.remove(StreamId(39)).is_some());
        assert_eq!(t.half_closed_len(), MIN_HALF_CLOSED - 1);
        // Refused streams are remembered with a full window, even with no room for streams.
        let mut t = StreamTable::new(0);
        assert!(!t.has_room());
        t.remember_refused(StreamId(5));
        let Lookup::HalfClosed(w) = t.lookup(StreamId(5)) else {
            panic!("not half-closed")
        };
        assert_eq!(w.window(), 500);
    }
}
