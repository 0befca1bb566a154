//! Unit tests of the parent module.

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
