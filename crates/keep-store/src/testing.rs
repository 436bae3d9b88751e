//! The backend conformance suite: one set of assertions that every [`Store`] must pass.
//!
//! This is keep's `sdk/physical/testing.go`. A backend is correct when its tests call
//!
//! ```text
//! keep_store::testing::conformance(|| Box::new(MyStore::fresh_empty()));
//! // and, if two handles can share one database (several server nodes):
//! keep_store::testing::conformance_shared(|| { let (a, b) = MyStore::two_handles(); (Box::new(a), Box::new(b)) });
//! ```
//!
//! `make` must return an **empty** store on every call (a new file, a new schema, a truncated
//! table); the suite calls it once per case, so cases cannot leak into each other. Each case
//! prints its name to stderr first, so a failure names the case in the test output.
//!
//! Compiled with the `testing` feature (and for this crate's own unit tests). A later
//! PostgreSQL backend in this crate runs these same functions from its own test file.
//!
//! Panics are the failure reports here, so `unwrap`/`expect` are allowed in this module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crate::{MAX_KEY_LEN, Store, StoreError, TxOp};

/// One named case of the suite.
pub type Case = (&'static str, fn(&dyn Store));

/// Every single-handle case, in the order [`conformance`] runs them. Public so a backend can
/// run one case alone while debugging.
pub const CASES: &[Case] = &[
    ("empty_store", empty_store),
    ("put_get_overwrite_delete", put_get_overwrite_delete),
    ("empty_and_binary_values", empty_and_binary_values),
    ("key_validation", key_validation),
    ("unusual_but_valid_keys", unusual_but_valid_keys),
    ("list_semantics", list_semantics),
    (
        "list_prefix_not_at_folder_boundary",
        list_prefix_not_at_folder_boundary,
    ),
    ("list_skips_large_folders", list_skips_large_folders),
    ("transaction_applies_in_order", transaction_applies_in_order),
    (
        "transaction_failed_check_changes_nothing",
        transaction_failed_check_changes_nothing,
    ),
    (
        "transaction_check_absent_and_empty",
        transaction_check_absent_and_empty,
    ),
    (
        "transaction_invalid_key_changes_nothing",
        transaction_invalid_key_changes_nothing,
    ),
    ("large_values", large_values),
    ("concurrent_disjoint_writers", concurrent_disjoint_writers),
    ("concurrent_cas_counter", concurrent_cas_counter),
];

/// Runs every case of the suite, each on a fresh store from `make`.
pub fn conformance(make: impl Fn() -> Box<dyn Store>) {
    for (name, case) in CASES {
        eprintln!("keep-store conformance: {name}");
        let store = make();
        case(store.as_ref());
    }
}

/// Runs the cases that need two handles on the **same** storage (two connections, two
/// processes, two server nodes): `make` returns a fresh empty storage opened twice.
pub fn conformance_shared(make: impl Fn() -> (Box<dyn Store>, Box<dyn Store>)) {
    eprintln!("keep-store conformance: shared_visibility");
    let (a, b) = make();
    shared_visibility(a.as_ref(), b.as_ref());
    eprintln!("keep-store conformance: shared_cas_counter");
    let (a, b) = make();
    shared_cas_counter(a.as_ref(), b.as_ref());
}

fn get(s: &dyn Store, key: &str) -> Option<Vec<u8>> {
    s.get(key)
        .unwrap_or_else(|e| panic!("get {key:?} failed: {e}"))
}

fn put(s: &dyn Store, key: &str, value: &[u8]) {
    s.put(key, value)
        .unwrap_or_else(|e| panic!("put {key:?} failed: {e}"));
}

fn list(s: &dyn Store, prefix: &str) -> Vec<String> {
    s.list(prefix)
        .unwrap_or_else(|e| panic!("list {prefix:?} failed: {e}"))
}

fn assert_conflict(result: Result<(), StoreError>, key: &str) {
    match result {
        Err(StoreError::Conflict { key: k }) if k == key => {}
        other => panic!("expected Conflict on {key:?}, got {other:?}"),
    }
}

fn assert_invalid_key(result: Result<impl std::fmt::Debug, StoreError>, what: &str) {
    match result {
        Err(StoreError::InvalidKey { .. }) => {}
        other => panic!("{what}: expected InvalidKey, got {other:?}"),
    }
}

/// A new store is empty; reads of missing keys are `None`; deleting one is fine.
pub fn empty_store(s: &dyn Store) {
    assert_eq!(list(s, ""), Vec::<String>::new());
    assert_eq!(list(s, "a/"), Vec::<String>::new());
    assert_eq!(get(s, "foo"), None);
    s.delete("foo").expect("deleting a missing key succeeds");
    assert_eq!(get(s, "foo"), None);
}

/// Round trips, overwrites and deletes, with deletes not touching children or siblings.
pub fn put_get_overwrite_delete(s: &dyn Store) {
    put(s, "foo", b"test");
    assert_eq!(get(s, "foo").as_deref(), Some(&b"test"[..]));
    assert_eq!(list(s, ""), ["foo"]);
    put(s, "foo", b"second value, longer");
    assert_eq!(get(s, "foo").as_deref(), Some(&b"second value, longer"[..]));
    put(s, "foo", b"3");
    assert_eq!(
        get(s, "foo").as_deref(),
        Some(&b"3"[..]),
        "shorter overwrite"
    );
    put(s, "foo/bar", b"child");
    put(s, "foobar", b"sibling");
    s.delete("foo").unwrap();
    assert_eq!(get(s, "foo"), None);
    assert_eq!(get(s, "foo/bar").as_deref(), Some(&b"child"[..]));
    assert_eq!(get(s, "foobar").as_deref(), Some(&b"sibling"[..]));
    s.delete("foo").unwrap();
    s.delete("foo/bar").unwrap();
    s.delete("foobar").unwrap();
    assert_eq!(list(s, ""), Vec::<String>::new());
}

/// An empty value is a value, distinct from absence; values are bytes, not text.
pub fn empty_and_binary_values(s: &dyn Store) {
    put(s, "empty", b"");
    assert_eq!(get(s, "empty"), Some(Vec::new()));
    assert_eq!(list(s, ""), ["empty"]);
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    put(s, "bytes", &all);
    assert_eq!(get(s, "bytes"), Some(all));
    let nul = b"\0\0a\0b\0\0";
    put(s, "nul", nul);
    assert_eq!(get(s, "nul").as_deref(), Some(&nul[..]));
    let not_utf8 = [0xff, 0xfe, 0xc3, 0x28, 0x00, 0x80];
    put(s, "not-utf8", &not_utf8);
    assert_eq!(get(s, "not-utf8").as_deref(), Some(&not_utf8[..]));
}

/// Empty keys, keys with NUL and keys over [`MAX_KEY_LEN`] bytes are refused by every
/// operation; a key of exactly [`MAX_KEY_LEN`] bytes works.
pub fn key_validation(s: &dyn Store) {
    let long = "k".repeat(MAX_KEY_LEN + 1);
    for bad in ["", "a\0b", "\0", long.as_str()] {
        let what = format!("key of {} bytes", bad.len());
        assert_invalid_key(s.get(bad), &format!("get {what}"));
        assert_invalid_key(s.put(bad, b"v"), &format!("put {what}"));
        assert_invalid_key(s.delete(bad), &format!("delete {what}"));
        for op in [
            TxOp::put(bad, b"v".to_vec()),
            TxOp::delete(bad),
            TxOp::check(bad, None),
        ] {
            assert_invalid_key(s.transaction(&[op]), &format!("transaction {what}"));
        }
    }
    assert_invalid_key(s.list("a\0"), "list with NUL");
    assert_invalid_key(s.list(&long), "list with a too-long prefix");
    assert_eq!(list(s, ""), Vec::<String>::new(), "nothing was written");
    // A multi-byte character straddling the limit counts in bytes.
    let exact = format!("{}é", "k".repeat(MAX_KEY_LEN - 2));
    assert_eq!(exact.len(), MAX_KEY_LEN);
    put(s, &exact, b"max");
    assert_eq!(get(s, &exact).as_deref(), Some(&b"max"[..]));
    let over = format!("{}é", "k".repeat(MAX_KEY_LEN - 1));
    assert_invalid_key(s.put(&over, b"v"), "1025 bytes via a 2-byte char");
}

/// Keys with SQL and glob metacharacters, spaces, quotes and non-ASCII text are ordinary.
pub fn unusual_but_valid_keys(s: &dyn Store) {
    let keys = [
        "p%/x",
        "p_q",
        "p*",
        "p?[a]",
        "it's \"quoted\"",
        "with space/and\ttab",
        "ключ/секрет",
        "emoji/🔑",
        "back\\slash",
        "trailing/",
        "/leading",
        "a//double",
    ];
    for (i, k) in keys.iter().enumerate() {
        put(s, k, &[i as u8]);
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(get(s, k), Some(vec![i as u8]), "{k:?}");
    }
    assert_eq!(list(s, "p%"), ["/"], "% is not a wildcard");
    assert_eq!(list(s, "p_"), ["q"], "_ is not a wildcard");
    assert_eq!(list(s, "ключ/"), ["секрет"]);
    assert_eq!(list(s, "a/"), ["/"]);
    assert_eq!(list(s, "a//"), ["double"]);
}

/// Vault's list: immediate children, folders once with a trailing `/`, byte-sorted.
pub fn list_semantics(s: &dyn Store) {
    for k in [
        "a/b", "a/c/d", "a/c/e", "a/c/f/g", "a/d", "ab", "b", "a/B", "a/Z", "a/é", "a/z/",
    ] {
        put(s, k, b"x");
    }
    assert_eq!(list(s, ""), ["a/", "ab", "b"]);
    assert_eq!(list(s, "a/"), ["B", "Z", "b", "c/", "d", "z/", "é"]);
    assert_eq!(list(s, "a/c/"), ["d", "e", "f/"]);
    assert_eq!(list(s, "a/c/f/"), ["g"]);
    assert_eq!(
        list(s, "a/z/"),
        Vec::<String>::new(),
        "the key equal to the prefix is not listed"
    );
    assert_eq!(list(s, "a/x/"), Vec::<String>::new());
    assert_eq!(list(s, "zzz"), Vec::<String>::new());
    // A folder disappears with its last key, and only then.
    s.delete("a/c/f/g").unwrap();
    assert_eq!(list(s, "a/c/"), ["d", "e"]);
    s.delete("a/c/d").unwrap();
    s.delete("a/c/e").unwrap();
    assert_eq!(list(s, "a/"), ["B", "Z", "b", "d", "z/", "é"]);
    // A key and a folder of the same name are both listed (Vault: [foo, foo/]).
    put(s, "foo", b"x");
    put(s, "foo/bar", b"x");
    put(s, "foo/bar/baz", b"x");
    assert_eq!(list(s, "foo/"), ["bar", "bar/"]);
    assert_eq!(list(s, "foo/bar/"), ["baz"]);
}

/// A prefix that is not at a `/` boundary lists what follows it literally.
pub fn list_prefix_not_at_folder_boundary(s: &dyn Store) {
    for k in ["foo", "foo/bar", "foobar/x", "fox", "fo"] {
        put(s, k, b"x");
    }
    assert_eq!(list(s, "fo"), ["o", "o/", "obar/", "x"]);
    assert_eq!(list(s, "foo"), ["/", "bar/"]);
    assert_eq!(list(s, "foob"), ["ar/"]);
    assert_eq!(list(s, "f"), ["o", "oo", "oo/", "oobar/", "ox"]);
}

/// A folder with many keys is listed once, and its neighbours are still found after it.
pub fn list_skips_large_folders(s: &dyn Store) {
    let ops: Vec<TxOp> = (0..300)
        .map(|i| TxOp::put(format!("big/{:03}/leaf/{i}", i % 7), b"x".to_vec()))
        .chain([
            TxOp::put("big/000", b"x".to_vec()),
            TxOp::put("big/zz", b"x".to_vec()),
            TxOp::put("big0", b"x".to_vec()),
        ])
        .collect();
    s.transaction(&ops).unwrap();
    assert_eq!(
        list(s, "big/"),
        [
            "000", "000/", "001/", "002/", "003/", "004/", "005/", "006/", "zz"
        ]
    );
    assert_eq!(list(s, ""), ["big/", "big0"]);
}

/// Vault's transaction test, plus: a check sees earlier writes of the same transaction.
pub fn transaction_applies_in_order(s: &dyn Store) {
    put(s, "foo", b"bar");
    put(s, "zip", b"zap");
    put(s, "deleteme", b"");
    put(s, "deleteme2", b"");
    s.transaction(&[
        TxOp::put("foo", b"bar2".to_vec()),
        TxOp::delete("deleteme"),
        TxOp::put("foo", b"bar3".to_vec()),
        TxOp::delete("deleteme2"),
        TxOp::put("zip", b"zap3".to_vec()),
    ])
    .unwrap();
    assert_eq!(list(s, ""), ["foo", "zip"]);
    assert_eq!(get(s, "foo").as_deref(), Some(&b"bar3"[..]));
    assert_eq!(get(s, "zip").as_deref(), Some(&b"zap3"[..]));

    s.transaction(&[
        TxOp::put("new", b"1".to_vec()),
        TxOp::check("new", Some(b"1".to_vec())),
        TxOp::delete("foo"),
        TxOp::check("foo", None),
        TxOp::put("foo", b"again".to_vec()),
        TxOp::check("foo", Some(b"again".to_vec())),
    ])
    .unwrap();
    assert_eq!(get(s, "new").as_deref(), Some(&b"1"[..]));
    assert_eq!(get(s, "foo").as_deref(), Some(&b"again"[..]));

    s.transaction(&[]).expect("an empty transaction succeeds");
}

/// All or nothing: a failing check anywhere leaves every key as it was.
pub fn transaction_failed_check_changes_nothing(s: &dyn Store) {
    put(s, "counter", b"1");
    put(s, "other", b"keep me");
    put(s, "gone?", b"still here");
    let ops = [
        TxOp::put("counter", b"2".to_vec()),
        TxOp::put("created", b"should not exist".to_vec()),
        TxOp::delete("gone?"),
        TxOp::check("other", Some(b"something else".to_vec())),
        TxOp::put("after", b"x".to_vec()),
    ];
    assert_conflict(s.transaction(&ops), "other");
    assert_eq!(get(s, "counter").as_deref(), Some(&b"1"[..]));
    assert_eq!(get(s, "created"), None);
    assert_eq!(get(s, "gone?").as_deref(), Some(&b"still here"[..]));
    assert_eq!(get(s, "after"), None);
    assert_eq!(list(s, ""), ["counter", "gone?", "other"]);
    // A check that is satisfied lets the same writes through.
    s.transaction(&[
        TxOp::check("counter", Some(b"1".to_vec())),
        TxOp::put("counter", b"2".to_vec()),
    ])
    .unwrap();
    assert_eq!(get(s, "counter").as_deref(), Some(&b"2"[..]));
    // A stale expected value is a conflict.
    assert_conflict(
        s.transaction(&[
            TxOp::check("counter", Some(b"1".to_vec())),
            TxOp::put("counter", b"2".to_vec()),
        ]),
        "counter",
    );
}

/// `expected: None` means absent: it fails on any present value, even an empty one; and a
/// present expectation fails on an absent key.
pub fn transaction_check_absent_and_empty(s: &dyn Store) {
    s.transaction(&[TxOp::check("fresh", None), TxOp::put("fresh", b"".to_vec())])
        .unwrap();
    assert_eq!(get(s, "fresh"), Some(Vec::new()));
    assert_conflict(
        s.transaction(&[
            TxOp::check("fresh", None),
            TxOp::put("fresh", b"x".to_vec()),
        ]),
        "fresh",
    );
    s.transaction(&[TxOp::check("fresh", Some(Vec::new()))])
        .expect("empty value matches an empty expectation");
    assert_conflict(
        s.transaction(&[TxOp::check("missing", Some(Vec::new()))]),
        "missing",
    );
    assert_eq!(get(s, "fresh"), Some(Vec::new()));
    assert_eq!(get(s, "missing"), None);
}

/// A transaction with one invalid key is refused before anything is written.
pub fn transaction_invalid_key_changes_nothing(s: &dyn Store) {
    assert_invalid_key(
        s.transaction(&[TxOp::put("ok", b"1".to_vec()), TxOp::put("", b"2".to_vec())]),
        "transaction with an empty key",
    );
    assert_eq!(get(s, "ok"), None);
}

/// 1 MiB values round-trip through put, overwrite and transaction, and can be checked.
pub fn large_values(s: &dyn Store) {
    let big: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    put(s, "big", &big);
    assert_eq!(get(s, "big").as_deref(), Some(big.as_slice()));
    let mut big2 = big.clone();
    big2.reverse();
    s.transaction(&[
        TxOp::check("big", Some(big.clone())),
        TxOp::put("big", big2.clone()),
        TxOp::put("big-copy", big.clone()),
    ])
    .unwrap();
    assert_eq!(get(s, "big").as_deref(), Some(big2.as_slice()));
    assert_eq!(get(s, "big-copy").as_deref(), Some(big.as_slice()));
    put(s, "big", b"small again");
    assert_eq!(get(s, "big").as_deref(), Some(&b"small again"[..]));
}

/// Several threads writing disjoint keys: every write is visible afterwards.
pub fn concurrent_disjoint_writers(s: &dyn Store) {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 25;
    thread::scope(|scope| {
        for t in 0..THREADS {
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let key = format!("t{t}/k{i:02}");
                    if i % 2 == 0 {
                        put(s, &key, key.as_bytes());
                    } else {
                        s.transaction(&[
                            TxOp::check(key.clone(), None),
                            TxOp::put(key.clone(), key.as_bytes().to_vec()),
                        ])
                        .unwrap();
                    }
                    // Reads in between writes of other threads.
                    assert_eq!(get(s, &key).as_deref(), Some(key.as_bytes()));
                }
            });
        }
    });
    for t in 0..THREADS {
        let children = list(s, &format!("t{t}/"));
        assert_eq!(children.len(), PER_THREAD, "thread {t}");
        for i in 0..PER_THREAD {
            let key = format!("t{t}/k{i:02}");
            assert_eq!(get(s, &key).as_deref(), Some(key.as_bytes()));
        }
    }
}

fn cas_increment(s: &dyn Store, key: &str) -> Result<(), StoreError> {
    let current = get(s, key);
    let n: u64 = current
        .as_deref()
        .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
        .unwrap_or(0);
    // Widen the window between read and write, so a backend whose check is not atomic with
    // its write loses updates reliably, not once in a while.
    thread::yield_now();
    s.transaction(&[
        TxOp::check(key, current),
        TxOp::put(key, (n + 1).to_string().into_bytes()),
    ])
}

fn cas_race(a: &dyn Store, b: &dyn Store) {
    const ATTEMPTS: usize = 40;
    let successes = AtomicUsize::new(0);
    let conflicts = AtomicUsize::new(0);
    thread::scope(|scope| {
        for s in [a, b] {
            let (successes, conflicts) = (&successes, &conflicts);
            scope.spawn(move || {
                for _ in 0..ATTEMPTS {
                    match cas_increment(s, "counter") {
                        Ok(()) => successes.fetch_add(1, Ordering::Relaxed),
                        Err(StoreError::Conflict { key }) if key == "counter" => {
                            conflicts.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => panic!("CAS increment failed: {e}"),
                    };
                }
            });
        }
    });
    let successes = successes.into_inner();
    let n: usize = std::str::from_utf8(&get(a, "counter").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        n, successes,
        "the counter equals the number of successful compare-and-sets (lost update otherwise)"
    );
    assert_eq!(successes + conflicts.into_inner(), 2 * ATTEMPTS);
    assert!(successes > 0);
}

/// Two threads increment one counter by compare-and-set: the final count equals the number
/// of successful transactions, so no update was lost and no failed one was applied.
pub fn concurrent_cas_counter(s: &dyn Store) {
    cas_race(s, s);
}

/// Writes through one handle are visible through the other, both ways, including deletes and
/// list results.
pub fn shared_visibility(a: &dyn Store, b: &dyn Store) {
    put(a, "x/1", b"from a");
    assert_eq!(get(b, "x/1").as_deref(), Some(&b"from a"[..]));
    b.transaction(&[TxOp::put("x/2", b"from b".to_vec())])
        .unwrap();
    assert_eq!(list(a, "x/"), ["1", "2"]);
    a.delete("x/2").unwrap();
    assert_eq!(get(b, "x/2"), None);
    // A check on one handle sees a write made through the other.
    put(b, "v", b"new");
    assert_conflict(
        a.transaction(&[TxOp::check("v", Some(b"old".to_vec()))]),
        "v",
    );
}

/// The CAS counter race, one thread per handle: compare-and-set holds across connections
/// (processes, server nodes), not just within one.
pub fn shared_cas_counter(a: &dyn Store, b: &dyn Store) {
    cas_race(a, b);
}
