//! Conversions between JavaScript values and the engine's types: options in, events and
//! circuit descriptions out. Names on the JavaScript side are camelCase.

use js_sys::{Array, Object, Reflect};
use onion_core::engine::{
    CircuitInfo, CircuitPurpose, EngineConfig, Event, HopInfo, ResolvedAnswer, ResolvedValue,
    Transports,
};
use wasm_bindgen::prelude::*;

/// `obj[key] = value` on an object we just created (cannot fail for plain objects).
fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// `opts[key]` if it is present and not `undefined`/`null`.
fn get(opts: &JsValue, key: &str) -> Option<JsValue> {
    if !opts.is_object() {
        return None;
    }
    Reflect::get(opts, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// A non-negative whole number option.
fn get_uint(opts: &JsValue, key: &str) -> Result<Option<u64>, JsError> {
    match get(opts, key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9.0e15 => {
                Ok(Some(n as u64))
            }
            _ => Err(JsError::new(&format!(
                "option {key} must be a non-negative integer"
            ))),
        },
    }
}

/// A boolean option.
fn get_bool(opts: &JsValue, key: &str) -> Result<Option<bool>, JsError> {
    match get(opts, key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| JsError::new(&format!("option {key} must be a boolean"))),
    }
}

/// The engine settings from `TorClient.create`'s options: `hops`, `circuits` (pool size),
/// `circuitLifetime` and `circuitKeepalive` (ms), `oneCircuit`, `createFastWs`,
/// `useRelayInfo` (the seed's RELAY_INFO: hands TAP hops' keys to the entry OR),
/// `hopTimeout`, `connectTimeout`, `streamTimeout` (ms). WebSocket is the only transport.
pub(crate) fn engine_config(opts: &JsValue) -> Result<EngineConfig, JsError> {
    let mut c = EngineConfig {
        transports: Transports {
            ws: true,
            tls: false,
        },
        ..EngineConfig::default()
    };
    if let Some(h) = get_uint(opts, "hops")? {
        c.hops = u8::try_from(h).map_err(|_| JsError::new("hops must be 1 to 5"))?;
    }
    if let Some(n) = get_uint(opts, "circuits")? {
        c.pool_size = usize::try_from(n).map_err(|_| JsError::new("circuits is too large"))?;
    }
    if let Some(ms) = get_uint(opts, "circuitLifetime")? {
        c.circuit_lifetime_ms = ms;
    }
    if let Some(ms) = get_uint(opts, "circuitKeepalive")? {
        c.circuit_keepalive_ms = ms;
    }
    if let Some(ms) = get_uint(opts, "hopTimeout")? {
        c.hop_timeout_ms = ms;
    }
    if let Some(ms) = get_uint(opts, "connectTimeout")? {
        c.connect_timeout_ms = ms;
    }
    if let Some(ms) = get_uint(opts, "streamTimeout")? {
        c.stream_timeout_ms = ms;
    }
    if let Some(b) = get_bool(opts, "oneCircuit")? {
        c.one_circuit = b;
    }
    if let Some(b) = get_bool(opts, "createFastWs")? {
        c.create_fast_ws = b;
    }
    if let Some(b) = get_bool(opts, "useRelayInfo")? {
        c.use_relay_info = b;
    }
    c.check().map_err(|e| JsError::new(&e.to_string()))?;
    Ok(c)
}

/// `{ nickname, rsaId, addresses, handshake }`.
pub(crate) fn hop(h: &HopInfo) -> JsValue {
    let o = Object::new();
    set(&o, "nickname", h.nickname.as_str());
    set(&o, "rsaId", h.rsa_id.to_string());
    let addrs: Array = h.addresses.iter().map(|a| JsValue::from_str(a)).collect();
    set(&o, "addresses", addrs);
    match h.handshake {
        Some(k) => set(&o, "handshake", k.to_string()),
        None => set(&o, "handshake", JsValue::NULL),
    }
    o.into()
}

/// An array of hops.
pub(crate) fn path(hops: &[HopInfo]) -> Array {
    hops.iter().map(hop).collect()
}

/// `{ id, purpose: "exit" | "directory" | "seed", path, built, dirty, isolation, streams }`.
pub(crate) fn circuit(c: &CircuitInfo) -> JsValue {
    let o = Object::new();
    set(&o, "id", c.id as f64);
    set(
        &o,
        "purpose",
        match c.purpose {
            CircuitPurpose::Directory => "directory",
            CircuitPurpose::Exit => "exit",
            CircuitPurpose::Seed => "seed",
        },
    );
    set(&o, "path", path(&c.path));
    set(&o, "built", c.built);
    set(&o, "dirty", c.dirty);
    match &c.isolation {
        Some(i) => set(&o, "isolation", i.as_str()),
        None => set(&o, "isolation", JsValue::NULL),
    }
    set(&o, "streams", c.streams as f64);
    o.into()
}

/// The answers of a RESOLVED, as text (addresses and host names; errors are skipped).
pub(crate) fn answers(a: &[ResolvedAnswer]) -> Array {
    a.iter()
        .filter_map(|a| match &a.value {
            ResolvedValue::Hostname(h) => Some(JsValue::from_str(h)),
            ResolvedValue::Ipv4(ip) => Some(JsValue::from_str(&ip.to_string())),
            ResolvedValue::Ipv6(ip) => Some(JsValue::from_str(&ip.to_string())),
            _ => None,
        })
        .collect()
}

/// The user-visible form of an engine event, `{ type, ... }`, or `None` for stream events
/// (those go to the stream's reader and writer).
pub(crate) fn event(e: &Event) -> Option<JsValue> {
    let o = Object::new();
    match e {
        Event::Bootstrap { percent, phase } => {
            set(&o, "type", "bootstrap");
            set(&o, "percent", *percent);
            set(&o, "phase", phase.as_str());
        }
        Event::Ready => set(&o, "type", "ready"),
        Event::BootstrapFailed { error } => {
            set(&o, "type", "bootstrapFailed");
            set(&o, "error", error.to_string());
        }
        Event::CircuitBuilt { info } => {
            set(&o, "type", "circuitBuilt");
            set(&o, "circuit", circuit(info));
        }
        Event::CircuitFailed { path: p, error } => {
            set(&o, "type", "circuitFailed");
            set(&o, "path", path(p));
            set(&o, "error", error.as_str());
        }
        Event::CircuitClosed { id, reason } => {
            set(&o, "type", "circuitClosed");
            set(&o, "id", *id as f64);
            set(&o, "reason", reason.as_str());
        }
        _ => return None,
    }
    Some(o.into())
}
