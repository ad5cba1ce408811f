//! The responder's side of the link handshake (tor-spec §4): our OR accepting a connection.
//!
//! ```text
//! initiator                                responder
//!   [VPADDING | AUTHORIZE]* VERSIONS  ->
//!                                     <-  VERSIONS, CERTS, AUTH_CHALLENGE, NETINFO
//!   client: NETINFO                   ->
//!   relay:  CERTS, AUTHENTICATE, NETINFO ->
//! ```
//!
//! An initiator that sends a CERTS cell but no AUTHENTICATE is treated as a client, as C tor
//! does (its certificates prove nothing without AUTHENTICATE, but they must still be valid).
//!
//! # The TLS exporter value
//!
//! AUTH0003's `TLSSECRETS` is a TLS exporter value whose context is the initiator's `CID`,
//! which the responder learns only from the initiator's CERTS cell. So when an AUTHENTICATE
//! cell arrives the responder pauses: [`Responder::exporter_request`] says what to export, the
//! driver asks its TLS library and passes the value to [`Responder::provide_tls_exporter`],
//! then goes on feeding input.

use std::net::IpAddr;

use onion_cell::chancell::{ChanCell, ChanCmd, ChanMsg, CircId};
use onion_cell::codec::{ChannelCodec, LINK_VERSIONS};
use onion_cell::link::{
    AuthChallenge, Authenticate, CertType, Certs, Netinfo, Versions, auth_method,
};
use rand_core::CryptoRng;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use super::reader::{CellReader, HandshakePhase, HandshakeSide, Outbox, decode_cell, read_cells};
use super::{
    Channel, ChannelError, ChannelInfo, CircIdRange, PeerAuth, Role, TlsBinding, check_versions,
    clock_skew, netinfo_addr, netinfo_time, peer_netinfo,
};
use crate::certs::link::{
    AUTH_TYPE_ED25519_SHA256_RFC5705, AUTH0003_EXPORTER_LABEL, AUTH0003_EXPORTER_LEN, Auth0003,
    Auth0003Fields, verify_initiator_certs,
};
use crate::certs::{
    Ed25519Identity, RelaySigningMaterial, VerifiedInitiator, X509RsaCert, cert_type,
};

/// How a responder answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponderConfig {
    /// The link protocol versions we accept: a non-empty subset of 3, 4, 5.
    pub link_versions: Vec<u16>,
    /// Our TLS certificate ([`TlsBinding::Tls`]), or none visible to the peer.
    pub tls: TlsBinding,
    /// The initiator's address as we see it, for our NETINFO cell.
    pub peer_addr: Option<IpAddr>,
    /// Our addresses, for our NETINFO cell.
    pub my_addrs: Vec<IpAddr>,
}

impl ResponderConfig {
    /// Accept link protocols 3, 4 and 5.
    pub fn new(tls: TlsBinding, peer_addr: Option<IpAddr>, my_addrs: Vec<IpAddr>) -> Self {
        ResponderConfig {
            link_versions: LINK_VERSIONS.to_vec(),
            tls,
            peer_addr,
            my_addrs,
        }
    }
}

/// A TLS exporter value the responder needs (RFC 5705 for TLS 1.2, RFC 8446 §7.5 for TLS 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExporterRequest {
    /// The label: [`AUTH0003_EXPORTER_LABEL`].
    pub label: &'static [u8],
    /// The context: the initiator's `CID` (SHA-256 of its RSA identity key).
    pub context: [u8; 32],
    /// The output length: 32.
    pub len: usize,
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the initiator's VERSIONS.
    Versions,
    /// Ours are sent; waiting for CERTS + AUTHENTICATE + NETINFO, or NETINFO.
    Initiator,
    /// AUTHENTICATE received; waiting for the driver's exporter value.
    Exporter,
    /// Complete.
    Done,
}

impl HandshakePhase for Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Versions => "before VERSIONS",
            Phase::Initiator => "before NETINFO",
            Phase::Exporter => "while checking AUTHENTICATE",
            Phase::Done => "after the handshake",
        }
    }

    /// Whether the initiator may send `cmd` now (order and duplicates are checked later).
    fn allows(self, cmd: ChanCmd) -> bool {
        match self {
            // tor-spec §4: "the first cell must be VERSIONS, VPADDING, or AUTHORIZE".
            Phase::Versions => matches!(
                cmd,
                ChanCmd::VERSIONS | ChanCmd::VPADDING | ChanCmd::AUTHORIZE
            ),
            Phase::Initiator => matches!(
                cmd,
                ChanCmd::CERTS
                    | ChanCmd::AUTHENTICATE
                    | ChanCmd::NETINFO
                    | ChanCmd::PADDING
                    | ChanCmd::VPADDING
            ),
            Phase::Exporter | Phase::Done => false,
        }
    }
}

/// The responder's link handshake. See the [module docs](super) for how to drive it.
#[derive(Debug)]
pub struct Responder {
    versions: Vec<u16>,
    tls: TlsBinding,
    peer_addr: Option<IpAddr>,
    my_addrs: Vec<IpAddr>,
    /// `SID`, `SID_ED` and our RSA modulus.
    sid: [u8; 32],
    sid_ed: Ed25519Identity,
    our_modulus: Box<[u8]>,
    certs: Certs,
    challenge: [u8; 32],
    started_unix: u64,

    phase: Phase,
    failed: Option<ChannelError>,
    codec: ChannelCodec,
    reader: CellReader,
    out: Outbox,
    /// Digest of the initiator's bytes, until AUTHENTICATE.
    received: Sha256,
    /// `SLOG`, once our AUTH_CHALLENGE is sent.
    slog: Option<[u8; 32]>,
    /// The initiator's verified CERTS cell, and its RSA modulus.
    peer_certs: Option<(VerifiedInitiator, Box<[u8]>)>,
    /// The AUTHENTICATE body waiting for the exporter value, with `CLOG`.
    pending_auth: Option<(Vec<u8>, [u8; 32])>,
    authenticated: bool,
    info: Option<ChannelInfo>,
}

impl Responder {
    /// Get ready to answer, at `now_unix`, as the relay of `material`. Nothing is sent
    /// before the initiator's VERSIONS cell.
    ///
    /// Fails on a bad configuration: versions outside 3..=5, or keys we cannot make a CERTS
    /// cell from.
    pub fn new<R: CryptoRng + ?Sized>(
        config: ResponderConfig,
        material: &RelaySigningMaterial,
        now_unix: u64,
        rng: &mut R,
    ) -> Result<Self, ChannelError> {
        check_versions(&config.link_versions)?;
        let tls_digest = config.tls.cert_sha256().copied().unwrap_or_default();
        let bundle = material
            .responder_certs(&tls_digest, now_unix, None)
            .map_err(ChannelError::OwnCerts)?;
        let mut certs = Certs::new();
        for (t, body) in bundle.into_certs() {
            certs.push(CertType::new(t), body);
        }
        let mut challenge = [0u8; 32];
        rng.fill_bytes(&mut challenge);
        Ok(Responder {
            versions: config.link_versions,
            tls: config.tls,
            peer_addr: config.peer_addr,
            my_addrs: config.my_addrs,
            sid: *material.rsa_id_sha256(),
            sid_ed: *material.ed_identity(),
            our_modulus: material.rsa_identity_key().as_public_key().n_bytes(),
            certs,
            challenge,
            started_unix: now_unix,
            phase: Phase::Versions,
            failed: None,
            codec: ChannelCodec::unnegotiated(),
            reader: CellReader::default(),
            out: Outbox::default(),
            received: Sha256::new(),
            slog: None,
            peer_certs: None,
            pending_auth: None,
            authenticated: false,
            info: None,
        })
    }

    /// Bytes to send to the initiator, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.take()
    }

    /// Whether the handshake is complete and all its output taken: call
    /// [`Responder::finish`].
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done && self.out.is_empty()
    }

    /// Bytes of an incomplete cell held.
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Process bytes from the initiator, received at `now_unix`. Returns how many were
    /// consumed: all of them, unless the handshake completed (the rest belong to the
    /// [`Channel`]) or an AUTHENTICATE cell now waits for [`Responder::provide_tls_exporter`]
    /// (pass the rest after that). After an error, every call fails with the same error.
    ///
    /// Calling it with bytes while [`Responder::exporter_request`] is pending is a
    /// [`ChannelError::Misuse`].
    pub fn handle_input(&mut self, now_unix: u64, bytes: &[u8]) -> Result<usize, ChannelError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.phase == Phase::Exporter && !bytes.is_empty() {
            return Err(ChannelError::Misuse(
                "provide the TLS exporter value before more input",
            ));
        }
        let r = read_cells(self, now_unix, bytes);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn process(&mut self, now_unix: u64, raw: &[u8]) -> Result<(), ChannelError> {
        let cell = decode_cell(self.codec, raw)?;
        let cmd = cell.msg.cmd();
        let clog = if cmd == ChanCmd::AUTHENTICATE {
            self.received.clone().finalize().into()
        } else {
            self.received.update(raw);
            [0; 32]
        };
        match (self.phase, cell.msg) {
            (_, ChanMsg::Padding(_) | ChanMsg::Vpadding(_) | ChanMsg::Authorize(_)) => {}
            (Phase::Versions, ChanMsg::Versions(v)) => self.answer(now_unix, &v)?,
            (Phase::Initiator, ChanMsg::Certs(c)) => self.initiator_certs(now_unix, &c)?,
            (Phase::Initiator, ChanMsg::Authenticate(a)) => self.authenticate(a, clog)?,
            (Phase::Initiator, ChanMsg::Netinfo(n)) => self.complete(now_unix, &n),
            (phase, _) => {
                return Err(ChannelError::UnexpectedCell {
                    cmd,
                    state: phase.name(),
                });
            }
        }
        Ok(())
    }

    /// The initiator's VERSIONS: answer with VERSIONS, CERTS, AUTH_CHALLENGE, NETINFO.
    fn answer(&mut self, now_unix: u64, v: &Versions) -> Result<(), ChannelError> {
        let version =
            v.best_shared(&self.versions)
                .ok_or_else(|| ChannelError::NoSharedVersion {
                    theirs: v.versions().to_vec(),
                })?;
        let ours = Versions::new(self.versions.clone()).map_err(ChannelError::Encode)?;
        self.send(ChanCell::new(CircId::LINK, ours))?;
        self.codec = ChannelCodec::new(version)
            .ok_or(ChannelError::Misuse("negotiated an unsupported version"))?;
        self.send(ChanCell::new(CircId::LINK, self.certs.clone()))?;
        let methods = match self.tls {
            TlsBinding::Tls { .. } => vec![auth_method::ED25519_SHA256_RFC5705],
            TlsBinding::None => Vec::new(),
        };
        let challenge = AuthChallenge::new(self.challenge, methods);
        self.send(ChanCell::new(CircId::LINK, challenge))?;
        self.slog = Some(self.out.digest());
        let netinfo = Netinfo::new(
            netinfo_time(now_unix),
            netinfo_addr(self.peer_addr),
            self.my_addrs.iter().map(|ip| (*ip).into()).collect(),
        );
        self.send(ChanCell::new(CircId::LINK, netinfo))?;
        self.phase = Phase::Initiator;
        Ok(())
    }

    fn initiator_certs(&mut self, now_unix: u64, c: &Certs) -> Result<(), ChannelError> {
        if self.peer_certs.is_some() {
            return Err(ChannelError::DuplicateCell(ChanCmd::CERTS));
        }
        let list: Vec<(u8, &[u8])> = c
            .certs()
            .iter()
            .map(|(t, b)| (t.get(), b.as_slice()))
            .collect();
        let v = verify_initiator_certs(&list, now_unix, None).map_err(ChannelError::PeerCerts)?;
        // Verified, so the identity certificate is there and parses.
        let body = c
            .cert_body(CertType::RSA_ID)
            .ok_or(ChannelError::PeerCerts(
                crate::certs::CertError::MissingCert(cert_type::RSA_ID_X509),
            ))?;
        let id =
            X509RsaCert::decode(body, cert_type::RSA_ID_X509).map_err(ChannelError::PeerCerts)?;
        self.peer_certs = Some((v, id.public_key().n_bytes()));
        Ok(())
    }

    fn authenticate(&mut self, a: Authenticate, clog: [u8; 32]) -> Result<(), ChannelError> {
        if self.authenticated {
            return Err(ChannelError::DuplicateCell(ChanCmd::AUTHENTICATE));
        }
        let offered = matches!(self.tls, TlsBinding::Tls { .. });
        if !offered || a.auth_type() != AUTH_TYPE_ED25519_SHA256_RFC5705 {
            return Err(ChannelError::UnsupportedAuthType(a.auth_type()));
        }
        if self.peer_certs.is_none() {
            return Err(ChannelError::MissingCell {
                missing: ChanCmd::CERTS,
                cell: ChanCmd::AUTHENTICATE,
            });
        }
        self.pending_auth = Some((a.body().to_vec(), clog));
        self.phase = Phase::Exporter;
        Ok(())
    }

    /// The exporter value the driver must compute before the handshake can go on, if an
    /// AUTHENTICATE cell is waiting for it.
    pub fn exporter_request(&self) -> Option<ExporterRequest> {
        if self.phase != Phase::Exporter || self.failed.is_some() {
            return None;
        }
        self.peer_certs.as_ref().map(|(v, _)| ExporterRequest {
            label: AUTH0003_EXPORTER_LABEL,
            context: v.rsa_id_sha256,
            len: AUTH0003_EXPORTER_LEN,
        })
    }

    /// Give the exporter value of [`Responder::exporter_request`]; checks the AUTHENTICATE
    /// cell. On success the initiator is authenticated and the handshake goes on with the next
    /// input. Fails with [`ChannelError::Authenticate`] if the cell does not verify (then the
    /// handshake is failed), or [`ChannelError::Misuse`] if nothing was requested.
    pub fn provide_tls_exporter(&mut self, tls_exporter: [u8; 32]) -> Result<(), ChannelError> {
        if self.phase != Phase::Exporter || self.failed.is_some() {
            return Err(ChannelError::Misuse("no TLS exporter value was requested"));
        }
        let r = self.check_authenticate(tls_exporter);
        match &r {
            Ok(()) => {
                self.authenticated = true;
                self.phase = Phase::Initiator;
            }
            Err(e) => self.failed = Some(e.clone()),
        }
        r
    }

    fn check_authenticate(&mut self, tlssecrets: [u8; 32]) -> Result<(), ChannelError> {
        let (Some((body, clog)), Some((peer, _)), Some(slog), Some(scert)) = (
            self.pending_auth.take(),
            self.peer_certs.as_ref(),
            self.slog,
            self.tls.cert_sha256(),
        ) else {
            return Err(ChannelError::Misuse("no AUTHENTICATE cell is pending"));
        };
        let fields = Auth0003Fields {
            cid: peer.rsa_id_sha256,
            sid: self.sid,
            cid_ed: *peer.ed_id.as_bytes(),
            sid_ed: *self.sid_ed.as_bytes(),
            slog,
            clog,
            scert: *scert,
            tlssecrets,
        };
        Auth0003::verify(&body, &fields, &peer.link_auth_key)
            .map_err(ChannelError::Authenticate)?;
        Ok(())
    }

    /// The initiator's NETINFO: the handshake is complete.
    fn complete(&mut self, now_unix: u64, n: &Netinfo) {
        let peer = match (&self.peer_certs, self.authenticated) {
            (Some((v, _)), true) => PeerAuth::Authenticated {
                rsa_id: v.rsa_id,
                ed_id: v.ed_id,
            },
            _ => PeerAuth::Unauthenticated,
        };
        self.info = Some(ChannelInfo {
            role: Role::Responder,
            link_version: self.codec.link_version().unwrap_or_default(),
            peer,
            we_authenticated: false,
            peer_netinfo: peer_netinfo(n),
            clock_skew_secs: clock_skew(n.timestamp(), self.started_unix, now_unix),
        });
        self.phase = Phase::Done;
    }

    fn send(&mut self, cell: ChanCell) -> Result<(), ChannelError> {
        self.out.send(self.codec, &cell)
    }

    /// The open channel and what the handshake established. Fails with
    /// [`ChannelError::Misuse`] unless [`Responder::is_done`].
    pub fn finish(self) -> Result<(Channel, ChannelInfo), ChannelError> {
        let Some(info) = self.info.filter(|_| self.out.is_empty()) else {
            return Err(ChannelError::Misuse("handshake not done"));
        };
        let peer_modulus = match info.peer {
            PeerAuth::Authenticated { .. } => self.peer_certs.as_ref().map(|(_, m)| &**m),
            _ => None,
        };
        let range = CircIdRange::for_link(
            info.link_version,
            Role::Responder,
            Some(&self.our_modulus),
            peer_modulus,
        );
        Ok((Channel::new(info.link_version, range)?, info))
    }
}

impl HandshakeSide for Responder {
    type Phase = Phase;

    fn reading_phase(&self) -> Option<Phase> {
        matches!(self.phase, Phase::Versions | Phase::Initiator).then_some(self.phase)
    }

    fn reader(&mut self) -> (&mut CellReader, ChannelCodec) {
        (&mut self.reader, self.codec)
    }

    fn handle_cell(&mut self, now_unix: u64, raw: &[u8]) -> Result<(), ChannelError> {
        self.process(now_unix, raw)
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use proptest::prelude::*;

    use super::*;
    use crate::channel::testutil::*;
    use onion_cell::codec::MAX_CELL_LEN;

    fn responder(tls: TlsBinding) -> Responder {
        let config = ResponderConfig::new(
            tls,
            Some("192.0.2.7".parse().unwrap()),
            vec!["198.51.100.1".parse().unwrap()],
        );
        Responder::new(config, material(1), NOW, &mut rng(10)).unwrap()
    }

    fn tls() -> TlsBinding {
        TlsBinding::Tls {
            responder_cert_sha256: TLS_CERT,
        }
    }

    /// A C tor client's handshake (the VERSIONS and NETINFO of onion-cell's test vectors),
    /// then the first bytes of its CREATE_FAST.
    #[test]
    fn replay_ctor_client() {
        let versions = unhex("0000 07 0006 000300040005");
        let mut netinfo = unhex("00000000 08 00000000 04 04 7F000001 00");
        netinfo.resize(514, 0);
        let mut input = [versions.clone(), netinfo.clone()].concat();
        input.extend(unhex("80000001 05"));
        for chunk in [usize::MAX, 1, 100] {
            let mut r = responder(tls());
            assert_eq!(r.poll_transmit(), None);
            let used = feed(&mut input.as_slice(), chunk, |b| r.handle_input(NOW, b)).unwrap();
            assert_eq!(used, versions.len() + netinfo.len());
            let out = r.poll_transmit().unwrap();
            // VERSIONS with 2-byte circuit IDs, then CERTS with 4-byte ones.
            assert_eq!(&out[..11], &versions[..]);
            assert_eq!(&out[11..16], &[0, 0, 0, 0, 0x81]);
            let (chan, info) = r.finish().unwrap();
            assert_eq!(chan.link_version(), 5);
            assert_eq!(chan.circ_ids().range(), CircIdRange::Low);
            assert_eq!(info.peer, PeerAuth::Unauthenticated);
            assert_eq!(info.clock_skew_secs, None);
            assert_eq!(
                info.peer_netinfo.our_address,
                Some("127.0.0.1".parse().unwrap())
            );
        }
    }

    /// What the responder sends, parsed the way an initiator would.
    #[test]
    fn first_flight_contents() {
        let mut r = responder(tls());
        let versions = unhex("0000 07 0004 00030004");
        assert_eq!(r.handle_input(NOW, &versions), Ok(versions.len()));
        let out = r.poll_transmit().unwrap();
        let unneg = ChannelCodec::unnegotiated();
        let (cell, mut off) = unneg.decode(&out).unwrap().unwrap();
        assert_eq!(
            cell.msg,
            ChanMsg::Versions(Versions::new(vec![3, 4, 5]).unwrap())
        );
        let codec = ChannelCodec::new(4).unwrap();
        let mut cells = Vec::new();
        while let Some((c, n)) = codec.decode(&out[off..]).unwrap() {
            cells.push(c.msg);
            off += n;
        }
        assert_eq!(off, out.len());
        let [
            ChanMsg::Certs(certs),
            ChanMsg::AuthChallenge(challenge),
            ChanMsg::Netinfo(netinfo),
        ] = &cells[..]
        else {
            panic!("unexpected flight {cells:?}");
        };
        let list: Vec<(u8, &[u8])> = certs
            .certs()
            .iter()
            .map(|(t, b)| (t.get(), b.as_slice()))
            .collect();
        let v = crate::certs::verify_responder_certs(&list, &TLS_CERT, NOW, None).unwrap();
        assert_eq!(v.rsa_id, *material(1).rsa_id());
        assert_eq!(challenge.methods(), &[3]);
        assert_ne!(challenge.challenge(), &[0; 32]);
        assert_eq!(u64::from(netinfo.timestamp()), NOW);
        assert_eq!(
            netinfo.other_addr().ip(),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(netinfo.my_addrs().len(), 1);
        // Without TLS, no authentication is offered.
        let mut r = responder(TlsBinding::None);
        r.handle_input(NOW, &versions).unwrap();
        let out = r.poll_transmit().unwrap();
        let mut off = 11;
        let mut methods = None;
        while let Some((c, n)) = codec.decode(&out[off..]).unwrap() {
            if let ChanMsg::AuthChallenge(a) = c.msg {
                methods = Some(a.methods().to_vec());
            }
            off += n;
        }
        assert_eq!(methods, Some(vec![]));
    }

    #[test]
    fn no_shared_version() {
        let mut config = ResponderConfig::new(tls(), None, vec![]);
        config.link_versions = vec![5];
        let mut r = Responder::new(config, material(1), NOW, &mut rng(11)).unwrap();
        assert_eq!(
            r.handle_input(NOW, &unhex("0000 07 0004 00030004")),
            Err(ChannelError::NoSharedVersion { theirs: vec![3, 4] })
        );
        assert_eq!(r.poll_transmit(), None);
        let mut r = responder(tls());
        assert_eq!(
            r.handle_input(NOW, &unhex("0000 07 0000")),
            Err(ChannelError::NoSharedVersion { theirs: vec![] })
        );
    }

    #[test]
    fn out_of_order_initiator_cells() {
        let versions = unhex("0000 07 0002 0004");
        let mut netinfo = unhex("00000000 08 00000000 04 04 7F000001 00");
        netinfo.resize(514, 0);
        let authenticate = unhex("00000000 83 0008 0003 0004 01020304");
        let run = |parts: &[&[u8]]| {
            let mut r = responder(tls());
            r.handle_input(NOW, &parts.concat())
        };
        // A client that skips NETINFO and creates a circuit right away.
        assert_eq!(
            run(&[&versions, &unhex("80000001 05")]),
            Err(ChannelError::UnexpectedCell {
                cmd: ChanCmd::CREATE_FAST,
                state: "before NETINFO"
            })
        );
        // NETINFO first.
        assert_eq!(
            run(&[&netinfo]),
            Err(ChannelError::UnexpectedCell {
                cmd: ChanCmd::new(0),
                state: "before VERSIONS"
            })
        );
        // AUTHENTICATE without CERTS.
        assert_eq!(
            run(&[&versions, &authenticate]),
            Err(ChannelError::MissingCell {
                missing: ChanCmd::CERTS,
                cell: ChanCmd::AUTHENTICATE
            })
        );
        // Another authentication type.
        let rsa_auth = unhex("00000000 83 0008 0001 0004 01020304");
        assert_eq!(
            run(&[&versions, &rsa_auth]),
            Err(ChannelError::UnsupportedAuthType(1))
        );
        // A malformed CERTS cell.
        assert!(matches!(
            run(&[&versions, &unhex("00000000 81 0001 01")]),
            Err(ChannelError::Codec(_))
        ));
        // A CERTS cell that does not verify (here: empty).
        assert_eq!(
            run(&[&versions, &unhex("00000000 81 0001 00")]),
            Err(ChannelError::PeerCerts(
                crate::certs::CertError::MissingCert(2)
            ))
        );
        // AUTHORIZE and VPADDING may come first, then the usual client handshake.
        let authorize = unhex("0000 84 0002 ABCD");
        let vpadding = unhex("0000 80 0001 00");
        let mut r = responder(tls());
        let all = [&authorize[..], &vpadding, &versions, &netinfo].concat();
        assert_eq!(r.handle_input(NOW, &all), Ok(all.len()));
        r.poll_transmit();
        assert!(r.is_done());
        // No exporter value was asked for.
        let mut r = responder(tls());
        assert!(matches!(
            r.provide_tls_exporter([0; 32]),
            Err(ChannelError::Misuse(_))
        ));
    }

    #[test]
    fn junk_is_refused_fast() {
        // An HTTP request is refused once the header of its "cell" is in.
        let mut r = responder(tls());
        assert_eq!(
            r.handle_input(NOW, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(ChannelError::UnexpectedCell {
                cmd: ChanCmd::new(b'T'),
                state: "before VERSIONS"
            })
        );
        assert_eq!(r.buffered(), 3);
        // The TLS ClientHello of a client that does not speak Tor, likewise.
        let mut r = responder(tls());
        assert!(matches!(
            r.handle_input(NOW, &[0x16, 0x03, 0x01, 0x02, 0x00]),
            Err(ChannelError::UnexpectedCell { .. })
        ));
    }

    #[test]
    fn endless_padding_hits_the_limit() {
        let mut r = responder(tls());
        let mut vpadding = unhex("0000 80 FFFF");
        vpadding.resize(5 + 0xffff, 0);
        let mut fed = 0;
        let err = loop {
            match r.handle_input(NOW, &vpadding[..1000]) {
                Ok(n) => {
                    assert_eq!(n, 1000);
                    fed += n;
                }
                Err(e) => break e,
            }
            assert!(r.buffered() <= MAX_CELL_LEN);
            let rest = &vpadding[1000..];
            match r.handle_input(NOW, rest) {
                Ok(n) => {
                    assert_eq!(n, rest.len());
                    fed += n;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(
            err,
            ChannelError::HandshakeTooLong {
                limit: crate::channel::MAX_HANDSHAKE_BYTES
            }
        );
        assert!(fed <= crate::channel::MAX_HANDSHAKE_BYTES);
    }

    proptest! {
        /// Whatever the peer sends, in whatever pieces: no panic, and never more than one
        /// cell buffered.
        #[test]
        fn hostile_input(
            prefix in prop::sample::select(vec![
                vec![],
                hex::decode("00000700020004").unwrap(),
                hex::decode("0000070002000400000000810001").unwrap(),
            ]),
            junk in prop::collection::vec(any::<u8>(), 0..2000),
            chunk in 1usize..600,
        ) {
            let mut r = responder(tls());
            let input = [prefix, junk].concat();
            for piece in input.chunks(chunk) {
                match r.handle_input(NOW, piece) {
                    Ok(n) => prop_assert!(n <= piece.len()),
                    Err(_) => break,
                }
                prop_assert!(r.buffered() <= MAX_CELL_LEN);
            }
        }
    }
}
