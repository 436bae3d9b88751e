//! `keep agent`'s loopback Vault API (`proxy:`) end to end: a real `keep server` with mTLS,
//! a real `keep agent` sidecar serving plain HTTP on 127.0.0.1 and a unix socket, curl as the
//! token-only Vault client, and `keep openclaw-resolver` asking the sidecar over its socket.
//! The server is stopped half-way: remembered values keep being served, marked stale.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keep_test_support::lab::{Lab, free_port};
use serde_json::{Value, json};

const API_KEY: &str = "sk-proxy-3b9e71";
const OTHER: &str = "sk-proxy-other-55d2";

/// A running `keep agent`, killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server with an audit log, the agents policy and role, and two secrets.
fn lab() -> Lab {
    let lab = Lab::with_config(
        Path::new(env!("CARGO_BIN_EXE_keep")),
        "",
        "audit:\n  file: audit.log\n",
    );
    lab.init();
    lab
}

fn provision(lab: &Lab) {
    let policy = r#"{"policy":"path \"secret/data/agents/{{cert.common_name}}/*\" { capabilities = [\"read\"] }"}"#;
    let (code, text) = lab.curl("PUT", "/v1/sys/policies/acl/agents", Some(policy));
    assert_eq!(code, 204, "{text}");
    let role = json!({
        "certificate": std::fs::read_to_string(&lab.files.intermediate_cert).unwrap(),
        "allowed_common_names": "agent-*",
        "token_policies": "agents",
    })
    .to_string();
    let (code, text) = lab.curl("POST", "/v1/auth/cert/certs/agents", Some(&role));
    assert_eq!(code, 204, "{text}");
    lab.put_secret("agents/agent-01/llm", json!({"api_key": API_KEY}));
    lab.put_secret("agents/agent-01/other", json!({"token": OTHER}));
}

/// Starts the sidecar with `proxy:` on `port` and `socket`, and waits until both answer.
fn start_agent(lab: &Lab, port: u16, socket: &Path, token_file: &Path) -> Agent {
    let yaml = format!(
        "vault_connection:\n  url: {}\n  mtls:\n    cert_file: client.crt\n    key_file: client.key\n    ca_cert_file: root.crt\n  role: agents\npoll_interval: 1s\nsecrets:\n  - path: agents/agent-01/llm\nproxy:\n  listen: 127.0.0.1:{port}\n  socket: {}\n  token_file: {}\n",
        lab.url(),
        socket.display(),
        token_file.display()
    );
    let config = lab.write_config("agent-proxy.yaml", &yaml);
    let log = lab.dir.join("agent.log");
    let child = Command::new(&lab.bin)
        .args(["agent", "--config"])
        .arg(&config)
        .env("KEEP_LOG", "debug")
        .current_dir(&lab.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent { child, log };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(socket.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()) {
        assert!(
            Instant::now() < deadline,
            "the agent did not listen: {}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent
}

/// A plain-HTTP request with curl: (status, headers, body).
fn http(target: &Target, method: &str, path: &str, token: Option<&str>) -> (u16, String, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "-X", method]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("X-Vault-Token: {t}")]);
    }
    let url = match target {
        Target::Tcp(port) => format!("http://127.0.0.1:{port}{path}"),
        Target::Socket(p) => {
            cmd.arg("--unix-socket").arg(p);
            format!("http://keep-agent{path}")
        }
    };
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

enum Target {
    Tcp(u16),
    Socket(PathBuf),
}

/// Runs the resolver as OpenClaw does (empty environment, the request on stdin).
fn resolve(lab: &Lab, config: &Path, ids: &[String]) -> (Value, Duration) {
    let started = Instant::now();
    let mut child = Command::new(&lab.bin)
        .args(["openclaw-resolver", "--config"])
        .arg(config)
        .env_clear()
        .env("LC_CTYPE", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({"protocolVersion": 1, "provider": "keep", "ids": ids})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        started.elapsed(),
    )
}

fn logins(lab: &Lab) -> usize {
    std::fs::read_to_string(lab.dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("auth/cert/login") && l.contains("\"response\""))
        .count()
}

#[test]
fn the_loopback_api_forwards_reads_refuses_strangers_and_survives_an_outage() {
    let lab = lab();
    let mut server = lab.start();
    provision(&lab);
    let port = free_port();
    let socket = lab.dir.join("agent.sock");
    let token_file = lab.dir.join("proxy-token");
    let agent = start_agent(&lab, port, &socket, &token_file);

    // The local token: 0600, and not the server's token (the server never saw it).
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let sock_mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(sock_mode, 0o600);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.starts_with("keep-local."), "{token}");
    let tcp = Target::Tcp(port);
    let data = "/v1/secret/data/agents/agent-01/llm";

    let (status, _, body) = http(&tcp, "GET", data, None);
    assert_eq!(
        (status, body.clone()),
        (403, json!({"errors": ["permission denied"]}))
    );
    let (status, _, body) = http(&tcp, "GET", data, Some("hvs.not-the-local-token"));
    assert_eq!(status, 403);
    assert!(
        body["errors"]
            .as_array()
            .unwrap()
            .contains(&json!("invalid token")),
        "{body}"
    );

    let (status, _, body) = http(&tcp, "GET", data, Some(&token));
    assert_eq!(status, 200, "{body}\n{}", agent.log());
    assert_eq!(body["data"]["data"]["api_key"], API_KEY);
    let (status, _, body) = http(&tcp, "GET", "/v1/auth/token/lookup-self", Some(&token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["type"], "service");
    let (status, _, _) = http(&tcp, "GET", "/v1/sys/health", None);
    assert_eq!(status, 200);
    let (status, _, body) = http(
        &tcp,
        "LIST",
        "/v1/secret/metadata/agents/agent-01/",
        Some(&token),
    );
    assert_eq!(status, 403, "the policy allows data reads only: {body}");
    // Not forwarded: writes, other APIs.
    let (status, _, body) = http(&tcp, "POST", data, Some(&token));
    assert_eq!(status, 405, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("read-only"),
        "{body}"
    );
    let (status, _, _) = http(&tcp, "GET", "/v1/sys/policies/acl/agents", Some(&token));
    assert_eq!(status, 404);
    // A path the policy denies is the server's 403, relayed.
    let (status, _, _) = http(
        &tcp,
        "GET",
        "/v1/secret/data/agents/agent-02/llm",
        Some(&token),
    );
    assert_eq!(status, 403);
    // The socket needs no token.
    let (status, _, body) = http(
        &Target::Socket(socket.clone()),
        "GET",
        "/v1/secret/data/agents/agent-01/other",
        None,
    );
    assert_eq!(
        (status, body["data"]["data"]["token"].as_str()),
        (200, Some(OTHER))
    );

    // The resolver through the sidecar: no login of its own.
    let resolver_yaml = lab.write_config(
        "resolver.yaml",
        &format!(
            "vault_connection:\n  url: {}\n  mtls:\n    cert_file: client.crt\n    key_file: client.key\n    ca_cert_file: root.crt\n  role: agents\nproxy:\n  socket: {}\n",
            lab.url(),
            socket.display()
        ),
    );
    let before = logins(&lab);
    let ids = vec![
        "agents/agent-01/llm#api_key".to_owned(),
        "agents/agent-01/other#token".to_owned(),
    ];
    for _ in 0..5 {
        let (answer, _) = resolve(&lab, &resolver_yaml, &ids);
        assert_eq!(
            answer["values"]["agents/agent-01/llm#api_key"], API_KEY,
            "{answer}"
        );
        assert_eq!(
            answer["values"]["agents/agent-01/other#token"], OTHER,
            "{answer}"
        );
    }
    assert_eq!(
        logins(&lab) - before,
        0,
        "resolver runs through the sidecar logged in"
    );
    assert!(before >= 1, "the audit log counts logins: {before}");

    // The server goes away: remembered values are served, marked stale; others get a 502.
    server.kill9();
    let (status, head, body) = http(&tcp, "GET", data, Some(&token));
    assert_eq!(status, 200, "{body}\n{}", agent.log());
    assert!(head.contains("x-keep-stale: true"), "{head}");
    assert_eq!(body["data"]["data"]["api_key"], API_KEY);
    let (status, _, body) = http(
        &tcp,
        "GET",
        "/v1/secret/data/agents/agent-01/never-read",
        Some(&token),
    );
    assert_eq!(status, 502, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("cannot reach the vault"),
        "{body}"
    );

    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let (answer, took) = resolve(&lab, &resolver_yaml, &ids);
        assert_eq!(
            answer["values"]["agents/agent-01/llm#api_key"], API_KEY,
            "{answer}"
        );
        assert_eq!(
            answer["values"]["agents/agent-01/other#token"], OTHER,
            "{answer}"
        );
        slowest = slowest.max(took);
    }
    eprintln!("50 resolver runs during the outage: slowest {slowest:?}");
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");

    let log = agent.log();
    for secret in [API_KEY, OTHER, token.as_str()] {
        assert!(!log.contains(secret), "a value or token in the agent's log");
    }
}
