//! The driver: one [`Engine`] behind `Rc<RefCell<..>>`, fed by WebSocket events, one timer and
//! the user API; after every call into the engine its actions are performed, its events
//! delivered, and the timer re-armed (the loop in `onion_core::engine`'s documentation).
//!
//! User callbacks and promise settlements are collected while the state is borrowed and run
//! after it is released, so a callback may call back into the client.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::{Rc, Weak};

use getrandom::SysRng;
use js_sys::{Array, Function, Promise, Uint8Array};
use onion_core::channel::TlsBinding;
use onion_core::engine::{Action, ConnId, Engine, Event, StreamHandle, Transport};
use onion_core::netdesc::NetworkDescription;
use rand_core::UnwrapErr;
use wasm_bindgen::prelude::*;

use crate::convert;
use crate::timer::{Timer, now_ms};
use crate::ws::{WsConn, WsEvent};

/// Most bytes one `read()` returns.
const READ_MAX: usize = 256 << 10;

/// The engine's RNG: the browser's `crypto.getRandomValues` (getrandom's `wasm_js` backend).
type Rng = UnwrapErr<SysRng>;

/// A promise's resolve and reject functions.
struct Settle {
    resolve: Function,
    reject: Function,
}

impl Settle {
    /// A new promise and its settle functions.
    fn promise() -> (Promise, Option<Settle>) {
        let mut settle = None;
        let p = Promise::new(&mut |resolve, reject| settle = Some(Settle { resolve, reject }));
        (p, settle)
    }
}

/// A JS call to make once the state is released.
enum Call {
    /// `f(arg)`.
    Call(Function, JsValue),
}

/// Where a user stream is.
#[derive(Default)]
struct StreamSlot {
    /// RELAY_CONNECTED arrived.
    connected: bool,
    /// The stream ended: `Some(None)` cleanly, `Some(Some(why))` with an error.
    ended: Option<Option<String>>,
    /// Delivered bytes not yet read (bounded by the stream's SENDME window: the engine is told
    /// about bytes only when they are read).
    queue: VecDeque<Vec<u8>>,
    /// `connected()` waiting for RELAY_CONNECTED (or a RESOLVE's answer).
    on_connect: Vec<Settle>,
    /// A `read()` waiting for data.
    reader: Option<Settle>,
    /// A `write()` whose bytes the engine has not all taken yet.
    writer: Option<(Vec<u8>, Settle)>,
    /// The answers of a RESOLVE.
    resolved: Option<Array>,
}

/// The driver's state.
struct Inner {
    engine: Engine<Rng>,
    /// Weak reference to ourselves, for the WebSocket handlers.
    me: Weak<RefCell<Inner>>,
    conns: BTreeMap<ConnId, WsConn>,
    streams: BTreeMap<u64, StreamSlot>,
    timer: Option<Timer>,
    /// The JS function the timer calls (lives as long as the client).
    timer_fn: Option<Closure<dyn FnMut()>>,
    /// The user's event callback (`{ type, ... }` objects).
    on_event: Option<Function>,
    /// `ready()` promises.
    ready_waiters: Vec<Settle>,
    /// `Some(Ok)` once the directory is verified, `Some(Err)` if the bootstrap failed.
    ready: Option<Result<(), String>>,
    closed: bool,
    /// An `associate()` promise waiting for RELAY_ASSOCIATE to be sent (or refused).
    assoc_waiter: Option<Settle>,
}

/// Run `f` on the state, then the engine loop, then the collected JS calls.
fn enter<T>(rc: &Rc<RefCell<Inner>>, f: impl FnOnce(&mut Inner, u64) -> T) -> Result<T, JsError> {
    let mut calls = Vec::new();
    let out = {
        let Ok(mut inner) = rc.try_borrow_mut() else {
            return Err(JsError::new("TorClient called re-entrantly"));
        };
        let now = now_ms();
        let out = f(&mut inner, now);
        inner.run(now, &mut calls);
        out
    };
    for Call::Call(f, arg) in calls {
        let _ = f.call1(&JsValue::UNDEFINED, &arg);
    }
    Ok(out)
}

impl Inner {
    /// Drain actions and events until the engine is quiet, then re-arm the timer.
    fn run(&mut self, now: u64, calls: &mut Vec<Call>) {
        loop {
            let mut busy = false;
            while let Some(a) = self.engine.poll_action() {
                busy = true;
                self.act(now, a);
            }
            while let Some(e) = self.engine.poll_event() {
                busy = true;
                self.deliver(now, e, calls);
            }
            if !busy {
                break;
            }
        }
        self.rearm(now);
    }

    /// Perform one action.
    fn act(&mut self, now: u64, a: Action) {
        match a {
            Action::Connect { conn, transport } => match transport {
                Transport::WebSocket(url) => {
                    match WsConn::open(url.as_str(), ws_handler(self.me.clone(), conn)) {
                        Ok(c) => {
                            self.conns.insert(conn, c);
                        }
                        Err(e) => self.engine.on_closed(conn, now, &e),
                    }
                }
                Transport::Tls(_) => self.engine.on_closed(
                    conn,
                    now,
                    "a browser cannot open Tor link TLS connections",
                ),
            },
            Action::Send { conn, data } => {
                let res = match self.conns.get(&conn) {
                    Some(c) => c.send(&data),
                    None => Ok(()),
                };
                if let Err(e) = res {
                    self.conns.remove(&conn);
                    self.engine.on_closed(conn, now, &e);
                }
            }
            Action::Close { conn } => {
                self.conns.remove(&conn);
            }
        }
    }

    /// Deliver one event: stream events to their slots, the rest to the user's callback.
    fn deliver(&mut self, now: u64, e: Event, calls: &mut Vec<Call>) {
        if let Some(js) = convert::event(&e)
            && let Some(f) = &self.on_event
        {
            calls.push(Call::Call(f.clone(), js));
        }
        if let Some(js) = seed_event(&e) {
            if let Some(f) = &self.on_event {
                calls.push(Call::Call(f.clone(), js.clone()));
            }
            match &e {
                Event::Associated { .. } => {
                    if let Some(w) = self.assoc_waiter.take() {
                        calls.push(Call::Call(w.resolve, js));
                    }
                }
                Event::AssociateRefused { fake_domain } => {
                    if let Some(w) = self.assoc_waiter.take() {
                        let msg = format!("the OR refused the fake domain {fake_domain}");
                        calls.push(Call::Call(w.reject, js_error(&msg)));
                    }
                }
                Event::AssociationClosed { reason, .. } => {
                    if let Some(w) = self.assoc_waiter.take() {
                        let msg = format!("association failed: {reason}");
                        calls.push(Call::Call(w.reject, js_error(&msg)));
                    }
                }
                _ => {}
            }
            return;
        }
        match e {
            Event::Ready => {
                self.ready = Some(Ok(()));
                for w in self.ready_waiters.drain(..) {
                    calls.push(Call::Call(w.resolve, JsValue::UNDEFINED));
                }
            }
            Event::BootstrapFailed { error } => {
                let msg = error.to_string();
                for w in self.ready_waiters.drain(..) {
                    calls.push(Call::Call(w.reject, js_error(&msg)));
                }
                self.ready = Some(Err(msg));
            }
            Event::StreamConnected { stream } => {
                if let Some(s) = self.streams.get_mut(&stream.0) {
                    s.connected = true;
                    for w in s.on_connect.drain(..) {
                        calls.push(Call::Call(w.resolve, JsValue::UNDEFINED));
                    }
                }
                self.push_write(now, stream, calls);
            }
            Event::StreamData { stream, data } => match self.streams.get_mut(&stream.0) {
                Some(s) => match s.reader.take() {
                    Some(r) => {
                        let n = data.len();
                        calls.push(Call::Call(r.resolve, Uint8Array::from(&data[..]).into()));
                        self.engine.stream_consumed(now, stream, n);
                    }
                    None => s.queue.push_back(data),
                },
                // Closed by the user: nobody will read it.
                None => self.engine.stream_consumed(now, stream, data.len()),
            },
            Event::StreamWritable { stream } => self.push_write(now, stream, calls),
            Event::Resolved { stream, answers } => {
                if let Some(s) = self.streams.get_mut(&stream.0) {
                    let a = convert::answers(&answers);
                    for w in s.on_connect.drain(..) {
                        calls.push(Call::Call(w.resolve, a.clone().into()));
                    }
                    s.resolved = Some(a);
                }
            }
            Event::StreamEnded { stream, error } => {
                if let Some(s) = self.streams.get_mut(&stream.0) {
                    let why = error.map(|e| e.to_string());
                    let msg = why.clone().unwrap_or_else(|| "the stream ended".into());
                    for w in s.on_connect.drain(..) {
                        calls.push(Call::Call(w.reject, js_error(&msg)));
                    }
                    if let Some((_, w)) = s.writer.take() {
                        calls.push(Call::Call(w.reject, js_error(&msg)));
                    }
                    if s.queue.is_empty()
                        && let Some(r) = s.reader.take()
                    {
                        match &why {
                            None => calls.push(Call::Call(r.resolve, JsValue::UNDEFINED)),
                            Some(m) => calls.push(Call::Call(r.reject, js_error(m))),
                        }
                    }
                    s.ended = Some(why);
                }
            }
            _ => {}
        }
    }

    /// Offer a pending write's remaining bytes to the engine.
    fn push_write(&mut self, now: u64, stream: StreamHandle, calls: &mut Vec<Call>) {
        let Some(s) = self.streams.get_mut(&stream.0) else {
            return;
        };
        let Some((mut rest, w)) = s.writer.take() else {
            return;
        };
        match self.engine.stream_write(now, stream, &rest) {
            Ok(n) => {
                rest.drain(..n.min(rest.len()));
                if rest.is_empty() {
                    calls.push(Call::Call(w.resolve, JsValue::UNDEFINED));
                } else {
                    s.writer = Some((rest, w));
                }
            }
            Err(e) => calls.push(Call::Call(w.reject, js_error(&e.to_string()))),
        }
    }

    /// One timer at the engine's earliest deadline.
    fn rearm(&mut self, now: u64) {
        let want = if self.closed {
            None
        } else {
            self.engine.poll_timeout()
        };
        if want == self.timer.as_ref().map(|t| t.at) {
            return;
        }
        self.timer = None;
        if let (Some(at), Some(f)) = (want, &self.timer_fn) {
            self.timer = Some(Timer::start(f.as_ref().unchecked_ref(), at, now));
        }
    }
}

/// A JavaScript `Error` with this message.
/// The seed's events as `{ type, ... }` objects: `associated { fakeDomain, circuit }`,
/// `associateRefused { fakeDomain }`, `seedRequestDone { requestId, target, bytesIn,
/// bytesOut, error }`, `associationClosed { fakeDomain, reason }`.
fn seed_event(e: &Event) -> Option<JsValue> {
    let o = js_sys::Object::new();
    let set = |k: &str, v: JsValue| {
        let _ = js_sys::Reflect::set(&o, &JsValue::from_str(k), &v);
    };
    match e {
        Event::Associated {
            fake_domain,
            circuit,
        } => {
            set("type", "associated".into());
            set("fakeDomain", fake_domain.as_str().into());
            set("circuit", (*circuit as f64).into());
        }
        Event::AssociateRefused { fake_domain } => {
            set("type", "associateRefused".into());
            set("fakeDomain", fake_domain.as_str().into());
        }
        Event::SeedRequestDone {
            request_id,
            target,
            bytes_in,
            bytes_out,
            error,
        } => {
            set("type", "seedRequestDone".into());
            set("requestId", request_id.as_str().into());
            set("target", target.as_str().into());
            set("bytesIn", (*bytes_in as f64).into());
            set("bytesOut", (*bytes_out as f64).into());
            set(
                "error",
                error.as_deref().map_or(JsValue::NULL, JsValue::from_str),
            );
        }
        Event::AssociationClosed {
            fake_domain,
            reason,
        } => {
            set("type", "associationClosed".into());
            set("fakeDomain", fake_domain.as_str().into());
            set("reason", reason.as_str().into());
        }
        _ => return None,
    }
    Some(o.into())
}

fn js_error(msg: &str) -> JsValue {
    js_sys::Error::new(msg).into()
}

/// The handler of connection `conn`'s WebSocket events.
fn ws_handler(me: Weak<RefCell<Inner>>, conn: ConnId) -> Rc<dyn Fn(WsEvent)> {
    Rc::new(move |ev: WsEvent| {
        let Some(rc) = me.upgrade() else {
            return;
        };
        let _ = enter(&rc, |inner, now| {
            if !inner.conns.contains_key(&conn) {
                return; // closed by the engine, or already reported
            }
            match ev {
                WsEvent::Open => inner.engine.on_connected(conn, now, TlsBinding::None),
                WsEvent::Data(d) => inner.engine.on_data(conn, now, &d),
                WsEvent::Closed(why) => {
                    inner.conns.remove(&conn);
                    inner.engine.on_closed(conn, now, &why);
                }
            }
        });
    })
}

/// The browser Onion Proxy's low-level interface, wrapped by the package's `TorClient`
/// (`index.js`), which turns its streams into WHATWG streams and implements `fetch`.
#[wasm_bindgen]
pub struct Client {
    inner: Rc<RefCell<Inner>>,
}

/// A stream id as JavaScript sees it.
fn handle(id: u32) -> StreamHandle {
    StreamHandle(u64::from(id))
}

#[wasm_bindgen]
impl Client {
    /// Start a client for `network` (the network description's JSON text) with `options`
    /// (see the package README); `onEvent` receives `{ type, ... }` objects: `bootstrap`,
    /// `ready`, `bootstrapFailed`, `circuitBuilt`, `circuitFailed`, `circuitClosed`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        network: &str,
        options: &JsValue,
        on_event: Option<Function>,
    ) -> Result<Client, JsError> {
        #[cfg(debug_assertions)]
        console_error_panic_hook::set_once();
        let desc = NetworkDescription::parse(network)
            .map_err(|e| JsError::new(&format!("network description: {e}")))?;
        let config = convert::engine_config(options)?;
        let now = now_ms();
        let engine = Engine::new(desc, config, UnwrapErr(SysRng), now)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let inner = Rc::new_cyclic(|me: &Weak<RefCell<Inner>>| {
            let weak = me.clone();
            let timer_fn = Closure::<dyn FnMut()>::new(move || {
                if let Some(rc) = weak.upgrade() {
                    let _ = enter(&rc, |inner, now| {
                        inner.timer = None;
                        inner.engine.handle_timeout(now);
                    });
                }
            });
            RefCell::new(Inner {
                engine,
                me: me.clone(),
                conns: BTreeMap::new(),
                streams: BTreeMap::new(),
                timer: None,
                timer_fn: Some(timer_fn),
                on_event,
                ready_waiters: Vec::new(),
                ready: None,
                closed: false,
                assoc_waiter: None,
            })
        });
        // The bootstrap's first actions; events reach the callback from the next tick on.
        let weak = Rc::downgrade(&inner);
        let kick = Closure::once_into_js(move || {
            if let Some(rc) = weak.upgrade() {
                let _ = enter(&rc, |_, _| ());
            }
        });
        crate::timer::queue_microtask(kick.unchecked_ref());
        Ok(Client { inner })
    }

    /// Resolves when the directory is verified (circuits can be built); rejects if the
    /// bootstrap fails.
    pub fn ready(&self) -> Promise {
        let (p, settle) = Settle::promise();
        let Some(settle) = settle else {
            return p;
        };
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            let _ = settle.reject.call1(&JsValue::UNDEFINED, &js_error("busy"));
            return p;
        };
        match &inner.ready {
            Some(Ok(())) => {
                let _ = settle.resolve.call0(&JsValue::UNDEFINED);
            }
            Some(Err(m)) => {
                let _ = settle.reject.call1(&JsValue::UNDEFINED, &js_error(m));
            }
            None => inner.ready_waiters.push(settle),
        }
        p
    }

    /// Whether the directory is verified.
    #[wasm_bindgen(js_name = isReady)]
    pub fn is_ready(&self) -> bool {
        self.inner
            .try_borrow()
            .map(|i| i.engine.is_ready())
            .unwrap_or(false)
    }

    /// Open a stream to `host:port` through a circuit (RELAY_BEGIN); returns its id at once.
    /// `connected(id)` tells when it is open.
    pub fn connect(
        &self,
        host: &str,
        port: u16,
        isolation: Option<String>,
    ) -> Result<u32, JsError> {
        let h = enter(&self.inner, |inner, now| {
            let h = inner
                .engine
                .connect(now, host, port, isolation.as_deref())?;
            inner.streams.insert(h.0, StreamSlot::default());
            Ok::<_, onion_core::engine::EngineError>(h)
        })?
        .map_err(|e| JsError::new(&e.to_string()))?;
        u32::try_from(h.0).map_err(|_| JsError::new("too many streams"))
    }

    /// Resolve `host` at an exit (RELAY_RESOLVE): a promise of an array of addresses.
    pub fn resolve(&self, host: &str, isolation: Option<String>) -> Promise {
        let (p, settle) = Settle::promise();
        let res = enter(&self.inner, |inner, now| {
            let h = inner.engine.resolve(now, host, isolation.as_deref())?;
            let mut slot = StreamSlot::default();
            slot.on_connect.extend(settle);
            inner.streams.insert(h.0, slot);
            Ok::<_, onion_core::engine::EngineError>(())
        });
        match res {
            Ok(Ok(())) => p,
            Ok(Err(e)) => Promise::reject(&js_error(&e.to_string())),
            Err(e) => Promise::reject(&e.into()),
        }
    }

    /// Resolves when stream `id` is open; rejects with the reason if it fails first.
    pub fn connected(&self, id: u32) -> Promise {
        let (p, settle) = Settle::promise();
        let Some(settle) = settle else {
            return p;
        };
        let res = enter(&self.inner, |inner, _| {
            match inner.streams.get_mut(&u64::from(id)) {
                None => Err("no such stream".to_owned()),
                Some(s) if s.connected => Ok(Some(settle)),
                Some(s) => match &s.ended {
                    Some(why) => Err(why.clone().unwrap_or_else(|| "the stream ended".into())),
                    None => {
                        s.on_connect.push(settle);
                        Ok(None)
                    }
                },
            }
        });
        match res {
            Ok(Ok(Some(s))) => {
                let _ = s.resolve.call0(&JsValue::UNDEFINED);
                p
            }
            Ok(Ok(None)) => p,
            Ok(Err(m)) => Promise::reject(&js_error(&m)),
            Err(e) => Promise::reject(&e.into()),
        }
    }

    /// The next bytes received on stream `id`: a `Uint8Array`, or `undefined` at a clean end;
    /// rejects if the stream failed. One read at a time.
    pub fn read(&self, id: u32) -> Promise {
        let (p, settle) = Settle::promise();
        let Some(settle) = settle else {
            return p;
        };
        let res = enter(&self.inner, |inner, now| {
            let Some(s) = inner.streams.get_mut(&u64::from(id)) else {
                return Err("no such stream".to_owned());
            };
            if !s.queue.is_empty() {
                // Everything queued (up to READ_MAX) in one array: one promise per cell would
                // cost more than the cell's crypto.
                let mut out = Vec::new();
                while let Some(front) = s.queue.front() {
                    if !out.is_empty() && out.len() + front.len() > READ_MAX {
                        break;
                    }
                    if let Some(chunk) = s.queue.pop_front() {
                        out.extend_from_slice(&chunk);
                    }
                }
                inner.engine.stream_consumed(now, handle(id), out.len());
                return Ok(Some(Uint8Array::from(&out[..]).into()));
            }
            match &s.ended {
                Some(None) => Ok(Some(JsValue::UNDEFINED)),
                Some(Some(why)) => Err(why.clone()),
                None if s.reader.is_some() => Err("a read is already pending".to_owned()),
                None => {
                    s.reader = Some(settle);
                    Ok(None)
                }
            }
        });
        match res {
            Ok(Ok(Some(v))) => Promise::resolve(&v),
            Ok(Ok(None)) => p,
            Ok(Err(m)) => Promise::reject(&js_error(&m)),
            Err(e) => Promise::reject(&e.into()),
        }
    }

    /// Send `data` on stream `id`; resolves when the engine has taken every byte (flow
    /// control applies). One write at a time.
    pub fn write(&self, id: u32, data: Vec<u8>) -> Promise {
        let (p, settle) = Settle::promise();
        let Some(settle) = settle else {
            return p;
        };
        let res = enter(&self.inner, |inner, now| {
            let Some(s) = inner.streams.get_mut(&u64::from(id)) else {
                return Err("no such stream".to_owned());
            };
            if let Some(why) = &s.ended {
                return Err(why.clone().unwrap_or_else(|| "the stream ended".into()));
            }
            if s.writer.is_some() {
                return Err("a write is already pending".to_owned());
            }
            s.writer = Some((data, settle));
            let mut calls = Vec::new();
            inner.push_write(now, handle(id), &mut calls);
            Ok(calls)
        });
        match res {
            Ok(Ok(calls)) => {
                for Call::Call(f, arg) in calls {
                    let _ = f.call1(&JsValue::UNDEFINED, &arg);
                }
                p
            }
            Ok(Err(m)) => Promise::reject(&js_error(&m)),
            Err(e) => Promise::reject(&e.into()),
        }
    }

    /// Close stream `id` (RELAY_END); pending reads end, unread data is dropped.
    #[wasm_bindgen(js_name = closeStream)]
    pub fn close_stream(&self, id: u32) -> Result<(), JsError> {
        let settles = enter(&self.inner, |inner, now| {
            let slot = inner.streams.remove(&u64::from(id));
            if let Some(s) = &slot {
                let unread: usize = s.queue.iter().map(Vec::len).sum();
                if unread > 0 {
                    inner.engine.stream_consumed(now, handle(id), unread);
                }
                if s.ended.is_none() {
                    inner.engine.stream_close(now, handle(id));
                }
            }
            slot
        })?;
        if let Some(s) = settles {
            if let Some(r) = s.reader {
                let _ = r.resolve.call0(&JsValue::UNDEFINED);
            }
            if let Some((_, w)) = s.writer {
                let _ = w
                    .reject
                    .call1(&JsValue::UNDEFINED, &js_error("stream closed"));
            }
            for w in s.on_connect {
                let _ = w
                    .reject
                    .call1(&JsValue::UNDEFINED, &js_error("stream closed"));
            }
        }
        Ok(())
    }

    /// The circuits, for display: `[{ id, purpose, path: [{ nickname, rsaId, addresses,
    /// handshake }], built, dirty, isolation, streams }]`.
    pub fn circuits(&self) -> Array {
        match self.inner.try_borrow() {
            Ok(inner) => inner
                .engine
                .circuits()
                .iter()
                .map(convert::circuit)
                .collect(),
            Err(_) => Array::new(),
        }
    }

    /// Relays known from the verified directory.
    #[wasm_bindgen(js_name = relayCount)]
    pub fn relay_count(&self) -> u32 {
        self.inner
            .try_borrow()
            .map(|i| u32::try_from(i.engine.relay_count()).unwrap_or(u32::MAX))
            .unwrap_or(0)
    }

    /// The seed's iAnonym mode: a one-hop circuit (CID) to the entry OR bound to
    /// `fake_domain` (RELAY_ASSOCIATE); the requests the OR's WS_OP_SOCKS listener relays for
    /// it are served through this client's circuits (`fake_domain` itself goes to
    /// `origin_host:origin_port`, `host.<fake_domain>` to `host`). Resolves with the
    /// `associated` event once RELAY_ASSOCIATE is sent; rejects if the OR refuses the domain
    /// or CID fails first.
    pub fn associate(
        &self,
        fake_domain: &str,
        origin_host: Option<String>,
        origin_port: Option<u16>,
    ) -> Promise {
        let (p, settle) = Settle::promise();
        let res = enter(&self.inner, |inner, now| {
            if inner.assoc_waiter.is_some() {
                return Err("an associate() is already waiting".to_owned());
            }
            let origin = match (&origin_host, origin_port) {
                (Some(h), Some(port)) => Some((h.as_str(), port)),
                (None, None) => None,
                _ => return Err("origin: host and port".to_owned()),
            };
            inner
                .engine
                .associate(now, fake_domain, origin)
                .map_err(|e| e.to_string())?;
            inner.assoc_waiter = settle;
            Ok(())
        });
        match res {
            Ok(Ok(())) => p,
            Ok(Err(e)) => Promise::reject(&js_error(&e)),
            Err(e) => Promise::reject(&e.into()),
        }
    }

    /// End the association (CID destroyed, its requests end).
    pub fn dissociate(&self) -> Result<(), JsError> {
        enter(&self.inner, |inner, now| inner.engine.dissociate(now))
    }

    /// The associated fake domain, while CID lives.
    #[wasm_bindgen(js_name = associatedDomain)]
    pub fn associated_domain(&self) -> Option<String> {
        self.inner
            .try_borrow()
            .ok()
            .and_then(|i| i.engine.associated_domain().map(str::to_owned))
    }

    /// New streams get fresh circuits; streams already open run to completion.
    #[wasm_bindgen(js_name = newIdentity)]
    pub fn new_identity(&self) -> Result<(), JsError> {
        enter(&self.inner, |inner, now| inner.engine.new_identity(now))
    }

    /// Close every circuit and connection; the client cannot be used afterwards.
    pub fn close(&self) -> Result<(), JsError> {
        enter(&self.inner, |inner, now| {
            inner.engine.close(now);
            inner.closed = true;
        })?;
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            inner.conns.clear();
            inner.timer = None;
            inner.on_event = None;
        }
        Ok(())
    }
}
