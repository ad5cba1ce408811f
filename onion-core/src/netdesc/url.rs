//! The URLs of network descriptions and relay lists: `ws://` / `wss://` for an OR's
//! WebSocket listener, `http://` / `https://` for where a relay list is served.
//!
//! A deliberately small subset of RFC 3986, checked strictly: printable ASCII only (an
//! internationalised host must be written in punycode), no user information (`user@`), no
//! fragment (`#`, which RFC 6455 forbids in WebSocket URIs), a host that is an IPv4 address,
//! a bracketed IPv6 address or a DNS name (labels of `A-Z a-z 0-9 -`), and an optional
//! nonzero port. The path and query are kept as written; an empty path is `/`.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// Longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Longer than [`MAX_URL_LEN`].
    #[error("URL longer than {MAX_URL_LEN} bytes")]
    TooLong,
    /// A space, a control character or a non-ASCII character.
    #[error("URL has a character other than printable ASCII")]
    BadCharacter,
    /// No `scheme://`, or a scheme other than `ws`, `wss`, `http` and `https` (lower case).
    #[error("URL scheme is not ws://, wss://, http:// or https://")]
    UnknownScheme,
    /// User information (`user:password@host`).
    #[error("URL has user information")]
    UserInfo,
    /// A fragment (`#...`).
    #[error("URL has a fragment")]
    Fragment,
    /// The host is empty or not an IP address or a DNS name.
    #[error("URL host is not an IP address or a DNS name")]
    BadHost,
    /// The port is empty, not a number, or not in 1..=65535.
    #[error("URL port is not in 1..=65535")]
    BadPort,
}

/// A URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `ws://`: WebSocket over plain TCP.
    Ws,
    /// `wss://`: WebSocket over TLS.
    Wss,
    /// `http://`.
    Http,
    /// `https://`.
    Https,
}

impl Scheme {
    /// The scheme's name (`"wss"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port used when the URL names none: 80 or 443.
    pub fn default_port(self) -> u16 {
        if self.is_secure() { 443 } else { 80 }
    }

    /// Whether the connection is made over TLS (`wss`, `https`).
    pub fn is_secure(self) -> bool {
        matches!(self, Scheme::Wss | Scheme::Https)
    }

    /// Whether this is a WebSocket scheme (`ws`, `wss`).
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        })
    }
}

/// The host of a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 address or a bracketed IPv6 address.
    Ip(IpAddr),
    /// A DNS name, lower-cased.
    Domain(String),
}

/// `192.0.2.1`, `2001:db8::1` (without brackets), `example.net`.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Domain(d) => f.write_str(d),
        }
    }
}

/// A checked `ws`, `wss`, `http` or `https` URL. It keeps the text it was parsed from, which
/// is what [`as_str`](Self::as_str) and `Display` give back and what drivers connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebUrl {
    text: String,
    scheme: Scheme,
    host: Host,
    port: u16,
    path: String,
}

impl WebUrl {
    /// Parse and check `s`.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        if s.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(UrlError::BadCharacter);
        }
        let (scheme, rest) = s.split_once("://").ok_or(UrlError::UnknownScheme)?;
        let scheme = Scheme::from_name(scheme).ok_or(UrlError::UnknownScheme)?;
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at_checked(auth_end).ok_or(UrlError::BadHost)?;
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => scheme.default_port(),
            Some(p) => parse_port(p).ok_or(UrlError::BadPort)?,
        };
        let path = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        Ok(WebUrl {
            text: s.to_owned(),
            scheme,
            host,
            port,
            path,
        })
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port, or the scheme's default port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path and query, starting with `/` (`/` if the URL has none): what goes into the
    /// HTTP request line.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The socket address to connect to, if the host is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Domain(_) => None,
        }
    }
}

impl fmt::Display for WebUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl core::str::FromStr for WebUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Split `host[:port]` or `[v6][:port]` and check the host.
fn split_host_port(authority: &str) -> Result<(Host, Option<&str>), UrlError> {
    if let Some(r) = authority.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or(UrlError::BadHost)?;
        let ip: Ipv6Addr = h.parse().map_err(|_| UrlError::BadHost)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::BadHost)?),
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    Ok((parse_host(host)?, port))
}

/// An IPv4 address or a DNS name.
fn parse_host(host: &str) -> Result<Host, UrlError> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    if host.is_empty() || host.len() > 253 {
        return Err(UrlError::BadHost);
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !host.split('.').all(label_ok) {
        return Err(UrlError::BadHost);
    }
    // A numeric last label would make browsers read the host as an IPv4 address
    // ("1.2.3", "0x7f.1"): only a well-formed dotted quad is an address here.
    let last = host.rsplit('.').next().unwrap_or(host);
    if last.bytes().all(|b| b.is_ascii_digit())
        || (last.len() > 2 && last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x")))
    {
        return Err(UrlError::BadHost);
    }
    Ok(Host::Domain(host.to_ascii_lowercase()))
}

/// A decimal port in 1..=65535 (at most 5 digits, no sign).
pub(crate) fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepted_urls() {
        let u = WebUrl::parse("wss://Guard1.Example.net/onion?x=1").unwrap();
        assert_eq!(u.scheme(), Scheme::Wss);
        assert_eq!(u.host(), &Host::Domain("guard1.example.net".into()));
        assert_eq!(u.port(), 443);
        assert_eq!(u.path(), "/onion?x=1");
        assert_eq!(u.as_str(), "wss://Guard1.Example.net/onion?x=1");
        assert_eq!(u.socket_addr(), None);

        let u = WebUrl::parse("ws://192.0.2.11:8080").unwrap();
        assert_eq!(u.path(), "/");
        assert_eq!(u.socket_addr(), Some("192.0.2.11:8080".parse().unwrap()));
        assert!(!u.scheme().is_secure() && u.scheme().is_websocket());

        let u = WebUrl::parse("http://[2001:db8::1]:8000?list").unwrap();
        assert_eq!(u.socket_addr(), Some("[2001:db8::1]:8000".parse().unwrap()));
        assert_eq!(u.path(), "/?list");
        let u = WebUrl::parse("https://[::1]/").unwrap();
        assert_eq!(u.port(), 443);
        assert_eq!(u.host().to_string(), "::1");
        assert_eq!(WebUrl::parse("http://localhost").unwrap().port(), 80);
    }

    #[test]
    fn refused_urls() {
        let cases: &[(&str, UrlError)] = &[
            ("ftp://example.net/", UrlError::UnknownScheme),
            ("WSS://example.net/", UrlError::UnknownScheme),
            ("example.net", UrlError::UnknownScheme),
            ("wss:example.net", UrlError::UnknownScheme),
            ("wss://ex ample.net/", UrlError::BadCharacter),
            ("wss://exämple.net/", UrlError::BadCharacter),
            ("wss://example.net/\n", UrlError::BadCharacter),
            ("wss://user:pw@example.net/", UrlError::UserInfo),
            ("wss://example.net/#frag", UrlError::Fragment),
            ("wss:///path", UrlError::BadHost),
            ("wss://:443/", UrlError::BadHost),
            ("wss://-bad.net/", UrlError::BadHost),
            ("wss://bad..net/", UrlError::BadHost),
            ("wss://under_score.net/", UrlError::BadHost),
            ("wss://1.2.3/", UrlError::BadHost),
            ("wss://0x7f.1/", UrlError::BadHost),
            ("wss://256.1.1.1/", UrlError::BadHost),
            ("wss://[2001:db8::1/", UrlError::BadHost),
            ("wss://[1.2.3.4]/", UrlError::BadHost),
            ("wss://[::1]x/", UrlError::BadHost),
            ("wss://2001:db8::1/", UrlError::BadHost),
            ("wss://example.net:/", UrlError::BadPort),
            ("wss://example.net:0/", UrlError::BadPort),
            ("wss://example.net:65536/", UrlError::BadPort),
            ("wss://example.net:+80/", UrlError::BadPort),
            ("wss://example.net:000080/", UrlError::BadPort),
        ];
        for (s, e) in cases {
            assert_eq!(WebUrl::parse(s), Err(*e), "{s}");
        }
        let long = format!("wss://example.net/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(WebUrl::parse(&long), Err(UrlError::TooLong));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = WebUrl::parse(&s);
        }

        #[test]
        fn parses_back(
            scheme in prop::sample::select(vec!["ws", "wss", "http", "https"]),
            host in "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z]{2,5}){0,2}",
            port in proptest::option::of(1u16..),
            path in "(/[A-Za-z0-9._~-]{0,8}){0,3}",
        ) {
            let port_s = port.map(|p| format!(":{p}")).unwrap_or_default();
            let s = format!("{scheme}://{host}{port_s}{path}");
            let u = WebUrl::parse(&s).unwrap();
            prop_assert_eq!(u.as_str(), s.as_str());
            prop_assert_eq!(u.host(), &Host::Domain(host.clone()));
            prop_assert_eq!(u.port(), port.unwrap_or(u.scheme().default_port()));
            let want_path = if path.is_empty() { "/".to_string() } else { path.clone() };
            prop_assert_eq!(u.path(), want_path.as_str());
            prop_assert_eq!(WebUrl::parse(&u.to_string()).unwrap(), u);
        }
    }
}
