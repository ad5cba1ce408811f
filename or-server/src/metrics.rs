//! Prometheus metrics and the `GET /metrics` endpoint.
//!
//! Every metric is prefixed `or_`; counters get the `_total` suffix in the exposition:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `or_links_open` | gauge | `kind` = `ws`, `wss`, `tls_in`, `tls_out` |
//! | `or_links_opened_total` | counter | `kind` |
//! | `or_links_refused_total` | counter (over `limits.max_links`) | |
//! | `or_circuits_open` | gauge | |
//! | `or_streams_open` | gauge | |
//! | `or_bytes_received_total`, `or_bytes_sent_total` | counter (link bytes, after TLS/WebSocket framing is removed) | |
//! | `or_cells_received_total`, `or_cells_sent_total` | counter | |
//! | `or_handshake_failures_total` | counter | `handshake` = `tap`, `fast`, `fast_ws`, `ntor`, `ntor_v3` |
//!
//! No metric carries an address or an identity.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;

/// Content type of the exposition (OpenMetrics text, as `prometheus-client` writes it).
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Most simultaneous connections to the endpoint; more are closed at once.
pub const MAX_METRICS_CONNECTIONS: usize = 16;
/// Time allowed for a request's headers.
pub const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// Plain WebSocket from an in-page OP.
    Ws,
    /// WebSocket over TLS from an in-page OP.
    Wss,
    /// Tor link (TLS) accepted on the ORPort.
    TlsIn,
    /// Tor link (TLS) opened by this relay (EXTEND).
    TlsOut,
}

impl LinkKind {
    /// Every kind.
    pub const ALL: [LinkKind; 4] = [
        LinkKind::Ws,
        LinkKind::Wss,
        LinkKind::TlsIn,
        LinkKind::TlsOut,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Ws => "ws",
            LinkKind::Wss => "wss",
            LinkKind::TlsIn => "tls_in",
            LinkKind::TlsOut => "tls_out",
        }
    }
}

impl EncodeLabelValue for LinkKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// A circuit handshake type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeKind {
    /// TAP (CREATE, or CREATE2 type 0).
    Tap,
    /// CREATE_FAST.
    Fast,
    /// The seed's CREATE_FAST_WS.
    FastWs,
    /// ntor (CREATE2 type 2).
    Ntor,
    /// ntor-v3 (CREATE2 type 3).
    NtorV3,
}

impl HandshakeKind {
    /// Every kind.
    pub const ALL: [HandshakeKind; 5] = [
        HandshakeKind::Tap,
        HandshakeKind::Fast,
        HandshakeKind::FastWs,
        HandshakeKind::Ntor,
        HandshakeKind::NtorV3,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeKind::Tap => "tap",
            HandshakeKind::Fast => "fast",
            HandshakeKind::FastWs => "fast_ws",
            HandshakeKind::Ntor => "ntor",
            HandshakeKind::NtorV3 => "ntor_v3",
        }
    }
}

impl EncodeLabelValue for HandshakeKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Labels of the link metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LinkLabels {
    /// The transport.
    pub kind: LinkKind,
}

/// Labels of the handshake metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// The handshake type.
    pub handshake: HandshakeKind,
}

/// The OR's metrics. Share it in an [`Arc`]; every field is updated lock-free.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    links_open: Family<LinkLabels, Gauge>,
    links_opened: Family<LinkLabels, Counter>,
    /// Links closed at once because `limits.max_links` were open.
    pub links_refused: Counter,
    /// Circuits open.
    pub circuits_open: Gauge,
    /// Streams open.
    pub streams_open: Gauge,
    /// Bytes received on links.
    pub bytes_received: Counter,
    /// Bytes sent on links.
    pub bytes_sent: Counter,
    /// Cells received on links.
    pub cells_received: Counter,
    /// Cells sent on links.
    pub cells_sent: Counter,
    handshake_failures: Family<HandshakeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero (every label value present).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("or");
        let links_open = Family::<LinkLabels, Gauge>::default();
        let links_opened = Family::<LinkLabels, Counter>::default();
        let handshake_failures = Family::<HandshakeLabels, Counter>::default();
        for kind in LinkKind::ALL {
            let _ = links_open.get_or_create(&LinkLabels { kind });
            let _ = links_opened.get_or_create(&LinkLabels { kind });
        }
        for handshake in HandshakeKind::ALL {
            let _ = handshake_failures.get_or_create(&HandshakeLabels { handshake });
        }
        let m = Metrics {
            registry: Registry::default(),
            links_open,
            links_opened,
            links_refused: Counter::default(),
            circuits_open: Gauge::default(),
            streams_open: Gauge::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            cells_received: Counter::default(),
            cells_sent: Counter::default(),
            handshake_failures,
        };
        registry.register(
            "links_open",
            "Links open, by transport",
            m.links_open.clone(),
        );
        registry.register(
            "links_opened",
            "Links opened, by transport",
            m.links_opened.clone(),
        );
        registry.register(
            "links_refused",
            "Links closed at once because the link limit was reached",
            m.links_refused.clone(),
        );
        registry.register("circuits_open", "Circuits open", m.circuits_open.clone());
        registry.register("streams_open", "Streams open", m.streams_open.clone());
        registry.register(
            "bytes_received",
            "Bytes received on links",
            m.bytes_received.clone(),
        );
        registry.register("bytes_sent", "Bytes sent on links", m.bytes_sent.clone());
        registry.register(
            "cells_received",
            "Cells received on links",
            m.cells_received.clone(),
        );
        registry.register("cells_sent", "Cells sent on links", m.cells_sent.clone());
        registry.register(
            "handshake_failures",
            "Failed circuit handshakes, by type",
            m.handshake_failures.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Count a link as open until the returned guard is dropped (and as opened).
    pub fn link_opened(&self, kind: LinkKind) -> LinkGuard {
        let labels = LinkLabels { kind };
        self.links_opened.get_or_create(&labels).inc();
        let gauge = self.links_open.get_or_create(&labels).clone();
        gauge.inc();
        LinkGuard(gauge)
    }

    /// The number of open links of `kind`.
    pub fn links_open(&self, kind: LinkKind) -> i64 {
        self.links_open.get_or_create(&LinkLabels { kind }).get()
    }

    /// Count a failed circuit handshake.
    pub fn handshake_failed(&self, handshake: HandshakeKind) {
        self.handshake_failures
            .get_or_create(&HandshakeLabels { handshake })
            .inc();
    }

    /// The number of failed handshakes of `handshake`.
    pub fn handshake_failures(&self, handshake: HandshakeKind) -> u64 {
        self.handshake_failures
            .get_or_create(&HandshakeLabels { handshake })
            .get()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Keeps a link counted in `or_links_open` until dropped.
#[derive(Debug)]
pub struct LinkGuard(Gauge);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Bind the metrics endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve `GET /metrics` on `listener` until `shutdown`. Other paths get 404, other methods
/// 405. At most [`MAX_METRICS_CONNECTIONS`] connections at once.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(MAX_METRICS_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = shutdown.wait() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!("metrics endpoint: accept failed: {e}");
                // Out of descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, Infallible>(respond(&req, &metrics)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(METRICS_HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.wait() => {}
                r = conn => if let Err(e) = r {
                    tracing::debug!("metrics endpoint: {e}");
                }
            }
            drop(permit);
        });
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let text = |status, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    match metrics.encode() {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
            );
            r
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Send a raw HTTP/1.1 request and read the whole response (the request asks the server
    /// to close the connection).
    async fn raw_request(addr: SocketAddr, method: &str, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

    /// The value of the sample line `name` (with labels), if present.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn exposition_lists_every_series_at_zero() {
        let m = Metrics::new();
        let text = m.encode().unwrap();
        for kind in ["ws", "wss", "tls_in", "tls_out"] {
            assert_eq!(
                sample(&text, &format!("or_links_open{{kind=\"{kind}\"}}")),
                Some(0.0),
                "{text}"
            );
            assert_eq!(
                sample(&text, &format!("or_links_opened_total{{kind=\"{kind}\"}}")),
                Some(0.0)
            );
        }
        for hs in ["tap", "fast", "fast_ws", "ntor", "ntor_v3"] {
            assert_eq!(
                sample(
                    &text,
                    &format!("or_handshake_failures_total{{handshake=\"{hs}\"}}")
                ),
                Some(0.0)
            );
        }
        for name in [
            "or_links_refused_total",
            "or_circuits_open",
            "or_streams_open",
            "or_bytes_received_total",
            "or_bytes_sent_total",
            "or_cells_received_total",
            "or_cells_sent_total",
        ] {
            assert_eq!(sample(&text, name), Some(0.0), "{name}");
        }
        assert!(text.contains("# TYPE or_links_open gauge"));
        assert!(text.contains("# TYPE or_handshake_failures counter"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn updates_show_in_the_exposition() {
        let m = Metrics::new();
        let a = m.link_opened(LinkKind::Ws);
        let b = m.link_opened(LinkKind::Ws);
        let c = m.link_opened(LinkKind::TlsOut);
        drop(a);
        assert_eq!(m.links_open(LinkKind::Ws), 1);
        m.handshake_failed(HandshakeKind::NtorV3);
        m.handshake_failed(HandshakeKind::NtorV3);
        m.handshake_failed(HandshakeKind::Tap);
        m.circuits_open.inc_by(3);
        m.streams_open.inc();
        m.bytes_received.inc_by(514);
        m.bytes_sent.inc_by(1028);
        m.cells_received.inc();
        m.cells_sent.inc_by(2);
        m.links_refused.inc();
        let text = m.encode().unwrap();
        assert_eq!(sample(&text, "or_links_open{kind=\"ws\"}"), Some(1.0));
        assert_eq!(
            sample(&text, "or_links_opened_total{kind=\"ws\"}"),
            Some(2.0)
        );
        assert_eq!(sample(&text, "or_links_open{kind=\"tls_out\"}"), Some(1.0));
        assert_eq!(sample(&text, "or_links_open{kind=\"tls_in\"}"), Some(0.0));
        assert_eq!(
            sample(&text, "or_handshake_failures_total{handshake=\"ntor_v3\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "or_handshake_failures_total{handshake=\"tap\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "or_handshake_failures_total{handshake=\"ntor\"}"),
            Some(0.0)
        );
        assert_eq!(m.handshake_failures(HandshakeKind::NtorV3), 2);
        assert_eq!(sample(&text, "or_circuits_open"), Some(3.0));
        assert_eq!(sample(&text, "or_streams_open"), Some(1.0));
        assert_eq!(sample(&text, "or_bytes_received_total"), Some(514.0));
        assert_eq!(sample(&text, "or_bytes_sent_total"), Some(1028.0));
        assert_eq!(sample(&text, "or_cells_received_total"), Some(1.0));
        assert_eq!(sample(&text, "or_cells_sent_total"), Some(2.0));
        assert_eq!(sample(&text, "or_links_refused_total"), Some(1.0));
        drop((b, c));
        assert_eq!(m.links_open(LinkKind::Ws), 0);
        assert_eq!(m.links_open(LinkKind::TlsOut), 0);
    }

    #[tokio::test]
    async fn endpoint_serves_get_metrics_over_loopback() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        metrics.cells_received.inc_by(42);
        let _guard = metrics.link_opened(LinkKind::Wss);
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), shutdown));

        let resp = raw_request(addr, "GET", "/metrics").await;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {CONTENT_TYPE_OPENMETRICS}")),
            "{head}"
        );
        assert_eq!(
            sample(body, "or_cells_received_total"),
            Some(42.0),
            "{body}"
        );
        assert_eq!(sample(body, "or_links_open{kind=\"wss\"}"), Some(1.0));
        assert!(body.ends_with("# EOF\n"));

        // Later updates are seen by later scrapes.
        metrics.cells_received.inc();
        let resp = raw_request(addr, "GET", "/metrics").await;
        assert_eq!(sample(&resp, "or_cells_received_total"), Some(43.0));

        let resp = raw_request(addr, "GET", "/").await;
        assert!(resp.starts_with("HTTP/1.1 404 Not Found\r\n"), "{resp}");
        let resp = raw_request(addr, "POST", "/metrics").await;
        assert!(
            resp.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{resp}"
        );
        assert!(resp.to_ascii_lowercase().contains("allow: get"), "{resp}");
        // Garbage gets a 400 and does not stop the server.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.starts_with(b"HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let resp = raw_request(addr, "GET", "/metrics").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"));

        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "listener closed after shutdown"
        );
    }
}
