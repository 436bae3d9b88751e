//! Reading inputs and writing outputs safely.
//!
//! Outputs are written atomically (temp file in the same directory, fsync, rename) so a crash
//! never leaves half a key behind, key files are created 0600 from the start (never chmod'ed
//! after the fact), and nothing is overwritten without `--force`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use keep_pki::pem::Source;

use crate::exit::usage;

/// Who may read a file we write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Private key material: owner read/write only.
    Secret,
    /// Certificates and CSRs: world-readable.
    Public,
}

/// Reads a file, or standard input for `-`, naming it in errors.
pub fn read_input(path: &str) -> anyhow::Result<(Vec<u8>, Source)> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
        return Ok((buf, Source::Stdin));
    }
    let p = PathBuf::from(path);
    let bytes = std::fs::read(&p).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "; check the path (relative paths start from the current directory)"
            }
            std::io::ErrorKind::PermissionDenied => "; check the file's owner and mode",
            _ => "",
        };
        usage(format!("cannot read {}: {e}{hint}", p.display()))
    })?;
    Ok((bytes, Source::File(p)))
}

/// Fails early, before any work, when an output exists and `--force` was not given.
pub fn check_writable(paths: &[&Path], force: bool) -> anyhow::Result<()> {
    for p in paths {
        if !force && p.exists() {
            return Err(usage(format!(
                "{} already exists; keep never overwrites a file without --force",
                p.display()
            )));
        }
        let dir = parent_dir(p);
        if !dir.is_dir() {
            return Err(usage(format!(
                "cannot write {}: directory {} does not exist",
                p.display(),
                dir.display()
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        if !seen.insert(p.to_path_buf()) {
            return Err(usage(format!(
                "{} is given twice as an output file",
                p.display()
            )));
        }
    }
    Ok(())
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `data` to `path` atomically with the given mode.
pub fn write_atomic(path: &Path, data: &[u8], mode: Mode, force: bool) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    // tempfile creates the file 0600, so secret bytes are never readable by others, not even
    // for a moment.
    let mut tmp = tempfile::Builder::new()
        .prefix(".keep-tmp-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if mode == Mode::Public {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot flush {}", path.display()))?;
    if force {
        tmp.persist(path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                usage(format!(
                    "{} already exists; keep never overwrites a file without --force",
                    path.display()
                ))
            } else {
                anyhow::anyhow!("cannot write {}: {}", path.display(), e.error)
            }
        })?;
    }
    // Make the rename durable too.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
