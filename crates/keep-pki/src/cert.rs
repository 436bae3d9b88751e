//! Certificates: profiles, issuance (self-signed or by an issuer), CSRs and CSR signing.
//!
//! The rules follow step's `certificate create` so the usual recipe carries over, with safer
//! edges: a leaf always carries a SAN, a CA never carries an EKU, a leaf never outlives its
//! issuer (truncated with a warning), and serial numbers are 128 random bits.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::duration::TimeSpec;
use crate::key::PrivateKey;
use crate::pem::{self, Source};

/// How long a certificate lives when no `--not-after` is given.
pub mod lifetimes {
    use time::Duration;
    /// Root and intermediate CAs: 10 years.
    pub const CA: Duration = Duration::days(3650);
    /// A leaf made offline with the CLI: 90 days.
    pub const OFFLINE_LEAF: Duration = Duration::days(90);
    /// A leaf issued online by the server (renewed automatically by the agent): 24 hours.
    pub const ONLINE_LEAF: Duration = Duration::hours(24);
    /// Backdating of `not_before`, so a host whose clock is a little behind accepts a fresh cert.
    pub const BACKDATE: Duration = Duration::minutes(1);
}

/// What kind of certificate to make, as step's `--profile` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Self-signed root CA: pathlen 1, keyCertSign + cRLSign, no EKU.
    RootCa,
    /// CA signed by a root: pathlen 0, keyCertSign + cRLSign, no EKU.
    IntermediateCa,
    /// End-entity certificate signed by a CA (the default).
    Leaf,
    /// End-entity certificate signed by its own key.
    SelfSigned,
}

impl Profile {
    /// Parses `root-ca`, `intermediate-ca`, `leaf` or `self-signed`.
    pub fn parse(s: &str) -> Result<Profile, CertError> {
        match s {
            "root-ca" => Ok(Profile::RootCa),
            "intermediate-ca" => Ok(Profile::IntermediateCa),
            "leaf" => Ok(Profile::Leaf),
            "self-signed" => Ok(Profile::SelfSigned),
            other => Err(CertError::Usage(format!(
                "unknown profile {other:?}; use root-ca, intermediate-ca, leaf or self-signed"
            ))),
        }
    }

    /// Whether certificates of this profile are CAs.
    pub fn is_ca(self) -> bool {
        matches!(self, Profile::RootCa | Profile::IntermediateCa)
    }

    /// Whether certificates of this profile are signed by a separate issuer.
    pub fn needs_issuer(self) -> bool {
        matches!(self, Profile::IntermediateCa | Profile::Leaf)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::RootCa => "root-ca",
            Profile::IntermediateCa => "intermediate-ca",
            Profile::Leaf => "leaf",
            Profile::SelfSigned => "self-signed",
        })
    }
}

/// Which extended key usages a leaf carries (`--eku`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EkuChoice {
    /// `clientAuth` only: an agent's identity.
    Client,
    /// `serverAuth` only: a server's identity.
    Server,
    /// Both (the default for leaves, as step does).
    Both,
}

impl EkuChoice {
    /// Parses `client`, `server` or `both`.
    pub fn parse(s: &str) -> Result<EkuChoice, CertError> {
        match s {
            "client" | "clientAuth" => Ok(EkuChoice::Client),
            "server" | "serverAuth" => Ok(EkuChoice::Server),
            "both" => Ok(EkuChoice::Both),
            other => Err(CertError::Usage(format!(
                "unknown EKU {other:?}; use client, server or both"
            ))),
        }
    }

    fn purposes(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            EkuChoice::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            EkuChoice::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            EkuChoice::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        }
    }
}

/// Errors while making or signing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Flags or arguments that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// A SAN value that is not a DNS name, IP, URI or email address.
    #[error("{value:?} is not a valid DNS name, IP address, URI or email address for a SAN{hint}")]
    BadSan {
        /// The offending value.
        value: String,
        /// Extra advice for the common mistakes.
        hint: String,
    },
    /// The issuer certificate cannot sign certificates.
    #[error("{origin}: {problem}")]
    BadIssuer {
        /// The `--ca` file.
        origin: Source,
        /// What is wrong with it.
        problem: String,
    },
    /// The validity window is empty or inverted.
    #[error(
        "the certificate would not be valid at any time: not-after {not_after} is not after not-before {not_before}"
    )]
    EmptyValidity {
        /// Start, RFC 3339.
        not_before: String,
        /// End, RFC 3339.
        not_after: String,
    },
    /// The PEM layer rejected an input.
    #[error(transparent)]
    Pem(#[from] pem::PemError),
    /// A CSR that cannot be used.
    #[error("{origin}: {problem}")]
    BadCsr {
        /// The CSR's source.
        origin: Source,
        /// What is wrong with it.
        problem: String,
    },
    /// rcgen refused to build the certificate.
    #[error("could not build the certificate: {0}")]
    Build(String),
}

/// A parsed certificate with the facts callers need often.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether basicConstraints says cA=true.
    pub is_ca: bool,
    /// Whether issuer and subject names are equal (a root, or a self-signed leaf).
    pub self_issued: bool,
    /// Subject common name, if any.
    pub common_name: Option<String>,
}

impl Certificate {
    /// Parses DER, naming `source` in the error.
    pub fn from_der(der: &[u8], source_desc: &str) -> Result<Certificate, crate::CertParseError> {
        let (rest, x) = X509Certificate::from_der(der).map_err(|e| crate::CertParseError {
            source_desc: source_desc.to_owned(),
            problem: format!("not a valid X.509 certificate ({e})"),
        })?;
        if !rest.is_empty() {
            return Err(crate::CertParseError {
                source_desc: source_desc.to_owned(),
                problem: format!("{} unexpected bytes after the certificate", rest.len()),
            });
        }
        let validity = x.validity();
        Ok(Certificate {
            der: der.to_vec(),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            is_ca: x
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca),
            self_issued: x.issuer().as_raw() == x.subject().as_raw(),
            common_name: x
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
        })
    }

    /// Canonical PEM.
    pub fn pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.der)
    }

    /// Total lifetime.
    pub fn lifetime(&self) -> Duration {
        self.not_after - self.not_before
    }
}

/// A CA certificate and its key, ready to sign.
pub struct Issuer {
    /// The issuing certificate (first in the `--ca` file).
    pub cert: Certificate,
    /// Further certificates from the `--ca` file (the issuer's own chain), for `--bundle`.
    pub chain: Vec<Certificate>,
    key: PrivateKey,
    pub(crate) rcgen_issuer_dn: rcgen::Issuer<'static, PrivateKeyRef>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("cert", &self.cert.common_name)
            .field("key", &self.key)
            .finish()
    }
}

/// A signing key handle rcgen can own (rcgen's `Issuer` wants an owned `SigningKey`).
pub struct PrivateKeyRef(rcgen::KeyPair);

impl rcgen::PublicKeyData for PrivateKeyRef {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen::PublicKeyData::algorithm(&self.0)
    }
}

impl rcgen::SigningKey for PrivateKeyRef {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

impl Issuer {
    /// Loads an issuer from the `--ca` file contents and its (already decrypted) key, and
    /// checks that it can sign: it is a CA, it may sign certificates, and the key matches.
    pub fn new(ca_pem: &[u8], ca_source: &Source, key: PrivateKey) -> Result<Issuer, CertError> {
        let blocks = pem::read_certificates(ca_pem, ca_source)?;
        let desc = ca_source.to_string();
        let mut certs = blocks
            .iter()
            .map(|b| Certificate::from_der(&b.der, &desc))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::BadIssuer {
                origin: ca_source.clone(),
                problem: e.problem,
            })?;
        let bad = |problem: String| CertError::BadIssuer {
            origin: ca_source.clone(),
            problem,
        };
        if certs.is_empty() {
            return Err(bad("no certificate found".into()));
        }
        let cert = certs.remove(0);
        let (_, x) = X509Certificate::from_der(&cert.der)
            .map_err(|e| bad(format!("not a valid certificate ({e})")))?;
        if !cert.is_ca {
            return Err(bad(format!(
                "{} is not a CA certificate (basicConstraints cA is not set); fix: pass the CA \
                 certificate as --ca, not a leaf",
                cert.common_name.as_deref().unwrap_or("the certificate")
            )));
        }
        if let Ok(Some(ku)) = x.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(bad(
                "the CA certificate's keyUsage does not allow keyCertSign".into(),
            ));
        }
        if !key.matches_certificate(&cert.der) {
            return Err(bad(
                "the CA key does not match the CA certificate; fix: check that --ca and \
                 --ca-key belong together"
                    .into(),
            ));
        }
        let pair = rcgen::KeyPair::try_from(key.pkcs8_der())
            .map_err(|e| bad(format!("the CA key does not load ({e})")))?;
        let rcgen_issuer_dn =
            rcgen::Issuer::from_ca_cert_der(&cert.der.clone().into(), PrivateKeyRef(pair))
                .map_err(|e| bad(format!("cannot use this CA certificate to sign ({e})")))?;
        Ok(Issuer {
            cert,
            chain: certs,
            key,
            rcgen_issuer_dn,
        })
    }
}

/// A request for a new certificate (the flags of `keep certificate create`).
#[derive(Clone, Debug)]
pub struct CertRequest {
    /// Which profile.
    pub profile: Profile,
    /// The SUBJECT positional argument.
    pub subject: String,
    /// The optional COMMON_NAME positional argument (the thread's form).
    pub common_name: Option<String>,
    /// `--san` values, in order.
    pub sans: Vec<String>,
    /// `--eku` (leaves only).
    pub eku: Option<EkuChoice>,
    /// `--path-len` (CAs only).
    pub path_len: Option<u8>,
    /// `--not-before`.
    pub not_before: Option<TimeSpec>,
    /// `--not-after`.
    pub not_after: Option<TimeSpec>,
    /// The time the command runs (injected so tests are deterministic).
    pub now: OffsetDateTime,
}

/// A freshly made certificate, with anything the user should be told.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert: Certificate,
    /// Certificates to append for `--bundle` (the issuer chain without self-signed roots).
    pub bundle_chain: Vec<Certificate>,
    /// Warnings to print (truncated lifetime, …).
    pub warnings: Vec<String>,
}

impl Issued {
    /// PEM of the certificate, followed by its chain when `bundle` is set.
    pub fn pem(&self, bundle: bool) -> String {
        let mut out = self.cert.pem();
        if bundle {
            for c in &self.bundle_chain {
                out.push_str(&c.pem());
            }
        }
        out
    }
}

/// Classifies a SAN value: IP, URI (has `://`), email (has `@`), else DNS name.
pub fn parse_san(value: &str) -> Result<SanType, CertError> {
    let bad = |hint: &str| CertError::BadSan {
        value: value.to_owned(),
        hint: hint.to_owned(),
    };
    let v = value.trim();
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if v.contains("://") {
        return v
            .try_into()
            .map(SanType::URI)
            .map_err(|_| bad("; a URI must be ASCII"));
    }
    if v.contains('@') {
        return v
            .try_into()
            .map(SanType::Rfc822Name)
            .map_err(|_| bad("; an email address must be ASCII"));
    }
    if !is_dns_name(v) {
        let hint = if v.contains(' ') {
            "; names with spaces belong in the COMMON_NAME argument, not in a SAN"
        } else {
            ""
        };
        return Err(bad(hint));
    }
    v.try_into()
        .map(SanType::DnsName)
        .map_err(|_| bad("; a DNS name must be ASCII"))
}

/// A DNS name as certificates allow it: labels of letters, digits, `-` and `_`, an optional
/// leading `*.` wildcard, at most 253 characters.
fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    let body = s.strip_prefix("*.").unwrap_or(s);
    !body.is_empty()
        && s.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| CertError::Build(format!("no randomness: {e}")))?;
    // Positive (top bit clear) and full length (first byte non-zero): 127 bits of entropy.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The SAN values a request asks for, after step's rules: with a COMMON_NAME argument the
/// SUBJECT is always a SAN; without one, SUBJECT is the SAN only when no `--san` is given.
fn requested_sans(req: &CertRequest) -> Vec<String> {
    let mut sans: Vec<String> = Vec::new();
    let subject_is_san = req.common_name.is_some() || req.sans.is_empty();
    if subject_is_san {
        sans.push(req.subject.clone());
    }
    for s in &req.sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    sans
}

fn base_params(req: &CertRequest) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let cn = req
        .common_name
        .clone()
        .unwrap_or_else(|| req.subject.clone());
    if cn.trim().is_empty() {
        return Err(CertError::Usage("the subject must not be empty".into()));
    }
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    if req.profile.is_ca() {
        if req.eku.is_some() {
            return Err(CertError::Usage(
                "--eku does not apply to CA profiles: an EKU on a CA restricts every \
                 certificate below it"
                    .into(),
            ));
        }
        let default_len = if req.profile == Profile::RootCa { 1 } else { 0 };
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(
            req.path_len.unwrap_or(default_len),
        ));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // CAs get SANs only when asked for explicitly (step's CA templates carry none).
        for s in &req.sans {
            params.subject_alt_names.push(parse_san(s)?);
        }
    } else {
        if req.path_len.is_some() {
            return Err(CertError::Usage(
                "--path-len applies to CA profiles only".into(),
            ));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = req.eku.unwrap_or(EkuChoice::Both).purposes();
        for s in requested_sans(req) {
            params
                .subject_alt_names
                .push(parse_san(&s).map_err(|e| match e {
                CertError::BadSan { value, hint } if value == req.subject => CertError::BadSan {
                    value,
                    hint: format!(
                        "{hint}; the SUBJECT of a leaf becomes its SAN, so use a host name as \
                         SUBJECT (e.g. `keep certificate create vault.claw.internal \"Vault \
                         Server\" vault.crt vault.key …`) or give --san"
                    ),
                },
                other => other,
            })?);
        }
    }
    Ok(params)
}

/// Computes the validity window, truncating to the issuer's `not_after`.
fn validity(
    req: &CertRequest,
    issuer: Option<&Issuer>,
    warnings: &mut Vec<String>,
) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
    let now = req.now;
    let not_before = req
        .not_before
        .map(|t| t.resolve(now))
        .unwrap_or(now - lifetimes::BACKDATE);
    let default_life = if req.profile.is_ca() {
        lifetimes::CA
    } else {
        lifetimes::OFFLINE_LEAF
    };
    let mut not_after = req
        .not_after
        .map(|t| t.resolve(now))
        .unwrap_or(now + default_life);
    if let Some(iss) = issuer {
        if not_after > iss.cert.not_after {
            // A default lifetime computed a moment after the issuer's own is naturally a few
            // seconds longer; only an explicit request or a real difference deserves a warning.
            let excess = not_after - iss.cert.not_after;
            if req.not_after.is_some() || excess > Duration::days(1) {
                warnings.push(format!(
                    "the requested not-after {} is later than the issuer's ({}); the certificate \
                 is truncated to expire with its issuer",
                    crate::duration::rfc3339(not_after),
                    crate::duration::rfc3339(iss.cert.not_after)
                ));
            }
            not_after = iss.cert.not_after;
        }
        if now > iss.cert.not_after {
            warnings.push(format!(
                "the issuer expired at {}; nothing it signs will verify",
                crate::duration::rfc3339(iss.cert.not_after)
            ));
        }
    }
    if not_after <= not_before {
        return Err(CertError::EmptyValidity {
            not_before: crate::duration::rfc3339(not_before),
            not_after: crate::duration::rfc3339(not_after),
        });
    }
    Ok((not_before, not_after))
}

fn check_issuer_profile(profile: Profile, issuer: Option<&Issuer>) -> Result<(), CertError> {
    match (profile.needs_issuer(), issuer.is_some()) {
        (true, false) => Err(CertError::Usage(format!(
            "profile {profile} needs an issuer: give --ca and --ca-key{}",
            if profile == Profile::Leaf {
                " (or use --profile self-signed)"
            } else {
                ""
            }
        ))),
        (false, true) => Err(CertError::Usage(format!(
            "profile {profile} is self-signed; --ca and --ca-key do not apply (use --profile \
             {} to sign with a CA)",
            if profile == Profile::RootCa {
                "intermediate-ca"
            } else {
                "leaf"
            }
        ))),
        _ => Ok(()),
    }
}

fn finish(
    params: &CertificateParams,
    subject_key: &dyn Fn(&CertificateParams) -> Result<rcgen::Certificate, rcgen::Error>,
    issuer: Option<&Issuer>,
    warnings: Vec<String>,
) -> Result<Issued, CertError> {
    let built = subject_key(params).map_err(|e| CertError::Build(e.to_string()))?;
    let cert = Certificate::from_der(built.der(), "new certificate")
        .map_err(|e| CertError::Build(e.problem))?;
    let bundle_chain = match issuer {
        Some(iss) => std::iter::once(&iss.cert)
            .chain(iss.chain.iter())
            .filter(|c| !c.self_issued)
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    Ok(Issued {
        cert,
        bundle_chain,
        warnings,
    })
}

/// Checks a request without a key: profile/issuer agreement, names and validity window.
/// Returns the warnings `create` would print.
pub fn check_request(req: &CertRequest, issuer: Option<&Issuer>) -> Result<Vec<String>, CertError> {
    check_issuer_profile(req.profile, issuer)?;
    base_params(req)?;
    let mut warnings = Vec::new();
    validity(req, issuer, &mut warnings)?;
    Ok(warnings)
}

/// Makes a certificate for `key`, self-signed or signed by `issuer` as the profile says.
pub fn create(
    req: &CertRequest,
    key: &PrivateKey,
    issuer: Option<&Issuer>,
) -> Result<Issued, CertError> {
    check_issuer_profile(req.profile, issuer)?;
    let mut warnings = Vec::new();
    let mut params = base_params(req)?;
    let (nb, na) = validity(req, issuer, &mut warnings)?;
    params.not_before = nb;
    params.not_after = na;
    if matches!(key.key_type(), crate::KeyType::Rsa { .. }) && !req.profile.is_ca() {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
    } else if !req.profile.is_ca() {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    if let Some(iss) = issuer
        && req.profile == Profile::IntermediateCa
    {
        check_path_len(iss)?;
    }
    let pair = key.key_pair();
    finish(
        &params,
        &|p| match issuer {
            Some(iss) => p.signed_by(pair, &iss.rcgen_issuer_dn),
            None => p.self_signed(pair),
        },
        issuer,
        warnings,
    )
}

/// Refuses to put an intermediate under a CA whose pathlen is 0.
fn check_path_len(iss: &Issuer) -> Result<(), CertError> {
    let (_, x) =
        X509Certificate::from_der(&iss.cert.der).map_err(|e| CertError::Build(e.to_string()))?;
    if let Ok(Some(bc)) = x.basic_constraints()
        && bc.value.path_len_constraint == Some(0)
    {
        return Err(CertError::Usage(
            "the issuer has path length 0, so it may sign leaves only, not another CA; \
             sign the intermediate with the root"
                .into(),
        ));
    }
    Ok(())
}

/// Makes a PEM CSR for `key` (`keep certificate create --csr`).
pub fn create_csr(req: &CertRequest, key: &PrivateKey) -> Result<String, CertError> {
    let mut params = base_params(&CertRequest {
        profile: Profile::Leaf,
        eku: req.eku,
        ..req.clone()
    })?;
    // A CSR carries only the subject and SANs; the signer decides the rest.
    params.extended_key_usages.clear();
    params.is_ca = IsCa::NoCa;
    params.serial_number = None;
    params.use_authority_key_identifier_extension = false;
    let csr = params
        .serialize_request(key.key_pair())
        .map_err(|e| CertError::Build(e.to_string()))?;
    Ok(pem::encode("CERTIFICATE REQUEST", csr.der()))
}

/// Makes a PEM CSR asking for exactly the identity of the certificate `current` (its subject
/// common name and every DNS, IP, URI and email SAN, nothing added), signed by a new `key`:
/// the request an agent sends to renew (`POST /v1/pki/renew`). Unlike [`create_csr`] no
/// name is derived from another, so the server sees the same names it issued.
pub fn renewal_csr(
    current: &crate::inspect::CertInfo,
    key: &PrivateKey,
) -> Result<String, CertError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(cn) = &current.common_name {
        dn.push(DnType::CommonName, cn.clone());
    }
    params.distinguished_name = dn;
    let sans = &current.sans;
    for v in sans
        .dns
        .iter()
        .chain(&sans.ip)
        .chain(&sans.uri)
        .chain(&sans.email)
    {
        params.subject_alt_names.push(parse_san(v)?);
    }
    if params.subject_alt_names.is_empty() && current.common_name.is_none() {
        return Err(CertError::Usage(
            "the certificate has neither a common name nor a SAN to renew".into(),
        ));
    }
    params.is_ca = IsCa::NoCa;
    params.use_authority_key_identifier_extension = false;
    let csr = params
        .serialize_request(key.key_pair())
        .map_err(|e| CertError::Build(e.to_string()))?;
    Ok(pem::encode("CERTIFICATE REQUEST", csr.der()))
}

/// Options for signing a CSR (`keep certificate sign`).
#[derive(Clone, Debug)]
pub struct SignOptions {
    /// `leaf` (default) or `intermediate-ca`.
    pub profile: Profile,
    /// `--eku` for leaves.
    pub eku: Option<EkuChoice>,
    /// `--path-len` for intermediates.
    pub path_len: Option<u8>,
    /// `--not-before`.
    pub not_before: Option<TimeSpec>,
    /// `--not-after`.
    pub not_after: Option<TimeSpec>,
    /// Extra `--san` values to add to the CSR's.
    pub extra_sans: Vec<String>,
    /// The time the command runs.
    pub now: OffsetDateTime,
}

/// What a CSR asks for, read and signature-checked.
#[derive(Clone, Debug)]
pub struct CsrInfo {
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// Requested SANs as strings (DNS, IP, URI, email).
    pub sans: Vec<String>,
    /// The SubjectPublicKeyInfo DER.
    pub spki_der: Vec<u8>,
    /// Extended key usages the request asks for (`serverAuth`, `clientAuth`, `codeSigning`,
    /// …, unknown ones as dotted OIDs); empty when it asks for none. [`sign_csr`] ignores them
    /// (the profile decides), but an online CA refuses a CSR that asks for more than its role
    /// allows rather than silently issuing something else.
    pub requested_ekus: Vec<String>,
}

/// Reads a PEM (or DER) CSR and checks its self-signature, so a CSR cannot name a key its
/// sender does not hold.
pub fn read_csr(input: &[u8], source: &Source) -> Result<CsrInfo, CertError> {
    let der: Vec<u8> = match pem::parse(input, source) {
        Ok(blocks) => {
            let b = blocks
                .iter()
                .find(|b| b.label == "CERTIFICATE REQUEST" || b.label == "NEW CERTIFICATE REQUEST")
                .ok_or_else(|| CertError::BadCsr {
                    origin: source.clone(),
                    problem: format!(
                        "no CERTIFICATE REQUEST block (saw {})",
                        blocks
                            .iter()
                            .map(|b| b.label.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })?;
            b.der.to_vec()
        }
        Err(e) if input.first() == Some(&0x30) => {
            let _ = e;
            input.to_vec()
        }
        Err(e) => return Err(e.into()),
    };
    let bad = |problem: String| CertError::BadCsr {
        origin: source.clone(),
        problem,
    };
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| bad(format!("not a valid certificate request ({e})")))?;
    csr.verify_signature().map_err(|_| {
        bad("the request's signature does not verify; it was altered or is not self-signed".into())
    })?;
    let info = &csr.certification_request_info;
    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(str::to_owned);
    let mut sans = Vec::new();
    let mut requested_ekus = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::ExtendedKeyUsage(eku) = ext {
                for (set, name) in [
                    (eku.any, "anyExtendedKeyUsage"),
                    (eku.server_auth, "serverAuth"),
                    (eku.client_auth, "clientAuth"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                ] {
                    if set {
                        requested_ekus.push(name.to_owned());
                    }
                }
                requested_ekus.extend(eku.other.iter().map(|o| o.to_id_string()));
            }
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for gn in &san.general_names {
                    match gn {
                        GeneralName::DNSName(d) => sans.push((*d).to_owned()),
                        GeneralName::RFC822Name(e) => sans.push((*e).to_owned()),
                        GeneralName::URI(u) => sans.push((*u).to_owned()),
                        GeneralName::IPAddress(b) => {
                            let ip = match b.len() {
                                4 => <[u8; 4]>::try_from(*b).map(IpAddr::from).ok(),
                                16 => <[u8; 16]>::try_from(*b).map(IpAddr::from).ok(),
                                _ => None,
                            };
                            match ip {
                                Some(ip) => sans.push(ip.to_string()),
                                None => return Err(bad("malformed IP address SAN".into())),
                            }
                        }
                        other => {
                            return Err(bad(format!(
                                "unsupported SAN type in the request: {other:?}"
                            )));
                        }
                    }
                }
            }
        }
    }
    Ok(CsrInfo {
        common_name,
        sans,
        spki_der: info.subject_pki.raw.to_vec(),
        requested_ekus,
    })
}

/// Signs a CSR with `issuer`. Only the CSR's subject CN, SANs and public key are taken from it;
/// every extension that grants power (CA flag, key usage, EKU) comes from the profile.
pub fn sign_csr(csr: &CsrInfo, opts: &SignOptions, issuer: &Issuer) -> Result<Issued, CertError> {
    if !matches!(opts.profile, Profile::Leaf | Profile::IntermediateCa) {
        return Err(CertError::Usage(
            "a CSR can be signed as a leaf or an intermediate-ca".into(),
        ));
    }
    let subject = csr
        .common_name
        .clone()
        .or_else(|| csr.sans.first().cloned())
        .ok_or_else(|| CertError::Usage("the CSR has neither a common name nor a SAN".into()))?;
    let mut sans = csr.sans.clone();
    for s in &opts.extra_sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    let subject_is_valid_san = parse_san(&subject).is_ok();
    let req = CertRequest {
        profile: opts.profile,
        subject: subject.clone(),
        common_name: None,
        sans: if sans.is_empty() && !subject_is_valid_san {
            return Err(CertError::Usage(format!(
                "the CSR has no SAN and its common name {subject:?} is not a host name; a leaf \
                 needs a SAN: add one with --san"
            )));
        } else {
            sans
        },
        eku: opts.eku,
        path_len: opts.path_len,
        not_before: opts.not_before,
        not_after: opts.not_after,
        now: opts.now,
    };
    let mut params = base_params(&req)?;
    if opts.profile == Profile::IntermediateCa {
        check_path_len(issuer)?;
    }
    let mut warnings = Vec::new();
    let (nb, na) = validity(&req, Some(issuer), &mut warnings)?;
    params.not_before = nb;
    params.not_after = na;
    let spki = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der)
        .map_err(|e| CertError::Build(format!("unsupported public key in the CSR ({e})")))?;
    if !opts.profile.is_ca() {
        params.key_usages = if crate::key::rsa_bits(&csr.spki_der).is_some() {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
    }
    finish(
        &params,
        &|p| p.signed_by(&spki, &issuer.rcgen_issuer_dn),
        Some(issuer),
        warnings,
    )
}

/// Everything an online CA decides about a leaf it issues for someone else's public key: the
/// names, the purposes and the exact validity window. Unlike [`CertRequest`] nothing is
/// inferred (no subject-becomes-SAN rule, no default lifetime): the caller has already checked
/// every value against its policy, and the certificate says exactly that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafTemplate {
    /// Subject common name (`None`: an empty subject, the identity lives in the SANs).
    pub common_name: Option<String>,
    /// SAN values (DNS names, IP addresses, URIs, email addresses), classified by
    /// [`parse_san`].
    pub sans: Vec<String>,
    /// Extended key usages.
    pub eku: EkuChoice,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity; truncated to the issuer's `not_after` (with a warning) if later.
    pub not_after: OffsetDateTime,
}

/// Issues a leaf for `spki_der` (a DER SubjectPublicKeyInfo, e.g. [`CsrInfo::spki_der`]) from
/// `template`, signed by `issuer`. Key usage follows the key type (RSA also gets
/// keyEncipherment), as [`sign_csr`] does; the serial is 127 random bits.
pub fn issue_for_public_key(
    spki_der: &[u8],
    template: &LeafTemplate,
    issuer: &Issuer,
) -> Result<Issued, CertError> {
    if template.common_name.is_none() && template.sans.is_empty() {
        return Err(CertError::Usage(
            "a certificate needs a common name or at least one SAN".into(),
        ));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(cn) = &template.common_name {
        if cn.trim().is_empty() {
            return Err(CertError::Usage("the common name must not be empty".into()));
        }
        dn.push(DnType::CommonName, cn.clone());
    }
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = template.eku.purposes();
    for s in &template.sans {
        params.subject_alt_names.push(parse_san(s)?);
    }
    let mut warnings = Vec::new();
    let mut not_after = template.not_after;
    if not_after > issuer.cert.not_after {
        warnings.push(format!(
            "the requested not-after {} is later than the issuer's ({}); the certificate is \
             truncated to expire with its issuer",
            crate::duration::rfc3339(not_after),
            crate::duration::rfc3339(issuer.cert.not_after)
        ));
        not_after = issuer.cert.not_after;
    }
    if not_after <= template.not_before {
        return Err(CertError::EmptyValidity {
            not_before: crate::duration::rfc3339(template.not_before),
            not_after: crate::duration::rfc3339(not_after),
        });
    }
    params.not_before = template.not_before;
    params.not_after = not_after;
    params.key_usages = if crate::key::rsa_bits(spki_der).is_some() {
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    let spki = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| CertError::Build(format!("unsupported public key ({e})")))?;
    finish(
        &params,
        &|p| p.signed_by(&spki, &issuer.rcgen_issuer_dn),
        Some(issuer),
        warnings,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::KeyType;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn req(profile: Profile, subject: &str) -> CertRequest {
        CertRequest {
            profile,
            subject: subject.into(),
            common_name: None,
            sans: vec![],
            eku: None,
            path_len: None,
            not_before: None,
            not_after: None,
            now: now(),
        }
    }

    fn root() -> Issuer {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut r = req(Profile::RootCa, "root.claw.internal");
        r.common_name = Some("Claw Root CA".into());
        let issued = create(&r, &key, None).unwrap();
        Issuer::new(
            issued.cert.pem().as_bytes(),
            &Source::Other("root".into()),
            key,
        )
        .unwrap()
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        X509Certificate::from_der(der).unwrap().1
    }

    fn dns_sans(x: &X509Certificate<'_>) -> Vec<String> {
        x.subject_alternative_name()
            .unwrap()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|g| match g {
                        GeneralName::DNSName(d) => format!("DNS:{d}"),
                        GeneralName::IPAddress(b) if b.len() == 4 => {
                            format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
                        }
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn thread_form_root_has_cn_and_no_san() {
        let issuer = root();
        let x = parse(&issuer.cert.der);
        assert_eq!(issuer.cert.common_name.as_deref(), Some("Claw Root CA"));
        assert!(x.subject_alternative_name().unwrap().is_none());
        let bc = x.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(1));
        assert!(x.extended_key_usage().unwrap().is_none());
        let life = issuer.cert.lifetime();
        assert!(life >= Duration::days(3650) && life <= Duration::days(3651));
    }

    #[test]
    fn thread_form_leaf_gets_subject_as_san_and_both_ekus() {
        let issuer = root();
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut r = req(Profile::Leaf, "agent.claw.internal");
        r.common_name = Some("OpenClaw Agent".into());
        let issued = create(&r, &key, Some(&issuer)).unwrap();
        let x = parse(&issued.cert.der);
        assert_eq!(issued.cert.common_name.as_deref(), Some("OpenClaw Agent"));
        assert_eq!(dns_sans(&x), vec!["DNS:agent.claw.internal".to_string()]);
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.server_auth);
        assert!(!issued.cert.is_ca);
        assert!(issued.warnings.is_empty(), "{:?}", issued.warnings);
        let life = issued.cert.lifetime();
        assert!(life >= Duration::days(90) && life <= Duration::days(90) + Duration::minutes(2));
    }

    #[test]
    fn explicit_sans_replace_the_subject_in_steps_three_argument_form() {
        let issuer = root();
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut r = req(Profile::Leaf, "vault");
        r.sans = vec!["vault.claw.internal".into(), "10.0.0.5".into()];
        let issued = create(&r, &key, Some(&issuer)).unwrap();
        let sans = dns_sans(&parse(&issued.cert.der));
        assert_eq!(sans, vec!["DNS:vault.claw.internal", "IP:10.0.0.5"]);
    }

    #[test]
    fn san_kinds_are_detected() {
        assert!(matches!(
            parse_san("10.1.2.3").unwrap(),
            SanType::IpAddress(_)
        ));
        assert!(matches!(parse_san("::1").unwrap(), SanType::IpAddress(_)));
        assert!(matches!(
            parse_san("spiffe://claw.internal/agent/a").unwrap(),
            SanType::URI(_)
        ));
        assert!(matches!(
            parse_san("ops@claw.internal").unwrap(),
            SanType::Rfc822Name(_)
        ));
        assert!(matches!(
            parse_san("*.claw.internal").unwrap(),
            SanType::DnsName(_)
        ));
        let e = parse_san("Vault Server").unwrap_err().to_string();
        assert!(e.contains("COMMON_NAME"), "{e}");
        assert!(parse_san("bad..name").is_err());
    }

    #[test]
    fn a_leaf_whose_subject_is_not_a_name_explains_the_two_forms() {
        let issuer = root();
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let e = create(&req(Profile::Leaf, "Vault Server"), &key, Some(&issuer))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use a host name as SUBJECT"), "{e}");
    }

    #[test]
    fn leaf_is_truncated_to_issuer_expiry_with_a_warning() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut r = req(Profile::RootCa, "short root");
        r.not_after = Some(TimeSpec::Relative(Duration::days(10)));
        let root_cert = create(&r, &key, None).unwrap();
        let issuer = Issuer::new(
            root_cert.cert.pem().as_bytes(),
            &Source::Other("r".into()),
            key,
        )
        .unwrap();
        let leaf_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let issued = create(&req(Profile::Leaf, "a.test"), &leaf_key, Some(&issuer)).unwrap();
        assert_eq!(issued.cert.not_after, issuer.cert.not_after);
        assert!(
            issued.warnings[0].contains("truncated"),
            "{:?}",
            issued.warnings
        );
    }

    #[test]
    fn default_lifetimes_truncate_quietly_by_seconds() {
        let root = root();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let inter = create(&req(Profile::IntermediateCa, "Inter"), &key, Some(&root)).unwrap();
        assert_eq!(inter.cert.not_after, root.cert.not_after);
        assert!(inter.warnings.is_empty(), "{:?}", inter.warnings);
    }

    #[test]
    fn profile_and_issuer_must_agree() {
        let issuer = root();
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let e = create(&req(Profile::Leaf, "a.test"), &key, None).unwrap_err();
        assert!(e.to_string().contains("--profile self-signed"), "{e}");
        let e = create(&req(Profile::RootCa, "r"), &key, Some(&issuer)).unwrap_err();
        assert!(e.to_string().contains("do not apply"), "{e}");
        let mut r = req(Profile::RootCa, "r");
        r.eku = Some(EkuChoice::Client);
        assert!(
            create(&r, &key, None)
                .unwrap_err()
                .to_string()
                .contains("--eku")
        );
    }

    #[test]
    fn past_validity_makes_expired_certs_and_inverted_windows_fail() {
        let issuer = root();
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let mut r = req(Profile::Leaf, "old.test");
        r.not_before = Some(TimeSpec::Relative(Duration::days(-10)));
        r.not_after = Some(TimeSpec::Relative(Duration::days(-1)));
        let issued = create(&r, &key, Some(&issuer)).unwrap();
        assert!(issued.cert.not_after < OffsetDateTime::now_utc());
        r.not_after = Some(TimeSpec::Relative(Duration::days(-20)));
        assert!(matches!(
            create(&r, &key, Some(&issuer)),
            Err(CertError::EmptyValidity { .. })
        ));
    }

    #[test]
    fn issuer_checks_ca_flag_and_key_match() {
        let issuer = root();
        let leaf_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let leaf = create(&req(Profile::Leaf, "a.test"), &leaf_key, Some(&issuer)).unwrap();
        let e = Issuer::new(
            leaf.cert.pem().as_bytes(),
            &Source::Other("leaf".into()),
            leaf_key,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a CA"), "{e}");
        let other = PrivateKey::generate(KeyType::EcP256).unwrap();
        let e = Issuer::new(
            issuer.cert.pem().as_bytes(),
            &Source::Other("root".into()),
            other,
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn intermediate_under_pathlen_zero_is_refused() {
        let root = root();
        let ikey = PrivateKey::generate(KeyType::EcP256).unwrap();
        let inter = create(
            &req(Profile::IntermediateCa, "Claw Intermediate"),
            &ikey,
            Some(&root),
        )
        .unwrap();
        let x = parse(&inter.cert.der);
        assert_eq!(
            x.basic_constraints()
                .unwrap()
                .unwrap()
                .value
                .path_len_constraint,
            Some(0)
        );
        let inter_issuer = Issuer::new(
            inter.cert.pem().as_bytes(),
            &Source::Other("i".into()),
            ikey,
        )
        .unwrap();
        let k = PrivateKey::generate(KeyType::EcP256).unwrap();
        let e = create(
            &req(Profile::IntermediateCa, "sub"),
            &k,
            Some(&inter_issuer),
        )
        .unwrap_err();
        assert!(e.to_string().contains("path length 0"), "{e}");
        // Leaves under the intermediate bundle the intermediate but not the root.
        let leaf = create(&req(Profile::Leaf, "a.test"), &k, Some(&inter_issuer)).unwrap();
        assert_eq!(leaf.bundle_chain.len(), 1);
        assert!(leaf.pem(true).matches("BEGIN CERTIFICATE").count() == 2);
    }

    #[test]
    fn csr_round_trip_takes_only_names_and_key_from_the_request() {
        let issuer = root();
        let key = PrivateKey::generate(KeyType::Ed25519).unwrap();
        let mut r = req(Profile::Leaf, "agent-07.claw.internal");
        r.common_name = Some("agent-07".into());
        let csr_pem = create_csr(&r, &key).unwrap();
        let csr = read_csr(csr_pem.as_bytes(), &Source::Other("csr".into())).unwrap();
        assert_eq!(csr.common_name.as_deref(), Some("agent-07"));
        assert_eq!(csr.sans, vec!["agent-07.claw.internal"]);
        let opts = SignOptions {
            profile: Profile::Leaf,
            eku: Some(EkuChoice::Client),
            path_len: None,
            not_before: None,
            not_after: Some(TimeSpec::Relative(Duration::hours(24))),
            extra_sans: vec![],
            now: now(),
        };
        let issued = sign_csr(&csr, &opts, &issuer).unwrap();
        assert!(key.matches_certificate(&issued.cert.der));
        let x = parse(&issued.cert.der);
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(issued.cert.common_name.as_deref(), Some("agent-07"));
        assert!(issued.cert.lifetime() <= Duration::hours(24) + Duration::minutes(2));
    }

    #[test]
    fn tampered_csr_is_refused() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let csr_pem = create_csr(&req(Profile::Leaf, "a.test"), &key).unwrap();
        let mut der = pem::parse(csr_pem.as_bytes(), &Source::Other("c".into())).unwrap()[0]
            .der
            .to_vec();
        // Flip a byte inside the DNS name "a.test".
        let pos = der.windows(6).position(|w| w == b"a.test").unwrap();
        der[pos] = b'b';
        let e = read_csr(&der, &Source::Other("csr".into())).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
    }
}
