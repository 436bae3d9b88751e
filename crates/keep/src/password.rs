//! Passwords come from a file or from a prompt on a terminal, never from a flag value (flag
//! values end up in shell history and in `ps` output).

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use crate::exit::usage;

/// Reads a password file (trailing newline ignored).
pub fn from_file(path: &Path, what: &str) -> anyhow::Result<SecretString> {
    keep_pki::key::read_password_file(path).map_err(|e| {
        usage(format!(
            "cannot read the {what} from {}: {e}",
            path.display()
        ))
    })
}

/// Whether we may prompt: both stdin and stderr are terminals.
fn can_prompt() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Gets a new password (for encrypting a key): from `file`, else by prompting twice.
pub fn new_password(file: Option<&Path>, what: &str, flag: &str) -> anyhow::Result<SecretString> {
    if let Some(f) = file {
        return from_file(f, what);
    }
    if !can_prompt() {
        return Err(usage(format!(
            "the {what} needs a password and there is no terminal to ask on; give {flag} \
             FILE (or --no-password --insecure for an unencrypted key)"
        )));
    }
    let first = SecretString::from(
        rpassword::prompt_password(format!("Please enter the password to encrypt the {what}: "))
            .context("cannot read the password")?,
    );
    if first.expose_secret().is_empty() {
        return Err(usage("the password must not be empty"));
    }
    let second = SecretString::from(
        rpassword::prompt_password("Please confirm the password: ")
            .context("cannot read the password")?,
    );
    if first.expose_secret() != second.expose_secret() {
        return Err(usage("the passwords do not match"));
    }
    Ok(first)
}

/// Gets the password of an existing key: from `file`, else by prompting once.
pub fn existing_password(
    file: Option<&Path>,
    what: &str,
    flag: &str,
) -> anyhow::Result<SecretString> {
    if let Some(f) = file {
        return from_file(f, what);
    }
    if !can_prompt() {
        return Err(usage(format!(
            "the {what} is encrypted and there is no terminal to ask for its password; give \
             {flag} FILE"
        )));
    }
    Ok(SecretString::from(
        rpassword::prompt_password(format!("Please enter the password to decrypt the {what}: "))
            .context("cannot read the password")?,
    ))
}

/// Loads a private key, asking for its password only when it is encrypted.
pub fn load_key(
    path: &str,
    password_file: Option<&Path>,
    what: &str,
    flag: &str,
) -> anyhow::Result<keep_pki::PrivateKey> {
    let (bytes, source) = crate::files::read_input(path)?;
    let bytes = zeroize::Zeroizing::new(bytes);
    let encrypted = keep_pki::key::is_encrypted(&bytes, &source)?;
    let pw = if encrypted {
        Some(existing_password(password_file, what, flag)?)
    } else {
        None
    };
    Ok(keep_pki::key::load_private_key(
        &bytes,
        &source,
        pw.as_ref(),
    )?)
}
