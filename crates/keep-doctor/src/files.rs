//! File checks shared by the agent and server diagnoses: exists and readable (with a "did you
//! mean" for a mis-copied path), private-file modes, and whether a path can be written.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::report::Check;

/// Checks that `path` (named by config field `field`) is a readable regular file.
///
/// A missing file fails naming the field and the path, and suggests the nearest existing file
/// in the same directory: a path copied with one typo (`root_ca.crt` for `root-ca.crt`) is the
/// most common way this breaks.
pub fn readable(id: &str, field: &str, path: &Path) -> Check {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Check::fail(
            id,
            field,
            format!("{shown} is a directory, not a file"),
            format!("point `{field}` at the file inside it"),
        ),
        Ok(_) => match std::fs::File::open(path) {
            Ok(_) => Check::ok(id, field, format!("{shown} is readable")),
            Err(e) => Check::fail(
                id,
                field,
                format!("{shown} cannot be read: {}", io_words(&e)),
                format!(
                    "let the user keep runs as read it (e.g. chown that user {shown}; keep the mode 0600 for keys)"
                ),
            ),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let fix = if !dir.as_os_str().is_empty() && !dir.is_dir() {
                format!(
                    "the directory {} does not exist either; check the path in `{field}` (and the volume mount, in a container)",
                    dir.display()
                )
            } else {
                match nearest(path) {
                    Some(n) => format!(
                        "did you mean {}? (the closest name in that directory); correct `{field}`",
                        n.display()
                    ),
                    None => format!(
                        "check the path in `{field}`; nothing with a similar name is in {}",
                        dir.display()
                    ),
                }
            };
            Check::fail(id, field, format!("{shown} does not exist"), fix)
        }
        Err(e) => Check::fail(
            id,
            field,
            format!("{shown} cannot be read: {}", io_words(&e)),
            format!("check the path in `{field}` and the permissions of its directories"),
        ),
    }
}

/// An I/O error in a few words, without the `(os error 2)` noise.
pub fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => "no such file".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_owned(),
                None => s,
            }
        }
    }
}

/// The file in `path`'s directory whose name is closest to `path`'s (edit distance), if one is
/// close enough to be a plausible typo: at most half the name's length apart.
pub fn nearest(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut best: Option<(usize, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let candidate = entry.file_name().to_string_lossy().into_owned();
        let d = edit_distance(&name, &candidate);
        let limit = name.chars().count().max(candidate.chars().count()) / 2;
        if d <= limit && best.as_ref().is_none_or(|(b, _)| d < *b) {
            best = Some((d, dir.join(candidate)));
        }
    }
    best.map(|(_, p)| p)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Checks that a file holding a key or password is not readable by group or others.
/// `accepted` is true when the config opted out (`danger_allow_insecure_key_file_mode`): the
/// problem is then a warning, not a failure.
pub fn private_mode(id: &str, field: &str, path: &Path, accepted: bool) -> Check {
    let shown = path.display();
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o777,
        Err(e) => {
            return Check::skip(
                id,
                field,
                format!("{shown} cannot be read: {}", io_words(&e)),
            );
        }
    };
    if mode & 0o077 == 0 {
        return Check::ok(
            id,
            field,
            format!("{shown} has mode {mode:04o} (owner only)"),
        );
    }
    let detail = format!(
        "{shown} has mode {mode:04o}: readable by group or others, who may already have copied it"
    );
    let fix = format!("chmod 600 {shown}");
    if accepted {
        Check::warn(
            id,
            field,
            format!("{detail} (accepted because danger_allow_insecure_key_file_mode is true)"),
            fix,
        )
    } else {
        Check::fail(id, field, detail, fix)
    }
}

#[cfg(feature = "server")]
/// Whether the file `path` can be written, or created in its directory; never changes the
/// file. An existing file is opened for appending (nothing is written); for a missing one, a
/// temporary file is created in the directory and removed at once.
pub fn writable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(format!("{} is a directory", path.display())),
        Ok(_) => {
            return std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map(drop)
                .map_err(|e| {
                    format!(
                        "{} cannot be opened for writing: {}",
                        path.display(),
                        io_words(&e)
                    )
                });
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) if e.kind() == ErrorKind::NotADirectory => return Err(under_a_file(path)),
        Err(e) => {
            return Err(format!(
                "{} cannot be reached: {}",
                path.display(),
                io_words(&e)
            ));
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    writable_dir(dir)
}

#[cfg(feature = "server")]
/// Whether files can be created in `dir` (a temporary file is created and removed).
pub fn writable_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "{} is not a directory, so nothing can be created in it",
                dir.display()
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotADirectory => return Err(under_a_file(dir)),
        Err(e) => {
            return Err(format!(
                "the directory {} cannot be reached: {}",
                dir.display(),
                io_words(&e)
            ));
        }
    }
    tempfile::Builder::new()
        .prefix(".keep-doctor-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("cannot create files in {}: {}", dir.display(), io_words(&e)))
}

#[cfg(feature = "server")]
/// The message for a path below a regular file (`/etc/passwd/audit.log`).
fn under_a_file(path: &Path) -> String {
    match path.ancestors().skip(1).find(|a| a.is_file()) {
        Some(file) => format!(
            "{} is below {}, which is a file, not a directory",
            path.display(),
            file.display()
        ),
        None => format!("{}: a part of the path is not a directory", path.display()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn a_missing_file_names_the_field_and_suggests_the_nearest_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.crt"), "x").unwrap();
        std::fs::write(dir.path().join("agent.key"), "x").unwrap();
        let c = readable("t", "ca_cert_file", &dir.path().join("root_ca.crt"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("root_ca.crt does not exist"), "{c:?}");
        let fix = c.fix.unwrap();
        assert!(
            fix.contains("root.crt") && fix.contains("ca_cert_file"),
            "{fix}"
        );
        let c = readable("t", "ca_cert_file", &dir.path().join("zzzzzzzzzz.pem"));
        assert!(!c.fix.unwrap().contains("did you mean"));
        let c = readable("t", "ca_cert_file", &dir.path().join("nope/root.crt"));
        assert!(c.fix.unwrap().contains("does not exist either"));
        assert_eq!(
            readable("t", "f", &dir.path().join("root.crt")).status,
            Status::Ok
        );
    }

    #[test]
    fn modes_open_to_others_fail_with_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = private_mode("t", "key_file", &key, false);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("0644") && c.fix.unwrap().starts_with("chmod 600 "));
        assert_eq!(
            private_mode("t", "key_file", &key, true).status,
            Status::Warn
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            private_mode("t", "key_file", &key, false).status,
            Status::Ok
        );
    }

    #[test]
    fn writability_fails_under_a_regular_file_even_for_root() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let e = writable(&file.join("audit.log")).unwrap_err();
        assert!(e.contains("which is a file, not a directory"), "{e}");
        writable(&dir.path().join("audit.log")).unwrap();
        writable(&file).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("root_ca.crt", "root.crt"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
