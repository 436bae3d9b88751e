//! keep's agent side.
//!
//! The design gives this crate the agent config, the vault client, the secret sinks
//! and the renewal daemon. This release has:
//!
//! - [`client::VaultClient`], an async mTLS client for keep's (Vault-compatible) HTTP API,
//!   which the `keep` admin CLI (`keep login`, `keep kv …`, `keep policy …`, `keep auth cert …`,
//!   `keep token …`) and `keep agent` drive;
//! - [`config::AgentConfig`], the agent's YAML (`agent.yaml`), validated in two stages;
//! - [`sink`], atomic file sinks in json, env, value and template formats;
//! - [`sidecar`], `keep agent`'s loop that keeps the files current (polling, backoff with
//!   jitter, token renewal and re-login);
//! - [`exec`], `keep agent exec`: a command run with its secrets in its environment;
//! - [`proxy`], the sidecar's loopback Vault API (`proxy:`) for token-only Vault clients, and
//!   the client `keep openclaw-resolver` uses to ask a running sidecar;
//! - [`resolver`], the OpenClaw `exec` SecretRef provider protocol (`keep openclaw-resolver`).
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod exec;
pub mod proxy;
pub mod renew;
pub mod resolver;
pub mod sidecar;
pub mod sink;
