//! Chain verification with rustls-webpki — the same path validation the keep server and agent
//! apply during the TLS handshake, so `keep certificate verify` predicts what will happen there.

use std::fmt;
use std::time::Duration as StdDuration;

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use webpki::{
    CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::Purpose;

/// What to verify a certificate against.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Trust anchors (DER). Usually the root CA.
    pub roots: Vec<Vec<u8>>,
    /// Intermediates that may complete the path (DER), e.g. from a bundle.
    pub intermediates: Vec<Vec<u8>>,
    /// Host name or IP the certificate must be valid for (`--host`).
    pub host: Option<String>,
    /// Required purpose; `None` accepts a cert valid for either.
    pub purpose: Option<Purpose>,
    /// CRLs (DER) to check the leaf against.
    pub crls: Vec<Vec<u8>>,
    /// Verification time.
    pub now: OffsetDateTime,
}

/// Why a certificate does not verify, in the words an operator needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No path to any of the roots.
    #[error(
        "the certificate does not chain to the given roots (unknown issuer); fix: pass the CA that signed it with --roots, and include the intermediate in the file or with --intermediates"
    )]
    UnknownIssuer,
    /// Expired.
    #[error("the certificate expired at {not_after}; fix: renew it")]
    Expired {
        /// RFC 3339.
        not_after: String,
    },
    /// Not yet valid.
    #[error(
        "the certificate is not valid until {not_before}; fix: check the clock of this host and of the issuer"
    )]
    NotYetValid {
        /// RFC 3339.
        not_before: String,
    },
    /// Wrong extended key usage.
    #[error(
        "the certificate (or a CA above it) is not allowed for {purpose} authentication (extendedKeyUsage lacks {eku}); fix: reissue it with --eku {purpose} or --eku both"
    )]
    WrongPurpose {
        /// The purpose asked for.
        purpose: Purpose,
        /// The EKU name missing.
        eku: &'static str,
    },
    /// Name mismatch.
    #[error("the certificate is not valid for {host:?}; fix: reissue it with --san {host}")]
    NameMismatch {
        /// The host asked for.
        host: String,
    },
    /// Listed in a CRL.
    #[error("the certificate has been revoked (listed in the CRL)")]
    Revoked,
    /// A signature in the chain does not verify.
    #[error(
        "a signature in the chain does not verify; the certificate was altered or signed by a different key with the same name"
    )]
    BadSignature,
    /// A CA in the path may not sign (pathlen, CA flag, key usage).
    #[error("the chain is not valid: {0}")]
    BadChain(String),
    /// An input could not be used.
    #[error("{0}")]
    Input(String),
}

/// What verified: the purposes the certificate is valid for and the path length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Purposes that verified.
    pub purposes: Vec<Purpose>,
    /// Number of certificates in the path, anchor included.
    pub path_len: usize,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p: Vec<String> = self.purposes.iter().map(|p| p.to_string()).collect();
        write!(f, "valid for {} authentication", p.join(" and "))
    }
}

fn unix_time(t: OffsetDateTime) -> UnixTime {
    let secs = u64::try_from(t.unix_timestamp()).unwrap_or(0);
    UnixTime::since_unix_epoch(StdDuration::from_secs(secs))
}

fn rfc3339_unix(t: UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs)
        .map(crate::duration::rfc3339)
        .unwrap_or_else(|_| format!("{secs} seconds after 1970"))
}

fn map_error(e: webpki::Error, purpose: Purpose) -> VerifyError {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => VerifyError::UnknownIssuer,
        E::CertExpired { not_after, .. } => VerifyError::Expired {
            not_after: rfc3339_unix(not_after),
        },
        E::CertNotValidYet { not_before, .. } => VerifyError::NotYetValid {
            not_before: rfc3339_unix(not_before),
        },
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => VerifyError::WrongPurpose {
            purpose,
            eku: match purpose {
                Purpose::Client => "clientAuth",
                Purpose::Server => "serverAuth",
            },
        },
        E::CertRevoked => VerifyError::Revoked,
        E::InvalidSignatureForPublicKey => VerifyError::BadSignature,
        E::CaUsedAsEndEntity => {
            VerifyError::BadChain("a CA certificate was given where a leaf is expected".into())
        }
        E::PathLenConstraintViolated => VerifyError::BadChain(
            "a CA's path length constraint forbids this chain (an intermediate signed by a \
             pathlen-0 CA?)"
                .into(),
        ),
        E::EndEntityUsedAsCa => {
            VerifyError::BadChain("a certificate that is not a CA appears as an issuer".into())
        }
        other => VerifyError::BadChain(format!("{other:?}")),
    }
}

/// Verifies `leaf_der` against the options. With no purpose, it passes when the cert is valid
/// for client or server authentication, and reports which.
pub fn verify(leaf_der: &[u8], opts: &VerifyOptions) -> Result<Verified, VerifyError> {
    if opts.roots.is_empty() {
        return Err(VerifyError::Input(
            "no roots given; pass the CA certificate with --roots".into(),
        ));
    }
    let root_ders: Vec<CertificateDer<'_>> = opts
        .roots
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors = root_ders
        .iter()
        .map(|d| {
            webpki::anchor_from_trusted_cert(d)
                .map_err(|e| VerifyError::Input(format!("a root does not parse ({e:?})")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let intermediates: Vec<CertificateDer<'_>> = opts
        .intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let leaf = CertificateDer::from(leaf_der);
    let ee = EndEntityCert::try_from(&leaf)
        .map_err(|e| VerifyError::Input(format!("the certificate does not parse ({e:?})")))?;
    let crls = opts
        .crls
        .iter()
        .map(|d| {
            OwnedCertRevocationList::from_der(d)
                .map(CertRevocationList::from)
                .map_err(|e| VerifyError::Input(format!("a CRL does not parse ({e:?})")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
    let revocation = if crl_refs.is_empty() {
        None
    } else {
        RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::EndEntity)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .build()
        })
    };
    let time = unix_time(opts.now);
    let algs = webpki::ALL_VERIFICATION_ALGS;
    let purposes: Vec<Purpose> = match opts.purpose {
        Some(p) => vec![p],
        None => vec![Purpose::Server, Purpose::Client],
    };
    let mut ok = Vec::new();
    let mut path_len = 0;
    let mut errors = Vec::new();
    for p in purposes {
        let usage = match p {
            Purpose::Server => KeyUsage::server_auth(),
            Purpose::Client => KeyUsage::client_auth(),
        };
        match ee.verify_for_usage(
            algs,
            &anchors,
            &intermediates,
            time,
            usage,
            revocation,
            None,
        ) {
            Ok(path) => {
                ok.push(p);
                path_len = path.intermediate_certificates().count() + 2;
            }
            Err(e) => errors.push(map_error(e, p)),
        }
    }
    if ok.is_empty() {
        // With no purpose asked for, a wrong-EKU failure for one purpose says less than the
        // other purpose's failure (unknown issuer, expired, …), so prefer the latter.
        let informative = errors
            .iter()
            .position(|e| !matches!(e, VerifyError::WrongPurpose { .. }))
            .unwrap_or(0);
        return Err(errors.swap_remove(informative));
    }
    if let Some(host) = &opts.host {
        let name = ServerName::try_from(host.as_str())
            .map_err(|_| VerifyError::Input(format!("{host:?} is not a valid host name or IP")))?;
        ee.verify_is_valid_for_subject_name(&name)
            .map_err(|_| VerifyError::NameMismatch { host: host.clone() })?;
    }
    Ok(Verified {
        purposes: ok,
        path_len,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use keep_test_support::TestPki;

    fn opts(pki: &TestPki) -> VerifyOptions {
        VerifyOptions {
            roots: vec![pki.root.der.clone()],
            intermediates: vec![pki.intermediate.der.clone()],
            host: None,
            purpose: None,
            crls: vec![],
            now: OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn valid_chains_report_their_purposes() {
        let pki = TestPki::new();
        let v = verify(&pki.client.der, &opts(&pki)).unwrap();
        assert_eq!(v.purposes, vec![Purpose::Client]);
        assert_eq!(v.path_len, 3);
        let mut o = opts(&pki);
        o.host = Some("vault.claw.internal".into());
        o.purpose = Some(Purpose::Server);
        assert_eq!(
            verify(&pki.server.der, &o).unwrap().purposes,
            vec![Purpose::Server]
        );
        o.host = Some("127.0.0.1".into());
        assert!(verify(&pki.server.der, &o).is_ok());
    }

    #[test]
    fn each_failure_has_its_own_reason() {
        let pki = TestPki::new();
        let mut o = opts(&pki);
        o.purpose = Some(Purpose::Client);
        assert!(matches!(
            verify(&pki.expired_client.der, &o),
            Err(VerifyError::Expired { .. })
        ));
        assert!(matches!(
            verify(&pki.not_yet_valid_client.der, &o),
            Err(VerifyError::NotYetValid { .. })
        ));
        assert!(matches!(
            verify(&pki.server_auth_only_client.der, &o),
            Err(VerifyError::WrongPurpose {
                purpose: Purpose::Client,
                ..
            })
        ));
        assert_eq!(
            verify(&pki.foreign_client.der, &o),
            Err(VerifyError::UnknownIssuer)
        );
        let mut no_inter = opts(&pki);
        no_inter.intermediates.clear();
        assert_eq!(
            verify(&pki.client.der, &no_inter),
            Err(VerifyError::UnknownIssuer)
        );
        let mut with_crl = opts(&pki);
        with_crl.crls = vec![pki.crl.der.clone()];
        assert_eq!(
            verify(&pki.revoked_client.der, &with_crl),
            Err(VerifyError::Revoked)
        );
        assert!(verify(&pki.client.der, &with_crl).is_ok());
        let mut host = opts(&pki);
        host.host = Some("vault.claw.internal".into());
        let e = verify(&pki.wrong_san_server.der, &host).unwrap_err();
        assert_eq!(
            e,
            VerifyError::NameMismatch {
                host: "vault.claw.internal".into()
            }
        );
        assert!(e.to_string().contains("--san vault.claw.internal"));
    }
}
