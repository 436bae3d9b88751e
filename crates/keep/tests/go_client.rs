//! A real Go client (stdlib `net/http`, what the `vault` CLI and Terraform are built on) against
//! a real `keep server`: HTTP/2 negotiated over TLS with a client certificate, and every limit it
//! can trigger answered with a status and Vault's `{"errors":[…]}` body, never a reset stream.
//! The client is `keep-server/tests/clients/go_h2_limits.go`, run with `go run` (stdlib only:
//! `GOPROXY=off`, nothing downloaded). Skipped when `go` is missing, unless `KEEP_REQUIRE_PEERS`
//! is set (as `.ci/run` does), then it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keep_test_support::lab::Lab;

const LIMIT: usize = 131_072;

/// The `go` binary (`KEEP_TEST_GO`, else `go` on PATH), or `None` after printing SKIP.
fn go() -> Option<PathBuf> {
    let go = std::env::var_os("KEEP_TEST_GO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "go".into());
    let ok = Command::new(&go)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(go);
    }
    assert!(
        std::env::var_os("KEEP_REQUIRE_PEERS").is_none(),
        "go is required (KEEP_REQUIRE_PEERS is set) but `{} version` fails; .ci/run installs golang-go",
        go.display()
    );
    eprintln!("SKIP: go not installed (apt-get install golang-go, or set KEEP_TEST_GO)");
    None
}

#[test]
fn go_net_http_over_h2_gets_status_and_vault_errors_for_every_limit() {
    let Some(go) = go() else { return };
    let lab = Lab::with_limits(
        Path::new(env!("CARGO_BIN_EXE_keep")),
        &format!("    max_request_bytes: {LIMIT}\n"),
    );
    lab.init();
    let server = lab.start();
    let client =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../keep-server/tests/clients/go_h2_limits.go");
    let cache = std::env::temp_dir().join("keep-go-cache");
    let mut cmd = Command::new(&go);
    cmd.arg("run")
        .arg(&client)
        .arg("-url")
        .arg(lab.url())
        .arg("-ca")
        .arg(&lab.files.root_cert)
        .arg("-cert")
        .arg(&lab.files.admin_cert)
        .arg("-key")
        .arg(&lab.files.admin_key)
        .arg("-limit")
        .arg(LIMIT.to_string())
        // Stdlib only: no module is ever downloaded; the toolchain is the installed one.
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod");
    // .ci/run exports warm caches under /var/tmp; a local run gets its own.
    for (var, dir) in [("GOCACHE", "build"), ("GOPATH", "path")] {
        if std::env::var_os(var).is_none() {
            cmd.env(var, cache.join(dir));
        }
    }
    let out = cmd.current_dir(&lab.dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go client failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    // Every case ran (a client that stopped early would not print them).
    let mut cases = Vec::new();
    for over in [LIMIT + 4096, 4 * LIMIT, 32 << 20] {
        cases.push(format!(
            "ok   {over}-byte body with Content-Length: HTTP/2.0 413"
        ));
        cases.push(format!(
            "ok   {over}-byte body streamed without Content-Length: HTTP/2.0 413"
        ));
    }
    cases.push("ok   path over the path limit: HTTP/2.0 400".into());
    cases.push("ok   a route that does not take the verb: HTTP/2.0 405".into());
    cases.push("ok   nothing stored: HTTP/2.0 404".into());
    for case in cases {
        assert!(stdout.contains(&case), "{case} missing:\n{stdout}");
    }
}
