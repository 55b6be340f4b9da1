//! Fuzzes what a v2 request carries besides its head: the query string and the cursor.
#![no_main]

use herald::api::v2::query::Query;
use herald::model::Topic;
use herald::model::cursor::{Cursor, decode, encode, topic_set_hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(query) = Query::parse(text) {
        assert!(query.topics.iter().all(|t| !t.is_empty() && t.len() <= 256));
    }
    let topics: Vec<Topic> = ["a", "b", "c"].iter().map(|n| Topic::namespaced("i", n)).collect();
    let hash = topic_set_hash(&topics);
    for n in 1..=3 {
        if let Ok(positions) = decode(text, hash, n) {
            assert_eq!(positions.len(), n);
            // A cursor that decodes encodes back to one that decodes to the same positions.
            let again = encode(hash, &positions);
            assert_eq!(decode(&again, hash, n), Ok(positions.clone()));
            // Moving one topic keeps every other position.
            let mut moved = Cursor::new(hash, &positions);
            let mut expected = positions;
            let last = n - 1;
            expected[last] = expected[last].wrapping_add(1);
            assert!(moved.set(last, expected[last]));
            assert_eq!(decode(moved.as_str(), hash, n), Ok(expected));
        }
    }
});
