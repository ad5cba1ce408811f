//! The global `setTimeout` / `clearTimeout` (present in a Window and in a Worker) and the
//! wall clock.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, timeout: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
    /// `queueMicrotask(f)`: run `f` after the current task.
    #[wasm_bindgen(js_name = queueMicrotask)]
    pub(crate) fn queue_microtask(f: &js_sys::Function);
}

/// Wall-clock milliseconds since the Unix epoch (`Date.now()`).
pub(crate) fn now_ms() -> u64 {
    let t = js_sys::Date::now();
    if t.is_finite() && t > 0.0 {
        // Whole milliseconds; Date.now() is far below 2^53.
        t as u64
    } else {
        0
    }
}

/// One pending `setTimeout`.
pub(crate) struct Timer {
    /// When it fires (engine time).
    pub(crate) at: u64,
    handle: JsValue,
}

impl Timer {
    /// Call `handler` at `at` (now or later).
    pub(crate) fn start(handler: &js_sys::Function, at: u64, now: u64) -> Self {
        let delay = i32::try_from(at.saturating_sub(now)).unwrap_or(i32::MAX);
        Timer {
            at,
            handle: set_timeout(handler, delay),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        clear_timeout(&self.handle);
    }
}
