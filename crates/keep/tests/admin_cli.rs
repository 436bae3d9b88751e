//! The admin CLI (`keep login`, `kv`, `policy`, `auth cert`, `token`) end to end: the real
//! `keep server` binary on 127.0.0.1 with mTLS, driven by the real `keep` binary as the
//! operator (an `admins:` identity, no token) and as an agent (cert login, token file,
//! templated policy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keep_test_support::{TestPki, TestPkiFiles};
use serde_json::Value;

struct Lab {
    // Fields drop in order: stop the server before its directory goes.
    server: Server,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    files: TestPkiFiles,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Environment variables a developer's shell may carry that would change what the CLI does.
const HOST_ENV: [&str; 14] = [
    "KEEP_ADDR",
    "KEEP_CACERT",
    "KEEP_CLIENT_CERT",
    "KEEP_CLIENT_KEY",
    "KEEP_CLIENT_KEY_PASSWORD_FILE",
    "KEEP_TOKEN",
    "KEEP_TOKEN_FILE",
    "VAULT_ADDR",
    "VAULT_CACERT",
    "VAULT_CLIENT_CERT",
    "VAULT_CLIENT_KEY",
    "VAULT_TOKEN",
    "HTTPS_PROXY",
    "https_proxy",
];

/// Which certificate and key a CLI call presents.
#[derive(Clone)]
struct As {
    cert: PathBuf,
    key: PathBuf,
}

impl Lab {
    /// Writes the test PKI and a server config, initializes the storage and starts the server.
    fn start() -> Lab {
        let tmp = keep_test_support::tempdir();
        let dir = tmp.path().to_path_buf();
        let files = TestPki::new().write_to(&dir);
        let port = free_port();
        let config = dir.join("keep-server.yaml");
        std::fs::write(
            &config,
            format!(
                "listener:\n  address: 127.0.0.1:{port}\n  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    crl_file: {}\n    min_version: \"1.2\"\nstorage:\n  sqlite: {{ path: keep.db }}\nseal:\n  key_file: unseal.key\nadmins:\n  - common_name: operator\n",
                files.server_cert.display(),
                files.server_key.display(),
                files.ca_bundle.display(),
                files.crl.display(),
            ),
        )
        .unwrap();
        let init = Command::new(env!("CARGO_BIN_EXE_keep"))
            .args(["server", "init", "--config"])
            .arg(&config)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "init: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let server = Server::start(&dir, &config, port);
        Lab {
            _tmp: tmp,
            dir,
            files,
            port,
            server,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn admin(&self) -> As {
        As {
            cert: self.files.admin_cert.clone(),
            key: self.files.admin_key.clone(),
        }
    }

    fn agent(&self) -> As {
        As {
            cert: self.files.client_cert.clone(),
            key: self.files.client_key.clone(),
        }
    }

    /// A `keep` command with a clean environment (HOME in the lab, no host settings).
    fn bare(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keep"));
        for v in HOST_ENV {
            c.env_remove(v);
        }
        c.env("HOME", &self.dir).current_dir(&self.dir);
        c
    }

    /// `keep ARGS` as `who`, with the connection given as flags.
    fn cli(&self, who: &As, args: &[&str]) -> Output {
        self.cli_with(who, args, &[], None)
    }

    fn cli_with(
        &self,
        who: &As,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Output {
        let mut c = self.bare();
        c.args(args)
            .arg("--addr")
            .arg(self.url())
            .arg("--ca-cert")
            .arg(&self.files.root_cert)
            .arg("--client-cert")
            .arg(&who.cert)
            .arg("--client-key")
            .arg(&who.key);
        for (k, v) in env {
            c.env(k, v);
        }
        run(c, stdin)
    }
}

fn run(mut c: Command, stdin: Option<&[u8]>) -> Output {
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    // Bounded: a hung CLI fails the test instead of hanging it. The output is collected on
    // another thread so a chatty child never blocks on a full pipe.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("keep did not finish within 60 s: {c:?}");
        }
    }
}

struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, config: &Path, port: u16) -> Server {
        let log = dir.join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_keep"))
            .args(["server", "--config"])
            .arg(config)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Server { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("server exited with {status}: {}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not listen: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

#[track_caller]
fn json(o: &Output) -> Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[track_caller]
fn exit(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

const AGENTS_POLICY: &str = r#"
# Every agent reads and writes its own folder, nothing else.
path "secret/data/agents/{{cert.common_name}}/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/agents/{{cert.common_name}}/*" {
  capabilities = ["list", "read"]
}
"#;

#[test]
fn admin_kv_round_trip_with_json_output() {
    let lab = Lab::start();
    let admin = lab.admin();

    // put: KEY=VALUE, KEY=@FILE (one trailing newline dropped), KEY=- (stdin).
    std::fs::write(lab.dir.join("model.txt"), "gpt-5\n").unwrap();
    let put = lab.cli_with(
        &admin,
        &[
            "kv",
            "put",
            "--format",
            "json",
            "secret/openclaw/llm",
            "api_key=-",
            "model=@model.txt",
            "region=eu",
        ],
        &[],
        Some(b"sk-test-123\n"),
    );
    let put = json(&put);
    assert_eq!(put["data"]["version"], 1, "{put}");

    let got = json(&lab.cli(
        &admin,
        &["kv", "get", "secret/openclaw/llm", "--format", "json"],
    ));
    assert_eq!(got["data"]["data"]["api_key"], "sk-test-123");
    assert_eq!(got["data"]["data"]["model"], "gpt-5");
    assert_eq!(got["data"]["data"]["region"], "eu");
    assert_eq!(got["data"]["metadata"]["version"], 1);

    // --field prints the bare value (no newline when stdout is not a terminal).
    let field = ok(&lab.cli(
        &admin,
        &["kv", "get", "--field", "api_key", "secret/openclaw/llm"],
    ));
    assert_eq!(field, "sk-test-123");
    // The table shows the data.
    let table = ok(&lab.cli(&admin, &["kv", "get", "secret/openclaw/llm"]));
    assert!(
        table.contains("api_key") && table.contains("sk-test-123"),
        "{table}"
    );

    // patch merges; Vault's single-dash flags work.
    let patched = json(&lab.cli(
        &admin,
        &[
            "kv",
            "patch",
            "-format=json",
            "secret/openclaw/llm",
            "model=gpt-5-mini",
        ],
    ));
    assert_eq!(patched["data"]["version"], 2);
    let v2 = json(&lab.cli(
        &admin,
        &["kv", "get", "-format=json", "secret/openclaw/llm"],
    ));
    assert_eq!(v2["data"]["data"]["model"], "gpt-5-mini");
    assert_eq!(v2["data"]["data"]["api_key"], "sk-test-123");
    let v1 = json(&lab.cli(
        &admin,
        &[
            "kv",
            "get",
            "-version=1",
            "-format",
            "json",
            "secret/openclaw/llm",
        ],
    ));
    assert_eq!(v1["data"]["data"]["model"], "gpt-5");

    // cas: a stale version is refused with the server's message, exit 1.
    let stale = lab.cli(
        &admin,
        &["kv", "put", "--cas", "1", "secret/openclaw/llm", "a=b"],
    );
    let err = exit(&stale, 1);
    assert!(
        err.contains("check-and-set") || err.contains("cas"),
        "{err}"
    );
    assert!(err.contains("HTTP 400"), "{err}");

    // A whole JSON object from stdin.
    json(&lab.cli_with(
        &admin,
        &[
            "kv",
            "put",
            "--format",
            "json",
            "secret/openclaw/tools",
            "-",
        ],
        &[],
        Some(br#"{"github": "ghp_x", "multi": "line1\nline2\n"}"#),
    ));
    let tools = json(&lab.cli(
        &admin,
        &["kv", "get", "--format", "json", "secret/openclaw/tools"],
    ));
    assert_eq!(tools["data"]["data"]["multi"], "line1\nline2\n");

    // list, at the mount root and below.
    let keys = json(&lab.cli(
        &admin,
        &["kv", "list", "--format", "json", "secret/openclaw"],
    ));
    assert_eq!(keys, serde_json::json!(["llm", "tools"]));
    let root = json(&lab.cli(&admin, &["kv", "list", "--format", "json", "secret"]));
    assert_eq!(root, serde_json::json!(["openclaw/"]));
    let table = ok(&lab.cli(&admin, &["kv", "list", "--mount", "secret", "openclaw"]));
    assert!(table.contains("llm\ntools"), "{table}");

    // delete (latest) → get says deleted, exit 2; undelete restores; destroy erases.
    ok(&lab.cli(&admin, &["kv", "delete", "secret/openclaw/llm"]));
    let gone = lab.cli(&admin, &["kv", "get", "secret/openclaw/llm"]);
    let err = exit(&gone, 2);
    assert!(
        err.contains("Version 2") && err.contains("deleted"),
        "{err}"
    );
    ok(&lab.cli(
        &admin,
        &["kv", "undelete", "--versions", "2", "secret/openclaw/llm"],
    ));
    let back = json(&lab.cli(
        &admin,
        &["kv", "get", "--format", "json", "secret/openclaw/llm"],
    ));
    assert_eq!(back["data"]["metadata"]["version"], 2);
    ok(&lab.cli(
        &admin,
        &["kv", "destroy", "--versions", "1", "secret/openclaw/llm"],
    ));
    let destroyed = lab.cli(
        &admin,
        &["kv", "get", "--version", "1", "secret/openclaw/llm"],
    );
    assert!(exit(&destroyed, 2).contains("destroyed"));
    ok(&lab.cli(
        &admin,
        &["kv", "delete", "--versions", "2", "secret/openclaw/llm"],
    ));

    // metadata put / get / delete.
    ok(&lab.cli(
        &admin,
        &[
            "kv",
            "metadata",
            "put",
            "--max-versions",
            "5",
            "--custom-metadata",
            "owner=ops",
            "secret/openclaw/llm",
        ],
    ));
    let meta = json(&lab.cli(
        &admin,
        &[
            "kv",
            "metadata",
            "get",
            "--format",
            "json",
            "secret/openclaw/llm",
        ],
    ));
    assert_eq!(meta["data"]["max_versions"], 5);
    assert_eq!(meta["data"]["custom_metadata"]["owner"], "ops");
    assert_eq!(meta["data"]["current_version"], 2);
    assert_eq!(meta["data"]["versions"]["1"]["destroyed"], true);
    assert_ne!(meta["data"]["versions"]["2"]["deletion_time"], "");
    ok(&lab.cli(&admin, &["kv", "metadata", "delete", "secret/openclaw/llm"]));

    // Missing things: exit 2 with Vault's wording.
    let missing = lab.cli(&admin, &["kv", "get", "secret/openclaw/llm"]);
    assert!(exit(&missing, 2).contains("No value found at secret/data/openclaw/llm"));
    assert!(
        exit(
            &lab.cli(&admin, &["kv", "metadata", "get", "secret/nope"]),
            2
        )
        .contains("No value found")
    );
    exit(&lab.cli(&admin, &["kv", "list", "secret/nope"]), 2);

    // Usage mistakes: exit 64, and a value-looking argument is never echoed.
    let bad = lab.cli(&admin, &["kv", "put", "secret/x", "sk-live-oops"]);
    let err = exit(&bad, 64);
    assert!(!err.contains("sk-live-oops"), "{err}");
    exit(&lab.cli(&admin, &["kv", "get", "secret"]), 64);
    exit(&lab.cli(&admin, &["kv", "get", "secret/a/../b"]), 64);
}

#[test]
fn agent_logs_in_and_a_templated_policy_confines_it() {
    let lab = Lab::start();
    let admin = lab.admin();
    let agent = lab.agent();
    let intermediate = lab.files.intermediate_cert.to_str().unwrap().to_owned();

    // Policies: write from a file and from stdin; read, list.
    std::fs::write(lab.dir.join("agents.hcl"), AGENTS_POLICY).unwrap();
    ok(&lab.cli(&admin, &["policy", "write", "agents", "agents.hcl"]));
    ok(&lab.cli_with(
        &admin,
        &["policy", "write", "readers", "-"],
        &[],
        Some(br#"path "secret/data/shared/*" { capabilities = ["read"] }"#),
    ));
    let text = ok(&lab.cli(&admin, &["policy", "read", "agents"]));
    assert!(text.contains("{{cert.common_name}}"), "{text}");
    let names = json(&lab.cli(&admin, &["policy", "list", "--format", "json"]));
    for n in ["agents", "default", "readers"] {
        assert!(names.as_array().unwrap().iter().any(|x| x == n), "{names}");
    }
    ok(&lab.cli(&admin, &["policy", "delete", "readers"]));
    exit(&lab.cli(&admin, &["policy", "read", "readers"]), 2);
    let bad = lab.cli_with(
        &admin,
        &["policy", "write", "broken", "-"],
        &[],
        Some(b"path \"x\" {"),
    );
    assert!(exit(&bad, 1).contains("HTTP 400"));

    // A role without a name constraint is refused unless --any-name, and nothing is written.
    let loose = lab.cli(
        &admin,
        &[
            "auth",
            "cert",
            "write",
            "loose",
            "--certificate",
            &intermediate,
            "--token-policies",
            "agents",
        ],
    );
    let err = exit(&loose, 64);
    assert!(
        err.contains("without a name constraint") && err.contains("--any-name"),
        "{err}"
    );
    exit(&lab.cli(&admin, &["auth", "cert", "read", "loose"]), 2);
    let loose = lab.cli(
        &admin,
        &[
            "auth",
            "cert",
            "write",
            "loose",
            "--certificate",
            &intermediate,
            "--token-policies",
            "agents",
            "--any-name",
        ],
    );
    assert!(
        stderr(&loose).contains("WARNING") && stderr(&loose).contains("no name constraints"),
        "{}",
        stderr(&loose)
    );
    ok(&loose);
    ok(&lab.cli(&admin, &["auth", "cert", "delete", "loose"]));

    // The real role.
    ok(&lab.cli(
        &admin,
        &[
            "auth",
            "cert",
            "write",
            "agents",
            "--certificate",
            &intermediate,
            "--allowed-common-names",
            "agent-*",
            "--token-policies",
            "agents",
            "--token-ttl",
            "1h",
        ],
    ));
    // An update that leaves the name constraint alone is not refused.
    ok(&lab.cli(
        &admin,
        &["auth", "cert", "write", "agents", "--token-max-ttl", "2h"],
    ));
    let role = json(&lab.cli(
        &admin,
        &["auth", "cert", "read", "agents", "--format", "json"],
    ));
    assert_eq!(role["allowed_common_names"], serde_json::json!(["agent-*"]));
    assert_eq!(role["token_policies"], serde_json::json!(["agents"]));
    assert_eq!(role["token_ttl"], 3600);
    assert_eq!(role["token_max_ttl"], 7200);
    assert_eq!(role["pin_first_seen_address"], false);
    // keep's pin_first_seen_address round-trips (and is switched off again for the agent
    // logins below, which all come from 127.0.0.1 anyway).
    for (flag, want) in [
        ("--pin-first-seen-address", true),
        ("--pin-first-seen-address=false", false),
    ] {
        ok(&lab.cli(&admin, &["auth", "cert", "write", "agents", flag]));
        let role = json(&lab.cli(
            &admin,
            &["auth", "cert", "read", "agents", "--format", "json"],
        ));
        assert_eq!(role["pin_first_seen_address"], want, "{flag}");
    }
    let roles = json(&lab.cli(&admin, &["auth", "cert", "list", "--format", "json"]));
    assert_eq!(roles, serde_json::json!(["agents"]));

    // Secrets for agent-01 and for someone else.
    ok(&lab.cli(
        &admin,
        &["kv", "put", "secret/agents/agent-01/llm", "api_key=sk-01"],
    ));
    ok(&lab.cli(
        &admin,
        &["kv", "put", "secret/agents/agent-02/llm", "api_key=sk-02"],
    ));

    // The agent logs in; the token goes to KEEP_TOKEN_FILE (0600) and is not printed.
    let token_file = lab.dir.join("agent.token");
    let tf = token_file.to_str().unwrap().to_owned();
    let env = [("KEEP_TOKEN_FILE", tf.as_str())];
    let login = lab.cli_with(&agent, &["login", "--name", "agents"], &env, None);
    let out = ok(&login);
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(!token.is_empty());
    assert!(!out.contains(&token), "login printed the token: {out}");
    assert!(out.contains(&tf) && out.contains("token_policies"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Its own path: yes. Another agent's: the server's 403, exit 1.
    let own = json(&lab.cli_with(
        &agent,
        &[
            "kv",
            "get",
            "--format",
            "json",
            "secret/agents/agent-01/llm",
        ],
        &env,
        None,
    ));
    assert_eq!(own["data"]["data"]["api_key"], "sk-01");
    ok(&lab.cli_with(
        &agent,
        &["kv", "put", "secret/agents/agent-01/new", "k=v"],
        &env,
        None,
    ));
    let other = lab.cli_with(
        &agent,
        &["kv", "get", "secret/agents/agent-02/llm"],
        &env,
        None,
    );
    let err = exit(&other, 1);
    assert!(
        err.contains("permission denied") && err.contains("403"),
        "{err}"
    );
    assert!(!err.contains(&token));
    let list = json(&lab.cli_with(
        &agent,
        &["kv", "list", "--format", "json", "secret/agents/agent-01"],
        &env,
        None,
    ));
    assert_eq!(list, serde_json::json!(["llm", "new"]));

    // token lookup shows its policies, never the token.
    let me = lab.cli_with(&agent, &["token", "lookup", "--format", "json"], &env, None);
    let me_text = ok(&me);
    assert!(!me_text.contains(&token));
    let me: Value = serde_json::from_str(&me_text).unwrap();
    assert_eq!(me["policies"], serde_json::json!(["agents", "default"]));
    assert_eq!(me["meta"]["common_name"], "agent-01");
    assert!(me.get("id").is_none());
    let accessor = me["accessor"].as_str().unwrap().to_owned();
    let table = ok(&lab.cli_with(&agent, &["token", "lookup"], &env, None));
    assert!(
        table.contains("policies") && table.contains("[agents default]"),
        "{table}"
    );

    // The admin looks it up by accessor, and by the token itself on stdin.
    let by_acc = json(&lab.cli(
        &admin,
        &[
            "token",
            "lookup",
            "--accessor",
            &accessor,
            "--format",
            "json",
        ],
    ));
    assert_eq!(by_acc["display_name"], "cert-agents");
    let by_token = lab.cli_with(
        &admin,
        &["token", "lookup", "-", "--format", "json"],
        &[],
        Some(token.as_bytes()),
    );
    assert_eq!(json(&by_token)["accessor"], accessor.as_str());
    // A token on the command line is refused.
    exit(&lab.cli(&admin, &["token", "lookup", &token]), 64);

    // renew.
    let renewed = json(&lab.cli_with(
        &agent,
        &["token", "renew", "--increment", "30m", "--format", "json"],
        &env,
        None,
    ));
    let d = renewed["auth"]["lease_duration"].as_u64().unwrap();
    assert!((1700..=1800).contains(&d), "{renewed}");
    assert!(renewed["auth"].get("client_token").is_none());

    // Revoke: the token file goes away, and the old token no longer works.
    let out = ok(&lab.cli_with(&agent, &["token", "revoke"], &env, None));
    assert!(out.contains("Revoked"), "{out}");
    assert!(!token_file.exists());
    let after = lab.cli_with(
        &agent,
        &["kv", "get", "secret/agents/agent-01/llm"],
        &[("KEEP_TOKEN", token.trim())],
        None,
    );
    assert!(exit(&after, 1).contains("permission denied"));

    // --no-store prints the token instead; the admin revokes it by accessor.
    let printed = json(&lab.cli(&agent, &["login", "--no-store", "--format", "json"]));
    let t2 = printed["auth"]["client_token"].as_str().unwrap().to_owned();
    let a2 = printed["auth"]["accessor"].as_str().unwrap().to_owned();
    assert!(!lab.dir.join(".keep-token").exists());
    let with_t2 = [("VAULT_TOKEN", t2.as_str())];
    ok(&lab.cli_with(
        &agent,
        &["kv", "get", "secret/agents/agent-01/llm"],
        &with_t2,
        None,
    ));
    ok(&lab.cli(&admin, &["token", "revoke", "--accessor", &a2]));
    exit(
        &lab.cli_with(
            &agent,
            &["kv", "get", "secret/agents/agent-01/llm"],
            &with_t2,
            None,
        ),
        1,
    );

    // The default token file is ~/.keep-token.
    ok(&lab.cli(&agent, &["login"]));
    assert!(lab.dir.join(".keep-token").exists());
    ok(&lab.cli(&agent, &["kv", "get", "secret/agents/agent-01/llm"]));

    // Neither tokens nor values reach the server's log.
    let log = lab.server.log();
    for secret in [token.trim(), t2.as_str(), "sk-01", "sk-02"] {
        assert!(!log.contains(secret), "server log holds a secret");
    }
}

#[test]
fn encrypted_client_key_works_with_a_password_file() {
    let lab = Lab::start();
    let pw = lab.dir.join("op.pass");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let mut c = lab.bare();
    c.args([
        "certificate",
        "create",
        "operator",
        "op-enc.crt",
        "op-enc.key",
        "--profile",
        "leaf",
        "--eku",
        "client",
        "--ca",
    ])
    .arg(&lab.files.intermediate_cert)
    .arg("--ca-key")
    .arg(&lab.files.intermediate_key)
    .arg("--password-file")
    .arg(&pw);
    ok(&run(c, None));
    let key = std::fs::read_to_string(lab.dir.join("op-enc.key")).unwrap();
    assert!(key.contains("ENCRYPTED PRIVATE KEY"));
    let enc = As {
        cert: lab.dir.join("op-enc.crt"),
        key: lab.dir.join("op-enc.key"),
    };

    // With the password file (flag, then env): full admin access.
    let pwf = pw.to_str().unwrap();
    ok(&lab.cli(
        &enc,
        &[
            "kv",
            "put",
            "secret/enc/x",
            "k=v",
            "--key-password-file",
            pwf,
        ],
    ));
    let got = json(&lab.cli_with(
        &enc,
        &["kv", "get", "--format", "json", "secret/enc/x"],
        &[("KEEP_CLIENT_KEY_PASSWORD_FILE", pwf)],
        None,
    ));
    assert_eq!(got["data"]["data"]["k"], "v");

    // Without one (and no terminal to ask on), or with the wrong one: exit 64, saying why.
    let none = lab.cli(&enc, &["kv", "get", "secret/enc/x"]);
    assert!(exit(&none, 64).contains("--key-password-file"));
    let wrong = lab.dir.join("wrong.pass");
    std::fs::write(&wrong, "nope").unwrap();
    let bad = lab.cli(
        &enc,
        &[
            "kv",
            "get",
            "secret/enc/x",
            "--key-password-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert!(exit(&bad, 64).contains("decrypt"));
}

#[test]
fn vault_environment_variables_work() {
    let lab = Lab::start();
    let url = lab.url();
    let ca = lab.files.root_cert.to_str().unwrap().to_owned();
    let cert = lab.files.admin_cert.to_str().unwrap().to_owned();
    let key = lab.files.admin_key.to_str().unwrap().to_owned();
    let vault_env = |c: &mut Command| {
        c.env("VAULT_ADDR", &url)
            .env("VAULT_CACERT", &ca)
            .env("VAULT_CLIENT_CERT", &cert)
            .env("VAULT_CLIENT_KEY", &key);
    };
    let mut c = lab.bare();
    c.args(["kv", "put", "secret/env/x", "k=from-env"]);
    vault_env(&mut c);
    ok(&run(c, None));
    let mut c = lab.bare();
    c.args(["kv", "get", "-field=k", "secret/env/x"]);
    vault_env(&mut c);
    assert_eq!(ok(&run(c, None)), "from-env");

    // KEEP_* wins over VAULT_*: a wrong VAULT_ADDR is ignored when KEEP_ADDR is set.
    let mut c = lab.bare();
    c.args(["kv", "get", "-field=k", "secret/env/x"]);
    vault_env(&mut c);
    c.env("VAULT_ADDR", "https://127.0.0.1:1")
        .env("KEEP_ADDR", &url);
    assert_eq!(ok(&run(c, None)), "from-env");
}

#[test]
fn tls_and_usage_failures_say_what_to_check() {
    let lab = Lab::start();
    let f = &lab.files;

    // Rejected client certificates: with TLS 1.3 the client only sees the connection close;
    // the message says so and what to check.
    for (cert, key) in [
        (
            &f.server_auth_only_client_cert,
            &f.server_auth_only_client_key,
        ),
        (&f.revoked_client_cert, &f.revoked_client_key),
        (&f.expired_client_cert, &f.expired_client_key),
    ] {
        let who = As {
            cert: cert.clone(),
            key: key.clone(),
        };
        let o = lab.cli(&who, &["kv", "list", "secret"]);
        let err = exit(&o, 1);
        for needle in [
            "rejected the client certificate",
            "clientAuth",
            "revoked",
            "keep certificate verify",
            "--purpose client",
        ] {
            assert!(
                err.contains(needle),
                "{}: missing {needle:?} in {err}",
                cert.display()
            );
        }
    }

    // A CA that did not issue the server's certificate: the server certificate is refused.
    let mut c = lab.bare();
    c.args(["kv", "list", "secret", "--addr", &lab.url(), "--ca-cert"])
        .arg(&f.foreign_ca_cert)
        .arg("--client-cert")
        .arg(&f.admin_cert)
        .arg("--client-key")
        .arg(&f.admin_key);
    let err = exit(&run(c, None), 1);
    assert!(
        err.contains("server certificate") && err.contains("--ca-cert"),
        "{err}"
    );

    // Nothing listening: exit 1, "cannot connect".
    let mut c = lab.bare();
    c.args([
        "kv",
        "list",
        "secret",
        "--addr",
        &format!("https://127.0.0.1:{}", free_port()),
        "--ca-cert",
    ])
    .arg(&f.root_cert)
    .arg("--client-cert")
    .arg(&f.admin_cert)
    .arg("--client-key")
    .arg(&f.admin_key);
    assert!(exit(&run(c, None), 1).contains("cannot connect"));

    // Usage: no client certificate, plain http, a key that is not the certificate's.
    let mut c = lab.bare();
    c.args(["kv", "list", "secret", "--addr", &lab.url(), "--ca-cert"])
        .arg(&f.root_cert);
    assert!(exit(&run(c, None), 64).contains("--client-cert"));
    let mut c = lab.bare();
    c.args([
        "kv",
        "list",
        "secret",
        "--addr",
        &format!("http://localhost:{}", lab.port),
        "--ca-cert",
    ])
    .arg(&f.root_cert)
    .arg("--client-cert")
    .arg(&f.admin_cert)
    .arg("--client-key")
    .arg(&f.admin_key);
    assert!(exit(&run(c, None), 64).contains("https://"));
    let admin = lab.admin();
    let mismatched = As {
        cert: f.admin_cert.clone(),
        key: f.client_key.clone(),
    };
    exit(&lab.cli(&mismatched, &["kv", "list", "secret"]), 64);
    // An explicit token file that does not exist.
    exit(
        &lab.cli(
            &admin,
            &["kv", "list", "secret", "--token-file", "missing.token"],
        ),
        64,
    );

    // The server is still fine afterwards, and its log never holds our secret values.
    ok(&lab.cli(
        &admin,
        &["kv", "put", "secret/after/x", "k=sk-never-logged"],
    ));
    assert!(!lab.server.log().contains("sk-never-logged"));
}
