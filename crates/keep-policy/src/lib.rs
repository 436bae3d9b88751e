//! keep's ACL policies: Vault's HCL policy language, templated from the caller's
//! certificate, evaluated as a pure function that denies by default.
//!
//! ```
//! use keep_policy::{Capability, Policy, TemplateContext, evaluate};
//!
//! let agents = Policy::parse(
//!     "agents",
//!     r#"path "secret/data/agents/{{cert.common_name}}/*" { capabilities = ["read"] }"#,
//! )?;
//! let ctx = TemplateContext { common_name: Some("agent-a"), ..TemplateContext::default() };
//!
//! assert!(evaluate(&[&agents], &ctx, "secret/data/agents/agent-a/llm", Capability::Read).is_allowed());
//! assert!(!evaluate(&[&agents], &ctx, "secret/data/agents/agent-b/llm", Capability::Read).is_allowed());
//! # Ok::<(), keep_policy::PolicyError>(())
//! ```
//!
//! - [`Policy::parse`] reads Vault's syntax (`path "…" { capabilities = [...] }`, the old
//!   `policy = "read"` shorthand) and its JSON form (`{"path": {"…": {"capabilities": [...]}}}`,
//!   what hvac sends for a dict), merges duplicate `path` blocks as Vault does, and refuses
//!   what it does not know or does not enforce, with the line.
//! - [`evaluate`] and [`capabilities`] apply Vault's globs (`*` suffix, `+` segment) and its
//!   priority order between matching patterns, union capabilities per pattern across
//!   policies, and let `deny` win on the rule it is on.
//! - [`TemplateContext`] carries the verified certificate fields that `{{cert.…}}` templates
//!   render; a missing or dangerous value drops the rule instead of widening it.
//! - [`Policy::default_policy`], [`validate_name`] and [`is_deletable`] are the fixed rules
//!   the API needs.
//!
//! Nothing here does I/O or knows about HTTP or storage: policies are values, decisions are
//! functions of them, and every rule kind has a paired allow and deny test.
//!
//! # Which rule wins
//!
//! As in Vault (`vault/acl.go`; "Priority matching" in
//! <https://developer.hashicorp.com/vault/docs/concepts/policies#priority-matching>), the
//! rules of all the caller's policies are merged by pattern (capabilities unioned; `deny` on a
//! pattern in any policy leaves only `deny`), and then exactly one pattern decides a path:
//!
//! 1. an exact pattern (no `*`, no `+` segment) equal to the path;
//! 2. otherwise, among the longest matching `*`-prefix pattern and all matching `+` patterns,
//!    the highest by these criteria, in order: the first `+` or `*` occurs *later*; does
//!    *not* end in `*`; *fewer* `+` segments; *longer* (without the `*`); lexicographically
//!    *larger*.
//!
//! So a more specific pattern in one policy replaces a broader grant from another (Vault's
//! behaviour too), and `deny` wins on the pattern it is written on.
//!
//! # Where keep is stricter than Vault
//!
//! Each is an error or a denial that says why, never a silent difference:
//!
//! - `allowed_parameters`, `denied_parameters`, `required_parameters`, `min_wrapping_ttl`,
//!   `max_wrapping_ttl`, `mfa_methods`, `control_group`, `subscribe_event_types` and the
//!   `subscribe`/`recover` capabilities are refused as "not supported by keep yet": ignoring
//!   a setting that narrows access would grant more than its author meant.
//! - `*` anywhere but at the end of a pattern is refused (Vault reads it as a literal `*`,
//!   which silently grants nothing); so are empty patterns and `{{…}}` names other than
//!   `cert.common_name`, `cert.dns_san`, `cert.uri_san`, `cert.serial`.
//! - A request path with a `..` segment is denied whatever the policies say.
//! - A templated `deny` rule that cannot be rendered for the caller denies every path it
//!   could match; Vault skips it, turning a deny into an allow.

#![forbid(unsafe_code)]

mod builtin;
mod capability;
mod error;
mod eval;
mod glob;
mod json;
mod parse;
mod template;

pub use builtin::{
    DEFAULT_POLICY_HCL, DEFAULT_POLICY_NAME, MAX_NAME_LEN, ROOT_POLICY_NAME, is_deletable,
    validate_name,
};
pub use capability::Capability;
pub use error::{PolicyError, Position};
pub use eval::{Decision, capabilities, evaluate};
pub use parse::{PathRule, Policy};
pub use template::TemplateContext;
