//! Every backend runs the one conformance suite (`keep_store::testing`): the in-memory store,
//! SQLite on real files in a temporary directory, and SQLite in memory, each also behind the
//! read cache ([`CachedStore`]), which must not change any answer. A later PostgreSQL
//! backend adds its own two calls here and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use keep_store::{CachedStore, MemStore, SqliteStore, Store, testing};

#[test]
fn mem_store_conforms() {
    testing::conformance(|| Box::new(MemStore::new()));
}

#[test]
fn mem_store_clones_share_one_map() {
    testing::conformance_shared(|| {
        let a = MemStore::new();
        (Box::new(a.clone()), Box::new(a))
    });
}

#[test]
fn sqlite_file_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    testing::conformance(|| {
        let path = dir
            .path()
            .join(format!("case-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        Box::new(SqliteStore::open(path).unwrap())
    });
}

#[test]
fn cached_mem_store_conforms() {
    testing::conformance(|| Box::new(CachedStore::new(MemStore::new())));
}

#[test]
fn cached_sqlite_file_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    testing::conformance(|| {
        let path = dir
            .path()
            .join(format!("cached-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        Box::new(CachedStore::new(SqliteStore::open(path).unwrap()))
    });
}

// Not `conformance_shared`: two caches over one database see each other's writes only through
// a change feed calling `CachedStore::invalidate`, which arrives with several server nodes.

#[test]
fn sqlite_in_memory_conforms() {
    testing::conformance(|| Box::new(SqliteStore::open_in_memory().unwrap()));
}

#[test]
fn sqlite_two_handles_on_one_file_conform() {
    // Two `SqliteStore`s on one file behave like two processes (or a CLI next to a server):
    // separate connections, SQLite's file locks between them.
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    testing::conformance_shared(|| {
        let path = dir
            .path()
            .join(format!("shared-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        (Box::new(a), Box::new(b))
    });
}

#[test]
fn sqlite_files_are_private_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.put("a/b", b"persisted").unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let p = dir.path().join(format!("keep.db{suffix}"));
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.get("a/b").unwrap().as_deref(),
        Some(&b"persisted"[..])
    );
    assert_eq!(store.path(), Some(path.as_path()));
}

#[test]
fn sqlite_open_names_the_file_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/keep.db");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("no/such/dir/keep.db"), "{err}");

    let not_db = dir.path().join("not.db");
    std::fs::write(&not_db, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&not_db).unwrap_err();
    assert!(err.to_string().contains("not.db"), "{err}");
}
