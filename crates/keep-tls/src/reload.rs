//! Hot-swappable TLS material.
//!
//! [`ReloadableTls`] holds the server config new handshakes use. [`ReloadableTls::reload`]
//! rebuilds it from the same [`TlsSettings`] (re-reading every file) and swaps it in atomically;
//! when the new material is broken (a half-copied certificate, a key that does not match, a bad
//! CRL) the last good config stays in use, a `tls_reload_failed` security event names the file,
//! and the error is returned. Established connections are never touched: each keeps the config
//! it was accepted with.
//!
//! Triggers:
//! - [`ReloadableTls::watch_files`] polls the metadata (inode, size, mtime, ctime) of every file
//!   every interval (default 1 s), and reloads once a change has been stable for one interval, so
//!   a cert and key copied one after the other produce one reload rather than a failed one in
//!   between. Polling needs no inotify crate, works on every file system, and follows the symlink
//!   swaps Kubernetes secret volumes use (`..data` → new directory).
//! - [`ReloadableTls::reload_on_sighup`] reloads on SIGHUP (unix).
//! - The server can call [`ReloadableTls::reload_with`] with new settings after re-reading its
//!   YAML (TLS settings such as `min_version` reload too).
//! - The PKI mount calls [`ReloadableTls::reload_with_extra_crls`] with its new CRL after every
//!   revocation. The settings keep the last in-memory CRLs, so a file or SIGHUP reload keeps
//!   them, and every reload re-reads `crl_file`: the two sources always apply together.
//!
//! The current config sits behind a `std::sync::RwLock<Arc<…>>`: each new connection takes a
//! read lock for the time of an `Arc` clone (tens of nanoseconds, uncontended except during the
//! swap itself). `arc-swap` would shave that further but buys nothing measurable next to a
//! handshake (~1 ms of public-key crypto), so it is not worth a dependency.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;

use crate::counters;
use crate::events::{EventKind, ReloadFailure, SecurityEvent, SharedSink};
use crate::revocation::Revoked;
use crate::server::{Material, TlsConfigError, TlsSettings, build_material};

/// How often [`ReloadableTls::watch_files`] looks at the files by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The server's TLS config, reloadable while the listener runs. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ReloadableTls {
    inner: Arc<Inner>,
}

struct Inner {
    /// The settings the current config was built from; `extra_crls` may be newer, when
    /// [`reload_with_extra_crls`](Self::reload_with_extra_crls) remembered CRLs whose build
    /// failed for another reason (the next reload uses them). The mutex also serialises reloads, so a
    /// SIGHUP and a file change at the same moment build one after the other.
    state: Mutex<State>,
    current: RwLock<Arc<Material>>,
    events: SharedSink,
}

struct State {
    settings: TlsSettings,
    /// The files' metadata as of the last reload attempt (good or bad), taken *before* reading
    /// them: a change during the read shows up as a difference at the next poll.
    attempted: Snapshot,
}

impl std::fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableTls")
            .field("settings", &lock(&self.inner.state).settings)
            .finish_non_exhaustive()
    }
}

impl ReloadableTls {
    /// Builds the first config. A broken config at start-up is an error for the caller (the
    /// server refuses to start); no event is emitted for it.
    pub fn new(settings: TlsSettings, events: SharedSink) -> Result<Self, TlsConfigError> {
        let attempted = Snapshot::take(&settings);
        let material = build_material(&settings)?;
        counters::record_server_cert_expiry(material.not_after);
        Ok(ReloadableTls {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    settings,
                    attempted,
                }),
                current: RwLock::new(Arc::new(material)),
                events,
            }),
        })
    }

    /// The config new handshakes use right now.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.material().config)
    }

    pub(crate) fn material(&self) -> Arc<Material> {
        // A poisoned lock still holds a complete Arc (the swap is a single assignment).
        let guard = self
            .inner
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    /// The settings the current config was built from; `extra_crls` may be newer, when
    /// [`reload_with_extra_crls`](Self::reload_with_extra_crls) remembered CRLs whose build
    /// failed for another reason (the next reload uses them).
    pub fn settings(&self) -> TlsSettings {
        lock(&self.inner.state).settings.clone()
    }

    /// Rebuilds the config from the current settings and swaps it in; on failure keeps the last
    /// good config, emits `tls_reload_failed`, and returns the error. Blocking (reads files,
    /// may decrypt a key): from async code, call it inside `spawn_blocking`.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        let mut state = lock(&self.inner.state);
        let settings = state.settings.clone();
        self.reload_locked(&mut state, settings)
    }

    /// Like [`reload`](Self::reload) with new settings (after the server re-read its config
    /// file); the new settings are kept only if they build.
    pub fn reload_with(&self, settings: TlsSettings) -> Result<(), TlsConfigError> {
        let mut state = lock(&self.inner.state);
        self.reload_locked(&mut state, settings)
    }

    /// Rebuilds with `crls` as the in-memory CRLs ([`TlsSettings::extra_crls`]) and every
    /// other setting as it is, under the reload lock (so a file change or SIGHUP reload at the
    /// same moment neither drops the new CRLs nor is dropped). The PKI mount calls this after
    /// each new CRL; the files, including `crl_file`, are re-read as by any reload.
    ///
    /// When the build fails for another reason than the CRLs themselves (a `crl_file` caught
    /// mid-edit, say), the last good config stays, but the new CRLs are remembered: the next
    /// reload (file change, SIGHUP) includes them instead of going back to older ones.
    pub fn reload_with_extra_crls(&self, crls: Vec<Vec<u8>>) -> Result<(), TlsConfigError> {
        let mut state = lock(&self.inner.state);
        let mut settings = state.settings.clone();
        settings.extra_crls = crls.clone();
        let result = self.reload_locked(&mut state, settings);
        if let Err(e) = &result
            && e.field() != Some("extra_crls")
        {
            state.settings.extra_crls = crls;
        }
        result
    }

    /// Whether the current lists (every loaded CRL: `crl_file` and in-memory) revoke a
    /// certificate of `chain` (leaf first, as rustls verified it at the handshake). The server
    /// asks this on every request, so a revocation also ends keep-alive connections opened
    /// before it. Cheap: nothing when no CRL is loaded, otherwise a parse of each certificate
    /// and hash lookups.
    pub fn revoked(&self, chain: &[CertificateDer<'_>]) -> Option<Revoked> {
        self.material().revocations.check(chain)
    }

    fn reload_locked(
        &self,
        state: &mut State,
        settings: TlsSettings,
    ) -> Result<(), TlsConfigError> {
        state.attempted = Snapshot::take(&settings);
        match build_material(&settings) {
            Ok(material) => {
                counters::record_server_cert_expiry(material.not_after);
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(material);
                state.settings = settings;
                counters::reload(true);
                tracing::info!("TLS material reloaded; new handshakes use it");
                Ok(())
            }
            Err(e) => {
                counters::reload(false);
                tracing::warn!(error = %e, "TLS reload failed; still serving the last good config");
                self.inner
                    .events
                    .emit(&SecurityEvent::now(EventKind::TlsReloadFailed(
                        ReloadFailure {
                            field: e.field().map(str::to_owned),
                            file: e.file().map(PathBuf::from),
                            detail: e.to_string(),
                        },
                    )));
                Err(e)
            }
        }
    }

    /// Starts a task that polls the settings' files every `interval` and reloads when they
    /// changed (see the module docs). The task ends by itself when every `ReloadableTls` handle
    /// is dropped; abort the returned handle to stop it earlier. Must be called inside a tokio
    /// runtime.
    pub fn watch_files(&self, interval: Duration) -> JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_seen: Option<Snapshot> = None;
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let tls = ReloadableTls { inner };
                let (now, attempted) = {
                    let state = lock(&tls.inner.state);
                    (Snapshot::take(&state.settings), state.attempted.clone())
                };
                // Wait until the files have stopped changing for one interval.
                let settled = last_seen.as_ref() == Some(&now);
                last_seen = Some(now.clone());
                if !settled || now == attempted {
                    continue;
                }
                tracing::info!("TLS files changed; reloading");
                // The outcome is already reported (event, metric, log) inside reload().
                let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
            }
        })
    }

    /// Starts a task that reloads on every SIGHUP. Must be called inside a tokio runtime; the
    /// handler is installed before this returns, so a SIGHUP sent afterwards never kills the
    /// process. The task ends when every `ReloadableTls` handle is dropped.
    #[cfg(unix)]
    pub fn reload_on_sighup(&self) -> std::io::Result<JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(inner) = weak.upgrade() else { return };
                let tls = ReloadableTls { inner };
                tracing::info!("SIGHUP: reloading TLS material");
                let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
            }
        }))
    }
}

/// Metadata of every watched file; `None` for a file that cannot be stat'ed (missing: the
/// reload will then report it).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot(Vec<(PathBuf, Option<Stamp>)>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// (device, inode, ctime seconds, ctime nanoseconds) on unix: catches atomic renames and
    /// rewrites that keep size and mtime.
    #[cfg(unix)]
    unix: (u64, u64, i64, i64),
}

impl Snapshot {
    fn take(settings: &TlsSettings) -> Self {
        Snapshot(
            settings
                .files()
                .into_iter()
                .map(|(_, path)| {
                    let stamp = std::fs::metadata(path).ok().map(|m| Stamp {
                        len: m.len(),
                        modified: m.modified().ok(),
                        #[cfg(unix)]
                        unix: {
                            use std::os::unix::fs::MetadataExt;
                            (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
                        },
                    });
                    (path.to_path_buf(), stamp)
                })
                .collect(),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
