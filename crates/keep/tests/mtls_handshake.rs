//! A PKI made by `keep certificate create` completes a real mutual-TLS handshake between
//! `openssl s_server` and `curl`, for ECDSA, RSA and Ed25519 leaves.
//!
//! keep makes a root, an intermediate, a server leaf (`localhost`, serverAuth, bundled with the
//! intermediate) and client leaves (`agent-01` with clientAuth; `agent-02` with serverAuth only).
//! `s_server` requires a client certificate that chains to the root; then:
//!
//! - curl with `agent-01` gets s_server's status page, which shows the client certificate;
//! - curl without a client certificate is refused;
//! - curl with `agent-02` (wrong EKU) is refused.
//!
//! Only 127.0.0.1 is used, and every wait is bounded. Keys are generated at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Password of every key in these tests (curl gets it with `--pass`).
const PASSWORD: &str = "mtls test password";
/// How long s_server may take to start listening.
const SERVER_START: Duration = Duration::from_secs(10);
/// How many free ports to try if another process grabs ours between probe and bind.
const PORT_ATTEMPTS: usize = 5;

/// Runs the keep binary in `dir`.
fn keep(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run keep")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Runs `keep certificate create` with the common flags, asserting success.
fn create(dir: &Path, args: &[&str], extra: &[&str]) {
    let mut all = vec!["certificate", "create"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--password-file", "pw"]);
    all.extend_from_slice(extra);
    assert_ok(&keep(dir, &all), &format!("keep {}", all.join(" ")));
}

/// The PEM certificate blocks of a file, in order.
fn pem_certs(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end = rest[start..].find(END).expect("END CERTIFICATE line") + start + END.len();
        certs.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    certs
}

/// Makes the whole PKI in `dir` with keep: root and intermediate (P-256), and server and
/// client leaves with `leaf_flags`. Writes `chain.crt` (the server bundle minus its leaf) for
/// s_server, which reads only the first certificate of `-cert`.
fn make_pki(dir: &Path, leaf_flags: &[&str]) {
    fs::write(dir.join("pw"), format!("{PASSWORD}\n")).unwrap();
    create(
        dir,
        &[
            "root.mtls.test",
            "mTLS Test Root CA",
            "root.crt",
            "root.key",
        ],
        &["--profile", "root-ca"],
    );
    create(
        dir,
        &[
            "int.mtls.test",
            "mTLS Test Intermediate CA",
            "int.crt",
            "int.key",
        ],
        &[
            "--profile",
            "intermediate-ca",
            "--ca",
            "root.crt",
            "--ca-key",
            "root.key",
            "--ca-password-file",
            "pw",
        ],
    );
    let by_int = [
        "--ca",
        "int.crt",
        "--ca-key",
        "int.key",
        "--ca-password-file",
        "pw",
        "--bundle",
    ];
    let leaf = |args: &[&str], extra: &[&str]| {
        let mut flags: Vec<&str> = by_int.to_vec();
        flags.extend_from_slice(extra);
        flags.extend_from_slice(leaf_flags);
        create(dir, args, &flags);
    };
    leaf(
        &["localhost", "server.crt", "server.key"],
        &[
            "--san",
            "localhost",
            "--san",
            "127.0.0.1",
            "--eku",
            "server",
        ],
    );
    leaf(
        &["agent-01", "client.crt", "client.key"],
        &["--eku", "client"],
    );
    leaf(
        &["agent-02", "wrong-eku.crt", "wrong-eku.key"],
        &["--eku", "server"],
    );

    // --bundle: the leaf, then the intermediate, and not the root.
    let int = fs::read_to_string(dir.join("int.crt")).unwrap();
    for bundle in ["server.crt", "client.crt"] {
        let certs = pem_certs(&fs::read_to_string(dir.join(bundle)).unwrap());
        assert_eq!(
            certs.len(),
            2,
            "{bundle} made with --bundle should hold the leaf and the intermediate"
        );
        assert_eq!(
            certs[1].trim(),
            int.trim(),
            "the second certificate of {bundle} is not the intermediate"
        );
    }
    let chain = pem_certs(&fs::read_to_string(dir.join("server.crt")).unwrap())[1..].concat();
    fs::write(dir.join("chain.crt"), chain).unwrap();
}

/// An `openssl s_server` child, killed when dropped so a failed assertion leaks no process.
struct Server {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Server {
    /// Starts s_server on a free 127.0.0.1 port, requiring client certificates from the root,
    /// and waits (bounded) until it accepts TCP connections.
    fn start(dir: &Path) -> Server {
        let mut last_log = String::new();
        for attempt in 0..PORT_ATTEMPTS {
            let port = free_port();
            let log = dir.join(format!("s_server.{attempt}.log"));
            let log_file = fs::File::create(&log).unwrap();
            let child = Command::new("openssl")
                .args([
                    "s_server",
                    "-accept",
                    &format!("127.0.0.1:{port}"),
                    "-cert",
                    "server.crt",
                    "-cert_chain",
                    "chain.crt",
                    "-key",
                    "server.key",
                    "-pass",
                    "file:pw",
                    "-CAfile",
                    "root.crt",
                    "-Verify",
                    "2",
                    "-verify_return_error",
                    "-www",
                ])
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .expect("run openssl s_server (is openssl installed?)");
            let mut server = Server { child, port, log };
            if server.wait_listening() {
                return server;
            }
            last_log = server.log_text();
            // Dropping `server` kills it; try another port.
        }
        panic!("openssl s_server did not start after {PORT_ATTEMPTS} attempts:\n{last_log}");
    }

    /// Polls until the port accepts a connection; false if s_server exited or time ran out.
    fn wait_listening(&mut self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + SERVER_START;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits (bounded) until s_server's log mentions `needle`; panics with the log if not.
    #[track_caller]
    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log_text();
            if log.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "s_server's log does not say {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the server retries if it is taken meanwhile).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Runs curl against the server at `host` with the root as its only trust anchor.
fn curl(dir: &Path, host: &str, port: u16, client: Option<(&str, &str)>) -> Output {
    let url = format!("https://{host}:{port}/");
    let mut args: Vec<String> = [
        "-sS",
        "--fail",
        "--max-time",
        "20",
        "--noproxy",
        "*",
        "--cacert",
        "root.crt",
    ]
    .map(String::from)
    .to_vec();
    if host == "localhost" {
        // Never leave loopback, whatever the resolver says about localhost.
        args.extend(["--resolve".into(), format!("localhost:{port}:127.0.0.1")]);
    }
    if let Some((crt, key)) = client {
        args.extend(["--cert", crt, "--key", key, "--pass", PASSWORD].map(String::from));
    }
    args.push(url);
    Command::new("curl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("run curl (is it installed?)")
}

/// The whole scenario for one leaf key type; `public_key_alg` is how OpenSSL names that key
/// type on s_server's status page, so the test knows the handshake used the key under test.
fn mtls_with_keep_pki(leaf_flags: &[&str], public_key_alg: &str) {
    let dir = keep_test_support::tempdir();
    let dir = dir.path();
    make_pki(dir, leaf_flags);
    let server = Server::start(dir);
    let port = server.port;

    // The good client: the status page shows the client certificate keep made.
    for host in ["localhost", "127.0.0.1"] {
        let out = curl(dir, host, port, Some(("client.crt", "client.key")));
        assert!(
            out.status.success(),
            "curl https://{host}:{port}/ with agent-01's certificate failed ({}):\n{}\n\
             s_server log:\n{}",
            out.status,
            stderr(&out),
            server.log_text()
        );
        let body = stdout(&out);
        assert!(
            body.contains("<HTML>") || body.contains("<html>"),
            "the body is not s_server's status page:\n{body}"
        );
        assert!(
            body.contains("Client certificate") && body.contains("agent-01"),
            "s_server's page does not show agent-01's certificate:\n{body}"
        );
        assert!(
            body.contains(&format!("Public Key Algorithm: {public_key_alg}")),
            "agent-01's certificate on s_server's page does not hold a {public_key_alg} key:\n{body}"
        );
    }

    // No client certificate: the server must refuse, and say why on both sides.
    let out = curl(dir, "localhost", port, None);
    assert!(
        !out.status.success(),
        "curl without a client certificate succeeded:\n{}\ns_server log:\n{}",
        stdout(&out),
        server.log_text()
    );
    assert!(
        stderr(&out).contains("certificate required"),
        "curl without a client certificate failed for another reason:\n{}",
        stderr(&out)
    );
    server.wait_for_log("peer did not return a certificate");

    // A client certificate without clientAuth: the server must refuse it for its purpose.
    let out = curl(
        dir,
        "localhost",
        port,
        Some(("wrong-eku.crt", "wrong-eku.key")),
    );
    assert!(
        !out.status.success(),
        "curl with a serverAuth-only client certificate succeeded:\n{}\ns_server log:\n{}",
        stdout(&out),
        server.log_text()
    );
    assert!(
        stderr(&out).contains("unsupported certificate"),
        "curl with agent-02 failed for another reason:\n{}",
        stderr(&out)
    );
    server.wait_for_log("unsuitable certificate purpose");

    drop(server);
}

#[test]
fn mtls_ecdsa_p256() {
    mtls_with_keep_pki(&[], "id-ecPublicKey");
}

#[test]
fn mtls_rsa_2048() {
    mtls_with_keep_pki(&["--kty", "RSA", "--size", "2048"], "rsaEncryption");
}

#[test]
fn mtls_ed25519() {
    mtls_with_keep_pki(&["--kty", "OKP", "--curve", "Ed25519"], "ED25519");
}
