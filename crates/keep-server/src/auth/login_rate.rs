//! The per-identity login rate limit (`auth.login_rate`): a token bucket per client
//! certificate, answering 429 once an identity has used its burst.
//!
//! Why per certificate fingerprint: the certificate is the identity a login authenticates, and
//! the only thing an attacker on the network cannot vary without holding another valid key.
//! (An address is shared by every agent behind a NAT and says nothing about who logs in.)
//!
//! A login storm (one identity refused for going over its rate) *starts* at its first refused
//! login and *ends* once the identity has stopped long enough for its bucket to refill
//! completely; [`Verdict::Limited::storm_started`] is true exactly once per storm, so the
//! alert it drives (`login_storm`) goes out once per storm, not once per refused login.
//!
//! Pure and clock-injected (every call takes `now`), so its behaviour is unit-tested to the
//! instant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `auth.login_rate`: the sustained rate and the burst each identity may log in at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoginRate {
    /// Logins per second an identity may sustain.
    pub per_second: f64,
    /// Logins an identity may make at once after being idle.
    pub burst: u32,
}

/// The default: 5 logins a second, bursts of 20 — far above what an agent needs (one login per
/// token lifetime, or per restart) and far below what a runaway loop does.
impl Default for LoginRate {
    fn default() -> Self {
        LoginRate {
            per_second: 5.0,
            burst: 20,
        }
    }
}

/// How many identities the limiter tracks at most. Beyond that, identities share one bucket
/// (see [`LoginLimiter`]); 16,384 buckets are about 2 MiB.
pub const MAX_IDENTITIES: usize = 16_384;

/// Key of the shared bucket for identities beyond [`MAX_IDENTITIES`]. Never a fingerprint: those
/// are 64 hex digits.
const OVERFLOW: &str = "";

/// The outcome of one login attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: go on.
    Allowed,
    /// Over the rate: refuse with 429.
    Limited {
        /// When the identity may try again (`Retry-After`).
        retry_after: Duration,
        /// Whether this refusal starts a storm (the first since the identity was last idle
        /// long enough to refill its bucket).
        storm_started: bool,
    },
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// In a storm: refused since the bucket was last full.
    storming: bool,
}

/// Token buckets by client-certificate fingerprint, memory bounded by [`MAX_IDENTITIES`].
///
/// The bound: identities only come from certificates the listener verified, but a compromised
/// CA or a large fleet must still not grow this map without limit. When it is full, buckets that
/// have refilled completely are dropped first (a full bucket is the same as no bucket, so that
/// loses nothing); if every tracked identity is still busy, a new identity shares one overflow
/// bucket with the others beyond the bound. That errs on refusing: with more than 16,384
/// identities logging in at once, the extra ones together get one identity's rate.
#[derive(Debug)]
pub struct LoginLimiter {
    rate: LoginRate,
    cap: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(LoginRate::default())
    }
}

impl LoginLimiter {
    /// A limiter for `rate`, tracking at most [`MAX_IDENTITIES`] identities.
    pub fn new(rate: LoginRate) -> Self {
        Self::with_capacity(rate, MAX_IDENTITIES)
    }

    /// A limiter tracking at most `cap` identities (tests use a small one).
    pub fn with_capacity(rate: LoginRate, cap: usize) -> Self {
        LoginLimiter {
            rate,
            cap: cap.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> LoginRate {
        self.rate
    }

    /// Records one login attempt by `identity` (a certificate fingerprint) at `now`.
    pub fn check(&self, identity: &str, now: Instant) -> Verdict {
        let burst = f64::from(self.rate.burst.max(1));
        let per_second = self.rate.per_second;
        // The state is a few numbers per identity; a panic elsewhere cannot leave it in a shape
        // that matters, and refusing every later login would be worse.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let refilled = |b: &Bucket| {
            let idle = now.saturating_duration_since(b.last).as_secs_f64();
            (b.tokens + idle * per_second).min(burst)
        };
        let key = if buckets.contains_key(identity) || buckets.len() < self.cap {
            identity
        } else {
            buckets.retain(|_, b| refilled(b) < burst);
            if buckets.len() < self.cap {
                identity
            } else {
                OVERFLOW
            }
        };
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
            storming: false,
        });
        bucket.tokens = refilled(bucket);
        bucket.last = now;
        if bucket.tokens >= burst {
            bucket.storming = false;
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Allowed;
        }
        let storm_started = !bucket.storming;
        bucket.storming = true;
        let wait = (1.0 - bucket.tokens) / per_second;
        Verdict::Limited {
            retry_after: Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(1)),
            storm_started,
        }
    }

    /// How many buckets are tracked (the overflow bucket included).
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Whether no identity is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `Retry-After` in whole seconds, rounded up and at least 1 (HTTP has no fractions here).
pub fn retry_after_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> LoginRate {
        LoginRate { per_second, burst }
    }

    fn limited(v: Verdict) -> Option<(Duration, bool)> {
        match v {
            Verdict::Allowed => None,
            Verdict::Limited {
                retry_after,
                storm_started,
            } => Some((retry_after, storm_started)),
        }
    }

    #[test]
    fn the_burst_passes_then_429_and_the_storm_starts_once() {
        let l = LoginLimiter::new(rate(2.0, 3));
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check("a", t), Verdict::Allowed);
        }
        let (wait, started) = limited(l.check("a", t)).unwrap_or_default();
        assert!(started);
        assert_eq!(wait, Duration::from_millis(500));
        for _ in 0..10 {
            let (_, started) = limited(l.check("a", t)).unwrap_or_default();
            assert!(!started, "one storm, one start");
        }
        // Another identity is not affected.
        assert_eq!(l.check("b", t), Verdict::Allowed);
    }

    #[test]
    fn the_rate_refills_and_a_new_storm_after_idling_starts_again() {
        let l = LoginLimiter::new(rate(2.0, 2));
        let t = Instant::now();
        assert_eq!(l.check("a", t), Verdict::Allowed);
        assert_eq!(l.check("a", t), Verdict::Allowed);
        assert!(limited(l.check("a", t)).is_some_and(|(_, s)| s));
        // Half a second later one login is allowed again, but the storm goes on.
        let t = t + Duration::from_millis(500);
        assert_eq!(l.check("a", t), Verdict::Allowed);
        assert!(limited(l.check("a", t)).is_some_and(|(_, s)| !s));
        // Idle until the bucket is full (1 s for 2 logins at 2/s): the storm is over.
        let t = t + Duration::from_secs(1);
        assert_eq!(l.check("a", t), Verdict::Allowed);
        assert_eq!(l.check("a", t), Verdict::Allowed);
        assert!(
            limited(l.check("a", t)).is_some_and(|(_, s)| s),
            "a new storm"
        );
    }

    #[test]
    fn memory_is_bounded_and_idle_identities_are_dropped_first() {
        let l = LoginLimiter::with_capacity(rate(1.0, 2), 4);
        let t = Instant::now();
        for i in 0..4 {
            assert_eq!(l.check(&format!("id{i}"), t), Verdict::Allowed);
        }
        assert_eq!(l.len(), 4);
        // Full and busy: newcomers share the overflow bucket (burst 2 between them).
        assert_eq!(l.check("new1", t), Verdict::Allowed);
        assert_eq!(l.check("new2", t), Verdict::Allowed);
        assert!(limited(l.check("new3", t)).is_some());
        assert_eq!(l.len(), 5, "the cap plus one shared bucket, never more");
        for i in 0..1000 {
            let _ = l.check(&format!("flood{i}"), t);
        }
        assert_eq!(l.len(), 5);
        // Once the tracked identities have refilled, they are dropped and newcomers get their
        // own bucket again.
        let t = t + Duration::from_secs(10);
        assert_eq!(l.check("later", t), Verdict::Allowed);
        assert_eq!(l.check("later", t), Verdict::Allowed);
        assert!(l.len() <= 2, "{}", l.len());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
