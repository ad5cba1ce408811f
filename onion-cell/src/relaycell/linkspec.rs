//! Link specifiers: how EXTEND2 names the next relay (tor-spec §5.1.2).
//!
//! Each specifier is `LSTYPE [1 byte] | LSLEN [1 byte] | LSPEC [LSLEN bytes]`:
//!
//! | type | meaning | LSPEC |
//! |---|---|---|
//! | 0 | TLS-over-TCP, IPv4 | address (4) + ORPort (2) |
//! | 1 | TLS-over-TCP, IPv6 | address (16) + ORPort (2) |
//! | 2 | legacy identity | SHA-1 of the RSA identity key (20) |
//! | 3 | Ed25519 identity | Ed25519 identity key (32) |
//!
//! A known type with the wrong LSLEN is rejected ([`DecodeError::BadLength`] naming the type).
//!
//! # Unknown specifiers
//!
//! Any other type decodes as [`LinkSpec::Unrecognized`], keeping its type and raw bytes, and
//! re-encodes byte for byte. tor-spec §5.1.2 says nodes "MUST ignore unrecognized specifiers":
//! an OR handling EXTEND2 must neither reject the cell because of them nor use them to choose
//! a connection, but wherever it passes a specifier list on (re-encoding it toward another
//! party), it forwards the unknown ones raw, unchanged and in their original order. Nodes
//! SHOULD reject lists carrying more than one legacy or more than one Ed25519 identity:
//! [`check_identities`] does that, and [`Extend2`](super::Extend2) applies it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::bytes::{
    DecodeError, DecodeResult, EncodeError, EncodeResult, Readable, Reader, Writeable, Writer,
    write_u8_prefixed,
};

/// Length of a legacy (RSA) identity: a SHA-1 digest.
pub const RSA_ID_LEN: usize = 20;
/// Length of an Ed25519 identity key.
pub const ED25519_ID_LEN: usize = 32;

/// A link specifier type (`LSTYPE`). Open: any byte value is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkSpecType(pub u8);

impl LinkSpecType {
    /// TLS-over-TCP, IPv4 address and ORPort.
    pub const IPV4: Self = Self(0);
    /// TLS-over-TCP, IPv6 address and ORPort.
    pub const IPV6: Self = Self(1);
    /// Legacy identity: SHA-1 of the relay's RSA identity key.
    pub const RSA_ID: Self = Self(2);
    /// Ed25519 identity key.
    pub const ED25519_ID: Self = Self(3);

    /// The exact `LSLEN` a known type requires, or `None` for an unknown type.
    pub fn expected_len(self) -> Option<usize> {
        match self {
            Self::IPV4 => Some(4 + 2),
            Self::IPV6 => Some(16 + 2),
            Self::RSA_ID => Some(RSA_ID_LEN),
            Self::ED25519_ID => Some(ED25519_ID_LEN),
            _ => None,
        }
    }

    /// Whether this crate understands the type.
    pub fn is_known(self) -> bool {
        self.expected_len().is_some()
    }
}

impl fmt::Display for LinkSpecType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::IPV4 => f.write_str("IPv4"),
            Self::IPV6 => f.write_str("IPv6"),
            Self::RSA_ID => f.write_str("RSA identity"),
            Self::ED25519_ID => f.write_str("Ed25519 identity"),
            Self(n) => write!(f, "link specifier type {n}"),
        }
    }
}

/// One link specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSpec {
    /// TLS-over-TCP to an IPv4 address (type 0).
    Ipv4 {
        /// The relay's IPv4 address.
        addr: Ipv4Addr,
        /// Its ORPort.
        port: u16,
    },
    /// TLS-over-TCP to an IPv6 address (type 1).
    Ipv6 {
        /// The relay's IPv6 address.
        addr: Ipv6Addr,
        /// Its ORPort.
        port: u16,
    },
    /// Legacy identity (type 2): SHA-1 of the PKCS#1 DER encoding of the RSA identity key.
    RsaId([u8; RSA_ID_LEN]),
    /// Ed25519 identity key (type 3).
    Ed25519Id([u8; ED25519_ID_LEN]),
    /// A type this crate does not know, kept raw so that it can be forwarded unchanged.
    ///
    /// Encoding fails if `lstype` is a known type (its body would not decode back to this
    /// variant) or if `body` is longer than 255 bytes.
    Unrecognized {
        /// The specifier type (never a known one).
        lstype: LinkSpecType,
        /// The raw `LSPEC` bytes.
        body: Vec<u8>,
    },
}

impl LinkSpec {
    /// This specifier's type.
    pub fn lstype(&self) -> LinkSpecType {
        match self {
            LinkSpec::Ipv4 { .. } => LinkSpecType::IPV4,
            LinkSpec::Ipv6 { .. } => LinkSpecType::IPV6,
            LinkSpec::RsaId(_) => LinkSpecType::RSA_ID,
            LinkSpec::Ed25519Id(_) => LinkSpecType::ED25519_ID,
            LinkSpec::Unrecognized { lstype, .. } => *lstype,
        }
    }

    /// Decode the body of a specifier whose type and length were already read.
    fn from_parts(lstype: LinkSpecType, body: &[u8]) -> DecodeResult<Self> {
        if let Some(expected) = lstype.expected_len()
            && body.len() != expected
        {
            return Err(DecodeError::BadLength {
                what: match lstype {
                    LinkSpecType::IPV4 => "IPv4 link specifier",
                    LinkSpecType::IPV6 => "IPv6 link specifier",
                    LinkSpecType::RSA_ID => "RSA identity link specifier",
                    _ => "Ed25519 identity link specifier",
                },
                len: body.len(),
            });
        }
        let mut r = Reader::new(body);
        let spec = match lstype {
            LinkSpecType::IPV4 => LinkSpec::Ipv4 {
                addr: Ipv4Addr::from(r.take_array::<4>()?),
                port: r.take_u16()?,
            },
            LinkSpecType::IPV6 => LinkSpec::Ipv6 {
                addr: Ipv6Addr::from(r.take_array::<16>()?),
                port: r.take_u16()?,
            },
            LinkSpecType::RSA_ID => LinkSpec::RsaId(r.take_array()?),
            LinkSpecType::ED25519_ID => LinkSpec::Ed25519Id(r.take_array()?),
            _ => LinkSpec::Unrecognized {
                lstype,
                body: r.take_rest().to_vec(),
            },
        };
        r.should_be_exhausted()?;
        Ok(spec)
    }
}

impl Readable for LinkSpec {
    fn take_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let lstype = LinkSpecType(r.take_u8()?);
        let len = r.take_u8()?;
        let body = r.take(usize::from(len))?;
        LinkSpec::from_parts(lstype, body)
    }
}

impl Writeable for LinkSpec {
    fn write_onto<W: Writer + ?Sized>(&self, w: &mut W) -> EncodeResult<()> {
        w.write_u8(self.lstype().0);
        match self {
            LinkSpec::Ipv4 { addr, port } => {
                w.write_u8(6);
                w.write_all(&addr.octets());
                w.write_u16(*port);
            }
            LinkSpec::Ipv6 { addr, port } => {
                w.write_u8(18);
                w.write_all(&addr.octets());
                w.write_u16(*port);
            }
            LinkSpec::RsaId(id) => write_u8_prefixed(w, "RSA identity link specifier", id)?,
            LinkSpec::Ed25519Id(id) => {
                write_u8_prefixed(w, "Ed25519 identity link specifier", id)?;
            }
            LinkSpec::Unrecognized { lstype, body } => {
                if lstype.is_known() {
                    return Err(EncodeError::BadValue(
                        "unrecognized link specifier with a known type",
                    ));
                }
                write_u8_prefixed(w, "link specifier", body)?;
            }
        }
        Ok(())
    }
}

/// Check the rule of tor-spec §5.1.2 that a list names at most one legacy (RSA) identity and
/// at most one Ed25519 identity. Fails with [`DecodeError::BadValue`].
pub fn check_identities(specs: &[LinkSpec]) -> DecodeResult<()> {
    let count = |t: LinkSpecType| specs.iter().filter(|s| s.lstype() == t).count();
    if count(LinkSpecType::RSA_ID) > 1 {
        return Err(DecodeError::BadValue(
            "link specifiers: more than one RSA identity",
        ));
    }
    if count(LinkSpecType::ED25519_ID) > 1 {
        return Err(DecodeError::BadValue(
            "link specifiers: more than one Ed25519 identity",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::relaycell::arb;
    use proptest::prelude::*;

    fn dec(hexstr: &str) -> DecodeResult<LinkSpec> {
        LinkSpec::from_bytes(&hex::decode(hexstr).unwrap())
    }

    #[test]
    fn known_answers() {
        // From C tor's test_cell_formats.c (EXTEND2 cells): 18.244.0.1:61681.
        assert_eq!(
            dec("000612f40001f0f1"),
            Ok(LinkSpec::Ipv4 {
                addr: Ipv4Addr::new(18, 244, 0, 1),
                port: 61681
            })
        );
        // [2002::f0:c51e]:4370.
        assert_eq!(
            dec("011220020000000000000000000000f0c51e1112"),
            Ok(LinkSpec::Ipv6 {
                addr: "2002::f0:c51e".parse().unwrap(),
                port: 4370
            })
        );
        let rsa = dec("0214616e7468726f706f6d6f727068697a6174696f6e").unwrap();
        assert_eq!(rsa, LinkSpec::RsaId(*b"anthropomorphization"));
        let ed = dec(&format!(
            "0320{}",
            hex::encode("brownshoesdontmakeit/brownshoesd")
        ))
        .unwrap();
        assert_eq!(
            ed,
            LinkSpec::Ed25519Id(*b"brownshoesdontmakeit/brownshoesd")
        );
        for s in [&rsa, &ed] {
            let mut again = s.to_bytes().unwrap();
            assert_eq!(LinkSpec::from_bytes(&again).as_ref(), Ok(s));
            again.push(0);
            assert_eq!(
                LinkSpec::from_bytes(&again),
                Err(DecodeError::ExtraBytes(1))
            );
        }
    }

    #[test]
    fn bad_lengths_are_specific() {
        // C tor's "bad IPv4 address (too long, too short)" and IPv6 counterparts.
        assert_eq!(
            dec("000712f40001f0f1ff"),
            Err(DecodeError::BadLength {
                what: "IPv4 link specifier",
                len: 7
            })
        );
        assert_eq!(
            dec("000512f40001f0"),
            Err(DecodeError::BadLength {
                what: "IPv4 link specifier",
                len: 5
            })
        );
        assert_eq!(
            dec(&format!("0113{}", hex::encode("xxxxxxxxxxxxxxxxYYZ"))),
            Err(DecodeError::BadLength {
                what: "IPv6 link specifier",
                len: 19
            })
        );
        assert_eq!(
            dec(&format!("0213{}", "00".repeat(19))),
            Err(DecodeError::BadLength {
                what: "RSA identity link specifier",
                len: 19
            })
        );
        assert_eq!(
            dec(&format!("0321{}", "00".repeat(33))),
            Err(DecodeError::BadLength {
                what: "Ed25519 identity link specifier",
                len: 33
            })
        );
        // LSLEN past the end of the input.
        assert_eq!(dec("0006aabbcc"), Err(DecodeError::Truncated { needed: 3 }));
        assert_eq!(dec("00"), Err(DecodeError::Truncated { needed: 1 }));
    }

    #[test]
    fn unknown_specifier_survives() {
        // C tor's "Konami code" specifier, type 0xf0.
        let raw = format!("f020{}", hex::encode("upupdowndownleftrightleftrightba"));
        let spec = dec(&raw).unwrap();
        assert_eq!(
            spec,
            LinkSpec::Unrecognized {
                lstype: LinkSpecType(0xf0),
                body: b"upupdowndownleftrightleftrightba".to_vec()
            }
        );
        assert_eq!(hex::encode(spec.to_bytes().unwrap()), raw);
        // An empty unknown specifier too.
        assert_eq!(
            hex::encode(dec("0400").unwrap().to_bytes().unwrap()),
            "0400"
        );
    }

    #[test]
    fn encode_rejects_misuse() {
        let known = LinkSpec::Unrecognized {
            lstype: LinkSpecType::IPV4,
            body: vec![0; 6],
        };
        assert!(matches!(known.to_bytes(), Err(EncodeError::BadValue(_))));
        let long = LinkSpec::Unrecognized {
            lstype: LinkSpecType(9),
            body: vec![0; 256],
        };
        assert!(matches!(
            long.to_bytes(),
            Err(EncodeError::TooLong { len: 256, .. })
        ));
    }

    #[test]
    fn duplicate_identities() {
        let rsa = LinkSpec::RsaId([1; 20]);
        let ed = LinkSpec::Ed25519Id([2; 32]);
        assert_eq!(check_identities(&[rsa.clone(), ed.clone()]), Ok(()));
        assert_eq!(
            check_identities(&[rsa.clone(), ed.clone(), rsa]),
            Err(DecodeError::BadValue(
                "link specifiers: more than one RSA identity"
            ))
        );
        assert_eq!(
            check_identities(&[ed.clone(), ed]),
            Err(DecodeError::BadValue(
                "link specifiers: more than one Ed25519 identity"
            ))
        );
    }

    proptest! {
        #[test]
        fn round_trip(spec in arb::link_spec()) {
            let bytes = spec.to_bytes().unwrap();
            let back = LinkSpec::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&back, &spec);
            prop_assert_eq!(back.to_bytes().unwrap(), bytes);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = LinkSpec::from_bytes(&bytes);
        }
    }
}
