//! The nine KV value parsers, from CLI text and from JSON: no panic, and a value that
//! parses round-trips through its JSON form unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use opshub::kv::value::{ValueType, parse_json, parse_text};

fuzz_target!(|text: &str| {
    let json: Option<serde_json::Value> = serde_json::from_str(text).ok();
    for ty in ValueType::ALL {
        if let Ok(v) = parse_text(ty, text) {
            let again = parse_json(ty, &v.to_json()).expect("a parsed value re-parses from its JSON");
            assert_eq!(again.to_json(), v.to_json(), "{ty:?} does not round-trip {text:?}");
        }
        if let Some(j) = &json {
            let _ = parse_json(ty, j);
        }
    }
});
