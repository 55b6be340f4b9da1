//! The Lua scripts that keep a topic's shared history and publish its messages.
//!
//! Redis runs one script at a time, so everything a script does is atomic with respect to every
//! other node: the publish script assigns ids, appends to the stream and publishes on the channel in
//! one step (docs/cluster.md, "Publishing"). The clock is Redis's `TIME`, so nodes with skewed
//! clocks agree on ids and retention.
//!
//! Event ids are decimal strings inside Lua: Lua numbers are doubles, exact only up to 2^53, and a
//! publisher may send any u64 timestamp. `gt` compares canonical decimals (no leading zeros) by
//! length then bytes; `incr` adds one by hand and saturates at u64::MAX like the single node.

/// Keys of topic `T`: `herald:{T}:h` (stream), `herald:{T}:last` (last event id); channel
/// `herald:{T}`. The braces are a Redis Cluster hash tag: one topic, one slot.
pub fn stream_key(topic: &str) -> String {
    format!("herald:{{{topic}}}:h")
}

/// See [`stream_key`].
pub fn last_id_key(topic: &str) -> String {
    format!("herald:{{{topic}}}:last")
}

/// See [`stream_key`].
pub fn channel(topic: &str) -> String {
    format!("herald:{{{topic}}}")
}

/// How long the `last` key outlives the last publish beyond the message TTL, in ms. Server ids
/// must keep increasing across a burst even with no stream to remember them, and a client that
/// resumes within this long after a topic's whole history expired is told exactly whether it
/// missed something (the key says what the newest message was) rather than warned of a gap it
/// cannot rule out. About 100 bytes of Redis memory a topic, for an hour.
pub const LAST_ID_GRACE_MS: u64 = 3_600_000;

/// Publishes a batch on one topic.
///
/// KEYS[1] stream, KEYS[2] last id. ARGV[1] channel, ARGV[2] per-topic cap (0: no history),
/// ARGV[3] message TTL in ms (0: no history), ARGV[4] TTL of the last-id key, ARGV[5] the publish
/// command (`PUBLISH`, or `SPUBLISH` on a Redis Cluster: the channel shares the keys' slot), then
/// for each message: event, payload, publisher timestamp ('' when the server assigns the id).
/// Returns the event ids, as strings, in order.
///
/// Each entry also records `b`, the highest id the topic had before it. Trimming (by the cap or
/// the TTL) always removes the oldest entries, so the first entry still retained says through
/// which id messages are gone: what [`HISTORY`] needs to tell a resuming client of a gap.
pub const PUBLISH: &str = r"
local function gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function incr(a)
  if a == '18446744073709551615' then return a end
  local i = #a
  while i > 0 and string.byte(a, i) == 57 do i = i - 1 end
  if i == 0 then return '1' .. string.rep('0', #a) end
  return string.sub(a, 1, i - 1) .. string.char(string.byte(a, i) + 1) .. string.rep('0', #a - i)
end
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local cap, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local keep = cap > 0 and ttl > 0
local last = redis.call('GET', KEYS[2]) or '0'
local out, ids = {}, {}
for i = 6, #ARGV, 3 do
  local event, payload, ts = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local id = ts
  if id == '' then
    id = incr(last)
    if gt(now, id) then id = now end
  end
  local before = last
  if gt(id, last) then last = id end
  local sid = '0-0'
  if keep then
    sid = redis.call('XADD', KEYS[1], 'MAXLEN', cap, '*', 'id', id, 'at', now, 'e', event, 'p', payload, 'b', before)
  end
  out[#out + 1] = sid .. ' ' .. id .. ' ' .. now .. ' ' .. #event .. ' ' .. #payload .. '\n' .. event .. payload
  ids[#ids + 1] = id
end
redis.call('SET', KEYS[2], last, 'PX', ARGV[4])
if keep then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', tonumber(now) - ttl))
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call(ARGV[5], ARGV[1], table.concat(out))
return ids
";

/// The retained messages of a topic, and through which id its messages are gone.
///
/// KEYS[1] stream, KEYS[2] last id. ARGV[1] message TTL in ms (0: no history). Returns
/// `{entries, gone}`: XRANGE's reply for the entries younger than the TTL, oldest first; and the
/// highest id of a message no longer retained (trimmed, expired, or never kept), as a string —
/// the first retained entry's `b`, or the last id when nothing is retained — or `false` when
/// Redis knows nothing of the topic (never published, or forgotten) or an entry predates `b`.
pub const HISTORY: &str = r"
local ttl = tonumber(ARGV[1])
local entries = {}
if ttl > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  entries = redis.call('XRANGE', KEYS[1], string.format('%d', now - ttl + 1), '+')
end
local gone = false
if #entries > 0 then
  local fields = entries[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'b' then gone = fields[i + 1] end
  end
else
  gone = redis.call('GET', KEYS[2])
end
return {entries, gone}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topics_keys_share_one_hash_tag() {
        assert_eq!(stream_key("iss-t"), "herald:{iss-t}:h");
        assert_eq!(last_id_key("iss-t"), "herald:{iss-t}:last");
        assert_eq!(channel("iss-t"), "herald:{iss-t}");
    }
}
