//! The core's HTTP/1.1 client (`onion_core::http`) for the package's `fetch`: requests are
//! built and responses parsed in Rust, the one HTTP parser of the project.

use js_sys::{Array, Object, Reflect, Uint8Array};
use onion_core::http::{HttpEvent, LAST_CHUNK, Limits, Request, ResponseParser, encode_chunk};
use wasm_bindgen::prelude::*;

/// `obj[key] = value` on a plain object.
fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

/// The bytes of an HTTP/1.1 request: `method` (any token but `CONNECT`/`TRACE`), `Host: host`,
/// `path` (with the query), then `headers`, an array of `[name, value]` pairs
/// (`Content-Length`, `Transfer-Encoding` and `Host` are refused: the request sets them).
/// With `body` the bytes follow with `Content-Length`; with `chunked` only the head is
/// returned, with `Transfer-Encoding: chunked`, and the caller sends [`encode_chunk_js`]
/// pieces then [`last_chunk`].
#[wasm_bindgen(js_name = buildRequest)]
pub fn build_request(
    method: &str,
    host: &str,
    path: &str,
    headers: Array,
    body: Option<Vec<u8>>,
    chunked: bool,
) -> Result<Vec<u8>, JsError> {
    let mut req = Request::new(method, host, path).map_err(|e| JsError::new(&e.to_string()))?;
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
    req = match (body, chunked) {
        (Some(_), true) => return Err(JsError::new("a body is either given or chunked")),
        (Some(b), false) => req.body(b),
        (None, true) => req.chunked(),
        (None, false) => req,
    };
    Ok(req.to_bytes())
}

/// One chunk of a chunked request body (nothing for empty data).
#[wasm_bindgen(js_name = encodeChunk)]
pub fn encode_chunk_js(data: &[u8]) -> Vec<u8> {
    encode_chunk(data)
}

/// The chunk that ends a chunked request body.
#[wasm_bindgen(js_name = lastChunk)]
pub fn last_chunk() -> Vec<u8> {
    LAST_CHUNK.to_vec()
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

    /// Whether the connection may carry the next request (the response is complete, its
    /// end was not the close, and the server did not ask to close).
    pub fn reusable(&self) -> bool {
        self.inner.reusable()
    }
}
