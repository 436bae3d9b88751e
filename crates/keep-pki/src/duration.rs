//! Durations and points in time as step spells them on the command line.
//!
//! `--not-before` / `--not-after` take either a duration relative to now (`24h`, `90d`,
//! `1h30m`, `-5m` for the past) or an RFC 3339 time (`2026-01-02T03:04:05Z`). Past values are
//! allowed on purpose: tests and drills need expired certificates.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// A duration or time that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a duration or RFC 3339 time: {problem}; examples: 24h, 90d, 1h30m, -5m, 2027-01-01T00:00:00Z"
)]
pub struct DurationError {
    /// What the user typed.
    pub input: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Either a point in time or an offset from "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// An offset from the time the command runs.
    Relative(Duration),
    /// A fixed point in time.
    Absolute(OffsetDateTime),
}

impl TimeSpec {
    /// Resolves against `now`.
    pub fn resolve(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            TimeSpec::Relative(d) => now + d,
            TimeSpec::Absolute(t) => t,
        }
    }
}

/// Parses `24h`, `90d`, `1h30m`, `-5m`, `1w`, `1y` (365 days), `300s`, `1.5h`.
///
/// Units: `ns us µs ms s m h d w y`. A bare `0` is zero. A leading `-` negates the whole value.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |problem: &str| DurationError {
        input: input.to_owned(),
        problem: problem.to_owned(),
    };
    let s = input.trim();
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("a number needs a unit (s, m, h, d, …)"))?;
        if num_end == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..num_end]
            .parse()
            .map_err(|_| err("the number is malformed"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let ns_per_unit: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            "w" => 7.0 * 86_400e9,
            "y" => 365.0 * 86_400e9,
            _ => return Err(err(&format!("unknown unit {unit:?}"))),
        };
        total_ns += value * ns_per_unit;
    }
    // 1,000 years is far beyond any certificate lifetime and well inside i64 nanoseconds.
    if total_ns > 1000.0 * 365.0 * 86_400e9 {
        return Err(err("it is longer than 1000 years"));
    }
    #[allow(clippy::cast_possible_truncation)] // bounded just above
    let d = Duration::nanoseconds(total_ns as i64);
    Ok(if negative { -d } else { d })
}

/// Parses a `--not-before`/`--not-after` value: a duration from now or an RFC 3339 time.
pub fn parse_time_spec(input: &str) -> Result<TimeSpec, DurationError> {
    let s = input.trim();
    if s.contains('T') && s.contains(':') {
        return OffsetDateTime::parse(s, &Rfc3339)
            .map(TimeSpec::Absolute)
            .map_err(|e| DurationError {
                input: input.to_owned(),
                problem: format!("bad RFC 3339 time ({e})"),
            });
    }
    parse_duration(s).map(TimeSpec::Relative)
}

/// Formats a time as RFC 3339 in UTC, seconds precision (`2027-02-26T12:00:00Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_parse_as_step_users_write_them() {
        let cases = [
            ("24h", Duration::hours(24)),
            ("90d", Duration::days(90)),
            ("1h30m", Duration::minutes(90)),
            ("-5m", Duration::minutes(-5)),
            ("300s", Duration::seconds(300)),
            ("1.5h", Duration::minutes(90)),
            ("1w", Duration::days(7)),
            ("1y", Duration::days(365)),
            ("0", Duration::ZERO),
            ("500ms", Duration::milliseconds(500)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for (input, words) in [
            ("", "empty"),
            ("10", "needs a unit"),
            ("10x", "unknown unit"),
            ("h", "expected a number"),
            ("99999999y", "1000 years"),
        ] {
            let e = parse_duration(input).unwrap_err();
            assert!(e.to_string().contains(words), "{input}: {e}");
            assert!(e.to_string().contains("examples"), "{e}");
        }
    }

    #[test]
    fn time_specs_accept_rfc3339_and_durations() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(
            parse_time_spec("2027-01-02T03:04:05Z")
                .unwrap()
                .resolve(now),
            OffsetDateTime::from_unix_timestamp(1_798_859_045).unwrap()
        );
        assert_eq!(
            parse_time_spec("-1h").unwrap().resolve(now),
            now - Duration::hours(1)
        );
        assert!(parse_time_spec("2027-13-02T03:04:05Z").is_err());
        assert_eq!(rfc3339(now), "2027-01-15T08:00:00Z");
    }
}
