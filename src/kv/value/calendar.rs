//! Calendar grammars for the `date` and `datetime` types: strict RFC 3339 parsing by hand
//! (so every rejection has a precise reason) and the canonical UTC text. `time` does the
//! calendar arithmetic; nothing here accepts a leap second or a year outside 0000–9999.

use time::{Date, Month, PrimitiveDateTime, Time, UtcDateTime, UtcOffset};

use super::shown;

/// Reads `n` ASCII digits at `at`; `None` if any is missing or not a digit.
fn digits(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let field = bytes.get(at..at + n)?;
    field.iter().try_fold(0_u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

pub(super) fn parse_date(text: &str) -> Result<Date, String> {
    let bytes = text.as_bytes();
    if bytes.len() > 10 && matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(format!(
            "{} has a time part; use the datetime type",
            shown(text)
        ));
    }
    let fields = (bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-')
        .then(|| {
            Some((
                digits(bytes, 0, 4)?,
                digits(bytes, 5, 2)?,
                digits(bytes, 8, 2)?,
            ))
        })
        .flatten();
    let Some((year, month, day)) = fields else {
        return Err(format!(
            "{} is not YYYY-MM-DD (4-digit year, 2-digit month and day)",
            shown(text)
        ));
    };
    calendar_date(year, month, day)
}

fn calendar_date(year: u32, month: u32, day: u32) -> Result<Date, String> {
    // `digits` caps the year at 9999 and month/day at 99, so these conversions are lossless.
    let (year, month_no, day_no) = (year as i32, month as u8, day as u8);
    let month =
        Month::try_from(month_no).map_err(|_| format!("month {month_no:02} does not exist"))?;
    Date::from_calendar_date(year, month, day_no).map_err(|_| {
        format!(
            "{year:04}-{month_no:02}-{day_no:02} is not a calendar day ({month} {year} has {} days)",
            month.length(year)
        )
    })
}

pub(super) fn format_date(date: Date) -> String {
    let (year, month, day) = (date.year(), u8::from(date.month()), date.day());
    format!("{year:04}-{month:02}-{day:02}")
}

pub(super) fn parse_datetime(text: &str) -> Result<UtcDateTime, String> {
    let bytes = text.as_bytes();
    let shape_error = || {
        format!(
            "{} is not an RFC 3339 date-time such as 2026-01-05T10:00:00Z",
            shown(text)
        )
    };
    let date_part = text.get(..10).ok_or_else(shape_error)?;
    match bytes.get(10) {
        Some(b'T' | b't') => {}
        Some(b' ') => return Err("use 'T' between date and time, not a space".to_owned()),
        None => return Err(format!("{} has no time; use the date type", shown(text))),
        Some(_) => return Err(shape_error()),
    }
    let date = parse_date(date_part)?;
    let clock = (bytes.get(13) == Some(&b':') && bytes.get(16) == Some(&b':'))
        .then(|| {
            Some((
                digits(bytes, 11, 2)?,
                digits(bytes, 14, 2)?,
                digits(bytes, 17, 2)?,
            ))
        })
        .flatten();
    let (hour, minute, second) = clock.ok_or_else(shape_error)?;
    let (nanos, rest) = fraction(&bytes[19..])?;
    let offset = utc_offset(rest).ok_or_else(|| match rest {
        [] => "missing UTC offset; add Z or ±HH:MM".to_owned(),
        _ => format!(
            "{} has an invalid UTC offset; expected Z or ±HH:MM",
            shown(text)
        ),
    })?;
    if second == 60 {
        return Err("leap second :60 is not supported; use :59".to_owned());
    }
    let time = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
        .map_err(|_| format!("{hour:02}:{minute:02}:{second:02} is not a time of day"))?;
    let utc = PrimitiveDateTime::new(date, time)
        .assume_offset(offset)
        .checked_to_utc()
        .filter(|utc| (0..=9999).contains(&utc.year()));
    utc.ok_or_else(|| format!("{} falls outside years 0000-9999 in UTC", shown(text)))
}

/// Splits an optional `.ddd` (1–9 digits) off the front; returns nanoseconds and the rest.
fn fraction(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    let Some(after_dot) = bytes.strip_prefix(b".") else {
        return Ok((0, bytes));
    };
    let count = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
    if count == 0 || count > 9 {
        return Err("fractional seconds need 1 to 9 digits".to_owned());
    }
    let value = digits(after_dot, 0, count).unwrap_or(0);
    Ok((value * 10_u32.pow(9 - count as u32), &after_dot[count..]))
}

/// `Z`/`z` or `±HH:MM` with HH ≤ 23 and MM ≤ 59; `-00:00` (unknown local offset) is UTC.
fn utc_offset(bytes: &[u8]) -> Option<UtcOffset> {
    let sign = match bytes {
        [b'Z' | b'z'] => return Some(UtcOffset::UTC),
        [b'+', _, _, b':', _, _] => 1,
        [b'-', _, _, b':', _, _] => -1,
        _ => return None,
    };
    let (hours, minutes) = (digits(bytes, 1, 2)?, digits(bytes, 4, 2)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    UtcOffset::from_hms(sign * hours as i8, sign * minutes as i8, 0).ok()
}

pub(super) fn format_datetime(at: UtcDateTime) -> String {
    let fraction = match at.nanosecond() {
        0 => String::new(),
        nanos => format!(".{nanos:09}").trim_end_matches('0').to_owned(),
    };
    format!(
        "{}T{:02}:{:02}:{:02}{fraction}Z",
        format_date(at.date()),
        at.hour(),
        at.minute(),
        at.second()
    )
}
