//! Over HTTP/2 every refusal of a real `keep server` reaches the client as a status and Vault's
//! `{"errors":[…]}` body, also when the answer comes before the request body was read: the
//! server drains a bounded rest instead of resetting the stream under a client that is still
//! sending (curl 7.x, Debian 12's, drops the answer on such a reset), and resets it (after the
//! answer, `NO_ERROR`) when the rest is too large or the client too slow.
//!
//! Clients: curl `--http2` and the `h2` crate at the frame level, over real mTLS on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use hyper::body::Bytes;
use keep_test_support::lab::Lab;
use keep_tls::client::{ClientIdentity, ClientSettings, PemInput};
use keep_tls::tokio_rustls::TlsConnector;
use keep_tls::tokio_rustls::rustls::pki_types::ServerName;
use serde_json::Value;

const LIMIT: usize = 131_072;
const LIMITS: &str = "    max_request_bytes: 131072\n    body_read_timeout: 2s\n";

fn lab() -> Lab {
    let lab = Lab::with_limits(Path::new(env!("CARGO_BIN_EXE_keep")), LIMITS);
    lab.init();
    lab
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP/2 connection (ALPN `h2`) as the admin.
async fn h2_connect(lab: &Lab) -> SendRequest<Bytes> {
    let mut settings = ClientSettings::new(PemInput::file("ca", &lab.files.root_cert).unwrap())
        .with_identity(ClientIdentity {
            cert: PemInput::file("cert", &lab.files.admin_cert).unwrap(),
            key: PemInput::file("key", &lab.files.admin_key).unwrap(),
            key_password: None,
        });
    settings.alpn = vec![b"h2".to_vec()];
    let config = keep_tls::client::build(&settings).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", lab.port))
        .await
        .unwrap();
    let tls = TlsConnector::from(Arc::clone(&config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.unwrap()
}

/// Opens a `PUT` stream on `path` with `headers`, the body still open.
fn put(
    send: &mut SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
) -> (h2::client::ResponseFuture, SendStream<Bytes>) {
    let mut req = hyper::Request::builder()
        .method("PUT")
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send.send_request(req.body(()).unwrap(), false).unwrap()
}

/// The whole response body (releasing flow-control capacity as it goes).
async fn read_body(mut body: RecvStream) -> Value {
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(format!("{bytes:?}")))
}

/// Waits (≤ `within`) for the server to reset `stream`; `None` if it did not.
async fn reset_within(stream: &mut SendStream<Bytes>, within: Duration) -> Option<Reason> {
    tokio::time::timeout(within, std::future::poll_fn(|cx| stream.poll_reset(cx)))
        .await
        .ok()
        .and_then(Result::ok)
}

fn errors(v: &Value) -> String {
    v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("not Vault's error shape: {v}"))
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

/// curl `--http2` as the admin with `body` from a file (`-T -`: streamed, no Content-Length):
/// (status, HTTP version, body).
fn curl_h2(lab: &Lab, path: &str, body: &Path, streamed: bool) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http2", "-X", "PUT", "--cacert"])
        .arg(&lab.files.root_cert)
        .arg("--cert")
        .arg(&lab.files.admin_cert)
        .arg("--key")
        .arg(&lab.files.admin_key)
        .args(["-H", "Content-Type: application/json"])
        .args(["-w", "\n%{http_code} %{http_version}"]);
    if streamed {
        cmd.arg("-T")
            .arg("-")
            .stdin(std::fs::File::open(body).unwrap());
    } else {
        cmd.arg("--data-binary").arg(format!("@{}", body.display()));
    }
    let out = cmd.arg(format!("{}{path}", lab.url())).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
    let (code, version) = tail.split_once(' ').unwrap_or(("0", "0"));
    (
        code.trim().parse().unwrap_or(0),
        version.to_owned(),
        format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// curl keeps uploading after an early answer and, on a reset, drops the answer (curl 7.88 says
/// "Stream error in the HTTP/2 framing layer"): with the bounded drain it gets the 413 or 400
/// and Vault's error body, whether the length was declared or not.
#[test]
fn curl_over_http2_gets_the_status_and_vault_errors_for_early_answers() {
    let lab = lab();
    let _server = lab.start();
    let big = lab.dir.join("big.json");
    // Over the limit, far past HTTP/2's initial windows (64 KiB), within the drain budget.
    std::fs::write(&big, vec![b'x'; 6 * LIMIT]).unwrap();
    for streamed in [false, true] {
        let (code, version, body) = curl_h2(&lab, "/v1/secret/data/big", &big, streamed);
        assert_eq!(
            (code, version.as_str()),
            (413, "2"),
            "streamed {streamed}: {body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            errors(&v).contains(&format!("the limit is {LIMIT} bytes")),
            "{v}"
        );
    }
    // The path limit answers before the body is read, too.
    let long = format!("/v1/secret/data/{}", "p".repeat(800));
    let (code, version, body) = curl_h2(&lab, &long, &big, false);
    assert_eq!((code, version.as_str()), (400, "2"), "{body}");
    assert!(body.contains("request path too long"), "{body}");
    let (code, _) = lab.curl("GET", "/v1/secret/data/big", None);
    assert_eq!(code, 404, "nothing stored");
    // A header list over HTTP/2's 16 KiB is refused by the protocol layer: a 431 status (no
    // body: keep never sees the request), not a reset (docs/server.md).
    let headers = lab.dir.join("headers.txt");
    std::fs::write(&headers, format!("X-Big: {}\n", "b".repeat(20_000))).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&lab.files.root_cert)
        .arg("--cert")
        .arg(&lab.files.admin_cert)
        .arg("--key")
        .arg(&lab.files.admin_key)
        .arg("-H")
        .arg(format!("@{}", headers.display()))
        .args(["-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
        .arg(format!("{}/v1/sys/health", lab.url()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "431 2");
}

/// At the frame level: the 413 comes while the client is still sending; the stream is not reset
/// under it, the client can finish its body, and the connection serves the next request. A
/// rest larger than the drain budget (declared) is reset right after the answer, `NO_ERROR`.
#[test]
fn an_early_413_is_answered_then_drained_within_a_budget() {
    let lab = lab();
    let _server = lab.start();
    runtime().block_on(async {
        let mut send = h2_connect(&lab).await;
        let total = 6 * LIMIT;
        let (response, mut body) = put(
            &mut send,
            "/v1/secret/data/big",
            &[("content-length", &total.to_string())],
        );
        body.send_data(Bytes::from(vec![b'x'; 16_384]), false)
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("no answer in 5 s")
            .unwrap();
        assert_eq!(response.status(), 413);
        let v = read_body(response.into_body()).await;
        assert!(
            errors(&v).contains(&format!(
                "(Content-Length {total}): the limit is {LIMIT} bytes"
            )),
            "{v}"
        );
        assert_eq!(
            reset_within(&mut body, Duration::from_millis(500)).await,
            None,
            "the stream was reset under a client still sending"
        );
        let mut sent = 16_384;
        while sent < total {
            let n = (total - sent).min(16_384);
            sent += n;
            body.send_data(Bytes::from(vec![b'x'; n]), sent == total)
                .expect("sending the rest of the body");
        }
        // The server read it all (its flow-control windows opened): the next request works.
        let next = hyper::Request::get("https://localhost/v1/sys/health")
            .body(())
            .unwrap();
        let mut send = send.ready().await.unwrap();
        let (response, _) = send.send_request(next, true).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("the connection stalled after the drained body")
            .unwrap();
        assert_eq!(response.status(), 200);

        // Declared far over the drain budget: the answer, then the reset at once.
        let huge = 100 * 1024 * 1024;
        let (response, mut body) = put(
            &mut send,
            "/v1/secret/data/big",
            &[("content-length", &huge.to_string())],
        );
        body.send_data(Bytes::from(vec![b'x'; 1024]), false)
            .unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 413);
        assert!(errors(&read_body(response.into_body()).await).contains("the limit is"));
        assert_eq!(
            reset_within(&mut body, Duration::from_secs(2)).await,
            Some(Reason::NO_ERROR)
        );
    });
}

/// A body stalled past `body_read_timeout` gets 408 with Vault's error body over HTTP/2, and
/// its stream is then reset (`NO_ERROR`), not drained for a client this slow. With
/// `Expect: 100-continue` and a declared length over the limit, 413 comes at once.
#[test]
fn stalled_and_expect_continue_bodies_over_http2_get_their_status_and_errors() {
    let lab = lab();
    let _server = lab.start();
    runtime().block_on(async {
        let mut send = h2_connect(&lab).await;
        let (response, mut body) = put(
            &mut send,
            "/v1/secret/data/slow",
            &[("content-length", "100000")],
        );
        body.send_data(Bytes::from_static(b"{\"data\""), false)
            .unwrap();
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("no answer to a stalled body in 10 s")
            .unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(response.status(), 408);
        let v = read_body(response.into_body()).await;
        assert!(
            errors(&v).contains("request body not received within 2s"),
            "{v}"
        );
        assert_eq!(
            reset_within(&mut body, Duration::from_secs(1)).await,
            Some(Reason::NO_ERROR)
        );

        let mut send = send.ready().await.unwrap();
        let (response, _body) = put(
            &mut send,
            "/v1/secret/data/big",
            &[
                ("content-length", &(2 * LIMIT).to_string()),
                ("expect", "100-continue"),
            ],
        );
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("no answer to Expect: 100-continue in 5 s")
            .unwrap();
        assert_eq!(response.status(), 413);
        assert!(errors(&read_body(response.into_body()).await).contains("the limit is"));
    });
}

/// A connection over `per_identity_connections` is answered, not just closed: its request gets
/// 429, Vault's error body naming the limit, and `Retry-After`, over HTTP/2 and HTTP/1.1; once
/// the certificate's other connection closes, a new one is served.
#[test]
fn a_connection_over_the_certificate_bound_gets_429_and_the_reason() {
    let lab = Lab::with_limits(
        Path::new(env!("CARGO_BIN_EXE_keep")),
        &format!("{LIMITS}    per_identity_connections: 1\n"),
    );
    lab.init();
    let _server = lab.start();
    let health = || {
        hyper::Request::get("https://localhost/v1/sys/health")
            .body(())
            .unwrap()
    };
    runtime().block_on(async {
        let mut first = h2_connect(&lab).await;
        let (response, _) = first.send_request(health(), true).unwrap();
        assert_eq!(response.await.unwrap().status(), 200);

        let mut second = h2_connect(&lab).await;
        let (response, _) = second.send_request(health(), true).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("no answer on the refused connection")
            .unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        let v = read_body(response.into_body()).await;
        assert!(
            errors(&v).contains(
                "too many connections for this client certificate: the limit is 1 (listener.limits.per_identity_connections)"
            ),
            "{v}"
        );

        // HTTP/1.1 (curl) while the first connection is still open.
        let out = Command::new("curl")
            .args(["-sS", "--http1.1", "--cacert"])
            .arg(&lab.files.root_cert)
            .arg("--cert")
            .arg(&lab.files.admin_cert)
            .arg("--key")
            .arg(&lab.files.admin_key)
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{}/v1/sys/health", lab.url()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.ends_with("\n429"), "{text}");
        assert!(text.contains("listener.limits.per_identity_connections"), "{text}");

        drop(first);
        // The slot is free again (the server notices the close within moments).
        let started = Instant::now();
        loop {
            let mut again = h2_connect(&lab).await;
            let (response, _) = again.send_request(health(), true).unwrap();
            let status = response.await.unwrap().status();
            if status == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "still {status} after the first connection closed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
