//! keep's TLS layer.
//!
//! - [`server`]: the vault's rustls [`ServerConfig`](rustls::ServerConfig) from keep-pki
//!   material: TLS 1.3 and TLS 1.2 ECDHE+AEAD only, client certificates required and verified by
//!   rustls against the client CA bundle and CRLs.
//! - [`identity`]: the [`PeerIdentity`](identity::PeerIdentity) of a client, read from the path
//!   webpki verified (never the chain as presented), and [`CaKey`](identity::CaKey), what trust
//!   bindings compare.
//! - [`classify`]: why a handshake failed, as one of a fixed set of reasons.
//! - [`events`]: security events (one JSON line each) and where they go.
//! - [`revocation`]: every loaded CRL applies (file and in-memory, also for one issuer), in the
//!   handshake and per request.
//! - [`listener`]: the accept loop: handshake timeouts, connection budget, classification,
//!   events, metrics and graceful shutdown; hands each verified connection to the caller's
//!   handler.
//! - [`budget`]: the connection pools (global, handshaking, per source address, per
//!   certificate) and the idle tracker the HTTP layer uses to close idle connections.
//! - [`reload`]: hot-swappable TLS material (file watcher, SIGHUP), keeping the last good config.
//! - [`counters`]: the metric names (`keep_tls_handshake_failures_total{reason}`, …).
//! - [`client`]: the agent's and CLI's rustls [`ClientConfig`](rustls::ClientConfig).
//! - [`probe`]: fetching the chain a server presents, for `inspect` and the doctor.
//!
//! Every config is built with the aws-lc-rs provider passed explicitly
//! (`builder_with_provider`), never the process-wide default: if two rustls providers ever end
//! up in the dependency tree, `builder()` would panic.
#![forbid(unsafe_code)]

pub mod budget;
pub mod classify;
pub mod client;
pub mod counters;
pub mod events;
pub mod identity;
pub mod listener;
pub mod probe;
pub mod reload;
pub mod revocation;
pub mod server;

mod capture;
mod suites;

/// Re-exported so the server can name [`tokio_rustls::server::TlsStream`] without depending on
/// tokio-rustls itself (and so both always agree on the version).
pub use tokio_rustls;
