//! Diagnosis of an agent config (`keep doctor --config agent.yaml`).
//!
//! The checks run in the order the agent itself would hit the problems: config, files,
//! certificate and key, then the server (DNS, TCP, TLS, its certificate, client
//! authentication), then the login and each secret. Later checks are skipped with the reason
//! when what they need is broken.

use std::collections::BTreeSet;
use std::path::Path;

use keep_agent::client::{ClientConfig, ClientError, VaultClient};
use keep_agent::config::{AgentConfig, ConfigError, PemSource, SecretSpec};
use keep_agent::sink::Format;
use keep_pki::key::KeyError;
use keep_pki::pem::Source;
use keep_pki::verify::{VerifyError, VerifyOptions};
use keep_pki::{PrivateKey, Purpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use secrecy::SecretString;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::Options;
use crate::files;
use crate::material::{self, CertFacts};
use crate::probe::{self, Answer, Handshake};
use crate::report::{Check, Status};

const RENEW_FIX: &str = "renew the client certificate (the sidecar's `renew:` does this at 66% of its lifetime; or issue a new one with `keep certificate create … --eku client`)";

/// Runs every agent check for the config at `path`; the result is one group.
pub fn diagnose(path: &Path, opts: &Options) -> Check {
    let title = format!("agent config {}", path.display());
    let (config_check, loaded) = load(path);
    let mut out = vec![config_check];
    let Some(loaded) = loaded else {
        for (id, t) in [
            ("agent.files", "files"),
            ("agent.cert", "client certificate and key"),
            ("agent.server", "server"),
            ("agent.vault", "login and secrets"),
        ] {
            out.push(Check::skip(id, t, "the config does not load"));
        }
        return Check::group("agent", &title, out);
    };
    let mut d = Diagnosis {
        loaded: &loaded,
        opts,
        readable: BTreeSet::new(),
        chain: Vec::new(),
        chain_der: Vec::new(),
        key: None,
        ca: Vec::new(),
        probe: None,
        server_trusted: false,
    };
    out.push(d.files());
    out.push(d.material());
    out.push(d.server());
    out.push(d.vault());
    Check::group("agent", &title, out)
}

/// The config as loaded, plus what the doctor needs beside it.
struct Loaded {
    config: AgentConfig,
    /// The YAML text (to find the lines of inline PEM).
    text: String,
    /// `danger_allow_insecure_key_file_mode: true` was set by the user.
    danger: bool,
}

/// The config check. A key file readable by others makes the agent refuse the config; the
/// doctor reports that as its own (permissions) check and goes on diagnosing the rest, by
/// loading the config again with the opt-out set.
fn load(path: &Path) -> (Check, Option<Loaded>) {
    const ID: &str = "agent.config";
    const TITLE: &str = "config";
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) => {
            let mut c = files::readable(ID, "--config", path);
            c.title = TITLE.to_owned();
            if c.status == Status::Ok {
                c = Check::fail(
                    ID,
                    TITLE,
                    format!("{} is not UTF-8 text", path.display()),
                    "save it as UTF-8 YAML",
                );
            }
            return (c, None);
        }
    };
    let danger = crate::yaml_value(&text)
        .and_then(|v| {
            v.pointer("/vault_connection/mtls/danger_allow_insecure_key_file_mode")
                .and_then(Value::as_bool)
        })
        .unwrap_or(false);
    let loaded = |config: AgentConfig, text: String| Loaded {
        config,
        text,
        danger,
    };
    match AgentConfig::from_yaml(&text, path) {
        Ok(config) => (config_ok(&config), Some(loaded(config, text))),
        Err(ConfigError::Field { field, problem, .. })
            if field.starts_with("vault_connection.mtls.key")
                && problem.contains("readable by group or others") =>
        {
            match with_insecure_mode_accepted(&text).map(|t| AgentConfig::from_yaml(&t, path)) {
                Some(Ok(config)) => {
                    let mut c = config_ok(&config);
                    c.detail
                        .push_str(" (the key file's mode is reported under files)");
                    (c, Some(loaded(config, text)))
                }
                // Another problem further on. Its line would point into the JSON used for the
                // second load, not into the user's file, so it is left out.
                Some(Err(ConfigError::Field {
                    path: p,
                    field,
                    problem,
                    ..
                })) => (
                    config_failure(&ConfigError::Field {
                        path: p,
                        line: 0,
                        field,
                        problem,
                    }),
                    None,
                ),
                Some(Err(e)) => (config_failure(&e), None),
                None => (
                    config_failure(&ConfigError::Field {
                        path: path.to_owned(),
                        line: 0,
                        field,
                        problem,
                    }),
                    None,
                ),
            }
        }
        Err(e) => (config_failure(&e), None),
    }
}

fn config_ok(c: &AgentConfig) -> Check {
    let role = c.connection.role.as_deref().map_or_else(
        || "none (the server picks one)".to_owned(),
        |r| format!("`{r}`"),
    );
    Check::ok(
        "agent.config",
        "config",
        format!(
            "parses: server {}, role {role}, {} secret{}",
            c.connection.url,
            c.secrets.len(),
            if c.secrets.len() == 1 { "" } else { "s" }
        ),
    )
}

fn config_failure(e: &ConfigError) -> Check {
    const ID: &str = "agent.config";
    const TITLE: &str = "config";
    match e {
        ConfigError::Missing { path, field, .. }
            if field == "vault_connection.mtls" || field == "vault_connection.mtls.cert_file" =>
        {
            Check::fail(
                ID,
                TITLE,
                format!(
                    "no client certificate configured: `{field}` is missing in {}; keep's API is mutual TLS only",
                    path.display()
                ),
                "add cert_file (the agent's certificate chain, with the clientAuth EKU) and key_file under vault_connection.mtls (or inline cert_pem: | and key_pem: |); issue one with `keep certificate create agent-01 agent.crt agent.key --profile leaf --eku client --ca intermediate_ca.crt --ca-key intermediate_ca.key`",
            )
        }
        ConfigError::Missing { hint, field, .. } => {
            Check::fail(ID, TITLE, e.to_string(), format!("add `{field}`: {hint}"))
        }
        ConfigError::Field {
            path, line, field, ..
        } => {
            let (problem, fix) = material::split_fix(&e.to_string());
            let at = if *line > 0 {
                format!(" (line {line})")
            } else {
                String::new()
            };
            Check::fail(
                ID,
                TITLE,
                problem,
                fix.unwrap_or_else(|| format!("correct `{field}`{at} in {}", path.display())),
            )
        }
        ConfigError::Parse { .. } => Check::fail(
            ID,
            TITLE,
            e.to_string(),
            "correct the YAML at the line and column named (indentation, a missing colon, a tab)",
        ),
        ConfigError::Read { path, .. } => files::readable(ID, TITLE, path),
    }
}

/// The config text with `danger_allow_insecure_key_file_mode: true` added, as JSON (which is
/// YAML), or `None` when the text is not a YAML mapping with `vault_connection.mtls`.
fn with_insecure_mode_accepted(text: &str) -> Option<String> {
    let mut v = crate::yaml_value(text)?;
    let mtls = v
        .get_mut("vault_connection")?
        .get_mut("mtls")?
        .as_object_mut()?;
    mtls.insert(
        "danger_allow_insecure_key_file_mode".into(),
        Value::Bool(true),
    );
    serde_json::to_string(&v).ok()
}

/// What the checks learned so far.
struct Diagnosis<'a> {
    loaded: &'a Loaded,
    opts: &'a Options,
    /// Config fields whose file could be read.
    readable: BTreeSet<String>,
    /// The client chain (leaf first), when it parsed.
    chain: Vec<CertFacts>,
    chain_der: Vec<CertificateDer<'static>>,
    /// The client key, when it loaded.
    key: Option<PrivateKey>,
    /// The CA certificates of `ca_cert_*`, when they parsed.
    ca: Vec<CertFacts>,
    /// What the TLS probe saw.
    probe: Option<probe::Probe>,
    /// The server's chain verified against the CA and its name matched the URL.
    server_trusted: bool,
}

impl Diagnosis<'_> {
    fn config(&self) -> &AgentConfig {
        &self.loaded.config
    }

    // -----------------------------------------------------------------------------------------
    // Files.

    fn files(&mut self) -> Check {
        let loaded = self.loaded;
        let mtls = &loaded.config.connection.mtls;
        let mut out = Vec::new();
        for src in [&mtls.cert, &mtls.key, &mtls.ca] {
            let id = format!("agent.files.{}", short(src.field()));
            match src {
                PemSource::File { field, path } => {
                    let c = files::readable(&id, field, path);
                    if c.status == Status::Ok {
                        self.readable.insert(field.clone());
                    }
                    out.push(c);
                }
                PemSource::Inline { field, .. } => {
                    self.readable.insert(field.clone());
                    out.push(Check::ok(&id, field, "inline PEM in the config"));
                }
            }
        }
        if let Some(p) = &mtls.key_password_file {
            let field = "vault_connection.mtls.key_password_file";
            let c = files::readable("agent.files.key_password_file", field, p);
            if c.status == Status::Ok {
                self.readable.insert(field.to_owned());
            }
            out.push(c);
        }
        // Modes of what holds key material.
        let danger = self.loaded.danger;
        match &mtls.key {
            PemSource::File { field, path } if self.readable.contains(field) => {
                out.push(files::private_mode(
                    "agent.files.key_mode",
                    field,
                    path,
                    danger,
                ));
            }
            PemSource::Inline { field, .. } => out.push(files::private_mode(
                "agent.files.key_mode",
                &format!("{field} permissions (the config file holds the key)"),
                &loaded.config.path,
                danger,
            )),
            PemSource::File { field, .. } => out.push(Check::skip(
                "agent.files.key_mode",
                field,
                "the key file cannot be read",
            )),
        }
        if let Some(p) = &mtls.key_password_file
            && self
                .readable
                .contains("vault_connection.mtls.key_password_file")
        {
            out.push(files::private_mode(
                "agent.files.key_password_mode",
                "vault_connection.mtls.key_password_file permissions",
                p,
                danger,
            ));
        }
        for w in &loaded.config.warnings {
            // The doctor's own mode checks above say this better.
            if !w.contains("danger_allow_insecure_key_file_mode") {
                out.push(Check::warn(
                    "agent.files.warning",
                    "config",
                    w.clone(),
                    "see the message",
                ));
            }
        }
        Check::group("agent.files", "files", out)
    }

    // -----------------------------------------------------------------------------------------
    // Certificate and key.

    fn material(&mut self) -> Check {
        let mut out = vec![self.cert_pem(), self.key_pem(), self.ca_pem()];
        out.push(self.key_matches());
        out.push(self.validity());
        out.push(self.eku());
        out.push(self.chains_to_ca());
        Check::group("agent.cert", "client certificate and key", out)
    }

    /// The PEM text of a source, or the reason it cannot be had.
    fn text(&self, src: &PemSource) -> Result<Vec<u8>, String> {
        if !self.readable.contains(src.field()) {
            return Err(format!("`{}` cannot be read", src.field()));
        }
        src.read_text()
            .map_err(|e| format!("`{}` cannot be read: {}", src.field(), files::io_words(&e)))
    }

    /// `ok` (or `warn` "fixed: …" when keep's reader repaired the text).
    fn pem_ok(&self, id: &str, src: &PemSource, text: &[u8], what: String) -> Check {
        let title = pem_title(src);
        let repairs = material::repairs(text);
        if repairs.is_empty() {
            return Check::ok(id, &title, what);
        }
        let (offset, place) = match src {
            PemSource::Inline { field, .. } => match inline_line(&self.loaded.text, field) {
                Some(line) => (
                    line,
                    format!(
                        " of {}",
                        self.config()
                            .path
                            .file_name()
                            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                    ),
                ),
                None => (0, " of the PEM text".to_owned()),
            },
            PemSource::File { .. } => (0, String::new()),
        };
        let found: Vec<String> = repairs
            .iter()
            .map(|r| {
                format!(
                    "{} ({}{place})",
                    r.what,
                    material::line_ranges(&r.lines, offset)
                )
            })
            .collect();
        Check::warn(
            id,
            &title,
            format!(
                "fixed: `{}` has {}; keep reads it anyway: {what}",
                src.field(),
                found.join(", ")
            ),
            match src {
                PemSource::Inline { .. } => {
                    "re-paste it as a `|` block with every line indented like the first and no trailing spaces, so that other tools read it too"
                }
                PemSource::File { .. } => {
                    "rewrite it canonically (`keep certificate inspect --format pem` or `openssl x509 -in FILE -out FILE`) so that other tools read it too"
                }
            },
        )
    }

    fn cert_pem(&mut self) -> Check {
        let src = &self.loaded.config.connection.mtls.cert;
        let title = pem_title(src);
        const ID: &str = "agent.cert.pem";
        let text = match self.text(src) {
            Ok(t) => t,
            Err(why) => return Check::skip(ID, &title, why),
        };
        match keep_pki::pem::read_certificates(&text, &source(src)) {
            Err(e) => material::pem_failure(ID, &title, &e),
            Ok(blocks) => {
                self.chain = CertFacts::chain(&blocks);
                self.chain_der = blocks
                    .iter()
                    .map(|b| CertificateDer::from(b.der.to_vec()))
                    .collect();
                let Some(leaf) = self.chain.first() else {
                    return Check::fail(
                        ID,
                        &title,
                        "no certificate parses",
                        "replace it with the agent's certificate (PEM)",
                    );
                };
                if leaf.is_ca {
                    return Check::fail(
                        ID,
                        &title,
                        format!(
                            "the first certificate (`{}`) is a CA certificate, not the agent's",
                            leaf.subject
                        ),
                        "put the agent's own certificate first, followed by its intermediates",
                    );
                }
                let what = format!(
                    "{} certificate{}: `{}`, issued by `{}`",
                    blocks.len(),
                    if blocks.len() == 1 { "" } else { "s" },
                    leaf.subject,
                    leaf.issuer
                );
                self.pem_ok(ID, src, &text, what)
            }
        }
    }

    fn key_pem(&mut self) -> Check {
        let mtls = &self.loaded.config.connection.mtls;
        let src = &mtls.key;
        let title = pem_title(src);
        const ID: &str = "agent.key.pem";
        let text = match self.text(src) {
            Ok(t) => Zeroizing::new(t),
            Err(why) => return Check::skip(ID, &title, why),
        };
        let password: Option<SecretString> = match &mtls.key_password_file {
            Some(p)
                if self
                    .readable
                    .contains("vault_connection.mtls.key_password_file") =>
            {
                match keep_pki::key::read_password_file(p) {
                    Ok(pw) => Some(pw),
                    Err(e) => {
                        return Check::fail(
                            ID,
                            &title,
                            format!(
                                "the password file {} cannot be read: {}",
                                p.display(),
                                files::io_words(&e)
                            ),
                            "check vault_connection.mtls.key_password_file",
                        );
                    }
                }
            }
            Some(_) => {
                return Check::skip(ID, &title, "the key's password file cannot be read");
            }
            None => None,
        };
        match keep_pki::key::load_private_key(&text, &source(src), password.as_ref()) {
            Ok(key) => {
                let what = format!("{} private key", key.key_type());
                self.key = Some(key);
                self.pem_ok(ID, src, &text, what)
            }
            Err(KeyError::PasswordRequired { .. }) => Check::fail(
                ID,
                &title,
                "the private key is encrypted and no password is configured",
                "set vault_connection.mtls.key_password_file to a 0600 file holding the key's password",
            ),
            Err(KeyError::Pem(e)) => material::pem_failure(ID, &title, &e),
            Err(e) => {
                let (problem, fix) = material::split_fix(&e.to_string());
                Check::fail(
                    ID,
                    &title,
                    problem,
                    fix.unwrap_or_else(|| {
                        "point it at the agent's private key (PEM; PKCS#8, SEC1 or PKCS#1)".into()
                    }),
                )
            }
        }
    }

    fn ca_pem(&mut self) -> Check {
        let src = &self.loaded.config.connection.mtls.ca;
        let title = pem_title(src);
        const ID: &str = "agent.ca.pem";
        let text = match self.text(src) {
            Ok(t) => t,
            Err(why) => return Check::skip(ID, &title, why),
        };
        let blocks = match keep_pki::pem::read_certificates(&text, &source(src)) {
            Ok(b) => b,
            Err(e) => return material::pem_failure(ID, &title, &e),
        };
        for b in &blocks {
            match CertFacts::of(&b.der) {
                Some(f) if !f.is_ca => {
                    return Check::fail(
                        ID,
                        &title,
                        format!(
                            "line {}: `{}` is not a CA certificate; this file must hold the CA that issued the server's certificate",
                            b.line, f.subject
                        ),
                        "replace it with the root (and intermediate) CA certificate, e.g. root_ca.crt",
                    );
                }
                Some(f) => self.ca.push(f),
                None => {}
            }
        }
        let names: Vec<String> = self.ca.iter().map(|c| format!("`{}`", c.subject)).collect();
        let what = format!("holds {}", names.join(", "));
        self.pem_ok(ID, src, &text, what)
    }

    fn key_matches(&self) -> Check {
        const ID: &str = "agent.cert.key_matches";
        const TITLE: &str = "key matches certificate";
        let mtls = &self.config().connection.mtls;
        let (Some(leaf), Some(key)) = (self.chain.first(), &self.key) else {
            return Check::skip(ID, TITLE, "the certificate or the key did not load");
        };
        if key.matches_certificate(&leaf.der) {
            Check::ok(
                ID,
                TITLE,
                format!("{} is the key of `{}`", describe(&mtls.key), leaf.subject),
            )
        } else {
            Check::fail(
                ID,
                TITLE,
                format!(
                    "{} does not belong to the certificate in {} (`{}`): their public keys differ",
                    describe(&mtls.key),
                    describe(&mtls.cert),
                    leaf.subject
                ),
                "point key_file at the key this certificate was issued for (they are made together: agent.crt + agent.key), or issue a new certificate for this key",
            )
        }
    }

    fn validity(&self) -> Check {
        const ID: &str = "agent.cert.validity";
        const TITLE: &str = "validity";
        match self.chain.first() {
            Some(leaf) => material::validity(ID, TITLE, leaf, self.opts.now, RENEW_FIX),
            None => Check::skip(ID, TITLE, "the certificate did not load"),
        }
    }

    fn eku(&self) -> Check {
        const ID: &str = "agent.cert.client_auth";
        const TITLE: &str = "clientAuth extended key usage";
        let Some(leaf) = self.chain.first() else {
            return Check::skip(ID, TITLE, "the certificate did not load");
        };
        if leaf.eku.is_empty() {
            return Check::warn(
                ID,
                TITLE,
                "the certificate has no extended key usage extension: servers accept it for any purpose, but keep's lint expects clientAuth",
                "issue agent certificates with --eku client",
            );
        }
        if leaf
            .eku
            .iter()
            .any(|e| e == "clientAuth" || e == "anyExtendedKeyUsage")
        {
            return Check::ok(ID, TITLE, format!("present ({})", leaf.eku.join(", ")));
        }
        Check::fail(
            ID,
            TITLE,
            format!(
                "the client certificate has no clientAuth extended key usage (it has {}): the server will reject it",
                leaf.eku.join(", ")
            ),
            "issue a client certificate: keep certificate create NAME agent.crt agent.key --profile leaf --eku client --ca … --ca-key …",
        )
    }

    fn chains_to_ca(&self) -> Check {
        const ID: &str = "agent.cert.chain";
        const TITLE: &str = "chain to ca_cert_file";
        let Some(leaf) = self.chain.first() else {
            return Check::skip(ID, TITLE, "the certificate did not load");
        };
        if self.ca.is_empty() {
            return Check::skip(ID, TITLE, "the CA file did not load");
        }
        // The chain question is separate from the expiry one (checked above): ask it at a time
        // the leaf is valid, so an expired certificate is not also reported as a chain problem.
        let now = self.opts.now;
        let at = if now < leaf.not_before || now > leaf.not_after {
            leaf.not_before + (leaf.not_after - leaf.not_before) / 2
        } else {
            now
        };
        let opts = VerifyOptions {
            roots: self.ca.iter().map(|c| c.der.clone()).collect(),
            intermediates: self.chain[1..].iter().map(|c| c.der.clone()).collect(),
            host: None,
            purpose: None,
            crls: Vec::new(),
            now: at,
        };
        let ca_names = self
            .ca
            .iter()
            .map(|c| format!("`{}`", c.subject))
            .collect::<Vec<_>>()
            .join(", ");
        match keep_pki::verify::verify(&leaf.der, &opts) {
            Ok(v) => Check::ok(
                ID,
                TITLE,
                format!(
                    "chains to {ca_names} ({} certificates in the path)",
                    v.path_len
                ),
            ),
            Err(VerifyError::UnknownIssuer) => {
                let top = self.chain.last().unwrap_or(leaf);
                let expected = if top.self_signed {
                    &top.subject
                } else {
                    &top.issuer
                };
                Check::fail(
                    ID,
                    TITLE,
                    format!(
                        "the CA file is a different CA: the client certificate's chain leads to `{expected}`, but ca_cert_file holds {ca_names}"
                    ),
                    format!(
                        "point vault_connection.mtls.ca_cert_file at the certificate of `{expected}` (the root that issued both the server's and the agent's certificates)"
                    ),
                )
            }
            Err(e) => {
                let (problem, fix) = material::split_fix(&e.to_string());
                Check::fail(
                    ID,
                    TITLE,
                    problem,
                    fix.unwrap_or_else(|| "check the chain with `keep certificate verify`".into()),
                )
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Server.

    fn server(&mut self) -> Check {
        let url_text = self.config().connection.url.clone();
        let title = format!("server {url_text}");
        let (host, port) = match keep_agent::client::parse_address(&url_text) {
            Ok(u) => (
                u.host_str()
                    .unwrap_or_default()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                u.port_or_known_default().unwrap_or(443),
            ),
            Err(e) => {
                return Check::group(
                    "agent.server",
                    &title,
                    vec![Check::fail(
                        "agent.server.url",
                        "vault_connection.url",
                        e.to_string(),
                        "write it as https://HOST:PORT",
                    )],
                );
            }
        };
        let mut out = Vec::new();
        let addrs = match probe::resolve(&host, port) {
            Ok(a) => {
                out.push(Check::ok(
                    "agent.server.dns",
                    "name resolution",
                    if host.parse::<std::net::IpAddr>().is_ok() {
                        format!("{host} is an IP address")
                    } else {
                        format!(
                            "{host} → {}",
                            a.iter()
                                .map(|s| s.ip().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                ));
                a
            }
            Err(e) => {
                out.push(Check::fail(
                    "agent.server.dns",
                    "name resolution",
                    e,
                    "check the host in vault_connection.url and this host's DNS (/etc/hosts, the cluster DNS)",
                ));
                out.extend(skip_network(
                    "agent.server.dns",
                    "the server's name does not resolve",
                ));
                return Check::group("agent.server", &title, out);
            }
        };
        let tcp = match probe::connect(&addrs, self.opts.timeout) {
            Ok(s) => {
                out.push(Check::ok(
                    "agent.server.tcp",
                    "TCP",
                    format!(
                        "connected to {}",
                        s.peer_addr()
                            .map_or_else(|_| format!("{host}:{port}"), |a| a.to_string())
                    ),
                ));
                s
            }
            Err(e) => {
                out.push(Check::fail(
                    "agent.server.tcp",
                    "TCP",
                    format!("server unreachable: {e}"),
                    format!("start keep server (check listener.address in its config), and check that no firewall blocks port {port} between here and {host}"),
                ));
                out.extend(skip_network(
                    "agent.server.tcp",
                    "the server is unreachable",
                ));
                return Check::group("agent.server", &title, out);
            }
        };
        let identity = self.identity();
        let probe = match probe::handshake(tcp, &host, identity) {
            Ok(p) => p,
            Err(e) => {
                out.push(Check::fail("agent.server.tls", "TLS", e, "see the message"));
                out.extend(skip_network(
                    "agent.server.tls",
                    "the TLS probe could not start",
                ));
                return Check::group("agent.server", &title, out);
            }
        };
        out.push(tls_check(&probe));
        let (chain_check, name_check) = self.server_cert(&probe, &host);
        self.server_trusted = chain_check.status == Status::Ok && name_check.status == Status::Ok;
        out.push(chain_check);
        out.push(name_check);
        out.push(self.client_cert_requested(&probe));
        out.push(self.client_cert_accepted(&probe));
        self.probe = Some(probe);
        Check::group("agent.server", &title, out)
    }

    /// Our certificate and key for the probe, when both loaded and match.
    fn identity(&self) -> Option<probe::Identity> {
        let key = self.key.as_ref()?;
        let leaf = self.chain.first()?;
        if !key.matches_certificate(&leaf.der) {
            return None;
        }
        Some(probe::Identity {
            chain: self.chain_der.clone(),
            key: PrivateKeyDer::Pkcs8(key.pkcs8_der().to_vec().into()),
        })
    }

    fn server_cert(&self, probe: &probe::Probe, host: &str) -> (Check, Check) {
        const CHAIN: &str = "agent.server.cert_chain";
        const CHAIN_T: &str = "server certificate chain";
        const NAME: &str = "agent.server.cert_name";
        const NAME_T: &str = "server certificate name";
        let Some(leaf_der) = probe.presented.first() else {
            let why = match probe.handshake {
                Handshake::PlainHttp { .. } | Handshake::Failed(_) => "the TLS handshake failed",
                _ => "the server presented no certificate",
            };
            return (
                Check::skip(CHAIN, CHAIN_T, why),
                Check::skip(NAME, NAME_T, why),
            );
        };
        let Some(leaf) = CertFacts::of(leaf_der) else {
            return (
                Check::fail(
                    CHAIN,
                    CHAIN_T,
                    "the server's certificate does not parse",
                    "check listener.tls.cert_file on the server",
                ),
                Check::skip(NAME, NAME_T, "the server's certificate does not parse"),
            );
        };
        let chain = if self.ca.is_empty() {
            Check::skip(CHAIN, CHAIN_T, "the CA file did not load")
        } else {
            let opts = VerifyOptions {
                roots: self.ca.iter().map(|c| c.der.clone()).collect(),
                intermediates: probe.presented[1..].to_vec(),
                host: None,
                purpose: Some(Purpose::Server),
                crls: Vec::new(),
                now: self.opts.now,
            };
            let ca_names = self
                .ca
                .iter()
                .map(|c| format!("`{}`", c.subject))
                .collect::<Vec<_>>()
                .join(", ");
            match keep_pki::verify::verify(leaf_der, &opts) {
                Ok(_) => Check::ok(
                    CHAIN,
                    CHAIN_T,
                    format!(
                        "`{}`, issued by `{}`, chains to {ca_names}",
                        leaf.subject, leaf.issuer
                    ),
                ),
                Err(VerifyError::UnknownIssuer) => Check::fail(
                    CHAIN,
                    CHAIN_T,
                    format!(
                        "the server's certificate (`{}`, issued by `{}`) does not chain to ca_cert_file, which holds {ca_names}",
                        leaf.subject, leaf.issuer
                    ),
                    "set vault_connection.mtls.ca_cert_file to the CA that issued the server's certificate (`keep certificate inspect https://HOST:PORT` shows it); if the server does not send its intermediate, add it to listener.tls.cert_file",
                ),
                Err(VerifyError::Expired { not_after }) => Check::fail(
                    CHAIN,
                    CHAIN_T,
                    format!(
                        "the server's certificate (`{}`) expired at {not_after}",
                        leaf.subject
                    ),
                    "renew listener.tls.cert_file on the server; it reloads on change",
                ),
                Err(e) => {
                    let (problem, fix) = material::split_fix(&e.to_string());
                    Check::fail(
                        CHAIN,
                        CHAIN_T,
                        format!("the server's certificate: {problem}"),
                        fix.unwrap_or_else(|| "check listener.tls.cert_file on the server".into()),
                    )
                }
            }
        };
        let name = match name_matches(leaf_der, host) {
            Ok(()) => Check::ok(NAME, NAME_T, format!("valid for {host}")),
            Err(()) => Check::fail(
                NAME,
                NAME_T,
                format!(
                    "the server's certificate is not valid for {host}: its SANs are {}",
                    if leaf.sans.is_empty() {
                        "none".to_owned()
                    } else {
                        leaf.sans.join(", ")
                    }
                ),
                format!(
                    "use a name from its SANs in vault_connection.url, or reissue the server certificate with --san {host}"
                ),
            ),
        };
        (chain, name)
    }

    fn client_cert_requested(&self, probe: &probe::Probe) -> Check {
        const ID: &str = "agent.server.client_cert_requested";
        const TITLE: &str = "server asks for a client certificate";
        let hints = match (&probe.cert_request, &probe.handshake) {
            (Some(h), _) => h,
            (None, Handshake::Done { .. }) => {
                return Check::warn(
                    ID,
                    TITLE,
                    "the server did not ask for a client certificate (keep always does: is a proxy terminating TLS in front of it?)",
                    "connect the agent to keep server directly, or have the proxy pass TLS through",
                );
            }
            (None, _) => return Check::skip(ID, TITLE, "the TLS handshake failed before that"),
        };
        if hints.is_empty() {
            return Check::ok(ID, TITLE, "yes, from any CA (it names none)");
        }
        let names: Vec<String> = hints.iter().map(|h| format!("`{}`", dn_text(h))).collect();
        let Some(leaf) = self.chain.first() else {
            return Check::ok(ID, TITLE, format!("yes, from {}", names.join(", ")));
        };
        // Our chain's issuers: any of them among the server's CAs is enough. Advisory only, and
        // by name because the server's hints are names: no trust is decided here (the
        // handshake and login checks that follow are the real test, and the server decides a
        // role's CA binding on the verified path, by name and key).
        let ours: Vec<&Vec<u8>> = self
            .chain
            .iter()
            .map(|c| &c.issuer_raw)
            .chain(self.chain.iter().skip(1).map(|c| &c.subject_raw))
            .collect();
        if hints.iter().any(|h| ours.contains(&h)) {
            Check::ok(
                ID,
                TITLE,
                format!(
                    "yes, from {}; our issuer `{}` is among them",
                    names.join(", "),
                    leaf.issuer
                ),
            )
        } else {
            Check::fail(
                ID,
                TITLE,
                format!(
                    "the server accepts client certificates from {} only; ours is issued by `{}`",
                    names.join(", "),
                    leaf.issuer
                ),
                "get the agent a certificate from one of those CAs, or add our issuer's CA certificate to the server's listener.tls.client_ca_file",
            )
        }
    }

    fn client_cert_accepted(&self, probe: &probe::Probe) -> Check {
        const ID: &str = "agent.server.client_cert_accepted";
        const TITLE: &str = "server accepts our certificate";
        if !probe.sent_cert {
            return Check::skip(
                ID,
                TITLE,
                "no usable client certificate and key to present (see above)",
            );
        }
        let alert = |a: rustls::AlertDescription| {
            let (meaning, fix) = probe::alert_advice(a);
            Check::fail(
                ID,
                TITLE,
                format!(
                    "the server rejected our client certificate with the TLS alert {a:?}: {meaning}"
                ),
                fix,
            )
        };
        match (&probe.handshake, &probe.answer) {
            (Handshake::Alert(a), _) if probe.cert_request.is_some() => alert(*a),
            (Handshake::Done { .. }, Some(Answer::Http(status))) => Check::ok(
                ID,
                TITLE,
                format!("yes (GET /v1/sys/health answered {status})"),
            ),
            (Handshake::Done { .. }, Some(Answer::Alert(a))) => alert(*a),
            (Handshake::Done { .. }, Some(Answer::Closed(how))) => Check::fail(
                ID,
                TITLE,
                format!(
                    "the server closed the connection right after the handshake ({how}): it most likely rejected our client certificate"
                ),
                "the server's log (a handshake-failure event) names the reason; `keep certificate verify CERT --roots CLIENT_CA --purpose client` shows most of it",
            ),
            _ => Check::skip(ID, TITLE, "the TLS handshake failed"),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Login and secrets.

    fn vault(&self) -> Check {
        let reason = match &self.probe {
            None => Some("the server could not be reached over TLS"),
            Some(p) if !p.sent_cert => Some("no usable client certificate and key"),
            Some(p) if !matches!(p.handshake, Handshake::Done { .. } | Handshake::Alert(_)) => {
                Some("the TLS handshake failed")
            }
            Some(p) if !matches!(p.answer, Some(Answer::Http(_))) => {
                Some("the server rejected our client certificate")
            }
            Some(_) if !self.server_trusted => Some("the server's certificate is not trusted"),
            Some(_) => None,
        };
        if let Some(why) = reason {
            return Check::group(
                "agent.vault",
                "login and secrets",
                vec![
                    Check::skip("agent.vault.login", "cert auth login", why),
                    Check::skip("agent.vault.secrets", "secrets", why),
                ],
            );
        }
        let out = match self.login_and_read() {
            Ok(v) => v,
            Err(e) => vec![
                Check::fail("agent.vault.login", "cert auth login", e, "see the message"),
                Check::skip("agent.vault.secrets", "secrets", "no client for the server"),
            ],
        };
        Check::group("agent.vault", "login and secrets", out)
    }

    fn login_and_read(&self) -> Result<Vec<Check>, String> {
        let config = self.config();
        let settings = config
            .connection
            .mtls
            .client_settings()
            .map_err(|e| e.to_string())?;
        let client = VaultClient::new(ClientConfig {
            address: config.connection.url.clone(),
            tls: settings,
            connect_timeout: self.opts.timeout,
            timeout: self.opts.timeout * 2,
        })
        .map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        Ok(rt.block_on(self.login_and_read_async(client)))
    }

    async fn login_and_read_async(&self, client: VaultClient) -> Vec<Check> {
        const ID: &str = "agent.vault.login";
        const TITLE: &str = "cert auth login";
        let role = self.config().connection.role.as_deref();
        let subject = self.chain.first().map_or_else(
            || "this certificate".to_owned(),
            |l| format!("`{}`", l.subject),
        );
        let login = match client.login(role).await {
            Ok(l) => l,
            Err(e) => {
                let fix = match (&e, role) {
                    (ClientError::Api { status: 400, errors, .. }, Some(r))
                        if errors.iter().any(|m| m.contains("no cert auth role named")) =>
                    {
                        format!(
                            "vault_connection.role names `{r}`, which does not exist: `keep auth cert list` shows the roles; correct it, or remove it to let the server pick"
                        )
                    }
                    (ClientError::Api { status: 400, .. }, Some(r)) => format!(
                        "check role `{r}` (`keep auth cert read {r}`): its certificate (CA) and allowed_common_names / SAN constraints must match {subject}"
                    ),
                    (ClientError::Api { status: 400, .. }, None) => format!(
                        "no role matched {subject}: create one (`keep auth cert write …`) or name it in vault_connection.role"
                    ),
                    (ClientError::Api { status: 503, .. }, _) => {
                        "the server is sealed or not initialized: run `keep server init`, or restart it with its seal key".to_owned()
                    }
                    _ => "see the message".to_owned(),
                };
                return vec![
                    Check::fail(ID, TITLE, format!("login refused: {e}"), fix),
                    Check::skip("agent.vault.secrets", "secrets", "the login failed"),
                ];
            }
        };
        let auth = login.auth();
        let matched = auth
            .pointer("/metadata/cert_name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let policies: Vec<String> = auth
            .get("policies")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut out = vec![Check::ok(
            ID,
            TITLE,
            format!(
                "logged in with role `{matched}` (policies: {})",
                if policies.is_empty() {
                    "none".to_owned()
                } else {
                    policies.join(", ")
                }
            ),
        )];
        let client = client.with_token(Some(login.token));
        let mut seen = BTreeSet::new();
        let mut secrets = Vec::new();
        for (i, spec) in self.config().secrets.iter().enumerate() {
            if !seen.insert((spec.mount.clone(), spec.path.clone())) {
                continue;
            }
            secrets.push(self.read_secret(&client, i, spec, &policies).await);
        }
        out.push(Check::group("agent.vault.secrets", "secrets", secrets));
        // Leave nothing behind: the doctor's token is of no further use.
        let _ = client.token_revoke_self().await;
        out
    }

    async fn read_secret(
        &self,
        client: &VaultClient,
        i: usize,
        spec: &SecretSpec,
        policies: &[String],
    ) -> Check {
        let id = format!("agent.vault.secret.{i}");
        let api_path = format!("{}/data/{}", spec.mount, spec.path);
        let title = format!("secrets[{i}] {api_path}");
        match client.kv_read(&spec.mount, &spec.path, None).await {
            Ok(r) => {
                let version = r
                    .data()
                    .pointer("/metadata/version")
                    .and_then(Value::as_u64)
                    .map_or_else(String::new, |v| format!(" (version {v})"));
                // Only key *names* are looked at; values are dropped unread.
                let present: BTreeSet<String> = r
                    .data()
                    .get("data")
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                let mut wanted: Vec<(String, String)> = spec
                    .env
                    .iter()
                    .map(|(var, key)| (key.clone(), format!("env {var}")))
                    .collect();
                if let Some(f) = &spec.file
                    && let Format::Value { key } = &f.format
                {
                    wanted.push((key.clone(), format!("file {}", f.path.display())));
                }
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|(k, _)| !present.contains(k))
                    .map(|(k, by)| format!("`{k}` (for {by})"))
                    .collect();
                if missing.is_empty() {
                    Check::ok(&id, &title, format!("readable{version}"))
                } else {
                    Check::warn(
                        &id,
                        &title,
                        format!(
                            "readable{version}, but it has no key {}",
                            missing.join(", ")
                        ),
                        format!(
                            "add the key: keep kv patch {}/{} KEY=VALUE",
                            spec.mount, spec.path
                        ),
                    )
                }
            }
            Err(e) if e.status() == Some(403) => Check::fail(
                &id,
                &title,
                format!(
                    "policy does not allow {api_path}: the token's policies ({}) grant no read on it",
                    policies.join(", ")
                ),
                format!(
                    "add to one of those policies: path \"{api_path}\" {{ capabilities = [\"read\"] }} (or fix secrets[{i}].path)"
                ),
            ),
            Err(e) if e.is_not_found() => Check::warn(
                &id,
                &title,
                format!("no such secret yet ({api_path})"),
                format!(
                    "write it: keep kv put {}/{} KEY=VALUE",
                    spec.mount, spec.path
                ),
            ),
            Err(e) => Check::fail(&id, &title, e.to_string(), "see the message"),
        }
    }
}

/// The network checks that follow the failed step `after`, skipped with `why`.
fn skip_network(after: &str, why: &str) -> Vec<Check> {
    const STEPS: [(&str, &str); 7] = [
        ("agent.server.dns", "name resolution"),
        ("agent.server.tcp", "TCP"),
        ("agent.server.tls", "TLS"),
        ("agent.server.cert_chain", "server certificate chain"),
        ("agent.server.cert_name", "server certificate name"),
        (
            "agent.server.client_cert_requested",
            "server asks for a client certificate",
        ),
        (
            "agent.server.client_cert_accepted",
            "server accepts our certificate",
        ),
    ];
    STEPS
        .iter()
        .skip_while(|(id, _)| *id != after)
        .skip(1)
        .map(|(id, t)| Check::skip(id, t, why))
        .collect()
}

fn tls_check(probe: &probe::Probe) -> Check {
    const ID: &str = "agent.server.tls";
    const TITLE: &str = "TLS";
    match &probe.handshake {
        Handshake::Done { version, suite } => {
            Check::ok(ID, TITLE, format!("handshake done: {version}, {suite}"))
        }
        Handshake::PlainHttp { first_line } => Check::fail(
            ID,
            TITLE,
            format!(
                "the server speaks plain HTTP (it answered {first_line:?} to a TLS ClientHello)"
            ),
            "use https:// and check listener.tls: is this port keep server's listener, or a plain HTTP service?",
        ),
        // A TLS 1.2 server rejects our certificate inside the handshake: TLS itself works.
        Handshake::Alert(a) if probe.cert_request.is_some() => Check::ok(
            ID,
            TITLE,
            format!(
                "the server speaks TLS (it ended the handshake with the alert {a:?} after asking for our certificate)"
            ),
        ),
        Handshake::Alert(a) => Check::fail(
            ID,
            TITLE,
            format!("the TLS handshake failed: the server sent the alert {a:?}"),
            "check that the server speaks TLS 1.2 or 1.3 with ECDHE+AEAD suites (listener.tls.min_version, cipher_suites)",
        ),
        Handshake::Failed(e) => Check::fail(
            ID,
            TITLE,
            format!("the TLS handshake failed: {e}"),
            "check that the URL's port is keep server's TLS listener (listener.address)",
        ),
    }
}

/// Whether the certificate is valid for `host` (DNS name or IP), by webpki's rules.
fn name_matches(der: &[u8], host: &str) -> Result<(), ()> {
    let cert = CertificateDer::from(der);
    let ee = webpki::EndEntityCert::try_from(&cert).map_err(drop)?;
    let name = ServerName::try_from(host).map_err(drop)?;
    ee.verify_is_valid_for_subject_name(&name).map_err(drop)
}

/// An RFC 4514 string for a DER distinguished name (a CertificateRequest hint).
fn dn_text(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    match x509_parser::x509::X509Name::from_der(der) {
        Ok((_, name)) => keep_pki::inspect::rfc4514(&name),
        Err(_) => "(unreadable name)".to_owned(),
    }
}

/// The line of `field`'s key in the YAML, when its value is a block scalar (`cert_pem: |`), so
/// that PEM line N is YAML line `result + N`.
fn inline_line(yaml: &str, field: &str) -> Option<usize> {
    let key = format!("{}:", field.rsplit('.').next()?);
    yaml.lines().enumerate().find_map(|(i, l)| {
        let rest = l.trim_start().strip_prefix(&key)?;
        rest.trim_start().starts_with(['|', '>']).then_some(i + 1)
    })
}

/// The title of a PEM content check: `vault_connection.mtls.cert_file (PEM)`.
fn pem_title(src: &PemSource) -> String {
    format!("{} (PEM)", src.field())
}

/// `cert_file`, `key_pem` … from a dotted field.
fn short(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

fn source(src: &PemSource) -> Source {
    match src {
        PemSource::File { path, .. } => Source::File(path.clone()),
        PemSource::Inline { field, .. } => Source::Field(field.clone()),
    }
}

/// `` `field` (path) `` for messages.
fn describe(src: &PemSource) -> String {
    match src {
        PemSource::File { field, path } => format!("`{field}` ({})", path.display()),
        PemSource::Inline { field, .. } => format!("`{field}`"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn inline_lines_point_into_the_yaml() {
        let y = "vault_connection:\n  mtls:\n    cert_pem: |\n      -----BEGIN\n";
        assert_eq!(inline_line(y, "vault_connection.mtls.cert_pem"), Some(3));
        assert_eq!(inline_line("    cert_pem: 'x'\n", "a.cert_pem"), None);
    }

    #[test]
    fn the_opt_out_is_added_for_a_second_load() {
        let t = with_insecure_mode_accepted(
            "vault_connection:\n  url: https://v:1\n  mtls:\n    cert_file: a\n",
        )
        .unwrap();
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_eq!(
            v.pointer("/vault_connection/mtls/danger_allow_insecure_key_file_mode"),
            Some(&Value::Bool(true))
        );
        assert!(with_insecure_mode_accepted("- a list\n").is_none());
    }
}
