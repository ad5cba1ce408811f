//! The link (channel) layer, sans-IO: the link handshake of tor-spec §4 as two state machines,
//! and the established [`Channel`].
//!
//! | type | role | spec |
//! |---|---|---|
//! | [`Initiator`] | we opened the connection: an OP (client mode) or our OR extending (relay mode) | tor-spec §4 |
//! | [`Responder`] | our OR accepted the connection | tor-spec §4 |
//! | [`Channel`] | the open link: framing, padding, circuit ID rules | tor-spec §3, §4.1, §5.1.1 |
//! | [`CircIdAllocator`] | choosing circuit IDs for the circuits we create | tor-spec §5.1.1 |
//!
//! # Driving a handshake
//!
//! Both state machines work on **bytes**, because AUTH0003 signs a digest of the exact bytes
//! each side sent. The driver moves bytes and time; nothing here does I/O:
//!
//! 1. after construction and after every call, send everything [`Initiator::poll_transmit`]
//!    (or [`Responder::poll_transmit`]) returns;
//! 2. pass received bytes to `handle_input(now_unix, bytes)`; it returns how many it consumed.
//!    It consumes everything until the handshake is complete (or, on a responder, waiting for
//!    the TLS exporter value, see [`Responder::exporter_request`]); bytes after the last
//!    handshake cell are left to the caller, and belong to the [`Channel`];
//! 3. once `is_done()` (complete, and all output taken), `finish()` yields the [`Channel`]
//!    and a [`ChannelInfo`].
//!
//! Any error is fatal for the link: close it. Each [`ChannelError`] variant says whose fault it
//! is.
//!
//! Every buffer is bounded: a handshake holds at most one cell ([`MAX_CELL_LEN`]) and reads at
//! most [`MAX_HANDSHAKE_BYTES`] in total; a [`Channel`] buffers at most
//! [`Channel::INPUT_CAPACITY`] bytes.
//!
//! # TLS and WebSocket links
//!
//! Over TLS, the responder's CERTS cell must certify the TLS certificate the initiator saw
//! (type 5, "SIGNING_V_TLS_CERT"), and an authenticating initiator's AUTHENTICATE cell is bound
//! to the TLS session by an exporter value: [`TlsBinding::Tls`]. A browser talking over a
//! WebSocket cannot see any TLS certificate: with [`TlsBinding::None`] the type 5 binding is not
//! checked (every other certificate check stays strict), the peer is reported as
//! [`PeerAuth::CertifiedNotBound`], and **hop 1 over WebSocket is authenticated by its pinned
//! ntor key during CREATE2 instead**. A responder with [`TlsBinding::None`] offers no
//! authentication method, so initiators stay unauthenticated.

use std::net::IpAddr;

use onion_cell::bytes::EncodeError;
use onion_cell::chancell::{ChanCmd, CircId};
use onion_cell::codec::CodecError;
pub use onion_cell::codec::MAX_CELL_LEN;
use thiserror::Error;

use crate::certs::{CertError, Ed25519Identity, RsaIdentity};

mod circid;
mod initiator;
mod open;
mod reader;
mod responder;
#[cfg(test)]
pub(crate) mod testutil;

pub use circid::{CircIdAllocator, CircIdRange, MAX_CIRC_ID_ATTEMPTS};
pub use initiator::{Initiator, InitiatorConfig, RelayAuth};
pub use open::Channel;
pub use responder::{ExporterRequest, Responder, ResponderConfig};

/// The most bytes a handshake reads from the peer before failing with
/// [`ChannelError::HandshakeTooLong`]: room for a VERSIONS, a CERTS, an AUTH_CHALLENGE or
/// AUTHENTICATE and a NETINFO cell of the largest possible sizes (far more than any real
/// handshake), but a bound on a peer that sends padding forever.
pub const MAX_HANDSHAKE_BYTES: usize = 4 * MAX_CELL_LEN;

/// A NETINFO timestamp (or the handshake's duration) beyond which the clock skew is not
/// estimated, as C tor does: a slow handshake says nothing about the peer's clock.
pub const MAX_SKEW_HANDSHAKE_SECS: u64 = 180;

/// What binds the link handshake to the underlying connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsBinding {
    /// A TLS link. `responder_cert_sha256` is the SHA-256 of the DER certificate the responder
    /// presented in the TLS handshake: the initiator checks that the responder's CERTS cell
    /// certifies it, and both sides use it as `SCERT` in AUTH0003.
    Tls {
        /// SHA-256 of the responder's TLS certificate.
        responder_cert_sha256: [u8; 32],
    },
    /// No TLS certificate is visible (a WebSocket opened by a browser). The responder's type 5
    /// certificate is still checked, except for what it certifies; the peer's identity is
    /// only claimed ([`PeerAuth::CertifiedNotBound`]) until CREATE2 proves its ntor key. A
    /// responder certifies an all-zero digest and offers no authentication method.
    None,
}

impl TlsBinding {
    /// The certificate digest, if this is a TLS link.
    pub fn cert_sha256(&self) -> Option<&[u8; 32]> {
        match self {
            TlsBinding::Tls {
                responder_cert_sha256,
            } => Some(responder_cert_sha256),
            TlsBinding::None => None,
        }
    }
}

/// Which side of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We opened the connection.
    Initiator,
    /// We accepted it.
    Responder,
}

/// Who the peer proved to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAuth {
    /// The peer did not authenticate: a client (or a relay that chose not to).
    Unauthenticated,
    /// The peer proved these identities: a responder whose CERTS cell certified the TLS
    /// certificate of this link, or an initiator whose CERTS and AUTHENTICATE cells verified.
    Authenticated {
        /// The peer's RSA identity.
        rsa_id: RsaIdentity,
        /// The peer's Ed25519 identity.
        ed_id: Ed25519Identity,
    },
    /// The responder's CERTS cell is valid for these identities, but nothing bound it to this
    /// connection ([`TlsBinding::None`]): anyone can replay a relay's CERTS cell. Treat the
    /// identities as claimed until a circuit handshake with the relay's pinned ntor key
    /// succeeds.
    CertifiedNotBound {
        /// The claimed RSA identity.
        rsa_id: RsaIdentity,
        /// The claimed Ed25519 identity.
        ed_id: Ed25519Identity,
    },
}

/// What the peer's NETINFO cell said (tor-spec §4.5). Unverified claims: use them as hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNetinfo {
    /// The peer's clock, seconds since the Unix epoch (0 from clients).
    pub timestamp: u32,
    /// The address the peer sees for us (`OTHERADDR`), if it is an IPv4 or IPv6 address.
    pub our_address: Option<IpAddr>,
    /// The peer's own addresses (`MYADDR`s) that are well-formed IPv4 or IPv6 addresses.
    pub peer_addresses: Vec<IpAddr>,
}

/// The outcome of a completed link handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Our side of the connection.
    pub role: Role,
    /// The negotiated link protocol version (3, 4 or 5).
    pub link_version: u16,
    /// Who the peer is.
    pub peer: PeerAuth,
    /// Whether we authenticated to the peer (initiators in relay mode, when the responder
    /// offered Ed25519-SHA256-RFC5705).
    pub we_authenticated: bool,
    /// The peer's NETINFO cell.
    pub peer_netinfo: PeerNetinfo,
    /// The peer's clock minus ours, in seconds, from its NETINFO timestamp; `None` when the
    /// peer sent 0 (clients do) or the handshake took [`MAX_SKEW_HANDSHAKE_SECS`] or more.
    pub clock_skew_secs: Option<i64>,
}

/// Why a link handshake or an open channel failed. Every error is fatal for the link.
///
/// [`ChannelError::Misuse`], [`ChannelError::OwnCerts`], [`ChannelError::Encode`],
/// [`ChannelError::CircIdsExhausted`] and [`ChannelError::NoCircIdRange`] are ours; every other
/// variant is the peer's fault (or an attack).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The peer's bytes cannot be framed or decoded into a cell.
    #[error("bad cell from peer: {0}")]
    Codec(#[from] CodecError),
    /// The peer sent a cell its side of the protocol may not send at this point.
    #[error("unexpected {cmd} cell {state}")]
    UnexpectedCell {
        /// The cell's command.
        cmd: ChanCmd,
        /// Where we were, e.g. `"before VERSIONS"`.
        state: &'static str,
    },
    /// The peer skipped a cell the handshake requires before this one.
    #[error("{missing} cell missing before {cell}")]
    MissingCell {
        /// The cell that should have come first.
        missing: ChanCmd,
        /// The cell that came instead.
        cell: ChanCmd,
    },
    /// The peer sent a handshake cell twice.
    #[error("duplicate {0} cell in the link handshake")]
    DuplicateCell(ChanCmd),
    /// A cell's circuit ID is not allowed with its command (tor-spec §5.1.1: link cells use 0,
    /// circuit cells a nonzero ID).
    #[error("{cmd} cell with circuit ID {circ_id}")]
    BadCircId {
        /// The cell's command.
        cmd: ChanCmd,
        /// Its circuit ID.
        circ_id: CircId,
    },
    /// The peer's VERSIONS cell shares no version with ours.
    #[error("no shared link protocol version (peer offers {theirs:?})")]
    NoSharedVersion {
        /// The versions the peer offered.
        theirs: Vec<u16>,
    },
    /// The peer's CERTS cell failed verification (including: not the identity we expected,
    /// not the TLS certificate of this link).
    #[error("peer's CERTS cell rejected: {0}")]
    PeerCerts(CertError),
    /// The initiator's AUTHENTICATE cell failed verification.
    #[error("AUTHENTICATE rejected: {0}")]
    Authenticate(CertError),
    /// The initiator used an authentication type we did not offer.
    #[error("AUTHENTICATE of type {0}, which was not offered")]
    UnsupportedAuthType(u16),
    /// The handshake went on for more than [`MAX_HANDSHAKE_BYTES`].
    #[error("link handshake longer than {limit} bytes")]
    HandshakeTooLong {
        /// The limit.
        limit: usize,
    },
    /// The peer sent a handshake cell (CERTS, AUTH_CHALLENGE, AUTHENTICATE) on an open
    /// channel.
    #[error("{0} cell on an open channel")]
    HandshakeCellAfterOpen(ChanCmd),
    /// Every randomly chosen circuit ID was in use.
    #[error("no free circuit ID after {attempts} attempts")]
    CircIdsExhausted {
        /// How many IDs were tried.
        attempts: usize,
    },
    /// We may not create circuits on this channel (a link protocol 3 responder facing an
    /// unauthenticated peer).
    #[error("no circuit ID range for us on this channel")]
    NoCircIdRange,
    /// Our own certificates could not be made from the relay keys we were given.
    #[error("cannot make our certificates: {0}")]
    OwnCerts(CertError),
    /// One of our cells could not be encoded.
    #[error("cannot encode our cell: {0}")]
    Encode(EncodeError),
    /// The API was used wrongly (a bug in the caller).
    #[error("API misuse: {0}")]
    Misuse(&'static str),
}

/// The versions list of a configuration, checked: non-empty, each one we can frame.
fn check_versions(versions: &[u16]) -> Result<(), ChannelError> {
    if versions.is_empty()
        || versions
            .iter()
            .any(|v| !onion_cell::codec::LINK_VERSIONS.contains(v))
    {
        return Err(ChannelError::Misuse(
            "link versions must be a non-empty subset of 3, 4, 5",
        ));
    }
    Ok(())
}

/// Summarize a received NETINFO cell.
fn peer_netinfo(n: &onion_cell::link::Netinfo) -> PeerNetinfo {
    PeerNetinfo {
        timestamp: n.timestamp(),
        our_address: n.other_addr().ip(),
        peer_addresses: n.my_addrs().iter().filter_map(|a| a.ip()).collect(),
    }
}

/// The peer's clock minus ours, if its timestamp says anything (see
/// [`ChannelInfo::clock_skew_secs`]).
fn clock_skew(timestamp: u32, started_unix: u64, now_unix: u64) -> Option<i64> {
    if timestamp == 0 || now_unix.saturating_sub(started_unix) >= MAX_SKEW_HANDSHAKE_SECS {
        return None;
    }
    let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
    Some(i64::from(timestamp).saturating_sub(now))
}

/// A NETINFO timestamp for `now_unix` (saturating in 2106).
fn netinfo_time(now_unix: u64) -> u32 {
    u32::try_from(now_unix).unwrap_or(u32::MAX)
}

/// The NETINFO address for the peer: its IP if the driver knows it, else an empty address of
/// type 0 (a browser over WebSocket does not know the relay's IP).
fn netinfo_addr(ip: Option<IpAddr>) -> onion_cell::link::NetinfoAddr {
    match ip {
        Some(ip) => ip.into(),
        None => onion_cell::link::NetinfoAddr::Unrecognized {
            atype: 0,
            value: Vec::new(),
        },
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use onion_cell::chancell::{ChanCell, ChanMsg, Create2, Created2, Padding, Vpadding};
    use onion_cell::codec::ChannelCodec;

    use super::testutil::*;
    use super::*;
    use crate::certs::ExpectedIdentity;
    use crate::certs::link::RelaySigningMaterial;

    const CLIENT_IP: &str = "192.0.2.10";
    const RELAY_IP: &str = "198.51.100.20";

    fn expect(m: &RelaySigningMaterial) -> ExpectedIdentity {
        ExpectedIdentity {
            rsa: Some(*m.rsa_id()),
            ed25519: Some(*m.ed_identity()),
        }
    }

    fn ids(m: &RelaySigningMaterial) -> PeerAuth {
        PeerAuth::Authenticated {
            rsa_id: *m.rsa_id(),
            ed_id: *m.ed_identity(),
        }
    }

    fn tls() -> TlsBinding {
        TlsBinding::Tls {
            responder_cert_sha256: TLS_CERT,
        }
    }

    fn initiator_config(tls: TlsBinding, versions: &[u16]) -> InitiatorConfig {
        let mut c = InitiatorConfig::new(tls, expect(material(1)), RELAY_IP.parse().ok());
        c.link_versions = versions.to_vec();
        c
    }

    /// An OP (`relay_seed` None) or the relay of `relay_seed`, connecting to the relay of
    /// material(1).
    fn initiator(tls: TlsBinding, versions: &[u16], relay_seed: Option<u64>) -> Initiator {
        let relay = relay_seed.map(|s| RelayAuth {
            material: material(s),
            tls_exporter: exporter(1, material(s).rsa_id_sha256()),
            my_addrs: vec![CLIENT_IP.parse().unwrap()],
        });
        Initiator::new(initiator_config(tls, versions), relay, NOW, &mut rng(20)).unwrap()
    }

    fn responder(tls: TlsBinding, versions: &[u16]) -> Responder {
        let mut c =
            ResponderConfig::new(tls, CLIENT_IP.parse().ok(), vec![RELAY_IP.parse().unwrap()]);
        c.link_versions = versions.to_vec();
        Responder::new(c, material(1), NOW, &mut rng(21)).unwrap()
    }

    fn wires() -> Vec<(&'static str, Wire<'static>)> {
        vec![
            ("all at once", Wire::chunked(usize::MAX)),
            ("one byte at a time", Wire::chunked(1)),
            ("random pieces", Wire::random(22)),
        ]
    }

    /// Exchange cells over two open channels: a CREATE2 forward, padding and a CREATED2 back.
    fn exchange(i: &mut Channel, r: &mut Channel, leftover_to_r: &[u8]) {
        let mut rng = rng(23);
        let id = i.allocate_circ_id(&mut rng, |_| false).unwrap();
        let create = ChanCell::new(id, Create2::new(2, vec![1; 84]).unwrap());
        let mut bytes = leftover_to_r.to_vec();
        i.encode(&create, &mut bytes).unwrap();
        assert_eq!(r.handle_input(&bytes), bytes.len());
        let mut got = Vec::new();
        while let Some(c) = r.poll_cell().unwrap() {
            got.push(c);
        }
        assert!(got.iter().all(|c| r.circ_ids().peer_may_create(c.circ_id)));
        assert_eq!(got.last(), Some(&create));
        let mut back = Vec::new();
        r.encode(&ChanCell::new(CircId::LINK, Padding), &mut back)
            .unwrap();
        let created = ChanCell::new(id, Created2::new(vec![2; 64]).unwrap());
        r.encode(&created, &mut back).unwrap();
        r.encode(&ChanCell::new(CircId::LINK, Vpadding::new(9)), &mut back)
            .unwrap();
        assert_eq!(i.handle_input(&back), back.len());
        assert_eq!(i.poll_cell(), Ok(Some(created)));
        assert_eq!(i.poll_cell(), Ok(None));
    }

    #[test]
    fn client_handshake() {
        for (name, mut wire) in wires() {
            let mut i = initiator(tls(), &LINK_VERSIONS_ALL, None);
            let mut r = responder(tls(), &LINK_VERSIONS_ALL);
            // The OP sends a CREATE_FAST right after its NETINFO, in the same flight.
            let mut flights = 0;
            let create_fast = {
                let mut b = Vec::new();
                let cell = ChanCell::new(
                    CircId::new(0x8000_0001),
                    onion_cell::chancell::CreateFast::new([3; 20]),
                );
                ChannelCodec::new(5).unwrap().encode(&cell, &mut b).unwrap();
                b
            };
            let cf = create_fast.clone();
            wire.tamper = Box::new(move |side, mut b| {
                if side == Side::Initiator {
                    flights += 1;
                    if flights == 2 {
                        b.extend(&cf);
                    }
                }
                b
            });
            let (to_r, to_i) = handshake(&mut i, &mut r, &mut wire).unwrap();
            assert_eq!(to_r, create_fast, "{name}");
            assert!(to_i.is_empty(), "{name}");
            let (mut ic, ii) = i.finish().unwrap();
            let (mut rc, ri) = r.finish().unwrap();
            assert_eq!(
                ii,
                ChannelInfo {
                    role: Role::Initiator,
                    link_version: 5,
                    peer: ids(material(1)),
                    we_authenticated: false,
                    peer_netinfo: PeerNetinfo {
                        timestamp: NOW as u32,
                        our_address: CLIENT_IP.parse().ok(),
                        peer_addresses: vec![RELAY_IP.parse().unwrap()],
                    },
                    clock_skew_secs: Some(0),
                },
                "{name}"
            );
            assert_eq!(
                ri,
                ChannelInfo {
                    role: Role::Responder,
                    link_version: 5,
                    peer: PeerAuth::Unauthenticated,
                    we_authenticated: false,
                    peer_netinfo: PeerNetinfo {
                        timestamp: 0,
                        our_address: RELAY_IP.parse().ok(),
                        peer_addresses: vec![],
                    },
                    clock_skew_secs: None,
                },
                "{name}"
            );
            assert_eq!(ic.circ_ids().range(), CircIdRange::High);
            assert_eq!(rc.circ_ids().range(), CircIdRange::Low);
            exchange(&mut ic, &mut rc, &to_r);
        }
    }

    const LINK_VERSIONS_ALL: [u16; 3] = [3, 4, 5];

    #[test]
    fn relay_handshake() {
        for (name, mut wire) in wires() {
            let mut i = initiator(tls(), &LINK_VERSIONS_ALL, Some(2));
            let mut r = responder(tls(), &LINK_VERSIONS_ALL);
            let (to_r, to_i) = handshake(&mut i, &mut r, &mut wire).unwrap();
            assert!(to_r.is_empty() && to_i.is_empty());
            let (mut ic, ii) = i.finish().unwrap();
            let (mut rc, ri) = r.finish().unwrap();
            assert_eq!(ii.peer, ids(material(1)), "{name}");
            assert!(ii.we_authenticated);
            assert_eq!(ri.peer, ids(material(2)), "{name}");
            assert!(!ri.we_authenticated);
            // A relay's NETINFO carries its time and addresses.
            assert_eq!(ri.clock_skew_secs, Some(0));
            assert_eq!(
                ri.peer_netinfo.peer_addresses,
                [CLIENT_IP.parse::<IpAddr>().unwrap()]
            );
            exchange(&mut ic, &mut rc, &[]);
        }
    }

    #[test]
    fn link_versions_and_circ_id_ranges() {
        for (iv, rv, expect) in [
            (&[3, 4][..], &[3, 4, 5][..], 4),
            (&[4, 5][..], &[4][..], 4),
            (&[3][..], &[3, 4, 5][..], 3),
            (&[5, 3][..], &[3, 5][..], 5),
        ] {
            // Client mode.
            let mut i = initiator(tls(), iv, None);
            let mut r = responder(tls(), rv);
            handshake(&mut i, &mut r, &mut Wire::chunked(usize::MAX)).unwrap();
            let (mut ic, ii) = i.finish().unwrap();
            let (mut rc, ri) = r.finish().unwrap();
            assert_eq!((ii.link_version, ri.link_version), (expect, expect));
            let ranges = (ic.circ_ids().range(), rc.circ_ids().range());
            if expect == 3 {
                // A client picks any ID; the relay cannot create circuits towards it.
                assert_eq!(ranges, (CircIdRange::Any, CircIdRange::Nothing));
                assert_eq!(ic.codec().circ_id_len(), 2);
            } else {
                assert_eq!(ranges, (CircIdRange::High, CircIdRange::Low));
            }
            exchange(&mut ic, &mut rc, &[]);

            // Relay mode.
            let mut i = initiator(tls(), iv, Some(2));
            let mut r = responder(tls(), rv);
            handshake(&mut i, &mut r, &mut Wire::chunked(usize::MAX)).unwrap();
            let (mut ic, _) = i.finish().unwrap();
            let (mut rc, _) = r.finish().unwrap();
            let ranges = (ic.circ_ids().range(), rc.circ_ids().range());
            if expect == 3 {
                // The lower RSA modulus takes the low half.
                let m = |s| {
                    use rsa::traits::PublicKeyParts;
                    material(s).rsa_identity_key().as_public_key().n_bytes()
                };
                let (i_mod, r_mod) = (m(2), m(1));
                assert_eq!(i_mod.len(), r_mod.len());
                let want = if i_mod < r_mod {
                    (CircIdRange::Low, CircIdRange::High)
                } else {
                    (CircIdRange::High, CircIdRange::Low)
                };
                assert_eq!(ranges, want);
            } else {
                assert_eq!(ranges, (CircIdRange::High, CircIdRange::Low));
            }
            exchange(&mut ic, &mut rc, &[]);
        }
    }

    #[test]
    fn no_shared_version() {
        let mut i = initiator(tls(), &[3, 4], None);
        let mut r = responder(tls(), &[5]);
        assert_eq!(
            handshake(&mut i, &mut r, &mut Wire::chunked(1)),
            Err((
                Side::Responder,
                ChannelError::NoSharedVersion { theirs: vec![3, 4] }
            ))
        );
    }

    #[test]
    fn wrong_expected_identity() {
        let mut config = initiator_config(tls(), &LINK_VERSIONS_ALL);
        config.expected = expect(material(3));
        let mut i = Initiator::new(config, None, NOW, &mut rng(24)).unwrap();
        let mut r = responder(tls(), &LINK_VERSIONS_ALL);
        assert_eq!(
            handshake(&mut i, &mut r, &mut Wire::random(25)),
            Err((
                Side::Initiator,
                ChannelError::PeerCerts(crate::certs::CertError::WrongIdentity("RSA"))
            ))
        );
        // Only the Ed25519 identity given, and it is another relay's.
        let mut config = initiator_config(tls(), &LINK_VERSIONS_ALL);
        config.expected.rsa = None;
        config.expected.ed25519 = Some(*material(3).ed_identity());
        let mut i = Initiator::new(config, None, NOW, &mut rng(24)).unwrap();
        let mut r = responder(tls(), &LINK_VERSIONS_ALL);
        assert_eq!(
            handshake(&mut i, &mut r, &mut Wire::chunked(usize::MAX)),
            Err((
                Side::Initiator,
                ChannelError::PeerCerts(crate::certs::CertError::WrongIdentity("Ed25519"))
            ))
        );
        // Another TLS certificate than the one the CERTS cell certifies.
        let other = TlsBinding::Tls {
            responder_cert_sha256: [1; 32],
        };
        let mut i = initiator(other, &LINK_VERSIONS_ALL, None);
        let mut r = responder(tls(), &LINK_VERSIONS_ALL);
        assert_eq!(
            handshake(&mut i, &mut r, &mut Wire::chunked(usize::MAX)),
            Err((
                Side::Initiator,
                ChannelError::PeerCerts(crate::certs::CertError::TlsCertMismatch)
            ))
        );
    }

    /// Flip the last byte of the CERTS cell in a flight that starts with one (after a
    /// VERSIONS cell of `skip` bytes): the end of the cross-certificate's RSA signature.
    fn tamper_certs(b: &mut [u8], skip: usize) {
        let len = usize::from(u16::from_be_bytes([b[skip + 5], b[skip + 6]]));
        assert_eq!(b[skip + 4], 0x81);
        b[skip + 7 + len - 1] ^= 1;
    }

    #[test]
    fn tampered_certs() {
        // The responder's.
        let mut i = initiator(tls(), &LINK_VERSIONS_ALL, None);
        let mut r = responder(tls(), &LINK_VERSIONS_ALL);
        let mut wire = Wire::chunked(usize::MAX);
        wire.tamper = Box::new(|side, mut b| {
            if side == Side::Responder {
                tamper_certs(&mut b, 11);
            }
            b
        });
        assert_eq!(
            handshake(&mut i, &mut r, &mut wire),
            Err((
                Side::Initiator,
                ChannelError::PeerCerts(crate::certs::CertError::BadSignature(7))
            ))
        );
        // The authenticating initiator's.
        let mut i = initiator(tls(), &LINK_VERSIONS_ALL, Some(2));
        let mut r = responder(tls(), &LINK_VERSIONS_ALL);
        let mut flights = 0;
        let mut wire = Wire::chunked(100);
        wire.tamper = Box::new(move |side, mut b| {
            if side == Side::Initiator {
                flights += 1;
                if flights == 2 {
                    tamper_certs(&mut b, 0);
                }
            }
            b
        });
        assert_eq!(
            handshake(&mut i, &mut r, &mut wire),
            Err((
                Side::Responder,
                ChannelError::PeerCerts(crate::certs::CertError::BadSignature(7))
            ))
        );
    }

    #[test]
    fn authenticate_with_wrong_exporter_value() {
        let mut i = initiator(tls(), &LINK_VERSIONS_ALL, Some(2));
        let mut r = responder(tls(), &LINK_VERSIONS_ALL);
        let mut wire = Wire::random(26);
        wire.responder_session = 2;
        assert_eq!(
            handshake(&mut i, &mut r, &mut wire),
            Err((
                Side::Responder,
                ChannelError::Authenticate(crate::certs::CertError::AuthFieldMismatch(
                    "TLSSECRETS"
                ))
            ))
        );
        // Once failed, always failed.
        assert!(matches!(
            r.handle_input(NOW, &[0]),
            Err(ChannelError::Authenticate(_))
        ));
        assert_eq!(r.exporter_request(), None);
    }

    #[test]
    fn exporter_must_come_before_more_input() {
        let mut i = initiator(tls(), &LINK_VERSIONS_ALL, Some(2));
        let mut r = responder(tls(), &LINK_VERSIONS_ALL);
        let versions = i.poll_transmit().unwrap();
        assert_eq!(r.handle_input(NOW, &versions), Ok(versions.len()));
        let flight = r.poll_transmit().unwrap();
        assert_eq!(i.handle_input(NOW, &flight), Ok(flight.len()));
        let answer = i.poll_transmit().unwrap();
        assert!(i.is_done());
        // The responder stops right after AUTHENTICATE.
        let n = r.handle_input(NOW, &answer).unwrap();
        assert_eq!(n, answer.len() - 514);
        let req = r.exporter_request().unwrap();
        assert_eq!(req.context, *material(2).rsa_id_sha256());
        assert!(matches!(
            r.handle_input(NOW, &answer[n..]),
            Err(ChannelError::Misuse(_))
        ));
        assert_eq!(r.handle_input(NOW, &[]), Ok(0));
        r.provide_tls_exporter(exporter(1, &req.context)).unwrap();
        assert!(matches!(
            r.provide_tls_exporter([0; 32]),
            Err(ChannelError::Misuse(_))
        ));
        assert_eq!(r.handle_input(NOW, &answer[n..]), Ok(514));
        assert!(r.is_done());
        assert_eq!(r.finish().unwrap().1.peer, ids(material(2)));
    }

    /// A VPADDING cell of link protocol 5 inserted after the first cell of a flight.
    fn insert_vpadding(b: &mut Vec<u8>, first_len: usize) {
        let pad = [0, 0, 0, 0, 0x80, 0, 2, 0xaa, 0xbb];
        b.splice(first_len..first_len, pad);
    }

    #[test]
    fn padding_in_transit() {
        // Harmless to a client handshake...
        let mut i = initiator(tls(), &LINK_VERSIONS_ALL, None);
        let mut r = responder(tls(), &LINK_VERSIONS_ALL);
        let mut wire = Wire::chunked(3);
        wire.tamper = Box::new(|side, mut b| {
            if side == Side::Responder {
                insert_vpadding(&mut b, 11);
            }
            b
        });
        handshake(&mut i, &mut r, &mut wire).unwrap();
        // ... but AUTH0003 covers every byte the responder sent: a cell slipped in by someone
        // else changes the initiator's SLOG.
        let mut i = initiator(tls(), &LINK_VERSIONS_ALL, Some(2));
        let mut r = responder(tls(), &LINK_VERSIONS_ALL);
        let mut wire = Wire::chunked(usize::MAX);
        wire.tamper = Box::new(|side, mut b| {
            if side == Side::Responder {
                insert_vpadding(&mut b, 11);
            }
            b
        });
        assert_eq!(
            handshake(&mut i, &mut r, &mut wire),
            Err((
                Side::Responder,
                ChannelError::Authenticate(crate::certs::CertError::AuthFieldMismatch("SLOG"))
            ))
        );
    }

    #[test]
    fn websocket_links() {
        // A browser OP: the CERTS cell is checked, but not bound to a TLS certificate.
        let mut i = initiator(TlsBinding::None, &LINK_VERSIONS_ALL, None);
        let mut r = responder(TlsBinding::None, &LINK_VERSIONS_ALL);
        handshake(&mut i, &mut r, &mut Wire::random(27)).unwrap();
        let (_, ii) = i.finish().unwrap();
        assert_eq!(
            ii.peer,
            PeerAuth::CertifiedNotBound {
                rsa_id: *material(1).rsa_id(),
                ed_id: *material(1).ed_identity(),
            }
        );
        // ... still checked for the expected identity and for tampering.
        let mut config = initiator_config(TlsBinding::None, &LINK_VERSIONS_ALL);
        config.expected = expect(material(3));
        let mut i = Initiator::new(config, None, NOW, &mut rng(28)).unwrap();
        let mut r = responder(TlsBinding::None, &LINK_VERSIONS_ALL);
        assert_eq!(
            handshake(&mut i, &mut r, &mut Wire::chunked(usize::MAX)),
            Err((
                Side::Initiator,
                ChannelError::PeerCerts(crate::certs::CertError::WrongIdentity("RSA"))
            ))
        );
        // A relay initiator facing a responder that offers no authentication (no TLS on its
        // side) stays unauthenticated, as C tor does; its CERTS cell is not sent.
        let zero = TlsBinding::Tls {
            responder_cert_sha256: [0; 32],
        };
        let mut i = initiator(zero, &LINK_VERSIONS_ALL, Some(2));
        let mut r = responder(TlsBinding::None, &LINK_VERSIONS_ALL);
        handshake(&mut i, &mut r, &mut Wire::chunked(1)).unwrap();
        assert!(!i.finish().unwrap().1.we_authenticated);
        assert_eq!(r.finish().unwrap().1.peer, PeerAuth::Unauthenticated);
        // An AUTHENTICATE cell anyway is refused.
        let mut r = responder(TlsBinding::None, &LINK_VERSIONS_ALL);
        let input = [ChannelCodec::unnegotiated(), ChannelCodec::new(5).unwrap()]
            .iter()
            .zip([
                ChanMsg::from(onion_cell::link::Versions::new(vec![5]).unwrap()),
                onion_cell::link::Authenticate::new(3, vec![0; 352]).into(),
            ])
            .fold(Vec::new(), |mut out, (codec, msg)| {
                codec
                    .encode(
                        &ChanCell {
                            circ_id: CircId::LINK,
                            msg,
                        },
                        &mut out,
                    )
                    .unwrap();
                out
            });
        assert_eq!(
            r.handle_input(NOW, &input),
            Err(ChannelError::UnsupportedAuthType(3))
        );
    }

    #[test]
    fn clock_skew_estimate() {
        assert_eq!(clock_skew(0, NOW, NOW), None);
        assert_eq!(clock_skew(NOW as u32 + 30, NOW, NOW + 1), Some(29));
        assert_eq!(clock_skew(NOW as u32 - 30, NOW, NOW), Some(-30));
        // A handshake that took three minutes says nothing.
        assert_eq!(clock_skew(NOW as u32, NOW, NOW + 180), None);
        assert_eq!(netinfo_time(u64::MAX), u32::MAX);
    }
}
