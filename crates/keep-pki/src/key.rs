//! Private keys: generation, reading (PKCS#1, SEC1, PKCS#8, encrypted PKCS#8) and writing
//! (encrypted PKCS#8 by default).
//!
//! Internally every key is held as plaintext PKCS#8 **v1** DER in a zeroizing buffer, plus the
//! rcgen key pair that signs with it. v1 matters: rcgen and aws-lc-rs write Ed25519 keys as
//! PKCS#8 v2 (RFC 5958, with the public key), which OpenSSL 3.0 cannot read. We drop the
//! optional public key so every key keep writes loads in OpenSSL, Go, Java and rustls alike.

use std::fmt;

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use pkcs8::{EncryptedPrivateKeyInfoRef, LineEnding, PrivateKeyInfoRef};
use rcgen::{KeyPair, PublicKeyData};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::pem::{self, PemBlock, Source};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The kinds of key keep can create and sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (the default: fast, small, understood by every TLS stack).
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// Ed25519 (fast, but Java before 15 and browsers cannot use it in TLS).
    Ed25519,
    /// RSA with the given modulus size in bits.
    Rsa {
        /// Modulus size: 2048, 3072 or 4096 when keep makes the key.
        bits: u32,
    },
}

impl KeyType {
    /// The key type keep would make for a key like `public` (a certificate's subject key, as
    /// [`crate::inspect`] describes it), so a renewal keeps the algorithm; `None` for keys keep
    /// cannot make (P-521, DSA, odd RSA sizes).
    pub fn like(public: &crate::inspect::PublicKeyInfo) -> Option<KeyType> {
        match (public.algorithm.as_str(), public.curve.as_deref()) {
            ("ECDSA", Some("P-256")) => Some(KeyType::EcP256),
            ("ECDSA", Some("P-384")) => Some(KeyType::EcP384),
            ("Ed25519", _) => Some(KeyType::Ed25519),
            ("RSA", _) if matches!(public.bits, 2048 | 3072 | 4096) => {
                Some(KeyType::Rsa { bits: public.bits })
            }
            _ => None,
        }
    }

    /// Resolves step-style `--kty/--curve/--size` flags into a key type.
    ///
    /// `kty` is `EC` (default), `OKP` or `RSA`; `curve` is `P-256` (default for EC), `P-384`
    /// or `Ed25519` (default for OKP); `size` is 2048 (default for RSA), 3072 or 4096.
    pub fn from_flags(
        kty: Option<&str>,
        curve: Option<&str>,
        size: Option<u32>,
    ) -> Result<KeyType, KeyError> {
        let kty = kty.map(str::to_ascii_uppercase);
        let curve_norm = curve.map(|c| c.to_ascii_uppercase().replace('_', "-"));
        let bad = |msg: String| Err(KeyError::BadKeyFlags(msg));
        match kty.as_deref() {
            None | Some("EC") => {
                if size.is_some() {
                    return bad("--size applies to --kty RSA only".into());
                }
                match curve_norm.as_deref() {
                    None | Some("P-256") | Some("P256") | Some("PRIME256V1") => Ok(KeyType::EcP256),
                    Some("P-384") | Some("P384") | Some("SECP384R1") => Ok(KeyType::EcP384),
                    Some("ED25519") if kty.is_none() => Ok(KeyType::Ed25519),
                    Some(_) => bad(format!(
                        "curve {:?} is not supported for EC keys; use P-256 or P-384 \
                         (or --kty OKP --curve Ed25519)",
                        curve.unwrap_or_default()
                    )),
                }
            }
            Some("OKP") => {
                if size.is_some() {
                    return bad("--size applies to --kty RSA only".into());
                }
                match curve_norm.as_deref() {
                    None | Some("ED25519") => Ok(KeyType::Ed25519),
                    Some(_) => bad(format!(
                        "curve {:?} is not supported for OKP keys; use Ed25519",
                        curve.unwrap_or_default()
                    )),
                }
            }
            Some("RSA") => {
                if curve.is_some() {
                    return bad("--curve does not apply to RSA keys; use --size".into());
                }
                match size.unwrap_or(2048) {
                    bits @ (2048 | 3072 | 4096) => Ok(KeyType::Rsa { bits }),
                    other => bad(format!(
                        "RSA size {other} is not supported; use 2048, 3072 or 4096"
                    )),
                }
            }
            Some(other) => bad(format!(
                "key type {other:?} is not supported; use EC, OKP or RSA"
            )),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::EcP256 => f.write_str("EC P-256"),
            KeyType::EcP384 => f.write_str("EC P-384"),
            KeyType::Ed25519 => f.write_str("Ed25519"),
            KeyType::Rsa { bits } => write!(f, "RSA {bits}"),
        }
    }
}

/// Errors about keys. Messages name the source and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The `--kty/--curve/--size` combination is not one keep supports.
    #[error("{0}")]
    BadKeyFlags(String),
    /// The PEM layer rejected the input.
    #[error(transparent)]
    Pem(#[from] pem::PemError),
    /// The input holds PEM, but no private key block.
    #[error(
        "{origin}: no private key found (saw {found}); fix: pass the key file, not the certificate"
    )]
    NoKey {
        /// Where we looked.
        origin: Source,
        /// The labels we saw instead.
        found: String,
    },
    /// The key is encrypted and no password was given.
    #[error("{origin}: the private key is encrypted and needs a password")]
    PasswordRequired {
        /// The key's source.
        origin: Source,
    },
    /// The password did not decrypt the key.
    #[error(
        "{origin}: could not decrypt the private key: wrong password, or an encryption scheme keep does not support ({detail}); fix: check the password file (a trailing newline is ignored), or re-encrypt with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
    )]
    Decrypt {
        /// The key's source.
        origin: Source,
        /// What the PKCS#5 layer said (never the password).
        detail: String,
    },
    /// Legacy OpenSSL encryption (`Proc-Type: 4,ENCRYPTED` + `DEK-Info`).
    #[error(
        "{origin}, line {line}: this key uses legacy OpenSSL PEM encryption (DEK-Info), which keep does not read; fix: convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW`"
    )]
    LegacyEncryption {
        /// The key's source.
        origin: Source,
        /// Line of the BEGIN marker.
        line: usize,
    },
    /// The DER inside the PEM is not a key keep understands.
    #[error("{origin}, line {line}: {problem}")]
    Invalid {
        /// The key's source.
        origin: Source,
        /// Line of the BEGIN marker.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// Key generation or encryption failed inside the crypto library.
    #[error("key operation failed: {0}")]
    Crypto(String),
}

/// A private key held in memory, zeroized on drop. `Debug` never prints key material.
pub struct PrivateKey {
    /// Plaintext PKCS#8 v1 DER.
    pkcs8: Zeroizing<Vec<u8>>,
    key_type: KeyType,
    pair: KeyPair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("type", &self.key_type)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl PrivateKey {
    /// Generates a fresh key of the given type.
    pub fn generate(key_type: KeyType) -> Result<PrivateKey, KeyError> {
        let pair = match key_type {
            KeyType::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeyType::Rsa { bits } => {
                let size = match bits {
                    2048 => rcgen::RsaKeySize::_2048,
                    3072 => rcgen::RsaKeySize::_3072,
                    4096 => rcgen::RsaKeySize::_4096,
                    other => {
                        return Err(KeyError::BadKeyFlags(format!(
                            "RSA size {other} is not supported; use 2048, 3072 or 4096"
                        )));
                    }
                };
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
            }
        }
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
        let der = Zeroizing::new(pair.serialize_der());
        Self::from_pkcs8_der(&der, &Source::Other("generated key".into()), 0)
    }

    /// Builds a key from plaintext PKCS#8 (v1 or v2) DER.
    pub fn from_pkcs8_der(
        der: &[u8],
        source: &Source,
        line: usize,
    ) -> Result<PrivateKey, KeyError> {
        let invalid = |problem: String| KeyError::Invalid {
            origin: source.clone(),
            line,
            problem,
        };
        let info = PrivateKeyInfoRef::try_from(der)
            .map_err(|e| invalid(format!("not a valid PKCS#8 private key ({e})")))?;
        let oid = info.algorithm.oid;
        let alg = if oid == OID_EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| invalid("EC key without a named curve".into()))?;
            if curve == OID_P256 {
                &rcgen::PKCS_ECDSA_P256_SHA256
            } else if curve == OID_P384 {
                &rcgen::PKCS_ECDSA_P384_SHA384
            } else if curve == OID_P521 {
                &rcgen::PKCS_ECDSA_P521_SHA512
            } else {
                return Err(invalid(format!(
                    "EC curve {curve} is not supported; use P-256 or P-384"
                )));
            }
        } else if oid == OID_ED25519 {
            &rcgen::PKCS_ED25519
        } else if oid == OID_RSA {
            &rcgen::PKCS_RSA_SHA256
        } else {
            return Err(invalid(format!(
                "key algorithm {oid} is not supported (keep reads EC, Ed25519 and RSA keys)"
            )));
        };
        // Normalise to v1: drop the optional public key (see the module docs).
        let v1 = if info.public_key.is_some() {
            let mut v1 = info.clone();
            v1.public_key = None;
            Zeroizing::new(
                v1.to_der()
                    .map_err(|e| invalid(format!("cannot re-encode key ({e})")))?,
            )
        } else {
            Zeroizing::new(der.to_vec())
        };
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(&v1.as_slice().into(), alg)
            .map_err(|e| invalid(format!("the key does not load ({e})")))?;
        let key_type = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeyType::EcP256
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            KeyType::EcP384
        } else if alg == &rcgen::PKCS_ED25519 {
            KeyType::Ed25519
        } else if alg == &rcgen::PKCS_ECDSA_P521_SHA512 {
            // P-521 keys from elsewhere can sign, but keep never makes them.
            KeyType::EcP384
        } else {
            KeyType::Rsa {
                bits: rsa_bits(&pair.subject_public_key_info()).unwrap_or(0),
            }
        };
        Ok(PrivateKey {
            pkcs8: v1,
            key_type,
            pair,
        })
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The rcgen key pair, for signing certificates and CSRs.
    pub fn key_pair(&self) -> &KeyPair {
        &self.pair
    }

    /// Plaintext PKCS#8 v1 DER (handle with care: this is the secret).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// DER of the SubjectPublicKeyInfo, to compare with a certificate's public key.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// Plaintext `PRIVATE KEY` PEM. Only for `--no-password --insecure`.
    pub fn to_pem_plaintext(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode("PRIVATE KEY", &self.pkcs8))
    }

    /// `ENCRYPTED PRIVATE KEY` PEM: PKCS#8 PBES2 with scrypt (N=2^14, r=8, p=1) and
    /// AES-256-CBC, which OpenSSL (`openssl pkey -passin`) reads.
    pub fn to_pem_encrypted(&self, password: &SecretString) -> Result<String, KeyError> {
        let info = PrivateKeyInfoRef::try_from(self.pkcs8.as_slice())
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        let doc = info
            .encrypt(password.expose_secret().as_bytes())
            .map_err(|e| KeyError::Crypto(format!("encrypting the key failed: {e}")))?;
        let pem = doc
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(pem.to_string())
    }

    /// Whether this key's public half is the one in `cert_der`.
    pub fn matches_certificate(&self, cert_der: &[u8]) -> bool {
        match x509_parser::parse_x509_certificate(cert_der) {
            Ok((_, cert)) => cert.tbs_certificate.subject_pki.raw == self.public_key_spki_der(),
            Err(_) => false,
        }
    }
}

/// RSA modulus size from an SPKI.
pub(crate) fn rsa_bits(spki_der: &[u8]) -> Option<u32> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    match spki.parsed().ok()? {
        x509_parser::public_key::PublicKey::RSA(rsa) => u32::try_from(rsa.key_size()).ok(),
        _ => None,
    }
}

/// Labels that hold private keys, in the order we look for them.
const KEY_LABELS: [&str; 4] = [
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
];

/// Whether PEM input holds an encrypted private key (so the caller knows to ask for a password
/// before calling [`load_private_key`]).
pub fn is_encrypted(input: &[u8], source: &Source) -> Result<bool, KeyError> {
    let blocks = pem::parse(input, source)?;
    let block = find_key_block(&blocks, source)?;
    Ok(block.label == "ENCRYPTED PRIVATE KEY" || has_legacy_encryption(block))
}

fn has_legacy_encryption(block: &PemBlock) -> bool {
    block
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Proc-Type") && v.contains("ENCRYPTED"))
}

fn find_key_block<'a>(blocks: &'a [PemBlock], source: &Source) -> Result<&'a PemBlock, KeyError> {
    blocks
        .iter()
        .find(|b| KEY_LABELS.contains(&b.label.as_str()))
        .ok_or_else(|| KeyError::NoKey {
            origin: source.clone(),
            found: blocks
                .iter()
                .map(|b| b.label.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Reads the first private key in PEM input: PKCS#8, encrypted PKCS#8 (PBES2 with scrypt or
/// PBKDF2-SHA256, AES-CBC), SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
/// Other blocks (certificates, `EC PARAMETERS`) are skipped, so a bundle file works too.
pub fn load_private_key(
    input: &[u8],
    source: &Source,
    password: Option<&SecretString>,
) -> Result<PrivateKey, KeyError> {
    let blocks = pem::parse(input, source)?;
    let block = find_key_block(&blocks, source)?;
    let line = block.line;
    if has_legacy_encryption(block) {
        return Err(KeyError::LegacyEncryption {
            origin: source.clone(),
            line,
        });
    }
    let invalid = |problem: String| KeyError::Invalid {
        origin: source.clone(),
        line,
        problem,
    };
    match block.label.as_str() {
        "PRIVATE KEY" => PrivateKey::from_pkcs8_der(&block.der, source, line),
        "ENCRYPTED PRIVATE KEY" => {
            let Some(password) = password else {
                return Err(KeyError::PasswordRequired {
                    origin: source.clone(),
                });
            };
            let enc = EncryptedPrivateKeyInfoRef::try_from(block.der.as_slice())
                .map_err(|e| invalid(format!("not a valid encrypted PKCS#8 key ({e})")))?;
            let doc = enc
                .decrypt(password.expose_secret().as_bytes())
                .map_err(|e| KeyError::Decrypt {
                    origin: source.clone(),
                    detail: e.to_string(),
                })?;
            let plain = Zeroizing::new(doc.as_bytes().to_vec());
            PrivateKey::from_pkcs8_der(&plain, source, line)
        }
        "EC PRIVATE KEY" => {
            let ec = sec1::EcPrivateKey::from_der(&block.der)
                .map_err(|e| invalid(format!("not a valid SEC1 EC key ({e})")))?;
            let curve = ec
                .parameters
                .and_then(|p| p.named_curve())
                .ok_or_else(|| invalid("SEC1 EC key without a named curve".into()))?;
            let pkcs8 = wrap_pkcs8(OID_EC_PUBLIC_KEY, Some(curve), &block.der)
                .map_err(|e| invalid(format!("cannot convert SEC1 key ({e})")))?;
            PrivateKey::from_pkcs8_der(&pkcs8, source, line)
        }
        "RSA PRIVATE KEY" => {
            let pkcs8 = wrap_pkcs8(OID_RSA, None, &block.der)
                .map_err(|e| invalid(format!("cannot convert PKCS#1 key ({e})")))?;
            PrivateKey::from_pkcs8_der(&pkcs8, source, line)
        }
        other => Err(invalid(format!("unexpected block {other}"))),
    }
}

/// Wraps a SEC1 or PKCS#1 key body in a PKCS#8 v1 structure.
fn wrap_pkcs8(
    alg: ObjectIdentifier,
    curve: Option<ObjectIdentifier>,
    key: &[u8],
) -> Result<Zeroizing<Vec<u8>>, der::Error> {
    let params = match &curve {
        Some(c) => AnyRef::from(c),
        // rsaEncryption carries an explicit NULL parameter.
        None => AnyRef::NULL,
    };
    let info = PrivateKeyInfoRef::new(
        pkcs8::spki::AlgorithmIdentifier {
            oid: alg,
            parameters: Some(params),
        },
        OctetStringRef::new(key)?,
    );
    Ok(Zeroizing::new(info.to_der()?))
}

/// Reads a password file the way step does: the whole file, minus trailing CR/LF.
pub fn read_password_file(path: &std::path::Path) -> Result<SecretString, std::io::Error> {
    let raw = Zeroizing::new(std::fs::read(path)?);
    let mut end = raw.len();
    while end > 0 && (raw[end - 1] == b'\n' || raw[end - 1] == b'\r') {
        end -= 1;
    }
    let text = std::str::from_utf8(&raw[..end]).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "password file is not UTF-8 text",
        )
    })?;
    if text.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "password file is empty",
        ));
    }
    Ok(SecretString::from(text.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pw() -> SecretString {
        SecretString::from("correct horse battery staple".to_owned())
    }

    #[test]
    fn key_flags_resolve_like_step() {
        assert_eq!(
            KeyType::from_flags(None, None, None).unwrap(),
            KeyType::EcP256
        );
        assert_eq!(
            KeyType::from_flags(Some("EC"), Some("P-384"), None).unwrap(),
            KeyType::EcP384
        );
        assert_eq!(
            KeyType::from_flags(Some("OKP"), Some("Ed25519"), None).unwrap(),
            KeyType::Ed25519
        );
        assert_eq!(
            KeyType::from_flags(Some("RSA"), None, Some(3072)).unwrap(),
            KeyType::Rsa { bits: 3072 }
        );
        assert!(KeyType::from_flags(Some("RSA"), None, Some(1024)).is_err());
        assert!(KeyType::from_flags(Some("EC"), Some("P-521"), None).is_err());
        assert!(KeyType::from_flags(Some("DSA"), None, None).is_err());
    }

    #[test]
    fn encrypted_round_trip_for_every_key_type() {
        for kt in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Ed25519,
            KeyType::Rsa { bits: 2048 },
        ] {
            let key = PrivateKey::generate(kt).unwrap();
            assert_eq!(key.key_type(), kt);
            let pem = key.to_pem_encrypted(&pw()).unwrap();
            assert!(pem.starts_with("-----BEGIN\x20ENCRYPTED PRIVATE KEY-----\n"));
            let src = Source::Other("test".into());
            assert!(is_encrypted(pem.as_bytes(), &src).unwrap());
            assert!(matches!(
                load_private_key(pem.as_bytes(), &src, None),
                Err(KeyError::PasswordRequired { .. })
            ));
            let wrong = SecretString::from("nope".to_owned());
            let err = load_private_key(pem.as_bytes(), &src, Some(&wrong)).unwrap_err();
            assert!(matches!(err, KeyError::Decrypt { .. }), "{err}");
            assert!(!err.to_string().contains("nope"));
            let back = load_private_key(pem.as_bytes(), &src, Some(&pw())).unwrap();
            assert_eq!(back.pkcs8_der(), key.pkcs8_der());
            assert_eq!(back.key_type(), kt);
        }
    }

    #[test]
    fn ed25519_is_written_as_pkcs8_v1() {
        let key = PrivateKey::generate(KeyType::Ed25519).unwrap();
        let info = PrivateKeyInfoRef::try_from(key.pkcs8_der()).unwrap();
        assert!(info.public_key.is_none());
        assert_eq!(info.version(), pkcs8::Version::V1);
    }

    #[test]
    fn debug_never_prints_key_material() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let dbg = format!("{key:?}");
        assert!(dbg.contains("REDACTED"));
        assert!(!dbg.contains("MII"));
    }

    #[test]
    fn legacy_dek_info_is_refused_with_fix() {
        let pem = "-----BEGIN\x20RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err =
            load_private_key(pem.as_bytes(), &Source::Other("old.key".into()), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("old.key") && msg.contains("line 1"), "{msg}");
        assert!(msg.contains("openssl pkcs8 -topk8"), "{msg}");
    }

    #[test]
    fn certificate_given_as_key_names_what_was_seen() {
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap();
        let err = load_private_key(cert.pem().as_bytes(), &Source::Other("x.crt".into()), None)
            .unwrap_err();
        assert!(err.to_string().contains("saw CERTIFICATE"), "{err}");
    }
}
