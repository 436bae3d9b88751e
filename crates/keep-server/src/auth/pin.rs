//! `pin_first_seen_address`: a certificate is pinned to the first address it logs in from.
//!
//! A role that sets `pin_first_seen_address: true` makes the first login of each certificate
//! (by SHA-256 fingerprint) record the source address under `auth/cert/pins/<fingerprint>`.
//! From then on, a login, a token use or a tokenless request with that certificate from any
//! other address is refused (403) and raises an `unexpected_source_address` alert: a copied
//! key used from another machine stands out even when the roles' CIDRs are wide.
//!
//! A pin lasts as long as its certificate (its `not_after` is stored with it; an expired pin is
//! ignored and replaced). An agent that moves for good gets a new certificate, whose first
//! login pins the new address; there is no API to move a pin.
//!
//! Key names are not encrypted by the barrier; a fingerprint is not a secret (it is in every
//! handshake event), and the address is in the encrypted value.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::StatusCode;
use keep_store::{Store, StoreError, TxOp};
use keep_tls::identity::PeerIdentity;
use serde::{Deserialize, Serialize};

use crate::alerts::Access;
use crate::api::error::ApiError;
use crate::auth::token::TokenEntry;
use crate::state::AppState;

/// Where pins are stored: `auth/cert/pins/<sha256 fingerprint, hex>`.
pub const PIN_PREFIX: &str = "auth/cert/pins/";

/// What is stored for a pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The address the certificate first logged in from.
    pub address: IpAddr,
    /// When, Unix seconds.
    pub first_seen: i64,
    /// The certificate's notAfter, Unix seconds: the pin is void after it.
    pub not_after: i64,
    /// The role the first login used.
    pub role: String,
}

fn key(fingerprint: &str) -> String {
    format!("{PIN_PREFIX}{fingerprint}")
}

/// The same address whether the client came over IPv4 or as an IPv4-mapped IPv6 address (a
/// dual-stack listener reports the latter).
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The live pin of the certificate `fingerprint`, if any (`now` in Unix seconds). A pin past
/// its certificate's notAfter, or one that cannot be read, counts as none.
pub fn lookup(store: &dyn Store, fingerprint: &str, now: i64) -> Result<Option<Pin>, StoreError> {
    let Some(bytes) = store.get(&key(fingerprint))? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<Pin>(&bytes)
        .ok()
        .filter(|p| p.not_after > now))
}

/// Pins `peer`'s certificate to `address` unless it has a live pin; returns the pin in force
/// (the existing one, or the new one). Two first logins racing from different addresses: one
/// transaction wins, and the other sees its pin.
pub fn pin_if_new(
    store: &dyn Store,
    peer: &PeerIdentity,
    address: IpAddr,
    role: &str,
    now: i64,
) -> Result<Pin, StoreError> {
    let k = key(&peer.fingerprint_sha256);
    for _ in 0..2 {
        let current = store.get(&k)?;
        if let Some(p) = current
            .as_deref()
            .and_then(|b| serde_json::from_slice::<Pin>(b).ok())
            .filter(|p| p.not_after > now)
        {
            return Ok(p);
        }
        let pin = Pin {
            address: normalize(address),
            first_seen: now,
            not_after: peer.not_after.unix_timestamp(),
            role: role.to_owned(),
        };
        let bytes = serde_json::to_vec(&pin).map_err(|e| StoreError::Backend {
            op: "pin",
            source: Box::new(e),
        })?;
        match store.transaction(&[TxOp::check(k.clone(), current), TxOp::put(k.clone(), bytes)]) {
            Ok(()) => return Ok(pin),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    // A second conflict: someone pinned in between; theirs is in force.
    lookup(store, &peer.fingerprint_sha256, now)?.ok_or_else(|| StoreError::Backend {
        op: "pin",
        source: Box::new(std::io::Error::other(
            "the pin changed twice while being written",
        )),
    })
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A use of a pinned certificate that is refused: the answer, and the reason for the audit
/// line (`None` when nothing was decided: sealed, storage failure).
#[derive(Debug)]
pub struct Refused {
    /// The answer.
    pub error: ApiError,
    /// Why, for the audit line.
    pub reason: Option<String>,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Refused {
        Refused {
            error,
            reason: None,
        }
    }
}

fn refused(role: &str) -> ApiError {
    ApiError::client(
        StatusCode::FORBIDDEN,
        format!(
            "permission denied: role {role:?} pins each certificate to the address it first logged in from (pin_first_seen_address), and this request comes from another address; if the agent moved, give it a new certificate"
        ),
    )
}

/// Enforces the pin of `peer`'s certificate for a login or tokenless request under `role`
/// (which sets `pin_first_seen_address`): pins the certificate on its first use, refuses (403,
/// alert) a use from another address, with the reason for the audit line. Returns the pinned
/// address.
pub async fn enforce(
    state: &Arc<AppState>,
    peer: &Arc<PeerIdentity>,
    from: Option<SocketAddr>,
    role: &str,
    access: Access,
) -> Result<IpAddr, Refused> {
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let Some(source) = from.map(|a| normalize(a.ip())) else {
        // Only a test without a PeerAddr gets here: the listener always knows the address.
        return Err(ApiError::client(
            StatusCode::FORBIDDEN,
            format!(
                "permission denied: role {role:?} pins certificates to an address, and this connection's address is unknown"
            ),
        )
        .into());
    };
    let t = now();
    let existing = lookup(&*store, &peer.fingerprint_sha256, t).map_err(ApiError::from)?;
    let pin = match existing {
        Some(p) => p,
        None => {
            let peer = peer.clone();
            let role = role.to_owned();
            // The first pin is a write, which syncs: off the async workers.
            let pin =
                tokio::task::spawn_blocking(move || pin_if_new(&*store, &peer, source, &role, t))
                    .await
                    .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
                    .map_err(ApiError::from)?;
            if pin.address == source {
                tracing::info!(target: "keep::auth", %source, role = %pin.role, "certificate pinned to the address of its first login");
            }
            pin
        }
    };
    if pin.address == source {
        return Ok(pin.address);
    }
    state
        .alerts
        .not_pinned_address(access, peer, from, role, pin.address);
    Err(Refused {
        error: refused(role),
        reason: Some(format!(
            "certificate pinned to {} (pin_first_seen_address), used from {source}",
            pin.address
        )),
    })
}

/// Checks a token of a pinned certificate against the request's address (no storage access:
/// the pin was copied into the token at login). Refuses (403, alert) a use from another
/// address, with the reason for the audit line.
pub fn check_token(
    state: &AppState,
    entry: &TokenEntry,
    peer: &PeerIdentity,
    from: Option<SocketAddr>,
) -> Result<(), Refused> {
    let Some(pinned) = entry.pinned_address else {
        return Ok(());
    };
    if from.is_some_and(|a| normalize(a.ip()) == pinned) {
        return Ok(());
    }
    state
        .alerts
        .not_pinned_address(Access::TokenUse, peer, from, &entry.role, pinned);
    Err(Refused {
        error: refused(&entry.role),
        reason: Some(format!(
            "token of a certificate pinned to {pinned} used from another address"
        )),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keep_store::MemStore;
    use keep_test_support::TestPki;
    use rustls_pki_types::CertificateDer;

    fn peer() -> PeerIdentity {
        let pki = TestPki::new();
        let chain: Vec<CertificateDer<'static>> = pki
            .client
            .chain_der
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        keep_tls::identity::from_verified_chain(&chain).unwrap()
    }

    #[test]
    fn first_address_wins_and_expires_with_the_certificate() {
        let store = MemStore::new();
        let peer = peer();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            lookup(&store, &peer.fingerprint_sha256, now)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            pin_if_new(&store, &peer, a, "agents", now).unwrap().address,
            a
        );
        // A second "first" login from elsewhere gets the existing pin back.
        let p = pin_if_new(&store, &peer, b, "agents", now).unwrap();
        assert_eq!((p.address, p.role.as_str()), (a, "agents"));
        assert_eq!(
            lookup(&store, &peer.fingerprint_sha256, now)
                .unwrap()
                .map(|p| p.address),
            Some(a)
        );
        // After the certificate's notAfter the pin is void and a new one can be made.
        let later = peer.not_after.unix_timestamp() + 1;
        assert!(
            lookup(&store, &peer.fingerprint_sha256, later)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            pin_if_new(&store, &peer, b, "agents", later)
                .unwrap()
                .address,
            b
        );
    }

    #[test]
    fn mapped_addresses_are_the_same_address() {
        assert_eq!(
            normalize("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            normalize("::1".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
    }
}
