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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Keygen { data_dir } => keygen(&data_dir),
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
