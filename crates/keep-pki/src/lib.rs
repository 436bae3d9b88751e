//! keep's PKI core.
//!
//! Everything `keep certificate …` does lives here, and the server, agent and doctor call the
//! same functions: key generation and (encrypted) PKCS#8 I/O, certificate profiles, CSRs,
//! forgiving PEM reading with errors that name the source and line, inspection, chain
//! verification, internal-PKI lint rules, and the expiry checks of `keep check expiry`.
//!
//! This crate knows nothing of HTTP or of the network.
#![forbid(unsafe_code)]

pub mod cert;
pub mod crl;
pub mod duration;
pub mod expiry;
pub mod inspect;
pub mod key;
pub mod lint;
pub mod p12;
pub mod pem;
pub mod renewal;
pub mod verify;

use std::fmt;

pub use cert::{Certificate, Profile};
pub use key::{KeyType, PrivateKey};
pub use pem::{PemBlock, PemError, Source};

/// What a certificate is meant to be used for, as `--purpose` and `--eku` spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// TLS client authentication (`clientAuth`, id-kp 2).
    Client,
    /// TLS server authentication (`serverAuth`, id-kp 1).
    Server,
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Purpose::Client => "client",
            Purpose::Server => "server",
        })
    }
}

/// A certificate that does not parse as X.509 DER.
#[derive(Debug, thiserror::Error)]
#[error("{source_desc}: {problem}")]
pub struct CertParseError {
    /// Where the bytes came from (`file vault.crt line 1`), for the user.
    pub source_desc: String,
    /// What is wrong, in words.
    pub problem: String,
}
