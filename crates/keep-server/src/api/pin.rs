//! Enforcing `pin_first_seen_address` on requests (see [`crate::alerts::pin`] for the pins
//! themselves): a login or tokenless request pins its certificate on first use; a use from
//! another address is refused with a 403, raises an `unexpected_source_address` alert and
//! leaves a note in the audit entry.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::StatusCode;
use keep_tls::identity::PeerIdentity;

use crate::alerts::Access;
use crate::alerts::pin::{lookup, normalize, pin_if_new};
use crate::api::error::ApiError;
use crate::api::{blocking, read_now};
use crate::auth::token::TokenEntry;
use crate::state::AppState;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
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
/// alert, audit note) a use from another address. Returns the pinned address.
pub async fn enforce(
    state: &Arc<AppState>,
    peer: &Arc<PeerIdentity>,
    from: Option<SocketAddr>,
    role: &str,
    access: Access,
) -> Result<IpAddr, ApiError> {
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let Some(source) = from.map(|a| normalize(a.ip())) else {
        // Only a test without a PeerAddr gets here: the listener always knows the address.
        return Err(ApiError::client(
            StatusCode::FORBIDDEN,
            format!(
                "permission denied: role {role:?} pins certificates to an address, and this connection's address is unknown"
            ),
        ));
    };
    let t = now();
    let existing = {
        let store = store.clone();
        let fp = peer.fingerprint_sha256.clone();
        read_now(move || lookup(&*store, &fp, t).map_err(|e| ApiError::internal(e.to_string())))
            .await?
    };
    let pin = match existing {
        Some(p) => p,
        None => {
            let peer = peer.clone();
            let role = role.to_owned();
            let pin = blocking(move || {
                pin_if_new(&*store, &peer, source, &role, t)
                    .map_err(|e| ApiError::internal(e.to_string()))
            })
            .await?;
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
    crate::api::audit_layer::note(|c| {
        c.decision = Some((
            false,
            format!(
                "certificate pinned to {} (pin_first_seen_address), used from {source}",
                pin.address
            ),
        ))
    });
    Err(refused(role))
}

/// Checks a token of a pinned certificate against the request's address (no storage access:
/// the pin was copied into the token at login). Refuses (403, alert, audit note) a use from
/// another address.
pub fn check_token(
    state: &AppState,
    entry: &TokenEntry,
    peer: &PeerIdentity,
    from: Option<SocketAddr>,
) -> Result<(), ApiError> {
    let Some(pinned) = entry.pinned_address else {
        return Ok(());
    };
    if from.is_some_and(|a| normalize(a.ip()) == pinned) {
        return Ok(());
    }
    state
        .alerts
        .not_pinned_address(Access::TokenUse, peer, from, &entry.role, pinned);
    crate::api::audit_layer::note(|c| {
        c.decision = Some((
            false,
            format!("token of a certificate pinned to {pinned} used from another address"),
        ))
    });
    Err(refused(&entry.role))
}
