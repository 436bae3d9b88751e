//! `keep doctor` end to end: the real binary against real `keep server`s on 127.0.0.1 (and a
//! closed port, and a plain-HTTP listener), one broken setup per row, each asserting the
//! `[fail]` (or `[warn]`) line that names the cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use keep_test_support::lab::{Lab, free_port};

/// `keep doctor ARGS`: (exit code, stdout, stderr). `KEEP_TEST_SHOW=1` prints every report.
fn doctor(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keep"))
        .arg("doctor")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if std::env::var_os("KEEP_TEST_SHOW").is_some() {
        eprintln!(
            "=== keep doctor {args:?}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line with `marker` (`[fail]`, `[warn]`) that contains every needle.
fn line_with<'a>(out: &'a str, marker: &str, needles: &[&str]) -> Option<&'a str> {
    out.lines()
        .find(|l| l.trim_start().starts_with(marker) && needles.iter().all(|n| l.contains(n)))
}

/// The ids of the checks that failed, from `--format json`.
fn failing(dir: &Path, args: &[&str]) -> BTreeSet<String> {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let (_, out, err) = doctor(dir, &all);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    fn walk(v: &serde_json::Value, into: &mut BTreeSet<String>) {
        for c in v.as_array().into_iter().flatten() {
            let children = &c["children"];
            if children.as_array().is_none_or(Vec::is_empty) && c["status"] == "fail" {
                into.insert(c["id"].as_str().unwrap_or_default().to_owned());
            }
            walk(children, into);
        }
    }
    let mut ids = BTreeSet::new();
    walk(&v, &mut ids);
    ids
}

/// The agent's policy (its own folder, read-only), its role, and agent-01's secret.
fn provision(lab: &Lab) {
    let policy = r#"{"policy":"path \"secret/data/agents/{{cert.common_name}}/*\" { capabilities = [\"read\"] }"}"#;
    let (code, text) = lab.curl("PUT", "/v1/sys/policies/acl/agents", Some(policy));
    assert_eq!(code, 204, "{text}");
    let role = serde_json::json!({
        "certificate": std::fs::read_to_string(&lab.files.intermediate_cert).unwrap(),
        "allowed_common_names": "agent-*",
        "token_policies": "agents",
    })
    .to_string();
    let (code, text) = lab.curl("POST", "/v1/auth/cert/certs/agents", Some(&role));
    assert_eq!(code, 204, "{text}");
    lab.put_secret(
        "agents/agent-01/llm",
        serde_json::json!({"api_key": "sk-doctor-never-shown"}),
    );
}

/// An agent config: `mtls` lines (indented 4), the URL and the secret path.
fn agent_yaml(url: &str, mtls: &str, secret: &str) -> String {
    format!(
        "vault_connection:\n  url: {url}\n  mtls:\n{mtls}  role: agents\nsecrets:\n  - path: {secret}\n    env: {{ OPENAI_API_KEY: api_key }}\n"
    )
}

fn files(cert: &str, key: &str, ca: &str) -> String {
    format!("    cert_file: {cert}\n    key_file: {key}\n    ca_cert_file: {ca}\n")
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// A listener on 127.0.0.1 that answers anything with `HTTP/1.1 400` (a plain HTTP service
/// where the vault was expected).
fn plain_http_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    port
}

/// (name, config, exit code, marker, needles on that line, more text somewhere, the checks
/// that fail)
type AgentCase<'a> = (
    &'a str,
    String,
    i32,
    &'a str,
    Vec<String>,
    Vec<&'a str>,
    &'a [&'a str],
);

/// (name, config, marker, needles on one line, the checks that fail)
type ServerCase<'a> = (&'a str, String, &'a str, Vec<&'a str>, &'a [&'a str]);

#[test]
fn agent_side_each_broken_setup_fails_naming_its_cause() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let server = lab.start();
    provision(&lab);
    let url = lab.url();
    let secret = "agents/agent-01/llm";
    let good = files("client.crt", "client.key", "root.crt");

    // A healthy setup: everything ok, exit 0, and no secret value anywhere.
    let config = lab.write_config("healthy.yaml", &agent_yaml(&url, &good, secret));
    let (code, out, err) = doctor(&lab.dir, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}\nserver: {}", server.log());
    assert!(
        !out.contains("[fail]") && !out.contains("[warn]") && !out.contains("[skip]"),
        "{out}"
    );
    for want in [
        "logged in with role `agents`",
        "our issuer `CN=Keep Test Intermediate CA",
        "readable (version 1)",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    assert!(!out.contains("sk-doctor") && !err.contains("sk-doctor"));

    // The same as JSON: an array of nested checks.
    let (code, out, _) = doctor(
        &lab.dir,
        &["--config", config.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["id"], "agent");
    assert_eq!(v[0]["status"], "ok");
    let server_group = v[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "agent.server")
        .unwrap();
    let accepted = server_group["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "agent.server.client_cert_accepted")
        .unwrap();
    assert_eq!(accepted["status"], "ok");
    assert_eq!(accepted["fix"], serde_json::Value::Null);

    // Extra files for the broken setups.
    let open_key = lab.dir.join("client-open.key");
    std::fs::copy(&lab.files.client_key, &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let closed = free_port();
    let http = plain_http_server();
    let chain = &lab.pki.client.chain_pem;
    let trailing: String = chain.lines().map(|l| format!("{l} \n")).collect();
    let key_pem = &lab.pki.client.key_pem;
    let badly_indented: String = key_pem
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                format!("  {l}\n")
            }
        })
        .collect();
    let inline = format!(
        "    cert_pem: |\n{}    key_pem: |\n{}    ca_cert_file: root.crt\n",
        indent(&trailing, "      "),
        indent(&badly_indented, "      ")
    );

    let cases: Vec<AgentCase> = vec![
        (
            "mis-copied CA path",
            agent_yaml(
                &url,
                &files("client.crt", "client.key", "root_ca.crt"),
                secret,
            ),
            1,
            "[fail]",
            vec![
                "vault_connection.mtls.ca_cert_file".into(),
                "root_ca.crt does not exist".into(),
            ],
            vec!["did you mean", "root.crt?"],
            &["agent.files.ca_cert_file"],
        ),
        (
            "the CA file is a different CA",
            agent_yaml(
                &url,
                &files("client.crt", "client.key", "foreign-ca.crt"),
                secret,
            ),
            1,
            "[fail]",
            vec![
                "the CA file is a different CA".into(),
                "Keep Test Root CA".into(),
                "Foreign Test Root CA".into(),
            ],
            vec!["does not chain to ca_cert_file"],
            &["agent.cert.chain", "agent.server.cert_chain"],
        ),
        (
            "key does not match the certificate",
            agent_yaml(&url, &files("client.crt", "admin.key", "root.crt"), secret),
            1,
            "[fail]",
            vec![
                "admin.key".into(),
                "does not belong to the certificate".into(),
            ],
            vec![],
            &["agent.cert.key_matches"],
        ),
        (
            "no clientAuth",
            agent_yaml(
                &url,
                &files(
                    "server-auth-only-client.crt",
                    "server-auth-only-client.key",
                    "root.crt",
                ),
                secret,
            ),
            1,
            "[fail]",
            vec![
                "no clientAuth extended key usage".into(),
                "serverAuth".into(),
            ],
            // And the server's verdict on it.
            vec!["rejected our client certificate with the TLS alert"],
            &[
                "agent.cert.client_auth",
                "agent.server.client_cert_accepted",
            ],
        ),
        (
            "expired client certificate",
            agent_yaml(
                &url,
                &files("expired-client.crt", "expired-client.key", "root.crt"),
                secret,
            ),
            1,
            "[fail]",
            vec!["validity".into(), "expired at".into()],
            vec!["CertificateExpired"],
            &["agent.cert.validity", "agent.server.client_cert_accepted"],
        ),
        (
            "inline PEM with trailing spaces and bad indentation",
            agent_yaml(&url, &inline, secret),
            0,
            "[warn]",
            vec![
                "fixed: `vault_connection.mtls.cert_pem` has trailing spaces".into(),
                "inline.yaml".into(),
            ],
            vec!["fixed: `vault_connection.mtls.key_pem` has extra indentation"],
            &[],
        ),
        (
            "key file mode 0644",
            agent_yaml(
                &url,
                &files("client.crt", "client-open.key", "root.crt"),
                secret,
            ),
            1,
            "[fail]",
            vec!["client-open.key has mode 0644".into()],
            // The rest is still diagnosed.
            vec!["fix: chmod 600 ", "logged in with role `agents`"],
            &["agent.files.key_mode"],
        ),
        (
            "no client certificate configured",
            agent_yaml(&url, "    ca_cert_file: root.crt\n", secret),
            1,
            "[fail]",
            vec!["no client certificate configured".into()],
            vec!["fix: add cert_file"],
            &["agent.config"],
        ),
        (
            "login refused: no such role",
            agent_yaml(&url, &good, secret).replace("role: agents", "role: ghosts"),
            1,
            "[fail]",
            vec![
                "cert auth login".into(),
                "login refused".into(),
                "no cert auth role named \"ghosts\"".into(),
            ],
            vec![
                "fix: vault_connection.role names `ghosts`, which does not exist",
                "[skip] secrets: the login failed",
            ],
            &["agent.vault.login"],
        ),
        (
            "policy does not allow a configured path",
            agent_yaml(&url, &good, "agents/agent-02/llm"),
            1,
            "[fail]",
            vec!["policy does not allow secret/data/agents/agent-02/llm".into()],
            vec!["capabilities = [\"read\"]"],
            &["agent.vault.secret.0"],
        ),
        (
            "server unreachable",
            agent_yaml(&format!("https://127.0.0.1:{closed}"), &good, secret),
            1,
            "[fail]",
            vec![
                "server unreachable".into(),
                format!("127.0.0.1:{closed}"),
                "connection refused".into(),
            ],
            vec!["[skip] cert auth login"],
            &["agent.server.tcp"],
        ),
        (
            "server speaks plain HTTP",
            agent_yaml(&format!("https://127.0.0.1:{http}"), &good, secret),
            1,
            "[fail]",
            vec!["the server speaks plain HTTP".into()],
            vec!["fix: use https:// and check listener.tls"],
            &["agent.server.tls"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, yaml, want_code, marker, needles, more, want_failing) in cases {
        let file = format!("{}.yaml", name.split(' ').next().unwrap_or("x"));
        let file = if name.starts_with("inline") {
            "inline.yaml".to_owned()
        } else {
            file
        };
        let config = lab.write_config(&file, &yaml);
        let (code, out, err) = doctor(&lab.dir, &["--config", config.to_str().unwrap()]);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let failed = failing(&lab.dir, &["--config", config.to_str().unwrap()]);
        let want_failing: BTreeSet<String> = want_failing.iter().map(|s| s.to_string()).collect();
        let ok = code == want_code
            && failed == want_failing
            && line_with(&out, marker, &needles).is_some()
            && more.iter().all(|m| out.contains(m))
            && !out.contains("BEGIN") // never any PEM, let alone a key
            && !out.contains("sk-doctor");
        if !ok {
            failures.push(format!(
                "--- {name}: exit {code} (want {want_code}), failed {failed:?} (want {want_failing:?}), want {marker} {needles:?} and {more:?}\n{out}{err}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn agent_side_server_name_not_in_the_certificate() {
    // A server whose certificate is only for wrong.claw.internal, reached as localhost.
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    let text = std::fs::read_to_string(&lab.config)
        .unwrap()
        .replace("server.crt", "wrong-san-server.crt")
        .replace("server.key", "wrong-san-server.key");
    std::fs::write(&lab.config, text).unwrap();
    lab.init();
    let _server = lab.start();
    let config = lab.write_config(
        "agent.yaml",
        &agent_yaml(
            &lab.url(),
            &files("client.crt", "client.key", "root.crt"),
            "agents/agent-01/llm",
        ),
    );
    let (code, out, _) = doctor(&lab.dir, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        line_with(
            &out,
            "[fail]",
            &["not valid for localhost", "DNS:wrong.claw.internal"]
        )
        .is_some(),
        "{out}"
    );
    // The chain itself is fine; the login is skipped because the name is wrong.
    assert!(
        line_with(&out, "[ok]", &["server certificate chain"]).is_some(),
        "{out}"
    );
    assert!(
        line_with(&out, "[skip]", &["cert auth login", "not trusted"]).is_some(),
        "{out}"
    );
}

/// A server host's directory: only what a server should hold (its cert and key, the client CA
/// bundle, the CRL, plus an unrelated key for the mismatch row), and its own initialized
/// storage.
fn server_host(lab: &Lab) -> std::path::PathBuf {
    let host = lab.dir.join("host");
    std::fs::create_dir(&host).unwrap();
    for f in [
        &lab.files.server_cert,
        &lab.files.server_key,
        &lab.files.admin_key,
        &lab.files.client_cert,
        &lab.files.ca_bundle,
        &lab.files.crl,
    ] {
        let to = host.join(f.file_name().unwrap());
        std::fs::copy(f, &to).unwrap();
        if to.extension().is_some_and(|e| e == "key") {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    host
}

/// The host's config: `tls_extra` lines under `listener.tls`, `tail` after everything.
fn server_yaml(storage: &str, seal: &str, tls_extra: &str, tail: &str) -> String {
    format!(
        "listener:\n  address: 127.0.0.1:{}\n  tls:\n    cert_file: server.crt\n    key_file: server.key\n    client_ca_file: ca-bundle.crt\n    crl_file: crl.pem\n    min_version: \"1.2\"\n{tls_extra}storage:\n  sqlite: {{ path: {storage} }}\nseal:\n  key_file: {seal}\n{tail}",
        free_port()
    )
}

#[test]
fn server_side_each_broken_setup_fails_naming_its_cause() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let server = lab.start();
    // On the lab's (running) server: a role without name constraints, and an agent role whose
    // policy may also write and delete secrets.
    let role = serde_json::json!({
        "certificate": std::fs::read_to_string(&lab.files.intermediate_cert).unwrap(),
        "token_policies": "readers",
    })
    .to_string();
    let (code, text) = lab.curl("POST", "/v1/auth/cert/certs/anyone", Some(&role));
    assert!(code == 200 || code == 204, "{text}");
    let policy = r#"{"policy":"path \"secret/data/agents/*\" { capabilities = [\"read\", \"update\", \"delete\"] }"}"#;
    let (code, text) = lab.curl("PUT", "/v1/sys/policies/acl/writers", Some(policy));
    assert_eq!(code, 204, "{text}");
    let policy = r#"{"policy":"path \"secret/data/agents/*\" { capabilities = [\"read\"] }"}"#;
    let (code, text) = lab.curl("PUT", "/v1/sys/policies/acl/readers", Some(policy));
    assert_eq!(code, 204, "{text}");
    let role = serde_json::json!({
        "certificate": std::fs::read_to_string(&lab.files.intermediate_cert).unwrap(),
        "allowed_common_names": "agent-*",
        "token_policies": "writers",
    })
    .to_string();
    let (code, text) = lab.curl("POST", "/v1/auth/cert/certs/writers", Some(&role));
    assert_eq!(code, 204, "{text}");

    let host = server_host(&lab);
    let healthy = server_yaml("keep.db", "unseal.key", "", "audit: { file: audit.log }\n");
    let config = host.join("keep-server.yaml");
    std::fs::write(&config, &healthy).unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(["server", "init", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let lab_storage = server_yaml(
        &lab.dir.join("keep.db").display().to_string(),
        &lab.dir.join("unseal.key").display().to_string(),
        "",
        "audit: { file: audit.log }\n",
    );

    let cases: Vec<ServerCase> = vec![
        (
            "healthy",
            healthy.clone(),
            "[ok]",
            vec!["root CA key", "no root CA key in"],
            &[],
        ),
        (
            "cert/key mismatch",
            healthy.replace("key_file: server.key", "key_file: admin.key"),
            "[fail]",
            vec!["listener.tls.key_file", "admin.key", "does not belong"],
            &["server.listener.key_matches"],
        ),
        (
            "a leaf in the client CA file",
            healthy.replace(
                "client_ca_file: ca-bundle.crt",
                "client_ca_file: client.crt",
            ),
            "[fail]",
            vec!["client_ca_file", "`CN=agent-01`", "is not a CA certificate"],
            &["server.listener.client_ca"],
        ),
        (
            "min_version 1.0",
            healthy.replace("min_version: \"1.2\"", "min_version: \"1.0\""),
            "[fail]",
            vec!["listener.tls.min_version", "\"1.0\"", "TLS 1.0/1.1"],
            &["server.config", "server.listener.min_version"],
        ),
        (
            "CBC suite",
            server_yaml(
                "keep.db",
                "unseal.key",
                "    cipher_suites: [TLS13_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA]\n",
                "audit: { file: audit.log }\n",
            ),
            "[fail]",
            vec![
                "listener.tls.cipher_suites",
                "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
                "CBC",
            ],
            &["server.listener.cipher_suites"],
        ),
        (
            "audit path not writable",
            healthy.replace("file: audit.log", "file: /etc/passwd/x.log"),
            "[fail]",
            vec!["audit.file", "/etc/passwd/x.log", "not a directory"],
            &["server.storage.audit"],
        ),
        (
            "role without name constraints",
            lab_storage.clone(),
            "[fail]",
            vec!["role `anyone` has no name constraints"],
            &["server.roles.anyone.names"],
        ),
        (
            "agent policy writes secrets",
            lab_storage,
            "[warn]",
            vec!["policy `writers`", "agent role `writers`", "update, delete"],
            &["server.roles.anyone.names"],
        ),
        (
            "pki issuer healthy",
            healthy.clone()
                + &format!(
                    "pki:\n  issuer_cert_file: {}\n  issuer_key_file: {}\n",
                    lab.files.intermediate_cert.display(),
                    lab.files.intermediate_key.display()
                ),
            "[ok]",
            vec!["issued certificates are trusted by the listener"],
            &[],
        ),
        (
            "pki issuer key is not the issuer's",
            healthy.clone()
                + &format!(
                    "pki:\n  issuer_cert_file: {}\n  issuer_key_file: {}\n",
                    lab.files.intermediate_cert.display(),
                    lab.files.server_key.display()
                ),
            "[fail]",
            vec!["pki issuer", "pki.issuer_key_file"],
            &["server.pki.issuer"],
        ),
        // Last: it leaves the root key in the host directory.
        (
            "root key next to the config",
            healthy.clone(),
            "[fail]",
            vec!["root CA key found at", "root_ca.key", "Keep Test Root CA"],
            &["server.root_ca_key.found"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (name, yaml, marker, needles, want_failing)) in cases.into_iter().enumerate() {
        if name.starts_with("root key") {
            let key = host.join("root_ca.key");
            std::fs::copy(&lab.files.root_key, &key).unwrap();
        }
        let config = host.join(format!("server-{i}.yaml"));
        std::fs::write(&config, &yaml).unwrap();
        let args = ["--server", config.to_str().unwrap()];
        let (code, out, err) = doctor(&host, &args);
        let failed = failing(&host, &args);
        let want_failing: BTreeSet<String> = want_failing.iter().map(|s| s.to_string()).collect();
        let want_code = if want_failing.is_empty() { 0 } else { 1 };
        let ok = code == want_code
            && failed == want_failing
            && line_with(&out, marker, &needles).is_some()
            && !out.contains("BEGIN");
        if !ok {
            failures.push(format!(
                "--- {name}: exit {code}, failed {failed:?} (want {want_failing:?}), want {marker} {needles:?}\n{out}{err}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nserver: {}",
        failures.join("\n"),
        server.log()
    );

    // JSON: the top-level groups, in order.
    let (_, json, _) = doctor(
        &host,
        &[
            "--server",
            host.join("server-0.yaml").to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["id"], "server");
    let ids: Vec<&str> = v[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "server.config",
            "server.listener",
            "server.root_ca_key",
            "server.storage",
            "server.pki",
            "server.roles"
        ]
    );
}

#[test]
fn server_side_roles_need_an_offline_unseal_or_are_skipped_with_the_reason() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    let host = server_host(&lab);
    let pass = host.join("unseal.pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let with_file = server_yaml("keep.db", "x", "", "audit: { file: audit.log }\n")
        .replace("  key_file: x\n", "  passphrase_file: unseal.pass\n");
    let prompt = with_file.replace(
        "  passphrase_file: unseal.pass\n",
        "  passphrase_prompt: true\n",
    );
    let (a, b) = (host.join("file.yaml"), host.join("prompt.yaml"));
    std::fs::write(&a, &with_file).unwrap();
    std::fs::write(&b, &prompt).unwrap();

    // Before init: a warning, and nothing to read yet.
    let (code, out, _) = doctor(&host, &["--server", a.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        line_with(&out, "[warn]", &["storage.sqlite.path", "not initialized"]).is_some(),
        "{out}"
    );
    assert!(
        line_with(
            &out,
            "[skip]",
            &["storage unsealed read-only", "does not exist yet"]
        )
        .is_some(),
        "{out}"
    );

    let init = Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(["server", "init", "--config"])
        .arg(&a)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    // A passphrase file unseals offline; a prompt cannot.
    let (code, out, _) = doctor(&host, &["--server", a.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        line_with(
            &out,
            "[ok]",
            &["storage unsealed read-only", "0 cert auth roles"]
        )
        .is_some(),
        "{out}"
    );
    let (code, out, _) = doctor(&host, &["--server", b.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        line_with(
            &out,
            "[skip]",
            &["storage unsealed read-only", "passphrase is typed at start"]
        )
        .is_some(),
        "{out}"
    );
}

#[test]
fn usage_errors_exit_64() {
    let dir = std::env::temp_dir();
    assert_eq!(doctor(&dir, &[]).0, 64);
    assert_eq!(
        doctor(&dir, &["--config", "x.yaml", "--format", "xml"]).0,
        64
    );
    assert_eq!(
        doctor(&dir, &["--config", "x.yaml", "--timeout", "soon"]).0,
        64
    );
    // A config that does not exist is a diagnosis, not a usage error.
    let (code, out, _) = doctor(&dir, &["--config", "/nonexistent/agent.yaml"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        line_with(
            &out,
            "[fail]",
            &["config", "/nonexistent/agent.yaml does not exist"]
        )
        .is_some(),
        "{out}"
    );
}
