//! PKCS#12 export (`keep certificate p12`) for Java and Windows clients, which cannot read
//! PEM keys directly.
//!
//! The file uses PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for the key and certificates and an
//! HMAC-SHA256 MAC: readable by OpenSSL 3, Java 11.0.12+/17 `keytool`, and Windows 10 1709+.
//! The legacy RC2/3DES schemes are not offered.

use p12_keystore::{
    Certificate as P12Cert, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm,
    PrivateKey as P12Key, PrivateKeyChain,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::key::PrivateKey;

/// Iterations for the PBKDF2 that protects the file (and its MAC).
pub const ITERATIONS: u32 = 100_000;

/// A PKCS#12 file that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum P12Error {
    /// The key does not belong to the certificate.
    #[error(
        "the private key does not match the certificate; fix: pass the key that was created with this certificate"
    )]
    KeyMismatch,
    /// The PKCS#12 library refused an input.
    #[error("could not build the PKCS#12 file: {0}")]
    Build(String),
}

/// Builds a password-protected PKCS#12 file holding `key`, its certificate and `chain`
/// (intermediates, optionally the root), under the alias `friendly_name`.
pub fn export(
    cert_der: &[u8],
    chain: &[Vec<u8>],
    key: &PrivateKey,
    password: &SecretString,
    friendly_name: &str,
) -> Result<Vec<u8>, P12Error> {
    if !key.matches_certificate(cert_der) {
        return Err(P12Error::KeyMismatch);
    }
    let build = |e: p12_keystore::error::Error| P12Error::Build(e.to_string());
    let mut certs = vec![P12Cert::from_der(cert_der).map_err(build)?];
    for c in chain {
        certs.push(P12Cert::from_der(c).map_err(build)?);
    }
    let local_key_id = Sha256::digest(cert_der)[..20].to_vec();
    let p12_key = P12Key::from_der(key.pkcs8_der()).map_err(build)?;
    let entry = PrivateKeyChain::new(local_key_id, p12_key, certs);
    let mut store = KeyStore::new();
    store.add_entry(friendly_name, KeyStoreEntry::PrivateKeyChain(entry));
    store
        .writer(password.expose_secret())
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(build)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pem::Source;

    #[test]
    fn round_trips_through_the_reader_and_refuses_a_foreign_key() {
        let pki = keep_test_support::TestPki::new();
        let key = crate::key::load_private_key(
            pki.client.key_pem.as_bytes(),
            &Source::Other("k".into()),
            None,
        )
        .unwrap();
        let pw = SecretString::from("p12-pass".to_owned());
        let bytes = export(
            &pki.client.der,
            std::slice::from_ref(&pki.intermediate.der),
            &key,
            &pw,
            "agent-01",
        )
        .unwrap();
        let ks = KeyStore::from_pkcs12(
            &bytes,
            "p12-pass",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        let (alias, chain) = ks.private_key_chain().unwrap();
        assert_eq!(alias, "agent-01");
        assert_eq!(chain.certs().len(), 2);
        assert_eq!(chain.key().as_der(), key.pkcs8_der());
        assert!(
            KeyStore::from_pkcs12(&bytes, "wrong", p12_keystore::Pkcs12ImportPolicy::Relaxed)
                .is_err()
        );

        let other = crate::key::PrivateKey::generate(crate::KeyType::EcP256).unwrap();
        assert!(matches!(
            export(&pki.client.der, &[], &other, &pw, "x"),
            Err(P12Error::KeyMismatch)
        ));
    }
}
