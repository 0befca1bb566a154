//! Event-type patterns: validation, the segment index and the plain matcher must agree on
//! every input that validates, and nothing panics on input that does not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use opshub::webhooks::pattern::{self, PatternIndex};

fuzz_target!(|input: &str| {
    // "pattern|pattern|…\nevent"
    let (patterns, event) = input.split_once('\n').unwrap_or((input, "a.b"));
    let patterns: Vec<&str> = patterns.split('|').collect();
    let _ = pattern::validate_event_type(event);
    let valid: Vec<&str> = patterns
        .iter()
        .copied()
        .filter(|p| pattern::validate_pattern(p).is_ok())
        .collect();
    let mut index = PatternIndex::new();
    for (i, p) in valid.iter().enumerate() {
        index.insert(i, vec![p.to_string()]).expect("a validated pattern inserts");
    }
    if pattern::validate_event_type(event).is_ok() {
        let mut found = index.matches(event);
        found.sort_unstable();
        let expected: Vec<usize> = valid
            .iter()
            .enumerate()
            .filter(|(_, p)| pattern::pattern_matches(p, event))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found, expected, "index and matcher disagree on {event:?}");
    }
});
