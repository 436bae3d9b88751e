//! The barrier: round trips, what the raw store sees, integrity failures (tampering, a
//! ciphertext moved to another key), rotation, unseal with a wrong key, several nodes — and
//! the whole Store conformance suite run *through* the barrier, which is what proves that
//! plaintext compare-and-set stays atomic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use keep_store::barrier::{KEYRING_KEY, OVERHEAD};
use keep_store::{
    Barrier, BarrierError, MemStore, RootKey, SqliteStore, Store, StoreError, TxOp, testing,
};
use zeroize::Zeroizing;

fn root(byte: u8) -> RootKey {
    RootKey::from_bytes([byte; 32])
}

fn fresh() -> (MemStore, Barrier<MemStore>) {
    let raw = MemStore::new();
    let barrier = Barrier::initialize(raw.clone(), root(1)).unwrap();
    (raw, barrier)
}

fn plain(v: Option<Zeroizing<Vec<u8>>>) -> Option<Vec<u8>> {
    v.map(|z| z.to_vec())
}

/// The barrier seen as a `Store`, so the conformance suite can run through it. Barrier errors
/// the suite cannot expect (integrity, …) fail the test loudly.
struct ViaBarrier<S: Store>(Barrier<S>);

fn to_store(e: BarrierError) -> StoreError {
    match e {
        BarrierError::Store(e) => e,
        BarrierError::Conflict { key } => StoreError::Conflict { key },
        other => panic!("unexpected barrier error: {other}"),
    }
}

impl<S: Store> Store for ViaBarrier<S> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key).map(plain).map_err(to_store)
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0.put(key, value).map_err(to_store)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).map_err(to_store)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Hide the barrier's own `core/` records; the suite never writes under `core/`.
        let mut children = self.0.list(prefix).map_err(to_store)?;
        if prefix.is_empty() {
            children.retain(|c| c != "core/");
        }
        Ok(children)
    }
    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        self.0.transaction(ops).map_err(to_store)
    }
}

#[test]
fn conformance_through_the_barrier_on_mem() {
    testing::conformance(|| Box::new(ViaBarrier(fresh().1)));
}

#[test]
fn conformance_through_the_barrier_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    testing::conformance(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let store = SqliteStore::open(dir.path().join(format!("b{i}.db"))).unwrap();
        Box::new(ViaBarrier(Barrier::initialize(store, root(2)).unwrap()))
    });
}

#[test]
fn two_barrier_nodes_on_one_store_conform() {
    testing::conformance_shared(|| {
        let (raw, a) = fresh();
        let b = Barrier::unseal(raw, root(1)).unwrap();
        (Box::new(ViaBarrier(a)), Box::new(ViaBarrier(b)))
    });
}

#[test]
fn round_trip_and_the_store_sees_only_ciphertext() {
    let (raw, barrier) = fresh();
    let secret = b"sk-live-0123456789abcdef";
    barrier.put("secret/data/openclaw/llm", secret).unwrap();
    assert_eq!(
        plain(barrier.get("secret/data/openclaw/llm").unwrap()).as_deref(),
        Some(&secret[..])
    );
    let stored = raw.get("secret/data/openclaw/llm").unwrap().unwrap();
    assert_eq!(stored.len(), secret.len() + OVERHEAD);
    assert_eq!(stored[0], 1, "format version");
    assert_eq!(&stored[1..5], &1u32.to_be_bytes(), "term 1");
    assert!(!stored.windows(secret.len()).any(|w| w == secret));
    // Same plaintext twice: different ciphertexts (fresh nonce).
    barrier.put("secret/data/openclaw/llm", secret).unwrap();
    assert_ne!(
        raw.get("secret/data/openclaw/llm").unwrap().unwrap(),
        stored
    );
    // Empty values work and are still authenticated.
    barrier.put("empty", b"").unwrap();
    assert_eq!(raw.get("empty").unwrap().unwrap().len(), OVERHEAD);
    assert_eq!(plain(barrier.get("empty").unwrap()), Some(vec![]));
    assert_eq!(barrier.get("missing").unwrap(), None);
    assert_eq!(barrier.key_term_of("missing").unwrap(), None);
}

#[test]
fn a_ciphertext_moved_to_another_key_fails_naming_that_key() {
    let (raw, barrier) = fresh();
    barrier
        .put("auth/cert/certs/attacker", b"attacker's role")
        .unwrap();
    barrier.put("auth/cert/certs/admin", b"admin role").unwrap();
    let moved = raw.get("auth/cert/certs/attacker").unwrap().unwrap();
    raw.put("auth/cert/certs/admin", &moved).unwrap();
    let err = barrier.get("auth/cert/certs/admin").unwrap_err();
    match &err {
        BarrierError::Integrity { key, .. } => assert_eq!(key, "auth/cert/certs/admin"),
        other => panic!("expected Integrity, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("auth/cert/certs/admin") && !msg.contains("role"),
        "{msg}"
    );
    // A plaintext check on the swapped key fails the same way instead of comparing garbage.
    assert!(matches!(
        barrier.transaction(&[TxOp::check(
            "auth/cert/certs/admin",
            Some(b"admin role".to_vec())
        )]),
        Err(BarrierError::Integrity { .. })
    ));
}

#[test]
fn any_tampered_byte_is_an_integrity_error() {
    let (raw, barrier) = fresh();
    barrier.put("k", b"some secret value").unwrap();
    let good = raw.get("k").unwrap().unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        raw.put("k", &bad).unwrap();
        match barrier.get("k") {
            Err(BarrierError::Integrity { key, .. }) => assert_eq!(key, "k"),
            // Bytes 1..5 are the term: a flipped bit names a term that does not exist.
            Err(BarrierError::UnknownTerm { key, .. }) if (1..5).contains(&i) => {
                assert_eq!(key, "k")
            }
            other => panic!("byte {i}: expected an integrity error, got {other:?}"),
        }
    }
    for len in [0, 1, 5, 17, OVERHEAD - 1, good.len() - 1] {
        raw.put("k", &good[..len]).unwrap();
        assert!(
            matches!(barrier.get("k"), Err(BarrierError::Integrity { .. })),
            "truncated to {len}"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    raw.put("k", &longer).unwrap();
    assert!(matches!(
        barrier.get("k"),
        Err(BarrierError::Integrity { .. })
    ));
    raw.put("k", &good).unwrap();
    assert_eq!(
        plain(barrier.get("k").unwrap()).as_deref(),
        Some(&b"some secret value"[..])
    );
}

#[test]
fn an_entry_from_another_installation_does_not_decrypt() {
    let (_, a) = fresh();
    let (raw_b, b) = fresh();
    a.put("x", b"from a").unwrap();
    b.put("x", b"from b").unwrap();
    // Same key path, same term number, different keyring.
    let (raw_a2, a2) = fresh();
    a2.put("x", b"other").unwrap();
    raw_b.put("x", &raw_a2.get("x").unwrap().unwrap()).unwrap();
    assert!(matches!(b.get("x"), Err(BarrierError::Integrity { .. })));
}

#[test]
fn rotation_keeps_old_entries_readable_and_new_writes_use_the_new_term() {
    let (raw, barrier) = fresh();
    assert_eq!(barrier.key_status().active_term, 1);
    barrier.put("old", b"written under term 1").unwrap();
    let new_term = barrier.rotate().unwrap();
    assert_eq!(new_term, 2);
    assert_eq!(barrier.key_status().active_term, 2);
    assert_eq!(barrier.key_status().terms, 2);
    assert_eq!(barrier.key_term_of("old").unwrap(), Some(1));
    barrier.put("new", b"written under term 2").unwrap();
    assert_eq!(barrier.key_term_of("new").unwrap(), Some(2));
    assert_eq!(
        plain(barrier.get("old").unwrap()).as_deref(),
        Some(&b"written under term 1"[..])
    );
    assert_eq!(barrier.rotate().unwrap(), 3);
    barrier
        .transaction(&[TxOp::put("tx", b"under 3".to_vec())])
        .unwrap();
    assert_eq!(barrier.key_term_of("tx").unwrap(), Some(3));

    // Persisted: a fresh unseal sees all terms and the active one.
    drop(barrier);
    let again = Barrier::unseal(raw, root(1)).unwrap();
    assert_eq!(again.key_status().active_term, 3);
    assert_eq!(again.key_status().terms, 3);
    for (k, v) in [
        ("old", &b"written under term 1"[..]),
        ("new", b"written under term 2"),
        ("tx", b"under 3"),
    ] {
        assert_eq!(plain(again.get(k).unwrap()).as_deref(), Some(v), "{k}");
    }
    again.put("old", b"re-encrypted").unwrap();
    assert_eq!(again.key_term_of("old").unwrap(), Some(3));
}

#[test]
fn a_node_learns_of_another_nodes_rotation_on_first_read() {
    let (raw, a) = fresh();
    let b = Barrier::unseal(raw.clone(), root(1)).unwrap();
    assert_eq!(a.rotate().unwrap(), 2);
    a.put("from-a", b"term 2").unwrap();
    // b still has only term 1 in memory; reading a term-2 entry reloads its keyring.
    assert_eq!(b.key_status().terms, 1);
    assert_eq!(
        plain(b.get("from-a").unwrap()).as_deref(),
        Some(&b"term 2"[..])
    );
    assert_eq!(b.key_status().active_term, 2);
    // b rotates on top of the stored keyring: no term is lost.
    assert_eq!(b.rotate().unwrap(), 3);
    b.put("from-b", b"term 3").unwrap();
    assert_eq!(
        plain(a.get("from-b").unwrap()).as_deref(),
        Some(&b"term 3"[..])
    );
    let c = Barrier::unseal(raw, root(1)).unwrap();
    assert_eq!(c.key_status().terms, 3);
}

#[test]
fn a_term_missing_from_the_keyring_is_reported_as_such() {
    let (raw, barrier) = fresh();
    barrier.put("k", b"v").unwrap();
    let mut blob = raw.get("k").unwrap().unwrap();
    blob[1..5].copy_from_slice(&77u32.to_be_bytes());
    raw.put("k", &blob).unwrap();
    match barrier.get("k") {
        Err(BarrierError::UnknownTerm { key, term: 77 }) => assert_eq!(key, "k"),
        other => panic!("expected UnknownTerm, got {other:?}"),
    }
}

#[test]
fn unseal_with_the_wrong_root_key_fails_with_wrong_key() {
    let (raw, barrier) = fresh();
    barrier.put("k", b"v").unwrap();
    drop(barrier);
    let err = Barrier::unseal(raw.clone(), root(9)).unwrap_err();
    assert!(matches!(err, BarrierError::WrongKey), "{err:?}");
    assert!(err.to_string().contains("unseal key is wrong"), "{err}");
    // A tampered keyring is indistinguishable from a wrong key, and just as refused.
    let mut ring = raw.get(KEYRING_KEY).unwrap().unwrap();
    let last = ring.len() - 1;
    ring[last] ^= 1;
    raw.put(KEYRING_KEY, &ring).unwrap();
    assert!(matches!(
        Barrier::unseal(raw, root(1)),
        Err(BarrierError::WrongKey)
    ));
}

#[test]
fn initialize_twice_fails_and_keeps_the_first_keyring() {
    let (raw, barrier) = fresh();
    barrier.put("k", b"v").unwrap();
    let ring = raw.get(KEYRING_KEY).unwrap();
    assert!(Barrier::is_initialized(&raw).unwrap());
    assert!(matches!(
        Barrier::initialize(raw.clone(), root(1)),
        Err(BarrierError::AlreadyInitialized)
    ));
    assert!(matches!(
        Barrier::initialize(raw.clone(), root(5)),
        Err(BarrierError::AlreadyInitialized)
    ));
    assert_eq!(raw.get(KEYRING_KEY).unwrap(), ring);
    let again = Barrier::unseal(raw, root(1)).unwrap();
    assert_eq!(plain(again.get("k").unwrap()).as_deref(), Some(&b"v"[..]));
}

#[test]
fn unseal_of_an_empty_store_says_not_initialized() {
    let raw = MemStore::new();
    assert!(!Barrier::is_initialized(&raw).unwrap());
    assert!(matches!(
        Barrier::unseal(raw, root(1)),
        Err(BarrierError::NotInitialized)
    ));
}

#[test]
fn reserved_keys_are_refused() {
    let (_, barrier) = fresh();
    for key in ["core/keyring", "core/seal-config"] {
        assert!(
            matches!(barrier.get(key), Err(BarrierError::ReservedKey { .. })),
            "{key}"
        );
        assert!(matches!(
            barrier.put(key, b"x"),
            Err(BarrierError::ReservedKey { .. })
        ));
        assert!(matches!(
            barrier.delete(key),
            Err(BarrierError::ReservedKey { .. })
        ));
        assert!(matches!(
            barrier.transaction(&[TxOp::put("fine", b"1".to_vec()), TxOp::delete(key)]),
            Err(BarrierError::ReservedKey { .. })
        ));
    }
    assert_eq!(
        barrier.get("fine").unwrap(),
        None,
        "nothing of the refused transaction was written"
    );
    // Other keys under core/ are ordinary encrypted entries.
    barrier.put("core/audit-hmac-key", b"k").unwrap();
    assert_eq!(
        plain(barrier.get("core/audit-hmac-key").unwrap()).as_deref(),
        Some(&b"k"[..])
    );
    assert_eq!(
        barrier.list("core/").unwrap(),
        ["audit-hmac-key", "keyring"]
    );
}

#[test]
fn plaintext_check_survives_a_rewrite_of_the_same_value() {
    // The stored ciphertext changes on every write; a plaintext check compares plaintext.
    let (_, barrier) = fresh();
    barrier.put("v", b"same").unwrap();
    barrier.put("v", b"same").unwrap();
    barrier
        .transaction(&[
            TxOp::check("v", Some(b"same".to_vec())),
            TxOp::put("v", b"next".to_vec()),
        ])
        .unwrap();
    match barrier.transaction(&[TxOp::check("v", Some(b"same".to_vec()))]) {
        Err(BarrierError::Conflict { key }) => assert_eq!(key, "v"),
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[test]
fn debug_output_shows_no_key_material() {
    let (_, barrier) = fresh();
    let shown = format!("{barrier:?}");
    assert!(
        shown.starts_with("Barrier { active_term: 1, terms: [1]"),
        "{shown}"
    );
    assert!(
        !shown.contains("raw") && !shown.contains("RootKey"),
        "{shown}"
    );
}

#[test]
fn arc_dyn_store_works_for_the_server() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let barrier: keep_store::barrier::DynBarrier =
        Barrier::initialize(store.clone(), root(3)).unwrap();
    barrier.put("a", b"b").unwrap();
    assert!(store.get("a").unwrap().is_some());
}
