//! Proptest strategies for relay messages and cells (tests only).
//!
//! Every message generated here fits an ordinary relay cell (498 bytes of data), except those
//! of [`ws_msg`], which may need a RELAY_WS cell.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![ipv4().prop_map(IpAddr::V4), ipv6().prop_map(IpAddr::V6)]
}

/// A DNS-like name; starts with a letter, so never an IPv4 address.
fn hostname() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9-]{0,20}(\\.[a-z0-9-]{1,10}){0,3}"
}

/// A link specifier of any type, known or not.
pub(crate) fn link_spec() -> impl Strategy<Value = LinkSpec> {
    prop_oneof![
        (ipv4(), any::<u16>()).prop_map(|(addr, port)| LinkSpec::Ipv4 { addr, port }),
        (ipv6(), any::<u16>()).prop_map(|(addr, port)| LinkSpec::Ipv6 { addr, port }),
        any::<[u8; 20]>().prop_map(LinkSpec::RsaId),
        any::<[u8; 32]>().prop_map(LinkSpec::Ed25519Id),
        (4u8..=255, bytes(40)).prop_map(|(t, body)| LinkSpec::Unrecognized {
            lstype: LinkSpecType(t),
            body
        }),
    ]
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        hostname().prop_map(Address::Hostname),
        ipv4().prop_map(Address::Ipv4),
        ipv6().prop_map(Address::Ipv6),
    ]
}

fn begin() -> impl Strategy<Value = RelayMsg> {
    (address(), 1u16..=u16::MAX, any::<u32>())
        .prop_map(|(a, p, f)| Begin::new(a, p, BeginFlags(f)).unwrap().into())
}

fn end() -> impl Strategy<Value = RelayMsg> {
    prop_oneof![
        any::<u8>().prop_map(|r| End::new(msg::EndReason(r)).into()),
        (ip(), any::<u32>()).prop_map(|(a, t)| End::exit_policy(a, t).into()),
    ]
}

fn connected() -> impl Strategy<Value = RelayMsg> {
    prop_oneof![
        Just(Connected::new_empty().into()),
        (ip(), any::<u32>())
            .prop_filter("0.0.0.0 is not expressible", |(a, _)| {
                *a != IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            })
            .prop_map(|(a, t)| Connected::new_with_addr(a, t).unwrap().into()),
    ]
}

fn sendme() -> impl Strategy<Value = RelayMsg> {
    prop_oneof![
        Just(Sendme::V0.into()),
        any::<[u8; 20]>().prop_map(|digest| Sendme::V1 { digest }.into()),
        (2u8..=255, bytes(100))
            .prop_map(|(version, data)| Sendme::Unrecognized { version, data }.into()),
    ]
}

fn resolved_answer() -> impl Strategy<Value = msg::ResolvedAnswer> {
    let value = prop_oneof![
        hostname().prop_map(ResolvedValue::Hostname),
        ipv4().prop_map(ResolvedValue::Ipv4),
        ipv6().prop_map(ResolvedValue::Ipv6),
        (7u8..=0xef, bytes(20))
            .prop_map(|(rtype, value)| ResolvedValue::Unrecognized { rtype, value }),
    ];
    (value, any::<u32>()).prop_map(|(value, ttl)| msg::ResolvedAnswer { value, ttl })
}

fn resolved() -> impl Strategy<Value = RelayMsg> {
    let error = prop_oneof![
        bytes(30).prop_map(ResolvedValue::TransientError),
        bytes(30).prop_map(ResolvedValue::NontransientError),
    ];
    prop_oneof![
        (error, any::<u32>()).prop_map(|(value, ttl)| {
            Resolved::new(vec![msg::ResolvedAnswer { value, ttl }])
                .unwrap()
                .into()
        }),
        vec(resolved_answer(), 0..5).prop_map(|mut answers| {
            // IPv4 answers first (tor-spec §6.4).
            answers.sort_by_key(|a| !matches!(a.value, ResolvedValue::Ipv4(_)));
            Resolved::new(answers).unwrap().into()
        }),
    ]
}

fn extend2() -> impl Strategy<Value = RelayMsg> {
    (vec(link_spec(), 0..5), any::<u16>(), bytes(200)).prop_map(|(mut specs, htype, hdata)| {
        let mut seen = Vec::new();
        specs.retain(|s| {
            let t = s.lstype();
            let unique = t != LinkSpecType::RSA_ID && t != LinkSpecType::ED25519_ID;
            let first = !seen.contains(&t);
            seen.push(t);
            unique || first
        });
        Extend2::new(specs, htype, hdata).unwrap().into()
    })
}

fn or_ws_addr() -> impl Strategy<Value = OrWsAddr> {
    (
        prop_oneof![hostname(), ipv6().prop_map(|a| a.to_string())],
        any::<u16>(),
        any::<u16>(),
        "[0-9a-zA-Z_-]{1,12}",
    )
        .prop_map(
            |(remote_address, remote_port, conn_port, request_id)| OrWsAddr {
                remote_address,
                remote_port,
                conn_port,
                request_id,
            },
        )
}

fn op_ws_addr() -> impl Strategy<Value = OpWsAddr> {
    (hostname(), any::<u16>()).prop_map(|(remote_address, remote_port)| OpWsAddr {
        remote_address,
        remote_port,
    })
}

fn ws_stream(max_request: usize) -> impl Strategy<Value = RelayMsg> {
    prop_oneof![
        (or_ws_addr(), bytes(max_request))
            .prop_map(|(a, r)| WsStream::from_or(&a, r).unwrap().into()),
        (op_ws_addr(), bytes(max_request))
            .prop_map(|(a, r)| WsStream::from_op(&a, r).unwrap().into()),
        (bytes(40), bytes(max_request)).prop_map(|(a, r)| WsStream::new(a, r).unwrap().into()),
    ]
}

fn info() -> impl Strategy<Value = RelayMsg> {
    let id = any::<[u8; 16]>();
    prop_oneof![
        (id, bytes(200)).prop_map(|(id, modulus)| {
            Info::from_request(&InfoRequest::OnionSkin { id, modulus })
        }),
        (id, bytes(200)).prop_map(|(id, y)| Info::from_request(&InfoRequest::DhSecret { id, y })),
        (id, bytes(150), bytes(200)).prop_map(|(id, x, onion)| {
            Info::from_response(&InfoResponse::OnionSkin { id, x, onion })
        }),
        (id, bytes(200)).prop_map(|(id, secret)| {
            Info::from_response(&InfoResponse::DhSecret { id, secret })
        }),
    ]
    .prop_map(|m| m.unwrap().into())
}

/// Commands that have no typed message in either dialect.
fn unknown_cmd() -> impl Strategy<Value = RelayCmd> {
    prop_oneof![Just(0u8), 16u8..=39, 43u8..=255].prop_map(RelayCmd)
}

/// A message of any of Tor's commands, or an unrecognized one.
pub(crate) fn tor_msg() -> impl Strategy<Value = RelayMsg> {
    prop_oneof![
        begin(),
        bytes(MAX_DATA_LEN).prop_map(|d| Data::new(d).unwrap().into()),
        end(),
        connected(),
        sendme(),
        (
            ipv4(),
            any::<u16>(),
            vec(any::<u8>(), 186),
            any::<[u8; 20]>()
        )
            .prop_map(|(a, p, skin, id)| {
                let skin: [u8; 186] = skin.try_into().unwrap();
                Extend::new(a, p, skin, id).into()
            }),
        vec(any::<u8>(), 148).prop_map(|h| Extended::new(h.try_into().unwrap()).into()),
        Just(Truncate.into()),
        any::<u8>().prop_map(|r| Truncated::new(msg::DestroyReason::new(r)).into()),
        bytes(MAX_DATA_LEN).prop_map(|b| DropMsg::new(b).unwrap().into()),
        prop_oneof![
            hostname(),
            ipv4().prop_map(|a| {
                let [x, y, z, w] = a.octets();
                format!("{w}.{z}.{y}.{x}.in-addr.arpa")
            })
        ]
        .prop_map(|q| Resolve::new(q).unwrap().into()),
        resolved(),
        Just(BeginDir.into()),
        extend2(),
        bytes(MAX_DATA_LEN - 2).prop_map(|h| Extended2::new(h).unwrap().into()),
        (unknown_cmd(), bytes(MAX_DATA_LEN))
            .prop_map(|(c, b)| Unrecognized::new(c, b).unwrap().into()),
    ]
}

/// A message of any command, the seed's included; fits an ordinary cell.
pub(crate) fn any_msg() -> impl Strategy<Value = RelayMsg> {
    prop_oneof![
        4 => tor_msg(),
        1 => hostname().prop_map(|d| Associate::new(d).unwrap().into()),
        1 => ws_stream(350),
        1 => info(),
    ]
}

/// A message that may need a RELAY_WS cell (up to a few kilobytes).
pub(crate) fn ws_msg() -> impl Strategy<Value = RelayMsg> {
    prop_oneof![
        any_msg(),
        bytes(4000).prop_map(|d| Data::new_ws(d).unwrap().into()),
        ws_stream(4000),
    ]
}

/// A cell carrying a message from `msgs`, with a stream id its command allows.
pub(crate) fn relay_cell(
    msgs: impl Strategy<Value = RelayMsg>,
) -> impl Strategy<Value = RelayCell> {
    (msgs, 1u16..=u16::MAX, any::<bool>()).prop_map(|(m, id, zero)| {
        let id = match m.cmd().stream_id_rule() {
            StreamIdRule::Zero => StreamId::ZERO,
            StreamIdRule::NonZero => StreamId(id),
            StreamIdRule::Any if zero => StreamId::ZERO,
            StreamIdRule::Any => StreamId(id),
        };
        RelayCell::new(id, m).unwrap()
    })
}
