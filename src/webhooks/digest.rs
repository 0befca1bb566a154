//! Signing helpers for people integrating with opshub: the headers a receiver would get
//! (digest) and a check of received headers (verify), per Standard Webhooks.

use super::model::{Digest, DigestHeaders};
use super::{model, sign};
use crate::error::{ApiError, ApiResult};

/// The headers a receiver would get for `payload` signed with `keys`. A JSON string payload
/// is signed as its exact text (so published test vectors reproduce); any other JSON value
/// is signed in its compact form, as opshub sends bodies.
pub fn digest(
    keys: &[Vec<u8>],
    payload: &serde_json::Value,
    id: Option<String>,
    timestamp: Option<i64>,
) -> Digest {
    let body = match payload {
        serde_json::Value::String(raw) => raw.clone(),
        other => other.to_string(),
    };
    let id = id.unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple()));
    let ts = timestamp.unwrap_or_else(|| ::time::OffsetDateTime::now_utc().unix_timestamp());
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let signature = sign::signature_header(&refs, &id, ts, body.as_bytes());
    Digest {
        headers: DigestHeaders {
            webhook_id: id,
            webhook_timestamp: ts.to_string(),
            webhook_signature: signature,
        },
        body,
    }
}

/// Checks Standard Webhooks headers against a raw body and a secret.
pub fn verify(req: &model::VerifyRequest) -> ApiResult<model::VerifyResult> {
    let key = sign::parse_secret(&req.secret)
        .map_err(|e| ApiError::unprocessable("invalid_secret", format!("invalid secret: {e}")))?;
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    let tolerance = req.tolerance.unwrap_or(sign::DEFAULT_TOLERANCE_SECS);
    let outcome = sign::verify(
        &[key.as_slice()],
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        req.payload.as_bytes(),
        now,
        tolerance,
    );
    Ok(match outcome {
        Ok(()) => model::VerifyResult {
            valid: true,
            reason: None,
        },
        Err(e) => model::VerifyResult {
            valid: false,
            reason: Some(e.to_string()),
        },
    })
}
