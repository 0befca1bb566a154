//! Migration versions and their natural order: segments split on `.` and `_`, numeric
//! segments compared by value at any length (no integer parsing, so no overflow), other
//! segments compared bytewise and after numeric ones, a shorter prefix first.
//! `Version` equality follows that order: `1.01` equals `1.1`, and `1_2` equals `1.2`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

pub const MAX_VERSION_LEN: usize = 64;

/// Natural version order: 1 < 1.1 < 2 < 10, 1.9 < 1.10, 1 < 1.0.1, 9 < rc1.
/// Total on any input, valid or not.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = segments(a);
    let mut right = segments(b);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match compare_segments(x, y) {
                Ordering::Equal => continue,
                other => return other,
            },
        }
    }
}

fn segments(version: &str) -> impl Iterator<Item = &str> {
    version.split(['.', '_'])
}

fn is_numeric(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
}

fn compare_segments(x: &str, y: &str) -> Ordering {
    match (is_numeric(x), is_numeric(y)) {
        (true, true) => {
            let x = x.trim_start_matches('0');
            let y = y.trim_start_matches('0');
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.cmp(y),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionError {
    Empty,
    TooLong {
        version: String,
        len: usize,
    },
    InvalidChar {
        version: String,
        ch: char,
        position: usize,
    },
    EmptySegment {
        version: String,
        position: usize,
    },
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "version is empty"),
            Self::TooLong { version, len } => write!(
                f,
                "version \"{version}\" is {len} characters long; the limit is {MAX_VERSION_LEN}"
            ),
            Self::InvalidChar {
                version,
                ch,
                position,
            } => write!(
                f,
                "version \"{version}\" has {ch:?} at position {position}; only letters, digits, \
                 '.' and '_' are allowed"
            ),
            Self::EmptySegment { version, position } => write!(
                f,
                "version \"{version}\" has an empty segment at position {position}; '.' and '_' \
                 must sit between letters or digits"
            ),
        }
    }
}

impl std::error::Error for VersionError {}

/// A validated version string: 1–64 characters, segments of `[0-9A-Za-z]+` separated by a
/// single `.` or `_`. Displays exactly as written.
#[derive(Clone, Debug)]
pub struct Version(String);

impl Version {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn parse_version(s: &str) -> Result<Version, VersionError> {
    if s.is_empty() {
        return Err(VersionError::Empty);
    }
    let len = s.chars().count();
    if len > MAX_VERSION_LEN {
        return Err(VersionError::TooLong {
            version: s.to_string(),
            len,
        });
    }
    let mut previous_was_separator = true;
    for (position, ch) in s.chars().enumerate() {
        let separator = ch == '.' || ch == '_';
        if !separator && !ch.is_ascii_alphanumeric() {
            return Err(VersionError::InvalidChar {
                version: s.to_string(),
                ch,
                position,
            });
        }
        if separator && previous_was_separator {
            return Err(VersionError::EmptySegment {
                version: s.to_string(),
                position,
            });
        }
        previous_was_separator = separator;
    }
    if previous_was_separator {
        return Err(VersionError::EmptySegment {
            version: s.to_string(),
            position: len,
        });
    }
    Ok(Version(s.to_string()))
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_version(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_versions(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(input: &[&str]) -> Vec<String> {
        let mut v: Vec<Version> = input
            .iter()
            .map(|s| parse_version(s).expect("valid"))
            .collect();
        v.sort();
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn orders_numeric_segments_by_value() {
        assert_eq!(sorted(&["10", "2", "1.1", "1"]), ["1", "1.1", "2", "10"]);
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
    }

    #[test]
    fn orders_timestamps_chronologically() {
        assert_eq!(
            compare_versions("20240101120000", "20240102000000"),
            Ordering::Less
        );
        assert_eq!(compare_versions("20240101120000", "9"), Ordering::Greater);
    }

    #[test]
    fn puts_a_shorter_prefix_first() {
        assert_eq!(compare_versions("1", "1.0.1"), Ordering::Less);
        assert_eq!(compare_versions("1", "1.0"), Ordering::Less);
    }

    #[test]
    fn compares_huge_numbers_without_overflow() {
        let big = "123456789012345678901234567890123456789";
        let bigger = "123456789012345678901234567890123456790";
        assert_eq!(compare_versions(big, bigger), Ordering::Less);
        assert_eq!(compare_versions(&format!("000{big}"), big), Ordering::Equal);
    }

    #[test]
    fn treats_dots_and_underscores_alike() {
        assert_eq!(compare_versions("1_2", "1.2"), Ordering::Equal);
        assert_eq!(parse_version("1_2"), parse_version("1.2"));
        assert_eq!(compare_versions("1.01", "1.1"), Ordering::Equal);
    }

    #[test]
    fn sorts_words_lexically_after_numbers() {
        assert_eq!(
            sorted(&["1.beta", "1.alpha", "1.2", "1.10"]),
            ["1.2", "1.10", "1.alpha", "1.beta"]
        );
    }

    #[test]
    fn keeps_the_version_as_written_for_display() {
        assert_eq!(
            parse_version("2024_01.007").expect("valid").to_string(),
            "2024_01.007"
        );
    }

    #[test]
    fn rejects_malformed_versions_with_specific_errors() {
        assert_eq!(parse_version(""), Err(VersionError::Empty));
        let long = "1".repeat(65);
        assert!(matches!(
            parse_version(&long),
            Err(VersionError::TooLong { len: 65, .. })
        ));
        assert!(parse_version(&"1".repeat(64)).is_ok());
        assert!(matches!(
            parse_version("1.2-3"),
            Err(VersionError::InvalidChar {
                ch: '-',
                position: 3,
                ..
            })
        ));
        for bad in ["1..2", ".1", "1.", "1._2", "_"] {
            assert!(
                matches!(parse_version(bad), Err(VersionError::EmptySegment { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_version("1 2"),
            Err(VersionError::InvalidChar { ch: ' ', .. })
        ));
    }

    #[test]
    fn explains_errors_in_plain_words() {
        let msg = parse_version("1..2").expect_err("invalid").to_string();
        assert!(
            msg.contains("\"1..2\"") && msg.contains("empty segment"),
            "{msg}"
        );
    }
}
