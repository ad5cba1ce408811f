//! Proptest strategies for arbitrary valid channel messages (test-only).
//!
//! Every generated message is canonical: decoding its encoding gives it back.

use proptest::array::uniform;
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::link::{CertType, NetinfoAddr};

fn bytes(len: impl Into<proptest::collection::SizeRange>) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), len)
}

fn relay() -> impl Strategy<Value = Relay> {
    uniform::<_, PAYLOAD_LEN>(any::<u8>()).prop_map(|b| Relay::new(Box::new(b)))
}

/// An address as NETINFO carries it, including unrecognized types and wrong lengths.
pub(crate) fn netinfo_addr() -> impl Strategy<Value = NetinfoAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| NetinfoAddr::Ipv4(a.into())),
        uniform::<_, 16>(any::<u8>()).prop_map(|a| NetinfoAddr::Ipv6(a.into())),
        (any::<u8>(), bytes(0..40))
            .prop_filter("canonical IP addresses decode as IPs", |(t, v)| {
                !(*t == 4 && v.len() == 4 || *t == 6 && v.len() == 16)
            })
            .prop_map(|(atype, value)| NetinfoAddr::Unrecognized { atype, value }),
    ]
}

/// A message body of an unknown command: fixed ones carry a whole payload.
fn unrecognized() -> impl Strategy<Value = Unrecognized> {
    any::<u8>()
        .prop_filter("unknown commands only", |c| {
            !ChanCmd::new(*c).is_recognized()
        })
        .prop_flat_map(|c| {
            let cmd = ChanCmd::new(c);
            let len: proptest::collection::SizeRange = if cmd.is_var_len() {
                (0..600usize).into()
            } else {
                PAYLOAD_LEN.into()
            };
            bytes(len).prop_map(move |b| Unrecognized::new(cmd, b))
        })
}

/// An arbitrary valid message of any command.
pub(crate) fn chan_msg() -> impl Strategy<Value = ChanMsg> {
    prop_oneof![
        Just(ChanMsg::Padding(Padding)),
        any::<u16>().prop_map(|n| Vpadding::new(n).into()),
        uniform::<_, { Create::LEN }>(any::<u8>()).prop_map(|h| Create::new(h).into()),
        uniform::<_, { Created::LEN }>(any::<u8>()).prop_map(|h| Created::new(h).into()),
        any::<[u8; 20]>().prop_map(|x| CreateFast::new(x).into()),
        (any::<[u8; 20]>(), any::<[u8; 20]>()).prop_map(|(y, kh)| CreatedFast::new(y, kh).into()),
        (any::<u16>(), bytes(0..=Create2::MAX_HDATA_LEN))
            .prop_map(|(t, h)| Create2::new(t, h).unwrap().into()),
        bytes(0..=Created2::MAX_HDATA_LEN).prop_map(|h| Created2::new(h).unwrap().into()),
        relay().prop_map(ChanMsg::Relay),
        relay().prop_map(ChanMsg::RelayEarly),
        bytes(RelayWs::MIN_LEN..3000).prop_map(|b| RelayWs::new(b).unwrap().into()),
        any::<u8>().prop_map(|r| Destroy::new(r.into()).into()),
        uniform::<_, { CreateFastWs::ENC_X_LEN }>(any::<u8>())
            .prop_map(|x| CreateFastWs::new(x).into()),
        (any::<[u8; 20]>(), any::<[u8; 20]>()).prop_map(|(y, kh)| CreatedFastWs::new(y, kh).into()),
        (any::<u8>(), any::<u8>(), any::<u16>(), any::<u16>())
            .prop_map(|(v, c, l, h)| PaddingNegotiate::new(v, c.into(), l, h).into()),
        vec(any::<u16>(), 0..20).prop_map(|v| Versions::new(v).unwrap().into()),
        (any::<u32>(), netinfo_addr(), vec(netinfo_addr(), 0..8))
            .prop_map(|(t, o, m)| Netinfo::new(t, o, m).into()),
        vec((any::<u8>(), bytes(0..400)), 0..8).prop_map(|certs| {
            let mut c = Certs::new();
            for (t, b) in certs {
                c.push(CertType::new(t), b);
            }
            c.into()
        }),
        (any::<[u8; 32]>(), vec(any::<u16>(), 0..10))
            .prop_map(|(c, m)| AuthChallenge::new(c, m).into()),
        (any::<u16>(), bytes(0..400)).prop_map(|(t, b)| Authenticate::new(t, b).into()),
        bytes(0..100).prop_map(|b| Authorize::new(b).into()),
        unrecognized().prop_map(ChanMsg::Unrecognized),
    ]
}
