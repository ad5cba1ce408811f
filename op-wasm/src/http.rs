//! The core's HTTP/1.1 client (`onion_core::http`) for the package's `fetch`: requests are
//! built and responses parsed in Rust, the one HTTP parser of the project.

use js_sys::{Array, Object, Reflect, Uint8Array};
use onion_core::http::{HttpEvent, Limits, Request, ResponseParser};
use wasm_bindgen::prelude::*;

/// `obj[key] = value` on a plain object.
fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// The bytes of an HTTP/1.1 request: `method` (only `GET` so far), `Host: host`, `path` (with
/// the query), then `headers`, an array of `[name, value]` pairs.
#[wasm_bindgen(js_name = buildRequest)]
pub fn build_request(
    method: &str,
    host: &str,
    path: &str,
    headers: Array,
) -> Result<Vec<u8>, JsError> {
    if method != "GET" {
        return Err(JsError::new(&format!(
            "method {method} is not supported yet (GET only)"
        )));
    }
    let mut req = Request::get(host, path).map_err(|e| JsError::new(&e.to_string()))?;
    for pair in headers.iter() {
        let pair = Array::from(&pair);
        let (Some(name), Some(value)) = (pair.get(0).as_string(), pair.get(1).as_string()) else {
            return Err(JsError::new(
                "headers must be [name, value] pairs of strings",
            ));
        };
        req = req
            .header(&name, &value)
            .map_err(|e| JsError::new(&e.to_string()))?;
    }
    Ok(req.to_bytes())
}

/// An incremental HTTP/1.1 response parser: feed it the stream's bytes, get events
/// `{ kind: "head", status, statusText, headers: [[name, value]] }`, `{ kind: "body", data }`,
/// `{ kind: "end" }`. Header values are decoded as Latin-1, as browsers do.
#[wasm_bindgen]
pub struct HttpResponseParser {
    inner: ResponseParser,
}

/// The JS form of parser events.
fn events(evs: Vec<HttpEvent>) -> Array {
    let out = Array::new();
    for e in evs {
        let o = Object::new();
        match e {
            HttpEvent::Head(h) => {
                set(&o, "kind", "head");
                set(&o, "status", h.status);
                set(&o, "statusText", h.reason.as_str());
                let headers: Array = h
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        let latin1: String = v.iter().map(|&b| char::from(b)).collect();
                        JsValue::from(Array::of2(&JsValue::from_str(n), &JsValue::from(latin1)))
                    })
                    .collect();
                set(&o, "headers", headers);
            }
            HttpEvent::Body(b) => {
                set(&o, "kind", "body");
                set(&o, "data", Uint8Array::from(&b[..]));
            }
            HttpEvent::End => set(&o, "kind", "end"),
        }
        out.push(&o);
    }
    out
}

#[wasm_bindgen]
impl HttpResponseParser {
    /// A parser for the response to a request (`headRequest`: a HEAD, no body); the body may
    /// be at most `maxBody` bytes.
    #[wasm_bindgen(constructor)]
    pub fn new(head_request: bool, max_body: f64) -> HttpResponseParser {
        let max_body = if max_body.is_finite() && max_body >= 0.0 {
            max_body as u64
        } else {
            u64::MAX
        };
        let limits = Limits {
            max_body,
            ..Limits::default()
        };
        HttpResponseParser {
            inner: if head_request {
                ResponseParser::for_head_request(limits)
            } else {
                ResponseParser::new(limits)
            },
        }
    }

    /// Parse more bytes of the response.
    pub fn feed(&mut self, data: &[u8]) -> Result<Array, JsError> {
        self.inner
            .feed(data)
            .map(events)
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// The stream ended: the last events (the end of a body delimited by the close), or an
    /// error if the response is truncated.
    pub fn finish(&mut self) -> Result<Array, JsError> {
        self.inner
            .finish()
            .map(events)
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// Whether the response is complete.
    #[wasm_bindgen(js_name = isDone)]
    pub fn is_done(&self) -> bool {
        self.inner.is_done()
    }
}
