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

/// A certificate issued offline through the PKI mount: the chain to present (leaf, then the
/// intermediates) and its key. `Debug` does not show the key.
pub struct OfflineCert {
    /// Leaf then issuing CA chain without self-signed roots, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM (unencrypted).
    pub key_pem: zeroize::Zeroizing<String>,
    /// The serial, as the inventory lists it.
    pub serial: String,
}

impl std::fmt::Debug for OfflineCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineCert")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// Writes PKI role `role_name` and issues one client certificate per common name in `names`
/// through the PKI mount configured in `config` (`pki:`), offline: the certificates are in the
/// mount's inventory, so their holders can renew them over mTLS (`POST /v1/pki/renew`).
pub fn issue_offline(
    config: &ServerConfig,
    role_name: &str,
    role: &crate::pki::role::PkiRole,
    names: &[String],
) -> Result<Vec<OfflineCert>, ProvisionError> {
    let write = |what: &str, e: &dyn std::fmt::Display| ProvisionError::Write {
        what: what.to_owned(),
        detail: e.to_string(),
    };
    let pki_config = config.pki.as_ref().ok_or_else(|| ProvisionError::Write {
        what: "certificates".into(),
        detail: "the server config has no `pki:` section".into(),
    })?;
    let pki = crate::pki::Pki::load(pki_config)
        .map_err(|e| write("the PKI issuer", &e))?
        .with_admins(&config.admins);
    let store = open_storage(config)?;
    let barrier = unseal(config, store, &|_| {
        Err("provisioning needs seal.key_file or seal.passphrase_file".into())
    })?;
    let now = time::OffsetDateTime::now_utc();
    pki.put_role(&*barrier, role_name, role)
        .map_err(|e| write(&format!("PKI role {role_name:?}"), &e))?;
    // The issuer chain without self-signed roots: what a client presents after its leaf.
    let intermediates: String = pki
        .ca_chain()
        .iter()
        .filter(|ca| {
            !keep_pki::pem::read_certificates(
                ca.as_bytes(),
                &keep_pki::Source::Other("the issuer chain".into()),
            )
            .ok()
            .and_then(|b| {
                b.first()
                    .and_then(|b| keep_pki::inspect::inspect(&b.der).ok())
            })
            .is_some_and(|i| i.self_signed)
        })
        .map(String::as_str)
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let req = crate::pki::NameRequest {
            common_name: Some(name.clone()),
            ..Default::default()
        };
        let (issued, key) = pki
            .issue(&*barrier, role_name, &req, now)
            .map_err(|e| write(&format!("a certificate for {name:?}"), &e))?;
        let mut chain_pem = issued.record.certificate.clone();
        chain_pem.push_str(&intermediates);
        out.push(OfflineCert {
            chain_pem,
            key_pem: key.to_pem_plaintext(),
            serial: issued.record.serial_number,
        });
    }
    Ok(out)
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
