//! The initiator's side of the link handshake (tor-spec §4): an OP connecting to its first hop
//! (client mode), or our OR connecting to another relay (relay mode).
//!
//! ```text
//! initiator                                responder
//!   VERSIONS (2-byte circuit IDs)  ->
//!                                  <-  VERSIONS, CERTS, AUTH_CHALLENGE, NETINFO
//!   client mode: NETINFO           ->
//!   relay mode:  CERTS, AUTHENTICATE, NETINFO ->
//! ```
//!
//! The responder's CERTS cell is checked as soon as it arrives, against the TLS certificate
//! ([`TlsBinding`]) and the identity we expect. Relay mode authenticates with AUTH0003
//! (Ed25519-SHA256-RFC5705) if the responder offers it, and otherwise falls back to client
//! mode, as C tor does.

use std::net::IpAddr;

use ed25519_dalek::SigningKey;
use onion_cell::chancell::{ChanCell, ChanCmd, ChanMsg, CircId};
use onion_cell::codec::{ChannelCodec, LINK_VERSIONS};
use onion_cell::link::{
    AuthChallenge, Authenticate, CertType, Certs, Netinfo, Versions, auth_method,
};
use rand_core::CryptoRng;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use signature::Signer;

use super::reader::{CellReader, HandshakePhase, HandshakeSide, Outbox, decode_cell, read_cells};
use super::{
    Channel, ChannelError, ChannelInfo, CircIdRange, PeerAuth, Role, TlsBinding, check_versions,
    clock_skew, netinfo_addr, netinfo_time, peer_netinfo,
};
use crate::certs::link::{
    AUTH_TYPE_ED25519_SHA256_RFC5705, Auth0003, Auth0003Fields, verify_responder_certs,
    verify_responder_certs_unbound,
};
use crate::certs::{
    CertError, Ed25519Identity, ExpectedIdentity, RelaySigningMaterial, VerifiedRelay, X509RsaCert,
    cert_type,
};

/// How an initiator connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatorConfig {
    /// The link protocol versions to offer: a non-empty subset of 3, 4, 5.
    pub link_versions: Vec<u16>,
    /// What binds the handshake to the connection.
    pub tls: TlsBinding,
    /// The identities the responder must prove (from the consensus, the EXTEND2 link
    /// specifiers, or the configuration).
    pub expected: ExpectedIdentity,
    /// The responder's address as we see it, for our NETINFO cell (`None` if unknown, e.g. a
    /// browser over WebSocket).
    pub peer_addr: Option<IpAddr>,
}

impl InitiatorConfig {
    /// Offer link protocols 3, 4 and 5 to a responder that must prove `expected`.
    pub fn new(tls: TlsBinding, expected: ExpectedIdentity, peer_addr: Option<IpAddr>) -> Self {
        InitiatorConfig {
            link_versions: LINK_VERSIONS.to_vec(),
            tls,
            expected,
            peer_addr,
        }
    }
}

/// Relay mode: what an OR needs to authenticate as the initiator.
#[derive(Debug)]
pub struct RelayAuth<'a> {
    /// Our identity keys and certificates.
    pub material: &'a RelaySigningMaterial,
    /// `TLSSECRETS` of AUTH0003: the TLS exporter value of this connection with label
    /// [`AUTH0003_EXPORTER_LABEL`](crate::certs::link::AUTH0003_EXPORTER_LABEL), context
    /// [`RelaySigningMaterial::rsa_id_sha256`] of `material`, length 32.
    pub tls_exporter: [u8; 32],
    /// Our addresses, for our NETINFO cell.
    pub my_addrs: Vec<IpAddr>,
}

/// What relay mode keeps, computed when the initiator is made.
struct OurAuth {
    /// `CID`: SHA-256 of our RSA identity key.
    cid: [u8; 32],
    /// `CID_ED`: our Ed25519 identity.
    cid_ed: Ed25519Identity,
    /// `KS_link_ed`, certified by the SIGNING_V_LINK_AUTH certificate in `certs`.
    link_key: SigningKey,
    /// Our CERTS cell (types 2, 4, 6, 7).
    certs: Certs,
    /// `RAND` of AUTH0003.
    rand: [u8; 24],
    tls_exporter: [u8; 32],
    my_addrs: Vec<IpAddr>,
    /// Our RSA modulus, for link protocol 3 circuit IDs.
    modulus: Box<[u8]>,
}

impl std::fmt::Debug for OurAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OurAuth")
            .field("cid_ed", &self.cid_ed)
            .finish_non_exhaustive()
    }
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the responder's VERSIONS.
    Versions,
    /// Waiting for CERTS.
    Certs,
    /// CERTS verified; AUTH_CHALLENGE (optional) and NETINFO to come.
    Netinfo,
    /// Complete.
    Done,
}

impl HandshakePhase for Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Versions => "before VERSIONS",
            Phase::Certs => "before CERTS",
            Phase::Netinfo => "before NETINFO",
            Phase::Done => "after the handshake",
        }
    }

    /// Whether the responder may send `cmd` now (order and duplicates are checked later).
    fn allows(self, cmd: ChanCmd) -> bool {
        match self {
            Phase::Versions => matches!(cmd, ChanCmd::VERSIONS | ChanCmd::VPADDING),
            Phase::Certs | Phase::Netinfo => matches!(
                cmd,
                ChanCmd::CERTS
                    | ChanCmd::AUTH_CHALLENGE
                    | ChanCmd::NETINFO
                    | ChanCmd::PADDING
                    | ChanCmd::VPADDING
            ),
            Phase::Done => false,
        }
    }
}

/// The initiator's link handshake. See the [module docs](super) for how to drive it.
#[derive(Debug)]
pub struct Initiator {
    versions: Vec<u16>,
    tls: TlsBinding,
    expected: ExpectedIdentity,
    peer_addr: Option<IpAddr>,
    auth: Option<OurAuth>,
    started_unix: u64,

    phase: Phase,
    failed: Option<ChannelError>,
    codec: ChannelCodec,
    reader: CellReader,
    out: Outbox,
    /// Digest of the responder's bytes, until AUTH_CHALLENGE.
    received: Sha256,
    /// `SLOG`, once AUTH_CHALLENGE arrived.
    slog: Option<[u8; 32]>,
    /// Whether AUTH_CHALLENGE offered Ed25519-SHA256-RFC5705.
    offered_auth: bool,
    peer: Option<(VerifiedRelay, Ed25519Identity)>,
    /// The responder's RSA modulus, kept only for link protocol 3.
    peer_modulus: Option<Box<[u8]>>,
    info: Option<ChannelInfo>,
}

impl Initiator {
    /// Start a handshake at `now_unix`: client mode if `relay` is `None`, else relay mode.
    /// Our VERSIONS cell is ready in [`Initiator::poll_transmit`].
    ///
    /// Fails on a bad configuration: versions outside 3..=5, relay mode without a TLS link
    /// (AUTH0003 binds to TLS), or relay keys we cannot make certificates from.
    pub fn new<R: CryptoRng + ?Sized>(
        config: InitiatorConfig,
        relay: Option<RelayAuth<'_>>,
        now_unix: u64,
        rng: &mut R,
    ) -> Result<Self, ChannelError> {
        check_versions(&config.link_versions)?;
        let auth = match relay {
            None => None,
            Some(_) if config.tls == TlsBinding::None => {
                return Err(ChannelError::Misuse(
                    "relay authentication needs a TLS link",
                ));
            }
            Some(r) => Some(Self::our_auth(r, now_unix, rng)?),
        };
        let mut me = Initiator {
            versions: config.link_versions,
            tls: config.tls,
            expected: config.expected,
            peer_addr: config.peer_addr,
            auth,
            started_unix: now_unix,
            phase: Phase::Versions,
            failed: None,
            codec: ChannelCodec::unnegotiated(),
            reader: CellReader::default(),
            out: Outbox::default(),
            received: Sha256::new(),
            slog: None,
            offered_auth: false,
            peer: None,
            peer_modulus: None,
            info: None,
        };
        let versions = Versions::new(me.versions.clone()).map_err(ChannelError::Encode)?;
        me.send(ChanCell::new(CircId::LINK, versions))?;
        Ok(me)
    }

    fn our_auth<R: CryptoRng + ?Sized>(
        r: RelayAuth<'_>,
        now_unix: u64,
        rng: &mut R,
    ) -> Result<OurAuth, ChannelError> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let link_key = SigningKey::from_bytes(&seed);
        let link_id = Ed25519Identity::from(link_key.verifying_key());
        let bundle = r
            .material
            .initiator_certs(&link_id, now_unix, None)
            .map_err(ChannelError::OwnCerts)?;
        let mut certs = Certs::new();
        for (t, body) in bundle.into_certs() {
            certs.push(CertType::new(t), body);
        }
        let mut rand = [0u8; 24];
        rng.fill_bytes(&mut rand);
        Ok(OurAuth {
            cid: *r.material.rsa_id_sha256(),
            cid_ed: *r.material.ed_identity(),
            link_key,
            certs,
            rand,
            tls_exporter: r.tls_exporter,
            my_addrs: r.my_addrs,
            modulus: r.material.rsa_identity_key().as_public_key().n_bytes(),
        })
    }

    /// Bytes to send to the responder, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.take()
    }

    /// Whether the handshake is complete and all its output taken: call
    /// [`Initiator::finish`].
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done && self.out.is_empty()
    }

    /// Bytes of an incomplete cell held.
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Process bytes from the responder, received at `now_unix`. Returns how many were
    /// consumed: all of them, unless the handshake completed, in which case the rest belong to
    /// the [`Channel`]. After an error, every call fails with the same error.
    pub fn handle_input(&mut self, now_unix: u64, bytes: &[u8]) -> Result<usize, ChannelError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = read_cells(self, now_unix, bytes);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn process(&mut self, now_unix: u64, raw: &[u8]) -> Result<(), ChannelError> {
        if self.slog.is_none() {
            self.received.update(raw);
        }
        let cell = decode_cell(self.codec, raw)?;
        let cmd = cell.msg.cmd();
        match (self.phase, cell.msg) {
            (_, ChanMsg::Padding(_) | ChanMsg::Vpadding(_)) => {}
            (Phase::Versions, ChanMsg::Versions(v)) => {
                let version =
                    v.best_shared(&self.versions)
                        .ok_or_else(|| ChannelError::NoSharedVersion {
                            theirs: v.versions().to_vec(),
                        })?;
                self.codec = ChannelCodec::new(version)
                    .ok_or(ChannelError::Misuse("negotiated an unsupported version"))?;
                self.phase = Phase::Certs;
            }
            (Phase::Certs, ChanMsg::Certs(c)) => {
                self.verify_certs(&c, now_unix)?;
                self.phase = Phase::Netinfo;
            }
            (Phase::Certs, _) => {
                return Err(ChannelError::MissingCell {
                    missing: ChanCmd::CERTS,
                    cell: cmd,
                });
            }
            (Phase::Netinfo, ChanMsg::AuthChallenge(a)) => self.challenge(&a)?,
            (Phase::Netinfo, ChanMsg::Netinfo(n)) => self.complete(now_unix, &n)?,
            (Phase::Netinfo, ChanMsg::Certs(_)) => {
                return Err(ChannelError::DuplicateCell(ChanCmd::CERTS));
            }
            (phase, _) => {
                return Err(ChannelError::UnexpectedCell {
                    cmd,
                    state: phase.name(),
                });
            }
        }
        Ok(())
    }

    fn verify_certs(&mut self, c: &Certs, now_unix: u64) -> Result<(), ChannelError> {
        let list: Vec<(u8, &[u8])> = c
            .certs()
            .iter()
            .map(|(t, b)| (t.get(), b.as_slice()))
            .collect();
        let expected = Some(&self.expected);
        let v = match &self.tls {
            TlsBinding::Tls {
                responder_cert_sha256,
            } => verify_responder_certs(&list, responder_cert_sha256, now_unix, expected),
            TlsBinding::None => verify_responder_certs_unbound(&list, now_unix, expected),
        }
        .map_err(ChannelError::PeerCerts)?;
        let ed = v
            .ed_id
            .ok_or(ChannelError::PeerCerts(CertError::MissingCert(
                cert_type::IDENTITY_V_SIGNING,
            )))?;
        if self.codec.link_version() == Some(3)
            && let Some(body) = c.cert_body(CertType::RSA_ID)
        {
            let id = X509RsaCert::decode(body, cert_type::RSA_ID_X509)
                .map_err(ChannelError::PeerCerts)?;
            self.peer_modulus = Some(id.public_key().n_bytes());
        }
        self.peer = Some((v, ed));
        Ok(())
    }

    fn challenge(&mut self, a: &AuthChallenge) -> Result<(), ChannelError> {
        if self.slog.is_some() {
            return Err(ChannelError::DuplicateCell(ChanCmd::AUTH_CHALLENGE));
        }
        self.slog = Some(self.received.clone().finalize().into());
        self.offered_auth = a.methods().contains(&auth_method::ED25519_SHA256_RFC5705);
        Ok(())
    }

    /// The responder's NETINFO arrived: answer, and finish.
    fn complete(&mut self, now_unix: u64, n: &Netinfo) -> Result<(), ChannelError> {
        let (peer, ed) = self.peer.ok_or(ChannelError::MissingCell {
            missing: ChanCmd::CERTS,
            cell: ChanCmd::NETINFO,
        })?;
        let mut we_authenticated = false;
        let scert = self.tls.cert_sha256().copied();
        if let (Some(auth), Some(scert), Some(slog), true) =
            (&self.auth, scert, self.slog, self.offered_auth)
        {
            let certs = ChanCell::new(CircId::LINK, auth.certs.clone());
            let body = {
                self.out.send(self.codec, &certs)?;
                let fields = Auth0003Fields {
                    cid: auth.cid,
                    sid: peer.rsa_id_sha256,
                    cid_ed: *auth.cid_ed.as_bytes(),
                    sid_ed: *ed.as_bytes(),
                    slog,
                    clog: self.out.digest(),
                    scert,
                    tlssecrets: auth.tls_exporter,
                };
                sign_auth0003(fields, auth.rand, &auth.link_key)
            };
            let cell = Authenticate::new(AUTH_TYPE_ED25519_SHA256_RFC5705, body);
            self.out
                .send(self.codec, &ChanCell::new(CircId::LINK, cell))?;
            we_authenticated = true;
        }
        let ours = match &self.auth {
            Some(a) => Netinfo::new(
                netinfo_time(now_unix),
                netinfo_addr(self.peer_addr),
                a.my_addrs.iter().map(|ip| (*ip).into()).collect(),
            ),
            None => Netinfo::new(0, netinfo_addr(self.peer_addr), Vec::new()),
        };
        self.send(ChanCell::new(CircId::LINK, ours))?;

        let link_version = self.codec.link_version().unwrap_or_default();
        let peer_auth = match self.tls {
            TlsBinding::Tls { .. } => PeerAuth::Authenticated {
                rsa_id: peer.rsa_id,
                ed_id: ed,
            },
            TlsBinding::None => PeerAuth::CertifiedNotBound {
                rsa_id: peer.rsa_id,
                ed_id: ed,
            },
        };
        self.info = Some(ChannelInfo {
            role: Role::Initiator,
            link_version,
            peer: peer_auth,
            we_authenticated,
            peer_netinfo: peer_netinfo(n),
            clock_skew_secs: clock_skew(n.timestamp(), self.started_unix, now_unix),
        });
        self.phase = Phase::Done;
        Ok(())
    }

    fn send(&mut self, cell: ChanCell) -> Result<(), ChannelError> {
        self.out.send(self.codec, &cell)
    }

    /// The open channel and what the handshake established. Fails with
    /// [`ChannelError::Misuse`] unless [`Initiator::is_done`].
    pub fn finish(self) -> Result<(Channel, ChannelInfo), ChannelError> {
        let Some(info) = self.info.filter(|_| self.out.is_empty()) else {
            return Err(ChannelError::Misuse("handshake not done"));
        };
        let range = CircIdRange::for_link(
            info.link_version,
            Role::Initiator,
            self.auth.as_ref().map(|a| &*a.modulus),
            self.peer_modulus.as_deref(),
        );
        Ok((Channel::new(info.link_version, range)?, info))
    }
}

/// Sign AUTH0003 `fields` with `RAND` = `rand`: SIG signs everything before it.
fn sign_auth0003(fields: Auth0003Fields, rand: [u8; 24], key: &SigningKey) -> Vec<u8> {
    let mut a = Auth0003 {
        fields,
        rand,
        extra: Vec::new(),
        sig: [0; 64],
    };
    let mut signed = a.encode();
    signed.truncate(signed.len().saturating_sub(a.sig.len()));
    a.sig = key.sign(&signed).to_bytes();
    a.encode()
}

impl HandshakeSide for Initiator {
    type Phase = Phase;

    fn reading_phase(&self) -> Option<Phase> {
        (self.phase != Phase::Done).then_some(self.phase)
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

    use super::*;
    use crate::channel::testutil::*;

    /// A C tor relay's first flight, captured in a chutney network (the cells of
    /// onion-cell's `chancell/testvec.rs`, from Arti's tor-cell and tor-proto tests): VERSIONS,
    /// CERTS (types 1, 2, 4, 5, 7), AUTH_CHALLENGE (methods 1 and 3), NETINFO.
    mod ctor {
        pub(super) const VERSIONS: &str = "0000 07 0006 000300040005";
        pub(super) const CERT1: &str = "3082023A308201A3A003020102020872AB0FE86C771604300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303632373030303030305A170D3231303231363233353935395A301C311A301806035504030C117777772E617775676863646E732E6E657430820122300D06092A864886F70D01010105000382010F003082010A0282010100FE255E99E10BE986DDA5DFB4AD7C39E8EFE4E5D79E105AB976942B6829386EB1D7B7AFB5ED4FCBEC8C1A34C34FD2ED182F8B42A0363453B55EE371F21347235277E2357F28AA10DD82D4248F7D1894AB5D2979654F71C350F73AD9F918D71F34F1505F77EC16391C8340F392F3684BA4BB6A7B022C3954C1158F152F9E3B4E328FAB2E4E881903CA0E32204B0FDA8AB62B6E215A7BDEC3F2AE41DC58EEC1252F643A1812A5D71802F48D6133DF79955E01F0287BB4AB8CF95BEBCD2EC66EF5B38C7B5EC08DED3D6E2A1D57289D773D5CB932803B6D97784D1DA36AE71C073ADBB7393714001CD7A082512772A7076DC01166417AF7C50AEF7F15FD0806EB07FF0203010001300D06092A864886F70D01010B050003818100CDA4E06BB6BB238B91188A077EEB0A4722518090FD116AF6CDEEB0E85CF6D8E242CF861F973A252EB5116709373B5AC817E6F848E2CBD76AEF684350D3416AEE5F33D56B96982509CDAF11CCA7260E5ADF6DDD0D017AE9A575C999ADAE50B3FB7027E810D47C8C5C14618C0AA10D307E304FBE50E868ADECB2C9536E2DB51BE0";
        pub(super) const CERT2: &str = "308201B930820122A0030201020208607C28BE6C390943300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303831303030303030305A170D3231303831303030303030305A301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D30819F300D06092A864886F70D010101050003818D0030818902818100D38B1E6CEB946E0DB0751F4CBACE3DCB9688B6C25304227B4710C35AFB73627E50500F5913E158B621802612D1C75827003703338375237552EB3CD3C12F6AB3604E60C1A2D26BB1FBAD206FF023969A90909D6A65A5458A5312C26EBD3A3DAD30302D4515CDCD264146AC18E6FC60A04BD3EC327F04294D96BA5AA25B464C3F0203010001300D06092A864886F70D01010B0500038181003BCE561EA7F95CC00B78AAB5D69573FF301C282A751D4A651921D042F1BECDBA24D918A6D8A5E138DC07BBA0B335478AE37ABD2C93A93932442AE9084329E846170FE0FC4A50AAFC804F311CC3CA4F41D845A7BA5901CBBC3E021E9794AAC70CE1F37B0A951592DB1B64F2B4AFB81AE52DBD9B6FEDE96A5FB8125EB6251EE50A";
        pub(super) const CERT4: &str = "01040006CC2A01F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B00100200400DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9FF1A5203FA27F86EF7528D89A0845D2520166E340754FFEA2AAE0F612B7CE5DA094A0236CDAC45034B0B6842C18E7F6B51B93A3CF7E60663B8AD061C30A62602";
        pub(super) const CERT5: &str = "01050006C98A03B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8007173E5F8068431D0D3F5EE16B4C9FFD59DF373E152A87281BAE744AA5FCF72171BF4B27C4E8FC1C6A9FC5CA11058BC49647063D7903CFD9F512F89099B27BC0C";
        pub(super) const CERT7: &str = "DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E90006DA3A805CF6006F9179066534DE6B45AD47A5C469063EE462762723396DC9F25452A0A52DA3F5087DD239F2A311F6B0D4DFEFF4ABD089DC3D0237A0ABAB19EB2045B91CDCAF04BE0A72D548A27BF2E77BD876ECFE5E1BE622350DA6BF31F6E306ED896488DD5B39409B23FC3EB7B2C9F7328EB18DA36D54D80575899EA6507CCBFCDF1F";
        pub(super) const AUTH_CHALLENGE: &str = "00000000 82 0026 00DA5C085DEE4F3656710DA3B73652E48ACD5BAE608335FCA3FB6C4DEE104A51 0002 0001 0003";
        /// Padded to 514 bytes when used.
        pub(super) const NETINFO: &str = "00000000 08 5F6F80E1 04 04 7F000001 01 04 04 7F000001";
        /// SHA-256 of the relay's TLS certificate, its identities, and a time when its
        /// certificates were all valid (2020-09-26T18:01:20Z).
        pub(super) const TLS_DIGEST: &str =
            "b4fd606b64e4cbd466b8d76cb131069bae6f3aa1878857c9f624e31d77a799b8";
        pub(super) const ED_ID: &str =
            "dcb604db2034b00fd16986d4adb9d16b21cb4e4457a33dec0f538903683e96e9";
        pub(super) const RSA_ID: &str = "2f1fb49bb332a9eec617e41e911c33fb3890aef3";
        pub(super) const TIME: u64 = 1_601_143_280;
    }

    fn ctor_certs_cell() -> Vec<u8> {
        let mut body = vec![5u8];
        for (t, c) in [
            (1u8, ctor::CERT1),
            (2, ctor::CERT2),
            (4, ctor::CERT4),
            (5, ctor::CERT5),
            (7, ctor::CERT7),
        ] {
            let c = unhex(c);
            body.push(t);
            body.extend((c.len() as u16).to_be_bytes());
            body.extend(c);
        }
        let mut cell = vec![0, 0, 0, 0, 0x81];
        cell.extend((body.len() as u16).to_be_bytes());
        cell.extend(body);
        cell
    }

    /// The C tor relay's whole first flight.
    fn ctor_flight() -> Vec<u8> {
        let mut netinfo = unhex(ctor::NETINFO);
        netinfo.resize(514, 0);
        [
            unhex(ctor::VERSIONS),
            ctor_certs_cell(),
            unhex(ctor::AUTH_CHALLENGE),
            netinfo,
        ]
        .concat()
    }

    fn ctor_config(tls: TlsBinding) -> InitiatorConfig {
        InitiatorConfig::new(
            tls,
            ExpectedIdentity {
                rsa: crate::certs::RsaIdentity::from_hex(ctor::RSA_ID),
                ed25519: Some(Ed25519Identity::from_bytes(
                    unhex(ctor::ED_ID).try_into().unwrap(),
                )),
            },
            Some("127.0.0.1".parse().unwrap()),
        )
    }

    fn ctor_tls() -> TlsBinding {
        TlsBinding::Tls {
            responder_cert_sha256: unhex(ctor::TLS_DIGEST).try_into().unwrap(),
        }
    }

    #[test]
    fn replay_ctor_relay_flight() {
        let flight = ctor_flight();
        for chunk in [usize::MAX, 1, 7, 513] {
            let mut i =
                Initiator::new(ctor_config(ctor_tls()), None, ctor::TIME, &mut rng(1)).unwrap();
            // Our VERSIONS is what C tor sends.
            assert_eq!(i.poll_transmit(), Some(unhex(ctor::VERSIONS)));
            let mut extra = flight.clone();
            extra.extend([0xAB; 3]); // the start of whatever comes next
            let used = feed(&mut extra.as_slice(), chunk, |b| {
                i.handle_input(ctor::TIME, b)
            })
            .unwrap();
            assert_eq!(used, flight.len(), "chunk {chunk}");
            // Our NETINFO is a client's, byte for byte as C tor's client sends it.
            let mut netinfo = unhex("00000000 08 00000000 04 04 7F000001 00");
            netinfo.resize(514, 0);
            assert_eq!(i.poll_transmit(), Some(netinfo));
            assert!(i.is_done());
            let (chan, info) = i.finish().unwrap();
            assert_eq!(chan.link_version(), 5);
            assert_eq!(chan.circ_ids().range(), CircIdRange::High);
            let expected = ctor_config(ctor_tls()).expected;
            assert_eq!(
                info,
                ChannelInfo {
                    role: Role::Initiator,
                    link_version: 5,
                    peer: PeerAuth::Authenticated {
                        rsa_id: expected.rsa.unwrap(),
                        ed_id: expected.ed25519.unwrap(),
                    },
                    we_authenticated: false,
                    peer_netinfo: super::super::PeerNetinfo {
                        timestamp: 0x5F6F80E1,
                        our_address: Some("127.0.0.1".parse().unwrap()),
                        peer_addresses: vec!["127.0.0.1".parse().unwrap()],
                    },
                    // The relay sent its NETINFO 271 s before the certificate time we use.
                    clock_skew_secs: Some(-271),
                }
            );
        }
    }

    #[test]
    fn replay_ctor_failures() {
        let flight = ctor_flight();
        let run = |config: InitiatorConfig, now: u64, bytes: &[u8]| {
            let mut i = Initiator::new(config, None, now, &mut rng(2)).unwrap();
            let r = i.handle_input(now, bytes);
            // Once failed, always failed.
            assert_eq!(i.handle_input(now, &[]), r);
            r
        };
        // Another TLS certificate.
        let other_tls = TlsBinding::Tls {
            responder_cert_sha256: [7; 32],
        };
        assert_eq!(
            run(ctor_config(other_tls), ctor::TIME, &flight),
            Err(ChannelError::PeerCerts(CertError::TlsCertMismatch))
        );
        // ... which does not matter over WebSocket, where the identity is only claimed.
        let mut i =
            Initiator::new(ctor_config(TlsBinding::None), None, ctor::TIME, &mut rng(3)).unwrap();
        assert_eq!(i.handle_input(ctor::TIME, &flight), Ok(flight.len()));
        i.poll_transmit();
        let (_, info) = i.finish().unwrap();
        assert!(matches!(info.peer, PeerAuth::CertifiedNotBound { .. }));
        // Another relay expected.
        let mut config = ctor_config(ctor_tls());
        config.expected.ed25519 = Some(Ed25519Identity::from_bytes([9; 32]));
        assert_eq!(
            run(config, ctor::TIME, &flight),
            Err(ChannelError::PeerCerts(CertError::WrongIdentity("Ed25519")))
        );
        let mut config = ctor_config(ctor_tls());
        config.expected.rsa = Some(crate::certs::RsaIdentity::from_bytes([9; 20]));
        assert_eq!(
            run(config, ctor::TIME, &flight),
            Err(ChannelError::PeerCerts(CertError::WrongIdentity("RSA")))
        );
        // Two years later the certificates have expired.
        assert!(matches!(
            run(
                ctor_config(ctor_tls()),
                ctor::TIME + 2 * 365 * 86400,
                &flight
            ),
            Err(ChannelError::PeerCerts(CertError::Expired { .. }))
        ));
        // A tampered CERTS cell: the last byte is the end of the cross-certificate's RSA
        // signature.
        let mut bad = flight.clone();
        let end = 11 + ctor_certs_cell().len() - 1;
        bad[end] ^= 0x10;
        assert_eq!(
            run(ctor_config(ctor_tls()), ctor::TIME, &bad),
            Err(ChannelError::PeerCerts(CertError::BadSignature(7)))
        );
        // We offer only link protocol 3; so does C tor, but not only 4.
        let mut config = ctor_config(ctor_tls());
        config.link_versions = vec![3];
        let mut i = Initiator::new(config, None, ctor::TIME, &mut rng(4)).unwrap();
        assert_eq!(i.poll_transmit(), Some(unhex("0000 07 0002 0003")));
        // The rest of the flight has 4-byte circuit IDs, so it no longer parses as C tor
        // meant it; the first VERSIONS is enough to see version 3 chosen.
        assert_eq!(i.handle_input(ctor::TIME, &flight[..11]), Ok(11));
        let vers_only_two = unhex("0000 07 0004 00010002");
        assert_eq!(
            run(ctor_config(ctor_tls()), ctor::TIME, &vers_only_two),
            Err(ChannelError::NoSharedVersion { theirs: vec![1, 2] })
        );
    }

    #[test]
    fn out_of_order_responder_cells() {
        let t = ctor::TIME;
        let versions = unhex(ctor::VERSIONS);
        let mut netinfo = unhex(ctor::NETINFO);
        netinfo.resize(514, 0);
        let certs = ctor_certs_cell();
        let challenge = unhex(ctor::AUTH_CHALLENGE);
        let run = |parts: &[&[u8]]| {
            let mut i = Initiator::new(ctor_config(ctor_tls()), None, t, &mut rng(5)).unwrap();
            i.handle_input(t, &parts.concat())
        };
        // NETINFO without CERTS.
        assert_eq!(
            run(&[&versions, &netinfo]),
            Err(ChannelError::MissingCell {
                missing: ChanCmd::CERTS,
                cell: ChanCmd::NETINFO
            })
        );
        // AUTH_CHALLENGE before CERTS.
        assert_eq!(
            run(&[&versions, &challenge, &certs]),
            Err(ChannelError::MissingCell {
                missing: ChanCmd::CERTS,
                cell: ChanCmd::AUTH_CHALLENGE
            })
        );
        // CERTS or AUTH_CHALLENGE twice.
        assert_eq!(
            run(&[&versions, &certs, &certs]),
            Err(ChannelError::DuplicateCell(ChanCmd::CERTS))
        );
        assert_eq!(
            run(&[&versions, &certs, &challenge, &challenge]),
            Err(ChannelError::DuplicateCell(ChanCmd::AUTH_CHALLENGE))
        );
        // A circuit cell instead of NETINFO: refused as soon as its header is in.
        let created = unhex("80000001 0b");
        assert_eq!(
            run(&[&versions, &certs, &challenge, &created]),
            Err(ChannelError::UnexpectedCell {
                cmd: ChanCmd::CREATED2,
                state: "before NETINFO"
            })
        );
        // Anything but VERSIONS first; VERSIONS again.
        assert_eq!(
            run(&[&certs]),
            Err(ChannelError::UnexpectedCell {
                cmd: ChanCmd::new(0),
                state: "before VERSIONS"
            })
        );
        // (with 4-byte circuit IDs, its bytes read as circuit 0x700, command 6)
        assert_eq!(
            run(&[&versions, &versions]),
            Err(ChannelError::UnexpectedCell {
                cmd: ChanCmd::CREATED_FAST,
                state: "before CERTS"
            })
        );
        // Padding anywhere is fine: VPADDING before VERSIONS (2-byte IDs), PADDING and
        // VPADDING later.
        let vpad2 = unhex("0000 80 0003 FFFFFF");
        let vpad4 = unhex("00000000 80 0000");
        let mut pad4 = vec![0, 0, 0, 0, 0];
        pad4.resize(514, 0xee);
        let all = [
            &vpad2[..],
            &versions,
            &vpad4,
            &certs,
            &pad4,
            &challenge,
            &vpad4,
            &netinfo,
        ]
        .concat();
        let mut i = Initiator::new(ctor_config(ctor_tls()), None, t, &mut rng(6)).unwrap();
        assert_eq!(i.handle_input(t, &all), Ok(all.len()));
        i.poll_transmit();
        assert!(i.is_done());
        // A cell with a nonzero circuit ID where ID 0 is required.
        let bad_id = unhex("00000001 81 0001 00");
        assert_eq!(
            run(&[&versions, &bad_id]),
            Err(ChannelError::BadCircId {
                cmd: ChanCmd::CERTS,
                circ_id: CircId::new(1)
            })
        );
    }

    proptest::proptest! {
        /// Whatever the responder sends, in whatever pieces: no panic, never more than one
        /// cell buffered, and nothing consumed after an error.
        #[test]
        fn hostile_input(
            valid_prefix in 0usize..4000,
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            chunk in 1usize..600,
        ) {
            let flight = ctor_flight();
            let input = [&flight[..valid_prefix.min(flight.len())], &junk].concat();
            let mut i =
                Initiator::new(ctor_config(ctor_tls()), None, ctor::TIME, &mut rng(8)).unwrap();
            for piece in input.chunks(chunk) {
                match i.handle_input(ctor::TIME, piece) {
                    Ok(n) => proptest::prop_assert!(n <= piece.len()),
                    Err(e) => {
                        proptest::prop_assert_eq!(i.handle_input(ctor::TIME, piece), Err(e));
                        break;
                    }
                }
                proptest::prop_assert!(i.buffered() <= onion_cell::codec::MAX_CELL_LEN);
            }
        }
    }

    #[test]
    fn bad_configurations() {
        let mut config = ctor_config(ctor_tls());
        config.link_versions = vec![2, 3];
        assert!(matches!(
            Initiator::new(config, None, 0, &mut rng(7)),
            Err(ChannelError::Misuse(_))
        ));
        let mut config = ctor_config(ctor_tls());
        config.link_versions = vec![];
        assert!(matches!(
            Initiator::new(config, None, 0, &mut rng(7)),
            Err(ChannelError::Misuse(_))
        ));
        let relay = RelayAuth {
            material: material(0),
            tls_exporter: [0; 32],
            my_addrs: vec![],
        };
        assert!(matches!(
            Initiator::new(ctor_config(TlsBinding::None), Some(relay), NOW, &mut rng(7)),
            Err(ChannelError::Misuse(_))
        ));
        // Not done yet.
        let i = Initiator::new(ctor_config(ctor_tls()), None, 0, &mut rng(7)).unwrap();
        assert!(!i.is_done());
        assert!(matches!(i.finish(), Err(ChannelError::Misuse(_))));
    }
}
