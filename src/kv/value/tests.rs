//! Table-driven checks of every type's rule, on both entry points and through storage.

use serde_json::{Value, json};

use super::*;

/// Parses JSON, checks the canonical text, and checks storage and typed JSON round-trip.
fn assert_json_ok(ty: ValueType, input: Value, stored: &str) {
    let value = parse_json(ty, &input).unwrap_or_else(|e| panic!("{input} as {ty}: {e}"));
    assert_eq!(value.to_storage(), stored, "{input} as {ty}");
    assert_round_trips(&value);
}

fn assert_text_ok(ty: ValueType, input: &str, stored: &str) {
    let value = parse_text(ty, input).unwrap_or_else(|e| panic!("{input:?} as {ty}: {e}"));
    assert_eq!(value.to_storage(), stored, "{input:?} as {ty}");
    assert_round_trips(&value);
}

fn assert_round_trips(value: &TypedValue) {
    let ty = value.value_type();
    let back = TypedValue::from_storage(ty, &value.to_storage()).expect("canonical text parses");
    assert_eq!(&back, value);
    assert_eq!(
        parse_json(ty, &value.to_json()).as_ref(),
        Ok(value),
        "typed JSON of {ty}"
    );
}

fn assert_json_err(ty: ValueType, input: Value, reason: &str) {
    let err = parse_json(ty, &input).expect_err(&format!("{input} as {ty} should fail"));
    assert_eq!(err.value_type(), ty);
    assert!(
        err.reason().contains(reason),
        "{input} as {ty}: got {err:?}, want {reason:?}"
    );
}

fn assert_text_err(ty: ValueType, input: &str, reason: &str) {
    let err = parse_text(ty, input).expect_err(&format!("{input:?} as {ty} should fail"));
    assert!(
        err.reason().contains(reason),
        "{input:?} as {ty}: got {err:?}, want {reason:?}"
    );
}

#[test]
fn type_names_round_trip_through_text_and_serde() {
    for ty in ValueType::ALL {
        assert_eq!(ty.to_string().parse::<ValueType>(), Ok(ty));
        assert_eq!(serde_json::to_value(ty).ok(), Some(json!(ty.as_str())));
    }
    assert_eq!(
        serde_json::from_value::<ValueType>(json!("datetime")).ok(),
        Some(ValueType::Datetime)
    );
    let unknown = "Integer"
        .parse::<ValueType>()
        .expect_err("names are lowercase");
    assert!(
        unknown
            .to_string()
            .contains("expected one of string, integer")
    );
}

#[test]
fn error_display_names_the_type_then_the_reason() {
    let err = parse_json(ValueType::Integer, &json!(1.5)).expect_err("fraction");
    assert_eq!(err.to_string(), "integer: 1.5 is not a whole number");
}

#[test]
fn accepts_integers_across_the_i64_range() {
    for (input, stored) in [
        (json!(0), "0"),
        (json!(-7), "-7"),
        (json!(i64::MAX), "9223372036854775807"),
    ] {
        assert_json_ok(ValueType::Integer, input, stored);
    }
    assert_json_ok(ValueType::Integer, json!(i64::MIN), "-9223372036854775808");
    for (input, stored) in [
        ("12", "12"),
        ("0", "0"),
        ("-9223372036854775808", "-9223372036854775808"),
    ] {
        assert_text_ok(ValueType::Integer, input, stored);
    }
}

#[test]
fn rejects_integers_that_are_not_plain_i64_literals() {
    let json_cases = [
        (json!(1.5), "is not a whole number"),
        (json!(9_223_372_036_854_775_808_u64), "is outside"),
        (json!(-9.3e18), "is outside"),
        (json!(1e3), "fraction or exponent"),
        (json!("12"), "expected a JSON integer, got a string"),
        (json!(true), "got a boolean"),
        (json!(null), "got null"),
        (json!(-0.0), "-0 is not accepted"),
        (json!(0.0), "fraction or exponent"),
    ];
    for (input, reason) in json_cases {
        assert_json_err(ValueType::Integer, input, reason);
    }
    for (input, reason) in [
        ("+1", "not a plain integer"),
        ("01", "not a plain integer"),
        ("1.0", "not a plain integer"),
        ("1.5", "not a whole number"),
        ("1e3", "not a plain integer"),
        ("0x1F", "not a plain integer"),
        ("1_000", "not a plain integer"),
        (" 1", "not a plain integer"),
        ("", "not a plain integer"),
        ("9223372036854775808", "is outside"),
        ("-0", "-0 is not accepted"),
    ] {
        assert_text_err(ValueType::Integer, input, reason);
    }
}

#[test]
fn stores_numbers_in_shortest_round_trip_form() {
    for (input, stored) in [
        (json!(1.5), "1.5"),
        (json!(3), "3.0"),
        (json!(-0.0), "0.0"),
        (json!(1e308), "1e+308"),
        (json!(f64::MAX), "1.7976931348623157e+308"),
        (json!(5e-324), "5e-324"),
        (json!(0.1), "0.1"),
    ] {
        assert_json_ok(ValueType::Number, input, stored);
    }
    for (input, stored) in [
        ("0.1", "0.1"),
        ("-0", "0.0"),
        ("1E+2", "100.0"),
        ("-1.5e-7", "-1.5e-7"),
    ] {
        assert_text_ok(ValueType::Number, input, stored);
    }
}

#[test]
fn rejects_non_finite_and_non_json_numbers() {
    for input in [json!("1.5"), json!(null), json!(true), json!([1.0])] {
        assert_json_err(ValueType::Number, input, "expected a finite JSON number");
    }
    assert_text_err(ValueType::Number, "1e400", "overflows a 64-bit float");
    for input in [
        "NaN",
        "Infinity",
        "-Infinity",
        "inf",
        "+1",
        ".5",
        "5.",
        "0x10",
        "",
        "1e",
        "01",
        "1 ",
    ] {
        assert_text_err(ValueType::Number, input, "is not a JSON number");
    }
}

#[test]
fn accepts_only_true_and_false_as_booleans() {
    assert_json_ok(ValueType::Boolean, json!(true), "true");
    assert_json_ok(ValueType::Boolean, json!(false), "false");
    assert_text_ok(ValueType::Boolean, "false", "false");
    for input in [json!("true"), json!(1), json!(null)] {
        assert_json_err(ValueType::Boolean, input, "expected true or false");
    }
    for input in ["True", "1", "yes", " true", ""] {
        assert_text_err(ValueType::Boolean, input, "is not true or false");
    }
}

#[test]
fn accepts_real_calendar_days_including_leap_day() {
    for input in ["2024-02-29", "2026-02-28", "0000-01-01", "9999-12-31"] {
        assert_json_ok(ValueType::Date, json!(input), input);
        assert_text_ok(ValueType::Date, input, input);
    }
}

#[test]
fn rejects_february_thirtieth() {
    assert_text_err(
        ValueType::Date,
        "2026-02-30",
        "not a calendar day (February 2026 has 28 days)",
    );
}

#[test]
fn rejects_leap_day_in_a_common_year() {
    assert_text_err(ValueType::Date, "2025-02-29", "February 2025 has 28 days");
}

#[test]
fn rejects_dates_outside_the_yyyy_mm_dd_shape() {
    for (input, reason) in [
        ("2026-2-3", "is not YYYY-MM-DD"),
        ("20240101", "is not YYYY-MM-DD"),
        ("+2026-01-01", "is not YYYY-MM-DD"),
        ("2026-02-03T00:00:00Z", "has a time part"),
        ("2026-13-01", "month 13 does not exist"),
        ("2026-01-00", "not a calendar day"),
        ("", "is not YYYY-MM-DD"),
    ] {
        assert_text_err(ValueType::Date, input, reason);
    }
    assert_json_err(
        ValueType::Date,
        json!(20240101),
        "expected a JSON string, got a number",
    );
}

#[test]
fn normalises_datetimes_to_utc_with_z() {
    for (input, stored) in [
        ("2026-01-05T10:00:00Z", "2026-01-05T10:00:00Z"),
        ("2026-01-05T10:00:00+05:30", "2026-01-05T04:30:00Z"),
        ("2026-01-05t10:00:00z", "2026-01-05T10:00:00Z"),
        ("2026-01-05T10:00:00.120Z", "2026-01-05T10:00:00.12Z"),
        (
            "2026-01-05T10:00:00.123456789-00:00",
            "2026-01-05T10:00:00.123456789Z",
        ),
        ("2026-01-01T01:00:00+02:00", "2025-12-31T23:00:00Z"),
        ("2024-02-29T23:59:59.5-01:00", "2024-03-01T00:59:59.5Z"),
    ] {
        assert_json_ok(ValueType::Datetime, json!(input), stored);
        assert_text_ok(ValueType::Datetime, input, stored);
    }
}

#[test]
fn rejects_datetimes_without_offset_or_with_leap_second() {
    for (input, reason) in [
        ("2026-01-05T10:00:00", "missing UTC offset"),
        ("2016-12-31T23:59:60Z", "leap second :60 is not supported"),
        ("2026-01-05 10:00:00Z", "use 'T' between date and time"),
        ("2026-01-05T10:00:00.1234567890Z", "1 to 9 digits"),
        ("2026-01-05T10:00:00.Z", "1 to 9 digits"),
        ("2026-01-05T24:00:00Z", "is not a time of day"),
        ("2026-01-05T10:00:00+24:00", "invalid UTC offset"),
        ("2026-01-05T10:00:00+05:60", "invalid UTC offset"),
        ("2026-01-05T10:00:00+0530", "invalid UTC offset"),
        ("2026-02-30T00:00:00Z", "not a calendar day"),
        ("0000-01-01T00:00:00+01:00", "outside years 0000-9999"),
        ("9999-12-31T23:00:00-01:00", "outside years 0000-9999"),
        ("2026-01-05", "has no time"),
        ("2026-01-05T10:00Z", "is not an RFC 3339 date-time"),
    ] {
        assert_text_err(ValueType::Datetime, input, reason);
    }
    assert_json_err(
        ValueType::Datetime,
        json!(1_767_607_200),
        "expected a JSON string",
    );
}

#[test]
fn stores_objects_and_arrays_as_compact_json() {
    assert_json_ok(
        ValueType::Object,
        json!({"a": 1, "b": [true, null]}),
        r#"{"a":1,"b":[true,null]}"#,
    );
    assert_json_ok(ValueType::Object, json!({}), "{}");
    assert_text_ok(ValueType::Object, r#"{ "a" : 1 }"#, r#"{"a":1}"#);
    assert_json_ok(
        ValueType::Array,
        json!([1, "x", {"k": null}]),
        r#"[1,"x",{"k":null}]"#,
    );
    assert_text_ok(ValueType::Array, " [] ", "[]");
}

#[test]
fn rejects_the_wrong_json_shape() {
    assert_json_err(
        ValueType::Object,
        json!([1]),
        "expected a JSON object, got an array",
    );
    assert_json_err(ValueType::Object, json!("{}"), "got a string");
    assert_json_err(
        ValueType::Array,
        json!({}),
        "expected a JSON array, got an object",
    );
    assert_text_err(ValueType::Object, "[1]", "got an array");
    assert_text_err(ValueType::Object, r#"{"a":1e400}"#, "invalid JSON");
    assert_text_err(ValueType::Array, "[1,", "invalid JSON");
}

#[test]
fn rejects_json_nested_deeper_than_the_limit() {
    let nest = |depth: usize| (1..depth).fold(json!([]), |inner, _| json!([inner]));
    assert!(parse_json(ValueType::Array, &nest(MAX_JSON_DEPTH)).is_ok());
    assert_json_err(
        ValueType::Array,
        nest(MAX_JSON_DEPTH + 1),
        "nested deeper than 64",
    );
}

#[test]
fn keeps_strings_exactly_and_bounds_their_size() {
    for input in ["", "  spaced  ", "héllo ✓", "12"] {
        assert_json_ok(ValueType::String, json!(input), input);
        assert_text_ok(ValueType::String, input, input);
    }
    assert_text_ok(
        ValueType::String,
        &"x".repeat(MAX_VALUE_BYTES),
        &"x".repeat(MAX_VALUE_BYTES),
    );
    assert_text_err(
        ValueType::String,
        &"x".repeat(MAX_VALUE_BYTES + 1),
        "over the 1048576-byte limit",
    );
    assert_json_err(
        ValueType::String,
        json!(12),
        "expected a JSON string, got a number",
    );
    assert_json_err(ValueType::String, json!("a\u{0}b"), "contains U+0000");
}

#[test]
fn requires_secrets_to_be_non_empty_strings_and_never_echoes_them() {
    assert_json_ok(ValueType::Secret, json!("s3cr3t"), "s3cr3t");
    assert_json_err(ValueType::Secret, json!(""), "must not be empty");
    assert_json_err(ValueType::Secret, json!(12), "expected a JSON string");
    let err = parse_text(ValueType::Secret, "hunter2\0").expect_err("NUL");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn serves_typed_json_on_reads() {
    let read = |ty, stored: &str| TypedValue::from_storage(ty, stored).map(|v| v.to_json());
    assert_eq!(read(ValueType::Integer, "42"), Ok(json!(42)));
    assert_eq!(read(ValueType::Number, "1.5"), Ok(json!(1.5)));
    assert_eq!(read(ValueType::Boolean, "true"), Ok(json!(true)));
    assert_eq!(read(ValueType::Date, "2024-02-29"), Ok(json!("2024-02-29")));
    assert_eq!(
        read(ValueType::Object, r#"{"a":[1]}"#),
        Ok(json!({"a": [1]}))
    );
}

#[test]
fn reports_corrupt_storage_as_an_error() {
    assert!(TypedValue::from_storage(ValueType::Integer, "12.5").is_err());
    assert!(TypedValue::from_storage(ValueType::Object, "").is_err());
    assert!(TypedValue::from_storage(ValueType::Datetime, "2026-01-05T10:00:00").is_err());
}
