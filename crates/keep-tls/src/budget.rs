//! Connection budgets: who may hold how many of the listener's connection slots, and for how
//! long a connection may sit idle.
//!
//! Every accepted connection is [`admitted`](Budget::admit) into three nested pools before any
//! TLS byte is read, and leaves the first two when its handshake succeeds:
//!
//! | pool | bound | while |
//! |---|---|---|
//! | per source address (IPv4 address, IPv6 /64) | [`ListenerOptions::per_source_handshaking`] | handshaking |
//! | all handshaking connections | [`ListenerOptions::max_handshaking`] | handshaking |
//! | all connections | [`ListenerOptions::max_connections`] | open |
//!
//! Once verified, a connection [moves](Admission::verified) to the authenticated pool: it keeps
//! its slot in the global cap and counts against its certificate (by SHA-256 fingerprint),
//! bounded by [`ListenerOptions::per_identity_connections`]. So a flood of silent TCP
//! connections or half-sent ClientHellos from one address holds at most
//! `per_source_handshaking` slots, a flood from many addresses at most `max_handshaking`, and
//! one (stolen or misbehaving) certificate at most `per_identity_connections`: verified clients
//! always find room.
//!
//! [`IdleTracker`] is the other half: the HTTP layer marks each request's start and end, and a
//! connection with no request in flight for the idle timeout is closed, whatever certificate it
//! holds.
//!
//! [`ListenerOptions::per_source_handshaking`]: crate::listener::ListenerOptions::per_source_handshaking
//! [`ListenerOptions::max_handshaking`]: crate::listener::ListenerOptions::max_handshaking
//! [`ListenerOptions::max_connections`]: crate::listener::ListenerOptions::max_connections
//! [`ListenerOptions::per_identity_connections`]: crate::listener::ListenerOptions::per_identity_connections

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::counters;

/// Why a connection was refused a slot (the `reason` label of
/// `keep_tls_connections_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// `max_connections` connections are open.
    Limit,
    /// `max_handshaking` connections are handshaking.
    Handshaking,
    /// The source address has `per_source_handshaking` connections handshaking.
    PerSource,
    /// The verified certificate has `per_identity_connections` connections open.
    PerIdentity,
}

impl Rejection {
    /// Every reason, for registering the series at zero.
    pub const ALL: [Rejection; 4] = [
        Rejection::Limit,
        Rejection::Handshaking,
        Rejection::PerSource,
        Rejection::PerIdentity,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Limit => "limit",
            Rejection::Handshaking => "handshaking",
            Rejection::PerSource => "per_source",
            Rejection::PerIdentity => "per_identity",
        }
    }

    /// The listener option that bounds this pool, for log lines.
    pub fn option(self) -> &'static str {
        match self {
            Rejection::Limit => "max_connections",
            Rejection::Handshaking => "max_handshaking",
            Rejection::PerSource => "per_source_handshaking",
            Rejection::PerIdentity => "per_identity_connections",
        }
    }
}

/// Who a source address is, for the per-source cap: an IPv4 address, or an IPv6 /64 (one
/// host usually holds a whole /64, so per-address limits would be no limit at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl SourceKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey::V4(v4),
            IpAddr::V6(v6) => SourceKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Counts per key, bounded; an entry lives while its count is above zero.
struct Counts<K> {
    limit: usize,
    map: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash> Counts<K> {
    fn new(limit: usize) -> Self {
        Counts {
            limit,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Adds one for `key` unless it is at the limit.
    fn try_add(&self, key: K) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= self.limit {
            return false;
        }
        *n += 1;
        true
    }

    fn remove(&self, key: &K) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(key);
            }
        }
    }
}

/// The listener's connection pools (module docs). Shared by the accept loop and every
/// connection task.
pub struct Budget {
    total: Arc<Semaphore>,
    handshaking: Arc<Semaphore>,
    per_source: Counts<SourceKey>,
    per_identity: Counts<String>,
}

impl Budget {
    /// Pools of the given sizes. The handshaking and per-source bounds are clamped to the total
    /// (a bound above it would never bite); every bound is at least 1.
    pub fn new(
        max_connections: usize,
        max_handshaking: usize,
        per_source_handshaking: usize,
        per_identity_connections: usize,
    ) -> Arc<Budget> {
        let total = max_connections.max(1);
        let handshaking = max_handshaking.clamp(1, total);
        Arc::new(Budget {
            total: Arc::new(Semaphore::new(total)),
            handshaking: Arc::new(Semaphore::new(handshaking)),
            per_source: Counts::new(per_source_handshaking.clamp(1, handshaking)),
            per_identity: Counts::new(per_identity_connections.clamp(1, total)),
        })
    }

    /// Admits a new connection from `ip` as handshaking, or says which pool is full. Checked
    /// from the global cap in, so a full server reports `limit` (what the critical alert
    /// watches) and a flood from one address on a server with room reports `per_source`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Rejection> {
        let Ok(slot) = Arc::clone(&self.total).try_acquire_owned() else {
            return Err(Rejection::Limit);
        };
        let Ok(handshaking) = Arc::clone(&self.handshaking).try_acquire_owned() else {
            return Err(Rejection::Handshaking);
        };
        let source = SourceKey::of(ip);
        if !self.per_source.try_add(source) {
            return Err(Rejection::PerSource);
        }
        let source_guard = SourceGuard {
            budget: Arc::clone(self),
            source,
        };
        counters::connections_open(Stage::Handshaking, 1.0);
        Ok(Admission {
            _slot: slot,
            handshaking: Some((handshaking, source_guard)),
            identity: None,
        })
    }
}

/// Which pool an open connection is in (the `state` label of `keep_tls_connections_open`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Accepted, handshake not finished.
    Handshaking,
    /// Handshake finished, client verified.
    Established,
}

impl Stage {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Handshaking => "handshaking",
            Stage::Established => "established",
        }
    }
}

struct SourceGuard {
    budget: Arc<Budget>,
    source: SourceKey,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        self.budget.per_source.remove(&self.source);
    }
}

struct IdentityGuard {
    budget: Arc<Budget>,
    fingerprint: String,
}

impl Drop for IdentityGuard {
    fn drop(&mut self) {
        self.budget.per_identity.remove(&self.fingerprint);
    }
}

/// A verified connection over its certificate's bound: it still holds its `max_connections`
/// slot (not a per-certificate one) until dropped, while the refusal is answered.
pub struct Refused {
    reason: Rejection,
    _admission: Admission,
}

impl Refused {
    /// Which bound refused the connection.
    pub fn reason(&self) -> Rejection {
        self.reason
    }
}

impl std::fmt::Debug for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refused")
            .field("reason", &self.reason)
            .finish()
    }
}

/// A connection's place in the [`Budget`]; dropping it frees the place.
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    handshaking: Option<(OwnedSemaphorePermit, SourceGuard)>,
    identity: Option<IdentityGuard>,
}

impl Admission {
    /// The handshake succeeded: leaves the handshaking pools and, if the client presented a
    /// certificate (its SHA-256 `fingerprint`), counts the connection against it. Refused when
    /// that certificate already holds `per_identity_connections` connections.
    /// A refused connection keeps its `max_connections` slot in the [`Refused`] until it is
    /// dropped, so answering the refusal cannot take more connections than the budget has.
    pub fn verified(mut self, fingerprint: Option<String>) -> Result<Admission, Refused> {
        let Some((_, source)) = self.handshaking.take() else {
            return Ok(self);
        };
        counters::connections_open(Stage::Handshaking, -1.0);
        counters::connections_open(Stage::Established, 1.0);
        let budget = Arc::clone(&source.budget);
        drop(source);
        if let Some(fingerprint) = fingerprint {
            if !budget.per_identity.try_add(fingerprint.clone()) {
                return Err(Refused {
                    reason: Rejection::PerIdentity,
                    _admission: self,
                });
            }
            self.identity = Some(IdentityGuard {
                budget,
                fingerprint,
            });
        }
        Ok(self)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let stage = if self.handshaking.is_some() {
            Stage::Handshaking
        } else {
            Stage::Established
        };
        counters::connections_open(stage, -1.0);
    }
}

/// Whether a connection is idle: the HTTP layer calls [`IdleTracker::request`] for each request
/// and holds the guard until the response is ready; [`IdleTracker::idle_for`] completes once
/// no request has been in flight for the given time. Cheap to clone (one per connection, shared
/// by its requests).
#[derive(Clone, Debug)]
pub struct IdleTracker {
    inner: Arc<IdleInner>,
}

#[derive(Debug)]
struct IdleInner {
    in_flight: AtomicUsize,
    last_active: Mutex<Instant>,
}

/// One request in flight on a tracked connection; dropping it ends the request.
#[derive(Debug)]
pub struct RequestGuard {
    inner: Arc<IdleInner>,
}

impl Default for IdleTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl IdleTracker {
    /// A tracker for a connection that has just opened (idle from now).
    pub fn new() -> Self {
        IdleTracker {
            inner: Arc::new(IdleInner {
                in_flight: AtomicUsize::new(0),
                last_active: Mutex::new(Instant::now()),
            }),
        }
    }

    /// Marks a request as started.
    pub fn request(&self) -> RequestGuard {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Completes when no request has been in flight for `timeout` (before the first request,
    /// that is `timeout` after [`IdleTracker::new`]). Cancel-safe.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = *self
                .inner
                .last_active
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if self.inner.in_flight.load(Ordering::Acquire) > 0 {
                // Busy: look again after a full timeout; the request's end resets the clock.
                tokio::time::sleep(timeout).await;
                continue;
            }
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self
            .inner
            .last_active
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ipv6_sources_are_grouped_by_64_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::of(a), SourceKey::of(b));
        assert_ne!(SourceKey::of(a), SourceKey::of(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(
            SourceKey::of(mapped),
            SourceKey::V4(Ipv4Addr::new(127, 0, 0, 2))
        );
    }

    #[tokio::test]
    async fn pools_bound_sources_handshakes_and_identities() {
        let budget = Budget::new(4, 3, 2, 1);
        let one: IpAddr = "127.0.0.2".parse().unwrap();
        let a = budget.admit(one).unwrap();
        let b = budget.admit(one).unwrap();
        assert_eq!(budget.admit(one).err(), Some(Rejection::PerSource));
        // Another address still gets in, up to the handshaking bound.
        let c = budget.admit("127.0.0.3".parse().unwrap()).unwrap();
        assert_eq!(
            budget.admit("127.0.0.4".parse().unwrap()).err(),
            Some(Rejection::Handshaking)
        );
        // A verified connection leaves the handshaking pools.
        let a = a.verified(Some("fp".into())).unwrap();
        let d = budget.admit(one).unwrap();
        let c = c.verified(None).unwrap();
        // The total cap counts established connections too.
        assert_eq!(
            budget.admit("127.0.0.5".parse().unwrap()).err(),
            Some(Rejection::Limit)
        );
        // One certificate holds at most per_identity_connections.
        assert_eq!(
            b.verified(Some("fp".into())).err().map(|r| r.reason()),
            Some(Rejection::PerIdentity)
        );
        drop(a);
        assert!(d.verified(Some("fp".into())).is_ok());
        drop(c);
    }

    #[tokio::test]
    async fn idle_for_waits_for_the_last_request_to_end() {
        let idle = IdleTracker::new();
        let guard = idle.request();
        let waited = tokio::spawn({
            let idle = idle.clone();
            async move {
                let start = Instant::now();
                idle.idle_for(Duration::from_millis(300)).await;
                start.elapsed()
            }
        });
        // Busy for 700 ms (over two idle timeouts), then idle.
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(guard);
        let elapsed = waited.await.unwrap();
        assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    }
}
