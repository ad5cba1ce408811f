//! `onion-op`: the native Onion Proxy, a SOCKS5 server in front of the client engine.
//!
//! ```text
//! onion-op --network FILE --socks 127.0.0.1:9150 [--hops N] [--circuits NB] [--one-or FP]
//!          [--no-pool] [--tls-only | --ws-only] [--handshake tap|ntor|ntor-v3|fast]
//!          [--associate DOMAIN [--origin HOST:PORT]] [--log LEVEL]
//! ```
//!
//! SOCKS5 (RFC 1928) CONNECT to host names, IPv4 and IPv6 addresses, Tor's RESOLVE (0xF0)
//! and RESOLVE_PTR (0xF1); username/password (RFC 1929) credentials isolate streams as tor's
//! `IsolateSOCKSAuth`: streams with different credentials never share a circuit. Failures are
//! SOCKS reply codes: exit policy 0x02, resolve failed 0x04, connection refused 0x05, timeout
//! 0x06, no route 0x03, anything else 0x01. A stream that fails after it was connected resets
//! the client's TCP connection.
//!
//! Once listening it prints `socks <address>` on stdout (so `--socks 127.0.0.1:0` can be used);
//! logs (bootstrap progress, circuits) go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use onion_core::certs::RsaIdentity;
use onion_core::engine::{EngineConfig, Transports};
use onion_core::handshake::HandshakeKind;
use onion_core::netdesc::NetworkDescription;
use onion_op::driver::OpClient;
use onion_op::driver::socks::serve_socks;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(name = "onion-op", version, about = "The native Onion Proxy (SOCKS5)")]
struct Cli {
    /// The network description (JSON, format version 1).
    #[arg(long, value_name = "FILE")]
    network: PathBuf,
    /// The SOCKS5 listening address (port 0: any free port, printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9150")]
    socks: SocketAddr,
    /// Hops per circuit, 1 to 5.
    #[arg(long, value_name = "N")]
    hops: Option<u8>,
    /// Ready circuits kept in the pool (NB).
    #[arg(long, value_name = "NB")]
    circuits: Option<usize>,
    /// Always use this entry OR (RSA fingerprint, 40 hex digits) as the first hop.
    #[arg(long, value_name = "FP")]
    one_or: Option<String>,
    /// A fresh circuit for every stream instead of a pool of shared circuits.
    #[arg(long)]
    no_pool: bool,
    /// Reach the first hop over Tor link TLS only.
    #[arg(long, conflicts_with = "ws_only")]
    tls_only: bool,
    /// Reach the first hop over WebSocket only.
    #[arg(long)]
    ws_only: bool,
    /// Use this handshake wherever the relay's keys allow it instead of the best one:
    /// `tap` (the seed's TAP-only ORs), `ntor`, `ntor-v3`, or `fast` (CREATE_FAST, hop 1 only).
    #[arg(long, value_name = "KIND", value_parser = parse_handshake)]
    handshake: Option<HandshakeKind>,
    /// The seed's iAnonym mode: associate this fake domain with a one-hop circuit to the
    /// entry OR (own networks only); requests the OR's WS_OP_SOCKS listener relays for it are
    /// served through this OP's circuits (`DOMAIN` itself goes to `--origin`,
    /// `host.DOMAIN` to `host`). Prints `associated DOMAIN` on stdout once sent.
    #[arg(long, value_name = "DOMAIN")]
    associate: Option<String>,
    /// With `--associate`: where requests for the fake domain itself go (`HOST:PORT`).
    #[arg(long, value_name = "HOST:PORT", requires = "associate", value_parser = parse_origin)]
    origin: Option<(String, u16)>,
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `onion_op=debug`.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("onion-op: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onion-op: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--origin` values: `HOST:PORT` (`[v6]:PORT` too).
fn parse_origin(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s}: HOST:PORT expected"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s}: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s}: empty host"));
    }
    Ok((host.to_owned(), port))
}

/// `--handshake` values.
fn parse_handshake(s: &str) -> Result<HandshakeKind, String> {
    match s {
        "tap" => Ok(HandshakeKind::Tap),
        "ntor" => Ok(HandshakeKind::Ntor),
        "ntor-v3" => Ok(HandshakeKind::NtorV3),
        "fast" => Ok(HandshakeKind::CreateFast),
        _ => Err(format!("{s}: one of tap, ntor, ntor-v3, fast")),
    }
}

/// The engine settings from the command line.
fn engine_config(cli: &Cli) -> Result<EngineConfig, String> {
    let mut config = EngineConfig::default();
    if let Some(h) = cli.hops {
        config.hops = h;
    }
    if let Some(n) = cli.circuits {
        config.pool_size = n;
    }
    if let Some(fp) = &cli.one_or {
        let id = RsaIdentity::from_hex(fp.trim_start_matches('$'))
            .ok_or_else(|| format!("--one-or {fp}: not a 40-digit hex fingerprint"))?;
        config.pin_first = Some(id);
    }
    config.one_circuit = !cli.no_pool;
    config.handshake = cli.handshake;
    config.transports = Transports {
        ws: !cli.tls_only,
        tls: !cli.ws_only,
    };
    config.check().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn run(cli: Cli) -> Result<(), String> {
    let text = std::fs::read_to_string(&cli.network)
        .map_err(|e| format!("cannot read {}: {e}", cli.network.display()))?;
    let network =
        NetworkDescription::parse(&text).map_err(|e| format!("{}: {e}", cli.network.display()))?;
    let config = engine_config(&cli)?;
    let listener = TcpListener::bind(cli.socks)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.socks))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let op = OpClient::start(network, config).map_err(|e| e.to_string())?;
    println!("socks {addr}");
    tracing::info!(%addr, "SOCKS5 listening");
    if let Some(domain) = &cli.associate {
        let mut events = op.subscribe();
        let origin = cli.origin.as_ref().map(|(h, p)| (h.as_str(), *p));
        op.associate(domain, origin)
            .await
            .map_err(|e| format!("--associate {domain}: {e}"))?;
        let domain = domain.clone();
        // Report the association on stdout (tests wait for it); stop if refused.
        tokio::spawn(async move {
            use onion_core::engine::Event;
            use std::io::Write;
            while let Ok(ev) = events.recv().await {
                let line = match ev {
                    Event::Associated { fake_domain, .. } => format!("associated {fake_domain}"),
                    Event::AssociateRefused { fake_domain } => format!("refused {fake_domain}"),
                    Event::AssociationClosed { fake_domain, .. } => {
                        format!("dissociated {fake_domain}")
                    }
                    _ => continue,
                };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            tracing::debug!(%domain, "event stream ended");
        });
    }
    tokio::select! {
        () = serve_socks(listener, op.clone()) => Ok(()),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; stopping");
            op.shutdown().await;
            Ok(())
        }
    }
}
