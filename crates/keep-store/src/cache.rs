//! [`CachedStore`]: a bounded read cache in front of any [`Store`], with one invalidation
//! point.
//!
//! # Where it sits, and why there
//!
//! The cache goes **under** the [`Barrier`](crate::Barrier): `Barrier<CachedStore<…>>`. It
//! holds values exactly as the backend stores them, i.e. AES-GCM ciphertexts. Caching the
//! plaintext above the barrier would save one decryption per hit (about a microsecond for a
//! small secret, next to the tens of microseconds a SQLite read costs), but it would keep a
//! second, long-lived copy of every recently read secret in memory: that copy would have to be
//! zeroized on eviction, on invalidation and on seal, and a bug in any of those paths would
//! leave plaintext behind. Under the barrier none of that exists: a sealed server (one without
//! a `Barrier`) holds no plaintext, whatever the cache still contains, and the cache needs no
//! zeroizing — its contents are what an attacker could read from the database file anyway.
//!
//! # What is cached
//!
//! - [`get`](Store::get) results, including "absent" (negative entries: a probe for a secret
//!   that does not exist is as cheap as a hit).
//! - Not [`list`](Store::list): prefixes would need their own invalidation, and listing is
//!   rare next to reads.
//! - Not keys under `core/` (the keyring, the seal configuration, the storage probe): they are
//!   read at unseal or when another process has rotated the keyring, which is exactly when a
//!   cached copy would be wrong.
//! - Not values larger than [`CacheLimits::max_value_bytes`].
//!
//! The cache is bounded by entry count and by bytes (key + value + a fixed overhead per
//! entry), split over a few shards, each a CLOCK ring (second-chance eviction: a hit sets a
//! bit, the hand clears bits until it finds an entry not used since its last pass). No LRU
//! list to update on every hit, no dependency.
//!
//! # Consistency
//!
//! Every write (`put`, `delete`, `transaction` — every key its ops touch, also when it fails,
//! since a failed commit may still have reached the disk) goes to the backend first and then
//! through [`CachedStore::invalidate`]. That function is the only way anything leaves the cache
//! besides eviction, so a cross-node change feed (several servers on one PostgreSQL database)
//! only has to call it.
//!
//! A `get` that missed reads the backend without holding a lock, and only installs what it
//! read if its shard's *generation* did not change meanwhile. Every invalidation bumps the
//! generation of the key's shard, so a value read before a concurrent write cannot be
//! installed after that write's invalidation (it would be stale until evicted).
//!
//! Writes made by another process on the same database (a second server node, a CLI next to
//! a running server) do not pass through this cache; they become visible only through
//! [`CachedStore::invalidate`] or [`CachedStore::invalidate_all`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{Store, StoreError, TxOp};

/// Default entry bound: a few thousand secrets and their metadata, tokens and roles.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
/// Default byte bound: 16 MiB, small next to the server's own footprint.
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;
/// Default cap on one cached value: larger values are read from the backend every time.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 << 10;

/// Bytes counted per entry beyond its key and value (the slot, the index entry, two
/// allocations), so a flood of small negative entries still has a cost.
pub const ENTRY_OVERHEAD: usize = 96;

/// Keys the cache never holds: the barrier's own entries, which other processes change.
const UNCACHED_PREFIX: &str = "core/";

/// At most this many shards; fewer for a tiny cache, so the bounds stay exact.
const MAX_SHARDS: usize = 16;
/// A shard holds at least this many entries (unless the whole cache is smaller).
const MIN_SHARD_ENTRIES: usize = 64;
/// … and at least this many bytes, so a value up to the default cap fits in any shard.
const MIN_SHARD_BYTES: usize = DEFAULT_MAX_VALUE_BYTES;

/// Metric: `get`s answered from the cache.
pub const METRIC_HITS: &str = "keep_storage_cache_hits_total";
/// Metric: `get`s that went to the backend.
pub const METRIC_MISSES: &str = "keep_storage_cache_misses_total";
/// Metric: entries dropped to stay within the bounds.
pub const METRIC_EVICTIONS: &str = "keep_storage_cache_evictions_total";

/// Registers the cache metrics' help texts; call once after installing the recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        METRIC_HITS,
        "Storage reads answered from the read cache (values and known-absent keys)"
    );
    metrics::describe_counter!(METRIC_MISSES, "Storage reads that went to the backend");
    metrics::describe_counter!(
        METRIC_EVICTIONS,
        "Read cache entries dropped to stay within storage.cache max_entries / max_bytes"
    );
}

/// How big the cache may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries held (negative entries count).
    pub max_entries: usize,
    /// Most bytes held: keys, values and [`ENTRY_OVERHEAD`] per entry.
    pub max_bytes: usize,
    /// Values longer than this are never cached.
    pub max_value_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// A snapshot of the cache's counters, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `get`s answered from the cache.
    pub hits: u64,
    /// `get`s that went to the backend (including uncacheable keys).
    pub misses: u64,
    /// Entries dropped to stay within the bounds.
    pub evictions: u64,
    /// Keys passed to [`CachedStore::invalidate`] (cached or not).
    pub invalidations: u64,
    /// Entries held now.
    pub entries: usize,
    /// Bytes held now, as the bound counts them.
    pub bytes: usize,
}

/// A [`Store`] that caches `get` results of `S`; see the module documentation.
pub struct CachedStore<S: Store> {
    inner: S,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    max_value_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
}

impl<S: Store> CachedStore<S> {
    /// Wraps `inner` with the default limits.
    pub fn new(inner: S) -> Self {
        Self::with_limits(inner, CacheLimits::default())
    }

    /// Wraps `inner`. A limit of 0 entries or 0 bytes caches nothing.
    pub fn with_limits(inner: S, limits: CacheLimits) -> Self {
        let n = (limits.max_entries / MIN_SHARD_ENTRIES)
            .min(limits.max_bytes / MIN_SHARD_BYTES)
            .clamp(1, MAX_SHARDS);
        let shards = (0..n)
            .map(|_| Mutex::new(Shard::new(limits.max_entries / n, limits.max_bytes / n)))
            .collect();
        CachedStore {
            inner,
            shards,
            hasher: RandomState::new(),
            max_value_bytes: limits.max_value_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Drops whatever the cache holds for `keys`, and makes sure no read that started before
    /// this call installs a value for them afterwards.
    ///
    /// **This is the one invalidation point.** Every write through this store ends here, and
    /// so must every change made elsewhere: when several server nodes share one database, the
    /// cross-node change feed (PostgreSQL `LISTEN/NOTIFY`, say) calls this with the keys
    /// another node wrote. Keys that are not cached are fine to pass.
    pub fn invalidate<'k>(&self, keys: impl IntoIterator<Item = &'k str>) {
        for key in keys {
            self.invalidations.fetch_add(1, Ordering::Relaxed);
            self.lock(self.shard_of(key)).invalidate(key);
        }
    }

    /// Drops everything, e.g. when a cross-node change feed lost messages and cannot say
    /// which keys changed.
    pub fn invalidate_all(&self) {
        for shard in self.shards.iter() {
            self.lock(shard).clear();
        }
    }

    /// The counters so far, and the current size.
    pub fn stats(&self) -> CacheStats {
        let (mut entries, mut bytes) = (0, 0);
        for shard in self.shards.iter() {
            let s = self.lock(shard);
            entries += s.slots.len();
            bytes += s.bytes;
        }
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            entries,
            bytes,
        }
    }

    fn shard_of(&self, key: &str) -> &Mutex<Shard> {
        // The modulo keeps the index below the shard count, which is at least 1.
        let i = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        &self.shards[i]
    }

    fn lock<'a>(&self, shard: &'a Mutex<Shard>) -> MutexGuard<'a, Shard> {
        // Every mutation of a shard keeps its index, slots and byte count consistent before
        // anything that could panic, so a poisoned shard is still a valid one.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cacheable(&self, key: &str, value: &Option<Vec<u8>>) -> bool {
        !key.starts_with(UNCACHED_PREFIX)
            && value
                .as_ref()
                .is_none_or(|v| v.len() <= self.max_value_bytes)
    }
}

impl<S: Store> Store for CachedStore<S> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let shard = self.shard_of(key);
        let generation = {
            let mut s = self.lock(shard);
            if let Some(v) = s.lookup(key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(METRIC_HITS).increment(1);
                return Ok(v);
            }
            s.generation
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(METRIC_MISSES).increment(1);
        let value = self.inner.get(key)?;
        if self.cacheable(key, &value) {
            let evicted = self.lock(shard).install(key, value.clone(), generation);
            if evicted > 0 {
                self.evictions.fetch_add(evicted, Ordering::Relaxed);
                metrics::counter!(METRIC_EVICTIONS).increment(evicted);
            }
        }
        Ok(value)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let r = self.inner.put(key, value);
        self.invalidate([key]);
        r
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let r = self.inner.delete(key);
        self.invalidate([key]);
        r
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix)
    }

    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        let r = self.inner.transaction(ops);
        // Conservatively every key, checks included, and also on failure: a commit that
        // reported an error may still have reached the disk.
        self.invalidate(ops.iter().map(TxOp::key));
        r
    }
}

impl<S: Store> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counters only: the values are ciphertexts, but nothing here needs to show them.
        f.debug_struct("CachedStore")
            .field("shards", &self.shards.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// One cached result: the value, or `None` for "absent".
struct Slot {
    key: String,
    value: Option<Vec<u8>>,
    /// CLOCK's second-chance bit, set by a hit.
    referenced: bool,
}

impl Slot {
    fn cost(&self) -> usize {
        cost(&self.key, &self.value)
    }
}

fn cost(key: &str, value: &Option<Vec<u8>>) -> usize {
    // The key is held twice (slot and index).
    2 * key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

/// A CLOCK ring: the slots in a vector, an index from key to slot, a hand.
struct Shard {
    index: HashMap<String, usize>,
    slots: Vec<Slot>,
    hand: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// Bumped by every invalidation in this shard; a read installs only if it is unchanged.
    generation: u64,
}

impl Shard {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Shard {
            index: HashMap::new(),
            slots: Vec::new(),
            hand: 0,
            bytes: 0,
            max_entries,
            max_bytes,
            generation: 0,
        }
    }

    fn lookup(&mut self, key: &str) -> Option<Option<Vec<u8>>> {
        let i = *self.index.get(key)?;
        let slot = &mut self.slots[i];
        slot.referenced = true;
        Some(slot.value.clone())
    }

    /// Installs `value` for `key` if nothing was invalidated in this shard since the reader
    /// saw `generation`. Returns how many entries were evicted to make room.
    fn install(&mut self, key: &str, value: Option<Vec<u8>>, generation: u64) -> u64 {
        let size = cost(key, &value);
        if generation != self.generation || self.max_entries == 0 || size > self.max_bytes {
            return 0;
        }
        if let Some(&i) = self.index.get(key) {
            // Another reader of the same generation installed it first; keep the newer read.
            self.remove_at(i);
        }
        let mut evicted = 0;
        while self.slots.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            if !self.evict_one() {
                break;
            }
            evicted += 1;
        }
        self.index.insert(key.to_owned(), self.slots.len());
        self.slots.push(Slot {
            key: key.to_owned(),
            value,
            referenced: false,
        });
        self.bytes += size;
        evicted
    }

    /// CLOCK: clears reference bits until it finds an entry that was not used since the hand
    /// last passed it, and drops that one. False when the shard is empty.
    fn evict_one(&mut self) -> bool {
        // Two passes at most: the first clears every bit it meets.
        for _ in 0..2 * self.slots.len() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &mut self.slots[self.hand];
            if slot.referenced {
                slot.referenced = false;
                self.hand += 1;
            } else {
                self.remove_at(self.hand);
                return true;
            }
        }
        false
    }

    fn remove_at(&mut self, i: usize) {
        let slot = self.slots.swap_remove(i);
        self.index.remove(&slot.key);
        self.bytes -= slot.cost();
        // The last slot moved into `i`: point its index entry there.
        if let Some(moved) = self.slots.get(i)
            && let Some(at) = self.index.get_mut(&moved.key)
        {
            *at = i;
        }
    }

    fn invalidate(&mut self, key: &str) {
        self.generation += 1;
        if let Some(&i) = self.index.get(key) {
            self.remove_at(i);
        }
    }

    fn clear(&mut self) {
        self.generation += 1;
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
        self.bytes = 0;
    }
}
