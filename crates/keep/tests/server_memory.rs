//! A fresh `keep init` lab server does not keep the scrypt buffers of its key decryptions in
//! its heap. Decrypting each encrypted key frees a 16 MiB buffer; with glibc's dynamic
//! thresholds those stayed resident for good (the heap mapping of an idle lab server measured
//! 33 MB, about 1 MB with the threshold pinned). Measured in /proc, not timed.
#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keep_test_support::lab::free_port;

/// Resident kB of the `[heap]` mapping of `pid`.
fn heap_rss_kb(pid: u32) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut in_heap = false;
    for line in smaps.lines() {
        if line.contains('-') && line.split_whitespace().count() >= 5 {
            in_heap = line.ends_with("[heap]");
        } else if in_heap && let Some(v) = line.strip_prefix("Rss:") {
            return v.trim().trim_end_matches("kB").trim().parse().unwrap();
        }
    }
    0
}

#[test]
fn an_idle_lab_server_does_not_keep_freed_key_decryption_buffers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_keep"))
        .arg("init")
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_keep"))
        .args(["server", "--config"])
        .arg(dir.join("keep-server.yaml"))
        .env_remove("MALLOC_MMAP_THRESHOLD_")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not listen");
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Listening means the server and intermediate keys were decrypted.
    let pid = child.id();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let heap = heap_rss_kb(pid);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        heap < 12 * 1024,
        "the idle heap holds {heap} kB: freed 16 MiB scrypt buffers are still resident"
    );
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v.starts_with(b"MALLOC_MMAP_THRESHOLD_=")),
        "the server runs with the mmap threshold pinned"
    );
}
