//! Cert auth: roles, login, tokens, and who a request is.
//!
//! Identity comes only from the certificate chain rustls verified on the connection
//! ([`PeerIdentity`]); a token is honoured only on a connection presenting the same
//! certificate it was issued to.

pub mod access;
pub mod cert_ids;
pub mod login_rate;
pub mod pin;
pub mod role;
pub mod tidy;
pub mod token;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use keep_store::{Store, StoreError};
use keep_tls::identity::{CaKey, PeerIdentity};

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

/// Compiled roles by name (it dereferences to the `BTreeMap`), indexed by the CA each role is
/// bound to and by the literal start of its `allowed_common_names` patterns.
///
/// A login without a role name considers only the roles that could match: either those bound
/// to a CA in the caller's verified path (or to no CA), or those whose common-name patterns
/// can match the caller's common name (or that have none), whichever set is smaller. Every
/// other role would fail its chain or name check, so the choice is the same as trying all of
/// them, but a login costs about the same with 1 role or 1,000.
#[derive(Clone, Default)]
pub struct RoleMap {
    by_name: BTreeMap<String, Arc<CompiledRole>>,
    /// Names of the roles bound to each CA key.
    by_ca: HashMap<CaKey, BTreeSet<String>>,
    /// Names of the roles with no `certificate` (any CA the listener trusts).
    unbound: BTreeSet<String>,
    /// Names of the roles with `allowed_common_names`, under each pattern's text before its
    /// first `*` (a common name the pattern matches starts with it).
    by_cn_prefix: HashMap<String, BTreeSet<String>>,
    /// Names of the roles without `allowed_common_names`.
    any_cn: BTreeSet<String>,
}

impl std::ops::Deref for RoleMap {
    type Target = BTreeMap<String, Arc<CompiledRole>>;

    fn deref(&self) -> &Self::Target {
        &self.by_name
    }
}

impl std::fmt::Debug for RoleMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl FromIterator<(String, Arc<CompiledRole>)> for RoleMap {
    fn from_iter<I: IntoIterator<Item = (String, Arc<CompiledRole>)>>(iter: I) -> Self {
        let mut map = RoleMap::default();
        for (name, role) in iter {
            map.insert(name, role);
        }
        map
    }
}

/// The literal text of a glob before its first `*`.
fn literal_prefix(pattern: &str) -> &str {
    pattern.split('*').next().unwrap_or_default()
}

fn index_add<K: std::hash::Hash + Eq>(
    index: &mut HashMap<K, BTreeSet<String>>,
    key: K,
    name: &str,
) {
    index.entry(key).or_default().insert(name.to_owned());
}

fn index_remove<K, Q>(index: &mut HashMap<K, BTreeSet<String>>, key: &Q, name: &str)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(names) = index.get_mut(key) {
        names.remove(name);
        if names.is_empty() {
            index.remove(key);
        }
    }
}

impl RoleMap {
    /// Adds or replaces the role `name`.
    pub fn insert(&mut self, name: String, role: Arc<CompiledRole>) {
        self.remove(&name);
        match role.ca_keys() {
            None => {
                self.unbound.insert(name.clone());
            }
            // A role whose certificate no longer parses (no keys) matches nothing: no entry.
            Some(keys) => {
                for key in keys {
                    index_add(&mut self.by_ca, key.clone(), &name);
                }
            }
        }
        let patterns = &role.role.allowed_common_names;
        if patterns.is_empty() {
            self.any_cn.insert(name.clone());
        }
        for p in patterns {
            index_add(&mut self.by_cn_prefix, literal_prefix(p).to_owned(), &name);
        }
        self.by_name.insert(name, role);
    }

    /// Removes the role `name`, returning it.
    pub fn remove(&mut self, name: &str) -> Option<Arc<CompiledRole>> {
        let role = self.by_name.remove(name)?;
        match role.ca_keys() {
            None => {
                self.unbound.remove(name);
            }
            Some(keys) => {
                for key in keys {
                    index_remove(&mut self.by_ca, key, name);
                }
            }
        }
        self.any_cn.remove(name);
        for p in &role.role.allowed_common_names {
            index_remove(&mut self.by_cn_prefix, literal_prefix(p), name);
        }
        Some(role)
    }

    /// A superset of the roles `peer` can match, in name order: the smaller of the roles its
    /// CAs allow and the roles its common name allows.
    fn candidates<'a>(
        &'a self,
        peer: &PeerIdentity,
    ) -> impl Iterator<Item = &'a Arc<CompiledRole>> + use<'a> {
        let by_ca: Vec<&BTreeSet<String>> = std::iter::once(&self.unbound)
            .chain(peer.issuers.iter().filter_map(|i| self.by_ca.get(i)))
            .collect();
        let mut by_cn = vec![&self.any_cn];
        if let Some(cn) = peer.common_name.as_deref() {
            // Every start of the name (at character boundaries), the empty one included.
            by_cn.extend(
                (0..=cn.len())
                    .filter(|&i| cn.is_char_boundary(i))
                    .filter_map(|i| self.by_cn_prefix.get(&cn[..i])),
            );
        }
        let size = |sets: &[&BTreeSet<String>]| sets.iter().map(|s| s.len()).sum::<usize>();
        let smaller = if size(&by_cn) < size(&by_ca) {
            by_cn
        } else {
            by_ca
        };
        let mut names: Vec<&str> = smaller
            .iter()
            .flat_map(|s| s.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter().filter_map(|n| self.by_name.get(n))
    }
}

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
        let mut map = RoleMap::default();
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
    roles: &RoleMap,
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
    // Only roles the caller's CAs or common name allow: the others cannot match.
    let matching: Vec<&Arc<CompiledRole>> = roles
        .candidates(peer)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use keep_test_support::{IssuerChoice, Leaf, LeafSpec, TestPki};
    use rustls_pki_types::CertificateDer;
    use serde_json::json;

    use super::*;

    fn compiled(name: &str, fields: serde_json::Value) -> Arc<CompiledRole> {
        let mut role = Role::default();
        role.apply(fields.as_object().unwrap()).unwrap();
        Arc::new(CompiledRole::new(name, role))
    }

    fn peer(leaf: &Leaf) -> PeerIdentity {
        let chain: Vec<CertificateDer<'static>> = leaf
            .chain_der
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        keep_tls::identity::from_verified_chain(&chain).unwrap()
    }

    /// What `select_role` answered before the role index: every role tried.
    fn every_role_tried(
        roles: &RoleMap,
        peer: &PeerIdentity,
    ) -> Result<(String, &'static str), SelectError> {
        let matching: Vec<_> = roles
            .values()
            .filter(|r| r.matches(peer, None).is_ok())
            .collect();
        let constrained: Vec<_> = matching
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
            [one] => Ok((one.name.clone(), why)),
            many => Err(SelectError::Ambiguous(
                many.iter().map(|r| r.name.clone()).collect(),
            )),
        }
    }

    #[test]
    fn the_role_index_selects_exactly_what_trying_every_role_selects() {
        let pki = TestPki::new();
        let now = time::OffsetDateTime::now_utc();
        let other = pki.issue_intermediate(
            "Other CA",
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        );
        let inter = &pki.intermediate.cert_pem;
        let mut roles: RoleMap = [
            (
                "agents",
                json!({"certificate": inter, "allowed_common_names": "agent-*"}),
            ),
            (
                "twin",
                json!({"certificate": inter, "allowed_common_names": "agent-7"}),
            ),
            (
                "by-root",
                json!({"certificate": pki.root.cert_pem, "allowed_common_names": "agent-7"}),
            ),
            (
                "other",
                json!({"certificate": other.cert_pem, "allowed_common_names": "agent-*"}),
            ),
            ("anyca", json!({"allowed_common_names": "svc-*"})),
            ("broken", json!({"allowed_common_names": "agent-*"})),
            ("loose", json!({"certificate": inter})),
        ]
        .into_iter()
        .map(|(n, f)| (n.to_owned(), compiled(n, f)))
        .collect();
        // A stored certificate that no longer parses binds the role to no CA: it matches nothing.
        let broken = Role {
            certificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            allowed_common_names: vec!["agent-*".into()],
            ..Role::default()
        };
        roles.insert(
            "broken".into(),
            Arc::new(CompiledRole::new("broken", broken)),
        );
        // Many roles of the same CA, told apart by common name.
        for i in 0..20 {
            let name = format!("team-{i}");
            let fields =
                json!({"certificate": inter, "allowed_common_names": format!("svc-{i}-*")});
            roles.insert(name.clone(), compiled(&name, fields));
        }
        let leaves = [
            pki.issue(&LeafSpec::client("svc-3-db")),
            pki.issue(&LeafSpec::client("svc-")),
            pki.issue(&LeafSpec::agent("agent-7")),
            pki.issue(&LeafSpec::agent("agent-8")),
            pki.issue(&LeafSpec::agent("agent-7").issuer(IssuerChoice::Root)),
            pki.issue(&LeafSpec::client("svc-1")),
            pki.issue(&LeafSpec::client("nobody")),
            other.issue(&LeafSpec::agent("agent-9")),
            pki.foreign_client.clone(),
        ];
        let check = |roles: &RoleMap| {
            for leaf in &leaves {
                let p = peer(leaf);
                let got =
                    select_role(roles, None, &p, None, false).map(|(r, why)| (r.name.clone(), why));
                assert_eq!(got, every_role_tried(roles, &p), "{:?}", p.common_name);
            }
        };
        check(&roles);
        // Both rules show up in these cases: a unique choice, and a tie listing candidates.
        let p7 = peer(&leaves[2]);
        assert_eq!(
            select_role(&roles, None, &p7, None, false).unwrap_err(),
            SelectError::Ambiguous(vec!["agents".into(), "twin".into()])
        );
        let p8 = peer(&leaves[3]);
        assert_eq!(
            select_role(&roles, None, &p8, None, false).unwrap().0.name,
            "agents"
        );
        // 24 roles accept the caller's CA, 4 its common name: those 4 are examined.
        let examined: Vec<&str> = roles.candidates(&p8).map(|r| r.name.as_str()).collect();
        assert_eq!(examined, ["agents", "broken", "loose", "other"]);
        // A role of another CA and another name is never examined.
        let svc = peer(&leaves[0]);
        assert!(
            roles
                .candidates(&svc)
                .all(|r| r.name != "team-4" && r.name != "other")
        );
        assert_eq!(
            select_role(&roles, None, &svc, None, false).unwrap_err(),
            SelectError::Ambiguous(vec!["anyca".into(), "team-3".into()])
        );
        // The named path is unchanged: a role of another CA names the failed check.
        assert_eq!(
            select_role(&roles, Some("other"), &p8, None, false).unwrap_err(),
            SelectError::Mismatch("other".into(), Mismatch::Chain)
        );

        // Replacing a role re-indexes it, removing one drops it from the index.
        roles.insert(
            "twin".into(),
            compiled("twin", json!({"certificate": other.cert_pem})),
        );
        check(&roles);
        assert_eq!(
            select_role(&roles, None, &p7, None, false).unwrap().0.name,
            "agents"
        );
        assert!(roles.remove("agents").is_some());
        assert!(roles.remove("loose").is_some());
        check(&roles);
        assert_eq!(
            select_role(&roles, None, &p8, None, false).unwrap_err(),
            SelectError::NoMatch
        );
        assert!(!roles.by_ca.values().any(|names| names.contains("agents")));
        assert!(
            !roles
                .by_cn_prefix
                .values()
                .any(|names| names.contains("agents"))
        );
        assert!(!roles.unbound.contains("loose") && !roles.any_cn.contains("loose"));
    }
}
