//! SSRF guard for webhook endpoints: which addresses a delivery must never reach, and a small
//! http(s) URL reader that finds the host the HTTP client would connect to. IPv4 hosts are read
//! as WHATWG URL parsers read them (`2130706433`, `0x7f.1`, `0177.0.0.1`), so the check sees the
//! address `url`/`reqwest` would dial. Host names are only syntax-checked here: callers resolve
//! them and pass every address through [`forbidden_reason`], at creation and again at delivery.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const MAX_URL_LEN: usize = 2048;

/// `(network, prefix length, reason)`; the first match wins, so single addresses come first.
#[rustfmt::skip]
const V4_RULES: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(169, 254, 169, 254), 32, "metadata"), // AWS, GCP, Azure, OCI IMDS
    (Ipv4Addr::new(168, 63, 129, 16), 32, "metadata"),   // Azure wire server
    (Ipv4Addr::new(100, 100, 100, 200), 32, "metadata"), // Alibaba Cloud
    (Ipv4Addr::new(255, 255, 255, 255), 32, "broadcast"),
    (Ipv4Addr::new(0, 0, 0, 0), 32, "unspecified"),
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this-network"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared-cgnat"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "reserved"), // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
];

#[rustfmt::skip]
const V6_RULES: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128, "metadata"), // AWS IMDS
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified"),
    (Ipv6Addr::LOCALHOST, 128, "loopback"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "private"), // local-use NAT64
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "discard-only"),
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, "benchmarking"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "unique-local"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

/// Why a webhook may not target `ip` (a short stable label such as `"loopback"`), or `None`
/// when it is an ordinary global address. Addresses embedding an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are judged by that IPv4 address, which is where packets end up.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => first_rule(V4_RULES, u32::from(v4).into(), 32),
        IpAddr::V6(v6) => first_rule(V6_RULES, u128::from(v6), 128)
            .or_else(|| embedded_v4(v6).and_then(|v4| forbidden_reason(IpAddr::V4(v4)))),
    }
}

fn first_rule<A: Copy + Into<IpAddr>>(
    rules: &[(A, u8, &'static str)],
    bits: u128,
    width: u32,
) -> Option<&'static str> {
    rules.iter().find_map(|(network, len, reason)| {
        let network = match (*network).into() {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let host_bits = width - u32::from(*len);
        let same =
            bits.checked_shr(host_bits).unwrap_or(0) == network.checked_shr(host_bits).unwrap_or(0);
        same.then_some(*reason)
    })
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let [_, _, _, _, _, _, _, _, _, _, _, _, a, b, c, d] = ip.octets();
    let low = Ipv4Addr::new(a, b, c, d);
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low), // IPv4-mapped
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low), // IPv4-translated (SIIT)
        [0, 0, 0, 0, 0, 0, _, _] => Some(low),      // IPv4-compatible (deprecated)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low), // NAT64 well-known prefix
        [0x2002, high, rest, ..] => Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(rest))),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// Where a webhook URL points. `host` is lower-case, without a trailing dot or IPv6 brackets;
/// for IP hosts it is the canonical address text and `literal_ip` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTarget {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub literal_ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardError {
    TooLong { len: usize },
    InvalidCharacter,
    MissingScheme,
    UnsupportedScheme { scheme: String },
    UserInfo,
    MissingHost,
    InvalidHost { why: &'static str },
    InvalidPort { port: String },
    Forbidden { host: String, reason: &'static str },
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len } => {
                write!(f, "URL is {len} bytes long; the limit is {MAX_URL_LEN}")
            }
            Self::InvalidCharacter => {
                write!(f, "URL contains whitespace, a control character or `\\`")
            }
            Self::MissingScheme => write!(f, "URL must start with `http://` or `https://`"),
            Self::UnsupportedScheme { scheme } => {
                write!(
                    f,
                    "URL scheme `{scheme}` is not supported; use http or https"
                )
            }
            Self::UserInfo => write!(
                f,
                "URL must not contain credentials (`user:pass@`); send them as a custom header"
            ),
            Self::MissingHost => write!(f, "URL has no host"),
            Self::InvalidHost { why } => write!(f, "URL host is invalid: {why}"),
            Self::InvalidPort { port } => {
                write!(f, "URL port `{port}` is not a number from 1 to 65535")
            }
            Self::Forbidden { host, reason } => {
                write!(
                    f,
                    "`{host}` is a {reason} address, which webhooks may not target"
                )
            }
        }
    }
}

impl std::error::Error for GuardError {}

/// Syntax only: reads scheme, host and port. Use it alone when private targets are allowed.
pub fn parse_url(url: &str) -> Result<UrlTarget, GuardError> {
    if url.len() > MAX_URL_LEN {
        return Err(GuardError::TooLong { len: url.len() });
    }
    // WHATWG parsers strip tabs/newlines and read `\` as `/`; refusing them avoids disagreeing
    // with the HTTP client about where the host ends.
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(GuardError::InvalidCharacter);
    }
    let (scheme_text, rest) = url.split_once("://").ok_or(GuardError::MissingScheme)?;
    let scheme = match scheme_text.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ if !scheme_text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            return Err(GuardError::MissingScheme);
        }
        _ => {
            return Err(GuardError::UnsupportedScheme {
                scheme: scheme_text.to_owned(),
            });
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(GuardError::UserInfo);
    }
    let (host_text, port_text) = split_host_port(authority)?;
    let port = match port_text {
        None | Some("") => default_port(scheme),
        Some(text) => parse_port(text)?,
    };
    let (host, literal_ip) = parse_host(host_text)?;
    Ok(UrlTarget {
        scheme,
        host,
        port,
        literal_ip,
    })
}

/// [`parse_url`] plus the SSRF verdict on an IP host and on names that are loopback or
/// metadata by definition. Other names still need resolving and checking by the caller.
pub fn check_url(url: &str) -> Result<UrlTarget, GuardError> {
    let target = parse_url(url)?;
    let reason = match target.literal_ip {
        Some(ip) => forbidden_reason(ip),
        None if target.host == "localhost" || target.host.ends_with(".localhost") => {
            Some("loopback")
        }
        None if target.host == "metadata.google.internal" => Some("metadata"),
        None => None,
    };
    match reason {
        Some(reason) => Err(GuardError::Forbidden {
            host: target.host,
            reason,
        }),
        None => Ok(target),
    }
}

const fn bad_host(why: &'static str) -> GuardError {
    GuardError::InvalidHost { why }
}

enum HostText<'a> {
    Bracketed(&'a str),
    Plain(&'a str),
}

fn split_host_port(authority: &str) -> Result<(HostText<'_>, Option<&str>), GuardError> {
    if let Some(after) = authority.strip_prefix('[') {
        let (inside, tail) = after
            .split_once(']')
            .ok_or(bad_host("`[` without a closing `]`"))?;
        return match tail {
            "" => Ok((HostText::Bracketed(inside), None)),
            _ => match tail.strip_prefix(':') {
                Some(port) => Ok((HostText::Bracketed(inside), Some(port))),
                None => Err(bad_host("unexpected text after `]`")),
            },
        };
    }
    match authority.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            Err(bad_host("IPv6 addresses must be in brackets"))
        }
        Some((host, port)) => Ok((HostText::Plain(host), Some(port))),
        None => Ok((HostText::Plain(authority), None)),
    }
}

fn default_port(scheme: Scheme) -> u16 {
    match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    }
}

fn parse_port(text: &str) -> Result<u16, GuardError> {
    // `parse` alone would accept `+80`, which other URL parsers refuse.
    match text.parse::<u16>() {
        Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(GuardError::InvalidPort {
            port: text.to_owned(),
        }),
    }
}

fn parse_host(host: HostText<'_>) -> Result<(String, Option<IpAddr>), GuardError> {
    let text = match host {
        HostText::Bracketed(inside) => {
            if inside.contains('%') {
                return Err(bad_host("IPv6 zone identifiers are not allowed"));
            }
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| bad_host("not a valid IPv6 address"))?;
            return Ok((ip.to_string(), Some(IpAddr::V6(ip))));
        }
        HostText::Plain(text) => text,
    };
    if !text.is_ascii() {
        return Err(bad_host(
            "non-ASCII names must be written in punycode (`xn--…`)",
        ));
    }
    let lower = text.to_ascii_lowercase();
    // One trailing dot is the fully qualified form of the same name (and of the same IPv4).
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err(GuardError::MissingHost);
    }
    if ends_in_number(name) {
        let ip =
            parse_ipv4(name).ok_or(bad_host("looks numeric but is not a valid IPv4 address"))?;
        return Ok((ip.to_string(), Some(IpAddr::V4(ip))));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(bad_host("empty label (doubled or leading `.`)"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad_host("names use only letters, digits, `-`, `_` and `.`"));
        }
    }
    Ok((name.to_owned(), None))
}

/// WHATWG's rule for "this host is an IPv4 address": its last label is a number.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or_default();
    let all_digits = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit());
    all_digits
        || last
            .strip_prefix("0x")
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One to four parts, each decimal, octal (leading `0`) or hex (`0x`); the last part fills
/// all remaining bytes, so `127.1` is 127.0.0.1 and `2130706433` is too.
fn parse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let numbers = name
        .split('.')
        .map(parse_ipv4_part)
        .collect::<Option<Vec<u64>>>()?;
    let (last, init) = numbers.split_last()?;
    if numbers.len() > 4 || init.iter().any(|n| *n > 255) || *last >= 1 << (8 * (5 - numbers.len()))
    {
        return None;
    }
    let high = init
        .iter()
        .zip([24, 16, 8])
        .fold(0, |acc, (n, shift)| acc | n << shift);
    u32::try_from(high | last).ok().map(Ipv4Addr::from)
}

fn parse_ipv4_part(part: &str) -> Option<u64> {
    let (digits, radix) = match part.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None if part.len() > 1 => part
            .strip_prefix('0')
            .map_or((part, 10), |octal| (octal, 8)),
        None => (part, 10),
    };
    if digits.is_empty() {
        // `0x` alone is zero for WHATWG; an empty part (`1..2`) is not a number.
        return part.starts_with("0x").then_some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests;
