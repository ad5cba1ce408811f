//! The browser WebSocket as a Tor link transport: binary messages of whole cells, received as
//! `ArrayBuffer`s; a bounded send buffer; the socket is closed when the connection is dropped.

use std::rc::Rc;

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

/// Most bytes the browser may hold unsent on one link (`WebSocket.bufferedAmount`) before the
/// link is treated as failed: the engine keeps producing cells only as fast as the windows
/// allow, so a socket this far behind is stuck.
pub(crate) const MAX_BUFFERED: u32 = 8 << 20;

/// What a WebSocket reports.
#[derive(Debug)]
pub(crate) enum WsEvent {
    /// The connection is open.
    Open,
    /// A binary message arrived.
    Data(Vec<u8>),
    /// The connection closed or failed (reported at most once per connection by the caller's
    /// bookkeeping; the browser may send both `error` and `close`).
    Closed(String),
}

/// One browser WebSocket and the handlers it calls.
pub(crate) struct WsConn {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl WsConn {
    /// Open a WebSocket to `url`; `handler` gets its events (from the browser's event loop,
    /// never from inside this call).
    pub(crate) fn open(url: &str, handler: Rc<dyn Fn(WsEvent)>) -> Result<Self, String> {
        let ws = WebSocket::new(url).map_err(|e| format!("cannot open {url}: {e:?}"))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let h = Rc::clone(&handler);
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| h(WsEvent::Open));
        let h = Rc::clone(&handler);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            match e.data().dyn_into::<ArrayBuffer>() {
                Ok(buf) => h(WsEvent::Data(Uint8Array::new(&buf).to_vec())),
                Err(_) => h(WsEvent::Closed("text message on a binary link".into())),
            }
        });
        let h = Rc::clone(&handler);
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            h(WsEvent::Closed(format!(
                "WebSocket closed (code {}{}{})",
                e.code(),
                if e.reason().is_empty() { "" } else { ": " },
                e.reason()
            )))
        });
        let h = handler;
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            h(WsEvent::Closed("WebSocket error".into()))
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(WsConn {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
        })
    }

    /// Send one binary message; fails when the browser's send buffer is over
    /// [`MAX_BUFFERED`] or the socket is not open.
    pub(crate) fn send(&self, data: &[u8]) -> Result<(), String> {
        if self.ws.buffered_amount() > MAX_BUFFERED {
            return Err("WebSocket send buffer full".into());
        }
        self.ws
            .send_with_u8_array(data)
            .map_err(|e| format!("WebSocket send failed: {e:?}"))
    }
}

impl Drop for WsConn {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}
