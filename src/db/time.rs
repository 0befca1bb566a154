//! Timestamps as opshub stores them: fixed-width RFC 3339 UTC text with microseconds
//! (`2026-12-04T21:50:20.123456Z`), so that text order is time order on every backend and
//! the stored value is already what the API returns.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const STORED: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The current time in stored form.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Any instant in stored form (converted to UTC).
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(STORED)
        .expect("a UTC instant within years 0..9999 always formats")
}

/// Parses RFC 3339 text (stored or user-given) into an instant.
pub fn parse(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

/// The current time in Unix seconds (for signature tolerances).
pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `now + secs` in stored form, for leases and expiries.
pub fn in_secs(secs: i64) -> String {
    format(OffsetDateTime::now_utc() + time::Duration::seconds(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_is_fixed_width_and_sorts_as_time() {
        let a = format(parse("2026-01-02T03:04:05+01:00").expect("valid"));
        let b = format(parse("2026-01-02T03:04:05.5Z").expect("valid"));
        assert_eq!(a, "2026-01-02T02:04:05.000000Z");
        assert_eq!(b, "2026-01-02T03:04:05.500000Z");
        assert!(a < b);
        assert_eq!(now().len(), a.len());
    }

    #[test]
    fn stored_form_parses_back() {
        let s = now();
        assert_eq!(format(parse(&s).expect("round trip")), s);
    }
}
