//! [`Tracked`]: any [`Store`] with a record of whether its last write reached the backend, so
//! a server can report storage faults in its health check instead of failing writes quietly.
//!
//! Only backend faults count ([`StoreError::Backend`]: an I/O error, a full disk, a read-only
//! database or WAL): a compare-and-set conflict or an invalid key is the caller's problem, not
//! the storage's. The record clears on the next write that succeeds; [`WriteHealth::probe`]
//! makes such a write without changing anything, so health can recover without traffic.
//!
//! The probe writes as many bytes as the write that failed: on a full disk a tiny write can
//! still fit (SQLite reuses WAL space a failed write had already allocated), and a probe that
//! small would turn health green while real writes keep failing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Store, StoreError, TxOp};

/// The key [`WriteHealth::probe`] writes and deletes again in one transaction. Nothing is
/// ever stored there, so nothing above the barrier can see it.
pub const PROBE_KEY: &str = "core/storage-probe";

/// How often [`WriteHealth::probe_due`] allows a probe.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The largest probe value: more than any request body the server accepts by default.
const MAX_PROBE_BYTES: usize = 4 << 20;

/// Whether writes to a store currently succeed; shared between [`Tracked`] and whoever
/// reports health.
pub struct WriteHealth {
    failed: AtomicBool,
    /// Value bytes of the last write that failed: what the probe writes.
    failed_bytes: AtomicUsize,
    last_error: Mutex<Option<String>>,
    last_probe: Mutex<Option<Instant>>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for WriteHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHealth")
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

impl WriteHealth {
    /// Whether the last write succeeded (true before the first write).
    pub fn healthy(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    /// Why the last write failed, while [`healthy`](Self::healthy) is false. It names the
    /// operation and the backend's error (never a value: values are bound as parameters).
    pub fn last_error(&self) -> Option<String> {
        if self.healthy() {
            return None;
        }
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// True at most once per second: whether a caller should [`probe`](Self::probe) now.
    pub fn probe_due(&self) -> bool {
        let Ok(mut last) = self.last_probe.lock() else {
            return false;
        };
        let due = last.is_none_or(|t| t.elapsed() >= PROBE_INTERVAL);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// A write as large as the one that failed, which leaves nothing behind (a zero-filled
    /// value put at [`PROBE_KEY`] and deleted again), recorded like any other write: health
    /// turns green once the storage takes such a write again. Blocking.
    pub fn probe(&self) -> Result<(), StoreError> {
        let size = self
            .failed_bytes
            .load(Ordering::Acquire)
            .min(MAX_PROBE_BYTES);
        // Two commits, so the bytes really reach the WAL (a put deleted within its own
        // transaction may never be written out). A delete that fails after the put leaves
        // zeros under `core/`, which nothing lists or reads; the next probe removes them.
        let r = self
            .store
            .put(PROBE_KEY, &vec![0u8; size])
            .and_then(|()| self.store.delete(PROBE_KEY));
        self.record(&r, size);
        r
    }

    fn record<T>(&self, r: &Result<T, StoreError>, bytes: usize) {
        match r {
            Ok(_) => self.failed.store(false, Ordering::Release),
            Err(e @ StoreError::Backend { .. }) => {
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.to_string());
                }
                self.failed_bytes.store(bytes, Ordering::Release);
                self.failed.store(true, Ordering::Release);
            }
            Err(_) => {}
        }
    }
}

/// A store whose writes are recorded in a [`WriteHealth`]; reads pass through unchanged.
#[derive(Debug)]
pub struct Tracked {
    health: Arc<WriteHealth>,
}

impl Tracked {
    /// Wraps `store`; the returned [`WriteHealth`] reports on its writes.
    pub fn new(store: Arc<dyn Store>) -> (Tracked, Arc<WriteHealth>) {
        let health = Arc::new(WriteHealth {
            failed: AtomicBool::new(false),
            failed_bytes: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            last_probe: Mutex::new(None),
            store,
        });
        (
            Tracked {
                health: Arc::clone(&health),
            },
            health,
        )
    }

    fn inner(&self) -> &dyn Store {
        &*self.health.store
    }
}

impl Store for Tracked {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner().get(key)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let r = self.inner().put(key, value);
        self.health.record(&r, value.len());
        r
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let r = self.inner().delete(key);
        self.health.record(&r, 0);
        r
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner().list(prefix)
    }

    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        let r = self.inner().transaction(ops);
        // A read-only transaction (only checks) proves nothing about writes.
        if ops.iter().any(|op| !matches!(op, TxOp::Check { .. })) {
            let bytes = ops
                .iter()
                .map(|op| match op {
                    TxOp::Put { value, .. } => value.len(),
                    _ => 0,
                })
                .sum();
            self.health.record(&r, bytes);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::MemStore;

    /// Fails every write with a backend error while `fail` is set.
    struct Breaking {
        inner: MemStore,
        fail: AtomicBool,
    }

    impl Breaking {
        fn check(&self) -> Result<(), StoreError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Backend {
                    op: "put",
                    source: "attempt to write a readonly database".into(),
                });
            }
            Ok(())
        }
    }

    impl Store for Breaking {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.check()?;
            self.inner.put(key, value)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.check()?;
            self.inner.delete(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list(prefix)
        }
        fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
            if ops.iter().any(|o| !matches!(o, TxOp::Check { .. })) {
                self.check()?;
            }
            self.inner.transaction(ops)
        }
    }

    #[test]
    fn backend_write_faults_turn_health_red_until_a_write_succeeds() {
        let raw = Arc::new(Breaking {
            inner: MemStore::new(),
            fail: AtomicBool::new(false),
        });
        let (store, health) = Tracked::new(raw.clone());
        store.put("a", b"1").unwrap();
        assert!(health.healthy());
        raw.fail.store(true, Ordering::SeqCst);
        assert!(store.put("a", b"2").is_err());
        assert!(!health.healthy());
        assert!(health.last_error().unwrap().contains("readonly database"));
        // Reads and a conflict do not change the verdict either way.
        assert_eq!(store.get("a").unwrap().unwrap(), b"1");
        assert!(store.transaction(&[TxOp::check("a", None)]).is_err());
        assert!(!health.healthy());
        assert!(health.probe().is_err());
        raw.fail.store(false, Ordering::SeqCst);
        health.probe().unwrap();
        assert!(health.healthy());
        assert_eq!(health.last_error(), None);
        // The probe left nothing behind.
        assert_eq!(store.get(PROBE_KEY).unwrap(), None);
        assert_eq!(store.list("core/").unwrap(), Vec::<String>::new());
        // A caller's mistake is not a storage fault.
        assert!(store.put("", b"x").is_err());
        assert!(health.healthy());
    }

    #[test]
    fn probes_are_rate_limited() {
        let (_store, health) = Tracked::new(Arc::new(MemStore::new()));
        assert!(health.probe_due());
        assert!(!health.probe_due());
    }
}
