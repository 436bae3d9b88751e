//! OpenClaw's side of the exec provider (`keep doctor --openclaw [CONFIG]`), and the facts
//! `keep openclaw setup` shares with it: where OpenClaw reads its config, who the Gateway user
//! is, and the command checks OpenClaw runs before it executes a provider.
//!
//! The command checks mirror OpenClaw 2026.9.6 exactly (`assertSecureExecCommandPath` in its
//! `dist/exec-provider-path-validation-*.mjs`, and the config schema in
//! `dist/zod-schema.core-*.mjs`), in its order:
//!
//! 1. `command` is an absolute path without shell metacharacters, quotes or line breaks;
//! 2. it can be `lstat`ed and is not a directory;
//! 3. it is not a symlink (the link itself, not its target);
//! 4. with `trustedDirs`, it is inside one of them — compared as strings after `~` expansion,
//!    with no symlink resolution;
//! 5. it is not group- or world-writable;
//! 6. it is owned by the uid the Gateway runs as (root owning it is not enough).
//!
//! Then the doctor runs the command the way OpenClaw does (only `LC_CTYPE`, `OPENCLAW_CLI` and
//! the provider's `passEnv`/`env` in its environment, the command's directory as cwd, one
//! request on stdin), times it against `timeoutMs`, and reports every keep SecretRef in the
//! config that does not resolve, by its JSON path.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Options;
use crate::json5;
use crate::report::Check;

/// OpenClaw's default `timeoutMs` for an exec provider.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// `keep openclaw-resolver`'s default `--timeout-ms`.
const RESOLVER_DEFAULT_TIMEOUT_MS: u64 = 4000;
/// OpenClaw's limit on ids per provider and request.
const MAX_IDS: usize = 512;
/// An id that exists nowhere, to time a provider that no ref uses yet.
const PROBE_ID: &str = "keep-doctor/probe#timing";

/// A local user, as `/etc/passwd` describes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

impl User {
    /// The user called `name` (or with that numeric uid), from `/etc/passwd`, else from
    /// `getent passwd` (LDAP, sssd).
    pub fn by_name(name: &str) -> Option<User> {
        lookup(|u| u.name == name || name.parse::<u32>() == Ok(u.uid), name)
    }

    /// The user with `uid`.
    pub fn by_uid(uid: u32) -> Option<User> {
        lookup(|u| u.uid == uid, &uid.to_string())
    }

    /// The user this process runs as (effective uid). Its home is `HOME` when set, as for
    /// OpenClaw (Node's `os.homedir()`), else the passwd entry's; a uid without a name (a
    /// container's arbitrary uid) gets a made-up entry.
    pub fn current() -> User {
        let uid = euid();
        let mut user = User::by_uid(uid).unwrap_or_else(|| User {
            name: uid.to_string(),
            uid,
            gid: rustix::process::getegid().as_raw(),
            home: PathBuf::from("/"),
        });
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            user.home = PathBuf::from(home);
        }
        user
    }
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn lookup(matches: impl Fn(&User) -> bool, key: &str) -> Option<User> {
    let parse =
        |text: &str| -> Option<User> { text.lines().filter_map(passwd_line).find(|u| matches(u)) };
    if let Some(u) = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| parse(&t))
    {
        return Some(u);
    }
    let out = Command::new("getent")
        .args(["passwd", key])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// `name:x:uid:gid:gecos:home:shell`.
fn passwd_line(line: &str) -> Option<User> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(User {
        name: f[0].to_owned(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: PathBuf::from(f[5]),
    })
}

/// Where OpenClaw reads its config for a user whose home is `home`, in OpenClaw's order:
/// `OPENCLAW_CONFIG_PATH`; else the profile's state dir `~/.openclaw-NAME` (`--profile NAME`
/// or `OPENCLAW_PROFILE`); else `OPENCLAW_STATE_DIR`; else `~/.openclaw`; the file in a state
/// dir is `openclaw.json`. `env` reads the environment (injectable for tests).
pub fn config_path(
    env: impl Fn(&str) -> Option<OsString>,
    home: &Path,
    profile: Option<&str>,
) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(p) = set("OPENCLAW_CONFIG_PATH") {
        return expand_home(Path::new(&p), home);
    }
    let profile = profile
        .map(str::to_owned)
        .or_else(|| set("OPENCLAW_PROFILE").map(|p| p.to_string_lossy().into_owned()))
        .filter(|p| p != "default");
    if let Some(p) = profile {
        return home.join(format!(".openclaw-{p}")).join("openclaw.json");
    }
    if let Some(dir) = set("OPENCLAW_STATE_DIR") {
        return expand_home(Path::new(&dir), home).join("openclaw.json");
    }
    home.join(".openclaw").join("openclaw.json")
}

/// `~` and `~/x` against `home`; a relative path against the working directory (as Node's
/// `path.resolve` does).
fn expand_home(p: &Path, home: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    let expanded = if s == "~" {
        home.to_path_buf()
    } else if let Some(rest) = s.strip_prefix("~/") {
        home.join(rest)
    } else {
        p.to_path_buf()
    };
    std::path::absolute(&expanded).unwrap_or(expanded)
}

/// The exec providers in `config` that run `keep openclaw-resolver`, by alias.
pub fn keep_providers(config: &Value) -> BTreeMap<String, Value> {
    config["secrets"]["providers"]
        .as_object()
        .map(|providers| {
            providers
                .iter()
                .filter(|(_, p)| is_keep_provider(p))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// An exec provider whose args start keep's resolver.
pub fn is_keep_provider(p: &Value) -> bool {
    p["source"] == "exec"
        && p["args"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "openclaw-resolver"))
}

/// A SecretRef found in the config: where, which provider, which id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ref {
    /// Its JSON path in the config, e.g. `models.providers.openai.apiKey`.
    pub path: String,
    /// The provider alias (the ref's `provider`, else `secrets.defaults.exec`, else `default`).
    pub provider: String,
    /// The id.
    pub id: String,
}

/// Every exec SecretRef (`{source: "exec", provider, id}`) in `config`, depth first, outside
/// `secrets.providers` itself.
pub fn exec_refs(config: &Value) -> Vec<Ref> {
    let default = config["secrets"]["defaults"]["exec"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let mut out = Vec::new();
    walk(config, String::new(), &default, &mut out);
    out
}

fn walk(v: &Value, path: String, default: &str, out: &mut Vec<Ref>) {
    match v {
        Value::Object(m) => {
            if m.get("source").and_then(Value::as_str) == Some("exec")
                && let Some(id) = m.get("id").and_then(Value::as_str)
            {
                out.push(Ref {
                    path,
                    provider: m
                        .get("provider")
                        .and_then(Value::as_str)
                        .unwrap_or(default)
                        .to_owned(),
                    id: id.to_owned(),
                });
                return;
            }
            for (k, child) in m {
                if path.is_empty() && k == "secrets" {
                    continue;
                }
                let simple = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let p = match (path.is_empty(), simple) {
                    (true, true) => k.clone(),
                    (false, true) => format!("{path}.{k}"),
                    (_, false) => format!("{path}[{}]", Value::from(k.as_str())),
                };
                walk(child, p, default, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), default, out);
            }
        }
        _ => {}
    }
}

/// Reads OpenClaw's config (JSON5) as JSON, with an error naming the file, line and column.
pub fn read_config(path: &Path) -> Result<(String, Value), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {}", path.display(), crate::files::io_words(&e)))?;
    let node = json5::parse(&text).map_err(|e| {
        format!(
            "{}: not valid JSON5 at {e}; fix the file (OpenClaw cannot read it either)",
            path.display()
        )
    })?;
    Ok((text, node.to_json()))
}

/// The command checks OpenClaw runs on `secrets.providers.<alias>.command` before executing
/// it, for a Gateway running as `gateway_uid`, each with its fix. Stops at the first check
/// that makes the rest meaningless (no path, no file).
pub fn command_checks(alias: &str, provider: &Value, gateway_uid: u32) -> Vec<Check> {
    let id = |s: &str| format!("openclaw.{alias}.command.{s}");
    let setup = "run `keep openclaw setup --config AGENT_YAML` as the Gateway user: it places a copy that passes every check";
    let mut out = Vec::new();
    let Some(command) = provider["command"]
        .as_str()
        .filter(|c| !c.trim().is_empty())
    else {
        out.push(Check::fail(
            &id("absolute"),
            "command",
            "the provider has no `command`",
            setup,
        ));
        return out;
    };
    let path = PathBuf::from(command.trim());
    let unsafe_chars = command.chars().any(|c| ";&|`$<>\"'\r\n\0".contains(c));
    if !path.is_absolute() || unsafe_chars {
        out.push(Check::fail(
            &id("absolute"),
            "absolute path",
            format!(
                "{command:?} is {}: OpenClaw's schema rejects it",
                if unsafe_chars {
                    "a path with shell metacharacters, quotes or line breaks"
                } else {
                    "not an absolute path"
                }
            ),
            "give the absolute path of a regular file (OpenClaw runs it without a shell and without PATH), e.g. what `keep openclaw setup` prints",
        ));
        return out;
    }
    out.push(Check::ok(
        &id("absolute"),
        "absolute path",
        path.display().to_string(),
    ));
    let shown = path.display();
    let lst = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => {
            out.push(Check::fail(
                &id("file"),
                "a file",
                format!("{shown} is a directory"),
                "point `command` at the keep binary itself",
            ));
            return out;
        }
        Ok(m) => m,
        Err(e) => {
            out.push(Check::fail(
                &id("file"),
                "a file",
                format!("{shown} cannot be read: {}", crate::files::io_words(&e)),
                setup,
            ));
            return out;
        }
    };
    out.push(Check::ok(&id("file"), "a file", format!("{shown} exists")));
    if lst.file_type().is_symlink() {
        let target = std::fs::read_link(&path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        out.push(Check::fail(
            &id("symlink"),
            "not a symlink",
            format!("{shown} is a symlink (to {target}); OpenClaw refuses symlinked commands"),
            format!(
                "replace the link with a real file: {setup} (or `cp --remove-destination \"$(realpath {shown})\" {shown}`)"
            ),
        ));
    } else {
        out.push(Check::ok(
            &id("symlink"),
            "not a symlink",
            "a regular file, not a link",
        ));
    }
    match provider["trustedDirs"].as_array().filter(|d| !d.is_empty()) {
        None => out.push(Check::ok(
            &id("trusted_dirs"),
            "trustedDirs",
            "not set (any directory is accepted)",
        )),
        Some(dirs) => {
            let dirs: Vec<&str> = dirs.iter().filter_map(Value::as_str).collect();
            let inside = dirs.iter().any(|d| path_inside(Path::new(d), &path));
            if inside {
                out.push(Check::ok(
                    &id("trusted_dirs"),
                    "trustedDirs",
                    format!("{shown} is inside {}", dirs.join(", ")),
                ));
            } else {
                let parent = path
                    .parent()
                    .unwrap_or(Path::new("/"))
                    .display()
                    .to_string();
                out.push(Check::fail(
                    &id("trusted_dirs"),
                    "trustedDirs",
                    format!(
                        "{shown} is outside trustedDirs ({}); OpenClaw compares the paths as written, without following symlinks",
                        dirs.join(", ")
                    ),
                    format!(
                        "add {parent} to secrets.providers.{alias}.trustedDirs, or move the command into a trusted directory and point `command` there"
                    ),
                ));
            }
        }
    }
    // OpenClaw looks at the target's mode through a symlink; the symlink check fails anyway.
    let mode = std::fs::metadata(&path).map_or(lst.mode(), |m| m.mode()) & 0o7777;
    if mode & 0o022 != 0 {
        out.push(Check::fail(
            &id("permissions"),
            "permissions",
            format!(
                "{shown} is mode {mode:04o}: {}-writable, so OpenClaw refuses it (\"permissions are too open\")",
                if mode & 0o002 != 0 { "world" } else { "group" }
            ),
            format!("chmod 755 {shown}"),
        ));
    } else {
        out.push(Check::ok(
            &id("permissions"),
            "permissions",
            format!("mode {mode:04o}, not group- or world-writable"),
        ));
    }
    let owner = lst.uid();
    if owner != gateway_uid {
        let name = |uid: u32| {
            User::by_uid(uid).map_or(format!("uid {uid}"), |u| format!("{} (uid {uid})", u.name))
        };
        out.push(Check::fail(
            &id("owner"),
            "owner",
            format!(
                "{shown} is owned by {}, but the Gateway runs as {}; OpenClaw accepts only a command its own user owns (\"must be owned by the current user\"), root is not an exception",
                name(owner),
                name(gateway_uid)
            ),
            setup,
        ));
    } else {
        out.push(Check::ok(
            &id("owner"),
            "owner",
            format!("owned by the Gateway user (uid {owner})"),
        ));
    }
    // Not one of OpenClaw's checks, but whoever can write the directory can swap the file.
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::metadata(dir)
    {
        let dmode = d.mode() & 0o7777;
        let foreign = d.uid() != gateway_uid && d.uid() != 0;
        if (dmode & 0o022 != 0 && dmode & 0o1000 == 0) || foreign {
            out.push(Check::warn(
                &id("directory"),
                "its directory",
                format!(
                    "{} is mode {dmode:04o}, owned by uid {}: another user could replace the command",
                    dir.display(),
                    d.uid()
                ),
                format!(
                    "keep the command in a directory only the Gateway user can write (chmod go-w {}), as `keep openclaw setup` does",
                    dir.display()
                ),
            ));
        }
    }
    out
}

/// OpenClaw's `isPathInside` on POSIX: lexical, after resolving `.`/`..` and `~`.
fn path_inside(dir: &Path, target: &Path) -> bool {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let norm = |p: &Path| -> PathBuf {
        let p = expand_home(p, &home);
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    };
    norm(target).starts_with(norm(dir))
}

/// `jsonOnly`, `passEnv`/`env` and `args` of a keep provider.
fn provider_checks(alias: &str, provider: &Value) -> (Vec<Check>, ResolverArgs) {
    let id = |s: &str| format!("openclaw.{alias}.{s}");
    let mut out = Vec::new();
    out.push(match provider.get("jsonOnly") {
        Some(Value::Bool(false)) => Check::warn(
            &id("json_only"),
            "jsonOnly",
            "false: for a single id OpenClaw would take any non-JSON stdout as the secret's value",
            format!("set secrets.providers.{alias}.jsonOnly to true (keep always answers JSON)"),
        ),
        Some(Value::Bool(true)) => Check::ok(&id("json_only"), "jsonOnly", "true"),
        None => Check::ok(
            &id("json_only"),
            "jsonOnly",
            "not set (OpenClaw's default, true)",
        ),
        Some(other) => Check::fail(
            &id("json_only"),
            "jsonOnly",
            format!("{other} is not a boolean; OpenClaw's schema rejects it"),
            format!("set secrets.providers.{alias}.jsonOnly to true"),
        ),
    });
    let pass: Vec<&str> = provider["passEnv"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push(if pass.is_empty() {
        Check::ok(
            &id("pass_env"),
            "passEnv",
            "nothing passed (keep's resolver reads everything from --config)",
        )
    } else {
        Check::warn(
            &id("pass_env"),
            "passEnv",
            format!(
                "passes {} to the resolver, which reads none of them",
                pass.join(", ")
            ),
            format!(
                "remove secrets.providers.{alias}.passEnv: the resolver takes everything from --config, and each variable passed is one more thing it sees (for logs use \"env\": {{\"KEEP_LOG\": \"debug\"}})"
            ),
        )
    });
    let args: Vec<&str> = provider["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let flag = |name: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&format!("{name}="))
                .map(str::to_owned)
                .or_else(|| {
                    (*a == name)
                        .then(|| args.get(i + 1).map(|s| (*s).to_owned()))
                        .flatten()
                })
        })
    };
    let resolver = ResolverArgs {
        timeout_ms: flag("--timeout-ms")
            .and_then(|t| t.parse().ok())
            .unwrap_or(RESOLVER_DEFAULT_TIMEOUT_MS),
    };
    out.push(match flag("--config") {
        None => Check::fail(
            &id("args"),
            "args",
            "no --config AGENT_YAML after openclaw-resolver",
            "re-run `keep openclaw setup --config AGENT_YAML`, or add \"--config\", \"/abs/agent.yaml\" to args",
        ),
        Some(c) if !Path::new(&c).is_absolute() => Check::fail(
            &id("args"),
            "args",
            format!("--config {c} is relative, but OpenClaw runs the command in its own directory"),
            "give --config as an absolute path",
        ),
        Some(c) => match std::fs::metadata(&c) {
            Ok(_) => Check::ok(&id("args"), "args", format!("openclaw-resolver --config {c}")),
            Err(e) => Check::fail(
                &id("args"),
                "args",
                format!("--config {c}: {}", crate::files::io_words(&e)),
                "point --config at the agent's YAML, readable by the Gateway user",
            ),
        },
    });
    (out, resolver)
}

struct ResolverArgs {
    timeout_ms: u64,
}

/// What one resolver run gave: per-id outcomes, or why the whole run failed.
struct Run {
    took: Duration,
    result: Result<Value, String>,
}

/// Runs the provider's command as OpenClaw would, as `uid` (when this process is root and the
/// Gateway user is someone else), with `ids` on stdin.
fn run_provider(provider: &Value, ids: &[&str], uid: u32, gid: u32, limit: Duration) -> Run {
    let command = provider["command"].as_str().unwrap_or_default();
    let args: Vec<&str> = provider["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut cmd = Command::new(command);
    cmd.args(&args)
        .env_clear()
        .env(
            "LC_CTYPE",
            std::env::var_os("LC_CTYPE").unwrap_or_else(|| "C.UTF-8".into()),
        )
        .env("OPENCLAW_CLI", "1")
        .current_dir(Path::new(command).parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in provider["passEnv"].as_array().into_iter().flatten() {
        if let Some(k) = k.as_str()
            && let Some(v) = std::env::var_os(k)
        {
            cmd.env(k, v);
        }
    }
    if let Some(env) = provider["env"].as_object() {
        for (k, v) in env {
            if let Some(v) = v.as_str() {
                cmd.env(k, v);
            }
        }
    }
    if euid() == 0 && uid != 0 {
        cmd.uid(uid).gid(gid);
    }
    let started = Instant::now();
    let request =
        serde_json::json!({"protocolVersion": 1, "provider": "keep", "ids": ids}).to_string();
    let result = answer_within(cmd, &request, started + limit, limit, command);
    Run {
        took: started.elapsed(),
        result,
    }
}

/// Spawns `cmd`, writes `request`, and waits until `deadline` (a hung resolver is killed, as
/// OpenClaw kills it after `timeoutMs`, not waited for).
fn answer_within(
    mut cmd: Command,
    request: &str,
    deadline: Instant,
    limit: Duration,
    command: &str,
) -> Result<Value, String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {command}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(request.as_bytes());
    }
    // Drained while waiting, so a large answer cannot fill the pipe and stall the resolver.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer within {} ms: OpenClaw would kill it and fail every ref of this provider",
                    limit.as_millis()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("waiting for {command}: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        // stderr is the resolver's own reason, which never carries a value.
        let why = String::from_utf8_lossy(&stderr);
        return Err(format!(
            "exited with {status} ({}); OpenClaw reports every ref of this provider as failed",
            why.trim().lines().last().unwrap_or("no message")
        ));
    }
    serde_json::from_slice::<Value>(&stdout)
        .map_err(|_| "did not answer with JSON on stdout".to_owned())
}

/// The fix for a per-id error code of the resolver.
fn code_fix(code: &str, id: &str) -> String {
    let (path, key) = id.split_once('#').unwrap_or((id, ""));
    match code {
        "NOT_FOUND" if key.is_empty() => format!(
            "write the secret (keep kv put secret/{path} KEY=VALUE) or correct the id"
        ),
        "NOT_FOUND" => format!(
            "write the key (keep kv patch secret/{path} {key}=VALUE, or kv put) or correct the id"
        ),
        "PERMISSION_DENIED" => "let the agent's policy read this path (keep policy write …), or log in with the right role (vault_connection.role)".into(),
        "UNAVAILABLE" => "start keep server, or check vault_connection.url (keep doctor --config AGENT_YAML says which step breaks)".into(),
        "AMBIGUOUS" => format!("name the key: {path}#KEY"),
        "INVALID_ID" => "write the id as path#key (e.g. agents/agent-01/llm#api_key)".into(),
        "INVALID_VALUE" => "store the value as a non-empty string".into(),
        _ => "see docs/openclaw.md (Protocol and errors)".into(),
    }
}

/// Diagnoses OpenClaw's config at `path`: every keep provider's command checks and settings,
/// the resolver's time against `timeoutMs`, and every keep SecretRef.
pub fn diagnose(path: &Path, _opts: &Options) -> Check {
    let title = format!("OpenClaw config {}", path.display());
    let (config, gateway) = match read_config(path) {
        Ok((_, v)) => {
            let owner = std::fs::metadata(path).map(|m| m.uid()).ok();
            // As root, the Gateway user is whoever owns the config (OpenClaw writes it as
            // itself); otherwise it is us.
            let gateway = match owner {
                Some(o) if euid() == 0 && o != 0 => User::by_uid(o).unwrap_or(User {
                    name: o.to_string(),
                    uid: o,
                    gid: o,
                    home: PathBuf::from("/"),
                }),
                _ => User::current(),
            };
            (v, gateway)
        }
        Err(e) => {
            return Check::group(
                "openclaw",
                &title,
                vec![Check::fail(
                    "openclaw.config",
                    "config",
                    e,
                    "give the file OpenClaw reads (--openclaw PATH; OpenClaw uses OPENCLAW_CONFIG_PATH, else ~/.openclaw/openclaw.json), or run `keep openclaw setup` to create it",
                )],
            );
        }
    };
    let mut out = vec![Check::ok(
        "openclaw.config",
        "config",
        format!(
            "parses; the Gateway user is {} (uid {})",
            gateway.name, gateway.uid
        ),
    )];
    let providers = keep_providers(&config);
    if providers.is_empty() {
        out.push(Check::fail(
            "openclaw.providers",
            "keep provider",
            "no exec provider under secrets.providers runs `keep openclaw-resolver`",
            "run `keep openclaw setup --config AGENT_YAML` as the Gateway user",
        ));
        return Check::group("openclaw", &title, out);
    }
    let refs = exec_refs(&config);
    for (alias, provider) in &providers {
        let mut checks = command_checks(alias, provider, gateway.uid);
        let runnable = checks.iter().all(|c| c.status != crate::Status::Fail);
        let (more, resolver) = provider_checks(alias, provider);
        checks.extend(more);
        let mine: Vec<&Ref> = refs.iter().filter(|r| &r.provider == alias).collect();
        let timeout_ms = provider["timeoutMs"].as_u64().unwrap_or(DEFAULT_TIMEOUT_MS);
        if !runnable {
            let why =
                "OpenClaw would refuse to run the command: fix the failed command check first";
            checks.push(Check::skip(
                &format!("openclaw.{alias}.timeout"),
                "timeoutMs",
                why,
            ));
            for r in &mine {
                checks.push(Check::skip(
                    &format!("openclaw.{alias}.ref.{}", r.path),
                    &r.path,
                    why,
                ));
            }
            out.push(Check::group(
                &format!("openclaw.{alias}"),
                &format!("provider {alias}"),
                checks,
            ));
            continue;
        }
        let mut ids: Vec<&str> = mine.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let probe = ids.is_empty();
        if probe {
            ids.push(PROBE_ID);
        }
        // A generous bound: the measured time is compared with timeoutMs below.
        let limit = Duration::from_millis(timeout_ms.max(resolver.timeout_ms) + 2000);
        let mut answers = serde_json::Map::new();
        let mut took = Duration::ZERO;
        let mut failure = None;
        for chunk in ids.chunks(MAX_IDS) {
            let run = run_provider(provider, chunk, gateway.uid, gateway.gid, limit);
            took = took.max(run.took);
            match run.result {
                Ok(v) => {
                    for field in ["values", "errors"] {
                        if let Some(m) = v[field].as_object() {
                            for (k, x) in m {
                                answers.insert(format!("{field}\u{0}{k}"), x.clone());
                            }
                        }
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        let ms = took.as_millis() as u64;
        let tid = format!("openclaw.{alias}.timeout");
        checks.push(if ms >= timeout_ms {
            Check::fail(
                &tid,
                "timeoutMs",
                format!("the resolver took {ms} ms, at or over timeoutMs {timeout_ms}: OpenClaw kills it and fails every ref"),
                format!("raise secrets.providers.{alias}.timeoutMs (at most 120000), and find the slow step with `keep doctor --config AGENT_YAML`"),
            )
        } else if resolver.timeout_ms >= timeout_ms {
            Check::warn(
                &tid,
                "timeoutMs",
                format!("the resolver answered in {ms} ms, but its --timeout-ms {} is not below timeoutMs {timeout_ms}: when the vault is slow OpenClaw kills it before it can report which ids failed", resolver.timeout_ms),
                format!("pass --timeout-ms {} (about a second below timeoutMs) in args", timeout_ms.saturating_sub(1000).max(100)),
            )
        } else if ms * 2 > timeout_ms {
            Check::warn(
                &tid,
                "timeoutMs",
                format!("the resolver took {ms} ms, over half of timeoutMs {timeout_ms}"),
                format!("raise secrets.providers.{alias}.timeoutMs, or find the slow step with `keep doctor --config AGENT_YAML`"),
            )
        } else {
            Check::ok(
                &tid,
                "timeoutMs",
                format!("the resolver answered {} in {ms} ms (timeoutMs {timeout_ms})", if probe { "a probe id".to_owned() } else { format!("{} id{}", ids.len(), if ids.len() == 1 { "" } else { "s" }) }),
            )
        });
        for r in &mine {
            let rid = format!("openclaw.{alias}.ref.{}", r.path);
            let c = if let Some(e) = &failure {
                Check::fail(
                    &rid,
                    &r.path,
                    format!("{}: {e}", r.id),
                    "fix the provider first (the checks above), then run this again",
                )
            } else if answers.contains_key(&format!("values\u{0}{}", r.id)) {
                Check::ok(
                    &rid,
                    &r.path,
                    format!("{} resolves (value not shown)", r.id),
                )
            } else if let Some(err) = answers.get(&format!("errors\u{0}{}", r.id)) {
                let code = err["code"].as_str().unwrap_or("ERROR");
                let msg = err["message"].as_str().unwrap_or("");
                Check::fail(
                    &rid,
                    &r.path,
                    format!("{} fails: {code} ({msg})", r.id),
                    code_fix(code, &r.id),
                )
            } else {
                Check::fail(
                    &rid,
                    &r.path,
                    format!("{}: the resolver did not answer this id", r.id),
                    "see docs/openclaw.md",
                )
            };
            checks.push(c);
        }
        out.push(Check::group(
            &format!("openclaw.{alias}"),
            &format!("provider {alias}"),
            checks,
        ));
    }
    // Refs to providers that are not defined at all.
    for r in refs.iter().filter(|r| {
        !providers.contains_key(&r.provider)
            && config["secrets"]["providers"][&r.provider].is_null()
    }) {
        out.push(Check::fail(
            &format!("openclaw.ref.{}", r.path),
            &r.path,
            format!(
                "{} names provider {:?}, which secrets.providers does not define",
                r.id, r.provider
            ),
            format!(
                "set \"provider\": \"keep\" (or define secrets.providers.{})",
                r.provider
            ),
        ));
    }
    Check::group("openclaw", &title, out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Status;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn config_path_follows_openclaws_order() {
        let home = Path::new("/home/u");
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| OsString::from(p.1))
        };
        assert_eq!(
            config_path(env(&[]), home, None),
            Path::new("/home/u/.openclaw/openclaw.json")
        );
        assert_eq!(
            config_path(env(&[("OPENCLAW_STATE_DIR", "~/st")]), home, None),
            Path::new("/home/u/st/openclaw.json")
        );
        assert_eq!(
            config_path(env(&[("OPENCLAW_STATE_DIR", "/s")]), home, Some("work")),
            Path::new("/home/u/.openclaw-work/openclaw.json")
        );
        assert_eq!(
            config_path(env(&[("OPENCLAW_PROFILE", "lab")]), home, None),
            Path::new("/home/u/.openclaw-lab/openclaw.json")
        );
        assert_eq!(
            config_path(
                env(&[
                    ("OPENCLAW_CONFIG_PATH", "/etc/oc.json"),
                    ("OPENCLAW_PROFILE", "lab")
                ]),
                home,
                Some("x")
            ),
            Path::new("/etc/oc.json")
        );
    }

    #[test]
    fn refs_are_found_by_json_path_outside_the_provider_table() {
        let config = json!({
            "secrets": {"providers": {"keep": {"source": "exec", "command": "/k", "args": ["openclaw-resolver"]},
                                       "env": {"source": "env"}},
                        "defaults": {"exec": "keep"}},
            "models": {"providers": {"openai": {"apiKey": {"source": "exec", "provider": "keep", "id": "a/b#k"}}}},
            "channels": [{"token": {"source": "exec", "id": "c/d#t"}}, {"token": {"source": "env", "id": "X"}}],
            "odd.key": {"x": {"source": "exec", "provider": "other", "id": "e"}}
        });
        let refs = exec_refs(&config);
        let got: Vec<(&str, &str, &str)> = refs
            .iter()
            .map(|r| (r.path.as_str(), r.provider.as_str(), r.id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("channels[0].token", "keep", "c/d#t"),
                ("models.providers.openai.apiKey", "keep", "a/b#k"),
                ("[\"odd.key\"].x", "other", "e"),
            ]
        );
        assert_eq!(keep_providers(&config).keys().collect::<Vec<_>>(), ["keep"]);
    }

    #[test]
    fn command_checks_match_openclaws_rules() {
        let dir = tempfile::tempdir().unwrap();
        let me = euid();
        let file = dir.path().join("keep");
        std::fs::write(&file, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        let provider = |command: &Path, trusted: Option<&Path>| {
            let mut p =
                json!({"source": "exec", "command": command, "args": ["openclaw-resolver"]});
            if let Some(t) = trusted {
                p["trustedDirs"] = json!([t]);
            }
            p
        };
        let status = |checks: &[Check], id: &str| {
            checks
                .iter()
                .find(|c| c.id == format!("openclaw.keep.command.{id}"))
                .map(|c| c.status)
        };
        use Status::Fail;
        let ok = Status::Ok;
        let good = command_checks("keep", &provider(&file, Some(dir.path())), me);
        assert!(good.iter().all(|c| c.status == ok), "{good:#?}");

        let c = command_checks("keep", &provider(&file, None), me + 1);
        assert_eq!(status(&c, "owner"), Some(Fail));

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o775)).unwrap();
        let c = command_checks("keep", &provider(&file, None), me);
        assert_eq!(status(&c, "permissions"), Some(Fail));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o757)).unwrap();
        let c = command_checks("keep", &provider(&file, None), me);
        assert!(c.iter().any(|c| c.detail.contains("world-writable")));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o700)).unwrap();

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let c = command_checks("keep", &provider(&link, None), me);
        assert_eq!(status(&c, "symlink"), Some(Fail));

        let c = command_checks(
            "keep",
            &provider(&file, Some(Path::new("/usr/local/bin"))),
            me,
        );
        assert_eq!(status(&c, "trusted_dirs"), Some(Fail));
        // Lexical, like OpenClaw: `..` is resolved, symlinks are not.
        let up = dir.path().join("sub/..");
        let c = command_checks("keep", &provider(&file, Some(&up)), me);
        assert_eq!(status(&c, "trusted_dirs"), Some(ok));

        let c = command_checks("keep", &provider(Path::new("keep"), None), me);
        assert_eq!(status(&c, "absolute"), Some(Fail));
        let c = command_checks(
            "keep",
            &json!({"source": "exec", "command": "/bin/k;rm"}),
            me,
        );
        assert_eq!(status(&c, "absolute"), Some(Fail));
        let c = command_checks("keep", &provider(&dir.path().join("nope"), None), me);
        assert_eq!(status(&c, "file"), Some(Fail));
    }

    #[test]
    fn provider_settings_are_checked() {
        let (c, r) = provider_checks(
            "keep",
            &json!({"jsonOnly": false, "passEnv": ["VAULT_TOKEN"], "args": ["openclaw-resolver", "--config", "rel.yaml", "--timeout-ms=2500"]}),
        );
        let s: Vec<(&str, crate::Status)> = c.iter().map(|c| (c.id.as_str(), c.status)).collect();
        assert_eq!(
            s,
            [
                ("openclaw.keep.json_only", Status::Warn),
                ("openclaw.keep.pass_env", Status::Warn),
                ("openclaw.keep.args", Status::Fail)
            ]
        );
        assert_eq!(r.timeout_ms, 2500);
    }
}
