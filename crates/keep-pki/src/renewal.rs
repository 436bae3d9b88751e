//! When a certificate needs renewal (`keep certificate needs-renewal`, and later the agent's
//! renewal timer).
//!
//! Thresholds are relative to the certificate's own lifetime by default, because a fixed "30
//! days" means nothing for a 24-hour certificate: the default renews once two thirds of the
//! lifetime have passed, i.e. when less than a third remains.

use time::{Duration, OffsetDateTime};

use crate::cert::Certificate;
use crate::duration::{DurationError, parse_duration};

/// How close to expiry counts as "needs renewal".
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// Renew when less than this much time remains.
    Remaining(Duration),
    /// Renew when less than this percentage of the total lifetime remains.
    Percent(f64),
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold::Percent(100.0 / 3.0)
    }
}

impl Threshold {
    /// How long before `not_after` the threshold is crossed, for a certificate that lives
    /// `lifetime` (a zero or negative lifetime gives a zero window for percentages).
    pub fn window(self, lifetime: Duration) -> Duration {
        match self {
            Threshold::Remaining(d) => d,
            Threshold::Percent(p) => {
                Duration::seconds_f64(lifetime.as_seconds_f64().max(0.0) * p / 100.0)
            }
        }
    }
}

impl std::fmt::Display for Threshold {
    /// `33%` (at most one decimal) or a human duration (`30 days`, `4 hours`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threshold::Percent(p) if p.fract() == 0.0 => write!(f, "{p:.0}%"),
            Threshold::Percent(p) => write!(f, "{p:.1}%"),
            Threshold::Remaining(d) => f.write_str(&crate::inspect::human_duration(*d)),
        }
    }
}

/// Parses `--expires-in`: a duration (`4h`, `30d`) or a percentage of the lifetime (`33%`).
pub fn parse_threshold(s: &str) -> Result<Threshold, DurationError> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| DurationError {
            input: s.to_owned(),
            problem: "the percentage is not a number".into(),
        })?;
        if !(0.0..=100.0).contains(&v) {
            return Err(DurationError {
                input: s.to_owned(),
                problem: "a percentage must be between 0 and 100".into(),
            });
        }
        return Ok(Threshold::Percent(v));
    }
    let d = parse_duration(t)?;
    if d.is_negative() {
        return Err(DurationError {
            input: s.to_owned(),
            problem: "the window must not be negative".into(),
        });
    }
    Ok(Threshold::Remaining(d))
}

/// The outcome of a renewal check.
#[derive(Clone, Debug, PartialEq)]
pub struct RenewalCheck {
    /// Whether the certificate should be renewed now.
    pub needs_renewal: bool,
    /// Whether it has already expired.
    pub expired: bool,
    /// Time left until `not_after` (negative once expired).
    pub remaining: Duration,
    /// When the threshold is (or was) crossed.
    pub renew_at: OffsetDateTime,
}

/// Checks `cert` against `threshold` at `now`.
pub fn check(cert: &Certificate, threshold: Threshold, now: OffsetDateTime) -> RenewalCheck {
    let remaining = cert.not_after - now;
    let renew_at = cert.not_after - threshold.window(cert.lifetime());
    RenewalCheck {
        needs_renewal: now >= renew_at,
        expired: now >= cert.not_after,
        remaining,
        renew_at,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cert(nb: OffsetDateTime, na: OffsetDateTime) -> Certificate {
        Certificate {
            der: vec![],
            not_before: nb,
            not_after: na,
            is_ca: false,
            self_issued: false,
            common_name: None,
        }
    }

    #[test]
    fn default_renews_after_two_thirds_of_the_lifetime() {
        let nb = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let c = cert(nb, nb + Duration::hours(24));
        let d = Threshold::default();
        assert!(!check(&c, d, nb + Duration::hours(15)).needs_renewal);
        assert!(check(&c, d, nb + Duration::hours(17)).needs_renewal);
        let expired = check(&c, d, nb + Duration::hours(25));
        assert!(expired.needs_renewal && expired.expired);
        assert!(expired.remaining.is_negative());
    }

    #[test]
    fn absolute_and_percent_windows() {
        let nb = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let c = cert(nb, nb + Duration::days(90));
        let t = parse_threshold("30d").unwrap();
        assert!(!check(&c, t, nb + Duration::days(59)).needs_renewal);
        assert!(check(&c, t, nb + Duration::days(61)).needs_renewal);
        let p = parse_threshold("10%").unwrap();
        assert_eq!(p, Threshold::Percent(10.0));
        assert!(!check(&c, p, nb + Duration::days(80)).needs_renewal);
        assert!(check(&c, p, nb + Duration::days(82)).needs_renewal);
        assert!(parse_threshold("150%").is_err());
        assert!(parse_threshold("-1h").is_err());
        assert!(parse_threshold("abc%").is_err());
    }
}
