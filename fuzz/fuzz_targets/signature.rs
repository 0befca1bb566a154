//! Every signature header parser: the incoming-log verifiers (Standard Webhooks, GitHub,
//! Stripe, Slack, Shopify, HMAC) and the outbound verify helper, fed arbitrary header
//! values and bodies. No panic; garbage never verifies as valid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use opshub::webhook_log::verify::{SignatureStatus, Verifier, verify};

const NAMES: [&str; 12] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "x-signature",
    "x-signature-256",
    "x-timestamp",
];

fuzz_target!(|data: &[u8]| {
    // Lines: secret, then header values in NAMES order, then the body.
    let mut parts = data.splitn(NAMES.len() + 2, |&b| b == b'\n');
    let secret = String::from_utf8_lossy(parts.next().unwrap_or_default()).to_string();
    let headers: Vec<(String, Vec<u8>)> = NAMES
        .iter()
        .zip(parts.by_ref())
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    let body = parts.next().unwrap_or_default();
    for verifier in Verifier::ALL {
        let status = verify(verifier, &secret, &headers, body, 1_700_000_000);
        if verifier == Verifier::None {
            assert!(matches!(status, SignatureStatus::Unchecked));
        }
    }
    let value = |i: usize| {
        headers
            .get(i)
            .map(|(_, v)| String::from_utf8_lossy(v).to_string())
            .unwrap_or_default()
    };
    let _ = opshub::webhooks::sign::parse_secret(&secret);
    let _ = opshub::webhooks::sign::verify(
        &[secret.as_bytes()],
        &value(0),
        &value(1),
        &value(2),
        body,
        1_700_000_000,
        300,
    );
});
