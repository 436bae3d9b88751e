//! The server's cluster identity: `cluster_id` and `cluster_name` as `sys/health` reports them,
//! and the seed of the mounts' `uuid` and `accessor` (`sys/mounts`).
//!
//! Created once per storage, on first use after unseal, and stored under the barrier at
//! [`KEY`], so it survives restarts and follows the storage (a restored backup is the same
//! cluster). Two servers racing to create it agree: the create is a compare-and-set, and the
//! loser reads the winner's.

use keep_store::{Store, StoreError, TxOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the identity is stored.
pub const KEY: &str = "sys/cluster/identity";

/// The cluster identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// A UUID v4, as Vault's `cluster_id`.
    pub cluster_id: String,
    /// `keep-cluster-<first 8 hex digits of the id>`, as Vault's `vault-cluster-<8 hex>`.
    pub cluster_name: String,
}

impl ClusterIdentity {
    /// A stable id for something of this cluster named `what` (a mount path): UUID-shaped,
    /// derived from the cluster id, so it is the same on every restart.
    pub fn derived_uuid(&self, what: &str) -> String {
        let d = Sha256::digest(format!("{}\0{what}", self.cluster_id).as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        uuid_text(b)
    }

    /// A Vault-style mount accessor (`kv_1a2b3c4d`) for the mount `path` of type `kind`.
    pub fn accessor(&self, kind: &str, path: &str) -> String {
        let d = Sha256::digest(format!("{}\0accessor\0{path}", self.cluster_id).as_bytes());
        let hex: String = d[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("{kind}_{hex}")
    }
}

fn uuid_text(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut h = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            h.push('-');
        }
        h.push_str(&format!("{x:02x}"));
    }
    h
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend {
        op: "cluster identity",
        source: Box::new(e),
    }
}

/// The stored identity, created on first call.
pub fn load_or_create(store: &dyn Store) -> Result<ClusterIdentity, StoreError> {
    if let Some(b) = store.get(KEY)? {
        return serde_json::from_slice(&b).map_err(backend);
    }
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| backend(std::io::Error::other(e.to_string())))?;
    let cluster_id = uuid_text(b);
    let ident = ClusterIdentity {
        cluster_name: format!("keep-cluster-{}", &cluster_id[..8]),
        cluster_id,
    };
    let bytes = serde_json::to_vec(&ident).map_err(backend)?;
    match store.transaction(&[
        TxOp::Check {
            key: KEY.to_owned(),
            expected: None,
        },
        TxOp::Put {
            key: KEY.to_owned(),
            value: bytes,
        },
    ]) {
        Ok(()) => Ok(ident),
        // Another server created it first: theirs is the one.
        Err(StoreError::Conflict { .. }) => match store.get(KEY)? {
            Some(b) => serde_json::from_slice(&b).map_err(backend),
            None => Err(StoreError::Conflict {
                key: KEY.to_owned(),
            }),
        },
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keep_store::MemStore;

    #[test]
    fn identity_is_created_once_and_stable() {
        let s = MemStore::new();
        let a = load_or_create(&s).unwrap();
        let b = load_or_create(&s).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.cluster_id.len(), 36);
        assert!(a.cluster_name.starts_with("keep-cluster-"));
        assert_eq!(a.derived_uuid("secret/"), b.derived_uuid("secret/"));
        assert_ne!(a.derived_uuid("secret/"), a.derived_uuid("pki/"));
        assert!(a.accessor("kv", "secret/").starts_with("kv_"));
        let other = load_or_create(&MemStore::new()).unwrap();
        assert_ne!(a.cluster_id, other.cluster_id);
    }
}
