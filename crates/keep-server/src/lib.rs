//! keep's vault server: a Vault-compatible HTTP API over mutual TLS, a KV v2 secrets engine,
//! and storage that is sealed at rest behind an AES-256-GCM barrier.
//!
//! Layout: `config` (the YAML file, validated), `state` (what handlers share), `api` (the route
//! table and one module per API area), `fields` (Vault's lenient request fields, read one way
//! for every layer, HTTP-free), `kv` (the KV v2 engine, HTTP-free), `pki` (the PKI
//! mount's engine: issuance, inventory, revocation, CRLs, HTTP-free), `server` (the mTLS
//! listener wired to the router, init, unseal, rotate).
#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod fields;
pub mod kv;
pub mod pki;
pub mod policy;
pub mod provision;
pub mod server;
pub mod state;
pub mod wrapping;
