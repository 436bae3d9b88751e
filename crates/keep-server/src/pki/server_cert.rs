//! The server renewing its own serving certificate (`listener.tls.auto_renew: true`).
//!
//! When the certificate in `listener.tls.cert_file` was issued by this server's own PKI issuer
//! and two thirds of its lifetime have passed, the server makes a new key of the same type, issues
//! a certificate with the same names and EKUs and the same lifetime, records it in the inventory
//! (role `keep-server`, so it can be listed and revoked like any other), writes key and chain
//! files atomically (temporary file in the same directory, fsync, rename; the key 0600, encrypted
//! again with `key_password_file` when there is one) and reloads the TLS config. New handshakes
//! get the new certificate; established connections keep theirs.
//!
//! A crash between the two renames could leave the new key next to the old certificate; the
//! key is renamed first and the certificate right after, so the window is two system calls.

use std::io::Write;
use std::path::Path;

use keep_pki::cert::{EkuChoice, LeafTemplate};
use keep_pki::{KeyType, PrivateKey, Source};
use keep_store::Store;
use keep_tls::reload::ReloadableTls;
use time::{Duration, OffsetDateTime};

use super::{Pki, PkiError, Plan, metrics};

/// What an auto-renew check did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoRenew {
    /// The serving certificate was not issued by this PKI issuer; nothing to do.
    NotOurs,
    /// Not yet at 2/3 of its lifetime.
    NotDue {
        /// When it will be.
        due: OffsetDateTime,
    },
    /// Renewed and reloaded.
    Renewed {
        /// The old serial.
        old_serial: String,
        /// The new serial.
        new_serial: String,
    },
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> PkiError {
    PkiError::Internal(format!("{what} {}: {e}", path.display()))
}

/// Replaces `path` atomically with `contents` (mode `mode` on unix).
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).map_err(|e| PkiError::Internal(format!("no randomness: {e}")))?;
    let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.keep-{suffix}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = opts
            .open(&tmp)
            .map_err(|e| io_err("cannot create", &tmp, e))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_err("cannot replace", path, e))?;
        // The rename is durable once the directory is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn key_type_of(info: &keep_pki::inspect::PublicKeyInfo) -> KeyType {
    match (info.algorithm.as_str(), info.bits) {
        ("ECDSA", 384) => KeyType::EcP384,
        ("Ed25519", _) => KeyType::Ed25519,
        ("RSA", bits @ (3072 | 4096)) => KeyType::Rsa { bits },
        ("RSA", _) => KeyType::Rsa { bits: 2048 },
        _ => KeyType::EcP256,
    }
}

impl Pki {
    /// Renews the listener's serving certificate when this issuer issued it and 2/3 of its
    /// lifetime have passed (see the module docs). Blocking.
    pub fn renew_server_cert(
        &self,
        store: &dyn Store,
        tls: &ReloadableTls,
        now: OffsetDateTime,
    ) -> Result<AutoRenew, PkiError> {
        let settings = tls.settings();
        let cert_pem = std::fs::read(&settings.cert_file)
            .map_err(|e| io_err("cannot read", &settings.cert_file, e))?;
        let blocks =
            keep_pki::pem::read_certificates(&cert_pem, &Source::File(settings.cert_file.clone()))
                .map_err(|e| PkiError::Internal(e.to_string()))?;
        let Some(leaf) = blocks.first() else {
            return Ok(AutoRenew::NotOurs);
        };
        let (_, x) = x509_parser::parse_x509_certificate(&leaf.der)
            .map_err(|e| PkiError::Internal(format!("serving certificate: {e}")))?;
        let (_, issuer) = x509_parser::parse_x509_certificate(&self.issuer.cert.der)
            .map_err(|e| PkiError::Internal(e.to_string()))?;
        if x.issuer().as_raw() != self.issuer_subject_raw.as_slice()
            || x.verify_signature(Some(issuer.public_key())).is_err()
        {
            return Ok(AutoRenew::NotOurs);
        }
        let not_before = x.validity().not_before.to_datetime();
        let not_after = x.validity().not_after.to_datetime();
        let lifetime = not_after - not_before;
        let due = not_before + lifetime * 2 / 3;
        if now < due {
            return Ok(AutoRenew::NotDue { due });
        }
        let current =
            keep_pki::inspect::inspect(&leaf.der).map_err(|e| PkiError::Internal(e.to_string()))?;
        let has = |e: &str| current.extended_key_usage.iter().any(|x| x == e);
        let eku = if has("clientAuth") {
            EkuChoice::Both
        } else {
            EkuChoice::Server
        };
        let s = &current.sans;
        let template = LeafTemplate {
            common_name: current.common_name.clone(),
            sans: s
                .dns
                .iter()
                .chain(&s.ip)
                .chain(&s.uri)
                .chain(&s.email)
                .cloned()
                .collect(),
            eku,
            not_before: now - keep_pki::cert::lifetimes::BACKDATE,
            not_after: now + lifetime.max(Duration::hours(1)),
        };
        let key = PrivateKey::generate(key_type_of(&current.public_key))
            .map_err(|e| PkiError::Internal(format!("key generation failed: {e}")))?;
        let plan = Plan {
            template,
            warnings: Vec::new(),
            role: metrics::ROLE_SERVER.to_owned(),
            renewed_from: Some(current.serial.clone()),
        };
        let issued = self.issue_and_record(store, &key.public_key_spki_der(), plan, now)?;
        let key_pem = match &settings.key_password_file {
            Some(p) => {
                let password = keep_pki::key::read_password_file(p)
                    .map_err(|e| io_err("cannot read", p, e))?;
                zeroize::Zeroizing::new(
                    key.to_pem_encrypted(&password)
                        .map_err(|e| PkiError::Internal(e.to_string()))?,
                )
            }
            None => zeroize::Zeroizing::new(key.to_pem_plaintext().to_string()),
        };
        let mut chain = issued.record.certificate.clone();
        for b in &blocks[1..] {
            chain.push_str(&keep_pki::pem::encode("CERTIFICATE", &b.der));
        }
        write_atomically(&settings.key_file, key_pem.as_bytes(), 0o600)?;
        write_atomically(&settings.cert_file, chain.as_bytes(), 0o644)?;
        tls.reload()
            .map_err(|e| PkiError::Internal(format!("reloading the renewed certificate: {e}")))?;
        if let Some(b) =
            keep_pki::pem::read_certificates(chain.as_bytes(), &Source::Other("renewed".into()))
                .ok()
                .and_then(|b| b.into_iter().next())
        {
            self.record_server_cert(&b.der);
        }
        tracing::info!(target: "keep::pki", old = %current.serial, new = %issued.record.serial_number, not_after = issued.record.not_after, "serving certificate renewed by the server's own PKI issuer");
        Ok(AutoRenew::Renewed {
            old_serial: current.serial,
            new_serial: issued.record.serial_number,
        })
    }
}
