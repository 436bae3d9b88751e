//! The two pieces of state behind the detectors, pure and clock-injected so their behaviour is
//! unit-tested to the instant: a sliding-window spike detector with hysteresis, and a per-key
//! rate limiter.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Counts events in a sliding window and says when a spike starts.
///
/// A spike *starts* when more than `threshold` events fall within `window`: that event raises
/// the alert. The detector then stays *raised*, silent however long the flood lasts, until the
/// count in the window has dropped to half the threshold or less; only then can a new spike
/// raise a new alert. The gap between the two levels (hysteresis) is what stops a rate hovering
/// around the threshold from alerting on every wobble.
#[derive(Debug, Default)]
pub struct SpikeWindow {
    /// Times of the most recent events, oldest first; at most `threshold + 1` of them (enough
    /// to tell "above the threshold" and "at or below half of it" apart, and a flood cannot
    /// grow it).
    times: VecDeque<Instant>,
    raised: bool,
}

impl SpikeWindow {
    /// Records one event at `now`. Returns the number of events in the window when this event
    /// starts a spike, `None` otherwise.
    pub fn record(&mut self, now: Instant, window: Duration, threshold: u64) -> Option<u64> {
        self.expire(now, window);
        // The count only falls between events, so checking just before each new one sees its
        // lowest point since the last: re-arming lazily here misses nothing.
        if self.raised && self.count() <= threshold / 2 {
            self.raised = false;
        }
        self.times.push_back(now);
        let cap = usize::try_from(threshold.saturating_add(1)).unwrap_or(usize::MAX);
        while self.times.len() > cap {
            self.times.pop_front();
        }
        if !self.raised && self.count() > threshold {
            self.raised = true;
            return Some(self.count());
        }
        None
    }

    /// Whether a spike is in progress (raised and not yet re-armed).
    pub fn is_raised(&self) -> bool {
        self.raised
    }

    fn expire(&mut self, now: Instant, window: Duration) {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.times.pop_front();
        }
    }

    fn count(&self) -> u64 {
        u64::try_from(self.times.len()).unwrap_or(u64::MAX)
    }
}

/// At most one alert per key per `interval`, counting what it held back.
///
/// The number of keys is capped: once `cap` keys are tracked, keys whose interval has passed
/// are dropped, and if that frees nothing a new key is held back. Holding back is the safe side
/// here: a flood of distinct certificates is already visible as a handshake-failure spike, and
/// memory stays bounded whatever a client sends.
#[derive(Debug)]
pub struct RateLimiter<K> {
    interval: Duration,
    cap: usize,
    entries: HashMap<K, Entry>,
}

#[derive(Debug)]
struct Entry {
    last_alert: Instant,
    held_back: u64,
}

impl<K: Eq + Hash> RateLimiter<K> {
    /// A limiter allowing one alert per key per `interval`, tracking at most `cap` keys.
    pub fn new(interval: Duration, cap: usize) -> Self {
        RateLimiter {
            interval,
            cap: cap.max(1),
            entries: HashMap::new(),
        }
    }

    /// Records one occurrence for `key` at `now`. Returns `Some(n)` when an alert may go out,
    /// `n` being the occurrences since the previous alert for this key, this one included;
    /// `None` when it is held back.
    pub fn allow(&mut self, key: K, now: Instant) -> Option<u64> {
        if let Some(e) = self.entries.get_mut(&key) {
            if now.saturating_duration_since(e.last_alert) < self.interval {
                e.held_back = e.held_back.saturating_add(1);
                return None;
            }
            let n = e.held_back.saturating_add(1);
            e.last_alert = now;
            e.held_back = 0;
            return Some(n);
        }
        if self.entries.len() >= self.cap {
            let interval = self.interval;
            self.entries
                .retain(|_, e| now.saturating_duration_since(e.last_alert) < interval);
            if self.entries.len() >= self.cap {
                return None;
            }
        }
        self.entries.insert(
            key,
            Entry {
                last_alert: now,
                held_back: 0,
            },
        );
        Some(1)
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(60);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Records `n` events `step` apart from `*t`, advancing `*t`; returns the alerts raised.
    fn burst(w: &mut SpikeWindow, t: &mut Instant, n: usize, step: Duration) -> Vec<u64> {
        let mut raised = Vec::new();
        for _ in 0..n {
            raised.extend(w.record(*t, W, 20));
            *t += step;
        }
        raised
    }

    #[test]
    fn the_event_above_the_threshold_raises_once() {
        let mut w = SpikeWindow::default();
        let mut t = Instant::now();
        assert!(burst(&mut w, &mut t, 20, Duration::from_millis(100)).is_empty());
        assert_eq!(w.record(t, W, 20), Some(21));
        assert!(w.is_raised());
        // A flood goes on: silence.
        assert!(burst(&mut w, &mut t, 5000, Duration::from_millis(1)).is_empty());
        assert!(w.times.len() <= 21, "memory stays bounded");
    }

    #[test]
    fn failures_spread_beyond_the_window_never_raise() {
        let mut w = SpikeWindow::default();
        let mut t = Instant::now();
        // 200 failures, 3 s apart: never more than 20 in any 60 s.
        assert!(burst(&mut w, &mut t, 200, secs(3)).is_empty());
        assert!(!w.is_raised());
    }

    #[test]
    fn re_arms_only_after_dropping_to_half_the_threshold() {
        let mut w = SpikeWindow::default();
        let mut t = Instant::now();
        assert_eq!(
            burst(&mut w, &mut t, 21, Duration::from_millis(10)),
            vec![21]
        );
        // Hovering just around the threshold (one failure every 2.9 s ≈ 20.7 per minute) for
        // ten minutes: the count never falls to 10, so no second alert.
        assert!(burst(&mut w, &mut t, 200, Duration::from_millis(2900)).is_empty());
        assert!(w.is_raised());
        // Quiet for a minute, then a new flood: a new alert.
        t += W;
        assert_eq!(
            burst(&mut w, &mut t, 21, Duration::from_millis(10)),
            vec![21]
        );
    }

    #[test]
    fn a_lull_above_half_does_not_re_arm() {
        let mut w = SpikeWindow::default();
        let mut t = Instant::now();
        assert_eq!(burst(&mut w, &mut t, 21, secs(1)), vec![21]);
        // 40 s after the burst only its first events have aged out of the window; about 19
        // remain, well above half the threshold: still raised, no new alert.
        t += secs(40);
        assert!(burst(&mut w, &mut t, 5, secs(1)).is_empty());
        assert!(w.is_raised());
        // The boundary: 21 events at t0 + 0 s … 20 s raise at 20 s. At t0 + 69 s the ten
        // oldest have expired and 11 remain (above half of 20): still raised. At t0 + 70 s
        // only 10 remain (half): re-armed, and this event makes 11, no spike yet.
        for at in [69, 70] {
            let mut w = SpikeWindow::default();
            let t0 = Instant::now();
            let mut t = t0;
            assert_eq!(burst(&mut w, &mut t, 21, secs(1)), vec![21]);
            assert_eq!(w.record(t0 + secs(at), W, 20), None);
            assert_eq!(w.is_raised(), at == 69, "at {at} s");
        }
    }

    #[test]
    fn window_edges_are_exclusive() {
        let mut w = SpikeWindow::default();
        let t0 = Instant::now();
        for _ in 0..20 {
            assert_eq!(w.record(t0, W, 20), None);
        }
        // Exactly `window` later the first 20 have left the window.
        assert_eq!(w.record(t0 + W, W, 20), None);
        let mut w = SpikeWindow::default();
        for _ in 0..20 {
            w.record(t0, W, 20);
        }
        assert_eq!(w.record(t0 + W - Duration::from_millis(1), W, 20), Some(21));
    }

    #[test]
    fn threshold_one() {
        let mut w = SpikeWindow::default();
        let t = Instant::now();
        assert_eq!(w.record(t, W, 1), None);
        assert_eq!(w.record(t, W, 1), Some(2));
        assert_eq!(w.record(t, W, 1), None);
    }

    #[test]
    fn rate_limiter_one_per_key_per_interval_with_counts() {
        let mut r = RateLimiter::new(secs(60), 100);
        let t = Instant::now();
        assert_eq!(r.allow("a", t), Some(1));
        assert_eq!(r.allow("a", t + secs(1)), None);
        assert_eq!(r.allow("b", t + secs(1)), Some(1), "keys are independent");
        assert_eq!(r.allow("a", t + secs(59)), None);
        // The next alert says how many attempts it covers: the 2 held back and itself.
        assert_eq!(r.allow("a", t + secs(60)), Some(3));
        assert_eq!(r.allow("a", t + secs(61)), None);
    }

    #[test]
    fn rate_limiter_memory_is_capped() {
        let mut r = RateLimiter::new(secs(60), 3);
        let t = Instant::now();
        for k in 0..3 {
            assert_eq!(r.allow(k, t), Some(1));
        }
        // Full of fresh keys: a new key is held back rather than growing the map.
        assert_eq!(r.allow(99, t + secs(1)), None);
        assert_eq!(r.len(), 3);
        // Once the old ones have aged out they make room.
        assert_eq!(r.allow(99, t + secs(60)), Some(1));
        assert_eq!(r.len(), 1);
    }
}
