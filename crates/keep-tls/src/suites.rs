//! The protocol versions and cipher suites keep offers, shared by the server and client configs.
//!
//! keep offers TLS 1.3, and TLS 1.2 with ECDHE key exchange and AEAD ciphers only. That is exactly the aws-lc-rs provider's default suite list, so "allowed" below
//! is that list; a configured `cipher_suites` can only narrow it, never widen it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

use crate::server::{TlsConfigError, TlsVersion};

/// A suite keep offers: the rustls suite, its rustls/IANA name, and other spellings users bring
/// from nginx/OpenSSL configs or from the TLS 1.3 RFC.
struct Allowed {
    suite: CipherSuite,
    aliases: &'static [&'static str],
}

/// Every suite keep can offer, in keep's preference order (the provider's order: AES-256 first).
const ALLOWED: &[Allowed] = &[
    Allowed {
        suite: CipherSuite::TLS13_AES_256_GCM_SHA384,
        aliases: &["TLS_AES_256_GCM_SHA384"],
    },
    Allowed {
        suite: CipherSuite::TLS13_AES_128_GCM_SHA256,
        aliases: &["TLS_AES_128_GCM_SHA256"],
    },
    Allowed {
        suite: CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        aliases: &["TLS_CHACHA20_POLY1305_SHA256"],
    },
    Allowed {
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        aliases: &["ECDHE-ECDSA-AES256-GCM-SHA384"],
    },
    Allowed {
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        aliases: &["ECDHE-ECDSA-AES128-GCM-SHA256"],
    },
    Allowed {
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        aliases: &["ECDHE-ECDSA-CHACHA20-POLY1305"],
    },
    Allowed {
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        aliases: &["ECDHE-RSA-AES256-GCM-SHA384"],
    },
    Allowed {
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        aliases: &["ECDHE-RSA-AES128-GCM-SHA256"],
    },
    Allowed {
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        aliases: &["ECDHE-RSA-CHACHA20-POLY1305"],
    },
];

static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS13_AND_12: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The protocol versions to enable for a minimum version.
pub(crate) fn versions(min: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    match min {
        TlsVersion::V1_2 => TLS13_AND_12,
        TlsVersion::V1_3 => TLS13_ONLY,
    }
}

/// The rustls name of a suite (`TLS13_AES_256_GCM_SHA384`), or its code point in hex for suites
/// rustls has no name for (what a scanner might offer).
pub(crate) fn suite_name(suite: CipherSuite) -> String {
    suite
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("0x{:04x}", u16::from(suite)))
}

/// The names `cipher_suites` accepts, for error messages.
pub(crate) fn allowed_names() -> String {
    ALLOWED
        .iter()
        .map(|a| suite_name(a.suite))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The aws-lc-rs provider narrowed to the configured suites (all allowed ones when `names` is
/// `None`) and to the versions `min` enables, in the configured order.
pub(crate) fn provider(
    names: Option<&[String]>,
    min: TlsVersion,
) -> Result<Arc<CryptoProvider>, TlsConfigError> {
    let base = rustls::crypto::aws_lc_rs::default_provider();
    let wanted: Vec<CipherSuite> = match names {
        None => ALLOWED.iter().map(|a| a.suite).collect(),
        Some([]) => return Err(TlsConfigError::EmptyCipherSuites),
        Some(names) => names
            .iter()
            .map(|n| lookup(n))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut suites: Vec<SupportedCipherSuite> = Vec::new();
    for want in wanted {
        let Some(found) = base.cipher_suites.iter().find(|s| s.suite() == want) else {
            // Every ALLOWED suite is in the aws-lc-rs default list (non-FIPS build); if a future
            // rustls drops one, say so rather than silently offering less.
            return Err(TlsConfigError::Rustls {
                what: "cipher suite selection",
                detail: format!(
                    "{} is not available in this build's crypto provider",
                    suite_name(want)
                ),
            });
        };
        let is_tls13 = found.tls13().is_some();
        if min == TlsVersion::V1_3 && !is_tls13 {
            // A TLS 1.2 suite under min_version 1.3 can never be used; drop it quietly so one
            // suite list works for both settings.
            continue;
        }
        if !suites.iter().any(|s| s.suite() == want) {
            suites.push(*found);
        }
    }
    if min == TlsVersion::V1_3 && suites.is_empty() {
        return Err(TlsConfigError::NoTls13Suite);
    }
    Ok(Arc::new(CryptoProvider {
        cipher_suites: suites,
        ..base
    }))
}

/// Finds an allowed suite by any of its spellings, or says why the name is refused.
fn lookup(name: &str) -> Result<CipherSuite, TlsConfigError> {
    let wanted = name.trim();
    for allowed in ALLOWED {
        let canonical = allowed.suite.as_str().unwrap_or_default();
        if canonical.eq_ignore_ascii_case(wanted)
            || allowed
                .aliases
                .iter()
                .any(|a| a.eq_ignore_ascii_case(wanted))
        {
            return Ok(allowed.suite);
        }
    }
    match weakness(wanted) {
        Some(why) => Err(TlsConfigError::WeakCipherSuite {
            name: wanted.to_owned(),
            why,
        }),
        None => Err(TlsConfigError::UnknownCipherSuite {
            name: wanted.to_owned(),
            allowed: allowed_names(),
        }),
    }
}

/// Why a suite name that is not allowed is weak, when the name says so; `None` for names that
/// are merely unknown (typos, CCM suites rustls does not implement).
///
/// This is a heuristic over IANA (`TLS_RSA_WITH_AES_128_CBC_SHA`), rustls, Java (`SSL_…`) and
/// OpenSSL (`ECDHE-ECDSA-AES128-SHA`) spellings: its only job is to turn "unknown name" into
/// the more useful "refused because …" for the names people copy from old configs.
pub(crate) fn weakness(name: &str) -> Option<&'static str> {
    let n = name.trim().to_ascii_uppercase();
    let broken = [
        "NULL", "EXPORT", "EXP-", "RC4", "RC2", "DES", "MD5", "ANON", "ADH-", "AECDH-",
    ];
    if broken.iter().any(|b| n.contains(b)) || n.starts_with("SSL_") {
        return Some("it uses a broken cipher, no encryption or no authentication");
    }
    if n.contains("CBC") {
        return Some(
            "it uses CBC mode (MAC-then-encrypt, open to padding-oracle attacks such as Lucky13); keep offers AEAD ciphers only",
        );
    }
    let openssl_style = n.contains('-') && !n.contains('_');
    if openssl_style {
        let aead = ["GCM", "CHACHA20", "CCM"].iter().any(|a| n.contains(a));
        if !aead {
            // OpenSSL omits the mode for CBC suites: `ECDHE-ECDSA-AES128-SHA` is CBC.
            return Some(
                "it is a CBC suite (MAC-then-encrypt, open to padding-oracle attacks such as Lucky13); keep offers AEAD ciphers only",
            );
        }
        if !n.starts_with("ECDHE-") {
            return Some(NO_ECDHE);
        }
        return None;
    }
    let non_ecdhe = [
        "TLS_RSA_",
        "TLS_DHE_",
        "TLS_DH_",
        "TLS_ECDH_",
        "TLS_PSK_",
        "TLS_SRP_",
        "TLS_KRB5_",
        "TLS_ECDHE_PSK_",
    ];
    if non_ecdhe.iter().any(|p| n.starts_with(p)) {
        return Some(NO_ECDHE);
    }
    None
}

const NO_ECDHE: &str = "it has no ECDHE key exchange (static RSA or ECDH keys give no forward secrecy; finite-field DHE is slow and not offered)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allowed_suite_is_in_the_provider() {
        assert!(provider(None, TlsVersion::V1_2).is_ok());
        assert_eq!(
            provider(None, TlsVersion::V1_2)
                .map(|p| p.cipher_suites.len())
                .ok(),
            Some(ALLOWED.len())
        );
    }

    #[test]
    fn spellings_resolve_to_the_same_suite() {
        for name in [
            "TLS13_AES_256_GCM_SHA384",
            "tls_aes_256_gcm_sha384",
            " TLS_AES_256_GCM_SHA384 ",
        ] {
            assert_eq!(
                lookup(name).ok(),
                Some(CipherSuite::TLS13_AES_256_GCM_SHA384),
                "{name}"
            );
        }
        assert_eq!(
            lookup("ECDHE-ECDSA-AES128-GCM-SHA256").ok(),
            Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        );
    }

    #[test]
    fn weak_names_are_recognised() {
        let weak = [
            "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
            "ECDHE-ECDSA-AES128-SHA",
            "AES128-SHA",
            "AES128-GCM-SHA256",
            "DHE-RSA-AES128-GCM-SHA256",
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_RSA_WITH_RC4_128_SHA",
            "SSL_RSA_WITH_3DES_EDE_CBC_SHA",
            "DES-CBC3-SHA",
            "TLS_ECDH_anon_WITH_AES_128_CBC_SHA",
        ];
        for name in weak {
            assert!(weakness(name).is_some(), "{name} should be weak");
        }
        for name in ["TLS13_AES_128_CCM_SHA256", "TLS_AES_512_GCM", "bogus"] {
            assert!(weakness(name).is_none(), "{name} is unknown, not weak");
        }
    }

    #[test]
    fn min_13_drops_tls12_suites_and_needs_a_tls13_one() {
        let names = vec![
            "TLS13_AES_128_GCM_SHA256".to_owned(),
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned(),
        ];
        let p = provider(Some(&names), TlsVersion::V1_3).ok();
        assert_eq!(p.map(|p| p.cipher_suites.len()), Some(1));
        let only12 = vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_owned()];
        assert!(matches!(
            provider(Some(&only12), TlsVersion::V1_3),
            Err(TlsConfigError::NoTls13Suite)
        ));
    }
}
