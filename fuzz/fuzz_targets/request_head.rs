//! Fuzzes the public API's request-head and Last-Event-ID parsers.
#![no_main]

use herald::http::request::{HeadLimits, parse_head, parse_last_event_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(head)) = parse_head(data, HeadLimits { max_header_value_length: 8192 }) {
        assert!(head.len <= data.len());
        let _ = parse_last_event_id(head.request.last_event_id.as_deref());
    }
    let _ = parse_last_event_id(Some(data));
});
