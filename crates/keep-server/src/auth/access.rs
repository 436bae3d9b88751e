//! Access control: who a request is, and whether it may do what it asks.
//!
//! [`principal`] resolves the caller from the verified connection and the request's token
//! (revocation, token binding to its certificate, bound CIDRs, the source-address pin,
//! tokenless roles); [`authorize`] checks a policy capability on a path; [`admit`] does both.
//! They return their findings — the principal, the verdict and its reason — as values
//! ([`Access`] or [`Denied`], each carrying the [`Facts`] for the audit line), which the
//! handler returns in its answer. Nothing is noted on the side.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use keep_tls::identity::PeerIdentity;

use crate::alerts::{Access as AccessKind, source};
use crate::api::error::ApiError;
use crate::api::reply::{Answer, Facts};
use crate::api::request::{ClientToken, Operation, VaultRequest};
use crate::auth::token::{TokenEntry, Tokens};
use crate::state::AppState;

/// Who is asking, resolved from the verified connection and the request's token.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A break-glass admin identity from the config: full access, no token.
    Admin,
    /// A valid token presented on the connection of the certificate it was issued to.
    Token {
        /// The token (for lookup-self/renew-self/revoke-self).
        token: ClientToken,
        /// Its stored entry.
        entry: TokenEntry,
        /// The connection's verified identity (for policy templates).
        peer: Arc<PeerIdentity>,
    },
    /// No token, but a role with `allow_tokenless` matches the connection's certificate.
    Tokenless {
        /// The role.
        role: String,
        /// Its policies.
        policies: Vec<String>,
        /// The connection's verified identity.
        peer: Arc<PeerIdentity>,
    },
    /// Nothing grants anything.
    Anonymous,
}

impl Principal {
    /// What the audit line records about this caller.
    pub fn facts(&self) -> Facts {
        match self {
            Principal::Admin => Facts {
                admin: true,
                ..Facts::default()
            },
            Principal::Token { entry, .. } => Facts {
                role: Some(entry.role.clone()),
                accessor: Some(entry.accessor.clone()),
                policies: entry.policies.clone(),
                ..Facts::default()
            },
            Principal::Tokenless { role, policies, .. } => Facts {
                role: Some(role.clone()),
                policies: policies.clone(),
                ..Facts::default()
            },
            Principal::Anonymous => Facts::default(),
        }
    }
}

/// A refusal: the error to answer with and the facts (who, and why not) for the audit line.
#[derive(Debug)]
pub struct Denied {
    /// The answer.
    pub error: ApiError,
    /// Who asked and why they were refused (boxed: refusals are the rare path).
    pub facts: Box<Facts>,
}

impl Denied {
    /// A refusal with its facts.
    pub fn new(error: ApiError, facts: Facts) -> Denied {
        Denied {
            error,
            facts: Box::new(facts),
        }
    }
}

/// An error that decided nothing (sealed, storage failure).
impl From<ApiError> for Denied {
    fn from(error: ApiError) -> Denied {
        Denied::new(error, Facts::default())
    }
}

/// A storage failure while deciding.
impl From<keep_store::StoreError> for Denied {
    fn from(e: keep_store::StoreError) -> Denied {
        Denied::from(ApiError::from(e))
    }
}

impl From<Denied> for Answer {
    fn from(d: Denied) -> Answer {
        Answer::new(*d.facts, Err(d.error))
    }
}

/// An admitted request: the principal and the facts (who, and the reason it was allowed).
#[derive(Debug)]
pub struct Access {
    /// Who is asking.
    pub who: Principal,
    /// Who, and why allowed.
    pub facts: Facts,
}

impl Access {
    /// The handler's answer, with this access's facts for the audit line.
    pub fn answer(self, result: Result<axum::response::Response, ApiError>) -> Answer {
        Answer::new(self.facts, result)
    }
}

/// Refuses a connection whose client certificate is revoked (403): by this server's PKI mount,
/// or in any CRL the listener has loaded (`listener.tls.crl_file`, the mount's CRL).
///
/// A revocation must end access at once, not at the next handshake: a keep-alive connection
/// opened before the revocation keeps its TLS session, so every request checks the mount's
/// in-memory revoked set (which holds even if putting the new CRL into the TLS config failed)
/// and the listener's current CRLs (a certificate added to `crl_file` applies once the file is
/// reloaded). Tokens are bound to the certificate they were issued to, so this refuses them
/// too, and login refuses to mint new ones.
pub fn refuse_revoked(state: &AppState, peer: &PeerIdentity) -> Result<(), Denied> {
    let by_mount = match &state.pki {
        Some(pki) => {
            let store = state.store();
            pki.is_revoked(store.as_deref(), peer)
                .map_err(|e| ApiError::internal(format!("revoked set: {e}")))?
        }
        None => false,
    };
    let listed = if by_mount {
        None
    } else {
        state.tls.as_ref().and_then(|tls| tls.revoked(&peer.chain))
    };
    if !by_mount && listed.is_none() {
        return Ok(());
    }
    match &listed {
        Some(l) => {
            tracing::warn!(target: "keep::auth", serial = %peer.serial, subject = %peer.subject, listed = %l, "request on a connection whose client certificate is revoked")
        }
        None => {
            tracing::warn!(target: "keep::auth", serial = %peer.serial, subject = %peer.subject, "request on a connection whose client certificate is revoked")
        }
    }
    Err(Denied::new(
        ApiError::client(
            StatusCode::FORBIDDEN,
            "permission denied: the client certificate is revoked",
        ),
        Facts::default().decided(false, "the client certificate is revoked"),
    ))
}

/// Resolves the principal of a request. A token is honoured only on a connection presenting
/// the certificate it was issued to, and only from its bound CIDRs; anything else is 403.
pub async fn principal(state: &Arc<AppState>, req: &VaultRequest) -> Result<Principal, Denied> {
    let Some(peer) = req.peer.clone() else {
        return Ok(Principal::Anonymous);
    };
    refuse_revoked(state, &peer)?;
    if state.is_admin(&peer) {
        return Ok(Principal::Admin);
    }
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let from = req.addr;
    if let Some(token) = &req.token {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let entry = Tokens::new(&*store)
            .lookup(token.expose(), now)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(ApiError::permission_denied)?;
        check_token_use(state, &entry, &peer, from)?;
        return Ok(Principal::Token {
            token: token.clone(),
            entry,
            peer,
        });
    }
    let ip = from.map(|a| a.ip());
    let roles = state.roles.all(&*store)?;
    let chosen = crate::auth::select_role(&roles, None, &peer, ip, true)
        .inspect_err(|e| {
            source::on_refusal(
                &state.alerts,
                AccessKind::Tokenless,
                &roles,
                None,
                &peer,
                from,
                e,
            );
        })
        .ok();
    let Some((role, _)) = chosen else {
        return Ok(Principal::Anonymous);
    };
    if role.role.pin_first_seen_address {
        crate::auth::pin::enforce(state, &peer, from, &role.name, AccessKind::Tokenless)
            .await
            .map_err(|r| {
                let facts = Facts {
                    role: Some(role.name.clone()),
                    policies: role.role.policies(),
                    decision: r.reason.map(|reason| (false, reason)),
                    ..Facts::default()
                };
                Denied::new(r.error, facts)
            })?;
    }
    Ok(Principal::Tokenless {
        role: role.name.clone(),
        policies: role.role.policies(),
        peer,
    })
}

/// A token's entry against the connection it came on: its certificate, its bound CIDRs, its
/// pinned address.
fn check_token_use(
    state: &AppState,
    entry: &TokenEntry,
    peer: &Arc<PeerIdentity>,
    from: Option<SocketAddr>,
) -> Result<(), Denied> {
    let token_facts = || {
        Principal::Token {
            token: ClientToken::new(""),
            entry: entry.clone(),
            peer: peer.clone(),
        }
        .facts()
    };
    if entry.cert_fingerprint != peer.fingerprint_sha256 {
        tracing::warn!(target: "keep::auth", accessor = %entry.accessor, presented_by = %peer.fingerprint_sha256, "token presented on a connection with another client certificate");
        return Err(Denied::new(
            ApiError::client(
                StatusCode::FORBIDDEN,
                "permission denied: this token is bound to a different client certificate",
            ),
            token_facts().decided(
                false,
                "the token is bound to a different client certificate",
            ),
        ));
    }
    if !entry.bound_cidrs.is_empty() {
        let ip = from.map(|a| a.ip());
        let ok = ip.is_some_and(|ip| {
            entry
                .bound_cidrs
                .iter()
                .filter_map(|c| crate::auth::role::parse_cidr(c))
                .any(|c| crate::auth::role::cidr_contains(c, ip))
        });
        if !ok {
            state.alerts.outside_bound_cidrs(
                AccessKind::TokenUse,
                peer,
                from,
                &entry.role,
                &entry.bound_cidrs,
            );
            return Err(Denied::new(
                ApiError::permission_denied(),
                token_facts().decided(false, "the token is used from outside its bound CIDRs"),
            ));
        }
    }
    crate::auth::pin::check_token(state, entry, peer, from).map_err(|r| {
        let facts = Facts {
            decision: r.reason.map(|reason| (false, reason)),
            ..token_facts()
        };
        Denied::new(r.error, facts)
    })
}

/// Checks that `who` may perform `op` on `path` (a Vault API path without `/v1/`). Deny by
/// default: admins pass; tokens and tokenless roles need a policy that grants the capability.
pub fn authorize(
    state: &AppState,
    who: Principal,
    path: &str,
    op: Operation,
) -> Result<Access, Denied> {
    let facts = who.facts();
    let (policies, peer) = match &who {
        Principal::Admin => {
            return Ok(Access {
                who,
                facts: facts.decided(true, "break-glass admin identity"),
            });
        }
        Principal::Anonymous => {
            return Err(Denied::new(
                ApiError::permission_denied(),
                facts.decided(
                    false,
                    "no token, no admin identity and no tokenless role for this certificate",
                ),
            ));
        }
        Principal::Token { entry, peer, .. } => (&entry.policies, peer),
        Principal::Tokenless { policies, peer, .. } => (policies, peer),
    };
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let decision = state
        .policies
        .evaluate(&*store, policies, peer, path, op.capability())
        .map_err(|e| Denied::new(ApiError::internal(e.to_string()), facts.clone()))?;
    match decision {
        keep_policy::Decision::Allow { matched } => Ok(Access {
            who,
            facts: facts.decided(true, matched),
        }),
        keep_policy::Decision::Deny { reason } => {
            tracing::info!(target: "keep::authz", ?op, %reason, "denied");
            Err(Denied::new(
                ApiError::permission_denied(),
                facts.decided(false, reason),
            ))
        }
    }
}

/// Vault's sudo paths (`auth/token/tidy`): besides the operation's capability, a policy must
/// grant `sudo` on the path (admins pass).
pub fn authorize_sudo(state: &AppState, access: Access, path: &str) -> Result<Access, Denied> {
    let (policies, peer) = match &access.who {
        Principal::Admin => return Ok(access),
        Principal::Anonymous => {
            return Err(Denied::new(ApiError::permission_denied(), access.facts));
        }
        Principal::Token { entry, peer, .. } => (&entry.policies, peer),
        Principal::Tokenless { policies, peer, .. } => (policies, peer),
    };
    let store = state.store().ok_or_else(ApiError::sealed)?;
    let decision = state
        .policies
        .evaluate(&*store, policies, peer, path, keep_policy::Capability::Sudo)
        .map_err(|e| Denied::new(ApiError::internal(e.to_string()), access.facts.clone()))?;
    match decision {
        keep_policy::Decision::Allow { .. } => Ok(access),
        keep_policy::Decision::Deny { reason } => Err(Denied::new(
            ApiError::permission_denied(),
            access.facts.decided(false, format!("{reason} (sudo)")),
        )),
    }
}

/// [`principal`], then [`authorize`]: the request may perform `op` on `path`.
pub async fn admit(
    state: &Arc<AppState>,
    req: &VaultRequest,
    path: &str,
    op: Operation,
) -> Result<Access, Denied> {
    let who = principal(state, req).await?;
    authorize(state, who, path, op)
}
