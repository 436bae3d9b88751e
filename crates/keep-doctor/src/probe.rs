//! Talking to the server the way the agent will, but recording every step so each can be its
//! own check: name resolution, TCP, the TLS handshake (does it speak TLS at all?), the chain
//! the server presents, whether it asks for a client certificate and from which CAs, and
//! whether it accepts ours (with TLS 1.3 that is only known after one request).
//!
//! The probe accepts any server certificate so that it can go on to learn about client
//! authentication even when the server's certificate is wrong; the chain is checked separately
//! against the configured CA, and nothing secret is sent on this connection (one
//! `GET /v1/sys/health`, no token). Handshake signatures are still verified for real.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, ClientConnection, SignatureScheme};

/// The client identity to present.
pub struct Identity {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The matching private key (plain PKCS#8; dropped with the probe).
    pub key: PrivateKeyDer<'static>,
}

/// Resolves `host` (a name or an IP literal) and `port`.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let v: Vec<SocketAddr> = addrs.collect();
            if v.is_empty() {
                Err(format!("{host} has no address"))
            } else {
                Ok(v)
            }
        }
        Err(e) => Err(format!(
            "{host} does not resolve: {}",
            crate::files::io_words(&e)
        )),
    }
}

/// Connects to the first address that answers.
pub fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    let mut errors = Vec::new();
    for a in addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(timeout));
                let _ = s.set_write_timeout(Some(timeout));
                return Ok(s);
            }
            Err(e) => errors.push(format!("{a}: {}", connect_words(&e))),
        }
    }
    Err(errors.join("; "))
}

fn connect_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused (nothing listens there)".into()
        }
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            "no answer (timed out; a firewall dropping packets, or the wrong host)".into()
        }
        _ => crate::files::io_words(e),
    }
}

/// How the TLS handshake went.
#[derive(Debug, Clone)]
pub enum Handshake {
    /// Completed: protocol version and cipher suite.
    Done {
        /// `TLSv1_3` …
        version: String,
        /// `TLS13_AES_256_GCM_SHA384` …
        suite: String,
    },
    /// The server answered the ClientHello with plain HTTP.
    PlainHttp {
        /// The first line it sent.
        first_line: String,
    },
    /// The server sent a fatal alert during the handshake.
    Alert(AlertDescription),
    /// Anything else (closed, garbage, no common version).
    Failed(String),
}

/// What the first request after the handshake got.
#[derive(Debug, Clone)]
pub enum Answer {
    /// An HTTP response: its status line.
    Http(String),
    /// A fatal alert (TLS 1.3: the server's verdict on our certificate).
    Alert(AlertDescription),
    /// The connection closed without an answer.
    Closed(String),
}

/// Everything the probe saw.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The handshake's outcome.
    pub handshake: Handshake,
    /// The chain the server presented (leaf first), unverified; empty if it sent none.
    pub presented: Vec<Vec<u8>>,
    /// `Some(hints)` when the server asked for a client certificate: the DER distinguished
    /// names of the CAs it accepts (may be empty: "any").
    pub cert_request: Option<Vec<Vec<u8>>>,
    /// Whether we had a certificate to send when asked.
    pub sent_cert: bool,
    /// The answer to `GET /v1/sys/health` (when the handshake completed).
    pub answer: Option<Answer>,
}

/// Presents our certificate (if any) and records the CertificateRequest's CA names.
#[derive(Debug)]
struct Record {
    key: Option<Arc<CertifiedKey>>,
    hints: Mutex<Option<Vec<Vec<u8>>>>,
}

impl ResolvesClientCert for Record {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        *self.hints.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(root_hint_subjects.iter().map(|h| h.to_vec()).collect());
        self.key.clone()
    }

    // True even without a key, so that a CertificateRequest still reaches `resolve` and its
    // CA list is recorded; we then answer with an empty certificate, as a client without one
    // does.
    fn has_certs(&self) -> bool {
        true
    }
}

/// A socket that remembers the first bytes it read (to recognise a plain-HTTP answer).
struct Tap<'a> {
    tcp: &'a mut TcpStream,
    first: Vec<u8>,
}

impl Read for Tap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        if self.first.len() < 64 {
            let take = (64 - self.first.len()).min(n);
            self.first.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
}

impl Write for Tap<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// Runs the handshake on `tcp` with SNI `host`, presenting `identity`, then one request.
pub fn handshake(
    mut tcp: TcpStream,
    host: &str,
    identity: Option<Identity>,
) -> Result<Probe, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = match identity {
        Some(id) => Some(Arc::new(
            CertifiedKey::from_der(id.chain, id.key, &provider)
                .map_err(|e| format!("the client certificate and key cannot be used: {e}"))?,
        )),
        None => None,
    };
    let sent_cert = key.is_some();
    let capture = Arc::new(keep_tls::probe::CaptureChain::new(&provider));
    let record = Arc::new(Record {
        key,
        hints: Mutex::new(None),
    });
    // keep's own policy (TLS 1.3, TLS 1.2 ECDHE+AEAD): the default aws-lc-rs provider is
    // exactly that list (keep-tls' suites module).
    let mut config =
        ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(capture.clone())
            .with_client_cert_resolver(record.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is not a valid server name"))?;
    let mut conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tap = Tap {
        tcp: &mut tcp,
        first: Vec::new(),
    };
    let mut failure = None;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tap) {
            failure = Some(e);
            break;
        }
    }
    let presented = capture.chain();
    let cert_request = record
        .hints
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let handshake = match failure {
        Some(e) => {
            if tap.first.starts_with(b"HTTP/") {
                let text = String::from_utf8_lossy(&tap.first);
                Handshake::PlainHttp {
                    first_line: text.lines().next().unwrap_or_default().to_owned(),
                }
            } else {
                match rustls_error(&e) {
                    Some(rustls::Error::AlertReceived(a)) => Handshake::Alert(*a),
                    Some(other) => Handshake::Failed(other.to_string()),
                    None => Handshake::Failed(crate::files::io_words(&e)),
                }
            }
        }
        None => Handshake::Done {
            version: conn
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            suite: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or_default()
                .to_owned(),
        },
    };
    let answer = match handshake {
        Handshake::Done { .. } => Some(request(&mut conn, &mut tap, host)),
        _ => None,
    };
    Ok(Probe {
        handshake,
        presented,
        cert_request,
        sent_cert,
        answer,
    })
}

/// `GET /v1/sys/health` and the status line of the answer, or why there was none.
fn request(conn: &mut ClientConnection, tap: &mut Tap<'_>, host: &str) -> Answer {
    let mut stream = rustls::Stream::new(conn, tap);
    let req = format!(
        "GET /v1/sys/health HTTP/1.1\r\nHost: {host}\r\nUser-Agent: keep-doctor\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = stream
        .write_all(req.as_bytes())
        .and_then(|()| stream.flush())
    {
        return from_io(&e);
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(2).any(|w| w == b"\r\n") || got.len() > 4096 {
                    break;
                }
            }
            Err(e) => {
                if got.is_empty() {
                    return from_io(&e);
                }
                break;
            }
        }
    }
    if got.is_empty() {
        return Answer::Closed("the connection closed without an answer".into());
    }
    let text = String::from_utf8_lossy(&got);
    Answer::Http(text.lines().next().unwrap_or_default().trim().to_owned())
}

fn from_io(e: &std::io::Error) -> Answer {
    match rustls_error(e) {
        Some(rustls::Error::AlertReceived(a)) => Answer::Alert(*a),
        Some(other) => Answer::Closed(other.to_string()),
        None => Answer::Closed(crate::files::io_words(e)),
    }
}

/// What an alert about our certificate usually means, and what to do.
pub fn alert_advice(a: AlertDescription) -> (&'static str, &'static str) {
    match a {
        AlertDescription::UnknownCA => (
            "the server does not trust the CA that issued our certificate",
            "get a certificate from a CA in the server's listener.tls.client_ca_file, or add our issuer (and its root) to that file",
        ),
        AlertDescription::CertificateExpired => (
            "our certificate has expired or is not valid yet (by the server's clock)",
            "renew the certificate; check both hosts' clocks",
        ),
        AlertDescription::CertificateRevoked => (
            "our certificate is revoked (listed in the server's CRL)",
            "issue a new certificate for this agent",
        ),
        AlertDescription::UnsupportedCertificate | AlertDescription::BadCertificate => (
            "the server refuses our certificate as such (typically: no clientAuth extended key usage)",
            "reissue it with the clientAuth EKU: keep certificate create … --profile leaf --eku client",
        ),
        AlertDescription::CertificateRequired => (
            "the server requires a client certificate and we sent none",
            "configure vault_connection.mtls.cert_file and key_file",
        ),
        AlertDescription::DecryptError => (
            "the handshake signature made with our key did not verify (key and certificate do not belong together?)",
            "point key_file at the key this certificate was issued for",
        ),
        _ => (
            "the server ended the handshake",
            "look at the server's log: its handshake-failure event names the reason",
        ),
    }
}
