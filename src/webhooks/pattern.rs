//! Event types (dot-separated, case-sensitive `[A-Za-z0-9_-]` segments, ≤ 255 characters), the
//! patterns webhooks subscribe with, and the index that routes an event. A `*` segment matches
//! exactly one segment, except last, where it matches one or more (`user.*` matches `user.a` and
//! `user.a.b`, not `user`; a lone `*` matches everything). [`PatternIndex`] walks a segment trie,
//! not every webhook, and returns each key once in ascending order; bad event types match none.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// Longest accepted event type or pattern, in characters.
pub const MAX_LEN: usize = 255;
const WILDCARD: &str = "*";

/// Why a pattern or event type was refused. Messages have no subject so the caller can prefix
/// the field, e.g. "invalid pattern `a..b`: segment 2 is empty".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    Empty,
    TooLong { len: usize },
    EmptySegment { position: usize },
    InvalidCharacter { segment: String, found: char },
    PartialWildcard { segment: String },
    WildcardInEventType,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "must not be empty"),
            Self::TooLong { len } => write!(f, "is {len} characters long; the limit is {MAX_LEN}"),
            Self::EmptySegment { position } => write!(
                f,
                "segment {position} is empty (leading, trailing or doubled `.`)"
            ),
            Self::InvalidCharacter { segment, found } => write!(
                f,
                "segment `{segment}` contains `{found}`; use only letters, digits, `_` and `-`"
            ),
            Self::PartialWildcard { segment } => write!(
                f,
                "segment `{segment}` mixes `*` with other characters; `*` must be a whole \
                 segment (a trailing `*` already matches one or more segments)"
            ),
            Self::WildcardInEventType => {
                write!(
                    f,
                    "event types cannot contain `*`; wildcards belong in patterns"
                )
            }
        }
    }
}

impl std::error::Error for PatternError {}

/// Checks a subscription pattern such as `user.*` or `order.*.shipped`.
pub fn validate_pattern(pattern: &str) -> Result<(), PatternError> {
    validate(pattern, true)
}

/// Checks a concrete event type such as `user.created`.
pub fn validate_event_type(event_type: &str) -> Result<(), PatternError> {
    validate(event_type, false)
}

fn validate(text: &str, wildcards: bool) -> Result<(), PatternError> {
    if text.is_empty() {
        return Err(PatternError::Empty);
    }
    let len = text.chars().count();
    if len > MAX_LEN {
        return Err(PatternError::TooLong { len });
    }
    for (index, segment) in text.split('.').enumerate() {
        validate_segment(segment, index + 1, wildcards)?;
    }
    Ok(())
}

fn validate_segment(segment: &str, position: usize, wildcards: bool) -> Result<(), PatternError> {
    if segment.is_empty() {
        return Err(PatternError::EmptySegment { position });
    }
    let has_star = segment.contains('*');
    if has_star && !wildcards {
        return Err(PatternError::WildcardInEventType);
    }
    if segment == WILDCARD {
        return Ok(());
    }
    if has_star {
        return Err(PatternError::PartialWildcard {
            segment: segment.to_owned(),
        });
    }
    match segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(found) => Err(PatternError::InvalidCharacter {
            segment: segment.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

/// The reference semantics, one pattern at a time; both arguments are assumed valid.
/// The index must always agree with this (checked by property tests).
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    let event: Vec<&str> = event_type.split('.').collect();
    let (init, last) = match pattern.rsplit_once('.') {
        Some((init, last)) => (init.split('.').collect(), last),
        None => (Vec::new(), pattern),
    };
    let same =
        |pat: &[&str], ev: &[&str]| pat.iter().zip(ev).all(|(p, e)| *p == WILDCARD || p == e);
    if last == WILDCARD {
        event.len() > init.len() && same(&init, &event)
    } else {
        event.len() == init.len() + 1 && same(&init, &event) && event.last() == Some(&last)
    }
}

/// One trie level. A pattern is stored at the node reached by its segments: in `ends_here` when
/// it must end there, in `rest` when its trailing `*` still needs one or more segments.
struct Node<K> {
    exact: HashMap<Box<str>, Node<K>>,
    one: Option<Box<Node<K>>>,
    ends_here: BTreeSet<K>,
    rest: BTreeSet<K>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            one: None,
            ends_here: BTreeSet::new(),
            rest: BTreeSet::new(),
        }
    }
}

impl<K: Ord> Node<K> {
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.one.is_none()
            && self.ends_here.is_empty()
            && self.rest.is_empty()
    }

    fn slot(&mut self, segments: &[&str]) -> &mut BTreeSet<K> {
        match segments {
            [] => &mut self.ends_here,
            [WILDCARD] => &mut self.rest,
            [WILDCARD, tail @ ..] => self.one.get_or_insert_with(Box::default).slot(tail),
            [first, tail @ ..] => self.exact.entry((*first).into()).or_default().slot(tail),
        }
    }

    /// Removes `key` along one pattern's path, pruning nodes left empty so that churn
    /// (webhooks created and deleted for months) does not grow the trie.
    fn unlink(&mut self, segments: &[&str], key: &K) {
        match segments {
            [] => {
                self.ends_here.remove(key);
            }
            [WILDCARD] => {
                self.rest.remove(key);
            }
            [WILDCARD, tail @ ..] => {
                if let Some(child) = self.one.as_mut() {
                    child.unlink(tail, key);
                    if child.is_empty() {
                        self.one = None;
                    }
                }
            }
            [first, tail @ ..] => {
                if let Some(child) = self.exact.get_mut(*first) {
                    child.unlink(tail, key);
                    if child.is_empty() {
                        self.exact.remove(*first);
                    }
                }
            }
        }
    }

    /// Collects every key matching the remaining `segments`; returns how many nodes it visited.
    /// Each step follows at most the exact child and the `*` child, so the walk is bounded both
    /// by the number of stored prefixes and by 2^depth, whatever the number of webhooks.
    fn collect<'a>(&'a self, segments: &[&str], found: &mut BTreeSet<&'a K>) -> usize {
        let Some((first, tail)) = segments.split_first() else {
            found.extend(&self.ends_here);
            return 1;
        };
        found.extend(&self.rest);
        let mut visited = 1;
        if let Some(child) = self.exact.get(*first) {
            visited += child.collect(tail, found);
        }
        if let Some(child) = &self.one {
            visited += child.collect(tail, found);
        }
        visited
    }
}

/// Which webhooks (keys `K`, e.g. webhook ids) subscribe to which event types.
pub struct PatternIndex<K> {
    root: Node<K>,
    patterns: BTreeMap<K, Vec<String>>,
}

impl<K: Ord + Clone> Default for PatternIndex<K> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            patterns: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> PatternIndex<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index from `(key, patterns)` entries, stopping at the first invalid pattern.
    pub fn from_entries<I, P, S>(entries: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = (K, P)>,
        P: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut index = Self::new();
        for (key, patterns) in entries {
            index.insert(key, patterns)?;
        }
        Ok(index)
    }

    /// Sets the patterns of `key`, replacing any it had. Nothing changes if one is invalid.
    pub fn insert<P, S>(&mut self, key: K, patterns: P) -> Result<(), PatternError>
    where
        P: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<String> = patterns
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        for pattern in &patterns {
            validate_pattern(pattern)?;
        }
        patterns.sort();
        patterns.dedup();
        self.remove(&key);
        for pattern in &patterns {
            let segments: Vec<&str> = pattern.split('.').collect();
            self.root.slot(&segments).insert(key.clone());
        }
        self.patterns.insert(key, patterns);
        Ok(())
    }

    /// Forgets `key`; returns whether it was present.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(patterns) = self.patterns.remove(key) else {
            return false;
        };
        for pattern in &patterns {
            let segments: Vec<&str> = pattern.split('.').collect();
            self.root.unlink(&segments, key);
        }
        true
    }

    /// Keys whose patterns match `event_type`, each once, in ascending key order.
    /// An invalid event type matches nothing (it could otherwise satisfy a `*` segment).
    pub fn matches(&self, event_type: &str) -> Vec<K> {
        self.matches_counting(event_type).0
    }

    fn matches_counting(&self, event_type: &str) -> (Vec<K>, usize) {
        if validate_event_type(event_type).is_err() {
            return (Vec::new(), 0);
        }
        let segments: Vec<&str> = event_type.split('.').collect();
        let mut found = BTreeSet::new();
        let visited = self.root.collect(&segments, &mut found);
        (found.into_iter().cloned().collect(), visited)
    }

    /// The stored (sorted, deduplicated) patterns of `key`.
    pub fn patterns_of(&self, key: &K) -> Option<&[String]> {
        self.patterns.get(key).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn index(entries: &[(u32, &[&str])]) -> PatternIndex<u32> {
        PatternIndex::from_entries(entries.iter().map(|(k, p)| (*k, p.iter().copied())))
            .expect("test patterns are valid")
    }

    #[test]
    fn lone_star_matches_every_event() {
        for event in ["a", "user.created", "a.b.c.d"] {
            assert!(pattern_matches("*", event), "{event}");
        }
    }

    #[test]
    fn trailing_star_needs_at_least_one_segment() {
        assert!(!pattern_matches("user.*", "user"));
        assert!(pattern_matches("user.*", "user.created"));
        assert!(pattern_matches("user.*", "user.profile.updated"));
        assert!(!pattern_matches("user.*", "users.created"));
    }

    #[test]
    fn middle_star_matches_exactly_one_segment() {
        assert!(pattern_matches("user.*.deleted", "user.photo.deleted"));
        assert!(!pattern_matches("user.*.deleted", "user.deleted"));
        assert!(!pattern_matches("user.*.deleted", "user.a.b.deleted"));
        assert!(pattern_matches("*.*.deleted", "user.photo.deleted"));
    }

    #[test]
    fn exact_patterns_are_case_sensitive_and_whole() {
        assert!(pattern_matches("user.created", "user.created"));
        assert!(!pattern_matches("user.created", "User.created"));
        assert!(!pattern_matches("user.created", "user.created.v2"));
        assert!(!pattern_matches("user", "user.created"));
    }

    #[test]
    #[rustfmt::skip]
    fn validation_names_the_problem() {
        use PatternError as E;
        let long = "a".repeat(MAX_LEN + 1);
        let bad_char = |seg: &str, found| E::InvalidCharacter { segment: seg.into(), found };
        let partial = |segment: &str| E::PartialWildcard { segment: segment.into() };
        let cases = [
            ("", E::Empty),
            (&long, E::TooLong { len: MAX_LEN + 1 }),
            (".user", E::EmptySegment { position: 1 }),
            ("user..created", E::EmptySegment { position: 2 }),
            ("user.", E::EmptySegment { position: 2 }),
            ("user.cre ated", bad_char("cre ated", ' ')),
            ("usér", bad_char("usér", 'é')),
            ("user.**", partial("**")),
            ("user*", partial("user*")),
        ];
        for (input, expected) in cases {
            assert_eq!(validate_pattern(input), Err(expected), "{input:?}");
        }
        for ok in ["*", "user.*", "a.*.c", "Order_v2.ship-ped", &"a".repeat(MAX_LEN)] {
            assert_eq!(validate_pattern(ok), Ok(()), "{ok}");
        }
        assert!(validate_pattern("a.b c").is_err_and(|e| e.to_string().contains("`b c`")));
    }

    #[test]
    fn event_types_refuse_wildcards() {
        assert_eq!(
            validate_event_type("user.*"),
            Err(PatternError::WildcardInEventType)
        );
        assert_eq!(
            validate_event_type("us*er"),
            Err(PatternError::WildcardInEventType)
        );
        assert_eq!(validate_event_type("user.created"), Ok(()));
    }

    #[test]
    fn index_returns_each_webhook_once_in_key_order() {
        let idx = index(&[
            (3, &["user.*", "user.created"]),
            (1, &["*"]),
            (2, &["order.*"]),
        ]);
        assert_eq!(idx.matches("user.created"), vec![1, 3]);
        assert_eq!(idx.matches("order.paid"), vec![1, 2]);
        assert_eq!(idx.matches("user"), vec![1]);
    }

    #[test]
    fn invalid_event_type_matches_nothing() {
        let idx = index(&[(1, &["*"]), (2, &["a.*.c"])]);
        assert!(idx.matches("a..c").is_empty());
        assert!(idx.matches("").is_empty());
    }

    #[test]
    fn insert_replaces_previous_patterns_and_refuses_invalid_ones() {
        let mut idx = index(&[(1, &["user.created"])]);
        idx.insert(1, ["order.*"]).expect("valid");
        assert!(idx.matches("user.created").is_empty());
        assert_eq!(idx.matches("order.paid"), vec![1]);
        assert!(idx.insert(1, ["ok", "bad..pattern"]).is_err());
        assert_eq!(idx.patterns_of(&1), Some(&["order.*".to_owned()][..]));
    }

    #[test]
    fn removing_every_webhook_prunes_the_trie() {
        let mut idx = index(&[(1, &["a.*.c", "a.b"]), (2, &["a.*", "*"]), (3, &["x.y.z"])]);
        assert!(idx.remove(&2));
        assert!(!idx.remove(&2));
        assert_eq!(idx.matches("a.b"), vec![1]);
        assert!(idx.remove(&1) && idx.remove(&3));
        assert!(idx.is_empty() && idx.root.is_empty());
    }

    /// Complexity note as a test: with 10,000 webhooks the walk for one event touches only the
    /// handful of nodes on its paths, not one per webhook.
    #[test]
    fn lookup_among_ten_thousand_webhooks_visits_only_reachable_nodes() {
        let mut idx = PatternIndex::new();
        for id in 0..10_000u32 {
            let patterns = [
                format!("svc{id}.created"),
                format!("svc{id}.*.deleted"),
                format!("svc{}.*", id % 7),
            ];
            idx.insert(id, &patterns).expect("valid");
        }
        idx.insert(10_000, ["*"]).expect("valid");
        let (found, visited) = idx.matches_counting("svc42.photo.deleted");
        assert_eq!(found, vec![42, 10_000]);
        assert!(visited <= 6, "visited {visited} nodes");
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*"]), 1..5)
            .prop_map(|segments| segments.join("."))
    }

    fn patterns_strategy() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(pattern_strategy(), 1..4)
    }

    fn event_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..6)
            .prop_map(|segments| segments.join("."))
    }

    proptest! {
        #[test]
        fn index_agrees_with_naive_matcher(
            webhooks in prop::collection::vec(patterns_strategy(), 1..20),
            removed in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
            events in prop::collection::vec(event_strategy(), 1..10),
        ) {
            let entries = webhooks.iter().cloned().enumerate();
            let mut idx = PatternIndex::from_entries(entries).expect("valid");
            let mut live: Vec<usize> = (0..webhooks.len()).collect();
            for pick in removed {
                let key = pick.index(webhooks.len());
                idx.remove(&key);
                live.retain(|k| *k != key);
            }
            for event in &events {
                let naive: Vec<usize> = live.iter().copied()
                    .filter(|k| webhooks[*k].iter().any(|p| pattern_matches(p, event)))
                    .collect();
                prop_assert_eq!(idx.matches(event), naive, "event {}", event);
            }
            for key in live {
                idx.remove(&key);
            }
            prop_assert!(idx.root.is_empty());
        }
    }
}
