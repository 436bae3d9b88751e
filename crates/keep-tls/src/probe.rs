//! Fetch the certificate chain a TLS server presents, without trusting it.
//!
//! This is for *looking* (inspect, doctor): the chain is captured during the handshake and
//! returned unverified, and callers label it so. It works against servers that require a
//! client certificate, because the server sends its chain before it asks for ours.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The address is malformed.
    #[error("{0:?} is not host:port")]
    BadAddress(String),
    /// DNS or TCP failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake failed before the server sent a certificate.
    #[error("TLS handshake with {addr} failed before the server presented a certificate: {detail}")]
    Handshake {
        /// The address.
        addr: String,
        /// What rustls said.
        detail: String,
    },
}

/// What the server presented.
#[derive(Debug, Clone)]
pub struct Presented {
    /// The chain as sent, leaf first (DER). Not verified.
    pub chain: Vec<Vec<u8>>,
    /// Negotiated protocol version, when the handshake completed.
    pub protocol: Option<String>,
}

/// A server certificate "verifier" that accepts any chain and remembers it, while checking the
/// handshake signatures for real: for probes that look at what a server presents (inspect,
/// check expiry, doctor), never for trust.
#[derive(Debug)]
pub struct CaptureChain {
    seen: Mutex<Vec<Vec<u8>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl CaptureChain {
    /// A capture using `provider`'s signature algorithms.
    pub fn new(provider: &CryptoProvider) -> Self {
        CaptureChain {
            seen: Mutex::new(Vec::new()),
            algs: provider.signature_verification_algorithms,
        }
    }

    /// The chain the server presented (leaf first, DER), empty before the handshake got there.
    pub fn chain(&self) -> Vec<Vec<u8>> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl ServerCertVerifier for CaptureChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = std::iter::once(end_entity)
                .chain(intermediates.iter())
                .map(|c| c.as_ref().to_vec())
                .collect();
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Connects to `addr` (`host:port`), runs a TLS handshake with SNI `host`, and returns the
/// chain the server presented.
pub fn fetch_chain(addr: &str, timeout: Duration) -> Result<Presented, ProbeError> {
    let (host, _port) = addr
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .ok_or_else(|| ProbeError::BadAddress(addr.to_owned()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let capture = Arc::new(CaptureChain::new(&provider));
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Handshake {
            addr: addr.to_owned(),
            detail: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|_| ProbeError::BadAddress(addr.to_owned()))?;
    let sock = addr
        .to_socket_addrs()
        .map_err(|source| ProbeError::Connect {
            addr: addr.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| ProbeError::BadAddress(addr.to_owned()))?;
    let mut tcp =
        TcpStream::connect_timeout(&sock, timeout).map_err(|source| ProbeError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let mut conn = ClientConnection::new(Arc::new(config), server_name).map_err(|e| {
        ProbeError::Handshake {
            addr: addr.to_owned(),
            detail: e.to_string(),
        }
    })?;
    let mut result = Ok(());
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            result = Err(e);
            break;
        }
    }
    // Nudge TLS 1.3 servers that reject us after the handshake; ignore the outcome.
    if result.is_ok() {
        let _ = conn.writer().write_all(b"");
        let _ = conn.complete_io(&mut tcp);
        let mut buf = [0u8; 1];
        let _ = conn.reader().read(&mut buf);
    }
    let chain = capture.seen.lock().map(|s| s.clone()).unwrap_or_default();
    if chain.is_empty() {
        return Err(ProbeError::Handshake {
            addr: addr.to_owned(),
            detail: match result {
                Err(e) => e.to_string(),
                Ok(()) => "no certificate was presented".into(),
            },
        });
    }
    Ok(Presented {
        chain,
        protocol: conn.protocol_version().map(|v| format!("{v:?}")),
    })
}
