//! The encryption barrier: every value is AES-256-GCM encrypted before it reaches a [`Store`]
//! and authenticated on the way back.
//!
//! # Entry format (version 1)
//!
//! ```text
//! [0x01 format version][term: u32 big-endian][nonce: 12 random bytes][ciphertext][GCM tag: 16]
//! associated data = the 5 header bytes ‖ the storage key path (UTF-8)
//! ```
//!
//! An entry is exactly 33 bytes longer than its plaintext. The header is in the associated
//! data as well as the key path, so neither the version nor the term can be changed without
//! failing authentication. The nonce is fresh from the system random source on every write;
//! with random 96-bit nonces NIST SP 800-38D allows 2^32 encryptions per key, so rotate a term
//! long before that (at a few thousand writes a second that is still years).
//!
//! # Keyring (`core/keyring`)
//!
//! The term keys live in one entry at `core/keyring`, in the same envelope but encrypted under
//! the **root key** with term field `0` (term numbers of data keys start at 1) and associated
//! data `header ‖ "keep keyring v1\0" ‖ "core/keyring"`. Its plaintext is:
//!
//! ```text
//! [0x01 keyring format][active term: u32 BE][count: u32 BE]
//! count × ( [term: u32 BE][created: u64 BE, Unix seconds][key: 32 bytes] )
//! ```
//!
//! The root key is never stored; it comes from the unseal material ([`crate::seal`]). A root
//! key that fails to open the keyring is [`BarrierError::WrongKey`].
//!
//! # Several nodes
//!
//! Nodes sharing one store each hold the keyring in memory. When one rotates, the others keep
//! writing under their (still valid) active term; the first time one of them reads an entry
//! under a term it does not know, it re-reads the keyring from storage and retries. Rotation
//! itself is a compare-and-set on the stored keyring, so two concurrent rotations cannot lose
//! a term.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

use crate::seal::{RootKey, SEAL_CONFIG_KEY};
use crate::{BarrierError, Store, StoreError, TxOp, validate_key, validate_prefix};

/// Where the wrapped keyring is stored.
pub const KEYRING_KEY: &str = "core/keyring";

/// Bytes a stored entry has beyond its plaintext: header 5 + nonce 12 + tag 16.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

const FORMAT_V1: u8 = 0x01;
const HEADER_LEN: usize = 5;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// The term field of the keyring entry: it is encrypted by the root key, not by a term.
const ROOT_TERM: u32 = 0;
/// Domain separation for the keyring's associated data, so no data entry's AAD can equal it.
const KEYRING_AAD_LABEL: &[u8] = b"keep keyring v1\0";
const KEYRING_FORMAT_V1: u8 = 0x01;
const KEYRING_ENTRY_LEN: usize = 4 + 8 + KEY_LEN;

/// How often a plaintext compare-and-set is re-tried when the underlying ciphertext changed
/// but the plaintext might still match (see [`Barrier::transaction`]).
const CAS_ATTEMPTS: usize = 4;

/// Keys that only the barrier itself writes. Reading or writing them through the barrier's
/// plaintext API would fail (keyring) or destroy the installation, so it is refused.
const RESERVED: [&str; 2] = [KEYRING_KEY, SEAL_CONFIG_KEY];

/// An unsealed encryption barrier over a [`Store`]: plaintext in, ciphertext below.
///
/// Holding a `Barrier` *is* being unsealed: it owns the root key and the keyring in memory.
/// Sealing a server means dropping its `Barrier`, which zeroizes the keys. A sealed server
/// keeps a plain `Store` handle for [`SealConfig::load`](crate::SealConfig::load) and
/// [`seal::status`](crate::seal::status).
///
/// All methods take `&self` and are safe to call from many threads. `Debug` shows the active
/// term and the number of terms, never a key.
pub struct Barrier<S: Store> {
    store: S,
    root: RootKey,
    keyring: RwLock<Keyring>,
}

/// A barrier over any store, as a server holds it.
pub type DynBarrier = Barrier<std::sync::Arc<dyn Store>>;

/// The barrier's key state, for `keep server rotate` and a `sys/key-status` endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    /// The term new writes are encrypted under.
    pub active_term: u32,
    /// When the active term was created, in Unix seconds.
    pub active_since_unix: u64,
    /// How many terms the keyring holds (old terms stay to read old entries).
    pub terms: usize,
}

impl<S: Store> Barrier<S> {
    /// Whether `store` holds a keyring, i.e. has been initialized. Needs no key.
    pub fn is_initialized(store: &S) -> Result<bool, StoreError> {
        Ok(store.get(KEYRING_KEY)?.is_some())
    }

    /// Creates the keyring (term 1, a fresh random key) wrapped by `root_key`, and returns the
    /// unsealed barrier.
    ///
    /// Fails with [`BarrierError::AlreadyInitialized`] if a keyring exists: the check and the
    /// write are one transaction, so two racing initializations cannot both succeed.
    ///
    /// This writes no seal configuration; a server initializes through
    /// [`RootKeySource::initialize`](crate::RootKeySource::initialize) or
    /// [`SealConfig::initialize`](crate::SealConfig::initialize), which record in the same
    /// transaction how the root key is obtained.
    pub fn initialize(store: S, root_key: RootKey) -> Result<Self, BarrierError> {
        Self::initialize_with(store, root_key, Vec::new())
    }

    /// [`initialize`](Self::initialize), with `extra` ops written in the same transaction.
    pub(crate) fn initialize_with(
        store: S,
        root: RootKey,
        extra: Vec<TxOp>,
    ) -> Result<Self, BarrierError> {
        let keyring = Keyring::first()?;
        let blob = wrap_keyring(&root, &keyring)?;
        let mut ops = Vec::with_capacity(extra.len() + 2);
        ops.push(TxOp::check(KEYRING_KEY, None));
        ops.extend(extra);
        ops.push(TxOp::put(KEYRING_KEY, blob));
        match store.transaction(&ops) {
            Ok(()) => Ok(Barrier {
                store,
                root,
                keyring: RwLock::new(keyring),
            }),
            Err(StoreError::Conflict { .. }) => Err(BarrierError::AlreadyInitialized),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the keyring with `root_key` and returns the unsealed barrier.
    ///
    /// [`BarrierError::NotInitialized`] if there is no keyring; [`BarrierError::WrongKey`] if
    /// `root_key` does not decrypt it.
    pub fn unseal(store: S, root_key: RootKey) -> Result<Self, BarrierError> {
        let blob = store
            .get(KEYRING_KEY)?
            .ok_or(BarrierError::NotInitialized)?;
        let keyring = unwrap_keyring(&root_key, blob)?;
        Ok(Barrier {
            store,
            root: root_key,
            keyring: RwLock::new(keyring),
        })
    }

    /// Reads and decrypts the value at `key`.
    ///
    /// The plaintext comes back in a [`Zeroizing`] buffer, wiped when dropped. An entry that
    /// fails authentication is [`BarrierError::Integrity`] naming `key`; it is never returned.
    pub fn get(&self, key: &str) -> Result<Option<Zeroizing<Vec<u8>>>, BarrierError> {
        refuse_reserved(key)?;
        match self.store.get(key)? {
            Some(blob) => self.decrypt(key, blob).map(Some),
            None => Ok(None),
        }
    }

    /// Encrypts `value` under the active term and writes it at `key`.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), BarrierError> {
        refuse_reserved(key)?;
        validate_key(key)?;
        let blob = self.encrypt(key, value)?;
        self.store.put(key, &blob)?;
        Ok(())
    }

    /// Removes `key` (no error if it is absent).
    pub fn delete(&self, key: &str) -> Result<(), BarrierError> {
        refuse_reserved(key)?;
        self.store.delete(key)?;
        Ok(())
    }

    /// Lists the children under `prefix`, exactly as [`Store::list`] does.
    ///
    /// Key names are not encrypted (see the crate's threat model), so this reads no values.
    /// Listing `core/` shows the barrier's own `keyring` and `seal-config`.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, BarrierError> {
        validate_prefix(prefix)?;
        Ok(self.store.list(prefix)?)
    }

    /// Applies `ops` atomically, on plaintext: puts are encrypted, and a
    /// [`TxOp::Check`] compares the *plaintext* currently at its key with `expected`.
    /// Semantics are those of [`Store::transaction`]: in order, all or nothing, a failed check
    /// is [`BarrierError::Conflict`] naming its key.
    ///
    /// How a plaintext check stays atomic with the writes: the barrier reads the current
    /// ciphertext, decrypts and compares it, and then sends the store a `Check` on **that
    /// exact ciphertext** inside the same store transaction as the writes. Every write through
    /// the barrier uses a fresh random nonce, so an unchanged ciphertext means nobody wrote the
    /// key in between; a changed one makes the store transaction fail with nothing written. In
    /// that case the barrier starts over (re-reads, re-compares) a few times, because the new
    /// ciphertext may still hold the expected plaintext (someone wrote the same value); only a
    /// real mismatch, or a key that keeps changing under contention, becomes a `Conflict`.
    /// A check that follows a put or delete of the same key in the same transaction is
    /// compared against that staged value, without a read.
    pub fn transaction(&self, ops: &[TxOp]) -> Result<(), BarrierError> {
        for op in ops {
            refuse_reserved(op.key())?;
            validate_key(op.key())?;
        }
        let mut last_conflict = None;
        for _ in 0..CAS_ATTEMPTS {
            let store_ops = self.prepare(ops)?;
            match self.store.transaction(&store_ops) {
                Ok(()) => return Ok(()),
                // The ciphertext under a check changed since we read it: re-read and decide.
                Err(StoreError::Conflict { key }) => last_conflict = Some(key),
                Err(e) => return Err(e.into()),
            }
        }
        Err(BarrierError::Conflict {
            key: last_conflict.unwrap_or_default(),
        })
    }

    /// Translates plaintext ops into store ops: encrypts puts, resolves plaintext checks into
    /// ciphertext checks (see [`transaction`](Self::transaction)).
    fn prepare(&self, ops: &[TxOp]) -> Result<Vec<TxOp>, BarrierError> {
        // What this transaction has already staged per key, in plaintext.
        let mut staged: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                TxOp::Put { key, value } => {
                    staged.insert(key, Some(value));
                    out.push(TxOp::Put {
                        key: key.clone(),
                        value: self.encrypt(key, value)?,
                    });
                }
                TxOp::Delete { key } => {
                    staged.insert(key, None);
                    out.push(op.clone());
                }
                TxOp::Check { key, expected } => {
                    if let Some(current) = staged.get(key.as_str()) {
                        if *current != expected.as_deref() {
                            return Err(BarrierError::Conflict { key: key.clone() });
                        }
                        continue;
                    }
                    let raw = self.store.get(key)?;
                    let plain = match &raw {
                        Some(blob) => Some(self.decrypt(key, blob.clone())?),
                        None => None,
                    };
                    if plain.as_ref().map(|p| p.as_slice()) != expected.as_deref() {
                        return Err(BarrierError::Conflict { key: key.clone() });
                    }
                    out.push(TxOp::Check {
                        key: key.clone(),
                        expected: raw,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Adds a new keyring term with a fresh random key and makes it active. New writes use
    /// it; entries under older terms stay readable. Returns the new term.
    ///
    /// The new keyring is persisted (wrapped by the root key) before this returns. It is a
    /// compare-and-set on the stored keyring: if another node rotated at the same moment this
    /// fails with [`BarrierError::Conflict`] on `core/keyring`, and nothing changed; try again.
    pub fn rotate(&self) -> Result<u32, BarrierError> {
        let mut ring = self.write_ring();
        let stored = self
            .store
            .get(KEYRING_KEY)?
            .ok_or(BarrierError::NotInitialized)?;
        // Start from the stored keyring, so terms other nodes added are kept.
        let mut next = unwrap_keyring(&self.root, stored.clone())?;
        next.merge_from(&ring);
        let term = next.add_term()?;
        let blob = wrap_keyring(&self.root, &next)?;
        match self.store.transaction(&[
            TxOp::check(KEYRING_KEY, Some(stored)),
            TxOp::put(KEYRING_KEY, blob),
        ]) {
            Ok(()) => {}
            Err(StoreError::Conflict { key }) => return Err(BarrierError::Conflict { key }),
            Err(e) => return Err(e.into()),
        }
        *ring = next;
        Ok(term)
    }

    /// Re-reads the keyring from storage, adding terms another node created. Called by itself
    /// when an entry names an unknown term; public for a server that learns of a rotation
    /// some other way.
    pub fn reload_keyring(&self) -> Result<(), BarrierError> {
        let stored = self
            .store
            .get(KEYRING_KEY)?
            .ok_or(BarrierError::NotInitialized)?;
        let fresh = unwrap_keyring(&self.root, stored)?;
        self.write_ring().merge_from(&fresh);
        Ok(())
    }

    /// The term the entry at `key` is encrypted under, from its header, without decrypting
    /// (`None` if there is no entry). For tests and for reporting how far a re-encryption
    /// after rotation has got.
    pub fn key_term_of(&self, key: &str) -> Result<Option<u32>, BarrierError> {
        match self.store.get(key)? {
            Some(blob) => parse_header(&blob)
                .map(Some)
                .map_err(|reason| integrity(key, reason)),
            None => Ok(None),
        }
    }

    /// The active term, its age and the number of terms.
    pub fn key_status(&self) -> KeyStatus {
        let ring = self.read_ring();
        KeyStatus {
            active_term: ring.active,
            active_since_unix: ring.terms.get(&ring.active).map_or(0, |t| t.created),
            terms: ring.terms.len(),
        }
    }

    fn encrypt(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, BarrierError> {
        let ring = self.read_ring();
        let term = ring.active_key()?;
        seal(&term.aead, ring.active, &[key.as_bytes()], value)
    }

    fn decrypt(&self, key: &str, blob: Vec<u8>) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
        let term = parse_header(&blob).map_err(|reason| integrity(key, reason))?;
        if term == ROOT_TERM {
            return Err(integrity(
                key,
                "entry is wrapped by the root key, not a data key",
            ));
        }
        if !self.read_ring().terms.contains_key(&term) {
            // Another node may have rotated since we unsealed.
            self.reload_keyring()?;
        }
        let ring = self.read_ring();
        let tk = ring
            .terms
            .get(&term)
            .ok_or_else(|| BarrierError::UnknownTerm {
                key: crate::error::shorten(key),
                term,
            })?;
        open(&tk.aead, blob, &[key.as_bytes()])
            .map_err(|()| integrity(key, "authentication failed"))
    }

    fn read_ring(&self) -> RwLockReadGuard<'_, Keyring> {
        // The keyring is replaced whole (never left half-updated), so a poisoned lock still
        // guards a consistent value.
        self.keyring.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_ring(&self) -> RwLockWriteGuard<'_, Keyring> {
        self.keyring.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: Store> fmt::Debug for Barrier<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.read_ring();
        f.debug_struct("Barrier")
            .field("active_term", &ring.active)
            .field("terms", &ring.terms.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn refuse_reserved(key: &str) -> Result<(), BarrierError> {
    if RESERVED.contains(&key) {
        return Err(BarrierError::ReservedKey {
            key: key.to_owned(),
        });
    }
    Ok(())
}

fn integrity(key: &str, reason: &'static str) -> BarrierError {
    BarrierError::Integrity {
        key: crate::error::shorten(key),
        reason,
    }
}

/// One data key of the keyring.
struct TermKey {
    aead: LessSafeKey,
    // The raw bytes are kept (zeroized on drop) to re-wrap the keyring on rotation.
    raw: Zeroizing<[u8; KEY_LEN]>,
    created: u64,
}

/// Term → data key, and which term new writes use. Invariant: `terms` contains `active`
/// (established by every constructor and by [`Keyring::decode`]).
struct Keyring {
    active: u32,
    terms: BTreeMap<u32, TermKey>,
}

impl Keyring {
    /// A keyring with term 1 only.
    fn first() -> Result<Self, BarrierError> {
        let mut ring = Keyring {
            active: 0,
            terms: BTreeMap::new(),
        };
        ring.add_term()?;
        Ok(ring)
    }

    /// Adds the next term with a random key, makes it active, returns its number.
    fn add_term(&mut self) -> Result<u32, BarrierError> {
        let term = match self.terms.keys().next_back() {
            Some(t) => t.checked_add(1).ok_or(BarrierError::Crypto {
                op: "keyring term overflow",
            })?,
            None => 1,
        };
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(raw.as_mut()).map_err(|_| BarrierError::Crypto {
            op: "random data key",
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.terms.insert(term, TermKey::new(raw, now)?);
        self.active = term;
        Ok(term)
    }

    fn active_key(&self) -> Result<&TermKey, BarrierError> {
        // Cannot fail by the type's invariant; an error instead of a panic all the same.
        self.terms.get(&self.active).ok_or(BarrierError::Crypto {
            op: "active keyring term missing",
        })
    }

    /// Adds terms of `other` this keyring lacks, and moves to the newer active term. Terms
    /// are only ever added, so a stale in-memory copy or a rolled-back stored one cannot make
    /// entries unreadable.
    fn merge_from(&mut self, other: &Keyring) {
        for (term, tk) in &other.terms {
            if !self.terms.contains_key(term) {
                // Copying the key: TermKey::new only fails on a wrong key length, which a
                // [u8; 32] cannot have; skip rather than panic should it ever.
                if let Ok(copy) = TermKey::new(tk.raw.clone(), tk.created) {
                    self.terms.insert(*term, copy);
                }
            }
        }
        if other.active > self.active && self.terms.contains_key(&other.active) {
            self.active = other.active;
        }
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        // Exact capacity: the buffer never reallocates, so no copy of a key is left behind in
        // freed memory.
        let mut out = Zeroizing::new(Vec::with_capacity(9 + self.terms.len() * KEYRING_ENTRY_LEN));
        out.push(KEYRING_FORMAT_V1);
        out.extend_from_slice(&self.active.to_be_bytes());
        let count = u32::try_from(self.terms.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (term, tk) in &self.terms {
            out.extend_from_slice(&term.to_be_bytes());
            out.extend_from_slice(&tk.created.to_be_bytes());
            out.extend_from_slice(tk.raw.as_ref());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let (head, mut rest) = bytes
            .split_at_checked(9)
            .ok_or("keyring record truncated")?;
        if head[0] != KEYRING_FORMAT_V1 {
            return Err("unknown keyring format");
        }
        let active = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let count = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) as usize;
        if rest.len() != count.saturating_mul(KEYRING_ENTRY_LEN) {
            return Err("keyring record has the wrong length");
        }
        let mut terms = BTreeMap::new();
        while let Some((entry, tail)) = rest.split_at_checked(KEYRING_ENTRY_LEN) {
            rest = tail;
            let term = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let mut created = [0u8; 8];
            created.copy_from_slice(&entry[4..12]);
            let mut raw = Zeroizing::new([0u8; KEY_LEN]);
            raw.copy_from_slice(&entry[12..]);
            if term == ROOT_TERM {
                return Err("keyring contains term 0");
            }
            let tk = TermKey::new(raw, u64::from_be_bytes(created))
                .map_err(|_| "keyring contains an unusable key")?;
            if terms.insert(term, tk).is_some() {
                return Err("keyring contains a term twice");
            }
        }
        if !terms.contains_key(&active) {
            return Err("keyring's active term has no key");
        }
        Ok(Keyring { active, terms })
    }
}

impl TermKey {
    fn new(raw: Zeroizing<[u8; KEY_LEN]>, created: u64) -> Result<Self, BarrierError> {
        Ok(TermKey {
            aead: aead_key(raw.as_ref())?,
            raw,
            created,
        })
    }
}

/// An AES-256-GCM key. aws-lc-rs keeps the expanded key inside its own (freed on drop)
/// context; our copy of the raw bytes is zeroized by its owner.
pub(crate) fn aead_key(raw: &[u8]) -> Result<LessSafeKey, BarrierError> {
    UnboundKey::new(&AES_256_GCM, raw)
        .map(LessSafeKey::new)
        .map_err(|_| BarrierError::Crypto { op: "AES-256 key" })
}

/// Encrypts into the entry format: header, fresh nonce, ciphertext, tag. `aad_tail` follows
/// the header in the associated data.
fn seal(
    aead: &LessSafeKey,
    term: u32,
    aad_tail: &[&[u8]],
    plaintext: &[u8],
) -> Result<Vec<u8>, BarrierError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| BarrierError::Crypto { op: "random nonce" })?;
    // Exact capacity: the plaintext copied in is encrypted in place and the buffer never
    // reallocates, so no plaintext copy is left in freed memory.
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&term.to_be_bytes());
    let aad = associated_data(&out[..HEADER_LEN], aad_tail);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    match aead.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad),
        &mut out[HEADER_LEN + NONCE_LEN..],
    ) {
        Ok(tag) => {
            out.extend_from_slice(tag.as_ref());
            Ok(out)
        }
        Err(_) => {
            out.zeroize();
            Err(BarrierError::Crypto { op: "AES-GCM seal" })
        }
    }
}

/// Authenticates and decrypts an entry whose header [`parse_header`] accepted. Returns only
/// the plaintext; on failure the buffer (which may hold unauthenticated plaintext) is wiped.
fn open(aead: &LessSafeKey, blob: Vec<u8>, aad_tail: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, ()> {
    let mut blob = Zeroizing::new(blob);
    if blob.len() < OVERHEAD {
        return Err(());
    }
    let aad = associated_data(&blob[..HEADER_LEN], aad_tail);
    let nonce = Nonce::try_assume_unique_for_key(&blob[HEADER_LEN..HEADER_LEN + NONCE_LEN])
        .map_err(|_| ())?;
    let len = aead
        .open_in_place(nonce, Aad::from(&aad), &mut blob[HEADER_LEN + NONCE_LEN..])
        .map_err(|_| ())?
        .len();
    blob.copy_within(HEADER_LEN + NONCE_LEN..HEADER_LEN + NONCE_LEN + len, 0);
    blob.truncate(len);
    Ok(blob)
}

fn associated_data(header: &[u8], tail: &[&[u8]]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + tail.iter().map(|t| t.len()).sum::<usize>());
    aad.extend_from_slice(header);
    for t in tail {
        aad.extend_from_slice(t);
    }
    aad
}

/// Checks the fixed part of an entry and returns its term.
fn parse_header(blob: &[u8]) -> Result<u32, &'static str> {
    if blob.len() < OVERHEAD {
        return Err("entry too short to be a ciphertext");
    }
    if blob[0] != FORMAT_V1 {
        return Err("unknown entry format version");
    }
    Ok(u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]))
}

fn wrap_keyring(root: &RootKey, ring: &Keyring) -> Result<Vec<u8>, BarrierError> {
    let plain = ring.encode();
    seal(
        &aead_key(root.expose())?,
        ROOT_TERM,
        &[KEYRING_AAD_LABEL, KEYRING_KEY.as_bytes()],
        &plain,
    )
}

fn unwrap_keyring(root: &RootKey, blob: Vec<u8>) -> Result<Keyring, BarrierError> {
    let term = parse_header(&blob).map_err(|reason| integrity(KEYRING_KEY, reason))?;
    if term != ROOT_TERM {
        return Err(integrity(KEYRING_KEY, "keyring entry has a data-key term"));
    }
    let plain = open(
        &aead_key(root.expose())?,
        blob,
        &[KEYRING_AAD_LABEL, KEYRING_KEY.as_bytes()],
    )
    // Authentication failure here means the root key is not the one the keyring was wrapped
    // with (or the entry was altered; the two are indistinguishable by design).
    .map_err(|()| BarrierError::WrongKey)?;
    Keyring::decode(&plain).map_err(|reason| integrity(KEYRING_KEY, reason))
}

/// The barrier is itself a [`Store`] of plaintext, so code above it (the KV engine, tokens,
/// policies) is written once against the trait and tested on [`MemStore`](crate::MemStore).
///
/// Through this view `get` returns a plain `Vec`, moved out of the barrier's zeroizing buffer
/// (the caller owns the plaintext and should drop it promptly), and barrier-specific failures become [`StoreError::Backend`] with the
/// barrier error as the source — except a failed check, which stays [`StoreError::Conflict`]
/// so compare-and-set callers can tell it apart.
impl<S: Store> Store for Barrier<S> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // Moves the plaintext buffer out of its `Zeroizing` wrapper rather than copying it:
        // one buffer, owned by the caller, instead of a zeroized one and a plain copy.
        Barrier::get(self, key)
            .map(|v| v.map(|mut z| std::mem::take(&mut *z)))
            .map_err(|e| barrier_to_store("get", e))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        Barrier::put(self, key, value).map_err(|e| barrier_to_store("put", e))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        Barrier::delete(self, key).map_err(|e| barrier_to_store("delete", e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Barrier::list(self, prefix).map_err(|e| barrier_to_store("list", e))
    }

    fn transaction(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        Barrier::transaction(self, ops).map_err(|e| barrier_to_store("transaction", e))
    }
}

fn barrier_to_store(op: &'static str, e: BarrierError) -> StoreError {
    match e {
        BarrierError::Store(s) => s,
        BarrierError::Conflict { key } => StoreError::Conflict { key },
        other => StoreError::Backend {
            op,
            source: Box::new(other),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn entry_format_is_header_nonce_ciphertext_tag() {
        let key = aead_key(&[7u8; 32]).unwrap();
        let blob = seal(&key, 0x0102_0304, &[b"a/b"], b"hello").unwrap();
        assert_eq!(blob.len(), 5 + OVERHEAD);
        assert_eq!(&blob[..5], &[1, 1, 2, 3, 4]);
        assert_eq!(parse_header(&blob), Ok(0x0102_0304));
        let again = seal(&key, 0x0102_0304, &[b"a/b"], b"hello").unwrap();
        assert_ne!(blob[5..17], again[5..17], "a fresh nonce per write");
        assert_eq!(
            open(&key, blob.clone(), &[b"a/b"]).unwrap().as_slice(),
            b"hello"
        );
        assert!(
            open(&key, blob.clone(), &[b"a/c"]).is_err(),
            "key path is AAD"
        );
        let mut other_term = blob.clone();
        other_term[4] ^= 1;
        assert!(open(&key, other_term, &[b"a/b"]).is_err(), "header is AAD");
    }

    #[test]
    fn keyring_round_trips_and_rejects_garbage() {
        let mut ring = Keyring::first().unwrap();
        ring.add_term().unwrap();
        let bytes = ring.encode();
        assert_eq!(bytes.len(), 9 + 2 * KEYRING_ENTRY_LEN);
        let back = Keyring::decode(&bytes).unwrap();
        assert_eq!(back.active, 2);
        assert_eq!(back.terms.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(*back.terms[&1].raw, *ring.terms[&1].raw);
        assert!(Keyring::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut bad_active = bytes.to_vec();
        bad_active[4] = 9;
        assert!(Keyring::decode(&bad_active).is_err());
    }
}
