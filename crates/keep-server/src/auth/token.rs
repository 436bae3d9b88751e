//! Tokens: random, stored only as SHA-256 hashes, bound to the client certificate they were
//! issued to, with TTL and max TTL.
//!
//! | key | value |
//! |---|---|
//! | `auth/token/id/<sha256(token)>` | the [`TokenEntry`] |
//! | `auth/token/accessor/<sha256(accessor)>` | sha256(token), for lookup/revoke by accessor |
//!
//! Key names are not encrypted by the barrier, so they hold hashes, never the token itself.
//!
//! Expired tokens stay stored until [`Tokens::tidy_shard`] removes them (the tidy job in
//! [`crate::auth::tidy`], and `POST /v1/auth/token/tidy`): a lookup already ignores them, but
//! without the sweep every login would leave two rows behind for good.

use std::collections::BTreeMap;

use keep_store::{Store, StoreError, TxOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What is stored for a token. Never contains the token itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Public handle for admin lookup and revocation.
    pub accessor: String,
    /// Attached policies.
    pub policies: Vec<String>,
    /// The cert auth role that issued it.
    pub role: String,
    /// `cert-<display name or CN>`.
    pub display_name: String,
    /// String-only metadata (Vault clients reject non-string values).
    pub metadata: BTreeMap<String, String>,
    /// Creation, Unix seconds.
    pub created: i64,
    /// Expiry, Unix seconds.
    pub expires: i64,
    /// TTL granted at creation/renewal, seconds.
    pub ttl: u64,
    /// Hard limit from creation, seconds (0 = none beyond the system maximum).
    pub max_ttl: u64,
    /// SHA-256 fingerprint of the client certificate the token was issued to.
    pub cert_fingerprint: String,
    /// CIDRs the token may be used from (empty = any).
    pub bound_cidrs: Vec<String>,
    /// The address the certificate is pinned to, when its role sets `pin_first_seen_address`:
    /// the token may be used from there only. (`default` so tokens stored before the field
    /// existed still load.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_address: Option<std::net::IpAddr>,
}

/// How many shards a tidy pass walks: token hashes are hex, so shard `n` is every hash that
/// starts with the two hex digits of `n`. Each shard is listed and swept on its own, which
/// bounds both the memory of one step (about 1/256 of the tokens) and how long it holds the
/// storage.
pub const TIDY_SHARDS: u16 = 256;

/// How many expired tokens one storage transaction deletes at most (two keys each), so a sweep
/// never holds SQLite's write lock for long.
pub const TIDY_BATCH: usize = 128;

/// What one tidy step found and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TidyCount {
    /// Token entries looked at.
    pub scanned: u64,
    /// Expired tokens removed (each with its accessor index).
    pub removed: u64,
    /// Entries that could not be decoded (left in place, counted so the log shows them).
    pub unreadable: u64,
}

impl TidyCount {
    /// Adds another step's counts.
    pub fn add(&mut self, other: TidyCount) {
        self.scanned += other.scanned;
        self.removed += other.removed;
        self.unreadable += other.unreadable;
    }
}

/// The system-wide cap on token lifetime: 32 days, as Vault's default max TTL.
pub const SYSTEM_MAX_TTL: u64 = 32 * 24 * 3600;

fn hash_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| StoreError::Backend {
        op: "token",
        source: Box::new(std::io::Error::other(e.to_string())),
    })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn id_key(token: &str) -> String {
    format!("auth/token/id/{}", hash_hex(token))
}

fn accessor_key(accessor: &str) -> String {
    format!("auth/token/accessor/{}", hash_hex(accessor))
}

/// Token operations over the (encrypted) store.
pub struct Tokens<'a> {
    store: &'a dyn Store,
}

impl<'a> Tokens<'a> {
    /// Token operations on `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Tokens { store }
    }

    /// Creates a token for `entry` (its accessor and times are filled in). Returns the token:
    /// the only time it exists in plaintext.
    pub fn create(
        &self,
        mut entry: TokenEntry,
        now: i64,
    ) -> Result<(String, TokenEntry), StoreError> {
        let token = format!("hvs.{}", random_hex(32)?);
        entry.accessor = random_hex(12)?;
        entry.created = now;
        let ttl = effective_ttl(entry.ttl, entry.max_ttl);
        entry.ttl = ttl;
        entry.expires = now + i64::try_from(ttl).unwrap_or(i64::MAX / 4);
        let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError::Backend {
            op: "token",
            source: Box::new(e),
        })?;
        self.store.transaction(&[
            TxOp::Check {
                key: id_key(&token),
                expected: None,
            },
            TxOp::Put {
                key: id_key(&token),
                value: bytes,
            },
            TxOp::Put {
                key: accessor_key(&entry.accessor),
                value: hash_hex(&token).into_bytes(),
            },
        ])?;
        Ok((token, entry))
    }

    fn load_by_hash(&self, hash: &str) -> Result<Option<TokenEntry>, StoreError> {
        match self.store.get(&format!("auth/token/id/{hash}"))? {
            None => Ok(None),
            Some(b) => Ok(serde_json::from_slice(&b).ok()),
        }
    }

    /// The live entry for `token` (`None` if unknown, revoked or expired).
    pub fn lookup(&self, token: &str, now: i64) -> Result<Option<TokenEntry>, StoreError> {
        Ok(self
            .load_by_hash(&hash_hex(token))?
            .filter(|e| e.expires > now))
    }

    /// The live entry for an accessor.
    pub fn lookup_accessor(
        &self,
        accessor: &str,
        now: i64,
    ) -> Result<Option<TokenEntry>, StoreError> {
        let Some(h) = self.store.get(&accessor_key(accessor))? else {
            return Ok(None);
        };
        let h = String::from_utf8_lossy(&h).into_owned();
        Ok(self.load_by_hash(&h)?.filter(|e| e.expires > now))
    }

    /// Extends a token: new expiry `now + increment` (or its TTL), never past
    /// `created + max_ttl` nor the system maximum.
    pub fn renew(
        &self,
        token: &str,
        increment: Option<u64>,
        now: i64,
    ) -> Result<Option<TokenEntry>, StoreError> {
        let Some(mut e) = self.lookup(token, now)? else {
            return Ok(None);
        };
        let want = increment.filter(|i| *i > 0).unwrap_or(e.ttl);
        let cap = effective_ttl(u64::MAX, e.max_ttl);
        let hard_end = e.created + i64::try_from(cap).unwrap_or(i64::MAX / 4);
        e.expires = (now + i64::try_from(want).unwrap_or(i64::MAX / 4)).min(hard_end);
        let bytes = serde_json::to_vec(&e).map_err(|err| StoreError::Backend {
            op: "token",
            source: Box::new(err),
        })?;
        self.store.put(&id_key(token), &bytes)?;
        Ok(Some(e))
    }

    /// Removes the tokens of shard `shard` (see [`TIDY_SHARDS`]) that expired at or before `now`,
    /// with their accessor index, in transactions of at most [`TIDY_BATCH`] tokens.
    ///
    /// Deleting without a compare-and-set is safe: an expired token can never become live
    /// again (renew and lookup refuse it), so nothing can change it between the read and the
    /// delete that matters.
    pub fn tidy_shard(&self, shard: u16, now: i64) -> Result<TidyCount, StoreError> {
        let prefix = format!("auth/token/id/{:02x}", shard % TIDY_SHARDS);
        let mut count = TidyCount::default();
        let mut ops = Vec::with_capacity(2 * TIDY_BATCH);
        for rest in self.store.list(&prefix)? {
            if rest.contains('/') {
                continue;
            }
            count.scanned += 1;
            let key = format!("{prefix}{rest}");
            let Some(bytes) = self.store.get(&key)? else {
                continue;
            };
            let Ok(entry) = serde_json::from_slice::<TokenEntry>(&bytes) else {
                count.unreadable += 1;
                continue;
            };
            if entry.expires > now {
                continue;
            }
            ops.push(TxOp::Delete { key });
            ops.push(TxOp::Delete {
                key: accessor_key(&entry.accessor),
            });
            count.removed += 1;
            if ops.len() >= 2 * TIDY_BATCH {
                self.store.transaction(&ops)?;
                ops.clear();
            }
        }
        if !ops.is_empty() {
            self.store.transaction(&ops)?;
        }
        Ok(count)
    }

    /// Revokes a token (idempotent).
    pub fn revoke(&self, token: &str) -> Result<(), StoreError> {
        let hash = hash_hex(token);
        let mut ops = vec![TxOp::Delete {
            key: format!("auth/token/id/{hash}"),
        }];
        if let Some(e) = self.load_by_hash(&hash)? {
            ops.push(TxOp::Delete {
                key: accessor_key(&e.accessor),
            });
        }
        self.store.transaction(&ops)
    }

    /// Revokes the token behind an accessor. Returns whether there was one.
    pub fn revoke_accessor(&self, accessor: &str) -> Result<bool, StoreError> {
        let Some(h) = self.store.get(&accessor_key(accessor))? else {
            return Ok(false);
        };
        let h = String::from_utf8_lossy(&h).into_owned();
        self.store.transaction(&[
            TxOp::Delete {
                key: format!("auth/token/id/{h}"),
            },
            TxOp::Delete {
                key: accessor_key(accessor),
            },
        ])?;
        Ok(true)
    }
}

/// The TTL a token gets: the requested one (or Vault's 32-day default), capped by its max TTL
/// and the system maximum.
pub fn effective_ttl(ttl: u64, max_ttl: u64) -> u64 {
    let base = if ttl == 0 {
        crate::auth::role::DEFAULT_TOKEN_TTL
    } else {
        ttl
    };
    let cap = if max_ttl == 0 {
        SYSTEM_MAX_TTL
    } else {
        max_ttl.min(SYSTEM_MAX_TTL)
    };
    base.min(cap)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keep_store::MemStore;

    fn entry() -> TokenEntry {
        TokenEntry {
            accessor: String::new(),
            policies: vec!["default".into()],
            role: "agents".into(),
            display_name: "cert-agent".into(),
            metadata: BTreeMap::new(),
            created: 0,
            expires: 0,
            ttl: 60,
            max_ttl: 120,
            cert_fingerprint: "ab".into(),
            bound_cidrs: vec![],
            pinned_address: None,
        }
    }

    #[test]
    fn tokens_are_stored_only_as_hashes_and_expire() {
        let s = MemStore::new();
        let t = Tokens::new(&s);
        let (token, e) = t.create(entry(), 1000).unwrap();
        assert!(token.starts_with("hvs.") && token.len() == 68);
        for k in s.list("auth/token/id/").unwrap() {
            assert!(!k.contains(&token[4..]), "token in a key name");
        }
        for (_, v) in s.list("auth/token/id/").unwrap().iter().map(|k| {
            (
                k.clone(),
                s.get(&format!("auth/token/id/{k}")).unwrap().unwrap(),
            )
        }) {
            assert!(
                !String::from_utf8_lossy(&v).contains(&token[4..]),
                "token in a value"
            );
        }
        assert_eq!(
            t.lookup(&token, 1059).unwrap().unwrap().accessor,
            e.accessor
        );
        assert!(t.lookup(&token, 1060).unwrap().is_none(), "expired");
        assert!(t.lookup("hvs.forged", 1000).unwrap().is_none());
    }

    #[test]
    fn renew_is_capped_by_max_ttl_and_revoke_works_both_ways() {
        let s = MemStore::new();
        let t = Tokens::new(&s);
        let (token, e) = t.create(entry(), 1000).unwrap();
        let r = t.renew(&token, Some(500), 1050).unwrap().unwrap();
        assert_eq!(r.expires, 1120, "capped at created + max_ttl");
        t.revoke(&token).unwrap();
        assert!(t.lookup(&token, 1051).unwrap().is_none());
        assert!(t.lookup_accessor(&e.accessor, 1051).unwrap().is_none());
        let (token2, e2) = t.create(entry(), 1000).unwrap();
        assert!(t.revoke_accessor(&e2.accessor).unwrap());
        assert!(t.lookup(&token2, 1001).unwrap().is_none());
        assert!(!t.revoke_accessor(&e2.accessor).unwrap());
    }

    #[test]
    fn tidy_removes_expired_tokens_and_their_accessors_only() {
        let s = MemStore::new();
        let t = Tokens::new(&s);
        let mut live = Vec::new();
        for i in 0..300 {
            let mut e = entry();
            e.ttl = if i % 3 == 0 { 1000 } else { 10 };
            e.max_ttl = 0;
            let (token, e) = t.create(e, 1000).unwrap();
            if i % 3 == 0 {
                live.push((token, e.accessor));
            }
        }
        let mut total = TidyCount::default();
        for shard in 0..TIDY_SHARDS {
            total.add(t.tidy_shard(shard, 1010).unwrap());
        }
        assert_eq!(total.scanned, 300);
        assert_eq!(total.removed, 200);
        assert_eq!(s.list("auth/token/id/").unwrap().len(), 100);
        assert_eq!(s.list("auth/token/accessor/").unwrap().len(), 100);
        for (token, accessor) in &live {
            assert!(t.lookup(token, 1010).unwrap().is_some());
            assert!(t.lookup_accessor(accessor, 1010).unwrap().is_some());
        }
        // A second pass finds nothing more to do.
        let again: u64 = (0..TIDY_SHARDS)
            .map(|sh| t.tidy_shard(sh, 1010).unwrap().removed)
            .sum();
        assert_eq!(again, 0);
    }
}
