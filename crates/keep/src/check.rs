//! `keep check …`: checks for cron, systemd timers and monitoring, with Nagios-style exit
//! codes (0 ok, 1 warn, 2 crit).
//!
//! This module only gathers inputs (files, directories, endpoints) and prints; the judgement
//! and the output formats live in `keep_pki::expiry`.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use clap::{Subcommand, ValueEnum};
use keep_pki::duration::parse_duration;
use keep_pki::expiry::{self, IssuerPool, Report, SourceError, Status};
use keep_pki::pem::{self, Source};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::certificate::https_address;
use crate::exit::{render, usage};
use crate::files::{self, Mode};

/// Arguments of `keep check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check when certificates expire: files, directories, or what a TLS server presents.
    ///
    /// Every certificate is checked, intermediates and roots included, and a chain is as bad
    /// as its worst certificate. A certificate is
    ///
    ///   CRIT  when it has expired, is not valid yet, has less than --crit of its time left,
    ///         or outlives its issuer: it expires after the CA that signed it (found in the
    ///         same file or in --roots), so the chain breaks when that CA expires;
    ///   WARN  when it has less than --warn left;
    ///   OK    otherwise.
    ///
    /// Thresholds are a percentage of each certificate's own lifetime by default
    /// (--warn 33% --crit 10%), because a fixed "30 days" means nothing for a 24-hour
    /// certificate (it would always be critical) and little for a 10-year root. Give
    /// durations (--warn 30d --crit 7d) where a policy demands absolute ones; the two kinds
    /// can be mixed.
    ///
    /// SOURCE is one of:
    ///
    ///   FILE               a certificate or bundle (PEM or DER)
    ///   DIR                the *.crt, *.pem and *.cer files directly in DIR (subdirectories
    ///                      are not searched); private key files are skipped silently (by
    ///                      content, or by a name containing "key" when they are not readable),
    ///                      any other file that is unreadable or not a certificate is an error
    ///   https://host:port  the chain the server presents (not verified; works when the
    ///                      server requires a client certificate)
    ///   -                  standard input
    ///
    /// Exit status: 0 everything ok, 1 something to warn about, 2 something critical or a
    /// source that could not be checked (unreadable file, server down), 64 usage error.
    ///
    /// Examples:
    ///
    ///   keep check expiry /etc/keep/agent.crt
    ///
    ///   keep check expiry /etc/keep/ https://vault.claw.internal:8200 --roots /etc/keep/root_ca.crt
    ///
    ///   keep check expiry --warn 30d --crit 7d /etc/ssl/internal/
    ///
    ///   keep check expiry /etc/keep/ --format prometheus \
    ///       --output /var/lib/node_exporter/textfile_collector/keep.prom
    #[command(verbatim_doc_comment)]
    Expiry(ExpiryArgs),
}

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
enum Format {
    /// One line per certificate: status, source, subject, serial, expiry, time and share of
    /// the lifetime left, reason.
    #[default]
    Text,
    /// An object with the overall status and an array of certificates.
    Json,
    /// node_exporter textfile-collector metrics.
    Prometheus,
}

#[derive(Debug, clap::Args)]
struct ExpiryArgs {
    /// Certificate files, directories, https://host:port endpoints, or - for standard input.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<String>,
    /// Warn when less than this remains: a percentage of the certificate's lifetime (33%) or a
    /// duration (30d, 12h).
    #[arg(long, value_name = "PERCENT|DURATION", default_value = "33%")]
    warn: String,
    /// Critical when less than this remains: a percentage of the lifetime (10%) or a duration
    /// (7d, 2h).
    #[arg(long, value_name = "PERCENT|DURATION", default_value = "10%")]
    crit: String,
    /// CA certificates (roots, intermediates) that may have issued the checked ones: they
    /// complete chains a file or server leaves short, and a certificate must not outlive them.
    /// Repeatable.
    #[arg(long, visible_alias = "ca", value_name = "FILE")]
    roots: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Write the report to FILE atomically (temporary file, then rename) instead of standard
    /// output, so node_exporter never reads half a file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// How long to wait for each https:// endpoint.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    timeout: String,
}

/// Runs `keep check …`; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Cmd::Expiry(a) => expiry_cmd(a),
    }
}

fn expiry_cmd(a: ExpiryArgs) -> anyhow::Result<u8> {
    // Usage errors first (exit 64), before anything is read or fetched.
    let thresholds =
        expiry::parse_thresholds(&a.warn, &a.crit).map_err(|e| usage(e.to_string()))?;
    let timeout = parse_duration(&a.timeout)?;
    if !timeout.is_positive() {
        return Err(usage(format!("--timeout {:?} must be positive", a.timeout)));
    }
    let timeout = StdDuration::try_from(timeout).map_err(|e| usage(e.to_string()))?;
    if let Some(out) = &a.output {
        files::check_writable(&[out.as_path()], true)?;
    }

    let now = OffsetDateTime::now_utc();
    let mut errors = Vec::new();
    let mut pool = IssuerPool::new();
    for file in &a.roots {
        let added = read_certs(file).and_then(|ders| Ok(pool.add(file, &ders)?));
        if let Err(e) = added {
            errors.push(SourceError {
                source: file.clone(),
                error: render(&e),
            });
        }
    }
    let mut certificates = Vec::new();
    let mut seen = HashSet::new();
    for given in &a.sources {
        for (source, loaded) in load(given, timeout) {
            if !seen.insert(source.clone()) {
                continue;
            }
            let checked = loaded.and_then(|ders| {
                Ok(expiry::check_chain(
                    &source,
                    &ders,
                    &pool,
                    &thresholds,
                    now,
                )?)
            });
            match checked {
                Ok(results) => certificates.extend(results),
                Err(e) => errors.push(SourceError {
                    source,
                    error: render(&e),
                }),
            }
        }
    }

    let report = Report {
        checked_at: now,
        thresholds,
        certificates,
        errors,
    };
    let rendered = match a.format {
        Format::Text => expiry::render_text(&report),
        Format::Json => expiry::render_json(&report),
        Format::Prometheus => expiry::render_prometheus(&report),
    };
    // Text on standard output already carries the errors; anywhere else, say them on stderr
    // too, so cron mail and the journal show them.
    if a.format != Format::Text || a.output.is_some() {
        for e in &report.errors {
            eprintln!("error: {}: {}", e.source, e.error);
        }
    }
    match &a.output {
        None => print!("{rendered}"),
        Some(out) => {
            if let Err(e) = files::write_atomic(out, rendered.as_bytes(), Mode::Public, true) {
                // Monitoring that cannot publish its result is as bad as a failed check.
                eprintln!("error: {}", render(&e));
                return Ok(Status::Crit.code());
            }
        }
    }
    Ok(report.status().code())
}

/// Expands one SOURCE into the (label, certificates) pairs to check: one for a file, an
/// endpoint or stdin, one per matching file for a directory.
fn load(given: &str, timeout: StdDuration) -> Vec<(String, anyhow::Result<Vec<Vec<u8>>>)> {
    if let Some(addr) = https_address(given) {
        let fetched = keep_tls::probe::fetch_chain(&addr, timeout)
            .map(|p| p.chain)
            .map_err(anyhow::Error::from);
        return vec![(given.to_owned(), fetched)];
    }
    if given == "-" {
        return vec![("stdin".to_owned(), read_certs(given))];
    }
    let path = Path::new(given);
    if !path.is_dir() {
        return vec![(given.to_owned(), read_certs(given))];
    }
    match scan_dir(path) {
        Err(e) => vec![(given.to_owned(), Err(e))],
        Ok(files) if files.is_empty() => vec![(
            given.to_owned(),
            Err(anyhow::anyhow!(
                "directory {given} holds no certificate files (*.crt, *.pem, *.cer; \
                 subdirectories are not searched)"
            )),
        )],
        Ok(files) => files
            .into_iter()
            .filter_map(|f| {
                let label = f.display().to_string();
                match read_dir_entry(&f) {
                    Ok(None) => None,
                    Ok(Some(ders)) => Some((label, Ok(ders))),
                    Err(e) => Some((label, Err(e))),
                }
            })
            .collect(),
    }
}

/// The `*.crt`, `*.pem` and `*.cer` files directly in `dir` (symlinks followed), by name.
fn scan_dir(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read directory {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| anyhow::anyhow!("cannot read directory {}: {e}", dir.display()))?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["crt", "pem", "cer"].contains(&e.to_ascii_lowercase().as_str()));
        // `is_file` follows symlinks (certbot's live/ directory is all symlinks); a dangling
        // link is kept, so that reading it reports the problem.
        if wanted && (path.is_file() || !path.exists()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a file found in a directory: `None` for a private key file (skipped silently: key
/// and certificate often share a directory and the `.pem` suffix).
fn read_dir_entry(path: &Path) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => Zeroizing::new(b),
        // A key file is usually readable by its owner only, so an unprivileged monitoring
        // user cannot look inside; its name gives it away (privkey.pem, server-key.pem).
        Err(e) if e.kind() == ErrorKind::PermissionDenied && looks_like_key_name(path) => {
            return Ok(None);
        }
        Err(e) => {
            return Err(usage(format!("cannot read {}: {e}", path.display())));
        }
    };
    let source = Source::File(path.to_path_buf());
    if holds_only_private_keys(&bytes, &source) {
        return Ok(None);
    }
    Ok(Some(certs_from(&bytes, &source)?))
}

fn looks_like_key_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().contains("key"))
}

/// Every PEM block is a private key (or EC parameters, which openssl writes before one).
fn holds_only_private_keys(bytes: &[u8], source: &Source) -> bool {
    pem::parse(bytes, source).is_ok_and(|blocks| {
        blocks.iter().any(|b| b.label.ends_with("PRIVATE KEY"))
            && blocks
                .iter()
                .all(|b| b.label.ends_with("PRIVATE KEY") || b.label == "EC PARAMETERS")
    })
}

/// Reads a FILE or `-` given on the command line (a private key here is an error: it was
/// named explicitly).
fn read_certs(given: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let (bytes, source) = files::read_input(given)?;
    let bytes = Zeroizing::new(bytes);
    certs_from(&bytes, &source)
}

fn certs_from(bytes: &[u8], source: &Source) -> anyhow::Result<Vec<Vec<u8>>> {
    Ok(pem::read_certificates(bytes, source)?
        .into_iter()
        .map(|b| b.der.to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keep_test_support::TestPki;

    #[test]
    fn key_files_are_recognised_by_content_and_unreadable_ones_by_name() {
        let pki = TestPki::new();
        let src = Source::Other("test".into());
        assert!(holds_only_private_keys(pki.client.key_pem.as_bytes(), &src));
        // A combined file (haproxy style) is checked for its certificate, not skipped.
        let combined = format!("{}{}", pki.client.cert_pem, pki.client.key_pem);
        assert!(!holds_only_private_keys(combined.as_bytes(), &src));
        assert!(!holds_only_private_keys(
            pki.client.cert_pem.as_bytes(),
            &src
        ));
        assert!(!holds_only_private_keys(b"not pem", &src));

        for name in ["privkey.pem", "server-key.pem", "TLS.KEY.pem"] {
            assert!(looks_like_key_name(Path::new(name)), "{name}");
        }
        for name in ["fullchain.pem", "server.crt", "monkey/x.pem"] {
            assert!(!looks_like_key_name(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn directories_yield_certificate_suffixes_only_and_sorted() {
        let dir = keep_test_support::tempdir();
        for name in ["b.pem", "a.CRT", "c.cer", "d.key", "e.txt", "f.crt.bak"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.crt")).unwrap();
        let names: Vec<String> = scan_dir(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.CRT", "b.pem", "c.cer"]);
    }
}
