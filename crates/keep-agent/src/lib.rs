//! keep's agent side.
//!
//! DESIGN.md section 2 gives this crate the agent config, the vault client, the secret sinks
//! and the renewal daemon. This release has the vault client only: [`client::VaultClient`], an
//! async mTLS client for keep's (Vault-compatible) HTTP API, which the `keep` admin CLI
//! (`keep login`, `keep kv …`, `keep policy …`, `keep auth cert …`, `keep token …`) drives and
//! which the agent will reuse.
#![forbid(unsafe_code)]

pub mod client;
