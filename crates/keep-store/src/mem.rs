//! [`MemStore`]: the in-memory backend, for tests and for server unit tests that want real
//! storage semantics without a file.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Store, StoreError, TxOp, child_of, prefix_successor, validate_key, validate_prefix};

/// A [`Store`] in memory: a `BTreeMap` behind one mutex. Nothing is persisted.
///
/// Clones share the same map, like two connections to one database: a test can keep a clone
/// to look at (or tamper with) what the [`Barrier`](crate::Barrier) wrote, and
/// `testing::conformance_shared` uses two clones as two "nodes".
#[derive(Clone, Default)]
pub struct MemStore {
    map: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries the store holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while the lock was held cannot leave the map half-updated: every mutation
        // below is a single insert/remove, or a batch applied only after all checks passed.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Entry count only: the values are ciphertexts or, in tests, secrets.
        f.debug_struct("MemStore")
            .field("entries", &self.len())
            .finish()
    }
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        validate_key(key)?;
        Ok(self.lock().get(key).cloned())
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        validate_key(key)?;
        self.lock().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.lock().remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let map = self.lock();
        let upper = prefix_successor(prefix);
        let upper_bound = match &upper {
            Some(u) => Bound::Excluded(u.as_str()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut lower = prefix.to_owned();
        // Walk the range; after a folder, jump past all of its keys instead of visiting them.
        loop {
            let mut jump = None;
            for (key, _) in map.range::<str, _>((Bound::Included(lower.as_str()), upper_bound)) {
                let Some((child, is_folder)) = child_of(prefix, key) else {
                    continue;
                };
                out.push(child.to_owned());
                if is_folder {
                    jump = Some(prefix_successor(&format!("{prefix}{child}")));
                    break;
                }
            }
            match jump {
                Some(Some(next)) => lower = next,
                _ => break,
            }
        }
        Ok(out)
    }

    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        for op in ops {
            validate_key(op.key())?;
        }
        let mut map = self.lock();
        // Stage the writes so a failed check leaves the map untouched, and so a check sees
        // the writes before it in the same transaction.
        let mut staged: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
        for op in ops {
            match op {
                TxOp::Put { key, value } => {
                    staged.insert(key, Some(value));
                }
                TxOp::Delete { key } => {
                    staged.insert(key, None);
                }
                TxOp::Check { key, expected } => {
                    let current = match staged.get(key.as_str()) {
                        Some(v) => *v,
                        None => map.get(key).map(Vec::as_slice),
                    };
                    if current != expected.as_deref() {
                        return Err(StoreError::Conflict { key: key.clone() });
                    }
                }
            }
        }
        for (key, value) in staged {
            match value {
                Some(v) => map.insert(key.to_owned(), v.to_vec()),
                None => map.remove(key),
            };
        }
        Ok(())
    }
}
