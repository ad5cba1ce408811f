//! `onion-op`: the native Onion Proxy, a SOCKS5 server in front of the client engine.
//!
//! ```text
//! onion-op --network FILE --socks 127.0.0.1:9150 [--hops N] [--circuits NB] [--one-or FP]
//!          [--no-pool] [--tls-only | --ws-only] [--log LEVEL]
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
    tokio::select! {
        () = serve_socks(listener, op.clone()) => Ok(()),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; stopping");
            op.shutdown().await;
            Ok(())
        }
    }
}
