//! SQLite faults (issue 11 item 7): storage files keep's user cannot use stop `keep server
//! run` and `keep server check` with the path and the fix (before: SIGBUS with no log line, or
//! writes failing while health said 200), and storage write failures during a run show in
//! `sys/health` and `keep_storage_healthy` until a write succeeds again.
//!
//! The permission cases run the server as an unprivileged user, `keep-test` (created here if
//! missing), through `setpriv`: CI runs the suite as root, and root ignores file modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keep_test_support::lab::Lab;

const USER: &str = "keep-test";

fn keep_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_keep"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Creates the unprivileged test user once (idempotent: an existing user is kept).
fn test_user() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let exists = Command::new("id")
            .arg(USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            let st = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(USER)
                .status()
                .expect("run useradd");
            assert!(st.success(), "useradd {USER} failed");
        }
    });
}

/// `chown OWNER PATH`, with `-R` when `recursive`.
fn chown(path: &Path, owner: &str, recursive: bool) {
    let st = Command::new("chown")
        .args(recursive.then_some("-R"))
        .arg(owner)
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// The `keep` binary where the test user can run it: the build directory may sit below a
/// directory only root can enter (`/root/...` in CI), so it is linked or copied into the lab.
fn user_bin(lab: &Lab) -> std::path::PathBuf {
    let bin = lab.dir.join("keep-bin");
    if !bin.exists() && std::fs::hard_link(keep_bin(), &bin).is_err() {
        std::fs::copy(keep_bin(), &bin).unwrap();
    }
    bin
}

/// `keep ARGS --config <lab config>` as the test user.
fn keep_as_user(lab: &Lab, args: &[&str]) -> Output {
    let mut child = Command::new("setpriv")
        .args([
            &format!("--reuid={USER}"),
            &format!("--regid={USER}"),
            "--clear-groups",
            "--",
        ])
        .arg(user_bin(lab))
        .args(args)
        .arg("--config")
        .arg(&lab.config)
        .current_dir(&lab.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `server run` exits on its own when the check fails; if it started, stop it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn assert_refused(out: &Output, path: &Path, fix: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(64),
        "expected a config error (64), got {:?}: {stderr}",
        out.status
    );
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains(fix), "expected {fix:?} in: {stderr}");
}

/// A root-owned leftover (as after `keep` once ran as root, or planted by someone who can write
/// the directory), mode 0644: readable but not writable by keep's user.
fn plant_root_file(path: &Path) {
    std::fs::write(path, b"").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn storage_files_keep_cannot_write_fail_start_and_check_with_the_path_and_the_fix() {
    if !is_root() {
        println!("skipped: needs root to create {USER} and change owners (CI runs as root)");
        return;
    }
    test_user();
    let lab = Lab::new(keep_bin());
    lab.init();
    chown(&lab.dir, &format!("{USER}:"), true);
    let db = lab.dir.join("keep.db");
    let fix_for = |p: &Path| format!("chown {USER}: {}", p.display());

    // Healthy: the check passes as the server's user.
    let out = keep_as_user(&lab, &["server", "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The -shm SQLite maps: before, the server died of SIGBUS (exit 135) with no log line.
    let shm = lab.dir.join("keep.db-shm");
    plant_root_file(&shm);
    assert_refused(
        &keep_as_user(&lab, &["server", "check"]),
        &shm,
        &fix_for(&shm),
    );
    let out = keep_as_user(&lab, &["server", "run"]);
    assert_refused(&out, &shm, &fix_for(&shm));
    std::fs::remove_file(&shm).unwrap();

    // The WAL: before, the server started and every write failed with 500 (health 200).
    let wal = lab.dir.join("keep.db-wal");
    plant_root_file(&wal);
    assert_refused(
        &keep_as_user(&lab, &["server", "run"]),
        &wal,
        &fix_for(&wal),
    );
    assert_refused(
        &keep_as_user(&lab, &["server", "check"]),
        &wal,
        &fix_for(&wal),
    );
    std::fs::remove_file(&wal).unwrap();

    // The database itself: before, SQLite opened it read-only without a word.
    chown(&db, "root:", false);
    assert_refused(&keep_as_user(&lab, &["server", "run"]), &db, &fix_for(&db));
    chown(&db, &format!("{USER}:"), false);

    // The directory, where SQLite creates -wal and -shm.
    chown(&lab.dir, "root:", false);
    std::fs::set_permissions(&lab.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = keep_as_user(&lab, &["server", "check"]);
    assert_refused(&out, &lab.dir, &fix_for(&lab.dir));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not writable by uid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    chown(&lab.dir, &format!("{USER}:"), false);

    // Fixed as told: the server starts as its user.
    let out = keep_as_user(&lab, &["server", "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Root's again, so the temporary directory is removed like any other.
    chown(&lab.dir, "root:", true);
}

/// Mounts a small tmpfs; unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn health(lab: &Lab) -> (u16, serde_json::Value) {
    let (code, body) = lab.curl("GET", "/v1/sys/health", None);
    (code, serde_json::from_str(&body).unwrap_or_default())
}

fn storage_gauge(lab: &Lab) -> Option<String> {
    let (_, scrape) = lab.curl("GET", "/v1/sys/metrics?format=prometheus", None);
    scrape
        .lines()
        .find(|l| l.starts_with("keep_storage_healthy"))
        .map(|l| l.trim_end().rsplit(' ').next().unwrap_or("").to_owned())
}

/// A storage write that fails while the server runs (here: the database's file system is
/// full) turns health red with the reason, and the gauge to 0; freeing space turns both green
/// again without a restart. Before, writes failed with 500 while health said 200.
#[test]
fn storage_write_failures_show_in_health_until_a_write_succeeds() {
    if !is_root() {
        println!("skipped: needs root to mount a tmpfs (CI runs as root)");
        return;
    }
    let lab = Lab::new(keep_bin());
    let mnt = lab.dir.join("dbfs");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "cannot mount a tmpfs at {}", mnt.display());
    let fs = SmallFs(mnt.clone());
    let config = std::fs::read_to_string(&lab.config).unwrap();
    std::fs::write(
        &lab.config,
        config.replace("path: keep.db", "path: dbfs/keep.db"),
    )
    .unwrap();
    lab.init();
    let server = lab.start();
    lab.put_secret("app", serde_json::json!({"k": "v1"}));
    assert_eq!(health(&lab).0, 200);
    assert_eq!(storage_gauge(&lab).as_deref(), Some("1"));

    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=1024"])
        .arg(format!("of={}", mnt.join("filler").display()))
        .stderr(Stdio::null())
        .status();
    // Values larger than the WAL has ever been, so SQLite must grow it (a WAL that was reset
    // is overwritten in place and needs no new space).
    let big = "x".repeat(100_000);
    let mut failed = false;
    for i in 0..10 {
        let (code, body) = lab.curl(
            "POST",
            &format!("/v1/secret/data/big{i}"),
            Some(&format!(r#"{{"data":{{"k":"{big}"}}}}"#)),
        );
        if code >= 500 {
            failed = true;
            break;
        }
        assert_eq!(code, 200, "{body}");
    }
    assert!(
        failed,
        "every write succeeded on a full disk: {}",
        server.log()
    );
    let (code, h) = health(&lab);
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["storage_healthy"], false, "{h}");
    let why = h["storage_error"].as_str().unwrap_or_default();
    assert!(why.contains("full"), "{h}");
    assert_eq!(storage_gauge(&lab).as_deref(), Some("0"));
    // Still full a few seconds on: still red (the probe's write fails too).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(health(&lab).0, 503);

    std::fs::remove_file(mnt.join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&lab).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "health did not recover: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(health(&lab).1["storage_error"], serde_json::Value::Null);
    assert_eq!(storage_gauge(&lab).as_deref(), Some("1"));
    lab.put_secret("app", serde_json::json!({"k": "v2"}));
    drop(server);
    drop(fs);
}
