//! API token types: scopes and what each allows, token generation and hashing. Only the
//! SHA-256 of a token is ever stored; the token text exists once, in the create response.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::crypto::{random_bytes, sha256_hex};

/// What a token may do: `read` = GET; `write` = everything but tokens and secret reveal;
/// `admin` = everything. Ordered, so `scope >= needed` is the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}: use read, write or admin")),
        }
    }
}

/// A stored token, as listed (never with its secret text).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The answer to a create: the record plus the token text, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    #[serde(flatten)]
    pub record: Token,
    pub token: String,
}

/// A create request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 100 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: String,
    pub scope: Scope,
}

impl NewToken {
    pub fn validate(&self) -> Result<(), String> {
        let n = self.name.trim();
        if n.is_empty() || n.chars().count() > 100 {
            return Err("name must be 1 to 100 characters".into());
        }
        if n.chars().any(char::is_control) {
            return Err("name must not contain control characters".into());
        }
        Ok(())
    }
}

/// A fresh token text: `opshub_` and 32 random bytes, base64url.
pub fn generate() -> String {
    format!("opshub_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// What is stored and looked up for a token text.
pub fn hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// The part of a token shown in lists.
pub fn prefix(token: &str) -> String {
    token.chars().take(12).collect()
}

/// The shortest token accepted from `OPSHUB_ADMIN_TOKEN`, so a guessable one is refused.
pub const MIN_SUPPLIED_LEN: usize = 24;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered_read_write_admin() {
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
        assert_eq!("admin".parse::<Scope>(), Ok(Scope::Admin));
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn generated_tokens_are_unique_and_hash_to_hex() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("opshub_") && a.len() == 7 + 43);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn rejects_empty_or_control_names() {
        let t = |name: &str| {
            NewToken {
                name: name.into(),
                scope: Scope::Read,
            }
            .validate()
        };
        assert!(t("ci").is_ok());
        assert!(t(" ").is_err());
        assert!(t("a\nb").is_err());
        assert!(t(&"x".repeat(101)).is_err());
    }
}
