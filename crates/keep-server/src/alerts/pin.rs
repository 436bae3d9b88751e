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
//!
//! This file is the pin store, HTTP-free; the request side (refusing, alerting, auditing) is
//! `api::pin`.

use std::net::IpAddr;

use keep_store::{Store, StoreError, TxOp};
use keep_tls::identity::PeerIdentity;
use serde::{Deserialize, Serialize};

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
