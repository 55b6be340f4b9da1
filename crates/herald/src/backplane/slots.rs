//! Which Redis Cluster node serves a topic: its hash slot, and the cluster's map of slots to
//! nodes (`CLUSTER SLOTS`).
//!
//! The client library routes every command by itself; the listener needs the map only to repair
//! topics node by node, so that one unreachable master does not hold up the topics of the others.

use ::redis::Value;

/// Hash slots of a Redis Cluster.
const SLOTS: u16 = 16_384;

/// The hash slot of `key`, by Redis Cluster's rule: CRC16 (XMODEM) of the hash tag (the text
/// between the first `{` and the next `}`, when not empty), else of the whole key.
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// Slot ranges and the address of the master that serves each.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SlotOwners(Vec<(u16, u16, String)>);

impl SlotOwners {
    /// Reads a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ...], replicas...], ...]`.
    /// `None` when the shape is not that.
    pub fn parse(reply: &Value) -> Option<SlotOwners> {
        let Value::Array(ranges) = reply else { return None };
        let mut owners = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(parts) = range else { return None };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                return None;
            };
            let host = match master.first()? {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let Value::Int(port) = master.get(1)? else { return None };
            owners.push((
                u16::try_from(*start).ok()?,
                u16::try_from(*end).ok()?,
                format!("{host}:{port}"),
            ));
        }
        Some(SlotOwners(owners))
    }

    /// The address of the master serving `slot`, if the map has it.
    pub fn owner(&self, slot: u16) -> Option<&str> {
        self.0
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, node)| node.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_cluster_and_its_hash_tags() {
        // The examples of Redis's documentation and source (`CLUSTER KEYSLOT`).
        assert_eq!(slot_of("somekey"), 11_058);
        assert_eq!(slot_of("foo{hash_tag}"), 2_515);
        assert_eq!(slot_of("123456789"), 12_739);
        // Keys of one topic share a slot; an empty tag hashes the whole key.
        assert_eq!(slot_of("herald:{iss-t}"), slot_of("herald:{iss-t}:h"));
        assert_eq!(
            slot_of("a{}b"),
            crc16::State::<crc16::XMODEM>::calculate(b"a{}b") % SLOTS
        );
        assert_eq!(slot_of("a{b"), slot_of("a{b"));
    }

    #[test]
    fn cluster_slots_replies_map_slots_to_masters() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let range = |start, end, port| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![
                    bulk("127.0.0.1"),
                    Value::Int(port),
                    bulk("id"),
                    Value::Array(vec![]),
                ]),
            ])
        };
        let owners = SlotOwners::parse(&Value::Array(vec![range(0, 5460, 7000), range(5461, 16383, 7001)])).unwrap();
        assert_eq!(owners.owner(0), Some("127.0.0.1:7000"));
        assert_eq!(owners.owner(5461), Some("127.0.0.1:7001"));
        assert_eq!(owners.owner(16383), Some("127.0.0.1:7001"));
        assert_eq!(SlotOwners::parse(&Value::Nil), None);
        assert_eq!(SlotOwners::parse(&Value::Array(vec![bulk("x")])), None);
        assert_eq!(SlotOwners::parse(&Value::Array(vec![])).unwrap().owner(3), None);
    }
}
