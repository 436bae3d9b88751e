//! The agent renews its own client certificate over mTLS (issue 6, item 3), end to end: a real
//! `keep server` with the PKI mount on 127.0.0.1 issues the agent a 60-second certificate;
//! `keep agent` runs as a sidecar and must renew it (new key, new serial, written to its
//! cert_file/key_file) while a reader loop keeps reading the secret file it maintains and a
//! writer keeps changing the secret: no read may fail and every change must arrive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keep_test_support::lab::Lab;

/// A running `keep agent`; killed on drop.
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

fn lab_with_pki() -> Lab {
    Lab::with_pki(Path::new(env!("CARGO_BIN_EXE_keep")))
}

/// PKI role, cert auth role, policy and the first secret version; issues the agent's first
/// certificate (`ttl`) into `agent/agent.crt` + `agent/agent.key` and returns its serial.
fn provision(lab: &Lab, ttl: &str) -> String {
    let (code, text) = lab.curl(
        "POST",
        "/v1/pki/roles/agents",
        Some(&format!(
            r#"{{"allow_any_name": true, "client_flag": true, "server_flag": false, "ttl": "{ttl}", "max_ttl": "{ttl}"}}"#
        )),
    );
    assert!(code == 200 || code == 204, "pki role: {code} {text}");
    let policy = r#"{"policy":"path \"secret/data/agents/{{cert.common_name}}/*\" { capabilities = [\"read\"] }"}"#;
    let (code, text) = lab.curl("PUT", "/v1/sys/policies/acl/agents", Some(policy));
    assert_eq!(code, 204, "{text}");
    let role = serde_json::json!({
        "certificate": std::fs::read_to_string(&lab.files.intermediate_cert).unwrap(),
        "allowed_common_names": "agent-*",
        "token_policies": "agents",
        "token_ttl": "1h",
    })
    .to_string();
    let (code, text) = lab.curl("POST", "/v1/auth/cert/certs/agents", Some(&role));
    assert_eq!(code, 204, "{text}");
    lab.put_secret("agents/agent-01/llm", serde_json::json!({"api_key": "v0"}));

    let (code, text) = lab.curl(
        "POST",
        "/v1/pki/issue/agents",
        Some(&format!(r#"{{"common_name": "agent-01", "ttl": "{ttl}"}}"#)),
    );
    assert_eq!(code, 200, "pki/issue: {text}");
    let issued: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = &issued["data"];
    let dir = lab.dir.join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let mut chain = data["certificate"].as_str().unwrap().to_owned();
    chain.push_str(data["issuing_ca"].as_str().unwrap());
    std::fs::write(dir.join("agent.crt"), chain).unwrap();
    write_0600(
        &dir.join("agent.key"),
        data["private_key"].as_str().unwrap(),
    );
    data["serial_number"].as_str().unwrap().to_owned()
}

fn write_0600(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn spawn_agent(lab: &Lab, renew: &str) -> Agent {
    let config = lab.write_config(
        "agent.yaml",
        &format!(
            "vault_connection:\n  url: {}\n  mtls:\n    cert_file: agent/agent.crt\n    key_file: agent/agent.key\n    ca_cert_file: {}\n  role: agents\npoll_interval: 1s\nsecrets:\n  - path: agents/agent-01/llm\n    file: {{ path: run/llm.json, format: json }}\n{renew}",
            lab.url(),
            lab.files.root_cert.display()
        ),
    );
    let log = lab.dir.join("agent.log");
    let child = Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(["agent", "--config"])
        .arg(&config)
        .current_dir(&lab.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .env("KEEP_LOG", "info")
        .spawn()
        .unwrap();
    Agent { child, log }
}

/// Serial of the leaf in `path` (colon hex, as the server reports it).
fn serial_of(path: &Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let blocks =
        keep_pki::pem::read_certificates(&text, &keep_pki::Source::File(path.into())).ok()?;
    let info = keep_pki::inspect::inspect(&blocks.first()?.der).ok()?;
    Some(info.serial)
}

#[test]
fn a_sidecar_with_a_60_second_certificate_renews_it_repeatedly_without_a_failed_read() {
    let lab = lab_with_pki();
    lab.init();
    let server = lab.start();
    let first_serial = provision(&lab, "60s");
    let agent = spawn_agent(&lab, "renew:\n  at: 66%\n  jitter: 5%\n");
    let sink = lab.dir.join("run/llm.json");
    let cert = lab.dir.join("agent/agent.crt");
    let key = lab.dir.join("agent/agent.key");

    let start = Instant::now();
    while !sink.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no secret file: {}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Three minutes: the writer changes the secret every 2 s, the reader reads the file every
    // 100 ms; the certificate (60 s) must be renewed at least twice along the way.
    let run_for = Duration::from_secs(180);
    let mut serials = BTreeSet::from([first_serial.clone()]);
    let mut keys = BTreeSet::from([std::fs::read(&key).unwrap()]);
    let mut written = 0u32;
    let mut last_write = Instant::now();
    let mut failed_reads = Vec::new();
    let mut reads = 0u32;
    let mut newest_seen = 0u32;
    while start.elapsed() < run_for {
        if last_write.elapsed() >= Duration::from_secs(2) {
            written += 1;
            lab.put_secret(
                "agents/agent-01/llm",
                serde_json::json!({"api_key": format!("v{written}")}),
            );
            last_write = Instant::now();
        }
        reads += 1;
        match std::fs::read_to_string(&sink)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["api_key"].as_str().map(str::to_owned))
        {
            Some(v) => {
                let n: u32 = v.trim_start_matches('v').parse().unwrap();
                assert!(
                    n >= newest_seen,
                    "the file went back from v{newest_seen} to {v}"
                );
                newest_seen = n;
            }
            None => failed_reads.push(start.elapsed()),
        }
        if let Some(s) = serial_of(&cert) {
            serials.insert(s);
        }
        if let Ok(k) = std::fs::read(&key) {
            keys.insert(k);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = agent.log();
    assert!(
        failed_reads.is_empty(),
        "failed reads at {failed_reads:?}\n{log}"
    );
    assert!(reads > 1000, "only {reads} reads");
    assert!(
        serials.len() >= 3,
        "expected at least two renewals (3 serials), saw {serials:?}\nagent log:\n{log}\nserver log:\n{}",
        server.log()
    );
    assert!(
        keys.len() >= 3,
        "each renewal must bring a new key: {} keys",
        keys.len()
    );
    assert!(
        log.matches("renewed the client certificate").count() >= 2,
        "{log}"
    );
    assert!(
        !log.contains("could not refresh the secrets"),
        "a poll failed during renewals:\n{log}"
    );
    // Every change reached the file: the last one within a few poll intervals.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&sink).unwrap()).unwrap();
        if now["api_key"] == format!("v{written}") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "last change v{written} not in the file: {now}\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The renewed key file stays owner-only, and the pair on disk matches.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(["certificate", "verify"])
        .arg(&cert)
        .arg("--roots")
        .arg(&lab.files.root_cert)
        .args(["--purpose", "client"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the renewed certificate does not verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{} serials over {:?}, {reads} reads, {written} secret versions",
        serials.len(),
        run_for
    );
}

#[test]
fn renewal_failures_are_retried_and_an_expired_certificate_is_reported_loudly() {
    let lab = lab_with_pki();
    lab.init();
    let mut server = lab.start();
    provision(&lab, "20s");
    let agent = spawn_agent(&lab, "renew:\n  at: 50%\n  jitter: 0%\n");
    let sink = lab.dir.join("run/llm.json");
    let start = Instant::now();
    while !sink.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server goes away before renewal is due (at 10 s) and stays away past expiry.
    server.kill9();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let log = agent.log();
        if log.contains("could not renew the client certificate") && log.contains("HAS EXPIRED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no renewal warnings/errors:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = agent.log();
    // Warnings say how long is left, and the last-known-good file is untouched.
    assert!(log.contains("expires_in"), "{log}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sink).unwrap()).unwrap();
    assert_eq!(v["api_key"], "v0");
}
