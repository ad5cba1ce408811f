//! The seed's iAnonym mode in the engine: CID, RELAY_ASSOCIATE, RELAY_WS requests served
//! through 3-hop exit circuits of the test network. The OR side of CID (what or-server's
//! WS_OP_SOCKS does) is driven by the test with the core's [`OrCircuit::send_seed`].

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use onion_cell::relaycell::{Associate, OrWsAddr, RelayMsg, WsStream};

use super::*;

const DOMAIN: &str = "Page.Fake.Test";

/// The CID of the association (the circuit that received RELAY_ASSOCIATE), its domain.
fn cid(net: &Net) -> Option<(ConnId, CircId, String)> {
    net.seed_in
        .iter()
        .rev()
        .find_map(|(conn, circ, ev)| match ev {
            CircuitEvent::SeedAssociate { msg, .. } => {
                Some((*conn, *circ, msg.fake_domain().to_owned()))
            }
            _ => None,
        })
}

/// The OR (hop 1 of CID) sends `msg` on stream `sid`.
pub(super) fn or_send(net: &mut Net, sid: u16, msg: RelayMsg) {
    let (conn, circ, _) = cid(net).expect("no CID");
    let mut chain = net
        .links
        .get_mut(&conn)
        .unwrap()
        .chains
        .remove(&circ)
        .expect("CID gone");
    chain.hops[0]
        .1
        .send_seed(&mut net.rng, StreamId(sid), msg)
        .unwrap();
    net.flush(conn, circ, &mut chain);
    net.links.get_mut(&conn).unwrap().chains.insert(circ, chain);
}

/// A browser request chunk (empty: the browser closed).
fn request(net: &mut Net, sid: u16, host: &str, port: u16, id: &str, data: &[u8]) {
    let addr = OrWsAddr {
        remote_address: host.into(),
        remote_port: port,
        conn_port: 40000 + sid,
        request_id: id.into(),
    };
    let msg = WsStream::from_or(&addr, data.to_vec()).unwrap();
    or_send(net, sid, msg.into());
}

/// The RELAY_WS answers on CID stream `sid` so far (taken out), concatenated, and whether
/// the empty (end) message came.
fn answers(net: &mut Net, sid: u16) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut end = false;
    net.seed_in.retain(|(_, _, ev)| match ev {
        CircuitEvent::SeedWs { stream, msg } if *stream == StreamId(sid) => {
            assert!(!end, "answer after the end");
            msg.op_addr().expect("OP Addr");
            if msg.is_end() {
                end = true;
            }
            got.extend_from_slice(msg.request());
            false
        }
        _ => true,
    });
    (got, end)
}

fn done(events: &[Event]) -> Vec<(String, String, u64, u64, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SeedRequestDone {
                request_id,
                target,
                bytes_in,
                bytes_out,
                error,
            } => Some((
                request_id.clone(),
                target.clone(),
                *bytes_in,
                *bytes_out,
                error.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// No event of the engine's internal streams reaches the user.
fn no_stream_events(events: &[Event]) {
    for e in events {
        assert!(
            !matches!(
                e,
                Event::StreamConnected { .. }
                    | Event::StreamData { .. }
                    | Event::StreamEnded { .. }
                    | Event::StreamWritable { .. }
            ),
            "internal stream event leaked: {e:?}"
        );
    }
}

/// Bootstrap and associate; the events.
fn associated(net: &mut Net) -> (Engine<StdRng>, Vec<Event>) {
    let (mut e, _) = boot(net, config(), 7);
    let id = e
        .associate(net.now, DOMAIN, Some(("example.org", 80)))
        .unwrap();
    let events = net.pump(&mut e);
    assert!(
        events.contains(&Event::Associated {
            fake_domain: DOMAIN.into(),
            circuit: id
        }),
        "{events:?}"
    );
    let (conn, circ, domain) = cid(net).expect("RELAY_ASSOCIATE received");
    assert_eq!(domain, DOMAIN);
    // CID is one hop to the entry, not extended.
    assert_eq!(net.links[&conn].chains[&circ].hops.len(), 1);
    assert_eq!(net.links[&conn].chains[&circ].hops[0].0, 0);
    let info = e.circuits().into_iter().find(|c| c.id == id).unwrap();
    assert_eq!(info.purpose, CircuitPurpose::Seed);
    assert_eq!(info.path.len(), 1);
    (e, events)
}

#[test]
fn relay_ws_requests_are_served_through_three_hop_circuits() {
    let mut net = Net::new(5, 2);
    let (mut e, _) = associated(&mut net);
    assert_eq!(e.associated_domain(), Some(DOMAIN));

    // Request 1 for the fake domain itself (-> origin), in three chunks, the largest ones
    // bigger than a RELAY cell; the test exits echo.
    let body: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut events = Vec::new();
    for part in body.chunks(60_000) {
        request(&mut net, 5, "page.fake.test", 80, "1", part);
        events.extend(net.pump(&mut e));
    }
    // Request 2 on another stream for a sub-domain: host `www` port 81, at the same time.
    request(&mut net, 6, "www.PAGE.fake.test.", 81, "2", b"hello");
    events.extend(net.pump(&mut e));
    let (got, end) = answers(&mut net, 5);
    assert!(!end);
    assert_eq!(got.len(), body.len());
    assert!(got == body, "answer differs");
    let (got2, end2) = answers(&mut net, 6);
    assert_eq!((got2.as_slice(), end2), (&b"hello"[..], false));

    // Served through exit circuits of 3 hops, isolated from the page's own streams.
    let exits: Vec<CircuitInfo> = e
        .circuits()
        .into_iter()
        .filter(|c| c.isolation.as_deref() == Some("associate:page.fake.test"))
        .collect();
    assert!(!exits.is_empty());
    for c in &exits {
        assert_eq!(c.purpose, CircuitPurpose::Exit);
        assert_eq!(c.path.len(), 3);
    }
    assert_eq!(exits.iter().map(|c| c.streams).sum::<usize>(), 2);

    // The browser closes request 1: its stream closes (END at the exit), no answer follows.
    request(&mut net, 5, "page.fake.test", 80, "1", b"");
    events.extend(net.pump(&mut e));
    assert_eq!(
        done(&events),
        vec![(
            "1".into(),
            "example.org:80".into(),
            body.len() as u64,
            body.len() as u64,
            None
        )]
    );
    let (got, end) = answers(&mut net, 5);
    assert!(got.is_empty() && !end);
    let open: usize = e
        .circuits()
        .iter()
        .filter(|c| c.isolation.as_deref() == Some("associate:page.fake.test"))
        .map(|c| c.streams)
        .sum();
    assert_eq!(open, 1);

    // Stream id 5 reused by request 3, which the exit refuses: the request ends with an
    // empty answer and an error.
    request(&mut net, 5, "x.page.fake.test", REFUSED_PORT, "3", b"GET");
    events = net.pump(&mut e);
    let (got, end) = answers(&mut net, 5);
    assert!(got.is_empty() && end);
    let d = done(&events);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0, "3");
    assert_eq!(d[0].1, format!("x:{REFUSED_PORT}"));
    assert!(d[0].4.is_some());

    // A name that is not the fake domain: refused at once.
    request(&mut net, 9, "other.test", 80, "4", b"GET");
    events.extend(net.pump(&mut e));
    assert_eq!(answers(&mut net, 9), (Vec::new(), true));
    assert!(done(&events).iter().any(|d| d.0 == "4" && d.4.is_some()));
    no_stream_events(&events);

    // CID destroyed by the OR: the association ends, request 2's stream is closed.
    let (conn, circ, _) = cid(&net).unwrap();
    net.links.get_mut(&conn).unwrap().chains.remove(&circ);
    net.send(conn, circ, Destroy::new(DestroyReason::FINISHED).into());
    events = net.pump(&mut e);
    no_stream_events(&events);
    let d = done(&events);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].0.as_str(), d[0].2, d[0].3), ("2", 5, 5));
    assert!(d[0].4.is_some());
    assert!(events.iter().any(
        |e| matches!(e, Event::AssociationClosed { fake_domain, .. } if fake_domain == DOMAIN)
    ));
    assert_eq!(e.associated_domain(), None);
    let open: usize = e
        .circuits()
        .iter()
        .filter(|c| c.isolation.as_deref() == Some("associate:page.fake.test"))
        .map(|c| c.streams)
        .sum();
    assert_eq!(open, 0);

    // The page's own streams still work, and a new association can be made.
    let s = open_stream(&mut net, &mut e, 80, None);
    assert_eq!(echo(&mut net, &mut e, s, b"page"), b"page");
    net.seed_in.clear();
    e.associate(net.now, "again.fake.test", None).unwrap();
    net.pump(&mut e);
    assert_eq!(cid(&net).unwrap().2, "again.fake.test");
}

#[test]
fn associate_refused_by_the_or_closes_cid() {
    let mut net = Net::new(5, 2);
    let (mut e, _) = associated(&mut net);
    let (conn, circ, _) = cid(&net).unwrap();
    // The OR answers ASSOCIATE with ASSOCIATE: the domain is taken.
    or_send(&mut net, 0, Associate::new(DOMAIN.into()).unwrap().into());
    let events = net.pump(&mut e);
    assert!(
        events.contains(&Event::AssociateRefused {
            fake_domain: DOMAIN.into()
        }),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::AssociationClosed { .. }))
    );
    // CID destroyed (the relay saw DESTROY).
    assert!(!net.links[&conn].chains.contains_key(&circ));
    assert_eq!(e.associated_domain(), None);
}

#[test]
fn associate_is_checked() {
    let mut net = Net::new(5, 2);
    let (mut e, _) = boot(&mut net, config(), 3);
    assert!(matches!(
        e.associate(net.now, "", None),
        Err(EngineError::InvalidTarget(_))
    ));
    assert!(matches!(
        e.associate(net.now, "a.test", Some(("", 80))),
        Err(EngineError::InvalidTarget(_))
    ));
    e.associate(net.now, "a.test", None).unwrap();
    assert!(matches!(
        e.associate(net.now, "b.test", None),
        Err(EngineError::InvalidConfig(_))
    ));
    // A request for the bare domain without an origin is refused.
    net.pump(&mut e);
    request(&mut net, 3, "a.test", 80, "1", b"GET");
    let events = net.pump(&mut e);
    assert_eq!(answers(&mut net, 3), (Vec::new(), true));
    assert!(done(&events).iter().any(|d| d.4.is_some()));
    // Engine close ends the association.
    e.close(net.now);
    let events = net.pump(&mut e);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::AssociationClosed { .. })),
        "{events:?}"
    );
}

#[test]
fn browser_bytes_beyond_the_bound_end_the_request() {
    let mut net = Net::new(5, 2);
    let (mut e, _) = associated(&mut net);
    // More than MAX_SEED_PENDING arrives before the stream is connected (all the cells are
    // delivered before the engine's BEGIN leaves): the request ends, the engine survives.
    let chunk = vec![0x5a; 60_000];
    let n = MAX_SEED_PENDING / chunk.len() + 1;
    for _ in 0..n {
        request(&mut net, 4, "page.fake.test", 80, "big", &chunk);
    }
    let events = net.pump(&mut e);
    let (_, end) = answers(&mut net, 4);
    assert!(end, "the request was ended toward the OR");
    let d = done(&events);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "big");
    assert!(
        d[0].4.as_deref().is_some_and(|e| e.contains("buffered")),
        "{d:?}"
    );
    no_stream_events(&events);
    // Within the bound, a request is served.
    request(&mut net, 8, "page.fake.test", 80, "small", b"ok");
    net.pump(&mut e);
    assert_eq!(answers(&mut net, 8), (b"ok".to_vec(), false));
}
