//! A real `keep server` on 127.0.0.1 for integration tests: PKI, config, init, start, curl.
//!
//! Used by the binary's end-to-end tests (server, admin CLI, agent, OpenClaw resolver), which
//! pass `env!("CARGO_BIN_EXE_keep")` as the binary.

#![allow(clippy::unwrap_used)] // test infrastructure: a failed step should stop the test loudly

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{TestPki, TestPkiFiles};

/// A keep server lab in a temp dir: TestPki files, a `keep-server.yaml` (127.0.0.1, SQLite,
/// key-file seal, admin `operator`), and helpers to init, start and call it.
pub struct Lab {
    _tmp: tempfile::TempDir,
    /// The `keep` binary under test.
    pub bin: PathBuf,
    /// The lab directory.
    pub dir: PathBuf,
    /// The test PKI (to issue more leaves).
    pub pki: TestPki,
    /// The test PKI written into `dir`.
    pub files: TestPkiFiles,
    /// The server's port on 127.0.0.1.
    pub port: u16,
    /// The server config file.
    pub config: PathBuf,
}

/// The Python that has hvac (`KEEP_TEST_PYTHON`, else `python3`), or `None` after printing
/// SKIP; with `KEEP_REQUIRE_PEERS` set (as `.ci/run` does) a missing hvac fails instead.
pub fn hvac_python() -> Option<PathBuf> {
    let py = std::env::var_os("KEEP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import hvac"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    assert!(
        std::env::var_os("KEEP_REQUIRE_PEERS").is_none(),
        "hvac is required (KEEP_REQUIRE_PEERS is set) but `{} -c 'import hvac'` fails; .ci/run installs it",
        py.display()
    );
    eprintln!("SKIP: hvac not installed (set KEEP_TEST_PYTHON to a venv python with hvac)");
    None
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Lab {
    /// A lab for the `keep` binary at `bin`.
    pub fn new(bin: &Path) -> Lab {
        Self::with_config(bin, "", "")
    }

    /// A lab whose config adds `limits` (YAML lines under `listener.limits`).
    pub fn with_limits(bin: &Path, limits: &str) -> Lab {
        Self::with_config(bin, limits, "")
    }

    /// A lab with `limits` under `listener.limits` and `extra` top-level YAML.
    pub fn with_config(bin: &Path, limits: &str, extra: &str) -> Lab {
        Self::with_config_for(bin, limits, |_| extra.to_owned())
    }

    /// A lab whose server has the PKI mount, issuing with the test intermediate.
    pub fn with_pki(bin: &Path) -> Lab {
        Self::with_config_for(bin, "", |files| {
            format!(
                "pki:\n  issuer_cert_file: {}\n  issuer_key_file: {}\n",
                files.intermediate_cert.display(),
                files.intermediate_key.display()
            )
        })
    }

    /// Like [`Lab::with_config`], with the top-level YAML made from the lab's PKI files.
    pub fn with_config_for(
        bin: &Path,
        limits: &str,
        extra: impl FnOnce(&crate::TestPkiFiles) -> String,
    ) -> Lab {
        let tmp = crate::tempdir();
        let dir = tmp.path().to_path_buf();
        let pki = TestPki::new();
        let files = pki.write_to(&dir);
        let extra = extra(&files);
        let port = free_port();
        let config = dir.join("keep-server.yaml");
        std::fs::write(
            &config,
            format!(
                "listener:\n  address: 127.0.0.1:{port}\n  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    crl_file: {}\n    min_version: \"1.2\"\n{limits}storage:\n  sqlite: {{ path: keep.db }}\nseal:\n  key_file: unseal.key\nadmins:\n  - common_name: operator\n{extra}",
                files.server_cert.display(),
                files.server_key.display(),
                files.ca_bundle.display(),
                files.crl.display(),
                limits = if limits.is_empty() { String::new() } else { format!("  limits:\n{limits}") },
            ),
        )
        .unwrap();
        Lab {
            _tmp: tmp,
            bin: bin.to_owned(),
            dir,
            pki,
            files,
            port,
            config,
        }
    }

    /// Runs `keep ARGS --config <lab config>` in the lab directory.
    pub fn keep(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `keep server init`, asserting success.
    pub fn init(&self) {
        let out = self.keep(&["server", "init"]);
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `keep server` and waits (≤ 15 s) until it listens.
    pub fn start(&self) -> Server {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(&self.bin)
            .args(["server", "--config"])
            .arg(&self.config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut s = Server {
            child,
            log: self.dir.join("server.log"),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
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

    /// Writes a KV v2 secret as the admin, asserting success.
    pub fn put_secret(&self, path: &str, data: serde_json::Value) {
        let body = serde_json::json!({ "data": data }).to_string();
        let (code, text) = self.curl("POST", &format!("/v1/secret/data/{path}"), Some(&body));
        assert_eq!(code, 200, "{text}");
    }

    /// Writes a file into the lab directory, owner-only (configs may hold inline keys).
    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write the config");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the config");
        path
    }

    /// `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// curl with the admin identity; returns (status, body).
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.curl_as(
            &self.files.admin_cert,
            &self.files.admin_key,
            method,
            path,
            body,
        )
    }

    /// curl with the given identity; returns (status, body).
    pub fn curl_as(
        &self,
        cert: &Path,
        key: &Path,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-X", method, "--cacert"])
            .arg(&self.files.root_cert)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["-w", "\n%{http_code}"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        let out = cmd.arg(format!("{}{path}", self.url())).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

/// A running `keep server`, killed (SIGKILL) on drop.
pub struct Server {
    /// The process.
    pub child: Child,
    log: PathBuf,
}

impl Server {
    /// The server's standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
