//! Property tests over the parsers: arbitrary input never panics, and encoded frames decode back
//! to what was published. (Coverage-guided fuzz targets for the same functions live in `fuzz/`.)

use bytes::Bytes;
use herald::api::internal::publish::parse_publish;
use herald::auth::Verifier;
use herald::auth::keys::{development_auth, parse_jwt_config};
use herald::http::request::{HeadLimits, parse_head, parse_last_event_id};
use herald::model::{EventId, Message};
use herald::transport::sse::frame::{chunk_event, neurow_chunk};
use proptest::prelude::*;

const LIMITS: HeadLimits = HeadLimits {
    max_header_value_length: 8192,
};

/// A minimal SSE decoder following the WHATWG rules: returns (id, event, data).
fn decode_sse(event: &[u8]) -> (String, String, String) {
    let text = String::from_utf8(event.to_vec()).unwrap();
    let (mut id, mut name, mut data) = (String::new(), String::new(), Vec::new());
    for line in text.split('\n') {
        if line.is_empty() {
            break;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.to_owned(),
            "event" => name = value.to_owned(),
            "data" => data.push(value.to_owned()),
            other => panic!("unexpected field {other:?}"),
        }
    }
    (id, name, data.join("\n"))
}

proptest! {
    #[test]
    fn v2_queries_and_cursors_never_panic(text in "(?s).{0,300}") {
        use herald::api::v2::query::Query;
        use herald::model::cursor::{decode, topic_set_hash};
        let _ = Query::parse(&text);
        let topics = [herald::model::Topic::namespaced("i", "a"), herald::model::Topic::namespaced("i", "b")];
        let _ = decode(&text, topic_set_hash(&topics), 2);
        let _ = decode(&text, topic_set_hash(&topics[..1]), 1);
    }

    #[test]
    fn cursors_round_trip(positions in proptest::collection::vec(any::<u64>(), 1..64)) {
        use herald::model::cursor::{decode, encode, topic_set_hash};
        let topics: Vec<_> = (0..positions.len()).map(|i| herald::model::Topic::namespaced("i", &i.to_string())).collect();
        let hash = topic_set_hash(&topics);
        let s = encode(hash, &positions);
        prop_assert!(s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'.' || b == b'-'));
        prop_assert_eq!(decode(&s, hash, positions.len()), Ok(positions));
    }

    #[test]
    fn a_cursor_moved_topic_by_topic_decodes_to_its_positions(
        start in proptest::collection::vec(any::<u64>(), 2..16),
        moves in proptest::collection::vec((any::<usize>(), any::<u64>()), 0..32),
    ) {
        use herald::model::cursor::{Cursor, decode, topic_set_hash};
        let topics: Vec<_> = (0..start.len()).map(|i| herald::model::Topic::namespaced("i", &i.to_string())).collect();
        let hash = topic_set_hash(&topics);
        let mut cursor = Cursor::new(hash, &start);
        let mut positions = start.clone();
        for (index, position) in moves {
            let index = index % positions.len();
            prop_assert!(cursor.set(index, position));
            positions[index] = position;
            prop_assert_eq!(decode(cursor.as_str(), hash, positions.len()), Ok(positions.clone()));
        }
    }

    #[test]
    fn cluster_messages_never_panic_and_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        use herald::backplane::wire::{decode, encode};
        if let Ok(batch) = decode(&Bytes::from(bytes)) {
            prop_assert_eq!(decode(&Bytes::from(encode(&batch))).unwrap(), batch);
        }
    }

    #[test]
    fn cluster_batches_round_trip(
        messages in proptest::collection::vec(
            (any::<(u64, u64, u64, u64)>(), "[a-z]{1,8}", proptest::collection::vec(any::<u8>(), 0..64)),
            0..8,
        )
    ) {
        use herald::backplane::wire::{Carried, StreamId, decode, encode};
        let batch: Vec<Carried> = messages
            .into_iter()
            .map(|((ms, seq, id, at), event, payload)| Carried {
                stream_id: StreamId { ms, seq },
                message: Message {
                    id: EventId(id),
                    event: Bytes::from(event),
                    payload: Bytes::from(payload),
                    accepted_ms: at,
                },
            })
            .collect();
        prop_assert_eq!(decode(&Bytes::from(encode(&batch))).unwrap(), batch);
    }

    #[test]
    fn request_heads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_head(&bytes, LIMITS);
    }

    #[test]
    fn request_heads_with_random_headers_parse_their_path(
        path in "/[a-z0-9/]{0,40}",
        values in proptest::collection::vec("[ -~]{0,100}", 0..20),
    ) {
        let mut raw = format!("GET {path}?q=1 HTTP/1.1\r\n");
        for (i, v) in values.iter().enumerate() {
            raw.push_str(&format!("x-h{i}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let head = parse_head(raw.as_bytes(), LIMITS).unwrap().unwrap();
        prop_assert_eq!(head.request.path, path);
        prop_assert_eq!(head.len, raw.len());
    }

    #[test]
    fn last_event_ids_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_last_event_id(Some(&bytes));
    }

    #[test]
    fn publish_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_publish(&bytes);
    }

    #[test]
    fn json_publish_bodies_never_panic(body in arbitrary_json(3)) {
        let _ = parse_publish(body.to_string().as_bytes());
        let wrapped = serde_json::json!({"topic": "t", "message": body});
        let _ = parse_publish(wrapped.to_string().as_bytes());
    }

    #[test]
    fn tokens_never_panic(token in "[A-Za-z0-9_.=+/-]{0,300}") {
        let _ = Verifier::new(development_auth().0, 120).verify(&token, 1_700_000_000);
    }

    #[test]
    fn jwt_configs_never_panic(text in ".{0,200}") {
        let _ = parse_jwt_config(&text);
    }

    #[test]
    fn frames_decode_to_what_was_published(
        id in any::<u64>(),
        event in "[a-zA-Z0-9_:. -]{1,20}",
        payload in "(?s).{1,200}",
    ) {
        let chunk = neurow_chunk(&Message {
            id: EventId(id),
            event: Bytes::from(event.clone()),
            payload: Bytes::from(payload.clone()),
            accepted_ms: 0,
        });
        let (got_id, got_event, got_data) = decode_sse(&chunk_event(&chunk));
        prop_assert_eq!(got_id, id.to_string());
        prop_assert_eq!(got_event, event);
        // SSE has no way to carry \r: every line break reads back as \n.
        prop_assert_eq!(got_data, payload.replace("\r\n", "\n").replace('\r', "\n"));
        // One chunk: the declared size is the event's length.
        let size_end = chunk.iter().position(|&b| b == b'\r').unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&chunk[..size_end]).unwrap(), 16).unwrap();
        prop_assert_eq!(size, chunk_event(&chunk).len());
    }
}

fn arbitrary_json(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "[a-z]{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(depth, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("event".to_owned()),
                    Just("payload".to_owned()),
                    Just("timestamp".to_owned()),
                    Just("topic".to_owned()),
                    Just("topics".to_owned()),
                    Just("message".to_owned()),
                    Just("messages".to_owned()),
                    "[a-z]{1,5}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
