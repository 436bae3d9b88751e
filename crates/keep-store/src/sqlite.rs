//! [`SqliteStore`]: the default backend, one SQLite file in WAL mode with durable commits.
//!
//! # Schema (version 1)
//!
//! ```sql
//! CREATE TABLE keep_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL) STRICT;
//! CREATE TABLE kv (key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL) STRICT;
//! ```
//!
//! `kv` keeps its rowid on purpose: `WITHOUT ROWID` tables store whole rows in the key b-tree,
//! which SQLite advises against for rows larger than ~1/20 of a page, and values here go up
//! to megabytes. The primary key's index (BINARY collation, i.e. byte order) serves point
//! lookups and prefix ranges.
//!
//! # Connections
//!
//! One **writer** connection behind a mutex takes every write, so writes in this process
//! never contend for SQLite's lock (and `BEGIN IMMEDIATE` makes transactions safe against
//! other processes too). A small pool of **reader** connections serves `get` and `list`: in
//! WAL mode readers never block on the writer, so reads continue while a commit waits for
//! `fsync` — the difference between a read costing microseconds and a read queueing behind a
//! disk flush. Each reader sees every commit that finished before its read began, so a
//! reader always sees the caller's own acknowledged writes.
//!
//! # Files SQLite needs, checked before it touches them
//!
//! Besides the database file SQLite uses `<db>-wal` (the write-ahead log) and `<db>-shm` (the
//! WAL index, shared between connections through `mmap`), and creates and deletes both in the
//! database's directory. It copes badly when one of them belongs to someone else (typically
//! after `keep` once ran as root): an unwritable database is silently opened read-only, an
//! unwritable WAL fails every write while reads go on, and an `-shm` it can only read is
//! mapped read-only, so the first access past its end kills the process with SIGBUS — no
//! error, no log line. [`check_access`] finds all of these first and names the path and the
//! fix; [`SqliteStore::open`] runs it.
//!
//! The SIGBUS cannot be made impossible while the server runs: SQLite avoids the `-shm` file
//! only with `PRAGMA locking_mode=EXCLUSIVE`, which would lock out the reader connections
//! and any second process (`keep server init` next to a sealed server, backups). What remains
//! is someone who can write to the directory truncating `-shm` under a running server, which
//! is why the directory must belong to keep alone.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::{
    Store, StoreError, TxOp, child_of, error::BoxError, prefix_successor, validate_key,
    validate_prefix,
};

/// The schema version this build writes and understands.
const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits for a lock held by another connection or process before
/// failing with [`StoreError::Busy`]. Long enough to ride out a checkpoint or another node's
/// commit, short enough that a stuck process surfaces as an error rather than a hang.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reader connections per store. Two cores are the target machine; readers beyond the number
/// of threads that call in concurrently only cost file handles and page cache.
const READERS: usize = 4;

const GET_SQL: &str = "SELECT value FROM kv WHERE key = ?1";
const PUT_SQL: &str = "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const DELETE_SQL: &str = "DELETE FROM kv WHERE key = ?1";
// The range form is what lets SQLite answer from the primary-key index (`SEARCH kv USING
// INDEX sqlite_autoindex_kv_1 (key>? AND key<?)`); LIKE/GLOB would need escaping and, with
// the default case-insensitive LIKE, a full scan.
const LIST_SQL: &str = "SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key";
const LIST_OPEN_SQL: &str = "SELECT key FROM kv WHERE key >= ?1 ORDER BY key";

/// A [`Store`] in one SQLite file.
///
/// - WAL journal, `synchronous=FULL`: a write is on disk (WAL fsync'd) before the call returns,
///   so an acknowledged write survives `kill -9` and power loss.
/// - `busy_timeout` of 5 s: several processes may open the same file (a CLI next to a
///   running server); a lock held longer fails with [`StoreError::Busy`].
/// - The file is created mode 0600; SQLite gives the `-wal` and `-shm` files the same mode.
///
/// The file holds only what the [`Barrier`](crate::Barrier) gives it: ciphertexts under
/// plaintext key names (see the crate's threat model).
pub struct SqliteStore {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("readers", &self.readers.len())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating it (mode 0600) and its schema if needed.
    ///
    /// The parent directory must exist. An existing database with a newer schema is refused
    /// with [`StoreError::SchemaTooNew`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        check_access(path)?;
        let open_err = |source: BoxError| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        // Create the file ourselves so it is 0600 from its first moment; SQLite would create
        // it with 0644 & ~umask. SQLite copies this mode to the -wal and -shm files.
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(open_err(Box::new(e))),
        }
        // No SQLITE_OPEN_CREATE: the file exists now, and must not be re-created by SQLite
        // with looser permissions if it vanished in between. NO_MUTEX: our own mutexes
        // serialize use of each connection.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let writer = Connection::open_with_flags(path, flags).map_err(|e| open_err(Box::new(e)))?;
        configure(&writer, true).map_err(|e| open_err(Box::new(e)))?;
        let mut writer = writer;
        migrate(&mut writer).map_err(|e| e.into_store_error(path))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(path, flags).map_err(|e| open_err(Box::new(e)))?;
            configure(&r, false).map_err(|e| open_err(Box::new(e)))?;
            readers.push(Mutex::new(r));
        }
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            path: Some(path.to_path_buf()),
        })
    }

    /// A private in-memory database (no file, nothing persisted), for tests. All calls go
    /// through the single connection.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source: Box::new(e),
        };
        let mut conn = Connection::open_in_memory().map_err(open_err)?;
        configure(&conn, true).map_err(open_err)?;
        migrate(&mut conn).map_err(|e| e.into_store_error(Path::new(":memory:")))?;
        Ok(SqliteStore {
            writer: Mutex::new(conn),
            readers: Vec::new(),
            next_reader: AtomicUsize::new(0),
            path: None,
        })
    }

    /// Opens an existing database for reading only (for `keep doctor`, which may look at a
    /// running server's storage and must never change it).
    ///
    /// Nothing is created or migrated: a missing file, or a file whose schema is not the one
    /// this build writes, is an error. Every connection is opened `SQLITE_OPEN_READ_ONLY` and
    /// `query_only`, so `put`, `delete` and `transaction` fail with a backend error.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let open_err = |source: BoxError| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open = || -> Result<Connection, StoreError> {
            let c = Connection::open_with_flags(path, flags).map_err(|e| open_err(Box::new(e)))?;
            configure(&c, false).map_err(|e| open_err(Box::new(e)))?;
            Ok(c)
        };
        let writer = open()?;
        let found: i64 = writer
            .query_row("SELECT version FROM keep_schema WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(|e| open_err(format!("not a keep database ({e})").into()))?;
        match found {
            v if v == SCHEMA_VERSION => {}
            v if v > SCHEMA_VERSION => {
                return Err(Migrate::TooNew { found: v }.into_store_error(path));
            }
            v => return Err(Migrate::Unknown { found: v }.into_store_error(path)),
        }
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            readers: vec![Mutex::new(open()?)],
            next_reader: AtomicUsize::new(0),
            path: Some(path.to_path_buf()),
        })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Copies the WAL into the main file and truncates the WAL
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`).
    ///
    /// SQLite checkpoints on its own; call this before copying the file for a backup, or to
    /// look at the main file alone (the plaintext scan test does).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let conn = self.writer();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            row.get::<_, i64>(0)
        })
        .map_err(backend("checkpoint"))
        .and_then(|busy| match busy {
            0 => Ok(()),
            _ => Err(StoreError::Busy { op: "checkpoint" }),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: an open transaction is
        // rolled back when its guard object drops during unwinding.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A reader connection: the first idle one, else wait on one picked round-robin. Falls
    /// back to the writer for in-memory stores, which have no readers.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return self.writer();
        }
        for r in &self.readers {
            if let Ok(guard) = r.try_lock() {
                return guard;
            }
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks that this process can use every file SQLite needs for the database at `path`: the
/// directory (searchable and writable: SQLite creates and deletes `-wal` and `-shm` there),
/// and the database, `-wal` and `-shm` files where they exist (regular files, readable and
/// writable by the effective uid; ones that do not exist yet are created in the directory).
///
/// Fails with [`StoreError::Access`] naming the path, its owner and mode, the uid keep runs
/// as, and the fix (`chown keep: /var/lib/keep/keep.db-shm`). Nothing is created or changed.
/// Checked with `faccessat(AT_EACCESS)`, so read-only mounts and immutable files count too.
pub fn check_access(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let uid = rustix::process::geteuid().as_raw();
    let me = user_name(uid).map_or_else(|| format!("uid {uid}"), |n| format!("uid {uid} ({n})"));
    let owner_arg = user_name(uid).unwrap_or_else(|| uid.to_string());
    let err = |p: &Path, problem: String, fix: String| StoreError::Access {
        path: p.to_path_buf(),
        problem,
        fix,
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(err(
                dir,
                format!(
                    "the directory of the database {} does not exist",
                    path.display()
                ),
                format!(
                    "create it for the user keep runs as: `install -d -m 0700 -o {owner_arg} {}`",
                    dir.display()
                ),
            ));
        }
        Err(e) => {
            return Err(err(
                dir,
                format!(
                    "the directory of the database {} cannot be examined: {e}",
                    path.display()
                ),
                "check storage.sqlite.path and the permissions of its parent directories".into(),
            ));
        }
        Ok(m) if !m.is_dir() => {
            return Err(err(
                dir,
                format!("is not a directory (the database is {})", path.display()),
                "point storage.sqlite.path at a file inside a directory".into(),
            ));
        }
        Ok(m) => {
            let needed = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
            if let Err(e) = usable(dir, needed) {
                return Err(err(
                    dir,
                    format!(
                        "the directory of the database {2} is not writable by {me}, which keep runs as (owner uid {0}, mode {1:04o}: {e}); SQLite creates {2}-wal and -shm there",
                        m.uid(),
                        m.mode() & 0o7777,
                        path.display()
                    ),
                    fix_for(&e, dir, &owner_arg),
                ));
            }
        }
    }
    for file in [
        path.to_path_buf(),
        suffixed(path, "-wal"),
        suffixed(path, "-shm"),
    ] {
        let m = match std::fs::metadata(&file) {
            Ok(m) => m,
            // Created later (by us, or by SQLite in the directory just checked).
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(err(
                    &file,
                    format!("cannot be examined: {e}"),
                    "check the permissions of the database's directory".into(),
                ));
            }
        };
        if !m.is_file() {
            return Err(err(
                &file,
                "is not a regular file".into(),
                format!(
                    "move it away (SQLite needs {} to be a plain file)",
                    file.display()
                ),
            ));
        }
        let needed = rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK;
        if let Err(e) = usable(&file, needed) {
            return Err(err(
                &file,
                format!(
                    "is not readable and writable by {me}, which keep runs as (owner uid {}, mode {:04o}: {e})",
                    m.uid(),
                    m.mode() & 0o7777
                ),
                fix_for(&e, &file, &owner_arg),
            ));
        }
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name (`keep.db` → `keep.db-wal`), as SQLite
/// names its companion files.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether the effective uid has `access` to `path` (permissions, read-only mounts,
/// immutable files).
fn usable(path: &Path, access: rustix::fs::Access) -> std::io::Result<()> {
    rustix::fs::accessat(rustix::fs::CWD, path, access, rustix::fs::AtFlags::EACCESS)
        .map_err(std::io::Error::from)
}

fn fix_for(e: &std::io::Error, path: &Path, owner: &str) -> String {
    match e.raw_os_error() {
        Some(30) => format!(
            "the file system holding {} is mounted read-only; mount it read-write",
            path.display()
        ),
        Some(1) => format!(
            "{} is immutable; `chattr -i {}`",
            path.display(),
            path.display()
        ),
        _ => format!("`chown {owner}: {}`", path.display()),
    }
}

/// The name of user `uid` from `/etc/passwd`, for a fix that can be pasted as it is.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid.to_string()).then(|| name.to_owned())
    })
}

/// Per-connection settings. Pragmas are per connection, so every reader gets them too.
fn configure(conn: &Connection, writer: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if writer {
        // journal_mode=WAL is persistent in the file; it answers with the resulting mode
        // ("memory" for in-memory databases, where WAL does not apply).
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    }
    // FULL, not NORMAL: with NORMAL a commit in WAL mode is durable against a process crash
    // but not against power loss. The issue asks for both.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The schema is ours; never run SQL functions or virtual tables named by the file.
    conn.pragma_update(None, "trusted_schema", false)?;
    if !writer {
        // Belt and braces: a reader can never write, whatever a future change sends to it.
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(())
}

enum Migrate {
    TooNew { found: i64 },
    Unknown { found: i64 },
    Sql(rusqlite::Error),
}

impl Migrate {
    fn into_store_error(self, path: &Path) -> StoreError {
        match self {
            Migrate::TooNew { found } => StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            },
            Migrate::Unknown { found } => StoreError::Open {
                path: path.to_path_buf(),
                source: format!("keep_schema holds version {found}, which no keep ever wrote")
                    .into(),
            },
            Migrate::Sql(e) => StoreError::Open {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}

impl From<rusqlite::Error> for Migrate {
    fn from(e: rusqlite::Error) -> Self {
        Migrate::Sql(e)
    }
}

/// Creates or upgrades the schema in one immediate transaction, so two processes opening a
/// fresh file at once cannot both create it.
fn migrate(conn: &mut Connection) -> Result<(), Migrate> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS keep_schema (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             version INTEGER NOT NULL
         ) STRICT;",
    )?;
    let found: Option<i64> = tx
        .query_row("SELECT version FROM keep_schema WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    match found {
        None => {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS kv (
                     key TEXT NOT NULL PRIMARY KEY,
                     value BLOB NOT NULL
                 ) STRICT;",
            )?;
            tx.execute(
                "INSERT INTO keep_schema (id, version) VALUES (1, ?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(v) if v == SCHEMA_VERSION => {}
        // Later versions add their steps here: `Some(1) => { ALTER …; UPDATE keep_schema … }`.
        Some(v) if v > SCHEMA_VERSION => return Err(Migrate::TooNew { found: v }),
        Some(v) => return Err(Migrate::Unknown { found: v }),
    }
    tx.commit()?;
    Ok(())
}

/// Maps a rusqlite error for operation `op`: lock timeouts become [`StoreError::Busy`].
fn backend(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy { op },
        _ => StoreError::Backend {
            op,
            source: Box::new(e),
        },
    }
}

fn get_on(conn: &Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached(GET_SQL)?
        .query_row([key], |r| r.get(0))
        .optional()
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        validate_key(key)?;
        get_on(&self.reader(), key).map_err(backend("get"))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        validate_key(key)?;
        let conn = self.writer();
        conn.prepare_cached(PUT_SQL)
            .and_then(|mut s| s.execute(rusqlite::params![key, value]))
            .map(drop)
            .map_err(backend("put"))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        let conn = self.writer();
        conn.prepare_cached(DELETE_SQL)
            .and_then(|mut s| s.execute([key]))
            .map(drop)
            .map_err(backend("delete"))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let upper = prefix_successor(prefix);
        let mut conn = self.reader();
        let run = |conn: &mut Connection| -> rusqlite::Result<Vec<String>> {
            // One read transaction: the folder skips below are several queries, and they must
            // all see the same snapshot.
            let tx = conn.transaction()?;
            let mut out = Vec::new();
            let mut lower = prefix.to_owned();
            loop {
                let mut jump = None;
                {
                    let mut stmt;
                    let mut rows = match &upper {
                        Some(u) => {
                            stmt = tx.prepare_cached(LIST_SQL)?;
                            stmt.query(rusqlite::params![lower, u])?
                        }
                        None => {
                            stmt = tx.prepare_cached(LIST_OPEN_SQL)?;
                            stmt.query([&lower])?
                        }
                    };
                    while let Some(row) = rows.next()? {
                        let key = row.get_ref(0)?.as_str()?;
                        let Some((child, is_folder)) = child_of(prefix, key) else {
                            continue;
                        };
                        out.push(child.to_owned());
                        if is_folder {
                            // Skip every key inside this folder with one index seek instead of
                            // reading them all: listing `secret/metadata/` must not cost the
                            // number of versions stored below it.
                            jump = Some(prefix_successor(&format!("{prefix}{child}")));
                            break;
                        }
                    }
                }
                match jump {
                    Some(Some(next)) => lower = next,
                    _ => break,
                }
            }
            tx.commit()?;
            Ok(out)
        };
        run(&mut conn).map_err(backend("list"))
    }

    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        for op in ops {
            validate_key(op.key())?;
        }
        if ops.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer();
        let map = backend("transaction");
        // IMMEDIATE takes the write lock up front, so the checks and the writes are one atomic
        // unit also against other processes, and a deferred read-to-write upgrade cannot fail
        // with SQLITE_BUSY halfway through.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&map)?;
        for op in ops {
            match op {
                TxOp::Put { key, value } => {
                    tx.prepare_cached(PUT_SQL)
                        .and_then(|mut s| s.execute(rusqlite::params![key, value]))
                        .map_err(&map)?;
                }
                TxOp::Delete { key } => {
                    tx.prepare_cached(DELETE_SQL)
                        .and_then(|mut s| s.execute([key]))
                        .map_err(&map)?;
                }
                TxOp::Check { key, expected } => {
                    let current = get_on(&tx, key).map_err(&map)?;
                    if current != *expected {
                        // Dropping `tx` rolls back the writes made so far.
                        return Err(StoreError::Conflict { key: key.clone() });
                    }
                }
            }
        }
        tx.commit().map_err(map)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The cases that do not depend on file modes (root ignores those; the unprivileged
    /// cases run as a test user in the binary's `tests/storage_faults.rs`).
    #[test]
    fn access_check_names_the_path_and_the_fix_before_sqlite_opens_anything() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keep.db");
        check_access(&db).unwrap();

        let missing = dir.path().join("no/such/keep.db");
        let e = check_access(&missing).unwrap_err().to_string();
        assert!(
            e.contains("does not exist") && e.contains("install -d"),
            "{e}"
        );

        // A -shm that is not a file (SQLite would fail to map it): refused, nothing created.
        std::fs::create_dir(dir.path().join("keep.db-shm")).unwrap();
        let e = SqliteStore::open(&db).unwrap_err();
        assert!(matches!(&e, StoreError::Access { path, .. } if path.ends_with("keep.db-shm")));
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(!db.exists(), "nothing was created");
        std::fs::remove_dir(dir.path().join("keep.db-shm")).unwrap();

        let under_file = db.join("x.db");
        std::fs::write(&db, b"").unwrap();
        let e = check_access(&under_file).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
    }

    #[test]
    fn list_uses_the_primary_key_index() {
        let store = SqliteStore::open_in_memory().unwrap();
        let conn = store.writer();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {LIST_SQL}"))
            .unwrap()
            .query_map(["a/", "a0"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(
            plan.contains("SEARCH kv USING") && plan.contains("(key>? AND key<?)"),
            "{plan}"
        );
    }

    #[test]
    fn schema_version_is_recorded_and_newer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keep.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("SELECT version FROM keep_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        conn.execute("UPDATE keep_schema SET version = 99", [])
            .unwrap();
        drop(conn);
        match SqliteStore::open(&path) {
            Err(StoreError::SchemaTooNew { found: 99, .. }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn read_only_open_reads_and_never_writes_or_creates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keep.db");
        assert!(SqliteStore::open_read_only(&path).is_err());
        assert!(!path.exists(), "a read-only open must not create the file");
        let rw = SqliteStore::open(&path).unwrap();
        rw.put("a/b", b"v").unwrap();
        let ro = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(ro.get("a/b").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(ro.list("a/").unwrap(), vec!["b".to_owned()]);
        assert!(ro.put("a/c", b"x").is_err());
        assert!(ro.delete("a/b").is_err());
        assert!(ro.transaction(&[TxOp::put("a/d", b"y".to_vec())]).is_err());
        assert_eq!(rw.get("a/c").unwrap(), None);
        drop(rw);
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE keep_schema SET version = 99", [])
            .unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open_read_only(&path),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn pragmas_are_durable_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("keep.db")).unwrap();
        for conn in
            std::iter::once(store.writer()).chain(store.readers.iter().map(|r| r.lock().unwrap()))
        {
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            let sync: i64 = conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            assert_eq!(sync, 2, "synchronous=FULL");
            drop(conn);
        }
    }
}
