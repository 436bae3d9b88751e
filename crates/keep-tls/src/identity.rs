//! Who the client is, derived from the certificate chain rustls has already verified.
//!
//! Verification happens in rustls (chain to `client_ca_file`, validity, EKU clientAuth, CRLs);
//! [`from_verified_chain`] is a small pure function that only *reads* the verified leaf, in the
//! manner of linkerd's `meshtls` verifier. Nothing here decides trust, and nothing downstream
//! (cert auth roles, policies, audit, token binding) ever looks at unverified bytes: the listener
//! calls this with `ServerConnection::peer_certificates()` only after a successful handshake.
//!
//! Names follow `keep certificate inspect`: RFC 4514 subject/issuer, colon-separated lowercase
//! hex serial (as Vault prints serials), SHA-256 fingerprint as lowercase hex.

use std::fmt;

use keep_pki::inspect::{attribute_value as attribute_text, format_serial, ip_string, rfc4514};
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// The identity of a client whose certificate chain rustls verified.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject distinguished name, RFC 4514, most specific first (`CN=agent-01,O=Claw`).
    pub subject: String,
    /// The subject's first common name (what Vault's `allowed_common_names` matches).
    pub common_name: Option<String>,
    /// DNS subject alternative names.
    pub dns_sans: Vec<String>,
    /// URI subject alternative names (SPIFFE IDs).
    pub uri_sans: Vec<String>,
    /// E-mail (rfc822Name) subject alternative names.
    pub email_sans: Vec<String>,
    /// IP address subject alternative names, in their usual text form.
    pub ip_sans: Vec<String>,
    /// Every organizationalUnit of the subject, in order.
    pub organizational_units: Vec<String>,
    /// Serial number, colon-separated lowercase hex (`3a:f2:…`), as Vault and `inspect` print it.
    pub serial: String,
    /// SHA-256 over the leaf's DER, lowercase hex: what tokens are bound to and audit logs name.
    pub fingerprint_sha256: String,
    /// Start of the leaf's validity.
    pub not_before: OffsetDateTime,
    /// End of the leaf's validity.
    pub not_after: OffsetDateTime,
    /// Issuer distinguished name, RFC 4514.
    pub issuer: String,
    /// The issuer's first common name.
    pub issuer_common_name: Option<String>,
    /// The verified path: the leaf first, then the intermediates the verifier **used** to reach
    /// a trust anchor, in order (the anchor itself is not included). Certificates the client
    /// merely appended are not here. For checks that need the leaf's raw bytes, e.g. Vault's
    /// `required_extensions`.
    pub chain: Vec<CertificateDer<'static>>,
    /// The CAs of the verified path as signature checks see them (subject name and public
    /// key), from the leaf's direct issuer up to and including the trust anchor. "Is this
    /// certificate from CA X" is answered here: `issuers.contains(&CaKey::of_certificate(X)?)`.
    pub issuers: Vec<CaKey>,
}

/// A CA as a signature check sees it: its subject name and its public key.
///
/// Two certificates with the same `CaKey` vouch for exactly the same leaves (a leaf's signature
/// is checked against the key of a CA whose subject is the leaf's issuer), so this, not a
/// certificate's fingerprint and never a name alone, is what a trust binding compares. A
/// second CA with the same name but another key has another `CaKey`; a CA re-issued with the
/// same key (renewed, cross-signed) keeps its `CaKey`, as it keeps vouching for its leaves.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CaKey {
    /// The subject name's DER contents (webpki's encoding, as in a `TrustAnchor`).
    subject: Vec<u8>,
    /// The SubjectPublicKeyInfo's DER contents (likewise).
    spki: Vec<u8>,
}

impl CaKey {
    /// The `CaKey` of a CA certificate (DER).
    pub fn of_certificate(der: &[u8]) -> Result<CaKey, IdentityError> {
        let der = CertificateDer::from(der);
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| IdentityError::Unparseable(format!("{e:?}")))?;
        Ok(CaKey::of_anchor(&anchor))
    }

    fn of_anchor(anchor: &TrustAnchor<'_>) -> CaKey {
        CaKey {
            subject: anchor.subject.as_ref().to_vec(),
            spki: anchor.subject_public_key_info.as_ref().to_vec(),
        }
    }
}

// By hand: the raw bytes are noise; the SHA-256 of the key identifies it for a reader.
impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = keep_pki::inspect::fingerprint_sha256(&self.spki);
        f.debug_struct("CaKey")
            .field("subject_len", &self.subject.len())
            .field("spki_sha256", &&key[..16])
            .finish()
    }
}

/// The client trust anchors of a listener, and the one way to turn what a client presented
/// into a [`PeerIdentity`]: build the verified path with webpki (the same library, anchors and
/// rules rustls' verifier used), then read the identity from that path.
///
/// Why again after rustls: rustls accepts a chain but does not tell which path it verified;
/// `ServerConnection::peer_certificates()` is the chain **as presented**, extra certificates
/// included. Reading trust from it was an authentication bypass (a leaf from a second
/// intermediate, with the role's intermediate appended, matched the role). A resumed session
/// also skips rustls' verification, and this check catches a certificate that expired since.
/// It costs one path build per connection (two signature checks for a leaf under an
/// intermediate), not per request.
#[derive(Clone)]
pub struct ClientTrust {
    anchors: Vec<TrustAnchor<'static>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
    require_client_auth_eku: bool,
}

impl fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTrust")
            .field("anchors", &self.anchors.len())
            .field("require_client_auth_eku", &self.require_client_auth_eku)
            .finish_non_exhaustive()
    }
}

/// Whether the certificate has an extended key usage extension, whatever it lists (webpki
/// checks that one present names clientAuth). `require_client_auth_eku` refuses a leaf without
/// one, here and in the handshake (`capture::CapturingVerifier`).
pub(crate) fn has_eku_extension(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| {
        cert.extensions()
            .iter()
            .any(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_EXTENDED_KEY_USAGE)
    })
}

impl ClientTrust {
    /// Trust anchors as the listener's verifier holds them, and the provider's signature
    /// algorithms. With `require_client_auth_eku`, a leaf must carry an extended key usage
    /// extension naming clientAuth; without it, a leaf with no EKU extension at all is accepted
    /// as RFC 5280 allows (one with an EKU extension must include clientAuth either way).
    pub fn new(
        anchors: Vec<TrustAnchor<'static>>,
        algs: rustls::crypto::WebPkiSupportedAlgorithms,
        require_client_auth_eku: bool,
    ) -> ClientTrust {
        ClientTrust {
            anchors,
            algs,
            require_client_auth_eku,
        }
    }

    /// Trust anchors from CA certificates (DER) with the default provider's algorithms
    /// (aws-lc-rs), clientAuth EKU required. For tests and tools that hold CA certificates.
    pub fn from_ca_certificates(cas: &[CertificateDer<'_>]) -> Result<ClientTrust, IdentityError> {
        let anchors = cas
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| IdentityError::Unparseable(format!("{e:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(ClientTrust::new(
            anchors,
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
            true,
        ))
    }

    /// Whether a leaf without any EKU extension is refused.
    pub fn requires_client_auth_eku(&self) -> bool {
        self.require_client_auth_eku
    }

    /// Verifies `presented` (leaf first, then whatever else the client sent, in any order) at
    /// `now` for client authentication and derives the identity from the verified path.
    /// Revocation is not checked here: the handshake did, against every loaded CRL, and the
    /// server checks it again per request.
    pub fn identify(
        &self,
        presented: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<PeerIdentity, IdentityError> {
        let leaf_der = presented.first().ok_or(IdentityError::NoCertificate)?;
        let leaf = webpki::EndEntityCert::try_from(leaf_der)
            .map_err(|e| IdentityError::Unparseable(format!("{e:?}")))?;
        // clientAuth if the leaf (or a CA) has an EKU extension at all; `required` would also
        // demand one of every intermediate, which CA certificates rightly lack.
        let path = leaf
            .verify_for_usage(
                self.algs.all,
                &self.anchors,
                &presented[1..],
                now,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(IdentityError::from_webpki)?;
        if self.require_client_auth_eku && !has_eku_extension(leaf_der) {
            return Err(IdentityError::BadEku);
        }
        let mut chain = vec![leaf_der.clone().into_owned()];
        let mut issuers = Vec::new();
        for cert in path.intermediate_certificates() {
            let der = cert.der().into_owned();
            issuers.push(CaKey::of_certificate(&der)?);
            chain.push(der);
        }
        issuers.push(CaKey::of_anchor(path.anchor()));
        build(&chain, issuers)
    }
}

// By hand: the chain's bytes are noise in logs and assertion messages.
impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("subject", &self.subject)
            .field("common_name", &self.common_name)
            .field("dns_sans", &self.dns_sans)
            .field("uri_sans", &self.uri_sans)
            .field("email_sans", &self.email_sans)
            .field("ip_sans", &self.ip_sans)
            .field("organizational_units", &self.organizational_units)
            .field("serial", &self.serial)
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("issuer", &self.issuer)
            .field("issuer_common_name", &self.issuer_common_name)
            .field("chain_len", &self.chain.len())
            .field("issuers", &self.issuers)
            .finish()
    }
}

/// Why an identity could not be derived. After a successful rustls verification neither should
/// happen; the listener treats both as a failed handshake (reason `other`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The chain is empty (the client presented no certificate).
    #[error("the client presented no certificate")]
    NoCertificate,
    /// The leaf does not parse as X.509.
    #[error("the client certificate does not parse: {0}")]
    Unparseable(String),
    /// The certificate (or one in its path) has expired — after a resumed session, say.
    #[error("the client certificate (or a CA certificate in its chain) has expired")]
    Expired,
    /// The certificate has no clientAuth extended key usage (or none at all, when required).
    #[error(
        "the client certificate is not valid for client authentication (no clientAuth extended key usage)"
    )]
    BadEku,
    /// No path to a trust anchor could be verified.
    #[error("the client certificate chain does not verify: {0}")]
    NotVerified(String),
}

impl IdentityError {
    fn from_webpki(e: webpki::Error) -> IdentityError {
        match e {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
                IdentityError::Expired
            }
            webpki::Error::RequiredEkuNotFoundContext(_) => IdentityError::BadEku,
            other => IdentityError::NotVerified(format!("{other:?}")),
        }
    }
}

/// Derives the [`PeerIdentity`] from `chain`, which the caller guarantees **is a verified
/// path** (leaf first, then the intermediates a verifier used, in order) — never a chain as a
/// client presented it: use [`ClientTrust::identify`] for that. The trust anchor is unknown
/// here, so [`PeerIdentity::issuers`] holds only the chain's own CAs.
///
/// Pure: no I/O, no clock, no trust decisions.
pub fn from_verified_chain(chain: &[CertificateDer<'_>]) -> Result<PeerIdentity, IdentityError> {
    let issuers = chain
        .iter()
        .skip(1)
        .map(|c| CaKey::of_certificate(c))
        .collect::<Result<_, _>>()?;
    build(chain, issuers)
}

/// The identity of the verified path `chain` whose CAs are `issuers`. It runs once per
/// connection, so it parses the leaf once and formats only what it returns (~6 µs in release,
/// against ~14 µs for a full `keep_pki::inspect`); the formatting matches `inspect` exactly,
/// which the tests check.
fn build(chain: &[CertificateDer<'_>], issuers: Vec<CaKey>) -> Result<PeerIdentity, IdentityError> {
    let leaf = chain.first().ok_or(IdentityError::NoCertificate)?;
    let (rest, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| IdentityError::Unparseable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(IdentityError::Unparseable(format!(
            "{} unexpected bytes after the certificate",
            rest.len()
        )));
    }
    let mut dns_sans = Vec::new();
    let mut uri_sans = Vec::new();
    let mut email_sans = Vec::new();
    let mut ip_sans = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(s) => dns_sans.push((*s).to_owned()),
                    GeneralName::URI(s) => uri_sans.push((*s).to_owned()),
                    GeneralName::RFC822Name(s) => email_sans.push((*s).to_owned()),
                    GeneralName::IPAddress(b) => ip_sans.push(ip_string(b)),
                    _ => {}
                }
            }
        }
    }
    Ok(PeerIdentity {
        subject: rfc4514(cert.subject()),
        common_name: cert.subject().iter_common_name().next().map(attribute_text),
        dns_sans,
        uri_sans,
        email_sans,
        ip_sans,
        organizational_units: cert
            .subject()
            .iter_organizational_unit()
            .map(attribute_text)
            .collect(),
        serial: format_serial(cert.raw_serial()),
        fingerprint_sha256: keep_pki::inspect::fingerprint_sha256(leaf),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        issuer: rfc4514(cert.issuer()),
        issuer_common_name: cert.issuer().iter_common_name().next().map(attribute_text),
        chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
        issuers,
    })
}

// Subject, serial and IP formatting come from `keep_pki::inspect`, so the strings in the audit
// log, in security events and in `keep certificate inspect` are the same.

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use keep_test_support::{CLIENT_CN, CLIENT_SPIFFE_ID, INTERMEDIATE_CN, LeafSpec, TestPki};

    use super::*;

    fn ders(chain: &[Vec<u8>]) -> Vec<CertificateDer<'static>> {
        chain
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect()
    }

    fn colon_hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    #[test]
    fn agent_identity() {
        let pki = TestPki::new();
        let id = from_verified_chain(&ders(&pki.client.chain_der)).unwrap();
        assert_eq!(id.common_name.as_deref(), Some(CLIENT_CN));
        assert_eq!(id.subject, format!("CN={CLIENT_CN}"));
        assert_eq!(id.dns_sans, vec!["agent-01.claw.internal".to_owned()]);
        assert_eq!(id.uri_sans, vec![CLIENT_SPIFFE_ID.to_owned()]);
        assert!(id.email_sans.is_empty());
        assert!(id.organizational_units.is_empty());
        assert_eq!(id.serial, colon_hex(&pki.client.serial));
        assert_eq!(
            id.fingerprint_sha256,
            keep_pki::inspect::fingerprint_sha256(&pki.client.der)
        );
        assert_eq!(id.issuer_common_name.as_deref(), Some(INTERMEDIATE_CN));
        assert!(id.issuer.contains(&format!("CN={INTERMEDIATE_CN}")));
        assert_eq!(id.chain.len(), 2);
        assert!(id.not_after > OffsetDateTime::now_utc());
        assert!(id.not_before < id.not_after);
    }

    #[test]
    fn email_and_ip_sans() {
        let pki = TestPki::new();
        let leaf = pki.issue(
            &LeafSpec::client("mailer")
                .email("ops@claw.internal")
                .ip(std::net::Ipv4Addr::new(10, 0, 0, 7)),
        );
        let id = from_verified_chain(&ders(&leaf.chain_der)).unwrap();
        assert_eq!(id.email_sans, vec!["ops@claw.internal".to_owned()]);
        assert_eq!(id.ip_sans, vec!["10.0.0.7".to_owned()]);
        assert!(id.dns_sans.is_empty() && id.uri_sans.is_empty());
    }

    #[test]
    fn organizational_units_in_order() {
        // TestPki's LeafSpec has no OU knob: build one with rcgen directly.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["ou.claw.internal".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agent-ou");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "agents");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Claw");
        let cert = params.self_signed(&key).unwrap();
        let id = from_verified_chain(&[cert.der().clone()]).unwrap();
        assert_eq!(id.organizational_units, vec!["agents".to_owned()]);
        assert_eq!(id.common_name.as_deref(), Some("agent-ou"));
        assert_eq!(id.issuer_common_name.as_deref(), Some("agent-ou"));
        assert!(id.subject.contains("OU=agents"), "{}", id.subject);
    }

    /// The identity's strings are exactly `keep certificate inspect`'s (same formatting code,
    /// duplicated here for speed: this test catches drift).
    #[test]
    fn matches_inspect_for_every_kind_of_name() {
        let pki = TestPki::new();
        let mut ders: Vec<Vec<u8>> = [
            &pki.client,
            &pki.admin,
            &pki.server,
            &pki.expired_client,
            &pki.foreign_client,
            &pki.server_auth_only_client,
        ]
        .iter()
        .map(|l| l.der.clone())
        .collect();
        ders.push(pki.root.der.clone());
        ders.push(pki.intermediate.der.clone());

        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["odd.claw.internal".into()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            "fd00::7".parse::<std::net::IpAddr>().unwrap(),
        ));
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://claw.internal/x").unwrap(),
        ));
        let dn = &mut params.distinguished_name;
        dn.push(rcgen::DnType::CommonName, " lead, \"quoted\"+plus; <x> ");
        dn.push(rcgen::DnType::OrganizationalUnitName, "#not-hex");
        dn.push(
            rcgen::DnType::OrganizationName,
            rcgen::DnValue::BmpString(rcgen::string::BmpString::try_from("Ünïcode").unwrap()),
        );
        dn.push(
            rcgen::DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 99999, 1]),
            "custom",
        );
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x00, 0x2a]));
        ders.push(params.self_signed(&key).unwrap().der().to_vec());

        for der in ders {
            let want = keep_pki::inspect::inspect(&der).unwrap();
            let got = from_verified_chain(&[CertificateDer::from(der.clone())]).unwrap();
            assert_eq!(got.subject, want.subject);
            assert_eq!(got.issuer, want.issuer);
            assert_eq!(got.common_name, want.common_name);
            assert_eq!(got.serial, want.serial);
            assert_eq!(got.fingerprint_sha256, want.fingerprint_sha256);
            assert_eq!(got.dns_sans, want.sans.dns);
            assert_eq!(got.uri_sans, want.sans.uri);
            assert_eq!(got.email_sans, want.sans.email);
            assert_eq!(got.ip_sans, want.sans.ip);
        }
    }

    #[test]
    fn empty_and_garbage_chains_are_errors() {
        assert_eq!(
            from_verified_chain(&[]).unwrap_err(),
            IdentityError::NoCertificate
        );
        assert!(matches!(
            from_verified_chain(&[CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff])]),
            Err(IdentityError::Unparseable(_))
        ));
    }

    #[test]
    fn debug_does_not_dump_the_chain() {
        let pki = TestPki::new();
        let id = from_verified_chain(&ders(&pki.client.chain_der)).unwrap();
        let dbg = format!("{id:?}");
        assert!(dbg.contains("chain_len: 2"), "{dbg}");
        assert!(dbg.len() < 2000, "{dbg}");
    }
}
