//! PKI roles (`pki/roles/:name`) with Vault's fields, defaults and lenient input forms, and the
//! pure checks a certificate request must pass against its role.
//!
//! Every check is a small function returning `Ok` or a [`Refusal`] whose message names the
//! offending value and the role field that would allow it, so an operator can fix the role (or
//! the request) from the error alone. Deny by default: a role with no `allowed_domains`, no
//! `allow_any_name` and no `allowed_uri_sans` issues nothing but (by Vault's default)
//! `localhost`.

use keep_pki::cert::EkuChoice;
use keep_pki::inspect::PublicKeyInfo;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::role::{RoleInputError, glob_match};
use crate::fields::{boolean, opt_u64, string_list, to_bool, ttl};

/// A leaf issued online lives 24 hours unless its role says otherwise.
pub const DEFAULT_TTL: u64 = 24 * 3600;

/// The longest lifetime a role may grant when its `max_ttl` is 0: 32 days, Vault's system
/// maximum.
pub const SYSTEM_MAX_TTL: u64 = 32 * 24 * 3600;

/// Which keys a role accepts in CSRs (`sign`) and generates (`issue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleKeyType {
    /// ECDSA P-256 or P-384 (keep's default: what `keep certificate create` makes).
    Ec,
    /// RSA, 2048 bits or more.
    Rsa,
    /// Ed25519.
    Ed25519,
    /// Any of the above (`sign` only: `issue` needs to know what to generate).
    Any,
}

impl RoleKeyType {
    fn as_str(self) -> &'static str {
        match self {
            RoleKeyType::Ec => "ec",
            RoleKeyType::Rsa => "rsa",
            RoleKeyType::Ed25519 => "ed25519",
            RoleKeyType::Any => "any",
        }
    }
}

/// A PKI role as stored and returned by `GET pki/roles/:name`.
///
/// Defaults follow Vault's, with one deliberate difference: `key_type` defaults to `ec`
/// (P-256), keep's default key everywhere, rather than Vault's `rsa`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PkiRole {
    /// Domains names may be in (how, the `allow_*` flags say).
    pub allowed_domains: Vec<String>,
    /// Names below an allowed domain (`a.claw.internal` for `claw.internal`), and wildcards.
    pub allow_subdomains: bool,
    /// An allowed domain itself as a name.
    pub allow_bare_domains: bool,
    /// `allowed_domains` entries with `*` are globs.
    pub allow_glob_domains: bool,
    /// `localhost` and `localdomain` (default true, as in Vault).
    pub allow_localhost: bool,
    /// Any DNS name (still subject to `enforce_hostnames`).
    pub allow_any_name: bool,
    /// Names must be valid host names (default true).
    pub enforce_hostnames: bool,
    /// IP address SANs (default true, as in Vault).
    pub allow_ip_sans: bool,
    /// URI SANs allowed, as globs (empty: none).
    pub allowed_uri_sans: Vec<String>,
    /// serverAuth EKU (default true).
    pub server_flag: bool,
    /// clientAuth EKU (default true).
    pub client_flag: bool,
    /// Key type.
    pub key_type: RoleKeyType,
    /// Key size (0: the type's default; for `ec`, P-256 or P-384 both pass `sign`).
    pub key_bits: u32,
    /// Lifetime in seconds (0: 24 hours).
    pub ttl: u64,
    /// Longest lifetime a request may ask for, seconds (0: 32 days).
    pub max_ttl: u64,
    /// `sign`: take the common name from the CSR when it has one (default true).
    pub use_csr_common_name: bool,
    /// `sign`: take the SANs from the CSR (default true).
    pub use_csr_sans: bool,
    /// A common name is required (default true).
    pub require_cn: bool,
    /// Backdating of `not_before`, seconds (default 30, as in Vault).
    pub not_before_duration: u64,
    /// keep's own: the role may issue a name that the server's `admins:` list names (default
    /// false). Without it the mount refuses such a certificate, so no agent holding
    /// `pki/issue` on a broad role can mint itself a break-glass admin identity.
    pub allow_admin_names: bool,
}

impl Default for PkiRole {
    fn default() -> Self {
        PkiRole {
            allowed_domains: Vec::new(),
            allow_subdomains: false,
            allow_bare_domains: false,
            allow_glob_domains: false,
            allow_localhost: true,
            allow_any_name: false,
            enforce_hostnames: true,
            allow_ip_sans: true,
            allowed_uri_sans: Vec::new(),
            server_flag: true,
            client_flag: true,
            key_type: RoleKeyType::Ec,
            key_bits: 0,
            ttl: 0,
            max_ttl: 0,
            use_csr_common_name: true,
            use_csr_sans: true,
            require_cn: true,
            not_before_duration: 30,
            allow_admin_names: false,
        }
    }
}

/// Vault role fields keep does not implement. Clients (hvac, Terraform) send them with their
/// defaults, so those values are accepted; anything else is refused rather than silently
/// ignored.
const TOLERATED_AT_DEFAULT: [&str; 27] = [
    "allow_wildcard_certificates",
    "allowed_other_sans",
    "allowed_serial_numbers",
    "allowed_user_ids",
    "allowed_domains_template",
    "allowed_uri_sans_template",
    "allow_token_displayname",
    "basic_constraints_valid_for_non_ca",
    "code_signing_flag",
    "email_protection_flag",
    "country",
    "locality",
    "organization",
    "ou",
    "postal_code",
    "province",
    "street_address",
    "ext_key_usage",
    "ext_key_usage_oids",
    "generate_lease",
    "no_store",
    "policy_identifiers",
    "signature_bits",
    "use_pss",
    "issuer_ref",
    "cn_validations",
    "not_after",
];

/// Whether a tolerated field holds its Vault default: absent, empty, zero, or false (a boolean
/// read as [`to_bool`] reads one, Go's `ParseBool`), or `issuer_ref: default`.
fn at_default(field: &str, v: &Value) -> bool {
    // keep issues wildcards as allow_subdomains says, which is what either value asks for.
    if field == "allow_wildcard_certificates" && to_bool(v).is_some() {
        return true;
    }
    match v {
        Value::Null => true,
        Value::Number(n) => n.as_u64() == Some(0),
        Value::String(s) if field == "issuer_ref" && s == "default" => true,
        Value::Bool(_) | Value::String(_) => to_bool(v) == Some(false),
        Value::Array(a) => {
            a.is_empty()
                // Vault's default cn_validations.
                || (field == "cn_validations"
                    && a.iter().all(|x| matches!(x.as_str(), Some("email" | "hostname"))))
        }
        Value::Object(o) => o.is_empty(),
    }
}

impl PkiRole {
    /// Applies a create/update body onto `self` (an existing role, or the default). On error
    /// `self` is unchanged.
    pub fn apply(&mut self, m: &Map<String, Value>) -> Result<(), RoleInputError> {
        let mut next = self.clone();
        next.apply_fields(m)?;
        next.validate()?;
        *self = next;
        Ok(())
    }

    fn apply_fields(&mut self, m: &Map<String, Value>) -> Result<(), RoleInputError> {
        for (k, v) in m {
            match k.as_str() {
                "name"
                | "allowed_domains"
                | "allow_subdomains"
                | "allow_bare_domains"
                | "allow_glob_domains"
                | "allow_localhost"
                | "allow_any_name"
                | "enforce_hostnames"
                | "allow_ip_sans"
                | "allowed_uri_sans"
                | "server_flag"
                | "client_flag"
                | "key_type"
                | "key_bits"
                | "ttl"
                | "max_ttl"
                | "use_csr_common_name"
                | "use_csr_sans"
                | "require_cn"
                | "not_before_duration"
                | "allow_admin_names" => {}
                // keep derives key usage from the key type: Vault's defaults are what it does.
                "key_usage" => {
                    let ku = string_list(m, "key_usage")?.unwrap_or_default();
                    if let Some(bad) = ku.iter().find(|u| {
                        !matches!(
                            u.to_ascii_lowercase().as_str(),
                            "digitalsignature" | "keyagreement" | "keyencipherment"
                        )
                    }) {
                        return Err(RoleInputError(format!(
                            "key_usage {bad:?} is not supported by keep (leaves get digitalSignature, plus keyEncipherment for RSA keys)"
                        )));
                    }
                }
                f if TOLERATED_AT_DEFAULT.contains(&f) => {
                    if !at_default(f, v) {
                        return Err(RoleInputError(format!("{f} is not supported by keep")));
                    }
                }
                other => return Err(RoleInputError(format!("unknown field {other:?}"))),
            }
        }
        if let Some(v) = string_list(m, "allowed_domains")? {
            self.allowed_domains = v.into_iter().map(|d| d.to_ascii_lowercase()).collect();
        }
        let flags: [(&str, &mut bool); 13] = [
            ("allow_subdomains", &mut self.allow_subdomains),
            ("allow_bare_domains", &mut self.allow_bare_domains),
            ("allow_glob_domains", &mut self.allow_glob_domains),
            ("allow_localhost", &mut self.allow_localhost),
            ("allow_any_name", &mut self.allow_any_name),
            ("enforce_hostnames", &mut self.enforce_hostnames),
            ("allow_ip_sans", &mut self.allow_ip_sans),
            ("server_flag", &mut self.server_flag),
            ("client_flag", &mut self.client_flag),
            ("use_csr_common_name", &mut self.use_csr_common_name),
            ("use_csr_sans", &mut self.use_csr_sans),
            ("require_cn", &mut self.require_cn),
            ("allow_admin_names", &mut self.allow_admin_names),
        ];
        for (field, slot) in flags {
            if let Some(b) = boolean(m, field)? {
                *slot = b;
            }
        }
        if let Some(v) = string_list(m, "allowed_uri_sans")? {
            self.allowed_uri_sans = v;
        }
        match m.get("key_type") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                self.key_type = match s.to_ascii_lowercase().as_str() {
                    "ec" => RoleKeyType::Ec,
                    "rsa" => RoleKeyType::Rsa,
                    "ed25519" => RoleKeyType::Ed25519,
                    "any" => RoleKeyType::Any,
                    _ => {
                        return Err(RoleInputError(format!(
                            "key_type {s:?} is not supported; use ec, rsa, ed25519 or any"
                        )));
                    }
                };
            }
            Some(_) => return Err(RoleInputError("key_type must be a string".into())),
        }
        if let Some(bits) = opt_u64(m, "key_bits")? {
            self.key_bits = u32::try_from(bits)
                .map_err(|_| RoleInputError(format!("key_bits {bits} is not a key size")))?;
        }
        if let Some(v) = ttl(m, "ttl")? {
            self.ttl = v;
        }
        if let Some(v) = ttl(m, "max_ttl")? {
            self.max_ttl = v;
        }
        if let Some(v) = ttl(m, "not_before_duration")? {
            self.not_before_duration = v;
        }
        Ok(())
    }

    /// Checks the combination of fields (after every write).
    fn validate(&self) -> Result<(), RoleInputError> {
        let bits_ok = match self.key_type {
            RoleKeyType::Ec => matches!(self.key_bits, 0 | 256 | 384),
            RoleKeyType::Rsa => matches!(self.key_bits, 0 | 2048 | 3072 | 4096),
            RoleKeyType::Ed25519 | RoleKeyType::Any => self.key_bits == 0,
        };
        if !bits_ok {
            return Err(RoleInputError(format!(
                "key_bits {} does not fit key_type {}: use {}",
                self.key_bits,
                self.key_type.as_str(),
                match self.key_type {
                    RoleKeyType::Ec => "0, 256 or 384",
                    RoleKeyType::Rsa => "0, 2048, 3072 or 4096",
                    _ => "0",
                }
            )));
        }
        if !self.server_flag && !self.client_flag {
            return Err(RoleInputError(
                "at least one of server_flag and client_flag must be true: keep issues TLS certificates only".into(),
            ));
        }
        if self.max_ttl > 0 && self.ttl > self.max_ttl {
            return Err(RoleInputError(format!(
                "ttl ({}s) must not exceed max_ttl ({}s)",
                self.ttl, self.max_ttl
            )));
        }
        if self.not_before_duration > 3600 {
            return Err(RoleInputError(
                "not_before_duration must be at most 1h".into(),
            ));
        }
        for d in &self.allowed_domains {
            if d.contains('*') && !self.allow_glob_domains {
                return Err(RoleInputError(format!(
                    "allowed_domains entry {d:?} has a '*': set allow_glob_domains to use globs"
                )));
            }
        }
        Ok(())
    }

    /// The EKUs this role's certificates get when a request does not narrow them.
    pub fn eku(&self) -> EkuChoice {
        match (self.server_flag, self.client_flag) {
            (true, false) => EkuChoice::Server,
            (false, true) => EkuChoice::Client,
            _ => EkuChoice::Both,
        }
    }

    /// The role as `GET pki/roles/:name` answers it: every field Vault returns (vaultrs
    /// refuses an answer missing any), keep's values where it has them, Vault's defaults for
    /// what keep does not implement.
    pub fn to_json(&self) -> Value {
        // Two halves: one json! of 50 fields exceeds the macro's recursion limit.
        let mut m = match json!({
                "allow_any_name": self.allow_any_name,
                "allow_bare_domains": self.allow_bare_domains,
                "allow_glob_domains": self.allow_glob_domains,
                "allow_ip_sans": self.allow_ip_sans,
                "allow_localhost": self.allow_localhost,
                "allow_subdomains": self.allow_subdomains,
                "allow_token_displayname": false,
                "allow_wildcard_certificates": self.allow_subdomains,
                "allowed_domains": self.allowed_domains,
                "allowed_domains_template": false,
                "allowed_other_sans": [],
                "allowed_serial_numbers": [],
                "allowed_uri_sans": self.allowed_uri_sans,
                "allowed_uri_sans_template": false,
                "allowed_user_ids": [],
                "basic_constraints_valid_for_non_ca": false,
                "client_flag": self.client_flag,
                "cn_validations": ["email", "hostname"],
                "code_signing_flag": false,
                "country": [],
                "email_protection_flag": false,
                "enforce_hostnames": self.enforce_hostnames,
                "ext_key_usage": [],
                "ext_key_usage_oids": [],
                "generate_lease": false,
                "issuer_ref": "default",
        }) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if let Value::Object(rest) = json!({
                "key_bits": self.key_bits,
                "key_type": self.key_type.as_str(),
                "key_usage": if self.key_type == RoleKeyType::Rsa {
                    json!(["DigitalSignature", "KeyEncipherment"])
                } else {
                    json!(["DigitalSignature"])
                },
                "locality": [],
                "max_ttl": self.max_ttl,
                "no_store": false,
                "not_after": "",
                "not_before_duration": self.not_before_duration,
                "organization": [],
                "ou": [],
                "policy_identifiers": [],
                "postal_code": [],
                "province": [],
                "require_cn": self.require_cn,
                "allow_admin_names": self.allow_admin_names,
                "server_flag": self.server_flag,
                "signature_bits": 0,
                "street_address": [],
                "ttl": self.ttl,
                "use_csr_common_name": self.use_csr_common_name,
                "use_csr_sans": self.use_csr_sans,
                "use_pss": false,
        }) {
            m.extend(rest);
        }
        Value::Object(m)
    }
}

/// Why a role refuses a request: the offending value and the role field that would allow it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// A host name as certificates allow it (letters, digits, `-`, `_`; an optional leading `*.`).
fn is_hostname(name: &str) -> bool {
    let body = name.strip_prefix("*.").unwrap_or(name);
    !body.is_empty()
        && name.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn is_localhost(name: &str) -> Option<bool> {
    if name == "localhost" || name == "localdomain" {
        Some(false)
    } else if name.ends_with(".localhost") || name.ends_with(".localdomain") {
        Some(true)
    } else {
        None
    }
}

/// Checks a DNS name (a common name or a DNS SAN; `what` says which, for the message).
pub fn check_host_name(role: &PkiRole, what: &str, name: &str) -> Result<(), Refusal> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if role.enforce_hostnames && !is_hostname(&n) {
        return Err(Refusal(format!(
            "{what} {name:?} is not a valid host name (enforce_hostnames is true on this role)"
        )));
    }
    if role.allow_any_name {
        return Ok(());
    }
    match is_localhost(&n) {
        Some(sub) if role.allow_localhost && (!sub || role.allow_subdomains) => return Ok(()),
        Some(_) if !role.allow_localhost => {
            return Err(Refusal(format!(
                "{what} {name:?} is a localhost name, but allow_localhost is false on this role"
            )));
        }
        _ => {}
    }
    let (wildcard, base) = match n.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, n.as_str()),
    };
    let mut near_miss = None;
    for d in &role.allowed_domains {
        if role.allow_glob_domains && d.contains('*') && glob_match(d, &n) {
            return Ok(());
        }
        if base == d {
            if wildcard {
                if role.allow_subdomains {
                    return Ok(());
                }
                near_miss = Some(format!(
                    "{what} {name:?} is a wildcard for subdomains of {d:?}, but allow_subdomains is false on this role"
                ));
            } else if role.allow_bare_domains {
                return Ok(());
            } else {
                near_miss = Some(format!(
                    "{what} {name:?} is the allowed domain {d:?} itself, but allow_bare_domains is false on this role"
                ));
            }
        } else if base.ends_with(&format!(".{d}")) {
            if role.allow_subdomains {
                return Ok(());
            }
            near_miss = Some(format!(
                "{what} {name:?} is a subdomain of {d:?}, but allow_subdomains is false on this role"
            ));
        }
    }
    Err(Refusal(near_miss.unwrap_or_else(|| {
        format!(
            "{what} {name:?} is not allowed by this role: it is not within allowed_domains {:?} (add its domain to allowed_domains, or set allow_any_name)",
            role.allowed_domains
        )
    })))
}

/// Checks an email SAN (or a common name that is an email address): its domain part must pass
/// [`check_host_name`].
pub fn check_email(role: &PkiRole, what: &str, email: &str) -> Result<(), Refusal> {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(Refusal(format!("{what} {email:?} is not an email address")));
    };
    if local.is_empty() {
        return Err(Refusal(format!("{what} {email:?} is not an email address")));
    }
    check_host_name(role, &format!("{what} {email:?}: domain"), domain)
}

/// Checks an IP address SAN.
pub fn check_ip(role: &PkiRole, ip: &str) -> Result<(), Refusal> {
    if ip.trim().parse::<std::net::IpAddr>().is_err() {
        return Err(Refusal(format!("IP SAN {ip:?} is not an IP address")));
    }
    if !role.allow_ip_sans {
        return Err(Refusal(format!(
            "IP SAN {ip:?} is not allowed: allow_ip_sans is false on this role"
        )));
    }
    Ok(())
}

/// Checks a URI SAN against `allowed_uri_sans` (globs; empty allows none).
pub fn check_uri(role: &PkiRole, uri: &str) -> Result<(), Refusal> {
    if !uri.contains("://") && !uri.contains(':') {
        return Err(Refusal(format!("URI SAN {uri:?} is not a URI")));
    }
    if role.allowed_uri_sans.is_empty() {
        return Err(Refusal(format!(
            "URI SAN {uri:?} is not allowed: allowed_uri_sans is empty on this role"
        )));
    }
    if role.allowed_uri_sans.iter().any(|p| glob_match(p, uri)) {
        Ok(())
    } else {
        Err(Refusal(format!(
            "URI SAN {uri:?} does not match allowed_uri_sans {:?} on this role",
            role.allowed_uri_sans
        )))
    }
}

/// Checks the extended key usages a CSR asks for and returns what to issue: exactly what was
/// asked for when it asked (and the role allows it), else the role's.
pub fn check_ekus(role: &PkiRole, requested: &[String]) -> Result<EkuChoice, Refusal> {
    let (mut server, mut client) = (false, false);
    for eku in requested {
        match eku.as_str() {
            "serverAuth" if role.server_flag => server = true,
            "clientAuth" if role.client_flag => client = true,
            "serverAuth" => {
                return Err(Refusal(
                    "the request asks for the serverAuth extended key usage, but server_flag is false on this role".into(),
                ));
            }
            "clientAuth" => {
                return Err(Refusal(
                    "the request asks for the clientAuth extended key usage, but client_flag is false on this role".into(),
                ));
            }
            other => {
                return Err(Refusal(format!(
                    "the request asks for the {other} extended key usage; keep roles issue serverAuth (server_flag) and clientAuth (client_flag) only"
                )));
            }
        }
    }
    Ok(match (server, client) {
        (true, true) => EkuChoice::Both,
        (true, false) => EkuChoice::Server,
        (false, true) => EkuChoice::Client,
        (false, false) => role.eku(),
    })
}

/// Checks a CSR's public key against `key_type`/`key_bits`.
pub fn check_public_key(role: &PkiRole, key: &PublicKeyInfo) -> Result<(), Refusal> {
    let ec_ok = |bits: u32| match role.key_bits {
        0 => matches!(bits, 256 | 384),
        want => bits == want,
    };
    let rsa_ok = |bits: u32| bits >= role.key_bits.max(2048);
    let ok = match (role.key_type, key.algorithm.as_str()) {
        (RoleKeyType::Ec | RoleKeyType::Any, "ECDSA") => {
            ec_ok(key.bits) || (role.key_type == RoleKeyType::Any && key.bits == 521)
        }
        (RoleKeyType::Rsa | RoleKeyType::Any, "RSA") => rsa_ok(key.bits),
        (RoleKeyType::Ed25519 | RoleKeyType::Any, "Ed25519") => true,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let have = match &key.curve {
        Some(c) => format!("{} {c}", key.algorithm),
        None => format!("{} {}", key.algorithm, key.bits),
    };
    Err(Refusal(format!(
        "the request's public key is {have}, but this role has key_type {} and key_bits {}{}",
        role.key_type.as_str(),
        role.key_bits,
        if key.algorithm == "RSA" && key.bits < 2048 {
            " (RSA keys need at least 2048 bits)"
        } else {
            ""
        }
    )))
}

/// The lifetime to grant: the request's TTL (or the role's, or 24 hours), capped by the role's
/// `max_ttl` (or 32 days). Returns the TTL and a warning when a request was capped.
pub fn lifetime(role: &PkiRole, requested: Option<u64>) -> (u64, Option<String>) {
    let base = if role.ttl == 0 { DEFAULT_TTL } else { role.ttl };
    let max = if role.max_ttl == 0 {
        SYSTEM_MAX_TTL
    } else {
        role.max_ttl
    };
    match requested.filter(|t| *t > 0) {
        Some(t) if t > max => (
            max,
            Some(format!(
                "the requested ttl ({t}s) is longer than the role's max_ttl ({max}s); the certificate gets {max}s"
            )),
        ),
        Some(t) => (t, None),
        None => (base.min(max), None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn role(v: Value) -> PkiRole {
        let mut r = PkiRole::default();
        r.apply(v.as_object().unwrap()).unwrap();
        r
    }

    fn refused(r: Result<(), Refusal>) -> String {
        r.unwrap_err().0
    }

    #[test]
    fn vault_defaults_and_input_forms() {
        let r = PkiRole::default();
        assert!(r.allow_localhost && r.allow_ip_sans && r.server_flag && r.client_flag);
        assert!(!r.allow_subdomains && !r.allow_bare_domains && !r.allow_any_name);
        let r = role(json!({
            "allowed_domains": "Claw.Internal, example.org",
            "allow_subdomains": "true",
            "ttl": "1h",
            "max_ttl": 7200,
            "key_type": "rsa",
            "key_bits": "3072",
            // What hvac/Terraform send by default.
            "allow_wildcard_certificates": true,
            "ou": [],
            "no_store": false,
            "issuer_ref": "default",
            "key_usage": ["DigitalSignature", "KeyAgreement", "KeyEncipherment"],
        }));
        assert_eq!(r.allowed_domains, vec!["claw.internal", "example.org"]);
        assert!(r.allow_subdomains);
        assert_eq!((r.ttl, r.max_ttl, r.key_bits), (3600, 7200, 3072));
        assert_eq!(r.key_type, RoleKeyType::Rsa);
        let mut bad = PkiRole::default();
        for (body, says) in [
            (json!({"bogus": 1}), "unknown field"),
            (json!({"key_type": "dsa"}), "key_type"),
            (json!({"key_type": "ec", "key_bits": 521}), "key_bits 521"),
            (json!({"ttl": 100, "max_ttl": 10}), "must not exceed"),
            (
                json!({"server_flag": false, "client_flag": false}),
                "at least one",
            ),
            (
                json!({"organization": "Claw"}),
                "organization is not supported",
            ),
            (json!({"code_signing_flag": true}), "code_signing_flag"),
            (
                json!({"allowed_domains": "*.claw.internal"}),
                "allow_glob_domains",
            ),
            (json!({"key_usage": "CertSign"}), "key_usage"),
        ] {
            let e = bad.apply(body.as_object().unwrap()).unwrap_err().0;
            assert!(e.contains(says), "want {says:?} in {e}");
        }
    }

    /// Flags and tolerated Vault flags read booleans as Go's `ParseBool` does: every spelling
    /// of false leaves a tolerated flag at its default, every spelling of true is refused.
    #[test]
    fn booleans_follow_parse_bool() {
        let falses = ["0", "f", "F", "FALSE", "false", "False", ""];
        let trues = ["1", "t", "T", "TRUE", "true", "True"];
        for s in falses {
            let r = role(json!({"allow_subdomains": s, "code_signing_flag": s, "no_store": s}));
            assert!(!r.allow_subdomains, "{s:?}");
        }
        for s in trues {
            let r = role(json!({"allow_subdomains": s, "allow_wildcard_certificates": s}));
            assert!(r.allow_subdomains, "{s:?}");
            let e = PkiRole::default()
                .apply(json!({"code_signing_flag": s}).as_object().unwrap())
                .unwrap_err()
                .0;
            assert_eq!(e, "code_signing_flag is not supported by keep", "{s:?}");
        }
        for s in ["yes", "on", "tRUE", " true"] {
            let e = PkiRole::default()
                .apply(json!({"allow_subdomains": s}).as_object().unwrap())
                .unwrap_err()
                .0;
            assert_eq!(e, "allow_subdomains must be true or false", "{s:?}");
            let e = PkiRole::default()
                .apply(
                    json!({"allow_wildcard_certificates": s})
                        .as_object()
                        .unwrap(),
                )
                .unwrap_err()
                .0;
            assert_eq!(
                e, "allow_wildcard_certificates is not supported by keep",
                "{s:?}"
            );
        }
        let e = PkiRole::default()
            .apply(json!({"key_bits": "big"}).as_object().unwrap())
            .unwrap_err()
            .0;
        assert_eq!(e, "key_bits must be a non-negative integer");
    }

    // Paired allow/deny tests, one pair per rule.

    #[test]
    fn allowed_domains_allow_inside_deny_outside() {
        let r = role(json!({"allowed_domains": "claw.internal", "allow_subdomains": true}));
        assert!(check_host_name(&r, "common name", "agent-01.claw.internal").is_ok());
        let e = refused(check_host_name(&r, "common name", "evil.example.com"));
        assert!(
            e.contains("\"evil.example.com\"") && e.contains("allowed_domains"),
            "{e}"
        );
        // A suffix that is not a label boundary is outside.
        let e = refused(check_host_name(&r, "DNS SAN", "evilclaw.internal"));
        assert!(e.contains("allowed_domains"), "{e}");
    }

    #[test]
    fn subdomains_need_allow_subdomains() {
        let on = role(json!({"allowed_domains": "claw.internal", "allow_subdomains": true}));
        let off = role(json!({"allowed_domains": "claw.internal", "allow_bare_domains": true}));
        assert!(check_host_name(&on, "DNS SAN", "a.b.claw.internal").is_ok());
        assert!(check_host_name(&on, "DNS SAN", "*.claw.internal").is_ok());
        let e = refused(check_host_name(&off, "DNS SAN", "a.claw.internal"));
        assert!(
            e.contains("\"a.claw.internal\"") && e.contains("allow_subdomains is false"),
            "{e}"
        );
        let e = refused(check_host_name(&off, "DNS SAN", "*.claw.internal"));
        assert!(e.contains("allow_subdomains is false"), "{e}");
    }

    #[test]
    fn bare_domains_need_allow_bare_domains() {
        let on = role(json!({"allowed_domains": "agent-01", "allow_bare_domains": true}));
        let off = role(json!({"allowed_domains": "agent-01", "allow_subdomains": true}));
        assert!(check_host_name(&on, "common name", "agent-01").is_ok());
        let e = refused(check_host_name(&off, "common name", "agent-01"));
        assert!(e.contains("allow_bare_domains is false"), "{e}");
    }

    #[test]
    fn globs_need_allow_glob_domains() {
        let on =
            role(json!({"allowed_domains": "agent-*.claw.internal", "allow_glob_domains": true}));
        assert!(check_host_name(&on, "common name", "agent-7.claw.internal").is_ok());
        let e = refused(check_host_name(&on, "common name", "db-7.claw.internal"));
        assert!(e.contains("allowed_domains"), "{e}");
    }

    #[test]
    fn localhost_follows_allow_localhost() {
        let on = role(json!({}));
        let off = role(json!({"allow_localhost": false}));
        assert!(check_host_name(&on, "DNS SAN", "localhost").is_ok());
        let e = refused(check_host_name(&off, "DNS SAN", "localhost"));
        assert!(e.contains("allow_localhost is false"), "{e}");
    }

    #[test]
    fn any_name_allows_anything_that_is_a_host_name() {
        let r = role(json!({"allow_any_name": true}));
        assert!(check_host_name(&r, "common name", "anything.example").is_ok());
        let e = refused(check_host_name(&r, "common name", "not a host"));
        assert!(e.contains("enforce_hostnames"), "{e}");
        let r = role(json!({"allow_any_name": true, "enforce_hostnames": false}));
        assert!(check_host_name(&r, "common name", "Agent 01").is_ok());
    }

    #[test]
    fn emails_are_checked_by_their_domain() {
        let r = role(json!({"allowed_domains": "claw.internal", "allow_bare_domains": true}));
        assert!(check_email(&r, "email SAN", "ops@claw.internal").is_ok());
        let e = refused(check_email(&r, "email SAN", "ops@evil.example"));
        assert!(
            e.contains("ops@evil.example") && e.contains("allowed_domains"),
            "{e}"
        );
    }

    #[test]
    fn ip_sans_follow_allow_ip_sans() {
        let on = role(json!({}));
        let off = role(json!({"allow_ip_sans": false}));
        assert!(check_ip(&on, "10.0.0.7").is_ok());
        let e = refused(check_ip(&off, "10.0.0.7"));
        assert!(
            e.contains("\"10.0.0.7\"") && e.contains("allow_ip_sans is false"),
            "{e}"
        );
        assert!(refused(check_ip(&on, "10.0.0.999")).contains("not an IP address"));
    }

    #[test]
    fn uri_sans_must_match_allowed_uri_sans() {
        let r = role(json!({"allowed_uri_sans": "spiffe://claw.internal/agent/*"}));
        assert!(check_uri(&r, "spiffe://claw.internal/agent/a1").is_ok());
        let e = refused(check_uri(&r, "spiffe://claw.internal/admin"));
        assert!(
            e.contains("spiffe://claw.internal/admin") && e.contains("allowed_uri_sans"),
            "{e}"
        );
        let e = refused(check_uri(
            &role(json!({})),
            "spiffe://claw.internal/agent/a1",
        ));
        assert!(e.contains("allowed_uri_sans is empty"), "{e}");
    }

    #[test]
    fn ekus_follow_the_flags() {
        let client_only = role(json!({"server_flag": false}));
        assert_eq!(
            check_ekus(&client_only, &["clientAuth".into()]).unwrap(),
            EkuChoice::Client
        );
        assert_eq!(check_ekus(&client_only, &[]).unwrap(), EkuChoice::Client);
        let e = check_ekus(&client_only, &["serverAuth".into()])
            .unwrap_err()
            .0;
        assert!(
            e.contains("serverAuth") && e.contains("server_flag is false"),
            "{e}"
        );
        let both = role(json!({}));
        assert_eq!(
            check_ekus(&both, &["serverAuth".into()]).unwrap(),
            EkuChoice::Server,
            "a request may narrow"
        );
        let e = check_ekus(&both, &["codeSigning".into()]).unwrap_err().0;
        assert!(e.contains("codeSigning"), "{e}");
    }

    #[test]
    fn key_type_and_bits() {
        let key = |alg: &str, curve: Option<&str>, bits: u32| PublicKeyInfo {
            algorithm: alg.into(),
            curve: curve.map(Into::into),
            bits,
        };
        let ec = role(json!({}));
        assert!(check_public_key(&ec, &key("ECDSA", Some("P-256"), 256)).is_ok());
        assert!(check_public_key(&ec, &key("ECDSA", Some("P-384"), 384)).is_ok());
        let e = check_public_key(&ec, &key("RSA", None, 2048))
            .unwrap_err()
            .0;
        assert!(e.contains("RSA 2048") && e.contains("key_type ec"), "{e}");
        let rsa = role(json!({"key_type": "rsa", "key_bits": 3072}));
        assert!(check_public_key(&rsa, &key("RSA", None, 4096)).is_ok());
        assert!(check_public_key(&rsa, &key("RSA", None, 2048)).is_err());
        let any = role(json!({"key_type": "any"}));
        assert!(check_public_key(&any, &key("Ed25519", None, 256)).is_ok());
        let e = check_public_key(&any, &key("RSA", None, 1024))
            .unwrap_err()
            .0;
        assert!(e.contains("at least 2048"), "{e}");
    }

    #[test]
    fn lifetimes_default_cap_and_warn() {
        assert_eq!(lifetime(&role(json!({})), None), (DEFAULT_TTL, None));
        let r = role(json!({"ttl": "1h", "max_ttl": "2h"}));
        assert_eq!(lifetime(&r, None), (3600, None));
        assert_eq!(lifetime(&r, Some(600)), (600, None));
        let (t, w) = lifetime(&r, Some(86400));
        assert_eq!(t, 7200);
        assert!(w.unwrap().contains("max_ttl"));
        let r = role(json!({"max_ttl": "1h"}));
        assert_eq!(
            lifetime(&r, None),
            (3600, None),
            "the default is capped too"
        );
    }
}
