//! `keep agent` (the sidecar) and `keep agent exec` end to end against a real `keep server` on
//! 127.0.0.1: the same lab as tests/agent_once.rs (templated policy, cert auth role for
//! `agent-*`), with the agent running as a long-lived process. Every wait is bounded and every
//! process is killed by a Drop guard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keep_test_support::lab::Lab;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What this file's tests add to the shared lab.
trait LabExt {
    fn provision(&self);
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
}

/// A running `keep agent …`; killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig}");
    }

    /// Waits up to `limit` for the process to exit.
    fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "keep did not exit within {limit:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "keep exited: {}",
            self.log()
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Agent helpers on the shared lab.
trait AgentLab {
    fn spawn_agent(&self, name: &str, args: &[&str]) -> Agent;
    fn config(&self, secrets: &str) -> PathBuf;
}

impl AgentLab for Lab {
    /// Starts `keep agent ARGS…` from the lab directory, stderr to `name.log`.
    fn spawn_agent(&self, name: &str, args: &[&str]) -> Agent {
        let log = self.dir.join(format!("{name}.log"));
        // KEEP_AGENT_BIN runs the agent from another build (e.g. target/release/keep, to
        // measure its idle memory); the server is always this build's.
        let bin = std::env::var_os("KEEP_AGENT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_keep")));
        let child = Command::new(bin)
            .arg("agent")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .env("KEEP_LOG", "info")
            .spawn()
            .unwrap();
        Agent { child, log }
    }

    fn config(&self, secrets: &str) -> PathBuf {
        self.write_config(
            "agent.yaml",
            &format!(
                "vault_connection:\n  url: {}\n  mtls:\n    cert_file: client.crt\n    key_file: client.key\n    ca_cert_file: root.crt\n  role: agents\nsecrets:\n{secrets}",
                self.url()
            ),
        )
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Polls `check` every 50 ms for up to `limit`; panics with `what` and the agent's log.
fn wait_until(limit: Duration, what: &str, agent: &Agent, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const FILES: &str = "  - path: agents/agent-01/llm\n    file: { path: run/keep/llm.json, format: json }\n  - path: agents/agent-01/db\n    file: { path: run/keep/db-password, format: value, key: password }\n";
const ENV: &str = "  - path: agents/agent-01/llm\n    env: { OPENAI_API_KEY: api_key }\n";

#[test]
fn sidecar_keeps_files_current_through_a_server_outage_and_stops_on_sigterm() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let server = lab.start();
    lab.provision();
    let config = lab.config(FILES);
    let json = lab.dir.join("run/keep/llm.json");
    let db = lab.dir.join("run/keep/db-password");

    let mut agent = lab.spawn_agent(
        "sidecar",
        &["--config", config.to_str().unwrap(), "--interval", "1s"],
    );
    wait_until(Duration::from_secs(15), "files written", &agent, || {
        read(&json).contains("sk-one") && read(&db) == "pw-one"
    });
    let (json_inode, db_inode) = (inode(&json), inode(&db));

    // Idle memory, reported for the record.
    std::thread::sleep(Duration::from_secs(3));
    let status = read(Path::new(&format!("/proc/{}/status", agent.pid())));
    for rss in status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("Rss"))
    {
        eprintln!("sidecar idle {rss}");
    }
    eprintln!(
        "sidecar threads: {}",
        status
            .lines()
            .find(|l| l.starts_with("Threads"))
            .unwrap_or_default()
    );

    // A new version: the file is replaced (new inode) within a few intervals; the unchanged
    // secret's file is left alone.
    lab.put_secret(
        "agents/agent-01/llm",
        serde_json::json!({"api_key": "sk-v2", "org": "claw"}),
    );
    let changed = Instant::now();
    wait_until(
        Duration::from_secs(4),
        "changed secret picked up",
        &agent,
        || read(&json).contains("sk-v2"),
    );
    eprintln!("change picked up after {:?}", changed.elapsed());
    assert_ne!(inode(&json), json_inode);
    assert_eq!(
        inode(&db),
        db_inode,
        "an unchanged secret's file was rewritten"
    );
    let json_inode = inode(&json);

    // The server dies hard: the files stay as they were and the agent keeps running.
    drop(server);
    std::thread::sleep(Duration::from_secs(3));
    agent.assert_running();
    assert!(read(&json).contains("sk-v2"));
    assert_eq!((inode(&json), inode(&db)), (json_inode, db_inode));
    assert_eq!(read(&db), "pw-one");

    // The server comes back on the same port with the same database: the agent recovers
    // without a restart and picks up a change made meanwhile.
    let _server = lab.start();
    lab.put_secret(
        "agents/agent-01/llm",
        serde_json::json!({"api_key": "sk-v3", "org": "claw"}),
    );
    wait_until(
        Duration::from_secs(15),
        "recovery after the restart",
        &agent,
        || read(&json).contains("sk-v3"),
    );
    assert_eq!(inode(&db), db_inode);

    agent.signal("TERM");
    let status = agent.wait_for_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    let log = agent.log();
    for secret in ["sk-one", "sk-v2", "sk-v3", "pw-one"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    assert!(log.contains("could not refresh"), "{log}");
}

#[test]
fn exec_puts_mapped_secrets_in_the_environment_and_passes_the_exit_code_on() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let _server = lab.start();
    lab.provision();
    let config = lab.config(ENV);
    let mut agent = lab.spawn_agent(
        "exec",
        &[
            "exec",
            "--config",
            config.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo \"$OPENAI_API_KEY\" > out; exit 7",
        ],
    );
    let status = agent.wait_for_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(7), "{}", agent.log());
    assert_eq!(read(&lab.dir.join("out")), "sk-one-'quoted'\n");
    assert!(!agent.log().contains("sk-one"), "{}", agent.log());

    // No command: a usage error.
    let mut none = lab.spawn_agent("exec-none", &["exec", "--config", config.to_str().unwrap()]);
    let status = none.wait_for_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(64), "{}", none.log());
}

#[test]
fn exec_forwards_sigterm_and_passes_the_childs_exit_code_on() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let _server = lab.start();
    lab.provision();
    let config = lab.config(ENV);
    let mut agent = lab.spawn_agent(
        "exec-term",
        &[
            "exec",
            "--config",
            config.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "trap 'kill $!; echo got >sig; exit 3' TERM; echo up >ready; sleep 30 & wait",
        ],
    );
    let ready = lab.dir.join("ready");
    wait_until(Duration::from_secs(15), "child started", &agent, || {
        read(&ready) == "up\n"
    });
    agent.signal("TERM");
    let status = agent.wait_for_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(3), "{}", agent.log());
    assert_eq!(read(&lab.dir.join("sig")), "got\n");
}

#[test]
fn exec_restart_on_change_restarts_the_child_with_the_new_secret() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let _server = lab.start();
    lab.provision();
    let config = lab.config(ENV);
    let starts = lab.dir.join("starts");
    let mut agent = lab.spawn_agent(
        "exec-restart",
        &[
            "exec",
            "--config",
            config.to_str().unwrap(),
            "--interval",
            "1s",
            "--restart-on-change",
            "--",
            "sh",
            "-c",
            "trap 'kill $!; exit 0' TERM; echo \"$OPENAI_API_KEY\" >> starts; sleep 30 & wait",
        ],
    );
    wait_until(Duration::from_secs(15), "first start", &agent, || {
        read(&starts).lines().count() == 1
    });
    // Unchanged secrets leave the child alone.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(read(&starts).lines().count(), 1, "{}", agent.log());

    lab.put_secret(
        "agents/agent-01/llm",
        serde_json::json!({"api_key": "sk-rotated", "org": "claw"}),
    );
    wait_until(
        Duration::from_secs(8),
        "restart after the change",
        &agent,
        || read(&starts).lines().count() == 2,
    );
    assert_eq!(
        read(&starts).lines().collect::<Vec<_>>(),
        ["sk-one-'quoted'", "sk-rotated"]
    );
    agent.assert_running();
    agent.signal("TERM");
    let status = agent.wait_for_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert!(!agent.log().contains("sk-rotated"), "{}", agent.log());
}

#[test]
fn sidecar_renews_its_token_and_logs_in_again_at_the_max_ttl() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let _server = lab.start();
    lab.provision();
    // Tokens of 3 s, at most 5 s: renewal at 2 s, then a fresh login before the cap.
    let role = serde_json::json!({
        "certificate": std::fs::read_to_string(&lab.files.intermediate_cert).unwrap(),
        "allowed_common_names": "agent-*",
        "token_policies": "agents",
        "token_ttl": 3,
        "token_max_ttl": 5,
    })
    .to_string();
    let (code, text) = lab.curl("POST", "/v1/auth/cert/certs/agents", Some(&role));
    assert_eq!(code, 204, "{text}");
    let config = lab.config(FILES);
    let json = lab.dir.join("run/keep/llm.json");
    let mut agent = lab.spawn_agent(
        "sidecar-ttl",
        &["--config", config.to_str().unwrap(), "--interval", "1s"],
    );
    wait_until(Duration::from_secs(15), "files written", &agent, || {
        read(&json).contains("sk-one")
    });
    std::thread::sleep(Duration::from_secs(8));
    lab.put_secret(
        "agents/agent-01/llm",
        serde_json::json!({"api_key": "sk-late", "org": "claw"}),
    );
    wait_until(Duration::from_secs(5), "change picked up", &agent, || {
        read(&json).contains("sk-late")
    });
    agent.assert_running();
    let log = agent.log();
    assert!(log.contains("renewed the token"), "{log}");
    assert!(
        log.matches("logged in with the client certificate").count() >= 2,
        "{log}"
    );
    agent.signal("INT");
    assert_eq!(agent.wait_for_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn exec_signal_on_change_signals_the_child_instead_of_restarting_it() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let _server = lab.start();
    lab.provision();
    let config = lab.config(ENV);
    let events = lab.dir.join("events");
    let mut agent = lab.spawn_agent(
        "exec-hup",
        &[
            "exec",
            "--config",
            config.to_str().unwrap(),
            "--interval",
            "1s",
            "--signal-on-change",
            "SIGHUP",
            "--",
            "sh",
            "-c",
            "trap 'echo hup >> events' HUP; trap 'kill $!; exit 0' TERM; echo start >> events; while :; do sleep 1 & wait; done",
        ],
    );
    wait_until(Duration::from_secs(15), "start", &agent, || {
        read(&events) == "start\n"
    });
    lab.put_secret(
        "agents/agent-01/llm",
        serde_json::json!({"api_key": "sk-hup", "org": "claw"}),
    );
    wait_until(
        Duration::from_secs(8),
        "SIGHUP after the change",
        &agent,
        || read(&events) == "start\nhup\n",
    );
    agent.signal("TERM");
    assert_eq!(agent.wait_for_exit(Duration::from_secs(5)).code(), Some(0));
    assert_eq!(
        read(&events),
        "start\nhup\n",
        "restarted instead of signalled"
    );
}

#[test]
fn sidecar_logs_in_again_when_its_token_is_revoked() {
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_keep")));
    lab.init();
    let _server = lab.start();
    lab.provision();
    let config = lab.config(FILES);
    let json = lab.dir.join("run/keep/llm.json");
    let agent = lab.spawn_agent(
        "sidecar-revoked",
        &["--config", config.to_str().unwrap(), "--interval", "1s"],
    );
    wait_until(Duration::from_secs(15), "files written", &agent, || {
        read(&json).contains("sk-one")
    });
    // The accessor from the login line (the token itself is never logged).
    let log = agent.log();
    let accessor = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.pointer("/fields/accessor")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no accessor logged: {log}"));
    let body = serde_json::json!({ "accessor": accessor }).to_string();
    let (code, text) = lab.curl("POST", "/v1/auth/token/revoke-accessor", Some(&body));
    assert_eq!(code, 204, "{text}");

    lab.put_secret(
        "agents/agent-01/llm",
        serde_json::json!({"api_key": "sk-after-revoke", "org": "claw"}),
    );
    wait_until(Duration::from_secs(5), "change picked up", &agent, || {
        read(&json).contains("sk-after-revoke")
    });
    let log = agent.log();
    assert!(log.contains("logging in again"), "{log}");
    assert_eq!(
        log.matches("logged in with the client certificate").count(),
        2,
        "{log}"
    );
}
