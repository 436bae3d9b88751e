//! `keep check expiry` end to end: the real binary against certificates made fresh at run time
//! (keep-test-support), in files, a directory and a live TLS server (`openssl s_server` that
//! requires client certificates).
//!
//! Fixtures, each relative to "now" so they never go stale:
//!
//! | file | lifetime, time left | default (33%/10%) | --warn 30d --crit 7d |
//! |---|---|---|---|
//! | fresh.crt | 90 days, 89 days | ok | ok |
//! | short.crt | 24 hours, 6 hours (25%) | warn | crit |
//! | medium.crt | 60 days, 25 days (42%) | ok | warn |
//! | expired.crt | ended a day ago | crit | crit |
//! | future.crt | starts tomorrow | crit | crit |
//! | outlives.crt | leaf 365 days, its CA ends in 200 | crit | crit |
//! | old-ca.crt | leaf fine, its CA has 17% left | warn (chain) | … |
//!
//! Exit codes: 0 ok, 1 warn, 2 crit or unreadable input, 64 usage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration as StdDuration, Instant};

use keep_test_support::{LeafSpec, TestPki, tempdir};
use time::{Duration, OffsetDateTime};

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

/// Asserts the exit code, showing the output when it differs.
#[track_caller]
fn assert_code(out: &Output, want: i32) {
    assert_eq!(
        out.status.code(),
        Some(want),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Runs `keep check expiry ARGS` in `dir`, asserts the exit code, returns stdout.
#[track_caller]
fn check(dir: &Path, args: &[&str], want: i32) -> String {
    let mut full = vec!["check", "expiry"];
    full.extend_from_slice(args);
    let out = keep(dir, &full);
    assert_code(&out, want);
    stdout(&out)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

/// A server leaf for `cn` living `life`, with `left` of it still ahead.
fn spec(cn: &str, life: Duration, left: Duration) -> LeafSpec {
    let nb = now() - (life - left);
    LeafSpec::server(cn).valid(nb, nb + life)
}

/// Writes the fixtures of the table at the top into `dir` (chains, leaf first).
fn fixtures(pki: &TestPki, dir: &Path) {
    let put = |name: &str, pem: &str| fs::write(dir.join(name), pem).unwrap();
    let issue = |cn: &str, life: Duration, left: Duration| pki.issue(&spec(cn, life, left));
    put(
        "fresh.crt",
        &issue("fresh", Duration::days(90), Duration::days(89)).chain_pem,
    );
    put(
        "short.crt",
        &issue("short", Duration::hours(24), Duration::hours(6)).chain_pem,
    );
    put(
        "medium.crt",
        &issue("medium", Duration::days(60), Duration::days(25)).chain_pem,
    );
    put("expired.crt", &pki.expired_client.chain_pem);
    put("future.crt", &pki.not_yet_valid_client.chain_pem);

    let n = now();
    let short_ca =
        pki.issue_intermediate("Short CA", n - Duration::days(1), n + Duration::days(200));
    let outliving = short_ca.issue(&spec("outlives", Duration::days(366), Duration::days(365)));
    put("outlives.crt", &outliving.chain_pem);
    put("outlives-leaf.crt", &outliving.cert_pem);
    put("short-ca.crt", &short_ca.cert_pem);

    let old_ca = pki.issue_intermediate("Old CA", n - Duration::days(95), n + Duration::days(20));
    put(
        "old-ca.crt",
        &old_ca
            .issue(&spec(
                "under-old-ca",
                Duration::days(11),
                Duration::days(10),
            ))
            .chain_pem,
    );
    put("root.crt", &pki.root.cert_pem);
}

/// The text line of the certificate with exactly this subject; panics when there is none.
#[track_caller]
fn cert_line<'a>(text: &'a str, subject: &str) -> &'a str {
    let needle = format!("  {subject}  serial ");
    text.lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no line for {subject}:\n{text}"))
}

/// The text lines that mention `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn each_fixture_gets_its_status_and_exit_code() {
    let pki = TestPki::new();
    let tmp = tempdir();
    let dir = tmp.path();
    fixtures(&pki, dir);

    let out = check(dir, &["fresh.crt"], 0);
    let line = cert_line(&out, "CN=fresh");
    assert!(
        line.starts_with("OK    fresh.crt [1]  CN=fresh  serial "),
        "{out}"
    );
    assert!(
        line.contains("(in 89 days, 98.9% of its lifetime left)"),
        "{out}"
    );
    assert!(
        line.ends_with(": more than 33% of its lifetime left"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "leaf and intermediate: {out}");

    let out = check(dir, &["short.crt"], 1);
    let line = cert_line(&out, "CN=short");
    assert!(line.starts_with("WARN  short.crt [1]"), "{out}");
    assert!(
        line.contains("(in 6 hours, 25% of its lifetime left)"),
        "{out}"
    );
    assert!(
        line.ends_with("25% of its lifetime left, at or below --warn 33%"),
        "{out}"
    );

    let out = check(dir, &["medium.crt"], 0);
    assert!(cert_line(&out, "CN=medium").starts_with("OK "), "{out}");

    let out = check(dir, &["expired.crt"], 2);
    let line = cert_line(&out, "CN=agent-expired");
    assert!(line.starts_with("CRIT  expired.crt [1]"), "{out}");
    assert!(line.ends_with("(expired 1 day ago, 0% of its lifetime left): expired 1 day ago"));

    let out = check(dir, &["future.crt"], 2);
    let line = cert_line(&out, "CN=agent-future");
    assert!(line.starts_with("CRIT  future.crt [1]"), "{out}");
    assert!(line.contains("not valid yet: starts "), "{out}");

    // The worst certificate decides the exit code of a run over several sources.
    let out = check(dir, &["fresh.crt", "short.crt"], 1);
    assert_eq!(out.lines().count(), 4, "{out}");
    check(dir, &["fresh.crt", "short.crt", "expired.crt"], 2);
}

#[test]
fn absolute_thresholds_judge_by_time_left_and_relative_ones_by_lifetime() {
    let pki = TestPki::new();
    let tmp = tempdir();
    let dir = tmp.path();
    fixtures(&pki, dir);
    let abs = ["--warn", "30d", "--crit", "7d"];

    // 25 days left of 60: fine relative to its lifetime, but inside a 30-day window.
    let out = check(dir, &[&abs[..], &["medium.crt"]].concat(), 1);
    let line = cert_line(&out, "CN=medium");
    assert!(line.starts_with("WARN "), "{out}");
    assert!(
        line.ends_with("expires in 25 days, within --warn 30 days"),
        "{out}"
    );

    // A 24-hour certificate is always inside 7 days: an absolute threshold cries wolf.
    let out = check(dir, &[&abs[..], &["short.crt"]].concat(), 2);
    assert!(
        cert_line(&out, "CN=short").contains("within --crit 7 days"),
        "{out}"
    );

    check(dir, &[&abs[..], &["fresh.crt"]].concat(), 0);
    // Mixed kinds work too.
    check(dir, &["--warn", "30d", "--crit", "10%", "short.crt"], 1);
}

#[test]
fn chains_are_checked_cert_by_cert() {
    let pki = TestPki::new();
    let tmp = tempdir();
    let dir = tmp.path();
    fixtures(&pki, dir);

    // The leaf lives 165 days longer than the CA in its bundle.
    let out = check(dir, &["outlives.crt"], 2);
    let leaf = cert_line(&out, "CN=outlives");
    assert!(leaf.starts_with("CRIT  outlives.crt [1]"), "{out}");
    assert!(
        leaf.contains("outlives its issuer CN=Short CA,O=Keep Test PKI (which expires "),
        "{out}"
    );
    assert!(leaf.contains("165 days earlier"), "{out}");
    assert!(cert_line(&out, "CN=Short CA,O=Keep Test PKI").starts_with("OK    outlives.crt [2]"));

    // The leaf alone says nothing about its issuer …
    check(dir, &["outlives-leaf.crt"], 0);
    // … until the issuer is given with --roots (or its alias --ca), which completes the chain.
    let out = check(dir, &["outlives-leaf.crt", "--ca", "short-ca.crt"], 2);
    assert!(cert_line(&out, "CN=outlives").contains("outlives its issuer"));
    assert!(
        cert_line(&out, "CN=Short CA,O=Keep Test PKI").contains("[issuer from short-ca.crt [1]]"),
        "{out}"
    );

    // An intermediate near its end (17% left) drives the chain although the leaf is fine.
    let out = check(dir, &["old-ca.crt"], 1);
    assert!(
        cert_line(&out, "CN=under-old-ca").starts_with("OK "),
        "{out}"
    );
    let ca = cert_line(&out, "CN=Old CA,O=Keep Test PKI");
    assert!(ca.starts_with("WARN  old-ca.crt [2]"), "{out}");
    assert!(ca.contains("at or below --warn 33%"), "{out}");

    // --roots completes a chain with the root, which is checked too.
    let out = check(dir, &["fresh.crt", "--roots", "root.crt"], 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        cert_line(&out, "CN=Keep Test Root CA,O=Keep Test PKI")
            .contains("[issuer from root.crt [1]]")
    );
}

#[test]
fn json_has_every_field_and_the_overall_status() {
    let pki = TestPki::new();
    let tmp = tempdir();
    let dir = tmp.path();
    fixtures(&pki, dir);

    let out = check(dir, &["--format", "json", "short.crt", "outlives.crt"], 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["status"], "crit");
    assert_eq!(v["code"], 2);
    assert_eq!(
        (v["warn"].as_str(), v["crit"].as_str()),
        (Some("33%"), Some("10%"))
    );
    let certs = v["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 4, "{out}");
    let short = &certs[0];
    assert_eq!(short["source"], "short.crt");
    assert_eq!(short["subject"], "CN=short");
    assert_eq!(
        short["issuer"],
        "CN=Keep Test Intermediate CA,O=Keep Test PKI"
    );
    assert_eq!(short["status"], "warn");
    assert_eq!(short["chain_status"], "warn");
    assert_eq!(short["remaining"], "in 6 hours");
    let left = short["lifetime_left_percent"].as_f64().unwrap();
    assert!((left - 25.0).abs() < 0.1, "{left}");
    let secs = short["remaining_seconds"].as_i64().unwrap();
    assert!((6 * 3600 - 60..=6 * 3600).contains(&secs), "{secs}");
    assert!(short["reason"].as_str().unwrap().contains("--warn 33%"));
    let serial = short["serial"].as_str().unwrap();
    assert!(serial.contains(':') && serial.len() >= 47, "{serial}");
    assert_eq!(
        short["not_after_timestamp"].as_i64().unwrap(),
        OffsetDateTime::parse(
            short["not_after"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .unwrap()
        .unix_timestamp()
    );
    let outlives = certs
        .iter()
        .find(|c| c["subject"] == "CN=outlives")
        .unwrap();
    assert_eq!(outlives["status"], "crit");
    assert_eq!(outlives["from"], serde_json::Value::Null);
    assert!(v["errors"].as_array().unwrap().is_empty());

    let ok: serde_json::Value =
        serde_json::from_str(&check(dir, &["--format", "json", "fresh.crt"], 0)).unwrap();
    assert_eq!(ok["status"], "ok");
}

#[test]
fn prometheus_textfile_with_help_type_and_escaped_labels() {
    let pki = TestPki::new();
    let tmp = tempdir();
    let dir = tmp.path();
    let odd = pki.issue(&LeafSpec::client(r#"say "hi", ok\"#));
    fs::write(dir.join("odd.crt"), &odd.cert_pem).unwrap();
    fs::write(dir.join("expired.crt"), &pki.expired_client.cert_pem).unwrap();

    let before = now().unix_timestamp();
    let out = check(
        dir,
        &["--format", "prometheus", "odd.crt", "expired.crt"],
        2,
    );
    for family in [
        "keep_check_certificate_expiry_timestamp_seconds",
        "keep_check_certificate_not_before_timestamp_seconds",
        "keep_check_certificate_status",
        "keep_check_last_run_timestamp_seconds",
    ] {
        assert!(
            out.contains(&format!("\n# TYPE {family} gauge\n")),
            "{family}\n{out}"
        );
        assert!(
            out.contains(&format!("# HELP {family} ")),
            "{family}\n{out}"
        );
    }
    // RFC 4514 escapes the quotes, comma and backslash; the exposition format then escapes
    // every backslash and quote once more.
    let serial = odd
        .serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let labels =
        format!(r#"{{source="odd.crt",subject="CN=say \\\"hi\\\"\\, ok\\\\",serial="{serial}"}}"#);
    let want = format!("keep_check_certificate_status{labels} 0");
    assert!(out.lines().any(|l| l == want), "{want}\n{out}");
    let expiry = lines_with(
        &out,
        &format!("keep_check_certificate_expiry_timestamp_seconds{labels}"),
    );
    assert_eq!(expiry.len(), 1, "{out}");
    let not_after: i64 = expiry[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (not_after - (before + 30 * 86_400)).abs() < 120,
        "{not_after} vs {before}"
    );
    assert!(
        out.lines().any(|l| l.starts_with(
            "keep_check_certificate_status{source=\"expired.crt\",subject=\"CN=agent-expired\""
        ) && l.ends_with("} 2")),
        "{out}"
    );
    let last_run: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("keep_check_last_run_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((before..before + 60).contains(&last_run), "{last_run}");
    // Every sample line is NAME{labels} VALUE or NAME VALUE, with a numeric value.
    for l in out.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
        assert!(l.starts_with("keep_check_"), "{l}");
    }

    // --output writes the same file atomically, for node_exporter's textfile collector.
    let prom = dir.join("keep.prom");
    let out = check(
        dir,
        &["--format", "prometheus", "--output", "keep.prom", "odd.crt"],
        0,
    );
    assert!(out.is_empty(), "{out}");
    let written = fs::read_to_string(&prom).unwrap();
    assert!(written.lines().any(|l| l == want), "{written}");
}

#[test]
fn usage_errors_exit_64_and_unreadable_inputs_exit_2_naming_them() {
    let pki = TestPki::new();
    let tmp = tempdir();
    let dir = tmp.path();
    fixtures(&pki, dir);

    for (args, words) in [
        (
            &["--warn", "abc%", "fresh.crt"][..],
            "--warn \"abc%\" is neither a percentage",
        ),
        (&["--crit", "150%", "fresh.crt"][..], "between 0 and 100"),
        (&["--warn", "33", "fresh.crt"][..], "needs a unit"),
        (
            &["--warn", "10%", "--crit", "20%", "fresh.crt"][..],
            "swap them",
        ),
        (
            &["--format", "yaml", "fresh.crt"][..],
            "invalid value 'yaml'",
        ),
        (&[][..], "required arguments were not provided"),
        (
            &["--output", "no/such/dir/x.prom", "fresh.crt"][..],
            "does not exist",
        ),
    ] {
        let mut full = vec!["check", "expiry"];
        full.extend_from_slice(args);
        let out = keep(dir, &full);
        assert_code(&out, 64);
        assert!(stderr(&out).contains(words), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }

    // A missing file is critical: the check must not go green because its input vanished.
    let out = keep(dir, &["check", "expiry", "fresh.crt", "gone.crt"]);
    assert_code(&out, 2);
    assert!(stdout(&out).contains("OK    fresh.crt"), "{}", stdout(&out));
    let line = lines_with(&stdout(&out), "gone.crt")
        .into_iter()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        line.starts_with("CRIT  gone.crt  cannot check: cannot read gone.crt"),
        "{line}"
    );

    fs::write(dir.join("notes.crt"), "not a certificate\n").unwrap();
    let out = keep(dir, &["check", "expiry", "--format", "json", "notes.crt"]);
    assert_code(&out, 2);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["status"], "crit");
    assert_eq!(v["errors"][0]["source"], "notes.crt");
    assert!(
        v["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no PEM block found"),
        "{v}"
    );
    assert!(
        stderr(&out).contains("error: notes.crt: file notes.crt"),
        "{}",
        stderr(&out)
    );

    // A private key named explicitly is an error too (only a DIR scan skips keys).
    let key = pki.client.write_to(dir, "agent");
    let out = keep(dir, &["check", "expiry", key.key.to_str().unwrap()]);
    assert_code(&out, 2);
    assert!(
        stdout(&out).contains("this is a private key"),
        "{}",
        stdout(&out)
    );

    // An unreadable --roots file is reported the same way.
    let out = keep(
        dir,
        &["check", "expiry", "fresh.crt", "--roots", "nope.crt"],
    );
    assert_code(&out, 2);
    assert!(stdout(&out).contains("CRIT  nope.crt  cannot check: cannot read nope.crt"));
}

#[test]
fn a_directory_is_scanned_for_certificates_skipping_keys() {
    let pki = TestPki::new();
    let tmp = tempdir();
    let dir = tmp.path();
    let certs = dir.join("certs");
    fs::create_dir_all(certs.join("sub")).unwrap();
    let fresh = pki.issue(&spec("fresh", Duration::days(90), Duration::days(89)));
    let short = pki.issue(&spec("short", Duration::hours(24), Duration::hours(6)));
    fs::write(certs.join("fresh.crt"), &fresh.chain_pem).unwrap();
    fs::write(certs.join("short.PEM"), &short.cert_pem).unwrap();
    fs::write(certs.join("root.cer"), &pki.root.der).unwrap(); // DER is fine too
    fs::write(certs.join("privkey.pem"), &fresh.key_pem).unwrap();
    fs::write(certs.join("README.txt"), "not looked at").unwrap();
    fs::write(certs.join("sub/expired.crt"), &pki.expired_client.cert_pem).unwrap();

    let out = check(dir, &["certs"], 1);
    let sources: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            "certs/fresh.crt",
            "certs/fresh.crt",
            "certs/root.cer",
            "certs/short.PEM"
        ],
        "{out}"
    );
    assert!(cert_line(&out, "CN=short").starts_with("WARN  certs/short.PEM [1]"));
    assert!(
        !out.contains("privkey") && !out.contains("expired"),
        "{out}"
    );

    // A file that is not a certificate is an error naming it; the rest is still checked.
    fs::write(
        certs.join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
    )
    .unwrap();
    let out = check(dir, &["certs"], 2);
    let broken = lines_with(&out, "broken.pem");
    assert_eq!(broken.len(), 1, "{out}");
    assert!(
        broken[0]
            .starts_with("CRIT  certs/broken.pem  cannot check: file certs/broken.pem, line 1")
    );
    assert_eq!(lines_with(&out, "CN=").len(), 4, "{out}");

    // A directory without certificate files is an error, not a silent success.
    fs::create_dir(dir.join("empty")).unwrap();
    let out = check(dir, &["empty"], 2);
    assert!(out.contains("holds no certificate files"), "{out}");
}

/// An `openssl s_server` child, killed when dropped so a failed assertion leaks no process.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts s_server on a free 127.0.0.1 port with `cert`/`key`/`chain` files in `dir`,
    /// requiring client certificates from `ca`, and waits (bounded) until it listens.
    fn start(dir: &Path) -> Server {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("openssl")
                .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
                .args(["-cert", "server.crt", "-key", "server.key"])
                .args(["-cert_chain", "chain.crt", "-CAfile", "root.crt"])
                .args(["-Verify", "1", "-verify_return_error", "-www"])
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run openssl s_server (is openssl installed?)");
            let mut server = Server { child, port };
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + StdDuration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, StdDuration::from_millis(200)).is_ok() {
                    return server;
                }
                std::thread::sleep(StdDuration::from_millis(50));
            }
            // Dropping `server` kills it; try another port.
        }
        panic!("openssl s_server did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_live_endpoint_that_requires_client_certs_is_checked() {
    let pki = TestPki::new();
    let tmp = tempdir();
    let dir = tmp.path();
    // A 24-hour server certificate with 6 hours left: warn by lifetime.
    let server = pki.issue(
        &spec(
            "vault.claw.internal",
            Duration::hours(24),
            Duration::hours(6),
        )
        .dns("localhost")
        .ip(std::net::Ipv4Addr::LOCALHOST),
    );
    let files = server.write_to(dir, "server");
    assert_eq!(files.key, dir.join("server.key"));
    fs::write(dir.join("chain.crt"), &pki.intermediate.cert_pem).unwrap();
    fs::write(dir.join("root.crt"), &pki.root.cert_pem).unwrap();
    let s = Server::start(dir);
    let url = format!("https://127.0.0.1:{}", s.port);

    let out = check(dir, &[&url], 1);
    let leaf = cert_line(&out, "CN=vault.claw.internal");
    assert!(leaf.starts_with(&format!("WARN  {url} [1]")), "{out}");
    assert!(
        leaf.contains(&format!("serial {}", json_serial(dir, &url))),
        "{out}"
    );
    assert!(
        cert_line(&out, "CN=Keep Test Intermediate CA,O=Keep Test PKI")
            .starts_with(&format!("OK    {url} [2]"))
    );

    // The root the server does not send comes from --roots; the absolute view says crit.
    let out = check(
        dir,
        &[&url, "--roots", "root.crt", "--warn", "30d", "--crit", "7d"],
        2,
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(cert_line(&out, "CN=vault.claw.internal").starts_with("CRIT "));

    // Nobody listening: critical, naming the endpoint.
    drop(s);
    let out = keep(dir, &["check", "expiry", "--timeout", "3s", &url]);
    assert_code(&out, 2);
    assert!(
        stdout(&out).contains(&format!(
            "CRIT  {url}  cannot check: cannot connect to 127.0.0.1:"
        )),
        "{}",
        stdout(&out)
    );
}

/// The leaf's serial as `--format json` reports it (to match against the text line).
fn json_serial(dir: &Path, url: &str) -> String {
    let out = keep(dir, &["check", "expiry", "--format", "json", url]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["certificates"][0]["serial"].as_str().unwrap().to_owned()
}
