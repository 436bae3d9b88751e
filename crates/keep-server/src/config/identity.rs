//! The certificate identities a config names (`admins:`, `telemetry.metrics_scrapers`), in a
//! file of their own: auth, PKI and the shared state match against them without depending on
//! the config reader.

use keep_tls::identity::PeerIdentity;

/// A break-glass operator identity: full access, no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminIdentity {
    /// Matches the client certificate's subject common name exactly.
    CommonName(String),
    /// Matches one of the client certificate's URI SANs exactly.
    UriSan(String),
}

impl AdminIdentity {
    /// Whether the verified client identity `peer` is this one.
    pub fn matches(&self, peer: &PeerIdentity) -> bool {
        match self {
            AdminIdentity::CommonName(cn) => peer.common_name.as_deref() == Some(cn.as_str()),
            AdminIdentity::UriSan(uri) => peer.uri_sans.iter().any(|u| u == uri),
        }
    }
}
