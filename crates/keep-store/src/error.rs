//! The two error types: [`StoreError`] from backends, [`BarrierError`] from the barrier and
//! the unseal material.
//!
//! Neither ever carries a value, a key byte or a passphrase: only storage key *names* (which
//! are not secret, see the crate's threat model), file paths, modes and fixed reasons. Keys
//! named in errors are truncated so a hostile 1 MiB path cannot flood a log line.

use std::path::PathBuf;

use crate::seal::SealType;

/// A boxed error from a backend library (rusqlite, later tokio-postgres).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a [`Store`](crate::Store) call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key (or list prefix) is not acceptable to any backend: empty, containing NUL, or
    /// longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN). Nothing was read or written.
    #[error("invalid storage key {key:?}: {reason}")]
    InvalidKey {
        /// The key, truncated to 80 characters.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A [`TxOp::Check`](crate::TxOp::Check) did not match the current value, so the
    /// transaction changed nothing. Callers doing compare-and-set re-read and retry or report
    /// a conflict to their client.
    #[error(
        "storage key {key:?} does not hold the expected value (compare-and-set conflict); nothing was written"
    )]
    Conflict {
        /// The key whose check failed.
        key: String,
    },

    /// The storage could not be opened or created (missing directory, permissions, not a
    /// database).
    #[error("cannot open storage {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        source: BoxError,
    },

    /// A file or directory SQLite needs cannot be used by this process (wrong owner or mode,
    /// a read-only mount, not a regular file). Found before SQLite touches it: SQLite itself
    /// would open an unwritable database read-only without a word, fail every write on an
    /// unwritable WAL, and crash the process with SIGBUS on an unwritable `-shm`.
    #[error("{path}: {problem}; fix: {fix}")]
    Access {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong, with owner, mode and the uid keep runs as.
        problem: String,
        /// The command or change that fixes it.
        fix: String,
    },

    /// The database was written by a newer keep with a schema this build does not know.
    /// Refusing is safer than guessing: an older binary could drop what it does not
    /// understand.
    #[error(
        "storage schema version {found} is newer than this keep supports ({supported}); run a keep at least as new as the one that last wrote it"
    )]
    SchemaTooNew {
        /// The version found in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// Another connection or process held a lock for longer than the busy timeout. The
    /// operation did not happen and may be retried; a server maps this to 503.
    #[error("storage busy: {op} waited too long for a lock held by another connection or process")]
    Busy {
        /// What was being done (`get`, `put`, `transaction` …).
        op: &'static str,
    },

    /// Any other backend failure (I/O error, disk full, corrupt database …).
    #[error("storage {op} failed: {source}")]
    Backend {
        /// What was being done (`get`, `put`, `transaction` …).
        op: &'static str,
        /// The backend's error. It never contains a value: values are bound as parameters,
        /// which database error messages do not echo.
        source: BoxError,
    },
}

impl StoreError {
    /// An [`InvalidKey`](StoreError::InvalidKey) with the key truncated for display.
    pub(crate) fn invalid_key(key: &str, reason: &'static str) -> Self {
        StoreError::InvalidKey {
            key: shorten(key),
            reason,
        }
    }
}

/// Why a [`Barrier`](crate::Barrier) call or an unseal step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// The store below failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The entry at `key` is not a ciphertext keep wrote at that key: modified, truncated,
    /// copied from another key, or from another keep installation. The value is not returned.
    #[error(
        "storage entry {key:?} failed its integrity check ({reason}): it was modified, truncated or copied from another key"
    )]
    Integrity {
        /// The key whose entry failed.
        key: String,
        /// Which check failed (`authentication failed`, `truncated` …).
        reason: &'static str,
    },

    /// The entry at `key` was encrypted under a keyring term this keyring does not have, even
    /// after re-reading the keyring from storage: the keyring was rolled back or the entry
    /// comes from another installation.
    #[error(
        "storage entry {key:?} is encrypted under key term {term}, which the keyring does not contain (keyring rolled back, or the entry comes from another installation)"
    )]
    UnknownTerm {
        /// The key whose entry failed.
        key: String,
        /// The term named in the entry's header.
        term: u32,
    },

    /// The root key does not open the keyring: wrong unseal key file or wrong passphrase (or
    /// the stored keyring was tampered with).
    #[error(
        "the unseal key is wrong: it does not decrypt this storage's keyring (wrong key file, wrong passphrase, or a keyring that was tampered with)"
    )]
    WrongKey,

    /// [`Barrier::initialize`](crate::Barrier::initialize) found an existing keyring.
    /// Initializing twice would make every existing entry unreadable, so it is refused.
    #[error(
        "the storage is already initialized; it is never initialized twice (unseal it instead)"
    )]
    AlreadyInitialized,

    /// Unseal was attempted on storage that has no keyring.
    #[error("the storage is not initialized; run `keep server init` first")]
    NotInitialized,

    /// A plaintext [`TxOp::Check`](crate::TxOp::Check) did not match (compare-and-set
    /// conflict); nothing was written.
    #[error(
        "storage key {key:?} does not hold the expected value (compare-and-set conflict); nothing was written"
    )]
    Conflict {
        /// The key whose check failed.
        key: String,
    },

    /// The key is reserved for the barrier's own records (`core/keyring`,
    /// `core/seal-config`); writing it through the barrier would destroy the installation.
    #[error(
        "storage key {key:?} is reserved for the barrier and cannot be read or written through it"
    )]
    ReservedKey {
        /// The reserved key.
        key: String,
    },

    /// A key file would be overwritten. The unseal key is never replaced silently: losing
    /// it loses every secret.
    #[error(
        "{path} already exists; keep never overwrites an unseal key file (move it away if it is really unused)"
    )]
    KeyFileExists {
        /// The key file.
        path: PathBuf,
    },

    /// The key file is readable or writable by group or others.
    #[error(
        "{path} has mode {mode:04o}; an unseal key file must be readable by its owner only; fix: chmod 600 {path}"
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The key file could not be read, created or written.
    #[error("cannot {action} unseal key file {path}: {source}")]
    KeyFileIo {
        /// `read`, `create` or `write`.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The key file's contents are not a key keep wrote.
    #[error("{path} is not an unseal key file: {reason}")]
    KeyFileMalformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong, without echoing the contents.
        reason: &'static str,
    },

    /// `core/seal-config` exists but cannot be understood.
    #[error("the seal configuration in storage (core/seal-config) is invalid: {reason}")]
    SealConfig {
        /// What is wrong.
        reason: String,
    },

    /// The storage was initialized with one kind of unseal material and another was given.
    #[error("this storage is sealed with a {configured}, but a {given} was given to unseal it")]
    SealTypeMismatch {
        /// What `core/seal-config` says.
        configured: SealType,
        /// What the caller supplied.
        given: SealType,
    },

    /// An empty passphrase was given; it would protect nothing.
    #[error("the passphrase is empty")]
    EmptyPassphrase,

    /// The argon2id key derivation failed (invalid parameters).
    #[error("passphrase key derivation (argon2id) failed: {reason}")]
    Kdf {
        /// The parameter problem.
        reason: String,
    },

    /// The crypto library failed where it cannot fail in practice (random source, AEAD with a
    /// valid key). Nothing was written.
    #[error("cryptographic operation failed: {op}")]
    Crypto {
        /// Which operation.
        op: &'static str,
    },
}

/// Truncates a key for an error message: keys are not secret, but a hostile one can be long.
pub(crate) fn shorten(key: &str) -> String {
    const MAX: usize = 80;
    match key.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &key[..i]),
        None => key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn long_keys_are_truncated_in_messages() {
        let e = StoreError::invalid_key(&"x".repeat(5000), "too long");
        assert!(e.to_string().len() < 200, "{e}");
    }

    #[test]
    fn permission_message_says_mode_and_fix() {
        let e = BarrierError::KeyFilePermissions {
            path: "/etc/keep/unseal.key".into(),
            mode: 0o644,
        };
        let m = e.to_string();
        assert!(
            m.contains("0644") && m.contains("chmod 600 /etc/keep/unseal.key"),
            "{m}"
        );
    }
}
