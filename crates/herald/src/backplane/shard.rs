//! Which Redis server a topic lives on, when `REDIS_URL` lists several.
//!
//! Every node must pick the same server for a topic, whatever its build or machine, so the hash
//! is fixed here (FNV-1a, 64 bits) rather than `std`'s hasher, whose algorithm may change between
//! Rust releases. Jump consistent hashing (Lamping and Veach, 2014) then maps the hash to a
//! server: adding a server at the end of the list moves only about 1/n of the topics.

/// The index, in `0..servers`, of the server that holds `topic`. `servers` must be at least 1.
pub fn shard_of(topic: &str, servers: usize) -> usize {
    if servers <= 1 {
        return 0;
    }
    jump_hash(fnv1a64(topic.as_bytes()), servers as i64) as usize
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// Lamping and Veach's jump consistent hash: a bucket in `0..buckets`.
fn jump_hash(mut key: u64, buckets: i64) -> i64 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b.wrapping_add(1) as f64) * ((1u64 << 31) as f64 / ((key >> 33).wrapping_add(1) as f64))) as i64;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // FNV-1a's published test vectors: a change here would move every topic to another server.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn one_server_takes_everything() {
        assert_eq!(shard_of("x", 1), 0);
        assert_eq!(shard_of("x", 0), 0);
    }

    #[test]
    fn topics_spread_over_servers_and_adding_one_moves_few() {
        let topics: Vec<String> = (0..10_000).map(|i| format!("issuer-topic{i}")).collect();
        let mut counts = [0usize; 3];
        for t in &topics {
            counts[shard_of(t, 3)] += 1;
        }
        assert!(counts.iter().all(|c| (3000..3700).contains(c)), "{counts:?}");
        let moved = topics.iter().filter(|t| shard_of(t, 3) != shard_of(t, 4)).count();
        // Ideally a quarter move, all of them to the new server.
        assert!((2000..3000).contains(&moved), "{moved}");
        assert!(
            topics
                .iter()
                .all(|t| shard_of(t, 3) == shard_of(t, 4) || shard_of(t, 4) == 3)
        );
    }
}
