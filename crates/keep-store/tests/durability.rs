//! Durability and "no plaintext on disk", on real SQLite files.
//!
//! - `acknowledged_writes_survive_kill_9`: a child process (this test binary, re-executed with
//!   an environment variable) streams barrier writes to SQLite and prints each one after it
//!   was acknowledged; the parent `kill -9`s it mid-stream, reopens the database and reads
//!   every acknowledged write back. (kill -9 proves crash durability; power-loss durability
//!   rests on `synchronous=FULL`, which `SqliteStore`'s unit tests check is set.)
//! - `the_database_files_never_contain_plaintext`: scans the database, WAL and shared-memory
//!   files for distinctive secret values, before and after a checkpoint, with a positive
//!   control proving the scan would have found them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keep_store::{RootKeySource, SqliteStore, Store, TxOp};

const CHILD_ENV: &str = "KEEP_STORE_DURABILITY_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_writes_survive_kill_9";

fn value(i: u64) -> Vec<u8> {
    format!("durable-secret-{i}-")
        .repeat(1 + (i % 7) as usize)
        .into_bytes()
}

/// The child: unseal, then write forever (bounded) and acknowledge each write on stdout.
/// Even `i` is a single put; odd `i` is a transaction of two puts, both of which must survive.
fn child_writer(dir: &Path) -> ! {
    let store = SqliteStore::open(dir.join("keep.db")).unwrap();
    let barrier = RootKeySource::KeyFile(dir.join("unseal.key"))
        .unseal(store)
        .unwrap();
    println!("READY");
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..1_000_000u64 {
        if Instant::now() > deadline {
            break;
        }
        let key = format!("dur/{i:07}");
        if i % 2 == 0 {
            barrier.put(&key, &value(i)).unwrap();
        } else {
            barrier
                .transaction(&[
                    TxOp::check(key.clone(), None),
                    TxOp::put(key.clone(), value(i)),
                    TxOp::put(format!("{key}/pair"), value(i)),
                ])
                .unwrap();
        }
        // One write(2) per line, flushed: a line on the pipe means the put had returned.
        println!("ACK {i} END");
    }
    std::process::exit(0)
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child_writer(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keep.db");
    RootKeySource::KeyFile(dir.path().join("unseal.key"))
        .initialize(SqliteStore::open(&db).unwrap())
        .unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            TEST_NAME,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Wait for READY (bounded), let it write for ~0.5 s and at least a few acks, then kill -9.
    let mut acked: Vec<u64> = Vec::new();
    let mut ready_at = None;
    let hard_deadline = Instant::now() + Duration::from_secs(30);
    let record = |line: &str, acked: &mut Vec<u64>| {
        if let Some(n) = line
            .strip_prefix("ACK ")
            .and_then(|rest| rest.strip_suffix(" END"))
        {
            acked.push(n.parse().unwrap());
        }
    };
    loop {
        let now = Instant::now();
        assert!(
            now < hard_deadline,
            "the writer did not get going within 30 s"
        );
        if let Some(t) = ready_at
            && now.duration_since(t) >= Duration::from_millis(500)
            && acked.len() >= 5
        {
            break;
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) if line == "READY" => ready_at = Some(Instant::now()),
            Ok(line) => record(&line, &mut acked),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the writer exited early; acks so far: {}", acked.len())
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished");
    // Whatever it acknowledged before dying is still in the pipe.
    reader.join().unwrap();
    for line in rx.try_iter() {
        record(&line, &mut acked);
    }

    let barrier = RootKeySource::KeyFile(dir.path().join("unseal.key"))
        .unseal(SqliteStore::open(&db).unwrap())
        .unwrap();
    for &i in &acked {
        let key = format!("dur/{i:07}");
        let got = barrier.get(&key).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(
            got.as_deref().map(Vec::as_slice),
            Some(value(i).as_slice()),
            "{key}"
        );
        if i % 2 == 1 {
            let pair = barrier.get(&format!("{key}/pair")).unwrap();
            assert_eq!(
                pair.as_deref().map(Vec::as_slice),
                Some(value(i).as_slice()),
                "{key}/pair"
            );
        }
    }
    // The write in flight at the kill is either wholly there or wholly absent, never corrupt.
    let next = acked.iter().max().map_or(0, |m| m + 1);
    let key = format!("dur/{next:07}");
    if let Some(v) = barrier.get(&key).unwrap() {
        assert_eq!(v.as_slice(), value(next).as_slice());
    }
    if next % 2 == 1 {
        let first = barrier.get(&key).unwrap().is_some();
        let pair = barrier.get(&format!("{key}/pair")).unwrap().is_some();
        assert_eq!(
            first, pair,
            "a transaction is all or nothing across a crash"
        );
    }
    eprintln!("{} acknowledged writes survived kill -9", acked.len());
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_of(db: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let p = format!("{}{suffix}", db.display());
            std::fs::read(&p).ok().map(|bytes| (p, bytes))
        })
        .collect()
}

#[test]
fn the_database_files_never_contain_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keep.db");
    let key_file = dir.path().join("unseal.key");
    let raw = Arc::new(SqliteStore::open(&db).unwrap());
    let barrier = RootKeySource::KeyFile(key_file.clone())
        .initialize(raw.clone())
        .unwrap();

    const CANARY: &str = "sk-canary-7f3a9c51e2d84b06";
    for i in 0..50 {
        let v = format!(
            r#"{{"api_key":"{CANARY}-{i}","note":"{}"}}"#,
            "x".repeat(i * 40)
        );
        barrier
            .put(&format!("secret/data/agent-{i:02}"), v.as_bytes())
            .unwrap();
    }
    barrier
        .transaction(&[
            TxOp::put("secret/data/tx", format!("{CANARY}-tx").into_bytes()),
            TxOp::check(
                "secret/data/agent-00",
                Some(format!(r#"{{"api_key":"{CANARY}-0","note":""}}"#).into_bytes()),
            ),
            TxOp::put(
                "secret/data/agent-00",
                format!("{CANARY}-overwritten").into_bytes(),
            ),
        ])
        .unwrap();
    barrier.rotate().unwrap();
    barrier
        .put(
            "secret/data/after-rotate",
            format!("{CANARY}-rotated").repeat(2000).as_bytes(),
        )
        .unwrap();
    barrier.delete("secret/data/agent-01").unwrap();
    // Positive control: the same scan must find a value written *around* the barrier.
    const CONTROL: &str = "positive-control-plaintext-4b1d";
    raw.put("control", CONTROL.as_bytes()).unwrap();

    let key_text = std::fs::read_to_string(&key_file).unwrap();
    let key_text = key_text.trim();
    let check = |when: &str| {
        let files = files_of(&db);
        assert!(!files.is_empty());
        let found_control = files.iter().any(|(_, b)| contains(b, CONTROL.as_bytes()));
        assert!(found_control, "{when}: the scan must see the control value");
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, CANARY.as_bytes()),
                "{when}: plaintext secret in {path}"
            );
            assert!(
                !contains(bytes, key_text.as_bytes()),
                "{when}: the unseal key in {path}"
            );
        }
    };
    check("before checkpoint");
    raw.checkpoint().unwrap();
    let wal_len = std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "TRUNCATE checkpoint empties the WAL");
    check("after checkpoint");
    // Only the main file now: it must hold the (encrypted) data and still no plaintext.
    let main = std::fs::read(&db).unwrap();
    assert!(
        contains(&main, b"secret/data/agent-02"),
        "key names are visible by design"
    );
    assert!(!contains(&main, CANARY.as_bytes()));
}
