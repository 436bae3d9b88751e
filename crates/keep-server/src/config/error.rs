//! The one error type of `keep-server.yaml`, shared by every section's validator (the file's own
//! in [`crate::config`], `alerts:` in `alerts::config`), so all of them name the file, the field
//! and the line the same way.

use std::path::{Path, PathBuf};

/// A config file that cannot be used. The message names the file, the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax or shape error (serde-saphyr's message carries the line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// First line of the parser's message.
        message: String,
    },
    /// A field whose value is not acceptable.
    #[error("{path}, line {line}: `{field}`: {problem}")]
    Field {
        /// The config file.
        path: PathBuf,
        /// The YAML line of the value (0 when unknown).
        line: u64,
        /// Dotted field path, e.g. `listener.tls.min_version`.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A required section or field is missing.
    #[error("{path}: `{field}` is required; {hint}")]
    Missing {
        /// The config file.
        path: PathBuf,
        /// Dotted field path.
        field: String,
        /// What to put there.
        hint: String,
    },
}

impl ConfigError {
    /// A [`ConfigError::Field`]: the value of `field`, on YAML line `line` (0 when unknown) of
    /// the file at `path`, is not acceptable because of `problem`.
    pub fn field(path: &Path, line: u64, field: &str, problem: String) -> ConfigError {
        ConfigError::Field {
            path: path.to_owned(),
            line,
            field: field.into(),
            problem,
        }
    }
}
