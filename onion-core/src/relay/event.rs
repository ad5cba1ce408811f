//! What handling a forward cell asks of the driver: [`ForwardAction`], [`CircuitEvent`] and
//! [`ExtendRequest`].

use std::net::{SocketAddrV4, SocketAddrV6};

use onion_cell::chancell::ChanMsg;
use onion_cell::relaycell::linkspec::{ED25519_ID_LEN, RSA_ID_LEN};
use onion_cell::relaycell::{
    Address, Associate, BeginFlags, EndReason, Info, LinkSpec, StreamId, WsStream,
};

/// What the driver does after [`OrCircuit::handle_forward`](super::OrCircuit::handle_forward).
///
/// In every case, cells may have been queued toward the client: drain them with
/// [`OrCircuit::poll_backward`](super::OrCircuit::poll_backward).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardAction {
    /// The cell is not for this hop: send the body (now with this hop's layer removed) to the
    /// next hop, as RELAY_EARLY if `early`, else as RELAY (tor-spec §5.6).
    PassOn {
        /// Whether the cell arrived as RELAY_EARLY.
        early: bool,
    },
    /// The cell was for this hop and fully handled here (SENDME, DROP, an ignored command,
    /// or a stream problem answered with an END).
    Consumed,
    /// The cell was for this hop and asks the driver to act.
    Event(CircuitEvent),
}

/// A request from the client that the driver must carry out (or refuse).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitEvent {
    /// RELAY_BEGIN (tor-spec §6.2): open a TCP stream, subject to the exit policy and the
    /// internal-address guard (the driver's decision; see also
    /// [`OrCircuit::is_first_hop`](super::OrCircuit::is_first_hop), tor-spec §5.4). Answer
    /// with `stream_connected` or `stream_end`. DATA may follow before that (optimistic
    /// data): the driver holds it until the connection is made.
    BeginRequest {
        /// The stream.
        stream: StreamId,
        /// The target host.
        target: Address,
        /// The target port (never 0).
        port: u16,
        /// The BEGIN flags (IPv6 preferences).
        flags: BeginFlags,
    },
    /// RELAY_BEGIN_DIR (tor-spec §6.2.1): open a stream to this relay's directory service.
    /// Answer with `stream_connected(.., None)`, or `stream_end` with
    /// [`EndReason::NOTDIRECTORY`].
    BeginDirRequest {
        /// The stream.
        stream: StreamId,
    },
    /// RELAY_RESOLVE (tor-spec §6.4): look `query` up. Answer with `resolved` (or
    /// `stream_end`).
    ResolveRequest {
        /// The stream id the answer must carry.
        stream: StreamId,
        /// The hostname, or an in-addr.arpa name for a reverse lookup.
        query: String,
    },
    /// RELAY_DATA for a stream. Report with `stream_flushed` once written out: the stream's
    /// SENDMEs wait for it (tor-spec §7.4), which is the backpressure toward the client.
    StreamData {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// RELAY_END from the client: the stream is gone; close its connection.
    StreamEnd {
        /// The stream.
        stream: StreamId,
        /// The client's reason (clients send MISC).
        reason: EndReason,
    },
    /// A SENDME opened a package window: data held back for `stream` (or, for `None`, a
    /// circuit-level SENDME, for every stream) may be sent again.
    PackageWindowOpened {
        /// The stream, or `None` for the whole circuit.
        stream: Option<StreamId>,
    },
    /// RELAY_EXTEND2 or RELAY_EXTEND: connect to the next relay (or reuse a channel to it,
    /// checking every identity given, tor-spec §5.1.2 and §5.3.1), send it
    /// [`ExtendRequest::create`], then call `extended` with its answer or `extend_failed`.
    ExtendRequest(ExtendRequest),
    /// RELAY_TRUNCATE (tor-spec §5.4): destroy the next hop (or abandon the extension in
    /// flight), then call `truncated`. Cells from the old next hop are no longer accepted.
    Truncate,
    /// The seed's RELAY_ASSOCIATE: bind the fake domain to this circuit (client circuits
    /// only).
    SeedAssociate {
        /// The stream id it arrived on.
        stream: StreamId,
        /// The message.
        msg: Associate,
    },
    /// The seed's RELAY_WS stream message (client circuits only).
    SeedWs {
        /// The stream id it arrived on.
        stream: StreamId,
        /// The message.
        msg: WsStream,
    },
    /// The seed's RELAY_INFO request (client circuits only).
    SeedInfo {
        /// The stream id it arrived on.
        stream: StreamId,
        /// The message.
        msg: Info,
    },
}

/// An extension request, checked: it names an RSA identity that is not all zeros and not this
/// relay's, an Ed25519 identity (if any) that is not this relay's, and at least one address
/// with a port.
///
/// Still the driver's to check: that the target is not the previous hop, that the addresses
/// are allowed (internal-address guard), and that the relay it reaches proves every identity
/// given (tor-spec §5.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendRequest {
    /// The link specifiers (for a legacy EXTEND: its IPv4 address and RSA identity), in wire
    /// order, unknown ones included.
    pub(crate) link_specs: Vec<LinkSpec>,
    /// The cell to send to the next hop.
    pub(crate) create: ChanMsg,
    /// The RSA identity digest.
    pub(crate) rsa_id: [u8; RSA_ID_LEN],
    /// Whether this came from a legacy EXTEND (answered with EXTENDED).
    pub(crate) legacy: bool,
}

impl ExtendRequest {
    /// The link specifiers, in wire order (unknown ones kept raw). For a legacy EXTEND: an
    /// IPv4 specifier and an RSA identity specifier.
    pub fn link_specs(&self) -> &[LinkSpec] {
        &self.link_specs
    }

    /// The cell to send to the next hop: CREATE2 for EXTEND2, CREATE for EXTEND.
    pub fn create(&self) -> &ChanMsg {
        &self.create
    }

    /// Take the cell to send to the next hop.
    pub fn into_create(self) -> ChanMsg {
        self.create
    }

    /// The next relay's RSA identity digest (always present, never all zeros).
    pub fn rsa_id(&self) -> &[u8; RSA_ID_LEN] {
        &self.rsa_id
    }

    /// The next relay's Ed25519 identity, if one was given and is not all zeros (tor-spec
    /// §5.3: all-zero Ed25519 keys are accepted and mean "none").
    pub fn ed25519_id(&self) -> Option<[u8; ED25519_ID_LEN]> {
        self.link_specs.iter().find_map(|ls| match ls {
            LinkSpec::Ed25519Id(id) if id.iter().any(|&b| b != 0) => Some(*id),
            _ => None,
        })
    }

    /// The first IPv4 address and port given (C tor considers only the first of each type).
    pub fn ipv4(&self) -> Option<SocketAddrV4> {
        self.link_specs.iter().find_map(|ls| match ls {
            LinkSpec::Ipv4 { addr, port } => Some(SocketAddrV4::new(*addr, *port)),
            _ => None,
        })
    }

    /// The first IPv6 address and port given.
    pub fn ipv6(&self) -> Option<SocketAddrV6> {
        self.link_specs.iter().find_map(|ls| match ls {
            LinkSpec::Ipv6 { addr, port } => Some(SocketAddrV6::new(*addr, *port, 0, 0)),
            _ => None,
        })
    }

    /// Whether this came from a legacy (TAP) EXTEND cell.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }
}
