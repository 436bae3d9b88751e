//! `keep init` and `keep demo` end to end with the real binary: the lab works unchanged with
//! `keep server` and `keep agent`, confines each agent to its own secrets, keeps keys tight and
//! the root key out of the server's reach, refuses to overwrite itself, and lints clean; the
//! demo runs the main job and cleans up without printing a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keep_test_support::lab::free_port;

fn keep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(["server", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_makes_a_lab_that_server_and_agents_use_unchanged() {
    let tmp = keep_test_support::tempdir();
    let dir = tmp.path().join("lab");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let out = keep(&[
        "init",
        dir.to_str().unwrap(),
        "--host",
        "vault.claw.internal",
        "--agent",
        "openclaw-01",
        "--agent",
        "openclaw-02",
        "--listen",
        &listen,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("keep server --config"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OFF this machine"),
        "the generated root password must come with a loud note"
    );

    // Key files 0600, password files 0400, the root key only in offline/.
    let files = files_under(&dir);
    let keys: Vec<_> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    assert!(keys.len() >= 6, "{keys:?}"); // root, intermediate, server, operator, 2 agents + unseal
    for k in &keys {
        assert_eq!(mode(k), 0o600, "{}", k.display());
    }
    for p in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pass"))
    {
        assert_eq!(mode(p), 0o400, "{}", p.display());
    }
    let config = std::fs::read_to_string(dir.join("keep-server.yaml")).unwrap();
    assert!(
        config
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .all(|l| !l.contains("offline") && !l.contains("root_ca.key")),
        "{config}"
    );
    assert!(dir.join("offline/root_ca.key").exists());

    // Every certificate keep init made lints without an error.
    for c in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
    {
        let purpose = if c.to_string_lossy().contains("agents/") || c.ends_with("operator.crt") {
            "client"
        } else if c.ends_with("server.crt") {
            "server"
        } else {
            "any"
        };
        let mut args = vec!["certificate", "lint", c.to_str().unwrap()];
        if purpose != "any" {
            args.extend(["--purpose", purpose]);
        }
        let out = keep(&args);
        assert!(
            out.status.success(),
            "lint {}: {}{}",
            c.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A second init into the same directory changes nothing.
    let before: Vec<_> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let again = keep(&["init", dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let after: Vec<_> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(before == after, "a refused init changed files");

    // The server and the agents work on the output as it is. The agents' URL names
    // vault.claw.internal, which does not resolve here: point a copy at 127.0.0.1 (a SAN too).
    let _server = start(&dir.join("keep-server.yaml"), port);
    for (me, other) in [
        ("openclaw-01", "openclaw-02"),
        ("openclaw-02", "openclaw-01"),
    ] {
        let adir = dir.join("agents").join(me);
        let yaml = std::fs::read_to_string(adir.join("agent.yaml")).unwrap();
        assert!(yaml.contains("https://vault.claw.internal:"), "{yaml}");
        let local = adir.join("agent-local.yaml");
        std::fs::write(&local, yaml.replace("vault.claw.internal", "127.0.0.1")).unwrap();
        let out = keep(&["agent", "--once", "--config", local.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{me}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = adir.join("run/demo.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert!(v["api_key"].as_str().unwrap().starts_with("demo-"), "{v}");
        assert_eq!(mode(&file), 0o400);

        // The templated policy confines each agent to its own path.
        let mut child = Command::new(env!("CARGO_BIN_EXE_keep"))
            .args(["openclaw-resolver", "--config", local.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                format!(
                    r#"{{"protocolVersion":1,"ids":["agents/{me}/demo#api_key","agents/{other}/demo#api_key"]}}"#
                )
                .as_bytes(),
            )
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            answer["values"][format!("agents/{me}/demo#api_key")].is_string(),
            "{answer}"
        );
        let denied = &answer["errors"][format!("agents/{other}/demo#api_key")];
        assert!(
            denied["code"].is_string() && denied["code"] != "NOT_FOUND",
            "{answer}"
        );
    }

    // The agents' certificates are in the PKI mount's inventory (so they can renew): the
    // operator lists them.
    let curl = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(dir.join("ca/root_ca.crt"))
        .arg("--cert")
        .arg(dir.join("operator/operator.crt"))
        .arg("--key")
        .arg(dir.join("operator/operator.key"))
        .arg("--pass")
        .arg(std::fs::read_to_string(dir.join("operator/operator.pass")).unwrap())
        .args(["-X", "LIST"])
        .arg(format!("https://127.0.0.1:{port}/v1/pki/certs"))
        .output();
    if let Ok(out) = curl {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)));
        // The two agents' certificates and the operator's: all in the inventory, so each can
        // be revoked at run time (the operator's too: a stolen admin key is not forever).
        assert_eq!(v["data"]["keys"].as_array().map(Vec::len), Some(3), "{v}");
        let op_pem = std::fs::read(dir.join("operator/operator.crt")).unwrap();
        let op = keep_pki::pem::read_certificates(&op_pem, &keep_pki::Source::Other("op".into()))
            .unwrap();
        let op_serial = keep_pki::inspect::inspect(&op[0].der).unwrap().serial;
        assert!(
            v["data"]["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k.as_str() == Some(op_serial.as_str())),
            "the operator's certificate {op_serial} is not in the inventory: {v}"
        );
    }
}

#[test]
fn demo_runs_the_main_job_masks_the_secret_and_cleans_up() {
    let tmp = keep_test_support::tempdir();
    let kept = tmp.path().join("kept");
    let out = keep(&["demo", "--keep", kept.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret_file = files_under(&kept.join("agents"))
        .into_iter()
        .find(|p| p.ends_with("run/demo.json"))
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(secret_file).unwrap()).unwrap();
    let value = v["api_key"].as_str().unwrap();
    assert!(
        !stdout.contains(value),
        "the demo printed the secret:\n{stdout}"
    );
    assert!(stdout.contains("masked"), "{stdout}");
    assert!(stdout.contains("NOT_FOUND"), "{stdout}");
    assert!(stdout.contains("the child saw DEMO_API_KEY"), "{stdout}");
    assert!(stdout.contains("0 failed"), "doctor summary: {stdout}");

    // Without --keep the temporary lab is gone afterwards.
    let out = keep(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let made = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("made "))
        .and_then(|l| l.split(' ').next())
        .unwrap();
    assert!(!Path::new(made).exists(), "{made} left behind");
}
