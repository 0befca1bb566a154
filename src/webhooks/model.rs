//! Outbound webhook types without I/O: the endpoint record and its API views, create and
//! update requests with their validation, events, deliveries and attempts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{guard, pattern, sign};

/// An endpoint as stored (secrets still encrypted).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    pub events: Vec<String>,
    pub secret_ct: String,
    pub prev_secret_ct: Option<String>,
    pub prev_secret_until: Option<String>,
    pub service: Option<String>,
    pub metadata: Value,
    pub headers: BTreeMap<String, String>,
    pub is_active: bool,
    pub description: String,
    pub disabled_reason: Option<String>,
    pub retry_schedule: Option<String>,
    pub failing_since: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An endpoint as the API shows it: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    pub events: Vec<String>,
    pub service: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub headers: BTreeMap<String, String>,
    pub is_active: bool,
    pub description: String,
    pub disabled_reason: Option<String>,
    /// Per-webhook retry delays (e.g. "5s,5m,30m"); null = the global schedule.
    pub retry_schedule: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> WebhookView {
        WebhookView {
            id: w.id.clone(),
            name: w.name.clone(),
            endpoint: w.endpoint.clone(),
            events: w.events.clone(),
            service: w.service.clone(),
            metadata: w.metadata.clone(),
            headers: w.headers.clone(),
            is_active: w.is_active,
            description: w.description.clone(),
            disabled_reason: w.disabled_reason.clone(),
            retry_schedule: w.retry_schedule.clone(),
            created_at: w.created_at.clone(),
            updated_at: w.updated_at.clone(),
        }
    }
}

/// The answer to a create or a secret rotation: the record plus the secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub secret: String,
}

/// `POST /api/v1/webhooks`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWebhook {
    /// 1 to 100 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    pub endpoint: String,
    pub events: Vec<String>,
    /// `whsec_<base64>`; generated when omitted.
    pub secret: Option<String>,
    pub service: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    pub headers: Option<BTreeMap<String, String>>,
    pub is_active: Option<bool>,
    pub description: Option<String>,
    pub retry_schedule: Option<String>,
}

/// `PATCH /api/v1/webhooks/{id}`: only the given fields change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookPatch {
    pub name: Option<String>,
    pub endpoint: Option<String>,
    pub events: Option<Vec<String>>,
    pub service: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    pub headers: Option<BTreeMap<String, String>>,
    pub is_active: Option<bool>,
    pub description: Option<String>,
    pub retry_schedule: Option<String>,
}

/// A validation problem with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

pub fn validate_name(name: &str) -> Result<(), Invalid> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= 100
        && !name.chars().any(char::is_control);
    ok.then_some(())
        .ok_or_else(|| invalid("name", "name must be 1 to 100 printable characters"))
}

/// The URL's syntax always; its target too unless private targets are allowed.
pub fn validate_endpoint(url: &str, allow_private: bool) -> Result<(), Invalid> {
    let checked = if allow_private {
        guard::parse_url(url)
    } else {
        guard::check_url(url)
    };
    checked.map(|_| ()).map_err(|e| {
        let hint = if matches!(e, guard::GuardError::Forbidden { .. }) {
            " (set OPSHUB_WEBHOOK_ALLOW_PRIVATE=true to allow private targets)"
        } else {
            ""
        };
        invalid("endpoint", format!("invalid endpoint: {e}{hint}"))
    })
}

pub fn validate_events(events: &[String]) -> Result<(), Invalid> {
    if events.is_empty() {
        return Err(invalid(
            "events",
            "events must list at least one pattern (\"*\" for every event)",
        ));
    }
    if events.len() > 100 {
        return Err(invalid("events", "at most 100 patterns per webhook"));
    }
    for p in events {
        pattern::validate_pattern(p)
            .map_err(|e| invalid("events", format!("invalid pattern {p:?}: {e}")))?;
    }
    Ok(())
}

/// Headers the sender sets itself, or that would change the request's meaning.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "user-agent",
    "te",
    "upgrade",
    "expect",
];

pub fn validate_headers(headers: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if headers.len() > 20 {
        return Err(invalid("headers", "at most 20 extra headers"));
    }
    for (name, value) in headers {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(invalid(
                "headers",
                format!("{name:?} is not a valid header name"),
            ));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                "headers",
                format!("{name} is set by opshub and cannot be overridden"),
            ));
        }
        if value.len() > 4096 || value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(invalid(
                "headers",
                format!("the value of {name} is too long or has control characters"),
            ));
        }
    }
    Ok(())
}

pub fn validate_secret(secret: &str) -> Result<(), Invalid> {
    if !secret.starts_with(sign::SECRET_PREFIX) {
        return Err(invalid(
            "secret",
            "a secret looks like whsec_<base64 of 24 to 64 bytes>",
        ));
    }
    sign::parse_secret(secret)
        .map(|_| ())
        .map_err(|e| invalid("secret", format!("invalid secret: {e}")))
}

pub fn validate_metadata(metadata: &Value) -> Result<(), Invalid> {
    match metadata {
        Value::Object(_) if metadata.to_string().len() <= 16 * 1024 => Ok(()),
        Value::Object(_) => Err(invalid("metadata", "metadata is larger than 16 KiB")),
        _ => Err(invalid("metadata", "metadata must be a JSON object")),
    }
}

pub fn validate_schedule(schedule: &str) -> Result<(), Invalid> {
    super::retry::RetrySchedule::parse(schedule)
        .map(|_| ())
        .map_err(|e| invalid("retrySchedule", format!("invalid retry schedule: {e}")))
}

/// `POST /api/v1/events`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewEvent {
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$", max_length = 255)]
    pub event_type: String,
    /// Any JSON value; it becomes the delivered body's `data`.
    #[schema(value_type = serde_json::Value)]
    pub payload: Value,
    /// Idempotency key and message id: a repeat within 24 h returns the first event.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,255}$")]
    pub id: Option<String>,
}

/// Event ids given by clients: 1 to 255 of `A-Za-z0-9 _ - . :`.
pub fn validate_event_id(id: &str) -> Result<(), Invalid> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        invalid(
            "id",
            "an event id is 1 to 255 characters of A-Z a-z 0-9 _ - . :",
        )
    })
}

/// A published event.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created_at: String,
    /// How many deliveries the event got (one per matching active webhook).
    pub deliveries: i64,
    /// True when this answer repeats an event published earlier with the same id.
    pub duplicate: bool,
}

/// `POST /api/v1/events/route`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteRequest {
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$", max_length = 255)]
    pub event_type: String,
}

/// One delivery as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub webhook_id: String,
    /// pending, succeeded or failed.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

/// One attempt: what the endpoint answered.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: i64,
    pub started_at: String,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    /// Response headers as [name, value] pairs, in order.
    pub response_headers: Vec<(String, String)>,
    /// The first 16 KiB of the response body.
    pub response_body: String,
    pub error: Option<String>,
}

/// A delivery with its attempts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    pub attempts_log: Vec<AttemptView>,
}

/// `POST /api/v1/deliveries/recover`: re-queue failed deliveries created in a time range.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverRequest {
    #[schema(format = DateTime)]
    pub since: String,
    #[schema(format = DateTime)]
    pub until: Option<String>,
    pub webhook_id: Option<String>,
}

/// Digest requests: the headers a receiver would get.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DigestRequest {
    /// Required for `POST /api/v1/digest`; not allowed with a webhook's stored secret.
    pub secret: Option<String>,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub id: Option<String>,
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct DigestHeaders {
    pub webhook_id: String,
    pub webhook_timestamp: String,
    pub webhook_signature: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    pub headers: DigestHeaders,
    /// The exact body that was signed.
    pub body: String,
}

/// `POST /api/v1/verify`: checks headers and a raw body against a secret.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyRequest {
    pub secret: String,
    pub headers: BTreeMap<String, String>,
    /// The raw body text exactly as received.
    pub payload: String,
    /// Allowed clock difference in seconds (default 300).
    pub tolerance: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResult {
    pub valid: bool,
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_need_at_least_one_valid_pattern() {
        assert!(validate_events(&[]).is_err());
        assert!(validate_events(&["user..created".into()]).is_err());
        assert!(validate_events(&["user.*".into(), "*".into()]).is_ok());
    }

    #[test]
    fn extra_headers_cannot_spoof_signing_or_framing() {
        let h = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(validate_headers(&h("X-Tenant", "a")).is_ok());
        assert!(validate_headers(&h("Webhook-Signature", "v1,x")).is_err());
        assert!(validate_headers(&h("Content-Length", "1")).is_err());
        assert!(validate_headers(&h("bad name", "a")).is_err());
        assert!(validate_headers(&h("X-A", "line\nbreak")).is_err());
    }

    #[test]
    fn endpoints_are_checked_for_scheme_and_target() {
        assert!(validate_endpoint("https://hooks.example.com/x", false).is_ok());
        assert!(validate_endpoint("ftp://example.com", false).is_err());
        let private = validate_endpoint("http://10.0.0.5/x", false).expect_err("private");
        assert!(private.message.contains("OPSHUB_WEBHOOK_ALLOW_PRIVATE"));
        assert!(validate_endpoint("http://127.0.0.1:9/x", true).is_ok());
    }

    #[test]
    fn secrets_must_be_whsec_with_enough_key() {
        assert!(validate_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(validate_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(validate_secret("whsec_c2hvcnQ=").is_err());
    }
}
