//! Certificate revocation lists signed by an [`Issuer`]: what an online CA publishes after every
//! revocation and before its previous list's `nextUpdate`.
//!
//! The list is a v2 CRL with the two extensions RFC 5280 requires of a conforming issuer
//! (authority key identifier and a CRL number) and nothing else: no issuing distribution point,
//! so it covers every certificate the issuer signed, which is how rustls/webpki and
//! `openssl crl -verify` read it.

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use crate::cert::{CertError, Issuer};

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The certificate's serial number: the content bytes of its DER INTEGER (big-endian).
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
}

/// What a CRL says, for the signer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlParams {
    /// The CRL number: must increase with every list the issuer publishes, so relying parties
    /// can tell a newer list from an older one.
    pub number: u64,
    /// `thisUpdate`.
    pub this_update: OffsetDateTime,
    /// `nextUpdate`: when the next list will be published at the latest.
    pub next_update: OffsetDateTime,
    /// The revoked certificates.
    pub revoked: Vec<RevokedEntry>,
}

/// Signs a CRL with `issuer`'s key; returns its DER.
///
/// The issuer must be allowed to sign CRLs (a keyUsage without cRLSign is refused), and
/// `next_update` must be after `this_update`.
pub fn sign_crl(issuer: &Issuer, params: &CrlParams) -> Result<Vec<u8>, CertError> {
    let key_identifier_method = match x509_parser::parse_x509_certificate(&issuer.cert.der)
        .ok()
        .and_then(|(_, x)| {
            x.extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                        Some(k.0.to_vec())
                    }
                    _ => None,
                })
        }) {
        // The CRL's authority key identifier must equal the issuer certificate's subject key
        // identifier, or verifiers that match on it (OpenSSL) will not find the issuer.
        Some(ski) => KeyIdMethod::PreSpecified(ski),
        None => KeyIdMethod::Sha256,
    };
    let crl = CertificateRevocationListParams {
        this_update: params.this_update,
        next_update: params.next_update,
        crl_number: SerialNumber::from(params.number),
        issuing_distribution_point: None,
        revoked_certs: params
            .revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&r.serial),
                revocation_time: r.revoked_at,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method,
    };
    crl.signed_by(&issuer.rcgen_issuer_dn)
        .map(|c| c.der().to_vec())
        .map_err(|e| CertError::Build(format!("cannot sign the CRL: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cert::{CertRequest, Profile, create};
    use crate::{KeyType, PrivateKey, Source};

    #[test]
    fn crl_lists_serials_with_number_and_verifies_with_the_issuer_key() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let now = OffsetDateTime::now_utc();
        let req = CertRequest {
            profile: Profile::RootCa,
            subject: "ca.claw.internal".into(),
            common_name: Some("Claw CA".into()),
            sans: vec![],
            eku: None,
            path_len: None,
            not_before: None,
            not_after: None,
            now,
        };
        let ca = create(&req, &key, None).unwrap();
        let issuer =
            Issuer::new(ca.cert.pem().as_bytes(), &Source::Other("ca".into()), key).unwrap();
        let der = sign_crl(
            &issuer,
            &CrlParams {
                number: 7,
                this_update: now,
                next_update: now + time::Duration::hours(24),
                revoked: vec![RevokedEntry {
                    serial: vec![0x12, 0x34],
                    revoked_at: now,
                }],
            },
        )
        .unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        let (_, ca_x) = x509_parser::parse_x509_certificate(&issuer.cert.der).unwrap();
        crl.verify_signature(ca_x.public_key()).unwrap();
        assert_eq!(crl.crl_number().map(|n| n.to_string()), Some("7".into()));
        let serials: Vec<Vec<u8>> = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        assert_eq!(serials, vec![vec![0x12, 0x34]]);
        assert_eq!(crl.issuer().as_raw(), ca_x.subject().as_raw());
    }
}
