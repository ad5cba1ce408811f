//! A sans-IO SOCKS5 server: the handshake an application makes with an onion proxy.
//!
//! Supported: RFC 1928 (SOCKS5: method negotiation and the request), RFC 1929 (username/password
//! sub-negotiation; any credentials are accepted, they only choose a stream isolation key, as
//! tor's `IsolateSOCKSAuth`), and Tor's extensions (socks-extensions.txt): `RESOLVE` (command
//! `0xF0`, a hostname to addresses) and `RESOLVE_PTR` (`0xF1`, an address to a hostname).
//! `BIND` and `UDP ASSOCIATE` are answered with "command not supported". SOCKS4/4a and plain
//! HTTP requests are recognised only to give a precise error.
//!
//! The caller feeds bytes as they arrive and writes whatever [`SocksServer::take_output`]
//! returns (method selection, authentication replies, error replies). Once
//! [`SocksServer::request`] returns a [`SocksRequest`], the caller performs it and writes the
//! bytes of [`SocksReply::to_bytes`]. [`SocksServer::feed`] consumes exactly the handshake's
//! bytes: what a client sent after its request (optimistic data) is left to the caller.
//!
//! ```text
//! let mut socks = SocksServer::new(SocksConfig::default());
//! loop {
//!     let n = read(&mut buf);
//!     let used = socks.feed(&buf[..n]);        // Err: write take_output(), then close
//!     write(&socks.take_output());
//!     if let Some(req) = socks.request() { /* connect; early data = buf[used..n] */ break }
//! }
//! write(&SocksReply::Succeeded { bound: None }.to_bytes());
//! ```
//!
//! Memory is bounded: the server holds at most one handshake message ([`MAX_MESSAGE_LEN`]
//! bytes). Parsing never panics: hostile input ends in a [`SocksError`], with the reply the
//! protocol prescribes queued in the output when there is one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use onion_cell::bytes::{DecodeError, Reader};
use thiserror::Error;

/// The longest handshake message: a username/password request (3 + 255 + 255 bytes).
pub const MAX_MESSAGE_LEN: usize = 3 + 255 + 255;

/// SOCKS protocol version 5.
const VERSION: u8 = 5;
/// Version byte of the username/password sub-negotiation (RFC 1929).
const AUTH_VERSION: u8 = 1;
/// Method: no authentication required.
const METHOD_NO_AUTH: u8 = 0x00;
/// Method: username/password.
const METHOD_USER_PASS: u8 = 0x02;
/// Method selection reply: no acceptable methods.
const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// Address type: IPv4.
const ATYP_IPV4: u8 = 0x01;
/// Address type: domain name.
const ATYP_DOMAIN: u8 = 0x03;
/// Address type: IPv6.
const ATYP_IPV6: u8 = 0x04;

/// What the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocksConfig {
    /// Accept clients that offer "no authentication".
    pub allow_no_auth: bool,
    /// Accept username/password (any values; they select an isolation key).
    pub allow_user_pass: bool,
    /// When a client offers both, choose "no authentication" (by default username/password is
    /// chosen, so that clients asking for isolation get it).
    pub prefer_no_auth: bool,
}

impl Default for SocksConfig {
    fn default() -> Self {
        SocksConfig {
            allow_no_auth: true,
            allow_user_pass: true,
            prefer_no_auth: false,
        }
    }
}

/// The command of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocksCommand {
    /// `CONNECT` (0x01): open a TCP stream.
    Connect,
    /// Tor's `RESOLVE` (0xF0): resolve a hostname to an address.
    Resolve,
    /// Tor's `RESOLVE_PTR` (0xF1): resolve an address to a hostname.
    ResolvePtr,
}

/// A destination as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksAddr {
    /// A hostname (printable ASCII, 1-255 bytes; it may spell an IP literal).
    Hostname(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl SocksAddr {
    /// The host as text for a RELAY_BEGIN or RELAY_RESOLVE (IPv6 without brackets).
    pub fn host(&self) -> String {
        match self {
            SocksAddr::Hostname(h) => h.clone(),
            SocksAddr::Ip(ip) => ip.to_string(),
        }
    }

    /// The address, if it is one (also a hostname field that spells an IP literal).
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            SocksAddr::Ip(ip) => Some(*ip),
            SocksAddr::Hostname(h) => h
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(h)
                .parse()
                .ok(),
        }
    }
}

impl fmt::Display for SocksAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocksAddr::Hostname(h) => f.write_str(h),
            SocksAddr::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            SocksAddr::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
        }
    }
}

/// How the client authenticated.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum SocksAuth {
    /// No authentication.
    #[default]
    NoAuth,
    /// RFC 1929 username and password (raw bytes, 0-255 each).
    UserPass {
        /// The username.
        username: Vec<u8>,
        /// The password.
        password: Vec<u8>,
    },
}

impl SocksAuth {
    /// The stream isolation key (tor's `IsolateSOCKSAuth`): `None` without credentials,
    /// otherwise a string that differs whenever the username or the password differs.
    pub fn isolation_key(&self) -> Option<String> {
        match self {
            SocksAuth::NoAuth => None,
            SocksAuth::UserPass { username, password } => Some(format!(
                "socks:{}:{}",
                hex::encode(username),
                hex::encode(password)
            )),
        }
    }
}

impl fmt::Debug for SocksAuth {
    // Credentials stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocksAuth::NoAuth => f.write_str("NoAuth"),
            SocksAuth::UserPass { username, password } => write!(
                f,
                "UserPass({} byte username, {} byte password)",
                username.len(),
                password.len()
            ),
        }
    }
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksRequest {
    /// What to do.
    pub command: SocksCommand,
    /// Where (for [`SocksCommand::ResolvePtr`], the address to look up).
    pub addr: SocksAddr,
    /// The destination port (0 for the resolve commands, whatever the client sent).
    pub port: u16,
    /// The credentials, for isolation.
    pub auth: SocksAuth,
}

impl SocksRequest {
    /// The isolation key of this request's credentials ([`SocksAuth::isolation_key`]).
    pub fn isolation_key(&self) -> Option<String> {
        self.auth.isolation_key()
    }

    /// The query of the RELAY_RESOLVE that answers this request (tor-spec §6.4): the host for
    /// RESOLVE (and CONNECT), the `in-addr.arpa` / `ip6.arpa` name for RESOLVE_PTR.
    pub fn resolve_query(&self) -> String {
        match (self.command, &self.addr) {
            (SocksCommand::ResolvePtr, SocksAddr::Ip(ip)) => reverse_name(*ip),
            (_, a) => a.host(),
        }
    }
}

/// The reverse-lookup name of an address: `4.3.2.1.in-addr.arpa`, or the 32 nibbles of an
/// IPv6 address, last first, then `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let [x, y, z, w] = a.octets();
            format!("{w}.{z}.{y}.{x}.in-addr.arpa")
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(72);
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0x0f, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// A SOCKS5 reply code (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocksReplyCode(pub u8);

impl SocksReplyCode {
    /// succeeded
    pub const SUCCEEDED: Self = Self(0x00);
    /// general SOCKS server failure
    pub const GENERAL_FAILURE: Self = Self(0x01);
    /// connection not allowed by ruleset
    pub const NOT_ALLOWED: Self = Self(0x02);
    /// Network unreachable
    pub const NETWORK_UNREACHABLE: Self = Self(0x03);
    /// Host unreachable
    pub const HOST_UNREACHABLE: Self = Self(0x04);
    /// Connection refused
    pub const CONNECTION_REFUSED: Self = Self(0x05);
    /// TTL expired (tor uses it for timeouts)
    pub const TTL_EXPIRED: Self = Self(0x06);
    /// Command not supported
    pub const COMMAND_NOT_SUPPORTED: Self = Self(0x07);
    /// Address type not supported
    pub const ADDRESS_TYPE_NOT_SUPPORTED: Self = Self(0x08);
}

impl fmt::Display for SocksReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match *self {
            Self::SUCCEEDED => "succeeded",
            Self::GENERAL_FAILURE => "general SOCKS server failure",
            Self::NOT_ALLOWED => "connection not allowed by ruleset",
            Self::NETWORK_UNREACHABLE => "network unreachable",
            Self::HOST_UNREACHABLE => "host unreachable",
            Self::CONNECTION_REFUSED => "connection refused",
            Self::TTL_EXPIRED => "TTL expired",
            Self::COMMAND_NOT_SUPPORTED => "command not supported",
            Self::ADDRESS_TYPE_NOT_SUPPORTED => "address type not supported",
            Self(n) => return write!(f, "SOCKS reply {n:#04x}"),
        };
        f.write_str(s)
    }
}

/// The final reply to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksReply {
    /// CONNECT succeeded; `bound` is the address to report (0.0.0.0:0 when `None`).
    Succeeded {
        /// BND.ADDR / BND.PORT.
        bound: Option<SocketAddr>,
    },
    /// RESOLVE succeeded with this address.
    ResolvedIp(IpAddr),
    /// RESOLVE_PTR succeeded with this hostname (1-255 bytes; a longer one is truncated
    /// to 255 bytes, an empty one is sent as a failure).
    ResolvedHostname(String),
    /// The request failed.
    Failed(SocksReplyCode),
}

impl SocksReply {
    /// The reply's bytes: `VER | REP | RSV | ATYP | BND.ADDR | BND.PORT`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(22);
        let (code, addr, port) = match self {
            SocksReply::Succeeded { bound } => (
                SocksReplyCode::SUCCEEDED,
                bound.map(|b| SocksAddr::Ip(b.ip())),
                bound.map_or(0, |b| b.port()),
            ),
            SocksReply::ResolvedIp(ip) => (SocksReplyCode::SUCCEEDED, Some(SocksAddr::Ip(*ip)), 0),
            SocksReply::ResolvedHostname(h) if !h.is_empty() => (
                SocksReplyCode::SUCCEEDED,
                Some(SocksAddr::Hostname(h.clone())),
                0,
            ),
            SocksReply::ResolvedHostname(_) => (SocksReplyCode::HOST_UNREACHABLE, None, 0),
            SocksReply::Failed(code) => (*code, None, 0),
        };
        out.extend_from_slice(&[VERSION, code.0, 0]);
        match addr {
            None => {
                out.push(ATYP_IPV4);
                out.extend_from_slice(&[0; 4]);
            }
            Some(SocksAddr::Ip(IpAddr::V4(a))) => {
                out.push(ATYP_IPV4);
                out.extend_from_slice(&a.octets());
            }
            Some(SocksAddr::Ip(IpAddr::V6(a))) => {
                out.push(ATYP_IPV6);
                out.extend_from_slice(&a.octets());
            }
            Some(SocksAddr::Hostname(h)) => {
                let name = h.as_bytes().get(..255).unwrap_or(h.as_bytes());
                out.push(ATYP_DOMAIN);
                out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(name);
            }
        }
        out.extend_from_slice(&port.to_be_bytes());
        out
    }
}

/// Why a SOCKS handshake failed. Where the protocol has a reply for it, that reply is queued
/// in [`SocksServer::take_output`]; the caller writes it, then closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SocksError {
    /// The first byte was 4: a SOCKS4/4a client (only SOCKS5 is served).
    #[error("SOCKS4 request: only SOCKS5 is supported")]
    Socks4,
    /// The client spoke HTTP to the SOCKS port (it is not an HTTP proxy).
    #[error("HTTP request on a SOCKS port: configure the application to use SOCKS5")]
    HttpRequest,
    /// Another protocol version.
    #[error("unsupported SOCKS version {0}")]
    BadVersion(u8),
    /// A greeting with zero methods.
    #[error("SOCKS5 greeting offers no authentication method")]
    NoMethods,
    /// None of the offered methods is acceptable (reply `0xFF` queued).
    #[error("no acceptable SOCKS5 authentication method offered")]
    NoAcceptableMethod,
    /// The username/password sub-negotiation had a wrong version (failure reply queued).
    #[error("bad username/password negotiation version {0}")]
    BadAuthVersion(u8),
    /// BIND, UDP ASSOCIATE or an unknown command (reply 0x07 queued).
    #[error("unsupported SOCKS5 command {0:#04x}")]
    UnsupportedCommand(u8),
    /// An unknown address type (reply 0x08 queued).
    #[error("unsupported SOCKS5 address type {0:#04x}")]
    UnsupportedAddressType(u8),
    /// An empty hostname, or one with bytes other than printable ASCII (reply 0x01 queued).
    #[error("invalid hostname in SOCKS5 request")]
    BadHostname,
    /// RESOLVE_PTR of something that is not an address (reply 0x08 queued).
    #[error("RESOLVE_PTR needs an IP address")]
    PtrNeedsAddress,
    /// A message longer than any valid one (cannot happen; kept so that it cannot loop).
    #[error("SOCKS message too long")]
    TooLong,
    /// Input after an earlier failure.
    #[error("SOCKS handshake already failed")]
    AlreadyFailed,
}

/// Where the handshake stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for `VER | NMETHODS | METHODS`.
    Greeting,
    /// Waiting for the RFC 1929 request.
    Auth,
    /// Waiting for the request; carries the authentication.
    Request(SocksAuth),
    /// Done.
    Ready(SocksRequest),
    /// Failed.
    Failed,
}

/// One step of parsing: a message of `len` bytes, or the need for more input.
enum Parsed<T> {
    /// A complete message.
    Done(T, usize),
    /// Not enough bytes yet.
    More,
}

/// The server side of one SOCKS5 handshake. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct SocksServer {
    config: SocksConfig,
    state: State,
    /// A partial message, at most [`MAX_MESSAGE_LEN`] bytes.
    buf: Vec<u8>,
    /// Replies to write.
    out: Vec<u8>,
}

impl SocksServer {
    /// A server waiting for a client's greeting.
    pub fn new(config: SocksConfig) -> Self {
        SocksServer {
            config,
            state: State::Greeting,
            buf: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Feed bytes from the client. Returns how many of `data` the handshake used: all of them
    /// until the request is complete; then the rest of `data` is the client's early stream data,
    /// which the caller keeps. After the request, `feed` uses nothing and returns 0.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, SocksError> {
        let mut used = 0;
        let mut rest = data;
        loop {
            match self.state {
                State::Failed => return Err(SocksError::AlreadyFailed),
                State::Ready(_) => return Ok(used),
                _ if rest.is_empty() => return Ok(used),
                _ => {}
            }
            let room = MAX_MESSAGE_LEN.saturating_sub(self.buf.len());
            if room == 0 {
                // Every message fits in MAX_MESSAGE_LEN, so a full buffer parses; defensive.
                return Err(self.fail(SocksError::TooLong));
            }
            let (take, after) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(take);
            rest = after;
            loop {
                match self.step() {
                    Err(e) => return Err(self.fail(e)),
                    Ok(Parsed::More) => {
                        used += take.len();
                        break;
                    }
                    Ok(Parsed::Done((), n)) => {
                        self.buf.drain(..n.min(self.buf.len()));
                        if matches!(self.state, State::Ready(_)) {
                            // What is left came from this chunk (a partial message from
                            // before needed these bytes to complete): early stream data.
                            let extra = self.buf.len();
                            self.buf = Vec::new();
                            return Ok(used + take.len().saturating_sub(extra));
                        }
                    }
                }
            }
        }
    }

    /// Enter the failed state.
    fn fail(&mut self, e: SocksError) -> SocksError {
        self.state = State::Failed;
        self.buf = Vec::new();
        e
    }

    /// Bytes to send to the client (method selection, auth status, error replies).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The request, once complete.
    pub fn request(&self) -> Option<&SocksRequest> {
        match &self.state {
            State::Ready(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the handshake failed.
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Parse one message from `buf` in the current state and advance.
    fn step(&mut self) -> Result<Parsed<()>, SocksError> {
        match &self.state {
            State::Greeting => {
                let Parsed::Done(methods, used) = parse_greeting(&self.buf)? else {
                    return Ok(Parsed::More);
                };
                let user_pass = self.config.allow_user_pass && methods.contains(&METHOD_USER_PASS);
                let no_auth = self.config.allow_no_auth && methods.contains(&METHOD_NO_AUTH);
                if user_pass && !(no_auth && self.config.prefer_no_auth) {
                    self.out.extend_from_slice(&[VERSION, METHOD_USER_PASS]);
                    self.state = State::Auth;
                } else if no_auth {
                    self.out.extend_from_slice(&[VERSION, METHOD_NO_AUTH]);
                    self.state = State::Request(SocksAuth::NoAuth);
                } else {
                    self.out
                        .extend_from_slice(&[VERSION, METHOD_NONE_ACCEPTABLE]);
                    return Err(SocksError::NoAcceptableMethod);
                }
                Ok(Parsed::Done((), used))
            }
            State::Auth => {
                let parsed = parse_user_pass(&self.buf).inspect_err(|_| {
                    self.out.extend_from_slice(&[AUTH_VERSION, 0x01]);
                })?;
                let Parsed::Done(auth, used) = parsed else {
                    return Ok(Parsed::More);
                };
                self.out.extend_from_slice(&[AUTH_VERSION, 0x00]);
                self.state = State::Request(auth);
                Ok(Parsed::Done((), used))
            }
            State::Request(auth) => {
                let parsed = parse_request(&self.buf).inspect_err(|e| {
                    let code = match e {
                        SocksError::UnsupportedCommand(_) => SocksReplyCode::COMMAND_NOT_SUPPORTED,
                        SocksError::UnsupportedAddressType(_) | SocksError::PtrNeedsAddress => {
                            SocksReplyCode::ADDRESS_TYPE_NOT_SUPPORTED
                        }
                        _ => SocksReplyCode::GENERAL_FAILURE,
                    };
                    self.out
                        .extend_from_slice(&SocksReply::Failed(code).to_bytes());
                })?;
                let Parsed::Done((command, addr, port), used) = parsed else {
                    return Ok(Parsed::More);
                };
                self.state = State::Ready(SocksRequest {
                    command,
                    addr,
                    port,
                    auth: auth.clone(),
                });
                Ok(Parsed::Done((), used))
            }
            State::Ready(_) | State::Failed => Ok(Parsed::More),
        }
    }
}

/// `Truncated` means "wait for more"; any other decode error cannot happen with the reads
/// used here, but is treated as truncation would be wrong: map it to a failure.
fn more_or<T>(e: DecodeError, other: SocksError) -> Result<Parsed<T>, SocksError> {
    match e {
        DecodeError::Truncated { .. } => Ok(Parsed::More),
        _ => Err(other),
    }
}

/// `VER | NMETHODS | METHODS`.
fn parse_greeting(buf: &[u8]) -> Result<Parsed<Vec<u8>>, SocksError> {
    let mut r = Reader::new(buf);
    let Ok(ver) = r.take_u8() else {
        return Ok(Parsed::More);
    };
    match ver {
        VERSION => {}
        4 => return Err(SocksError::Socks4),
        // "GET ", "POST", "CONNECT", "HEAD", "PUT ", "OPTIONS", "DELETE"...: ASCII capitals.
        b'A'..=b'Z' => return Err(SocksError::HttpRequest),
        v => return Err(SocksError::BadVersion(v)),
    }
    let res = (|| {
        let n = r.take_u8()?;
        if n == 0 {
            return Ok(Err(SocksError::NoMethods));
        }
        let methods = r.take(usize::from(n))?.to_vec();
        Ok(Ok(Parsed::Done(methods, r.consumed())))
    })();
    match res {
        Ok(v) => v,
        Err(e) => more_or(e, SocksError::NoMethods),
    }
}

/// `VER=1 | ULEN | UNAME | PLEN | PASSWD`.
fn parse_user_pass(buf: &[u8]) -> Result<Parsed<SocksAuth>, SocksError> {
    let mut r = Reader::new(buf);
    let Ok(ver) = r.take_u8() else {
        return Ok(Parsed::More);
    };
    if ver != AUTH_VERSION {
        return Err(SocksError::BadAuthVersion(ver));
    }
    let res = (|| {
        let ulen = r.take_u8()?;
        let username = r.take(usize::from(ulen))?.to_vec();
        let plen = r.take_u8()?;
        let password = r.take(usize::from(plen))?.to_vec();
        Ok(Parsed::Done(
            SocksAuth::UserPass { username, password },
            r.consumed(),
        ))
    })();
    res.or_else(|e| more_or(e, SocksError::BadAuthVersion(ver)))
}

/// `VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT`.
fn parse_request(buf: &[u8]) -> Result<Parsed<(SocksCommand, SocksAddr, u16)>, SocksError> {
    let mut r = Reader::new(buf);
    let Ok(ver) = r.take_u8() else {
        return Ok(Parsed::More);
    };
    if ver != VERSION {
        return Err(SocksError::BadVersion(ver));
    }
    let Ok(cmd) = r.take_u8() else {
        return Ok(Parsed::More);
    };
    let command = match cmd {
        0x01 => SocksCommand::Connect,
        0xF0 => SocksCommand::Resolve,
        0xF1 => SocksCommand::ResolvePtr,
        c => return Err(SocksError::UnsupportedCommand(c)),
    };
    // RSV: C tor ignores it; so do we.
    let (Ok(_rsv), Ok(atyp)) = (r.take_u8(), r.take_u8()) else {
        return Ok(Parsed::More);
    };
    let addr = match atyp {
        ATYP_IPV4 => match r.take_array::<4>() {
            Ok(a) => SocksAddr::Ip(IpAddr::V4(Ipv4Addr::from(a))),
            Err(e) => return more_or(e, SocksError::UnsupportedAddressType(atyp)),
        },
        ATYP_IPV6 => match r.take_array::<16>() {
            Ok(a) => SocksAddr::Ip(IpAddr::V6(Ipv6Addr::from(a))),
            Err(e) => return more_or(e, SocksError::UnsupportedAddressType(atyp)),
        },
        ATYP_DOMAIN => {
            let name = match r.take_u8().and_then(|n| r.take(usize::from(n))) {
                Ok(name) => name,
                Err(e) => return more_or(e, SocksError::BadHostname),
            };
            if name.is_empty() || !name.iter().all(|b| (0x21..=0x7e).contains(b)) {
                return Err(SocksError::BadHostname);
            }
            SocksAddr::Hostname(String::from_utf8_lossy(name).into_owned())
        }
        a => return Err(SocksError::UnsupportedAddressType(a)),
    };
    let port = match r.take_u16() {
        Ok(p) => p,
        Err(e) => return more_or(e, SocksError::BadHostname),
    };
    let addr = match (command, addr) {
        (SocksCommand::ResolvePtr, a) => match a.ip() {
            Some(ip) => SocksAddr::Ip(ip),
            None => return Err(SocksError::PtrNeedsAddress),
        },
        (_, a) => a,
    };
    Ok(Parsed::Done((command, addr, port), r.consumed()))
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// Greeting (no auth) + CONNECT example.org:80.
    fn connect_hostname() -> Vec<u8> {
        let mut v = vec![5, 1, 0];
        v.extend_from_slice(&[5, 1, 0, 3, 11]);
        v.extend_from_slice(b"example.org");
        v.extend_from_slice(&80u16.to_be_bytes());
        v
    }

    fn run(server: &mut SocksServer, input: &[u8]) -> Result<(usize, Vec<u8>), SocksError> {
        let used = server.feed(input)?;
        Ok((used, server.take_output()))
    }

    #[test]
    fn connect_hostname_no_auth() {
        let mut s = SocksServer::new(SocksConfig::default());
        let input = connect_hostname();
        let (used, out) = run(&mut s, &input).unwrap();
        assert_eq!(used, input.len());
        assert_eq!(out, vec![5, 0]);
        let req = s.request().unwrap();
        assert_eq!(req.command, SocksCommand::Connect);
        assert_eq!(req.addr, SocksAddr::Hostname("example.org".into()));
        assert_eq!(req.port, 80);
        assert_eq!(req.isolation_key(), None);
        // Nothing more is consumed after the request.
        assert_eq!(s.feed(b"GET / HTTP/1.0\r\n").unwrap(), 0);
    }

    #[test]
    fn split_at_every_byte_gives_the_same_request() {
        let mut input = vec![5, 2, 0, 2];
        input.extend_from_slice(&[1, 4]);
        input.extend_from_slice(b"user");
        input.extend_from_slice(&[3]);
        input.extend_from_slice(b"pwd");
        input.extend_from_slice(&[5, 1, 0, 4]);
        input.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        input.extend_from_slice(&443u16.to_be_bytes());
        let early = b"early data";
        let mut whole = input.clone();
        whole.extend_from_slice(early);

        let mut reference = SocksServer::new(SocksConfig::default());
        let (used, out) = run(&mut reference, &whole).unwrap();
        assert_eq!(used, input.len());
        assert_eq!(out, vec![5, 2, 1, 0]);
        let expected = reference.request().unwrap().clone();
        assert_eq!(expected.addr, SocksAddr::Ip(Ipv6Addr::LOCALHOST.into()));
        assert_eq!(expected.port, 443);
        assert_eq!(
            expected.auth,
            SocksAuth::UserPass {
                username: b"user".to_vec(),
                password: b"pwd".to_vec()
            }
        );

        // Any split in two.
        for cut in 0..=whole.len() {
            let mut s = SocksServer::new(SocksConfig::default());
            let (a, b) = whole.split_at(cut);
            let (u1, mut out) = run(&mut s, a).unwrap();
            let (u2, o2) = run(&mut s, b).unwrap();
            out.extend(o2);
            assert_eq!(u1 + u2, input.len(), "cut at {cut}");
            assert_eq!(out, vec![5, 2, 1, 0]);
            assert_eq!(s.request(), Some(&expected));
        }
        // One byte at a time.
        let mut s = SocksServer::new(SocksConfig::default());
        let mut used = 0;
        for b in &whole {
            used += s.feed(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(used, input.len());
        assert_eq!(s.request(), Some(&expected));
    }

    #[test]
    fn ipv4_and_resolve_commands() {
        let mut s = SocksServer::new(SocksConfig::default());
        let mut input = vec![5, 1, 0, 5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90];
        run(&mut s, &input).unwrap();
        let req = s.request().unwrap();
        assert_eq!(req.addr, SocksAddr::Ip(Ipv4Addr::new(10, 1, 2, 3).into()));
        assert_eq!(req.port, 8080);
        assert_eq!(req.addr.host(), "10.1.2.3");

        let mut s = SocksServer::new(SocksConfig::default());
        input = vec![5, 1, 0, 5, 0xF0, 0, 3, 3];
        input.extend_from_slice(b"a.b");
        input.extend_from_slice(&[0, 0]);
        run(&mut s, &input).unwrap();
        assert_eq!(s.request().unwrap().command, SocksCommand::Resolve);

        // RESOLVE_PTR with an IP literal in the hostname field becomes an address.
        let mut s = SocksServer::new(SocksConfig::default());
        input = vec![5, 1, 0, 5, 0xF1, 0, 3, 7];
        input.extend_from_slice(b"1.2.3.4");
        input.extend_from_slice(&[0, 0]);
        run(&mut s, &input).unwrap();
        let req = s.request().unwrap();
        assert_eq!(req.command, SocksCommand::ResolvePtr);
        assert_eq!(req.addr, SocksAddr::Ip(Ipv4Addr::new(1, 2, 3, 4).into()));

        // ... but a name is refused with 0x08.
        let mut s = SocksServer::new(SocksConfig::default());
        input = vec![5, 1, 0, 5, 0xF1, 0, 3, 3];
        input.extend_from_slice(b"a.b");
        input.extend_from_slice(&[0, 0]);
        assert_eq!(s.feed(&input), Err(SocksError::PtrNeedsAddress));
        assert_eq!(s.take_output(), vec![5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn isolation_keys_differ_by_username_and_password() {
        let key = |u: &[u8], p: &[u8]| {
            SocksAuth::UserPass {
                username: u.to_vec(),
                password: p.to_vec(),
            }
            .isolation_key()
            .unwrap()
        };
        assert_ne!(key(b"a", b"b"), key(b"a", b"c"));
        assert_ne!(key(b"a", b"b"), key(b"b", b"b"));
        // No ambiguity from separators inside the values.
        assert_ne!(key(b"a:", b"b"), key(b"a", b":b"));
        assert_eq!(key(b"x", b"y"), key(b"x", b"y"));
        assert_eq!(SocksAuth::NoAuth.isolation_key(), None);
        // Debug does not print credentials.
        assert!(
            !format!(
                "{:?}",
                SocksAuth::UserPass {
                    username: b"secretuser".to_vec(),
                    password: b"secretpw".to_vec()
                }
            )
            .contains("secret")
        );
    }

    #[test]
    fn method_negotiation() {
        // Both offered: user/pass by default, no-auth when preferred.
        let mut s = SocksServer::new(SocksConfig::default());
        assert_eq!(run(&mut s, &[5, 2, 0, 2]).unwrap().1, vec![5, 2]);
        let mut s = SocksServer::new(SocksConfig {
            prefer_no_auth: true,
            ..SocksConfig::default()
        });
        assert_eq!(run(&mut s, &[5, 2, 2, 0]).unwrap().1, vec![5, 0]);
        // Only GSSAPI offered: 0xFF and an error.
        let mut s = SocksServer::new(SocksConfig::default());
        assert_eq!(s.feed(&[5, 1, 1]), Err(SocksError::NoAcceptableMethod));
        assert_eq!(s.take_output(), vec![5, 0xFF]);
        assert!(s.is_failed());
        assert_eq!(s.feed(&[5]), Err(SocksError::AlreadyFailed));
        // No-auth not allowed by config.
        let mut s = SocksServer::new(SocksConfig {
            allow_no_auth: false,
            ..SocksConfig::default()
        });
        assert_eq!(s.feed(&[5, 1, 0]), Err(SocksError::NoAcceptableMethod));
        // Zero methods.
        let mut s = SocksServer::new(SocksConfig::default());
        assert_eq!(s.feed(&[5, 0]), Err(SocksError::NoMethods));
        // Empty username and password are accepted (RFC 1929 says 1-255; tor accepts 0).
        let mut s = SocksServer::new(SocksConfig::default());
        let (_, out) = run(&mut s, &[5, 1, 2, 1, 0, 0]).unwrap();
        assert_eq!(out, vec![5, 2, 1, 0]);
        // Bad sub-negotiation version.
        let mut s = SocksServer::new(SocksConfig::default());
        assert_eq!(
            s.feed(&[5, 1, 2, 5, 0, 0]),
            Err(SocksError::BadAuthVersion(5))
        );
        assert_eq!(s.take_output(), vec![5, 2, 1, 1]);
    }

    #[test]
    fn other_protocols_are_named() {
        let mut s = SocksServer::new(SocksConfig::default());
        assert_eq!(s.feed(&[4, 1, 0, 80]), Err(SocksError::Socks4));
        let mut s = SocksServer::new(SocksConfig::default());
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\n"), Err(SocksError::HttpRequest));
        let mut s = SocksServer::new(SocksConfig::default());
        assert_eq!(s.feed(&[0x16, 3, 1]), Err(SocksError::BadVersion(0x16)));
        assert!(s.take_output().is_empty());
    }

    #[test]
    fn bad_requests_get_their_reply_codes() {
        let cases: &[(&[u8], SocksError, u8)] = &[
            (
                &[5, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0],
                SocksError::UnsupportedCommand(2),
                7,
            ),
            (
                &[5, 3, 0, 1, 0, 0, 0, 0, 0, 0],
                SocksError::UnsupportedCommand(3),
                7,
            ),
            (
                &[5, 1, 0, 9, 0, 0],
                SocksError::UnsupportedAddressType(9),
                8,
            ),
            (&[5, 1, 0, 3, 0, 0, 80], SocksError::BadHostname, 1),
            (&[5, 1, 0, 3, 2, b'a', 0, 0, 80], SocksError::BadHostname, 1),
            (
                &[5, 1, 0, 3, 2, b'a', b' ', 0, 80],
                SocksError::BadHostname,
                1,
            ),
            (
                &[5, 1, 0, 3, 2, 0xc3, 0xa9, 0, 80],
                SocksError::BadHostname,
                1,
            ),
            (
                &[4, 1, 0, 1, 0, 0, 0, 0, 0, 0],
                SocksError::BadVersion(4),
                1,
            ),
        ];
        for (req, err, code) in cases {
            let mut s = SocksServer::new(SocksConfig::default());
            run(&mut s, &[5, 1, 0]).unwrap();
            assert_eq!(s.feed(req).as_ref(), Err(err), "{req:?}");
            assert_eq!(
                s.take_output(),
                SocksReply::Failed(SocksReplyCode(*code)).to_bytes()
            );
            assert!(s.request().is_none());
        }
    }

    #[test]
    fn replies() {
        assert_eq!(
            SocksReply::Succeeded { bound: None }.to_bytes(),
            vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            SocksReply::Succeeded {
                bound: Some("127.0.0.1:9050".parse().unwrap())
            }
            .to_bytes(),
            vec![5, 0, 0, 1, 127, 0, 0, 1, 0x23, 0x5a]
        );
        let v6 = SocksReply::ResolvedIp("::1".parse().unwrap()).to_bytes();
        assert_eq!(v6.len(), 4 + 16 + 2);
        assert_eq!(&v6[..4], &[5, 0, 0, 4]);
        assert_eq!(v6[19], 1);
        assert_eq!(
            SocksReply::ResolvedHostname("a.b".into()).to_bytes(),
            vec![5, 0, 0, 3, 3, b'a', b'.', b'b', 0, 0]
        );
        let long = SocksReply::ResolvedHostname("x".repeat(300)).to_bytes();
        assert_eq!(long[4], 255);
        assert_eq!(long.len(), 5 + 255 + 2);
        assert_eq!(SocksReply::ResolvedHostname(String::new()).to_bytes()[1], 4);
        assert_eq!(
            SocksReply::Failed(SocksReplyCode::NOT_ALLOWED).to_bytes(),
            vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn hostile_inputs_never_panic_and_stay_bounded() {
        use proptest::prelude::*;
        proptest!(|(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..600), 0..6))| {
            let mut s = SocksServer::new(SocksConfig::default());
            for c in &chunks {
                match s.feed(c) {
                    Ok(used) => prop_assert!(used <= c.len()),
                    Err(_) => prop_assert!(s.is_failed()),
                }
                prop_assert!(s.buf.len() <= MAX_MESSAGE_LEN);
                let out = s.take_output();
                prop_assert!(out.len() <= 2 + 2 + 22);
            }
        });
        // Plausible prefixes mutated: start from a valid exchange and flip bytes.
        proptest!(|(flips in proptest::collection::vec((0usize..40, any::<u8>()), 0..4),
                    cut in 0usize..40)| {
            let mut input = connect_hostname();
            for (i, b) in flips {
                if let Some(x) = input.get_mut(i) { *x = b; }
            }
            let mut s = SocksServer::new(SocksConfig::default());
            let (a, b) = input.split_at(cut.min(input.len()));
            let r1 = s.feed(a);
            let r2 = s.feed(b);
            if r1.is_ok()
                && r2.is_ok()
                && let Some(req) = s.request()
            {
                prop_assert!(!req.addr.host().is_empty());
            }
        });
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("1.2.3.4".parse().unwrap()),
            "4.3.2.1.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        let req = SocksRequest {
            command: SocksCommand::ResolvePtr,
            addr: SocksAddr::Ip("10.0.0.1".parse().unwrap()),
            port: 0,
            auth: SocksAuth::NoAuth,
        };
        assert_eq!(req.resolve_query(), "1.0.0.10.in-addr.arpa");
        let req = SocksRequest {
            command: SocksCommand::Resolve,
            addr: SocksAddr::Hostname("a.example".into()),
            ..req
        };
        assert_eq!(req.resolve_query(), "a.example");
    }

    #[test]
    fn pipelined_messages_longer_than_the_buffer() {
        // Greeting with 255 methods + 513-byte auth + request + early data in one read.
        let mut input = vec![5, 255];
        input.extend(std::iter::repeat_n(0x80, 253));
        input.extend_from_slice(&[0, 2]);
        input.extend_from_slice(&[1, 255]);
        input.extend(std::iter::repeat_n(b'u', 255));
        input.push(255);
        input.extend(std::iter::repeat_n(b'p', 255));
        input.extend_from_slice(&[5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
        let hs = input.len();
        input.extend_from_slice(b"tail");
        let mut s = SocksServer::new(SocksConfig::default());
        assert_eq!(s.feed(&input).unwrap(), hs);
        assert_eq!(s.take_output(), vec![5, 2, 1, 0]);
        assert_eq!(s.request().unwrap().port, 80);
    }

    #[test]
    fn a_full_buffer_of_methods_is_not_more_than_one_message() {
        // 255 methods, all unknown except the last.
        let mut g = vec![5, 255];
        g.extend(std::iter::repeat_n(0x80, 254));
        g.push(0);
        let mut s = SocksServer::new(SocksConfig::default());
        assert_eq!(s.feed(&g).unwrap(), g.len());
        assert_eq!(s.take_output(), vec![5, 0]);
    }
}
