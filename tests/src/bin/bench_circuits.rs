//! Whole-circuit benchmark (`scripts/bench-circuits.sh`): 3-hop circuit build time and
//! download throughput, ours against C tor, all measured in this one run on 127.0.0.1.
//!
//! Setups, run interleaved (one repetition of each in turn, so that the noise of a shared
//! machine spreads over all of them):
//! - our OP (the onion-op library) through three of our ORs started in-process, entered over
//!   WebSocket, then over TLS (ORs linked over TLS);
//! - our OP through three C tor relays of a private network (`tornet.py`), TLS entry;
//! - C tor's own client through the same three relays: the circuit is built with the
//!   ControlPort's `EXTENDCIRCUIT` (time until `650 CIRC id BUILT`), and `curl
//!   --socks5-hostname` fetches through the client's SocksPort with the stream attached to
//!   that circuit (`__LeaveStreamsUnattached`, `ATTACHSTREAM`).
//!
//! Every hop uses ntor. Every download is `GET /bytes/N` from the in-process body server and
//! its bytes are checked. Build time is the circuit alone (CREATE2 + two EXTEND2) on an open
//! link; our OP opens a fresh link per repetition (its time is its own column), the C tor
//! client reuses its channel (a warm-up repetition, not counted, opens it).
//!
//! Usage: `bench_circuits [--reps N] [--mb N]` (defaults 5 and 20).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onion_op::{HandshakeKind, HopTarget, Link, LinkConfig, OpError};
use onion_tests::http::{HttpServer, get_bytes};
use onion_tests::or::{OrNode, OrSpec};
use onion_tests::tornet::{TorNet, TorRelay};
use onion_tests::{Error, Result, body, secs};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bound on one repetition (build and download).
const REP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest ControlPort line read.
const MAX_CONTROL_LINE: u64 = 16 * 1024;
/// Most ControlPort events kept while waiting for a reply.
const MAX_EVENTS: usize = 4096;

/// One repetition's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Link (TCP + TLS/WebSocket + link handshake), when the setup opens one.
    link_ms: Option<f64>,
    /// The 3-hop circuit.
    build_ms: f64,
    /// The download, MB (10^6 bytes) per second.
    mbps: f64,
}

/// How our OP enters the circuit.
#[derive(Debug, Clone)]
enum Entry {
    /// Over WebSocket to this URL.
    Ws(String),
    /// Over Tor link TLS to this address.
    Tls(SocketAddr),
}

/// A setup: a row of the table.
enum Setup<'a> {
    /// Our OP through these three hops.
    OurOp {
        entry: Entry,
        hops: [&'a HopTarget; 3],
    },
    /// C tor's client through these three relays.
    CtorClient {
        control: Box<Control>,
        socks: SocketAddr,
        path: String,
    },
}

/// A C tor ControlPort connection (no authentication configured by tornet).
struct Control {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Asynchronous events (`650 ...` lines) read while waiting for replies.
    events: VecDeque<String>,
}

impl Control {
    /// Connect and authenticate.
    async fn connect(addr: SocketAddr) -> Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(Error::io(format!("connect to the ControlPort {addr}")))?;
        let (r, w) = tcp.into_split();
        let mut c = Control {
            reader: BufReader::new(r),
            writer: w,
            events: VecDeque::new(),
        };
        c.command("AUTHENTICATE").await?;
        Ok(c)
    }

    /// One line, without its CRLF.
    async fn line(&mut self) -> Result<String> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_CONTROL_LINE)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(Error::io("read the ControlPort"))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Err(Error::other("ControlPort closed or line too long"));
        }
        Ok(String::from_utf8_lossy(&buf).trim_end().to_owned())
    }

    /// Send `cmd` and return the last line of its reply, which must be `250`; events read
    /// meanwhile are queued.
    async fn command(&mut self, cmd: &str) -> Result<String> {
        self.writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .map_err(Error::io("write the ControlPort"))?;
        loop {
            let line = self.line().await?;
            if line.starts_with("650") {
                if self.events.len() >= MAX_EVENTS {
                    self.events.pop_front();
                }
                self.events.push_back(line);
                continue;
            }
            // Multi-line replies: "250-..." continues, "250 ..." ends.
            if line.get(3..4) == Some("-") {
                continue;
            }
            return if line.starts_with("250 ") {
                Ok(line)
            } else {
                Err(Error::other(format!("{cmd}: {line}")))
            };
        }
    }

    /// The next single-line event (`650 ...`).
    async fn event(&mut self) -> Result<String> {
        loop {
            let line = match self.events.pop_front() {
                Some(l) => l,
                None => self.line().await?,
            };
            if line.starts_with("650 ") {
                return Ok(line);
            }
        }
    }

    /// Build a circuit through `path` (`$FP,$FP,$FP`); its ID and the build time.
    async fn build(&mut self, path: &str) -> Result<(String, f64)> {
        self.events.clear();
        let t = Instant::now();
        let reply = self.command(&format!("EXTENDCIRCUIT 0 {path}")).await?;
        let id = reply
            .strip_prefix("250 EXTENDED ")
            .ok_or_else(|| Error::other(format!("EXTENDCIRCUIT: {reply}")))?
            .to_owned();
        loop {
            let ev = self.event().await?;
            let mut f = ev.split(' ').skip(1);
            if f.next() != Some("CIRC") || f.next() != Some(id.as_str()) {
                continue;
            }
            match f.next() {
                Some("BUILT") => return Ok((id, t.elapsed().as_secs_f64() * 1e3)),
                Some(s @ ("FAILED" | "CLOSED")) => {
                    return Err(Error::other(format!("circuit {id} {s}: {ev}")));
                }
                _ => {}
            }
        }
    }

    /// Attach the next new stream to `target` (`ADDR:PORT`) to circuit `id`.
    async fn attach_next(&mut self, target: &str, id: &str) -> Result<()> {
        loop {
            let ev = self.event().await?;
            let f: Vec<&str> = ev.split(' ').collect();
            // 650 STREAM StreamID NEW CircuitID Target ...
            if let (Some(&"STREAM"), Some(sid), Some(&"NEW"), Some(&t)) =
                (f.get(1), f.get(2), f.get(3), f.get(5))
                && t == target
            {
                self.command(&format!("ATTACHSTREAM {sid} {id}")).await?;
                return Ok(());
            }
        }
    }
}

/// `curl --socks5-hostname` GET of `len` bytes; the seconds it took, bytes checked.
fn curl_get(socks: SocketAddr, http: SocketAddr, len: usize) -> Result<f64> {
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "120", "--socks5-hostname"])
        .arg(socks.to_string())
        .arg(format!("http://{http}/bytes/{len}"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(Error::io("run curl"))?;
    let took = secs(t);
    if !out.status.success() {
        return Err(Error::other(format!("curl failed ({})", out.status)));
    }
    if !body::check(&out.stdout, len) {
        return Err(Error::other(format!(
            "curl: wrong bytes ({} received)",
            out.stdout.len()
        )));
    }
    Ok(took)
}

/// One repetition of `setup`, fetching `len` bytes from `http`.
async fn run(setup: &mut Setup<'_>, http: SocketAddr, len: usize) -> Result<Sample> {
    let op = |what: &'static str| move |e: OpError| Error::other(format!("{what}: {e}"));
    match setup {
        Setup::OurOp { entry, hops } => {
            let [h1, h2, h3] = *hops;
            let t = Instant::now();
            let link = match entry {
                Entry::Ws(url) => Link::connect_ws(url, h1, LinkConfig::default()).await,
                Entry::Tls(addr) => Link::connect_tls(*addr, h1, LinkConfig::default()).await,
            }
            .map_err(op("link"))?;
            let link_ms = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let circ = link
                .create_circuit(h1, HandshakeKind::Ntor)
                .await
                .map_err(op("create"))?;
            circ.extend(h2, HandshakeKind::Ntor)
                .await
                .map_err(op("extend to hop 2"))?;
            circ.extend(h3, HandshakeKind::Ntor)
                .await
                .map_err(op("extend to hop 3"))?;
            let build_ms = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let host = http.ip().to_string();
            let mut s = circ.begin(&host, http.port()).await.map_err(op("begin"))?;
            let got = get_bytes(&mut s, &host, len).await?;
            let took = secs(t);
            if !body::check(&got, len) {
                return Err(Error::other(format!(
                    "wrong bytes ({} received)",
                    got.len()
                )));
            }
            drop(s);
            circ.close().await;
            link.close().await;
            Ok(Sample {
                link_ms: Some(link_ms),
                build_ms,
                mbps: len as f64 / 1e6 / took,
            })
        }
        Setup::CtorClient {
            control,
            socks,
            path,
        } => {
            let (id, build_ms) = control.build(path).await?;
            let socks = *socks;
            let curl = tokio::task::spawn_blocking(move || curl_get(socks, http, len));
            let attached = control.attach_next(&http.to_string(), &id).await;
            let took = curl.await.map_err(Error::other)?;
            let _ = control.command(&format!("CLOSECIRCUIT {id}")).await;
            attached?;
            Ok(Sample {
                link_ms: None,
                build_ms,
                mbps: len as f64 / 1e6 / took?,
            })
        }
    }
}

/// Median, min and max (`None` if empty).
fn stats(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return None;
    }
    let med = if n % 2 == 1 {
        *v.get(n / 2)?
    } else {
        (*v.get(n / 2 - 1)? + *v.get(n / 2)?) / 2.0
    };
    Some((med, *v.first()?, *v.last()?))
}

/// `median (min-max)` with `prec` decimals, or `-`.
fn fmt_stats(s: Option<(f64, f64, f64)>, prec: usize) -> String {
    s.map_or_else(
        || "-".to_owned(),
        |(m, lo, hi)| format!("{m:.prec$} ({lo:.prec$}-{hi:.prec$})"),
    )
}

/// `--reps N --mb N`.
fn args() -> Result<(usize, usize)> {
    let mut reps = 5;
    let mut mb = 20;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| Error::other(format!("{a} needs a positive number")))
        };
        match a.as_str() {
            "--reps" => reps = num()?,
            "--mb" => mb = num()?,
            _ => {
                return Err(Error::other("usage: bench_circuits [--reps N] [--mb N]"));
            }
        }
    }
    Ok((reps, mb))
}

/// A port of the client entry of `network.json`.
fn client_port(json: &Value, key: &str) -> Result<SocketAddr> {
    json.get("client")
        .and_then(|c| c.get(key))
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .ok_or_else(|| Error::other(format!("network.json: no client {key}")))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match bench().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_circuits: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn bench() -> Result<()> {
    let (reps, mb) = args()?;
    let len = mb * 1_000_000;
    let total = Instant::now();

    let t = Instant::now();
    let dir = std::env::temp_dir().join(format!("onion-bench-tornet-{}", std::process::id()));
    let net = tokio::task::spawn_blocking(move || TorNet::up(&dir, &["--client"]))
        .await
        .map_err(Error::other)??;
    eprintln!(
        "C tor network up in {:.1} s ({})",
        secs(t),
        net.dir.display()
    );
    let result = bench_on(&net, reps, len, mb).await;
    if let Err(e) = net.down() {
        eprintln!("tornet down: {e}");
    }
    eprintln!("total {:.0} s", secs(total));
    result
}

async fn bench_on(net: &TorNet, reps: usize, len: usize, mb: usize) -> Result<()> {
    let t = Instant::now();
    let (entry, middle, exit) = tokio::join!(
        OrNode::start(OrSpec::new("BenchEntry")),
        OrNode::start(OrSpec {
            ws: false,
            ..OrSpec::new("BenchMiddle")
        }),
        OrNode::start(OrSpec {
            ws: false,
            ..OrSpec::new("BenchExit").exit()
        }),
    );
    let (entry, middle, exit) = (entry?, middle?, exit?);
    let http = HttpServer::start().await?;
    eprintln!("3 of our ORs up in {:.1} s", secs(t));

    let guard = net.relay("middle")?;
    let exits: Vec<&TorRelay> = net.relays.iter().filter(|r| r.role == "exit").collect();
    let (Some(e1), Some(e0)) = (exits.get(1), exits.first()) else {
        return Err(Error::other("the network needs 2 exits"));
    };
    let guard_addr = SocketAddr::V4(
        guard
            .target
            .ipv4
            .ok_or_else(|| Error::other("C tor relay without an address"))?,
    );
    let path = [guard, *e1, *e0]
        .iter()
        .map(|r| format!("${}", r.fingerprint))
        .collect::<Vec<_>>()
        .join(",");
    let mut control = Box::new(Control::connect(client_port(&net.json, "control_port")?).await?);
    control.command("SETEVENTS CIRC STREAM").await?;
    control
        .command("SETCONF __LeaveStreamsUnattached=1")
        .await?;

    let mut setups: Vec<(String, Setup<'_>)> = vec![
        (
            "our OP -> 3 our ORs (WS entry, TLS, TLS)".into(),
            Setup::OurOp {
                entry: Entry::Ws(entry.ws_url()?),
                hops: [&entry.target, &middle.target, &exit.target],
            },
        ),
        (
            "our OP -> 3 our ORs (TLS entry)".into(),
            Setup::OurOp {
                entry: Entry::Tls(SocketAddr::V4(entry.or_port()?)),
                hops: [&entry.target, &middle.target, &exit.target],
            },
        ),
        (
            "our OP -> 3 C tor relays (TLS entry)".into(),
            Setup::OurOp {
                entry: Entry::Tls(guard_addr),
                hops: [&guard.target, &e1.target, &e0.target],
            },
        ),
        (
            "C tor client -> 3 C tor relays (SOCKS)".into(),
            Setup::CtorClient {
                control,
                socks: client_port(&net.json, "socks_port")?,
                path,
            },
        ),
    ];

    // Warm-up (not counted): opens the C tor client's channel, fills caches.
    for (name, setup) in &mut setups {
        tokio::time::timeout(REP_TIMEOUT, run(setup, http.addr(), 1_000_000))
            .await
            .map_err(|_| Error::other(format!("{name}: warm-up timed out")))?
            .map_err(|e| Error::other(format!("{name}: warm-up: {e}")))?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); setups.len()];
    for rep in 0..reps {
        for ((name, setup), out) in setups.iter_mut().zip(&mut samples) {
            let s = tokio::time::timeout(REP_TIMEOUT, run(setup, http.addr(), len))
                .await
                .map_err(|_| Error::other(format!("{name}: timed out")))?
                .map_err(|e| Error::other(format!("{name}: {e}")))?;
            eprintln!(
                "rep {}/{reps} {name}: build {:.1} ms, {:.1} MB/s",
                rep + 1,
                s.build_ms,
                s.mbps
            );
            out.push(s);
        }
    }

    let rows: Vec<_> = setups
        .iter()
        .zip(&samples)
        .map(|((name, _), s)| {
            let link = stats(s.iter().filter_map(|x| x.link_ms).collect());
            let build = stats(s.iter().map(|x| x.build_ms).collect());
            let mbps = stats(s.iter().map(|x| x.mbps).collect());
            (name.clone(), link, build, mbps)
        })
        .collect();
    let (ref_build, ref_mbps) = rows
        .last()
        .and_then(|(_, _, b, m)| Some((b.as_ref()?.0, m.as_ref()?.0)))
        .ok_or_else(|| Error::other("no C tor client figures"))?;

    println!();
    println!(
        "Whole-circuit benchmark, C tor {} vs ours (release build). SHARED machine: 2 cores, other jobs \
         running; 127.0.0.1 only.",
        net.json
            .get("tor_version")
            .and_then(Value::as_str)
            .map(|v| v.trim_start_matches("Tor version ").trim_end_matches('.'))
            .unwrap_or("?")
    );
    println!(
        "{reps} repetitions per setup, interleaved; ntor on every hop; GET of {mb} MB per \
         repetition, bytes checked. median (min-max)."
    );
    println!(
        "build = CREATE2 + 2 EXTEND2 on an open link; link = TCP + TLS/WS + link handshake \
         (our OP opens one per repetition; C tor reuses its channel)."
    );
    println!(
        "ratios are vs the C tor client row: build = ours/C tor (lower is better), MB/s = \
         ours/C tor (higher is better)."
    );
    println!();
    println!(
        "| {:<40} | {:>17} | {:>20} | {:>17} | {:>11} | {:>10} |",
        "setup", "link ms", "build ms", "MB/s", "build ratio", "MB/s ratio"
    );
    println!(
        "|{:-<42}|{:->19}|{:->22}|{:->19}|{:->13}|{:->12}|",
        "", "", "", "", "", ""
    );
    for (name, link, build, mbps) in &rows {
        let br = build.map_or_else(|| "-".into(), |b| format!("{:.2}", b.0 / ref_build));
        let mr = mbps.map_or_else(|| "-".into(), |m| format!("{:.2}", m.0 / ref_mbps));
        println!(
            "| {:<40} | {:>17} | {:>20} | {:>17} | {:>11} | {:>10} |",
            name,
            fmt_stats(*link, 1),
            fmt_stats(*build, 1),
            fmt_stats(*mbps, 1),
            br,
            mr
        );
    }
    drop(setups);
    entry.stop().await;
    middle.stop().await;
    exit.stop().await;
    Ok(())
}
