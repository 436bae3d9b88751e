//! The built-in `default` policy and the rules for policy names.
//!
//! keep has no `root` policy and no root token: break-glass operators are certificate
//! identities that the server recognises itself (the `admins` list in its config), so nothing
//! in this crate can express "everything". The name `root` is reserved all the same, so a
//! policy called `root` can never be mistaken for Vault's.

use crate::error::PolicyError;
use crate::parse::Policy;

/// The name of the built-in policy every token carries unless told otherwise, as in Vault.
pub const DEFAULT_POLICY_NAME: &str = "default";

/// Reserved, as in Vault; keep never creates a policy with this name.
pub const ROOT_POLICY_NAME: &str = "root";

/// The longest policy name accepted. Vault sets no limit; names end up in storage keys,
/// token metadata and every audit line, so keep caps them.
pub const MAX_NAME_LEN: usize = 128;

/// The `default` policy: token self-management only, the subset of Vault's `default` policy
/// that keep's API implements. It grants no secret at all.
pub const DEFAULT_POLICY_HCL: &str = r#"# keep's built-in "default" policy: a token may manage itself and use response wrapping, nothing more.

# Allow tokens to look up their own properties.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# Allow tokens to renew themselves.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# Allow tokens to revoke themselves.
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token.
path "sys/wrapping/wrap" {
  capabilities = ["update"]
}

# Allow a token to look up response-wrapping properties.
path "sys/wrapping/lookup" {
  capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token (as a third party, with the wrapping
# token in the body).
path "sys/wrapping/unwrap" {
  capabilities = ["update"]
}
"#;

impl Policy {
    /// The built-in [`DEFAULT_POLICY_HCL`] as a policy named [`DEFAULT_POLICY_NAME`].
    ///
    /// Operators may replace `default` through the API (as in Vault); the server then uses
    /// the stored one instead of this.
    pub fn default_policy() -> Policy {
        // DEFAULT_POLICY_HCL is a constant that the `default_policy_parses` test parses on
        // every run. Should that ever break, fall back to a policy with no rules: deny
        // everything rather than panic in a request path.
        Policy::parse(DEFAULT_POLICY_NAME, DEFAULT_POLICY_HCL)
            .unwrap_or_else(|_| Policy::empty(DEFAULT_POLICY_NAME, DEFAULT_POLICY_HCL))
    }
}

/// Checks a policy name for the API (`PUT /v1/sys/policies/acl/:name`).
///
/// Allowed: 1 to [`MAX_NAME_LEN`] characters from lowercase ASCII letters, digits, `-`, `_`
/// and `.`, starting with a letter or digit (so no `.`/`..` or hidden-file-like names reach
/// storage keys). `root` is reserved. `default` is a valid name: it may be updated.
///
/// Vault lowercases names on write; a server that wants that compatibility lowercases before
/// calling this.
///
/// # Errors
///
/// [`PolicyError::InvalidName`] naming the rule the name breaks.
pub fn validate_name(name: &str) -> Result<(), PolicyError> {
    let fail = |reason| {
        Err(PolicyError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("a policy name cannot be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail("a policy name is at most 128 characters");
    }
    if name == ROOT_POLICY_NAME {
        return fail(
            "`root` is reserved (keep has no root policy; admins are certificate identities in the server config)",
        );
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
    {
        return fail("use only lowercase letters, digits, `-`, `_` and `.`");
    }
    if !name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return fail("a policy name starts with a letter or a digit");
    }
    Ok(())
}

/// Whether the API may delete the policy `name`: not `default` (tokens rely on it; it may
/// only be updated, as in Vault) and not the reserved `root`.
pub fn is_deletable(name: &str) -> bool {
    name != DEFAULT_POLICY_NAME && name != ROOT_POLICY_NAME
}
