//! Shared server state, buildable in memory so API tests can call the router directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use keep_store::Store;
use keep_tls::identity::PeerIdentity;

use crate::config::{AdminIdentity, Limits};

/// Seal state as `/v1/sys/health` and `/v1/sys/seal-status` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealState {
    /// `keep server init` has not been run on this storage.
    Uninitialized,
    /// Initialized, but the barrier key is not in memory.
    Sealed,
    /// Serving.
    Unsealed,
}

/// Everything a handler needs.
pub struct AppState {
    /// The unsealed barrier (plaintext view of storage); `None` while sealed or uninitialized.
    store: RwLock<Option<Arc<dyn Store>>>,
    initialized: AtomicBool,
    /// Break-glass operator identities from the config.
    pub admins: Vec<AdminIdentity>,
    /// Request limits.
    pub limits: Limits,
    /// Renders `/v1/sys/metrics?format=prometheus`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Security alerts (unexpected source addresses are raised from the auth paths).
    pub alerts: crate::alerts::Alerts,
    /// `sqlite`, `memory`, … for seal-status.
    pub storage_type: &'static str,
    /// Cert auth roles, compiled once.
    pub roles: crate::auth::RoleCache,
    /// ACL policies, parsed once.
    pub policies: crate::policy::PolicyCache,
    /// Where the audit log goes, if configured (opened once the store is unsealed, because its
    /// HMAC key lives in the encrypted store).
    pub audit_file: Option<std::path::PathBuf>,
    audit: RwLock<Option<crate::audit::AuditLog>>,
    /// The PKI mount (`pki:` in the config); `None` = the `pki/` routes answer 404.
    pub pki: Option<Arc<crate::pki::Pki>>,
    /// The listener's TLS material, whose CRLs (`crl_file` and the PKI mount's) every request's
    /// client certificate is checked against; `None` when the router runs without a listener.
    pub tls: Option<keep_tls::reload::ReloadableTls>,
    /// Whether storage writes succeed (the raw backend under the barrier), for `sys/health`;
    /// `None` when the store is not tracked (in-memory API tests).
    pub storage_health: Option<Arc<keep_store::WriteHealth>>,
    /// Login rate limit, token tidy lease, metrics access (`auth:` and `telemetry:`).
    pub auth: crate::auth::AuthState,
}

impl AppState {
    /// State around an unsealed store.
    pub fn unsealed(
        store: Arc<dyn Store>,
        admins: Vec<AdminIdentity>,
        limits: Limits,
        storage_type: &'static str,
    ) -> AppState {
        AppState {
            store: RwLock::new(Some(store)),
            initialized: AtomicBool::new(true),
            admins,
            limits,
            metrics: None,
            alerts: Default::default(),
            storage_type,
            roles: Default::default(),
            policies: Default::default(),
            audit_file: None,
            audit: RwLock::new(None),
            pki: None,
            tls: None,
            storage_health: None,
            auth: Default::default(),
        }
    }

    /// State of a server whose storage is not initialized or that is sealed.
    pub fn without_store(
        initialized: bool,
        admins: Vec<AdminIdentity>,
        limits: Limits,
        storage_type: &'static str,
    ) -> AppState {
        AppState {
            store: RwLock::new(None),
            initialized: AtomicBool::new(initialized),
            admins,
            limits,
            metrics: None,
            alerts: Default::default(),
            storage_type,
            roles: Default::default(),
            policies: Default::default(),
            audit_file: None,
            audit: RwLock::new(None),
            pki: None,
            tls: None,
            storage_health: None,
            auth: Default::default(),
        }
    }

    /// The current seal state.
    pub fn seal_state(&self) -> SealState {
        if !self.initialized.load(Ordering::Acquire) {
            return SealState::Uninitialized;
        }
        match self.store.read() {
            Ok(g) if g.is_some() => SealState::Unsealed,
            _ => SealState::Sealed,
        }
    }

    /// The store, or `None` when sealed.
    pub fn store(&self) -> Option<Arc<dyn Store>> {
        self.store.read().ok().and_then(|g| g.clone())
    }

    /// Installs an unsealed store (after `keep server init` ran while the server waited).
    pub fn install_store(&self, store: Arc<dyn Store>) {
        if let Ok(mut g) = self.store.write() {
            *g = Some(store);
        }
        self.initialized.store(true, Ordering::Release);
    }

    /// The audit log, once open.
    pub fn audit(&self) -> Option<crate::audit::AuditLog> {
        self.audit.read().ok().and_then(|g| g.clone())
    }

    /// Installs an already-open audit log (tests, and sinks other than a file).
    pub fn set_audit(&self, log: crate::audit::AuditLog) {
        if let Ok(mut g) = self.audit.write() {
            *g = Some(log);
        }
    }

    /// Opens the audit log (after unseal: the HMAC key is in the store). Blocking.
    pub fn open_audit(&self) -> Result<(), crate::audit::AuditError> {
        let (Some(path), Some(store)) = (self.audit_file.as_ref(), self.store()) else {
            return Ok(());
        };
        let key = crate::audit::load_or_create_key(&*store)?;
        let log = crate::audit::AuditLog::open(path, key, crate::audit::AuditOptions::default())?;
        if let Ok(mut g) = self.audit.write() {
            *g = Some(log);
        }
        Ok(())
    }

    /// Drops the key material from memory (`PUT /v1/sys/seal`).
    pub fn seal(&self) {
        if let Ok(mut g) = self.store.write() {
            *g = None;
        }
    }

    /// Whether the caller is a configured admin.
    pub fn is_admin(&self, peer: &PeerIdentity) -> bool {
        self.admins.iter().any(|a| a.matches(peer))
    }
}

/// The client's socket address, inserted as a request extension by the listener (for
/// `token_bound_cidrs`).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The verified client identity of the connection a request arrived on, inserted as a request
/// extension by the listener. Handlers never look at unverified certificate bytes.
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<PeerIdentity>);
