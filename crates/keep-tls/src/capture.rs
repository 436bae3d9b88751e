//! Remembering which client certificate a connection presented, for the failure event only.
//!
//! When rustls rejects a client certificate the `ServerConnection` is gone by the time the
//! accept future returns its error, yet the security event should name the subject, serial and
//! fingerprint of what was presented. [`CapturingVerifier`] wraps rustls' `WebPkiClientVerifier`
//! and copies the presented end-entity certificate into a per-connection slot before delegating.
//!
//! The slot is a tokio task-local ([`PRESENTED`]) that the listener scopes around each
//! connection's handshake. rustls is synchronous: the verifier runs inside
//! `process_new_packets`, inside the poll of that connection's accept future, on the thread
//! polling it, so the task-local is always the right connection's.
//!
//! Why not a per-connection `ServerConfig` around a verifier that owns its slot: the verifier
//! is not replaceable in a cloned config (the field is private), so every connection would
//! rebuild the config through the builder and must then remember to carry over the session
//! cache, ticketer and ALPN by hand (forgetting the cache silently disables resumption). Both
//! are cheap next to a handshake (measured in release on this machine: scope + capture + take
//! ≈ 50 ns, builder rebuild ≈ 260 ns, a full in-memory mTLS handshake ≈ 180 µs), so the
//! simpler design wins: one shared config per reload, swapped as one `Arc`.
//!
//! The captured bytes are **never** used for authorization: identity comes only from the path
//! [`crate::identity::ClientTrust::identify`] verifies after rustls accepted the chain.
//!
//! The wrapper also enforces `require_client_auth_eku` (a leaf must carry an EKU extension),
//! the one rule keep adds to webpki's client verification.

use std::cell::RefCell;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::has_eku_extension;

tokio::task_local! {
    /// The end-entity certificate the current connection presented, if any (DER).
    pub(crate) static PRESENTED: RefCell<Option<Vec<u8>>>;
}

/// A `ClientCertVerifier` that records the presented end-entity certificate and otherwise
/// behaves exactly like the verifier it wraps (every method delegates).
#[derive(Debug)]
pub(crate) struct CapturingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// Every loaded CRL: a chain rustls accepted is still refused when any of them lists one
    /// of its certificates (rustls applies only one CRL per issuer; see `revocation`).
    revocations: Arc<crate::revocation::Revocations>,
    /// Refuse a leaf with no extended key usage extension (`require_client_auth_eku`): webpki
    /// accepts one for any purpose, as RFC 5280 allows.
    require_client_auth_eku: bool,
}

impl CapturingVerifier {
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        revocations: Arc<crate::revocation::Revocations>,
        require_client_auth_eku: bool,
    ) -> Self {
        CapturingVerifier {
            inner,
            revocations,
            require_client_auth_eku,
        }
    }
}

impl ClientCertVerifier for CapturingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Outside a listener scope (someone using the config directly) there is no slot: fine,
        // capture is only for reporting.
        let _ = PRESENTED.try_with(|slot| {
            *slot.borrow_mut() = Some(end_entity.as_ref().to_vec());
        });
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        crate::revocation::refuse_listed(&self.revocations, end_entity, intermediates)?;
        if self.require_client_auth_eku && !has_eku_extension(end_entity) {
            // Classified `bad_eku`, as a certificate whose EKU lacks clientAuth.
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}
