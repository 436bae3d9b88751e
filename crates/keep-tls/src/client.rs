//! The rustls client config the agent and the CLI use to talk to the vault.
//!
//! Same policy as the server: TLS 1.3 and TLS 1.2 ECDHE+AEAD only (narrowable by
//! `min_version`/`cipher_suites`), the aws-lc-rs provider passed explicitly. The server is
//! trusted through the configured CA bundle **only**, never the system roots: a vault
//! certificate from a public CA the operator never chose must not be accepted. The client
//! identity (certificate chain and key, possibly encrypted) is optional, because `inspect` and
//! the doctor also talk to servers without one.
//!
//! Material comes as [`PemInput`]: from a file or inline PEM from a config field (the agent's
//! `cert_pem:` style), read with keep-pki's forgiving PEM reader, so the errors name the field,
//! file and line.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use keep_pki::pem::Source;
use rustls::ClientConfig;
use rustls::pki_types::PrivateKeyDer;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::server::{
    Origin, TlsConfigError, TlsVersion, check_key_matches, load_ca_bundle, load_chain, load_key,
    read_file,
};
use crate::suites;

/// PEM text and where it came from.
pub struct PemInput {
    origin: Origin,
    bytes: Zeroizing<Vec<u8>>,
}

impl PemInput {
    /// Reads the file `path`, named by config field `field` in errors.
    pub fn file(field: &str, path: &Path) -> Result<Self, TlsConfigError> {
        let origin = Origin::file(field, path);
        let bytes = read_file(&origin)?;
        Ok(PemInput { origin, bytes })
    }

    /// Inline PEM from config field `field` (e.g. `mtls.cert_pem`).
    pub fn inline(field: &str, pem: impl Into<Vec<u8>>) -> Self {
        PemInput {
            origin: Origin {
                field: field.to_owned(),
                source: Source::Field(field.to_owned()),
            },
            bytes: Zeroizing::new(pem.into()),
        }
    }

    /// Where the PEM came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

// By hand: the bytes may be a private key.
impl fmt::Debug for PemInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemInput")
            .field("origin", &self.origin)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The client's own certificate and key, for mutual TLS.
#[derive(Debug)]
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub cert: PemInput,
    /// The private key (PKCS#8, encrypted PKCS#8, SEC1 or PKCS#1).
    pub key: PemInput,
    /// The key's password, when it is encrypted.
    pub key_password: Option<SecretString>,
}

/// What [`build`] needs.
#[derive(Debug)]
pub struct ClientSettings {
    /// The CA certificates the server's chain must lead to (CA certificates only; no system
    /// roots are added).
    pub ca: PemInput,
    /// The client certificate and key, for mutual TLS.
    pub identity: Option<ClientIdentity>,
    /// The lowest TLS version to offer.
    pub min_version: TlsVersion,
    /// Cipher suites to offer (same names as the server's `cipher_suites`); `None` for all that
    /// keep allows.
    pub cipher_suites: Option<Vec<String>>,
    /// ALPN protocols to offer, most preferred first (e.g. `b"http/1.1"`); empty for none.
    pub alpn: Vec<Vec<u8>>,
}

impl ClientSettings {
    /// Settings that trust `ca` only, with keep's default versions and suites, no client
    /// certificate and no ALPN.
    pub fn new(ca: PemInput) -> Self {
        ClientSettings {
            ca,
            identity: None,
            min_version: TlsVersion::default(),
            cipher_suites: None,
            alpn: Vec::new(),
        }
    }

    /// The same settings presenting `identity`.
    pub fn with_identity(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(identity);
        self
    }
}

/// Builds the client config.
pub fn build(settings: &ClientSettings) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = suites::provider(settings.cipher_suites.as_deref(), settings.min_version)?;
    let roots = load_ca_bundle(&settings.ca.origin, &settings.ca.bytes)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(suites::versions(settings.min_version))
        .map_err(|e| TlsConfigError::Rustls {
            what: "TLS version selection",
            detail: e.to_string(),
        })?
        .with_root_certificates(roots);
    let mut config = match &settings.identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = load_chain(&id.cert.origin, &id.cert.bytes)?;
            let key = load_key(
                &id.key.origin,
                &id.key.bytes,
                id.key_password.as_ref(),
                "key_password_file",
            )?;
            check_key_matches(&id.cert.origin, &chain, &id.key.origin, &key)?;
            let key_der = PrivateKeyDer::Pkcs8(key.pkcs8_der().to_vec().into());
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsConfigError::Rustls {
                    what: "client certificate and key",
                    detail: e.to_string(),
                })?
        }
    };
    config.alpn_protocols = settings.alpn.clone();
    Ok(Arc::new(config))
}
