//! Revocations: tokens, subjects and sessions an operator has revoked, until a time.
//!
//! A revocation names an issuer and one of a token id (`jti`), a subject (`sub`) or a session
//! (`sid`). Every verification asks [`Revocations::refuses`], which costs one atomic load while
//! none is active, and a few hash lookups otherwise — at connect, never per message. Live
//! connections are found the other way round: each registers its [`Identity`] (three keyed 64-bit
//! hashes, no strings) in the liveness list, and a new revocation walks that list once.
//!
//! Entries end by themselves at their `until`, and at most [`MAX_ACTIVE`] are active, so memory
//! stays bounded. In a cluster the set lives in Redis and each node holds a copy
//! ([`Revocations::apply_snapshot`]); a node that works alone keeps it in memory only.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::Principal;

/// Most revocations active at once; one more is refused until some expire or are lifted.
pub const MAX_ACTIVE: usize = 100_000;

/// Longest a revocation may last, seconds (a year): beyond, a key rotation is the tool.
pub const MAX_SPAN_S: i64 = 365 * 24 * 3600;

/// Longest `iss`, `jti`, `sub` or `sid` a revocation may name, bytes.
pub const MAX_VALUE_BYTES: usize = 1024;

/// What a revocation matches in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationKind {
    /// One token: its `jti` claim.
    Jti,
    /// Every token of a subject: its `sub` claim.
    Sub,
    /// Every token of a session: its `sid` claim.
    Sid,
}

impl RevocationKind {
    /// The claim it matches, as named in the API.
    pub fn claim(self) -> &'static str {
        match self {
            RevocationKind::Jti => "jti",
            RevocationKind::Sub => "sub",
            RevocationKind::Sid => "sid",
        }
    }

    const ALL: [RevocationKind; 3] = [RevocationKind::Jti, RevocationKind::Sub, RevocationKind::Sid];

    fn of(self, principal: &Principal) -> Option<&str> {
        match self {
            RevocationKind::Jti => principal.token_id.as_deref(),
            RevocationKind::Sub => principal.subject.as_deref(),
            RevocationKind::Sid => principal.session.as_deref(),
        }
    }
}

/// What is revoked, without its end.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevokedKey {
    /// Which claim.
    pub kind: RevocationKind,
    /// The token's `iss`.
    pub issuer: String,
    /// The claim's value.
    pub value: String,
}

impl RevokedKey {
    /// The canonical text of the key (a JSON array), as Redis stores it.
    pub fn to_member(&self) -> String {
        serde_json::to_string(&(self.kind, &self.issuer, &self.value)).expect("JSON of strings cannot fail")
    }

    /// The key back from [`RevokedKey::to_member`]'s text.
    pub fn from_member(member: &str) -> Option<RevokedKey> {
        let (kind, issuer, value): (RevocationKind, String, String) = serde_json::from_str(member).ok()?;
        Some(RevokedKey { kind, issuer, value })
    }

    /// The key as the API shows it: `{"iss":…,"sub":…,"until":…}` (without `until` if `None`).
    pub fn to_json(&self, until_s: Option<i64>) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("iss".into(), self.issuer.clone().into());
        object.insert(self.kind.claim().into(), self.value.clone().into());
        if let Some(until_s) = until_s {
            object.insert("until".into(), until_s.into());
        }
        serde_json::Value::Object(object)
    }
}

/// The revocation keys of one connection's token: keyed hashes of its `jti`, `sub` and `sid`
/// under its issuer (0 where the token has no such claim). Copied into the liveness list, 24
/// bytes a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity([u64; 3]);

impl Identity {
    /// A connection not authenticated (yet): nothing can revoke it.
    pub const NONE: Identity = Identity([0; 3]);

    /// Whether any of its keys is one of `hashes`.
    pub fn matches(&self, hashes: &[u64]) -> bool {
        self.0.iter().any(|h| *h != 0 && hashes.contains(h))
    }
}

/// Why a revocation was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// [`MAX_ACTIVE`] revocations are active.
    #[error("{MAX_ACTIVE} revocations are active, the most a node keeps: lift some, or wait for them to expire")]
    Full,
}

/// The active revocations of a node.
#[derive(Debug)]
pub struct Revocations {
    /// Keys the hashes with per-process random keys, so no client can craft a collision.
    hasher: RandomState,
    /// Until when a revocation without an end lasts, from now: the longest lifetime a token
    /// accepted now can still have (the larger of the APIs' maximum token lifetimes).
    default_span_s: i64,
    inner: RwLock<Inner>,
    /// How many entries there are (expired ones included until pruned): the fast path.
    len: AtomicUsize,
    /// The newest cluster version this copy includes (0 on a single node).
    version: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// By hash; a collision of two keys only shares the vector.
    entries: HashMap<u64, Vec<(RevokedKey, i64)>>,
    len: usize,
    /// The earliest end among the entries: pruning runs only once it has passed, so a change
    /// costs O(1) but once per distinct end.
    next_end: i64,
}

impl Inner {
    fn prune(&mut self, now_s: i64) {
        if now_s < self.next_end {
            return;
        }
        let mut next_end = i64::MAX;
        self.entries.retain(|_, list| {
            list.retain(|(_, until)| *until > now_s);
            for (_, until) in list.iter() {
                next_end = next_end.min(*until);
            }
            !list.is_empty()
        });
        self.len = self.entries.values().map(Vec::len).sum();
        self.next_end = next_end;
    }
}

impl Revocations {
    /// An empty set; revocations without an end last `default_span_s`.
    pub fn new(default_span_s: u64) -> Revocations {
        Revocations {
            hasher: RandomState::new(),
            default_span_s: default_span_s.min(MAX_SPAN_S as u64) as i64,
            inner: RwLock::new(Inner {
                next_end: i64::MAX,
                ..Inner::default()
            }),
            len: AtomicUsize::new(0),
            version: AtomicU64::new(0),
        }
    }

    /// Until when a revocation asked at `now_s` lasts, given `until_s` or not.
    pub fn until(&self, now_s: i64, until_s: Option<i64>) -> i64 {
        until_s.unwrap_or(now_s.saturating_add(self.default_span_s))
    }

    fn hash(&self, kind: RevocationKind, issuer: &str, value: &str) -> u64 {
        // Never 0, which means "no such claim".
        self.hasher.hash_one((kind, issuer, value)).max(1)
    }

    /// The hash under which `key` is kept and matched.
    pub fn hash_of(&self, key: &RevokedKey) -> u64 {
        self.hash(key.kind, &key.issuer, &key.value)
    }

    /// The keys of a verified token, for the liveness list.
    pub fn identity(&self, principal: &Principal) -> Identity {
        let mut keys = [0; 3];
        for (slot, kind) in keys.iter_mut().zip(RevocationKind::ALL) {
            if let Some(value) = kind.of(principal) {
                *slot = self.hash(kind, &principal.issuer, value);
            }
        }
        Identity(keys)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_len(&self, inner: &Inner) {
        self.len.store(inner.len, Ordering::Release);
    }

    /// Whether a revocation active at `now_s` matches the token of `principal` exactly.
    pub fn refuses(&self, principal: &Principal, now_s: i64) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let inner = self.read();
        RevocationKind::ALL.into_iter().any(|kind| {
            kind.of(principal).is_some_and(|value| {
                inner
                    .entries
                    .get(&self.hash(kind, &principal.issuer, value))
                    .is_some_and(|list| {
                        list.iter().any(|(key, until)| {
                            *until > now_s && key.kind == kind && key.issuer == *principal.issuer && key.value == value
                        })
                    })
            })
        })
    }

    /// Whether a revocation active at `now_s` has one of `identity`'s hashes: the check a
    /// connection makes once it is in the liveness list, against a revocation that raced it.
    pub fn refuses_identity(&self, identity: &Identity, now_s: i64) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let inner = self.read();
        identity.0.iter().filter(|h| **h != 0).any(|h| {
            inner
                .entries
                .get(h)
                .is_some_and(|list| list.iter().any(|(_, until)| *until > now_s))
        })
    }

    /// Records a revocation until `until_s` (a longer end of the same key wins); returns its
    /// hash, for the walk over live connections.
    pub fn insert(&self, key: RevokedKey, until_s: i64, now_s: i64) -> Result<u64, RevokeError> {
        let hash = self.hash_of(&key);
        let mut inner = self.write();
        inner.prune(now_s);
        let existing = inner
            .entries
            .get_mut(&hash)
            .and_then(|list| list.iter_mut().find(|(k, _)| *k == key));
        match existing {
            Some((_, until)) => *until = (*until).max(until_s),
            None => {
                if inner.len >= MAX_ACTIVE {
                    return Err(RevokeError::Full);
                }
                inner.entries.entry(hash).or_default().push((key, until_s));
                inner.len += 1;
                inner.next_end = inner.next_end.min(until_s);
            }
        }
        self.publish_len(&inner);
        Ok(hash)
    }

    /// Lifts a revocation; whether it was active.
    pub fn remove(&self, key: &RevokedKey, now_s: i64) -> bool {
        let hash = self.hash_of(key);
        let mut inner = self.write();
        let (mut found, mut removed, mut empty) = (false, false, false);
        if let Some(list) = inner.entries.get_mut(&hash) {
            if let Some(i) = list.iter().position(|(k, _)| k == key) {
                found = list[i].1 > now_s;
                list.swap_remove(i);
                removed = true;
            }
            empty = list.is_empty();
        }
        if empty {
            inner.entries.remove(&hash);
        }
        if removed {
            inner.len -= 1;
        }
        inner.prune(now_s);
        self.publish_len(&inner);
        found
    }

    /// Whether the newest local change is already part of cluster version `version`, so a copy
    /// read at an older version must not replace the set.
    pub fn saw_version(&self, version: u64) {
        self.version.fetch_max(version, Ordering::AcqRel);
    }

    /// Replaces the set with the cluster's copy read at `version`, unless this node already
    /// holds a newer one (a local change it made after the read); returns the hashes that were
    /// not active before, for the walk over live connections.
    pub fn apply_snapshot(&self, version: u64, snapshot: Vec<(RevokedKey, i64)>, now_s: i64) -> Option<Vec<u64>> {
        let mut inner = self.write();
        if version < self.version.load(Ordering::Acquire) {
            return None;
        }
        self.version.store(version, Ordering::Release);
        let mut next = Inner {
            next_end: i64::MAX,
            ..Inner::default()
        };
        let mut added = Vec::new();
        for (key, until) in snapshot.into_iter().filter(|(_, until)| *until > now_s) {
            let hash = self.hash_of(&key);
            let known = inner
                .entries
                .get(&hash)
                .is_some_and(|list| list.iter().any(|(k, u)| *k == key && *u > now_s));
            if !known {
                added.push(hash);
            }
            next.entries.entry(hash).or_default().push((key, until));
            next.len += 1;
            next.next_end = next.next_end.min(until);
        }
        *inner = next;
        self.publish_len(&inner);
        Some(added)
    }

    /// The revocations active at `now_s`, in a stable order.
    pub fn active(&self, now_s: i64) -> Vec<(RevokedKey, i64)> {
        let mut active: Vec<(RevokedKey, i64)> = self
            .read()
            .entries
            .values()
            .flatten()
            .filter(|(_, until)| *until > now_s)
            .cloned()
            .collect();
        active.sort();
        active
    }

    /// How many are active at `now_s`.
    pub fn active_count(&self, now_s: i64) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let inner = self.read();
        if now_s < inner.next_end {
            return inner.len;
        }
        inner
            .entries
            .values()
            .flatten()
            .filter(|(_, until)| *until > now_s)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::grants::Grants;

    fn principal(sub: &str, jti: Option<&str>, sid: Option<&str>) -> Principal {
        Principal {
            issuer: "iss".into(),
            subject: Some(sub.into()),
            token_id: jti.map(Into::into),
            session: sid.map(Into::into),
            expires_at_s: 2_000,
            grants: Ok(Grants::default()),
        }
    }

    fn key(kind: RevocationKind, value: &str) -> RevokedKey {
        RevokedKey {
            kind,
            issuer: "iss".into(),
            value: value.into(),
        }
    }

    #[test]
    fn each_kind_matches_its_claim_of_its_issuer_only() {
        let r = Revocations::new(120);
        let alice = principal("alice", Some("t1"), Some("s1"));
        assert!(!r.refuses(&alice, 100));
        r.insert(key(RevocationKind::Jti, "t1"), 200, 100).unwrap();
        assert!(r.refuses(&alice, 100));
        assert!(!r.refuses(&principal("alice", Some("t2"), None), 100));
        // The same value under another claim or issuer is another key.
        assert!(!r.refuses(&principal("t1", None, None), 100));
        let mut other = alice.clone();
        other.issuer = "other".into();
        assert!(!r.refuses(&other, 100));
        r.insert(key(RevocationKind::Sid, "s1"), 200, 100).unwrap();
        assert!(r.refuses(&principal("bob", None, Some("s1")), 100));
        r.insert(key(RevocationKind::Sub, "carol"), 200, 100).unwrap();
        assert!(r.refuses(&principal("carol", Some("any"), None), 100));
        assert_eq!(r.active(100).len(), 3);
    }

    #[test]
    fn revocations_end_by_themselves() {
        let r = Revocations::new(120);
        r.insert(key(RevocationKind::Sub, "alice"), 150, 100).unwrap();
        assert!(r.refuses(&principal("alice", None, None), 149));
        assert!(!r.refuses(&principal("alice", None, None), 150));
        assert_eq!(r.active_count(150), 0);
        // Pruned at the next change.
        r.insert(key(RevocationKind::Sub, "bob"), 300, 200).unwrap();
        assert_eq!(r.len.load(Ordering::Relaxed), 1);
        assert_eq!(r.until(1_000, None), 1_120);
        assert_eq!(r.until(1_000, Some(1_005)), 1_005);
    }

    #[test]
    fn a_connections_identity_matches_the_hash_of_its_revocation() {
        let r = Revocations::new(120);
        let alice = principal("alice", Some("t1"), None);
        let identity = r.identity(&alice);
        let hash = r.insert(key(RevocationKind::Jti, "t1"), 200, 100).unwrap();
        assert!(identity.matches(&[hash]));
        assert!(r.refuses_identity(&identity, 100));
        assert!(!Identity::NONE.matches(&[hash]));
        assert!(!r.identity(&principal("bob", None, None)).matches(&[hash]));
    }

    #[test]
    fn lifting_removes_exactly_one_key() {
        let r = Revocations::new(120);
        r.insert(key(RevocationKind::Sub, "alice"), 200, 100).unwrap();
        r.insert(key(RevocationKind::Sub, "bob"), 200, 100).unwrap();
        assert!(r.remove(&key(RevocationKind::Sub, "alice"), 100));
        assert!(!r.remove(&key(RevocationKind::Sub, "alice"), 100));
        assert!(!r.refuses(&principal("alice", None, None), 100));
        assert!(r.refuses(&principal("bob", None, None), 100));
    }

    #[test]
    fn the_set_is_bounded() {
        let r = Revocations::new(120);
        for i in 0..MAX_ACTIVE {
            r.insert(key(RevocationKind::Jti, &i.to_string()), 200, 100).unwrap();
        }
        assert_eq!(
            r.insert(key(RevocationKind::Jti, "one more"), 200, 100),
            Err(RevokeError::Full)
        );
        // Extending an existing one is fine, and once they expire there is room again.
        assert!(r.insert(key(RevocationKind::Jti, "7"), 300, 100).is_ok());
        assert!(r.insert(key(RevocationKind::Jti, "one more"), 400, 250).is_ok());
        assert_eq!(r.active_count(250), 2);
    }

    #[test]
    fn snapshots_replace_the_set_unless_older_than_a_local_change() {
        let r = Revocations::new(120);
        r.insert(key(RevocationKind::Sub, "alice"), 200, 100).unwrap();
        let added = r
            .apply_snapshot(
                3,
                vec![
                    (key(RevocationKind::Sub, "alice"), 200),
                    (key(RevocationKind::Sub, "bob"), 200),
                ],
                100,
            )
            .unwrap();
        assert_eq!(added, vec![r.hash_of(&key(RevocationKind::Sub, "bob"))]);
        // A local change at version 5; a copy read at version 4 is stale.
        r.insert(key(RevocationKind::Sub, "carol"), 200, 100).unwrap();
        r.saw_version(5);
        assert!(r.apply_snapshot(4, vec![], 100).is_none());
        assert!(r.refuses(&principal("carol", None, None), 100));
        // Version 5 holds it, and dropped bob (lifted elsewhere).
        r.apply_snapshot(5, vec![(key(RevocationKind::Sub, "carol"), 200)], 100)
            .unwrap();
        assert!(!r.refuses(&principal("bob", None, None), 100));
        assert!(r.refuses(&principal("carol", None, None), 100));
    }

    #[test]
    fn keys_round_trip_through_their_member_text() {
        let k = RevokedKey {
            kind: RevocationKind::Sid,
            issuer: "i\"ss".into(),
            value: "a,b\n".into(),
        };
        assert_eq!(RevokedKey::from_member(&k.to_member()), Some(k.clone()));
        assert_eq!(RevokedKey::from_member("nonsense"), None);
        assert_eq!(
            k.to_json(Some(5)),
            serde_json::json!({"iss": "i\"ss", "sid": "a,b\n", "until": 5})
        );
    }
}
