//! Unseal material: where the root key that opens the [`Barrier`] comes from.
//!
//! Two kinds, recorded in plaintext at `core/seal-config` when the storage is initialized so a
//! sealed server knows how to derive the key (and can say so in `/v1/sys/seal-status`):
//!
//! - **Key file** (`{"version":1,"type":"keyfile"}`): 32 random bytes, base64 on one line,
//!   in a file created 0600 by [`generate_key_file`]. [`read_key_file`] refuses a file that
//!   group or others may read, naming the mode and the fix (`chmod 600`).
//! - **Passphrase** (`{"version":1,"type":"passphrase","argon2":{…},"salt":"…"}`): the root key
//!   is argon2id(passphrase, salt) with the stored parameters ([`Argon2Params::RECOMMENDED`]:
//!   64 MiB, 3 passes, 1 lane) and a random 16-byte salt.
//!
//! Neither kind is checked against a stored hash: the proof that the key is right is that it
//! decrypts the keyring. A wrong file or passphrase is [`BarrierError::WrongKey`]; nothing
//! else in storage helps an attacker test guesses faster than argon2id allows.
//!
//! The seal configuration is not secret and not encrypted. Tampering with it (other
//! parameters, another salt, another type) can only derive a different key, which fails to
//! open the keyring: the result is a refusal to unseal, never a weaker unseal.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Barrier, BarrierError, Store, TxOp, barrier::KEYRING_KEY};

/// Where the seal configuration is stored, in plaintext.
pub const SEAL_CONFIG_KEY: &str = "core/seal-config";

const SALT_LEN: usize = 16;
/// A key file is 44 base64 characters and a newline; anything much larger is not one.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// The 256-bit root key: it wraps the barrier's keyring and is never stored.
///
/// Zeroized on drop; `Debug` prints `RootKey([REDACTED])`. Not `Clone`, so it is not copied
/// around by accident.
pub struct RootKey(Zeroizing<[u8; RootKey::LEN]>);

impl RootKey {
    /// Length of a root key in bytes.
    pub const LEN: usize = 32;

    /// Wraps raw key bytes (from a KMS or HSM, say). The caller should zeroize its copy.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        RootKey(Zeroizing::new(bytes))
    }

    /// A fresh random key from the system's secure random source.
    pub fn generate() -> Result<Self, BarrierError> {
        let mut key = Zeroizing::new([0u8; Self::LEN]);
        aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| BarrierError::Crypto {
            op: "random root key",
        })?;
        Ok(RootKey(key))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey([REDACTED])")
    }
}

/// Which kind of unseal material a storage uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SealType {
    /// A 0600 file holding the root key (`"keyfile"` in JSON).
    #[serde(rename = "keyfile")]
    KeyFile,
    /// A passphrase stretched with argon2id (`"passphrase"` in JSON).
    #[serde(rename = "passphrase")]
    Passphrase,
}

impl SealType {
    /// The name used in `core/seal-config` (`keyfile`, `passphrase`).
    pub fn as_str(self) -> &'static str {
        match self {
            SealType::KeyFile => "keyfile",
            SealType::Passphrase => "passphrase",
        }
    }
}

impl fmt::Display for SealType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealType::KeyFile => "key file",
            SealType::Passphrase => "passphrase",
        })
    }
}

/// argon2id cost parameters (argon2 version 0x13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Argon2Params {
    /// 64 MiB, 3 passes, 1 lane: RFC 9106's second recommended setting (which uses 4 lanes;
    /// one lane here, because the server derives once at start and the target machine has two
    /// cores, and because RustCrypto's argon2 is single-threaded without its `parallel`
    /// feature anyway). About half a second on the target machine in a release build, once
    /// per unseal; every offline guess costs the attacker the same 64 MiB and time.
    pub const RECOMMENDED: Argon2Params = Argon2Params {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// The most memory a stored configuration may ask for (4 GiB): a tampered configuration
    /// must not be able to make unsealing exhaust the machine.
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// The most passes a stored configuration may ask for.
    pub const MAX_T_COST: u32 = 64;
    /// The most lanes a stored configuration may ask for.
    pub const MAX_P_COST: u32 = 16;

    fn to_argon2(self) -> Result<argon2::Params, String> {
        if self.m_cost_kib > Self::MAX_M_COST_KIB
            || self.t_cost > Self::MAX_T_COST
            || self.p_cost > Self::MAX_P_COST
        {
            return Err(format!(
                "argon2 parameters m={} KiB, t={}, p={} exceed the limits m≤{} KiB, t≤{}, p≤{}",
                self.m_cost_kib,
                self.t_cost,
                self.p_cost,
                Self::MAX_M_COST_KIB,
                Self::MAX_T_COST,
                Self::MAX_P_COST
            ));
        }
        argon2::Params::new(
            self.m_cost_kib,
            self.t_cost,
            self.p_cost,
            Some(RootKey::LEN),
        )
        .map_err(|e| format!("invalid argon2 parameters: {e}"))
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::RECOMMENDED
    }
}

/// How the root key of a storage is obtained: the plaintext record at `core/seal-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealConfig {
    /// The root key is the content of a key file.
    KeyFile,
    /// The root key is argon2id(passphrase, `salt`) with `argon2`.
    Passphrase {
        /// Cost parameters.
        argon2: Argon2Params,
        /// Random salt, unique per installation.
        salt: [u8; SALT_LEN],
    },
}

impl SealConfig {
    /// A passphrase configuration with a fresh random salt. Fails if `argon2` is out of
    /// bounds.
    pub fn new_passphrase(argon2: Argon2Params) -> Result<Self, BarrierError> {
        argon2
            .to_argon2()
            .map_err(|reason| BarrierError::Kdf { reason })?;
        let mut salt = [0u8; SALT_LEN];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| BarrierError::Crypto { op: "random salt" })?;
        Ok(SealConfig::Passphrase { argon2, salt })
    }

    /// Which kind of unseal material this is.
    pub fn seal_type(&self) -> SealType {
        match self {
            SealConfig::KeyFile => SealType::KeyFile,
            SealConfig::Passphrase { .. } => SealType::Passphrase,
        }
    }

    /// Reads the configuration from `store` without any key: `None` if there is none (not
    /// initialized, or initialized through the low-level [`Barrier::initialize`]).
    pub fn load<S: Store + ?Sized>(store: &S) -> Result<Option<Self>, BarrierError> {
        match store.get(SEAL_CONFIG_KEY)? {
            Some(bytes) => Self::from_json(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The stored JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        let raw = match self {
            SealConfig::KeyFile => RawSealConfig {
                version: 1,
                seal_type: SealType::KeyFile,
                argon2: None,
                salt: None,
            },
            SealConfig::Passphrase { argon2, salt } => RawSealConfig {
                version: 1,
                seal_type: SealType::Passphrase,
                argon2: Some(RawArgon2 {
                    algorithm: ARGON2ID.to_owned(),
                    version: ARGON2_VERSION,
                    m_cost_kib: argon2.m_cost_kib,
                    t_cost: argon2.t_cost,
                    p_cost: argon2.p_cost,
                }),
                salt: Some(Base64::encode_string(salt)),
            },
        };
        // Serializing plain structs of integers and strings to a Vec cannot fail.
        serde_json::to_vec(&raw).unwrap_or_default()
    }

    /// Parses the stored JSON form, strictly: unknown fields, versions or algorithms are
    /// refused rather than guessed at.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BarrierError> {
        let bad = |reason: String| BarrierError::SealConfig { reason };
        let raw: RawSealConfig =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if raw.version != 1 {
            return Err(bad(format!(
                "version {} is not known to this keep (expected 1)",
                raw.version
            )));
        }
        match raw.seal_type {
            SealType::KeyFile => {
                if raw.argon2.is_some() || raw.salt.is_some() {
                    return Err(bad("a keyfile seal has no argon2 parameters or salt".into()));
                }
                Ok(SealConfig::KeyFile)
            }
            SealType::Passphrase => {
                let a = raw
                    .argon2
                    .ok_or_else(|| bad("passphrase seal without argon2 parameters".into()))?;
                if a.algorithm != ARGON2ID || a.version != ARGON2_VERSION {
                    return Err(bad(format!(
                        "unsupported KDF {} version {} (expected {ARGON2ID} version {ARGON2_VERSION})",
                        a.algorithm, a.version
                    )));
                }
                let argon2 = Argon2Params {
                    m_cost_kib: a.m_cost_kib,
                    t_cost: a.t_cost,
                    p_cost: a.p_cost,
                };
                argon2.to_argon2().map_err(bad)?;
                let salt_b64 = raw
                    .salt
                    .ok_or_else(|| bad("passphrase seal without salt".into()))?;
                let mut salt = [0u8; SALT_LEN];
                match Base64::decode(&salt_b64, &mut salt) {
                    Ok(s) if s.len() == SALT_LEN => {}
                    _ => return Err(bad("salt is not 16 bytes of base64".into())),
                }
                Ok(SealConfig::Passphrase { argon2, salt })
            }
        }
    }

    /// Derives the root key from `passphrase` with this configuration's argon2id parameters
    /// and salt. Slow on purpose (see [`Argon2Params::RECOMMENDED`]).
    pub fn derive_root_key(&self, passphrase: &SecretString) -> Result<RootKey, BarrierError> {
        match self {
            SealConfig::Passphrase { argon2, salt } => {
                derive_passphrase_key(passphrase, argon2, salt)
            }
            SealConfig::KeyFile => Err(BarrierError::SealTypeMismatch {
                configured: SealType::KeyFile,
                given: SealType::Passphrase,
            }),
        }
    }

    /// Initializes `store`: writes this configuration and the keyring wrapped by `root_key`
    /// in one transaction, and returns the unsealed barrier.
    /// [`BarrierError::AlreadyInitialized`] if a keyring exists.
    pub fn initialize<S: Store>(
        &self,
        store: S,
        root_key: RootKey,
    ) -> Result<Barrier<S>, BarrierError> {
        Barrier::initialize_with(
            store,
            root_key,
            vec![TxOp::put(SEAL_CONFIG_KEY, self.to_json())],
        )
    }
}

const ARGON2ID: &str = "argon2id";
const ARGON2_VERSION: u32 = 0x13;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSealConfig {
    version: u32,
    #[serde(rename = "type")]
    seal_type: SealType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argon2: Option<RawArgon2>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArgon2 {
    algorithm: String,
    version: u32,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

/// What a sealed server can say about its storage without any key: the facts behind
/// `/v1/sys/health` (`initialized`) and `/v1/sys/seal-status` (`initialized`, `type`).
/// Whether it is *sealed* is the server's own state: it is unsealed exactly when it holds a
/// [`Barrier`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealStatus {
    /// A keyring exists.
    pub initialized: bool,
    /// The kind of unseal material, if a seal configuration exists.
    pub seal_type: Option<SealType>,
}

/// Reads the [`SealStatus`] of `store`. Needs no key.
pub fn status<S: Store + ?Sized>(store: &S) -> Result<SealStatus, BarrierError> {
    Ok(SealStatus {
        initialized: store.get(KEYRING_KEY)?.is_some(),
        seal_type: SealConfig::load(store)?.map(|c| c.seal_type()),
    })
}

/// The unseal material a server is configured with (`seal:` in `keep-server.yaml`).
///
/// `Debug` never shows the passphrase.
#[derive(Debug)]
pub enum RootKeySource {
    /// A key file path: [`generate_key_file`] creates it at init, [`read_key_file`] reads it
    /// at unseal.
    KeyFile(PathBuf),
    /// A passphrase (from a prompt or a file; the server strips a trailing newline from a
    /// file before building this).
    Passphrase(SecretString),
}

impl RootKeySource {
    /// The kind of material this is.
    pub fn seal_type(&self) -> SealType {
        match self {
            RootKeySource::KeyFile(_) => SealType::KeyFile,
            RootKeySource::Passphrase(_) => SealType::Passphrase,
        }
    }

    /// `keep server init`: creates the unseal material and initializes `store` with
    /// [`Argon2Params::RECOMMENDED`] for a passphrase. See
    /// [`initialize_with`](Self::initialize_with).
    pub fn initialize<S: Store>(&self, store: S) -> Result<Barrier<S>, BarrierError> {
        self.initialize_with(store, Argon2Params::RECOMMENDED)
    }

    /// Creates the unseal material and initializes `store`.
    ///
    /// - Key file: refuses an initialized store first, then creates the key file (0600,
    ///   never overwriting one: [`BarrierError::KeyFileExists`]), then writes the seal
    ///   configuration and the keyring in one transaction. If that last step fails the new
    ///   key file is removed again, since it protects nothing.
    /// - Passphrase: a fresh salt, argon2id with `argon2`, then the same transaction. An
    ///   empty passphrase is refused.
    pub fn initialize_with<S: Store>(
        &self,
        store: S,
        argon2: Argon2Params,
    ) -> Result<Barrier<S>, BarrierError> {
        if Barrier::is_initialized(&store)? {
            return Err(BarrierError::AlreadyInitialized);
        }
        match self {
            RootKeySource::KeyFile(path) => {
                let key = generate_key_file(path)?;
                SealConfig::KeyFile.initialize(store, key).inspect_err(|_| {
                    // Best effort: a key file for a storage that was never initialized with it
                    // would only mislead.
                    let _ = std::fs::remove_file(path);
                })
            }
            RootKeySource::Passphrase(pass) => {
                let config = SealConfig::new_passphrase(argon2)?;
                let key = config.derive_root_key(pass)?;
                config.initialize(store, key)
            }
        }
    }

    /// Unseals `store`: reads its seal configuration, checks it matches this kind of
    /// material, derives or reads the root key and opens the keyring.
    ///
    /// Errors say why, for the server to print before exiting non-zero:
    /// [`NotInitialized`](BarrierError::NotInitialized),
    /// [`SealTypeMismatch`](BarrierError::SealTypeMismatch), the key file problems
    /// ([`KeyFilePermissions`](BarrierError::KeyFilePermissions) …), or
    /// [`WrongKey`](BarrierError::WrongKey).
    pub fn unseal<S: Store>(&self, store: S) -> Result<Barrier<S>, BarrierError> {
        let config = SealConfig::load(&store)?;
        if let Some(c) = &config
            && c.seal_type() != self.seal_type()
        {
            return Err(BarrierError::SealTypeMismatch {
                configured: c.seal_type(),
                given: self.seal_type(),
            });
        }
        match (config, self) {
            (Some(c), RootKeySource::Passphrase(pass)) => {
                Barrier::unseal(store, c.derive_root_key(pass)?)
            }
            // No configuration and a key file: either not initialized, or initialized with a
            // raw root key through Barrier::initialize, which only a key file can supply.
            (_, RootKeySource::KeyFile(path)) => {
                if !Barrier::is_initialized(&store)? {
                    return Err(BarrierError::NotInitialized);
                }
                Barrier::unseal(store, read_key_file(path)?)
            }
            (None, RootKeySource::Passphrase(_)) => {
                if Barrier::is_initialized(&store)? {
                    Err(BarrierError::SealConfig {
                        reason: "missing, so a passphrase cannot be turned into the key".into(),
                    })
                } else {
                    Err(BarrierError::NotInitialized)
                }
            }
        }
    }
}

/// Creates a new key file at `path` holding a fresh random root key (base64, one line), and
/// returns the key.
///
/// The file is written to a temporary file in the same directory (mode 0600 from the start),
/// fsync'd, and linked into place only if `path` does not exist: it never overwrites
/// ([`BarrierError::KeyFileExists`]) and a crash never leaves half a key.
pub fn generate_key_file(path: &Path) -> Result<RootKey, BarrierError> {
    let io = |action: &'static str| {
        move |source: std::io::Error| BarrierError::KeyFileIo {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    // symlink_metadata: a dangling symlink counts as existing too.
    if path.symlink_metadata().is_ok() {
        return Err(BarrierError::KeyFileExists {
            path: path.to_path_buf(),
        });
    }
    let key = RootKey::generate()?;
    let mut text = Zeroizing::new([0u8; 45]);
    let encoded = Base64::encode(key.expose(), &mut text[..44])
        .map_err(|_| BarrierError::Crypto {
            op: "base64 encode",
        })?
        .len();
    text[encoded] = b'\n';
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // tempfile creates its files 0600, so the key is never readable by others, not even for
    // a moment.
    let mut tmp = tempfile::Builder::new()
        .prefix(".keep-unseal-")
        .tempfile_in(dir)
        .map_err(io("create"))?;
    tmp.write_all(&text[..=encoded]).map_err(io("write"))?;
    tmp.as_file().sync_all().map_err(io("write"))?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            BarrierError::KeyFileExists {
                path: path.to_path_buf(),
            }
        } else {
            io("create")(e.error)
        }
    })?;
    // Make the new directory entry durable too; a failure here is not worth failing init.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(key)
}

/// Reads the root key from a key file written by [`generate_key_file`].
///
/// Refuses a file that group or others can access in any way
/// ([`BarrierError::KeyFilePermissions`], naming the mode and `chmod 600`), checking the
/// opened file itself so a swap between check and read is not possible. The content must be
/// exactly 32 bytes of base64 (surrounding whitespace ignored).
pub fn read_key_file(path: &Path) -> Result<RootKey, BarrierError> {
    let io = |source| BarrierError::KeyFileIo {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let malformed = |reason| BarrierError::KeyFileMalformed {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(malformed("not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(BarrierError::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(malformed(
            "too large (a key file is 44 base64 characters on one line)",
        ));
    }
    // Capacity for the whole file up front: the buffer never reallocates, so the key is never
    // left behind in freed memory.
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    let text = buf.trim_ascii();
    let mut key = Zeroizing::new([0u8; RootKey::LEN]);
    match Base64::decode(text, key.as_mut()) {
        Ok(k) if k.len() == RootKey::LEN => Ok(RootKey(key)),
        _ => Err(malformed(
            "expected 32 bytes in base64 (44 characters), as `keep server init` writes",
        )),
    }
}

/// Derives a root key from a passphrase with argon2id (version 0x13), `argon2` and `salt`.
///
/// An empty passphrase is refused. The passphrase is used exactly as given (no trimming or
/// Unicode normalization), so the same bytes must be supplied at every unseal.
pub fn derive_passphrase_key(
    passphrase: &SecretString,
    argon2: &Argon2Params,
    salt: &[u8],
) -> Result<RootKey, BarrierError> {
    let pass = passphrase.expose_secret();
    if pass.is_empty() {
        return Err(BarrierError::EmptyPassphrase);
    }
    let params = argon2
        .to_argon2()
        .map_err(|reason| BarrierError::Kdf { reason })?;
    let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; RootKey::LEN]);
    kdf.hash_password_into(pass.as_bytes(), salt, key.as_mut())
        .map_err(|e| BarrierError::Kdf {
            reason: e.to_string(),
        })?;
    Ok(RootKey(key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn seal_config_json_round_trips_and_is_strict() {
        let c = SealConfig::Passphrase {
            argon2: Argon2Params::RECOMMENDED,
            salt: [9; 16],
        };
        let json = String::from_utf8(c.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"version":1,"type":"passphrase","argon2":{"algorithm":"argon2id","version":19,"m_cost_kib":65536,"t_cost":3,"p_cost":1},"salt":"CQkJCQkJCQkJCQkJCQkJCQ=="}"#
        );
        assert_eq!(SealConfig::from_json(json.as_bytes()).unwrap(), c);
        assert_eq!(
            String::from_utf8(SealConfig::KeyFile.to_json()).unwrap(),
            r#"{"version":1,"type":"keyfile"}"#
        );
        for bad in [
            r#"{"version":2,"type":"keyfile"}"#,
            r#"{"version":1,"type":"shamir"}"#,
            r#"{"version":1,"type":"keyfile","extra":1}"#,
            r#"{"version":1,"type":"passphrase"}"#,
            r#"{"version":1,"type":"passphrase","argon2":{"algorithm":"argon2i","version":19,"m_cost_kib":65536,"t_cost":3,"p_cost":1},"salt":"CQkJCQkJCQkJCQkJCQkJCQ=="}"#,
            r#"{"version":1,"type":"passphrase","argon2":{"algorithm":"argon2id","version":19,"m_cost_kib":99999999,"t_cost":3,"p_cost":1},"salt":"CQkJCQkJCQkJCQkJCQkJCQ=="}"#,
            r#"{"version":1,"type":"passphrase","argon2":{"algorithm":"argon2id","version":19,"m_cost_kib":65536,"t_cost":3,"p_cost":1},"salt":"CQkJ"}"#,
        ] {
            assert!(
                matches!(
                    SealConfig::from_json(bad.as_bytes()),
                    Err(BarrierError::SealConfig { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn root_key_debug_is_redacted() {
        let k = RootKey::from_bytes([0x41; 32]);
        assert_eq!(format!("{k:?}"), "RootKey([REDACTED])");
        let s = RootKeySource::Passphrase(SecretString::from("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
