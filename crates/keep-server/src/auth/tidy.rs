//! The token tidy job: removes expired tokens (and their accessor index) from storage, every
//! `auth.token_tidy_interval` and on `POST /v1/auth/token/tidy`.
//!
//! A pass walks the [`TIDY_SHARDS`] shards of the token index one at a time, each on the
//! blocking pool and in transactions of at most [`TIDY_BATCH`](crate::auth::token::TIDY_BATCH)
//! tokens, yielding between shards: serving goes on while it runs, and a pass over 100,000
//! expired tokens never holds the database for more than one small batch.
//!
//! Only one pass runs at a time, decided by a [`TidyLease`]. With SQLite there is one server
//! process per database, so [`LocalLease`] is an in-process flag (it keeps the interval job and
//! an operator's tidy request from overlapping). When several nodes share one database
//! (PostgreSQL), a lease backed by the database — `pg_try_advisory_lock` held for the pass —
//! slots in behind the same trait, so exactly one node tidies at a time and the others skip
//! that round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keep_store::{Store, StoreError};
use metrics::{counter, describe_counter};

use crate::auth::token::{TIDY_SHARDS, TidyCount, Tokens};

/// Expired tokens removed by the tidy job.
pub const TOKENS_TIDIED: &str = "keep_auth_tokens_tidied_total";
/// Tidy passes that stopped on a storage error.
pub const TIDY_FAILURES: &str = "keep_auth_token_tidy_failures_total";

/// The default `auth.token_tidy_interval`: 10 minutes, as often as an expired token is worth
/// chasing and rarely enough that a pass over a large database is noise.
pub const DEFAULT_TIDY_INTERVAL: Duration = Duration::from_secs(600);

/// Registers the help texts and the series at zero.
pub fn describe_metrics() {
    describe_counter!(
        TOKENS_TIDIED,
        "Expired tokens removed from storage by the token tidy job"
    );
    describe_counter!(
        TIDY_FAILURES,
        "Token tidy passes that stopped on a storage error"
    );
    counter!(TOKENS_TIDIED).increment(0);
    counter!(TIDY_FAILURES).increment(0);
}

/// Held while a tidy pass runs; dropping it releases the lease.
pub struct LeaseGuard {
    /// Only held: its `Drop` releases the lease (a flag here, a database lock elsewhere).
    _held: Box<dyn Send + Sync>,
}

impl LeaseGuard {
    /// A guard holding `inner`, whose `Drop` releases the lease.
    pub fn new(inner: impl Send + Sync + 'static) -> Self {
        LeaseGuard {
            _held: Box::new(inner),
        }
    }
}

/// Decides which one tidy pass may run now, across this process and, for a shared database,
/// across nodes.
pub trait TidyLease: Send + Sync {
    /// Takes the lease, or `None` when another pass (here or on another node) holds it.
    fn try_acquire(&self) -> Option<LeaseGuard>;
}

/// The lease for a database only this process uses (SQLite): an in-process flag.
#[derive(Debug, Default)]
pub struct LocalLease {
    running: Arc<AtomicBool>,
}

struct LocalGuard(Arc<AtomicBool>);

impl Drop for LocalGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl TidyLease for LocalLease {
    fn try_acquire(&self) -> Option<LeaseGuard> {
        self.running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| LeaseGuard::new(LocalGuard(self.running.clone())))
    }
}

/// One tidy pass over every shard, holding `lease` until it ends. Returns what it removed.
pub async fn sweep(store: Arc<dyn Store>, lease: LeaseGuard) -> Result<TidyCount, StoreError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut total = TidyCount::default();
    let result = async {
        for shard in 0..TIDY_SHARDS {
            let s = store.clone();
            let count =
                tokio::task::spawn_blocking(move || Tokens::new(&*s).tidy_shard(shard, now))
                    .await
                    .map_err(|e| StoreError::Backend {
                        op: "token tidy",
                        source: Box::new(std::io::Error::other(e.to_string())),
                    })??;
            counter!(TOKENS_TIDIED).increment(count.removed);
            total.add(count);
            tokio::task::yield_now().await;
        }
        // Expired response-wrapping tokens nobody presented again (few: they live minutes).
        let s = store.clone();
        let wrapped = tokio::task::spawn_blocking(move || crate::wrapping::tidy(&*s, now))
            .await
            .map_err(|e| StoreError::Backend {
                op: "wrapping tidy",
                source: Box::new(std::io::Error::other(e.to_string())),
            })??;
        if wrapped > 0 {
            tracing::info!(target: "keep::auth", removed = wrapped, "expired wrapping tokens removed");
        }
        Ok::<(), StoreError>(())
    }
    .await;
    drop(lease);
    match result {
        Ok(()) => {
            tracing::info!(target: "keep::auth", scanned = total.scanned, removed = total.removed, unreadable = total.unreadable, "token tidy finished");
            Ok(total)
        }
        Err(e) => {
            counter!(TIDY_FAILURES).increment(1);
            tracing::error!(target: "keep::auth", removed = total.removed, error = %e, "token tidy stopped on a storage error; the next pass retries");
            Err(e)
        }
    }
}

/// Runs a pass every `interval` while the server runs (skipping a round when the store is
/// sealed or another pass holds the lease). The first pass runs one interval after start, so a
/// restart loop cannot turn into a tidy loop.
///
/// `store` gives the unsealed store, `None` while sealed (the server passes its state's
/// getter): the job needs that and the lease, not the whole server state.
pub async fn run_background(
    store: impl Fn() -> Option<Arc<dyn Store>> + Send + 'static,
    lease: Arc<dyn TidyLease>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(store) = store() else {
            continue;
        };
        let Some(lease) = lease.try_acquire() else {
            tracing::debug!(target: "keep::auth", "token tidy already running; skipping this round");
            continue;
        };
        // Errors are logged and counted in `sweep`; the next round retries.
        let _ = sweep(store, lease).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_lease_admits_one_pass_at_a_time() {
        let lease = LocalLease::default();
        let first = lease.try_acquire();
        assert!(first.is_some());
        assert!(lease.try_acquire().is_none(), "a second pass waits");
        drop(first);
        assert!(lease.try_acquire().is_some(), "released on drop");
    }
}
