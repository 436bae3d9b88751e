//! keep's TLS layer.
//!
//! For now: probing what certificate chain a server presents (`keep certificate inspect
//! https://host:port`). The server and client configs arrive with the vault server.
#![forbid(unsafe_code)]

pub mod probe;
