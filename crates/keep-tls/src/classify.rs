//! Why a TLS handshake failed, as one of a fixed set of [`Reason`]s.
//!
//! The reason is what operators alert on (`keep_tls_handshake_failures_total{reason}`) and what
//! the security event says; the `detail` next to it is the human explanation with the fix.
//!
//! Inputs are what the listener knows about a failed connection, in order:
//! 1. the first bytes the client sent, read with `peek` before any TLS processing
//!    ([`classify_first_bytes`]): nothing then EOF is a load-balancer TCP probe
//!    (`eof_before_hello`), ASCII like `GET ` is plain HTTP sent to the TLS port;
//! 2. a summary of the ClientHello, when one arrived ([`HelloSummary`]);
//! 3. the `rustls::Error` inside the `io::Error` tokio-rustls returns ([`classify_io_error`]).
//!
//! Every function here is pure, so the mapping is unit-tested without sockets; the listener
//! tests check it against real handshakes.
//!
//! With TLS 1.3 the client finishes its side of the handshake before the server has checked
//! the client certificate, so the client only sees a failure on its first read, often as a bare
//! "connection closed". The reason recorded here is the reliable one.

use std::fmt;
use std::io;

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError, PeerIncompatible};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a handshake failed. The snake_case names are the metric label values and the `reason`
/// field of the security event; they are part of keep's monitoring contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The client presented no certificate (or an empty one: Go and Java clients do that when
    /// their certificate does not chain to a CA the server names).
    NoCertificate,
    /// The client's certificate does not chain to `client_ca_file` (or the client did not send
    /// its intermediate); or the client does not trust the server's CA.
    UnknownCa,
    /// A certificate is past its notAfter (the client's, or the server's per the client).
    Expired,
    /// A certificate is before its notBefore (clock skew, or a certificate dated in the future).
    NotYetValid,
    /// The client's certificate is listed in a loaded CRL.
    Revoked,
    /// The client's certificate lacks the clientAuth extended key usage.
    BadEku,
    /// A signature did not verify: a certificate not really signed by its issuer, or a
    /// handshake signature made with a key that is not the certificate's.
    BadSignature,
    /// The client offered only TLS versions keep refuses (SSL 3, TLS 1.0, 1.1; or 1.2 when
    /// `min_version` is 1.3).
    ProtocolVersion,
    /// No cipher suite (or key-exchange group, or signature scheme) in common: typically a
    /// client offering only CBC or non-ECDHE suites.
    NoSharedCipher,
    /// The client asked (SNI) for a name the server certificate does not carry, and rejected it.
    SniMismatch,
    /// The client closed the connection without sending a byte: a load-balancer or port probe.
    /// Counted and logged at debug only.
    EofBeforeHello,
    /// The client sent plain HTTP to the TLS port.
    PlainHttp,
    /// Anything else (timeouts, malformed TLS, unusual alerts); the detail says what.
    Other,
}

impl Reason {
    /// Every reason, for pre-registering metric series and for tests.
    pub const ALL: [Reason; 13] = [
        Reason::NoCertificate,
        Reason::UnknownCa,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Revoked,
        Reason::BadEku,
        Reason::BadSignature,
        Reason::ProtocolVersion,
        Reason::NoSharedCipher,
        Reason::SniMismatch,
        Reason::EofBeforeHello,
        Reason::PlainHttp,
        Reason::Other,
    ];

    /// The label value (`no_certificate`, `unknown_ca`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoCertificate => "no_certificate",
            Reason::UnknownCa => "unknown_ca",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Revoked => "revoked",
            Reason::BadEku => "bad_eku",
            Reason::BadSignature => "bad_signature",
            Reason::ProtocolVersion => "protocol_version",
            Reason::NoSharedCipher => "no_shared_cipher",
            Reason::SniMismatch => "sni_mismatch",
            Reason::EofBeforeHello => "eof_before_hello",
            Reason::PlainHttp => "plain_http",
            Reason::Other => "other",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason with its human explanation (what happened and, where known, the fix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The reason.
    pub reason: Reason,
    /// What happened, for the security event's `detail`.
    pub detail: String,
}

impl Classified {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Classified {
            reason,
            detail: detail.into(),
        }
    }
}

/// What the client's ClientHello said, as far as classification needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelloSummary {
    /// The server name the client asked for (SNI), if it sent one (clients connecting to an IP
    /// address send none).
    pub server_name: Option<String>,
    /// Whether `server_name` is one of the server certificate's DNS names (true when absent).
    pub server_name_matches: bool,
    /// The cipher suites the client offered, by name, in its order.
    pub offered_suites: Vec<String>,
}

/// Everything known about a failed handshake besides the error itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandshakeContext {
    /// The `client_version` field of the ClientHello, read from the peeked first bytes
    /// ([`client_hello_version`]); `0x0303` for TLS 1.2 and 1.3 clients, lower for older ones.
    pub client_version: Option<u16>,
    /// The ClientHello, when rustls parsed one.
    pub hello: Option<HelloSummary>,
}

/// The `client_version` of a ClientHello from its first bytes (record header, handshake
/// header, version), or `None` when the bytes are not (enough of) a ClientHello.
pub fn client_hello_version(first_bytes: &[u8]) -> Option<u16> {
    match first_bytes {
        [TLS_HANDSHAKE_RECORD, _, _, _, _, 0x01, _, _, _, hi, lo, ..] => {
            Some(u16::from_be_bytes([*hi, *lo]))
        }
        _ => None,
    }
}

/// The TLS 1.2 `client_version`; TLS 1.3 clients send it too (and the real versions in an
/// extension), so anything lower is a client that cannot do TLS 1.2.
const TLS12_VERSION: u16 = 0x0303;

fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        other => format!("version 0x{other:04x}"),
    }
}

/// HTTP methods (and the HTTP/2 preface) a plain-HTTP client starts with.
const HTTP_STARTS: [&[u8]; 10] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI * HTTP/2",
];

/// The TLS record type of a handshake message: every TLS ClientHello starts with it.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Classifies a connection by the bytes it sent first (peeked, not consumed).
///
/// Returns `None` when the bytes may be a TLS ClientHello, so the handshake should proceed.
pub fn classify_first_bytes(bytes: &[u8]) -> Option<Classified> {
    let Some(&first) = bytes.first() else {
        return Some(Classified::new(
            Reason::EofBeforeHello,
            "the client closed the connection without sending anything (a load-balancer or port probe)",
        ));
    };
    if first == TLS_HANDSHAKE_RECORD {
        return None;
    }
    if let Some(method) = http_method(bytes) {
        return Some(Classified::new(
            Reason::PlainHttp,
            format!(
                "the client sent a plain-HTTP {method} request to the TLS port; fix: use https:// (with the client certificate)"
            ),
        ));
    }
    if first & 0x80 != 0 && bytes.get(2).is_none_or(|&t| t == 0x01) {
        // An SSL 2.0-format ClientHello (two-byte length with the high bit set, then type 1):
        // only clients that still offer SSL 2/3 send it.
        return Some(Classified::new(
            Reason::ProtocolVersion,
            "the client sent an SSL 2.0-format ClientHello (it offers SSL 2/3-era protocols only); fix: enable TLS 1.2 or 1.3 in the client",
        ));
    }
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Some(Classified::new(
            Reason::Other,
            format!(
                "the client spoke a plaintext protocol, not TLS (it began with {:?})",
                String::from_utf8_lossy(bytes)
            ),
        ));
    }
    None
}

/// The HTTP method `bytes` starts with, also when only part of the first word has arrived yet.
fn http_method(bytes: &[u8]) -> Option<String> {
    HTTP_STARTS
        .iter()
        .find(|m| m.starts_with(bytes) || bytes.starts_with(m))
        .map(|m| {
            let word = m.split(|&b| b == b' ').next().unwrap_or(m);
            String::from_utf8_lossy(word).into_owned()
        })
}

/// Whether the server name a client asked for is one of the certificate's DNS names
/// (case-insensitive; a `*.` wildcard covers exactly one leftmost label, as clients match).
pub fn sni_matches(server_name: &str, cert_dns_names: &[String]) -> bool {
    let name = server_name.trim_end_matches('.').to_ascii_lowercase();
    cert_dns_names.iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => name
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => name == pattern,
        }
    })
}

/// Classifies the error a tokio-rustls accept returned: the `rustls::Error` inside it when
/// there is one, otherwise the I/O error (e.g. the client closed the connection mid-handshake).
pub fn classify_io_error(err: &io::Error, ctx: &HandshakeContext) -> Classified {
    if let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return classify_tls_error(tls, ctx);
    }
    let hello = ctx.hello.as_ref();
    match err.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => match hello {
            None => Classified::new(
                Reason::Other,
                format!(
                    "the client closed the connection in the middle of its ClientHello ({err})"
                ),
            ),
            Some(h) if !h.server_name_matches => {
                sni_mismatch(h, "closed the connection without an alert")
            }
            Some(_) => Classified::new(
                Reason::Other,
                format!(
                    "the client closed the connection during the handshake without an alert ({err}); it may have rejected the server certificate: check that it trusts the CA that issued cert_file"
                ),
            ),
        },
        _ => Classified::new(
            Reason::Other,
            format!("I/O error during the handshake: {err}"),
        ),
    }
}

/// Classifies a rustls handshake error (server side).
pub fn classify_tls_error(err: &rustls::Error, ctx: &HandshakeContext) -> Classified {
    use rustls::Error as E;
    let hello = ctx.hello.as_ref();
    if let Some(v) = ctx.client_version
        && v < TLS12_VERSION
        && matches!(
            err,
            E::PeerIncompatible(_) | E::PeerMisbehaved(_) | E::InvalidMessage(_)
        )
    {
        // Whatever detail rustls tripped over first (no signature_algorithms extension, no
        // supported_versions), the cause is a client limited to an old protocol.
        return Classified::new(
            Reason::ProtocolVersion,
            format!(
                "the client offered at most {} ({err}); fix: enable TLS 1.2 or 1.3 in the client (keep refuses SSL 3 and TLS 1.0/1.1)",
                version_name(v)
            ),
        );
    }
    match err {
        E::NoCertificatesPresented => Classified::new(
            Reason::NoCertificate,
            "the client presented no certificate; fix: configure the client's certificate and key (Go and Java clients send none when their certificate does not chain to a CA in client_ca_file)",
        ),
        E::InvalidCertificate(cert_err) => classify_certificate_error(cert_err),
        E::PeerIncompatible(p) => classify_incompatible(p, hello),
        E::AlertReceived(alert) => classify_alert(*alert, hello),
        E::DecryptError => Classified::new(
            Reason::BadSignature,
            "a handshake signature or MAC did not verify",
        ),
        E::InvalidMessage(m) => Classified::new(
            Reason::Other,
            format!("the client sent something that is not valid TLS ({m:?})"),
        ),
        E::NoApplicationProtocol => Classified::new(
            Reason::Other,
            "the client offered no ALPN protocol keep speaks (h2 or http/1.1)",
        ),
        other => Classified::new(Reason::Other, other.to_string()),
    }
}

fn classify_certificate_error(err: &CertificateError) -> Classified {
    use CertificateError as C;
    match err {
        C::UnknownIssuer => Classified::new(
            Reason::UnknownCa,
            "the client certificate does not chain to a CA in client_ca_file (or the client did not send its intermediate); fix: issue the client certificate from a trusted CA, or send the full chain",
        ),
        C::Expired => Classified::new(
            Reason::Expired,
            "the client certificate has expired; fix: renew it",
        ),
        C::ExpiredContext { time, not_after } => Classified::new(
            Reason::Expired,
            format!(
                "the client certificate expired at {} (now {}); fix: renew it",
                rfc3339(*not_after),
                rfc3339(*time)
            ),
        ),
        C::NotValidYet => Classified::new(
            Reason::NotYetValid,
            "the client certificate is not valid yet; fix: check both clocks, or wait for its notBefore",
        ),
        C::NotValidYetContext { time, not_before } => Classified::new(
            Reason::NotYetValid,
            format!(
                "the client certificate is valid only from {} (now {}); fix: check both clocks, or wait for its notBefore",
                rfc3339(*not_before),
                rfc3339(*time)
            ),
        ),
        C::Revoked => Classified::new(
            Reason::Revoked,
            "the client certificate is revoked (listed in a loaded CRL: crl_file or the PKI mount's)",
        ),
        C::InvalidPurpose => Classified::new(
            Reason::BadEku,
            "the client certificate lacks the clientAuth extended key usage; fix: issue it with EKU clientAuth",
        ),
        C::InvalidPurposeContext { presented, .. } => Classified::new(
            Reason::BadEku,
            format!(
                "the client certificate lacks the clientAuth extended key usage (it has: {}); fix: issue it with EKU clientAuth",
                presented
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        #[allow(deprecated)]
        C::BadSignature
        | C::UnsupportedSignatureAlgorithm
        | C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => Classified::new(
            Reason::BadSignature,
            format!(
                "a signature in the client's chain or handshake did not verify ({err}): a forged certificate, or a key that is not the certificate's"
            ),
        ),
        C::UnknownRevocationStatus
        | C::ExpiredRevocationList
        | C::ExpiredRevocationListContext { .. } => Classified::new(
            Reason::Other,
            format!(
                "the client certificate's revocation status cannot be determined ({err}); fix: refresh crl_file"
            ),
        ),
        other => Classified::new(
            Reason::Other,
            format!("the client certificate was rejected: {other}"),
        ),
    }
}

fn classify_incompatible(p: &PeerIncompatible, hello: Option<&HelloSummary>) -> Classified {
    use PeerIncompatible as P;
    match p {
        P::Tls12NotOffered
        | P::Tls12NotOfferedOrEnabled
        | P::SupportedVersionsExtensionRequired
        // Every TLS 1.2+ client sends signature_algorithms; a ClientHello without it comes
        // from a TLS 1.0/1.1 client.
        | P::SignatureAlgorithmsExtensionRequired => Classified::new(
            Reason::ProtocolVersion,
            format!(
                "the client offered no TLS version keep accepts ({p:?}); fix: enable TLS 1.2 or 1.3 in the client (keep refuses SSL 3 and TLS 1.0/1.1)"
            ),
        ),
        P::NoCipherSuitesInCommon
        | P::NoKxGroupsInCommon
        | P::NoSignatureSchemesInCommon
        | P::NoEcPointFormatsInCommon => {
            let offered = hello
                .map(|h| h.offered_suites.join(", "))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into());
            let what = match p {
                P::NoCipherSuitesInCommon => "no cipher suite in common",
                // A client offering only non-ECDHE suites often sends no supported_groups at
                // all, so this is how "AES128-GCM-SHA256 only" usually shows up.
                P::NoKxGroupsInCommon => {
                    "no ECDHE key-exchange group in common (keep needs X25519, P-256 or P-384)"
                }
                P::NoSignatureSchemesInCommon => "no signature scheme in common",
                _ => "no EC point format in common",
            };
            Classified::new(
                Reason::NoSharedCipher,
                format!(
                    "{what} (the client offered the suites: {offered}); fix: enable TLS 1.3 or a TLS 1.2 ECDHE suite with AES-GCM or ChaCha20-Poly1305 in the client"
                ),
            )
        }
        other => Classified::new(
            Reason::Other,
            format!("the client's handshake is incompatible ({other:?})"),
        ),
    }
}

/// An alert the *client* sent: it rejected something of ours (usually the server certificate).
fn classify_alert(alert: AlertDescription, hello: Option<&HelloSummary>) -> Classified {
    use AlertDescription as A;
    match alert {
        A::UnknownCA => Classified::new(
            Reason::UnknownCa,
            "the client rejected the server certificate: it does not trust its CA; fix: give the client the CA bundle that issued cert_file",
        ),
        A::CertificateExpired => Classified::new(
            Reason::Expired,
            "the client rejected the server certificate as expired or not yet valid; fix: renew cert_file (or check the client's clock)",
        ),
        A::CertificateRevoked => Classified::new(
            Reason::Revoked,
            "the client rejected the server certificate as revoked",
        ),
        A::ProtocolVersion => Classified::new(
            Reason::ProtocolVersion,
            "the client refused the TLS version the server chose",
        ),
        A::InsufficientSecurity => Classified::new(
            Reason::NoSharedCipher,
            "the client found the server's parameters too weak",
        ),
        A::BadCertificate | A::CertificateUnknown | A::UnsupportedCertificate => match hello {
            Some(h) if !h.server_name_matches => sni_mismatch(h, &format!("sent alert {alert:?}")),
            _ => Classified::new(
                Reason::Other,
                format!("the client rejected the server certificate (alert {alert:?})"),
            ),
        },
        A::DecryptError => Classified::new(
            Reason::BadSignature,
            "the client could not verify the server's handshake signature",
        ),
        other => Classified::new(Reason::Other, format!("the client sent alert {other:?}")),
    }
}

fn sni_mismatch(hello: &HelloSummary, what: &str) -> Classified {
    Classified::new(
        Reason::SniMismatch,
        format!(
            "the client asked for {:?}, which the server certificate does not name, and {what}; fix: connect with a name in the certificate's SANs, or add the name to cert_file's certificate",
            hello.server_name.as_deref().unwrap_or_default()
        ),
    )
}

fn rfc3339(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{}", t.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    fn reason_of(e: rustls::Error) -> Reason {
        classify_io_error(&io(e), &HandshakeContext::default()).reason
    }

    fn with_hello(hello: &HelloSummary) -> HandshakeContext {
        HandshakeContext {
            client_version: Some(0x0303),
            hello: Some(hello.clone()),
        }
    }

    #[test]
    fn labels_are_unique_snake_case_and_serialize_as_labels() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()));
            assert!(
                r.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
            assert_eq!(
                serde_json::to_string(&r).ok(),
                Some(format!("\"{}\"", r.as_str()))
            );
        }
        assert_eq!(seen.len(), 13);
    }

    #[test]
    fn rustls_errors_map_to_reasons() {
        let t = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
        let table: Vec<(rustls::Error, Reason)> = vec![
            (
                rustls::Error::NoCertificatesPresented,
                Reason::NoCertificate,
            ),
            (CertificateError::UnknownIssuer.into(), Reason::UnknownCa),
            (CertificateError::Expired.into(), Reason::Expired),
            (
                CertificateError::ExpiredContext {
                    time: t,
                    not_after: t,
                }
                .into(),
                Reason::Expired,
            ),
            (CertificateError::NotValidYet.into(), Reason::NotYetValid),
            (
                CertificateError::NotValidYetContext {
                    time: t,
                    not_before: t,
                }
                .into(),
                Reason::NotYetValid,
            ),
            (CertificateError::Revoked.into(), Reason::Revoked),
            (CertificateError::InvalidPurpose.into(), Reason::BadEku),
            (CertificateError::BadSignature.into(), Reason::BadSignature),
            (
                CertificateError::UnknownRevocationStatus.into(),
                Reason::Other,
            ),
            (
                PeerIncompatible::Tls12NotOffered.into(),
                Reason::ProtocolVersion,
            ),
            (
                PeerIncompatible::SupportedVersionsExtensionRequired.into(),
                Reason::ProtocolVersion,
            ),
            (
                PeerIncompatible::NoCipherSuitesInCommon.into(),
                Reason::NoSharedCipher,
            ),
            (
                PeerIncompatible::NoKxGroupsInCommon.into(),
                Reason::NoSharedCipher,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                Reason::UnknownCa,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
                Reason::ProtocolVersion,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::BadCertificate),
                Reason::Other,
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                Reason::Other,
            ),
            (rustls::Error::General("x".into()), Reason::Other),
        ];
        for (err, want) in table {
            let shown = format!("{err:?}");
            assert_eq!(reason_of(err), want, "{shown}");
        }
    }

    #[test]
    fn expired_detail_names_the_time() {
        let t = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
        let c = classify_tls_error(
            &CertificateError::ExpiredContext {
                time: t,
                not_after: t,
            }
            .into(),
            &HandshakeContext::default(),
        );
        assert!(c.detail.contains("2027-01-15T08:00:00Z"), "{}", c.detail);
    }

    #[test]
    fn no_shared_cipher_lists_what_the_client_offered() {
        let hello = HelloSummary {
            server_name: None,
            server_name_matches: true,
            offered_suites: vec!["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA".into()],
        };
        let c = classify_tls_error(
            &PeerIncompatible::NoCipherSuitesInCommon.into(),
            &with_hello(&hello),
        );
        assert_eq!(c.reason, Reason::NoSharedCipher);
        assert!(c.detail.contains("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"));
    }

    #[test]
    fn client_rejecting_our_cert_with_a_foreign_sni_is_sni_mismatch() {
        let mismatch = HelloSummary {
            server_name: Some("vault.example.com".into()),
            server_name_matches: false,
            offered_suites: vec![],
        };
        let matching = HelloSummary {
            server_name_matches: true,
            ..mismatch.clone()
        };
        let bad_cert = rustls::Error::AlertReceived(AlertDescription::BadCertificate);
        assert_eq!(
            classify_tls_error(&bad_cert, &with_hello(&mismatch)).reason,
            Reason::SniMismatch
        );
        assert_eq!(
            classify_tls_error(&bad_cert, &with_hello(&matching)).reason,
            Reason::Other
        );
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(
            classify_io_error(&eof, &with_hello(&mismatch)).reason,
            Reason::SniMismatch
        );
        assert_eq!(
            classify_io_error(&eof, &with_hello(&matching)).reason,
            Reason::Other
        );
        assert_eq!(
            classify_io_error(&eof, &HandshakeContext::default()).reason,
            Reason::Other
        );
    }

    #[test]
    fn old_clients_are_protocol_version_whatever_rustls_tripped_on() {
        // The start of `openssl s_client -tls1_1`'s ClientHello.
        let first = [
            0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x02, 0x7f,
        ];
        assert_eq!(client_hello_version(&first), Some(0x0302));
        assert_eq!(client_hello_version(&first[..9]), None);
        assert_eq!(client_hello_version(b"GET / HTTP/1.1"), None);
        let ctx = HandshakeContext {
            client_version: client_hello_version(&first),
            hello: None,
        };
        let c = classify_tls_error(
            &PeerIncompatible::SignatureAlgorithmsExtensionRequired.into(),
            &ctx,
        );
        assert_eq!(c.reason, Reason::ProtocolVersion);
        assert!(c.detail.contains("TLS 1.1"), "{}", c.detail);
        // Without the version, the missing extension alone still says "old client".
        assert_eq!(
            reason_of(PeerIncompatible::SignatureAlgorithmsExtensionRequired.into()),
            Reason::ProtocolVersion
        );
        // A TLS 1.2 client with no shared suite stays no_shared_cipher.
        let modern = HandshakeContext {
            client_version: Some(0x0303),
            hello: None,
        };
        assert_eq!(
            classify_tls_error(&PeerIncompatible::NoCipherSuitesInCommon.into(), &modern).reason,
            Reason::NoSharedCipher
        );
    }

    #[test]
    fn first_bytes() {
        let r = |b: &[u8]| classify_first_bytes(b).map(|c| c.reason);
        assert_eq!(r(b""), Some(Reason::EofBeforeHello));
        assert_eq!(r(&[0x16, 0x03, 0x01, 0x02, 0x00]), None);
        assert_eq!(r(b"GET / HTTP/1.1\r\n"), Some(Reason::PlainHttp));
        assert_eq!(r(b"POST /v1/auth"), Some(Reason::PlainHttp));
        assert_eq!(r(b"HEAD"), Some(Reason::PlainHttp));
        assert_eq!(r(b"G"), Some(Reason::PlainHttp));
        assert_eq!(r(b"PRI * HTTP/2.0\r\n"), Some(Reason::PlainHttp));
        assert_eq!(
            r(&[0x80, 0x2e, 0x01, 0x00, 0x02]),
            Some(Reason::ProtocolVersion)
        );
        assert_eq!(r(b"SSH-2.0-"), Some(Reason::Other));
        assert_eq!(r(&[0x00, 0x01, 0x02]), None);
        let c = classify_first_bytes(b"PUT /x").unwrap_or_else(|| unreachable!());
        assert!(c.detail.contains("PUT"), "{}", c.detail);
    }

    #[test]
    fn sni_matching() {
        let names = vec![
            "vault.claw.internal".to_owned(),
            "*.svc.claw.internal".to_owned(),
        ];
        assert!(sni_matches("vault.claw.internal", &names));
        assert!(sni_matches("VAULT.claw.internal.", &names));
        assert!(sni_matches("keep.svc.claw.internal", &names));
        assert!(!sni_matches("a.b.svc.claw.internal", &names));
        assert!(!sni_matches("svc.claw.internal", &names));
        assert!(!sni_matches("wrong.claw.internal", &names));
    }
}
