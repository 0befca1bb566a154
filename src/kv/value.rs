//! Typed KV values: the nine [`ValueType`]s, parsing from JSON (HTTP API) or text (CLI), and
//! the canonical storage text. Invariant: a [`TypedValue`] from `parse_*` or `from_storage`
//! is valid for its type, and `from_storage(ty, &v.to_storage())` gives `v` back.
//! Each type's exact rule is on its `ValueType` variant. No I/O and no crypto: a secret's
//! storage text is its plaintext, which the caller encrypts; masking is the caller's job too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Date, UtcDateTime};

use calendar::{format_date, format_datetime, parse_date, parse_datetime};

mod calendar;
#[cfg(test)]
mod tests;

/// Hard cap on a value's storage text (kv.md: hard cap 1 MiB; a lower default is config's job).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Deepest nesting accepted in objects and arrays (I-JSON profile in kv.md).
pub const MAX_JSON_DEPTH: usize = 64;

/// The declared type of a key. Text forms: `string`, `integer`, … (lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// Any string, empty allowed, without U+0000 (PostgreSQL `text` cannot hold it), at most
    /// [`MAX_VALUE_BYTES`]; stored exactly as given. On the CLI the text is taken literally.
    String,
    /// An i64 as a plain integer literal: no fraction, exponent, `+`, leading zero or `-0`.
    /// JSON above 2^53 loses precision in JavaScript clients.
    Integer,
    /// A finite f64 (RFC 8259 grammar on the CLI). Stored in shortest round-trip form as
    /// serde_json writes it (`1.0`, `0.1`, `1e+308`; the spelling may vary across serde_json
    /// versions, the f64 never does); `-0` becomes `0.0`; `1e-400` rounds to `0.0`.
    Number,
    /// JSON `true`/`false`; on the CLI exactly `true` or `false` (no `yes`, `1`, `True`).
    Boolean,
    /// `YYYY-MM-DD`, a real proleptic Gregorian day in years 0000–9999, no time part.
    Date,
    /// RFC 3339 with a mandatory offset (`Z` or `±HH:MM`), 1–9 fractional digits, `t`/`z`
    /// accepted, no space separator. Stored in UTC as `YYYY-MM-DDTHH:MM:SS[.fff]Z`, trailing
    /// zeros trimmed (SPEC §7 "stored UTC" wins over kv.md's "keep the offset"). Leap second
    /// `:60` is rejected: `time`, SQL and most clients have no distinct instant for it.
    Datetime,
    /// A JSON object (the CLI takes JSON text), at most [`MAX_JSON_DEPTH`] deep, stored as
    /// compact JSON. Key order is serde_json's `Map` order; a duplicate key keeps the last.
    Object,
    /// A JSON array, same rules as `Object`.
    Array,
    /// A non-empty string, same limits as `String`; never echoed in error reasons.
    Secret,
}

impl ValueType {
    pub const ALL: [ValueType; 9] = [
        Self::String,
        Self::Integer,
        Self::Number,
        Self::Boolean,
        Self::Date,
        Self::Datetime,
        Self::Object,
        Self::Array,
        Self::Secret,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Object => "object",
            Self::Array => "array",
            Self::Secret => "secret",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ValueType {
    type Err = UnknownValueType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|ty| ty.as_str() == s)
            .ok_or_else(|| UnknownValueType(s.to_owned()))
    }
}

/// A type name that is none of the nine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValueType(pub String);

impl fmt::Display for UnknownValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = ValueType::ALL.iter().map(|ty| ty.as_str()).collect();
        write!(
            f,
            "unknown type {:?}; expected one of {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownValueType {}

/// Why a value does not fit its type. Display (`"integer: 1.5 is not a whole number"`) is
/// meant for a 422 body as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    ty: ValueType,
    reason: String,
}

impl ValueError {
    pub fn value_type(&self) -> ValueType {
        self.ty
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.ty, self.reason)
    }
}

impl std::error::Error for ValueError {}

/// An f64 that is finite and never `-0`, so storage text and equality are canonical.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Finite(f64);

impl Finite {
    pub fn new(x: f64) -> Option<Self> {
        // `-0.0 == 0.0`, so adding 0.0 turns -0 into +0 and leaves every other value alone.
        x.is_finite().then_some(Self(x + 0.0))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// A value that passed its type's rule.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedValue {
    String(String),
    Integer(i64),
    Number(Finite),
    Boolean(bool),
    Date(Date),
    Datetime(UtcDateTime),
    Object(Map<String, Value>),
    Array(Vec<Value>),
    Secret(String),
}

impl TypedValue {
    pub fn value_type(&self) -> ValueType {
        match self {
            Self::String(_) => ValueType::String,
            Self::Integer(_) => ValueType::Integer,
            Self::Number(_) => ValueType::Number,
            Self::Boolean(_) => ValueType::Boolean,
            Self::Date(_) => ValueType::Date,
            Self::Datetime(_) => ValueType::Datetime,
            Self::Object(_) => ValueType::Object,
            Self::Array(_) => ValueType::Array,
            Self::Secret(_) => ValueType::Secret,
        }
    }

    /// The canonical text kept in the database (for a secret: the plaintext to encrypt).
    pub fn to_storage(&self) -> String {
        match self {
            Self::String(s) | Self::Secret(s) => s.clone(),
            Self::Integer(i) => i.to_string(),
            Self::Number(n) => Value::from(n.get()).to_string(),
            Self::Boolean(b) => b.to_string(),
            Self::Date(d) => format_date(*d),
            Self::Datetime(dt) => format_datetime(*dt),
            Self::Object(map) => compact_json(map),
            Self::Array(items) => compact_json(items),
        }
    }

    /// Reads a stored value back; an error means the row is corrupt, never the user's input.
    pub fn from_storage(ty: ValueType, stored: &str) -> Result<Self, ValueError> {
        // Every canonical form is also valid CLI text, so one grammar serves both.
        parse_text(ty, stored)
    }

    /// The typed JSON returned on reads. A secret comes out in clear: mask before serving.
    pub fn to_json(&self) -> Value {
        match self {
            Self::String(s) | Self::Secret(s) => Value::String(s.clone()),
            Self::Integer(i) => Value::from(*i),
            Self::Number(n) => Value::from(n.get()),
            Self::Boolean(b) => Value::Bool(*b),
            Self::Date(_) | Self::Datetime(_) => Value::String(self.to_storage()),
            Self::Object(map) => Value::Object(map.clone()),
            Self::Array(items) => Value::Array(items.clone()),
        }
    }
}

/// Checks a value given as JSON (HTTP API): strings are never coerced to other types.
pub fn parse_json(ty: ValueType, value: &Value) -> Result<TypedValue, ValueError> {
    let parsed = match ty {
        ValueType::String => json_str(value)
            .and_then(plain_string)
            .map(TypedValue::String),
        ValueType::Integer => integer_from_json(value),
        ValueType::Number => number_from_json(value),
        ValueType::Boolean => match value {
            Value::Bool(b) => Ok(TypedValue::Boolean(*b)),
            other => Err(expected("true or false", other)),
        },
        ValueType::Date => json_str(value).and_then(parse_date).map(TypedValue::Date),
        ValueType::Datetime => json_str(value)
            .and_then(parse_datetime)
            .map(TypedValue::Datetime),
        ValueType::Object => match value {
            Value::Object(map) => checked_json(value).map(|()| TypedValue::Object(map.clone())),
            other => Err(expected("a JSON object", other)),
        },
        ValueType::Array => match value {
            Value::Array(items) => checked_json(value).map(|()| TypedValue::Array(items.clone())),
            other => Err(expected("a JSON array", other)),
        },
        ValueType::Secret => json_str(value).and_then(secret).map(TypedValue::Secret),
    };
    parsed.map_err(|reason| ValueError { ty, reason })
}

/// Checks a value given as command-line text: scalars in their literal grammar, objects and
/// arrays as JSON text, strings and secrets taken literally (no JSON quotes).
pub fn parse_text(ty: ValueType, text: &str) -> Result<TypedValue, ValueError> {
    let parsed = match ty {
        ValueType::String => plain_string(text).map(TypedValue::String),
        ValueType::Integer => integer_from_text(text).map(TypedValue::Integer),
        ValueType::Number => number_from_text(text).map(TypedValue::Number),
        ValueType::Boolean => match text {
            "true" => Ok(TypedValue::Boolean(true)),
            "false" => Ok(TypedValue::Boolean(false)),
            other => Err(format!("{} is not true or false", shown(other))),
        },
        ValueType::Date => parse_date(text).map(TypedValue::Date),
        ValueType::Datetime => parse_datetime(text).map(TypedValue::Datetime),
        ValueType::Object | ValueType::Array => match serde_json::from_str::<Value>(text) {
            Ok(value) => return parse_json(ty, &value),
            Err(e) => Err(format!("invalid JSON: {e}")),
        },
        ValueType::Secret => secret(text).map(TypedValue::Secret),
    };
    parsed.map_err(|reason| ValueError { ty, reason })
}

fn json_str(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| expected("a JSON string", value))
}

fn expected(what: &str, got: &Value) -> String {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("expected {what}, got {kind}")
}

/// Quotes user input for a reason, cut short so a 1 MiB value never lands in an error body.
fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    if text.chars().count() <= MAX_CHARS {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("{head:?}…")
    }
}

fn plain_string(s: &str) -> Result<String, String> {
    if s.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "{} bytes is over the {MAX_VALUE_BYTES}-byte limit",
            s.len()
        ));
    }
    if s.contains('\0') {
        return Err("contains U+0000, which the database cannot store".to_owned());
    }
    Ok(s.to_owned())
}

fn secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    plain_string(s)
}

fn integer_from_json(value: &Value) -> Result<TypedValue, String> {
    let Value::Number(n) = value else {
        return Err(expected("a JSON integer", value));
    };
    if let Some(i) = n.as_i64() {
        return Ok(TypedValue::Integer(i));
    }
    if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) {
        return Err(NEGATIVE_ZERO.to_owned());
    }
    // serde_json keeps a literal with a fraction or exponent only as its f64.
    // `i64::MIN as f64` is exactly -2^63, so the range test below has no rounding.
    let in_range = |f: f64| f >= i64::MIN as f64 && f < -(i64::MIN as f64);
    match n.as_f64() {
        Some(f) if f.fract() != 0.0 => Err(format!("{n} is not a whole number")),
        Some(f) if !n.is_u64() && in_range(f) => Err(format!(
            "{n} has a fraction or exponent; write a plain integer"
        )),
        _ => Err(format!("{n} is outside {}..={}", i64::MIN, i64::MAX)),
    }
}

/// serde_json reads JSON `-0` as the float -0.0, so it cannot be told from `-0.0`; the CLI
/// refuses it too so both entry points agree.
const NEGATIVE_ZERO: &str = "-0 is not accepted; write 0";

fn integer_from_text(text: &str) -> Result<i64, String> {
    if text == "-0" {
        return Err(NEGATIVE_ZERO.to_owned());
    }
    if !is_integer_literal(text) {
        return Err(match text.parse::<f64>() {
            Ok(f) if is_number_literal(text) && f.fract() != 0.0 => {
                format!("{} is not a whole number", shown(text))
            }
            _ => format!(
                "{} is not a plain integer (no '+', leading zero, fraction or exponent)",
                shown(text)
            ),
        });
    }
    text.parse::<i64>()
        .map_err(|_| format!("{text} is outside {}..={}", i64::MIN, i64::MAX))
}

/// `-?(0|[1-9][0-9]*)`, the integer part of the JSON grammar.
fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    match digits.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// RFC 8259 number: `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`. Checked by hand because Rust's
/// `f64::from_str` also takes `+1`, `.5`, `5.`, `inf` and `NaN`.
fn is_number_literal(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| all_digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    is_integer_literal(int) && frac.is_none_or(all_digits) && exponent_ok
}

fn number_from_text(text: &str) -> Result<Finite, String> {
    if !is_number_literal(text) {
        return Err(format!(
            "{} is not a JSON number (NaN, Infinity, hex, '+' and bare '.' are not allowed)",
            shown(text)
        ));
    }
    let parsed: f64 = text
        .parse()
        .map_err(|_| format!("{} is not a number", shown(text)))?;
    Finite::new(parsed).ok_or_else(|| format!("{} overflows a 64-bit float", shown(text)))
}

fn number_from_json(value: &Value) -> Result<TypedValue, String> {
    match value.as_f64().and_then(Finite::new) {
        Some(n) if value.is_number() => Ok(TypedValue::Number(n)),
        _ => Err(expected("a finite JSON number", value)),
    }
}

/// Rejects objects and arrays that are too deep or too large to store; iterative so a
/// hand-built, very deep `Value` cannot overflow the stack.
fn checked_json(value: &Value) -> Result<(), String> {
    let mut pending = vec![(value, 1_usize)];
    while let Some((node, depth)) = pending.pop() {
        if depth > MAX_JSON_DEPTH {
            return Err(format!("nested deeper than {MAX_JSON_DEPTH} levels"));
        }
        match node {
            Value::Array(items) => pending.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => pending.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    let size = compact_json(value).len();
    if size > MAX_VALUE_BYTES {
        return Err(format!(
            "{size} bytes of JSON is over the {MAX_VALUE_BYTES}-byte limit"
        ));
    }
    Ok(())
}

fn compact_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serialising a Value tree cannot fail (string keys, finite numbers); should it ever, the
    // empty text is refused by `from_storage` instead of panicking the server.
    serde_json::to_string(value).unwrap_or_default()
}
