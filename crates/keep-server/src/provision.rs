//! Offline provisioning for `keep init`: policies, cert auth roles and KV v2 secrets written
//! through the encryption barrier of a storage that was just initialized, before any server
//! runs — so a new lab works the moment `keep server` starts, with nothing typed by hand.
//!
//! Everything goes through the same code the HTTP API uses (policy parsing, role storage, the
//! KV engine), so what is provisioned is exactly what an operator could have written.

use keep_store::Store;
use serde_json::{Map, Value};

use crate::auth::role::Role;
use crate::config::ServerConfig;
use crate::server::{ServerError, open_storage, unseal};

/// What to write.
#[derive(Debug, Default)]
pub struct Provision {
    /// ACL policies: (name, HCL text).
    pub policies: Vec<(String, String)>,
    /// Cert auth roles: (name, role).
    pub roles: Vec<(String, Role)>,
    /// KV v2 secrets at mount `secret/`: (path, data).
    pub secrets: Vec<(String, Map<String, Value>)>,
}

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The storage cannot be opened or unsealed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A policy does not parse (the message carries its line).
    #[error("policy {name:?}: {detail}")]
    Policy {
        /// The policy name.
        name: String,
        /// The parser's message.
        detail: String,
    },
    /// The storage refused a write.
    #[error("cannot write {what}: {detail}")]
    Write {
        /// What was being written.
        what: String,
        /// The cause.
        detail: String,
    },
}

/// Unseals the configured storage with its key file (or passphrase file) and writes `p`.
pub fn apply(config: &ServerConfig, p: &Provision) -> Result<(), ProvisionError> {
    let store = open_storage(config)?;
    let barrier = unseal(config, store, &|_| {
        Err("provisioning needs seal.key_file or seal.passphrase_file".into())
    })?;
    apply_to(&*barrier, p)
}

/// Writes `p` into an unsealed store.
pub fn apply_to(store: &dyn Store, p: &Provision) -> Result<(), ProvisionError> {
    let policies = crate::policy::PolicyCache::default();
    for (name, text) in &p.policies {
        policies
            .put(store, name, text)
            .map_err(|e| ProvisionError::Write {
                what: format!("policy {name:?}"),
                detail: e.to_string(),
            })?
            .map_err(|detail| ProvisionError::Policy {
                name: name.clone(),
                detail,
            })?;
    }
    let roles = crate::auth::RoleCache::default();
    for (name, role) in &p.roles {
        roles
            .put(store, name, role.clone())
            .map_err(|e| ProvisionError::Write {
                what: format!("cert auth role {name:?}"),
                detail: e.to_string(),
            })?;
    }
    let kv = crate::kv::KvEngine::new(store, "secret");
    let now = time::OffsetDateTime::now_utc();
    for (path, data) in &p.secrets {
        kv.write(path, data.clone(), None, now)
            .map_err(|e| ProvisionError::Write {
                what: format!("secret/{path}"),
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn provisioned_items_read_back_through_the_engines() {
        let store = keep_store::MemStore::default();
        let mut data = Map::new();
        data.insert("api_key".into(), Value::String("demo".into()));
        let p = Provision {
            policies: vec![(
                "agents".into(),
                r#"path "secret/data/agents/{{cert.common_name}}/*" { capabilities = ["read"] }"#
                    .into(),
            )],
            roles: vec![(
                "agents".into(),
                Role {
                    allowed_common_names: vec!["agent-*".into()],
                    token_policies: vec!["agents".into()],
                    ..Role::default()
                },
            )],
            secrets: vec![("agents/agent-01/demo".into(), data)],
        };
        apply_to(&store, &p).unwrap();
        let policies = crate::policy::PolicyCache::default();
        assert!(policies.source(&store, "agents").unwrap().is_some());
        let roles = crate::auth::RoleCache::default();
        assert!(roles.all(&store).unwrap().contains_key("agents"));
        let v = crate::kv::KvEngine::new(&store, "secret")
            .read(
                "agents/agent-01/demo",
                None,
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        assert_eq!(v.data["api_key"], "demo");

        let bad = Provision {
            policies: vec![("broken".into(), "path {".into())],
            ..Provision::default()
        };
        let e = apply_to(&store, &bad).unwrap_err().to_string();
        assert!(e.contains("broken"), "{e}");
    }
}
