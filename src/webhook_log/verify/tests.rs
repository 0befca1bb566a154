//! One reference request per provider, then the same tampering applied to each: a flipped
//! body byte, a wrong secret, a stale or future timestamp and a missing header. GitHub, Slack
//! and Standard Webhooks use published vectors; Stripe, Shopify and the generic scheme use
//! vectors computed independently with Python's `hmac` (those providers publish none).

use super::*;

struct Fixture {
    verifier: Verifier,
    secret: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static [u8],
    signed_at: Option<i64>,
    signature_header: &'static str,
    wrong_secret: &'static str,
}

const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

/// The wall clock used for vectors without a timestamp: any value works for them.
const NOW: i64 = 1_767_607_200;

fn fixtures() -> Vec<Fixture> {
    vec![
        // docs.github.com, "Validating webhook deliveries".
        Fixture {
            verifier: Verifier::Github,
            secret: "It's a Secret to Everybody",
            headers: vec![(
                "x-hub-signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )],
            body: b"Hello, World!",
            signed_at: None,
            signature_header: "x-hub-signature-256",
            wrong_secret: "It's a Secret to Nobody",
        },
        // Slack API docs, "Verifying requests from Slack".
        Fixture {
            verifier: Verifier::Slack,
            secret: "8f742231b10e8888abcd99yyyzzz85a5",
            headers: vec![
                ("x-slack-request-timestamp", "1531420618"),
                (
                    "x-slack-signature",
                    "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                ),
            ],
            body: SLACK_BODY,
            signed_at: Some(1_531_420_618),
            signature_header: "x-slack-signature",
            wrong_secret: "8f742231b10e8888abcd99yyyzzz85a6",
        },
        // Standard Webhooks / Svix vector from research/webhooks.md, after key rotation: an
        // old key's signature and an unsupported version come first.
        Fixture {
            verifier: Verifier::StandardWebhooks,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            headers: vec![
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("webhook-timestamp", "1614265330"),
                (
                    "webhook-signature",
                    "v1,bm90LXRoZS1yaWdodC1tYWM= v1a,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
            ],
            body: br#"{"test": 2432232314}"#,
            signed_at: Some(1_614_265_330),
            signature_header: "webhook-signature",
            wrong_secret: "whsec_AfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        },
        // The whsec_ secret is the literal key here; a decoded key would not produce this MAC.
        Fixture {
            verifier: Verifier::Stripe,
            secret: "whsec_test_secret",
            headers: vec![(
                "stripe-signature",
                "t=1700000000,v1=00,v1=0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd,v0=ignored",
            )],
            body: br#"{"id":"evt_1","object":"event"}"#,
            signed_at: Some(1_700_000_000),
            signature_header: "stripe-signature",
            wrong_secret: "whsec_test_secreT",
        },
        Fixture {
            verifier: Verifier::Shopify,
            secret: "shpss_test_secret",
            headers: vec![(
                "x-shopify-hmac-sha256",
                "AU5n5C4JV1EbE8g4yEzV+ZHbqkXpM29HXkzNAa5zicA=",
            )],
            body: br#"{"id":820982911946154508}"#,
            signed_at: None,
            signature_header: "x-shopify-hmac-sha256",
            wrong_secret: "shpss_test_secreT",
        },
        Fixture {
            verifier: Verifier::HmacSha256,
            secret: "generic-secret",
            headers: vec![(
                "x-signature",
                "bbb3b3c4cbaa75cef706d50357234102354ada79214380626d98fbff276909d2",
            )],
            body: br#"{"ok":true}"#,
            signed_at: None,
            signature_header: "x-signature",
            wrong_secret: "generic-secreT",
        },
    ]
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

impl Fixture {
    fn now(&self) -> i64 {
        self.signed_at.map_or(NOW, |at| at + 60)
    }

    fn check_with(&self, secret: &str, body: &[u8], now: i64) -> SignatureStatus {
        verify(self.verifier, secret, &owned(&self.headers), body, now)
    }
}

fn invalid(failure: Failure) -> SignatureStatus {
    SignatureStatus::Invalid(failure.code().to_owned())
}

#[test]
fn accepts_each_providers_reference_vector() {
    for f in fixtures() {
        assert_eq!(
            f.check_with(f.secret, f.body, f.now()),
            SignatureStatus::Valid,
            "{}",
            f.verifier
        );
    }
}

#[test]
fn rejects_a_flipped_body_byte_for_every_provider() {
    for f in fixtures() {
        let mut body = f.body.to_vec();
        body[0] ^= 0x01;
        let got = f.check_with(f.secret, &body, f.now());
        assert_eq!(got, invalid(Failure::SignatureMismatch), "{}", f.verifier);
    }
}

#[test]
fn rejects_a_wrong_secret_for_every_provider() {
    for f in fixtures() {
        let got = f.check_with(f.wrong_secret, f.body, f.now());
        assert_eq!(got, invalid(Failure::SignatureMismatch), "{}", f.verifier);
    }
}

#[test]
fn rejects_timestamps_outside_five_minutes_either_way() {
    for f in fixtures() {
        let Some(at) = f.signed_at else { continue };
        for now in [at + 301, at - 301, i64::MAX, i64::MIN] {
            let got = f.check_with(f.secret, f.body, now);
            assert_eq!(
                got,
                invalid(Failure::TimestampOutOfTolerance),
                "{} at {now}",
                f.verifier
            );
        }
        for now in [at + 300, at - 300] {
            assert_eq!(
                f.check_with(f.secret, f.body, now),
                SignatureStatus::Valid,
                "{}",
                f.verifier
            );
        }
    }
}

#[test]
fn reports_a_missing_signature_header() {
    for mut f in fixtures() {
        f.headers.retain(|(name, _)| *name != f.signature_header);
        let got = f.check_with(f.secret, f.body, f.now());
        assert_eq!(got, invalid(Failure::MissingHeader), "{}", f.verifier);
    }
}

#[test]
fn reports_an_empty_secret_as_unusable() {
    for f in fixtures() {
        assert_eq!(
            f.check_with("", f.body, f.now()),
            invalid(Failure::UnusableSecret),
            "{}",
            f.verifier
        );
    }
}

#[test]
fn leaves_requests_unchecked_without_a_verifier() {
    assert_eq!(
        verify(Verifier::None, "", &[], b"anything", 0),
        SignatureStatus::Unchecked
    );
}

#[test]
fn accepts_svix_header_names_for_standard_webhooks() {
    let headers = owned(&[
        ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("svix-timestamp", "1614265330"),
        (
            "svix-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ]);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let status = verify(
        Verifier::StandardWebhooks,
        secret,
        &headers,
        br#"{"test": 2432232314}"#,
        1_614_265_330,
    );
    assert_eq!(status, SignatureStatus::Valid);
}

#[test]
fn rejects_a_standard_webhooks_secret_that_is_not_base64() {
    let f = &fixtures()[2];
    assert_eq!(
        f.check_with("whsec_not base64!", f.body, f.now()),
        invalid(Failure::UnusableSecret)
    );
}

#[test]
fn accepts_hex_or_base64_with_optional_prefix_for_generic_hmac() {
    let hex_mac = "bbb3b3c4cbaa75cef706d50357234102354ada79214380626d98fbff276909d2";
    for (name, value) in [
        ("x-signature", format!("sha256={hex_mac}")),
        ("x-signature", hex_mac.to_uppercase()),
        (
            "x-signature",
            "u7OzxMuqdc73BtUDVyNBAjVK2nkhQ4BibZj7/ydpCdI=".to_owned(),
        ),
        (
            "x-signature",
            "u7OzxMuqdc73BtUDVyNBAjVK2nkhQ4BibZj7/ydpCdI".to_owned(),
        ),
        ("x-hub-signature-256", format!("sha256={hex_mac}")),
    ] {
        let headers = vec![(name.to_owned(), value.clone().into_bytes())];
        let status = verify(
            Verifier::HmacSha256,
            "generic-secret",
            &headers,
            br#"{"ok":true}"#,
            NOW,
        );
        assert_eq!(status, SignatureStatus::Valid, "{name}: {value}");
    }
}

#[test]
fn reports_malformed_headers() {
    type RawHeaders = &'static [(&'static str, &'static [u8])];
    let cases: [(Verifier, RawHeaders); 6] = [
        (Verifier::Github, &[("x-hub-signature-256", b"757107ea")]),
        (Verifier::Github, &[("x-hub-signature-256", b"sha256=zz")]),
        (Verifier::Stripe, &[("stripe-signature", b"v1=abcd")]),
        (
            Verifier::Stripe,
            &[("stripe-signature", b"t=1,t=2,v1=abcd")],
        ),
        (
            Verifier::Slack,
            &[
                ("x-slack-request-timestamp", b"-1"),
                ("x-slack-signature", b"v0=ab"),
            ],
        ),
        (Verifier::Shopify, &[("x-shopify-hmac-sha256", b"\xff\xfe")]),
    ];
    for (verifier, headers) in cases {
        let headers: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        let got = verify(verifier, "secret", &headers, b"body", NOW);
        assert_eq!(
            got,
            invalid(Failure::MalformedHeader),
            "{verifier}: {headers:?}"
        );
    }
}

#[test]
fn refuses_a_signature_header_sent_twice() {
    let f = &fixtures()[0];
    let mut headers = owned(&f.headers);
    headers.extend(owned(&f.headers));
    let got = verify(f.verifier, f.secret, &headers, f.body, NOW);
    assert_eq!(got, invalid(Failure::DuplicateHeader));
}

#[test]
fn verifier_names_round_trip_through_text_and_serde() {
    for v in Verifier::ALL {
        assert_eq!(v.to_string().parse::<Verifier>(), Ok(v));
        assert_eq!(
            serde_json::to_value(v).ok(),
            Some(serde_json::json!(v.as_str()))
        );
    }
    assert_eq!(Verifier::HmacSha256.as_str(), "hmac-sha256");
    assert!("svix".parse::<Verifier>().is_err());
}

#[test]
fn status_exposes_column_value_and_reason_code() {
    let status = invalid(Failure::TimestampOutOfTolerance);
    assert_eq!(
        (status.as_str(), status.reason_code()),
        ("invalid", Some("timestamp_out_of_tolerance"))
    );
    assert_eq!(
        (
            SignatureStatus::Valid.as_str(),
            SignatureStatus::Valid.reason_code()
        ),
        ("valid", None)
    );
}
