//! keep's storage: a narrow [`Store`] of opaque bytes, the encryption [`Barrier`] above it,
//! the unseal material that opens the barrier, and one conformance suite for every backend.
//!
//! # Layers
//!
//! ```text
//!   keep-server (KV v2, tokens, roles, PKI …)      plaintext, via Barrier
//!        │
//!   Barrier  ── AES-256-GCM, keyring of terms ──   unlocked by the root key (seal module)
//!        │
//!   CachedStore ── bounded read cache of ciphertexts ── (optional; cache module)
//!        │
//!   Store    ── opaque bytes ──                    SqliteStore, MemStore, (PostgreSQL later)
//! ```
//!
//! - [`Store`] is deliberately dumb: get, put, delete, list by prefix and an atomic
//!   [`transaction`](Store::transaction) with compare-and-set ([`TxOp::Check`]). It knows
//!   nothing of encryption, so a new backend is small and is proven correct by one suite,
//!   `testing::conformance` (feature `testing`), the way Vault's `sdk/physical/testing.go`
//!   proves its backends.
//! - [`Barrier`] encrypts every value before it reaches a store and authenticates it on the
//!   way back. The server talks to storage only through it.
//! - [`CachedStore`] caches reads below the barrier (so it holds only ciphertext) and has one
//!   invalidation point, [`CachedStore::invalidate`], that every write goes through.
//! - [`seal`] turns unseal material (a 0600 key file, or a passphrase stretched with argon2id)
//!   into the root key that opens the barrier, and records in plaintext how to do that
//!   (`core/seal-config`), so a sealed server can still report its state.
//!
//! All calls are synchronous and blocking (SQLite, fsync). An async server calls them through
//! `tokio::task::spawn_blocking`; every type here is `Send + Sync`.
//!
//! # Threat model
//!
//! **The store is untrusted.** Whoever can read the database — a backup, a copied disk, a DBA
//! of a shared PostgreSQL, a process running as another user that gets hold of the file — must
//! learn no secret value, and whoever can write it must not be able to make keep accept a
//! value keep did not write at that key.
//!
//! What the barrier guarantees, as long as the root key stays secret:
//!
//! - **Confidentiality of values.** Every value is AES-256-GCM encrypted under a random data
//!   key (a keyring *term*) with a fresh random 96-bit nonce per write. The term keys are
//!   stored only wrapped by the root key; the root key itself is never stored.
//! - **Integrity and binding.** The GCM tag covers the ciphertext, the header (format version
//!   and term) and the **storage key path** (associated data). A flipped bit, a truncated
//!   entry, or a ciphertext copied from one key to another (say, an attacker's own secret
//!   moved onto `auth/cert/certs/admin`) fails with [`BarrierError::Integrity`] naming the key;
//!   keep never returns wrong plaintext.
//! - **Rotation.** [`Barrier::rotate`] adds a term; new writes use it, old entries stay
//!   readable under their own term.
//!
//! What it does **not** guarantee — say so to users, and design above it accordingly:
//!
//! - **Key names are not hidden.** Paths such as `secret/data/openclaw/llm` are stored in
//!   plaintext (they are the index). Never put a secret in a path.
//! - **Sizes and timing are not hidden.** A ciphertext is exactly the plaintext length plus
//!   33 bytes; the number of entries and when they change are visible.
//! - **No protection against rollback, replay or deletion.** An attacker who can write the
//!   store can put back an *older* ciphertext of the *same* key (it still authenticates),
//!   delete entries, or restore a whole old database. (Vault's barrier has the same limit.)
//!   Detecting that needs a trusted counter outside the store; keep does not have one.
//! - **No availability.** Whoever can write the store can destroy it; keep backups.
//! - **Nothing against a compromised server process or root key.** An unsealed server holds
//!   the keyring in memory; whoever reads the unseal key file or knows the passphrase can
//!   decrypt everything.
//! - The seal configuration (argon2 parameters and salt) is plaintext by design: it is not
//!   secret, and tampering with it only makes unsealing fail.
//!
//! # Cargo features
//!
//! - `testing`: compiles `keep_store::testing`, the backend conformance suite. This crate's own tests
//!   enable it through a self dev-dependency; a future backend's tests (and the server's) enable
//!   it the same way. It is off in production builds, so no test code ships in the binary.
#![forbid(unsafe_code)]

pub mod barrier;
pub mod cache;
pub mod error;
pub mod health;
pub mod mem;
pub mod seal;
pub mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::fmt;
use std::sync::Arc;

pub use barrier::{Barrier, KeyStatus};
pub use cache::{CacheLimits, CacheStats, CachedStore};
pub use error::{BarrierError, StoreError};
pub use health::{Tracked, WriteHealth};
pub use mem::MemStore;
pub use seal::{Argon2Params, RootKey, RootKeySource, SealConfig, SealStatus, SealType};
pub use sqlite::SqliteStore;

/// The longest key a store accepts, in bytes.
///
/// Generous for Vault-style paths (`secret/metadata/team/agent/…`), small enough that an
/// index over keys stays cheap and that a hostile path cannot bloat the database.
pub const MAX_KEY_LEN: usize = 1024;

/// A storage backend: a sorted map from string keys to opaque byte values.
///
/// This is the whole contract every backend (SQLite, memory, later PostgreSQL) implements, and
/// `testing::conformance` checks all of it. Values are opaque: above the [`Barrier`] they are
/// ciphertext, and a backend must never interpret, log or print them.
///
/// Calls block (disk I/O, fsync, locks). Every successful write is durable when the call
/// returns: an acknowledged write survives a crash of the process.
pub trait Store: Send + Sync {
    /// Reads the value at `key`, or `None` when there is none.
    ///
    /// An empty value is a value: `Some(vec![])` is not the same as `None`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes `value` at `key`, replacing any previous value.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`. Removing a key that does not exist succeeds (deletes are idempotent, so
    /// a retried request cannot fail spuriously).
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Lists the immediate children under `prefix`, Vault-style.
    ///
    /// For every key that starts with `prefix`, the rest of the key is returned up to and
    /// including its first `/`: a plain child `b` appears as `b`, a sub-"folder" appears once as
    /// `c/` however many keys lie below it. The result is sorted by bytes and has no
    /// duplicates. A key exactly equal to `prefix` is not its own child and is left out.
    ///
    /// With keys `a/b`, `a/c/d`, `a/c/e`: `list("a/") == ["b", "c/"]`, `list("") == ["a/"]`.
    /// `prefix` need not end at a folder boundary: `list("a/c")` is `["/"]`. An unknown prefix
    /// gives an empty list, not an error.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Applies `ops` atomically: all of them, or none.
    ///
    /// Ops run in order, and a [`TxOp::Check`] sees the writes before it in the same
    /// transaction. If any check fails the transaction changes nothing and returns
    /// [`StoreError::Conflict`] naming the key. An empty list succeeds and does nothing.
    ///
    /// This is the compare-and-set primitive that KV v2 `cas` and several server nodes sharing
    /// one database rely on, so a backend must make the checks and the writes one atomic unit
    /// also against other processes (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a serializable
    /// transaction or row locks).
    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError>;
}

/// One step of a [`Store::transaction`].
///
/// `Debug` shows keys and value lengths, never the bytes: above the barrier these are
/// ciphertexts, but at the barrier's own API they are plaintext secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum TxOp {
    /// Write `value` at `key`.
    Put {
        /// The storage key.
        key: String,
        /// The bytes to store.
        value: Vec<u8>,
    },
    /// Remove `key` (no error if it is absent).
    Delete {
        /// The storage key.
        key: String,
    },
    /// Fail the whole transaction with [`StoreError::Conflict`] unless the current value at
    /// `key` equals `expected` (`None`: the key must be absent).
    Check {
        /// The storage key.
        key: String,
        /// The value the key must hold, or `None` if it must not exist.
        expected: Option<Vec<u8>>,
    },
}

impl TxOp {
    /// A [`TxOp::Put`].
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        TxOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A [`TxOp::Delete`].
    pub fn delete(key: impl Into<String>) -> Self {
        TxOp::Delete { key: key.into() }
    }

    /// A [`TxOp::Check`]: `expected` is the value the key must hold, `None` for "absent".
    pub fn check(key: impl Into<String>, expected: Option<Vec<u8>>) -> Self {
        TxOp::Check {
            key: key.into(),
            expected,
        }
    }

    /// The key this op touches.
    pub fn key(&self) -> &str {
        match self {
            TxOp::Put { key, .. } | TxOp::Delete { key } | TxOp::Check { key, .. } => key,
        }
    }
}

impl fmt::Debug for TxOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxOp::Put { key, value } => f
                .debug_struct("Put")
                .field("key", key)
                .field("value_len", &value.len())
                .finish(),
            TxOp::Delete { key } => f.debug_struct("Delete").field("key", key).finish(),
            TxOp::Check { key, expected } => f
                .debug_struct("Check")
                .field("key", key)
                .field("expected_len", &expected.as_ref().map(Vec::len))
                .finish(),
        }
    }
}

/// Checks that `key` is a valid storage key: not empty, no NUL byte, at most
/// [`MAX_KEY_LEN`] bytes.
///
/// Every backend calls this before touching storage, so all of them refuse the same keys.
/// NUL is refused because C-string based layers (SQLite's text functions, log lines) would
/// silently cut the key there.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::invalid_key(
            key,
            "a storage key must not be empty",
        ));
    }
    validate_prefix(key)
}

/// Checks a [`Store::list`] prefix: like [`validate_key`], but the empty prefix (list the
/// root) is allowed.
pub fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.len() > MAX_KEY_LEN {
        return Err(StoreError::invalid_key(
            prefix,
            "a storage key must be at most 1024 bytes",
        ));
    }
    if prefix.contains('\0') {
        return Err(StoreError::invalid_key(
            prefix,
            "a storage key must not contain a NUL byte",
        ));
    }
    Ok(())
}

/// The smallest string greater than every string that starts with `prefix`, or `None` when
/// there is no such string (empty prefix, or only `char::MAX`).
///
/// With it a prefix scan becomes the index range `key >= prefix AND key < successor`, which
/// SQL backends answer from the primary-key index without a full scan and without LIKE/GLOB
/// escaping. It works on chars rather than bytes so the bound stays valid UTF-8 (a TEXT bound
/// in SQLite, `text` in PostgreSQL); UTF-8 byte order equals code point order, so the bound is
/// the same.
pub fn prefix_successor(prefix: &str) -> Option<String> {
    let mut s = prefix.to_owned();
    while let Some(last) = s.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'), // skip the surrogate gap, which no char can be in
            n => char::from_u32(n),
        };
        if let Some(c) = next {
            s.push(c);
            return Some(s);
        }
    }
    None
}

/// Folds one key found under `prefix` into the child name [`Store::list`] reports, and says
/// whether it is a folder (so a backend can skip the rest of that folder's keys).
///
/// Returns `None` for the key equal to `prefix` itself.
pub(crate) fn child_of<'k>(prefix: &str, key: &'k str) -> Option<(&'k str, bool)> {
    let rest = key.get(prefix.len()..)?;
    if rest.is_empty() {
        return None;
    }
    Some(match rest.find('/') {
        Some(i) => (&rest[..=i], true),
        None => (rest, false),
    })
}

// Shared handles are stores too, so `Barrier<Arc<SqliteStore>>`, `Barrier<Arc<dyn Store>>` and
// a test that keeps a second handle on the raw store all work.
impl<S: Store + ?Sized> Store for Arc<S> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key)
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).put(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        (**self).list(prefix)
    }
    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        (**self).transaction(ops)
    }
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key)
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).put(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        (**self).list(prefix)
    }
    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        (**self).transaction(ops)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn successor_bounds_exactly_the_prefixed_keys() {
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a\u{7f}").as_deref(), Some("a\u{80}"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}\u{10FFFF}"), None);
        // Every key starting with the prefix sorts below the successor (byte order).
        let p = "x\u{FFFF}";
        let s = prefix_successor(p).unwrap_or_default();
        for k in ["x\u{FFFF}", "x\u{FFFF}\u{10FFFF}", "x\u{FFFF}zzz"] {
            assert!(
                k.as_bytes() >= p.as_bytes() && k.as_bytes() < s.as_bytes(),
                "{k:?}"
            );
        }
        assert!("x\u{10000}".as_bytes() >= s.as_bytes());
    }

    #[test]
    fn child_folding() {
        assert_eq!(child_of("a/", "a/b"), Some(("b", false)));
        assert_eq!(child_of("a/", "a/c/d"), Some(("c/", true)));
        assert_eq!(child_of("a", "a/c/d"), Some(("/", true)));
        assert_eq!(child_of("a/", "a/"), None);
    }

    #[test]
    fn debug_never_shows_values() {
        let op = TxOp::put("k", b"hunter2".to_vec());
        let shown = format!("{op:?} {:?}", TxOp::check("k", Some(b"hunter2".to_vec())));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("value_len: 7"), "{shown}");
    }
}
