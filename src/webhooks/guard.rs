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
mod tests {
    use super::*;

    fn reason(ip: &str) -> Option<&'static str> {
        forbidden_reason(ip.parse().expect("test address parses"))
    }

    #[test]
    #[rustfmt::skip]
    fn every_forbidden_range_is_refused_with_its_name() {
        let refused = [
            ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
            ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("0.1.2.3", "this-network"),
            ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
            ("192.168.1.1", "private"), ("64:ff9b:1::1", "private"),
            ("169.254.0.1", "link-local"), ("fe80::1", "link-local"), ("febf::1", "link-local"),
            ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
            ("168.63.129.16", "metadata"), ("100.100.100.200", "metadata"),
            ("100.64.0.1", "shared-cgnat"), ("100.127.255.255", "shared-cgnat"),
            ("fc00::1", "unique-local"), ("fdff::1", "unique-local"), ("fec0::1", "site-local"),
            ("224.0.0.1", "multicast"), ("239.255.255.255", "multicast"), ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"), ("192.0.0.8", "reserved"),
            ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"), ("2001:db8::1", "documentation"),
            ("198.18.0.1", "benchmarking"), ("198.19.255.255", "benchmarking"),
            ("2001:2::1", "benchmarking"), ("100::1", "discard-only"),
        ];
        for (ip, expected) in refused {
            assert_eq!(reason(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn embedded_ipv4_is_judged_by_the_ipv4_address() {
        let refused = [
            ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "metadata"),
            ("::ffff:0:10.0.0.1", "private"), ("::10.1.2.3", "private"),
            ("64:ff9b::192.168.0.1", "private"), ("64:ff9b::7f00:1", "loopback"),
            ("2002:a9fe:a9fe::1", "metadata"), ("2002:c0a8:0101::", "private"),
        ];
        for (ip, expected) in refused {
            assert_eq!(reason(ip), Some(expected), "{ip}");
        }
        for ip in ["::ffff:8.8.8.8", "::8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn global_addresses_and_range_neighbours_are_allowed() {
        let allowed = [
            "8.8.8.8", "1.1.1.1", "93.184.216.34", "126.255.255.255", "128.0.0.1",
            "9.255.255.255", "11.0.0.0", "172.15.255.255", "172.32.0.0", "192.167.255.255",
            "192.169.0.0", "100.63.255.255", "100.128.0.0", "169.253.255.255", "169.255.0.0",
            "192.0.1.255", "192.0.3.0", "198.17.255.255", "198.20.0.0", "223.255.255.255",
            "2606:4700:4700::1111", "2001:4860:4860::8888", "2001:db9::1", "fe7f::1", "fbff::1",
        ];
        for ip in allowed {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn urls_are_read_like_the_http_client_reads_them() {
        let v4 = |s: &str| Some(IpAddr::V4(s.parse().expect("v4")));
        let v6 = |s: &str| Some(IpAddr::V6(s.parse().expect("v6")));
        let cases = [
            ("https://example.com/hook", Scheme::Https, "example.com", 443, None),
            ("HTTP://Example.COM:8080/x?y=1#z", Scheme::Http, "example.com", 8080, None),
            ("https://hooks.example.com.:8443", Scheme::Https, "hooks.example.com", 8443, None),
            ("http://example.com:/", Scheme::Http, "example.com", 80, None),
            ("http://my_host-1.example?q", Scheme::Http, "my_host-1.example", 80, None),
            ("http://0x1g/", Scheme::Http, "0x1g", 80, None),
            ("http://93.184.216.34/", Scheme::Http, "93.184.216.34", 80, v4("93.184.216.34")),
            ("http://0x5d.0xb8.0xd8.0x22/", Scheme::Http, "93.184.216.34", 80, v4("93.184.216.34")),
            ("http://1572395042/", Scheme::Http, "93.184.216.34", 80, v4("93.184.216.34")),
            ("https://[2606:4700::1111]:8443/", Scheme::Https, "2606:4700::1111", 8443,
                v6("2606:4700::1111")),
        ];
        for (url, scheme, host, port, literal_ip) in cases {
            let expected = UrlTarget { scheme, host: host.into(), port, literal_ip };
            assert_eq!(check_url(url), Ok(expected), "{url}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn disguised_internal_addresses_are_recognised_and_refused() {
        let refused = [
            ("http://2130706433/", "loopback"), ("http://0x7f.1/", "loopback"),
            ("http://0177.0.0.1/", "loopback"), ("http://127.1/", "loopback"),
            ("http://017700000001/", "loopback"), ("http://127.0.0.1./", "loopback"),
            ("http://0/", "unspecified"), ("http://0x/", "unspecified"),
            ("http://169.254.169.254/latest/meta-data", "metadata"),
            ("http://0xA9FEA9FE/", "metadata"),
            ("http://[::1]:8080/", "loopback"), ("http://[::ffff:127.0.0.1]/", "loopback"),
            ("http://[fd00:ec2::254]/", "metadata"), ("http://10.0.0.1:9000/", "private"),
            ("http://localhost:8080/", "loopback"), ("http://LOCALHOST./", "loopback"),
            ("http://api.localhost/", "loopback"), ("http://metadata.google.internal/", "metadata"),
        ];
        for (url, expected) in refused {
            let got = match check_url(url) {
                Err(GuardError::Forbidden { reason, .. }) => Some(reason),
                _ => None,
            };
            assert_eq!(got, Some(expected), "{url}");
        }
        assert!(parse_url("http://127.0.0.1:8080/").is_ok(), "parse_url alone does not judge");
    }

    #[test]
    #[rustfmt::skip]
    fn malformed_urls_are_refused_with_the_reason() {
        use GuardError as E;
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        let port = |p: &str| E::InvalidPort { port: p.into() };
        let cases = [
            (long.as_str(), E::TooLong { len: long.len() }),
            ("ftp://example.com/", E::UnsupportedScheme { scheme: "ftp".into() }),
            ("example.com", E::MissingScheme), ("javascript:alert(1)", E::MissingScheme),
            ("example.com/?next=http://x", E::MissingScheme),
            ("http://user:pw@example.com/", E::UserInfo), ("http://@example.com/", E::UserInfo),
            ("http:///path", E::MissingHost), ("http://:80/", E::MissingHost),
            ("http://./", E::MissingHost),
            ("http://example.com:99999/", port("99999")), ("http://example.com:0/", port("0")),
            ("http://example.com:+80/", port("+80")),
            ("http://exa mple.com/", E::InvalidCharacter),
            ("http://127.0.0.\n1/", E::InvalidCharacter),
            ("http://evil.com\\@127.0.0.1/", E::InvalidCharacter),
        ];
        for (url, expected) in cases {
            assert_eq!(parse_url(url), Err(expected), "{url:?}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn invalid_hosts_are_refused_not_guessed() {
        let invalid = [
            "http://256.1.1.1/", "http://1.2.3.4.5/", "http://example.123/", "http://08.1.1.1/",
            "http://1.256.1/", "http://4294967296/", "http://0x1.08/", "http://a..b/", "http://.a/",
            "http://ex%41mple.com/", "http://bücher.de/", "http://[fe80::1%25eth0]/",
            "http://[::1/", "http://[::1]x/", "http://::1/", "http://[127.0.0.1]/",
            "http://a!b.com/",
        ];
        for url in invalid {
            let result = parse_url(url);
            assert!(matches!(result, Err(GuardError::InvalidHost { .. })), "{url}: {result:?}");
        }
    }

    #[test]
    fn refusal_messages_name_host_and_range() {
        let err = check_url("http://10.1.2.3/").expect_err("private");
        let expected = "`10.1.2.3` is a private address, which webhooks may not target";
        assert_eq!(err.to_string(), expected);
        let err = parse_url("http://u:secret@example.com/").expect_err("userinfo");
        assert!(!err.to_string().contains("secret"));
    }
}
