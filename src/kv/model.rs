//! Key-value types without I/O: the stored entry, its API views (secrets masked unless
//! revealed), write requests, key rules, `If-Match` parsing and the export document.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::value::{TypedValue, ValueType};

/// Keys: `^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$`. A key can never start with `_`, so
/// `/api/v1/kv/_export` and `_import` cannot collide with a key; `changes` is reserved
/// because `GET /api/v1/kv/changes` is the change feed.
pub fn validate_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c));
    if !first_ok || !rest_ok || key.len() > 255 {
        return Err(format!(
            "invalid key {:?}: keys are 1 to 255 characters of A-Z a-z 0-9 . _ : / -, starting with a letter or digit",
            truncate(key, 60)
        ));
    }
    if key == "changes" {
        return Err(
            "the key \"changes\" is reserved (GET /api/v1/kv/changes is the change feed)".into(),
        );
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A stored entry (current row or history row). `value` is the canonical text, absent for
/// secrets, whose ciphertext is `secret_ct`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value_type: ValueType,
    pub value: Option<String>,
    pub secret_ct: Option<String>,
    pub is_active: bool,
    pub is_cached: bool,
    pub description: String,
    pub version: i64,
    pub revision: i64,
    pub deleted: bool,
    pub updated_at: String,
    pub updated_by: String,
}

/// An entry as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// The typed value; `null` for a masked secret.
    #[schema(value_type = Object)]
    pub value: Value,
    /// True when `value` is withheld (a secret read without `?reveal=true`).
    pub masked: bool,
    pub is_active: bool,
    pub is_cached: bool,
    pub description: String,
    pub version: i64,
    pub revision: i64,
    pub updated_at: String,
    pub updated_by: String,
}

/// A history row as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    #[serde(flatten)]
    pub entry: EntryView,
    /// put, delete or rollback.
    pub op: String,
}

/// `PUT /api/v1/kv/{key}`: the new type and value; omitted flags keep their current value
/// (or the defaults `isActive=true`, `isCached=false`, empty description for a new key).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutRequest {
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[schema(value_type = Object)]
    pub value: Value,
    pub is_active: Option<bool>,
    pub is_cached: Option<bool>,
    pub description: Option<String>,
}

/// `POST /api/v1/kv/{key}/rollback`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version whose type, value and flags become the new current version.
    pub version: i64,
}

/// A validated write, ready for the store: the typed value plus flags.
#[derive(Debug, Clone)]
pub struct Write {
    pub value: TypedValue,
    pub is_active: Option<bool>,
    pub is_cached: Option<bool>,
    pub description: Option<String>,
}

pub const MAX_DESCRIPTION: usize = 1024;

pub fn validate_description(d: &Option<String>) -> Result<(), String> {
    match d {
        Some(d) if d.len() > MAX_DESCRIPTION => Err(format!(
            "description is longer than {MAX_DESCRIPTION} bytes"
        )),
        Some(d) if d.contains('\0') => Err("description must not contain NUL characters".into()),
        _ => Ok(()),
    }
}

/// A compare-and-set condition from `If-Match` / `If-None-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// The current version must be exactly this.
    Version(i64),
    /// The key must not exist (`If-None-Match: *`).
    Absent,
}

/// Parses `If-Match: 7`, `"7"`, `"v7"` or `W/"v7"`; `*` means "must exist" and is treated
/// as no version condition by the caller.
pub fn parse_if_match(header: &str) -> Result<Option<i64>, String> {
    let h = header.trim();
    if h == "*" {
        return Ok(None);
    }
    let bare = h.trim_start_matches("W/").trim_matches('"');
    let digits = bare.strip_prefix('v').unwrap_or(bare);
    digits.parse::<i64>().map(Some).map_err(|_| {
        format!(
            "If-Match must be a version such as \"v7\", not {:?}",
            truncate(h, 40)
        )
    })
}

/// The ETag of a version. Version-based, never a content hash: a hash would leak whether a
/// secret equals a guess.
pub fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// One entry of an export document. Secrets carry their ciphertext (only restorable with
/// the same master keyring) or are left out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportEntry {
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// The typed value (absent for secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    /// A secret's ciphertext (`v1:<key id>:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub is_cached: bool,
    #[serde(default)]
    pub description: String,
}

fn yes() -> bool {
    true
}

/// The export/import document: `{"format": "opshub-kv/1", "entries": {key: entry}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportDoc {
    /// Always `opshub-kv/1`.
    #[schema(pattern = "^opshub-kv/1$")]
    pub format: String,
    pub entries: std::collections::BTreeMap<String, ExportEntry>,
}

pub const EXPORT_FORMAT: &str = "opshub-kv/1";

/// What an import did or would do.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub dry_run: bool,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    /// Problems per key; when any exist nothing is written.
    pub errors: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hierarchical_keys_and_rejects_the_rest() {
        for ok in ["a", "app/http/timeout_ms", "A.b:c-d_e", &"k".repeat(255)] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "_sys",
            "/lead",
            "sp ace",
            "é",
            "changes",
            &"k".repeat(256),
            "a\nb",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn if_match_accepts_common_etag_spellings() {
        for h in ["7", "\"7\"", "\"v7\"", "W/\"v7\""] {
            assert_eq!(parse_if_match(h), Ok(Some(7)), "{h}");
        }
        assert_eq!(parse_if_match("*"), Ok(None));
        assert!(parse_if_match("\"abc\"").is_err());
        assert_eq!(etag(3), "\"v3\"");
    }

    #[test]
    fn export_entries_default_to_active_uncached() {
        let e: ExportEntry =
            serde_json::from_str(r#"{"type":"integer","value":3}"#).expect("parses");
        assert!(e.is_active && !e.is_cached && e.description.is_empty());
    }
}
