//! What a certificate says, in the words `keep certificate inspect` prints.
//!
//! [`inspect`] turns certificate DER into a [`CertInfo`]: plain strings and numbers that print as
//! text ([`render_text`]) or serialize as JSON (`--format json`). Names follow the conventions
//! users already know from `step certificate inspect` and `openssl x509 -text`: RFC 4514 subjects
//! (`CN=vault.claw.internal`), colon-separated hex serials, Go's signature-algorithm names
//! (`ECDSA-SHA256`), RFC 5280's key-usage names (`digitalSignature`), and a fingerprint that
//! equals `step certificate fingerprint`.
//!
//! The lint rules ([`crate::lint`]) read the same extraction plus a few facts that do not belong
//! in user-facing output (extension criticality, the raw serial), so both always agree.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use x509_parser::asn1_rs::{Any, Oid, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::{
    DistributionPointName, GeneralName, GeneralSubtree, ParsedExtension, X509Extension,
};
use x509_parser::prelude::FromDer;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AttributeTypeAndValue, SubjectPublicKeyInfo, X509Name};

use crate::CertParseError;

/// Everything `keep certificate inspect` shows about one certificate.
///
/// Every field is already formatted for people (and for `--format json`, where the field names
/// are the snake_case names below).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    /// X.509 version, 1-based as printed by openssl and step (`3` for v3).
    pub version: u32,
    /// Serial number as lowercase colon-separated hex without a leading sign byte
    /// (`27:f6:a0:…`); a negative serial (invalid, but seen in the wild) starts with `-`.
    pub serial: String,
    /// Subject distinguished name in RFC 4514 form, most specific first (`CN=vault,O=Claw`).
    pub subject: String,
    /// The subject's first common name, if it has one.
    pub common_name: Option<String>,
    /// Issuer distinguished name, in the same form as `subject`.
    pub issuer: String,
    /// Start of validity, RFC 3339 in UTC (`2026-01-02T03:04:05Z`).
    pub not_before: String,
    /// End of validity, RFC 3339 in UTC.
    pub not_after: String,
    /// `not_after - not_before` in seconds.
    pub lifetime_seconds: i64,
    /// Issuer equals subject and the signature verifies with the certificate's own key
    /// (when the algorithm cannot be checked here, matching names and key ids decide).
    pub self_signed: bool,
    /// basicConstraints says `cA=TRUE`.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint, when present.
    pub path_len: Option<u32>,
    /// keyUsage bits by their RFC 5280 names (`digitalSignature`, `keyCertSign`, …); empty
    /// when the extension is absent.
    pub key_usage: Vec<String>,
    /// extendedKeyUsage purposes (`serverAuth`, `clientAuth`, …; unknown ones as dotted OIDs);
    /// empty when the extension is absent.
    pub extended_key_usage: Vec<String>,
    /// subjectAltName entries by kind.
    pub sans: Sans,
    /// The subject public key.
    pub public_key: PublicKeyInfo,
    /// Signature algorithm in Go's spelling (`ECDSA-SHA256`, `SHA256-RSA`, `Ed25519`, …), or the
    /// dotted OID when unknown.
    pub signature_algorithm: String,
    /// subjectKeyIdentifier as lowercase colon-separated hex.
    pub subject_key_id: Option<String>,
    /// authorityKeyIdentifier keyIdentifier as lowercase colon-separated hex.
    pub authority_key_id: Option<String>,
    /// SHA-256 over the DER, lowercase hex without colons (as `step certificate fingerprint`).
    pub fingerprint_sha256: String,
    /// nameConstraints, when present (CA certificates only, in practice).
    pub name_constraints: Option<NameConstraintsInfo>,
    /// CRL distribution point names (usually `http://…` URIs).
    pub crl_distribution_points: Vec<String>,
}

/// subjectAltName entries, grouped by kind. Other kinds (otherName, directoryName) are omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sans {
    /// dNSName entries (`vault.claw.internal`, `*.claw.internal`).
    pub dns: Vec<String>,
    /// iPAddress entries in their usual textual form (`10.0.0.7`, `::1`).
    pub ip: Vec<String>,
    /// uniformResourceIdentifier entries (`spiffe://claw/agent`).
    pub uri: Vec<String>,
    /// rfc822Name (email) entries.
    pub email: Vec<String>,
}

impl Sans {
    /// True when no entry of any of the four kinds is present.
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ip.is_empty() && self.uri.is_empty() && self.email.is_empty()
    }
}

/// The subject public key, as `--kty`/`--curve`/`--size` would name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublicKeyInfo {
    /// `ECDSA`, `RSA`, `Ed25519`, `Ed448`, `DSA`, or the dotted OID of anything else.
    pub algorithm: String,
    /// Named curve for EC keys: `P-256`, `P-384`, `P-521`, or another curve's name or OID.
    pub curve: Option<String>,
    /// Key size in bits (RSA modulus length, curve size; 256 for Ed25519); 0 when unknown.
    pub bits: u32,
}

/// nameConstraints subtrees, each as `DNS:.claw.internal`, `IP:10.0.0.0/8`, `email:…`,
/// `URI:…` or `DirName:…`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NameConstraintsInfo {
    /// permittedSubtrees.
    pub permitted: Vec<String>,
    /// excludedSubtrees.
    pub excluded: Vec<String>,
}

/// Parses certificate DER and extracts what `keep certificate inspect` shows.
///
/// The error's `source_desc` is `"certificate"`; callers that know the file or field should
/// replace it.
pub fn inspect(der: &[u8]) -> Result<CertInfo, CertParseError> {
    analyze(der).map(|a| a.info)
}

/// The public key of a DER SubjectPublicKeyInfo (a CSR's or a certificate's), named as
/// [`CertInfo::public_key`] names it; an online CA checks it against a role's `key_type`.
pub fn spki_info(spki_der: &[u8]) -> Result<PublicKeyInfo, CertParseError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| CertParseError {
        source_desc: "public key".into(),
        problem: format!("not a valid SubjectPublicKeyInfo ({e})"),
    })?;
    Ok(public_key_info(&spki))
}

/// SHA-256 over `der`, as lowercase hex without separators (`step certificate fingerprint`;
/// openssl prints the same bytes upper-case and colon-separated).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// A short multi-line summary in the spirit of `step certificate inspect`, with the expiry put
/// in relation to `now` (`Expires: … (in 89 days)` or `(expired 3 days ago)`).
pub fn render_text(info: &CertInfo, now: OffsetDateTime) -> String {
    // Writing to a String cannot fail; `let _ =` keeps that out of every line.
    let mut out = String::new();
    let yes_no = |b: bool| if b { "yes" } else { "no" };

    let _ = writeln!(out, "Certificate:");
    let _ = writeln!(out, "    Subject:             {}", info.subject);
    let _ = writeln!(out, "    Issuer:              {}", info.issuer);
    let _ = writeln!(out, "    Serial Number:       {}", info.serial);
    let _ = writeln!(out, "    Version:             {}", info.version);

    let not_before_note = match parse_rfc3339(&info.not_before) {
        Some(nb) if nb > now => format!(" (not yet valid: starts in {})", human_duration(nb - now)),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "    Not Before:          {}{not_before_note}",
        info.not_before
    );
    let expiry_note = match parse_rfc3339(&info.not_after) {
        Some(na) if na > now => format!(" (in {})", human_duration(na - now)),
        Some(na) => format!(" (expired {} ago)", human_duration(now - na)),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "    Expires:             {}{expiry_note}",
        info.not_after
    );
    let _ = writeln!(
        out,
        "    Lifetime:            {}",
        human_duration(Duration::seconds(info.lifetime_seconds))
    );

    let key = &info.public_key;
    let curve = key
        .curve
        .as_deref()
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    let bits = if key.bits > 0 {
        format!(" ({} bit)", key.bits)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "    Public Key:          {}{curve}{bits}",
        key.algorithm
    );
    let _ = writeln!(out, "    Signature Algorithm: {}", info.signature_algorithm);

    let ca = match (info.is_ca, info.path_len) {
        (true, Some(n)) => format!("yes (pathlen {n})"),
        (true, None) => "yes".to_owned(),
        (false, _) => "no".to_owned(),
    };
    let _ = writeln!(out, "    CA:                  {ca}");
    let _ = writeln!(out, "    Self-signed:         {}", yes_no(info.self_signed));
    let _ = writeln!(
        out,
        "    Key Usage:           {}",
        list_or_none(&info.key_usage)
    );
    let _ = writeln!(
        out,
        "    Extended Key Usage:  {}",
        list_or_none(&info.extended_key_usage)
    );

    if info.sans.is_empty() {
        let _ = writeln!(out, "    Subject Alt Names:   (none)");
    } else {
        let _ = writeln!(out, "    Subject Alt Names:");
        let kinds = [
            ("DNS", &info.sans.dns),
            ("IP", &info.sans.ip),
            ("URI", &info.sans.uri),
            ("Email", &info.sans.email),
        ];
        for (kind, names) in kinds {
            for name in names {
                let _ = writeln!(out, "        {kind}: {name}");
            }
        }
    }
    if let Some(nc) = &info.name_constraints {
        let _ = writeln!(out, "    Name Constraints:");
        let _ = writeln!(out, "        Permitted: {}", list_or_none(&nc.permitted));
        let _ = writeln!(out, "        Excluded:  {}", list_or_none(&nc.excluded));
    }
    if !info.crl_distribution_points.is_empty() {
        let _ = writeln!(
            out,
            "    CRL Distribution:    {}",
            info.crl_distribution_points.join(", ")
        );
    }
    if let Some(ski) = &info.subject_key_id {
        let _ = writeln!(out, "    Subject Key ID:      {ski}");
    }
    if let Some(aki) = &info.authority_key_id {
        let _ = writeln!(out, "    Authority Key ID:    {aki}");
    }
    let _ = writeln!(out, "    SHA-256 Fingerprint: {}", info.fingerprint_sha256);
    out
}

/// A duration in the largest sensible units, truncated: `89 days`, `23 hours`, `5 minutes`,
/// `1 year 2 days`, `12 seconds`. Years are 365 days. The sign is ignored, so callers phrase
/// the direction themselves (`in …`, `… ago`).
pub fn human_duration(d: Duration) -> String {
    const DAY: u64 = 86_400;
    let secs = d.whole_seconds().unsigned_abs();
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    // Round to the nearest displayed unit: a 90-day cert made a second ago reads "90 days".
    let days = (secs + DAY / 2) / DAY;
    if days >= 365 {
        let years = plural(days / 365, "year");
        match days % 365 {
            0 => years,
            rest => format!("{years} {}", plural(rest, "day")),
        }
    } else if secs >= DAY {
        plural(days, "day")
    } else if secs >= 3600 {
        plural((secs + 1800) / 3600, "hour")
    } else if secs >= 60 {
        plural((secs + 30) / 60, "minute")
    } else {
        plural(secs, "second")
    }
}

/// [`CertInfo`] plus the facts the lint rules need but users do not want printed.
pub(crate) struct Analysis {
    pub(crate) info: CertInfo,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    /// Serial INTEGER content octets, two's complement, as encoded.
    pub(crate) raw_serial: Vec<u8>,
    pub(crate) has_san_ext: bool,
    pub(crate) has_key_usage_ext: bool,
    pub(crate) has_eku_ext: bool,
    /// Criticality of basicConstraints, when present.
    pub(crate) basic_constraints_critical: Option<bool>,
    /// Hash inside the signature algorithm (`MD5`, `SHA-1`, `SHA-256`…), when known.
    pub(crate) signature_hash: Option<&'static str>,
    pub(crate) extension_problems: Vec<ExtensionProblem>,
}

/// Something wrong with an extension's envelope rather than with its meaning.
pub(crate) enum ExtensionProblem {
    /// The extension value does not parse as its type.
    Malformed { name: String },
    /// The same extension appears more than once (RFC 5280 forbids it).
    Duplicate { name: String },
    /// Critical, but rustls/webpki does not process it, so it rejects the certificate.
    UnsupportedCritical { name: String },
}

/// Parses `der` once and extracts both the printable info and the lint facts.
pub(crate) fn analyze(der: &[u8]) -> Result<Analysis, CertParseError> {
    let problem = |problem: String| CertParseError {
        source_desc: "certificate".to_owned(),
        problem,
    };
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| problem(format!("not an X.509 certificate in DER form ({e})")))?;
    if !rest.is_empty() {
        return Err(problem(format!(
            "{} unexpected bytes after the certificate",
            rest.len()
        )));
    }

    let ext = Extensions::collect(cert.extensions());
    let public_key = public_key_info(cert.public_key());
    let (signature_algorithm, signature_hash) = signature_algorithm(&cert);
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    let self_signed = is_self_signed(&cert, &public_key, &ext);

    let info = CertInfo {
        version: cert.version().0.saturating_add(1),
        serial: format_serial(cert.raw_serial()),
        subject: rfc4514(cert.subject()),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .map(attribute_value),
        issuer: rfc4514(cert.issuer()),
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        lifetime_seconds: (not_after - not_before).whole_seconds(),
        self_signed,
        is_ca: ext.is_ca,
        path_len: ext.path_len,
        key_usage: ext.key_usage.clone(),
        extended_key_usage: ext.extended_key_usage.clone(),
        sans: ext.sans.clone(),
        public_key,
        signature_algorithm,
        subject_key_id: ext.subject_key_id.clone(),
        authority_key_id: ext.authority_key_id.clone(),
        fingerprint_sha256: fingerprint_sha256(der),
        name_constraints: ext.name_constraints.clone(),
        crl_distribution_points: ext.crl_distribution_points.clone(),
    };
    Ok(Analysis {
        info,
        not_before,
        not_after,
        raw_serial: cert.raw_serial().to_vec(),
        has_san_ext: ext.has_san,
        has_key_usage_ext: ext.has_key_usage,
        has_eku_ext: ext.has_eku,
        basic_constraints_critical: ext.basic_constraints_critical,
        signature_hash,
        extension_problems: ext.problems,
    })
}

/// The extensions keep cares about, gathered in one pass.
#[derive(Default)]
struct Extensions {
    is_ca: bool,
    path_len: Option<u32>,
    basic_constraints_critical: Option<bool>,
    has_key_usage: bool,
    key_usage: Vec<String>,
    has_eku: bool,
    extended_key_usage: Vec<String>,
    has_san: bool,
    sans: Sans,
    subject_key_id: Option<String>,
    authority_key_id: Option<String>,
    name_constraints: Option<NameConstraintsInfo>,
    crl_distribution_points: Vec<String>,
    problems: Vec<ExtensionProblem>,
}

/// Extensions rustls/webpki understands; a critical extension outside this list makes it reject
/// the certificate (`UnsupportedCriticalExtension`). Go's list is a superset.
const WEBPKI_CRITICAL_OK: &[&str] = &[
    "2.5.29.15", // keyUsage
    "2.5.29.17", // subjectAltName
    "2.5.29.19", // basicConstraints
    "2.5.29.30", // nameConstraints
    "2.5.29.31", // cRLDistributionPoints
    "2.5.29.37", // extKeyUsage
];

impl Extensions {
    fn collect(extensions: &[X509Extension<'_>]) -> Self {
        let mut out = Extensions::default();
        let mut seen: Vec<String> = Vec::new();
        for ext in extensions {
            let oid = ext.oid.to_id_string();
            let name = extension_name(&oid);
            if seen.contains(&oid) {
                // The first occurrence wins for display; the duplicate is a lint error.
                if !out
                    .problems
                    .iter()
                    .any(|p| matches!(p, ExtensionProblem::Duplicate { name: n } if *n == name))
                {
                    out.problems.push(ExtensionProblem::Duplicate { name });
                }
                continue;
            }
            seen.push(oid.clone());
            if ext.critical && !WEBPKI_CRITICAL_OK.contains(&oid.as_str()) {
                out.problems
                    .push(ExtensionProblem::UnsupportedCritical { name: name.clone() });
            }
            out.absorb(ext, name);
        }
        out
    }

    fn absorb(&mut self, ext: &X509Extension<'_>, name: String) {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                self.is_ca = bc.ca;
                self.path_len = bc.path_len_constraint;
                self.basic_constraints_critical = Some(ext.critical);
            }
            ParsedExtension::KeyUsage(ku) => {
                self.has_key_usage = true;
                self.key_usage = KEY_USAGE_NAMES
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| ku.flags >> bit & 1 == 1)
                    .map(|(_, name)| (*name).to_owned())
                    .collect();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                self.has_eku = true;
                let known = [
                    (eku.server_auth, "serverAuth"),
                    (eku.client_auth, "clientAuth"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                    (eku.any, "anyExtendedKeyUsage"),
                ];
                self.extended_key_usage = known
                    .iter()
                    .filter(|(present, _)| *present)
                    .map(|(_, name)| (*name).to_owned())
                    .chain(eku.other.iter().map(Oid::to_id_string))
                    .collect();
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                self.has_san = true;
                for gn in &san.general_names {
                    match gn {
                        GeneralName::DNSName(s) => self.sans.dns.push((*s).to_owned()),
                        GeneralName::IPAddress(b) => self.sans.ip.push(ip_string(b)),
                        GeneralName::URI(s) => self.sans.uri.push((*s).to_owned()),
                        GeneralName::RFC822Name(s) => self.sans.email.push((*s).to_owned()),
                        _ => {}
                    }
                }
            }
            ParsedExtension::SubjectKeyIdentifier(kid) => {
                self.subject_key_id = Some(colon_hex(kid.0));
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                self.authority_key_id = aki.key_identifier.as_ref().map(|k| colon_hex(k.0));
            }
            ParsedExtension::NameConstraints(nc) => {
                let subtrees = |t: &Option<Vec<GeneralSubtree<'_>>>| {
                    t.iter()
                        .flatten()
                        .map(|s| name_constraint_string(&s.base))
                        .collect()
                };
                self.name_constraints = Some(NameConstraintsInfo {
                    permitted: subtrees(&nc.permitted_subtrees),
                    excluded: subtrees(&nc.excluded_subtrees),
                });
            }
            ParsedExtension::CRLDistributionPoints(points) => {
                for point in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point
                    {
                        self.crl_distribution_points
                            .extend(names.iter().map(general_name_string));
                    }
                }
            }
            ParsedExtension::ParseError { .. } => {
                self.problems.push(ExtensionProblem::Malformed { name });
            }
            _ => {}
        }
    }
}

/// keyUsage bit names in bit order (RFC 5280 4.2.1.3).
const KEY_USAGE_NAMES: [&str; 9] = [
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];

fn extension_name(oid: &str) -> String {
    let name = match oid {
        "2.5.29.14" => "subjectKeyIdentifier",
        "2.5.29.15" => "keyUsage",
        "2.5.29.17" => "subjectAltName",
        "2.5.29.18" => "issuerAltName",
        "2.5.29.19" => "basicConstraints",
        "2.5.29.30" => "nameConstraints",
        "2.5.29.31" => "cRLDistributionPoints",
        "2.5.29.32" => "certificatePolicies",
        "2.5.29.33" => "policyMappings",
        "2.5.29.35" => "authorityKeyIdentifier",
        "2.5.29.36" => "policyConstraints",
        "2.5.29.37" => "extKeyUsage",
        "2.5.29.54" => "inhibitAnyPolicy",
        "1.3.6.1.5.5.7.1.1" => "authorityInfoAccess",
        "1.3.6.1.4.1.11129.2.4.2" => "signedCertificateTimestampList",
        _ => return oid.to_owned(),
    };
    format!("{name} ({oid})")
}

/// Self-signed means "issued by itself": same name, and its own key verifies the signature.
fn is_self_signed(cert: &X509Certificate<'_>, key: &PublicKeyInfo, ext: &Extensions) -> bool {
    if cert.issuer().as_raw() != cert.subject().as_raw() {
        return false;
    }
    if let (Some(aki), Some(ski)) = (&ext.authority_key_id, &ext.subject_key_id)
        && aki != ski
    {
        // Same name, different key: a CA re-keyed under its old name issued this one.
        return false;
    }
    match cert.verify_signature(None) {
        Ok(()) => true,
        // aws-lc refuses RSA keys outside 2048..=8192 bits for SHA-2 signatures and reports it
        // as a failed verification; for those the names and key ids above must decide.
        Err(X509Error::SignatureVerificationError) => {
            key.algorithm == "RSA" && !(2048..=8192).contains(&key.bits)
        }
        // An algorithm aws-lc cannot check here (P-521, MD5, DSA, …): names and key ids decide.
        Err(_) => true,
    }
}

fn public_key_info(spki: &SubjectPublicKeyInfo<'_>) -> PublicKeyInfo {
    let oid = spki.algorithm.algorithm.to_id_string();
    let key = |algorithm: &str, curve: Option<String>, bits: u32| PublicKeyInfo {
        algorithm: algorithm.to_owned(),
        curve,
        bits,
    };
    match oid.as_str() {
        // rsaEncryption, and RSASSA-PSS keys (still RSA keys for every purpose here)
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => significant_bits(rsa.modulus),
                _ => 0,
            };
            key("RSA", None, bits)
        }
        "1.2.840.10045.2.1" => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let (curve, bits) = match curve_oid.as_deref() {
                Some(c) => {
                    let (name, bits) = curve_name(c);
                    (Some(name), bits)
                }
                None => (None, 0),
            };
            // Unknown curve: the point length still tells the field size.
            let bits = if bits == 0 {
                match spki.parsed() {
                    Ok(pk) => u32::try_from(pk.key_size()).unwrap_or(0),
                    Err(_) => 0,
                }
            } else {
                bits
            };
            key("ECDSA", curve, bits)
        }
        "1.3.101.112" => key("Ed25519", None, 256),
        "1.3.101.113" => key("Ed448", None, 456),
        "1.2.840.10040.4.1" => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::DSA(y)) => significant_bits(y),
                _ => 0,
            };
            key("DSA", None, bits)
        }
        other => key(other, None, 0),
    }
}

/// Name and field size of an EC curve OID.
fn curve_name(oid: &str) -> (String, u32) {
    let (name, bits) = match oid {
        "1.2.840.10045.3.1.7" => ("P-256", 256),
        "1.3.132.0.34" => ("P-384", 384),
        "1.3.132.0.35" => ("P-521", 521),
        "1.2.840.10045.3.1.1" => ("P-192", 192),
        "1.3.132.0.33" => ("P-224", 224),
        "1.3.132.0.10" => ("secp256k1", 256),
        "1.3.36.3.3.2.8.1.1.7" => ("brainpoolP256r1", 256),
        "1.3.36.3.3.2.8.1.1.11" => ("brainpoolP384r1", 384),
        "1.3.36.3.3.2.8.1.1.13" => ("brainpoolP512r1", 512),
        other => return (other.to_owned(), 0),
    };
    (name.to_owned(), bits)
}

/// Go's name for the signature algorithm, and the hash inside it.
fn signature_algorithm(cert: &X509Certificate<'_>) -> (String, Option<&'static str>) {
    let alg = &cert.signature_algorithm;
    let oid = alg.algorithm.to_id_string();
    let (name, hash) = match oid.as_str() {
        "1.2.840.113549.1.1.2" => ("MD2-RSA", "MD2"),
        "1.2.840.113549.1.1.4" => ("MD5-RSA", "MD5"),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => ("SHA1-RSA", "SHA-1"),
        "1.2.840.113549.1.1.14" => ("SHA224-RSA", "SHA-224"),
        "1.2.840.113549.1.1.11" => ("SHA256-RSA", "SHA-256"),
        "1.2.840.113549.1.1.12" => ("SHA384-RSA", "SHA-384"),
        "1.2.840.113549.1.1.13" => ("SHA512-RSA", "SHA-512"),
        "1.2.840.113549.1.1.10" => {
            // RSASSA-PSS names its hash in the parameters; absent means SHA-1 (RFC 4055).
            let hash_oid = alg
                .parameters
                .as_ref()
                .and_then(|p| RsaSsaPssParams::try_from(p).ok())
                .map(|p| p.hash_algorithm_oid().to_id_string());
            match hash_oid.as_deref() {
                Some("1.3.14.3.2.26") | None => ("SHA1-RSAPSS", "SHA-1"),
                Some("2.16.840.1.101.3.4.2.1") => ("SHA256-RSAPSS", "SHA-256"),
                Some("2.16.840.1.101.3.4.2.2") => ("SHA384-RSAPSS", "SHA-384"),
                Some("2.16.840.1.101.3.4.2.3") => ("SHA512-RSAPSS", "SHA-512"),
                Some(_) => return ("RSAPSS".to_owned(), None),
            }
        }
        "1.2.840.10045.4.1" => ("ECDSA-SHA1", "SHA-1"),
        "1.2.840.10045.4.3.1" => ("ECDSA-SHA224", "SHA-224"),
        "1.2.840.10045.4.3.2" => ("ECDSA-SHA256", "SHA-256"),
        "1.2.840.10045.4.3.3" => ("ECDSA-SHA384", "SHA-384"),
        "1.2.840.10045.4.3.4" => ("ECDSA-SHA512", "SHA-512"),
        "1.2.840.10040.4.3" => ("DSA-SHA1", "SHA-1"),
        "2.16.840.1.101.3.4.3.2" => ("DSA-SHA256", "SHA-256"),
        "1.3.101.112" => return ("Ed25519".to_owned(), None),
        "1.3.101.113" => return ("Ed448".to_owned(), None),
        _ => return (oid, None),
    };
    (name.to_owned(), Some(hash))
}

/// RFC 4514 string of a name: RDNs most specific first, joined by `,`; multi-valued RDNs
/// joined by `+`; special characters escaped.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    format!(
                        "{}={}",
                        attribute_type(atv.attr_type()),
                        escape_dn_value(&attribute_value(atv))
                    )
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute_type(oid: &Oid<'_>) -> String {
    let id = oid.to_id_string();
    let short = match id.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "serialNumber",
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GN",
        "2.5.4.12" => "title",
        "2.5.4.17" => "postalCode",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        // Not in RFC 4514's table, but the name openssl and step users know.
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return id,
    };
    short.to_owned()
}

/// The attribute value as text; non-string values as RFC 4514 `#hex` of their encoding.
pub fn attribute_value(atv: &AttributeTypeAndValue<'_>) -> String {
    let any: &Any<'_> = atv.attr_value();
    let data = any.as_bytes();
    let text = match any.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // T.61 in theory, Latin-1 in practice.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    };
    text.unwrap_or_else(|| format!("#{}", hex(data)))
}

fn escape_dn_value(value: &str) -> String {
    if value.starts_with('#')
        && value.len() > 1
        && value[1..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        // Our own `#hex` rendering of a non-string value: leave it unescaped, as RFC 4514 does.
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

/// Serial as lowercase colon hex of its magnitude; `-` prefix for a negative serial.
pub fn format_serial(raw: &[u8]) -> String {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let magnitude = if negative { negate(raw) } else { raw.to_vec() };
    let start = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len().saturating_sub(1));
    let digits = magnitude.get(start..).unwrap_or_default();
    let digits = if digits.is_empty() {
        &[0u8][..]
    } else {
        digits
    };
    format!("{}{}", if negative { "-" } else { "" }, colon_hex(digits))
}

/// Two's complement negation of a big-endian integer.
pub(crate) fn negate(bytes: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = bytes.iter().map(|b| !b).collect();
    for b in out.iter_mut().rev() {
        let (sum, carry) = b.overflowing_add(1);
        *b = sum;
        if !carry {
            break;
        }
    }
    out
}

/// Bit length of an unsigned big-endian integer (leading zero octets ignored).
fn significant_bits(bytes: &[u8]) -> u32 {
    let Some(start) = bytes.iter().position(|&b| b != 0) else {
        return 0;
    };
    let len = u32::try_from(bytes.len() - start).unwrap_or(u32::MAX / 8);
    let lead = bytes.get(start).copied().unwrap_or(0);
    len.saturating_mul(8) - lead.leading_zeros()
}

/// An IP address SAN as text (`10.0.0.5`, `::1`); other lengths as `#hex`.
pub fn ip_string(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(bytes);
            IpAddr::V4(Ipv4Addr::from(a)).to_string()
        }
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            IpAddr::V6(Ipv6Addr::from(a)).to_string()
        }
        _ => format!("#{}", hex(bytes)),
    }
}

/// An iPAddress name constraint (address then mask) as CIDR when the mask is contiguous.
fn ip_constraint_string(bytes: &[u8]) -> String {
    let half = bytes.len() / 2;
    if !(bytes.len() == 8 || bytes.len() == 32) {
        return format!("#{}", hex(bytes));
    }
    let (addr, mask) = bytes.split_at(half);
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let contiguous = mask
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1))
        .skip_while(|&bit| bit == 1)
        .all(|bit| bit == 0);
    if contiguous {
        format!("{}/{ones}", ip_string(addr))
    } else {
        format!("{}/{}", ip_string(addr), ip_string(mask))
    }
}

fn name_constraint_string(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::IPAddress(b) => format!("IP:{}", ip_constraint_string(b)),
        other => general_name_string(other),
    }
}

fn general_name_string(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(s) => format!("DNS:{s}"),
        GeneralName::URI(s) => (*s).to_owned(),
        GeneralName::RFC822Name(s) => format!("email:{s}"),
        GeneralName::IPAddress(b) => format!("IP:{}", ip_string(b)),
        GeneralName::DirectoryName(n) => format!("DirName:{}", rfc4514(n)),
        GeneralName::RegisteredID(oid) => format!("RID:{}", oid.to_id_string()),
        GeneralName::OtherName(oid, _) => format!("othername:{}", oid.to_id_string()),
        other => other.to_string(),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    // Only years outside 0..=9999 fail to format; fall back to time's own rendering.
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
pub(crate) mod tests {
    //! Certificates are made at test time: with rcgen for precise control, and with the openssl
    //! CLI because what keep must understand is, above all, real openssl output.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;
    use std::process::Command;

    use rcgen::{
        BasicConstraints, CertificateParams, CidrSubnet, CrlDistributionPoint, DnType,
        ExtendedKeyUsagePurpose, GeneralSubtree as RcgenSubtree, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, NameConstraints, SanType, SignatureAlgorithm,
    };
    use time::macros::datetime;

    use super::*;

    // ---- helpers shared with lint.rs's tests ----

    /// A CA made with rcgen, able to issue.
    pub(crate) struct TestCa {
        pub(crate) params: CertificateParams,
        pub(crate) key: KeyPair,
        pub(crate) der: Vec<u8>,
    }

    impl TestCa {
        /// Issues `params` for a fresh key of algorithm `alg`.
        pub(crate) fn issue(
            &self,
            params: &CertificateParams,
            alg: &'static SignatureAlgorithm,
        ) -> Vec<u8> {
            let key = KeyPair::generate_for(alg).unwrap();
            let issuer = Issuer::from_params(&self.params, &self.key);
            params.signed_by(&key, &issuer).unwrap().der().to_vec()
        }
    }

    /// Parameters like keep's root-ca profile: CA, pathlen 1, keyCertSign+cRLSign, 10 years.
    pub(crate) fn root_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = OffsetDateTime::now_utc() - Duration::minutes(1);
        p.not_after = p.not_before + Duration::days(3650);
        p
    }

    /// A self-signed root CA.
    pub(crate) fn root_ca(alg: &'static SignatureAlgorithm) -> TestCa {
        ca_from(root_params("Claw Root CA"), alg)
    }

    /// A self-signed CA from any parameters.
    pub(crate) fn ca_from(params: CertificateParams, alg: &'static SignatureAlgorithm) -> TestCa {
        let key = KeyPair::generate_for(alg).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        TestCa { params, key, der }
    }

    /// Parameters like keep's leaf profile: SANs, digitalSignature, serverAuth+clientAuth, AKI,
    /// 90 days back-dated by a minute, CN = first name.
    pub(crate) fn leaf_params(names: &[&str]) -> CertificateParams {
        let mut p =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = names.first() {
            p.distinguished_name.push(DnType::CommonName, *cn);
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.not_before = OffsetDateTime::now_utc() - Duration::minutes(1);
        p.not_after = p.not_before + Duration::days(90);
        p
    }

    /// A keep-style leaf (P-256) issued by a fresh keep-style root.
    pub(crate) fn issued(params: &CertificateParams) -> Vec<u8> {
        root_ca(&rcgen::PKCS_ECDSA_P256_SHA256).issue(params, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// A working directory for the openssl CLI (`/usr/bin/openssl`, 3.0 or later).
    pub(crate) struct Openssl {
        dir: tempfile::TempDir,
    }

    /// `-newkey` arguments for an EC P-256 key.
    pub(crate) const EC_P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

    impl Openssl {
        pub(crate) fn new() -> Self {
            Openssl {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        pub(crate) fn path(&self, name: &str) -> String {
            self.dir.path().join(name).to_string_lossy().into_owned()
        }

        /// Runs openssl in the working directory; panics with its stderr on failure.
        pub(crate) fn run(&self, args: &[&str]) -> String {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        /// Writes a config whose `[ext]` section holds `ext` (our own file, so the host's
        /// openssl.cnf defaults cannot change what the tests produce).
        fn config(&self, name: &str, ext: &[&str]) -> String {
            let mut cnf = String::from("[req]\ndistinguished_name = dn\n");
            if !ext.is_empty() {
                cnf.push_str("x509_extensions = ext\n");
            }
            cnf.push_str("[dn]\n[ext]\n");
            for line in ext {
                cnf.push_str(line);
                cnf.push('\n');
            }
            let path = self.path(&format!("{name}.cnf"));
            std::fs::write(&path, cnf).unwrap();
            path
        }

        /// `openssl req -x509`: a self-signed certificate `name.pem` with key `name.key`.
        /// `ext` lines are the certificate's v3 extensions; `extra` is appended (`-sha1`, …).
        pub(crate) fn self_signed(
            &self,
            name: &str,
            newkey: &[&str],
            subj: &str,
            ext: &[&str],
            extra: &[&str],
        ) -> Vec<u8> {
            let cnf = self.config(name, ext);
            let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec![
                "req", "-x509", "-config", &cnf, "-nodes", "-keyout", &key, "-out", &pem, "-subj",
                subj, "-days", "30",
            ];
            args.extend_from_slice(newkey);
            args.extend_from_slice(extra);
            self.run(&args);
            self.der(name)
        }

        /// A CSR for a fresh key, signed with `openssl x509 -req` by the CA `ca` (made with
        /// [`Self::self_signed`]). With `ext` None, openssl makes a v1 certificate.
        pub(crate) fn issue(
            &self,
            name: &str,
            ca: &str,
            newkey: &[&str],
            subj: &str,
            ext: Option<&[&str]>,
            extra: &[&str],
        ) -> Vec<u8> {
            let cnf = self.config(name, ext.unwrap_or_default());
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let mut args = vec![
                "req", "-new", "-config", &cnf, "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                subj,
            ];
            args.extend_from_slice(newkey);
            self.run(&args);
            let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
            let mut args = vec![
                "x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-out", &pem,
                "-days", "30",
            ];
            if ext.is_some() {
                args.extend_from_slice(&["-extfile", &cnf, "-extensions", "ext"]);
            }
            args.extend_from_slice(extra);
            self.run(&args);
            self.der(name)
        }

        /// DER of `name.pem`, converted by openssl itself.
        pub(crate) fn der(&self, name: &str) -> Vec<u8> {
            let (pem, der) = (format!("{name}.pem"), format!("{name}.der"));
            self.run(&["x509", "-in", &pem, "-outform", "DER", "-out", &der]);
            std::fs::read(Path::new(&self.path(&der))).unwrap()
        }
    }

    // ---- field extraction ----

    #[test]
    fn sans_of_all_four_kinds() {
        let mut p = leaf_params(&["vault.claw.internal"]);
        p.subject_alt_names.extend([
            SanType::DnsName("*.vault.claw.internal".try_into().unwrap()),
            SanType::IpAddress("10.0.0.7".parse().unwrap()),
            SanType::IpAddress("fd00::7".parse().unwrap()),
            SanType::URI("spiffe://claw.internal/vault".try_into().unwrap()),
            SanType::Rfc822Name("ops@claw.internal".try_into().unwrap()),
        ]);
        let info = inspect(&issued(&p)).unwrap();
        assert_eq!(
            info.sans,
            Sans {
                dns: vec!["vault.claw.internal".into(), "*.vault.claw.internal".into()],
                ip: vec!["10.0.0.7".into(), "fd00::7".into()],
                uri: vec!["spiffe://claw.internal/vault".into()],
                email: vec!["ops@claw.internal".into()],
            }
        );
    }

    #[test]
    fn no_san_extension_gives_empty_sans() {
        let p = leaf_params(&[]);
        let info = inspect(&issued(&p)).unwrap();
        assert!(info.sans.is_empty());
        assert_eq!(info.common_name, None);
    }

    #[test]
    fn extended_key_usages_by_name_and_oid() {
        let mut p = leaf_params(&["a.claw.internal"]);
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 4, 1, 99999, 1,
            ]));
        let info = inspect(&issued(&p)).unwrap();
        assert_eq!(
            info.extended_key_usage,
            ["serverAuth", "clientAuth", "1.3.6.1.4.1.99999.1"]
        );
        assert_eq!(info.key_usage, ["digitalSignature"]);

        p.extended_key_usages.clear();
        p.key_usages.clear();
        let info = inspect(&issued(&p)).unwrap();
        assert!(info.extended_key_usage.is_empty());
        assert!(info.key_usage.is_empty());
    }

    #[test]
    fn ca_flag_path_len_and_key_ids() {
        let ca = root_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        let root = inspect(&ca.der).unwrap();
        assert!(root.is_ca);
        assert_eq!(root.path_len, Some(1));
        assert!(root.self_signed);
        assert_eq!(root.key_usage, ["keyCertSign", "cRLSign"]);
        assert_eq!(root.subject, "CN=Claw Root CA");
        let ski = root.subject_key_id.clone().unwrap();
        assert!(
            ski.len() == 20 * 3 - 1 && ski.bytes().all(|b| b == b':' || b.is_ascii_hexdigit()),
            "{ski}"
        );

        let leaf = inspect(&ca.issue(
            &leaf_params(&["a.claw.internal"]),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        ))
        .unwrap();
        assert!(!leaf.is_ca);
        assert_eq!(leaf.path_len, None);
        assert!(!leaf.self_signed);
        assert_eq!(leaf.issuer, "CN=Claw Root CA");
        assert_eq!(leaf.authority_key_id.as_deref(), Some(ski.as_str()));
        assert_eq!(leaf.subject_key_id, None);
    }

    #[test]
    fn key_and_signature_algorithms() {
        let cases: [(&'static SignatureAlgorithm, &str, Option<&str>, u32, &str); 5] = [
            (
                &rcgen::PKCS_ECDSA_P256_SHA256,
                "ECDSA",
                Some("P-256"),
                256,
                "ECDSA-SHA256",
            ),
            (
                &rcgen::PKCS_ECDSA_P384_SHA384,
                "ECDSA",
                Some("P-384"),
                384,
                "ECDSA-SHA384",
            ),
            (
                &rcgen::PKCS_ECDSA_P521_SHA512,
                "ECDSA",
                Some("P-521"),
                521,
                "ECDSA-SHA512",
            ),
            (&rcgen::PKCS_ED25519, "Ed25519", None, 256, "Ed25519"),
            (&rcgen::PKCS_RSA_SHA256, "RSA", None, 2048, "SHA256-RSA"),
        ];
        for (alg, algorithm, curve, bits, sig) in cases {
            let info = inspect(&root_ca(alg).der).unwrap();
            let want = PublicKeyInfo {
                algorithm: algorithm.into(),
                curve: curve.map(Into::into),
                bits,
            };
            assert_eq!(info.public_key, want, "{algorithm} {curve:?}");
            assert_eq!(info.signature_algorithm, sig);
            // P-521 cannot be verified by aws-lc here; the names decide.
            assert!(info.self_signed, "{sig}");
        }
    }

    #[test]
    fn rsa_3072_bits() {
        let key =
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072).unwrap();
        let der = root_params("r").self_signed(&key).unwrap().der().to_vec();
        assert_eq!(inspect(&der).unwrap().public_key.bits, 3072);
    }

    #[test]
    fn openssl_rsa_1024_sha1_and_sha256() {
        let ossl = Openssl::new();
        let sha1 = inspect(&ossl.self_signed(
            "sha1",
            &["-newkey", "rsa:1024"],
            "/CN=old",
            &[],
            &["-sha1"],
        ))
        .unwrap();
        assert_eq!(
            sha1.public_key,
            PublicKeyInfo {
                algorithm: "RSA".into(),
                curve: None,
                bits: 1024
            }
        );
        assert_eq!(sha1.signature_algorithm, "SHA1-RSA");
        assert!(sha1.self_signed);
        // aws-lc refuses to verify SHA-256 with a 1024-bit key; names decide then.
        let sha256 = inspect(&ossl.self_signed(
            "sha256",
            &["-newkey", "rsa:1024"],
            "/CN=old",
            &[],
            &["-sha256"],
        ))
        .unwrap();
        assert_eq!(sha256.signature_algorithm, "SHA256-RSA");
        assert!(sha256.self_signed);
    }

    #[test]
    fn same_name_different_key_is_not_self_signed() {
        let ca = root_ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        // A leaf that happens to carry the CA's name.
        let mut p = leaf_params(&["x.claw.internal"]);
        p.distinguished_name = ca.params.distinguished_name.clone();
        p.use_authority_key_identifier_extension = false;
        let info = inspect(&ca.issue(&p, &rcgen::PKCS_ECDSA_P256_SHA256)).unwrap();
        assert_eq!(info.subject, info.issuer);
        assert!(!info.self_signed);
    }

    #[test]
    fn openssl_v1_certificate() {
        let ossl = Openssl::new();
        ossl.self_signed(
            "ca",
            EC_P256,
            "/CN=Test CA",
            &["basicConstraints=critical,CA:true"],
            &[],
        );
        let info =
            inspect(&ossl.issue("leaf", "ca", EC_P256, "/CN=vault.claw.internal", None, &[]))
                .unwrap();
        assert_eq!(info.version, 1);
        assert!(!info.is_ca && !info.self_signed);
        assert!(
            info.key_usage.is_empty() && info.extended_key_usage.is_empty() && info.sans.is_empty()
        );
        assert_eq!(info.issuer, "CN=Test CA");
    }

    #[test]
    fn fingerprint_matches_openssl() {
        let ossl = Openssl::new();
        let der = ossl.self_signed("c", EC_P256, "/CN=fp", &[], &[]);
        let out = ossl.run(&["x509", "-in", "c.pem", "-noout", "-fingerprint", "-sha256"]);
        // `sha256 Fingerprint=AB:CD:…` (the prefix's case varies between versions)
        let theirs = out
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_lowercase();
        assert_eq!(fingerprint_sha256(&der), theirs);
        assert_eq!(inspect(&der).unwrap().fingerprint_sha256, theirs);
        assert_eq!(theirs.len(), 64);
    }

    #[test]
    fn serial_matches_openssl() {
        let ossl = Openssl::new();
        for (name, extra) in [
            ("random", &[][..]),
            ("one", &["-set_serial", "1"][..]),
            ("neg", &["-set_serial", "-0x1234"][..]),
        ] {
            let der = ossl.self_signed(name, EC_P256, "/CN=s", &[], extra);
            let out = ossl.run(&["x509", "-in", &format!("{name}.pem"), "-noout", "-serial"]);
            let theirs = out.trim().trim_start_matches("serial=").to_owned();
            let ours = inspect(&der).unwrap().serial;
            assert_eq!(ours.replace(':', "").to_uppercase(), theirs, "{name}");
        }
    }

    #[test]
    fn serial_with_high_bit_has_no_sign_byte() {
        let mut p = leaf_params(&["a.claw.internal"]);
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[
            0x80, 1, 2, 3, 4, 5, 6, 7,
        ]));
        assert_eq!(
            inspect(&issued(&p)).unwrap().serial,
            "80:01:02:03:04:05:06:07"
        );
    }

    #[test]
    fn names_are_rfc4514() {
        let mut p = leaf_params(&["vault.claw.internal"]);
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "DE");
        p.distinguished_name
            .push(DnType::OrganizationName, "Claw, Inc.");
        p.distinguished_name
            .push(DnType::CommonName, "vault.claw.internal");
        let info = inspect(&issued(&p)).unwrap();
        assert_eq!(info.subject, r"CN=vault.claw.internal,O=Claw\, Inc.,C=DE");
        assert_eq!(info.common_name.as_deref(), Some("vault.claw.internal"));

        let ossl = Openssl::new();
        let der = ossl.self_signed("c", EC_P256, "/O=Claw/OU=Ops+OU=Dev/CN= #x;y", &[], &[]);
        assert_eq!(
            inspect(&der).unwrap().subject,
            r"CN=\ #x\;y,OU=Dev+OU=Ops,O=Claw"
        );
        // (A multi-valued RDN is a DER SET, so its members come out sorted.)
        let der = ossl.self_signed("d", EC_P256, "/CN=#hash", &[], &[]);
        assert_eq!(inspect(&der).unwrap().subject, r"CN=\#hash");
    }

    #[test]
    fn validity_is_rfc3339_utc() {
        let mut p = leaf_params(&["a.claw.internal"]);
        p.not_before = datetime!(2026-01-02 03:04:05 UTC);
        p.not_after = datetime!(2026-04-02 03:04:05 UTC);
        let info = inspect(&issued(&p)).unwrap();
        assert_eq!(info.not_before, "2026-01-02T03:04:05Z");
        assert_eq!(info.not_after, "2026-04-02T03:04:05Z");
        assert_eq!(info.lifetime_seconds, 90 * 86_400);
        assert_eq!(info.version, 3);
    }

    #[test]
    fn name_constraints_and_crl_distribution_points() {
        let mut p = root_params("Constrained CA");
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![
                RcgenSubtree::DnsName("claw.internal".into()),
                RcgenSubtree::IpAddress(CidrSubnet::from_v4_prefix([10, 0, 0, 0], 8)),
            ],
            excluded_subtrees: vec![RcgenSubtree::Rfc822Name("claw.internal".into())],
        });
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec!["http://crl.claw.internal/root.crl".into()],
        }];
        let info = inspect(&ca_from(p, &rcgen::PKCS_ECDSA_P256_SHA256).der).unwrap();
        assert_eq!(
            info.name_constraints,
            Some(NameConstraintsInfo {
                permitted: vec!["DNS:claw.internal".into(), "IP:10.0.0.0/8".into()],
                excluded: vec!["email:claw.internal".into()],
            })
        );
        assert_eq!(
            info.crl_distribution_points,
            ["http://crl.claw.internal/root.crl"]
        );

        let plain = inspect(&root_ca(&rcgen::PKCS_ECDSA_P256_SHA256).der).unwrap();
        assert_eq!(plain.name_constraints, None);
        assert!(plain.crl_distribution_points.is_empty());
    }

    #[test]
    fn json_uses_snake_case_field_names() {
        let info = inspect(&issued(&leaf_params(&["a.claw.internal", "10.1.2.3"]))).unwrap();
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["sans"]["dns"][0], "a.claw.internal");
        assert_eq!(json["sans"]["ip"][0], "10.1.2.3");
        assert_eq!(json["public_key"]["curve"], "P-256");
        assert_eq!(json["public_key"]["bits"], 256);
        assert_eq!(json["extended_key_usage"][1], "clientAuth");
        assert_eq!(json["fingerprint_sha256"].as_str().unwrap().len(), 64);
        for key in [
            "not_before",
            "not_after",
            "lifetime_seconds",
            "self_signed",
            "is_ca",
            "path_len",
            "subject_key_id",
            "authority_key_id",
            "name_constraints",
            "crl_distribution_points",
            "common_name",
            "signature_algorithm",
            "serial",
            "version",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
    }

    #[test]
    fn rejects_what_is_not_one_der_certificate() {
        let err = inspect(b"-----BEGIN CERTIFICATE-----").unwrap_err();
        assert_eq!(err.source_desc, "certificate");
        assert!(err.problem.contains("not an X.509 certificate"), "{err}");

        let mut der = issued(&leaf_params(&["a.claw.internal"]));
        der.extend_from_slice(&[0, 0]);
        let err = inspect(&der).unwrap_err();
        assert!(err.problem.contains("2 unexpected bytes"), "{err}");
    }

    // ---- text ----

    #[test]
    fn render_text_shows_the_key_facts() {
        let mut p = leaf_params(&["vault.claw.internal", "10.0.0.7"]);
        p.not_before = datetime!(2026-01-01 00:00:00 UTC);
        p.not_after = datetime!(2026-04-01 00:00:00 UTC);
        let info = inspect(&issued(&p)).unwrap();

        let text = render_text(&info, datetime!(2026-01-02 00:00:00 UTC));
        for want in [
            "Subject:             CN=vault.claw.internal",
            "Issuer:              CN=Claw Root CA",
            "Expires:             2026-04-01T00:00:00Z (in 89 days)",
            "Public Key:          ECDSA P-256 (256 bit)",
            "Signature Algorithm: ECDSA-SHA256",
            "CA:                  no",
            "Key Usage:           digitalSignature",
            "Extended Key Usage:  serverAuth, clientAuth",
            "DNS: vault.claw.internal",
            "IP: 10.0.0.7",
            "Lifetime:            90 days",
            &info.fingerprint_sha256,
            &info.serial,
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }

        let expired = render_text(&info, datetime!(2026-04-04 01:00:00 UTC));
        assert!(expired.contains("(expired 3 days ago)"), "{expired}");
        let early = render_text(&info, datetime!(2025-12-30 00:00:00 UTC));
        assert!(early.contains("not yet valid: starts in 2 days"), "{early}");
    }

    #[test]
    fn render_text_for_a_ca() {
        let info = inspect(&root_ca(&rcgen::PKCS_ED25519).der).unwrap();
        let text = render_text(&info, OffsetDateTime::now_utc());
        for want in [
            "CA:                  yes (pathlen 1)",
            "Self-signed:         yes",
            "Public Key:          Ed25519 (256 bit)",
            "Subject Alt Names:   (none)",
            "Subject Key ID:",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }

    #[test]
    fn human_duration_picks_sensible_units() {
        let cases = [
            (Duration::seconds(0), "0 seconds"),
            (Duration::seconds(1), "1 second"),
            (Duration::seconds(59), "59 seconds"),
            (Duration::minutes(5), "5 minutes"),
            (Duration::hours(1), "1 hour"),
            (Duration::hours(23) + Duration::minutes(59), "24 hours"),
            (Duration::hours(23) + Duration::minutes(10), "23 hours"),
            (Duration::days(1), "1 day"),
            (Duration::days(90) - Duration::minutes(1), "90 days"),
            (Duration::days(89) + Duration::hours(11), "89 days"),
            (Duration::days(364), "364 days"),
            (Duration::days(365), "1 year"),
            (Duration::days(367), "1 year 2 days"),
            (Duration::days(3652), "10 years 2 days"),
            (-Duration::days(3), "3 days"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d}");
        }
    }
}
