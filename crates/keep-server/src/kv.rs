//! The KV version 2 secrets engine, as Vault defines it, over any [`Store`].
//!
//! This module knows nothing of HTTP: the API layer (`api/kv.rs`) maps requests to these
//! functions and [`KvError`]s to status codes. In production the store is the encryption
//! barrier, so everything here is plaintext in memory and ciphertext on disk.
//!
//! Layout under the mount `secret`:
//!
//! | key | value |
//! |---|---|
//! | `kv/secret/config` | mount config (max_versions, cas_required, delete_version_after) |
//! | `kv/secret/meta/<path>` | the secret's metadata and version table |
//! | `kv/secret/v/<n>/<path>` | the data of version n |
//!
//! Metadata and version data change together in one store transaction guarded by a check on
//! the metadata, so two writers can never both think they created version n, on one node or
//! (later) on several sharing a database.

use std::collections::BTreeMap;

use keep_store::{Store, StoreError, TxOp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Vault's default when neither the secret nor the mount sets `max_versions`.
pub const DEFAULT_MAX_VERSIONS: u64 = 10;

/// How many times a plain (non-cas) write retries when another writer got there first.
const WRITE_RETRIES: usize = 16;

/// Why a KV operation failed. The API layer turns these into Vault's status codes and messages.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Nothing at that path (or that version) — 404 with an empty error list, as Vault does.
    #[error("not found")]
    NotFound,
    /// The version exists but is soft-deleted or destroyed: 404 carrying its metadata.
    #[error("version {} is deleted", .0.version)]
    Deleted(VersionMetadata),
    /// The request is malformed or violates the engine's rules (400).
    #[error("{0}")]
    Invalid(String),
    /// `options.cas` was given and is not the secret's current version (400, Vault's text).
    #[error("check-and-set parameter did not match the current version")]
    CasMismatch,
    /// The secret or the mount requires `options.cas` and the write has none (400).
    #[error("check-and-set parameter required for this call")]
    CasRequired,
    /// The storage layer failed (500; the cause is logged, not shown).
    #[error("storage error: {0}")]
    Storage(#[from] StoreError),
    /// Stored JSON that does not parse: corruption or a bug (500).
    #[error("corrupt entry at {0}")]
    Corrupt(String),
}

/// Per-version facts, in Vault's JSON shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionMetadata {
    /// When the version was written (RFC 3339, nanoseconds).
    pub created_time: String,
    /// Secret-level custom metadata (Vault repeats it on every version read).
    pub custom_metadata: Option<BTreeMap<String, String>>,
    /// When it was (or will be) soft-deleted; `""` when not.
    pub deletion_time: String,
    /// Whether its data has been destroyed.
    pub destroyed: bool,
    /// Version number.
    pub version: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct VersionEntry {
    created_time: String,
    deletion_time: String,
    destroyed: bool,
}

/// The stored metadata of one secret.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Meta {
    created_time: String,
    updated_time: String,
    current_version: u64,
    oldest_version: u64,
    max_versions: u64,
    cas_required: bool,
    /// Seconds; 0 = never.
    delete_version_after: u64,
    custom_metadata: Option<BTreeMap<String, String>>,
    versions: BTreeMap<u64, VersionEntry>,
}

/// Mount-wide settings (`secret/config`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MountConfig {
    /// 0 = Vault's default of 10.
    pub max_versions: u64,
    /// Require `cas` on every write.
    pub cas_required: bool,
    /// Seconds after which versions are soft-deleted; 0 = never.
    pub delete_version_after: u64,
}

/// What one attempt of [`KvEngine::edit`] decided.
enum Edit<T> {
    /// Nothing to write; return this.
    Skip(T),
    /// Write `meta` (`None`: delete it) together with `ops`, then return `result`.
    Apply {
        meta: Option<Meta>,
        ops: Vec<TxOp>,
        result: T,
    },
}

/// A secret version's data and metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretVersion {
    /// The key/value map.
    pub data: Map<String, Value>,
    /// Its metadata.
    pub metadata: VersionMetadata,
}

/// Changes to a secret's metadata (`POST secret/metadata/:path`); `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct MetadataUpdate {
    /// New max_versions.
    pub max_versions: Option<u64>,
    /// New cas_required.
    pub cas_required: Option<bool>,
    /// New delete_version_after, seconds.
    pub delete_version_after: Option<u64>,
    /// New custom metadata (replaces the map).
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

/// Full metadata, as `GET secret/metadata/:path` returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecretMetadata {
    /// See Vault's docs.
    pub cas_required: bool,
    /// First write.
    pub created_time: String,
    /// Latest version number.
    pub current_version: u64,
    /// Custom metadata.
    pub custom_metadata: Option<BTreeMap<String, String>>,
    /// Go duration string, e.g. `0s` or `1h0m0s`.
    pub delete_version_after: String,
    /// Kept versions.
    pub max_versions: u64,
    /// Oldest kept version.
    pub oldest_version: u64,
    /// Last change.
    pub updated_time: String,
    /// Version table keyed by the version number as a string.
    pub versions: BTreeMap<String, Value>,
}

fn now_string(now: OffsetDateTime) -> String {
    now.format(&Rfc3339).unwrap_or_default()
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Formats seconds as Go prints a duration (`0s`, `1h0m0s`, `30m0s`), as Vault returns it.
pub fn go_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Validates a secret path: no empty, `.` or `..` segments, no NUL (traversal and aliasing).
pub fn validate_path(path: &str) -> Result<(), KvError> {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        return Err(KvError::Invalid("missing secret path".into()));
    }
    if p.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        || p.contains('\0')
    {
        return Err(KvError::Invalid(format!(
            "invalid secret path {p:?}: empty, '.' and '..' segments are not allowed"
        )));
    }
    Ok(())
}

/// The KV v2 engine for one mount.
pub struct KvEngine<'a> {
    store: &'a dyn Store,
    mount: &'a str,
}

impl<'a> KvEngine<'a> {
    /// An engine for `mount` (e.g. `secret`) over `store`.
    pub fn new(store: &'a dyn Store, mount: &'a str) -> Self {
        KvEngine { store, mount }
    }

    fn meta_key(&self, path: &str) -> String {
        format!("kv/{}/meta/{}", self.mount, path)
    }

    fn version_key(&self, path: &str, v: u64) -> String {
        format!("kv/{}/v/{}/{}", self.mount, v, path)
    }

    fn config_key(&self) -> String {
        format!("kv/{}/config", self.mount)
    }

    /// Mount config.
    pub fn config(&self) -> Result<MountConfig, KvError> {
        let key = self.config_key();
        match self.store.get(&key)? {
            None => Ok(MountConfig::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|_| KvError::Corrupt(key)),
        }
    }

    /// Writes the mount config.
    pub fn set_config(&self, c: &MountConfig) -> Result<(), KvError> {
        let b = serde_json::to_vec(c).map_err(|_| KvError::Corrupt(self.config_key()))?;
        self.store.put(&self.config_key(), &b)?;
        Ok(())
    }

    fn load_meta(&self, path: &str) -> Result<Option<(Meta, Vec<u8>)>, KvError> {
        let key = self.meta_key(path);
        match self.store.get(&key)? {
            None => Ok(None),
            Some(raw) => {
                let m: Meta = serde_json::from_slice(&raw).map_err(|_| KvError::Corrupt(key))?;
                Ok(Some((m, raw)))
            }
        }
    }

    fn effective_max(&self, m: &Meta, cfg: &MountConfig) -> u64 {
        match (m.max_versions, cfg.max_versions) {
            (0, 0) => DEFAULT_MAX_VERSIONS,
            (0, c) => c,
            (s, 0) => s,
            (s, c) => s.min(c),
        }
    }

    /// A version's metadata as clients see it. A `deletion_time` in the future (set by
    /// `delete_version_after`) is shown as Vault shows it, and only takes effect once reached.
    fn version_meta(m: &Meta, v: u64) -> Option<VersionMetadata> {
        m.versions.get(&v).map(|e| VersionMetadata {
            created_time: e.created_time.clone(),
            custom_metadata: m.custom_metadata.clone(),
            deletion_time: e.deletion_time.clone(),
            destroyed: e.destroyed,
            version: v,
        })
    }

    fn is_deleted(e: &VersionEntry, now: OffsetDateTime) -> bool {
        e.destroyed
            || (!e.deletion_time.is_empty()
                && parse_time(&e.deletion_time).is_none_or(|t| t <= now))
    }

    /// Reads a version (`version` 0 or `None` = latest).
    pub fn read(
        &self,
        path: &str,
        version: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<SecretVersion, KvError> {
        validate_path(path)?;
        let (m, _) = self.load_meta(path)?.ok_or(KvError::NotFound)?;
        let v = match version {
            None | Some(0) => m.current_version,
            Some(v) => v,
        };
        let entry = m.versions.get(&v).ok_or(KvError::NotFound)?;
        let vm = Self::version_meta(&m, v).ok_or(KvError::NotFound)?;
        if Self::is_deleted(entry, now) {
            return Err(KvError::Deleted(vm));
        }
        let key = self.version_key(path, v);
        let raw = self
            .store
            .get(&key)?
            .ok_or_else(|| KvError::Corrupt(key.clone()))?;
        let data: Map<String, Value> =
            serde_json::from_slice(&raw).map_err(|_| KvError::Corrupt(key))?;
        Ok(SecretVersion { data, metadata: vm })
    }

    /// Writes a new version. `cas`: `Some(0)` = only if the secret does not exist yet,
    /// `Some(n)` = only if the current version is n.
    pub fn write(
        &self,
        path: &str,
        data: Map<String, Value>,
        cas: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<VersionMetadata, KvError> {
        validate_path(path)?;
        let cfg = self.config()?;
        let data_bytes = serde_json::to_vec(&data).map_err(|e| KvError::Invalid(e.to_string()))?;
        // A cas writer that lost a race re-reads here and is told its version no longer matches.
        self.edit(path, &mut |meta| {
            let mut m = meta.unwrap_or_else(|| Meta {
                created_time: now_string(now),
                ..Meta::default()
            });
            if (m.cas_required || cfg.cas_required) && cas.is_none() {
                return Err(KvError::CasRequired);
            }
            if let Some(c) = cas
                && c != m.current_version
            {
                return Err(KvError::CasMismatch);
            }
            let v = m.current_version + 1;
            let dva = if m.delete_version_after > 0 {
                m.delete_version_after
            } else {
                cfg.delete_version_after
            };
            let deletion_time = if dva > 0 {
                now_string(
                    now + time::Duration::seconds(i64::try_from(dva).unwrap_or(i64::MAX / 2)),
                )
            } else {
                String::new()
            };
            m.versions.insert(
                v,
                VersionEntry {
                    created_time: now_string(now),
                    deletion_time,
                    destroyed: false,
                },
            );
            m.current_version = v;
            m.updated_time = now_string(now);
            let mut ops = vec![TxOp::Put {
                key: self.version_key(path, v),
                value: data_bytes.clone(),
            }];
            ops.extend(self.trim(path, &mut m, &cfg));
            let result = Self::version_meta(&m, v).ok_or(KvError::NotFound)?;
            Ok(Edit::Apply {
                meta: Some(m),
                ops,
                result,
            })
        })
    }

    /// JSON merge patch (RFC 7386) of the latest version into a new version.
    pub fn patch(
        &self,
        path: &str,
        patch: Map<String, Value>,
        cas: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<VersionMetadata, KvError> {
        for _ in 0..WRITE_RETRIES {
            let current = self.read(path, None, now)?;
            let version = current.metadata.version;
            if let Some(c) = cas
                && c != version
            {
                return Err(KvError::CasMismatch);
            }
            let mut merged = Value::Object(current.data);
            merge_patch(&mut merged, &Value::Object(patch.clone()));
            let Value::Object(map) = merged else {
                return Err(KvError::Invalid("patch must be an object".into()));
            };
            match self.write(path, map, Some(version), now) {
                // Another writer came between the read and the write: merge again.
                Err(KvError::CasMismatch) if cas.is_none() => {
                    continue;
                }
                other => return other,
            }
        }
        Err(KvError::Invalid(
            "too many concurrent writers to this secret; retry".into(),
        ))
    }

    /// Changes an existing secret's version table; a missing secret is left alone.
    fn modify_versions(
        &self,
        path: &str,
        now: OffsetDateTime,
        f: &dyn Fn(&mut Meta, &mut Vec<TxOp>),
    ) -> Result<(), KvError> {
        validate_path(path)?;
        self.edit(path, &mut |meta| {
            let Some(mut m) = meta else {
                return Ok(Edit::Skip(()));
            };
            let mut ops = Vec::new();
            f(&mut m, &mut ops);
            m.updated_time = now_string(now);
            Ok(Edit::Apply {
                meta: Some(m),
                ops,
                result: (),
            })
        })
    }

    /// Removes the oldest versions (data and all) beyond the secret's effective max_versions;
    /// returns the deletes to add to the transaction.
    fn trim(&self, path: &str, m: &mut Meta, cfg: &MountConfig) -> Vec<TxOp> {
        let max = self.effective_max(m, cfg);
        let mut ops = Vec::new();
        while m.versions.len() as u64 > max {
            let Some((&old, _)) = m.versions.iter().next() else {
                break;
            };
            m.versions.remove(&old);
            ops.push(TxOp::Delete {
                key: self.version_key(path, old),
            });
        }
        if let Some(&first) = m.versions.keys().next() {
            m.oldest_version = first;
        }
        ops
    }

    /// Atomic read-modify-write of one secret's metadata plus whatever `f` adds to the same
    /// transaction, guarded by a check on the metadata and retried when another writer (or node)
    /// changed it in between. `f` sees the current metadata (`None`: the secret does not exist)
    /// and may run several times.
    fn edit<T>(
        &self,
        path: &str,
        f: &mut dyn FnMut(Option<Meta>) -> Result<Edit<T>, KvError>,
    ) -> Result<T, KvError> {
        for _ in 0..WRITE_RETRIES {
            let (meta, expected) = match self.load_meta(path)? {
                Some((m, raw)) => (Some(m), Some(raw)),
                None => (None, None),
            };
            let (meta, extra, result) = match f(meta)? {
                Edit::Skip(t) => return Ok(t),
                Edit::Apply { meta, ops, result } => (meta, ops, result),
            };
            let mut ops = vec![TxOp::Check {
                key: self.meta_key(path),
                expected,
            }];
            ops.extend(extra);
            ops.push(match meta {
                Some(m) => TxOp::Put {
                    key: self.meta_key(path),
                    value: serde_json::to_vec(&m).map_err(|e| KvError::Invalid(e.to_string()))?,
                },
                None => TxOp::Delete {
                    key: self.meta_key(path),
                },
            });
            match self.store.transaction(&ops) {
                Ok(()) => return Ok(result),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(KvError::Invalid(
            "too many concurrent writers to this secret; retry".into(),
        ))
    }

    /// Soft-deletes the latest version (`DELETE secret/data/:path`).
    pub fn delete_latest(&self, path: &str, now: OffsetDateTime) -> Result<(), KvError> {
        let stamp = now_string(now);
        self.modify_versions(path, now, &|m, _| {
            let cur = m.current_version;
            if let Some(e) = m.versions.get_mut(&cur)
                && !e.destroyed
                && (e.deletion_time.is_empty()
                    || parse_time(&e.deletion_time).is_some_and(|t| t > now))
            {
                e.deletion_time = stamp.clone();
            }
        })
    }

    /// Soft-deletes the given versions.
    pub fn delete_versions(
        &self,
        path: &str,
        versions: &[u64],
        now: OffsetDateTime,
    ) -> Result<(), KvError> {
        if versions.is_empty() {
            return Err(KvError::Invalid("no version number provided".into()));
        }
        let stamp = now_string(now);
        self.modify_versions(path, now, &|m, _| {
            for v in versions {
                if let Some(e) = m.versions.get_mut(v)
                    && !e.destroyed
                    && (e.deletion_time.is_empty()
                        || parse_time(&e.deletion_time).is_some_and(|t| t > now))
                {
                    e.deletion_time = stamp.clone();
                }
            }
        })
    }

    /// Restores soft-deleted versions (destroyed ones stay destroyed).
    pub fn undelete_versions(
        &self,
        path: &str,
        versions: &[u64],
        now: OffsetDateTime,
    ) -> Result<(), KvError> {
        if versions.is_empty() {
            return Err(KvError::Invalid("no version number provided".into()));
        }
        self.modify_versions(path, now, &|m, _| {
            for v in versions {
                if let Some(e) = m.versions.get_mut(v)
                    && !e.destroyed
                {
                    e.deletion_time = String::new();
                }
            }
        })
    }

    /// Permanently removes the data of the given versions.
    pub fn destroy_versions(
        &self,
        path: &str,
        versions: &[u64],
        now: OffsetDateTime,
    ) -> Result<(), KvError> {
        if versions.is_empty() {
            return Err(KvError::Invalid("no version number provided".into()));
        }
        let mount = self.mount.to_owned();
        let p = path.to_owned();
        self.modify_versions(path, now, &|m, ops| {
            for v in versions {
                if let Some(e) = m.versions.get_mut(v)
                    && !e.destroyed
                {
                    e.destroyed = true;
                    ops.push(TxOp::Delete {
                        key: format!("kv/{mount}/v/{v}/{p}"),
                    });
                }
            }
        })
    }

    /// Reads the full metadata.
    pub fn read_metadata(&self, path: &str) -> Result<SecretMetadata, KvError> {
        validate_path(path)?;
        let (m, _) = self.load_meta(path)?.ok_or(KvError::NotFound)?;
        Ok(SecretMetadata {
            cas_required: m.cas_required,
            created_time: m.created_time.clone(),
            current_version: m.current_version,
            custom_metadata: m.custom_metadata.clone(),
            delete_version_after: go_duration(m.delete_version_after),
            max_versions: m.max_versions,
            oldest_version: m.oldest_version,
            updated_time: m.updated_time.clone(),
            versions: m
                .versions
                .iter()
                .map(|(v, e)| {
                    (
                        v.to_string(),
                        serde_json::json!({
                            "created_time": e.created_time,
                            "deletion_time": e.deletion_time,
                            "destroyed": e.destroyed,
                        }),
                    )
                })
                .collect(),
        })
    }

    /// Updates metadata, creating it when the secret does not exist yet (as Vault does).
    pub fn write_metadata(
        &self,
        path: &str,
        u: &MetadataUpdate,
        now: OffsetDateTime,
    ) -> Result<(), KvError> {
        validate_path(path)?;
        let cfg = self.config()?;
        self.edit(path, &mut |meta| {
            let mut m = meta.unwrap_or_else(|| Meta {
                created_time: now_string(now),
                ..Meta::default()
            });
            if let Some(v) = u.max_versions {
                m.max_versions = v;
            }
            if let Some(v) = u.cas_required {
                m.cas_required = v;
            }
            if let Some(v) = u.delete_version_after {
                m.delete_version_after = v;
            }
            if let Some(v) = &u.custom_metadata {
                m.custom_metadata = Some(v.clone());
            }
            m.updated_time = now_string(now);
            let ops = self.trim(path, &mut m, &cfg);
            Ok(Edit::Apply {
                meta: Some(m),
                ops,
                result: (),
            })
        })
    }

    /// Deletes the metadata and every version (`DELETE secret/metadata/:path`).
    pub fn delete_all(&self, path: &str) -> Result<(), KvError> {
        validate_path(path)?;
        self.edit(path, &mut |meta| {
            let Some(m) = meta else {
                return Ok(Edit::Skip(()));
            };
            let ops = m
                .versions
                .keys()
                .map(|v| TxOp::Delete {
                    key: self.version_key(path, *v),
                })
                .collect();
            Ok(Edit::Apply {
                meta: None,
                ops,
                result: (),
            })
        })
    }

    /// Lists the keys under a folder (`LIST secret/metadata/:prefix`). Empty → NotFound.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let p = prefix.trim_start_matches('/');
        if !p.is_empty() {
            validate_path(p)?;
        }
        let folder = if p.is_empty() || p.ends_with('/') {
            p.to_owned()
        } else {
            format!("{p}/")
        };
        let keys = self
            .store
            .list(&format!("kv/{}/meta/{}", self.mount, folder))?;
        if keys.is_empty() {
            return Err(KvError::NotFound);
        }
        Ok(keys)
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        if let Value::Object(t) = target {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
    } else {
        *target = patch.clone();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keep_store::MemStore;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn versions_count_up_and_reads_pick_them() {
        let s = MemStore::new();
        let kv = KvEngine::new(&s, "secret");
        assert_eq!(
            kv.write("a/b", map(json!({"k": "v1"})), None, t0())
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            kv.write("a/b", map(json!({"k": "v2"})), None, t0())
                .unwrap()
                .version,
            2
        );
        assert_eq!(kv.read("a/b", None, t0()).unwrap().data["k"], "v2");
        assert_eq!(kv.read("a/b", Some(1), t0()).unwrap().data["k"], "v1");
        assert!(matches!(
            kv.read("a/b", Some(9), t0()),
            Err(KvError::NotFound)
        ));
        assert!(matches!(
            kv.read("nope", None, t0()),
            Err(KvError::NotFound)
        ));
    }

    #[test]
    fn cas_rules_match_vault() {
        let s = MemStore::new();
        let kv = KvEngine::new(&s, "secret");
        kv.write("x", map(json!({"a": 1})), Some(0), t0()).unwrap();
        let e = kv
            .write("x", map(json!({"a": 2})), Some(0), t0())
            .unwrap_err();
        assert!(matches!(e, KvError::CasMismatch), "{e}");
        kv.write("x", map(json!({"a": 2})), Some(1), t0()).unwrap();
        kv.write_metadata(
            "x",
            &MetadataUpdate {
                cas_required: Some(true),
                ..Default::default()
            },
            t0(),
        )
        .unwrap();
        let e = kv.write("x", map(json!({"a": 3})), None, t0()).unwrap_err();
        assert!(matches!(e, KvError::CasRequired), "{e}");
        assert_eq!(
            kv.read("x", None, t0()).unwrap().metadata.version,
            2,
            "nothing stored on refusal"
        );
    }

    #[test]
    fn delete_undelete_destroy() {
        let s = MemStore::new();
        let kv = KvEngine::new(&s, "secret");
        kv.write("d", map(json!({"a": 1})), None, t0()).unwrap();
        kv.write("d", map(json!({"a": 2})), None, t0()).unwrap();
        kv.delete_latest("d", t0()).unwrap();
        match kv.read("d", None, t0()) {
            Err(KvError::Deleted(m)) => {
                assert_eq!(m.version, 2);
                assert!(!m.deletion_time.is_empty());
                assert!(!m.destroyed);
            }
            other => panic!("{other:?}"),
        }
        kv.undelete_versions("d", &[2], t0()).unwrap();
        assert_eq!(kv.read("d", None, t0()).unwrap().data["a"], 2);
        kv.destroy_versions("d", &[1], t0()).unwrap();
        assert!(matches!(kv.read("d", Some(1), t0()), Err(KvError::Deleted(m)) if m.destroyed));
        assert!(
            s.get("kv/secret/v/1/d").unwrap().is_none(),
            "destroyed data is gone"
        );
        kv.undelete_versions("d", &[1], t0()).unwrap();
        assert!(matches!(
            kv.read("d", Some(1), t0()),
            Err(KvError::Deleted(_))
        ));
        assert!(kv.delete_versions("d", &[], t0()).is_err());
        kv.delete_all("d").unwrap();
        assert!(matches!(kv.read_metadata("d"), Err(KvError::NotFound)));
        assert!(s.get("kv/secret/v/2/d").unwrap().is_none());
    }

    #[test]
    fn max_versions_trims_oldest() {
        let s = MemStore::new();
        let kv = KvEngine::new(&s, "secret");
        kv.write_metadata(
            "m",
            &MetadataUpdate {
                max_versions: Some(2),
                ..Default::default()
            },
            t0(),
        )
        .unwrap();
        for i in 1..=4 {
            kv.write("m", map(json!({"i": i})), None, t0()).unwrap();
        }
        let md = kv.read_metadata("m").unwrap();
        assert_eq!(md.current_version, 4);
        assert_eq!(md.oldest_version, 3);
        assert_eq!(
            md.versions.keys().cloned().collect::<Vec<_>>(),
            vec!["3", "4"]
        );
        assert!(matches!(
            kv.read("m", Some(1), t0()),
            Err(KvError::NotFound)
        ));
        assert!(s.get("kv/secret/v/1/m").unwrap().is_none());
    }

    #[test]
    fn delete_version_after_expires_versions() {
        let s = MemStore::new();
        let kv = KvEngine::new(&s, "secret");
        kv.write_metadata(
            "t",
            &MetadataUpdate {
                delete_version_after: Some(60),
                ..Default::default()
            },
            t0(),
        )
        .unwrap();
        kv.write("t", map(json!({"a": 1})), None, t0()).unwrap();
        assert!(
            kv.read("t", None, t0() + time::Duration::seconds(30))
                .is_ok()
        );
        assert!(matches!(
            kv.read("t", None, t0() + time::Duration::seconds(61)),
            Err(KvError::Deleted(_))
        ));
        assert_eq!(kv.read_metadata("t").unwrap().delete_version_after, "1m0s");
    }

    #[test]
    fn patch_merges_and_lists_are_folders() {
        let s = MemStore::new();
        let kv = KvEngine::new(&s, "secret");
        kv.write(
            "app/one",
            map(json!({"a": 1, "b": {"c": 2, "d": 3}})),
            None,
            t0(),
        )
        .unwrap();
        kv.patch(
            "app/one",
            map(json!({"a": null, "b": {"c": 9}, "e": "new"})),
            None,
            t0(),
        )
        .unwrap();
        let v = kv.read("app/one", None, t0()).unwrap();
        assert_eq!(
            Value::Object(v.data),
            json!({"b": {"c": 9, "d": 3}, "e": "new"})
        );
        assert!(matches!(
            kv.patch("nope", Map::new(), None, t0()),
            Err(KvError::NotFound)
        ));
        kv.write("app/sub/two", map(json!({"x": 1})), None, t0())
            .unwrap();
        assert_eq!(kv.list("app").unwrap(), vec!["one", "sub/"]);
        assert_eq!(kv.list("").unwrap(), vec!["app/"]);
        assert!(matches!(kv.list("empty/"), Err(KvError::NotFound)));
    }

    #[test]
    fn traversal_is_refused() {
        let s = MemStore::new();
        let kv = KvEngine::new(&s, "secret");
        for p in ["../x", "a/../b", "a//b", "./a", ""] {
            assert!(
                matches!(
                    kv.write(p, Map::new(), None, t0()),
                    Err(KvError::Invalid(_))
                ),
                "{p}"
            );
        }
        assert!(s.list("").unwrap().is_empty(), "nothing stored");
    }
}
