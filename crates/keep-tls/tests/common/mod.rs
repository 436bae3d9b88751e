//! Helpers shared by the listener tests: a real `listener::serve` on 127.0.0.1:0 with a tiny
//! HTTP/1.1 handler, rustls and openssl clients, the Prometheus recorder, and bounded waits.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use keep_tls::client::{ClientIdentity, ClientSettings, PemInput};
use keep_tls::events::{MemorySink, SecurityEvent};
use keep_tls::listener::{self, ConnInfo, ListenerOptions, ShutdownTrigger};
use keep_tls::reload::ReloadableTls;
use keep_tls::server::TlsSettings;
use keep_tls::tokio_rustls::{TlsConnector, client, server};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Upper bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(5);

/// Serialises the tests of one binary: the metrics recorder is process-wide and each test
/// asserts exact counter increments, so two tests must not fail handshakes at the same time.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The process-wide Prometheus recorder (one per test binary).
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .expect("install the Prometheus recorder");
        keep_tls::counters::describe();
        handle
    })
}

/// The rendered value of `keep_tls_handshake_failures_total{reason="…"}` (0 when absent).
pub fn failures(reason: &str) -> u64 {
    rendered_value(&format!(
        "keep_tls_handshake_failures_total{{reason=\"{reason}\"}}"
    ))
}

/// The rendered value of a series given as `name{labels}`.
pub fn rendered_value(series: &str) -> u64 {
    let text = metrics().render();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A running listener.
pub struct Server {
    pub addr: SocketAddr,
    pub tls: ReloadableTls,
    pub events: Arc<MemorySink>,
    /// One `ConnInfo` per verified connection, sent when its first request arrives.
    pub conns: mpsc::UnboundedReceiver<ConnInfo>,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts `listener::serve` with the test handler.
    pub async fn start(settings: TlsSettings, opts: ListenerOptions) -> Server {
        metrics();
        let events = Arc::new(MemorySink::new());
        let tls = ReloadableTls::new(settings, events.clone()).expect("the test TLS config builds");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (trigger, signal) = listener::shutdown_channel();
        let (tx, conns) = mpsc::unbounded_channel();
        let task = tokio::spawn(listener::serve(
            tcp,
            tls.clone(),
            opts,
            events.clone(),
            signal,
            move |stream, info| http_handler(stream, info, tx.clone()),
        ));
        Server {
            addr,
            tls,
            events,
            conns,
            trigger,
            task,
        }
    }

    /// Waits for the next event after the first `seen` ones.
    pub async fn event_after(&self, seen: usize) -> SecurityEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            let events = self.events.events();
            if events.len() > seen {
                return events[seen].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no security event within {WAIT:?} (have {})",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the listener and waits (bounded) for it to return.
    pub async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}

/// The test handler: answers every HTTP/1.1 request with `200` and a body naming the client's
/// common name; closes after a request with `Connection: close`, at EOF, or when shutdown
/// starts while it waits for a request. Sends its `ConnInfo` on the first request.
async fn http_handler(
    mut stream: server::TlsStream<TcpStream>,
    info: ConnInfo,
    tx: mpsc::UnboundedSender<ConnInfo>,
) {
    let cn = info
        .identity
        .as_ref()
        .and_then(|id| id.common_name.clone())
        .unwrap_or_else(|| "anonymous".into());
    let shutdown = info.shutdown.clone();
    let mut info = Some(info);
    loop {
        // Between requests, a shutdown closes the idle keep-alive connection (graceful: a
        // request in progress is still answered).
        let head = tokio::select! {
            head = read_head(&mut stream) => head,
            () = shutdown.triggered() => None,
        };
        let Some(head) = head else {
            let _ = stream.shutdown().await;
            return;
        };
        if let Some(info) = info.take() {
            let _ = tx.send(info);
        }
        let body = format!("hello {cn}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
        if head.to_ascii_lowercase().contains("connection: close") {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Reads bytes until `\r\n\r\n` (at most 16 KiB); `None` at EOF or error.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return None;
        }
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads one response: the head, then `Content-Length` bytes of body.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            Ok(_) => return Err(format!("connection closed ({} bytes read)", buf.len())),
            Err(e) => return Err(e.to_string()),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{head}{}", String::from_utf8_lossy(&body)))
}

/// A client config trusting `ca` and presenting `cert`/`key` when given.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    client_config_with(ca, identity, |_| {})
}

/// Like [`client_config`], with the settings adjusted by `adjust`.
pub fn client_config_with(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    adjust: impl FnOnce(&mut ClientSettings),
) -> Arc<ClientConfig> {
    let mut settings = ClientSettings::new(PemInput::file("ca_cert_file", ca).unwrap());
    if let Some((cert, key)) = identity {
        settings = settings.with_identity(ClientIdentity {
            cert: PemInput::file("cert_file", cert).unwrap(),
            key: PemInput::file("key_file", key).unwrap(),
            key_password: None,
        });
    }
    settings.alpn = vec![b"http/1.1".to_vec()];
    adjust(&mut settings);
    keep_tls::client::build(&settings).unwrap()
}

/// A TLS connection from a rustls client, kept open for several requests.
pub struct HttpConn {
    pub stream: client::TlsStream<TcpStream>,
}

impl HttpConn {
    /// Connects and completes the client side of the handshake (with TLS 1.3 this succeeds
    /// even when the server will reject the client certificate: that shows on the first read).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> Result<HttpConn, String> {
        let fut = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
            TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))
        };
        let stream = tokio::time::timeout(WAIT, fut)
            .await
            .map_err(|_| "handshake timed out".to_owned())??;
        Ok(HttpConn { stream })
    }

    /// Sends `GET /` and reads the response.
    pub async fn get(&mut self) -> Result<String, String> {
        let fut = async {
            self.stream
                .write_all(b"GET / HTTP/1.1\r\nHost: vault.claw.internal\r\n\r\n")
                .await
                .map_err(|e| e.to_string())?;
            self.stream.flush().await.map_err(|e| e.to_string())?;
            read_response(&mut self.stream).await
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .map_err(|_| "request timed out".to_owned())?
    }

    /// The server's certificate chain as the client received it.
    pub fn server_chain(&self) -> Vec<CertificateDer<'static>> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }
}

/// One request on a fresh connection: the response text, or what the client saw instead.
pub async fn one_request(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> Result<String, String> {
    let mut conn = HttpConn::connect(addr, config, server_name).await?;
    conn.get().await
}

/// Output of a bounded external command.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `openssl s_client` against `addr` with `args`, feeding `stdin`; killed after `WAIT`.
pub fn s_client(addr: SocketAddr, args: &[&str], stdin: &[u8]) -> CmdOutput {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        let _ = input.write_all(stdin);
    }
    let deadline = Instant::now() + WAIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    CmdOutput {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `check` every 20 ms until it holds or `WAIT` passes; returns whether it held.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The serial of a certificate as `keep certificate inspect` prints it.
pub fn serial_of(der: &[u8]) -> String {
    keep_pki::inspect::inspect(der).unwrap().serial
}

/// Colon-separated lowercase hex, as serials are printed.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
