//! Passwords: Argon2id with the OWASP minimum (m = 19 MiB, t = 2, p = 1, the argon2 crate's
//! defaults), hashed on a bounded pool so logins cannot take every core, and a login throttle
//! per account and per client address.
//!
//! One hash costs 15–27 ms of CPU here (spec/durable-and-ui.md §6): two cores do at most ~100 a
//! second, so the throttle — not the hash — is what stops a guessing attack, and the pool is what
//! keeps one from starving the node's other work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use tokio::sync::Semaphore;

/// A hash of nothing anyone knows: verified for an unknown user, so it takes as long as a wrong
/// password does.
static DUMMY: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"herald: no such user")
        .expect("hashing a constant cannot fail")
        .to_string()
});

/// The hashing pool.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Passwords {
    /// A pool of `threads` concurrent hashes.
    pub fn new(threads: usize) -> Passwords {
        Passwords {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: String) -> String {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .expect("Argon2id with default parameters hashes any password")
                .to_string()
        })
        .await
        .expect("hashing does not panic")
    }

    /// Whether `password` matches `hash` (a dummy hash when the user is unknown, so the answer
    /// takes the same time either way).
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let known = hash.is_some();
            let hash = hash.unwrap_or_else(|| DUMMY.clone());
            let matches = PasswordHash::new(&hash)
                .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false);
            known && matches
        })
        .await
        .expect("verifying does not panic")
    }
}

/// Failed logins allowed per account, and per client address, in a window.
const PER_ACCOUNT: u32 = 5;
const PER_ADDRESS: u32 = 30;
/// The window, ms (15 minutes, as OWASP and Sockudo).
const WINDOW_MS: u64 = 15 * 60 * 1000;
/// Keys tracked of each kind at most; when full, the expired go, and then the table starts over
/// (an attacker filling it only resets counts, never locks anyone out).
const MAX_KEYS: usize = 10_000;

/// Counts failed logins.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    accounts: Mutex<HashMap<String, (u32, u64)>>,
    addresses: Mutex<HashMap<IpAddr, (u32, u64)>>,
}

impl LoginThrottle {
    /// `Some(seconds)` to wait when `account` or `address` has failed too often lately.
    pub fn refuses(&self, account: &str, address: Option<IpAddr>, now_ms: u64) -> Option<u64> {
        let wait = |entry: Option<&(u32, u64)>, limit: u32| {
            entry
                .filter(|(n, since)| *n >= limit && now_ms < since + WINDOW_MS)
                .map(|(_, since)| (since + WINDOW_MS - now_ms).div_ceil(1000))
        };
        let by_account = wait(lock(&self.accounts).get(account), PER_ACCOUNT);
        let by_address = address.and_then(|a| wait(lock(&self.addresses).get(&a), PER_ADDRESS));
        by_account.max(by_address)
    }

    /// A failed login.
    pub fn failed(&self, account: &str, address: Option<IpAddr>, now_ms: u64) {
        count(&mut lock(&self.accounts), account.to_owned(), now_ms);
        if let Some(a) = address {
            count(&mut lock(&self.addresses), a, now_ms);
        }
    }

    /// A successful login: the account's count starts over (the address's does not).
    pub fn succeeded(&self, account: &str) {
        lock(&self.accounts).remove(account);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn count<K: std::hash::Hash + Eq>(table: &mut HashMap<K, (u32, u64)>, key: K, now_ms: u64) {
    if table.len() >= MAX_KEYS {
        table.retain(|_, (_, since)| now_ms < *since + WINDOW_MS);
        if table.len() >= MAX_KEYS {
            table.clear();
        }
    }
    let entry = table.entry(key).or_insert((0, now_ms));
    if now_ms >= entry.1 + WINDOW_MS {
        *entry = (0, now_ms);
    }
    entry.0 += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let p = Passwords::new(2);
        let hash = p.hash("correct horse".into()).await;
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(p.verify("correct horse".into(), Some(hash.clone())).await);
        assert!(!p.verify("wrong".into(), Some(hash)).await);
        assert!(!p.verify("correct horse".into(), None).await, "unknown user");
        assert!(!p.verify("x".into(), Some("not a hash".into())).await);
    }

    #[test]
    fn the_throttle_counts_per_account_and_address_within_a_window() {
        let t = LoginThrottle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PER_ACCOUNT {
            assert_eq!(t.refuses("alice", Some(ip), 1_000), None);
            t.failed("alice", Some(ip), 1_000);
        }
        assert_eq!(t.refuses("alice", None, 1_000), Some(WINDOW_MS / 1000));
        assert_eq!(
            t.refuses("bob", Some(ip), 1_000),
            None,
            "the address is below its limit"
        );
        assert_eq!(t.refuses("alice", None, 1_000 + WINDOW_MS), None, "the window passed");
        t.succeeded("alice");
        assert_eq!(t.refuses("alice", None, 2_000), None);
        for i in 0..PER_ADDRESS {
            t.failed(&format!("user{i}"), Some(ip), 3_000);
        }
        assert!(
            t.refuses("carol", Some(ip), 3_000).is_some(),
            "the address is over its limit"
        );
    }
}
