//! Checking client chains against **every** loaded CRL, in the handshake and per request.
//!
//! Client certificates can be revoked by two sources at once: `crl_file` (operator-managed
//! PEM, reloaded on change or SIGHUP) and the PKI mount's own CRL (`extra_crls`, swapped in
//! after every `pki/revoke`). Both often come from the same issuer (keep's intermediate), and
//! webpki checks a certificate against the *first* authoritative CRL of its issuer only, so a
//! second list of that issuer would be silently ignored. The rule here is the union: a
//! certificate listed in any loaded CRL of its issuer is refused.
//!
//! Design:
//! - rustls' `WebPkiClientVerifier` still gets every CRL and does its full check (chain,
//!   validity, EKU, and for the first CRL of each issuer: signature against the issuer in the
//!   verified path, cRLSign key usage, distribution-point scope). Nothing is relaxed.
//! - [`refuse_listed`], in the listener's verifier wrapper: only after it accepted the chain, [`Revocations::check`]
//!   looks up every chain certificate's serial in *all* CRLs of that certificate's issuer
//!   (name match), and refuses a listed one with `CertificateError::Revoked`, so the listener
//!   classifies it `revoked` and raises the same `tls_handshake_failed` event as for a
//!   webpki-found revocation.
//! - A CRL counts only if its issuer signed it. At load, a CRL whose issuer is a CA in
//!   `client_ca_file` must verify with that CA's key, or the config is refused (`BadCrl`). A
//!   CRL from an issuer that is not in `client_ca_file` (an intermediate clients send) is
//!   verified when one of its serials matches, against the certificates of the chain being
//!   checked whose subject is the CRL's issuer (that chain was just verified by webpki, or was
//!   at the connection's handshake). A listed certificate whose CRL verifies with none of them
//!   is refused as well (fail closed, as webpki does for a CRL with a bad signature; reason
//!   `other`, the detail says the CRL's signature is bad).
//! - Distribution-point scope is not considered in the union: serials are unique per issuer,
//!   so a serial its issuer signed into any list is revoked.
//! - The same [`Revocations`] (one per built config, swapped as a whole on reload) answers the
//!   per-request question ([`ReloadableTls::revoked`]): a keep-alive connection opened before a
//!   revocation keeps its TLS session, so the server checks the connection's verified chain
//!   against the current lists on every request.
//!
//! Cost: nothing when no CRL is loaded; otherwise a parse of each chain certificate (a few µs)
//! and hash lookups, plus one signature check only when a serial is listed.
//!
//! [`ReloadableTls::revoked`]: crate::reload::ReloadableTls::revoked

use std::collections::HashSet;
use std::fmt;

use rustls::pki_types::{CertificateDer, TrustAnchor};
use rustls::{CertRevocationListError, CertificateError};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};

use crate::server::{Origin, TlsConfigError};

/// Why a client certificate must be refused although its chain verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The listed certificate's subject (RFC 4514): the client's, or an intermediate's.
    pub subject: String,
    /// Its serial, colon hex.
    pub serial: String,
    /// Which CRL lists it (`crl_file` with file and line, or the in-memory CRL).
    pub listed_in: String,
    /// Whether the listing CRL's signature verified with the certificate's issuer. `false`
    /// means it is listed in a CRL its issuer did not sign: refused anyway (fail closed).
    pub signature_verified: bool,
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (serial {}) is listed in {}",
            self.subject, self.serial, self.listed_in
        )?;
        if !self.signature_verified {
            f.write_str(", a CRL whose signature does not verify with the certificate's issuer")?;
        }
        Ok(())
    }
}

/// Every loaded CRL (both sources), indexed for serial lookups.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    crls: Vec<LoadedCrl>,
}

struct LoadedCrl {
    /// Where it came from, for messages.
    listed_in: String,
    /// The issuer name, DER (with its SEQUENCE header).
    issuer: Vec<u8>,
    /// Revoked serials, as the DER INTEGER contents.
    serials: HashSet<Vec<u8>>,
    /// The CRL itself, to verify its signature when a serial matches.
    der: Vec<u8>,
    /// The signature was verified at load with a CA from `client_ca_file`.
    verified_at_load: bool,
}

impl fmt::Debug for LoadedCrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCrl")
            .field("listed_in", &self.listed_in)
            .field("entries", &self.serials.len())
            .field("verified_at_load", &self.verified_at_load)
            .finish_non_exhaustive()
    }
}

impl Revocations {
    /// Indexes `crls` (already checked to parse by webpki), each with its origin and line;
    /// `anchors` are the CAs of `client_ca_file`. A CRL issued by one of those CAs whose
    /// signature does not verify with its key is an error.
    pub(crate) fn new(
        crls: &[(Origin, usize, &[u8])],
        anchors: &[TrustAnchor<'_>],
    ) -> Result<Revocations, TlsConfigError> {
        let anchors: Vec<(Vec<u8>, Vec<u8>)> = anchors
            .iter()
            .map(|a| {
                (
                    der_sequence(&a.subject),
                    webpki::spki_for_anchor(a).as_ref().to_vec(),
                )
            })
            .collect();
        let mut out = Vec::with_capacity(crls.len());
        for (origin, line, der) in crls {
            let bad = |detail: String| TlsConfigError::BadCrl {
                origin: origin.clone(),
                line: *line,
                detail,
            };
            let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| bad(e.to_string()))?;
            let issuer = crl.issuer().as_raw().to_vec();
            let mut same_name = anchors.iter().filter(|(s, _)| *s == issuer).peekable();
            let verified_at_load = if same_name.peek().is_some() {
                if !same_name.any(|(_, spki)| signed_by(&crl, spki)) {
                    return Err(bad(format!(
                        "its signature does not verify with the key of `{}` in client_ca_file: it was not issued by that CA",
                        crl.issuer()
                    )));
                }
                true
            } else {
                false
            };
            let listed_in = if *line > 0 {
                format!("{origin}, line {line}")
            } else {
                origin.to_string()
            };
            out.push(LoadedCrl {
                listed_in,
                issuer,
                serials: crl
                    .iter_revoked_certificates()
                    .map(|r| r.raw_serial().to_vec())
                    .collect(),
                der: der.to_vec(),
                verified_at_load,
            });
        }
        Ok(Revocations { crls: out })
    }

    /// The first certificate of `chain` (leaf first, as verified) that a loaded CRL of its
    /// issuer lists, or `None`. When several CRLs list it, one whose signature verifies is
    /// named.
    pub(crate) fn check(&self, chain: &[CertificateDer<'_>]) -> Option<Revoked> {
        if self.crls.is_empty() {
            return None;
        }
        let parsed: Vec<_> = chain
            .iter()
            .filter_map(|c| x509_parser::parse_x509_certificate(c).ok().map(|(_, x)| x))
            .collect();
        for cert in &parsed {
            let issuer = cert.issuer().as_raw();
            let serial = cert.raw_serial();
            let verified = |crl: &LoadedCrl| {
                crl.verified_at_load
                    || x509_parser::parse_x509_crl(&crl.der).is_ok_and(|(_, list)| {
                        parsed
                            .iter()
                            .filter(|p| p.subject().as_raw() == issuer)
                            .any(|p| signed_by(&list, p.public_key().raw))
                    })
            };
            let mut listing: Option<(&LoadedCrl, bool)> = None;
            for crl in self
                .crls
                .iter()
                .filter(|c| c.issuer == issuer && c.serials.contains(serial))
            {
                let ok = verified(crl);
                if listing.is_none() || ok {
                    listing = Some((crl, ok));
                }
                if ok {
                    break;
                }
            }
            if let Some((crl, signature_verified)) = listing {
                return Some(Revoked {
                    subject: keep_pki::inspect::rfc4514(cert.subject()),
                    serial: keep_pki::inspect::format_serial(serial),
                    listed_in: crl.listed_in.clone(),
                    signature_verified,
                });
            }
        }
        None
    }
}

/// Whether `crl` verifies with the public key `spki` (DER SubjectPublicKeyInfo).
fn signed_by(
    crl: &x509_parser::revocation_list::CertificateRevocationList<'_>,
    spki: &[u8],
) -> bool {
    SubjectPublicKeyInfo::from_der(spki).is_ok_and(|(_, key)| crl.verify_signature(&key).is_ok())
}

/// `content` wrapped in a DER SEQUENCE header (webpki keeps a trust anchor's subject without
/// it; x509-parser's raw names include it).
fn der_sequence(content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(0x30);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// After rustls' verifier accepted a chain: refuses it when any loaded CRL lists one of its
/// certificates (module docs). Called by the listener's one verifier wrapper
/// (`capture::CapturingVerifier`).
pub(crate) fn refuse_listed(
    revocations: &Revocations,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    let chain: Vec<CertificateDer<'_>> = std::iter::once(end_entity.clone())
        .chain(intermediates.iter().cloned())
        .collect();
    match revocations.check(&chain) {
        None => Ok(()),
        Some(r) if r.signature_verified => {
            tracing::debug!(listed = %r, "client certificate refused: revoked");
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
        }
        Some(r) => {
            tracing::warn!(listed = %r, "client certificate refused: listed in a CRL its issuer did not sign; check crl_file");
            Err(rustls::Error::InvalidCertRevocationList(
                CertRevocationListError::BadSignature,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_sequence_headers() {
        assert_eq!(der_sequence(&[1, 2]), vec![0x30, 2, 1, 2]);
        let long = vec![0u8; 200];
        assert_eq!(&der_sequence(&long)[..3], &[0x30, 0x81, 200]);
        let longer = vec![0u8; 300];
        assert_eq!(&der_sequence(&longer)[..4], &[0x30, 0x82, 0x01, 0x2c]);
    }
}
