//! ACL policies as the server stores them: HCL text at `sys/policy/<name>`, parsed once into
//! [`keep_policy::Policy`] and cached. Evaluation itself is keep-policy's pure function.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use keep_policy::{Capability, Decision, Policy, TemplateContext};
use keep_store::{Store, StoreError};
use keep_tls::identity::PeerIdentity;

const PREFIX: &str = "sys/policy/";

/// Parsed policies by name. The built-in `default` policy is used until an operator writes
/// their own version of it.
#[derive(Default)]
pub struct PolicyCache {
    parsed: RwLock<HashMap<String, Option<Arc<Policy>>>>,
}

impl PolicyCache {
    /// The HCL text of a policy (the built-in default when `default` was never written).
    pub fn source(&self, store: &dyn Store, name: &str) -> Result<Option<String>, StoreError> {
        match store.get(&format!("{PREFIX}{name}"))? {
            Some(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            None if name == "default" => Ok(Some(keep_policy::DEFAULT_POLICY_HCL.to_owned())),
            None => Ok(None),
        }
    }

    fn get(&self, store: &dyn Store, name: &str) -> Result<Option<Arc<Policy>>, StoreError> {
        if let Ok(g) = self.parsed.read()
            && let Some(p) = g.get(name)
        {
            return Ok(p.clone());
        }
        let parsed = match self.source(store, name)? {
            // A stored policy always parsed when it was written; if it no longer does (a newer
            // keep wrote it), it grants nothing rather than failing every request.
            Some(src) => Policy::parse(name, &src).ok().map(Arc::new),
            None => None,
        };
        if let Ok(mut g) = self.parsed.write() {
            g.insert(name.to_owned(), parsed.clone());
        }
        Ok(parsed)
    }

    /// Writes a policy after parsing it; the parse error (with its line) is returned as is.
    pub fn put(
        &self,
        store: &dyn Store,
        name: &str,
        src: &str,
    ) -> Result<Result<(), String>, StoreError> {
        let parsed = match Policy::parse(name, src) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.to_string())),
        };
        store.put(&format!("{PREFIX}{name}"), src.as_bytes())?;
        if let Ok(mut g) = self.parsed.write() {
            g.insert(name.to_owned(), Some(Arc::new(parsed)));
        }
        Ok(Ok(()))
    }

    /// Deletes a policy.
    pub fn delete(&self, store: &dyn Store, name: &str) -> Result<(), StoreError> {
        store.delete(&format!("{PREFIX}{name}"))?;
        if let Ok(mut g) = self.parsed.write() {
            g.remove(name);
        }
        Ok(())
    }

    /// Names of stored policies, plus `default`.
    pub fn names(&self, store: &dyn Store) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = store
            .list(PREFIX)?
            .into_iter()
            .filter(|n| !n.ends_with('/'))
            .collect();
        if !names.iter().any(|n| n == "default") {
            names.push("default".into());
        }
        names.sort();
        Ok(names)
    }

    /// Evaluates `cap` on `path` for a caller holding `policies`, templated from `peer`.
    pub fn evaluate(
        &self,
        store: &dyn Store,
        policies: &[String],
        peer: &PeerIdentity,
        path: &str,
        cap: Capability,
    ) -> Result<Decision, StoreError> {
        let mut loaded = Vec::new();
        for name in policies {
            if let Some(p) = self.get(store, name)? {
                loaded.push(p);
            }
        }
        let refs: Vec<&Policy> = loaded.iter().map(|p| &**p).collect();
        let ctx = TemplateContext {
            common_name: peer.common_name.as_deref(),
            dns_sans: &peer.dns_sans,
            uri_sans: &peer.uri_sans,
            serial: &peer.serial,
        };
        Ok(keep_policy::evaluate(&refs, &ctx, path, cap))
    }

    /// Whether `policies` grant any capability on `mount` or on a path below it (Vault's
    /// `hasMountAccess`, which gates `sys/internal/ui/mounts/:path`): a rule whose pattern
    /// starts with the mount path and grants something other than `deny`, or a rule that
    /// grants something on the mount path itself.
    pub fn grants_under(
        &self,
        store: &dyn Store,
        policies: &[String],
        peer: &PeerIdentity,
        mount: &str,
    ) -> Result<bool, StoreError> {
        let mut loaded = Vec::new();
        for name in policies {
            if let Some(p) = self.get(store, name)? {
                loaded.push(p);
            }
        }
        let refs: Vec<&Policy> = loaded.iter().map(|p| &**p).collect();
        let ctx = TemplateContext {
            common_name: peer.common_name.as_deref(),
            dns_sans: &peer.dns_sans,
            uri_sans: &peer.uri_sans,
            serial: &peer.serial,
        };
        let on_mount = keep_policy::capabilities(&refs, &ctx, mount);
        if !on_mount.contains(&Capability::Deny) {
            return Ok(true);
        }
        Ok(refs.iter().flat_map(|p| p.rules()).any(|r| {
            r.pattern().starts_with(mount)
                && !r.denies()
                && r.capabilities().iter().any(|c| *c != Capability::Deny)
        }))
    }

    /// The capabilities `policies` give on `path` (`sys/capabilities-self`), templated from
    /// `peer` (`None`: templated rules match nothing).
    pub fn capabilities(
        &self,
        store: &dyn Store,
        policies: &[String],
        peer: Option<&PeerIdentity>,
        path: &str,
    ) -> Result<std::collections::BTreeSet<Capability>, StoreError> {
        let mut loaded = Vec::new();
        for name in policies {
            if let Some(p) = self.get(store, name)? {
                loaded.push(p);
            }
        }
        let refs: Vec<&Policy> = loaded.iter().map(|p| &**p).collect();
        let none: [String; 0] = [];
        let ctx = match peer {
            Some(peer) => TemplateContext {
                common_name: peer.common_name.as_deref(),
                dns_sans: &peer.dns_sans,
                uri_sans: &peer.uri_sans,
                serial: &peer.serial,
            },
            None => TemplateContext {
                common_name: None,
                dns_sans: &none,
                uri_sans: &none,
                serial: "",
            },
        };
        Ok(keep_policy::capabilities(&refs, &ctx, path))
    }
}
