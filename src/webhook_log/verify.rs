//! Signature checks for incoming webhooks, one scheme per [`Verifier`] (exact rules on its
//! variants). Pure: the caller passes lowercased header names with raw values, the exact body
//! bytes and the clock. Every MAC comparison is constant-time (`Mac::verify_slice`); a failure
//! is a stable snake_case code ([`Failure::code`]). The MAC is checked before the clock, so a
//! replayed genuine request reads `timestamp_out_of_tolerance` and a forgery `signature_mismatch`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[cfg(test)]
mod tests;

/// How far a signed timestamp may be from `now_unix`, either way (Stripe, Slack and the
/// Standard Webhooks libraries all use five minutes).
pub const TOLERANCE_SECS: u64 = 300;

/// Standard base64 that tolerates missing padding, as the Standard Webhooks libraries do.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type Sha256Mac = Hmac<Sha256>;

/// A source's signature scheme. Text forms: `none`, `standard-webhooks`, `github`, `stripe`,
/// `slack`, `shopify`, `hmac-sha256`. Every HMAC scheme refuses an empty secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verifier {
    /// Nothing is checked; the row is `unchecked`.
    None,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64> [v1,<b64> …]` over
    /// `"{id}.{timestamp}.{body}"`; the `svix-*` names are used when `webhook-signature` is
    /// absent. Secret `whsec_<base64>` (prefix optional) is base64-decoded; any `v1` may match,
    /// other versions (`v1a`) are skipped; 5-minute tolerance.
    StandardWebhooks,
    /// `x-hub-signature-256: sha256=<hex>` over the body, secret as UTF-8 bytes, no timestamp.
    /// The legacy SHA-1 `x-hub-signature` is not accepted.
    Github,
    /// `stripe-signature: t=<unix>,v1=<hex>[,v1=…]` over `"{t}.{body}"`; the `whsec_…` secret
    /// is the literal HMAC key (not decoded). Only `v1` counts; `v0` and unknown keys are
    /// ignored; exactly one `t`; 300 s tolerance.
    Stripe,
    /// `x-slack-signature: v0=<hex>` over `"v0:{x-slack-request-timestamp}:{body}"`;
    /// 5-minute tolerance.
    Slack,
    /// `x-shopify-hmac-sha256: <base64>` over the body, no timestamp.
    Shopify,
    /// Generic: `x-signature`, else `x-hub-signature-256`, optionally prefixed `sha256=`, holding
    /// HMAC-SHA256(secret, body) as 64 hex digits (either case) or base64 (standard alphabet,
    /// padding optional). No timestamp.
    HmacSha256,
}

impl Verifier {
    pub const ALL: [Verifier; 7] = [
        Self::None,
        Self::StandardWebhooks,
        Self::Github,
        Self::Stripe,
        Self::Slack,
        Self::Shopify,
        Self::HmacSha256,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StandardWebhooks => "standard-webhooks",
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
            Self::HmacSha256 => "hmac-sha256",
        }
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verifier {
    type Err = UnknownVerifier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVerifier(s.to_owned()))
    }
}

/// A verifier name that is none of the seven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVerifier(pub String);

impl fmt::Display for UnknownVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Verifier::ALL.iter().map(|v| v.as_str()).collect();
        write!(
            f,
            "unknown verifier {:?}; expected one of {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownVerifier {}

/// The outcome recorded on a log row; `Invalid` holds a [`Failure::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    Unchecked,
    Valid,
    Invalid(String),
}

impl SignatureStatus {
    /// The `signatureStatus` column value: `unchecked`, `valid` or `invalid`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unchecked => "unchecked",
            Self::Valid => "valid",
            Self::Invalid(_) => "invalid",
        }
    }

    /// The failure code of an `Invalid` status.
    pub fn reason_code(&self) -> Option<&str> {
        match self {
            Self::Invalid(code) => Some(code),
            _ => None,
        }
    }
}

/// Why a request failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A header the scheme needs is absent.
    MissingHeader,
    /// A header the scheme reads appears more than once, so which one was signed is unclear.
    DuplicateHeader,
    /// A header is not UTF-8, lacks its prefix, or holds bad hex, base64 or timestamp.
    MalformedHeader,
    /// The signature matched but its timestamp is more than [`TOLERANCE_SECS`] from now.
    TimestampOutOfTolerance,
    /// No signature in the request matches the body under this secret.
    SignatureMismatch,
    /// The configured secret is empty or (Standard Webhooks) not base64.
    UnusableSecret,
}

impl Failure {
    /// Stable snake_case code for storage, filters and API bodies.
    pub const fn code(self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::DuplicateHeader => "duplicate_header",
            Self::MalformedHeader => "malformed_header",
            Self::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            Self::SignatureMismatch => "signature_mismatch",
            Self::UnusableSecret => "unusable_secret",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Checks one request. `headers` carries lowercased names and raw values in arrival order.
pub fn verify(
    verifier: Verifier,
    secret: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    now_unix: i64,
) -> SignatureStatus {
    let request = Request {
        headers,
        body,
        now_unix,
    };
    let outcome = match verifier {
        Verifier::None => return SignatureStatus::Unchecked,
        // Checked first so a misconfigured source reads as such whatever the request holds.
        _ if secret.is_empty() => Err(Failure::UnusableSecret),
        Verifier::StandardWebhooks => standard_webhooks(secret, &request),
        Verifier::Github => github(secret, &request),
        Verifier::Stripe => stripe(secret, &request),
        Verifier::Slack => slack(secret, &request),
        Verifier::Shopify => shopify(secret, &request),
        Verifier::HmacSha256 => generic(secret, &request),
    };
    match outcome {
        Ok(()) => SignatureStatus::Valid,
        Err(failure) => SignatureStatus::Invalid(failure.code().to_owned()),
    }
}

struct Request<'a> {
    headers: &'a [(String, Vec<u8>)],
    body: &'a [u8],
    now_unix: i64,
}

impl Request<'_> {
    fn optional(&self, name: &str) -> Result<Option<&str>, Failure> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Failure::DuplicateHeader);
        }
        let text = std::str::from_utf8(value).map_err(|_| Failure::MalformedHeader)?;
        Ok(Some(text.trim()))
    }

    fn required(&self, name: &str) -> Result<&str, Failure> {
        self.optional(name)?.ok_or(Failure::MissingHeader)
    }

    fn is_fresh(&self, timestamp: i64) -> Result<(), Failure> {
        if timestamp.abs_diff(self.now_unix) > TOLERANCE_SECS {
            return Err(Failure::TimestampOutOfTolerance);
        }
        Ok(())
    }
}

/// A MAC keyed with `key` over the concatenated `parts`, ready for `verify_slice`.
fn keyed_mac(key: &[u8], parts: &[&[u8]]) -> Result<Sha256Mac, Failure> {
    if key.is_empty() {
        return Err(Failure::UnusableSecret);
    }
    let mut mac = Sha256Mac::new_from_slice(key).map_err(|_| Failure::UnusableSecret)?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac)
}

/// Succeeds if any candidate equals the MAC; each comparison is constant-time, and which
/// candidate matched is not secret.
fn any_matches(
    mac: &Sha256Mac,
    candidates: impl IntoIterator<Item = Vec<u8>>,
) -> Result<(), Failure> {
    let matched = candidates
        .into_iter()
        .any(|candidate| mac.clone().verify_slice(&candidate).is_ok());
    matched.then_some(()).ok_or(Failure::SignatureMismatch)
}

/// Unix seconds as plain ASCII digits: no sign, no fraction, no whitespace inside.
fn unix_seconds(text: &str) -> Result<i64, Failure> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::MalformedHeader);
    }
    text.parse().map_err(|_| Failure::MalformedHeader)
}

fn standard_webhooks(secret: &str, request: &Request<'_>) -> Result<(), Failure> {
    let names = if request.optional("webhook-signature")?.is_some() {
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
    } else {
        ["svix-id", "svix-timestamp", "svix-signature"]
    };
    let id = request.required(names[0])?;
    let timestamp_text = request.required(names[1])?;
    let signatures = request.required(names[2])?;
    let timestamp = unix_seconds(timestamp_text)?;
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| Failure::UnusableSecret)?;
    let signed = [
        id.as_bytes(),
        b".",
        timestamp_text.as_bytes(),
        b".",
        request.body,
    ];
    let candidates = signatures
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok());
    any_matches(&keyed_mac(&key, &signed)?, candidates)?;
    request.is_fresh(timestamp)
}

fn github(secret: &str, request: &Request<'_>) -> Result<(), Failure> {
    let header = request.required("x-hub-signature-256")?;
    let digest = header
        .strip_prefix("sha256=")
        .and_then(|hex_text| hex::decode(hex_text).ok())
        .ok_or(Failure::MalformedHeader)?;
    any_matches(&keyed_mac(secret.as_bytes(), &[request.body])?, [digest])
}

fn stripe(secret: &str, request: &Request<'_>) -> Result<(), Failure> {
    let header = request.required("stripe-signature")?;
    let mut timestamp_text = None;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(Failure::MalformedHeader)?;
        match key {
            "t" if timestamp_text.replace(value).is_some() => return Err(Failure::MalformedHeader),
            // A bad hex entry is just one more non-match, as in Stripe's own libraries.
            "v1" => candidates.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let timestamp_text = timestamp_text.ok_or(Failure::MalformedHeader)?;
    let timestamp = unix_seconds(timestamp_text)?;
    let signed = [timestamp_text.as_bytes(), b".", request.body];
    any_matches(&keyed_mac(secret.as_bytes(), &signed)?, candidates)?;
    request.is_fresh(timestamp)
}

fn slack(secret: &str, request: &Request<'_>) -> Result<(), Failure> {
    let timestamp_text = request.required("x-slack-request-timestamp")?;
    let header = request.required("x-slack-signature")?;
    let timestamp = unix_seconds(timestamp_text)?;
    let digest = header
        .strip_prefix("v0=")
        .and_then(|hex_text| hex::decode(hex_text).ok())
        .ok_or(Failure::MalformedHeader)?;
    let signed = [b"v0:", timestamp_text.as_bytes(), b":", request.body];
    any_matches(&keyed_mac(secret.as_bytes(), &signed)?, [digest])?;
    request.is_fresh(timestamp)
}

fn shopify(secret: &str, request: &Request<'_>) -> Result<(), Failure> {
    let header = request.required("x-shopify-hmac-sha256")?;
    let digest = BASE64
        .decode(header)
        .map_err(|_| Failure::MalformedHeader)?;
    any_matches(&keyed_mac(secret.as_bytes(), &[request.body])?, [digest])
}

fn generic(secret: &str, request: &Request<'_>) -> Result<(), Failure> {
    let header = match request.optional("x-signature")? {
        Some(value) => value,
        None => request.required("x-hub-signature-256")?,
    };
    let encoded = header.strip_prefix("sha256=").unwrap_or(header);
    // 64 characters can only be hex: base64 of a 32-byte MAC is 43 or 44 long.
    let digest = if encoded.len() == 64 {
        hex::decode(encoded).ok()
    } else {
        BASE64.decode(encoded).ok()
    };
    let digest = digest.ok_or(Failure::MalformedHeader)?;
    any_matches(&keyed_mac(secret.as_bytes(), &[request.body])?, [digest])
}
