//! Cert auth: roles, login, tokens, and who a request is.
//!
//! Identity comes only from the certificate chain rustls verified on the connection
//! ([`PeerIdentity`]); a token is honoured only on a connection presenting the same
//! certificate it was issued to.

pub mod access;
pub mod login_rate;
pub mod pin;
pub mod role;
pub mod tidy;
pub mod token;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use keep_store::{Store, StoreError};
use keep_tls::identity::PeerIdentity;

use crate::auth::role::{CompiledRole, Mismatch, Role};

const ROLE_PREFIX: &str = "auth/cert/roles/";

/// The auth side of the server's state: the login rate limit, the token tidy job's lease and
/// who may scrape `/v1/sys/metrics`. `Default` is what an in-memory test state gets: the
/// default rate, a local lease, and metrics for admins and policies only.
pub struct AuthState {
    /// Per-certificate login rate limit (`auth.login_rate`).
    pub login_limiter: login_rate::LoginLimiter,
    /// One token tidy pass at a time (see [`tidy`]).
    pub tidy_lease: Arc<dyn tidy::TidyLease>,
    /// Who may read `/v1/sys/metrics` without a policy (`telemetry`).
    pub metrics: MetricsAccess,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState {
            login_limiter: Default::default(),
            tidy_lease: Arc::new(tidy::LocalLease::default()),
            metrics: Default::default(),
        }
    }
}

/// Who may read `/v1/sys/metrics` besides admins and holders of a policy granting `read` on
/// `sys/metrics` (the way Vault gates it).
///
/// The metrics name every issued certificate (subject, serial, role), so by default a
/// certificate that merely passes the TLS handshake reads nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsAccess {
    /// `telemetry.unauthenticated_metrics_access`, Vault's option: any client certificate the
    /// listener accepts may scrape (the mTLS handshake is still required).
    pub unauthenticated: bool,
    /// `telemetry.metrics_scrapers`: certificate identities that may scrape without a token,
    /// matched like `admins` (exact common name or URI SAN).
    pub scrapers: Vec<crate::config::identity::AdminIdentity>,
}

impl MetricsAccess {
    /// Whether `peer` may scrape without a token or policy.
    pub fn allows_without_policy(&self, peer: &PeerIdentity) -> bool {
        self.unauthenticated || self.scrapers.iter().any(|s| s.matches(peer))
    }
}

/// Compiled roles by name.
pub type RoleMap = BTreeMap<String, Arc<CompiledRole>>;

/// Role names: what Vault allows in a path segment, minus surprises.
pub fn validate_role_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid role name {name:?}: use letters, digits, '-', '_' and '.'"
        ))
    }
}

/// The roles, cached in memory as [`CompiledRole`]s so a login never re-parses a role.
///
/// The cache is filled from storage on first use and updated by every write through the API.
/// (Several server nodes sharing a database will need a generation check here; that arrives
/// with PostgreSQL storage.)
#[derive(Default)]
pub struct RoleCache {
    roles: RwLock<Option<Arc<RoleMap>>>,
}

impl RoleCache {
    fn load(&self, store: &dyn Store) -> Result<Arc<RoleMap>, StoreError> {
        if let Ok(g) = self.roles.read()
            && let Some(r) = g.as_ref()
        {
            return Ok(r.clone());
        }
        let mut map = BTreeMap::new();
        for name in store.list(ROLE_PREFIX)? {
            if name.ends_with('/') {
                continue;
            }
            if let Some(bytes) = store.get(&format!("{ROLE_PREFIX}{name}"))?
                && let Ok(role) = serde_json::from_slice::<Role>(&bytes)
            {
                map.insert(name.clone(), Arc::new(CompiledRole::new(&name, role)));
            }
        }
        let map = Arc::new(map);
        if let Ok(mut g) = self.roles.write() {
            *g = Some(map.clone());
        }
        Ok(map)
    }

    /// All roles.
    pub fn all(&self, store: &dyn Store) -> Result<Arc<RoleMap>, StoreError> {
        self.load(store)
    }

    /// One role.
    pub fn get(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> Result<Option<Arc<CompiledRole>>, StoreError> {
        Ok(self.load(store)?.get(name).cloned())
    }

    /// Writes a role and updates the cache.
    pub fn put(&self, store: &dyn Store, name: &str, role: Role) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&role).map_err(|e| StoreError::Backend {
            op: "role",
            source: Box::new(e),
        })?;
        store.put(&format!("{ROLE_PREFIX}{name}"), &bytes)?;
        let current = self.load(store)?;
        let mut next = (*current).clone();
        next.insert(name.to_owned(), Arc::new(CompiledRole::new(name, role)));
        if let Ok(mut g) = self.roles.write() {
            *g = Some(Arc::new(next));
        }
        Ok(())
    }

    /// Deletes a role and updates the cache.
    pub fn delete(&self, store: &dyn Store, name: &str) -> Result<(), StoreError> {
        store.delete(&format!("{ROLE_PREFIX}{name}"))?;
        let current = self.load(store)?;
        let mut next = (*current).clone();
        next.remove(name);
        if let Ok(mut g) = self.roles.write() {
            *g = Some(Arc::new(next));
        }
        Ok(())
    }
}

/// Why a login (or tokenless request) found no role. The message is safe for the client: it
/// names the failed check, never another role's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// `name` was given and no such role exists.
    UnknownRole(String),
    /// `name` was given and the cert fails one of its checks.
    Mismatch(String, Mismatch),
    /// No role matches the certificate.
    NoMatch,
    /// Several roles match equally well; the caller must pick one with `name`.
    Ambiguous(Vec<String>),
}

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectError::UnknownRole(n) => write!(f, "no cert auth role named {n:?}"),
            SelectError::Mismatch(n, m) => write!(f, "role {n:?}: {m}"),
            SelectError::NoMatch => f.write_str("invalid certificate or no client certificate supplied: no cert auth role matches this certificate"),
            SelectError::Ambiguous(c) => write!(
                f,
                "several cert auth roles match this certificate ({}); log in with an explicit name",
                c.join(", ")
            ),
        }
    }
}

/// Picks the role for a login.
///
/// The rule (documented in docs/server.md): with `name`, only that role, and it must match.
/// Without a name, among the roles the certificate matches, roles **with** name constraints
/// are preferred over roles without any; if exactly one role remains it is chosen, otherwise
/// the login fails listing the candidates. Deterministic: it never depends on storage order.
/// `only_tokenless` restricts the choice to roles that allow tokenless requests.
pub fn select_role(
    roles: &BTreeMap<String, Arc<CompiledRole>>,
    name: Option<&str>,
    peer: &PeerIdentity,
    addr: Option<IpAddr>,
    only_tokenless: bool,
) -> Result<(Arc<CompiledRole>, &'static str), SelectError> {
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        let r = roles
            .get(n)
            .ok_or_else(|| SelectError::UnknownRole(n.to_owned()))?;
        if only_tokenless && !r.role.allow_tokenless {
            return Err(SelectError::NoMatch);
        }
        r.matches(peer, addr)
            .map_err(|m| SelectError::Mismatch(n.to_owned(), m))?;
        return Ok((r.clone(), "named in the request"));
    }
    let matching: Vec<&Arc<CompiledRole>> = roles
        .values()
        .filter(|r| !only_tokenless || r.role.allow_tokenless)
        .filter(|r| r.matches(peer, addr).is_ok())
        .collect();
    let constrained: Vec<&Arc<CompiledRole>> = matching
        .iter()
        .copied()
        .filter(|r| r.role.has_name_constraints())
        .collect();
    let (pool, why) = if constrained.is_empty() {
        (
            matching,
            "the only matching role (it has no name constraints)",
        )
    } else {
        (constrained, "the only matching role with name constraints")
    };
    match pool.as_slice() {
        [] => Err(SelectError::NoMatch),
        [one] => Ok(((*one).clone(), why)),
        many => Err(SelectError::Ambiguous(
            many.iter().map(|r| r.name.clone()).collect(),
        )),
    }
}
