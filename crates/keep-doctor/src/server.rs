//! Diagnosis of a server config (`keep doctor --server keep-server.yaml`).
//!
//! Everything here is offline and read-only: files are read, never written (writability is
//! probed by opening for append, or by creating and removing a temporary file); the storage is
//! opened read-only and unsealed in memory only to list roles and policies.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use keep_pki::key::KeyError;
use keep_pki::pem::Source;
use keep_policy::{Capability, Policy};
use keep_server::config::{ConfigError, SealSource, ServerConfig};
use keep_store::{RootKeySource, SqliteStore, Store};
use keep_tls::server::{TlsConfigError, TlsVersion, check_cipher_suites};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::Options;
use crate::files;
use crate::material::{self, CertFacts};
use crate::report::{Check, Status};

/// The most a file is read when looking for stray CA keys (keys and certificates are small;
/// this keeps a database or a log next to the config from being read whole).
const SCAN_LIMIT: u64 = 1024 * 1024;

/// Runs every server check for the config at `path`; the result is one group.
pub fn diagnose(path: &Path, opts: &Options) -> Check {
    let title = format!("server config {}", path.display());
    let (config_check, loaded) = load(path);
    let mut out = vec![config_check];
    let Some((config, raw)) = loaded else {
        for (id, t) in [
            ("server.listener", "listener TLS"),
            ("server.root_ca_key", "root CA key kept offline"),
            ("server.storage", "storage and audit"),
            ("server.pki", "PKI mount (issuance and renewal)"),
            ("server.roles", "roles and policies"),
        ] {
            out.push(Check::skip(id, t, "the config does not load"));
        }
        return Check::group("server", &title, out);
    };
    out.push(listener(&config, &raw, opts));
    out.push(root_ca_keys(&config));
    out.push(storage(&config));
    out.push(pki(&config, opts));
    out.push(roles(&config));
    Check::group("server", &title, out)
}

/// The config check. `listener.tls.min_version: "1.0"` makes the server refuse the config;
/// the doctor reports that clearly and goes on with the rest, as if it said "1.2".
fn load(path: &Path) -> (Check, Option<(ServerConfig, Option<Value>)>) {
    const ID: &str = "server.config";
    const TITLE: &str = "config";
    let Ok(text) = std::fs::read_to_string(path) else {
        let mut c = files::readable(ID, "--server", path);
        c.title = TITLE.to_owned();
        return (c, None);
    };
    let raw = crate::yaml_value(&text);
    match ServerConfig::from_yaml(&text, path) {
        Ok(c) => (config_ok(&c), Some((c, raw))),
        Err(ConfigError::Field { field, line, .. }) if field == "listener.tls.min_version" => {
            let check = Check::fail(
                ID,
                TITLE,
                format!(
                    "keep server refuses this config: `listener.tls.min_version` (line {line}) is not a version it accepts (see the TLS checks below)"
                ),
                format!(
                    "set listener.tls.min_version to \"1.2\" or \"1.3\" in {}",
                    path.display()
                ),
            );
            let patched = raw.clone().and_then(|mut v| {
                *v.pointer_mut("/listener/tls/min_version")? = Value::String("1.2".into());
                ServerConfig::from_yaml(&serde_json::to_string(&v).ok()?, path).ok()
            });
            (check, patched.map(|c| (c, raw)))
        }
        Err(e) => {
            let (problem, fix) = material::split_fix(&e.to_string());
            let fix = fix.unwrap_or_else(|| match &e {
                ConfigError::Missing { field, hint, .. } => format!("add `{field}`: {hint}"),
                ConfigError::Field { field, .. } => format!("correct `{field}`"),
                _ => "correct the YAML at the line and column named".to_owned(),
            });
            (Check::fail(ID, TITLE, problem, fix), None)
        }
    }
}

fn config_ok(c: &ServerConfig) -> Check {
    let seal = match &c.seal {
        SealSource::KeyFile(p) => format!("key file {}", p.display()),
        SealSource::PassphraseFile(p) => format!("passphrase file {}", p.display()),
        SealSource::PassphrasePrompt => "passphrase prompt".to_owned(),
    };
    Check::ok(
        "server.config",
        "config",
        format!(
            "parses: listens on {}, storage {}, seal {seal}",
            c.address,
            c.sqlite_path.display()
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Listener.

fn listener(config: &ServerConfig, raw: &Option<Value>, opts: &Options) -> Check {
    let tls = &config.tls;
    let mut out = Vec::new();
    let mut readable = BTreeSet::new();
    for (field, p) in tls.files() {
        let id = format!("server.listener.files.{field}");
        let c = files::readable(&id, &format!("listener.tls.{field}"), p);
        if c.status == Status::Ok {
            readable.insert(field);
        }
        out.push(c);
    }
    if readable.contains("key_file") {
        out.push(files::private_mode(
            "server.listener.key_mode",
            "listener.tls.key_file permissions",
            &tls.key_file,
            false,
        ));
    }
    if let Some(p) = &tls.key_password_file
        && readable.contains("key_password_file")
    {
        out.push(files::private_mode(
            "server.listener.key_password_mode",
            "listener.tls.key_password_file permissions",
            p,
            false,
        ));
    }

    // The server's certificate.
    let leaf = server_cert(config, readable.contains("cert_file"), &mut out, opts);
    // Its key.
    let key = server_key(config, &readable, &mut out);
    out.push(match (&leaf, &key) {
        (Some(leaf), Some(key)) if key.matches_certificate(&leaf.der) => Check::ok(
            "server.listener.key_matches",
            "key matches certificate",
            format!("listener.tls.key_file is the key of `{}`", leaf.subject),
        ),
        (Some(leaf), Some(_)) => Check::fail(
            "server.listener.key_matches",
            "key matches certificate",
            format!(
                "listener.tls.key_file ({}) does not belong to listener.tls.cert_file ({}, `{}`): their public keys differ",
                tls.key_file.display(),
                tls.cert_file.display(),
                leaf.subject
            ),
            "point key_file at the key the server certificate was issued for, or reissue the certificate for this key",
        ),
        _ => Check::skip(
            "server.listener.key_matches",
            "key matches certificate",
            "the certificate or the key did not load",
        ),
    });

    out.push(client_ca(config, readable.contains("client_ca_file"), opts));
    out.push(min_version(config, raw));
    out.push(cipher_suites(config));
    Check::group("server.listener", "listener TLS", out)
}

fn server_cert(
    config: &ServerConfig,
    readable: bool,
    out: &mut Vec<Check>,
    opts: &Options,
) -> Option<CertFacts> {
    const ID: &str = "server.listener.cert";
    const TITLE: &str = "listener.tls.cert_file (PEM)";
    let path = &config.tls.cert_file;
    if !readable {
        out.push(Check::skip(ID, TITLE, "the file cannot be read"));
        return None;
    }
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            out.push(Check::skip(ID, TITLE, files::io_words(&e)));
            return None;
        }
    };
    let blocks = match keep_pki::pem::read_certificates(&text, &Source::File(path.clone())) {
        Ok(b) => b,
        Err(e) => {
            out.push(material::pem_failure(ID, TITLE, &e));
            return None;
        }
    };
    let leaf = CertFacts::chain(&blocks).into_iter().next()?;
    if leaf.is_ca {
        out.push(Check::fail(
            ID,
            TITLE,
            format!(
                "the first certificate (`{}`) is a CA certificate, not the server's",
                leaf.subject
            ),
            "put the server's own certificate first, followed by its intermediate",
        ));
        return Some(leaf);
    }
    if !leaf.eku.is_empty()
        && !leaf
            .eku
            .iter()
            .any(|e| e == "serverAuth" || e == "anyExtendedKeyUsage")
    {
        out.push(Check::fail(
            ID,
            TITLE,
            format!(
                "`{}` is not a TLS server certificate (extended key usage: {})",
                leaf.subject,
                leaf.eku.join(", ")
            ),
            "issue it with the serverAuth EKU: keep certificate create vault.claw.internal vault.crt vault.key --profile leaf --san vault.claw.internal …",
        ));
    } else if leaf.sans.is_empty() {
        out.push(Check::fail(
            ID,
            TITLE,
            format!(
                "`{}` has no subject alternative names: clients will reject it",
                leaf.subject
            ),
            "reissue it with --san for every name and IP clients use",
        ));
    } else {
        out.push(Check::ok(
            ID,
            TITLE,
            format!(
                "`{}`, issued by `{}`, for {}",
                leaf.subject,
                leaf.issuer,
                leaf.sans.join(", ")
            ),
        ));
    }
    out.push(material::validity(
        "server.listener.cert_validity",
        "server certificate validity",
        &leaf,
        opts.now,
        "renew listener.tls.cert_file (the server reloads it on change or SIGHUP)",
    ));
    Some(leaf)
}

fn server_key(
    config: &ServerConfig,
    readable: &BTreeSet<&str>,
    out: &mut Vec<Check>,
) -> Option<keep_pki::PrivateKey> {
    const ID: &str = "server.listener.key";
    const TITLE: &str = "listener.tls.key_file (PEM)";
    let path = &config.tls.key_file;
    if !readable.contains("key_file") {
        out.push(Check::skip(ID, TITLE, "the file cannot be read"));
        return None;
    }
    let text = match std::fs::read(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) => {
            out.push(Check::skip(ID, TITLE, files::io_words(&e)));
            return None;
        }
    };
    let password = match &config.tls.key_password_file {
        Some(p) if readable.contains("key_password_file") => {
            keep_pki::key::read_password_file(p).ok()
        }
        Some(_) => {
            out.push(Check::skip(
                ID,
                TITLE,
                "the key's password file cannot be read",
            ));
            return None;
        }
        None => None,
    };
    match keep_pki::key::load_private_key(&text, &Source::File(path.clone()), password.as_ref()) {
        Ok(k) => {
            out.push(Check::ok(
                ID,
                TITLE,
                format!("{} private key", k.key_type()),
            ));
            Some(k)
        }
        Err(KeyError::PasswordRequired { .. }) => {
            out.push(Check::fail(
                ID,
                TITLE,
                "the key is encrypted and no password is configured",
                "set listener.tls.key_password_file to a 0600 file holding its password",
            ));
            None
        }
        Err(KeyError::Pem(e)) => {
            out.push(material::pem_failure(ID, TITLE, &e));
            None
        }
        Err(e) => {
            let (problem, fix) = material::split_fix(&e.to_string());
            out.push(Check::fail(
                ID,
                TITLE,
                problem,
                fix.unwrap_or_else(|| "point it at the server's private key (PEM)".into()),
            ));
            None
        }
    }
}

fn client_ca(config: &ServerConfig, readable: bool, opts: &Options) -> Check {
    const ID: &str = "server.listener.client_ca";
    const TITLE: &str = "listener.tls.client_ca_file (PEM)";
    let path = &config.tls.client_ca_file;
    if !readable {
        return Check::skip(ID, TITLE, "the file cannot be read");
    }
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => return Check::skip(ID, TITLE, files::io_words(&e)),
    };
    let blocks = match keep_pki::pem::read_certificates(&text, &Source::File(path.clone())) {
        Ok(b) => b,
        Err(e) => return material::pem_failure(ID, TITLE, &e),
    };
    let mut names = Vec::new();
    for b in &blocks {
        let Some(f) = CertFacts::of(&b.der) else {
            continue;
        };
        if !f.is_ca {
            return Check::fail(
                ID,
                TITLE,
                format!(
                    "line {}: `{}` is not a CA certificate; a leaf here would become a trust anchor, so whoever holds its key could vouch for any client",
                    b.line, f.subject
                ),
                "keep only root and intermediate CA certificates in this file",
            );
        }
        let v = material::validity(ID, TITLE, &f, opts.now, "renew this CA certificate");
        if v.status == Status::Fail {
            return Check::fail(
                ID,
                TITLE,
                format!("line {}: the CA `{}`: {}", b.line, f.subject, v.detail),
                "replace it with a current CA certificate",
            );
        }
        names.push(format!("`{}`", f.subject));
    }
    Check::ok(
        ID,
        TITLE,
        format!("CA certificates only: {}", names.join(", ")),
    )
}

fn min_version(config: &ServerConfig, raw: &Option<Value>) -> Check {
    const ID: &str = "server.listener.min_version";
    const TITLE: &str = "listener.tls.min_version";
    // The config as written (the loaded one says "1.2" when the doctor patched a refused value).
    let given = raw
        .as_ref()
        .and_then(|v| v.pointer("/listener/tls/min_version"))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    let parsed = match &given {
        Some(g) => g.parse::<TlsVersion>(),
        None => Ok(config.tls.min_version),
    };
    match parsed {
        Ok(TlsVersion::V1_2) => {
            Check::ok(ID, TITLE, "TLS 1.2 (ECDHE+AEAD suites only) and TLS 1.3")
        }
        Ok(TlsVersion::V1_3) => Check::ok(ID, TITLE, "TLS 1.3 only"),
        Err(e @ TlsConfigError::WeakMinVersion { .. }) => {
            let (problem, fix) = material::split_fix(&e.to_string());
            Check::fail(
                ID,
                TITLE,
                problem.trim_start_matches("`min_version`: ").to_owned(),
                fix.unwrap_or_else(|| "use \"1.2\" or \"1.3\"".into()),
            )
        }
        Err(e) => {
            let (problem, fix) = material::split_fix(&e.to_string());
            Check::fail(
                ID,
                TITLE,
                problem,
                fix.unwrap_or_else(|| "use \"1.2\" or \"1.3\"".into()),
            )
        }
    }
}

fn cipher_suites(config: &ServerConfig) -> Check {
    const ID: &str = "server.listener.cipher_suites";
    const TITLE: &str = "listener.tls.cipher_suites";
    let Some(names) = &config.tls.cipher_suites else {
        return Check::ok(
            ID,
            TITLE,
            "keep's defaults: TLS 1.3 suites and TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305",
        );
    };
    let mut bad = Vec::new();
    let mut fixes = Vec::new();
    for n in names {
        if let Err(e) = check_cipher_suites(std::slice::from_ref(n), TlsVersion::V1_2) {
            let (problem, fix) = material::split_fix(&e.to_string());
            bad.push(problem.trim_start_matches("`cipher_suites`: ").to_owned());
            if let Some(f) = fix
                && !fixes.contains(&f)
            {
                fixes.push(f);
            }
        }
    }
    if !bad.is_empty() {
        return Check::fail(ID, TITLE, bad.join("; "), fixes.join("; "));
    }
    match check_cipher_suites(names, config.tls.min_version) {
        Ok(()) => Check::ok(ID, TITLE, format!("strong: {}", names.join(", "))),
        Err(e) => {
            let (problem, fix) = material::split_fix(&e.to_string());
            Check::fail(ID, TITLE, problem, fix.unwrap_or_default())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Root CA key.

/// Looks for private keys next to the config and the files it references, and fails for each
/// one that belongs to a self-signed CA certificate found there (or in the client CA bundle):
/// the root's key belongs offline; a server host that holds it can mint any identity.
fn root_ca_keys(config: &ServerConfig) -> Check {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add = |p: &Path| {
        let d = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    add(&config.path);
    for (_, p) in config.tls.files() {
        add(p);
    }
    let mut keys: Vec<(PathBuf, Zeroizing<Vec<u8>>)> = Vec::new();
    // (file, facts) of every certificate seen.
    let mut certs: Vec<(PathBuf, CertFacts)> = Vec::new();
    for d in &dirs {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            if !meta.is_file() || meta.len() > SCAN_LIMIT {
                continue;
            }
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            let bytes = Zeroizing::new(bytes);
            if contains(&bytes, b"PRIVATE KEY-----") {
                keys.push((p, bytes));
            } else if contains(&bytes, b"-----BEGIN CERTIFICATE")
                && let Ok(blocks) =
                    keep_pki::pem::read_certificates(&bytes, &Source::File(p.clone()))
            {
                certs.extend(
                    CertFacts::chain(&blocks)
                        .into_iter()
                        .map(|f| (p.clone(), f)),
                );
            }
        }
    }
    let roots: Vec<&(PathBuf, CertFacts)> = certs
        .iter()
        .filter(|(_, f)| f.is_ca && f.self_signed)
        .collect();
    let where_ = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::new();
    for (path, bytes) in &keys {
        let id = "server.root_ca_key.found";
        let title = "root CA key";
        let fix = "move it offline (an encrypted USB stick or an HSM); the server needs only the client CA certificate (and, for online issuance, the intermediate's key)";
        match keep_pki::key::load_private_key(bytes, &Source::File(path.clone()), None) {
            Ok(k) => {
                if let Some((_, root)) = roots.iter().find(|(_, f)| k.matches_certificate(&f.der)) {
                    out.push(Check::fail(
                        id,
                        title,
                        format!(
                            "root CA key found at {}: it is the key of the self-signed CA `{}`; whoever can read this host can mint any client identity",
                            path.display(),
                            root.subject
                        ),
                        fix,
                    ));
                }
            }
            Err(KeyError::PasswordRequired { .. }) => {
                // Encrypted: its public key is unknown, so go by name (root_ca.key next to
                // root_ca.crt, as `keep certificate create` writes them).
                let stem = path.file_stem();
                if let Some((_, root)) = roots
                    .iter()
                    .find(|(p, _)| p.parent() == path.parent() && p.file_stem() == stem)
                {
                    out.push(Check::fail(
                        id,
                        title,
                        format!(
                            "root CA key found at {}: an encrypted key named like the self-signed CA certificate of `{}` next to it",
                            path.display(),
                            root.subject
                        ),
                        fix,
                    ));
                }
            }
            Err(_) => {}
        }
    }
    if out.is_empty() {
        out.push(Check::ok(
            "server.root_ca_key.none",
            "root CA key",
            format!("no root CA key in {where_}"),
        ));
    }
    Check::group("server.root_ca_key", "root CA key kept offline", out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Storage and audit.

/// The `pki:` section: the issuer loads as the server would load it (a CA that may sign
/// certificates and CRLs, its key, the key's password), is not near its end, and chains to the
/// listener's client CA file (else certificates it issues cannot connect).
fn pki(config: &ServerConfig, opts: &Options) -> Check {
    const ID: &str = "server.pki";
    const TITLE: &str = "PKI mount (issuance and renewal)";
    let Some(cfg) = &config.pki else {
        return Check::skip(
            ID,
            TITLE,
            "no `pki:` section: no online issuance, and agents cannot renew their certificates over mTLS (add pki: with the intermediate's cert and key; docs/server.md)",
        );
    };
    let mut out = Vec::new();
    let pki = match keep_server::pki::Pki::load(cfg) {
        Ok(p) => p,
        Err(e) => {
            return Check::fail(
                "server.pki.issuer",
                "pki issuer",
                e.to_string(),
                "point pki.issuer_cert_file / issuer_key_file at the intermediate CA and its key (never the root's)",
            );
        }
    };
    out.push(Check::ok(
        "server.pki.issuer",
        "pki issuer",
        format!(
            "`{}` loads with its key and may sign certificates and CRLs",
            pki.issuer_subject()
        ),
    ));
    if let Some(f) = CertFacts::of(pki.issuing_ca_der()) {
        out.push(material::validity(
            "server.pki.issuer_validity",
            "pki issuer validity",
            &f,
            opts.now,
            "issue a new intermediate from the offline root (keep certificate create … --profile intermediate-ca) and point pki.issuer_cert_file/issuer_key_file at it",
        ));
        // Issued certificates must chain to something the listener trusts.
        let trusted = std::fs::read(&config.tls.client_ca_file)
            .ok()
            .and_then(|t| {
                keep_pki::pem::read_certificates(
                    &t,
                    &Source::File(config.tls.client_ca_file.clone()),
                )
                .ok()
            })
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| CertFacts::of(&b.der))
                    .any(|ca| ca.subject == f.subject || ca.subject == f.issuer)
            })
            .unwrap_or(false);
        out.push(if trusted {
            Check::ok(
                "server.pki.trusted",
                "issued certificates are trusted by the listener",
                format!("listener.tls.client_ca_file holds `{}` or its issuer", f.subject),
            )
        } else {
            Check::fail(
                "server.pki.trusted",
                "issued certificates are trusted by the listener",
                format!(
                    "listener.tls.client_ca_file holds neither `{}` nor its issuer `{}`: certificates from pki/issue and renewals would be refused at the handshake",
                    f.subject, f.issuer
                ),
                "put the root CA (or the intermediate) in listener.tls.client_ca_file",
            )
        });
    }
    Check::group(ID, TITLE, out)
}

fn storage(config: &ServerConfig) -> Check {
    let mut out = Vec::new();
    let db = &config.sqlite_path;
    out.push(if db.exists() {
        match files::writable(db)
            .and_then(|()| files::writable_dir(db.parent().unwrap_or(Path::new("."))))
        {
            Ok(()) => Check::ok(
                "server.storage.sqlite",
                "storage.sqlite.path",
                format!(
                    "{} is writable (and its directory, for the WAL)",
                    db.display()
                ),
            ),
            Err(e) => Check::fail(
                "server.storage.sqlite",
                "storage.sqlite.path",
                format!("storage not writable: {e}"),
                format!("let keep's user write {} and its directory", db.display()),
            ),
        }
    } else {
        match files::writable(db) {
            Ok(()) => Check::warn(
                "server.storage.sqlite",
                "storage.sqlite.path",
                format!(
                    "{} does not exist yet: the storage is not initialized",
                    db.display()
                ),
                "run `keep server init --config …`",
            ),
            Err(e) => Check::fail(
                "server.storage.sqlite",
                "storage.sqlite.path",
                format!("storage not writable: {e}"),
                "point storage.sqlite.path into a directory keep's user can write",
            ),
        }
    });
    match &config.seal {
        SealSource::KeyFile(p) | SealSource::PassphraseFile(p) => {
            let field = if matches!(config.seal, SealSource::KeyFile(_)) {
                "seal.key_file"
            } else {
                "seal.passphrase_file"
            };
            if db.exists() || p.exists() {
                let c = files::readable("server.storage.seal_file", field, p);
                if c.status == Status::Ok {
                    out.push(files::private_mode(
                        "server.storage.seal_mode",
                        &format!("{field} permissions"),
                        p,
                        false,
                    ));
                } else {
                    out.push(c);
                }
            }
        }
        SealSource::PassphrasePrompt => {}
    }
    out.push(match &config.audit_file {
        None => Check::warn(
            "server.storage.audit",
            "audit.file",
            "no audit log is configured: requests and logins are not recorded",
            "add `audit: { file: /var/log/keep/audit.log }`",
        ),
        Some(p) => match files::writable(p) {
            Ok(()) => Check::ok(
                "server.storage.audit",
                "audit.file",
                format!("{} is writable", p.display()),
            ),
            Err(e) => Check::fail(
                "server.storage.audit",
                "audit.file",
                format!(
                    "audit log not writable: {e}; the server will not start (audit fails closed)"
                ),
                "point audit.file into a directory keep's user can write",
            ),
        },
    });
    Check::group("server.storage", "storage and audit", out)
}

// ---------------------------------------------------------------------------------------------
// Roles and policies.

fn roles(config: &ServerConfig) -> Check {
    const GROUP: &str = "server.roles";
    const TITLE: &str = "roles and policies";
    let skip = |why: String| {
        Check::group(
            GROUP,
            TITLE,
            vec![Check::skip(
                "server.roles.unseal",
                "storage unsealed read-only",
                why,
            )],
        )
    };
    let db = &config.sqlite_path;
    if !db.exists() {
        return skip(format!("{} does not exist yet", db.display()));
    }
    let store = match SqliteStore::open_read_only(db) {
        Ok(s) => s,
        Err(e) => return skip(format!("cannot open the storage read-only: {e}")),
    };
    match keep_store::seal::status(&store) {
        Ok(s) if s.initialized => {}
        Ok(_) => return skip("the storage is not initialized".into()),
        Err(e) => return skip(format!("cannot read the seal status: {e}")),
    }
    let source = match &config.seal {
        SealSource::KeyFile(p) => RootKeySource::KeyFile(p.clone()),
        SealSource::PassphraseFile(p) => match keep_pki::key::read_password_file(p) {
            Ok(pw) => RootKeySource::Passphrase(pw),
            Err(e) => {
                return skip(format!(
                    "the passphrase file {} cannot be read: {}",
                    p.display(),
                    files::io_words(&e)
                ));
            }
        },
        SealSource::PassphrasePrompt => {
            return skip(
                "the unseal passphrase is typed at start (seal.passphrase_prompt), so the doctor cannot unseal offline; list roles with `keep auth cert list` instead".into(),
            );
        }
    };
    let barrier = match source.unseal(store) {
        Ok(b) => b,
        Err(e) => return skip(format!("cannot unseal with the configured seal: {e}")),
    };
    let role_map = match keep_server::auth::RoleCache::default().all(&barrier) {
        Ok(r) => r,
        Err(e) => return skip(format!("cannot read the roles: {e}")),
    };
    let policies = keep_server::policy::PolicyCache::default();
    let mut out = vec![Check::ok(
        "server.roles.unseal",
        "storage unsealed read-only",
        format!(
            "{} cert auth role{}",
            role_map.len(),
            if role_map.len() == 1 { "" } else { "s" }
        ),
    )];
    for (name, compiled) in role_map.iter() {
        let role = &compiled.role;
        let id = format!("server.roles.{name}");
        if !role.has_name_constraints() {
            let ca = if role.certificate.trim().is_empty() {
                "any CA in listener.tls.client_ca_file"
            } else {
                "its CA"
            };
            out.push(Check::fail(
                &format!("{id}.names"),
                &format!("role `{name}`"),
                format!(
                    "role `{name}` has no name constraints: any certificate from {ca} logs in with its policies ({})",
                    role.policies().join(", ")
                ),
                format!("constrain it: keep auth cert write {name} allowed_common_names='agent-*' (or allowed_uri_sans, allowed_dns_sans)"),
            ));
        } else {
            out.push(Check::ok(
                &format!("{id}.names"),
                &format!("role `{name}`"),
                "constrains the certificate names it accepts",
            ));
        }
        for policy in role.policies() {
            out.extend(policy_check(&barrier, &policies, name, &policy));
        }
    }
    Check::group(GROUP, TITLE, out)
}

/// Warns when `policy` (attached to agent role `role`) grants more than read/list on a path
/// under the `secret/` mount.
fn policy_check(
    store: &dyn Store,
    cache: &keep_server::policy::PolicyCache,
    role: &str,
    policy: &str,
) -> Option<Check> {
    let id = format!("server.roles.{role}.policy.{policy}");
    let title = format!("role `{role}` policy `{policy}`");
    let src = match cache.source(store, policy) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Some(Check::warn(
                &id,
                &title,
                format!(
                    "role `{role}` names policy `{policy}`, which does not exist: it grants nothing"
                ),
                format!(
                    "write it (`keep policy write {policy} FILE.hcl`) or remove it from the role"
                ),
            ));
        }
        Err(e) => return Some(Check::skip(&id, &title, format!("cannot read it: {e}"))),
    };
    let parsed = Policy::parse(policy, &src).ok()?;
    let mut wide = Vec::new();
    for rule in parsed.rules() {
        if rule.denies() || !may_cover_secrets(rule.pattern()) {
            continue;
        }
        let extra: Vec<&str> = rule
            .capabilities()
            .iter()
            .filter(|c| !matches!(c, Capability::Read | Capability::List | Capability::Deny))
            .map(|c| c.as_str())
            .collect();
        if !extra.is_empty() {
            wide.push(format!(
                "\"{}\" allows {}",
                rule.pattern(),
                extra.join(", ")
            ));
        }
    }
    if wide.is_empty() {
        return None;
    }
    Some(Check::warn(
        &id,
        &title,
        format!(
            "policy `{policy}` (of agent role `{role}`) grants more than read on secrets: {}",
            wide.join("; ")
        ),
        "agents need only read: capabilities = [\"read\"] (write secrets as an operator instead)",
    ))
}

/// Whether a policy pattern can match a path under `secret/`.
fn may_cover_secrets(pattern: &str) -> bool {
    let literal = pattern.split(['*', '+']).next().unwrap_or_default();
    pattern.starts_with("secret/") || "secret/".starts_with(literal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_patterns_are_recognised() {
        for p in ["secret/data/x", "secret/*", "*", "+/data/*", "sec*"] {
            assert!(may_cover_secrets(p), "{p}");
        }
        for p in ["sys/policies/acl/x", "pki/issue/agent", "auth/token/*"] {
            assert!(!may_cover_secrets(p), "{p}");
        }
    }
}
