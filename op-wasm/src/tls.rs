//! TLS inside wasm for `https:` through Tor: rustls (ring provider) as a sans-IO client whose
//! records travel in a Tor stream, so the exit relays only ciphertext. Roots: the caller's
//! certificates, else the bundled web PKI roots (webpki-roots).

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use js_sys::{Array, Uint8Array};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use wasm_bindgen::prelude::*;

/// A TLS client session fed with the bytes of a Tor stream.
#[wasm_bindgen]
pub struct TlsClient {
    conn: ClientConnection,
}

fn js_err(what: &str, e: impl std::fmt::Display) -> JsError {
    JsError::new(&format!("TLS {what}: {e}"))
}

#[wasm_bindgen]
impl TlsClient {
    /// A session with `serverName` (a DNS name or an IP address) trusting `roots`, an array of
    /// DER certificates (`Uint8Array`); an empty array means the bundled web PKI roots.
    #[wasm_bindgen(constructor)]
    pub fn new(server_name: &str, roots: Array) -> Result<TlsClient, JsError> {
        let mut store = RootCertStore::empty();
        for der in roots.iter() {
            let der = Uint8Array::new(&der).to_vec();
            store
                .add(CertificateDer::from(der))
                .map_err(|e| js_err("root certificate", e))?;
        }
        if store.is_empty() {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| js_err("configuration", e))?
            .with_root_certificates(store)
            .with_no_client_auth();
        let name =
            ServerName::try_from(server_name.to_owned()).map_err(|e| js_err("server name", e))?;
        let conn =
            ClientConnection::new(Arc::new(config), name).map_err(|e| js_err("session", e))?;
        Ok(TlsClient { conn })
    }

    /// TLS records to send to the server now (maybe empty).
    #[wasm_bindgen(js_name = takeOutgoing)]
    pub fn take_outgoing(&mut self) -> Result<Vec<u8>, JsError> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn
                .write_tls(&mut out)
                .map_err(|e| js_err("write", e))?;
        }
        Ok(out)
    }

    /// Bytes received from the server: returns the plaintext they complete (maybe empty).
    /// Throws on a TLS error (bad certificate, bad record, alert).
    pub fn receive(&mut self, data: &[u8]) -> Result<Vec<u8>, JsError> {
        let mut rest = data;
        let mut plain = Vec::new();
        // Each read_tls takes at most one buffer's worth; the plaintext it completes is drained
        // at once, so rustls' received-plaintext limit is never reached.
        while !rest.is_empty() {
            let n = self
                .conn
                .read_tls(&mut rest)
                .map_err(|e| js_err("read", e))?;
            self.conn
                .process_new_packets()
                .map_err(|e| js_err("error", e))?;
            self.drain(&mut plain)?;
            if n == 0 {
                break;
            }
        }
        Ok(plain)
    }

    /// Plaintext to send (encrypted into records; take them with `takeOutgoing`).
    pub fn send(&mut self, data: &[u8]) -> Result<(), JsError> {
        self.conn
            .writer()
            .write_all(data)
            .map_err(|e| js_err("send", e))
    }

    /// Whether the handshake is still running.
    #[wasm_bindgen(js_name = isHandshaking)]
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Start a clean close (close_notify; take it with `takeOutgoing`).
    #[wasm_bindgen(js_name = closeNotify)]
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

impl TlsClient {
    /// Move readable plaintext into `out`.
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), JsError> {
        let mut buf = [0u8; 16 << 10];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(js_err("read", e)),
            }
        }
    }
}
