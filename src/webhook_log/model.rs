//! Types of the webhook log, with their validation; no I/O. A [`Source`] is what the API
//! shows of an ingest source (never its secret); a [`LogEntry`] is one captured request as
//! stored, chain fields included.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::verify::Verifier;

/// The largest `maxBodyBytes` a source may set (64 MiB): a row is held in memory whole.
pub const MAX_BODY_LIMIT: i64 = 64 * 1024 * 1024;
/// The default `maxBodyBytes` (1 MiB).
pub const DEFAULT_BODY_LIMIT: i64 = 1024 * 1024;
/// Headers redacted on every source, whatever `redactHeaders` says.
pub const ALWAYS_REDACTED: [&str; 2] = ["authorization", "cookie"];
/// What a redacted header value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// An ingest source as the API shows it: the secret only as `hasSecret`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub id: String,
    pub name: String,
    /// `none`, `standard-webhooks`, `github`, `stripe`, `slack`, `shopify` or `hmac-sha256`.
    pub verifier: Verifier,
    pub has_secret: bool,
    /// Lowercased header names whose values are stored as `[redacted]`, on top of
    /// `authorization` and `cookie`.
    pub redact_headers: Vec<String>,
    pub max_body_bytes: i64,
    /// Answer 401 (the request is still logged) when the signature does not verify.
    pub reject_invalid: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A create request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSource {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    pub verifier: Verifier,
    pub secret: Option<String>,
    #[serde(default)]
    pub redact_headers: Vec<String>,
    pub max_body_bytes: Option<i64>,
    #[serde(default)]
    pub reject_invalid: bool,
}

/// An update: absent fields stay as they are; `"secret": null` removes the secret.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourcePatch {
    pub name: Option<String>,
    pub verifier: Option<Verifier>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub secret: Option<Option<String>>,
    pub redact_headers: Option<Vec<String>>,
    pub max_body_bytes: Option<i64>,
    pub reject_invalid: Option<bool>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A source's full settings, secret in plain text: what capture works with.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub source: Source,
    pub secret: Option<String>,
}

impl SourceConfig {
    /// Whether a header (lowercased name) is stored as `[redacted]`.
    pub fn redacts(&self, name: &str) -> bool {
        ALWAYS_REDACTED.contains(&name) || self.source.redact_headers.iter().any(|h| h == name)
    }

    /// Applies a patch and checks the result; the name of the rule broken on failure.
    pub fn patched(mut self, patch: SourcePatch) -> Result<SourceConfig, String> {
        if let Some(n) = patch.name {
            self.source.name = n;
        }
        if let Some(v) = patch.verifier {
            self.source.verifier = v;
        }
        if let Some(s) = patch.secret {
            self.secret = s;
        }
        if let Some(r) = patch.redact_headers {
            self.source.redact_headers = r;
        }
        if let Some(m) = patch.max_body_bytes {
            self.source.max_body_bytes = m;
        }
        if let Some(r) = patch.reject_invalid {
            self.source.reject_invalid = r;
        }
        self.normalise()?;
        Ok(self)
    }

    /// Trims and lowercases what is case-insensitive, then validates every field.
    pub fn normalise(&mut self) -> Result<(), String> {
        let s = &mut self.source;
        s.name = s.name.trim().to_string();
        validate_name(&s.name)?;
        s.redact_headers = s
            .redact_headers
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        s.redact_headers.sort();
        s.redact_headers.dedup();
        if let Some(bad) = s.redact_headers.iter().find(|h| !is_header_name(h)) {
            return Err(format!("redactHeaders: {bad:?} is not a header name"));
        }
        if !(1..=MAX_BODY_LIMIT).contains(&s.max_body_bytes) {
            return Err(format!("maxBodyBytes must be from 1 to {MAX_BODY_LIMIT}"));
        }
        if self.secret.as_deref() == Some("") {
            self.secret = None;
        }
        if s.verifier != Verifier::None && self.secret.is_none() {
            return Err(format!("the {} verifier needs a secret", s.verifier));
        }
        if s.reject_invalid && s.verifier == Verifier::None {
            return Err("rejectInvalid needs a verifier other than none".into());
        }
        s.has_secret = self.secret.is_some();
        Ok(())
    }
}

/// Source names appear in URLs (`/ingest/{name}`), so they are URL-safe.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        ))
    }
}

fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A request as captured, before the writer gives it a place in the chain.
#[derive(Debug, Clone)]
pub struct Capture {
    pub id: String,
    pub source: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// `[[name, value], …]` as JSON text; hashed exactly as stored.
    pub headers: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub remote_addr: String,
    pub received_at: String,
    pub signature_status: String,
    pub signature_reason: Option<String>,
}

/// One stored row: a capture plus its place in the chain.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub seq: i64,
    pub capture: Capture,
    /// The body's length; stored apart so lists need not read bodies.
    pub body_size: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// A log row as the API shows it. The body is `body` when it is UTF-8, else `bodyBase64`;
/// lists leave both out (see `/raw`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogView {
    pub id: String,
    pub seq: i64,
    pub source: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    pub content_type: Option<String>,
    pub body_size: i64,
    pub remote_addr: String,
    pub received_at: String,
    /// `unchecked`, `valid` or `invalid`.
    pub signature_status: String,
    /// Why an `invalid` signature failed (`signature_mismatch`, `timestamp_out_of_tolerance`, …).
    pub signature_reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl LogView {
    pub fn from_entry(e: &LogEntry, with_body: bool) -> LogView {
        use base64::Engine;
        let c = &e.capture;
        let (body, body_base64) = match (with_body, std::str::from_utf8(&c.body)) {
            (false, _) => (None, None),
            (true, Ok(text)) => (Some(text.to_string()), None),
            (true, Err(_)) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&c.body)),
            ),
        };
        LogView {
            id: c.id.clone(),
            seq: e.seq,
            source: c.source.clone(),
            method: c.method.clone(),
            path: c.path.clone(),
            query: c.query.clone(),
            headers: serde_json::from_str(&c.headers).unwrap_or(serde_json::Value::Null),
            body,
            body_base64,
            content_type: c.content_type.clone(),
            body_size: e.body_size,
            remote_addr: c.remote_addr.clone(),
            received_at: c.received_at.clone(),
            signature_status: c.signature_status.clone(),
            signature_reason: c.signature_reason.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// Filters of `GET /webhook-logs`, plus paging.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Source name.
    pub source: Option<String>,
    /// HTTP method, any case.
    pub method: Option<String>,
    /// Received at or after this RFC 3339 instant.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Received before this RFC 3339 instant.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `unchecked`, `valid` or `invalid`.
    #[param(pattern = "^(unchecked|valid|invalid)$")]
    pub signature_status: Option<String>,
    /// Rows whose body contains these bytes (case-sensitive).
    pub q: Option<String>,
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Validated filters; times already in stored form.
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    pub source: Option<String>,
    pub method: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub signature_status: Option<String>,
    pub body_contains: Option<Vec<u8>>,
}

impl LogQuery {
    pub fn filter(&self) -> Result<LogFilter, String> {
        let time = |v: &Option<String>, name: &str| -> Result<Option<String>, String> {
            v.as_deref()
                .map(|t| {
                    crate::db::time::parse(t)
                        .map(crate::db::time::format)
                        .map_err(|_| format!("{name} must be an RFC 3339 instant"))
                })
                .transpose()
        };
        if let Some(s) = &self.signature_status
            && !["unchecked", "valid", "invalid"].contains(&s.as_str())
        {
            return Err("signatureStatus must be unchecked, valid or invalid".into());
        }
        Ok(LogFilter {
            source: self.source.clone(),
            method: self.method.as_ref().map(|m| m.to_ascii_uppercase()),
            from: time(&self.from, "from")?,
            to: time(&self.to, "to")?,
            signature_status: self.signature_status.clone(),
            body_contains: self.q.as_ref().map(|q| q.as_bytes().to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(verifier: Verifier, secret: Option<&str>) -> SourceConfig {
        SourceConfig {
            source: Source {
                id: "x".into(),
                name: "github-main".into(),
                verifier,
                has_secret: false,
                redact_headers: vec![" X-Api-Key ".into(), "x-api-key".into()],
                max_body_bytes: DEFAULT_BODY_LIMIT,
                reject_invalid: false,
                created_at: String::new(),
                updated_at: String::new(),
            },
            secret: secret.map(String::from),
        }
    }

    #[test]
    fn normalises_redaction_list_and_always_redacts_credentials() {
        let mut c = config(Verifier::Github, Some("s"));
        c.normalise().expect("valid");
        assert_eq!(c.source.redact_headers, vec!["x-api-key"]);
        assert!(c.redacts("authorization") && c.redacts("cookie") && c.redacts("x-api-key"));
        assert!(!c.redacts("content-type"));
        assert!(c.source.has_secret);
    }

    #[test]
    fn refuses_a_verifier_without_secret_and_bad_limits_or_names() {
        assert!(config(Verifier::Stripe, None).normalise().is_err());
        assert!(config(Verifier::Stripe, Some("")).normalise().is_err());
        assert!(config(Verifier::None, None).normalise().is_ok());
        let mut c = config(Verifier::None, None);
        c.source.max_body_bytes = 0;
        assert!(c.normalise().is_err());
        for bad in ["", "-x", "a/b", "a b", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let p = SourcePatch {
            reject_invalid: Some(true),
            ..SourcePatch::default()
        };
        assert!(config(Verifier::None, None).patched(p).is_err());
    }

    #[test]
    fn a_null_secret_in_a_patch_removes_it_and_absent_keeps_it() {
        let keep: SourcePatch = serde_json::from_str("{}").expect("json");
        assert!(keep.secret.is_none());
        let remove: SourcePatch = serde_json::from_str(r#"{"secret":null}"#).expect("json");
        assert_eq!(remove.secret, Some(None));
    }

    #[test]
    fn query_filters_parse_times_and_reject_unknown_status() {
        let q = LogQuery {
            from: Some("2026-01-01T00:00:00+01:00".into()),
            method: Some("post".into()),
            ..LogQuery::default()
        };
        let f = q.filter().expect("valid");
        assert_eq!(f.from.as_deref(), Some("2025-12-31T23:00:00.000000Z"));
        assert_eq!(f.method.as_deref(), Some("POST"));
        let bad = LogQuery {
            signature_status: Some("ok".into()),
            ..LogQuery::default()
        };
        assert!(bad.filter().is_err());
    }
}
