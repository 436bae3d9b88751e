//! File sinks: where fetched secrets land on disk.
//!
//! A file is replaced atomically, the way Vault agent's file sink does it
//! (`command/agentproxyshared/sink/file/file_sink.go`) but stricter: a temp file in the same
//! directory (so the rename never crosses file systems), write, chmod/chown **before** the
//! rename (a reader never sees the secret with loose permissions or the wrong owner), fsync,
//! rename, fsync the directory (so the rename itself survives a crash). A reader therefore
//! sees the old file or the new one, never half of one.
//!
//! [`check_writable`] runs before anything is fetched, so a bad destination fails the agent
//! before a secret is in memory. It also warns when the directory is not memory-backed
//! (tmpfs/ramfs): secrets on a disk outlive the pod and end up in backups and snapshots.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// What a secret file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The secret's key/value map as a JSON object.
    Json,
    /// `NAME='value'` lines, single-quoted for `sh` (`. file` or `set -a; . file`). With
    /// `names` (the entry's `env:` map, variable → key) only those, renamed; without, every
    /// key under its own name.
    Env {
        /// Variable name → secret key.
        names: BTreeMap<String, String>,
    },
    /// One key's value, as is (no trailing newline added).
    Value {
        /// The key.
        key: String,
    },
    /// Text with `{{ .key }}` (or `{{key}}`) replaced by that key's value. Plain substitution:
    /// no functions, pipelines or escaping.
    Template {
        /// The template text.
        text: String,
    },
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    /// The file.
    pub path: PathBuf,
    /// What goes in it.
    pub format: Format,
    /// Its permission bits (default 0400).
    pub mode: u32,
    /// Its owner's uid, when set (needs root).
    pub owner: Option<u32>,
}

/// A sink that cannot be prepared or written. Messages name the file and never contain a
/// secret value.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "cannot create directory".
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The secret does not fit the format (a missing key, a name that is no variable name).
    #[error("{}: {problem}", path.display())]
    Render {
        /// The file it was meant for.
        path: PathBuf,
        /// What is wrong (names keys, never values).
        problem: String,
    },
    /// The destination cannot be used as configured.
    #[error("{}: {problem}", path.display())]
    Unusable {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong and the fix.
        problem: String,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SinkError + 'a {
    move |source| SinkError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

impl FileSink {
    /// The directory the file goes into.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// Checks the destination before anything is fetched: the directory exists or can be
    /// created (0700), a file can be created in it, and `owner` can be applied. Returns
    /// warnings (also logged), e.g. that the directory is not memory-backed.
    pub fn check(&self) -> Result<Vec<String>, SinkError> {
        self.check_target()?;
        check_writable(self.dir())
    }

    /// The checks of [`FileSink::check`] that do not touch the directory.
    fn check_target(&self) -> Result<(), SinkError> {
        if self.owner.is_some() && !running_as_root() {
            return Err(SinkError::Unusable {
                path: self.path.clone(),
                problem: "`owner` needs root (only root can give a file away); run the agent as root or remove `owner`".into(),
            });
        }
        if self.path.is_dir() {
            return Err(SinkError::Unusable {
                path: self.path.clone(),
                problem: "is a directory; give the path of the file to write".into(),
            });
        }
        Ok(())
    }

    /// The file's contents for the secret `data` (its key/value map). Done for every sink
    /// before any is written, so a secret that does not fit leaves all files untouched.
    pub fn render(&self, data: &Map<String, Value>) -> Result<Zeroizing<Vec<u8>>, SinkError> {
        render(&self.format, data).map_err(|problem| SinkError::Render {
            path: self.path.clone(),
            problem,
        })
    }

    /// Atomically replaces the file with `contents`.
    pub fn write(&self, contents: &[u8]) -> Result<(), SinkError> {
        write_atomic(&self.path, contents, self.mode, self.owner)
    }
}

/// [`FileSink::check`] for several sinks, checking (and warning about) each directory once.
pub fn check_all<'a>(
    sinks: impl IntoIterator<Item = &'a FileSink>,
) -> Result<Vec<String>, SinkError> {
    let mut dirs: Vec<&Path> = Vec::new();
    let mut warnings = Vec::new();
    for sink in sinks {
        sink.check_target()?;
        let dir = sink.dir();
        if !dirs.contains(&dir) {
            dirs.push(dir);
            warnings.extend(check_writable(dir)?);
        }
    }
    Ok(warnings)
}

/// Makes sure files can be created in `dir`: creates it (mode 0700, parents too) if missing,
/// then creates and removes a probe file. Returns warnings, also logged with `tracing::warn!`:
/// a directory that is not memory-backed.
pub fn check_writable(dir: &Path) -> Result<Vec<String>, SinkError> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("cannot create directory", dir))?;
    } else if !dir.is_dir() {
        return Err(SinkError::Unusable {
            path: dir.to_owned(),
            problem: "is not a directory".into(),
        });
    }
    let probe = tempfile::Builder::new()
        .prefix(".keep-probe-")
        .tempfile_in(dir)
        .map_err(io("cannot create a file in", dir))?;
    probe
        .close()
        .map_err(io("cannot remove the probe file in", dir))?;
    let mut warnings = Vec::new();
    match filesystem_type(dir) {
        Some(fs) if is_memory_fs(&fs) => {}
        found => {
            let msg = format!(
                "{} is on {}, not tmpfs/ramfs: secrets written there reach the disk (and backups); use a memory-backed directory such as /run or a Kubernetes emptyDir with medium: Memory",
                dir.display(),
                found.as_deref().unwrap_or("an unknown file system")
            );
            tracing::warn!(dir = %dir.display(), "{msg}");
            warnings.push(msg);
        }
    }
    Ok(warnings)
}

fn is_memory_fs(fs: &str) -> bool {
    matches!(fs, "tmpfs" | "ramfs")
}

/// The file system type of `path` (e.g. `tmpfs`, `ext4`), from `/proc/self/mountinfo`: the
/// type of the deepest mount point containing the path. `None` when it cannot be told.
pub fn filesystem_type(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_type_in(&info, &path)
}

/// [`filesystem_type`] on given mountinfo text. Later lines win over earlier ones with the
/// same mount point (a mount on top hides the one below).
fn mount_type_in(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = unescape_mount(left.split(' ').nth(4)?);
        let fs_type = right.split(' ').next()?;
        let mp = Path::new(&mount_point);
        if path.starts_with(mp) {
            let depth = mp.components().count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, fs_type.to_owned()));
            }
        }
    }
    best.map(|(_, t)| t)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `contents` to `path` atomically with `mode` (and `owner`), see the module docs.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<u32>,
) -> Result<(), SinkError> {
    commit(stage(path, contents, mode, owner)?, path)
}

/// The first half of [`write_atomic`]: `contents` in a flushed temporary file next to `path`,
/// with `mode` (and `owner`) already applied, not yet visible under `path`. Two files that must
/// change together (a certificate and its key) are both staged before either is committed.
pub fn stage(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<u32>,
) -> Result<tempfile::NamedTempFile, SinkError> {
    let dir = parent_dir(path);
    // tempfile creates the file 0600 with O_EXCL, so nobody else can open it in between.
    let mut tmp = tempfile::Builder::new()
        .prefix(".keep-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io("cannot create a temporary file in", dir))?;
    tmp.write_all(contents)
        .map_err(io("cannot write", tmp.path()))?;
    // Permissions and owner before the rename: the file is never visible under its name with
    // anything else.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
        .map_err(io("cannot set the mode of", path))?;
    if let Some(uid) = owner {
        std::os::unix::fs::chown(tmp.path(), Some(uid), None)
            .map_err(io("cannot change the owner of", path))?;
    }
    tmp.as_file().sync_all().map_err(io("cannot flush", path))?;
    Ok(tmp)
}

/// The second half of [`write_atomic`]: renames a [`stage`]d file onto `path` and flushes the
/// directory. On failure the temporary file removes itself.
pub fn commit(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), SinkError> {
    tmp.persist(path).map_err(|e| SinkError::Io {
        what: "cannot rename the new file onto",
        path: path.to_owned(),
        source: e.error,
    })?;
    let dir = parent_dir(path);
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot flush directory", dir))?;
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Checks a template's syntax: every `{{` is closed and names a key.
pub fn check_template(text: &str) -> Result<(), String> {
    substitute(text, |_| Ok(String::new())).map(drop)
}

fn substitute(
    text: &str,
    mut value: impl FnMut(&str) -> Result<String, String>,
) -> Result<Zeroizing<String>, String> {
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or("a `{{` is not closed with `}}`; write e.g. {{ .api_key }}")?;
        let inner = after[..end].trim();
        let key = inner.strip_prefix('.').unwrap_or(inner);
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!(
                "`{{{{{inner}}}}}` is not a key reference; write {{{{ .key }}}} or {{{{key}}}} (plain substitution, no functions)"
            ));
        }
        out.push_str(&value(key)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value as text: strings as they are, anything else as JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn lookup<'a>(data: &'a Map<String, Value>, key: &str) -> Result<&'a Value, String> {
    data.get(key).ok_or_else(|| {
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        format!(
            "the secret has no key {key:?} (it has: {})",
            if keys.is_empty() {
                "none".to_owned()
            } else {
                keys.join(", ")
            }
        )
    })
}

/// `value` single-quoted for `sh`: nothing inside single quotes is special except `'`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Renders `data` in `format`. Errors name keys, never values.
pub fn render(format: &Format, data: &Map<String, Value>) -> Result<Zeroizing<Vec<u8>>, String> {
    let text: Zeroizing<String> = match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(data)
                .map_err(|e| format!("cannot encode as JSON: {e}"))?;
            s.push('\n');
            Zeroizing::new(s)
        }
        Format::Env { names } => {
            let pairs: Vec<(String, &Value)> = if names.is_empty() {
                let mut v = Vec::new();
                for (k, val) in data {
                    if !is_env_name(k) {
                        return Err(format!(
                            "key {k:?} is not an environment variable name; map it with `env: {{ NAME: {k} }}`"
                        ));
                    }
                    v.push((k.clone(), val));
                }
                v
            } else {
                names
                    .iter()
                    .map(|(name, key)| Ok((name.clone(), lookup(data, key)?)))
                    .collect::<Result<_, String>>()?
            };
            let mut s = Zeroizing::new(String::new());
            for (name, v) in pairs {
                s.push_str(&name);
                s.push('=');
                s.push_str(&Zeroizing::new(shell_quote(&Zeroizing::new(text_of(v)))));
                s.push('\n');
            }
            s
        }
        Format::Value { key } => Zeroizing::new(text_of(lookup(data, key)?)),
        Format::Template { text } => substitute(text, |k| Ok(text_of(lookup(data, k)?)))?,
    };
    Ok(Zeroizing::new(text.as_bytes().to_vec()))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A uid from `owner`: a number, or a user name from `/etc/passwd`.
pub fn resolve_owner(owner: &str) -> Result<u32, String> {
    let owner = owner.trim();
    if let Ok(uid) = owner.parse::<u32>() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot look up user {owner:?}: /etc/passwd: {e}; give a uid"))?;
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse::<u32>().ok()?;
            Some((name, uid))
        })
        .find(|(name, _)| *name == owner)
        .map(|(_, uid)| uid)
        .ok_or_else(|| {
            format!("no user {owner:?} in /etc/passwd; give a uid or an existing user name")
        })
}

/// Whether this process runs with effective uid 0 (read from `/proc/self/status`, no libc).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        // Fall back to the owner of our /proc entry, which is the effective uid.
        .unwrap_or_else(|| {
            std::fs::metadata("/proc/self")
                .map(|m| m.uid() == 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::process::Command;

    fn data() -> Map<String, Value> {
        json!({"api_key": "sk-it's $secret", "org": "claw", "n": 3})
            .as_object()
            .unwrap()
            .clone()
    }

    fn sink(path: PathBuf, format: Format, mode: u32) -> FileSink {
        FileSink {
            path,
            format,
            mode,
            owner: None,
        }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".keep"))
            .collect()
    }

    #[test]
    fn replace_is_atomic_with_the_right_mode_and_no_temp_files_left() {
        let tmp = keep_test_support::tempdir();
        let path = tmp.path().join("llm.json");
        let s = sink(path.clone(), Format::Json, 0o400);
        s.write(&s.render(&data()).unwrap()).unwrap();
        let first = std::fs::metadata(&path).unwrap();
        assert_eq!(first.permissions().mode() & 0o7777, 0o400);
        let got: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(got["api_key"], "sk-it's $secret");
        let mut changed = data();
        changed.insert("api_key".into(), json!("sk-new"));
        s.write(&s.render(&changed).unwrap()).unwrap();
        let second = std::fs::metadata(&path).unwrap();
        assert_ne!(first.ino(), second.ino(), "the file was rewritten in place");
        assert_eq!(second.permissions().mode() & 0o7777, 0o400);
        let got: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(got["api_key"], "sk-new");
        assert!(
            leftovers(tmp.path()).is_empty(),
            "{:?}",
            leftovers(tmp.path())
        );
        // A different mode is applied before the rename too.
        write_atomic(&path, b"x", 0o640, None).unwrap();
        let m = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, 0o640);
    }

    #[test]
    fn a_missing_directory_is_created_0700() {
        let tmp = keep_test_support::tempdir();
        let dir = tmp.path().join("run/keep");
        check_writable(&dir).unwrap();
        let m = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, 0o700);
        assert!(leftovers(&dir).is_empty());
    }

    #[test]
    fn a_bad_directory_fails_the_check() {
        let tmp = keep_test_support::tempdir();
        let file = tmp.path().join("plain-file");
        std::fs::write(&file, b"").unwrap();
        // (dir, substring of the error)
        let cases = [
            (file.clone(), "is not a directory"),
            (file.join("sub"), "cannot create directory"),
        ];
        for (dir, want) in cases {
            let e = check_writable(&dir).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", dir.display());
        }
        let s = sink(tmp.path().to_path_buf(), Format::Json, 0o400);
        assert!(
            s.check()
                .unwrap_err()
                .to_string()
                .contains("is a directory")
        );
        // Several sinks in one directory: checked and warned about once.
        let a = sink(tmp.path().join("a"), Format::Json, 0o400);
        let b = sink(tmp.path().join("b"), Format::Json, 0o400);
        assert_eq!(check_all([&a, &b]).unwrap().len(), 1);
        let bad = sink(file.join("c"), Format::Json, 0o400);
        assert!(check_all([&a, &bad]).is_err());
    }

    /// A real tmpfs, unmounted on drop.
    struct Tmpfs(PathBuf);

    impl Tmpfs {
        fn mount(dir: &Path) -> Option<Tmpfs> {
            std::fs::create_dir_all(dir).unwrap();
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
                .arg(dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            ok.then(|| Tmpfs(dir.to_owned()))
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }

    #[test]
    fn tmpfs_is_recognised_and_disk_is_warned_about() {
        let tmp = keep_test_support::tempdir();
        let disk = tmp.path().join("disk");
        std::fs::create_dir(&disk).unwrap();
        let warnings = check_writable(&disk).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("not tmpfs/ramfs"), "{warnings:?}");

        let mem = tmp.path().join("mem");
        let Some(_fs) = Tmpfs::mount(&mem) else {
            eprintln!("skipped the tmpfs half: cannot mount tmpfs here (not root?)");
            return;
        };
        assert_eq!(filesystem_type(&mem).as_deref(), Some("tmpfs"));
        let inside = mem.join("keep");
        assert_eq!(check_writable(&inside).unwrap(), Vec::<String>::new());
        write_atomic(&inside.join("f"), b"x", 0o400, None).unwrap();
    }

    #[test]
    fn mountinfo_parsing_picks_the_deepest_and_latest_mount() {
        let info = "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                    30 27 0:27 / /run rw - tmpfs tmpfs rw\n\
                    31 30 0:28 / /run/my\\040dir rw - ramfs ramfs rw\n\
                    32 27 0:29 / /run rw - ext4 /dev/vdb rw\n";
        let cases = [
            ("/etc/x", Some("ext4")),
            ("/run/keep", Some("ext4")),
            ("/run/my dir/f", Some("ramfs")),
            ("/runner", Some("ext4")),
        ];
        for (path, want) in cases {
            assert_eq!(
                mount_type_in(info, Path::new(path)).as_deref(),
                want,
                "{path}"
            );
        }
    }

    /// (format, expected contents)
    #[test]
    fn formats_render_as_documented() {
        let names: BTreeMap<String, String> =
            [("OPENAI_API_KEY".to_owned(), "api_key".to_owned())].into();
        let cases: Vec<(Format, &str)> = vec![
            (
                Format::Env { names },
                "OPENAI_API_KEY='sk-it'\\''s $secret'\n",
            ),
            (
                Format::Env {
                    names: BTreeMap::new(),
                },
                "api_key='sk-it'\\''s $secret'\nn='3'\norg='claw'\n",
            ),
            (
                Format::Value {
                    key: "api_key".into(),
                },
                "sk-it's $secret",
            ),
            (
                Format::Template {
                    text: "key={{ .api_key }} org={{org}} n={{ n }}\n".into(),
                },
                "key=sk-it's $secret org=claw n=3\n",
            ),
        ];
        for (format, want) in cases {
            let got = render(&format, &data()).unwrap();
            assert_eq!(String::from_utf8_lossy(&got), want, "{format:?}");
        }
        let json: Value = serde_json::from_slice(&render(&Format::Json, &data()).unwrap()).unwrap();
        assert_eq!(Value::Object(data()), json);
    }

    #[test]
    fn env_output_is_safe_for_sh() {
        let tmp = keep_test_support::tempdir();
        let path = tmp.path().join("x.env");
        let nasty = "a'b\"c $(touch pwned) `x` \\ \n line2";
        let d = json!({"V": nasty}).as_object().unwrap().clone();
        std::fs::write(
            &path,
            &*render(
                &Format::Env {
                    names: BTreeMap::new(),
                },
                &d,
            )
            .unwrap(),
        )
        .unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(". {}; printf %s \"$V\"", path.display()))
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
        assert!(!tmp.path().join("pwned").exists());
    }

    #[test]
    fn render_errors_name_keys_never_values() {
        let cases: Vec<(Format, &str)> = vec![
            (Format::Value { key: "nope".into() }, "no key \"nope\""),
            (
                Format::Template {
                    text: "{{ .nope }}".into(),
                },
                "no key \"nope\"",
            ),
            (
                Format::Env {
                    names: [("X".to_owned(), "nope".to_owned())].into(),
                },
                "no key \"nope\"",
            ),
        ];
        for (format, want) in cases {
            let e = render(&format, &data()).unwrap_err();
            assert!(e.contains(want), "{e}");
            assert!(e.contains("api_key") && !e.contains("sk-it"), "{e}");
        }
        let bad = json!({"not-a-name": "v"}).as_object().unwrap().clone();
        let e = render(
            &Format::Env {
                names: BTreeMap::new(),
            },
            &bad,
        )
        .unwrap_err();
        assert!(e.contains("not-a-name") && e.contains("env:"), "{e}");
        for t in ["{{ .a", "{{ }}", "{{ a b }}"] {
            assert!(check_template(t).is_err(), "{t}");
        }
    }

    #[test]
    fn owners_resolve_by_number_or_name() {
        assert_eq!(resolve_owner("1234").unwrap(), 1234);
        assert_eq!(resolve_owner("root").unwrap(), 0);
        assert!(resolve_owner("no-such-user-keep-test").is_err());
        if running_as_root() {
            let tmp = keep_test_support::tempdir();
            let path = tmp.path().join("owned");
            write_atomic(&path, b"x", 0o400, Some(4242)).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().uid(), 4242);
        }
    }
}
