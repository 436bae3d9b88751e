//! Durations in `keep-server.yaml` (`10s`, `1m`, `24h`): Go's syntax, as keep-pki parses it,
//! positive only, with errors that name the field and its line.

use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::config::error::ConfigError;

/// Reads the duration `v` of `field` (a dotted path, for the error); zero and negative
/// durations are refused.
pub fn parse_duration(
    v: &Spanned<String>,
    field: &str,
    path: &Path,
) -> Result<Duration, ConfigError> {
    keep_pki::duration::parse_duration(&v.value)
        .ok()
        .and_then(|d| {
            if d.is_positive() {
                Some(Duration::from_secs_f64(d.as_seconds_f64()))
            } else {
                None
            }
        })
        .ok_or_else(|| {
            ConfigError::field(
                path,
                v.defined.line(),
                field,
                format!(
                    "{:?} is not a positive duration; write e.g. 10s or 1m",
                    v.value
                ),
            )
        })
}
