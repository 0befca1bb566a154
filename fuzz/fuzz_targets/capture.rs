//! Ingest capture: a raw HTTP/1.1 request as it arrives on an ingest connection, re-parsed
//! for arrival order and turned into a log row. No panic; the stored headers are exactly
//! the parsed ones; the body is stored byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    opshub::http::conn::fuzz_capture(data);
});
