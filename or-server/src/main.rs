//! `or-server`: the native Onion Router.
//!
//! - `or-server run --config FILE`: run the relay until SIGINT or SIGTERM.
//! - `or-server keygen --data-dir DIR`: create the keys (if missing) and print the
//!   fingerprints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use or_server::config::Config;
use or_server::keys::RotationPolicy;
use or_server::server::{Server, keys_dir, open_keys};
use or_server::shutdown;

#[derive(Debug, Parser)]
#[command(name = "or-server", version, about = "The native Onion Router")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay.
    Run {
        /// The TOML configuration file (see or.example.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Create the relay's keys if missing, and print its fingerprints.
    Keygen {
        /// The data directory (keys go in its `keys` subdirectory).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Run a whole local network on 127.0.0.1: an authority, N ORs (a WebSocket entry, an
    /// exit that reaches loopback), a demo site and the page's HTTP server.
    Dev {
        /// Number of ORs besides the authority (at least 3).
        #[arg(long, default_value_t = 3)]
        relays: usize,
        /// The page's HTTP server (www/, pkg/, /network.json).
        #[arg(long, value_name = "ADDR", default_value = or_server::dev::DEFAULT_HTTP)]
        http: std::net::SocketAddr,
        /// Also write the network description to this file.
        #[arg(long, value_name = "FILE")]
        network_out: Option<PathBuf>,
        /// Keys of the ORs (one subdirectory each), kept between runs. Default: a
        /// temporary directory, removed at exit.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The repository directory with www/ and pkg/. Default: the current directory if
        /// it has www/, else the source tree this binary was built from.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Seconds between the authority's health checks.
        #[arg(long, default_value_t = 2)]
        check_interval: u64,
        /// Also run the seed's WS_OP_SOCKS listener (SOCKS5 to associated pages) on the
        /// entry OR, at this address (port 0: any free port, printed).
        #[arg(long, value_name = "ADDR")]
        ws_op_socks: Option<std::net::SocketAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Keygen { data_dir } => keygen(&data_dir),
        Command::Dev {
            relays,
            http,
            network_out,
            data_dir,
            root,
            check_interval,
            ws_op_socks,
        } => {
            let cwd = std::env::current_dir().unwrap_or_default();
            let mut opts = or_server::dev::DevOptions::new(
                root.unwrap_or_else(|| or_server::dev::find_root(&cwd)),
            );
            opts.relays = relays;
            opts.http = http;
            opts.network_out = network_out;
            opts.data_dir = data_dir;
            opts.check_interval_secs = check_interval.clamp(1, 86_400);
            opts.ws_op_socks = ws_op_socks;
            dev(opts)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("or-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(data_dir: &std::path::Path) -> Result<(), String> {
    let keys = open_keys(data_dir, RotationPolicy::default(), SystemTime::now())
        .map_err(|e| e.to_string())?;
    println!("keys: {}", keys_dir(data_dir).display());
    println!("RSA identity fingerprint: {}", keys.rsa_fingerprint());
    println!("Ed25519 identity: {}", keys.ed_identity_public());
    println!(
        "ntor onion key: {}",
        <base64ct::Base64 as base64ct::Encoding>::encode_string(
            keys.onion_keys().ntor_public().as_bytes()
        )
    );
    Ok(())
}

fn dev(opts: or_server::dev::DevOptions) -> Result<(), String> {
    or_server::logging::init("warn,or_server::dev=info")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let relays = opts.relays;
        let out = opts.network_out.clone();
        let root = opts.root.clone();
        println!("or-server dev: starting an authority and {relays} ORs on 127.0.0.1...");
        let net = or_server::dev::DevNetwork::start(opts)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "  authority:    http://{}{}",
            net.authority_http,
            onion_core::netdesc::RELAY_LIST_PATH
        );
        println!(
            "  demo site:    http://{}/ (browse it through the network)",
            net.demo
        );
        println!("  network.json: http://{}/network.json", net.http);
        if let Some(a) = net.ws_op_socks {
            println!("  ws_op_socks:  {a} (SOCKS5 to pages that associated a fake domain)");
        }
        if let Some(out) = out {
            println!("  written to:   {}", out.display());
        }
        if !root.join("pkg").is_dir() {
            println!(
                "  note: {} has no pkg/: build it first (see the README)",
                root.display()
            );
        }
        println!("open {}", net.url());
        let signal = shutdown::wait_for_signal().await;
        if let Err(e) = signal {
            eprintln!("or-server: cannot listen for signals ({e}): stopping");
        }
        println!("stopping");
        net.stop().await;
        Ok(())
    })
}

fn run(config_path: &std::path::Path) -> Result<(), String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    or_server::logging::init(&config.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let (trigger, shutdown) = shutdown::channel();
        let server = Server::start(config, shutdown)
            .await
            .map_err(|e| e.to_string())?;
        let serving = tokio::spawn(server.run());
        let signal = tokio::spawn(async move {
            match shutdown::wait_for_signal().await {
                Ok(name) => tracing::info!("{name} received: shutting down"),
                Err(e) => tracing::error!("cannot listen for signals ({e}): shutting down"),
            }
            trigger.trigger();
        });
        let result = serving.await;
        signal.abort();
        result
            .map_err(|e| format!("server task failed: {e}"))?
            .map_err(|e| e.to_string())
    })
}
