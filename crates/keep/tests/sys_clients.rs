//! Issue 13 (mount introspection, response wrapping, health/init): the real `keep server`
//! driven by hvac 2.4 and node-vault 0.12 (skipped when they are not installed, unless
//! KEEP_REQUIRE_PEERS is set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use keep_test_support::lab::{Lab, hvac_python};

fn keep_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_keep"))
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keep-server/tests/clients")
        .join(name)
}

fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("KEEP_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/keep-node/node_modules".into());
    if dir.join("node-vault").is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Some(dir);
    }
    assert!(
        std::env::var_os("KEEP_REQUIRE_PEERS").is_none(),
        "node-vault is required (KEEP_REQUIRE_PEERS is set) but {} has no node-vault; .ci/run installs it",
        dir.display()
    );
    eprintln!("SKIP: node-vault not installed (set KEEP_TEST_NODE_MODULES)");
    None
}

/// Runs an hvac script against a fresh lab server with the URL, CA, admin and agent
/// certificates (and `intermediate` when asked) as arguments, with the CA given per request
/// (the machine's REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE cleared), and asserts it printed `done`.
fn run_hvac(name: &str, with_intermediate: bool, done: &str) {
    let Some(py) = hvac_python() else { return };
    let lab = Lab::new(keep_bin());
    lab.init();
    let server = lab.start();
    let mut cmd = Command::new(py);
    cmd.arg(script(name))
        .arg(lab.url())
        .arg(&lab.files.root_cert)
        .arg(&lab.files.admin_cert)
        .arg(&lab.files.admin_key)
        .arg(&lab.files.client_cert)
        .arg(&lab.files.client_key)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE");
    if with_intermediate {
        cmd.arg(&lab.files.intermediate_cert);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(done));
}

/// hvac: list_mounted_secrets_engines, read_mount_configuration, list_auth_methods, health,
/// is_initialized, get_capabilities, a wrapped KV read unwrapped once by an agent, wrap/unwrap.
#[test]
fn hvac_sys_introspection_and_response_wrapping() {
    run_hvac("hvac_sys.py", false, "all sys calls behaved");
}

/// node-vault: mounts(), health(), initialized().
#[test]
fn node_vault_mounts_health_initialized() {
    let Some(modules) = node_modules() else {
        return;
    };
    let lab = Lab::new(keep_bin());
    lab.init();
    let server = lab.start();
    let out = Command::new("node")
        .arg(script("node_vault_sys.js"))
        .arg(lab.url())
        .arg(&lab.files.root_cert)
        .arg(&lab.files.admin_cert)
        .arg(&lab.files.admin_key)
        .env("NODE_PATH", &modules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node-vault sys script failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all sys calls behaved"));
}

/// hvac: a dict policy (Vault's JSON form), policy fields at the top level, and the agent's
/// `kv.v2.list_secrets` without a trailing slash and `Client.list` (`?list=True`) under a
/// list-only policy, with their refusals.
#[test]
fn hvac_json_policies_top_level_fields_and_agent_lists() {
    run_hvac("hvac_shapes.py", true, "all shapes behaved");
}
