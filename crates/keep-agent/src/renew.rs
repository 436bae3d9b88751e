//! Client certificate renewal over mTLS (`renew:` in the agent config).
//!
//! At [`due_at`] — `renew.at` of the certificate's lifetime (default 66%), moved earlier by a
//! random share of up to `renew.jitter` (default 5%) so a fleet issued together does not renew
//! in the same second — the agent:
//!
//! 1. makes a new key of the same type as the current one (the old key is never reused);
//! 2. sends a CSR for exactly the current identity to `POST /v1/pki/renew` over its current
//!    mTLS connection (no token: the presented certificate is the credential);
//! 3. checks the answer (the new certificate carries the new key and the same names);
//! 4. writes certificate and key as a pair ([`persist`]): both go to temporary files in their
//!    directories and are flushed before either is renamed into place, key first, so the
//!    window in which a reader could see a new key beside the old certificate is two
//!    back-to-back renames (keep's own loaders report a mismatch as such; the next reload
//!    succeeds). An encrypted key (`key_password_file`) is written encrypted with the same
//!    password. Inline PEM (`cert_pem`/`key_pem`) cannot be rewritten: the renewed pair then
//!    lives in memory only, and a warning says that a restart goes back to the config's;
//! 5. swaps the identity in memory and logs in again ([`crate::sidecar::Session`]).
//!
//! Failures are retried with backoff until the certificate expires, with a warning each time
//! that says how long is left; after expiry every attempt logs an error saying so.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use keep_pki::inspect::CertInfo;
use keep_pki::{KeyType, PrivateKey, Source};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::client::{ClientError, VaultClient};
use crate::config::{Mtls, Renew};
use crate::sink;

/// A renewed certificate (chain) and its key, held in memory. `Debug` shows neither.
pub struct Identity {
    /// The certificate, followed by the intermediates that issued it (PEM).
    pub cert_pem: String,
    /// The private key, unencrypted PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
    /// What the certificate says.
    pub info: CertInfo,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("serial", &self.info.serial)
            .field("not_after", &self.info.not_after)
            .finish_non_exhaustive()
    }
}

/// Why a renewal failed. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The current certificate cannot be read or parsed.
    #[error("cannot read the current client certificate ({field}): {detail}")]
    Current {
        /// The config field (`vault_connection.mtls.cert_file` …).
        field: String,
        /// What went wrong.
        detail: String,
    },
    /// Making the key or the CSR failed.
    #[error("cannot make the new key or CSR: {0}")]
    Request(String),
    /// The server refused or could not be reached.
    #[error("the server did not renew the certificate: {0}")]
    Server(#[from] ClientError),
    /// The server's answer is not a certificate for our new key and identity.
    #[error("the server's answer is not usable: {0}")]
    Answer(String),
    /// The renewed certificate and key could not be written.
    #[error("cannot write the renewed certificate and key: {0}")]
    Write(String),
}

impl RenewError {
    /// Whether retrying soon is pointless (the server answered with a 4xx: no PKI mount, a
    /// certificate it did not issue, a refused request).
    pub fn is_refusal(&self) -> bool {
        matches!(self, RenewError::Server(e) if e.status().is_some_and(|s| (400..500).contains(&s)))
    }
}

/// Reads and parses the leaf of the configured client certificate.
pub fn current_certificate(mtls: &Mtls) -> Result<CertInfo, RenewError> {
    let field = mtls.cert.field().to_owned();
    let err = |detail: String| RenewError::Current {
        field: field.clone(),
        detail,
    };
    let text = mtls.cert.read_text().map_err(|e| err(e.to_string()))?;
    let source = match mtls.cert.file() {
        Some(p) => Source::File(p.to_owned()),
        None => Source::Field(field.clone()),
    };
    parse_leaf(&text, &source).map_err(err)
}

fn parse_leaf(pem: &[u8], source: &Source) -> Result<CertInfo, String> {
    let blocks = keep_pki::pem::read_certificates(pem, source).map_err(|e| e.to_string())?;
    let first = blocks
        .first()
        .ok_or_else(|| format!("{source} holds no certificate"))?;
    keep_pki::inspect::inspect(&first.der).map_err(|e| e.to_string())
}

/// The validity window of `info`.
pub fn validity(info: &CertInfo) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let nb = OffsetDateTime::parse(&info.not_before, &Rfc3339).ok()?;
    let na = OffsetDateTime::parse(&info.not_after, &Rfc3339).ok()?;
    Some((nb, na))
}

/// When to renew a certificate valid from `not_before` to `not_after`: at `renew.at` of the
/// lifetime, minus `draw` (a random number in [0, 1)) times `renew.jitter` of it.
pub fn due_at(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    renew: &Renew,
    draw: f64,
) -> OffsetDateTime {
    let lifetime = not_after - not_before;
    let at = lifetime * (f64::from(renew.at_percent) / 100.0);
    let early = lifetime * (f64::from(renew.jitter_percent) / 100.0 * draw.clamp(0.0, 1.0));
    not_before + at - early
}

/// Renews `current` through `client` (which presents it): new key, CSR, `pki/renew`, checks.
pub async fn renew(client: &VaultClient, current: &CertInfo) -> Result<Identity, RenewError> {
    let key_type = KeyType::like(&current.public_key).unwrap_or(KeyType::EcP256);
    let info = current.clone();
    // RSA key generation takes long enough to keep it off the async worker.
    let (key, csr) = tokio::task::spawn_blocking(move || {
        let key = PrivateKey::generate(key_type).map_err(|e| e.to_string())?;
        let csr = keep_pki::cert::renewal_csr(&info, &key).map_err(|e| e.to_string())?;
        Ok::<_, String>((key, csr))
    })
    .await
    .map_err(|e| RenewError::Request(e.to_string()))?
    .map_err(RenewError::Request)?;

    let answer = client.pki_renew(&csr).await?;
    let data = answer.data();
    let cert = data
        .get("certificate")
        .and_then(Value::as_str)
        .ok_or_else(|| RenewError::Answer("no `certificate` in the answer".into()))?;
    let source = Source::Other("the pki/renew answer".into());
    let blocks = keep_pki::pem::read_certificates(cert.as_bytes(), &source)
        .map_err(|e| RenewError::Answer(e.to_string()))?;
    let leaf = blocks
        .first()
        .ok_or_else(|| RenewError::Answer("`certificate` holds no certificate".into()))?;
    if !key.matches_certificate(&leaf.der) {
        return Err(RenewError::Answer(
            "the new certificate is not for the key this agent just made".into(),
        ));
    }
    let new_info =
        keep_pki::inspect::inspect(&leaf.der).map_err(|e| RenewError::Answer(e.to_string()))?;
    if new_info.common_name != current.common_name || new_info.sans != current.sans {
        return Err(RenewError::Answer(format!(
            "the new certificate names another identity ({}) than the current one ({})",
            new_info.subject, current.subject
        )));
    }
    // The chain to send: the leaf, then the intermediates (roots are the server's to trust).
    let mut cert_pem = keep_pki::pem::encode("CERTIFICATE", &leaf.der);
    let chain: Vec<&str> = match data.get("ca_chain") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => data
            .get("issuing_ca")
            .and_then(Value::as_str)
            .into_iter()
            .collect(),
    };
    for pem in chain {
        for block in keep_pki::pem::read_certificates(pem.as_bytes(), &source)
            .map_err(|e| RenewError::Answer(e.to_string()))?
        {
            let ca = keep_pki::inspect::inspect(&block.der)
                .map_err(|e| RenewError::Answer(e.to_string()))?;
            if !ca.self_signed {
                cert_pem.push_str(&keep_pki::pem::encode("CERTIFICATE", &block.der));
            }
        }
    }
    Ok(Identity {
        cert_pem,
        key_pem: key.to_pem_plaintext(),
        info: new_info,
    })
}

/// Writes a renewed pair over the configured `cert_file`/`key_file` (see the module docs).
/// Returns `false`, writing nothing, when the config gives the certificate or key inline.
pub fn persist(mtls: &Mtls, id: &Identity) -> Result<bool, RenewError> {
    let (Some(cert_path), Some(key_path)) = (mtls.cert.file(), mtls.key.file()) else {
        return Ok(false);
    };
    let key_text: Zeroizing<String> = match &mtls.key_password_file {
        Some(p) => {
            let password = keep_pki::key::read_password_file(p)
                .map_err(|e| RenewError::Write(format!("{}: {e}", p.display())))?;
            let key = keep_pki::key::load_private_key(
                id.key_pem.as_bytes(),
                &Source::Other("renewed key".into()),
                None,
            )
            .map_err(|e| RenewError::Write(e.to_string()))?;
            Zeroizing::new(
                key.to_pem_encrypted(&password)
                    .map_err(|e| RenewError::Write(e.to_string()))?,
            )
        }
        None => id.key_pem.clone(),
    };
    let key_tmp = stage(key_path, key_text.as_bytes(), 0o600)?;
    let cert_tmp = stage(cert_path, id.cert_pem.as_bytes(), 0o644)?;
    commit(key_tmp, key_path)?;
    commit(cert_tmp, cert_path)?;
    Ok(true)
}

/// [`sink::stage`]s `contents` for `path`, keeping `path`'s current mode (else
/// `default_mode`) and, when running as root, its owner.
fn stage(
    path: &Path,
    contents: &[u8],
    default_mode: u32,
) -> Result<tempfile::NamedTempFile, RenewError> {
    use std::os::unix::fs::MetadataExt;
    let existing = std::fs::metadata(path).ok();
    let mode = existing
        .as_ref()
        .map_or(default_mode, |m| m.permissions().mode() & 0o777);
    let keep_owner = existing.as_ref().filter(|_| sink::running_as_root());
    let tmp = sink::stage(path, contents, mode, keep_owner.map(|m| m.uid()))
        .map_err(|e| RenewError::Write(e.to_string()))?;
    if let Some(m) = keep_owner {
        std::os::unix::fs::chown(tmp.path(), None, Some(m.gid())).map_err(|e| {
            RenewError::Write(format!("cannot keep the group of {}: {e}", path.display()))
        })?;
    }
    Ok(tmp)
}

fn commit(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), RenewError> {
    sink::commit(tmp, path).map_err(|e| RenewError::Write(e.to_string()))
}

/// The renewal schedule of a running agent (sidecar or `exec`): when the next attempt is due,
/// and the backoff after failures. Call [`Renewer::tick`] whenever the loop wakes, and sleep
/// no longer than [`Renewer::wait`].
#[derive(Debug)]
pub struct Renewer {
    renew: Renew,
    /// When to try next; `None` when renewal is off.
    next: Option<OffsetDateTime>,
    /// The current certificate's expiry, for the warnings.
    not_after: Option<OffsetDateTime>,
    backoff: Option<crate::sidecar::Backoff>,
    random: std::collections::hash_map::RandomState,
    draws: u64,
}

impl Renewer {
    /// A schedule for `session`'s current certificate (off when `renew.enabled` is false, or
    /// when the certificate cannot be read: the login reports that).
    pub fn new(renew: Renew, session: &crate::sidecar::Session) -> Renewer {
        let mut r = Renewer {
            renew,
            next: None,
            not_after: None,
            backoff: None,
            random: Default::default(),
            draws: 0,
        };
        if !renew.enabled {
            tracing::info!("client certificate renewal is off (renew.enabled: false)");
            return r;
        }
        match session.current_certificate() {
            Ok(info) => r.schedule(&info),
            Err(e) => {
                tracing::warn!(error = %e, "cannot schedule the client certificate's renewal")
            }
        }
        r
    }

    fn draw(&mut self) -> f64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.random.build_hasher();
        h.write_u64(self.draws);
        self.draws = self.draws.wrapping_add(1);
        (h.finish() % 1_000_000) as f64 / 1_000_000.0
    }

    fn schedule(&mut self, info: &CertInfo) {
        let Some((nb, na)) = validity(info) else {
            tracing::warn!(serial = %info.serial, "the client certificate's validity cannot be read; not renewing it");
            return;
        };
        let draw = self.draw();
        let at = due_at(nb, na, &self.renew, draw);
        let lifetime = (na - nb).max(time::Duration::SECOND);
        // Retries: from lifetime/200 (0.1–5 s) doubling to lifetime/50 (1 s – 10 min).
        let first = (lifetime / 200_i32).clamp(
            time::Duration::milliseconds(100),
            time::Duration::seconds(5),
        );
        let cap = (lifetime / 50_i32).clamp(time::Duration::SECOND, time::Duration::minutes(10));
        self.backoff = Some(crate::sidecar::Backoff::between(
            first
                .try_into()
                .unwrap_or(std::time::Duration::from_secs(1)),
            cap.try_into()
                .unwrap_or(std::time::Duration::from_secs(600)),
        ));
        self.next = Some(at);
        self.not_after = Some(na);
        tracing::info!(
            serial = %info.serial,
            not_after = %info.not_after,
            renew_at = %at.format(&Rfc3339).unwrap_or_default(),
            "client certificate renewal scheduled"
        );
    }

    /// How long the loop may sleep before the next attempt is due (`None`: no renewal).
    pub fn wait(&self) -> Option<std::time::Duration> {
        let next = self.next?;
        let left = next - OffsetDateTime::now_utc();
        Some(left.try_into().unwrap_or(std::time::Duration::ZERO))
    }

    /// Renews when due. Failures are logged (warnings while the certificate is valid, errors
    /// once it has expired) and retried with backoff.
    pub async fn tick(&mut self, session: &mut crate::sidecar::Session) {
        let Some(next) = self.next else { return };
        let now = OffsetDateTime::now_utc();
        if now < next {
            return;
        }
        match session.renew_certificate().await {
            Ok(info) => self.schedule(&info),
            Err(e) => {
                let refusal = e.is_refusal();
                let backoff = self.backoff.get_or_insert_with(|| {
                    crate::sidecar::Backoff::between(
                        std::time::Duration::from_secs(1),
                        std::time::Duration::from_secs(60),
                    )
                });
                let mut delay = backoff.next_delay();
                if refusal {
                    // A 4xx will not change in a second: wait the longest step now.
                    delay = backoff.cap();
                }
                self.next = Some(now + delay);
                let left = self.not_after.map(|na| na - now);
                match left {
                    Some(left) if left > time::Duration::ZERO => tracing::warn!(
                        error = %e,
                        expires_in = %keep_pki::inspect::human_duration(left),
                        retry_in_ms = delay.as_millis() as u64,
                        "could not renew the client certificate; retrying before it expires"
                    ),
                    _ => tracing::error!(
                        error = %e,
                        expired_at = %self
                            .not_after
                            .and_then(|na| na.format(&Rfc3339).ok())
                            .unwrap_or_default(),
                        retry_in_ms = delay.as_millis() as u64,
                        "the client certificate HAS EXPIRED and renewal failed: the vault refuses this agent until a new certificate is installed (cert_file/key_file are re-read at each login)"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn renewal_is_due_at_two_thirds_moved_earlier_by_the_jitter_draw() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = datetime!(2026-01-01 0:01 UTC); // 60 s, the test certificate
        let r = Renew::default(); // 66%, jitter 5%
        assert_eq!(
            due_at(nb, na, &r, 0.0),
            nb + time::Duration::milliseconds(39_600)
        );
        assert_eq!(
            due_at(nb, na, &r, 1.0),
            nb + time::Duration::milliseconds(36_600)
        );
        let mid = due_at(nb, na, &r, 0.5);
        assert!(mid > due_at(nb, na, &r, 1.0) && mid < due_at(nb, na, &r, 0.0));
        // A year-long certificate renews about four months before it expires.
        let year = due_at(nb, nb + time::Duration::days(365), &r, 0.0);
        assert_eq!((year - nb).whole_days(), 240);
        let none = Renew {
            jitter_percent: 0,
            ..r
        };
        assert_eq!(due_at(nb, na, &none, 0.9), due_at(nb, na, &none, 0.0));
    }

    #[test]
    fn identity_debug_shows_no_key() {
        let pki = keep_test_support::TestPki::new();
        let info = keep_pki::inspect::inspect(&pki.client.der).unwrap();
        let id = Identity {
            cert_pem: String::new(),
            key_pem: Zeroizing::new("PRIVATE-KEY-MATERIAL".into()),
            info,
        };
        let d = format!("{id:?}");
        assert!(
            d.contains("serial") && !d.contains("PRIVATE-KEY-MATERIAL"),
            "{d}"
        );
    }

    #[test]
    fn a_renewal_csr_asks_for_exactly_the_current_names_with_the_new_key() {
        let pki = keep_test_support::TestPki::new();
        let info = keep_pki::inspect::inspect(&pki.server.der).unwrap();
        let key = PrivateKey::generate(KeyType::like(&info.public_key).unwrap()).unwrap();
        let csr = keep_pki::cert::renewal_csr(&info, &key).unwrap();
        let parsed = keep_pki::cert::read_csr(csr.as_bytes(), &Source::Other("t".into())).unwrap();
        assert_eq!(parsed.common_name, info.common_name);
        assert_eq!(parsed.spki_der, key.public_key_spki_der());
        let mut sans = parsed.sans.clone();
        sans.sort();
        let mut want: Vec<String> = info.sans.dns.iter().chain(&info.sans.ip).cloned().collect();
        want.sort();
        assert!(!want.is_empty());
        assert_eq!(sans, want);
    }
}
