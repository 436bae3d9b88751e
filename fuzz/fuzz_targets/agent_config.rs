//! The agent config parser (`keep_agent::config::AgentConfig::from_yaml`).
//!
//! Invariants beyond "no panic": an error names the config file and, when it gives a line,
//! a line of the input; parsing is deterministic; an inline key never shows in `Debug`.
#![no_main]

use std::path::Path;

use keep_agent::config::{AgentConfig, ConfigError, PemSource};
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;

/// Relative paths in the config resolve below a directory that does not exist, so file checks
/// fail the same way on every run.
const PATH: &str = "/nonexistent-keep-fuzz/agent.yaml";

fn describe(r: &Result<AgentConfig, ConfigError>) -> String {
    match r {
        Ok(cfg) => format!("{cfg:?}"),
        Err(e) => e.to_string(),
    }
}

/// Lines of `text` as YAML counts them: `\r\n`, a bare `\r` and `\n` each end one. (`str::lines`
/// does not split at a bare `\r`, so it undercounts inputs the parser reads correctly; that
/// was the only finding of this target, see the config crate's `line_numbers_count_bare_cr`.)
fn yaml_lines(text: &str) -> u64 {
    let breaks = text.replace("\r\n", "\n").matches(['\r', '\n']).count();
    breaks as u64 + 1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(PATH);
    let first = AgentConfig::from_yaml(text, path);
    match &first {
        Ok(cfg) => {
            if let PemSource::Inline { pem, .. } = &cfg.connection.mtls.key {
                let key = pem.expose_secret();
                if key.len() >= 8 {
                    assert!(!format!("{cfg:?}").contains(key), "inline key in Debug");
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with(PATH),
                "error without the file: {message:?}"
            );
            if let ConfigError::Field { line, .. } = e {
                let lines = yaml_lines(text);
                assert!(
                    *line <= lines,
                    "line {line} beyond the input's {lines}: {message}"
                );
            }
        }
    }
    let second = AgentConfig::from_yaml(text, path);
    assert_eq!(describe(&first), describe(&second), "not deterministic");
});
