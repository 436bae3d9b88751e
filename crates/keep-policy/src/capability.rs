//! The capabilities a path rule can grant, spelled as Vault spells them.

use std::fmt;

/// One of Vault's ACL capabilities.
///
/// keep supports exactly the capabilities of Vault's open-source ACL policies
/// (`create read update patch delete list sudo deny`). Vault's newer `subscribe` and `recover`
/// are refused at parse time rather than ignored, so a policy never means less (or more)
/// here than its author thought.
///
/// The derived order is only used to keep [`std::collections::BTreeSet`]s of capabilities
/// stable; it carries no meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// `create`: write to a path that does not exist yet (Vault's create operation).
    Create,
    /// `read`: read the data at a path.
    Read,
    /// `update`: change the data at an existing path (also renew/revoke style operations).
    Update,
    /// `patch`: partially update the data at a path (KV v2 `PATCH`).
    Patch,
    /// `delete`: delete the data at a path.
    Delete,
    /// `list`: list the keys under a path.
    List,
    /// `sudo`: access paths that Vault marks as root-protected, in addition to the operation's
    /// own capability.
    Sudo,
    /// `deny`: grants nothing and overrides every other capability on the same rule.
    Deny,
}

impl Capability {
    /// Every capability, in the order [`Capability::as_str`] names them in error messages.
    pub const ALL: [Capability; 8] = [
        Capability::Create,
        Capability::Read,
        Capability::Update,
        Capability::Patch,
        Capability::Delete,
        Capability::List,
        Capability::Sudo,
        Capability::Deny,
    ];

    /// The capability's name in HCL and in Vault's API (`"read"`, `"sudo"` …).
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sudo => "sudo",
            Capability::Deny => "deny",
        }
    }

    /// Parses a capability name exactly as Vault does: lowercase only, no aliases.
    ///
    /// Returns `None` for anything else, including Vault capabilities keep does not support
    /// (`subscribe`, `recover`, `root`); the policy parser turns that into an error naming it.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_other_spellings() {
        for cap in Capability::ALL {
            assert_eq!(Capability::from_name(cap.as_str()), Some(cap));
            assert_eq!(cap.to_string(), cap.as_str());
        }
        for bad in [
            "Read",
            "READ",
            "write",
            "subscribe",
            "recover",
            "root",
            "",
            " read",
        ] {
            assert_eq!(Capability::from_name(bad), None, "{bad:?}");
        }
    }
}
