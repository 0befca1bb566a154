//! Delivery retry policy as pure functions: the schedule (first attempt at once, then 5s, 5m,
//! 30m, 2h, 5h, 10h, 10h with ±20 % jitter, then give up), `Retry-After` parsing, how one
//! attempt's result is classified, and when a continuously failing webhook is auto-disabled.
//! Retry-After may only lengthen a delay (capped at `max`); asking for less than the schedule is
//! ignored, so a receiver cannot pull retries forward. Randomness and clocks come from callers.

use std::fmt;
use std::time::Duration;

/// Jitter spreads retries of one outage so receivers are not hit by a synchronised wave.
pub const JITTER_FRACTION: f64 = 0.2;
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 86_400);
pub const MAX_RETRIES: usize = 50;
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";
pub const DEFAULT_RETRY_AFTER_MAX: Duration = Duration::from_secs(86_400);
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 86_400);

/// Delays before each retry; entry `i` follows attempt `i + 1`. Always 1–50 whole-second delays
/// of at most 7 days, which keeps the jitter arithmetic far from overflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    Empty,
    EmptyItem { position: usize },
    BadItem { item: String },
    TooLong { item: String },
    TooMany { count: usize },
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(
                f,
                "retry schedule is empty; give delays like `{DEFAULT_SCHEDULE}`"
            ),
            Self::EmptyItem { position } => write!(f, "retry schedule item {position} is empty"),
            Self::BadItem { item } => write!(
                f,
                "`{item}` is not a delay; write a whole number and a unit s, m, h or d, like `30m`"
            ),
            Self::TooLong { item } => write!(f, "delay `{item}` is longer than the 7-day limit"),
            Self::TooMany { count } => {
                write!(
                    f,
                    "retry schedule has {count} delays; the limit is {MAX_RETRIES}"
                )
            }
        }
    }
}

impl std::error::Error for ScheduleError {}

impl Default for RetrySchedule {
    fn default() -> Self {
        let secs = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
        Self(secs.into_iter().map(Duration::from_secs).collect())
    }
}

impl RetrySchedule {
    /// Parses comma-separated delays such as `5s,5m,30m,2h,5h,10h,10h` (spaces allowed).
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        if text.trim().is_empty() {
            return Err(ScheduleError::Empty);
        }
        let delays = text
            .split(',')
            .enumerate()
            .map(|(index, item)| parse_delay(item.trim(), index + 1))
            .collect::<Result<Vec<_>, _>>()?;
        if delays.len() > MAX_RETRIES {
            return Err(ScheduleError::TooMany {
                count: delays.len(),
            });
        }
        Ok(Self(delays))
    }

    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// Attempts in total, the immediate first one included.
    pub fn max_attempts(&self) -> usize {
        self.0.len() + 1
    }

    /// Delay before the next attempt once `attempts_made` have failed, or `None` when the
    /// schedule is exhausted. `attempts_made == 0` means nothing was sent yet: go at once.
    /// `jitter` is a uniform draw from [-1, 1] (clamped; NaN counts as 0).
    pub fn next_delay(&self, attempts_made: u32, jitter: f64) -> Option<Duration> {
        let Some(index) = attempts_made.checked_sub(1) else {
            return Some(Duration::ZERO);
        };
        let base = *self.0.get(usize::try_from(index).ok()?)?;
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(-1.0, 1.0)
        };
        let factor = 1.0 + JITTER_FRACTION * jitter;
        Some(Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base))
    }
}

fn parse_delay(item: &str, position: usize) -> Result<Duration, ScheduleError> {
    if item.is_empty() {
        return Err(ScheduleError::EmptyItem { position });
    }
    let bad = || ScheduleError::BadItem {
        item: item.to_owned(),
    };
    let split = item.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = item.split_at(split);
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    // Only digits are left, so a parse failure is an overflow: as much "too long" as 8d.
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_secs));
    match secs.map(Duration::from_secs) {
        Some(delay) if delay <= MAX_DELAY => Ok(delay),
        _ => Err(ScheduleError::TooLong {
            item: item.to_owned(),
        }),
    }
}

impl fmt::Display for RetrySchedule {
    /// Writes the form `parse` reads, in the largest exact unit (`300s` becomes `5m`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, delay) in self.0.iter().enumerate() {
            let (count, unit) = in_largest_unit(*delay);
            let separator = if index == 0 { "" } else { "," };
            write!(f, "{separator}{count}{unit}")?;
        }
        Ok(())
    }
}

fn in_largest_unit(delay: Duration) -> (u64, &'static str) {
    let secs = delay.as_secs();
    [(86_400, "d"), (3_600, "h"), (60, "m")]
        .into_iter()
        .find(|(size, _)| secs > 0 && secs.is_multiple_of(*size))
        .map_or((secs, "s"), |(size, unit)| (secs / size, unit))
}

/// Reads a `Retry-After` value: delta-seconds or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37
/// GMT`). A date in the past means "now" (zero). The obsolete RFC 850 and asctime forms are
/// not accepted; a value that does not parse is ignored (`None`).
pub fn retry_after(header_value: &str, now_unix: i64) -> Option<Duration> {
    let value = header_value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long values saturate; `effective_delay` caps them anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(value)?;
    let wait = u64::try_from(at.saturating_sub(now_unix)).unwrap_or(0);
    Some(Duration::from_secs(wait))
}

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Unix seconds of an IMF-fixdate. The day name is checked for spelling only: a server with a
/// wrong weekday still meant the date it wrote.
fn parse_imf_fixdate(text: &str) -> Option<i64> {
    let field = |from: usize, to: usize| text.get(from..to);
    let number = |from: usize, to: usize| -> Option<u32> {
        let digits = field(from, to)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let shape_ok = text.len() == 29
        && DAY_NAMES.contains(&field(0, 3)?)
        && field(3, 5)? == ", "
        && [7, 11, 16].iter().all(|i| field(*i, i + 1) == Some(" "))
        && field(19, 20)? == ":"
        && field(22, 23)? == ":"
        && field(25, 29)? == " GMT";
    if !shape_ok {
        return None;
    }
    let month = MONTH_NAMES.iter().position(|m| Some(*m) == field(8, 11))?;
    let (year, day) = (i64::from(number(12, 16)?), number(5, 7)?);
    let (hour, minute, second) = (number(17, 19)?, number(20, 22)?, number(23, 25)?);
    let month = u32::try_from(month).ok()? + 1;
    // IMF allows second 60 for a leap second.
    if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let clock = i64::from(hour * 3_600 + minute * 60 + second);
    Some(days_from_civil(year, month, day) * 86_400 + clock)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar. Counting years from March puts
/// the leap day last, so each 400-year era has a fixed 146,097 days.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The delay actually used: the scheduled one, unless Retry-After asks for longer. Retry-After
/// is first clamped to `[min, max]` (`max` wins if they cross): `min` lets a caller impose an
/// overload floor, `max` stops a receiver from parking a delivery for days.
pub fn effective_delay(
    scheduled: Duration,
    retry_after: Option<Duration>,
    min: Duration,
    max: Duration,
) -> Duration {
    match retry_after {
        Some(asked) => scheduled.max(asked.max(min).min(max)),
        None => scheduled,
    }
}

/// Knobs for [`classify`]; configurable globally and per webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub schedule: RetrySchedule,
    pub retry_after_min: Duration,
    pub retry_after_max: Duration,
    pub disable_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            retry_after_min: Duration::ZERO,
            retry_after_max: DEFAULT_RETRY_AFTER_MAX,
            disable_after: DEFAULT_DISABLE_AFTER,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisableReason {
    Gone,
    ContinuousFailure { window: Duration },
}

impl fmt::Display for DisableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gone => write!(f, "the endpoint answered 410 Gone"),
            Self::ContinuousFailure { window } => {
                let (count, unit) = in_largest_unit(*window);
                write!(
                    f,
                    "every delivery failed for {count}{unit} without a success"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retry(Duration),
    Failed,
    Disable(DisableReason),
}

/// What to do after one attempt. `status` is `None` when no response arrived (DNS, connect,
/// TLS, timeout). Only 2xx succeeds; 3xx is a failure (redirects are not followed); 410 disables
/// the webhook; everything else is retried. Retry-After is honoured on any failed response that
/// sends one. Non-retryable errors (SSRF refusal) are the caller's to mark `Failed` directly.
pub fn classify(
    status: Option<u16>,
    retry_after: Option<Duration>,
    attempts_made: u32,
    jitter: f64,
    policy: &RetryPolicy,
) -> Outcome {
    match status {
        Some(200..=299) => Outcome::Delivered,
        Some(410) => Outcome::Disable(DisableReason::Gone),
        _ => match policy.schedule.next_delay(attempts_made, jitter) {
            Some(scheduled) => Outcome::Retry(effective_delay(
                scheduled,
                retry_after,
                policy.retry_after_min,
                policy.retry_after_max,
            )),
            None => Outcome::Failed,
        },
    }
}

/// Whether a webhook whose deliveries have failed without a single success since
/// `first_failure_at` (Unix seconds; `None` after any success) should now be disabled.
pub fn auto_disable(
    first_failure_at: Option<i64>,
    now: i64,
    after: Duration,
) -> Option<DisableReason> {
    let failing_for = now.saturating_sub(first_failure_at?);
    let after_secs = i64::try_from(after.as_secs()).unwrap_or(i64::MAX);
    (failing_for >= after_secs).then_some(DisableReason::ContinuousFailure { window: after })
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn default_schedule_retries_seven_times_then_gives_up() {
        let schedule = RetrySchedule::default();
        let delays: Vec<_> = (1..=8).map(|n| schedule.next_delay(n, 0.0)).collect();
        let expected = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000].map(|s| Some(secs(s)));
        assert_eq!(delays[..7], expected);
        assert_eq!(delays[7], None);
        assert_eq!(schedule.max_attempts(), 8);
        assert_eq!(schedule.next_delay(0, 0.7), Some(Duration::ZERO));
        assert_eq!(RetrySchedule::parse(DEFAULT_SCHEDULE), Ok(schedule));
    }

    #[test]
    #[rustfmt::skip]
    fn jitter_stays_within_twenty_percent() {
        let schedule = RetrySchedule::default();
        let cases = [
            (-1.0, 4_000), (1.0, 6_000), (0.5, 5_500),
            (-7.0, 4_000), (7.0, 6_000), (f64::NAN, 5_000),
        ];
        for (jitter, millis) in cases {
            let delay = schedule.next_delay(1, jitter).map(|d| d.as_millis());
            assert_eq!(delay, Some(millis), "jitter {jitter}");
        }
    }

    #[test]
    fn schedule_parsing_accepts_units_and_spaces_and_prints_back() {
        let schedule = RetrySchedule::parse(" 30s, 90s ,2m,120m,1d ").expect("valid");
        let expected = [secs(30), secs(90), secs(120), secs(7_200), secs(86_400)];
        assert_eq!(schedule.delays(), expected);
        assert_eq!(schedule.to_string(), "30s,90s,2m,2h,1d");
        assert_eq!(RetrySchedule::parse("0s").expect("valid").to_string(), "0s");
    }

    #[test]
    #[rustfmt::skip]
    fn schedule_parsing_explains_mistakes() {
        use ScheduleError as E;
        let many = vec!["1s"; MAX_RETRIES + 1].join(",");
        let bad = |item: &str| E::BadItem { item: item.into() };
        let too_long = |item: &str| E::TooLong { item: item.into() };
        let cases = [
            ("", E::Empty), ("5s,,5m", E::EmptyItem { position: 2 }),
            ("5", bad("5")), ("5x", bad("5x")), ("m", bad("m")), ("-5s", bad("-5s")),
            ("1.5h", bad("1.5h")), ("5 m", bad("5 m")),
            ("8d", too_long("8d")), ("99999999999999999999d", too_long("99999999999999999999d")),
            (many.as_str(), E::TooMany { count: MAX_RETRIES + 1 }),
        ];
        for (input, expected) in cases {
            assert_eq!(RetrySchedule::parse(input), Err(expected), "{input:?}");
        }
        assert!(bad("5x").to_string().contains("`5x`"));
    }

    #[test]
    #[rustfmt::skip]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        let leap_day = 1_709_164_800; // Thu, 29 Feb 2024 00:00:00 GMT
        let cases = [
            ("120", now, 120), (" 0 ", now, 0), ("99999999999999999999999", now, u64::MAX),
            ("Sun, 06 Nov 1994 08:50:37 GMT", now, 60),
            ("Sun, 06 Nov 1994 08:49:37 GMT", now, 0),
            ("Sat, 05 Nov 1994 08:49:37 GMT", now, 0),
            ("Thu, 01 Jan 1970 00:00:10 GMT", 0, 10),
            ("Thu, 29 Feb 2024 00:00:00 GMT", leap_day - 10, 10),
        ];
        for (value, now, wait) in cases {
            assert_eq!(retry_after(value, now), Some(secs(wait)), "{value:?}");
        }
    }

    #[test]
    fn retry_after_ignores_what_it_cannot_read() {
        let refused = [
            "",
            "-5",
            "1.5",
            "soon",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Fri, 29 Feb 2023 00:00:00 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMTX",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sün, 06 Nov 1994 08:49:37 GMT",
        ];
        for value in refused {
            assert_eq!(retry_after(value, 0), None, "{value:?}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn retry_after_only_lengthens_the_schedule_within_bounds() {
        let hour = secs(3_600);
        let cases = [
            (secs(300), None, secs(0), hour, secs(300)),
            (secs(300), Some(secs(10)), secs(0), hour, secs(300)),
            (secs(300), Some(secs(900)), secs(0), hour, secs(900)),
            (secs(300), Some(secs(90_000)), secs(0), hour, hour),
            (secs(7_200), Some(secs(90_000)), secs(0), hour, secs(7_200)),
            (secs(5), Some(secs(1)), secs(60), hour, secs(60)),
            (secs(5), Some(secs(1)), secs(60), secs(30), secs(30)),
        ];
        for (scheduled, asked, min, max, expected) in cases {
            assert_eq!(effective_delay(scheduled, asked, min, max), expected, "{asked:?}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn only_2xx_is_delivered_and_410_disables() {
        let policy = RetryPolicy::default();
        let outcome = |status| classify(status, None, 1, 0.0, &policy);
        for status in [200, 201, 204, 299] {
            assert_eq!(outcome(Some(status)), Outcome::Delivered);
        }
        assert_eq!(outcome(Some(410)), Outcome::Disable(DisableReason::Gone));
        for status in [None, Some(199), Some(301), Some(400), Some(404), Some(429), Some(500)] {
            assert_eq!(outcome(status), Outcome::Retry(secs(5)), "{status:?}");
        }
    }

    #[test]
    fn classify_honours_retry_after_and_fails_when_exhausted() {
        let policy = RetryPolicy::default();
        let throttled = classify(Some(429), Some(secs(120)), 1, 0.0, &policy);
        assert_eq!(throttled, Outcome::Retry(secs(120)));
        let capped = classify(Some(503), Some(secs(999_999)), 2, 0.0, &policy);
        assert_eq!(capped, Outcome::Retry(DEFAULT_RETRY_AFTER_MAX));
        assert_eq!(classify(Some(500), None, 8, 0.0, &policy), Outcome::Failed);
        let late_success = classify(Some(200), None, 8, 0.0, &policy);
        assert_eq!(late_success, Outcome::Delivered);
    }

    #[test]
    fn auto_disable_waits_for_the_full_failure_window() {
        let day = 86_400;
        let after = DEFAULT_DISABLE_AFTER;
        assert_eq!(auto_disable(None, 100 * day, after), None);
        assert_eq!(auto_disable(Some(0), 5 * day - 1, after), None);
        assert_eq!(auto_disable(Some(10 * day), 0, after), None);
        let reason = auto_disable(Some(0), 5 * day, after).expect("five days of failures");
        let expected = "every delivery failed for 5d without a success";
        assert_eq!(reason.to_string(), expected);
        let gone = DisableReason::Gone.to_string();
        assert_eq!(gone, "the endpoint answered 410 Gone");
    }
}
