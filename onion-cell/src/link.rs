//! Bodies of the link handshake messages (tor-spec §4): VERSIONS, CERTS, AUTH_CHALLENGE,
//! AUTHENTICATE, NETINFO and AUTHORIZE.
//!
//! These are wire formats only. Checking certificates (including duplicate certificate
//! types), building or verifying the AUTH0003 authentication, and choosing what to send are
//! done by `onion-core`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bytes::{
    DecodeError, DecodeResult, EncodeError, EncodeResult, Readable, Reader, Writeable, Writer,
    write_u8_prefixed, write_u16_prefixed,
};
use crate::chancell::open_u8;

/// Link authentication methods: the values of AUTH_CHALLENGE's methods and of AUTHENTICATE's
/// AuthType (tor-spec §4.4).
pub mod auth_method {
    /// RSA-SHA256-TLSSecret (tor-spec §4.4.1); obsolete.
    pub const RSA_SHA256_TLSSECRET: u16 = 1;
    /// Ed25519-SHA256-RFC5705 (tor-spec §4.4.2), the only method tor 0.4.9 offers.
    pub const ED25519_SHA256_RFC5705: u16 = 3;
}

/// VERSIONS (7): the link protocol versions a party supports (tor-spec §4.1).
///
/// The payload is a list of big-endian `u16`; it must not contain anything else, so an odd
/// payload length is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    versions: Vec<u16>,
}

impl Versions {
    /// The most versions a variable-length cell can carry.
    pub const MAX_VERSIONS: usize = u16::MAX as usize / 2;

    /// A VERSIONS cell listing `versions` in the given order; fails if there are more than
    /// [`Versions::MAX_VERSIONS`].
    pub fn new(versions: Vec<u16>) -> EncodeResult<Self> {
        if versions.len() > Self::MAX_VERSIONS {
            return Err(EncodeError::TooLong {
                what: "VERSIONS list",
                len: versions.len(),
                max: Self::MAX_VERSIONS,
            });
        }
        Ok(Versions { versions })
    }

    /// The versions, in the order they were listed.
    pub fn versions(&self) -> &[u16] {
        &self.versions
    }

    /// The link protocol to use: the highest version both in this (the peer's) list and in
    /// `ours` (tor-spec §4.1). `None` means there is none and the link must be closed.
    pub fn best_shared(&self, ours: &[u16]) -> Option<u16> {
        self.versions
            .iter()
            .copied()
            .filter(|v| ours.contains(v))
            .max()
    }
}

impl Readable for Versions {
    /// Takes the whole rest of the payload; fails with [`DecodeError::BadLength`]
    /// (`"VERSIONS payload"`) if its length is odd or longer than a cell allows.
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        if !r.remaining().is_multiple_of(2) || r.remaining() > usize::from(u16::MAX) {
            return Err(DecodeError::BadLength {
                what: "VERSIONS payload",
                len: r.remaining(),
            });
        }
        let mut versions = Vec::with_capacity(r.remaining() / 2);
        while r.remaining() > 0 {
            versions.push(r.take_u16()?);
        }
        Ok(Versions { versions })
    }
}

impl Writeable for Versions {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        for v in &self.versions {
            w.write_u16(*v);
        }
        Ok(())
    }
}

/// An address in a NETINFO cell (tor-spec §4.5).
///
/// An address whose type is unknown, or whose length is wrong for its type ("the provided
/// address should be ignored"), is kept as [`NetinfoAddr::Unrecognized`] so it re-encodes
/// unchanged. Building `Unrecognized` with type 4 and 4 bytes (or 6 and 16) is allowed but
/// decodes back as an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetinfoAddr {
    /// ATYPE 4, ALEN 4.
    Ipv4(Ipv4Addr),
    /// ATYPE 6, ALEN 16.
    Ipv6(Ipv6Addr),
    /// Any other type, or a known type with the wrong length.
    Unrecognized {
        /// ATYPE.
        atype: u8,
        /// AVAL (its length is ALEN, at most 255).
        value: Vec<u8>,
    },
}

impl NetinfoAddr {
    /// ATYPE of an IPv4 address.
    pub const TYPE_IPV4: u8 = 4;
    /// ATYPE of an IPv6 address.
    pub const TYPE_IPV6: u8 = 6;

    /// The IP address, if this is a well-formed IPv4 or IPv6 address.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            NetinfoAddr::Ipv4(a) => Some(IpAddr::V4(*a)),
            NetinfoAddr::Ipv6(a) => Some(IpAddr::V6(*a)),
            NetinfoAddr::Unrecognized { .. } => None,
        }
    }
}

impl From<IpAddr> for NetinfoAddr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => NetinfoAddr::Ipv4(a),
            IpAddr::V6(a) => NetinfoAddr::Ipv6(a),
        }
    }
}

impl Readable for NetinfoAddr {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let atype = r.take_u8()?;
        let alen = usize::from(r.take_u8()?);
        let value = r.take(alen)?;
        Ok(match (atype, value) {
            (Self::TYPE_IPV4, v) => match <[u8; 4]>::try_from(v) {
                Ok(a) => NetinfoAddr::Ipv4(a.into()),
                Err(_) => NetinfoAddr::Unrecognized {
                    atype,
                    value: v.to_vec(),
                },
            },
            (Self::TYPE_IPV6, v) => match <[u8; 16]>::try_from(v) {
                Ok(a) => NetinfoAddr::Ipv6(a.into()),
                Err(_) => NetinfoAddr::Unrecognized {
                    atype,
                    value: v.to_vec(),
                },
            },
            (_, v) => NetinfoAddr::Unrecognized {
                atype,
                value: v.to_vec(),
            },
        })
    }
}

impl Writeable for NetinfoAddr {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        match self {
            NetinfoAddr::Ipv4(a) => {
                w.write_u8(Self::TYPE_IPV4);
                write_u8_prefixed(w, "NETINFO address", &a.octets())
            }
            NetinfoAddr::Ipv6(a) => {
                w.write_u8(Self::TYPE_IPV6);
                write_u8_prefixed(w, "NETINFO address", &a.octets())
            }
            NetinfoAddr::Unrecognized { atype, value } => {
                w.write_u8(*atype);
                write_u8_prefixed(w, "NETINFO address", value)
            }
        }
    }
}

/// NETINFO (8): a timestamp, the address the sender sees for its peer, and the sender's own
/// addresses (tor-spec §4.5). Bytes after the last address are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netinfo {
    timestamp: u32,
    other_addr: NetinfoAddr,
    my_addrs: Vec<NetinfoAddr>,
}

impl Netinfo {
    /// A NETINFO cell. At most 255 `my_addrs` can be encoded, and the whole must fit in a
    /// fixed cell; both are checked when encoding.
    pub fn new(timestamp: u32, other_addr: NetinfoAddr, my_addrs: Vec<NetinfoAddr>) -> Self {
        Netinfo {
            timestamp,
            other_addr,
            my_addrs,
        }
    }

    /// A client's NETINFO: timestamp 0 (tor-spec §4.5, to avoid fingerprinting), the peer's
    /// address, and no addresses of its own.
    pub fn for_client(other_addr: IpAddr) -> Self {
        Self::new(0, other_addr.into(), Vec::new())
    }

    /// Seconds since the Unix epoch, as the sender claims (0 from clients).
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The address the sender sees for the receiver (OTHERADDR).
    pub fn other_addr(&self) -> &NetinfoAddr {
        &self.other_addr
    }

    /// The sender's own addresses.
    pub fn my_addrs(&self) -> &[NetinfoAddr] {
        &self.my_addrs
    }
}

impl Readable for Netinfo {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let timestamp = r.take_u32()?;
        let other_addr = r.extract()?;
        let n = r.take_u8()?;
        let my_addrs = (0..n)
            .map(|_| r.extract())
            .collect::<DecodeResult<Vec<NetinfoAddr>>>()?;
        Ok(Netinfo {
            timestamp,
            other_addr,
            my_addrs,
        })
    }
}

impl Writeable for Netinfo {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        let n = u8::try_from(self.my_addrs.len()).map_err(|_| EncodeError::TooLong {
            what: "NETINFO address list",
            len: self.my_addrs.len(),
            max: u8::MAX.into(),
        })?;
        w.write_u32(self.timestamp);
        w.write(&self.other_addr)?;
        w.write_u8(n);
        for a in &self.my_addrs {
            w.write(a)?;
        }
        Ok(())
    }
}

open_u8! {
    /// A certificate type in a CERTS cell (tor-spec §4.2, cert-spec appendix A.1). Open:
    /// unknown types are kept.
    pub struct CertType {
        /// Link key certificate certified by the RSA1024 identity (X.509).
        RSA_LINK = 1,
        /// RSA1024 identity certificate, self-signed (X.509).
        RSA_ID = 2,
        /// RSA1024 AUTHENTICATE cell link certificate, signed with the RSA1024 identity key
        /// (X.509).
        RSA_AUTH = 3,
        /// Ed25519 signing key, signed with the Ed25519 identity key (cert-spec).
        ED_ID_SIGNING = 4,
        /// TLS link certificate, signed with the Ed25519 signing key (cert-spec).
        ED_SIGNING_LINK = 5,
        /// Ed25519 AUTHENTICATE cell key, signed with the Ed25519 signing key (cert-spec).
        ED_SIGNING_AUTH = 6,
        /// Ed25519 identity, signed with the RSA identity (cert-spec §2.3 cross-certificate).
        RSA_ED_CROSSCERT = 7,
    }
}

/// CERTS (129): the certificates a party presents (tor-spec §4.2).
///
/// The list is kept raw and in order. The spec allows at most one certificate of each type;
/// enforcing that (and everything else about the certificates) is the verifier's job, so
/// duplicates decode fine. Bytes after the last certificate are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Certs {
    certs: Vec<(CertType, Vec<u8>)>,
}

impl Certs {
    /// An empty CERTS cell.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a certificate. At most 255 certificates of at most 65535 bytes each can be
    /// encoded, and the whole must fit in a variable-length cell; checked when encoding.
    pub fn push(&mut self, cert_type: CertType, body: Vec<u8>) {
        self.certs.push((cert_type, body));
    }

    /// The certificates, in cell order.
    pub fn certs(&self) -> &[(CertType, Vec<u8>)] {
        &self.certs
    }

    /// The body of the first certificate of type `cert_type`, if any.
    pub fn cert_body(&self, cert_type: CertType) -> Option<&[u8]> {
        self.certs
            .iter()
            .find(|(t, _)| *t == cert_type)
            .map(|(_, b)| b.as_slice())
    }
}

impl Readable for Certs {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let n = r.take_u8()?;
        let certs = (0..n)
            .map(|_| {
                let cert_type = CertType::new(r.take_u8()?);
                let clen = usize::from(r.take_u16()?);
                Ok((cert_type, r.take(clen)?.to_vec()))
            })
            .collect::<DecodeResult<Vec<_>>>()?;
        Ok(Certs { certs })
    }
}

impl Writeable for Certs {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        let n = u8::try_from(self.certs.len()).map_err(|_| EncodeError::TooLong {
            what: "CERTS list",
            len: self.certs.len(),
            max: u8::MAX.into(),
        })?;
        w.write_u8(n);
        for (t, body) in &self.certs {
            w.write_u8(t.get());
            write_u16_prefixed(w, "CERTS certificate", body)?;
        }
        Ok(())
    }
}

/// AUTH_CHALLENGE (130): the responder's challenge and the authentication methods it
/// accepts (tor-spec §4.3). Bytes after the methods are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChallenge {
    challenge: [u8; 32],
    methods: Vec<u16>,
}

impl AuthChallenge {
    /// Length of the challenge.
    pub const CHALLENGE_LEN: usize = 32;

    /// An AUTH_CHALLENGE cell. The methods must fit in a variable-length cell; checked when
    /// encoding.
    pub fn new(challenge: [u8; Self::CHALLENGE_LEN], methods: Vec<u16>) -> Self {
        AuthChallenge { challenge, methods }
    }

    /// The random challenge.
    pub fn challenge(&self) -> &[u8; Self::CHALLENGE_LEN] {
        &self.challenge
    }

    /// The accepted methods (see [`auth_method`]), in cell order.
    pub fn methods(&self) -> &[u16] {
        &self.methods
    }
}

impl Readable for AuthChallenge {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let challenge = r.take_array()?;
        let n = r.take_u16()?;
        let methods = (0..n)
            .map(|_| r.take_u16())
            .collect::<DecodeResult<Vec<u16>>>()?;
        Ok(AuthChallenge { challenge, methods })
    }
}

impl Writeable for AuthChallenge {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        let n = u16::try_from(self.methods.len()).map_err(|_| EncodeError::TooLong {
            what: "AUTH_CHALLENGE methods",
            len: self.methods.len(),
            max: u16::MAX.into(),
        })?;
        w.write_all(&self.challenge);
        w.write_u16(n);
        for m in &self.methods {
            w.write_u16(*m);
        }
        Ok(())
    }
}

/// AUTHENTICATE (131): the initiator's authentication (tor-spec §4.4). The authentication
/// field is kept raw; its AUTH0003 structure is built and checked by `onion-core`. Bytes
/// after it are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    auth_type: u16,
    body: Vec<u8>,
}

impl Authenticate {
    /// An AUTHENTICATE cell of type `auth_type` (see [`auth_method`]). The body must fit in
    /// a variable-length cell; checked when encoding.
    pub fn new(auth_type: u16, body: Vec<u8>) -> Self {
        Authenticate { auth_type, body }
    }

    /// AuthType.
    pub fn auth_type(&self) -> u16 {
        self.auth_type
    }

    /// The Authentication field.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl Readable for Authenticate {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let auth_type = r.take_u16()?;
        let len = usize::from(r.take_u16()?);
        let body = r.take(len)?.to_vec();
        Ok(Authenticate { auth_type, body })
    }
}

impl Writeable for Authenticate {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_u16(self.auth_type);
        write_u16_prefixed(w, "AUTHENTICATE body", &self.body)
    }
}

/// AUTHORIZE (132): reserved for scanning resistance; its payload is unspecified and kept
/// raw (tor-spec §3, §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorize {
    body: Vec<u8>,
}

impl Authorize {
    /// An AUTHORIZE cell with payload `body`.
    pub fn new(body: Vec<u8>) -> Self {
        Authorize { body }
    }

    /// The payload.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl Readable for Authorize {
    /// Takes the whole rest of the payload.
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Authorize::new(r.take_rest().to_vec()))
    }
}

impl Writeable for Authorize {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_all(&self.body);
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use proptest::prelude::*;

    use super::*;
    use crate::chancell::arb;

    #[test]
    fn versions_parse_and_negotiate() {
        let v = Versions::from_bytes(&hex::decode("000300040005").unwrap()).unwrap();
        assert_eq!(v.versions(), &[3, 4, 5]);
        assert_eq!(v.best_shared(&[3, 4, 5]), Some(5));
        assert_eq!(v.best_shared(&[4, 3]), Some(4));
        assert_eq!(v.best_shared(&[1, 2, 6]), None);
        assert_eq!(v.best_shared(&[]), None);
        // The order of either list does not matter.
        let v = Versions::new(vec![5, 3, 9]).unwrap();
        assert_eq!(v.best_shared(&[9, 3]), Some(9));
        assert_eq!(v.to_bytes().unwrap(), [0, 5, 0, 3, 0, 9]);
        assert_eq!(Versions::from_bytes(&[]).unwrap().versions(), &[] as &[u16]);
    }

    #[test]
    fn versions_reject_odd_length() {
        assert_eq!(
            Versions::from_bytes(&[0, 3, 0]),
            Err(DecodeError::BadLength {
                what: "VERSIONS payload",
                len: 3
            })
        );
        assert!(matches!(
            Versions::new(vec![3; Versions::MAX_VERSIONS + 1]),
            Err(EncodeError::TooLong { .. })
        ));
    }

    #[test]
    fn netinfo_addresses() {
        // tor-spec §4.5: a wrong ALEN for a known ATYPE means "ignore the address"; unknown
        // types likewise. Both are kept raw, and the rest of the cell still parses.
        let n = Netinfo::from_bytes(
            &hex::decode(
                concat!(
                    "5F6F859C",
                    "06 09 000000000000000000",
                    "03",
                    "04 06 7F0000010000",
                    "BB 02 FFFF",
                    "06 10 00000000000000000000000000000001",
                )
                .replace(' ', ""),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(n.timestamp(), 0x5f6f859c);
        assert_eq!(n.other_addr().ip(), None);
        let ips: Vec<_> = n.my_addrs().iter().map(NetinfoAddr::ip).collect();
        assert_eq!(ips, [None, None, Some("::1".parse().unwrap())]);
        assert_eq!(
            n.my_addrs()[1],
            NetinfoAddr::Unrecognized {
                atype: 0xbb,
                value: vec![0xff, 0xff]
            }
        );
        assert_eq!(
            hex::encode(n.to_bytes().unwrap()),
            "5f6f859c0609000000000000000000030406\
             7f0000010000bb02ffff061000000000000000000000000000000001"
        );
    }

    #[test]
    fn netinfo_for_client() {
        let n = Netinfo::for_client("127.0.0.1".parse().unwrap());
        assert_eq!(
            hex::encode(n.to_bytes().unwrap()),
            concat!("00000000", "04047f000001", "00")
        );
    }

    #[test]
    fn netinfo_truncated_address() {
        // ALEN 4 but only two bytes of the address.
        assert_eq!(
            Netinfo::from_bytes(&hex::decode("00000000 0404 7F00".replace(' ', "")).unwrap()),
            Err(DecodeError::Truncated { needed: 2 })
        );
        // Two addresses announced, one present.
        assert_eq!(
            Netinfo::from_bytes(
                &hex::decode("00000000 0404 7F000001 02 0404 7F000001".replace(' ', "")).unwrap()
            ),
            Err(DecodeError::Truncated { needed: 1 })
        );
    }

    #[test]
    fn netinfo_encode_limits() {
        let a = NetinfoAddr::Ipv4(Ipv4Addr::LOCALHOST);
        let n = Netinfo::new(0, a.clone(), vec![a; 256]);
        assert!(matches!(
            n.to_bytes(),
            Err(EncodeError::TooLong { len: 256, .. })
        ));
        let bad = NetinfoAddr::Unrecognized {
            atype: 9,
            value: vec![0; 256],
        };
        assert!(matches!(
            bad.to_bytes(),
            Err(EncodeError::TooLong { len: 256, .. })
        ));
    }

    #[test]
    fn certs_n_larger_than_entries() {
        // Three certificates announced, two present.
        let b = hex::decode("03 01 0002 AABB 02 0001 CC".replace(' ', "")).unwrap();
        assert_eq!(
            Certs::from_bytes(&b),
            Err(DecodeError::Truncated { needed: 1 })
        );
        // A certificate whose CLEN runs past the end.
        let b = hex::decode("01 04 0010 AABB".replace(' ', "")).unwrap();
        assert_eq!(
            Certs::from_bytes(&b),
            Err(DecodeError::Truncated { needed: 14 })
        );
    }

    #[test]
    fn certs_keep_duplicates_and_ignore_trailing() {
        let b = hex::decode("02 04 0001 AA 04 0001 BB FFFF".replace(' ', "")).unwrap();
        let mut r = Reader::new(&b);
        let c: Certs = r.extract().unwrap();
        assert_eq!(r.remaining(), 2);
        assert_eq!(c.certs().len(), 2);
        assert_eq!(c.cert_body(CertType::ED_ID_SIGNING), Some(&[0xaa][..]));
        assert_eq!(c.cert_body(CertType::RSA_ID), None);
        assert_eq!(CertType::RSA_ED_CROSSCERT.get(), 7);
        assert_eq!(CertType::new(5).to_string(), "ED_SIGNING_LINK");
    }

    #[test]
    fn certs_encode_limits() {
        let mut c = Certs::new();
        c.push(CertType::RSA_ID, vec![0; 65536]);
        assert!(matches!(
            c.to_bytes(),
            Err(EncodeError::TooLong { len: 65536, .. })
        ));
        let mut c = Certs::new();
        for _ in 0..256 {
            c.push(CertType::RSA_ID, vec![]);
        }
        assert!(matches!(
            c.to_bytes(),
            Err(EncodeError::TooLong { len: 256, .. })
        ));
    }

    #[test]
    fn auth_challenge_and_authenticate() {
        let b = [[7u8; 32].as_slice(), &[0, 2, 0, 1, 0, 3, 0xee]].concat();
        let mut r = Reader::new(&b);
        let a: AuthChallenge = r.extract().unwrap();
        assert_eq!(r.remaining(), 1); // ignored by ChanMsg::decode
        assert_eq!(a.challenge(), &[7; 32]);
        assert_eq!(
            a.methods(),
            &[
                auth_method::RSA_SHA256_TLSSECRET,
                auth_method::ED25519_SHA256_RFC5705
            ]
        );
        // N_Methods larger than the methods present.
        let b = [[7u8; 32].as_slice(), &[0, 3, 0, 1, 0, 3]].concat();
        assert_eq!(
            AuthChallenge::from_bytes(&b),
            Err(DecodeError::Truncated { needed: 2 })
        );

        let a = Authenticate::from_bytes(&[0, 3, 0, 2, 0xab, 0xcd]).unwrap();
        assert_eq!(a.auth_type(), auth_method::ED25519_SHA256_RFC5705);
        assert_eq!(a.body(), &[0xab, 0xcd]);
        assert_eq!(
            Authenticate::from_bytes(&[0, 3, 0, 3, 0xab, 0xcd]),
            Err(DecodeError::Truncated { needed: 1 })
        );
        assert_eq!(
            Authorize::from_bytes(&[1, 2, 3]).unwrap().body(),
            &[1, 2, 3]
        );
    }

    proptest! {
        #[test]
        fn netinfo_addr_round_trip(a in arb::netinfo_addr()) {
            let b = a.to_bytes().unwrap();
            prop_assert_eq!(NetinfoAddr::from_bytes(&b), Ok(a));
        }
    }
}
