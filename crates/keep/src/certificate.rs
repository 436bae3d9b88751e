//! `keep certificate …`: the step-compatible PKI commands.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use keep_pki::cert::{self, CertRequest, EkuChoice, Issuer, Profile, SignOptions};
use keep_pki::duration::{TimeSpec, parse_time_spec, rfc3339};
use keep_pki::inspect;
use keep_pki::lint::{self, LintOptions, Severity};
use keep_pki::pem;
use keep_pki::renewal::{self, Threshold};
use keep_pki::verify::{self, VerifyOptions};
use keep_pki::{KeyType, PrivateKey, Purpose};
use time::OffsetDateTime;

use crate::exit::usage;
use crate::files::{self, Mode};
use crate::password;

/// Arguments of `keep certificate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a key pair and a certificate (or CSR), step-style.
    ///
    /// Positional arguments: SUBJECT [COMMON_NAME] CRT_FILE KEY_FILE.
    ///
    /// With three arguments (step's form) SUBJECT is the common name, and for a leaf also its
    /// SAN when no --san is given. With four (the form from the OpenClaw mTLS forum thread),
    /// the second is the common name and SUBJECT is always added as a SAN of a leaf.
    ///
    /// The private key is encrypted (PKCS#8, scrypt + AES-256-CBC) with a password from
    /// --password-file or a prompt. An unencrypted key needs --no-password --insecure.
    ///
    /// Examples:
    ///
    ///   keep certificate create root.claw.internal "Claw Root CA" root_ca.crt root_ca.key --profile root-ca
    ///
    ///   keep certificate create vault.claw.internal "Vault Server" vault.crt vault.key \
    ///       --profile leaf --ca root_ca.crt --ca-key root_ca.key --san vault.claw.internal
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// Sign a certificate signing request (CSR) with a CA; prints the certificate.
    ///
    /// Only the CSR's common name, SANs and public key are used: the CA flag, key usage and
    /// EKU come from --profile and --eku, never from the request.
    Sign(SignArgs),
    /// Show a certificate: from a file, standard input (-), or what https://host:port presents.
    Inspect(InspectArgs),
    /// Print the SHA-256 fingerprint of a certificate (hex, as step prints it).
    Fingerprint(FingerprintArgs),
    /// Verify a certificate chain against roots, a host name and a purpose.
    ///
    /// Exit status: 0 when it verifies, 1 when it does not (the reason is printed).
    Verify(VerifyArgs),
    /// Check certificates against internal-PKI rules (made by keep, openssl or anyone).
    ///
    /// Each finding has an id, a severity and a one-line fix. Exit status: 0 when there is no
    /// error (warnings allowed; --strict makes warnings count), 2 when there is an error.
    Lint(LintArgs),
    /// Exit 0 when a certificate should be renewed, 1 when not yet (for cron and systemd).
    ///
    /// By default a certificate needs renewal once two thirds of its lifetime have passed.
    /// --expires-in takes a duration (renew when less than that remains: 4h, 30d) or a
    /// percentage of the lifetime (renew when less than that remains: 33%).
    ///
    /// Exit status: 0 renew now (or expired), 1 not yet, 2 the file does not exist,
    /// 255 anything else (unreadable or invalid input). Use it as systemd ExecCondition=:
    /// 1 and 2 skip the renewal quietly, 255 marks the unit failed.
    NeedsRenewal(NeedsRenewalArgs),
    /// Package a certificate, its chain and key as PKCS#12 (.p12) for Java and Windows.
    P12(P12Args),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProfileArg {
    RootCa,
    IntermediateCa,
    Leaf,
    SelfSigned,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::RootCa => Profile::RootCa,
            ProfileArg::IntermediateCa => Profile::IntermediateCa,
            ProfileArg::Leaf => Profile::Leaf,
            ProfileArg::SelfSigned => Profile::SelfSigned,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EkuArg {
    Client,
    Server,
    Both,
}

impl From<EkuArg> for EkuChoice {
    fn from(e: EkuArg) -> EkuChoice {
        match e {
            EkuArg::Client => EkuChoice::Client,
            EkuArg::Server => EkuChoice::Server,
            EkuArg::Both => EkuChoice::Both,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PurposeArg {
    Client,
    Server,
}

impl From<PurposeArg> for Purpose {
    fn from(p: PurposeArg) -> Purpose {
        match p {
            PurposeArg::Client => Purpose::Client,
            PurposeArg::Server => Purpose::Server,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct KeyFlags {
    /// Key type: EC (default), OKP (Ed25519) or RSA.
    #[arg(long, value_name = "KTY")]
    kty: Option<String>,
    /// Curve: P-256 (default for EC), P-384, or Ed25519 (for OKP). Alias: --crv.
    #[arg(long = "curve", alias = "crv", value_name = "CURVE")]
    crv: Option<String>,
    /// RSA modulus size: 2048 (default), 3072 or 4096.
    #[arg(long, value_name = "BITS")]
    size: Option<u32>,
}

#[derive(Debug, clap::Args)]
struct Validity {
    /// Start of validity: a duration from now (-5m) or an RFC 3339 time. Default: now minus
    /// one minute (tolerates small clock skew).
    #[arg(long, value_name = "TIME|DURATION", allow_hyphen_values = true)]
    not_before: Option<String>,
    /// End of validity: a duration from now (24h, 90d) or an RFC 3339 time; past values
    /// make expired certificates (for tests). Default: 10 years for CAs, 90 days for leaves.
    #[arg(long, value_name = "TIME|DURATION", allow_hyphen_values = true)]
    not_after: Option<String>,
}

impl Validity {
    fn parse(&self) -> anyhow::Result<(Option<TimeSpec>, Option<TimeSpec>)> {
        let nb = self
            .not_before
            .as_deref()
            .map(parse_time_spec)
            .transpose()?;
        let na = self.not_after.as_deref().map(parse_time_spec).transpose()?;
        Ok((nb, na))
    }
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// SUBJECT [COMMON_NAME] CRT_FILE KEY_FILE (CRT_FILE is the CSR file with --csr).
    #[arg(num_args = 3..=4, required = true, value_name = "ARGS")]
    args: Vec<String>,
    /// Certificate profile.
    #[arg(long, value_enum, default_value = "leaf")]
    profile: ProfileArg,
    /// Issuer certificate (for leaf and intermediate-ca). May hold its chain after it.
    #[arg(long, value_name = "FILE")]
    ca: Option<String>,
    /// Issuer private key.
    #[arg(long, value_name = "FILE")]
    ca_key: Option<String>,
    /// File holding the password of an encrypted --ca-key.
    #[arg(long, value_name = "FILE")]
    ca_password_file: Option<PathBuf>,
    /// Subject alternative name: DNS name, IP, URI or email (detected). Repeatable.
    #[arg(long, value_name = "NAME")]
    san: Vec<String>,
    /// Extended key usage of a leaf: client, server or both (default both).
    #[arg(long, value_enum)]
    eku: Option<EkuArg>,
    /// Path length constraint of a CA (default 1 for root-ca, 0 for intermediate-ca).
    #[arg(long, value_name = "N")]
    path_len: Option<u8>,
    #[command(flatten)]
    validity: Validity,
    #[command(flatten)]
    key: KeyFlags,
    /// Write the leaf followed by its issuer chain (without the self-signed root).
    #[arg(long)]
    bundle: bool,
    /// Write a certificate signing request instead of a certificate.
    #[arg(long)]
    csr: bool,
    /// File holding the password that encrypts the new private key.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Do not encrypt the private key (needs --insecure too).
    #[arg(long)]
    no_password: bool,
    /// Acknowledge an insecure choice (with --no-password).
    #[arg(long)]
    insecure: bool,
    /// Overwrite existing files.
    #[arg(long, short = 'f')]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct SignArgs {
    /// The CSR to sign (PEM or DER; - for standard input).
    csr_file: String,
    /// The CA certificate that signs.
    ca_crt_file: String,
    /// The CA private key.
    ca_key_file: String,
    /// Profile of the signed certificate: leaf (default) or intermediate-ca.
    #[arg(long, value_enum, default_value = "leaf")]
    profile: ProfileArg,
    /// Extended key usage of a leaf: client, server or both (default both).
    #[arg(long, value_enum)]
    eku: Option<EkuArg>,
    /// Path length constraint for an intermediate-ca.
    #[arg(long, value_name = "N")]
    path_len: Option<u8>,
    /// Extra SAN to add to those in the CSR. Repeatable.
    #[arg(long, value_name = "NAME")]
    san: Vec<String>,
    #[command(flatten)]
    validity: Validity,
    /// Append the issuer chain (without the self-signed root).
    #[arg(long)]
    bundle: bool,
    /// File holding the password of an encrypted CA key.
    #[arg(long, value_name = "FILE")]
    ca_password_file: Option<PathBuf>,
    /// Write the certificate to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Overwrite --out if it exists.
    #[arg(long, short = 'f')]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// Certificate file, - for standard input, or https://host:port.
    source: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Show every certificate in a bundle or presented chain, not only the first.
    #[arg(long)]
    bundle: bool,
}

#[derive(Debug, clap::Args)]
struct FingerprintArgs {
    /// Certificate file, or - for standard input.
    crt_file: String,
    /// Print the fingerprint of every certificate in the file.
    #[arg(long)]
    bundle: bool,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The certificate (a bundle's extra certificates are used as intermediates).
    crt_file: String,
    /// Trusted root certificate(s).
    #[arg(long, value_name = "FILE", required = true)]
    roots: String,
    /// Extra intermediate certificates.
    #[arg(long, value_name = "FILE")]
    intermediates: Option<String>,
    /// Host name or IP the certificate must be valid for.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Required purpose (default: report whichever verifies).
    #[arg(long, value_enum)]
    purpose: Option<PurposeArg>,
    /// CRL file(s) to check revocation against.
    #[arg(long, value_name = "FILE")]
    crl: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct LintArgs {
    /// Certificate files (every certificate in each file is checked).
    #[arg(required = true)]
    crt_files: Vec<String>,
    /// Intended purpose of leaf certificates, to check their EKU.
    #[arg(long, value_enum)]
    purpose: Option<PurposeArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Treat warnings as errors for the exit status.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, clap::Args)]
struct NeedsRenewalArgs {
    /// The certificate file.
    crt_file: String,
    /// Renewal window: a duration (renew when less remains) or a percentage of the lifetime.
    #[arg(long, value_name = "DURATION|PERCENT")]
    expires_in: Option<String>,
    /// Check every certificate in the file; renewal is needed if any needs it.
    #[arg(long)]
    bundle: bool,
    /// Print the decision.
    #[arg(long, short = 'v')]
    verbose: bool,
}

#[derive(Debug, clap::Args)]
struct P12Args {
    /// The .p12 file to write.
    p12_file: PathBuf,
    /// The certificate (a bundle's extra certificates are included as its chain).
    crt_file: String,
    /// The private key.
    key_file: String,
    /// Extra CA certificates to include (e.g. the root, for Java truststores).
    #[arg(long, value_name = "FILE")]
    ca: Vec<String>,
    /// File holding the password that protects the .p12 file.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// File holding the password of an encrypted private key.
    #[arg(long, value_name = "FILE")]
    key_password_file: Option<PathBuf>,
    /// Name (alias) of the entry, as Java keytool shows it. Default: the certificate's CN.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Overwrite the .p12 file if it exists.
    #[arg(long, short = 'f')]
    force: bool,
}

/// Runs `keep certificate …`; returns the exit code.
pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Cmd::Create(a) => create(a),
        Cmd::Sign(a) => sign(a),
        Cmd::Inspect(a) => inspect_cmd(a),
        Cmd::Fingerprint(a) => fingerprint(a),
        Cmd::Verify(a) => verify_cmd(a),
        Cmd::Lint(a) => lint_cmd(a),
        Cmd::NeedsRenewal(a) => Ok(needs_renewal(a)),
        Cmd::P12(a) => p12(a),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// "Expires: … (in 89 days)".
fn expiry_line(not_after: OffsetDateTime) -> String {
    let left = not_after - now();
    if left.is_negative() {
        format!(
            "Expires: {} (already expired, {} ago)",
            rfc3339(not_after),
            inspect::human_duration(-left)
        )
    } else {
        format!(
            "Expires: {} (in {})",
            rfc3339(not_after),
            inspect::human_duration(left)
        )
    }
}

fn load_issuer(ca: &str, ca_key: &str, password_file: Option<&Path>) -> anyhow::Result<Issuer> {
    let (ca_bytes, ca_source) = files::read_input(ca)?;
    let key = password::load_key(
        ca_key,
        password_file,
        "CA private key",
        "--ca-password-file",
    )?;
    Ok(Issuer::new(&ca_bytes, &ca_source, key)?)
}

fn create(a: CreateArgs) -> anyhow::Result<u8> {
    let (subject, common_name, crt_path, key_path) = match a.args.as_slice() {
        [s, crt, key] => (s.clone(), None, PathBuf::from(crt), PathBuf::from(key)),
        [s, cn, crt, key] => (
            s.clone(),
            Some(cn.clone()),
            PathBuf::from(crt),
            PathBuf::from(key),
        ),
        _ => return Err(usage("expected SUBJECT [COMMON_NAME] CRT_FILE KEY_FILE")),
    };
    if a.no_password && !a.insecure {
        return Err(usage(
            "--no-password writes the private key unencrypted; add --insecure to confirm",
        ));
    }
    if a.no_password && a.password_file.is_some() {
        return Err(usage(
            "--no-password and --password-file contradict each other",
        ));
    }
    let profile: Profile = a.profile.into();
    if a.csr && profile != Profile::Leaf {
        return Err(usage(
            "--csr makes a request for a leaf; --profile does not apply",
        ));
    }
    if a.ca.is_some() != a.ca_key.is_some() {
        return Err(usage("--ca and --ca-key go together"));
    }
    let key_type = KeyType::from_flags(a.key.kty.as_deref(), a.key.crv.as_deref(), a.key.size)?;
    let (not_before, not_after) = a.validity.parse()?;
    // Everything that can be refused is refused before a key is made or a file is touched.
    files::check_writable(&[&crt_path, &key_path], a.force)?;
    let issuer = match (&a.ca, &a.ca_key, a.csr) {
        (Some(ca), Some(ca_key), false) => {
            Some(load_issuer(ca, ca_key, a.ca_password_file.as_deref())?)
        }
        (Some(_), _, true) => return Err(usage("--csr makes an unsigned request; drop --ca")),
        _ => None,
    };
    let req = CertRequest {
        profile,
        subject,
        common_name,
        sans: a.san.clone(),
        eku: a.eku.map(Into::into),
        path_len: a.path_len,
        not_before,
        not_after,
        now: now(),
    };
    // Check names, profile and validity before asking for a password, so a typo costs no
    // prompt and writes nothing.
    if !a.csr {
        cert::check_request(&req, issuer.as_ref())?;
    }
    let pw = if a.no_password {
        None
    } else {
        Some(password::new_password(
            a.password_file.as_deref(),
            "private key",
            "--password-file",
        )?)
    };
    let key = PrivateKey::generate(key_type)?;
    let key_pem = match &pw {
        Some(pw) => zeroize::Zeroizing::new(key.to_pem_encrypted(pw)?),
        None => key.to_pem_plaintext(),
    };
    if a.csr {
        let csr_pem = cert::create_csr(&req, &key)?;
        files::write_atomic(&crt_path, csr_pem.as_bytes(), Mode::Public, a.force)?;
        files::write_atomic(&key_path, key_pem.as_bytes(), Mode::Secret, a.force)?;
        eprintln!(
            "Your certificate signing request has been saved in {}.",
            crt_path.display()
        );
        report_key(&key_path, pw.is_some());
        return Ok(0);
    }
    let issued = cert::create(&req, &key, issuer.as_ref())?;
    for w in &issued.warnings {
        eprintln!("warning: {w}");
    }
    // The key first: a certificate without its key is useless, the reverse can be re-signed.
    files::write_atomic(&key_path, key_pem.as_bytes(), Mode::Secret, a.force)?;
    files::write_atomic(
        &crt_path,
        issued.pem(a.bundle).as_bytes(),
        Mode::Public,
        a.force,
    )?;
    eprintln!("Your certificate has been saved in {}.", crt_path.display());
    report_key(&key_path, pw.is_some());
    eprintln!("{}", expiry_line(issued.cert.not_after));
    Ok(0)
}

fn report_key(path: &Path, encrypted: bool) {
    if encrypted {
        eprintln!(
            "Your private key has been saved in {} (encrypted).",
            path.display()
        );
    } else {
        eprintln!(
            "warning: your private key has been saved in {} UNENCRYPTED (--no-password \
             --insecure); keep it on a memory-backed mount and never commit it.",
            path.display()
        );
    }
}

fn sign(a: SignArgs) -> anyhow::Result<u8> {
    let profile: Profile = a.profile.into();
    let (not_before, not_after) = a.validity.parse()?;
    if let Some(out) = &a.out {
        files::check_writable(&[out.as_path()], a.force)?;
    }
    let (csr_bytes, csr_source) = files::read_input(&a.csr_file)?;
    let csr = cert::read_csr(&csr_bytes, &csr_source)?;
    let issuer = load_issuer(
        &a.ca_crt_file,
        &a.ca_key_file,
        a.ca_password_file.as_deref(),
    )?;
    let opts = SignOptions {
        profile,
        eku: a.eku.map(Into::into),
        path_len: a.path_len,
        not_before,
        not_after,
        extra_sans: a.san,
        now: now(),
    };
    let issued = cert::sign_csr(&csr, &opts, &issuer)?;
    for w in &issued.warnings {
        eprintln!("warning: {w}");
    }
    let pem = issued.pem(a.bundle);
    match &a.out {
        Some(out) => {
            files::write_atomic(out, pem.as_bytes(), Mode::Public, a.force)?;
            eprintln!("Your certificate has been saved in {}.", out.display());
        }
        None => print!("{pem}"),
    }
    eprintln!("{}", expiry_line(issued.cert.not_after));
    Ok(0)
}

/// The `host:port` to connect to for an `https://host[:port][/path]` source (port 443 when
/// none is given), or `None` when `source` is not an https URL. `keep check expiry` reads
/// endpoints the same way.
pub(crate) fn https_address(source: &str) -> Option<String> {
    let rest = source.strip_prefix("https://")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    Some(
        if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport.to_owned()
        } else {
            format!("{hostport}:443")
        },
    )
}

/// Certificates from a file, stdin, or a live endpoint.
fn load_certs(source: &str) -> anyhow::Result<(Vec<Vec<u8>>, String)> {
    if let Some(addr) = https_address(source) {
        let presented = keep_tls::probe::fetch_chain(&addr, StdDuration::from_secs(10))?;
        let note = format!(
            "presented by {addr}{} (not verified: use `keep certificate verify` to check trust)",
            presented
                .protocol
                .map(|p| format!(" over {p}"))
                .unwrap_or_default()
        );
        return Ok((presented.chain, note));
    }
    let (bytes, src) = files::read_input(source)?;
    let blocks = pem::read_certificates(&bytes, &src)?;
    Ok((
        blocks.into_iter().map(|b| b.der.to_vec()).collect(),
        src.to_string(),
    ))
}

fn inspect_cmd(a: InspectArgs) -> anyhow::Result<u8> {
    let (certs, note) = load_certs(&a.source)?;
    let take = if a.bundle { certs.len() } else { 1 };
    let mut infos = Vec::new();
    for (i, der) in certs.iter().take(take).enumerate() {
        infos.push(
            inspect::inspect(der).with_context(|| format!("certificate {} of {note}", i + 1))?,
        );
    }
    match a.format {
        Format::Json => {
            let out = if a.bundle {
                serde_json::to_string_pretty(&infos)?
            } else {
                serde_json::to_string_pretty(&infos[0])?
            };
            println!("{out}");
        }
        Format::Text => {
            if a.source.starts_with("https://") {
                println!("# {note}");
            }
            for (i, info) in infos.iter().enumerate() {
                if a.bundle {
                    println!("# certificate {} of {}", i + 1, infos.len());
                }
                print!("{}", inspect::render_text(info, now()));
                if i + 1 < infos.len() {
                    println!();
                }
            }
        }
    }
    Ok(0)
}

fn fingerprint(a: FingerprintArgs) -> anyhow::Result<u8> {
    let (certs, _) = load_certs(&a.crt_file)?;
    let take = if a.bundle { certs.len() } else { 1 };
    for der in certs.iter().take(take) {
        println!("{}", inspect::fingerprint_sha256(der));
    }
    Ok(0)
}

fn read_all_certs(path: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let (bytes, src) = files::read_input(path)?;
    Ok(pem::read_certificates(&bytes, &src)?
        .into_iter()
        .map(|b| b.der.to_vec())
        .collect())
}

fn verify_cmd(a: VerifyArgs) -> anyhow::Result<u8> {
    let mut certs = read_all_certs(&a.crt_file)?;
    let leaf = certs.remove(0);
    let mut intermediates = certs;
    if let Some(i) = &a.intermediates {
        intermediates.extend(read_all_certs(i)?);
    }
    let mut crls = Vec::new();
    for c in &a.crl {
        let (bytes, src) = files::read_input(c)?;
        crls.extend(
            pem::read_crls(&bytes, &src)?
                .into_iter()
                .map(|b| b.der.to_vec()),
        );
    }
    let opts = VerifyOptions {
        roots: read_all_certs(&a.roots)?,
        intermediates,
        host: a.host.clone(),
        purpose: a.purpose.map(Into::into),
        crls,
        now: now(),
    };
    match verify::verify(&leaf, &opts) {
        Ok(v) => {
            let host = a
                .host
                .map(|h| format!(", and for host {h}"))
                .unwrap_or_default();
            println!("ok: {} verifies: {v}{host}", a.crt_file);
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {} does not verify: {e}", a.crt_file);
            Ok(1)
        }
    }
}

fn lint_cmd(a: LintArgs) -> anyhow::Result<u8> {
    let opts = LintOptions {
        purpose: a.purpose.map(Into::into),
        now: now(),
    };
    let mut results = Vec::new();
    for f in &a.crt_files {
        let certs = read_all_certs(f)?;
        for (i, der) in certs.iter().enumerate() {
            let info = inspect::inspect(der)?;
            let findings = lint::lint(der, &opts)?;
            results.push((f.clone(), i + 1, info.subject, findings));
        }
    }
    let fails = |s: Severity| s == Severity::Error || (a.strict && s == Severity::Warning);
    let failed = results
        .iter()
        .any(|(_, _, _, f)| f.iter().any(|x| fails(x.severity)));
    match a.format {
        Format::Json => {
            let v: Vec<serde_json::Value> = results
                .iter()
                .map(|(file, idx, subject, findings)| {
                    serde_json::json!({
                        "file": file, "index": idx, "subject": subject, "findings": findings,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            for (file, idx, subject, findings) in &results {
                let label = if *idx > 1 {
                    format!("{file} [{idx}] ({subject})")
                } else {
                    format!("{file} ({subject})")
                };
                if findings.is_empty() {
                    println!("{label}: ok");
                    continue;
                }
                println!("{label}:");
                for f in findings {
                    let sev = match f.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                        Severity::Info => "info",
                    };
                    println!("  {sev}[{}]: {}", f.id, f.message);
                    println!("    fix: {}", f.fix);
                }
            }
        }
    }
    Ok(if failed { 2 } else { 0 })
}

/// needs-renewal has its own exit codes (see `Cmd::NeedsRenewal`), so it never returns Err.
fn needs_renewal(a: NeedsRenewalArgs) -> u8 {
    const RENEW: u8 = 0;
    const NOT_YET: u8 = 1;
    const MISSING: u8 = 2;
    const UNDECIDED: u8 = 255;
    if a.crt_file != "-" && !Path::new(&a.crt_file).exists() {
        eprintln!("{}: no such file; nothing to renew", a.crt_file);
        return MISSING;
    }
    let run = || -> anyhow::Result<bool> {
        let threshold = match &a.expires_in {
            Some(s) => renewal::parse_threshold(s)?,
            None => Threshold::default(),
        };
        let certs = read_all_certs(&a.crt_file)?;
        let take = if a.bundle { certs.len() } else { 1 };
        let mut any = false;
        for der in certs.iter().take(take) {
            let c = cert::Certificate::from_der(der, &a.crt_file)?;
            let check = renewal::check(&c, threshold, now());
            if a.verbose {
                let who = c.common_name.as_deref().unwrap_or("certificate");
                if check.expired {
                    eprintln!("{who}: expired at {}; renew now", rfc3339(c.not_after));
                } else if check.needs_renewal {
                    eprintln!(
                        "{who}: renew now (expires {}, renewal window opened {})",
                        rfc3339(c.not_after),
                        rfc3339(check.renew_at)
                    );
                } else {
                    eprintln!(
                        "{who}: not yet (expires {}, renew after {})",
                        rfc3339(c.not_after),
                        rfc3339(check.renew_at)
                    );
                }
            }
            any |= check.needs_renewal;
        }
        Ok(any)
    };
    match run() {
        Ok(true) => RENEW,
        Ok(false) => NOT_YET,
        Err(e) => {
            eprintln!("error: {}", crate::exit::render(&e));
            UNDECIDED
        }
    }
}

fn p12(a: P12Args) -> anyhow::Result<u8> {
    files::check_writable(&[a.p12_file.as_path()], a.force)?;
    let mut certs = read_all_certs(&a.crt_file)?;
    let leaf = certs.remove(0);
    let mut chain = certs;
    for ca in &a.ca {
        chain.extend(read_all_certs(ca)?);
    }
    let key = password::load_key(
        &a.key_file,
        a.key_password_file.as_deref(),
        "private key",
        "--key-password-file",
    )?;
    if !key.matches_certificate(&leaf) {
        bail!(usage(format!(
            "{} does not hold the private key of {}; pass the key created with this certificate",
            a.key_file, a.crt_file
        )));
    }
    let pw = password::new_password(
        a.password_file.as_deref(),
        "PKCS#12 file",
        "--password-file",
    )?;
    let name = match a.name {
        Some(n) => n,
        None => cert::Certificate::from_der(&leaf, &a.crt_file)?
            .common_name
            .unwrap_or_else(|| "keep".into()),
    };
    let bytes = keep_pki::p12::export(&leaf, &chain, &key, &pw, &name)?;
    files::write_atomic(&a.p12_file, &bytes, Mode::Secret, a.force)?;
    eprintln!(
        "Your PKCS#12 file has been saved in {} (alias {name:?}, {} certificate(s)).",
        a.p12_file.display(),
        chain.len() + 1
    );
    eprintln!(
        "{}",
        expiry_line(cert::Certificate::from_der(&leaf, &a.crt_file)?.not_after)
    );
    Ok(0)
}
