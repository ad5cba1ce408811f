//! The engine's view of one circuit and of one user stream.

use std::collections::BTreeMap;

use onion_cell::chancell::CircId;
use onion_cell::relaycell::{Address, StreamId};

use super::bootstrap::DirDoc;
use super::{CircuitInfo, CircuitPurpose, ConnId, HopInfo, NowMs, StreamHandle};
use crate::client::{ClientCircuit, HandshakeKind, HopTarget, PendingCircuit};
use crate::http::ResponseCollector;
use crate::path::RelayInfo;

/// One hop of a path.
#[derive(Debug, Clone)]
pub(super) struct PathHop {
    /// What the directory (or the description, for hop 1) says of the relay.
    pub(super) relay: RelayInfo,
    /// What the handshake and EXTEND2 need (for hop 1: the pinned keys).
    pub(super) target: HopTarget,
    /// The handshake to run.
    pub(super) kind: HandshakeKind,
    /// For events.
    pub(super) info: HopInfo,
}

/// Where a circuit is.
#[derive(Debug)]
pub(super) enum CircState {
    /// Waiting for its link to open.
    WaitingLink,
    /// CREATE* sent.
    Creating(Box<PendingCircuit>),
    /// Hop 1 answered: extending, or built.
    Live(Box<ClientCircuit>),
    /// Gone (transient, while being torn down).
    Gone,
}

/// Who a circuit's stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// A user stream.
    User(StreamHandle),
    /// The directory fetch of this circuit.
    Dir,
}

/// A directory request in progress on a circuit.
#[derive(Debug)]
pub(super) struct Fetch {
    /// The BEGIN_DIR stream.
    pub(super) stream: StreamId,
    /// What is fetched.
    pub(super) doc: DirDoc,
    /// The response so far.
    pub(super) http: ResponseCollector,
}

/// A circuit.
#[derive(Debug)]
pub(super) struct Circ {
    pub(super) id: u64,
    pub(super) conn: ConnId,
    pub(super) wire: Option<CircId>,
    pub(super) purpose: CircuitPurpose,
    pub(super) path: Vec<PathHop>,
    pub(super) state: CircState,
    /// When the build started.
    pub(super) started: NowMs,
    /// When the current hop's handshake started.
    pub(super) hop_started: NowMs,
    /// When the current hop's handshake times out (`None` when built or waiting for the link).
    pub(super) hop_deadline: Option<NowMs>,
    pub(super) built_at: Option<NowMs>,
    /// When it first carried a user stream.
    pub(super) dirty_since: Option<NowMs>,
    /// The isolation key of its streams, once claimed by one.
    pub(super) isolation: Option<Option<String>>,
    /// Claimed by one stream for itself (`one_circuit = false`).
    pub(super) reserved: bool,
    /// The identity epoch it was built in ([`super::Engine::new_identity`]).
    pub(super) epoch: u64,
    /// The port the exit was chosen for, if any.
    pub(super) exit_port: Option<u16>,
    /// Its streams.
    pub(super) streams: BTreeMap<StreamId, Owner>,
    /// The directory request in progress.
    pub(super) fetch: Option<Fetch>,
}

impl Circ {
    /// The live client circuit, if hop 1 answered.
    pub(super) fn live(&mut self) -> Option<&mut ClientCircuit> {
        match &mut self.state {
            CircState::Live(c) => Some(c),
            _ => None,
        }
    }

    /// Whether every hop is built.
    pub(super) fn is_built(&self) -> bool {
        self.built_at.is_some()
    }

    /// The user streams attached.
    pub(super) fn user_streams(&self) -> usize {
        self.streams
            .values()
            .filter(|o| matches!(o, Owner::User(_)))
            .count()
    }

    /// The hop infos.
    pub(super) fn hop_infos(&self) -> Vec<HopInfo> {
        self.path.iter().map(|h| h.info.clone()).collect()
    }

    /// For user interfaces.
    pub(super) fn info(&self) -> CircuitInfo {
        CircuitInfo {
            id: self.id,
            purpose: self.purpose,
            path: self.hop_infos(),
            built: self.is_built(),
            dirty: self.dirty_since.is_some(),
            isolation: self.isolation.clone().flatten(),
            streams: self.user_streams(),
        }
    }

    /// The exit (last hop).
    pub(super) fn exit(&self) -> Option<&RelayInfo> {
        self.path.last().map(|h| &h.relay)
    }
}

/// What a user stream asks for.
#[derive(Debug, Clone)]
pub(super) enum Request {
    /// RELAY_BEGIN.
    Connect {
        /// Where.
        addr: Address,
        /// Port.
        port: u16,
    },
    /// RELAY_RESOLVE.
    Resolve {
        /// The name.
        query: String,
    },
}

/// Where a user stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamState {
    /// Waiting for a circuit (maybe this one being built).
    Waiting { circ: Option<u64> },
    /// Sent on a circuit.
    Attached {
        circ: u64,
        stream: StreamId,
        connected: bool,
    },
}

/// A user stream.
#[derive(Debug, Clone)]
pub(super) struct UserStream {
    pub(super) request: Request,
    pub(super) isolation: Option<String>,
    pub(super) state: StreamState,
    /// Until when it may wait for CONNECTED / RESOLVED.
    pub(super) deadline: NowMs,
    /// Circuits launched for it.
    pub(super) builds: u32,
    /// A write took fewer bytes than offered: say when it can take more.
    pub(super) want_writable: bool,
    /// The last circuit error it saw.
    pub(super) last_error: Option<String>,
}

impl UserStream {
    /// The port the exit must accept (`None` for RESOLVE: any exit).
    pub(super) fn port(&self) -> Option<u16> {
        match self.request {
            Request::Connect { port, .. } => Some(port),
            Request::Resolve { .. } => None,
        }
    }
}
