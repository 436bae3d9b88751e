//! PEM material: reading it the way keep does (keep-pki's forgiving reader), noticing what that
//! reader had to repair, and the certificate facts the checks need (validity, names, issuer).

use keep_pki::pem::{PemBlock, PemError};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

use crate::report::Check;

/// One kind of damage keep's PEM reader repairs silently, and the lines it is on (1-based in
/// the PEM text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// What was repaired, e.g. `trailing spaces`.
    pub what: &'static str,
    /// Lines of the PEM text it was found on.
    pub lines: Vec<usize>,
}

/// What keep's reader repairs in `text` that stricter tools (OpenSSL, Go, Java) may not: CRLF
/// line ends, trailing blanks, indented block lines, literal `\n` escapes.
///
/// Only the text inside `-----BEGIN`/`-----END` blocks counts: comments around blocks are
/// normal in bundles.
pub fn repairs(text: &[u8]) -> Vec<Repair> {
    let text = String::from_utf8_lossy(text);
    let mut crlf = Vec::new();
    let mut trailing = Vec::new();
    let mut indented = Vec::new();
    let mut escaped = Vec::new();
    let mut in_block = false;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.contains("-----BEGIN ") {
            in_block = true;
            if line.contains("\\n") {
                escaped.push(n);
            }
        }
        if in_block {
            if raw.ends_with('\r') {
                crlf.push(n);
            }
            if line.ends_with([' ', '\t']) {
                trailing.push(n);
            }
            if line.starts_with([' ', '\t']) {
                indented.push(n);
            }
        }
        if line.contains("-----END ") {
            in_block = false;
        }
    }
    [
        ("literal \\n escapes instead of line breaks", escaped),
        ("Windows (CRLF) line ends", crlf),
        ("trailing spaces", trailing),
        ("extra indentation", indented),
    ]
    .into_iter()
    .filter(|(_, lines)| !lines.is_empty())
    .map(|(what, lines)| Repair { what, lines })
    .collect()
}

/// `2`, `2–5`, `2, 4, 7–9`: line numbers shifted by `offset`, as ranges.
pub fn line_ranges(lines: &[usize], offset: usize) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        parts.push(if start == end {
            format!("{}", start + offset)
        } else {
            format!("{}–{}", start + offset, end + offset)
        });
        i += 1;
    }
    let word = if lines.len() == 1 { "line" } else { "lines" };
    format!("{word} {}", parts.join(", "))
}

/// Splits keep's `…; fix: …` messages into (problem, fix).
pub fn split_fix(message: &str) -> (String, Option<String>) {
    match message.rsplit_once("; fix: ") {
        Some((problem, fix)) => (problem.to_owned(), Some(fix.to_owned())),
        None => (message.to_owned(), None),
    }
}

/// A PEM error as a failed check: the reader's message (source, line, problem) and its fix.
pub fn pem_failure(id: &str, title: &str, e: &PemError) -> Check {
    let (problem, fix) = split_fix(&e.to_string());
    Check::fail(
        id,
        title,
        problem,
        fix.unwrap_or_else(|| "replace it with the PEM text as the CA issued it".to_owned()),
    )
}

/// The facts about one certificate the checks use.
#[derive(Debug, Clone)]
pub struct CertFacts {
    /// The DER.
    pub der: Vec<u8>,
    /// RFC 4514 subject.
    pub subject: String,
    /// RFC 4514 issuer.
    pub issuer: String,
    /// Raw DER of the subject name (to compare with CA hints).
    pub subject_raw: Vec<u8>,
    /// Raw DER of the issuer name.
    pub issuer_raw: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// A CA certificate (basicConstraints CA:TRUE).
    pub is_ca: bool,
    /// Subject == issuer and the signature verifies with its own key.
    pub self_signed: bool,
    /// EKU names (`clientAuth`, `serverAuth` …); empty when the extension is absent.
    pub eku: Vec<String>,
    /// SANs as `DNS:x`, `IP:y`, `URI:z`, `email:w`.
    pub sans: Vec<String>,
}

impl CertFacts {
    /// Reads the facts from DER; `None` when it does not parse (the PEM reader already checked
    /// it does, so this is not expected).
    pub fn of(der: &[u8]) -> Option<CertFacts> {
        let info = keep_pki::inspect::inspect(der).ok()?;
        let (_, x) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
        let mut sans = Vec::new();
        sans.extend(info.sans.dns.iter().map(|d| format!("DNS:{d}")));
        sans.extend(info.sans.ip.iter().map(|d| format!("IP:{d}")));
        sans.extend(info.sans.uri.iter().map(|d| format!("URI:{d}")));
        sans.extend(info.sans.email.iter().map(|d| format!("email:{d}")));
        Some(CertFacts {
            der: der.to_vec(),
            subject: info.subject,
            issuer: info.issuer,
            subject_raw: x.subject().as_raw().to_vec(),
            issuer_raw: x.issuer().as_raw().to_vec(),
            not_before: x.validity().not_before.to_datetime(),
            not_after: x.validity().not_after.to_datetime(),
            is_ca: info.is_ca,
            self_signed: info.self_signed,
            eku: info.extended_key_usage,
            sans,
        })
    }

    /// Every certificate of a PEM chain, in order (blocks that do not parse are left out).
    pub fn chain(blocks: &[PemBlock]) -> Vec<CertFacts> {
        blocks
            .iter()
            .filter_map(|b| CertFacts::of(&b.der))
            .collect()
    }
}

/// Validity window and remaining lifetime: fail when expired or not yet valid, warn when less
/// than a third of the lifetime is left (the agent renews at two thirds).
pub fn validity(
    id: &str,
    title: &str,
    cert: &CertFacts,
    now: OffsetDateTime,
    renew: &str,
) -> Check {
    let human = keep_pki::inspect::human_duration;
    let at = |t: OffsetDateTime| keep_pki::duration::rfc3339(t);
    if now > cert.not_after {
        return Check::fail(
            id,
            title,
            format!(
                "expired at {} ({} ago)",
                at(cert.not_after),
                human(now - cert.not_after)
            ),
            renew.to_owned(),
        );
    }
    if now < cert.not_before {
        return Check::fail(
            id,
            title,
            format!(
                "not valid until {} (in {})",
                at(cert.not_before),
                human(cert.not_before - now)
            ),
            "check the clock of this host and of the CA host (`date -u`), or wait until then"
                .to_owned(),
        );
    }
    let lifetime = (cert.not_after - cert.not_before).whole_seconds().max(1);
    let left = (cert.not_after - now).whole_seconds();
    // Integer percent; the exact share does not matter for a one-line report.
    let percent = left.saturating_mul(100) / lifetime;
    let detail = format!(
        "valid until {} ({} left, {percent}% of its lifetime)",
        at(cert.not_after),
        human(cert.not_after - now)
    );
    if percent < 33 {
        Check::warn(
            id,
            title,
            format!("{detail}: less than a third left"),
            renew.to_owned(),
        )
    } else {
        Check::ok(id, title, detail)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn repairs_name_the_damage_and_the_lines() {
        let text =
            "comment  \n-----BEGIN CERTIFICATE----- \n  AAAA\r\nBBBB\n-----END CERTIFICATE-----\n";
        let r = repairs(text.as_bytes());
        let find = |w: &str| r.iter().find(|x| x.what == w).map(|x| x.lines.clone());
        assert_eq!(find("trailing spaces"), Some(vec![2]));
        assert_eq!(find("extra indentation"), Some(vec![3]));
        assert_eq!(find("Windows (CRLF) line ends"), Some(vec![3]));
        assert!(repairs(b"-----BEGIN X-----\nAAAA\n-----END X-----\n").is_empty());
        let esc = repairs(b"-----BEGIN X-----\\nAAAA\\n-----END X-----");
        assert_eq!(esc[0].what, "literal \\n escapes instead of line breaks");
    }

    #[test]
    fn line_ranges_are_compact() {
        assert_eq!(line_ranges(&[2], 0), "line 2");
        assert_eq!(line_ranges(&[2, 3, 4, 7, 9, 10], 5), "lines 7–9, 12, 14–15");
    }

    #[test]
    fn fixes_split_off() {
        assert_eq!(
            split_fix("a; b; fix: c"),
            ("a; b".to_owned(), Some("c".to_owned()))
        );
        assert_eq!(split_fix("plain"), ("plain".to_owned(), None));
    }
}
