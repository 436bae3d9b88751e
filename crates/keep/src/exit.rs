//! Exit codes, documented once.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for checks: the check passed, or for `needs-renewal`: renewal is needed) |
//! | 1 | runtime failure (for checks: the check failed, e.g. `verify` rejected the chain) |
//! | 2 | `lint` found errors; `needs-renewal`: the certificate file does not exist |
//! | 2 | `check expiry`: something is critical, or an input could not be checked (1: a warning) |
//! | 64 | usage or configuration error (bad flags, unreadable input) |
//! | 255 | `needs-renewal` could not decide (so systemd `ExecCondition=` marks the unit failed) |

/// Usage or configuration error (EX_USAGE).
pub const USAGE: u8 = 64;
/// Runtime failure.
pub const FAILURE: u8 = 1;

/// An error the user caused (bad flags, an existing output file, unreadable input): exit 64.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for returning a usage error.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code for an error that reached `main`: problems with what the user gave us (flags,
/// files, passwords, certificates that cannot be used) are 64; failures of the machine or of a
/// library underneath are 1.
pub fn code_for(e: &anyhow::Error) -> u8 {
    use keep_pki::cert::CertError;
    use keep_pki::key::KeyError;
    let usage_like = e.chain().any(|c| {
        c.is::<UsageError>()
            || c.is::<keep_pki::pem::PemError>()
            || c.is::<keep_pki::duration::DurationError>()
            || c.is::<keep_pki::CertParseError>()
            || matches!(c.downcast_ref::<CertError>(), Some(e) if !matches!(e, CertError::Build(_)))
            || matches!(c.downcast_ref::<KeyError>(), Some(e) if !matches!(e, KeyError::Crypto(_)))
            || matches!(
                c.downcast_ref::<keep_pki::p12::P12Error>(),
                Some(keep_pki::p12::P12Error::KeyMismatch)
            )
            || matches!(
                c.downcast_ref::<keep_tls::server::TlsConfigError>(),
                Some(e) if !matches!(e, keep_tls::server::TlsConfigError::Rustls { .. })
            )
    });
    // A storage file or directory that keep's user cannot use is a deployment mistake with a
    // `chown` fix, found before anything ran.
    #[cfg(feature = "server")]
    let usage_like = usage_like
        || e.chain().any(|c| {
            matches!(
                c.downcast_ref::<keep_store::StoreError>(),
                Some(keep_store::StoreError::Access { .. })
            )
        });
    if usage_like { USAGE } else { FAILURE }
}

/// One line per cause, outermost first, without repeating identical text.
pub fn render(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
