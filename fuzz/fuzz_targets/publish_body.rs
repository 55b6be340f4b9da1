//! Fuzzes the publish body validator.
#![no_main]

use herald::api::internal::publish::parse_publish;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_publish(data) {
        assert!(!request.topics.is_empty() && !request.messages.is_empty());
    }
});
