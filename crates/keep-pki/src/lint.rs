//! Internal-PKI lint rules: `keep certificate lint`.
//!
//! The rules catch what actually breaks or weakens certificates in a private PKI, whoever made
//! them (keep, step, openssl, a cloud console): a missing subjectAltName that Go, rustls and
//! Chrome will not fall back from, a client certificate without `clientAuth`, a CA whose stray
//! extendedKeyUsage silently constrains every leaf below it, weak keys and hashes, lifetimes,
//! and serials. Each [`Finding`] has a stable kebab-case id (for scripts and suppressions), a
//! severity, a message with the concrete values, and a one-line fix.
//!
//! Rules are small functions over the facts [`crate::inspect`] extracts, so `inspect` and `lint`
//! never disagree about a certificate. Rule ids:
//!
//! | id | severity |
//! |---|---|
//! | `not-v3` | error |
//! | `missing-san` | error; warning with `--purpose client` (a CN-only client cert still works) |
//! | `cn-only-server-name` | error |
//! | `missing-eku` | warning |
//! | `client-missing-client-auth` | error |
//! | `server-missing-server-auth` | error |
//! | `ca-has-eku` | error, or warning when it has both serverAuth and clientAuth |
//! | `ca-missing-key-cert-sign` | error, or warning when keyUsage is absent altogether |
//! | `ca-basic-constraints-not-critical` | warning |
//! | `leaf-has-key-cert-sign` | error |
//! | `leaf-missing-digital-signature` | warning |
//! | `weak-rsa-key` | error |
//! | `weak-ec-curve` | error, or warning for strong curves TLS stacks lack (secp256k1, brainpool) |
//! | `unsupported-key-algorithm` | error for DSA, warning otherwise (Ed448, unknown) |
//! | `weak-signature-algorithm` | error, or warning on a self-signed CA |
//! | `expired` | error |
//! | `not-yet-valid` | warning |
//! | `long-lifetime` | error (leaf > 398 days), info (leaf > 90 days), warning (CA > 20 years) |
//! | `ed25519-interop` | warning |
//! | `serial-not-positive` | error |
//! | `serial-too-short` | warning |
//! | `missing-authority-key-id` | warning |
//! | `missing-subject-key-id` | warning |
//! | `intermediate-without-path-len` | info |
//! | `unsupported-critical-extension` | error |
//! | `duplicate-extension` | error |
//! | `malformed-extension` | error |

use std::fmt;
use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use crate::inspect::{Analysis, ExtensionProblem, analyze, human_duration, negate};
use crate::{CertParseError, Purpose};

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Works, but there is a better practice.
    Info,
    /// Works for some clients or today, but is fragile or weaker than it should be.
    Warning,
    /// Breaks with common TLS clients, or is insecure.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that `{:7}` aligns columns in the CLI's table.
        f.pad(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem found in a certificate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// Stable kebab-case rule id (`missing-san`); scripts may match on it.
    pub id: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong, with the concrete values, on one line.
    pub message: String,
    /// How to fix it, on one line.
    pub fix: String,
}

/// What the certificate is for and when "now" is.
#[derive(Debug, Clone)]
pub struct LintOptions {
    /// The intended use (`--purpose`); `None` lints without assuming one.
    pub purpose: Option<Purpose>,
    /// The instant validity is judged at; injected so results are reproducible.
    pub now: OffsetDateTime,
}

/// Lints certificate DER. Findings come sorted: errors first, then by id.
pub fn lint(der: &[u8], opts: &LintOptions) -> Result<Vec<Finding>, CertParseError> {
    let analysis = analyze(der)?;
    let cx = Cx::new(&analysis, opts);
    let mut findings = Vec::new();
    for rule in RULES {
        rule(&cx, &mut findings);
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(b.id)));
    Ok(findings)
}

/// A rule looks at the certificate and appends zero or more findings.
type Rule = fn(&Cx<'_>, &mut Vec<Finding>);

const RULES: &[Rule] = &[
    not_v3,
    missing_san,
    extended_key_usage,
    ca_has_eku,
    ca_key_usage,
    ca_basic_constraints_not_critical,
    leaf_key_usage,
    key_strength,
    weak_signature_algorithm,
    validity,
    long_lifetime,
    ed25519_interop,
    serial,
    key_identifiers,
    intermediate_without_path_len,
    extension_problems,
];

/// Facts every rule needs, computed once.
struct Cx<'a> {
    a: &'a Analysis,
    opts: &'a LintOptions,
    /// Whether the certificate is (also) used as an end-entity certificate: every non-CA, and a
    /// self-signed CA when a purpose is given — `openssl req -x509` marks its output CA:TRUE, and
    /// people then serve it directly, where SAN and EKU matter exactly as for a leaf.
    acts_as_leaf: bool,
    /// v1/v2 certificates have no extensions at all; `not-v3` reports that once instead of
    /// every "extension X missing" rule repeating it.
    has_extensions_field: bool,
}

impl<'a> Cx<'a> {
    fn new(a: &'a Analysis, opts: &'a LintOptions) -> Self {
        let info = &a.info;
        Cx {
            a,
            opts,
            acts_as_leaf: !info.is_ca || (opts.purpose.is_some() && info.self_signed),
            has_extensions_field: info.version >= 3,
        }
    }

    fn has_eku(&self, name: &str) -> bool {
        self.a.info.extended_key_usage.iter().any(|e| e == name)
    }

    fn has_key_usage(&self, name: &str) -> bool {
        self.a.info.key_usage.iter().any(|k| k == name)
    }
}

fn finding(
    id: &'static str,
    severity: Severity,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        id,
        severity,
        message: message.into(),
        fix: fix.into(),
    }
}

fn not_v3(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let version = cx.a.info.version;
    if version != 3 {
        out.push(finding(
            "not-v3",
            Severity::Error,
            format!(
                "certificate is X.509 v{version}; only v3 carries extensions, so it has no \
                 subjectAltName, extendedKeyUsage or CA flag"
            ),
            "reissue as v3 with its extensions (keep certificate create; openssl x509 -req \
             needs -extfile with subjectAltName and extendedKeyUsage)",
        ));
    }
}

/// `missing-san`, and `cn-only-server-name` when the CN was evidently meant as the server name.
fn missing_san(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if !cx.acts_as_leaf || !cx.a.info.sans.is_empty() {
        return;
    }
    let what = if cx.a.has_san_ext {
        "subjectAltName has no DNS, IP, URI or email entry"
    } else {
        "no subjectAltName"
    };
    let fix = "reissue with at least one --san (DNS name, IP address, URI or email)";
    if cx.opts.purpose == Some(Purpose::Client) {
        // Servers do not match a client's names, and keep roles (like Vault's) can match on the
        // CN; so a CN-only client certificate works, it just cannot be matched by SAN.
        out.push(finding(
            "missing-san",
            Severity::Warning,
            format!(
                "{what}; a client certificate works without, but roles can then match only its \
                 CN, not allowed_dns_sans / allowed_uri_sans"
            ),
            fix,
        ));
        return;
    }
    out.push(finding(
        "missing-san",
        Severity::Error,
        format!("{what}; TLS clients (Go, rustls, browsers) match server names only against SANs"),
        fix,
    ));

    let Some(cn) = cx.a.info.common_name.as_deref() else {
        return;
    };
    // With --purpose server even a single-label name (`vault`, a compose service) is a server
    // name; without a purpose only names that cannot be a person or service label count.
    let strict = cx.opts.purpose != Some(Purpose::Server);
    if !looks_like_host(cn, strict) {
        return;
    }
    let (san, openssl) = match cn.parse::<IpAddr>() {
        Ok(_) => (cn.to_owned(), format!("IP:{cn}")),
        Err(_) => (cn.to_owned(), format!("DNS:{cn}")),
    };
    out.push(finding(
        "cn-only-server-name",
        Severity::Error,
        format!(
            "subject CN \"{cn}\" looks like a server name, but Go, rustls and Chrome ignore the \
             CN and find no subjectAltName to match"
        ),
        format!("reissue with --san {san} (openssl: -addext \"subjectAltName={openssl}\")"),
    ));
}

/// A CN that is a host name or IP address. `strict` additionally requires a dot (or an IP, or
/// `localhost`), so that `alice` or `Claw Root CA` are not taken for host names.
fn looks_like_host(cn: &str, strict: bool) -> bool {
    if cn.parse::<IpAddr>().is_ok() || cn.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let name = cn.strip_suffix('.').unwrap_or(cn);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let ldh = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let all_valid = labels
        .iter()
        .enumerate()
        .all(|(i, l)| ldh(l) || (i == 0 && *l == "*" && labels.len() > 1));
    // A numeric last label is a version or a broken IP, not a host name.
    let tld_ok = labels
        .last()
        .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()));
    all_valid && tld_ok && (!strict || labels.len() > 1)
}

/// `missing-eku`, `client-missing-client-auth`, `server-missing-server-auth`.
fn extended_key_usage(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if !cx.acts_as_leaf {
        return;
    }
    let listed = cx.a.info.extended_key_usage.join(", ");
    let any_note = if cx.has_eku("anyExtendedKeyUsage") {
        " (rustls does not accept anyExtendedKeyUsage in its place)"
    } else {
        ""
    };
    if !cx.a.has_eku_ext {
        if !cx.has_extensions_field {
            return;
        }
        let (message, fix) = match cx.opts.purpose {
            Some(p) => (
                format!(
                    "no extendedKeyUsage extension: any purpose is allowed, {p} \
                     authentication included, but nothing states it"
                ),
                format!(
                    "reissue with extendedKeyUsage {eku} (keep: --eku {p}; openssl: \
                     -addext extendedKeyUsage={eku})",
                    eku = eku_name(p)
                ),
            ),
            None => (
                "no extendedKeyUsage extension: the certificate is valid for any purpose"
                    .to_owned(),
                "reissue with the purposes it serves, e.g. serverAuth and/or clientAuth \
                 (keep's leaf profile sets both; --eku narrows it)"
                    .to_owned(),
            ),
        };
        out.push(finding("missing-eku", Severity::Warning, message, fix));
        return;
    }
    match cx.opts.purpose {
        Some(Purpose::Client) if !cx.has_eku("clientAuth") => out.push(finding(
            "client-missing-client-auth",
            Severity::Error,
            format!(
                "extendedKeyUsage is [{listed}] without clientAuth{any_note}; servers \
                 (rustls, Go, Java) reject it as a client certificate"
            ),
            "reissue with clientAuth in extendedKeyUsage (keep: --eku client; openssl: \
             extendedKeyUsage=clientAuth)",
        )),
        Some(Purpose::Server) if !cx.has_eku("serverAuth") => out.push(finding(
            "server-missing-server-auth",
            Severity::Error,
            format!(
                "extendedKeyUsage is [{listed}] without serverAuth{any_note}; clients \
                 (rustls, Go, browsers) reject it as a server certificate"
            ),
            "reissue with serverAuth in extendedKeyUsage (keep: --eku server; openssl: \
             extendedKeyUsage=serverAuth)",
        )),
        _ => {}
    }
}

fn eku_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Client => "clientAuth",
        Purpose::Server => "serverAuth",
    }
}

fn ca_has_eku(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if !cx.a.info.is_ca || !cx.a.has_eku_ext {
        return;
    }
    let listed = cx.a.info.extended_key_usage.join(", ");
    let fix = "reissue the CA without extendedKeyUsage";
    let both = cx.has_eku("serverAuth") && cx.has_eku("clientAuth");
    let f = if both {
        finding(
            "ca-has-eku",
            Severity::Warning,
            format!(
                "CA certificate carries extendedKeyUsage [{listed}]; rustls and Go limit every \
                 certificate below it to these purposes"
            ),
            fix,
        )
    } else {
        let missing = if cx.has_eku("serverAuth") {
            "clientAuth"
        } else {
            "serverAuth"
        };
        finding(
            "ca-has-eku",
            Severity::Error,
            format!(
                "CA certificate carries extendedKeyUsage [{listed}] without {missing}; rustls \
                 and Go reject chains through it for {missing} leaves"
            ),
            fix,
        )
    };
    out.push(f);
}

/// `ca-missing-key-cert-sign`.
fn ca_key_usage(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if !cx.a.info.is_ca || cx.has_key_usage("keyCertSign") {
        return;
    }
    let fix = "reissue the CA with keyUsage keyCertSign, cRLSign (keep's CA profiles do; \
               openssl: keyUsage=critical,keyCertSign,cRLSign)";
    // Absent keyUsage means "any usage" to Go and rustls, so it works — but RFC 5280 requires
    // it in CA certificates and strict verifiers (openssl -x509_strict) refuse the CA.
    // Present without keyCertSign breaks every verifier.
    let f = if cx.a.has_key_usage_ext {
        finding(
            "ca-missing-key-cert-sign",
            Severity::Error,
            format!(
                "CA certificate's keyUsage [{}] lacks keyCertSign; verifiers reject every \
                 certificate it signs",
                cx.a.info.key_usage.join(", ")
            ),
            fix,
        )
    } else {
        finding(
            "ca-missing-key-cert-sign",
            Severity::Warning,
            "CA certificate has no keyUsage extension; RFC 5280 requires keyCertSign and strict \
             verifiers reject the CA",
            fix,
        )
    };
    out.push(f);
}

fn ca_basic_constraints_not_critical(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if cx.a.info.is_ca && cx.a.basic_constraints_critical == Some(false) {
        out.push(finding(
            "ca-basic-constraints-not-critical",
            Severity::Warning,
            "CA certificate's basicConstraints is not marked critical (RFC 5280 4.2.1.9 \
             requires it)",
            "reissue with a critical basicConstraints (openssl: basicConstraints=critical,CA:true)",
        ));
    }
}

/// `leaf-has-key-cert-sign`, `leaf-missing-digital-signature`.
fn leaf_key_usage(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if cx.a.info.is_ca || !cx.a.has_key_usage_ext {
        return;
    }
    if cx.has_key_usage("keyCertSign") {
        out.push(finding(
            "leaf-has-key-cert-sign",
            Severity::Error,
            "keyUsage has keyCertSign but basicConstraints does not say CA; verifiers reject \
             anything it signs, and it signals a profile mix-up",
            "reissue without keyCertSign, or with the intermediate-ca profile if it is meant to \
             issue certificates",
        ));
    }
    if !cx.has_key_usage("digitalSignature") {
        out.push(finding(
            "leaf-missing-digital-signature",
            Severity::Warning,
            format!(
                "keyUsage [{}] lacks digitalSignature; TLS 1.3 and ECDHE handshakes sign with \
                 this key, and clients that enforce keyUsage (Chrome, NSS) reject it",
                cx.a.info.key_usage.join(", ")
            ),
            "reissue with keyUsage digitalSignature (keep's leaf profile sets it)",
        ));
    }
}

/// `weak-rsa-key`, `weak-ec-curve`, `unsupported-key-algorithm`.
fn key_strength(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let key = &cx.a.info.public_key;
    match key.algorithm.as_str() {
        "RSA" if key.bits < 2048 => out.push(finding(
            "weak-rsa-key",
            Severity::Error,
            format!(
                "RSA key is {} bits; keys under 2048 bits are breakable and rustls refuses them",
                key.bits
            ),
            "reissue with --kty EC --curve P-256, or --kty RSA --size 2048 or larger",
        )),
        "RSA" | "Ed25519" => {}
        "ECDSA" => match key.curve.as_deref() {
            Some("P-256" | "P-384" | "P-521") => {}
            Some(c @ ("secp256k1" | "brainpoolP256r1" | "brainpoolP384r1" | "brainpoolP512r1")) => {
                out.push(finding(
                    "weak-ec-curve",
                    Severity::Warning,
                    format!(
                        "EC curve {c} is not supported by rustls, Go or browsers for TLS \
                         certificates"
                    ),
                    "reissue with --kty EC --curve P-256 (or P-384)",
                ));
            }
            other => out.push(finding(
                "weak-ec-curve",
                Severity::Error,
                format!(
                    "EC curve {} is too weak or unsupported; use P-256, P-384 or P-521",
                    other.unwrap_or("(not a named curve)")
                ),
                "reissue with --kty EC --curve P-256 (or P-384)",
            )),
        },
        "DSA" => out.push(finding(
            "unsupported-key-algorithm",
            Severity::Error,
            format!(
                "DSA key ({} bits); TLS 1.3, rustls, Go and browsers do not accept DSA",
                key.bits
            ),
            "reissue with --kty EC --curve P-256",
        )),
        other => out.push(finding(
            "unsupported-key-algorithm",
            Severity::Warning,
            format!("{other} key; rustls, Go and most TLS clients cannot use it"),
            "reissue with --kty EC --curve P-256",
        )),
    }
}

fn weak_signature_algorithm(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(hash @ ("MD2" | "MD5" | "SHA-1")) = cx.a.signature_hash else {
        return;
    };
    let alg = &cx.a.info.signature_algorithm;
    let fix = "reissue with a SHA-256 based signature (keep's default; openssl: -sha256)";
    // A trust anchor's self-signature is never checked during path validation, so a SHA-1 root
    // still works; it is worth fixing, not an outage.
    let f = if cx.a.info.is_ca && cx.a.info.self_signed {
        finding(
            "weak-signature-algorithm",
            Severity::Warning,
            format!(
                "self-signed CA is signed with {alg}; TLS clients do not check a root's own \
                 signature, but {hash} is broken and policy checks reject it"
            ),
            fix,
        )
    } else {
        finding(
            "weak-signature-algorithm",
            Severity::Error,
            format!(
                "signed with {alg}; {hash} signatures are forgeable and rustls, Go and browsers \
                 reject them"
            ),
            fix,
        )
    };
    out.push(f);
}

/// `expired`, `not-yet-valid`.
fn validity(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let now = cx.opts.now;
    if now > cx.a.not_after {
        out.push(finding(
            "expired",
            Severity::Error,
            format!(
                "expired {} ago (notAfter {})",
                human_duration(now - cx.a.not_after),
                cx.a.info.not_after
            ),
            "issue a new certificate (keep certificate create, or sign a fresh CSR) and \
             replace this one",
        ));
    }
    if now < cx.a.not_before {
        out.push(finding(
            "not-yet-valid",
            Severity::Warning,
            format!(
                "not valid until {} (in {}); clients reject it until then",
                cx.a.info.not_before,
                human_duration(cx.a.not_before - now)
            ),
            "wait, or reissue without a future --not-before (and check the issuing host's \
             clock)",
        ));
    }
}

/// Issuers back-date notBefore a little for clock skew; a 90-day certificate must not be
/// reported as "90 days and a minute".
const LIFETIME_SLACK: Duration = Duration::hours(1);

fn long_lifetime(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let lifetime = cx.a.not_after - cx.a.not_before;
    let days = lifetime.whole_days();
    if cx.a.info.is_ca {
        // 20 years including leap days; keep's default for CAs is 10.
        if lifetime > Duration::days(7305) {
            out.push(finding(
                "long-lifetime",
                Severity::Warning,
                format!(
                    "CA lifetime is {} (over 20 years)",
                    human_duration(lifetime)
                ),
                "reissue the CA for 10 years (keep's default) and plan its rotation",
            ));
        }
        return;
    }
    if lifetime > Duration::days(398) {
        out.push(finding(
            "long-lifetime",
            Severity::Error,
            format!(
                "leaf lifetime is {days} days, over 398 days (the CA/Browser Forum maximum; \
                 Apple platforms reject TLS server certificates over 825 days)"
            ),
            "reissue for 90 days or less (keep's default) and renew automatically",
        ));
    } else if lifetime > Duration::days(90) + LIFETIME_SLACK {
        out.push(finding(
            "long-lifetime",
            Severity::Info,
            format!(
                "leaf lifetime is {days} days; short-lived certificates with automatic renewal \
                 limit what a leaked key is worth"
            ),
            "issue leaves for 90 days or less and renew them automatically (keep agent, or \
             keep certificate needs-renewal in a timer)",
        ));
    }
}

fn ed25519_interop(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let key = cx.a.info.public_key.algorithm == "Ed25519";
    let sig = cx.a.info.signature_algorithm == "Ed25519";
    let what = match (key, sig) {
        (true, true) => "Ed25519 key and signature",
        (true, false) => "Ed25519 key",
        (false, true) => "Ed25519 signature (the issuer's key is Ed25519)",
        (false, false) => return,
    };
    out.push(finding(
        "ed25519-interop",
        Severity::Warning,
        format!(
            "{what}: browsers, Java before 15 and older TLS stacks cannot use it (rustls, Go \
             and OpenSSL 1.1.1+ can)"
        ),
        "use --kty EC --curve P-256 for certificates that such clients must accept",
    ));
}

/// `serial-not-positive`, `serial-too-short`.
fn serial(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let raw = &cx.a.raw_serial;
    let serial = &cx.a.info.serial;
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let magnitude = if negative { negate(raw) } else { raw.clone() };
    let significant: &[u8] = match magnitude.iter().position(|&b| b != 0) {
        Some(start) => magnitude.get(start..).unwrap_or_default(),
        None => &[],
    };
    if negative || significant.is_empty() {
        out.push(finding(
            "serial-not-positive",
            Severity::Error,
            format!(
                "serial number {serial} is not positive; RFC 5280 requires a positive serial \
                 and Go rejects negative ones"
            ),
            "reissue with a random serial (keep and openssl -x509 do this by default; do not \
             use -set_serial 0 or negative values)",
        ));
        return;
    }
    // Whole octets, not bits: a random 64-bit serial has a leading zero bit half the time.
    if significant.len() < 8 {
        out.push(finding(
            "serial-too-short",
            Severity::Warning,
            format!(
                "serial number {serial} is only {} long; the CA/Browser Forum requires at \
                 least 64 bits of CSPRNG output so serials cannot be predicted",
                match significant.len() {
                    1 => "1 byte".to_owned(),
                    n => format!("{n} bytes"),
                }
            ),
            "reissue with a random 16-20 byte serial (keep and openssl -x509 do this by \
             default; avoid -set_serial and counter files)",
        ));
    }
}

/// `missing-authority-key-id`, `missing-subject-key-id`.
fn key_identifiers(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if !cx.has_extensions_field {
        return;
    }
    let info = &cx.a.info;
    if !info.self_signed && info.authority_key_id.is_none() {
        out.push(finding(
            "missing-authority-key-id",
            Severity::Warning,
            "no authorityKeyIdentifier (key id); verifiers must find the issuer by name alone, \
             which goes wrong once a CA is re-keyed under the same name",
            "reissue with authorityKeyIdentifier (keep adds it; openssl: \
             authorityKeyIdentifier=keyid,issuer)",
        ));
    }
    if info.is_ca && info.subject_key_id.is_none() {
        out.push(finding(
            "missing-subject-key-id",
            Severity::Warning,
            "CA certificate has no subjectKeyIdentifier; certificates it issues cannot name its \
             key, so chain building falls back to names",
            "reissue the CA with subjectKeyIdentifier (keep adds it; openssl: \
             subjectKeyIdentifier=hash)",
        ));
    }
}

fn intermediate_without_path_len(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let info = &cx.a.info;
    if info.is_ca && !info.self_signed && info.path_len.is_none() {
        out.push(finding(
            "intermediate-without-path-len",
            Severity::Info,
            "intermediate CA has no pathLenConstraint, so its key can create further sub-CAs",
            "reissue with pathlen 0 (keep's intermediate-ca profile does) unless it must issue \
             CAs",
        ));
    }
}

/// `unsupported-critical-extension`, `duplicate-extension`, `malformed-extension`.
fn extension_problems(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for problem in &cx.a.extension_problems {
        out.push(match problem {
            ExtensionProblem::UnsupportedCritical { name } => finding(
                "unsupported-critical-extension",
                Severity::Error,
                format!(
                    "extension {name} is marked critical, but rustls does not process it and \
                     must reject the certificate"
                ),
                "reissue with that extension non-critical, or without it",
            ),
            ExtensionProblem::Duplicate { name } => finding(
                "duplicate-extension",
                Severity::Error,
                format!("extension {name} appears more than once (RFC 5280 forbids it)"),
                "reissue with each extension once",
            ),
            ExtensionProblem::Malformed { name } => finding(
                "malformed-extension",
                Severity::Error,
                format!("extension {name} does not parse"),
                "reissue the certificate with a correctly encoded extension",
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    //! Every rule has a certificate that triggers it and one that does not. The cases that
    //! matter most in practice are made with the openssl CLI, since `keep certificate lint` must
    //! flag real openssl output.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rcgen::{
        BasicConstraints, CustomExtension, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
        SerialNumber,
    };

    use super::*;
    use crate::inspect::tests::{
        EC_P256, Openssl, TestCa, ca_from, issued, leaf_params, root_ca, root_params,
    };

    const P256: &rcgen::SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn lint_as(der: &[u8], purpose: Option<Purpose>) -> Vec<Finding> {
        lint(
            der,
            &LintOptions {
                purpose,
                now: now(),
            },
        )
        .unwrap()
    }

    /// The severity of rule `id` in `findings`, if it fired (at most once).
    fn sev(findings: &[Finding], id: &str) -> Option<Severity> {
        let hits: Vec<_> = findings.iter().filter(|f| f.id == id).collect();
        assert!(hits.len() <= 1, "{id} fired twice: {findings:#?}");
        hits.first().map(|f| f.severity)
    }

    fn message<'a>(findings: &'a [Finding], id: &str) -> &'a str {
        &findings.iter().find(|f| f.id == id).unwrap().message
    }

    fn ids(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.id).collect()
    }

    /// keep's own root-ca → intermediate-ca → leaf chain (rcgen).
    fn keep_chain() -> (TestCa, TestCa, Vec<u8>) {
        let root = root_ca(P256);
        let mut ip = root_params("Claw Intermediate CA");
        ip.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ip.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate_for(P256).unwrap();
        let issuer = rcgen::Issuer::from_params(&root.params, &root.key);
        let der = ip.signed_by(&key, &issuer).unwrap().der().to_vec();
        let intermediate = TestCa {
            params: ip,
            key,
            der,
        };
        let leaf = intermediate.issue(&leaf_params(&["vault.claw.internal"]), P256);
        (root, intermediate, leaf)
    }

    /// An openssl working dir with a proper CA `ca` (EC P-256, critical CA, keyCertSign).
    fn openssl_with_ca() -> Openssl {
        let ossl = Openssl::new();
        ossl.self_signed(
            "ca",
            EC_P256,
            "/CN=Openssl CA",
            &[
                "basicConstraints=critical,CA:true",
                "keyUsage=critical,keyCertSign,cRLSign",
                "subjectKeyIdentifier=hash",
            ],
            &[],
        );
        ossl
    }

    /// Extensions of a sound openssl leaf, before the line a test changes.
    const OSSL_LEAF: [&str; 4] = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid",
    ];

    fn ossl_leaf_ext(more: &[&'static str]) -> Vec<&'static str> {
        OSSL_LEAF.iter().chain(more).copied().collect()
    }

    #[test]
    fn keep_style_chain_is_clean() {
        let (root, intermediate, leaf) = keep_chain();
        for purpose in [None, Some(Purpose::Client), Some(Purpose::Server)] {
            assert_eq!(
                ids(&lint_as(&leaf, purpose)),
                Vec::<&str>::new(),
                "leaf {purpose:?}"
            );
        }
        assert_eq!(ids(&lint_as(&root.der, None)), Vec::<&str>::new(), "root");
        assert_eq!(
            ids(&lint_as(&intermediate.der, None)),
            Vec::<&str>::new(),
            "intermediate"
        );
    }

    #[test]
    fn sound_openssl_leaf_is_clean() {
        let ossl = openssl_with_ca();
        let ext = ossl_leaf_ext(&[
            "extendedKeyUsage=serverAuth,clientAuth",
            "subjectAltName=DNS:vault.claw.internal",
        ]);
        let der = ossl.issue(
            "leaf",
            "ca",
            EC_P256,
            "/CN=vault.claw.internal",
            Some(&ext),
            &[],
        );
        assert_eq!(
            ids(&lint_as(&der, Some(Purpose::Server))),
            Vec::<&str>::new()
        );
        assert_eq!(ids(&lint_as(&ossl.der("ca"), None)), Vec::<&str>::new());
    }

    #[test]
    fn findings_are_sorted_errors_first_then_by_id() {
        let ossl = openssl_with_ca();
        // v1, no SAN, SHA-1, short serial, 1024-bit RSA: several rules of each severity.
        let der = ossl.issue(
            "leaf",
            "ca",
            &["-newkey", "rsa:1024"],
            "/CN=vault.claw.internal",
            None,
            &["-sha1", "-set_serial", "7", "-days", "200"],
        );
        let findings = lint_as(&der, None);
        assert!(findings.len() >= 5, "{findings:#?}");
        for pair in findings.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(
                a.severity > b.severity || (a.severity == b.severity && a.id < b.id),
                "{findings:#?}"
            );
        }
        assert_eq!(findings[0].severity, Severity::Error);
        let json = serde_json::to_value(&findings).unwrap();
        assert_eq!(json[0]["severity"], "error");
        assert!(json[0]["fix"].as_str().is_some_and(|f| !f.is_empty()));
    }

    #[test]
    fn not_v3() {
        let ossl = openssl_with_ca();
        // `openssl x509 -req` without -extfile makes a v1 certificate.
        let v1 = ossl.issue("v1", "ca", EC_P256, "/CN=vault.claw.internal", None, &[]);
        let f = lint_as(&v1, None);
        assert_eq!(sev(&f, "not-v3"), Some(Severity::Error));
        assert!(message(&f, "not-v3").contains("v1"));
        // The extension-absence warnings are subsumed by not-v3.
        assert_eq!(sev(&f, "missing-eku"), None);
        assert_eq!(sev(&f, "missing-authority-key-id"), None);

        let ext = ossl_leaf_ext(&["subjectAltName=DNS:vault.claw.internal"]);
        let v3 = ossl.issue(
            "v3",
            "ca",
            EC_P256,
            "/CN=vault.claw.internal",
            Some(&ext),
            &[],
        );
        assert_eq!(sev(&lint_as(&v3, None), "not-v3"), None);
    }

    #[test]
    fn openssl_server_cert_with_cn_only() {
        let ossl = openssl_with_ca();
        let ext = ossl_leaf_ext(&["extendedKeyUsage=serverAuth"]);
        let cn_only = ossl.issue(
            "cn",
            "ca",
            EC_P256,
            "/CN=vault.claw.internal",
            Some(&ext),
            &[],
        );
        let f = lint_as(&cn_only, Some(Purpose::Server));
        assert_eq!(sev(&f, "missing-san"), Some(Severity::Error));
        assert_eq!(sev(&f, "cn-only-server-name"), Some(Severity::Error));
        assert!(message(&f, "cn-only-server-name").contains("\"vault.claw.internal\""));
        assert!(
            f.iter()
                .any(|x| x.fix.contains("--san vault.claw.internal"))
        );
        // Without a purpose too: a dotted CN is evidently a host name.
        assert_eq!(
            sev(&lint_as(&cn_only, None), "cn-only-server-name"),
            Some(Severity::Error)
        );

        let ext = ossl_leaf_ext(&[
            "extendedKeyUsage=serverAuth",
            "subjectAltName=DNS:vault.claw.internal",
        ]);
        let with_san = ossl.issue(
            "san",
            "ca",
            EC_P256,
            "/CN=vault.claw.internal",
            Some(&ext),
            &[],
        );
        let f = lint_as(&with_san, Some(Purpose::Server));
        assert_eq!(sev(&f, "missing-san"), None);
        assert_eq!(sev(&f, "cn-only-server-name"), None);
    }

    #[test]
    fn cn_only_server_name_depends_on_what_the_cn_looks_like() {
        let mut p = leaf_params(&[]);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let alice = issued(&p);
        let f = lint_as(&alice, None);
        assert_eq!(sev(&f, "missing-san"), Some(Severity::Error));
        assert_eq!(sev(&f, "cn-only-server-name"), None);
        // As a server, a single label (a compose service name) is a host name.
        assert_eq!(
            sev(
                &lint_as(&alice, Some(Purpose::Server)),
                "cn-only-server-name"
            ),
            Some(Severity::Error)
        );
        // As a client, names are not matched at all, and roles can match the CN: only a
        // warning.
        let f = lint_as(&alice, Some(Purpose::Client));
        assert_eq!(sev(&f, "cn-only-server-name"), None);
        assert_eq!(sev(&f, "missing-san"), Some(Severity::Warning));

        let mut p = leaf_params(&[]);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "10.0.0.7");
        let f = lint_as(&issued(&p), None);
        assert_eq!(sev(&f, "cn-only-server-name"), Some(Severity::Error));
        assert!(
            f.iter()
                .any(|x| x.fix.contains("subjectAltName=IP:10.0.0.7"))
        );

        for (cn, strict, want) in [
            ("vault.claw.internal", true, true),
            ("*.claw.internal", true, true),
            ("localhost", true, true),
            ("::1", true, true),
            ("vault", true, false),
            ("vault", false, true),
            ("Claw Root CA", false, false),
            ("v1.2", true, false),
            ("-bad.example", true, false),
            ("*", false, false),
        ] {
            assert_eq!(looks_like_host(cn, strict), want, "{cn} strict={strict}");
        }
    }

    #[test]
    fn self_signed_openssl_ca_served_directly() {
        // `openssl req -x509 -subj /CN=host` — CA:TRUE (default config), no SAN, used as the
        // server's own certificate.
        let ossl = Openssl::new();
        let der = ossl.self_signed(
            "c",
            EC_P256,
            "/CN=vault.claw.internal",
            &[
                "basicConstraints=critical,CA:true",
                "keyUsage=keyCertSign,digitalSignature",
                "subjectKeyIdentifier=hash",
            ],
            &[],
        );
        let f = lint_as(&der, Some(Purpose::Server));
        assert_eq!(sev(&f, "cn-only-server-name"), Some(Severity::Error));
        assert_eq!(sev(&f, "missing-san"), Some(Severity::Error));
        // Without a purpose it is just a root CA, and roots need no SAN.
        let f = lint_as(&der, None);
        assert_eq!(sev(&f, "missing-san"), None);
        assert_eq!(sev(&f, "cn-only-server-name"), None);
    }

    #[test]
    fn openssl_client_cert_without_client_auth() {
        let ossl = openssl_with_ca();
        let ext = ossl_leaf_ext(&[
            "extendedKeyUsage=serverAuth",
            "subjectAltName=URI:spiffe://claw/agent",
        ]);
        let server_only = ossl.issue("s", "ca", EC_P256, "/CN=agent", Some(&ext), &[]);
        let f = lint_as(&server_only, Some(Purpose::Client));
        assert_eq!(sev(&f, "client-missing-client-auth"), Some(Severity::Error));
        assert!(message(&f, "client-missing-client-auth").contains("[serverAuth]"));
        assert_eq!(sev(&f, "missing-eku"), None);

        let ext = ossl_leaf_ext(&[
            "extendedKeyUsage=clientAuth",
            "subjectAltName=URI:spiffe://claw/agent",
        ]);
        let client = ossl.issue("c", "ca", EC_P256, "/CN=agent", Some(&ext), &[]);
        assert_eq!(
            sev(
                &lint_as(&client, Some(Purpose::Client)),
                "client-missing-client-auth"
            ),
            None
        );
    }

    #[test]
    fn server_missing_server_auth() {
        let mut p = leaf_params(&["vault.claw.internal"]);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let f = lint_as(&issued(&p), Some(Purpose::Server));
        assert_eq!(sev(&f, "server-missing-server-auth"), Some(Severity::Error));
        assert_eq!(sev(&f, "client-missing-client-auth"), None);

        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
        let f = lint_as(&issued(&p), Some(Purpose::Server));
        assert_eq!(sev(&f, "server-missing-server-auth"), Some(Severity::Error));
        assert!(message(&f, "server-missing-server-auth").contains("anyExtendedKeyUsage"));

        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        assert_eq!(
            sev(
                &lint_as(&issued(&p), Some(Purpose::Server)),
                "server-missing-server-auth"
            ),
            None
        );
    }

    #[test]
    fn missing_eku() {
        let mut p = leaf_params(&["vault.claw.internal"]);
        p.extended_key_usages.clear();
        let no_eku = issued(&p);
        for purpose in [None, Some(Purpose::Client), Some(Purpose::Server)] {
            let f = lint_as(&no_eku, purpose);
            assert_eq!(
                sev(&f, "missing-eku"),
                Some(Severity::Warning),
                "{purpose:?}"
            );
            assert_eq!(sev(&f, "client-missing-client-auth"), None);
            assert_eq!(sev(&f, "server-missing-server-auth"), None);
        }
        let with_eku = issued(&leaf_params(&["vault.claw.internal"]));
        assert_eq!(sev(&lint_as(&with_eku, None), "missing-eku"), None);
        // CAs are judged by ca-has-eku instead.
        assert_eq!(sev(&lint_as(&root_ca(P256).der, None), "missing-eku"), None);
    }

    #[test]
    fn openssl_ca_with_eku() {
        let ossl = Openssl::new();
        let ca_ext = [
            "basicConstraints=critical,CA:true",
            "keyUsage=critical,keyCertSign,cRLSign",
            "subjectKeyIdentifier=hash",
        ];
        let with_eku: Vec<&str> = ca_ext
            .iter()
            .copied()
            .chain(["extendedKeyUsage=serverAuth"])
            .collect();
        let der = ossl.self_signed("eku", EC_P256, "/CN=EKU CA", &with_eku, &[]);
        let f = lint_as(&der, None);
        assert_eq!(sev(&f, "ca-has-eku"), Some(Severity::Error));
        assert!(message(&f, "ca-has-eku").contains("without clientAuth"));

        let der = ossl.self_signed("plain", EC_P256, "/CN=Plain CA", &ca_ext, &[]);
        assert_eq!(sev(&lint_as(&der, None), "ca-has-eku"), None);
    }

    #[test]
    fn ca_with_both_tls_ekus_is_a_warning() {
        let mut p = root_params("Both CA");
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let f = lint_as(&ca_from(p, P256).der, None);
        assert_eq!(sev(&f, "ca-has-eku"), Some(Severity::Warning));
    }

    #[test]
    fn ca_missing_key_cert_sign() {
        let mut p = root_params("No KCS");
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        let f = lint_as(&ca_from(p.clone(), P256).der, None);
        assert_eq!(sev(&f, "ca-missing-key-cert-sign"), Some(Severity::Error));
        assert!(message(&f, "ca-missing-key-cert-sign").contains("[digitalSignature, cRLSign]"));

        p.key_usages.clear();
        let f = lint_as(&ca_from(p, P256).der, None);
        assert_eq!(sev(&f, "ca-missing-key-cert-sign"), Some(Severity::Warning));

        assert_eq!(
            sev(
                &lint_as(&root_ca(P256).der, None),
                "ca-missing-key-cert-sign"
            ),
            None
        );
    }

    #[test]
    fn ca_basic_constraints_not_critical() {
        let ossl = Openssl::new();
        let ext = [
            "basicConstraints=CA:true",
            "keyUsage=critical,keyCertSign,cRLSign",
            "subjectKeyIdentifier=hash",
        ];
        let der = ossl.self_signed("c", EC_P256, "/CN=Soft CA", &ext, &[]);
        assert_eq!(
            sev(&lint_as(&der, None), "ca-basic-constraints-not-critical"),
            Some(Severity::Warning)
        );
        // rcgen marks it critical.
        assert_eq!(
            sev(
                &lint_as(&root_ca(P256).der, None),
                "ca-basic-constraints-not-critical"
            ),
            None
        );
    }

    #[test]
    fn leaf_has_key_cert_sign() {
        let mut p = leaf_params(&["vault.claw.internal"]);
        p.key_usages.push(KeyUsagePurpose::KeyCertSign);
        assert_eq!(
            sev(&lint_as(&issued(&p), None), "leaf-has-key-cert-sign"),
            Some(Severity::Error)
        );
        let good = issued(&leaf_params(&["vault.claw.internal"]));
        assert_eq!(sev(&lint_as(&good, None), "leaf-has-key-cert-sign"), None);
    }

    #[test]
    fn leaf_missing_digital_signature() {
        let mut p = leaf_params(&["vault.claw.internal"]);
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        let f = lint_as(&issued(&p), None);
        assert_eq!(
            sev(&f, "leaf-missing-digital-signature"),
            Some(Severity::Warning)
        );
        assert!(message(&f, "leaf-missing-digital-signature").contains("[keyEncipherment]"));
        // No keyUsage extension at all: any usage is allowed.
        p.key_usages.clear();
        assert_eq!(
            sev(
                &lint_as(&issued(&p), None),
                "leaf-missing-digital-signature"
            ),
            None
        );
        let good = issued(&leaf_params(&["vault.claw.internal"]));
        assert_eq!(
            sev(&lint_as(&good, None), "leaf-missing-digital-signature"),
            None
        );
    }

    #[test]
    fn openssl_rsa_1024_is_weak() {
        let ossl = Openssl::new();
        let der = ossl.self_signed("weak", &["-newkey", "rsa:1024"], "/CN=x", &[], &[]);
        let f = lint_as(&der, None);
        assert_eq!(sev(&f, "weak-rsa-key"), Some(Severity::Error));
        assert!(message(&f, "weak-rsa-key").contains("1024 bits"));

        let der = ossl.self_signed("ok", &["-newkey", "rsa:2048"], "/CN=x", &[], &[]);
        assert_eq!(sev(&lint_as(&der, None), "weak-rsa-key"), None);
    }

    #[test]
    fn weak_ec_curve() {
        let ossl = Openssl::new();
        let curve = |c: &str| {
            [
                "-newkey".to_owned(),
                "ec".to_owned(),
                "-pkeyopt".to_owned(),
                format!("ec_paramgen_curve:{c}"),
            ]
        };
        let der = |name: &str, c: &str| {
            let args = curve(c);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ossl.self_signed(name, &args, "/CN=x", &[], &[])
        };
        let f = lint_as(&der("p192", "prime192v1"), None);
        assert_eq!(sev(&f, "weak-ec-curve"), Some(Severity::Error));
        assert!(message(&f, "weak-ec-curve").contains("P-192"));
        assert_eq!(
            sev(&lint_as(&der("k1", "secp256k1"), None), "weak-ec-curve"),
            Some(Severity::Warning)
        );
        for (name, c) in [("p256", "P-256"), ("p384", "P-384"), ("p521", "P-521")] {
            assert_eq!(
                sev(&lint_as(&der(name, c), None), "weak-ec-curve"),
                None,
                "{c}"
            );
        }
    }

    #[test]
    fn unsupported_key_algorithm() {
        let ossl = Openssl::new();
        let der = ossl.self_signed("ed448", &["-newkey", "ed448"], "/CN=x", &[], &[]);
        let f = lint_as(&der, None);
        assert_eq!(
            sev(&f, "unsupported-key-algorithm"),
            Some(Severity::Warning)
        );
        assert!(message(&f, "unsupported-key-algorithm").contains("Ed448"));
        for alg in [P256, &rcgen::PKCS_ED25519, &rcgen::PKCS_RSA_SHA256] {
            assert_eq!(
                sev(
                    &lint_as(&root_ca(alg).der, None),
                    "unsupported-key-algorithm"
                ),
                None
            );
        }
    }

    #[test]
    fn openssl_sha1_signature() {
        let ossl = openssl_with_ca();
        let ext = ossl_leaf_ext(&[
            "subjectAltName=DNS:a.claw.internal",
            "extendedKeyUsage=serverAuth",
        ]);
        // An EC issuer: ECDSA-SHA1.
        let leaf = ossl.issue("sha1", "ca", EC_P256, "/CN=a", Some(&ext), &["-sha1"]);
        let f = lint_as(&leaf, None);
        assert_eq!(sev(&f, "weak-signature-algorithm"), Some(Severity::Error));
        assert!(message(&f, "weak-signature-algorithm").contains("ECDSA-SHA1"));
        let leaf = ossl.issue("sha256", "ca", EC_P256, "/CN=a", Some(&ext), &["-sha256"]);
        assert_eq!(sev(&lint_as(&leaf, None), "weak-signature-algorithm"), None);

        // The classic: `openssl req -x509 -sha1` with RSA. Self-signed CA: its own signature is
        // never checked, so only a warning.
        let root_ext = [
            "basicConstraints=critical,CA:true",
            "keyUsage=critical,keyCertSign",
        ];
        let root = ossl.self_signed(
            "root",
            &["-newkey", "rsa:2048"],
            "/CN=Old CA",
            &root_ext,
            &["-sha1"],
        );
        let f = lint_as(&root, None);
        assert_eq!(sev(&f, "weak-signature-algorithm"), Some(Severity::Warning));
        assert!(message(&f, "weak-signature-algorithm").contains("SHA1-RSA"));
        // The same as a self-signed leaf is an error.
        let leaf_ext = [
            "subjectAltName=DNS:old.claw.internal",
            "extendedKeyUsage=serverAuth",
        ];
        let leaf = ossl.self_signed(
            "ssleaf",
            &["-newkey", "rsa:2048"],
            "/CN=old.claw.internal",
            &leaf_ext,
            &["-sha1"],
        );
        assert_eq!(
            sev(&lint_as(&leaf, None), "weak-signature-algorithm"),
            Some(Severity::Error)
        );
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let der = issued(&leaf_params(&["vault.claw.internal"]));
        let at = |now| lint(&der, &LintOptions { purpose: None, now }).unwrap();

        let f = at(now() + Duration::days(93));
        assert_eq!(sev(&f, "expired"), Some(Severity::Error));
        assert!(
            message(&f, "expired").contains("expired 3 days ago"),
            "{}",
            message(&f, "expired")
        );
        assert_eq!(sev(&f, "not-yet-valid"), None);

        let f = at(now() - Duration::days(2));
        assert_eq!(sev(&f, "not-yet-valid"), Some(Severity::Warning));
        assert!(
            message(&f, "not-yet-valid").contains("(in 2 days)"),
            "{}",
            message(&f, "not-yet-valid")
        );
        assert_eq!(sev(&f, "expired"), None);

        let f = at(now());
        assert_eq!(sev(&f, "expired"), None);
        assert_eq!(sev(&f, "not-yet-valid"), None);
    }

    #[test]
    fn long_lifetime() {
        let leaf_for = |days: i64| {
            let mut p = leaf_params(&["vault.claw.internal"]);
            p.not_after = p.not_before + Duration::days(days);
            lint_as(&issued(&p), None)
        };
        let f = leaf_for(825);
        assert_eq!(sev(&f, "long-lifetime"), Some(Severity::Error));
        assert!(message(&f, "long-lifetime").contains("825 days"));
        assert_eq!(sev(&leaf_for(398), "long-lifetime"), Some(Severity::Info));
        assert_eq!(sev(&leaf_for(180), "long-lifetime"), Some(Severity::Info));
        assert_eq!(sev(&leaf_for(90), "long-lifetime"), None);
        assert_eq!(sev(&leaf_for(1), "long-lifetime"), None);

        let mut p = root_params("Forever CA");
        p.not_after = p.not_before + Duration::days(25 * 365);
        assert_eq!(
            sev(&lint_as(&ca_from(p, P256).der, None), "long-lifetime"),
            Some(Severity::Warning)
        );
        // keep's 10-year root.
        assert_eq!(
            sev(&lint_as(&root_ca(P256).der, None), "long-lifetime"),
            None
        );
    }

    #[test]
    fn ed25519_interop() {
        let ed_root = root_ca(&rcgen::PKCS_ED25519);
        let f = lint_as(&ed_root.der, None);
        assert_eq!(sev(&f, "ed25519-interop"), Some(Severity::Warning));
        assert!(message(&f, "ed25519-interop").contains("Ed25519 key and signature"));
        // A P-256 leaf signed by an Ed25519 CA still carries an Ed25519 signature.
        let leaf = ed_root.issue(&leaf_params(&["vault.claw.internal"]), P256);
        let f = lint_as(&leaf, None);
        assert_eq!(sev(&f, "ed25519-interop"), Some(Severity::Warning));
        assert!(message(&f, "ed25519-interop").contains("Ed25519 signature"));

        let ec = issued(&leaf_params(&["vault.claw.internal"]));
        assert_eq!(sev(&lint_as(&ec, None), "ed25519-interop"), None);
    }

    #[test]
    fn serial_too_short() {
        let ossl = Openssl::new();
        let der = ossl.self_signed("one", EC_P256, "/CN=x", &[], &["-set_serial", "1"]);
        let f = lint_as(&der, None);
        assert_eq!(sev(&f, "serial-too-short"), Some(Severity::Warning));
        assert!(message(&f, "serial-too-short").contains("serial number 01 is only 1 byte long"));

        let mut p = leaf_params(&["a.claw.internal"]);
        p.serial_number = Some(SerialNumber::from_slice(&[0x01, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(sev(&lint_as(&issued(&p), None), "serial-too-short"), None);
        // openssl's default: 20 random bytes.
        let der = ossl.self_signed("random", EC_P256, "/CN=x", &[], &[]);
        assert_eq!(sev(&lint_as(&der, None), "serial-too-short"), None);
    }

    #[test]
    fn serial_not_positive() {
        let ossl = Openssl::new();
        for (name, serial) in [("zero", "0"), ("negative", "-0x1234")] {
            let der = ossl.self_signed(name, EC_P256, "/CN=x", &[], &["-set_serial", serial]);
            let f = lint_as(&der, None);
            assert_eq!(
                sev(&f, "serial-not-positive"),
                Some(Severity::Error),
                "{name}"
            );
            assert_eq!(sev(&f, "serial-too-short"), None, "{name}");
        }
        let der = ossl.self_signed(
            "positive",
            EC_P256,
            "/CN=x",
            &[],
            &["-set_serial", "0x0102030405060708"],
        );
        assert_eq!(sev(&lint_as(&der, None), "serial-not-positive"), None);
    }

    #[test]
    fn missing_authority_key_id() {
        let mut p = leaf_params(&["a.claw.internal"]);
        p.use_authority_key_identifier_extension = false;
        assert_eq!(
            sev(&lint_as(&issued(&p), None), "missing-authority-key-id"),
            Some(Severity::Warning)
        );
        let good = issued(&leaf_params(&["a.claw.internal"]));
        assert_eq!(sev(&lint_as(&good, None), "missing-authority-key-id"), None);
        // Self-signed certificates need none (rcgen's root has no AKI).
        assert_eq!(
            sev(
                &lint_as(&root_ca(P256).der, None),
                "missing-authority-key-id"
            ),
            None
        );
    }

    #[test]
    fn missing_subject_key_id() {
        let ossl = Openssl::new();
        let ext = [
            "basicConstraints=critical,CA:true",
            "keyUsage=critical,keyCertSign",
            "subjectKeyIdentifier=none",
            "authorityKeyIdentifier=none",
        ];
        let der = ossl.self_signed("c", EC_P256, "/CN=No SKI CA", &ext, &[]);
        assert_eq!(
            sev(&lint_as(&der, None), "missing-subject-key-id"),
            Some(Severity::Warning)
        );
        assert_eq!(
            sev(&lint_as(&root_ca(P256).der, None), "missing-subject-key-id"),
            None
        );
        // Leaves need none.
        let leaf = issued(&leaf_params(&["a.claw.internal"]));
        assert_eq!(sev(&lint_as(&leaf, None), "missing-subject-key-id"), None);
    }

    #[test]
    fn intermediate_without_path_len() {
        let root = root_ca(P256);
        let intermediate = |bc| {
            let mut p = root_params("Sub CA");
            p.is_ca = IsCa::Ca(bc);
            p.use_authority_key_identifier_extension = true;
            root.issue(&p, P256)
        };
        let f = lint_as(&intermediate(BasicConstraints::Unconstrained), None);
        assert_eq!(
            sev(&f, "intermediate-without-path-len"),
            Some(Severity::Info)
        );
        let f = lint_as(&intermediate(BasicConstraints::Constrained(0)), None);
        assert_eq!(sev(&f, "intermediate-without-path-len"), None);
        // A root without pathlen is normal.
        let mut p = root_params("Open Root");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        assert_eq!(
            sev(
                &lint_as(&ca_from(p, P256).der, None),
                "intermediate-without-path-len"
            ),
            None
        );
    }

    /// An extension with a private OID whose value is an empty SEQUENCE.
    fn private_extension(critical: bool) -> CustomExtension {
        let mut ext =
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 7], vec![0x30, 0x00]);
        ext.set_criticality(critical);
        ext
    }

    #[test]
    fn unsupported_critical_extension() {
        let mut p = leaf_params(&["a.claw.internal"]);
        p.custom_extensions.push(private_extension(true));
        let f = lint_as(&issued(&p), None);
        assert_eq!(
            sev(&f, "unsupported-critical-extension"),
            Some(Severity::Error)
        );
        assert!(message(&f, "unsupported-critical-extension").contains("1.3.6.1.4.1.99999.7"));

        let mut p = leaf_params(&["a.claw.internal"]);
        p.custom_extensions.push(private_extension(false));
        assert_eq!(
            sev(
                &lint_as(&issued(&p), None),
                "unsupported-critical-extension"
            ),
            None
        );
    }

    #[test]
    fn duplicate_extension() {
        let mut p = leaf_params(&["a.claw.internal"]);
        p.custom_extensions.push(private_extension(false));
        p.custom_extensions.push(private_extension(false));
        let f = lint_as(&issued(&p), None);
        assert_eq!(sev(&f, "duplicate-extension"), Some(Severity::Error));

        let mut p = leaf_params(&["a.claw.internal"]);
        p.custom_extensions.push(private_extension(false));
        assert_eq!(
            sev(&lint_as(&issued(&p), None), "duplicate-extension"),
            None
        );
    }

    #[test]
    fn malformed_extension() {
        // basicConstraints whose value is not a SEQUENCE.
        let mut p = leaf_params(&["a.claw.internal"]);
        let mut bad = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x04, 0x01, 0xff]);
        bad.set_criticality(true);
        p.custom_extensions.push(bad);
        let f = lint_as(&issued(&p), None);
        assert_eq!(sev(&f, "malformed-extension"), Some(Severity::Error));
        assert!(message(&f, "malformed-extension").contains("basicConstraints"));

        let good = issued(&leaf_params(&["a.claw.internal"]));
        assert_eq!(sev(&lint_as(&good, None), "malformed-extension"), None);
    }

    #[test]
    fn unparseable_input_is_an_error_not_a_finding() {
        let opts = LintOptions {
            purpose: None,
            now: now(),
        };
        assert!(lint(b"not a certificate", &opts).is_err());
    }

    #[test]
    fn severity_displays_and_serializes_lowercase() {
        assert_eq!(Severity::Warning.to_string(), "warning");
        assert_eq!(format!("{:7}|", Severity::Info), "info   |");
        assert_eq!(serde_json::to_value(Severity::Info).unwrap(), "info");
        assert!(Severity::Error > Severity::Warning && Severity::Warning > Severity::Info);
    }

    #[test]
    fn rule_ids_are_documented_kebab_case() {
        let source = include_str!("lint.rs");
        let (code, _tests) = source.split_once("#[cfg(test)]").unwrap();
        let mut ids: Vec<&str> = code
            .match_indices("finding(")
            .filter_map(|(at, call)| {
                let rest = code[at + call.len()..].trim_start().strip_prefix('"')?;
                rest.split('"').next()
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert!(ids.len() >= 27, "{ids:?}");
        for id in ids {
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{id}"
            );
            assert!(
                source.contains(&format!("//! | `{id}` |")),
                "{id} not in the module docs"
            );
        }
    }
}
