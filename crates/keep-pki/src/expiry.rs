//! Expiry checks for cron, systemd and node_exporter (`keep check expiry`).
//!
//! Given the certificates of one source (a file or bundle, or the chain a server presents),
//! thresholds and "now", [`check_chain`] returns one [`CertResult`] per certificate with a
//! [`Status`] and the reason for it. The checks, most severe first:
//!
//! - **crit**: the certificate has expired, is not valid yet, has less time left than `--crit`,
//!   or *outlives its issuer* (its `not_after` is later than that of every certificate in the
//!   same bundle or the `--roots` files that could have issued it: the chain dies with the
//!   issuer, whatever the leaf says);
//! - **warn**: less time left than `--warn`;
//! - **ok**: otherwise.
//!
//! Thresholds are relative to each certificate's own lifetime by default (`33%`, `10%`),
//! because a fixed "30 days" means nothing for a 24-hour certificate and cries wolf for ten
//! years on a root; absolute durations (`30d`) are there for policies that demand them.
//!
//! A chain is checked cert by cert, intermediates and roots included, and its status is the
//! worst of its certificates ([`CertResult::chain_status`]). The renderers
//! ([`render_text`], [`render_json`], [`render_prometheus`]) turn a [`Report`] into what the
//! command prints. Nothing here reads files or the network: the CLI hands in DER.

use std::fmt::{self, Write as _};

use time::{Duration, OffsetDateTime};

use crate::CertParseError;
use crate::duration::rfc3339;
use crate::inspect::{self, human_duration};
use crate::renewal::{Threshold, parse_threshold};

/// How a certificate (or a chain, or a whole run) fares. Ordered: `Ok < Warn < Crit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// More time left than the warning threshold.
    Ok,
    /// Less time left than `--warn`.
    Warn,
    /// Expired, not yet valid, less time left than `--crit`, outlives its issuer, or (for a
    /// run) an input could not be read.
    Crit,
}

impl Status {
    /// The exit code of a run with this overall status, and the value of the
    /// `keep_check_certificate_status` metric: 0, 1, 2 (as Nagios plugins use them).
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Crit => 2,
        }
    }

    /// `ok`, `warn` or `crit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Crit => "crit",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `--warn` and `--crit` thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Warn when less than this remains.
    pub warn: Threshold,
    /// Critical when less than this remains.
    pub crit: Threshold,
}

impl Default for Thresholds {
    /// `--warn 33% --crit 10%`: warn once two thirds of the lifetime have passed (when the
    /// agent should already have renewed), critical in the last tenth.
    fn default() -> Self {
        Thresholds {
            warn: Threshold::Percent(33.0),
            crit: Threshold::Percent(10.0),
        }
    }
}

/// A `--warn`/`--crit` value that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// Neither a percentage nor a duration, or out of range.
    #[error(
        "--{flag} {input:?} is neither a percentage of the lifetime (33%) nor a duration \
         (30d, 12h): {problem}"
    )]
    Invalid {
        /// `warn` or `crit`.
        flag: &'static str,
        /// What the user typed.
        input: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `--crit` would fire before `--warn` (both percentages or both durations): the warning
    /// could never show, so the two are almost certainly swapped.
    #[error("--crit {crit} is larger than --warn {warn}, so no warning could ever show; swap them")]
    CritAboveWarn {
        /// The warning threshold, as given.
        warn: String,
        /// The critical threshold, as given.
        crit: String,
    },
}

/// Parses `--warn` and `--crit`: each a percentage of the lifetime (`33%`) or a duration in
/// keep's usual spelling (`30d`, `12h`, `1h30m`).
pub fn parse_thresholds(warn: &str, crit: &str) -> Result<Thresholds, ThresholdError> {
    let one = |flag: &'static str, input: &str| {
        parse_threshold(input).map_err(|e| ThresholdError::Invalid {
            flag,
            input: input.to_owned(),
            problem: e.problem,
        })
    };
    let t = Thresholds {
        warn: one("warn", warn)?,
        crit: one("crit", crit)?,
    };
    let swapped = match (t.warn, t.crit) {
        (Threshold::Percent(w), Threshold::Percent(c)) => c > w,
        (Threshold::Remaining(w), Threshold::Remaining(c)) => c > w,
        // A percentage and a duration compare differently for every lifetime.
        _ => false,
    };
    if swapped {
        return Err(ThresholdError::CritAboveWarn {
            warn: warn.trim().to_owned(),
            crit: crit.trim().to_owned(),
        });
    }
    Ok(t)
}

/// One certificate's result, ready to print. Times are RFC 3339 UTC and Unix seconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CertResult {
    /// The source checked: a file as given, or `https://host:port`.
    pub source: String,
    /// 1-based position of the certificate in the file it was read from.
    pub index: usize,
    /// When the certificate is not in `source` but was taken from a `--roots`/`--ca` file to
    /// complete the chain: that file. `None` for the source's own certificates.
    pub from: Option<String>,
    /// Subject, RFC 4514 (`CN=vault.claw.internal,O=Claw`).
    pub subject: String,
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// Serial number, colon-separated lowercase hex.
    pub serial: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Start of validity, Unix seconds.
    pub not_before_timestamp: i64,
    /// End of validity, Unix seconds.
    pub not_after_timestamp: i64,
    /// Seconds until `not_after`; negative once expired.
    pub remaining_seconds: i64,
    /// The same in words: `in 3 days` or `expired 2 hours ago`.
    pub remaining: String,
    /// Percentage of the lifetime still ahead, 0 to 100 (0 once expired, 100 before it starts).
    pub lifetime_left_percent: f64,
    /// This certificate's own status.
    pub status: Status,
    /// The worst status of any certificate in the same chain (source).
    pub chain_status: Status,
    /// Why: every finding that is not ok, most severe first, joined by `; `; for an ok
    /// certificate, how it stands against `--warn`.
    pub reason: String,
}

/// A source that could not be checked (unreadable file, not PEM, no TLS server). It makes the
/// run critical: a monitoring check must not turn green because its input vanished.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceError {
    /// The source as given.
    pub source: String,
    /// What went wrong, naming the source.
    pub error: String,
}

/// Everything one run found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The "now" every certificate was judged against.
    pub checked_at: OffsetDateTime,
    /// The thresholds used.
    pub thresholds: Thresholds,
    /// One entry per certificate, chain by chain, leaf first.
    pub certificates: Vec<CertResult>,
    /// Sources that could not be checked.
    pub errors: Vec<SourceError>,
}

impl Report {
    /// The worst status of all certificates; critical when any source failed.
    pub fn status(&self) -> Status {
        let worst = self
            .certificates
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok);
        if self.errors.is_empty() {
            worst
        } else {
            Status::Crit
        }
    }
}

/// A certificate with the facts the checks need.
#[derive(Clone, Debug)]
struct Parsed {
    der: Vec<u8>,
    subject: String,
    issuer: String,
    serial: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    subject_key_id: Option<String>,
    authority_key_id: Option<String>,
}

impl Parsed {
    fn new(der: &[u8], source: &str, index: usize) -> Result<Parsed, CertParseError> {
        let a = inspect::analyze(der).map_err(|e| CertParseError {
            source_desc: format!("{source}, certificate {index}"),
            problem: e.problem,
        })?;
        Ok(Parsed {
            der: der.to_vec(),
            subject: a.info.subject,
            issuer: a.info.issuer,
            serial: a.info.serial,
            not_before: a.not_before,
            not_after: a.not_after,
            subject_key_id: a.info.subject_key_id,
            authority_key_id: a.info.authority_key_id,
        })
    }

    /// Subject and issuer are the same name: a root (or a self-signed leaf), which has no
    /// issuer to outlive.
    fn self_issued(&self) -> bool {
        self.subject == self.issuer
    }

    /// Whether `ca` may have issued `self`: the issuer name matches `ca`'s subject, and the key
    /// identifiers agree when both are present. Signatures are not checked: this orders and
    /// compares expiry dates, it does not establish trust (`keep certificate verify` does).
    fn issued_by(&self, ca: &Parsed) -> bool {
        self.der != ca.der
            && self.issuer == ca.subject
            && match (&self.authority_key_id, &ca.subject_key_id) {
                (Some(aki), Some(ski)) => aki == ski,
                _ => true,
            }
    }
}

/// Certificates that may issue the checked ones (`--roots`, `--ca`): they complete chains
/// (a root the server does not send still counts) and are the issuers a leaf must not outlive.
/// They are not reported on their own; give them as sources to check them alone.
#[derive(Clone, Debug, Default)]
pub struct IssuerPool {
    certs: Vec<(Parsed, String, usize)>,
}

impl IssuerPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every certificate of `source` (DER, in file order).
    pub fn add(&mut self, source: &str, ders: &[impl AsRef<[u8]>]) -> Result<(), CertParseError> {
        for (i, der) in ders.iter().enumerate() {
            let p = Parsed::new(der.as_ref(), source, i + 1)?;
            if !self.certs.iter().any(|(c, _, _)| c.der == p.der) {
                self.certs.push((p, source.to_owned(), i + 1));
            }
        }
        Ok(())
    }
}

/// A member of a chain under check.
struct Member {
    cert: Parsed,
    index: usize,
    from: Option<String>,
}

/// Checks the certificates of one source (DER, in file or presentation order) against
/// `thresholds` at `now`. The result is in chain order, leaf first, followed by issuers from
/// `pool` that complete the chain; exact duplicates within the source are reported once.
pub fn check_chain(
    source: &str,
    ders: &[impl AsRef<[u8]>],
    pool: &IssuerPool,
    thresholds: &Thresholds,
    now: OffsetDateTime,
) -> Result<Vec<CertResult>, CertParseError> {
    let mut parsed: Vec<(Parsed, usize)> = Vec::new();
    for (i, der) in ders.iter().enumerate() {
        let p = Parsed::new(der.as_ref(), source, i + 1)?;
        if !parsed.iter().any(|(q, _)| q.der == p.der) {
            parsed.push((p, i + 1));
        }
    }
    let certs: Vec<&Parsed> = parsed.iter().map(|(p, _)| p).collect();
    let mut members: Vec<Member> = chain_order(&certs)
        .into_iter()
        .filter_map(|i| parsed.get(i))
        .map(|(cert, index)| Member {
            cert: cert.clone(),
            index: *index,
            from: None,
        })
        .collect();

    // Complete the chain from the pool: the issuers of any member whose issuer the source
    // lacks (usually the root a server does not send). The list grows while we walk it, so
    // the pool's intermediates bring their roots too; duplicates are never added, so it ends.
    let mut i = 0;
    while let Some(m) = members.get(i) {
        let has_issuer = members.iter().any(|o| m.cert.issued_by(&o.cert));
        if !has_issuer && !m.cert.self_issued() {
            let extra: Vec<Member> = pool
                .certs
                .iter()
                .filter(|(ca, _, _)| m.cert.issued_by(ca))
                .filter(|(ca, _, _)| !members.iter().any(|o| o.cert.der == ca.der))
                .map(|(ca, file, index)| Member {
                    cert: ca.clone(),
                    index: *index,
                    from: Some(file.clone()),
                })
                .collect();
            members.extend(extra);
        }
        i += 1;
    }

    let mut results: Vec<CertResult> = members
        .iter()
        .map(|m| {
            let issuers: Vec<&Parsed> = members
                .iter()
                .map(|o| &o.cert)
                .chain(pool.certs.iter().map(|(c, _, _)| c))
                .filter(|ca| m.cert.issued_by(ca))
                .collect();
            let (status, reason) = evaluate(&m.cert, &issuers, thresholds, now);
            result(source, m, status, reason, now)
        })
        .collect();
    let chain_status = results.iter().map(|r| r.status).max().unwrap_or(Status::Ok);
    for r in &mut results {
        r.chain_status = chain_status;
    }
    Ok(results)
}

/// Orders a bundle leaf first: start from each certificate that issues none of the others
/// (in file order) and follow issuers upward. Whatever no walk reaches (cycles, a second
/// issuer of the same name) follows in file order. Returns indexes into `certs`.
fn chain_order(certs: &[&Parsed]) -> Vec<usize> {
    let n = certs.len();
    // Indexes below are all < n.
    let issued_by = |i: usize, j: usize| certs[i].issued_by(certs[j]);
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for start in (0..n).filter(|&j| !(0..n).any(|i| issued_by(i, j))) {
        let mut next = Some(start);
        while let Some(i) = next.filter(|&i| !seen[i]) {
            seen[i] = true;
            order.push(i);
            next = (0..n).find(|&j| !seen[j] && issued_by(i, j));
        }
    }
    order.extend((0..n).filter(|&i| !seen[i]));
    order
}

/// The status of one certificate and the reason, given the certificates that may have issued
/// it.
fn evaluate(
    cert: &Parsed,
    issuers: &[&Parsed],
    t: &Thresholds,
    now: OffsetDateTime,
) -> (Status, String) {
    let mut findings: Vec<(Status, String)> = Vec::new();
    let remaining = cert.not_after - now;
    let lifetime = cert.not_after - cert.not_before;
    let left = percent_left(cert, now);
    if now < cert.not_before {
        findings.push((
            Status::Crit,
            format!(
                "not valid yet: starts {} (in {})",
                rfc3339(cert.not_before),
                human_duration(cert.not_before - now)
            ),
        ));
    } else if remaining <= Duration::ZERO {
        findings.push((
            Status::Crit,
            format!("expired {} ago", human_duration(remaining)),
        ));
    } else if remaining <= t.crit.window(lifetime) {
        findings.push((Status::Crit, below(t.crit, "crit", left, remaining)));
    } else if remaining <= t.warn.window(lifetime) {
        findings.push((Status::Warn, below(t.warn, "warn", left, remaining)));
    }
    if !cert.self_issued()
        && let Some(latest) = issuers.iter().max_by_key(|ca| ca.not_after)
        && latest.not_after < cert.not_after
    {
        findings.push((
            Status::Crit,
            format!(
                "outlives its issuer {} (which expires {}, {} earlier): the chain stops \
                 working then; reissue it from a CA that lives longer",
                latest.subject,
                rfc3339(latest.not_after),
                human_duration(cert.not_after - latest.not_after)
            ),
        ));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.0));
    match findings.first() {
        None => {
            let reason = match t.warn {
                Threshold::Percent(_) => format!("more than {} of its lifetime left", t.warn),
                Threshold::Remaining(_) => format!("more than {} left", t.warn),
            };
            (Status::Ok, reason)
        }
        Some((worst, _)) => {
            let worst = *worst;
            let reason = findings
                .into_iter()
                .map(|(_, r)| r)
                .collect::<Vec<_>>()
                .join("; ");
            (worst, reason)
        }
    }
}

/// "8.3% of its lifetime left, at or below --warn 33%" / "expires in 5 days, within --crit 7
/// days".
fn below(t: Threshold, flag: &str, left: f64, remaining: Duration) -> String {
    match t {
        Threshold::Percent(_) => format!(
            "{} of its lifetime left, at or below --{flag} {t}",
            percent(left)
        ),
        Threshold::Remaining(_) => format!(
            "expires in {}, within --{flag} {t}",
            human_duration(remaining)
        ),
    }
}

/// Percentage of the lifetime ahead at `now`, clamped to 0..=100; 0 for a zero lifetime.
fn percent_left(cert: &Parsed, now: OffsetDateTime) -> f64 {
    let life = (cert.not_after - cert.not_before).as_seconds_f64();
    if life <= 0.0 {
        return 0.0;
    }
    ((cert.not_after - now).as_seconds_f64() / life * 100.0).clamp(0.0, 100.0)
}

/// `8.3%`, `33%`, `0.04%`: one decimal, more only where one would read as 0.
fn percent(p: f64) -> String {
    if p > 0.0 && p < 0.1 {
        format!("{p:.2}%")
    } else {
        let s = format!("{p:.1}");
        format!("{}%", s.strip_suffix(".0").unwrap_or(&s))
    }
}

fn result(
    source: &str,
    m: &Member,
    status: Status,
    reason: String,
    now: OffsetDateTime,
) -> CertResult {
    let c = &m.cert;
    let remaining = c.not_after - now;
    let remaining_words = if remaining.is_positive() {
        format!("in {}", human_duration(remaining))
    } else {
        format!("expired {} ago", human_duration(remaining))
    };
    CertResult {
        source: source.to_owned(),
        index: m.index,
        from: m.from.clone(),
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        serial: c.serial.clone(),
        not_before: rfc3339(c.not_before),
        not_after: rfc3339(c.not_after),
        not_before_timestamp: c.not_before.unix_timestamp(),
        not_after_timestamp: c.not_after.unix_timestamp(),
        remaining_seconds: remaining.whole_seconds(),
        remaining: remaining_words,
        // Two decimals are plenty and keep JSON free of 33.333333333333336.
        lifetime_left_percent: (percent_left(c, now) * 100.0).round() / 100.0,
        status,
        chain_status: status,
        reason,
    }
}

// ---- renderers ----

/// One line per certificate, then one per failed source:
///
/// ```text
/// WARN  agent.crt [1]  CN=agent-01  serial 1a:2b:…  expires 2026-03-01T00:00:00Z (in 5 days, 8.3% of its lifetime left): 8.3% of its lifetime left, at or below --warn 33%
/// CRIT  gone.crt  cannot check: cannot read gone.crt: No such file or directory
/// ```
pub fn render_text(report: &Report) -> String {
    // Writing to a String cannot fail.
    let mut out = String::new();
    for c in &report.certificates {
        let place = match &c.from {
            None => format!("[{}]", c.index),
            Some(file) => format!("[issuer from {file} [{}]]", c.index),
        };
        let _ = writeln!(
            out,
            "{:<4}  {} {place}  {}  serial {}  expires {} ({}, {} of its lifetime left): {}",
            c.status.as_str().to_uppercase(),
            c.source,
            c.subject,
            c.serial,
            c.not_after,
            c.remaining,
            percent(c.lifetime_left_percent),
            c.reason
        );
    }
    for e in &report.errors {
        let _ = writeln!(out, "CRIT  {}  cannot check: {}", e.source, e.error);
    }
    out
}

/// A JSON object: the overall `status` (and its exit `code`), `checked_at`, the thresholds,
/// `certificates` (an array of [`CertResult`]) and `errors` (an array of [`SourceError`]).
pub fn render_json(report: &Report) -> String {
    /// The top level, in the order people read it (a `json!` map would sort the keys).
    #[derive(serde::Serialize)]
    struct Top<'a> {
        status: Status,
        code: u8,
        checked_at: String,
        warn: String,
        crit: String,
        certificates: &'a [CertResult],
        errors: &'a [SourceError],
    }
    let top = Top {
        status: report.status(),
        code: report.status().code(),
        checked_at: rfc3339(report.checked_at),
        warn: report.thresholds.warn.to_string(),
        crit: report.thresholds.crit.to_string(),
        certificates: &report.certificates,
        errors: &report.errors,
    };
    // Plain strings and numbers (finite: percentages are clamped) always serialize.
    let mut s = serde_json::to_string_pretty(&top).unwrap_or_default();
    s.push('\n');
    s
}

/// Reads one metric's value off a certificate result.
type CertValue = fn(&CertResult) -> i64;

/// The node_exporter textfile-collector format: per certificate
/// `keep_check_certificate_expiry_timestamp_seconds`, `…_not_before_timestamp_seconds` and
/// `keep_check_certificate_status` (0 ok, 1 warn, 2 crit) labelled by `source`, `subject` and
/// `serial`; `keep_check_source_error{source}` for each source that could not be checked; and
/// `keep_check_last_run_timestamp_seconds`. Each family has HELP and TYPE lines; label values
/// are escaped as the exposition format requires.
pub fn render_prometheus(report: &Report) -> String {
    let mut out = String::new();
    let labels = |c: &CertResult| {
        format!(
            "source=\"{}\",subject=\"{}\",serial=\"{}\"",
            escape_label(&c.source),
            escape_label(&c.subject),
            escape_label(&c.serial)
        )
    };
    let families: [(&str, &str, CertValue); 3] = [
        (
            "keep_check_certificate_expiry_timestamp_seconds",
            "When the certificate expires (notAfter), in Unix seconds.",
            |c| c.not_after_timestamp,
        ),
        (
            "keep_check_certificate_not_before_timestamp_seconds",
            "When the certificate becomes valid (notBefore), in Unix seconds.",
            |c| c.not_before_timestamp,
        ),
        (
            "keep_check_certificate_status",
            "keep check expiry result: 0 ok, 1 warn, 2 crit (expired, not yet valid, past \
             --crit, or outlives its issuer).",
            |c| i64::from(c.status.code()),
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for c in &report.certificates {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(c), value(c));
        }
    }
    let _ = writeln!(
        out,
        "# HELP keep_check_source_error 1 when a source could not be checked (unreadable, not \
         PEM, no TLS server); its certificates are missing above."
    );
    let _ = writeln!(out, "# TYPE keep_check_source_error gauge");
    for e in &report.errors {
        let _ = writeln!(
            out,
            "keep_check_source_error{{source=\"{}\"}} 1",
            escape_label(&e.source)
        );
    }
    let _ = writeln!(
        out,
        "# HELP keep_check_last_run_timestamp_seconds When keep check expiry last ran, in Unix \
         seconds."
    );
    let _ = writeln!(out, "# TYPE keep_check_last_run_timestamp_seconds gauge");
    let _ = writeln!(
        out,
        "keep_check_last_run_timestamp_seconds {}",
        report.checked_at.unix_timestamp()
    );
    out
}

/// Escapes a label value for the Prometheus text format: backslash, double quote and line
/// feed (RFC 4514 subjects carry backslashes, e.g. `O=Claw\, Inc.`).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use keep_test_support::{LeafSpec, TestPki};

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
    }

    /// A leaf living 100 days, with `left_days` of them still ahead.
    fn leaf(pki: &TestPki, cn: &str, left_days: i64) -> Vec<u8> {
        let n = now();
        let nb = n - Duration::days(100 - left_days);
        pki.issue(&LeafSpec::server(cn).valid(nb, nb + Duration::days(100)))
            .der
    }

    fn check_one(der: &[u8], t: &Thresholds) -> CertResult {
        let r = check_chain("x.crt", &[der], &IssuerPool::new(), t, now()).unwrap();
        assert_eq!(r.len(), 1);
        r.into_iter().next().unwrap()
    }

    #[test]
    fn relative_thresholds_ok_warn_crit() {
        let pki = TestPki::new();
        let t = Thresholds::default();
        let ok = check_one(&leaf(&pki, "ok", 50), &t);
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert_eq!(ok.reason, "more than 33% of its lifetime left");
        assert!((ok.lifetime_left_percent - 50.0).abs() < 0.1, "{ok:?}");

        let warn = check_one(&leaf(&pki, "warn", 20), &t);
        assert_eq!(warn.status, Status::Warn, "{warn:?}");
        assert!(warn.reason.contains("at or below --warn 33%"), "{warn:?}");
        assert!(warn.remaining.starts_with("in 20 days"), "{warn:?}");

        let crit = check_one(&leaf(&pki, "crit", 5), &t);
        assert_eq!(crit.status, Status::Crit, "{crit:?}");
        assert!(
            crit.reason
                .contains("5% of its lifetime left, at or below --crit 10%"),
            "{crit:?}"
        );
    }

    #[test]
    fn relative_thresholds_scale_with_the_lifetime() {
        // A 24-hour certificate with 6 hours left is at 25%: warn, not crit, and no fixed
        // "30 days" would have told it apart from a fresh one.
        let pki = TestPki::new();
        let n = now();
        let der = pki
            .issue(
                &LeafSpec::server("short").valid(n - Duration::hours(18), n + Duration::hours(6)),
            )
            .der;
        assert_eq!(check_one(&der, &Thresholds::default()).status, Status::Warn);
        let absolute = parse_thresholds("30d", "7d").unwrap();
        assert_eq!(check_one(&der, &absolute).status, Status::Crit);
    }

    #[test]
    fn absolute_thresholds_ok_warn_crit() {
        let pki = TestPki::new();
        let t = parse_thresholds("30d", "7d").unwrap();
        let ok = check_one(&leaf(&pki, "ok", 40), &t);
        assert_eq!(
            (ok.status, ok.reason.as_str()),
            (Status::Ok, "more than 30 days left")
        );
        let warn = check_one(&leaf(&pki, "warn", 20), &t);
        assert_eq!(warn.status, Status::Warn, "{warn:?}");
        assert!(warn.reason.contains("within --warn 30 days"), "{warn:?}");
        let crit = check_one(&leaf(&pki, "crit", 3), &t);
        assert_eq!(crit.status, Status::Crit, "{crit:?}");
        assert!(crit.reason.contains("within --crit 7 days"), "{crit:?}");
    }

    #[test]
    fn expired_and_not_yet_valid_are_crit() {
        let pki = TestPki::new();
        let t = Thresholds::default();
        let expired = check_one(&pki.expired_client.der, &t);
        assert_eq!(expired.status, Status::Crit);
        assert_eq!(expired.reason, "expired 1 day ago");
        assert_eq!(expired.remaining, "expired 1 day ago");
        assert!(expired.remaining_seconds < 0);
        assert_eq!(expired.lifetime_left_percent, 0.0);

        let early = check_one(&pki.not_yet_valid_client.der, &t);
        assert_eq!(early.status, Status::Crit);
        assert!(
            early.reason.starts_with("not valid yet: starts "),
            "{early:?}"
        );
        assert!(early.reason.ends_with("(in 1 day)"), "{early:?}");
        assert_eq!(early.lifetime_left_percent, 100.0);

        // The valid twin of each is ok.
        assert_eq!(check_one(&pki.client.der, &t).status, Status::Ok);
    }

    #[test]
    fn a_leaf_that_outlives_its_issuer_is_crit_and_one_that_does_not_is_ok() {
        let pki = TestPki::new();
        let n = now();
        let short =
            pki.issue_intermediate("Short CA", n - Duration::days(1), n + Duration::days(200));
        let long =
            pki.issue_intermediate("Long CA", n - Duration::days(1), n + Duration::days(2000));
        let spec = LeafSpec::server("a").valid(n - Duration::days(1), n + Duration::days(365));
        let t = Thresholds::default();

        let bad = short.issue(&spec);
        let r = check_chain("bad.crt", &bad.chain_der, &IssuerPool::new(), &t, n).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].subject, "CN=a");
        assert_eq!(r[0].status, Status::Crit, "{:?}", r[0]);
        assert!(
            r[0].reason
                .contains("outlives its issuer CN=Short CA,O=Keep Test PKI"),
            "{:?}",
            r[0]
        );
        assert!(r[0].reason.contains("165 days earlier"), "{:?}", r[0]);
        assert_eq!(r[1].status, Status::Ok, "{:?}", r[1]);
        assert_eq!(r[1].chain_status, Status::Crit);

        let good = long.issue(&spec);
        let r = check_chain("good.crt", &good.chain_der, &IssuerPool::new(), &t, n).unwrap();
        assert!(r.iter().all(|c| c.status == Status::Ok), "{r:?}");

        // The issuer may come from --roots instead of the bundle: then it completes the chain.
        let mut pool = IssuerPool::new();
        pool.add("ca.crt", &[&short.der]).unwrap();
        let r = check_chain("leaf.crt", &[&bad.der], &pool, &t, n).unwrap();
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].status, Status::Crit);
        assert!(r[0].reason.contains("outlives its issuer"), "{:?}", r[0]);
        assert_eq!(r[1].from.as_deref(), Some("ca.crt"));
        assert_eq!(r[1].source, "leaf.crt");

        // Without any issuer at hand there is nothing to outlive.
        let r = check_chain("leaf.crt", &[&bad.der], &IssuerPool::new(), &t, n).unwrap();
        assert_eq!(r[0].status, Status::Ok, "{r:?}");
    }

    #[test]
    fn an_issuer_near_its_end_drives_the_chain_status() {
        let pki = TestPki::new();
        let n = now();
        // 5% of a 100-day life left: crit for the intermediate, the leaf itself is fine.
        let ca = pki.issue_intermediate("Old CA", n - Duration::days(95), n + Duration::days(5));
        let leaf =
            ca.issue(&LeafSpec::server("a").valid(n - Duration::hours(1), n + Duration::days(4)));
        let r = check_chain(
            "s.crt",
            &leaf.chain_der,
            &IssuerPool::new(),
            &Thresholds::default(),
            n,
        )
        .unwrap();
        assert_eq!(r[0].status, Status::Ok, "{:?}", r[0]);
        assert_eq!(r[1].status, Status::Crit, "{:?}", r[1]);
        assert!(r.iter().all(|c| c.chain_status == Status::Crit));
    }

    #[test]
    fn bundles_are_ordered_leaf_first_and_completed_from_the_pool() {
        let pki = TestPki::new();
        let n = now();
        // Root first, then intermediate, then leaf: reversed on purpose.
        let ders = [
            pki.root.der.clone(),
            pki.intermediate.der.clone(),
            pki.client.der.clone(),
        ];
        let r = check_chain(
            "b.crt",
            &ders,
            &IssuerPool::new(),
            &Thresholds::default(),
            n,
        )
        .unwrap();
        let subjects: Vec<&str> = r.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(
            subjects,
            [
                "CN=agent-01",
                "CN=Keep Test Intermediate CA,O=Keep Test PKI",
                "CN=Keep Test Root CA,O=Keep Test PKI"
            ]
        );
        assert_eq!(r.iter().map(|c| c.index).collect::<Vec<_>>(), [3, 2, 1]);

        let mut pool = IssuerPool::new();
        pool.add("roots.crt", &[&pki.root.der, &pki.foreign_ca.der])
            .unwrap();
        let r = check_chain(
            "s.crt",
            &pki.server.chain_der,
            &pool,
            &Thresholds::default(),
            n,
        )
        .unwrap();
        assert_eq!(
            r.len(),
            3,
            "the root completes the chain, the foreign CA does not: {r:?}"
        );
        assert_eq!(r[2].from.as_deref(), Some("roots.crt"));
        assert_eq!(r[2].index, 1);

        // A duplicate in the bundle is reported once (one metric series per cert).
        let dup = [pki.client.der.clone(), pki.client.der.clone()];
        let r = check_chain("d.crt", &dup, &IssuerPool::new(), &Thresholds::default(), n).unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn threshold_parsing_errors_say_what_is_wrong() {
        for (warn, crit, words) in [
            ("abc%", "10%", "--warn \"abc%\" is neither a percentage"),
            ("150%", "10%", "between 0 and 100"),
            ("33%", "-5%", "--crit \"-5%\""),
            ("33", "10%", "needs a unit"),
            ("33%", "7x", "unknown unit"),
            ("30d", "-1d", "must not be negative"),
            ("", "10%", "empty"),
        ] {
            let e = parse_thresholds(warn, crit).unwrap_err();
            assert!(e.to_string().contains(words), "{warn} {crit}: {e}");
        }
        let e = parse_thresholds("10%", "33%").unwrap_err();
        assert!(matches!(e, ThresholdError::CritAboveWarn { .. }), "{e}");
        assert!(e.to_string().contains("swap them"), "{e}");
        assert!(parse_thresholds("7d", "30d").is_err());
        // Mixed kinds cannot be compared, equal ones leave no warning band: both allowed.
        assert!(parse_thresholds("30d", "10%").is_ok());
        assert!(parse_thresholds("10%", "10%").is_ok());
        assert_eq!(
            parse_thresholds("25%", "12h").unwrap(),
            Thresholds {
                warn: Threshold::Percent(25.0),
                crit: Threshold::Remaining(Duration::hours(12)),
            }
        );
    }

    fn report(pki: &TestPki) -> Report {
        let n = now();
        let t = Thresholds::default();
        let mut certificates =
            check_chain("ok.crt", &[&pki.client.der], &IssuerPool::new(), &t, n).unwrap();
        certificates.extend(
            check_chain(
                "old \"x\".crt",
                &[&pki.expired_client.der],
                &IssuerPool::new(),
                &t,
                n,
            )
            .unwrap(),
        );
        Report {
            checked_at: n,
            thresholds: t,
            certificates,
            errors: vec![SourceError {
                source: "gone.crt".into(),
                error: "cannot read gone.crt: No such file or directory".into(),
            }],
        }
    }

    #[test]
    fn report_status_is_the_worst_and_errors_are_crit() {
        let pki = TestPki::new();
        let mut r = report(&pki);
        assert_eq!(r.status(), Status::Crit);
        r.errors.clear();
        assert_eq!(r.status(), Status::Crit);
        r.certificates.truncate(1);
        assert_eq!(r.status(), Status::Ok);
        assert_eq!(
            [Status::Ok, Status::Warn, Status::Crit].map(Status::code),
            [0, 1, 2]
        );
    }

    #[test]
    fn text_has_one_line_per_certificate_and_per_error() {
        let pki = TestPki::new();
        let text = render_text(&report(&pki));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("OK    ok.crt [1]  CN=agent-01  serial "),
            "{text}"
        );
        assert!(lines[0].contains(&format!(
            "serial {}",
            inspect::inspect(&pki.client.der).unwrap().serial
        )));
        assert!(lines[0].contains("(in 30 days, "), "{text}");
        assert!(lines[0].ends_with("of its lifetime left): more than 33% of its lifetime left"));
        assert!(
            lines[1].starts_with("CRIT  old \"x\".crt [1]  CN=agent-expired"),
            "{text}"
        );
        assert!(
            lines[1].contains("(expired 1 day ago, 0% of its lifetime left): expired 1 day ago")
        );
        assert_eq!(
            lines[2],
            "CRIT  gone.crt  cannot check: cannot read gone.crt: No such file or directory"
        );
    }

    #[test]
    fn json_carries_every_field_and_the_overall_status() {
        let pki = TestPki::new();
        let v: serde_json::Value = serde_json::from_str(&render_json(&report(&pki))).unwrap();
        assert_eq!(v["status"], "crit");
        assert_eq!(v["code"], 2);
        assert_eq!(v["warn"], "33%");
        assert_eq!(v["crit"], "10%");
        let c = &v["certificates"][0];
        for key in [
            "source",
            "index",
            "from",
            "subject",
            "issuer",
            "serial",
            "not_before",
            "not_after",
            "not_before_timestamp",
            "not_after_timestamp",
            "remaining_seconds",
            "remaining",
            "lifetime_left_percent",
            "status",
            "chain_status",
            "reason",
        ] {
            assert!(c.get(key).is_some(), "{key} missing from {c}");
        }
        assert_eq!(c["status"], "ok");
        assert_eq!(v["certificates"][1]["status"], "crit");
        assert_eq!(v["errors"][0]["source"], "gone.crt");
    }

    #[test]
    fn prometheus_lines_have_help_type_and_escaped_labels() {
        let pki = TestPki::new();
        let r = report(&pki);
        let text = render_prometheus(&r);
        for family in [
            "keep_check_certificate_expiry_timestamp_seconds",
            "keep_check_certificate_not_before_timestamp_seconds",
            "keep_check_certificate_status",
            "keep_check_source_error",
            "keep_check_last_run_timestamp_seconds",
        ] {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family}\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE {family} gauge\n")),
                "{family}\n{text}"
            );
        }
        let expired = &r.certificates[1];
        let want = format!(
            "keep_check_certificate_status{{source=\"old \\\"x\\\".crt\",subject=\"CN=agent-expired\",serial=\"{}\"}} 2",
            expired.serial
        );
        assert!(text.lines().any(|l| l == want), "{want}\n{text}");
        let want = format!(
            "keep_check_certificate_expiry_timestamp_seconds{{source=\"ok.crt\",subject=\"CN=agent-01\",serial=\"{}\"}} {}",
            r.certificates[0].serial, r.certificates[0].not_after_timestamp
        );
        assert!(text.lines().any(|l| l == want), "{want}\n{text}");
        assert!(
            text.contains("keep_check_source_error{source=\"gone.crt\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with(&format!(
            "keep_check_last_run_timestamp_seconds {}\n",
            r.checked_at.unix_timestamp()
        )));
        assert_eq!(
            escape_label("O=Claw\\, Inc.\n\"q\""),
            "O=Claw\\\\, Inc.\\n\\\"q\\\""
        );
    }

    #[test]
    fn percentages_read_well() {
        assert_eq!(percent(33.0), "33%");
        assert_eq!(percent(8.333), "8.3%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.04), "0.04%");
        assert_eq!(percent(100.0), "100%");
    }
}
