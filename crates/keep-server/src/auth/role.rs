//! Cert auth roles (`auth/cert/certs/:name`), with Vault's fields and Vault's lenient input
//! forms, and the pure matching of a verified client identity against a role.
//!
//! Matching runs on every login and every tokenless request, so a role is parsed once (its CA
//! fingerprints and subject precomputed) and matching is string and byte comparisons only:
//! 1,000 roles cost microseconds, not 1,000 certificate parses.

use std::collections::BTreeSet;
use std::net::IpAddr;

use keep_tls::identity::{CaKey, PeerIdentity};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fields::{FieldError, boolean, string_list, ttl};

/// Vault's default token TTL when neither the role nor the request sets one: 32 days.
pub const DEFAULT_TOKEN_TTL: u64 = 32 * 24 * 3600;

/// A role as stored (and returned by `GET auth/cert/certs/:name`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// PEM of the CA certificate(s) a client cert must chain through (empty = any CA the
    /// listener trusts).
    pub certificate: String,
    /// Allowed subject common names (globs with `*`).
    pub allowed_common_names: Vec<String>,
    /// Allowed DNS SANs (globs).
    pub allowed_dns_sans: Vec<String>,
    /// Allowed URI SANs (globs; a trailing `*` as in Vault).
    pub allowed_uri_sans: Vec<String>,
    /// Allowed email SANs (globs).
    pub allowed_email_sans: Vec<String>,
    /// Allowed organizational units (globs).
    pub allowed_organizational_units: Vec<String>,
    /// `oid:value` extensions the cert must carry (value may be `*`).
    pub required_extensions: Vec<String>,
    /// Shown in token metadata.
    pub display_name: String,
    /// Policies attached to tokens from this role.
    pub token_policies: Vec<String>,
    /// Token TTL in seconds (0 = default).
    pub token_ttl: u64,
    /// Token max TTL in seconds (0 = no cap beyond the default).
    pub token_max_ttl: u64,
    /// Source CIDRs allowed to log in and to use its tokens.
    pub token_bound_cidrs: Vec<String>,
    /// Do not add the `default` policy.
    pub token_no_default_policy: bool,
    /// keep extension: a request without a token is authorized by this role's policies when
    /// the connection's certificate matches (no bearer secret at all).
    pub allow_tokenless: bool,
    /// keep extension: the first address a certificate logs in from with this role is
    /// remembered, and later logins and token uses of that certificate from any other address
    /// are refused and raise an `unexpected_source_address` alert. The pin lasts as long as
    /// the certificate. (`default` so roles stored before the field existed still load.)
    #[serde(default)]
    pub pin_first_seen_address: bool,
}

/// Why a role write was refused (400 with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RoleInputError(pub String);

impl From<FieldError> for RoleInputError {
    fn from(e: FieldError) -> RoleInputError {
        RoleInputError(e.to_string())
    }
}

const KNOWN_FIELDS: [&str; 22] = [
    "name",
    "certificate",
    "allowed_common_names",
    "allowed_names",
    "allowed_dns_sans",
    "allowed_uri_sans",
    "allowed_email_sans",
    "allowed_organizational_units",
    "required_extensions",
    "display_name",
    "token_policies",
    "policies",
    "token_ttl",
    "ttl",
    "token_max_ttl",
    "max_ttl",
    "token_bound_cidrs",
    "bound_cidrs",
    "token_no_default_policy",
    "allow_tokenless",
    "token_type",
    "pin_first_seen_address",
];

impl Role {
    /// Applies a create/update request body onto `self` (an existing role, or the default).
    /// Accepts Vault's deprecated aliases (`policies`, `ttl`, `max_ttl`, `bound_cidrs`,
    /// `allowed_names`) because older clients still send them.
    pub fn apply(&mut self, m: &Map<String, Value>) -> Result<(), RoleInputError> {
        for k in m.keys() {
            if !KNOWN_FIELDS.contains(&k.as_str()) && !k.starts_with("token_") {
                return Err(RoleInputError(format!("unknown field {k:?}")));
            }
        }
        if let Some(Value::String(pem)) = m.get("certificate") {
            if !pem.trim().is_empty() {
                let certs = keep_pki::pem::read_certificates(
                    pem.as_bytes(),
                    &keep_pki::pem::Source::Field("certificate".into()),
                )
                .map_err(|e| RoleInputError(e.to_string()))?;
                if certs.is_empty() {
                    return Err(RoleInputError("certificate holds no certificate".into()));
                }
            }
            self.certificate = pem.clone();
        }
        if let Some(v) =
            string_list(m, "allowed_common_names")?.or(string_list(m, "allowed_names")?)
        {
            self.allowed_common_names = v;
        }
        if let Some(v) = string_list(m, "allowed_dns_sans")? {
            self.allowed_dns_sans = v;
        }
        if let Some(v) = string_list(m, "allowed_uri_sans")? {
            self.allowed_uri_sans = v;
        }
        if let Some(v) = string_list(m, "allowed_email_sans")? {
            self.allowed_email_sans = v;
        }
        if let Some(v) = string_list(m, "allowed_organizational_units")? {
            self.allowed_organizational_units = v;
        }
        if let Some(v) = string_list(m, "required_extensions")? {
            self.required_extensions = v;
        }
        if let Some(Value::String(s)) = m.get("display_name") {
            self.display_name = s.clone();
        }
        if let Some(v) = string_list(m, "token_policies")?.or(string_list(m, "policies")?) {
            self.token_policies = v;
        }
        if let Some(v) = ttl(m, "token_ttl")?.or(ttl(m, "ttl")?) {
            self.token_ttl = v;
        }
        if let Some(v) = ttl(m, "token_max_ttl")?.or(ttl(m, "max_ttl")?) {
            self.token_max_ttl = v;
        }
        if let Some(v) = string_list(m, "token_bound_cidrs")?.or(string_list(m, "bound_cidrs")?) {
            for c in &v {
                parse_cidr(c).ok_or_else(|| {
                    RoleInputError(format!(
                        "{c:?} in token_bound_cidrs is not a CIDR such as 10.0.0.0/8"
                    ))
                })?;
            }
            self.token_bound_cidrs = v;
        }
        if let Some(v) = boolean(m, "token_no_default_policy")? {
            self.token_no_default_policy = v;
        }
        if let Some(v) = boolean(m, "allow_tokenless")? {
            self.allow_tokenless = v;
        }
        if let Some(v) = boolean(m, "pin_first_seen_address")? {
            self.pin_first_seen_address = v;
        }
        // Vault token features keep does not implement: accepted only at their "off" values
        // (hvac always sends them), refused otherwise rather than silently ignored.
        for f in ["token_num_uses", "token_period", "token_explicit_max_ttl"] {
            if ttl(m, f)?.is_some_and(|v| v != 0) {
                return Err(RoleInputError(format!("{f} is not supported by keep")));
            }
        }
        match m.get("token_type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t))
                if matches!(t.as_str(), "" | "service" | "default" | "default-service") => {}
            Some(_) => {
                return Err(RoleInputError(
                    "token_type: keep issues service tokens only".into(),
                ));
            }
        }
        if self.token_max_ttl > 0 && self.token_ttl > self.token_max_ttl {
            return Err(RoleInputError(format!(
                "token_ttl ({}s) must not exceed token_max_ttl ({}s)",
                self.token_ttl, self.token_max_ttl
            )));
        }
        Ok(())
    }

    /// Whether the role constrains names at all. Vault lets an unconstrained role accept any
    /// certificate that chains to its CA; keep keeps that for client compatibility but warns.
    pub fn has_name_constraints(&self) -> bool {
        !(self.allowed_common_names.is_empty()
            && self.allowed_dns_sans.is_empty()
            && self.allowed_uri_sans.is_empty()
            && self.allowed_email_sans.is_empty()
            && self.allowed_organizational_units.is_empty())
    }

    /// The policies a token from this role gets (`default` added unless disabled).
    pub fn policies(&self) -> Vec<String> {
        let mut p: BTreeSet<String> = self.token_policies.iter().cloned().collect();
        if !self.token_no_default_policy {
            p.insert("default".into());
        }
        p.into_iter().collect()
    }
}

/// Parses `10.0.0.0/8`, `::1/128` or a bare address.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (
            a.trim().parse::<IpAddr>().ok()?,
            l.trim().parse::<u8>().ok()?,
        ),
        None => {
            let a = s.trim().parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// Whether `ip` lies in `cidr`.
pub fn cidr_contains(cidr: (IpAddr, u8), ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    match (cidr.0, ip) {
        (IpAddr::V4(net), IpAddr::V4(a)) => {
            let mask = if cidr.1 == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(cidr.1))
            };
            u32::from(net) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(a)) => {
            let mask = if cidr.1 == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(cidr.1))
            };
            u128::from(net) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Vault's glob for allowed names: `*` matches any run of characters (including none).
///
/// Works on bytes without allocating (it runs for every role on every login): `*` is ASCII, so
/// byte-wise matching of UTF-8 text gives the same answer as character-wise matching.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while vi < v.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Why a certificate does not match a role: the check that failed, safe to tell the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The cert does not chain through the role's CA.
    Chain,
    /// A name constraint failed; which one.
    Name(&'static str),
    /// A required extension is missing.
    Extension(String),
    /// The source address is outside `token_bound_cidrs`.
    Cidr,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Chain => {
                f.write_str("the client certificate does not chain to the role's CA certificate")
            }
            Mismatch::Name(which) => write!(
                f,
                "the client certificate does not match the role's {which}"
            ),
            Mismatch::Extension(e) => {
                write!(f, "the client certificate lacks the required extension {e}")
            }
            Mismatch::Cidr => {
                f.write_str("the source address is not in the role's token_bound_cidrs")
            }
        }
    }
}

/// A role prepared for fast matching.
#[derive(Clone, Debug)]
pub struct CompiledRole {
    /// Role name.
    pub name: String,
    /// The stored role.
    pub role: Role,
    /// The role's CA certificates as signature checks see them (name and key): a client
    /// matches when one of them is in its **verified** path (`PeerIdentity::issuers`). `None`:
    /// the role has no `certificate` (any CA the listener trusts). `Some` of an empty list (a
    /// stored certificate that no longer parses) matches nothing: fail closed.
    ca_keys: Option<Vec<CaKey>>,
    cidrs: Vec<(IpAddr, u8)>,
}

impl CompiledRole {
    /// Precomputes what matching needs.
    pub fn new(name: &str, role: Role) -> CompiledRole {
        let ca_keys = (!role.certificate.trim().is_empty()).then(|| {
            keep_pki::pem::read_certificates(
                role.certificate.as_bytes(),
                &keep_pki::pem::Source::Field("certificate".into()),
            )
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| CaKey::of_certificate(&b.der).ok())
                    .collect()
            })
            .unwrap_or_default()
        });
        let cidrs = role
            .token_bound_cidrs
            .iter()
            .filter_map(|c| parse_cidr(c))
            .collect();
        CompiledRole {
            name: name.to_owned(),
            role,
            ca_keys,
            cidrs,
        }
    }

    /// The CAs this role is bound to (`None`: any CA the listener trusts), for indexing roles
    /// by CA; matching itself goes through [`matches`](Self::matches).
    pub fn ca_keys(&self) -> Option<&[CaKey]> {
        self.ca_keys.as_deref()
    }

    /// Whether `peer` (verified by the listener) connecting from `addr` matches this role.
    /// Pure: no I/O, no parsing, no signature check (the listener built the verified path once
    /// per connection).
    pub fn matches(&self, peer: &PeerIdentity, addr: Option<IpAddr>) -> Result<(), Mismatch> {
        self.matches_certificate(peer)?;
        self.address_allowed(addr)
    }

    /// Whether `addr` is inside `token_bound_cidrs` (always, when the role sets none).
    pub fn address_allowed(&self, addr: Option<IpAddr>) -> Result<(), Mismatch> {
        if !self.cidrs.is_empty() {
            let ok = addr.is_some_and(|a| self.cidrs.iter().any(|c| cidr_contains(*c, a)));
            if !ok {
                return Err(Mismatch::Cidr);
            }
        }
        Ok(())
    }

    /// Every check of [`matches_with`](Self::matches_with) but the source address: chain,
    /// names, extensions. (Tells a certificate used from the wrong place from a wrong one.)
    pub fn matches_certificate(&self, peer: &PeerIdentity) -> Result<(), Mismatch> {
        self.chain_matches(peer)?;
        let r = &self.role;
        let any = |patterns: &[String], values: &[String]| {
            patterns
                .iter()
                .any(|p| values.iter().any(|v| glob_match(p, v)))
        };
        if !r.allowed_common_names.is_empty()
            && !peer
                .common_name
                .as_deref()
                .is_some_and(|cn| r.allowed_common_names.iter().any(|p| glob_match(p, cn)))
        {
            return Err(Mismatch::Name("allowed_common_names"));
        }
        if !r.allowed_dns_sans.is_empty() && !any(&r.allowed_dns_sans, &peer.dns_sans) {
            return Err(Mismatch::Name("allowed_dns_sans"));
        }
        if !r.allowed_uri_sans.is_empty() && !any(&r.allowed_uri_sans, &peer.uri_sans) {
            return Err(Mismatch::Name("allowed_uri_sans"));
        }
        if !r.allowed_email_sans.is_empty() && !any(&r.allowed_email_sans, &peer.email_sans) {
            return Err(Mismatch::Name("allowed_email_sans"));
        }
        if !r.allowed_organizational_units.is_empty()
            && !any(&r.allowed_organizational_units, &peer.organizational_units)
        {
            return Err(Mismatch::Name("allowed_organizational_units"));
        }
        for ext in &r.required_extensions {
            if !has_extension(peer, ext) {
                return Err(Mismatch::Extension(ext.clone()));
            }
        }
        Ok(())
    }

    /// The role's CA binding, read from the **verified** path only: one of the role's CAs
    /// (same name and key) is the leaf's issuer, an intermediate above it, or the trust anchor.
    /// Never from the certificates a client chose to append (that was an authentication
    /// bypass: a leaf of a second intermediate with the role's CA appended matched).
    fn chain_matches(&self, peer: &PeerIdentity) -> Result<(), Mismatch> {
        match &self.ca_keys {
            None => Ok(()),
            Some(keys) if peer.issuers.iter().any(|i| keys.contains(i)) => Ok(()),
            Some(_) => Err(Mismatch::Chain),
        }
    }
}

/// `oid:value` (value `*` = any) against the leaf's extensions.
fn has_extension(peer: &PeerIdentity, spec: &str) -> bool {
    let Some((oid, want)) = spec.split_once(':') else {
        return false;
    };
    let Some(leaf) = peer.chain.first() else {
        return false;
    };
    let Ok((_, x)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return false;
    };
    x.extensions().iter().any(|e| {
        e.oid.to_id_string() == oid.trim()
            && (want.trim() == "*"
                || std::str::from_utf8(e.value).is_ok_and(|v| v.contains(want.trim())))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn vault_input_forms_are_accepted() {
        let mut r = Role::default();
        r.apply(&obj(json!({
            "allowed_common_names": "agent-*, ops",
            "token_policies": ["agents", "default"],
            "token_ttl": "1h",
            "token_max_ttl": 7200,
            "token_bound_cidrs": "",
            "allowed_dns_sans": "",
        })))
        .unwrap();
        assert_eq!(r.allowed_common_names, vec!["agent-*", "ops"]);
        assert_eq!(r.token_ttl, 3600);
        assert_eq!(r.token_max_ttl, 7200);
        assert!(r.token_bound_cidrs.is_empty());
        // hvac sends 0 for "use the default".
        r.apply(&obj(json!({"token_ttl": 0, "policies": "a,b"})))
            .unwrap();
        assert_eq!(r.token_ttl, 0);
        assert_eq!(r.token_policies, vec!["a", "b"]);
        assert!(r.apply(&obj(json!({"bogus": 1}))).is_err());
        assert!(
            r.apply(&obj(json!({"token_bound_cidrs": "10.0.0.0/33"})))
                .is_err()
        );
        assert!(
            r.apply(&obj(json!({"token_ttl": 100, "token_max_ttl": 10})))
                .is_err()
        );
    }

    #[test]
    fn pin_first_seen_address_round_trips_and_defaults_off() {
        let mut r = Role::default();
        assert!(!r.pin_first_seen_address);
        r.apply(&obj(json!({"pin_first_seen_address": true})))
            .unwrap();
        assert!(r.pin_first_seen_address);
        r.apply(&obj(json!({"pin_first_seen_address": "false"})))
            .unwrap();
        assert!(!r.pin_first_seen_address);
        assert_eq!(
            r.apply(&obj(json!({"pin_first_seen_address": "maybe"}))),
            Err(RoleInputError(
                "pin_first_seen_address must be true or false".into()
            ))
        );
        // Go's ParseBool spellings, as Vault reads them.
        r.apply(&obj(json!({"pin_first_seen_address": "T"})))
            .unwrap();
        assert!(r.pin_first_seen_address);
        r.apply(&obj(json!({"pin_first_seen_address": "FALSE"})))
            .unwrap();
        assert!(!r.pin_first_seen_address);
        // A role stored before the field existed still loads, with pinning off.
        let mut stored = serde_json::to_value(Role::default()).unwrap();
        stored
            .as_object_mut()
            .unwrap()
            .remove("pin_first_seen_address");
        let old: Role = serde_json::from_value(stored).unwrap();
        assert!(!old.pin_first_seen_address);
    }

    /// The CA binding reads the verified path only (issue: a leaf of a second intermediate
    /// with the role's intermediate appended logged in). Role bound to intermediate A; only
    /// leaves that A really signed match, whatever else the client appends.
    #[test]
    fn ca_binding_holds_only_for_leaves_the_role_ca_signed() {
        use keep_test_support::{INTERMEDIATE_CN, LeafSpec, TestPki};
        use keep_tls::identity::ClientTrust;
        use rustls_pki_types::{CertificateDer, UnixTime};
        use time::{Duration, OffsetDateTime};

        let pki = TestPki::new();
        let now = OffsetDateTime::now_utc();
        let a = &pki.intermediate;
        let b = pki.issue_intermediate(
            "Keep Test Second Intermediate",
            now - Duration::days(1),
            now + Duration::days(365),
        );
        // Same subject DN as A, another key, also under the root.
        let fake_a = pki.issue_intermediate(
            INTERMEDIATE_CN,
            now - Duration::days(1),
            now + Duration::days(365),
        );
        let leaf_a = a.issue(&LeafSpec::agent("a2"));
        let leaf_b = b.issue(&LeafSpec::agent("a2"));
        let leaf_f = fake_a.issue(&LeafSpec::agent("a2"));

        let trust =
            ClientTrust::from_ca_certificates(&[CertificateDer::from(pki.root.der.clone())])
                .unwrap();
        let role = CompiledRole::new(
            "agents",
            Role {
                certificate: a.cert_pem.clone(),
                allowed_common_names: vec!["a2".into()],
                ..Role::default()
            },
        );
        let root_role = CompiledRole::new(
            "everyone",
            Role {
                certificate: pki.root.cert_pem.clone(),
                ..Role::default()
            },
        );
        let der = |d: &[u8]| CertificateDer::from(d.to_vec());
        let cases: [(&str, Vec<CertificateDer<'static>>, bool); 6] = [
            ("leaf from A", vec![der(&leaf_a.der), der(&a.der)], true),
            (
                "leaf from A, B appended",
                vec![der(&leaf_a.der), der(&a.der), der(&b.der)],
                true,
            ),
            ("leaf from B", vec![der(&leaf_b.der), der(&b.der)], false),
            (
                "leaf from B, A appended",
                vec![der(&leaf_b.der), der(&b.der), der(&a.der)],
                false,
            ),
            (
                "leaf from B, A before B",
                vec![der(&leaf_b.der), der(&a.der), der(&b.der)],
                false,
            ),
            (
                "leaf from a CA named like A (other key), A appended",
                vec![der(&leaf_f.der), der(&fake_a.der), der(&a.der)],
                false,
            ),
        ];
        for (what, chain, want) in cases {
            // Every chain verifies to the root: the listener accepts all of them.
            let peer = trust.identify(&chain, UnixTime::now()).unwrap();
            assert_eq!(role.matches(&peer, None).is_ok(), want, "{what}");
            if !want {
                assert_eq!(role.matches(&peer, None), Err(Mismatch::Chain), "{what}");
            }
            // The root is the anchor of every path: a role bound to it takes them all.
            assert!(root_role.matches(&peer, None).is_ok(), "{what} (root role)");
            // Appended certificates are not part of the identity's chain.
            assert!(
                peer.chain.len() <= 2,
                "{what}: {} certificates in the path",
                peer.chain.len()
            );
        }
        // A role whose stored certificate no longer parses matches nothing (fail closed).
        let broken = CompiledRole::new(
            "broken",
            Role {
                certificate: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
                    .into(),
                ..Role::default()
            },
        );
        let peer = trust
            .identify(&[der(&leaf_a.der), der(&a.der)], UnixTime::now())
            .unwrap();
        assert_eq!(broken.matches(&peer, None), Err(Mismatch::Chain));
    }

    #[test]
    fn globs_and_cidrs() {
        assert!(glob_match("agent-*", "agent-01"));
        assert!(!glob_match("agent-*", "xagent-01"));
        assert!(glob_match("*.claw.internal", "a.claw.internal"));
        assert!(glob_match(
            "spiffe://claw.internal/agent/*",
            "spiffe://claw.internal/agent/a1"
        ));
        assert!(!glob_match("ops", "ops2"));
        let c = parse_cidr("10.1.0.0/16").unwrap();
        assert!(cidr_contains(c, "10.1.2.3".parse().unwrap()));
        assert!(!cidr_contains(c, "10.2.0.1".parse().unwrap()));
        assert!(cidr_contains(
            parse_cidr("127.0.0.1").unwrap(),
            "::ffff:127.0.0.1".parse().unwrap()
        ));
    }
}
