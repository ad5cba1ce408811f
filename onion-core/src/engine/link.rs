//! One transport connection to an entry OR: the link handshake, then the open channel and
//! the circuits multiplexed on it.

use std::collections::BTreeMap;

use onion_cell::chancell::CircId;

use super::NowMs;
use crate::channel::{Channel, Initiator};
use crate::netdesc::EntryOr;

/// Where a link is.
#[derive(Debug)]
pub(super) enum LinkState {
    /// Waiting for the driver's `on_connected`.
    Connecting,
    /// Running the link handshake.
    Handshaking(Box<Initiator>),
    /// Open: cells flow.
    Open(Box<Channel>),
}

/// A link to an entry OR.
#[derive(Debug)]
pub(super) struct Link {
    /// The OR.
    pub(super) entry: EntryOr,
    /// Where it is.
    pub(super) state: LinkState,
    /// Until when it may take to open (connection + handshake).
    pub(super) deadline: NowMs,
    /// The engine's circuits on it, by wire circuit ID.
    pub(super) circs: BTreeMap<CircId, u64>,
    /// Whether it is being used by the bootstrap (for progress events).
    pub(super) for_bootstrap: bool,
}

impl Link {
    /// Whether cells can be sent.
    pub(super) fn is_open(&self) -> bool {
        matches!(self.state, LinkState::Open(_))
    }
}
