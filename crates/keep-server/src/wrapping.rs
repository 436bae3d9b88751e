//! Response-wrapping tokens: single-use, with a TTL, holding a wrapped response.
//!
//! | key | value |
//! |---|---|
//! | `sys/wrapping/token/<sha256(token)>` | the [`Wrapped`] entry (the response, encrypted by the barrier like every value) |
//!
//! Key names are not encrypted by the barrier, so they hold hashes, never the token. Unwrap
//! deletes the entry in the same compare-and-set transaction that reads it, so a token is
//! used at most once even when two clients race. Expired entries are refused on sight and
//! deleted then; [`tidy`] (run by the token tidy pass, [`crate::auth::tidy`]) removes the ones
//! nobody presented again.

use keep_store::{Store, StoreError, TxOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const PREFIX: &str = "sys/wrapping/token/";

/// Vault's shortest wrapping TTL: one second (0 means "do not wrap").
pub const MIN_TTL: u64 = 1;

/// The longest wrapping TTL keep accepts: the system maximum (32 days), as Vault caps every
/// token.
pub const MAX_TTL: u64 = crate::auth::token::SYSTEM_MAX_TTL;

/// A stored wrapped response. Its `Debug` never shows the response.
#[derive(Clone, Serialize, Deserialize)]
pub struct Wrapped {
    /// The wrapping token's accessor.
    pub accessor: String,
    /// Creation, Unix seconds.
    pub created: i64,
    /// TTL, seconds.
    pub ttl: u64,
    /// The path whose response was wrapped.
    pub creation_path: String,
    /// The accessor of a token the wrapped response carries (`auth.accessor`), or empty.
    pub wrapped_accessor: String,
    /// The wrapped response body, serialized.
    pub response: String,
}

impl std::fmt::Debug for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wrapped")
            .field("accessor", &self.accessor)
            .field("creation_path", &self.creation_path)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Wrapped {
    /// When it expires, Unix seconds.
    pub fn expires(&self) -> i64 {
        self.created + i64::try_from(self.ttl).unwrap_or(i64::MAX / 4)
    }
}

fn hash_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key(token: &str) -> String {
    format!("{PREFIX}{}", hash_hex(token))
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend {
        op: "wrapping",
        source: Box::new(e),
    }
}

fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| backend(std::io::Error::other(e.to_string())))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Stores `entry` (its accessor is filled in) under a new wrapping token, which is returned:
/// the only time it exists in plaintext.
pub fn create(
    store: &dyn Store,
    mut entry: Wrapped,
) -> Result<(Zeroizing<String>, Wrapped), StoreError> {
    let token = Zeroizing::new(format!("hvs.{}", random_hex(32)?));
    entry.accessor = random_hex(12)?;
    let bytes = Zeroizing::new(serde_json::to_vec(&entry).map_err(backend)?);
    store.transaction(&[
        TxOp::Check {
            key: key(&token),
            expected: None,
        },
        TxOp::Put {
            key: key(&token),
            value: bytes.to_vec(),
        },
    ])?;
    Ok((token, entry))
}

/// The live entry of `token`, left in place (lookup). An expired one is deleted and `None`.
pub fn peek(store: &dyn Store, token: &str, now: i64) -> Result<Option<Wrapped>, StoreError> {
    let k = key(token);
    let Some(bytes) = store.get(&k)? else {
        return Ok(None);
    };
    let entry: Wrapped = match serde_json::from_slice(&bytes) {
        Ok(e) => e,
        Err(_) => return Ok(None),
    };
    if entry.expires() <= now {
        store.delete(&k)?;
        return Ok(None);
    }
    Ok(Some(entry))
}

/// Takes the live entry of `token` out of the store (unwrap, rewrap): at most one caller
/// gets it. `None` if unknown, used or expired (an expired one is deleted).
pub fn take(store: &dyn Store, token: &str, now: i64) -> Result<Option<Wrapped>, StoreError> {
    let k = key(token);
    let Some(bytes) = store.get(&k)? else {
        return Ok(None);
    };
    match store.transaction(&[
        TxOp::Check {
            key: k.clone(),
            expected: Some(bytes.clone()),
        },
        TxOp::Delete { key: k },
    ]) {
        Ok(()) => {}
        // Someone else took it first.
        Err(StoreError::Conflict { .. }) => return Ok(None),
        Err(e) => return Err(e),
    }
    let entry: Wrapped = match serde_json::from_slice(&bytes) {
        Ok(e) => e,
        Err(_) => return Ok(None),
    };
    Ok((entry.expires() > now).then_some(entry))
}

/// Removes expired wrapping tokens. Returns how many.
pub fn tidy(store: &dyn Store, now: i64) -> Result<u64, StoreError> {
    let mut removed = 0;
    for rest in store.list(PREFIX)? {
        if rest.contains('/') {
            continue;
        }
        let k = format!("{PREFIX}{rest}");
        let Some(bytes) = store.get(&k)? else {
            continue;
        };
        let expired = serde_json::from_slice::<Wrapped>(&bytes)
            .map(|e| e.expires() <= now)
            .unwrap_or(false);
        if expired {
            store.delete(&k)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keep_store::MemStore;

    fn entry(created: i64, ttl: u64) -> Wrapped {
        Wrapped {
            accessor: String::new(),
            created,
            ttl,
            creation_path: "secret/data/x".into(),
            wrapped_accessor: String::new(),
            response: r#"{"data":{"k":"sk-wrapped-canary"}}"#.into(),
        }
    }

    #[test]
    fn single_use_expiring_and_hashed_keys() {
        let s = MemStore::new();
        let (t, e) = create(&s, entry(1000, 60)).unwrap();
        for k in s.list(PREFIX).unwrap() {
            assert!(!k.contains(&t[4..]), "token in a key name");
        }
        assert!(!format!("{e:?}").contains("canary"));
        assert_eq!(peek(&s, &t, 1001).unwrap().unwrap().accessor, e.accessor);
        assert!(
            take(&s, &t, 1001)
                .unwrap()
                .unwrap()
                .response
                .contains("canary")
        );
        assert!(take(&s, &t, 1001).unwrap().is_none(), "second use");
        let (t2, _) = create(&s, entry(1000, 60)).unwrap();
        assert!(take(&s, &t2, 1060).unwrap().is_none(), "expired");
        assert!(s.list(PREFIX).unwrap().is_empty());
        create(&s, entry(1000, 60)).unwrap();
        create(&s, entry(1000, 600)).unwrap();
        assert_eq!(tidy(&s, 1100).unwrap(), 1);
        assert_eq!(s.list(PREFIX).unwrap().len(), 1);
    }
}
