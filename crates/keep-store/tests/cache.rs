//! The read cache ([`CachedStore`]) on real SQLite files: hits and misses, invalidation by
//! every write path, the bounds, negative entries, and the race between a slow read and a
//! write. The conformance suite over the cache runs in `conformance.rs`.
//!
//! Most tests keep a second handle on the same database file (`raw`): a write through it
//! bypasses the cache, so a test can tell a value served from the cache from one read anew.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier as Rendezvous};
use std::thread;

use keep_store::{
    Barrier, CacheLimits, CachedStore, RootKey, SqliteStore, Store, StoreError, TxOp,
};

struct Db {
    _dir: tempfile::TempDir,
    cached: CachedStore<SqliteStore>,
    raw: SqliteStore,
}

fn db_with(limits: CacheLimits) -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.db");
    let cached = CachedStore::with_limits(SqliteStore::open(&path).unwrap(), limits);
    let raw = SqliteStore::open(&path).unwrap();
    Db {
        _dir: dir,
        cached,
        raw,
    }
}

fn db() -> Db {
    db_with(CacheLimits::default())
}

fn get(s: &dyn Store, key: &str) -> Option<Vec<u8>> {
    s.get(key).unwrap()
}

#[test]
fn a_miss_fills_the_cache_and_the_next_read_hits() {
    let d = db();
    d.cached.put("secret/a", b"one").unwrap();
    assert_eq!(get(&d.cached, "secret/a").as_deref(), Some(&b"one"[..]));
    let s = d.cached.stats();
    assert_eq!((s.hits, s.misses, s.entries), (0, 1, 1));
    // Changed behind the cache's back: the cache still answers, which proves the hit.
    d.raw.put("secret/a", b"two").unwrap();
    assert_eq!(get(&d.cached, "secret/a").as_deref(), Some(&b"one"[..]));
    assert_eq!(d.cached.stats().hits, 1);
    // The public invalidation point is what a change feed calls.
    d.cached.invalidate(["secret/a"]);
    assert_eq!(get(&d.cached, "secret/a").as_deref(), Some(&b"two"[..]));
    assert_eq!(d.cached.stats().misses, 2);
}

#[test]
fn negative_entries_are_cached_and_dropped_by_a_put() {
    let d = db();
    assert_eq!(get(&d.cached, "secret/none"), None);
    assert_eq!(get(&d.cached, "secret/none"), None);
    let s = d.cached.stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
    // Written behind the cache: still "absent" from the cache.
    d.raw.put("secret/none", b"now").unwrap();
    assert_eq!(get(&d.cached, "secret/none"), None);
    // A put through the cache replaces the negative entry.
    d.cached.put("secret/none", b"mine").unwrap();
    assert_eq!(get(&d.cached, "secret/none").as_deref(), Some(&b"mine"[..]));
}

/// Caches `key` (value `old`), changes it behind the cache to `behind`, runs `write` through
/// the cache and returns what a read gives afterwards.
fn after_write(
    key: &str,
    write: impl FnOnce(&dyn Store) -> Result<(), StoreError>,
) -> (Result<(), StoreError>, Option<Vec<u8>>) {
    let d = db();
    d.cached.put(key, b"old").unwrap();
    assert_eq!(get(&d.cached, key).as_deref(), Some(&b"old"[..]));
    d.raw.put(key, b"behind").unwrap();
    assert_eq!(get(&d.cached, key).as_deref(), Some(&b"old"[..]), "cached");
    let r = write(&d.cached);
    (r, get(&d.cached, key))
}

#[test]
fn every_write_path_invalidates() {
    let (r, v) = after_write("k", |s| s.put("k", b"put"));
    assert!(r.is_ok());
    assert_eq!(v.as_deref(), Some(&b"put"[..]));

    let (r, v) = after_write("k", |s| s.delete("k"));
    assert!(r.is_ok());
    assert_eq!(v, None);

    let (r, v) = after_write("k", |s| {
        s.transaction(&[
            TxOp::put("other", b"x".to_vec()),
            TxOp::put("k", b"tx".to_vec()),
        ])
    });
    assert!(r.is_ok());
    assert_eq!(v.as_deref(), Some(&b"tx"[..]));

    let (r, v) = after_write("k", |s| s.transaction(&[TxOp::delete("k")]));
    assert!(r.is_ok());
    assert_eq!(v, None);

    // A transaction that only checks the key still drops it.
    let (r, v) = after_write("k", |s| {
        s.transaction(&[TxOp::check("k", Some(b"behind".to_vec()))])
    });
    assert!(r.is_ok());
    assert_eq!(v.as_deref(), Some(&b"behind"[..]));
}

#[test]
fn a_failed_transaction_invalidates_every_key_it_touched() {
    // A failed check: nothing written, but the keys are dropped anyway (conservative).
    let (r, v) = after_write("k", |s| {
        s.transaction(&[
            TxOp::put("k", b"never".to_vec()),
            TxOp::check("elsewhere", Some(b"wrong".to_vec())),
        ])
    });
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(v.as_deref(), Some(&b"behind"[..]));

    // An invalid key later in the batch.
    let (r, v) = after_write("k", |s| {
        s.transaction(&[TxOp::put("k", b"never".to_vec()), TxOp::delete("")])
    });
    assert!(matches!(r, Err(StoreError::InvalidKey { .. })), "{r:?}");
    assert_eq!(v.as_deref(), Some(&b"behind"[..]));

    // A failed single put (invalid value is impossible; an invalid key is): the cache stays
    // consistent and the cached key is untouched by a write to another key.
    let (r, v) = after_write("k", |s| s.put("", b"x"));
    assert!(r.is_err());
    assert_eq!(v.as_deref(), Some(&b"old"[..]));
}

#[test]
fn invalidate_all_drops_everything() {
    let d = db();
    for k in ["a", "b", "c"] {
        d.cached.put(k, k.as_bytes()).unwrap();
        get(&d.cached, k);
        d.raw.put(k, b"new").unwrap();
    }
    assert_eq!(d.cached.stats().entries, 3);
    d.cached.invalidate_all();
    assert_eq!(d.cached.stats().entries, 0);
    for k in ["a", "b", "c"] {
        assert_eq!(get(&d.cached, k).as_deref(), Some(&b"new"[..]));
    }
}

#[test]
fn the_entry_bound_holds_and_a_key_in_use_survives_a_scan() {
    let d = db_with(CacheLimits {
        max_entries: 8,
        ..CacheLimits::default()
    });
    d.cached.put("hot", b"h").unwrap();
    get(&d.cached, "hot");
    for i in 0..100 {
        get(&d.cached, &format!("cold/{i}"));
        get(&d.cached, "hot");
        assert!(d.cached.stats().entries <= 8);
    }
    let s = d.cached.stats();
    assert_eq!(s.entries, 8);
    assert_eq!(s.evictions, 101 - 8);
    // CLOCK gave "hot" a second chance every time: all 100 of its later reads were hits.
    assert_eq!(s.hits, 100, "{s:?}");
}

#[test]
fn the_byte_bound_holds_and_large_values_are_not_cached() {
    let d = db_with(CacheLimits {
        max_entries: 1000,
        max_bytes: 4096,
        max_value_bytes: 1024,
    });
    for i in 0..50 {
        let k = format!("v/{i}");
        d.cached.put(&k, &[7u8; 600]).unwrap();
        get(&d.cached, &k);
        assert!(d.cached.stats().bytes <= 4096, "{:?}", d.cached.stats());
    }
    let s = d.cached.stats();
    assert!(s.entries >= 4 && s.evictions > 0, "{s:?}");

    d.cached.put("big", &[1u8; 2000]).unwrap();
    let before = d.cached.stats();
    assert_eq!(get(&d.cached, "big").map(|v| v.len()), Some(2000));
    assert_eq!(get(&d.cached, "big").map(|v| v.len()), Some(2000));
    let after = d.cached.stats();
    assert_eq!(
        after.misses - before.misses,
        2,
        "a large value is read every time"
    );
    assert_eq!(after.hits, before.hits);
}

#[test]
fn the_barriers_own_keys_are_not_cached() {
    let d = db();
    assert_eq!(get(&d.cached, "core/keyring"), None);
    d.raw
        .put("core/keyring", b"rotated by another process")
        .unwrap();
    assert!(get(&d.cached, "core/keyring").is_some());
    assert_eq!(d.cached.stats().entries, 0);
}

#[test]
fn under_the_barrier_the_cache_holds_only_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let cached = Arc::new(CachedStore::new(
        SqliteStore::open(dir.path().join("keep.db")).unwrap(),
    ));
    let barrier = Barrier::initialize(cached.clone(), RootKey::from_bytes([9; 32])).unwrap();
    barrier.put("secret/pw", b"hunter2").unwrap();
    assert_eq!(&**barrier.get("secret/pw").unwrap().unwrap(), b"hunter2");
    assert_eq!(&**barrier.get("secret/pw").unwrap().unwrap(), b"hunter2");
    assert_eq!(cached.stats().hits, 1);
    // What the cache hands out is the stored entry: 33 bytes of envelope, no plaintext.
    let held = cached.get("secret/pw").unwrap().unwrap();
    assert_eq!(held.len(), b"hunter2".len() + keep_store::barrier::OVERHEAD);
    assert!(!held.windows(7).any(|w| w == b"hunter2"));
}

/// A store whose `get` of one key, while armed, reads the value and then waits at a
/// rendezvous twice: once to say "read done", once for "go on". The test puts a write in
/// between, so the read is a stale one by the time it returns.
struct SlowRead {
    inner: SqliteStore,
    armed: AtomicBool,
    gate: Rendezvous,
}

impl Store for SlowRead {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self.inner.get(key)?;
        if key == "race" && self.armed.swap(false, Ordering::SeqCst) {
            self.gate.wait();
            self.gate.wait();
        }
        Ok(v)
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix)
    }
    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        self.inner.transaction(ops)
    }
}

fn stale_read_race(write: impl FnOnce(&dyn Store)) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let cached = Arc::new(CachedStore::new(SlowRead {
        inner: SqliteStore::open(dir.path().join("keep.db")).unwrap(),
        armed: AtomicBool::new(false),
        gate: Rendezvous::new(2),
    }));
    cached.put("race", b"old").unwrap();
    cached.inner().armed.store(true, Ordering::SeqCst);
    let reader = {
        let cached = cached.clone();
        thread::spawn(move || cached.get("race").unwrap())
    };
    // The reader has read "old" from the backend and not yet installed it.
    cached.inner().gate.wait();
    write(&*cached);
    cached.inner().gate.wait();
    // The reader's own answer may be "old" (its read came first), but it must not stay.
    let seen = reader.join().unwrap();
    assert_eq!(seen.as_deref(), Some(&b"old"[..]));
    assert_eq!(
        cached.stats().entries,
        0,
        "the stale read was not installed"
    );
    cached.get("race").unwrap()
}

#[test]
fn a_read_that_raced_a_write_does_not_install_a_stale_value() {
    assert_eq!(
        stale_read_race(|s| s.put("race", b"new").unwrap()).as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(stale_read_race(|s| s.delete("race").unwrap()), None);
    assert_eq!(
        stale_read_race(|s| s.transaction(&[TxOp::put("race", b"tx".to_vec())]).unwrap())
            .as_deref(),
        Some(&b"tx"[..])
    );
}

#[test]
fn concurrent_readers_and_writers_end_consistent() {
    // Four threads read while one writes increasing values; once the writer is done, every
    // read must see its last value (no stale entry survived).
    let dir = tempfile::tempdir().unwrap();
    let cached = Arc::new(CachedStore::new(
        SqliteStore::open(dir.path().join("keep.db")).unwrap(),
    ));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (c, done) = (cached.clone(), done.clone());
            thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    for k in ["x/0", "x/1"] {
                        c.get(k).unwrap();
                    }
                }
            })
        })
        .collect();
    for i in 0..200u32 {
        cached
            .put(["x/0", "x/1"][i as usize % 2], &i.to_be_bytes())
            .unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(get(&*cached, "x/0"), Some(198u32.to_be_bytes().to_vec()));
    assert_eq!(get(&*cached, "x/1"), Some(199u32.to_be_bytes().to_vec()));
}
