//! Standard Webhooks signing (spec 1.0): `whsec_` secrets, `v1,<base64 HMAC-SHA256>` over
//! `{id}.{timestamp}.{body}`, and the matching verifier. Keys are 24–64 raw bytes; secrets and
//! signatures never appear in error messages. Signatures are compared through the MAC's
//! constant-time `verify_slice`. Asymmetric `v1a` is not implemented: such entries are skipped.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";
pub const MIN_KEY_LEN: usize = 24;
pub const MAX_KEY_LEN: usize = 64;
pub const GENERATED_KEY_LEN: usize = 32;
/// The reference libraries hard-code five minutes in both directions.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

#[derive(Debug)]
pub enum SignError {
    BadBase64,
    TooShort { len: usize },
    TooLong { len: usize },
    Random(getrandom::Error),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadBase64 => write!(
                f,
                "secret is not standard base64 after the optional `{SECRET_PREFIX}` prefix"
            ),
            Self::TooShort { len } => write!(
                f,
                "secret decodes to {len} bytes; at least {MIN_KEY_LEN} are required"
            ),
            Self::TooLong { len } => write!(
                f,
                "secret decodes to {len} bytes; at most {MAX_KEY_LEN} are accepted"
            ),
            Self::Random(e) => write!(f, "the operating system's random source failed: {e}"),
        }
    }
}

impl std::error::Error for SignError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Random(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    MissingHeader(&'static str),
    BadTimestamp,
    TooOld { age_secs: i64 },
    TooNew { ahead_secs: i64 },
    NoMatchingSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader(name) => write!(f, "the `{name}` header is missing or empty"),
            Self::BadTimestamp => {
                write!(
                    f,
                    "`webhook-timestamp` is not a whole number of Unix seconds"
                )
            }
            Self::TooOld { age_secs } => write!(
                f,
                "message timestamp is {age_secs} s old, beyond the tolerance (replay or delay?)"
            ),
            Self::TooNew { ahead_secs } => write!(
                f,
                "message timestamp is {ahead_secs} s ahead, beyond the tolerance (clock skew?)"
            ),
            Self::NoMatchingSignature => write!(
                f,
                "no `v1` signature matches: check the body is byte-for-byte what was sent and \
                 the secret is the full `whsec_…` value"
            ),
        }
    }
}

impl std::error::Error for VerifyError {}

/// A new `whsec_` secret over 32 random bytes. Fails only when the OS random source does,
/// which callers should surface rather than crash on.
pub fn generate_secret() -> Result<String, SignError> {
    let mut key = [0u8; GENERATED_KEY_LEN];
    getrandom::fill(&mut key).map_err(SignError::Random)?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

/// The raw key of a secret given with or without the `whsec_` prefix. Padding is optional,
/// as in the reference libraries, so secrets pasted without trailing `=` still work.
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, SignError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = STANDARD_PAD_INDIFFERENT
        .decode(encoded)
        .map_err(|_| SignError::BadBase64)?;
    match key.len() {
        len if len < MIN_KEY_LEN => Err(SignError::TooShort { len }),
        len if len > MAX_KEY_LEN => Err(SignError::TooLong { len }),
        _ => Ok(key),
    }
}

fn mac_over(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// One `v1,<base64>` signature. `body` must be the exact bytes sent.
pub fn sign(secret_key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac_over(secret_key, msg_id, timestamp, body)
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// The `webhook-signature` value: one signature per key, space-separated, so receivers holding
/// either the old or the new secret accept the message during a rotation.
pub fn signature_header(keys: &[&[u8]], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let signatures: Vec<String> = keys
        .iter()
        .map(|key| sign(key, msg_id, timestamp, body))
        .collect();
    signatures.join(" ")
}

/// Checks a received message the way the reference libraries do. Empty header values count as
/// missing; `now` and the timestamp are Unix seconds; the timestamp may be off by at most
/// `tolerance_secs` either way. Any matching `v1` entry from any key is enough.
pub fn verify(
    keys: &[&[u8]],
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let headers = [
        ("webhook-id", msg_id),
        ("webhook-timestamp", timestamp_header),
        ("webhook-signature", signature_header),
    ];
    if let Some((name, _)) = headers.iter().find(|(_, value)| value.trim().is_empty()) {
        return Err(VerifyError::MissingHeader(name));
    }
    let timestamp: i64 = timestamp_header
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    check_freshness(timestamp, now, tolerance_secs)?;
    let candidates: Vec<Vec<u8>> = signature_header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        // An undecodable entry cannot match; skipping it keeps the other entries usable.
        .filter_map(|encoded| STANDARD_PAD_INDIFFERENT.decode(encoded).ok())
        .collect();
    for key in keys {
        let mac = mac_over(key, msg_id, timestamp, body);
        if candidates
            .iter()
            .any(|c| mac.clone().verify_slice(c).is_ok())
        {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

fn check_freshness(timestamp: i64, now: i64, tolerance_secs: i64) -> Result<(), VerifyError> {
    let age_secs = now.saturating_sub(timestamp);
    if age_secs > tolerance_secs {
        return Err(VerifyError::TooOld { age_secs });
    }
    let ahead_secs = timestamp.saturating_sub(now);
    if ahead_secs > tolerance_secs {
        return Err(VerifyError::TooNew { ahead_secs });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SVIX_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SVIX_TS: i64 = 1_614_265_330;
    const SVIX_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SVIX_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn key(fill: u8) -> Vec<u8> {
        vec![fill; GENERATED_KEY_LEN]
    }

    fn check(
        keys: &[&[u8]],
        ts: &str,
        sig: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        verify(keys, "msg_1", ts, sig, body, now, DEFAULT_TOLERANCE_SECS)
    }

    #[test]
    fn reproduces_the_svix_documentation_vector() {
        let key = parse_secret(SVIX_SECRET).expect("vector secret is valid");
        assert_eq!(key.len(), 24);
        assert_eq!(sign(&key, SVIX_ID, SVIX_TS, SVIX_BODY), SVIX_SIGNATURE);
        let ts = SVIX_TS.to_string();
        let result = verify(
            &[&key],
            SVIX_ID,
            &ts,
            SVIX_SIGNATURE,
            SVIX_BODY,
            SVIX_TS,
            300,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn secrets_parse_with_or_without_prefix_and_padding() {
        let bare = SVIX_SECRET.trim_start_matches(SECRET_PREFIX);
        let expected = parse_secret(SVIX_SECRET).expect("valid");
        assert_eq!(parse_secret(bare).expect("valid"), expected);
        let unpadded = format!("whsec_{}", STANDARD.encode([7u8; 32]).trim_end_matches('='));
        assert_eq!(parse_secret(&unpadded).expect("valid"), vec![7u8; 32]);
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        let err = parse_secret("whsec_not base64!").expect_err("bad base64");
        assert!(matches!(err, SignError::BadBase64));
        assert!(!err.to_string().contains("not base64!"));
        let short = format!("whsec_{}", STANDARD.encode([1u8; 16]));
        assert!(matches!(
            parse_secret(&short),
            Err(SignError::TooShort { len: 16 })
        ));
        let long = STANDARD.encode([1u8; 65]);
        assert!(matches!(
            parse_secret(&long),
            Err(SignError::TooLong { len: 65 })
        ));
    }

    #[test]
    fn generated_secrets_are_fresh_32_byte_keys() {
        let first = generate_secret().expect("OS random source");
        let second = generate_secret().expect("OS random source");
        assert!(first.starts_with(SECRET_PREFIX));
        assert_ne!(first, second);
        assert_eq!(
            parse_secret(&first).expect("parses").len(),
            GENERATED_KEY_LEN
        );
    }

    #[test]
    fn signed_message_verifies() {
        let k = key(1);
        let header = signature_header(&[&k], "msg_1", 1_000, b"{}");
        assert_eq!(check(&[&k], "1000", &header, b"{}", 1_000), Ok(()));
    }

    #[test]
    fn rotation_signs_with_both_keys_and_either_verifies() {
        let (old, new) = (key(1), key(2));
        let header = signature_header(&[&old, &new], "msg_1", 1_000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(check(&[&old], "1000", &header, b"{}", 1_000), Ok(()));
        assert_eq!(check(&[&new], "1000", &header, b"{}", 1_000), Ok(()));
        let other = key(3);
        assert_eq!(
            check(&[&other], "1000", &header, b"{}", 1_000),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn tampered_body_or_id_is_refused() {
        let k = key(1);
        let header = sign(&k, "msg_1", 1_000, br#"{"amount":1}"#);
        let tampered = check(&[&k], "1000", &header, br#"{"amount":9}"#, 1_000);
        assert_eq!(tampered, Err(VerifyError::NoMatchingSignature));
        let other_id = verify(
            &[&k],
            "msg_2",
            "1000",
            &header,
            br#"{"amount":1}"#,
            1_000,
            300,
        );
        assert_eq!(other_id, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused() {
        let k = key(1);
        let header = sign(&k, "msg_1", 1_000, b"{}");
        assert_eq!(
            check(&[&k], "1000", &header, b"{}", 1_301),
            Err(VerifyError::TooOld { age_secs: 301 })
        );
        assert_eq!(
            check(&[&k], "1000", &header, b"{}", 699),
            Err(VerifyError::TooNew { ahead_secs: 301 })
        );
        assert_eq!(check(&[&k], "1000", &header, b"{}", 1_300), Ok(()));
        assert_eq!(check(&[&k], "1000", &header, b"{}", 700), Ok(()));
        assert_eq!(
            check(&[&k], "10e2", &header, b"{}", 1_000),
            Err(VerifyError::BadTimestamp)
        );
        let far = check(&[&k], "-9223372036854775808", &header, b"{}", i64::MAX);
        assert!(matches!(far, Err(VerifyError::TooOld { .. })));
    }

    #[test]
    fn missing_headers_are_named() {
        let k = key(1);
        assert_eq!(
            verify(&[&k], "", "1", "v1,x", b"", 1, 300),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            check(&[&k], " ", "v1,x", b"", 1),
            Err(VerifyError::MissingHeader("webhook-timestamp"))
        );
        assert_eq!(
            check(&[&k], "1", "", b"", 1),
            Err(VerifyError::MissingHeader("webhook-signature"))
        );
    }

    #[test]
    fn unknown_versions_and_garbage_entries_are_skipped() {
        let k = key(1);
        let good = sign(&k, "msg_1", 1_000, b"{}");
        let header = format!("v1a,AAAA v2,{} v1,!!notbase64 nocomma {good}", &good[3..]);
        assert_eq!(check(&[&k], "1000", &header, b"{}", 1_000), Ok(()));
        let only_unknown = format!("v2,{}", &good[3..]);
        assert_eq!(
            check(&[&k], "1000", &only_unknown, b"{}", 1_000),
            Err(VerifyError::NoMatchingSignature)
        );
    }
}
