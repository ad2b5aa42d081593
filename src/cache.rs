//! The optional read cache for `get_secret` (`vault.read_cache` in the
//! contract; off by default).
//!
//! Entries live `ttl_seconds` at most; the cache holds at most `max_entries`
//! entries and `max_bytes` of secret data, evicting the oldest first. Values
//! stay in `SecretData`, zeroized when evicted or dropped. A `set_secret` or
//! `delete_secret` through this node drops every cached version of that
//! path; a request with `consistency: "fresh"` skips the cache (and refreshes
//! it). Writes that bypass this node (directly to Vault, or through another
//! instance of the group) are seen only when the entry expires: a cached read
//! may be up to `ttl_seconds` stale.
//!
//! Entries are keyed by Vault namespace (in full; `""` for the root) as well
//! as mount, path and version, so one tenant's read never answers another's.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use onex_vault_models::{CacheStats, GetSecretResult};

/// (namespace, mount, path, version): `None` is "the latest".
type Key = (String, String, String, Option<u64>);

pub struct ReadCache {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Keys in insertion order, with the insertion number (stale ones skipped).
    order: VecDeque<(Key, u64)>,
    bytes: usize,
    inserted: u64,
}

struct Entry {
    result: GetSecretResult,
    stored: Instant,
    size: usize,
    number: u64,
}

impl ReadCache {
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> ReadCache {
        ReadCache {
            ttl,
            max_entries,
            max_bytes,
            inner: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// A fresh copy of the cached read, if there is one.
    pub fn get(&self, namespace: &str, mount: &str, path: &str, version: Option<u64>) -> Option<GetSecretResult> {
        let key = (namespace.to_owned(), mount.to_owned(), path.to_owned(), version);
        let mut inner = self.lock();
        let fresh = inner.entries.get(&key).map(|e| e.stored.elapsed() < self.ttl);
        match fresh {
            Some(true) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                inner.entries.get(&key).map(|e| e.result.clone())
            }
            Some(false) => {
                inner.remove(&key);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Remembers a read from Vault, evicting the oldest entries over the limits.
    pub fn insert(&self, namespace: &str, mount: &str, path: &str, version: Option<u64>, result: &GetSecretResult) {
        let size = serde_json::to_vec(result.data.expose_secret()).map_or(0, |v| v.len()) + path.len();
        if size > self.max_bytes {
            return;
        }
        let key = (namespace.to_owned(), mount.to_owned(), path.to_owned(), version);
        let mut inner = self.lock();
        inner.remove(&key);
        inner.inserted += 1;
        let number = inner.inserted;
        inner.bytes += size;
        inner.order.push_back((key.clone(), number));
        inner.entries.insert(key, Entry { result: result.clone(), stored: Instant::now(), size, number });
        while inner.entries.len() > self.max_entries || inner.bytes > self.max_bytes {
            let Some((oldest, number)) = inner.order.pop_front() else { break };
            if inner.entries.get(&oldest).is_some_and(|e| e.number == number) {
                inner.remove(&oldest);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops every cached version of `mount:path` in `namespace` (it was
    /// written or deleted there).
    pub fn invalidate(&self, namespace: &str, mount: &str, path: &str) {
        let mut inner = self.lock();
        let stale: Vec<Key> =
            inner.entries.keys().filter(|(n, m, p, _)| n == namespace && m == mount && p == path).cloned().collect();
        for key in stale {
            inner.remove(&key);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.entries.len() as u64,
            bytes: inner.bytes as u64,
            hits_total: self.hits.load(Ordering::Relaxed),
            misses_total: self.misses.load(Ordering::Relaxed),
            evictions_total: self.evictions.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.size;
        }
        if self.order.len() > 4 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|(k, n)| entries.get(k).is_some_and(|e| e.number == *n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onex_vault_models::{SecretData, SecretVersionMetadata};

    fn result(value: &str) -> GetSecretResult {
        GetSecretResult {
            data: SecretData::new(serde_json::json!({ "v": value }).as_object().cloned().unwrap_or_default()),
            metadata: SecretVersionMetadata {
                version: 1,
                created_time: "t".into(),
                deletion_time: None,
                destroyed: false,
                custom_metadata: None,
            },
        }
    }

    #[test]
    fn hits_until_the_ttl_then_misses() {
        let cache = ReadCache::new(Duration::from_millis(50), 10, 1 << 20);
        assert!(cache.get("", "secret", "a", None).is_none());
        cache.insert("", "secret", "a", None, &result("x"));
        let hit = cache.get("", "secret", "a", None).expect("hit");
        assert_eq!(hit.data.expose_secret()["v"], "x");
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("", "secret", "a", None).is_none(), "expired");
        let stats = cache.stats();
        assert_eq!((stats.hits_total, stats.misses_total, stats.evictions_total, stats.entries), (1, 2, 1, 0));
    }

    #[test]
    fn bounded_by_entries_and_bytes_oldest_first() {
        let cache = ReadCache::new(Duration::from_secs(60), 2, 1 << 20);
        for path in ["a", "b", "c"] {
            cache.insert("", "secret", path, None, &result(path));
        }
        assert!(cache.get("", "secret", "a", None).is_none(), "the oldest went");
        assert!(cache.get("", "secret", "c", None).is_some());
        assert_eq!(cache.stats().evictions_total, 1);

        let small = ReadCache::new(Duration::from_secs(60), 100, 30);
        small.insert("", "secret", "a", None, &result("0123456789"));
        small.insert("", "secret", "b", None, &result("0123456789"));
        assert!(small.stats().bytes <= 30);
        assert_eq!(small.stats().entries, 1);
    }

    #[test]
    fn writes_invalidate_every_version_of_the_path() {
        let cache = ReadCache::new(Duration::from_secs(60), 10, 1 << 20);
        cache.insert("", "secret", "a", None, &result("latest"));
        cache.insert("", "secret", "a", Some(1), &result("v1"));
        cache.insert("", "secret", "b", None, &result("other"));
        cache.invalidate("", "secret", "a");
        assert!(cache.get("", "secret", "a", None).is_none());
        assert!(cache.get("", "secret", "a", Some(1)).is_none());
        assert!(cache.get("", "secret", "b", None).is_some());
    }
}

#[cfg(test)]
mod namespace_tests {
    use super::*;
    use onex_vault_models::{SecretData, SecretVersionMetadata};

    fn result(value: &str) -> GetSecretResult {
        GetSecretResult {
            data: SecretData::new(serde_json::json!({ "v": value }).as_object().cloned().unwrap_or_default()),
            metadata: SecretVersionMetadata {
                version: 1,
                created_time: "t".into(),
                deletion_time: None,
                destroyed: false,
                custom_metadata: None,
            },
        }
    }

    #[test]
    fn namespaces_never_share_entries() {
        let cache = ReadCache::new(Duration::from_secs(60), 10, 1 << 20);
        cache.insert("team-a", "secret", "db", None, &result("a"));
        assert!(cache.get("team-a/app", "secret", "db", None).is_none(), "another namespace's entry");
        assert!(cache.get("", "secret", "db", None).is_none(), "the root's entry");
        cache.insert("team-a/app", "secret", "db", None, &result("app"));
        let value = |ns| cache.get(ns, "secret", "db", None).map(|hit| hit.data.expose_secret()["v"].clone());
        assert_eq!(value("team-a"), Some("a".into()));
        assert_eq!(value("team-a/app"), Some("app".into()));
        cache.invalidate("team-a/app", "secret", "db");
        assert_eq!(value("team-a/app"), None);
        assert_eq!(value("team-a"), Some("a".into()), "a write in one namespace keeps the other's entry");
    }
}
