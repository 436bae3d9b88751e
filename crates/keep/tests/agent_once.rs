//! `keep agent --once` end to end: a real `keep server` on 127.0.0.1 with mTLS, a templated
//! policy (`secret/data/agents/{{cert.common_name}}/*`) and a cert auth role for `agent-*`;
//! the agent logs in as `agent-01`, fetches and writes its files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keep_test_support::lab::Lab;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use keep_test_support::TestPki;

/// What this file's tests add to the shared lab.
trait LabExt {
    fn provision(&self);
    fn agent(&self, config: &Path) -> Output;
}

impl LabExt for Lab {
    /// The policy, the role and agent-01's (and agent-02's) secrets.
    fn provision(&self) {
        let policy = r#"{"policy":"path \"secret/data/agents/{{cert.common_name}}/*\" { capabilities = [\"read\"] }"}"#;
        let (code, text) = self.curl("PUT", "/v1/sys/policies/acl/agents", Some(policy));
        assert_eq!(code, 204, "{text}");
        let role = serde_json::json!({
            "certificate": std::fs::read_to_string(&self.files.intermediate_cert).unwrap(),
            "allowed_common_names": "agent-*",
            "token_policies": "agents",
        })
        .to_string();
        let (code, text) = self.curl("POST", "/v1/auth/cert/certs/agents", Some(&role));
        assert_eq!(code, 204, "{text}");
        self.put_secret(
            "agents/agent-01/llm",
            serde_json::json!({"api_key": "sk-one-'quoted'", "org": "claw"}),
        );
        self.put_secret(
            "agents/agent-01/db",
            serde_json::json!({"password": "pw-one"}),
        );
        self.put_secret(
            "agents/agent-02/llm",
            serde_json::json!({"api_key": "sk-two"}),
        );
    }

    /// Runs `keep agent --once --config <file>` from the lab directory.
    fn agent(&self, config: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keep"))
            .args(["agent", "--once", "--config"])
            .arg(config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .env("KEEP_LOG", "info")
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The agent's three files from agent-01's two secrets, in json, env and value formats.
fn secrets_yaml(extra: &str) -> String {
    format!(
        "secrets:\n  - path: agents/agent-01/llm\n    file: {{ path: run/keep/llm.json, format: json, mode: \"0400\" }}\n  - path: agents/agent-01/llm\n    env: {{ OPENAI_API_KEY: api_key }}\n    file: {{ path: run/keep/llm.env, format: env, mode: \"0440\" }}\n  - path: agents/agent-01/db\n    file: {{ path: run/keep/db-password, format: value, key: password }}\n{extra}"
    )
}

fn file_config(lab: &Lab, extra: &str) -> String {
    format!(
        "vault_connection:\n  url: {}\n  mtls:\n    cert_file: client.crt\n    key_file: client.key\n    ca_cert_file: root.crt\n  role: agents\n{}",
        lab.url(),
        secrets_yaml(extra)
    )
}

#[test]
fn once_writes_files_replaces_them_atomically_and_a_denied_path_changes_nothing() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let server = lab.start();
    lab.provision();
    let run = lab.dir.join("run/keep");
    let (json, env, value) = (
        run.join("llm.json"),
        run.join("llm.env"),
        run.join("db-password"),
    );

    let config = lab.write_config("agent.yaml", &file_config(&lab, ""));
    let out = lab.agent(&config);
    assert!(
        out.status.success(),
        "{}\nserver: {}",
        text(&out),
        server.log()
    );
    let got: serde_json::Value = serde_json::from_str(&read(&json)).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"api_key": "sk-one-'quoted'", "org": "claw"})
    );
    assert_eq!(read(&env), "OPENAI_API_KEY='sk-one-'\\''quoted'\\'''\n");
    assert_eq!(read(&value), "pw-one");
    assert_eq!(
        (mode(&json), mode(&env), mode(&value), mode(&run)),
        (0o400, 0o440, 0o400, 0o700)
    );
    let all = text(&out);
    assert!(!all.contains("sk-one") && !all.contains("pw-one"), "{all}");
    // The lab's directory is on disk, not tmpfs: the agent says so.
    assert!(all.contains("not tmpfs/ramfs"), "{all}");

    // A changed secret: the next run replaces the file (a new inode, not an in-place write).
    let inode = std::fs::metadata(&json).unwrap().ino();
    lab.put_secret(
        "agents/agent-01/llm",
        serde_json::json!({"api_key": "sk-two-v2", "org": "claw"}),
    );
    let out = lab.agent(&config);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(std::fs::metadata(&json).unwrap().ino(), inode);
    assert!(read(&json).contains("sk-two-v2"));
    assert_eq!(mode(&json), 0o400);
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".keep"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Another agent's path is denied: non-zero, and nothing is rewritten, not even the files
    // whose secrets were fetched fine (and changed) before the denied one.
    lab.put_secret(
        "agents/agent-01/llm",
        serde_json::json!({"api_key": "sk-three-v3", "org": "claw"}),
    );
    let before: Vec<(u64, String)> = [&json, &env, &value]
        .iter()
        .map(|p| (std::fs::metadata(p).unwrap().ino(), read(p)))
        .collect();
    let denied = lab.write_config(
        "denied.yaml",
        &file_config(
            &lab,
            "  - path: agents/agent-02/llm\n    file: { path: run/keep/other.json }\n",
        ),
    );
    let out = lab.agent(&denied);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret/data/agents/agent-02/llm"), "{err}");
    assert!(!err.contains("sk-"), "{err}");
    let after: Vec<(u64, String)> = [&json, &env, &value]
        .iter()
        .map(|p| (std::fs::metadata(p).unwrap().ino(), read(p)))
        .collect();
    assert_eq!(before, after);
    assert!(!run.join("other.json").exists());
}

#[test]
fn inline_pem_with_the_threads_damage_works_end_to_end() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let server = lab.start();
    lab.provision();
    // cert_pem: a trailing space on every line; key_pem: body lines indented further than the
    // BEGIN line (an auto-indenting editor); ca_cert_pem: no final newline (`|-`).
    let cert: String = lab
        .pki
        .client
        .chain_pem
        .lines()
        .map(|l| format!("      {l} \n"))
        .collect();
    let key: String = lab
        .pki
        .client
        .key_pem
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("      {l}\n")
            } else {
                format!("        {l}\n")
            }
        })
        .collect();
    let ca: String = lab
        .pki
        .root
        .cert_pem
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let yaml = format!(
        "vault_connection:\n  url: {}\n  mtls:\n    cert_pem: |\n{cert}    key_pem: |\n{key}    ca_cert_pem: |-\n{ca}  role: agents\n{}",
        lab.url(),
        secrets_yaml("")
    );
    let config = lab.write_config("inline.yaml", &yaml);
    let out = lab.agent(&config);
    assert!(
        out.status.success(),
        "{}\nserver: {}",
        text(&out),
        server.log()
    );
    assert_eq!(read(&lab.dir.join("run/keep/db-password")), "pw-one");
    // Same config with CRLF line endings (edited on Windows).
    std::fs::remove_dir_all(lab.dir.join("run")).unwrap();
    let config = lab.write_config("inline-crlf.yaml", &yaml.replace('\n', "\r\n"));
    let out = lab.agent(&config);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read(&lab.dir.join("run/keep/db-password")), "pw-one");
}

#[test]
fn a_key_file_readable_by_others_is_refused_with_the_fix() {
    // Refused while loading the config, before any connection: no server needed.
    let tmp = keep_test_support::tempdir();
    let dir = tmp.path();
    let files = TestPki::new().write_to(dir);
    std::fs::set_permissions(&files.client_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "vault_connection:\n  url: https://127.0.0.1:1\n  mtls:\n    cert_file: client.crt\n    key_file: client.key\n    ca_cert_file: root.crt\n{}",
            secrets_yaml("")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(["agent", "--once", "--config"])
        .arg(&config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in ["vault_connection.mtls.key_file", "mode 0644", "chmod 600"] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert!(!dir.join("run").exists());
}
