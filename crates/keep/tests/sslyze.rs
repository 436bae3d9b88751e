//! sslyze against a running `keep server` with a client certificate: only TLS 1.2 and 1.3,
//! only ECDHE+AEAD suites, strong curves, no insecure renegotiation, no compression, and not
//! vulnerable to Heartbleed, ROBOT or CCS injection.
//!
//! sslyze comes from PyPI (`.ci/run` installs it in its venv and sets `KEEP_TEST_SSLYZE`);
//! without it the test prints SKIP, or fails when `KEEP_REQUIRE_PEERS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keep_test_support::lab::Lab;
use serde_json::Value;

fn keep_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_keep"))
}

/// The sslyze executable (`KEEP_TEST_SSLYZE`, else `sslyze` on PATH), or `None` after printing
/// SKIP; a failure instead when `KEEP_REQUIRE_PEERS` is set.
fn sslyze() -> Option<PathBuf> {
    let bin = std::env::var_os("KEEP_TEST_SSLYZE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "sslyze".into());
    let ok = Command::new(&bin)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(bin);
    }
    assert!(
        std::env::var_os("KEEP_REQUIRE_PEERS").is_none(),
        "sslyze is required (KEEP_REQUIRE_PEERS is set) but `{} --help` cannot run; .ci/run installs it",
        bin.display()
    );
    eprintln!("SKIP: sslyze not installed (pip install sslyze, or set KEEP_TEST_SSLYZE)");
    None
}

/// The accepted cipher suite names of one protocol's scan.
fn accepted(scan: &Value, command: &str) -> Vec<String> {
    result(scan, command)["accepted_cipher_suites"]
        .as_array()
        .unwrap_or_else(|| panic!("{command}: no accepted_cipher_suites"))
        .iter()
        .map(|s| s["cipher_suite"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// One scan command's result object, after checking it completed.
fn result<'a>(scan: &'a Value, command: &str) -> &'a Value {
    let c = &scan[command];
    let trace = c["error_trace"].as_str().unwrap_or("");
    assert_eq!(
        c["status"],
        "COMPLETED",
        "{command}: {} ... {}",
        c["error_reason"],
        &trace[trace.len().saturating_sub(800)..]
    );
    &c["result"]
}

/// Runs sslyze with `commands` (and the admin client certificate if `with_cert`) against the
/// lab's server; the `scan_result` object.
fn run(
    sslyze: &Path,
    lab: &Lab,
    server: &keep_test_support::lab::Server,
    with_cert: bool,
    commands: &[&str],
) -> Value {
    let json = lab.dir.join("sslyze.json");
    let _ = std::fs::remove_file(&json);
    let mut cmd = Command::new(sslyze);
    if with_cert {
        cmd.arg("--cert")
            .arg(&lab.files.admin_cert)
            .arg("--key")
            .arg(&lab.files.admin_key)
            .args(["--keyform", "PEM"]);
    }
    let out = cmd
        .args(commands)
        .args(["--mozilla_config", "disable", "--quiet", "--json_out"])
        .arg(&json)
        .arg(format!("localhost:{}", lab.port))
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "sslyze wrote no JSON ({e}); stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    let target = doc["server_scan_results"][0].take();
    assert_eq!(
        target["connectivity_status"],
        "COMPLETED",
        "sslyze could not connect (client certificate: {with_cert}): {target}\nserver log:\n{}",
        server.log()
    );
    target["scan_result"].clone()
}

#[test]
fn sslyze_finds_only_modern_tls_and_no_known_vulnerability() {
    let Some(sslyze) = sslyze() else { return };
    let lab = Lab::new(keep_bin());
    lab.init();
    let server = lab.start();
    // SSLv2/SSLv3 are probed without the client certificate: sslyze's legacy OpenSSL cannot
    // load an ECDSA client chain, and the server refuses those protocols before client auth.
    let legacy = run(&sslyze, &lab, &server, false, &["--sslv2", "--sslv3"]);
    for old in ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites"] {
        assert_eq!(
            accepted(&legacy, old),
            Vec::<String>::new(),
            "{old} accepted"
        );
    }
    let scan = run(
        &sslyze,
        &lab,
        &server,
        true,
        &[
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
            "--reneg",
            "--compression",
            "--heartbleed",
            "--robot",
            "--openssl_ccs",
            "--elliptic_curves",
        ],
    );
    let scan = &scan;

    for old in ["tls_1_0_cipher_suites", "tls_1_1_cipher_suites"] {
        assert_eq!(accepted(scan, old), Vec::<String>::new(), "{old} accepted");
    }
    let tls12 = accepted(scan, "tls_1_2_cipher_suites");
    assert!(!tls12.is_empty(), "no TLS 1.2 suite accepted");
    for suite in &tls12 {
        assert!(
            suite.starts_with("TLS_ECDHE_")
                && (suite.contains("_GCM_") || suite.contains("CHACHA20_POLY1305")),
            "TLS 1.2 suite {suite} is not ECDHE+AEAD (all: {tls12:?})"
        );
    }
    let tls13 = accepted(scan, "tls_1_3_cipher_suites");
    assert!(!tls13.is_empty(), "no TLS 1.3 suite accepted");

    let curves = result(scan, "elliptic_curves");
    let names: Vec<&str> = curves["supported_curves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(!names.is_empty(), "no curve: {curves}");
    for name in &names {
        assert!(
            [
                "X25519",
                "secp256r1",
                "prime256v1",
                "secp384r1",
                "X25519MLKEM768"
            ]
            .contains(name),
            "curve {name} offered (all: {names:?})"
        );
    }

    let reneg = result(scan, "session_renegotiation");
    assert_eq!(
        reneg["is_vulnerable_to_client_renegotiation_dos"], false,
        "client-initiated renegotiation: {reneg}"
    );
    assert_eq!(
        result(scan, "tls_compression")["supports_compression"],
        false
    );
    assert_eq!(
        result(scan, "heartbleed")["is_vulnerable_to_heartbleed"],
        false
    );
    assert_eq!(
        result(scan, "openssl_ccs_injection")["is_vulnerable_to_ccs_injection"],
        false
    );
    let robot = result(scan, "robot")["robot_result"].as_str().unwrap();
    assert!(robot.starts_with("NOT_VULNERABLE"), "ROBOT: {robot}");
    eprintln!("sslyze: TLS 1.2 {tls12:?}, TLS 1.3 {tls13:?}, curves {names:?}, ROBOT {robot}");
}
