//! The glue in headless Chromium (`wasm-bindgen-test-runner`, see scripts/test.sh): the HTTP
//! wrappers, option checks, and the driver reporting an unreachable entry as a failed
//! bootstrap over real browser WebSockets.
#![cfg(target_arch = "wasm32")]
// clippy.toml allows these in #[test] functions; #[wasm_bindgen_test] ones are tests too.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use op_wasm::{Client, HttpResponseParser, TlsClient, build_request};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(key)).unwrap()
}

#[wasm_bindgen_test]
fn parser_reassembles_a_split_chunked_response() {
    let mut p = HttpResponseParser::new(false, 1e6);
    let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Latin: caf\xe9\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let (a, b) = raw.split_at(37);
    let mut events: Vec<JsValue> = p.feed(a).unwrap().iter().collect();
    events.extend(p.feed(b).unwrap().iter());
    let kinds: Vec<String> = events
        .iter()
        .map(|e| get(e, "kind").as_string().unwrap())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("head"));
    assert_eq!(kinds.last().map(String::as_str), Some("end"));
    let head = &events[0];
    assert_eq!(get(head, "status").as_f64(), Some(200.0));
    assert_eq!(get(head, "statusText").as_string().as_deref(), Some("OK"));
    let headers = Array::from(&get(head, "headers"));
    let latin = headers
        .iter()
        .map(|h| Array::from(&h))
        .find(|h| h.get(0).as_string().as_deref() == Some("X-Latin"))
        .unwrap();
    assert_eq!(latin.get(1).as_string().as_deref(), Some("café"));
    let mut body = Vec::new();
    for e in events
        .iter()
        .filter(|e| get(e, "kind").as_string().as_deref() == Some("body"))
    {
        body.extend(Uint8Array::new(&get(e, "data")).to_vec());
    }
    assert_eq!(body, b"hello world");
    assert!(p.is_done());
}

#[wasm_bindgen_test]
fn parser_errors_are_exceptions() {
    let mut p = HttpResponseParser::new(false, 4.0);
    assert!(
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
            .is_err(),
        "body over maxBody"
    );
    let mut p = HttpResponseParser::new(false, 1e6);
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
        .unwrap();
    assert!(p.finish().is_err(), "truncated body");
}

#[wasm_bindgen_test]
fn requests_are_checked() {
    let headers = Array::of1(&Array::of2(&"Accept".into(), &"*/*".into()));
    let req = build_request("GET", "example.com:8080", "/a?b=c", headers, None, false).unwrap();
    assert_eq!(
        req,
        b"GET /a?b=c HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n"
    );
    let post = build_request(
        "POST",
        "h",
        "/echo",
        Array::new(),
        Some(b"xy".to_vec()),
        false,
    );
    assert_eq!(
        post.unwrap(),
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nxy"
    );
    let injected = Array::of1(&Array::of2(&"X".into(), &"a\r\nEvil: 1".into()));
    assert!(build_request("GET", "example.com", "/", injected, None, false).is_err());
    assert!(build_request("GET", "example.com", "/a b", Array::new(), None, false).is_err());
    assert!(build_request("CONNECT", "example.com", "/", Array::new(), None, false).is_err());
    let framing = Array::of1(&Array::of2(&"Content-Length".into(), &"9".into()));
    assert!(build_request("POST", "h", "/", framing, Some(vec![1]), false).is_err());
}

/// The example network description with every entry's WebSocket on a closed local port.
fn unreachable_network() -> String {
    let text = include_str!("../../onion-core/src/netdesc/example_own.json");
    text.replace("wss://guard1.example.net/onion", "ws://127.0.0.1:9/")
        .replace("ws://192.0.2.11:8080/", "ws://127.0.0.1:9/")
}

fn options(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).unwrap();
    }
    o.into()
}

#[wasm_bindgen_test]
fn options_are_checked() {
    let net = unreachable_network();
    for bad in [
        options(&[("hops", 0.into())]),
        options(&[("hops", 6.into())]),
        options(&[("hops", 2.5.into())]),
        options(&[("circuits", (-1).into())]),
        options(&[("createFastWs", "yes".into())]),
        options(&[("useRelayInfo", 1.into())]),
    ] {
        assert!(Client::new(&net, &bad, None).is_err());
    }
    assert!(Client::new("{}", &JsValue::UNDEFINED, None).is_err());
}

#[wasm_bindgen_test]
async fn unreachable_entries_fail_the_bootstrap() {
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let log = Rc::clone(&seen);
    let cb = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
        log.borrow_mut()
            .push(get(&e, "type").as_string().unwrap_or_default());
    });
    let f: Function = cb.as_ref().unchecked_ref::<Function>().clone();
    let opts = options(&[("connectTimeout", 2000.into()), ("hops", 3.into())]);
    let client = Client::new(&unreachable_network(), &opts, Some(f)).unwrap();
    let err = JsFuture::from(client.ready()).await.unwrap_err();
    let msg = get(&err, "message").as_string().unwrap();
    assert!(!msg.is_empty());
    assert!(!client.is_ready());
    let seen = seen.borrow().clone();
    assert!(seen.iter().any(|t| t == "bootstrap"), "{seen:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("bootstrapFailed"),
        "{seen:?}"
    );
    // Streams of a failed client fail too, and reads of unknown streams reject.
    assert!(JsFuture::from(client.read(12345)).await.is_err());
    client.close().unwrap();
}

#[wasm_bindgen_test]
fn tls_client_hello_and_hostile_records() {
    assert!(TlsClient::new("not a name!", Array::new()).is_err());
    assert!(TlsClient::new("example.com", Array::of1(&Uint8Array::from(&b"junk"[..]))).is_err());
    let mut tls = TlsClient::new("example.com", Array::new()).unwrap();
    assert!(tls.is_handshaking());
    let hello = tls.take_outgoing().unwrap();
    assert_eq!(hello.first(), Some(&0x16), "a handshake record");
    assert!(tls.take_outgoing().unwrap().is_empty());
    // An alert-sized garbage record from the "server" is an error, not a panic.
    assert!(
        tls.receive(&[0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5])
            .is_err()
    );
}
