//! The vault's rustls server configuration.
//!
//! [`build`] turns [`TlsSettings`] (what the server's YAML `listener.tls` section says) into a
//! rustls [`ServerConfig`] with keep's policy baked in:
//!
//! - **Versions and suites**: TLS 1.3, and TLS 1.2 with ECDHE key exchange and AEAD ciphers only.
//!   `min_version` and `cipher_suites` can narrow this, never widen it: a CBC, non-ECDHE or
//!   TLS 1.0/1.1 request is an error that says the choice is weak and refused, rather than a
//!   silently ignored setting.
//! - **Client certificates** are required (unless `require_client_cert: false`) and verified by
//!   rustls' `WebPkiClientVerifier` against `client_ca_file`. Every certificate in that file must
//!   be a CA certificate: a leaf there would become a trust anchor, so anyone holding its key
//!   could vouch for any client.
//! - **Revocation** (`crl_file`): every certificate in the client's chain for which a CRL from its
//!   issuer is loaded is checked; a certificate whose issuer has no CRL loaded is accepted
//!   ("unknown status allowed"). So a CRL from the intermediate alone revokes agent certs, and
//!   adding the root's CRL also revokes intermediates. A CRL past its nextUpdate is still used
//!   (a warning is logged at load): failing every client closed because a CRL publishing job is
//!   late would take the whole vault down, and an old CRL still revokes what it lists.
//!   CRLs can also be held in memory (`extra_crls`, DER): keep's PKI mount swaps in its own
//!   issuer's fresh CRL after every revocation. Both sources apply together: a certificate
//!   listed in any loaded CRL of its issuer is refused, also when the in-memory CRL and a
//!   `crl_file` CRL come from the same issuer ([`crate::revocation`] says how).
//! - **The server's own certificate** must be usable by clients: not a CA, EKU serverAuth (or
//!   none), at least one DNS or IP subject alternative name, and inside its validity window.
//!   A certificate close to its notAfter loads (`listener.tls.auto_renew` replaces it then);
//!   an expired or not-yet-valid one is refused, at start and on reload (the last good one
//!   stays), since every client would reject it.
//! - **ALPN**: `h2`, then `http/1.1`.
//! - **Keys** may be encrypted PKCS#8 (`key_password_file`); the key must match the certificate.
//!
//! Session resumption uses rustls' in-memory cache, which belongs to one built config: a reload
//! (for example after a CRL update) starts a fresh cache, so no session from before the reload,
//! and no client cert checked only against the old CRL, can be resumed.
//!
//! Every error names the config field and file (and line, where there is one) and says the fix.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use keep_pki::key::KeyError;
use keep_pki::pem::{PemError, Source};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use secrecy::SecretString;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::capture::CapturingVerifier;
use crate::identity::ClientTrust;
use crate::suites;

/// The lowest TLS version the server (or client) accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (with ECDHE+AEAD suites only) and TLS 1.3. The default, because some agents'
    /// TLS stacks (older Java, embedded clients) still lack TLS 1.3.
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl FromStr for TlsVersion {
    type Err = TlsConfigError;

    /// Parses `"1.2"` or `"1.3"` (also `TLS1.3`, `TLSv1.3`, `tls13`). `"1.0"` and `"1.1"` are
    /// refused as weak; anything else is not a version.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let given = s.trim();
        let lower = given.to_ascii_lowercase();
        let bare = lower
            .strip_prefix("tlsv")
            .or_else(|| lower.strip_prefix("tls"))
            .unwrap_or(&lower)
            .trim();
        match bare {
            "1.2" | "12" => Ok(TlsVersion::V1_2),
            "1.3" | "13" => Ok(TlsVersion::V1_3),
            "1.0" | "10" | "1" | "1.1" | "11" => Err(TlsConfigError::WeakMinVersion {
                given: given.to_owned(),
            }),
            _ => Err(TlsConfigError::UnknownMinVersion {
                given: given.to_owned(),
            }),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}

/// The server's TLS settings, as the server config (`listener.tls`) fills them.
///
/// Secrets are given as file paths only (the key, its password): never as values that could
/// end up in a process listing or a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server certificate chain (PEM): the server's certificate first, then intermediates.
    pub cert_file: PathBuf,
    /// The server's private key (PEM; PKCS#8, encrypted PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
    /// A file holding the key's password, when the key is encrypted.
    pub key_password_file: Option<PathBuf>,
    /// The CA certificates client certificates must chain to (PEM bundle, CA certificates only).
    pub client_ca_file: PathBuf,
    /// CRLs (PEM bundle) to check client certificates against.
    pub crl_file: Option<PathBuf>,
    /// CRLs held in memory (DER), checked like `crl_file`'s: the list keep's own PKI issuer
    /// publishes after every revocation, swapped in with
    /// [`ReloadableTls::reload_with_extra_crls`] so a revocation takes effect in the next
    /// handshake without a restart or a file. They add to `crl_file`'s, also for the same
    /// issuer: a certificate listed in either is refused ([`crate::revocation`]).
    ///
    /// [`ReloadableTls::reload_with_extra_crls`]: crate::reload::ReloadableTls::reload_with_extra_crls
    pub extra_crls: Vec<Vec<u8>>,
    /// The lowest TLS version accepted.
    pub min_version: TlsVersion,
    /// Cipher suites to offer, by IANA/rustls name (`TLS13_AES_256_GCM_SHA384`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`; OpenSSL spellings are accepted too), most
    /// preferred first. `None` offers every suite keep allows.
    pub cipher_suites: Option<Vec<String>>,
    /// Require a client certificate (the default). Turning this off lets clients without a
    /// certificate complete the handshake; certificates that are presented are still verified.
    pub require_client_cert: bool,
    /// Require a client certificate to carry an extended key usage extension that names
    /// clientAuth (the default). RFC 5280 lets a certificate without any EKU extension be used
    /// for anything, and rustls/webpki accept one; keep refuses it unless this is turned off,
    /// so a certificate made for something else (a CA, a code-signing cert with no EKU) is not
    /// accepted as a client. A certificate whose EKU extension lacks clientAuth is refused
    /// either way.
    pub require_client_auth_eku: bool,
}

impl TlsSettings {
    /// Settings with keep's defaults: TLS 1.2+, every allowed suite, client certificates
    /// required, no CRL, unencrypted key.
    pub fn new(
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
        client_ca_file: impl Into<PathBuf>,
    ) -> Self {
        TlsSettings {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            key_password_file: None,
            client_ca_file: client_ca_file.into(),
            crl_file: None,
            extra_crls: Vec::new(),
            min_version: TlsVersion::default(),
            cipher_suites: None,
            require_client_cert: true,
            require_client_auth_eku: true,
        }
    }

    /// Every file the config is built from, with its field name (what the reloader watches).
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        let mut files = vec![
            ("cert_file", self.cert_file.as_path()),
            ("key_file", self.key_file.as_path()),
            ("client_ca_file", self.client_ca_file.as_path()),
        ];
        if let Some(p) = &self.key_password_file {
            files.push(("key_password_file", p.as_path()));
        }
        if let Some(p) = &self.crl_file {
            files.push(("crl_file", p.as_path()));
        }
        files
    }
}

/// Why a server certificate is outside its validity window, for [`TlsConfigError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidityDates {
    /// The certificate's subject (RFC 4514).
    pub subject: String,
    /// The bound it is outside of: notAfter when expired, notBefore when not yet valid
    /// (RFC 3339).
    pub bound: String,
    /// The time of the check (RFC 3339).
    pub now: String,
    /// The command that issues a replacement with the same names.
    pub reissue: String,
}

/// Where a piece of TLS material came from: the config field and the file (or inline value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The config field, e.g. `cert_file` or `mtls.ca_cert_pem`.
    pub field: String,
    /// The file or inline value the field pointed at.
    pub source: Source,
}

impl Origin {
    /// A field that names a file.
    pub fn file(field: &str, path: &Path) -> Self {
        Origin {
            field: field.to_owned(),
            source: Source::File(path.to_path_buf()),
        }
    }

    /// The file, when the material came from one.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::File(path) => write!(f, "`{}` (file {})", self.field, path.display()),
            Source::Field(name) if *name == self.field => write!(f, "config field `{name}`"),
            other => write!(f, "`{}` ({other})", self.field),
        }
    }
}

/// Why TLS material or settings cannot be used. Each message names the field and file (and the
/// line, where there is one), says what is wrong, and ends with `fix: …`.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file cannot be read (missing, permissions).
    #[error(
        "{origin}: cannot read the file: {source}; fix: check the path in `{}` and that keep's user may read it",
        origin.field
    )]
    Read {
        /// The field and file.
        origin: Origin,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or CRL file is not readable PEM (the PEM error names the file and line and
    /// says the fix).
    #[error("`{field}`: {source}")]
    Pem {
        /// The config field.
        field: String,
        /// What the PEM reader said (boxed: it is large and errors are rare).
        source: Box<PemError>,
    },
    /// The private key cannot be loaded (the key error names the file and says the fix).
    #[error("`{field}`: {source}")]
    Key {
        /// The config field.
        field: String,
        /// What the key loader said (never key material or the password); boxed like `Pem`.
        source: Box<KeyError>,
    },
    /// The key is encrypted but no password file is configured.
    #[error(
        "{origin}: the private key is encrypted and no password is configured; fix: set `{password_field}` to a file holding the key's password"
    )]
    KeyPasswordRequired {
        /// The key's field and file.
        origin: Origin,
        /// The field that names the password file.
        password_field: &'static str,
    },
    /// The password file cannot be read.
    #[error(
        "{origin}: cannot read the password file: {source}; fix: check the path and that the file holds the password as UTF-8 text"
    )]
    PasswordFile {
        /// The password file's field and path.
        origin: Origin,
        /// The I/O error (never the password).
        source: std::io::Error,
    },
    /// A certificate in a CA bundle is not a CA certificate.
    #[error(
        "{origin}, line {line}: `{subject}` is not a CA certificate (basicConstraints CA:TRUE is missing); trusting a leaf as a root would let whoever holds its key vouch for any client; fix: keep only root and intermediate CA certificates in this file"
    )]
    NotACaCertificate {
        /// The bundle's field and file.
        origin: Origin,
        /// 1-based line of the certificate's BEGIN marker.
        line: usize,
        /// The certificate's subject.
        subject: String,
    },
    /// A CA certificate cannot be used as a trust anchor.
    #[error(
        "{origin}, line {line}: the certificate cannot be used as a trust anchor ({detail}); fix: replace it with the CA certificate in PEM form"
    )]
    BadTrustAnchor {
        /// The bundle's field and file.
        origin: Origin,
        /// 1-based line of the certificate's BEGIN marker (0 for raw DER).
        line: usize,
        /// What webpki said.
        detail: String,
    },
    /// The server certificate file starts with a CA certificate.
    #[error(
        "{origin}: the first certificate (`{subject}`) is a CA certificate, not the server's; fix: put the server's own certificate first, followed by its intermediates"
    )]
    ServerCertIsCa {
        /// The cert field and file.
        origin: Origin,
        /// The first certificate's subject.
        subject: String,
    },
    /// The server certificate's EKU does not allow TLS server use.
    #[error(
        "{origin}: `{subject}` is not a TLS server certificate (extended key usage: {eku}), so clients would reject it; fix: use a certificate with EKU serverAuth (`keep certificate create … --profile leaf`)"
    )]
    ServerCertNotForServers {
        /// The cert field and file.
        origin: Origin,
        /// The certificate's subject.
        subject: String,
        /// The EKUs it has.
        eku: String,
    },
    /// The server certificate is past its notAfter.
    #[error(
        "{origin}: the server certificate `{}` expired at {} (now {}), so every client would reject it; fix: put a renewed certificate in `listener.tls.cert_file` and its key in `listener.tls.key_file` ({}); with `listener.tls.auto_renew` keep renews its own certificate before it expires, but only while it runs",
        dates.subject, dates.bound, dates.now, dates.reissue
    )]
    ServerCertExpired {
        /// The cert field and file.
        origin: Origin,
        /// Its subject, notAfter and the time of the check (boxed: errors are rare).
        dates: Box<ValidityDates>,
    },
    /// The server certificate is before its notBefore.
    #[error(
        "{origin}: the server certificate `{}` is valid only from {} (now {}), so every client would reject it; fix: check this machine's clock, or put a certificate that is valid now in `listener.tls.cert_file` ({})",
        dates.subject, dates.bound, dates.now, dates.reissue
    )]
    ServerCertNotYetValid {
        /// The cert field and file.
        origin: Origin,
        /// Its subject, notBefore and the time of the check (boxed: errors are rare).
        dates: Box<ValidityDates>,
    },
    /// The server certificate has no DNS or IP subject alternative name.
    #[error(
        "{origin}: the server certificate `{subject}` has no DNS or IP subject alternative name, so every client would reject it (clients match the name they connect to against the SANs only, not the common name); fix: reissue `listener.tls.cert_file` with a --san for every name and IP clients use (`keep certificate create {cn} server.crt server.key --profile leaf --san {cn} --san …`)"
    )]
    ServerCertWithoutSan {
        /// The cert field and file.
        origin: Origin,
        /// The certificate's subject.
        subject: String,
        /// Its common name, or a placeholder, for the example command.
        cn: String,
    },
    /// A certificate does not parse.
    #[error("{origin}, line {line}: {detail}; fix: replace it with a valid PEM certificate")]
    BadCertificate {
        /// The field and file.
        origin: Origin,
        /// 1-based line of the certificate's BEGIN marker (0 for raw DER).
        line: usize,
        /// What the parser said.
        detail: String,
    },
    /// The private key is not the certificate's.
    #[error(
        "{key} does not belong to the certificate in {cert} (their public keys differ); fix: point `{}` at the key this certificate was issued for, or re-issue the certificate for this key",
        key.field
    )]
    KeyMismatch {
        /// The certificate's field and file.
        cert: Origin,
        /// The key's field and file.
        key: Origin,
    },
    /// A CRL cannot be used.
    #[error(
        "{origin}, line {line}: the CRL cannot be used ({detail}); fix: fetch a fresh CRL from its CA (PEM `X509 CRL`)"
    )]
    BadCrl {
        /// The CRL field and file.
        origin: Origin,
        /// 1-based line of the CRL's BEGIN marker (0 for raw DER).
        line: usize,
        /// What webpki said.
        detail: String,
    },
    /// A cipher suite name keep does not know.
    #[error("`cipher_suites`: unknown cipher suite `{name}`; fix: use only these names: {allowed}")]
    UnknownCipherSuite {
        /// The name as given.
        name: String,
        /// The names keep allows, comma-separated.
        allowed: String,
    },
    /// A cipher suite keep refuses as weak.
    #[error(
        "`cipher_suites`: `{name}` is weak and refused: {why}; fix: remove it (keep offers TLS 1.3 and TLS 1.2 ECDHE+AEAD suites only)"
    )]
    WeakCipherSuite {
        /// The name as given.
        name: String,
        /// Why it is weak.
        why: &'static str,
    },
    /// `cipher_suites` is an empty list.
    #[error(
        "`cipher_suites` is empty; fix: remove `cipher_suites` to get keep's defaults, or list at least one suite"
    )]
    EmptyCipherSuites,
    /// `min_version` is 1.3 but no TLS 1.3 suite is listed.
    #[error(
        "`cipher_suites` lists no TLS 1.3 suite but `min_version` is 1.3; fix: add TLS13_AES_256_GCM_SHA384 (or another TLS13_ suite), or lower `min_version` to \"1.2\""
    )]
    NoTls13Suite,
    /// `min_version` is TLS 1.0 or 1.1.
    #[error(
        "`min_version`: \"{given}\" asks for TLS 1.0/1.1, which is weak and refused (deprecated by RFC 8996: SHA-1/MD5 handshakes, CBC-only suites); fix: use \"1.2\" or \"1.3\""
    )]
    WeakMinVersion {
        /// The value as given.
        given: String,
    },
    /// `min_version` is not a TLS version.
    #[error(
        "`min_version`: `{given}` is not a TLS version; fix: use \"1.2\" (the default) or \"1.3\""
    )]
    UnknownMinVersion {
        /// The value as given.
        given: String,
    },
    /// rustls refused the assembled configuration (should not happen with checked inputs).
    #[error("{what} failed: {detail}")]
    Rustls {
        /// What was being built.
        what: &'static str,
        /// What rustls said.
        detail: String,
    },
}

impl TlsConfigError {
    /// The file the problem is in, when there is one (for `tls_reload_failed` events).
    pub fn file(&self) -> Option<&Path> {
        match self {
            TlsConfigError::Read { origin, .. }
            | TlsConfigError::KeyPasswordRequired { origin, .. }
            | TlsConfigError::PasswordFile { origin, .. }
            | TlsConfigError::NotACaCertificate { origin, .. }
            | TlsConfigError::BadTrustAnchor { origin, .. }
            | TlsConfigError::ServerCertIsCa { origin, .. }
            | TlsConfigError::ServerCertNotForServers { origin, .. }
            | TlsConfigError::ServerCertExpired { origin, .. }
            | TlsConfigError::ServerCertNotYetValid { origin, .. }
            | TlsConfigError::ServerCertWithoutSan { origin, .. }
            | TlsConfigError::BadCertificate { origin, .. }
            | TlsConfigError::BadCrl { origin, .. } => origin.path(),
            TlsConfigError::KeyMismatch { key, .. } => key.path(),
            TlsConfigError::Pem { source, .. } => match &source.source {
                Source::File(p) => Some(p),
                _ => None,
            },
            TlsConfigError::Key { source, .. } => match key_error_source(source) {
                Some(Source::File(p)) => Some(p),
                _ => None,
            },
            _ => None,
        }
    }

    /// The config field the problem is in (`cert_file`, `cipher_suites`, …).
    pub fn field(&self) -> Option<&str> {
        match self {
            TlsConfigError::Read { origin, .. }
            | TlsConfigError::KeyPasswordRequired { origin, .. }
            | TlsConfigError::PasswordFile { origin, .. }
            | TlsConfigError::NotACaCertificate { origin, .. }
            | TlsConfigError::BadTrustAnchor { origin, .. }
            | TlsConfigError::ServerCertIsCa { origin, .. }
            | TlsConfigError::ServerCertNotForServers { origin, .. }
            | TlsConfigError::ServerCertExpired { origin, .. }
            | TlsConfigError::ServerCertNotYetValid { origin, .. }
            | TlsConfigError::ServerCertWithoutSan { origin, .. }
            | TlsConfigError::BadCertificate { origin, .. }
            | TlsConfigError::BadCrl { origin, .. } => Some(&origin.field),
            TlsConfigError::KeyMismatch { key, .. } => Some(&key.field),
            TlsConfigError::Pem { field, .. } | TlsConfigError::Key { field, .. } => Some(field),
            TlsConfigError::UnknownCipherSuite { .. }
            | TlsConfigError::WeakCipherSuite { .. }
            | TlsConfigError::EmptyCipherSuites
            | TlsConfigError::NoTls13Suite => Some("cipher_suites"),
            TlsConfigError::WeakMinVersion { .. } | TlsConfigError::UnknownMinVersion { .. } => {
                Some("min_version")
            }
            TlsConfigError::Rustls { .. } => None,
        }
    }
}

fn key_error_source(e: &KeyError) -> Option<&Source> {
    match e {
        KeyError::Pem(p) => Some(&p.source),
        KeyError::NoKey { origin, .. }
        | KeyError::PasswordRequired { origin }
        | KeyError::Decrypt { origin, .. }
        | KeyError::LegacyEncryption { origin, .. }
        | KeyError::Invalid { origin, .. } => Some(origin),
        _ => None,
    }
}

/// Checks a `cipher_suites` list exactly as [`build`] will, without reading any file: the
/// doctor calls it once per name to report every weak or unknown suite, not just the first.
pub fn check_cipher_suites(
    names: &[String],
    min_version: TlsVersion,
) -> Result<(), TlsConfigError> {
    suites::provider(Some(names), min_version).map(drop)
}

/// Builds the server's rustls config from `settings` (reads every file; decrypting a key takes
/// ~25 ms, so call it from a blocking context in async code).
pub fn build(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsConfigError> {
    build_material(settings).map(|m| m.config)
}

/// A built config plus what the listener needs to know about it.
#[derive(Debug)]
pub(crate) struct Material {
    /// The config new handshakes use.
    pub(crate) config: Arc<ServerConfig>,
    /// The server certificate's DNS names, to tell an SNI mismatch from other client rejections.
    pub(crate) server_names: Vec<String>,
    /// When the server certificate expires (exported as a gauge once the config is in use).
    pub(crate) not_after: OffsetDateTime,
    /// The client trust anchors this config verifies with: the listener derives each
    /// connection's identity from the path they verify (see [`ClientTrust`]).
    pub(crate) client_trust: Arc<ClientTrust>,
    /// Every loaded CRL, for the handshake's union check and the per-request check.
    pub(crate) revocations: Arc<crate::revocation::Revocations>,
}

pub(crate) fn build_material(settings: &TlsSettings) -> Result<Material, TlsConfigError> {
    // Cheap checks first, so a typo in a suite name is reported before a slow key decryption.
    let provider = suites::provider(settings.cipher_suites.as_deref(), settings.min_version)?;

    let cert_origin = Origin::file("cert_file", &settings.cert_file);
    let chain = load_chain(&cert_origin, &read_file(&cert_origin)?)?;
    let leaf = check_server_leaf(&cert_origin, &chain)?;

    let key_origin = Origin::file("key_file", &settings.key_file);
    let password = match &settings.key_password_file {
        Some(p) => Some(read_password(&Origin::file("key_password_file", p))?),
        None => None,
    };
    let key = load_key(
        &key_origin,
        &read_file(&key_origin)?,
        password.as_ref(),
        "key_password_file",
    )?;
    check_key_matches(&cert_origin, &chain, &key_origin, &key)?;

    let ca_origin = Origin::file("client_ca_file", &settings.client_ca_file);
    let roots = load_ca_bundle(&ca_origin, &read_file(&ca_origin)?)?;
    let client_trust = Arc::new(ClientTrust::new(
        roots.roots.clone(),
        provider.signature_verification_algorithms,
        settings.require_client_auth_eku,
    ));
    if !settings.require_client_auth_eku {
        tracing::warn!(
            "TLS listener: require_client_auth_eku is false: client certificates without any extended key usage extension are accepted"
        );
    }

    // Both CRL sources, the in-memory ones first (see `revocation` for how they combine).
    let mut crls: Vec<(Origin, usize, CertificateRevocationListDer<'static>)> = Vec::new();
    for (i, der) in settings.extra_crls.iter().enumerate() {
        let origin = Origin {
            field: "extra_crls".into(),
            source: Source::Other(format!("in-memory CRL #{}", i + 1)),
        };
        let crl = check_crl(&origin, 0, der)?;
        crls.push((origin, 0, crl));
    }
    if let Some(crl_path) = &settings.crl_file {
        let crl_origin = Origin::file("crl_file", crl_path);
        crls.extend(load_crls(&crl_origin, &read_file(&crl_origin)?)?);
    }
    let revocations = Arc::new(crate::revocation::Revocations::new(
        &crls
            .iter()
            .map(|(o, line, der)| (o.clone(), *line, der.as_ref()))
            .collect::<Vec<_>>(),
        &roots.roots,
    )?);

    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    if !crls.is_empty() {
        // Check every chain certificate we have a CRL for; accept unknown status for issuers
        // without one (module docs: "Revocation").
        verifier = verifier
            .with_crls(crls.into_iter().map(|(_, _, der)| der))
            .allow_unknown_revocation_status();
    }
    if !settings.require_client_cert {
        tracing::warn!(
            "TLS listener: require_client_cert is false: clients without a certificate can connect; only routes that need no identity should be served to them"
        );
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier.build().map_err(|e| TlsConfigError::Rustls {
        what: "client certificate verifier",
        detail: e.to_string(),
    })?;

    let key_der = PrivateKeyDer::Pkcs8(key.pkcs8_der().to_vec().into());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(suites::versions(settings.min_version))
        .map_err(|e| TlsConfigError::Rustls {
            what: "TLS version selection",
            detail: e.to_string(),
        })?
        .with_client_cert_verifier(Arc::new(CapturingVerifier::new(
            verifier,
            Arc::clone(&revocations),
            settings.require_client_auth_eku,
        )))
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsConfigError::Rustls {
            what: "server certificate and key",
            detail: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    Ok(Material {
        config: Arc::new(config),
        server_names: leaf.dns_names,
        not_after: leaf.not_after,
        client_trust,
        revocations,
    })
}

/// What the listener and metrics need from the server's own certificate.
pub(crate) struct ServerLeaf {
    pub(crate) dns_names: Vec<String>,
    pub(crate) not_after: OffsetDateTime,
}

/// Reads a file into zeroizing memory (it may be a key).
pub(crate) fn read_file(origin: &Origin) -> Result<Zeroizing<Vec<u8>>, TlsConfigError> {
    let path = origin.path().unwrap_or(Path::new(""));
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsConfigError::Read {
            origin: origin.clone(),
            source,
        })
}

pub(crate) fn read_password(origin: &Origin) -> Result<SecretString, TlsConfigError> {
    let path = origin.path().unwrap_or(Path::new(""));
    keep_pki::key::read_password_file(path).map_err(|source| TlsConfigError::PasswordFile {
        origin: origin.clone(),
        source,
    })
}

/// Reads a certificate chain (leaf first), each certificate checked to parse.
pub(crate) fn load_chain(
    origin: &Origin,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let blocks = keep_pki::pem::read_certificates(bytes, &origin.source).map_err(|source| {
        TlsConfigError::Pem {
            field: origin.field.clone(),
            source: Box::new(source),
        }
    })?;
    Ok(blocks
        .iter()
        .map(|b| CertificateDer::from(b.der.to_vec()))
        .collect())
}

/// Reads a private key, decrypting it with `password` when it is encrypted.
pub(crate) fn load_key(
    origin: &Origin,
    bytes: &[u8],
    password: Option<&SecretString>,
    password_field: &'static str,
) -> Result<keep_pki::PrivateKey, TlsConfigError> {
    keep_pki::key::load_private_key(bytes, &origin.source, password).map_err(|e| match e {
        KeyError::PasswordRequired { .. } => TlsConfigError::KeyPasswordRequired {
            origin: origin.clone(),
            password_field,
        },
        source => TlsConfigError::Key {
            field: origin.field.clone(),
            source: Box::new(source),
        },
    })
}

/// Checks that the key is the first certificate's.
pub(crate) fn check_key_matches(
    cert_origin: &Origin,
    chain: &[CertificateDer<'_>],
    key_origin: &Origin,
    key: &keep_pki::PrivateKey,
) -> Result<(), TlsConfigError> {
    match chain.first() {
        Some(leaf) if key.matches_certificate(leaf) => Ok(()),
        _ => Err(TlsConfigError::KeyMismatch {
            cert: cert_origin.clone(),
            key: key_origin.clone(),
        }),
    }
}

/// Checks the server's own certificate the way its clients will: not a CA, usable for TLS
/// servers, at least one DNS or IP SAN, and valid now. Anything clients would reject is
/// refused here, so a start fails with the reason (and a reload keeps the last good
/// certificate) instead of every client failing its handshake. A certificate near its
/// notAfter loads: `listener.tls.auto_renew` renews it in time.
fn check_server_leaf(
    origin: &Origin,
    chain: &[CertificateDer<'_>],
) -> Result<ServerLeaf, TlsConfigError> {
    let Some(leaf) = chain.first() else {
        // read_certificates never returns an empty list; keep the error path anyway.
        return Err(TlsConfigError::BadCertificate {
            origin: origin.clone(),
            line: 0,
            detail: "no certificate found".into(),
        });
    };
    let info = keep_pki::inspect::inspect(leaf).map_err(|e| TlsConfigError::BadCertificate {
        origin: origin.clone(),
        line: 1,
        detail: e.problem,
    })?;
    if info.is_ca {
        return Err(TlsConfigError::ServerCertIsCa {
            origin: origin.clone(),
            subject: info.subject,
        });
    }
    let eku = &info.extended_key_usage;
    if !eku.is_empty()
        && !eku
            .iter()
            .any(|e| e == "serverAuth" || e == "anyExtendedKeyUsage")
    {
        return Err(TlsConfigError::ServerCertNotForServers {
            origin: origin.clone(),
            subject: info.subject,
            eku: eku.join(", "),
        });
    }
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsConfigError::BadCertificate {
            origin: origin.clone(),
            line: 1,
            detail: e.to_string(),
        })?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("vault.example.internal")
        .to_owned();
    if info.sans.dns.is_empty() && info.sans.ip.is_empty() {
        return Err(TlsConfigError::ServerCertWithoutSan {
            origin: origin.clone(),
            subject: info.subject,
            cn,
        });
    }
    let not_after = parsed.validity().not_after.to_datetime();
    let not_before = parsed.validity().not_before.to_datetime();
    let now = OffsetDateTime::now_utc();
    let reissue = || {
        let sans: String = info
            .sans
            .dns
            .iter()
            .chain(&info.sans.ip)
            .map(|s| format!(" --san {s}"))
            .collect();
        format!("`keep certificate create {cn} server.crt server.key --profile leaf{sans} …`")
    };
    let dates = |bound: OffsetDateTime| {
        Box::new(ValidityDates {
            subject: info.subject.clone(),
            bound: keep_pki::duration::rfc3339(bound),
            now: keep_pki::duration::rfc3339(now),
            reissue: reissue(),
        })
    };
    if now > not_after {
        return Err(TlsConfigError::ServerCertExpired {
            origin: origin.clone(),
            dates: dates(not_after),
        });
    }
    if now < not_before {
        return Err(TlsConfigError::ServerCertNotYetValid {
            origin: origin.clone(),
            dates: dates(not_before),
        });
    }
    Ok(ServerLeaf {
        dns_names: info.sans.dns,
        not_after,
    })
}

/// Reads a CA bundle into a root store. Every certificate must be a CA certificate.
pub(crate) fn load_ca_bundle(
    origin: &Origin,
    bytes: &[u8],
) -> Result<RootCertStore, TlsConfigError> {
    let blocks = keep_pki::pem::read_certificates(bytes, &origin.source).map_err(|source| {
        TlsConfigError::Pem {
            field: origin.field.clone(),
            source: Box::new(source),
        }
    })?;
    let mut roots = RootCertStore::empty();
    for block in &blocks {
        let info =
            keep_pki::inspect::inspect(&block.der).map_err(|e| TlsConfigError::BadCertificate {
                origin: origin.clone(),
                line: block.line,
                detail: e.problem,
            })?;
        if !info.is_ca {
            return Err(TlsConfigError::NotACaCertificate {
                origin: origin.clone(),
                line: block.line,
                subject: info.subject,
            });
        }
        roots
            .add(CertificateDer::from(block.der.to_vec()))
            .map_err(|e| TlsConfigError::BadTrustAnchor {
                origin: origin.clone(),
                line: block.line,
                detail: e.to_string(),
            })?;
    }
    Ok(roots)
}

/// Reads CRLs, each checked by [`check_crl`], with the origin and line of each.
fn load_crls(
    origin: &Origin,
    bytes: &[u8],
) -> Result<Vec<(Origin, usize, CertificateRevocationListDer<'static>)>, TlsConfigError> {
    let blocks =
        keep_pki::pem::read_crls(bytes, &origin.source).map_err(|source| TlsConfigError::Pem {
            field: origin.field.clone(),
            source: Box::new(source),
        })?;
    blocks
        .iter()
        .map(|block| {
            check_crl(origin, block.line, &block.der).map(|crl| (origin.clone(), block.line, crl))
        })
        .collect()
}

/// Checks one CRL with webpki (so a CRL rustls would reject is reported with its origin) and
/// warns when it is past its nextUpdate.
fn check_crl(
    origin: &Origin,
    line: usize,
    der: &[u8],
) -> Result<CertificateRevocationListDer<'static>, TlsConfigError> {
    webpki::OwnedCertRevocationList::from_der(der).map_err(|e| TlsConfigError::BadCrl {
        origin: origin.clone(),
        line,
        detail: format!("{e:?}"),
    })?;
    if let Ok((_, crl)) = x509_parser::parse_x509_crl(der)
        && let Some(next) = crl.next_update()
        && next.to_datetime() < OffsetDateTime::now_utc()
    {
        tracing::warn!(
            file = %origin,
            line,
            issuer = %crl.issuer(),
            "this CRL is past its nextUpdate: it is still used, but certificates revoked since it was published are not; fetch a fresh one"
        );
    }
    Ok(CertificateRevocationListDer::from(der.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        for (s, v) in [
            ("1.2", TlsVersion::V1_2),
            ("TLS1.3", TlsVersion::V1_3),
            ("TLSv1.2", TlsVersion::V1_2),
            ("tls13", TlsVersion::V1_3),
            (" 1.3 ", TlsVersion::V1_3),
        ] {
            assert_eq!(s.parse::<TlsVersion>().ok(), Some(v), "{s}");
        }
        for s in ["1.0", "1.1", "TLSv1.1", "tls1"] {
            assert!(
                matches!(
                    s.parse::<TlsVersion>(),
                    Err(TlsConfigError::WeakMinVersion { .. })
                ),
                "{s}"
            );
        }
        assert!(matches!(
            "2.0".parse::<TlsVersion>(),
            Err(TlsConfigError::UnknownMinVersion { .. })
        ));
    }

    #[test]
    fn origin_display_names_field_and_file() {
        let o = Origin::file("cert_file", Path::new("/etc/keep/vault.crt"));
        assert_eq!(o.to_string(), "`cert_file` (file /etc/keep/vault.crt)");
        let inline = Origin {
            field: "mtls.cert_pem".into(),
            source: Source::Field("mtls.cert_pem".into()),
        };
        assert_eq!(inline.to_string(), "config field `mtls.cert_pem`");
    }
}
