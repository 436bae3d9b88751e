//! `unexpected_source_address` for `token_bound_cidrs`: when role selection refused a
//! certificate, find the roles that refused it *only* because of where it came from.
//!
//! A certificate that matches no role at all is a wrong certificate, not a right one in the
//! wrong place, and gets no alert here. The extra scan runs only on a refusal.

use std::net::SocketAddr;
use std::sync::Arc;

use keep_tls::identity::PeerIdentity;

use crate::alerts::{Access, Alerts};
use crate::auth::role::{CompiledRole, Mismatch};
use crate::auth::{RoleMap, SelectError};

/// The roles (named, or all candidates) that accept `peer`'s certificate but not `from`.
pub fn refused_for_address<'a>(
    roles: &'a RoleMap,
    name: Option<&str>,
    peer: &PeerIdentity,
    from: Option<SocketAddr>,
    only_tokenless: bool,
) -> Vec<&'a Arc<CompiledRole>> {
    let ip = from.map(|a| a.ip());
    let candidates: Vec<&Arc<CompiledRole>> = match name.filter(|n| !n.is_empty()) {
        Some(n) => roles.get(n).into_iter().collect(),
        None => roles.values().collect(),
    };
    // Cheap checks first: most refusals involve no role with CIDRs at all, and then the
    // chain is not even looked at.
    let refusing_address: Vec<&Arc<CompiledRole>> = candidates
        .into_iter()
        .filter(|r| !only_tokenless || r.role.allow_tokenless)
        .filter(|r| r.address_allowed(ip) == Err(Mismatch::Cidr))
        .collect();
    if refusing_address.is_empty() {
        return refusing_address;
    }
    refusing_address
        .into_iter()
        .filter(|r| r.matches_certificate(peer).is_ok())
        .collect()
}

/// Raises the alert for a refused login or tokenless request, when the refusal was about the
/// source address. Returns whether an alert went out.
pub fn on_refusal(
    alerts: &Alerts,
    access: Access,
    roles: &RoleMap,
    name: Option<&str>,
    peer: &PeerIdentity,
    from: Option<SocketAddr>,
    error: &SelectError,
) -> bool {
    match error {
        SelectError::Mismatch(_, Mismatch::Cidr) | SelectError::NoMatch => {}
        // Unknown role, another check failed, several roles: not about the address.
        _ => return false,
    }
    let refused = refused_for_address(roles, name, peer, from, access == Access::Tokenless);
    if refused.is_empty() {
        return false;
    }
    let names: Vec<&str> = refused.iter().map(|r| r.name.as_str()).collect();
    let mut cidrs: Vec<String> = Vec::new();
    for r in &refused {
        for c in &r.role.token_bound_cidrs {
            if !cidrs.contains(c) {
                cidrs.push(c.clone());
            }
        }
    }
    alerts.outside_bound_cidrs(access, peer, from, &names.join(", "), &cidrs)
}
