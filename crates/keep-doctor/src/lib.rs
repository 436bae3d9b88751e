//! `keep doctor`: walks every step that can break between an agent config and a secret in its
//! hands (and, for a server config, everything that can keep the vault from serving safely),
//! and reports each as a small [`Check`] — `ok`, `warn`, `fail` or `skip` — with a one-line fix.
//! Modelled on Vault's `operator diagnose`: a tree of checks with advice.
//!
//! - [`agent::diagnose`] (`--config agent.yaml`): the config parses; the files exist, are
//!   readable and private; the PEM parses (and what keep's forgiving reader repaired); the key
//!   matches the certificate; validity and remaining lifetime; clientAuth EKU; the chain to the
//!   configured CA; DNS, TCP, TLS; the server's chain and name; whether the server asks for a
//!   client certificate, from which CAs, and accepts ours (or the alert it sent); the cert
//!   login and its role; every configured secret path under the resulting policy.
//! - [`server::diagnose`] (`--server keep-server.yaml`): the config parses; listener files,
//!   key match and expiry; the client CA bundle holds only CAs; TLS version and suites; no
//!   root CA key on the host; storage and audit paths writable; and, when the storage can be
//!   unsealed offline (read-only), roles without name constraints and policies that give
//!   agents more than read on secrets.
//!
//! A check whose prerequisite failed is `skip` with the reason, so the first failure in the
//! tree is the one to fix. Checks never print key material, tokens or secret values.
#![forbid(unsafe_code)]

pub mod agent;
pub mod json5;
pub mod openclaw;
pub mod report;
#[cfg(feature = "server")]
pub mod server;

mod files;
mod material;
mod probe;

use std::time::Duration;

use time::OffsetDateTime;

pub use report::{Check, Report, Status};

/// Settings shared by every check.
#[derive(Clone, Debug)]
pub struct Options {
    /// Limit for each network step (connect, handshake, one request).
    pub timeout: Duration,
    /// "Now", for validity checks.
    pub now: OffsetDateTime,
}

impl Default for Options {
    /// A 5 s timeout and the current time.
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(5),
            now: OffsetDateTime::now_utc(),
        }
    }
}

/// The config as a generic YAML value (for reading fields of a config the typed loader
/// refused), or `None` when it is not YAML at all.
fn yaml_value(text: &str) -> Option<serde_json::Value> {
    serde_saphyr::from_str::<serde_json::Value>(text).ok()
}
