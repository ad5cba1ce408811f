//! Tor exit policies: full address policies, port summaries, and the exit's
//! "refuse internal destinations" guard.
//!
//! - [`ExitPolicy`]: an ordered list of [`PolicyRule`]s (dir-spec §2.1.3 `accept`/`reject`
//!   lines, torrc `ExitPolicy`). The first rule matching an address and port decides. When no
//!   rule matches, the connection is **accepted**: dir-spec §2.1.3 says so for descriptors and
//!   C tor's `compare_known_tor_addr_to_addr_policy` does the same. Policies built with
//!   [`ExitPolicy::from_torrc`] always end in `reject`/`accept` catch-alls for both families
//!   (as tor's do), so the implicit accept only matters for policies read from descriptors or
//!   assembled by hand.
//! - [`PortPolicy`]: a policy summary (`p`, `p6`, `ipv6-policy`: "accept 80,443"), and
//!   [`ExitPolicy::summarize`], which computes it the way C tor's `policy_summarize` does.
//! - [`is_internal`] and [`ExitGuard`]: the exit-side check that refuses loopback, private,
//!   link-local and other non-public destinations before the policy is even consulted,
//!   address by address for a resolved hostname.
//!
//! Two syntaxes are parsed:
//!
//! - **config** ([`ExitPolicy::parse_config`], [`FromStr`]): comma-separated rules as in torrc.
//!   `*` means every IPv4 *and* IPv6 address (it expands into a `*4` rule and a `*6` rule),
//!   `*4` / `*6` are one family's wildcard, `accept`/`reject` take either family, and
//!   `accept6`/`reject6` take IPv6 only (their `*` is `*6`). `private` expands into tor's
//!   list of private networks ([`PRIVATE_NETS`]).
//! - **descriptor** ([`ExitPolicy::from_descriptor_lines`]): one rule per line; `*` is the
//!   IPv4 wildcard, `*4`/`*6` do not exist, and `accept`/`reject` must name IPv4 while
//!   `accept6`/`reject6` must name IPv6 (C tor discards a descriptor that mixes them).
//!
//! [`Display`](fmt::Display) writes the config syntax with explicit `*4`/`*6`, which parses
//! back to the same rules.
//!
//! Deliberate differences from C tor, each stricter or safer:
//! - `accept6`/`reject6` with an IPv4 pattern is an error here; tor ignores the rule with a
//!   warning, which can silently drop an operator's `reject6`.
//! - An IPv6 mask on an IPv4-mapped address is taken literally (tor remaps it onto 96-128
//!   bits); an empty mask (`1.2.3.4/`) or text after `]` is an error; port `:0` alone is an
//!   error (tor builds a rule that can never match).
//! - [`ExitPolicy::allows`] evaluates an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) both as
//!   given and as its IPv4 address, and allows it only if both are allowed.
//! - [`ExitPolicy::allows_port`] (address unknown) decides per address family; see there.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use thiserror::Error;

/// Longest address pattern (`addr/mask:ports`) accepted; the longest meaningful one,
/// `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]/128:65535-65535`, is 64 bytes.
const MAX_PATTERN_LEN: usize = 96;

/// C tor's `MAX_EXITPOLICY_SUMMARY_LEN`: the longest summary written, and the most entries
/// accepted when parsing one.
const MAX_SUMMARY_LEN: usize = 1000;

/// How much of an offending token an error keeps.
const ERR_TOKEN_MAX: usize = 80;

/// Why a policy rule, policy or summary could not be parsed. Each variant carries the
/// offending token (truncated to 80 characters).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The rule does not start with `accept`, `reject`, `accept6` or `reject6`.
    #[error("unknown policy keyword {0:?} (expected accept, reject, accept6 or reject6)")]
    UnknownKeyword(String),
    /// The keyword is not followed by an address pattern.
    #[error("policy rule {0:?} has no address pattern")]
    MissingPattern(String),
    /// Something follows the address pattern.
    #[error("unexpected token {0:?} after the address pattern")]
    TrailingToken(String),
    /// The address pattern is longer than any valid one.
    #[error("address pattern too long: {0} bytes")]
    TooLong(usize),
    /// The address is not `*`, `*4`, `*6`, `private`, a dotted-quad IPv4 address or a
    /// bracketed IPv6 address.
    #[error("malformed address in policy pattern {0:?}")]
    BadAddress(String),
    /// The mask is not a bit count within the family's size, nor (IPv4) a prefix netmask.
    #[error("bad mask {0:?}")]
    BadMask(String),
    /// A wildcard address carries a mask (`*/8`).
    #[error("wildcard address with a mask in {0:?}")]
    WildcardWithMask(String),
    /// A port is not a decimal number in 1..=65535 (0 is tolerated as a range start).
    #[error("bad port {0:?}")]
    BadPort(String),
    /// A port range ends before it starts (`10-5`).
    #[error("port range {0:?} ends before it starts")]
    BadPortRange(String),
    /// The keyword's family does not match the address: `accept6` with an IPv4 address, or
    /// (descriptor syntax) `accept` with an IPv6 address.
    #[error("address family does not match the keyword in {0:?}")]
    FamilyMismatch(String),
    /// A summary does not start with `accept ` or `reject `.
    #[error("policy summary must start with \"accept \" or \"reject \", got {0:?}")]
    BadSummaryKeyword(String),
    /// A summary entry starts with a digit but is not `N` or `N-M` with 1 <= N <= M <= 65535.
    #[error("bad policy summary entry {0:?}")]
    BadSummaryEntry(String),
    /// A summary has no port entries.
    #[error("policy summary has no port entries")]
    EmptySummary,
    /// A summary has more than 1000 entries.
    #[error("policy summary has too many entries")]
    SummaryTooLong,
}

/// Keep at most [`ERR_TOKEN_MAX`] characters of a hostile token for an error.
fn tok(s: &str) -> String {
    s.chars().take(ERR_TOKEN_MAX).collect()
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Allow the connection.
    Accept,
    /// Refuse the connection.
    Reject,
}

impl PolicyAction {
    fn keyword(self) -> &'static str {
        match self {
            PolicyAction::Accept => "accept",
            PolicyAction::Reject => "reject",
        }
    }
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The outcome of checking a policy when the address (or exact policy) is not known, as in
/// C tor's `addr_policy_result_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVerdict {
    /// Every address is accepted.
    Accepted,
    /// Some addresses are rejected, but a rule covering all addresses accepts.
    ProbablyAccepted,
    /// Some addresses are accepted, but a rule covering all addresses rejects.
    ProbablyRejected,
    /// Every address is rejected.
    Rejected,
}

impl PolicyVerdict {
    /// True unless the verdict is a certain [`Rejected`](PolicyVerdict::Rejected): the
    /// connection might be accepted, so it is worth trying this exit.
    pub fn might_accept(self) -> bool {
        !matches!(self, PolicyVerdict::Rejected)
    }

    /// The verdict given by a rule that covers every address, with or without an earlier
    /// rule that might have decided otherwise.
    fn definite(action: PolicyAction, maybe_accept: bool, maybe_reject: bool) -> Self {
        match action {
            PolicyAction::Accept if maybe_reject => PolicyVerdict::ProbablyAccepted,
            PolicyAction::Accept => PolicyVerdict::Accepted,
            PolicyAction::Reject if maybe_accept => PolicyVerdict::ProbablyRejected,
            PolicyAction::Reject => PolicyVerdict::Rejected,
        }
    }
}

/// An inclusive range of ports, `lo..=hi` with `1 <= lo <= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    /// Every port, 1-65535 (`*`).
    pub const ALL: PortRange = PortRange { lo: 1, hi: 65535 };

    /// The range `lo..=hi`, or `None` if `lo` is 0 or `lo > hi`.
    pub const fn new(lo: u16, hi: u16) -> Option<Self> {
        if lo == 0 || lo > hi {
            None
        } else {
            Some(PortRange { lo, hi })
        }
    }

    /// The single port `port`, or `None` for port 0.
    pub const fn single(port: u16) -> Option<Self> {
        PortRange::new(port, port)
    }

    /// The first port of the range.
    pub const fn lo(self) -> u16 {
        self.lo
    }

    /// The last port of the range.
    pub const fn hi(self) -> u16 {
        self.hi
    }

    /// Whether `port` is in the range.
    pub const fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// Whether this is every port, 1-65535.
    pub const fn is_all(self) -> bool {
        self.lo == 1 && self.hi == 65535
    }

    fn covers(self, other: PortRange) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }

    fn overlaps(self, other: PortRange) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }

    /// Length of the summary form (`80` or `79-81`).
    fn text_len(self) -> usize {
        let digits = |p: u16| p.to_string().len();
        if self.lo == self.hi {
            digits(self.lo)
        } else {
            digits(self.lo) + 1 + digits(self.hi)
        }
    }
}

/// Summary form: `80` or `79-81`.
impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` agree (`bits` at most 32).
fn prefix_eq_u32(a: u32, b: u32, bits: u8) -> bool {
    (a ^ b)
        .checked_shr(32u32.saturating_sub(u32::from(bits)))
        .unwrap_or(0)
        == 0
}

/// Whether the first `bits` bits of `a` and `b` agree (`bits` at most 128).
fn prefix_eq_u128(a: u128, b: u128, bits: u8) -> bool {
    (a ^ b)
        .checked_shr(128u32.saturating_sub(u32::from(bits)))
        .unwrap_or(0)
        == 0
}

/// An address pattern: a network given as an address and a prefix length.
///
/// The address is kept as written (`127.0.0.1/8` stays `127.0.0.1/8`), as C tor does; only
/// the first `bits` bits take part in matching. A pattern with 0 bits is a family wildcard
/// (`*4` or `*6`) and its address is normalised to the unspecified address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrPattern {
    addr: IpAddr,
    bits: u8,
}

impl AddrPattern {
    /// Every IPv4 address (`*4`).
    pub const ANY_V4: AddrPattern = AddrPattern {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        bits: 0,
    };

    /// Every IPv6 address (`*6`).
    pub const ANY_V6: AddrPattern = AddrPattern {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        bits: 0,
    };

    /// The network `addr/bits`, or `None` if `bits` exceeds the family's size (32 or 128).
    pub fn new(addr: IpAddr, bits: u8) -> Option<Self> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if bits > max {
            return None;
        }
        Some(match (addr, bits) {
            (IpAddr::V4(_), 0) => AddrPattern::ANY_V4,
            (IpAddr::V6(_), 0) => AddrPattern::ANY_V6,
            _ => AddrPattern { addr, bits },
        })
    }

    /// The single address `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        AddrPattern { addr, bits }
    }

    const fn v4(a: u8, b: u8, c: u8, d: u8, bits: u8) -> Self {
        AddrPattern {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            bits,
        }
    }

    const fn v6(first: u16, bits: u8) -> Self {
        AddrPattern {
            addr: IpAddr::V6(Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, 0)),
            bits,
        }
    }

    /// The address as written.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The pattern's address family.
    pub fn family(&self) -> IpFamily {
        match self.addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// Whether this pattern matches every address of its family.
    pub fn is_wildcard(&self) -> bool {
        self.bits == 0
    }

    /// Whether `ip` is in the network. Addresses of the other family never match (an
    /// IPv4-mapped IPv6 address is IPv6 here).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                prefix_eq_u32(net.to_bits(), a.to_bits(), self.bits)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_eq_u128(net.to_bits(), a.to_bits(), self.bits)
            }
            _ => false,
        }
    }

    /// Whether every address of `other` is in `self` (C tor's `addr_policy_covers`, address
    /// part).
    fn covers(&self, other: &AddrPattern) -> bool {
        self.bits <= other.bits && self.shares_prefix(other, self.bits)
    }

    /// Whether some address is in both networks.
    fn intersects(&self, other: &AddrPattern) -> bool {
        self.shares_prefix(other, self.bits.min(other.bits))
    }

    fn shares_prefix(&self, other: &AddrPattern, bits: u8) -> bool {
        match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => prefix_eq_u32(a.to_bits(), b.to_bits(), bits),
            (IpAddr::V6(a), IpAddr::V6(b)) => prefix_eq_u128(a.to_bits(), b.to_bits(), bits),
            _ => false,
        }
    }

    /// Write the pattern; `star` is what a wildcard is written as.
    fn write(&self, f: &mut fmt::Formatter<'_>, star: &str) -> fmt::Result {
        if self.bits == 0 {
            return f.write_str(star);
        }
        match self.addr {
            IpAddr::V4(a) if self.bits == 32 => write!(f, "{a}"),
            IpAddr::V4(a) => write!(f, "{a}/{}", self.bits),
            IpAddr::V6(a) if self.bits == 128 => write!(f, "[{a}]"),
            IpAddr::V6(a) => write!(f, "[{a}]/{}", self.bits),
        }
    }
}

/// Config form: `*4`, `*6`, `10.0.0.0/8`, `[fc00::]/7`.
impl fmt::Display for AddrPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = match self.family() {
            IpFamily::V4 => "*4",
            IpFamily::V6 => "*6",
        };
        self.write(f, star)
    }
}

/// C tor's `private_nets`: what `private` expands to, and the reject rules that policy
/// summaries ignore. Authorities must agree on this list, so it is tor's, unchanged (it
/// differs from [`is_internal`], which is broader).
pub const PRIVATE_NETS: [AddrPattern; 12] = [
    AddrPattern::v4(0, 0, 0, 0, 8),
    AddrPattern::v4(169, 254, 0, 0, 16),
    AddrPattern::v4(127, 0, 0, 0, 8),
    AddrPattern::v4(192, 168, 0, 0, 16),
    AddrPattern::v4(10, 0, 0, 0, 8),
    AddrPattern::v4(172, 16, 0, 0, 12),
    AddrPattern::v6(0, 8),
    AddrPattern::v6(0xfc00, 7),
    AddrPattern::v6(0xfe80, 10),
    AddrPattern::v6(0xfec0, 10),
    AddrPattern::v6(0xff00, 8),
    AddrPattern::v6(0, 127),
];

/// One exit policy rule: `action pattern:ports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyRule {
    /// Accept or reject.
    pub action: PolicyAction,
    /// The destination addresses the rule covers.
    pub pattern: AddrPattern,
    /// The destination ports the rule covers.
    pub ports: PortRange,
}

impl PolicyRule {
    /// A rule.
    pub const fn new(action: PolicyAction, pattern: AddrPattern, ports: PortRange) -> Self {
        PolicyRule {
            action,
            pattern,
            ports,
        }
    }

    /// Whether the rule applies to `addr`:`port`.
    pub fn matches(&self, addr: &IpAddr, port: u16) -> bool {
        self.ports.contains(port) && self.pattern.contains(addr)
    }

    /// Whether every connection this rule applies to is also covered by `self`.
    fn covers(&self, other: &PolicyRule) -> bool {
        self.pattern.covers(&other.pattern) && self.ports.covers(other.ports)
    }

    fn intersects(&self, other: &PolicyRule) -> bool {
        self.pattern.intersects(&other.pattern) && self.ports.overlaps(other.ports)
    }

    fn is_catch_all(&self) -> bool {
        self.pattern.is_wildcard() && self.ports.is_all()
    }

    /// The rule as a server-descriptor line (no newline): `accept *:80`, `reject 10.0.0.0/8:*`,
    /// `reject6 [fc00::]/7:*` (C tor's `policy_write_item` with `format_for_desc`).
    pub fn descriptor_line(&self) -> String {
        DescriptorLine(self).to_string()
    }

    fn write_ports(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ports.is_all() {
            f.write_str(":*")
        } else {
            write!(f, ":{}", self.ports)
        }
    }
}

/// Config form, as tor writes it: `accept *4:80`, `reject [fc00::]/7:*`.
impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action.keyword(), self.pattern)?;
        self.write_ports(f)
    }
}

/// Descriptor form of a rule.
struct DescriptorLine<'a>(&'a PolicyRule);

impl fmt::Display for DescriptorLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let six = match r.pattern.family() {
            IpFamily::V4 => "",
            IpFamily::V6 => "6",
        };
        write!(f, "{}{six} ", r.action.keyword())?;
        r.pattern.write(f, "*")?;
        r.write_ports(f)
    }
}

/// Which syntax a rule is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// torrc: `*` is both families, `*4`/`*6` exist, `accept` takes either family.
    Config,
    /// Server descriptor: `*` is IPv4, `accept` takes IPv4 and `accept6` IPv6.
    Descriptor,
}

/// The address part of a pattern before masks are applied.
enum ParsedAddr {
    Wild4,
    Wild6,
    WildBoth,
    Ip(IpAddr),
}

/// Parse a decimal port (digits only) in 0..=65535.
fn parse_port_number(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().and_then(|v| u16::try_from(v).ok())
}

/// Parse `*`, `` (empty), `N` or `N-M` (C tor's `parse_port_range`: a range may start at 0,
/// which means 1).
fn parse_ports(s: &str) -> Result<PortRange, PolicyError> {
    if s.is_empty() || s == "*" {
        return Ok(PortRange::ALL);
    }
    let bad = || PolicyError::BadPort(tok(s));
    match s.split_once('-') {
        None => parse_port_number(s)
            .and_then(PortRange::single)
            .ok_or_else(bad),
        Some((lo, hi)) => {
            let lo = parse_port_number(lo).ok_or_else(bad)?;
            let hi = parse_port_number(hi).filter(|&h| h != 0).ok_or_else(bad)?;
            if lo > hi {
                return Err(PolicyError::BadPortRange(tok(s)));
            }
            PortRange::new(lo.max(1), hi).ok_or_else(bad)
        }
    }
}

/// Parse a mask for `addr`: a bit count, or (IPv4 only) a dotted-quad prefix netmask.
fn parse_mask(m: &str, addr: &IpAddr) -> Result<u8, PolicyError> {
    let bad = || PolicyError::BadMask(tok(m));
    let max: u32 = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    if !m.is_empty() && m.len() <= 3 && m.bytes().all(|b| b.is_ascii_digit()) {
        let bits: u32 = m.parse().map_err(|_| bad())?;
        if bits > max {
            return Err(bad());
        }
        return u8::try_from(bits).map_err(|_| bad());
    }
    if let IpAddr::V4(_) = addr
        && let Ok(mask) = m.parse::<Ipv4Addr>()
    {
        let mask = mask.to_bits();
        if mask.leading_ones() + mask.trailing_zeros() == 32 {
            return u8::try_from(mask.leading_ones()).map_err(|_| bad());
        }
    }
    Err(bad())
}

/// Split `mask[:ports]`.
fn split_mask_ports(rest: &str) -> (Option<&str>, Option<&str>) {
    match rest.split_once(':') {
        Some((m, p)) => (Some(m), Some(p)),
        None => (Some(rest), None),
    }
}

/// An address pattern split into its parts.
struct SplitPattern<'a> {
    addr: &'a str,
    bracketed: bool,
    mask: Option<&'a str>,
    ports: Option<&'a str>,
}

/// Split an address pattern into address, mask and ports, the way C tor's
/// `tor_addr_parse_mask_ports` does (the mask runs from the first `/` to the next `:`), but
/// refusing anything between `]` and the mask or ports.
fn split_pattern(arg: &str) -> Result<SplitPattern<'_>, PolicyError> {
    let plain = |addr, mask, ports| SplitPattern {
        addr,
        bracketed: false,
        mask,
        ports,
    };
    let Some(inner) = arg.strip_prefix('[') else {
        return Ok(if let Some((addr, r)) = arg.split_once('/') {
            let (m, p) = split_mask_ports(r);
            plain(addr, m, p)
        } else if let Some((addr, p)) = arg.split_once(':') {
            plain(addr, None, Some(p))
        } else {
            plain(arg, None, None)
        });
    };
    let (addr, rest) = inner
        .split_once(']')
        .ok_or_else(|| PolicyError::BadAddress(tok(arg)))?;
    let (mask, ports) = if rest.is_empty() {
        (None, None)
    } else if let Some(r) = rest.strip_prefix('/') {
        split_mask_ports(r)
    } else if let Some(p) = rest.strip_prefix(':') {
        (None, Some(p))
    } else {
        return Err(PolicyError::BadAddress(tok(arg)));
    };
    Ok(SplitPattern {
        addr,
        bracketed: true,
        mask,
        ports,
    })
}

/// Parse one rule (`accept 1.2.3.0/24:80`), appending the rules it expands to (`*` in
/// config syntax gives two, `private` twelve).
fn parse_rule(text: &str, syntax: Syntax, out: &mut Vec<PolicyRule>) -> Result<(), PolicyError> {
    let mut words = text.split_whitespace();
    let kw = words.next().unwrap_or("");
    let (action, six) = match kw {
        "accept" => (PolicyAction::Accept, false),
        "reject" => (PolicyAction::Reject, false),
        "accept6" => (PolicyAction::Accept, true),
        "reject6" => (PolicyAction::Reject, true),
        _ => return Err(PolicyError::UnknownKeyword(tok(kw))),
    };
    let arg = words
        .next()
        .ok_or_else(|| PolicyError::MissingPattern(tok(text.trim())))?;
    if let Some(extra) = words.next() {
        return Err(PolicyError::TrailingToken(tok(extra)));
    }
    if arg.len() > MAX_PATTERN_LEN {
        return Err(PolicyError::TooLong(arg.len()));
    }

    // `private:ports` covers both families whatever the keyword (as in tor).
    if let Some(rest) = arg.strip_prefix("private") {
        let ports = rest
            .strip_prefix(':')
            .ok_or_else(|| PolicyError::BadAddress(tok(arg)))?;
        let ports = parse_ports(ports)?;
        out.extend(
            PRIVATE_NETS
                .iter()
                .map(|net| PolicyRule::new(action, *net, ports)),
        );
        return Ok(());
    }

    let SplitPattern {
        addr: addr_s,
        bracketed,
        mask: mask_s,
        ports: ports_s,
    } = split_pattern(arg)?;
    let bad_addr = || PolicyError::BadAddress(tok(arg));
    let addr = match (addr_s, syntax, bracketed) {
        ("*", Syntax::Descriptor, false) => ParsedAddr::Wild4,
        ("*", Syntax::Config, false) if six => ParsedAddr::Wild6,
        ("*", Syntax::Config, false) => ParsedAddr::WildBoth,
        ("*4", Syntax::Config, false) => ParsedAddr::Wild4,
        ("*6", Syntax::Config, false) => ParsedAddr::Wild6,
        (s, _, true) => ParsedAddr::Ip(IpAddr::V6(s.parse().map_err(|_| bad_addr())?)),
        (s, _, false) => match s.parse::<Ipv6Addr>() {
            Ok(a) => ParsedAddr::Ip(IpAddr::V6(a)),
            Err(_) => ParsedAddr::Ip(IpAddr::V4(s.parse().map_err(|_| bad_addr())?)),
        },
    };
    // A config `*` gives an IPv4 and an IPv6 rule.
    let (first, second) = match (addr, mask_s) {
        (ParsedAddr::Ip(ip), None) => (AddrPattern::host(ip), None),
        (ParsedAddr::Ip(ip), Some(m)) => {
            let bits = parse_mask(m, &ip)?;
            let pattern = AddrPattern::new(ip, bits).ok_or_else(|| PolicyError::BadMask(tok(m)))?;
            (pattern, None)
        }
        (_, Some(_)) => return Err(PolicyError::WildcardWithMask(tok(arg))),
        (ParsedAddr::Wild4, None) => (AddrPattern::ANY_V4, None),
        (ParsedAddr::Wild6, None) => (AddrPattern::ANY_V6, None),
        (ParsedAddr::WildBoth, None) => (AddrPattern::ANY_V4, Some(AddrPattern::ANY_V6)),
    };
    let ports = parse_ports(ports_s.unwrap_or(""))?;
    let is_v6 = first.family() == IpFamily::V6;
    let mismatch = match syntax {
        Syntax::Config => six && second.is_none() && !is_v6,
        Syntax::Descriptor => six != is_v6,
    };
    if mismatch {
        return Err(PolicyError::FamilyMismatch(tok(text.trim())));
    }
    out.push(PolicyRule::new(action, first, ports));
    out.extend(second.map(|p| PolicyRule::new(action, p, ports)));
    Ok(())
}

/// tor's `DEFAULT_EXIT_POLICY` rejected ports, before `accept *:*`.
const DEFAULT_REJECT_PORTS: [(u16, u16); 10] = [
    (25, 25),
    (119, 119),
    (135, 139),
    (445, 445),
    (563, 563),
    (1214, 1214),
    (4661, 4666),
    (6346, 6429),
    (6699, 6699),
    (6881, 6999),
];

/// tor's `REDUCED_EXIT_POLICY` accepted ports, before `reject *:*`.
const REDUCED_ACCEPT_PORTS: &[(u16, u16)] = &[
    (20, 23),
    (43, 43),
    (53, 53),
    (79, 81),
    (88, 88),
    (110, 110),
    (143, 143),
    (194, 194),
    (220, 220),
    (389, 389),
    (443, 443),
    (464, 464),
    (465, 465),
    (531, 531),
    (543, 544),
    (554, 554),
    (563, 563),
    (587, 587),
    (636, 636),
    (706, 706),
    (749, 749),
    (873, 873),
    (902, 904),
    (981, 981),
    (989, 995),
    (1194, 1194),
    (1220, 1220),
    (1293, 1293),
    (1500, 1500),
    (1533, 1533),
    (1677, 1677),
    (1723, 1723),
    (1755, 1755),
    (1863, 1863),
    (2082, 2083),
    (2086, 2087),
    (2095, 2096),
    (2102, 2104),
    (3128, 3128),
    (3389, 3389),
    (3690, 3690),
    (4321, 4321),
    (4643, 4643),
    (5050, 5050),
    (5190, 5190),
    (5222, 5223),
    (5228, 5228),
    (5900, 5900),
    (6660, 6669),
    (6679, 6679),
    (6697, 6697),
    (8000, 8000),
    (8008, 8008),
    (8074, 8074),
    (8080, 8080),
    (8082, 8082),
    (8087, 8088),
    (8232, 8233),
    (8332, 8333),
    (8443, 8443),
    (8888, 8888),
    (9418, 9418),
    (9999, 9999),
    (10000, 10000),
    (11371, 11371),
    (19294, 19294),
    (19638, 19638),
    (50002, 50002),
    (64738, 64738),
];

/// What [`ExitPolicy::from_torrc`] appends after the configured rules (tor's
/// `EXIT_POLICY_ADD_DEFAULT` / `EXIT_POLICY_ADD_REDUCED`; neither gives `reject *:*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyTail {
    /// tor's default exit policy ([`ExitPolicy::tor_default`]): a few abuse-prone ports
    /// rejected, everything else accepted.
    #[default]
    Default,
    /// tor's `ReducedExitPolicy` ([`ExitPolicy::tor_reduced`]).
    Reduced,
    /// `reject *4:*, reject *6:*` (a bridge, or an exit that lists exactly what it accepts).
    RejectAll,
}

/// How [`ExitPolicy::from_torrc`] completes the configured rules, mirroring tor's
/// `ExitPolicy`-related options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitPolicyConfig {
    /// `IPv6Exit`: when false, `reject *6:*` is put first.
    pub ipv6_exit: bool,
    /// `ExitPolicyRejectPrivate`: put `reject private:*` first (and reject
    /// `own_addresses`).
    pub reject_private: bool,
    /// The relay's own public addresses, rejected first when `reject_private` is set (tor
    /// rejects the relay's advertised addresses). Internal addresses are skipped (already
    /// covered), as are IPv6 ones unless `ipv6_exit`.
    pub own_addresses: Vec<IpAddr>,
    /// What follows the configured rules.
    pub tail: PolicyTail,
}

/// tor's defaults: IPv4 exit, private networks rejected, default policy appended.
impl Default for ExitPolicyConfig {
    fn default() -> Self {
        ExitPolicyConfig {
            ipv6_exit: false,
            reject_private: true,
            own_addresses: Vec::new(),
            tail: PolicyTail::Default,
        }
    }
}

/// An ordered exit policy: the first matching rule decides; no match accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ExitPolicy {
    rules: Vec<PolicyRule>,
}

impl ExitPolicy {
    /// A policy made of `rules`, in order.
    pub fn new(rules: Vec<PolicyRule>) -> Self {
        ExitPolicy { rules }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[PolicyRule] {
        &self.rules
    }

    /// Append a rule.
    pub fn push(&mut self, rule: PolicyRule) {
        self.rules.push(rule);
    }

    /// `reject *4:*, reject *6:*`: a non-exit.
    pub fn reject_all() -> Self {
        Self::new(vec![
            PolicyRule::new(PolicyAction::Reject, AddrPattern::ANY_V4, PortRange::ALL),
            PolicyRule::new(PolicyAction::Reject, AddrPattern::ANY_V6, PortRange::ALL),
        ])
    }

    /// `accept *4:*, accept *6:*`.
    pub fn accept_all() -> Self {
        Self::new(vec![
            PolicyRule::new(PolicyAction::Accept, AddrPattern::ANY_V4, PortRange::ALL),
            PolicyRule::new(PolicyAction::Accept, AddrPattern::ANY_V6, PortRange::ALL),
        ])
    }

    /// Rules `action *:ports` for every listed range (each expanded into `*4` and `*6`, in
    /// tor's order), then `!action *:*`.
    fn port_list(action: PolicyAction, ports: &[(u16, u16)], last: PolicyAction) -> Self {
        let mut rules = Vec::with_capacity(ports.len() * 2 + 2);
        for &(lo, hi) in ports {
            if let Some(range) = PortRange::new(lo, hi) {
                rules.push(PolicyRule::new(action, AddrPattern::ANY_V4, range));
                rules.push(PolicyRule::new(action, AddrPattern::ANY_V6, range));
            }
        }
        rules.push(PolicyRule::new(last, AddrPattern::ANY_V4, PortRange::ALL));
        rules.push(PolicyRule::new(last, AddrPattern::ANY_V6, PortRange::ALL));
        Self::new(rules)
    }

    /// tor's default exit policy (`DEFAULT_EXIT_POLICY`): `reject *:25, reject *:119,
    /// reject *:135-139, reject *:445, reject *:563, reject *:1214, reject *:4661-4666,
    /// reject *:6346-6429, reject *:6699, reject *:6881-6999, accept *:*`.
    pub fn tor_default() -> Self {
        Self::port_list(
            PolicyAction::Reject,
            &DEFAULT_REJECT_PORTS,
            PolicyAction::Accept,
        )
    }

    /// tor's `ReducedExitPolicy` (`REDUCED_EXIT_POLICY`): common service ports accepted,
    /// everything else rejected.
    pub fn tor_reduced() -> Self {
        Self::port_list(
            PolicyAction::Accept,
            REDUCED_ACCEPT_PORTS,
            PolicyAction::Reject,
        )
    }

    /// Parse the torrc syntax: comma-separated rules, blank entries ignored
    /// (`accept *:80, accept *:443, reject *:*`). Nothing is added: see
    /// [`from_torrc`](Self::from_torrc) for tor's full `ExitPolicy` processing.
    pub fn parse_config(s: &str) -> Result<Self, PolicyError> {
        let mut rules = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            parse_rule(entry, Syntax::Config, &mut rules)?;
        }
        Ok(Self::new(rules))
    }

    /// Parse a server descriptor's `accept`/`reject`/`accept6`/`reject6` lines (each
    /// `keyword exitpattern`, dir-spec §2.1.3). Any bad line fails the whole policy, as it
    /// fails the whole descriptor in tor.
    pub fn from_descriptor_lines<'a, I>(lines: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut rules = Vec::new();
        for line in lines {
            parse_rule(line, Syntax::Descriptor, &mut rules)?;
        }
        Ok(Self::new(rules))
    }

    /// The IPv4 rules as server-descriptor lines joined by `\n` (no trailing newline), as
    /// tor publishes them; the IPv6 half goes in the descriptor's `ipv6-policy` line, from
    /// [`summarize(IpFamily::V6)`](Self::summarize). A policy that rejects every IPv4
    /// address is written `reject *:*`, and one without IPv4 rules `accept *:*` (the
    /// spec requires at least one line).
    pub fn to_descriptor_text(&self) -> String {
        if self.rejects_all(IpFamily::V4) {
            return "reject *:*".to_owned();
        }
        let lines: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.pattern.family() == IpFamily::V4)
            .map(PolicyRule::descriptor_line)
            .collect();
        if lines.is_empty() {
            "accept *:*".to_owned()
        } else {
            lines.join("\n")
        }
    }

    /// Build a relay's exit policy from its torrc `ExitPolicy` value the way tor's
    /// `policies_parse_exit_policy` does: `reject *6:*` unless `ipv6_exit`, then
    /// `reject private:*` and the relay's own public addresses if `reject_private`, then the
    /// configured rules, then the [`PolicyTail`], and finally
    /// [`remove_redundancies`](Self::remove_redundancies).
    pub fn from_torrc(config: &str, opts: &ExitPolicyConfig) -> Result<Self, PolicyError> {
        let mut policy = ExitPolicy::default();
        if !opts.ipv6_exit {
            policy.push(PolicyRule::new(
                PolicyAction::Reject,
                AddrPattern::ANY_V6,
                PortRange::ALL,
            ));
        }
        if opts.reject_private {
            policy = policy.with_private_rejected_appended();
            for addr in &opts.own_addresses {
                if is_internal(addr).is_some() || (addr.is_ipv6() && !opts.ipv6_exit) {
                    continue;
                }
                policy.push(PolicyRule::new(
                    PolicyAction::Reject,
                    AddrPattern::host(*addr),
                    PortRange::ALL,
                ));
            }
        }
        policy.rules.extend(Self::parse_config(config)?.rules);
        let tail = match opts.tail {
            PolicyTail::Default => Self::tor_default(),
            PolicyTail::Reduced => Self::tor_reduced(),
            PolicyTail::RejectAll => Self::reject_all(),
        };
        policy.rules.extend(tail.rules);
        policy.remove_redundancies();
        Ok(policy)
    }

    fn with_private_rejected_appended(mut self) -> Self {
        self.rules.extend(
            PRIVATE_NETS
                .iter()
                .map(|net| PolicyRule::new(PolicyAction::Reject, *net, PortRange::ALL)),
        );
        self
    }

    /// This policy with `reject private:*` (tor's [`PRIVATE_NETS`]) put first.
    pub fn with_private_rejected(self) -> Self {
        let mut policy = ExitPolicy::default().with_private_rejected_appended();
        policy.rules.extend(self.rules);
        policy
    }

    /// Drop rules that can never decide anything, without changing any decision (C tor's
    /// `exit_policy_remove_redundancies`): everything of a family after that family's
    /// `*:*` rule, every rule covered by an earlier rule, and every rule covered by a later
    /// rule of the same action with no intersecting rule of the other action in between.
    pub fn remove_redundancies(&mut self) {
        let (mut kill_v4, mut kill_v6) = (false, false);
        self.rules.retain(|r| {
            let kill = match r.pattern.family() {
                IpFamily::V4 => &mut kill_v4,
                IpFamily::V6 => &mut kill_v6,
            };
            if *kill {
                return false;
            }
            if r.is_catch_all() {
                *kill = true;
            }
            true
        });

        let mut kept: Vec<PolicyRule> = Vec::with_capacity(self.rules.len());
        for r in self.rules.drain(..) {
            if !kept.iter().any(|k| k.covers(&r)) {
                kept.push(r);
            }
        }

        let shadowed = |a: &PolicyRule, later: &[PolicyRule]| -> bool {
            for b in later {
                if a.action != b.action {
                    if a.intersects(b) {
                        return false;
                    }
                } else if b.covers(a) {
                    return true;
                }
            }
            false
        };
        self.rules = kept
            .iter()
            .enumerate()
            .filter(|&(i, a)| !shadowed(a, kept.get(i + 1..).unwrap_or(&[])))
            .map(|(_, r)| *r)
            .collect();
    }

    /// Whether a connection to `addr`:`port` is allowed: the first matching rule decides,
    /// and no match accepts. Port 0 is never allowed (dir-spec §2.1.3). An IPv4-mapped
    /// IPv6 address must be allowed both as written and as its IPv4 address.
    pub fn allows(&self, addr: IpAddr, port: u16) -> bool {
        if port == 0 {
            return false;
        }
        let first_match = |a: &IpAddr| {
            self.rules
                .iter()
                .find(|r| r.matches(a, port))
                .is_none_or(|r| r.action == PolicyAction::Accept)
        };
        let mapped = match addr {
            IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        first_match(&addr) && mapped.as_ref().is_none_or(first_match)
    }

    /// Whether a connection to `port` on an address of `family` whose value is not known
    /// might be allowed, C tor's `compare_unknown_tor_addr_to_addr_policy` restricted to the
    /// rules of `family`: the first rule for `port` covering the whole family decides,
    /// "probably" if a narrower rule before it said otherwise.
    pub fn allows_port_family(&self, port: u16, family: IpFamily) -> PolicyVerdict {
        self.verdict_unknown(port, |r| r.pattern.family() == family)
    }

    fn verdict_unknown(&self, port: u16, keep: impl Fn(&PolicyRule) -> bool) -> PolicyVerdict {
        if port == 0 {
            return PolicyVerdict::Rejected;
        }
        let (mut maybe_accept, mut maybe_reject) = (false, false);
        for r in self
            .rules
            .iter()
            .filter(|r| keep(r) && r.ports.contains(port))
        {
            if r.pattern.is_wildcard() {
                return PolicyVerdict::definite(r.action, maybe_accept, maybe_reject);
            }
            match r.action {
                PolicyAction::Accept => maybe_accept = true,
                PolicyAction::Reject => maybe_reject = true,
            }
        }
        if maybe_reject {
            PolicyVerdict::ProbablyAccepted
        } else {
            PolicyVerdict::Accepted
        }
    }

    /// Whether a connection to `port` on a not-yet-resolved hostname might be allowed.
    ///
    /// Each family with at least one rule is judged as by
    /// [`allows_port_family`](Self::allows_port_family) (a family without rules, e.g. IPv6
    /// in a descriptor policy, is not judged: its policy lives elsewhere). If the judged
    /// families agree, that is the verdict; otherwise it is
    /// [`ProbablyAccepted`](PolicyVerdict::ProbablyAccepted) if either family (probably)
    /// accepts, else [`ProbablyRejected`](PolicyVerdict::ProbablyRejected). A policy without
    /// rules accepts. For a policy with IPv4 rules only this is exactly C tor's answer; C tor
    /// lets a `*6` rule decide for IPv4 too, which this does not.
    pub fn allows_port(&self, port: u16) -> PolicyVerdict {
        if port == 0 {
            return PolicyVerdict::Rejected;
        }
        let has = |fam| self.rules.iter().any(|r| r.pattern.family() == fam);
        let verdicts: Vec<PolicyVerdict> = [IpFamily::V4, IpFamily::V6]
            .into_iter()
            .filter(|&fam| has(fam))
            .map(|fam| self.allows_port_family(port, fam))
            .collect();
        let accepting = |v: &PolicyVerdict| {
            matches!(v, PolicyVerdict::Accepted | PolicyVerdict::ProbablyAccepted)
        };
        match verdicts.as_slice() {
            [] => PolicyVerdict::Accepted,
            [first, rest @ ..] if rest.iter().all(|v| v == first) => *first,
            vs if vs.iter().any(accepting) => PolicyVerdict::ProbablyAccepted,
            _ => PolicyVerdict::ProbablyRejected,
        }
    }

    /// Whether the policy certainly rejects every address of `family` on every port (C
    /// tor's `policy_is_reject_star` with `default_reject` false): true if a `*:*` reject
    /// of that family comes before any accept of that family.
    pub fn rejects_all(&self, family: IpFamily) -> bool {
        for r in self.rules.iter().filter(|r| r.pattern.family() == family) {
            match r.action {
                PolicyAction::Accept => return false,
                PolicyAction::Reject if r.is_catch_all() => return true,
                PolicyAction::Reject => {}
            }
        }
        false
    }

    /// The policy summary for `family` (the `p` / `p6` / `ipv6-policy` line), computed as C
    /// tor's `policy_summarize` does, so that it matches what directory authorities publish
    /// (dir-spec §3.4.1, §3.8.2):
    ///
    /// - an accept counts only if it covers every address of the family;
    /// - rejects of tor's [`PRIVATE_NETS`] (exactly as listed) are ignored, other rejects are
    ///   counted per port, and a port is accepted only if no more than 2^25 IPv4 addresses
    ///   (two /8s) or 2^48 IPv6 /64s (one /16) were rejected before the accept; IPv6 rejects
    ///   narrower than a /64 are ignored;
    /// - the shorter of the accept and reject lists is written (accept on a tie), and if both
    ///   exceed 1000 characters with their keyword, the accept list is cut at an entry
    ///   boundary.
    pub fn summarize(&self, family: IpFamily) -> PortPolicy {
        let mut items = vec![SummaryItem {
            lo: 1,
            hi: 65535,
            reject_count: 0,
            accepted: false,
        }];
        let (addr_bits, scale, cutoff): (u32, u32, u64) = match family {
            IpFamily::V4 => (32, 0, 1 << 25),
            IpFamily::V6 => (128, 64, 1 << 48),
        };
        for r in self.rules.iter().filter(|r| r.pattern.family() == family) {
            match r.action {
                PolicyAction::Accept => {
                    if r.pattern.is_wildcard() {
                        for it in summary_range(&mut items, r.ports) {
                            if !it.accepted && it.reject_count <= cutoff {
                                it.accepted = true;
                            }
                        }
                    }
                }
                PolicyAction::Reject => {
                    if PRIVATE_NETS.contains(&r.pattern) {
                        continue;
                    }
                    let bits = u32::from(r.pattern.bits());
                    let Some(exp) = (addr_bits - scale).checked_sub(bits) else {
                        continue; // narrower than a counted unit
                    };
                    let count = 1u64.checked_shl(exp).unwrap_or(u64::MAX);
                    for it in summary_range(&mut items, r.ports) {
                        it.reject_count = it.reject_count.saturating_add(count);
                    }
                }
            }
        }

        let mut accepts = Vec::new();
        let mut rejects = Vec::new();
        let mut start = 1u16;
        let mut iter = items.iter().peekable();
        while let Some(it) = iter.next() {
            let next = iter.peek();
            if next.is_none_or(|n| n.accepted != it.accepted) {
                let range = PortRange {
                    lo: start,
                    hi: it.hi,
                };
                if it.accepted {
                    accepts.push(range);
                } else {
                    rejects.push(range);
                }
                if let Some(n) = next {
                    start = n.lo;
                }
            }
        }

        if accepts.is_empty() {
            return PortPolicy::reject_all();
        }
        if rejects.is_empty() {
            return PortPolicy::accept_all();
        }
        let joined_len = |l: &[PortRange]| {
            l.iter().map(|r| r.text_len()).sum::<usize>() + l.len().saturating_sub(1)
        };
        let (alen, rlen) = (joined_len(&accepts), joined_len(&rejects));
        let limit = MAX_SUMMARY_LEN - "accept".len() - 1;
        if rlen > limit && alen > limit {
            // Cut the accept list at the last comma at or before `limit`.
            let mut end = 0usize;
            let mut keep = 0usize;
            for (i, r) in accepts.iter().enumerate() {
                let entry_end = if i == 0 { 0 } else { end + 1 } + r.text_len();
                if entry_end > limit {
                    break;
                }
                end = entry_end;
                keep = i + 1;
            }
            accepts.truncate(keep.max(1));
            PortPolicy {
                accept: true,
                ranges: accepts,
            }
        } else if rlen < alen {
            PortPolicy {
                accept: false,
                ranges: rejects,
            }
        } else {
            PortPolicy {
                accept: true,
                ranges: accepts,
            }
        }
    }
}

/// One port range of a summary being built (C tor's `policy_summary_item_t`).
#[derive(Debug, Clone, Copy)]
struct SummaryItem {
    lo: u16,
    hi: u16,
    reject_count: u64,
    accepted: bool,
}

/// Make sure some item starts exactly at `start`.
fn summary_split_at(items: &mut Vec<SummaryItem>, start: u16) {
    let Some(pos) = items.iter().position(|it| it.lo < start && start <= it.hi) else {
        return;
    };
    if let Some(it) = items.get_mut(pos) {
        let new = SummaryItem { lo: start, ..*it };
        it.hi = start.saturating_sub(1);
        items.insert(pos + 1, new);
    }
}

/// Split items so that `ports` is exactly a run of items, and return that run.
fn summary_range(
    items: &mut Vec<SummaryItem>,
    ports: PortRange,
) -> impl Iterator<Item = &mut SummaryItem> {
    summary_split_at(items, ports.lo);
    if let Some(after) = ports.hi.checked_add(1) {
        summary_split_at(items, after);
    }
    items
        .iter_mut()
        .filter(move |it| it.lo >= ports.lo && it.hi <= ports.hi)
}

/// Config syntax: rules joined by `", "`.
impl fmt::Display for ExitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// [`ExitPolicy::parse_config`].
impl FromStr for ExitPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_config(s)
    }
}

/// An exit policy summary: `accept`/`reject` and a list of port ranges (dir-spec §3.8.2,
/// the `p`, `p6` and `ipv6-policy` lines). Entries are kept as given, not merged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortPolicy {
    accept: bool,
    ranges: Vec<PortRange>,
}

impl PortPolicy {
    /// `accept 1-65535`.
    pub fn accept_all() -> Self {
        PortPolicy {
            accept: true,
            ranges: vec![PortRange::ALL],
        }
    }

    /// `reject 1-65535`: also what a missing `p6` / `ipv6-policy` line means.
    pub fn reject_all() -> Self {
        PortPolicy {
            accept: false,
            ranges: vec![PortRange::ALL],
        }
    }

    /// A summary listing `ranges` with `action`, or `None` if `ranges` is empty or longer
    /// than 1000 entries.
    pub fn new(action: PolicyAction, ranges: Vec<PortRange>) -> Option<Self> {
        if ranges.is_empty() || ranges.len() > MAX_SUMMARY_LEN {
            return None;
        }
        Some(PortPolicy {
            accept: action == PolicyAction::Accept,
            ranges,
        })
    }

    /// Whether the listed ports are the accepted or the rejected ones.
    pub fn action(&self) -> PolicyAction {
        if self.accept {
            PolicyAction::Accept
        } else {
            PolicyAction::Reject
        }
    }

    /// The listed port ranges.
    pub fn ranges(&self) -> &[PortRange] {
        &self.ranges
    }

    /// Whether the relay (probably) allows exiting to `port` on most addresses. Port 0 is
    /// never allowed.
    pub fn allows_port(&self, port: u16) -> bool {
        port != 0 && self.ranges.iter().any(|r| r.contains(port)) == self.accept
    }

    /// Whether no port at all is allowed.
    pub fn rejects_all(&self) -> bool {
        if self.accept {
            return false; // ranges is never empty and never holds port 0
        }
        let mut sorted = self.ranges.clone();
        sorted.sort_unstable();
        let mut next_uncovered: u32 = 1;
        for r in sorted {
            if u32::from(r.lo) > next_uncovered {
                return false;
            }
            next_uncovered = next_uncovered.max(u32::from(r.hi) + 1);
        }
        next_uncovered > 65535
    }
}

/// `accept 80,443,1000-2000`.
impl fmt::Display for PortPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.accept { "accept " } else { "reject " })?;
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Parse a summary the way C tor's `parse_short_policy` does: `accept ` or `reject `, then
/// comma-separated `N` / `N-M` entries; empty entries and entries not starting with a digit
/// are skipped (for forward compatibility), a malformed numeric entry fails, and at least
/// one entry (at most 1000) is required.
impl FromStr for PortPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (accept, list) = if let Some(rest) = s.strip_prefix("accept ") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("reject ") {
            (false, rest)
        } else {
            return Err(PolicyError::BadSummaryKeyword(tok(s)));
        };
        let mut ranges = Vec::new();
        for entry in list.split(',') {
            if !entry.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            if ranges.len() == MAX_SUMMARY_LEN {
                return Err(PolicyError::SummaryTooLong);
            }
            let bad = || PolicyError::BadSummaryEntry(tok(entry));
            let range = match entry.split_once('-') {
                None => parse_port_number(entry).and_then(PortRange::single),
                Some((lo, hi)) => parse_port_number(lo)
                    .zip(parse_port_number(hi))
                    .and_then(|(lo, hi)| PortRange::new(lo, hi)),
            };
            ranges.push(range.ok_or_else(bad)?);
        }
        if ranges.is_empty() {
            return Err(PolicyError::EmptySummary);
        }
        Ok(PortPolicy { accept, ranges })
    }
}

/// IPv4 ranges an exit refuses by default, most specific first.
const INTERNAL_V4: [(u32, u8, &str); 15] = [
    (0xffff_ffff, 32, "255.255.255.255 (limited broadcast)"),
    (0x0000_0000, 8, "0.0.0.0/8 (this network)"),
    (0x0a00_0000, 8, "10.0.0.0/8 (private)"),
    (
        0x6440_0000,
        10,
        "100.64.0.0/10 (shared address space, CGNAT)",
    ),
    (0x7f00_0000, 8, "127.0.0.0/8 (loopback)"),
    (0xa9fe_0000, 16, "169.254.0.0/16 (link-local)"),
    (0xac10_0000, 12, "172.16.0.0/12 (private)"),
    (0xc000_0000, 24, "192.0.0.0/24 (IETF protocol assignments)"),
    (0xc000_0200, 24, "192.0.2.0/24 (documentation)"),
    (0xc0a8_0000, 16, "192.168.0.0/16 (private)"),
    (0xc612_0000, 15, "198.18.0.0/15 (benchmarking)"),
    (0xc633_6400, 24, "198.51.100.0/24 (documentation)"),
    (0xcb00_7100, 24, "203.0.113.0/24 (documentation)"),
    (0xe000_0000, 4, "224.0.0.0/4 (multicast)"),
    (0xf000_0000, 4, "240.0.0.0/4 (reserved)"),
];

/// IPv6 ranges an exit refuses by default (after the special cases in [`is_internal_v6`]).
const INTERNAL_V6: [(u128, u8, &str); 9] = [
    (
        0x0064_ff9b_0001_u128 << 80,
        48,
        "64:ff9b:1::/48 (local-use IPv4/IPv6 translation)",
    ),
    (0x0100_u128 << 112, 64, "100::/64 (discard-only)"),
    (0x2001_0002_u128 << 96, 48, "2001:2::/48 (benchmarking)"),
    (0x2001_0db8_u128 << 96, 32, "2001:db8::/32 (documentation)"),
    (0xfc00_u128 << 112, 7, "fc00::/7 (unique local)"),
    (0xfe80_u128 << 112, 10, "fe80::/10 (link-local)"),
    (0xfec0_u128 << 112, 10, "fec0::/10 (site-local, deprecated)"),
    (0xff00_u128 << 112, 8, "ff00::/8 (multicast)"),
    // Last, so that the more specific names above win inside it.
    (
        0,
        8,
        "::/8 (reserved, incl. IPv4-compatible and IPv4-translated)",
    ),
];

fn is_internal_v4(a: Ipv4Addr) -> Option<&'static str> {
    let a = a.to_bits();
    INTERNAL_V4
        .iter()
        .find(|&&(net, bits, _)| prefix_eq_u32(a, net, bits))
        .map(|&(_, _, name)| name)
}

fn is_internal_v6(a: Ipv6Addr) -> Option<&'static str> {
    if a.is_unspecified() {
        return Some(":: (unspecified)");
    }
    if a.is_loopback() {
        return Some("::1 (loopback)");
    }
    // IPv4-mapped: the connection goes to the embedded IPv4 address.
    if let Some(v4) = a.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    let bits = a.to_bits();
    let low32 = Ipv4Addr::from_bits((bits & 0xffff_ffff) as u32);
    // NAT64 well-known prefix 64:ff9b::/96: the translator connects to the embedded IPv4.
    if prefix_eq_u128(bits, 0x0064_ff9b << 96, 96) {
        return is_internal_v4(low32);
    }
    // 6to4 2002::/16: the embedded IPv4 (bits 16..48) is the tunnel endpoint.
    if prefix_eq_u128(bits, 0x2002 << 112, 16) {
        let embedded = Ipv4Addr::from_bits(((bits >> 80) & 0xffff_ffff) as u32);
        if let Some(name) = is_internal_v4(embedded) {
            return Some(name);
        }
    }
    INTERNAL_V6
        .iter()
        .find(|&&(net, len, _)| prefix_eq_u128(bits, net, len))
        .map(|&(_, _, name)| name)
}

/// Whether `addr` is a destination an exit must not connect to by default, and if so the
/// name of its range.
///
/// IPv4: 0.0.0.0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16, 172.16/12, 192.0.0/24,
/// the documentation nets (192.0.2/24, 198.51.100/24, 203.0.113/24), 192.168/16,
/// 198.18/15, 224/4, 240/4 and 255.255.255.255.
/// IPv6: ::, ::1, the rest of ::/8, fc00::/7, fe80::/10, fec0::/10, ff00::/8, 100::/64,
/// 2001:db8::/32, 2001:2::/48, 64:ff9b:1::/48; an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64
/// (`64:ff9b::a.b.c.d`) address is judged by its embedded IPv4 address (and named after its
/// range), and a 6to4 address (2002::/16) is internal if its embedded IPv4 address is.
pub fn is_internal(addr: &IpAddr) -> Option<&'static str> {
    match *addr {
        IpAddr::V4(a) => is_internal_v4(a),
        IpAddr::V6(a) => is_internal_v6(a),
    }
}

/// Why an exit refuses a stream. Both refusals are reported to the client as
/// `END` reason `EXITPOLICY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExitRefusal {
    /// The destination (or one address its name resolved to) is internal.
    #[error("destination {addr} is internal: {range}")]
    Internal {
        /// The refused address.
        addr: IpAddr,
        /// Its range, from [`is_internal`].
        range: &'static str,
    },
    /// The exit policy rejects the destination.
    #[error("exit policy rejects {addr} port {port}")]
    Policy {
        /// The first refused address.
        addr: IpAddr,
        /// The requested port.
        port: u16,
    },
    /// The name resolved to no address at all.
    #[error("no address to connect to")]
    NoAddress,
}

/// The exit's decision procedure for BEGIN requests: refuse internal destinations (unless
/// `allow_internal`), then consult the exit policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitGuard {
    /// The relay's exit policy.
    pub policy: ExitPolicy,
    /// Allow internal destinations ([`is_internal`]); off by default. The policy still
    /// applies (and normally rejects `private:*` too).
    pub allow_internal: bool,
}

impl ExitGuard {
    /// A guard refusing internal destinations and applying `policy`.
    pub fn new(policy: ExitPolicy) -> Self {
        ExitGuard {
            policy,
            allow_internal: false,
        }
    }

    /// Check one destination address.
    pub fn check(&self, addr: IpAddr, port: u16) -> Result<(), ExitRefusal> {
        if !self.allow_internal
            && let Some(range) = is_internal(&addr)
        {
            return Err(ExitRefusal::Internal { addr, range });
        }
        if self.policy.allows(addr, port) {
            Ok(())
        } else {
            Err(ExitRefusal::Policy { addr, port })
        }
    }

    /// Check the addresses a hostname resolved to, and return those the exit may connect
    /// to, in the resolver's order.
    ///
    /// If **any** address is internal (and internal destinations are not allowed) the whole
    /// name is refused: a name that resolves to loopback or a private range alongside
    /// public addresses is a probe of the exit's network (or DNS rebinding), and whether
    /// the caller would have picked that address must not matter. Otherwise addresses the
    /// policy rejects are dropped; if none remains the name is refused.
    pub fn check_resolved(&self, addrs: &[IpAddr], port: u16) -> Result<Vec<IpAddr>, ExitRefusal> {
        if !self.allow_internal
            && let Some((addr, range)) = addrs
                .iter()
                .find_map(|a| is_internal(a).map(|range| (*a, range)))
        {
            return Err(ExitRefusal::Internal { addr, range });
        }
        let allowed: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|a| self.policy.allows(*a, port))
            .collect();
        match (allowed.is_empty(), addrs.first()) {
            (false, _) => Ok(allowed),
            (true, Some(&addr)) => Err(ExitRefusal::Policy { addr, port }),
            (true, None) => Err(ExitRefusal::NoAddress),
        }
    }

    /// Before resolving a hostname: might `port` be allowed at all? (See
    /// [`ExitPolicy::allows_port`].)
    pub fn check_port(&self, port: u16) -> PolicyVerdict {
        self.policy.allows_port(port)
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg(s: &str) -> ExitPolicy {
        ExitPolicy::parse_config(s).unwrap()
    }

    fn cfg_err(s: &str) -> PolicyError {
        ExitPolicy::parse_config(s).unwrap_err()
    }

    fn desc_err(s: &str) -> PolicyError {
        ExitPolicy::from_descriptor_lines([s]).unwrap_err()
    }

    fn pr(lo: u16, hi: u16) -> PortRange {
        PortRange::new(lo, hi).unwrap()
    }

    fn pat(s: &str, bits: u8) -> AddrPattern {
        AddrPattern::new(ip(s), bits).unwrap()
    }

    const ALL_OPTS: [PolicyTail; 3] = [
        PolicyTail::Default,
        PolicyTail::Reduced,
        PolicyTail::RejectAll,
    ];

    // --- Parsing tor's own examples ---

    #[test]
    fn reject_private_expands_to_tors_list() {
        let p = cfg("reject private:*");
        assert_eq!(p.rules().len(), 12);
        for (r, net) in p.rules().iter().zip(PRIVATE_NETS.iter()) {
            assert_eq!(
                *r,
                PolicyRule::new(PolicyAction::Reject, *net, PortRange::ALL)
            );
        }
        // Same list and order as tor's GETINFO exit-policy/reject-private/default.
        assert_eq!(
            p.to_string(),
            "reject 0.0.0.0/8:*, reject 169.254.0.0/16:*, reject 127.0.0.0/8:*, \
             reject 192.168.0.0/16:*, reject 10.0.0.0/8:*, reject 172.16.0.0/12:*, \
             reject [::]/8:*, reject [fc00::]/7:*, reject [fe80::]/10:*, reject [fec0::]/10:*, \
             reject [ff00::]/8:*, reject [::]/127:*"
        );
        // `accept6 private` and a port still cover both families.
        let p = cfg("accept6 private:80");
        assert_eq!(p.rules().len(), 12);
        assert!(p.rules().iter().all(|r| r.ports == pr(80, 80)));
    }

    #[test]
    fn star_covers_both_families_in_config() {
        let p = cfg("accept *:80");
        assert_eq!(
            p.rules(),
            &[
                PolicyRule::new(PolicyAction::Accept, AddrPattern::ANY_V4, pr(80, 80)),
                PolicyRule::new(PolicyAction::Accept, AddrPattern::ANY_V6, pr(80, 80)),
            ]
        );
        assert_eq!(p.to_string(), "accept *4:80, accept *6:80");
        // accept6 * / reject6 * are IPv6 only (tor's policy10 / policy11).
        assert_eq!(cfg("accept6 *:*").to_string(), "accept *6:*");
        assert_eq!(cfg("reject6 *:*").to_string(), "reject *6:*");
    }

    #[test]
    fn tor_examples_parse() {
        let p = cfg("accept6 [::]/0:443");
        assert_eq!(
            p.rules(),
            &[PolicyRule::new(
                PolicyAction::Accept,
                AddrPattern::ANY_V6,
                pr(443, 443)
            )]
        );
        assert_eq!(p.to_string(), "accept *6:443");

        let p = cfg("reject 127.0.0.1/8:*");
        let r = p.rules()[0];
        assert_eq!(r.pattern.addr(), ip("127.0.0.1"));
        assert_eq!(r.pattern.bits(), 8);
        assert_eq!(p.to_string(), "reject 127.0.0.1/8:*");
        assert!(!p.allows(ip("127.0.0.0"), 80));
        assert!(!p.allows(ip("127.255.255.255"), 80));
        assert!(p.allows(ip("128.0.0.0"), 80));
        assert!(p.allows(ip("126.255.255.255"), 80));

        let p = cfg("accept *4:1-1024");
        assert_eq!(
            p.rules(),
            &[PolicyRule::new(
                PolicyAction::Accept,
                AddrPattern::ANY_V4,
                pr(1, 1024)
            )]
        );
        assert_eq!(p.to_string(), "accept *4:1-1024");

        // Other accepted spellings.
        assert_eq!(
            cfg("reject 1.2.3.4/255.255.0.0:*").rules()[0].pattern,
            pat("1.2.3.4", 16)
        );
        assert_eq!(
            cfg("reject 1.2.3.4/0.0.0.0:*").rules()[0].pattern,
            AddrPattern::ANY_V4
        );
        assert_eq!(
            cfg("reject 0.0.0.0/0").rules()[0].pattern,
            AddrPattern::ANY_V4
        );
        assert_eq!(cfg("accept 1.2.3.4:0-80").rules()[0].ports, pr(1, 80));
        assert_eq!(cfg("reject [::1]").to_string(), "reject [::1]:*");
        assert_eq!(cfg("reject 1.2.3.4:").to_string(), "reject 1.2.3.4:*");
        assert_eq!(
            cfg("reject6 2607:5300::/32").to_string(),
            "reject [2607:5300::]/32:*"
        );
        assert_eq!(
            cfg("reject 149.56.0.0/16").to_string(),
            "reject 149.56.0.0/16:*"
        );
        assert_eq!(cfg("  accept\t*4:80 ,, reject *4:* ,").rules().len(), 2);
        assert_eq!(cfg(""), ExitPolicy::default());
    }

    #[test]
    fn tor_test_reject_192_168() {
        // test_policies_general: "reject 192.168.0.0/16:*".
        let p = cfg("reject 192.168.0.0/16:*");
        let r = p.rules()[0];
        assert_eq!(r.action, PolicyAction::Reject);
        assert_eq!(r.pattern, pat("192.168.0.0", 16));
        assert_eq!(r.ports, PortRange::ALL);
        assert!(p.allows(ip("1.2.3.4"), 2));
        assert_eq!(p.allows_port(2), PolicyVerdict::ProbablyAccepted);
        assert!(!p.allows(ip("192.168.1.2"), 2));
    }

    #[test]
    fn default_and_reduced_match_tors_strings() {
        assert_eq!(
            ExitPolicy::tor_default(),
            cfg("reject *:25,reject *:119,reject *:135-139,reject *:445,\
                 reject *:563,reject *:1214,reject *:4661-4666,\
                 reject *:6346-6429,reject *:6699,reject *:6881-6999,accept *:*")
        );
        assert_eq!(
            ExitPolicy::tor_reduced(),
            cfg(
                "accept *:20-23,accept *:43,accept *:53,accept *:79-81,accept *:88,\
                 accept *:110,accept *:143,accept *:194,accept *:220,accept *:389,\
                 accept *:443,accept *:464,accept *:465,accept *:531,accept *:543-544,\
                 accept *:554,accept *:563,accept *:587,accept *:636,accept *:706,\
                 accept *:749,accept *:873,accept *:902-904,accept *:981,accept *:989-995,\
                 accept *:1194,accept *:1220,accept *:1293,accept *:1500,accept *:1533,\
                 accept *:1677,accept *:1723,accept *:1755,accept *:1863,\
                 accept *:2082-2083,accept *:2086-2087,accept *:2095-2096,\
                 accept *:2102-2104,accept *:3128,accept *:3389,accept *:3690,\
                 accept *:4321,accept *:4643,accept *:5050,accept *:5190,\
                 accept *:5222-5223,accept *:5228,accept *:5900,accept *:6660-6669,\
                 accept *:6679,accept *:6697,accept *:8000,accept *:8008,accept *:8074,\
                 accept *:8080,accept *:8082,accept *:8087-8088,accept *:8232-8233,\
                 accept *:8332-8333,accept *:8443,accept *:8888,accept *:9418,\
                 accept *:9999,accept *:10000,accept *:11371,accept *:19294,\
                 accept *:19638,accept *:50002,accept *:64738,reject *:*"
            )
        );
    }

    // --- Rejection of malformed rules ---

    #[test]
    fn malformed_rules_from_tors_tests() {
        use PolicyError::*;
        let s = |x: &str| x.to_owned();
        assert_eq!(cfg_err("bad_token *4:*"), UnknownKeyword(s("bad_token")));
        assert_eq!(cfg_err("accept6 **:*"), BadAddress(s("**:*")));
        assert_eq!(cfg_err("accept */15:*"), WildcardWithMask(s("*/15:*")));
        assert_eq!(cfg_err("reject6 */:*"), WildcardWithMask(s("*/:*")));
        assert_eq!(cfg_err("accept 127.0.0.1/33:*"), BadMask(s("33")));
        assert_eq!(cfg_err("accept6 [::1]/129:*"), BadMask(s("129")));
        assert_eq!(cfg_err("reject 8.8.8.8/-1:*"), BadMask(s("-1")));
        assert_eq!(cfg_err("reject 8.8.4.4:10-5"), BadPortRange(s("10-5")));
        assert_eq!(cfg_err("reject 1.2.3.4:-1"), BadPort(s("-1")));
        // Ambiguous unbracketed IPv6 (tor rejects these too).
        assert_eq!(cfg_err("accept acce::abcd"), BadAddress(s("acce::abcd")));
        assert_eq!(cfg_err("accept 7:1234"), BadAddress(s("7:1234")));
        assert_eq!(cfg_err("accept ::"), BadAddress(s("::")));
        // tor ignores these with a warning; we refuse them.
        assert_eq!(
            cfg_err("accept6 1.2.3.4:*"),
            FamilyMismatch(s("accept6 1.2.3.4:*"))
        );
        assert_eq!(
            cfg_err("reject6 2.4.6.0/24:*"),
            FamilyMismatch(s("reject6 2.4.6.0/24:*"))
        );
        assert_eq!(cfg_err("accept6 *4:*"), FamilyMismatch(s("accept6 *4:*")));
    }

    #[test]
    fn malformed_rules_more() {
        use PolicyError::*;
        let s = |x: &str| x.to_owned();
        assert_eq!(cfg_err("accept"), MissingPattern(s("accept")));
        assert_eq!(cfg_err("accept *:80 extra"), TrailingToken(s("extra")));
        assert_eq!(cfg_err("Accept *:80"), UnknownKeyword(s("Accept")));
        assert_eq!(cfg_err("accept *:80, bogus"), UnknownKeyword(s("bogus")));
        assert_eq!(cfg_err("accept 1.2.3.4:65536"), BadPort(s("65536")));
        assert_eq!(cfg_err("accept 1.2.3.4:0"), BadPort(s("0")));
        assert_eq!(cfg_err("accept 1.2.3.4:80-"), BadPort(s("80-")));
        assert_eq!(cfg_err("accept 1.2.3.4:+80"), BadPort(s("+80")));
        assert_eq!(cfg_err("accept 1.2.3.4:1-0"), BadPort(s("1-0")));
        assert_eq!(cfg_err("accept 1.2.3.4:x"), BadPort(s("x")));
        assert_eq!(cfg_err("accept [::1"), BadAddress(s("[::1")));
        assert_eq!(cfg_err("accept [::1]x:80"), BadAddress(s("[::1]x:80")));
        assert_eq!(
            cfg_err("accept [1.2.3.4]:80"),
            BadAddress(s("[1.2.3.4]:80"))
        );
        assert_eq!(cfg_err("accept 1.2.3:80"), BadAddress(s("1.2.3:80")));
        assert_eq!(cfg_err("accept private"), BadAddress(s("private")));
        assert_eq!(
            cfg_err("accept privatefoo:*"),
            BadAddress(s("privatefoo:*"))
        );
        assert_eq!(
            cfg_err("accept 1.2.3.4/255.0.255.0:*"),
            BadMask(s("255.0.255.0"))
        );
        assert_eq!(cfg_err("accept [::1]/255.0.0.0:*"), BadMask(s("255.0.0.0")));
        assert_eq!(cfg_err("accept 1.2.3.4/:80"), BadMask(s("")));
        assert_eq!(cfg_err("accept 1.2.3.4/+8:80"), BadMask(s("+8")));
        let long = format!("accept 1.2.3.4:{}", "1".repeat(200));
        assert_eq!(cfg_err(&long), TooLong(208));
        // The error keeps at most 80 characters of a hostile token.
        let long_kw = "x".repeat(500);
        assert_eq!(cfg_err(&long_kw), UnknownKeyword("x".repeat(80)));
    }

    // --- Matching ---

    #[test]
    fn first_match_wins() {
        let p = cfg("accept 10.0.0.1:80, reject 10.0.0.0/8:*, accept *:*");
        assert!(p.allows(ip("10.0.0.1"), 80));
        assert!(!p.allows(ip("10.0.0.1"), 81));
        assert!(!p.allows(ip("10.0.0.2"), 80));
        assert!(p.allows(ip("8.8.8.8"), 25));
        let p = cfg("reject 10.0.0.0/8:*, accept 10.0.0.1:80, accept *:*");
        assert!(!p.allows(ip("10.0.0.1"), 80));
        // No match: accepted (dir-spec §2.1.3, tor's compare_known_tor_addr_to_addr_policy).
        let p = cfg("reject 1.2.3.4:*");
        assert!(p.allows(ip("5.6.7.8"), 80));
        assert!(ExitPolicy::default().allows(ip("5.6.7.8"), 80));
        // Port 0 is never permitted.
        assert!(!ExitPolicy::accept_all().allows(ip("5.6.7.8"), 0));
        assert!(!ExitPolicy::default().allows(ip("5.6.7.8"), 0));
    }

    #[test]
    fn families_do_not_cross_match() {
        let p = cfg("reject *4:*");
        assert!(!p.allows(ip("8.8.8.8"), 80));
        assert!(p.allows(ip("2001:4860::8888"), 80));
        let p = cfg("reject *6:*");
        assert!(p.allows(ip("8.8.8.8"), 80));
        assert!(!p.allows(ip("2001:4860::8888"), 80));
        let p = cfg("reject [2001:db8::]/32:443, accept *:443, reject *:*");
        assert!(!p.allows(ip("2001:db8::1"), 443));
        assert!(p.allows(ip("2001:db9::1"), 443));
        assert!(p.allows(ip("32.1.13.184"), 443)); // 0x20010db8 as IPv4
        assert!(!p.allows(ip("2001:db9::1"), 80));
        // An IPv4 rule for 0.0.0.0/8 does not match the IPv6 ::/8.
        let p = cfg("reject 0.0.0.0/8:*");
        assert!(p.allows(ip("::2"), 80));
    }

    #[test]
    fn ipv4_mapped_is_checked_as_both_forms() {
        let p = cfg("reject 127.0.0.0/8:*, accept *:*");
        assert!(!p.allows(ip("::ffff:127.0.0.1"), 80));
        assert!(p.allows(ip("::ffff:8.8.8.8"), 80));
        let p = cfg("reject [::ffff:0:0]/96:*, accept *:*");
        assert!(!p.allows(ip("::ffff:8.8.8.8"), 80));
        assert!(p.allows(ip("8.8.8.8"), 80));
        let p = cfg("accept *4:*, reject *6:*");
        assert!(!p.allows(ip("::ffff:8.8.8.8"), 80));
    }

    #[test]
    fn unknown_address_verdicts() {
        use PolicyVerdict::*;
        let p = cfg("accept 1.2.3.0/24:80, reject *4:*");
        assert_eq!(p.allows_port(80), ProbablyRejected);
        assert_eq!(p.allows_port(81), Rejected);
        let p = cfg("reject 1.2.3.0/24:80, accept *4:*");
        assert_eq!(p.allows_port(80), ProbablyAccepted);
        assert_eq!(p.allows_port(81), Accepted);
        let p = cfg("reject *:25, accept *:*");
        assert_eq!(p.allows_port(25), Rejected);
        assert_eq!(p.allows_port(80), Accepted);
        // A non-IPv6 exit: IPv6 rejected, IPv4 port 80 accepted.
        let p = cfg("reject *6:*, accept *4:80, reject *4:*");
        assert_eq!(p.allows_port(80), ProbablyAccepted);
        assert_eq!(p.allows_port(81), Rejected);
        assert_eq!(p.allows_port_family(80, IpFamily::V4), Accepted);
        assert_eq!(p.allows_port_family(80, IpFamily::V6), Rejected);
        // A descriptor policy (IPv4 only) is judged on IPv4 alone.
        let p = ExitPolicy::from_descriptor_lines(["reject *:*"]).unwrap();
        assert_eq!(p.allows_port(80), Rejected);
        assert_eq!(ExitPolicy::default().allows_port(80), Accepted);
        assert_eq!(ExitPolicy::accept_all().allows_port(0), Rejected);
        assert!(ProbablyRejected.might_accept() && !Rejected.might_accept());
    }

    #[test]
    fn rejects_all_like_policy_is_reject_star() {
        assert!(ExitPolicy::reject_all().rejects_all(IpFamily::V4));
        assert!(ExitPolicy::reject_all().rejects_all(IpFamily::V6));
        assert!(!ExitPolicy::tor_default().rejects_all(IpFamily::V4));
        // tor's policy10 / policy11.
        assert!(!cfg("accept6 *:*").rejects_all(IpFamily::V6));
        assert!(cfg("reject6 *:*").rejects_all(IpFamily::V6));
        assert!(!cfg("reject6 *:*").rejects_all(IpFamily::V4));
        assert!(cfg("reject 1.2.3.4:*, reject *4:*").rejects_all(IpFamily::V4));
        assert!(!cfg("accept 1.2.3.4:80, reject *4:*").rejects_all(IpFamily::V4));
    }

    #[test]
    fn with_private_rejected_goes_first() {
        let p = ExitPolicy::accept_all().with_private_rejected();
        assert_eq!(p.rules().len(), 14);
        assert!(!p.allows(ip("10.1.2.3"), 80));
        assert!(!p.allows(ip("fe80::1"), 80));
        assert!(p.allows(ip("8.8.8.8"), 80));
    }

    // --- torrc processing and compaction ---

    #[test]
    fn from_torrc_compacts_like_tor() {
        // test_policies_general: "accept *:80,reject private:*,reject *:*" with
        // EXIT_POLICY_IPV6_ENABLED | EXIT_POLICY_ADD_DEFAULT compacts to 4 entries.
        let opts = ExitPolicyConfig {
            ipv6_exit: true,
            reject_private: false,
            ..ExitPolicyConfig::default()
        };
        let p = ExitPolicy::from_torrc("accept *:80,reject private:*,reject *:*", &opts).unwrap();
        assert_eq!(
            p.to_string(),
            "accept *4:80, accept *6:80, reject *4:*, reject *6:*"
        );
    }

    #[test]
    fn from_torrc_defaults() {
        let p = ExitPolicy::from_torrc("", &ExitPolicyConfig::default()).unwrap();
        assert!(!p.allows(ip("2001:4860::8888"), 80)); // not an IPv6 exit
        assert!(!p.allows(ip("192.168.1.1"), 80));
        assert!(!p.allows(ip("8.8.8.8"), 25));
        assert!(p.allows(ip("8.8.8.8"), 80));
        // The well-known consensus summary of tor's default policy.
        assert_eq!(
            p.summarize(IpFamily::V4).to_string(),
            "reject 25,119,135-139,445,563,1214,4661-4666,6346-6429,6699,6881-6999"
        );
        assert_eq!(p.summarize(IpFamily::V6).to_string(), "reject 1-65535");
        let text = p.to_descriptor_text();
        assert!(text.starts_with("reject 0.0.0.0/8:*\nreject 169.254.0.0/16:*\n"));
        assert!(text.ends_with("\nreject *:6881-6999\naccept *:*"));
        assert!(!text.contains('['));

        let opts = ExitPolicyConfig {
            own_addresses: vec![
                ip("1.2.3.4"),
                ip("10.0.0.1"),
                ip("2001:db8::1"),
                ip("2600::1"),
            ],
            ..ExitPolicyConfig::default()
        };
        let p = ExitPolicy::from_torrc("accept *:*", &opts).unwrap();
        assert!(!p.allows(ip("1.2.3.4"), 80));
        assert!(p.allows(ip("1.2.3.5"), 25));
        assert!(
            p.rules()
                .iter()
                .all(|r| r.pattern.family() == IpFamily::V4 || r.pattern.is_wildcard())
        );
        let opts = ExitPolicyConfig {
            ipv6_exit: true,
            ..opts
        };
        let p = ExitPolicy::from_torrc("accept *:*", &opts).unwrap();
        assert!(!p.allows(ip("2600::1"), 80));
        assert!(p.allows(ip("2600::2"), 80));
        assert_eq!(
            ExitPolicy::from_torrc("accept *:80, oops", &opts),
            Err(PolicyError::UnknownKeyword("oops".to_owned()))
        );
    }

    // --- Summaries: C tor's test_policy.c known answers ---

    /// Like tor's test_policy_summary_helper6: every option combination gives the same
    /// summaries (IPv6 only checked for IPv6 exits), and each summary parses back.
    fn summary_case(policy: &str, v4: &str, v6: &str) {
        for ipv6_exit in [false, true] {
            for reject_private in [false, true] {
                for tail in ALL_OPTS {
                    let opts = ExitPolicyConfig {
                        ipv6_exit,
                        reject_private,
                        own_addresses: Vec::new(),
                        tail,
                    };
                    let p = ExitPolicy::from_torrc(policy, &opts).unwrap();
                    let ctx = format!("{policy} / {opts:?}");
                    let s4 = p.summarize(IpFamily::V4);
                    assert_eq!(s4.to_string(), v4, "{ctx}");
                    assert_eq!(s4.to_string().parse::<PortPolicy>().unwrap(), s4);
                    if ipv6_exit {
                        let s6 = p.summarize(IpFamily::V6);
                        assert_eq!(s6.to_string(), v6, "{ctx}");
                    }
                }
            }
        }
    }

    #[test]
    fn summaries_small() {
        let both = |p: &str, s: &str| summary_case(p, s, s);
        both(
            "reject 192.168.0.0/16:*,reject 0.0.0.0/8:*,reject 10.0.0.0/8:*,\
             accept *:10-30,accept *:90,reject *:*",
            "accept 10-30,90",
        );
        both(
            "reject 11.0.0.0/9:80,reject 12.0.0.0/9:80,reject 13.0.0.0/9:80,\
             reject 14.0.0.0/9:80,accept *:*",
            "accept 1-65535",
        );
        both(
            "reject 11.0.0.0/9:80,reject 12.0.0.0/9:80,reject 13.0.0.0/9:80,\
             reject 14.0.0.0/9:80,reject 15.0.0.0:81,accept *:*",
            "accept 1-65535",
        );
        summary_case(
            "reject 11.0.0.0/9:80,reject 12.0.0.0/9:80,reject 13.0.0.0/9:80,\
             reject 14.0.0.0/9:80,reject 15.0.0.0:80,accept *:*",
            "reject 80",
            "accept 1-65535",
        );
        both("accept 11.0.0.0/9:80,reject *:*", "reject 1-65535");
        both(
            "accept *:80,accept *:81,accept *:100-110,accept *:111,reject *:*",
            "accept 80-81,100-111",
        );
        both(
            "accept *:1,accept *:3,accept *:65535,reject *:*",
            "accept 1,3,65535",
        );
        both(
            "accept *:1,accept *:3,accept *:5,accept *:7,reject *:*",
            "accept 1,3,5,7",
        );
        both(
            "reject *:1,reject *:3,reject *:5,reject *:7,accept *:*",
            "reject 1,3,5,7",
        );
        both(
            "reject 149.56.1.1:*,reject [2607:5300:1:1::1:0]:*,accept *:80,accept *:443,reject *:*",
            "accept 80,443",
        );
        both(
            "reject 149.56.0.0/16,reject6 2607:5300::/32,reject6 2608:5300::/64,\
             reject6 2609:5300::/96,accept *:80,accept *:443,reject *:*",
            "accept 80,443",
        );
        both(
            "reject 148.0.0.0/7,reject6 2600::/16,accept *:80,accept *:443,reject *:*",
            "accept 80,443",
        );
        both(
            "reject 148.0.0.0/6,reject6 2600::/15,accept *:80,accept *:443,reject *:*",
            "reject 1-65535",
        );
        both(
            "reject 128.0.0.0/1,reject6 8000::/1,accept *:80,accept *:443,reject *:*",
            "reject 1-65535",
        );
        both(
            "reject 0.0.0.0/0,reject6 ::/0,accept *:80,accept *:443,reject *:*",
            "reject 1-65535",
        );
    }

    #[test]
    fn summary_standard_long_policy() {
        let ports = "20-23,43,53,79-81,88,110,143,194,220,389,443,464,531,543-544,554,563,636,\
                     706,749,873,902-904,981,989-995,1194,1220,1293,1500,1533,1677,1723,1755,\
                     1863,2082,2083,2086-2087,2095-2096,2102-2104,3128,3389,3690,4321,4643,5050,\
                     5190,5222-5223,5228,5900,6660-6669,6679,6697,8000,8008,8074,8080,8087-8088,\
                     8332-8333,8443,8888,9418,9999,10000,11371,12350,19294,19638,23456,33033,\
                     64738";
        let policy: Vec<String> = ports.split(',').map(|p| format!("accept *:{p}")).collect();
        let policy = format!("{},reject *:*", policy.join(","));
        let expect = "accept 20-23,43,53,79-81,88,110,143,194,220,389,443,464,531,543-544,554,\
                      563,636,706,749,873,902-904,981,989-995,1194,1220,1293,1500,1533,1677,\
                      1723,1755,1863,2082-2083,2086-2087,2095-2096,2102-2104,3128,3389,3690,\
                      4321,4643,5050,5190,5222-5223,5228,5900,6660-6669,6679,6697,8000,8008,\
                      8074,8080,8087-8088,8332-8333,8443,8888,9418,9999-10000,11371,12350,\
                      19294,19638,23456,33033,64738";
        summary_case(&policy, expect, expect);
    }

    #[test]
    fn summary_truncation() {
        // "longest possible policy": accept odd ports 1..=529, cut after 523.
        let policy: Vec<String> = (1..=529)
            .step_by(2)
            .map(|p| format!("accept *:{p}"))
            .collect();
        let policy = format!("{},reject *:*", policy.join(","));
        let expect: Vec<String> = (1..=523).step_by(2).map(|p| p.to_string()).collect();
        let expect = format!("accept {}", expect.join(","));
        summary_case(&policy, &expect, &expect);
        assert!(expect.len() <= 1000);

        // "truncation ports": reject odd ports below 2000, accept the rest.
        let policy: Vec<String> = (1..2000)
            .step_by(2)
            .map(|p| format!("reject *:{p}"))
            .collect();
        let policy = format!("{},accept *:*", policy.join(","));
        let expect: Vec<String> = (2..=522).step_by(2).map(|p| p.to_string()).collect();
        let expect = format!("accept {}", expect.join(","));
        summary_case(&policy, &expect, &expect);
    }

    #[test]
    fn summary_of_reduced_policy() {
        let p = ExitPolicy::tor_reduced();
        let s = p.summarize(IpFamily::V4);
        assert_eq!(s.action(), PolicyAction::Accept);
        assert!(s.allows_port(443) && s.allows_port(64738) && !s.allows_port(25));
        assert_eq!(p.summarize(IpFamily::V6), s);
    }

    // --- Port policies ---

    #[test]
    fn short_policies_from_tors_tests() {
        let norm = |s: &str| s.parse::<PortPolicy>().unwrap().to_string();
        assert_eq!(norm("accept fred,2,3-5"), "accept 2,3-5");
        assert_eq!(norm("accept 2,fred,3"), "accept 2,3");
        assert_eq!(norm("accept 2,fred,3,bob"), "accept 2,3");
        assert_eq!(norm("accept 2,-3,500-600"), "accept 2,500-600");
        assert_eq!(norm("accept 1,,3"), "accept 1,3");
        assert_eq!(norm("accept 100-200,,"), "accept 100-200");
        assert_eq!(norm("reject ,1-10,,,,30-40"), "reject 1-10,30-40");
        assert_eq!(norm("accept 1-65535"), "accept 1-65535");

        use PolicyError::*;
        let err = |s: &str| s.parse::<PortPolicy>().unwrap_err();
        let s = |x: &str| x.to_owned();
        assert_eq!(err("accept 200-199"), BadSummaryEntry(s("200-199")));
        assert_eq!(err(""), BadSummaryKeyword(s("")));
        assert_eq!(err("rejekt 1,2,3"), BadSummaryKeyword(s("rejekt 1,2,3")));
        assert_eq!(err("reject "), EmptySummary);
        assert_eq!(err("reject"), BadSummaryKeyword(s("reject")));
        assert_eq!(err("rej"), BadSummaryKeyword(s("rej")));
        assert_eq!(err("accept 2,3,100000"), BadSummaryEntry(s("100000")));
        assert_eq!(err("accept 2,3x,4"), BadSummaryEntry(s("3x")));
        assert_eq!(err("accept 2-"), BadSummaryEntry(s("2-")));
        assert_eq!(err("accept 2-x"), BadSummaryEntry(s("2-x")));
        assert_eq!(err("accept 1-,3"), BadSummaryEntry(s("1-")));
        assert_eq!(err("accept 0"), BadSummaryEntry(s("0")));
        assert_eq!(err("accept 0-5"), BadSummaryEntry(s("0-5")));
        assert_eq!(err("accept fred"), EmptySummary);

        // Too long: 1..=9999 and 20000.
        let mut long: Vec<String> = (1..10000).map(|p| p.to_string()).collect();
        long.push("20000".to_owned());
        assert_eq!(err(&format!("accept {}", long.join(","))), SummaryTooLong);
        let ok: Vec<String> = (1..=1000).map(|p| p.to_string()).collect();
        assert_eq!(
            format!("accept {}", ok.join(","))
                .parse::<PortPolicy>()
                .unwrap()
                .ranges()
                .len(),
            1000
        );
    }

    #[test]
    fn port_policy_checks() {
        let p: PortPolicy = "accept 80,443".parse().unwrap();
        assert!(p.allows_port(80) && p.allows_port(443));
        assert!(!p.allows_port(81) && !p.allows_port(0));
        let p: PortPolicy = "reject 25,119".parse().unwrap();
        assert!(!p.allows_port(25) && p.allows_port(80) && !p.allows_port(0));
        assert!(PortPolicy::reject_all().rejects_all());
        assert!(!PortPolicy::accept_all().rejects_all());
        assert!(
            "reject 101-65535,1-100"
                .parse::<PortPolicy>()
                .unwrap()
                .rejects_all()
        );
        assert!(
            !"reject 1-100,102-65535"
                .parse::<PortPolicy>()
                .unwrap()
                .rejects_all()
        );
        assert!(
            !"reject 1-65534"
                .parse::<PortPolicy>()
                .unwrap()
                .rejects_all()
        );
        assert!(!"accept 1".parse::<PortPolicy>().unwrap().rejects_all());
        assert_eq!(PortPolicy::new(PolicyAction::Accept, vec![]), None);
        assert_eq!(
            PortPolicy::new(PolicyAction::Reject, vec![pr(25, 25)])
                .unwrap()
                .to_string(),
            "reject 25"
        );
    }

    // --- Descriptors ---

    #[test]
    fn descriptor_lines_like_tors_dump() {
        // test_dump_exit_policy_to_string.
        let p = ExitPolicy::from_descriptor_lines([
            "accept *:*",
            "reject *:25",
            "reject 8.8.8.8:*",
            "reject6 [FC00::]/7:*",
            "accept6 [c000::]/3:*",
        ])
        .unwrap();
        let lines: Vec<String> = p.rules().iter().map(PolicyRule::descriptor_line).collect();
        assert_eq!(
            lines.join("\n"),
            "accept *:*\nreject *:25\nreject 8.8.8.8:*\nreject6 [fc00::]/7:*\naccept6 [c000::]/3:*"
        );
        assert_eq!(p.rules()[0].pattern, AddrPattern::ANY_V4);
        assert_eq!(
            p.to_descriptor_text(),
            "accept *:*\nreject *:25\nreject 8.8.8.8:*"
        );
        assert_eq!(ExitPolicy::reject_all().to_descriptor_text(), "reject *:*");
        assert_eq!(ExitPolicy::default().to_descriptor_text(), "accept *:*");
        assert_eq!(
            ExitPolicy::from_descriptor_lines(["reject private:*"])
                .unwrap()
                .rules()
                .len(),
            12
        );
    }

    #[test]
    fn descriptor_syntax_errors() {
        use PolicyError::*;
        let s = |x: &str| x.to_owned();
        assert_eq!(desc_err("accept *4:*"), BadAddress(s("*4:*")));
        assert_eq!(
            desc_err("accept [::1]:80"),
            FamilyMismatch(s("accept [::1]:80"))
        );
        assert_eq!(
            desc_err("accept6 1.2.3.4:80"),
            FamilyMismatch(s("accept6 1.2.3.4:80"))
        );
        assert_eq!(desc_err("accept6 *:*"), FamilyMismatch(s("accept6 *:*")));
        assert_eq!(desc_err(""), UnknownKeyword(s("")));
        assert_eq!(desc_err("router foo"), UnknownKeyword(s("router")));
    }

    // --- Internal destinations ---

    #[test]
    fn internal_v4_ranges_and_edges() {
        let inside = [
            ("0.0.0.0", "0.255.255.255"),
            ("10.0.0.0", "10.255.255.255"),
            ("100.64.0.0", "100.127.255.255"),
            ("127.0.0.0", "127.255.255.255"),
            ("169.254.0.0", "169.254.255.255"),
            ("172.16.0.0", "172.31.255.255"),
            ("192.0.0.0", "192.0.0.255"),
            ("192.0.2.0", "192.0.2.255"),
            ("192.168.0.0", "192.168.255.255"),
            ("198.18.0.0", "198.19.255.255"),
            ("198.51.100.0", "198.51.100.255"),
            ("203.0.113.0", "203.0.113.255"),
            ("224.0.0.0", "239.255.255.255"),
            ("240.0.0.0", "255.255.255.254"),
            ("255.255.255.255", "255.255.255.255"),
        ];
        for (first, last) in inside {
            assert!(is_internal(&ip(first)).is_some(), "{first}");
            assert!(is_internal(&ip(last)).is_some(), "{last}");
        }
        let outside = [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "191.255.255.255",
            "192.0.1.0",
            "192.0.1.255",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "8.8.8.8",
            "1.1.1.1",
        ];
        for a in outside {
            assert_eq!(is_internal(&ip(a)), None, "{a}");
        }
        assert_eq!(
            is_internal(&ip("127.0.0.1")),
            Some("127.0.0.0/8 (loopback)")
        );
        assert_eq!(
            is_internal(&ip("255.255.255.255")),
            Some("255.255.255.255 (limited broadcast)")
        );
        assert_eq!(
            is_internal(&ip("100.100.0.1")),
            Some("100.64.0.0/10 (shared address space, CGNAT)")
        );
        assert_eq!(
            is_internal(&ip("255.0.0.1")),
            Some("240.0.0.0/4 (reserved)")
        );
    }

    #[test]
    fn internal_v6_ranges_and_edges() {
        let inside = [
            "::",
            "::1",
            "::2",
            "::7f00:1",
            "ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "100::",
            "100::ffff:ffff:ffff:ffff",
            "64:ff9b:1::",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            "64:ff9b:2::", // all of 0000::/8 is reserved, NAT64 prefixes included
            "2001:2::",
            "2001:2:0:ffff:ffff:ffff:ffff:ffff",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "fc00::",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fec0::",
            "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ff00::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for a in inside {
            assert!(is_internal(&ip(a)).is_some(), "{a}");
        }
        let outside = [
            "100:0:0:1::",
            "200::",
            "2001:1:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:2:1::",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe00::",
            "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:4860:4860::8888",
            "2606:4700::1111",
        ];
        for a in outside {
            assert_eq!(is_internal(&ip(a)), None, "{a}");
        }
        assert_eq!(is_internal(&ip("::1")), Some("::1 (loopback)"));
        assert_eq!(is_internal(&ip("::")), Some(":: (unspecified)"));
        assert_eq!(
            is_internal(&ip("64:ff9b:1::1")),
            Some("64:ff9b:1::/48 (local-use IPv4/IPv6 translation)")
        );
        assert_eq!(
            is_internal(&ip("::2")),
            Some("::/8 (reserved, incl. IPv4-compatible and IPv4-translated)")
        );
    }

    #[test]
    fn internal_embedded_ipv4() {
        let lo = Some("127.0.0.0/8 (loopback)");
        assert_eq!(is_internal(&ip("::ffff:127.0.0.1")), lo);
        assert_eq!(
            is_internal(&ip("::ffff:10.1.2.3")),
            Some("10.0.0.0/8 (private)")
        );
        assert_eq!(
            is_internal(&ip("::ffff:0.0.0.0")),
            Some("0.0.0.0/8 (this network)")
        );
        assert_eq!(is_internal(&ip("::ffff:8.8.8.8")), None);
        assert_eq!(is_internal(&ip("64:ff9b::127.0.0.1")), lo);
        assert_eq!(
            is_internal(&ip("64:ff9b::192.168.0.1")),
            Some("192.168.0.0/16 (private)")
        );
        assert_eq!(is_internal(&ip("64:ff9b::8.8.8.8")), None);
        assert_eq!(is_internal(&ip("2002:7f00:1::")), lo);
        assert_eq!(
            is_internal(&ip("2002:c0a8:101::1")),
            Some("192.168.0.0/16 (private)")
        );
        assert_eq!(is_internal(&ip("2002:808:808::1")), None);
    }

    // --- The exit guard ---

    fn web_guard() -> ExitGuard {
        let opts = ExitPolicyConfig {
            ipv6_exit: true,
            ..ExitPolicyConfig::default()
        };
        ExitGuard::new(
            ExitPolicy::from_torrc("accept *:80, accept *:443, reject *:*", &opts).unwrap(),
        )
    }

    #[test]
    fn guard_refuses_internal_then_applies_policy() {
        let g = web_guard();
        assert_eq!(
            g.check(ip("127.0.0.1"), 80),
            Err(ExitRefusal::Internal {
                addr: ip("127.0.0.1"),
                range: "127.0.0.0/8 (loopback)"
            })
        );
        assert!(matches!(
            g.check(ip("::ffff:127.0.0.1"), 80),
            Err(ExitRefusal::Internal { .. })
        ));
        assert!(matches!(
            g.check(ip("100.64.0.1"), 80),
            Err(ExitRefusal::Internal { .. })
        ));
        assert_eq!(g.check(ip("8.8.8.8"), 80), Ok(()));
        assert_eq!(g.check(ip("2001:4860::8888"), 443), Ok(()));
        assert_eq!(
            g.check(ip("8.8.8.8"), 25),
            Err(ExitRefusal::Policy {
                addr: ip("8.8.8.8"),
                port: 25
            })
        );
        // Private networks are rejected on every port, so port 80 is only "probably" open.
        assert_eq!(g.check_port(80), PolicyVerdict::ProbablyAccepted);
        assert_eq!(g.check_port(25), PolicyVerdict::Rejected);

        // allow_internal lifts the guard but not the policy.
        let open = ExitGuard {
            policy: ExitPolicy::accept_all(),
            allow_internal: true,
        };
        assert_eq!(open.check(ip("127.0.0.1"), 80), Ok(()));
        let g = ExitGuard {
            allow_internal: true,
            ..web_guard()
        };
        assert!(matches!(
            g.check(ip("127.0.0.1"), 80),
            Err(ExitRefusal::Policy { .. })
        ));
    }

    #[test]
    fn guard_checks_every_resolved_address() {
        let g = web_guard();
        // A name resolving to loopback is refused, even alongside a public address.
        assert_eq!(
            g.check_resolved(&[ip("8.8.8.8"), ip("127.0.0.1")], 80),
            Err(ExitRefusal::Internal {
                addr: ip("127.0.0.1"),
                range: "127.0.0.0/8 (loopback)"
            })
        );
        assert!(matches!(
            g.check_resolved(&[ip("::1")], 80),
            Err(ExitRefusal::Internal { .. })
        ));
        assert_eq!(
            g.check_resolved(&[ip("8.8.8.8"), ip("2001:4860::8888")], 80),
            Ok(vec![ip("8.8.8.8"), ip("2001:4860::8888")])
        );
        assert_eq!(g.check_resolved(&[], 80), Err(ExitRefusal::NoAddress));
        assert_eq!(
            g.check_resolved(&[ip("8.8.8.8")], 25),
            Err(ExitRefusal::Policy {
                addr: ip("8.8.8.8"),
                port: 25
            })
        );
        // Policy-rejected addresses are dropped, the rest kept in order.
        let g = ExitGuard::new(cfg("reject 1.1.1.1:*, accept *:*"));
        assert_eq!(
            g.check_resolved(&[ip("1.1.1.1"), ip("8.8.8.8"), ip("9.9.9.9")], 80),
            Ok(vec![ip("8.8.8.8"), ip("9.9.9.9")])
        );
    }

    // --- Property tests ---

    fn arb_pattern() -> impl Strategy<Value = AddrPattern> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, b)| AddrPattern::new(
                IpAddr::V4(Ipv4Addr::from_bits(a)),
                b
            )
            .unwrap()),
            (any::<u128>(), 0u8..=128).prop_map(|(a, b)| AddrPattern::new(
                IpAddr::V6(Ipv6Addr::from_bits(a)),
                b
            )
            .unwrap()),
        ]
    }

    fn arb_ports() -> impl Strategy<Value = PortRange> {
        prop_oneof![
            Just(PortRange::ALL),
            (1u16..=65535, 1u16..=65535).prop_map(|(a, b)| pr(a.min(b), a.max(b))),
        ]
    }

    fn arb_rule() -> impl Strategy<Value = PolicyRule> {
        (any::<bool>(), arb_pattern(), arb_ports()).prop_map(|(acc, pattern, ports)| {
            let action = if acc {
                PolicyAction::Accept
            } else {
                PolicyAction::Reject
            };
            PolicyRule::new(action, pattern, ports)
        })
    }

    /// Rules over a small universe of networks and ports, so that they overlap.
    fn arb_small_rule() -> impl Strategy<Value = PolicyRule> {
        let v4 = (
            prop::sample::select(vec![
                0x0a00_0000u32,
                0x0a00_0001,
                0x0a01_0000,
                0,
                0xc0a8_0101,
            ]),
            prop::sample::select(vec![0u8, 8, 16, 24, 32]),
        )
            .prop_map(|(a, b)| AddrPattern::new(IpAddr::V4(Ipv4Addr::from_bits(a)), b).unwrap());
        let v6 = (
            prop::sample::select(vec![0u128, 1, 0xfe80 << 112]),
            prop::sample::select(vec![0u8, 10, 127, 128]),
        )
            .prop_map(|(a, b)| AddrPattern::new(IpAddr::V6(Ipv6Addr::from_bits(a)), b).unwrap());
        let ports = prop_oneof![
            Just(PortRange::ALL),
            (1u16..=100, 1u16..=100).prop_map(|(a, b)| pr(a.min(b), a.max(b))),
        ];
        (any::<bool>(), prop_oneof![v4, v6], ports).prop_map(|(acc, pattern, ports)| {
            let action = if acc {
                PolicyAction::Accept
            } else {
                PolicyAction::Reject
            };
            PolicyRule::new(action, pattern, ports)
        })
    }

    const PROBE_ADDRS: [&str; 9] = [
        "10.0.0.0",
        "10.0.0.1",
        "10.1.0.0",
        "10.1.2.3",
        "192.168.1.1",
        "8.8.8.8",
        "::1",
        "fe80::1",
        "2001:db8::1",
    ];
    const PROBE_PORTS: [u16; 9] = [1, 2, 20, 50, 80, 99, 100, 101, 65535];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn config_display_parse_round_trip(rules in prop::collection::vec(arb_rule(), 0..12)) {
            let p = ExitPolicy::new(rules);
            let text = p.to_string();
            let back: ExitPolicy = text.parse().unwrap();
            prop_assert_eq!(&back, &p);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn descriptor_round_trip(rules in prop::collection::vec(arb_rule(), 0..12)) {
            // IPv6 wildcards have no descriptor form (tor writes none).
            let rules: Vec<PolicyRule> = rules
                .into_iter()
                .filter(|r| !(r.pattern.family() == IpFamily::V6 && r.pattern.is_wildcard()))
                .collect();
            let lines: Vec<String> = rules.iter().map(PolicyRule::descriptor_line).collect();
            let back = ExitPolicy::from_descriptor_lines(lines.iter().map(String::as_str)).unwrap();
            prop_assert_eq!(back.rules(), &rules[..]);
        }

        #[test]
        fn port_policy_round_trip(
            accept in any::<bool>(),
            ranges in prop::collection::vec(arb_ports(), 1..40),
        ) {
            let action = if accept { PolicyAction::Accept } else { PolicyAction::Reject };
            let p = PortPolicy::new(action, ranges).unwrap();
            let text = p.to_string();
            let back: PortPolicy = text.parse().unwrap();
            prop_assert_eq!(&back, &p);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn remove_redundancies_keeps_every_decision(
            rules in prop::collection::vec(arb_small_rule(), 0..10),
        ) {
            let p = ExitPolicy::new(rules);
            let mut q = p.clone();
            q.remove_redundancies();
            prop_assert!(q.rules().len() <= p.rules().len());
            for a in PROBE_ADDRS {
                for port in PROBE_PORTS {
                    prop_assert_eq!(p.allows(ip(a), port), q.allows(ip(a), port), "{} {}", a, port);
                }
            }
        }

        #[test]
        fn summary_is_exact_for_wildcard_policies(
            rules in prop::collection::vec((any::<bool>(), arb_ports()), 0..8),
        ) {
            let p = ExitPolicy::new(
                rules
                    .into_iter()
                    .map(|(acc, ports)| {
                        let action = if acc { PolicyAction::Accept } else { PolicyAction::Reject };
                        PolicyRule::new(action, AddrPattern::ANY_V4, ports)
                    })
                    .collect(),
            );
            let s = p.summarize(IpFamily::V4);
            let mut ports: Vec<u16> = vec![1, 80, 65535];
            for r in p.rules() {
                ports.extend([r.ports.lo(), r.ports.hi()]);
                ports.extend(r.ports.lo().checked_sub(1));
                ports.extend(r.ports.hi().checked_add(1));
            }
            for port in ports.into_iter().filter(|&p| p != 0) {
                // No rule matching means "accepted" for the policy, but "no exit" for a
                // summary only if nothing was accepted at all; compare only decided ports.
                if p.rules().iter().any(|r| r.ports.contains(port)) {
                    prop_assert_eq!(s.allows_port(port), p.allows(ip("1.2.3.4"), port), "port {}", port);
                }
            }
        }

        #[test]
        fn hostile_text_never_panics(s in "\\PC{0,80}") {
            let _ = ExitPolicy::parse_config(&s);
            let _ = ExitPolicy::from_descriptor_lines([s.as_str()]);
            let _ = s.parse::<PortPolicy>();
        }

        #[test]
        fn policy_like_text_never_panics(
            kw in prop::sample::select(vec!["accept", "reject", "accept6", "reject6"]),
            pattern in "[\\[\\]0-9a-f:./*\\-private46]{0,40}",
        ) {
            let line = format!("{kw} {pattern}");
            let _ = ExitPolicy::parse_config(&line);
            let _ = ExitPolicy::from_descriptor_lines([line.as_str()]);
            let _ = format!("{kw} {pattern}").parse::<PortPolicy>();
        }
    }
}
