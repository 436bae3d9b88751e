//! `keep openclaw setup`: wires keep into an OpenClaw install, for the user who runs the
//! Gateway (docs/openclaw.md).
//!
//! OpenClaw runs an exec provider's `command` only if that user owns it, it is not a symlink
//! and not group- or world-writable (and inside `trustedDirs` when set). A keep installed by
//! root in /usr/local/bin fails all of that for an ordinary user, so setup places its own
//! copy of the running binary where those rules hold, writes the provider into the config
//! OpenClaw reads, and prints a SecretRef for each secret the agent config names.
//!
//! The default place for the copy is `~/.local/lib/keep/keep`: one copy per user, shared by
//! all OpenClaw profiles; outside OpenClaw's state dir, so `openclaw reset` or restoring a
//! state backup neither deletes nor rolls it back; and not on PATH, so it never shadows the
//! `keep` the user runs.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use keep_agent::config::{AgentConfig, DEFAULT_MOUNT};
use keep_agent::sink::Format;
use keep_doctor::json5;
use keep_doctor::openclaw::{self as oc, User};
use serde_json::{Value, json};

use crate::exit::usage;

/// `keep openclaw …`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Wire keep into OpenClaw for the user who runs the Gateway: a resolver copy OpenClaw
    /// accepts, the `secrets.providers.keep` provider, and the SecretRefs to use.
    ///
    /// What it does, for the Gateway user (you, or --user NAME when run as root):
    ///
    ///   1. copies this keep binary to ~/.local/lib/keep/keep (--bin-dir), a regular file
    ///      owned by that user, mode 0755, in a directory nobody else can write, replaced
    ///      atomically (temp file + rename) when its content differs: re-run setup after
    ///      upgrading keep;
    ///   2. sets secrets.providers.keep (--provider) in the OpenClaw config to
    ///      { source: exec, command: <the copy>, args: [openclaw-resolver, --config,
    ///      <AGENT_YAML, absolute>], jsonOnly: true }, keeping any other settings of that
    ///      provider. When the `openclaw` CLI is found (--openclaw PATH, else PATH) it writes
    ///      through `openclaw config set`, which validates the schema and runs OpenClaw's own
    ///      trust checks; when the file has comments (OpenClaw's writer would drop them) or
    ///      there is no CLI, keep edits the JSON5 file itself, changing only that member, with
    ///      a backup next to it (openclaw.json.keep-backup), and then runs `openclaw config
    ///      validate` when it can;
    ///   3. prints the SecretRef of every key the agent config's `secrets` names.
    ///
    /// The config file is the one OpenClaw reads: --openclaw-config, else OPENCLAW_CONFIG_PATH,
    /// else ~/.openclaw-NAME/openclaw.json for --profile NAME (or OPENCLAW_PROFILE), else
    /// $OPENCLAW_STATE_DIR/openclaw.json, else ~/.openclaw/openclaw.json.
    ///
    /// Running it again changes nothing ("already set up"). --dry-run prints what would change
    /// (a diff of the config) and writes nothing.
    ///
    /// Root: OpenClaw accepts only a command owned by the user the Gateway runs as, so a copy
    /// owned by root fails for an ordinary user. Run as root, setup refuses when the Gateway
    /// looks like someone else's (sudo's SUDO_USER, or the OpenClaw config or its directory
    /// owned by another user) unless --user NAME says whose it is; with --user it works in
    /// that user's home and gives them everything it creates.
    ///
    /// Exit status: 0 set up (or already set up), 1 a step failed, 64 usage or config error.
    ///
    /// Examples:
    ///
    ///   keep openclaw setup --config /etc/keep/agent.yaml
    ///
    ///   keep openclaw setup --config ~/keep/agent.yaml --dry-run
    ///
    ///   sudo keep openclaw setup --user openclaw --config /etc/keep/agent.yaml
    #[command(verbatim_doc_comment)]
    Setup(Box<SetupArgs>),
}

/// `keep openclaw setup` arguments.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// The agent config the resolver uses (YAML, see docs/agent.md); stored as an absolute
    /// path. The Gateway user must be able to read it and the key it names.
    #[arg(long, value_name = "AGENT_YAML")]
    config: PathBuf,
    /// The user the OpenClaw Gateway runs as (only root may name another user).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// The OpenClaw config file to change (default: the one OpenClaw reads, see above).
    #[arg(long, value_name = "PATH")]
    openclaw_config: Option<PathBuf>,
    /// OpenClaw profile: its config is ~/.openclaw-NAME/openclaw.json.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// The `openclaw` CLI (default: `openclaw` on PATH).
    #[arg(long, value_name = "PATH")]
    openclaw: Option<PathBuf>,
    /// Edit the config file directly even when the `openclaw` CLI is there.
    #[arg(long)]
    edit_file: bool,
    /// Where the resolver copy goes (default ~/.local/lib/keep of the Gateway user).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// The provider's alias under secrets.providers (what SecretRefs name as `provider`).
    #[arg(long, value_name = "ALIAS", default_value = "keep")]
    provider: String,
    /// Print what would change, and write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `keep openclaw …`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Sub::Setup(a) => setup(*a),
    }
}

/// What setup decided, before touching anything.
struct Plan {
    user: User,
    /// The OpenClaw config file.
    config: PathBuf,
    /// Its text now (`None`: it does not exist).
    text: Option<String>,
    /// The text keep's own editor would write.
    new_text: String,
    /// The provider as it should be.
    provider: Value,
    /// Whether the provider must change.
    provider_changes: bool,
    /// The resolver copy.
    bin: PathBuf,
    /// Why the copy must be (re)placed, if it must.
    bin_change: Option<&'static str>,
    /// The running binary's bytes.
    exe: Vec<u8>,
    exe_path: PathBuf,
    /// The agent config, loaded.
    agent: AgentConfig,
}

fn setup(args: SetupArgs) -> anyhow::Result<u8> {
    if !valid_alias(&args.provider) {
        return Err(usage(format!(
            "--provider {:?}: OpenClaw's provider aliases match ^[a-z][a-z0-9_-]{{0,63}}$; write e.g. keep",
            args.provider
        )));
    }
    let plan = plan(&args)?;
    let cli = if args.edit_file {
        None
    } else {
        find_cli(args.openclaw.as_deref())?
    };
    let comments = plan.text.as_deref().is_some_and(json5::has_comments);
    let shown = plan.config.display().to_string();

    if args.dry_run {
        print!("{}", dry_run(&plan, cli.is_some() && !comments));
        return Ok(0);
    }
    if plan.bin_change.is_none() && !plan.provider_changes {
        println!(
            "already set up: {} is current and {shown} has secrets.providers.{} — nothing changed",
            plan.bin.display(),
            args.provider
        );
        print!("{}", refs_text(&plan.agent, &args.provider));
        return Ok(0);
    }
    if let Some(why) = plan.bin_change {
        install_binary(&plan)?;
        println!(
            "resolver: {} {} (a copy of {}, mode 0755, owned by {})",
            plan.bin.display(),
            why,
            plan.exe_path.display(),
            plan.user.name
        );
    } else {
        println!("resolver: {} is current", plan.bin.display());
    }
    if plan.provider_changes {
        let path = format!("secrets.providers.{}", args.provider);
        match &cli {
            Some(cli) if !comments => {
                config_set(cli, &plan, &path)?;
                println!("provider: {path} set in {shown} by `openclaw config set`");
            }
            _ => {
                let backup = write_config(&plan)?;
                match &backup {
                    Some(b) => println!(
                        "provider: {path} set in {shown} (only that member changed; the old file is {})",
                        b.display()
                    ),
                    None => println!("provider: {path} written to the new file {shown}"),
                }
                if comments && cli.is_some() {
                    println!(
                        "          (edited by keep because the file has comments, which `openclaw config set` would drop)"
                    );
                }
                if let Some(cli) = &cli
                    && let Err(e) = validate(cli, &plan)
                {
                    restore(&plan, backup.as_deref());
                    return Err(e);
                }
            }
        }
    } else {
        println!(
            "provider: secrets.providers.{} in {shown} is current",
            args.provider
        );
    }
    print!("{}", refs_text(&plan.agent, &args.provider));
    println!(
        "\nCheck it: openclaw secrets audit --allow-exec (as {}), or keep doctor --openclaw {shown}",
        plan.user.name
    );
    Ok(0)
}

/// OpenClaw's alias grammar.
fn valid_alias(a: &str) -> bool {
    let mut chars = a.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && a.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn plan(args: &SetupArgs) -> anyhow::Result<Plan> {
    let me = User::current();
    let env = |k: &str| std::env::var_os(k);
    let explicit_config = args
        .openclaw_config
        .as_ref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
    let user = gateway_user(args, &me, explicit_config.as_deref())?;
    let config = explicit_config
        .unwrap_or_else(|| oc::config_path(env, &user.home, args.profile.as_deref()));

    let agent_yaml = std::path::absolute(&args.config)
        .with_context(|| format!("cannot make {} absolute", args.config.display()))?;
    let agent = AgentConfig::load(&agent_yaml).map_err(|e| usage(e.to_string()))?;

    let text = match std::fs::read_to_string(&config) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(usage(format!("cannot read {}: {e}", config.display()))),
    };
    let current = match &text {
        Some(t) => json5::parse(t)
            .map_err(|e| {
                usage(format!(
                    "{}: not valid JSON5 at {e}; fix it first (OpenClaw cannot read it either)",
                    config.display()
                ))
            })?
            .to_json(),
        None => json!({}),
    };
    let bin_dir = args
        .bin_dir
        .as_ref()
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
        .unwrap_or_else(|| user.home.join(".local/lib/keep"));
    let bin = bin_dir.join("keep");
    let old = current["secrets"]["providers"].get(&args.provider);
    let provider = desired_provider(old, &bin, &agent_yaml);
    let provider_changes = old != Some(&provider);
    let new_text = json5::set(
        text.as_deref().unwrap_or(""),
        &["secrets", "providers", &args.provider],
        &provider,
    )
    .map_err(|e| usage(format!("{}: {e}", config.display())))?;

    let exe_path = std::env::current_exe().context("cannot find the running keep binary")?;
    let exe =
        std::fs::read(&exe_path).with_context(|| format!("cannot read {}", exe_path.display()))?;
    let bin_change = binary_change(&bin, &exe, &user);
    Ok(Plan {
        user,
        config,
        text,
        new_text,
        provider,
        provider_changes,
        bin,
        bin_change,
        exe,
        exe_path,
        agent,
    })
}

/// Who the Gateway runs as. Root setting up keep for its own Gateway is fine; root wiring a
/// root-owned copy into an ordinary user's OpenClaw is the mistake this refuses.
fn gateway_user(
    args: &SetupArgs,
    me: &User,
    explicit_config: Option<&Path>,
) -> anyhow::Result<User> {
    if let Some(name) = &args.user {
        let user = User::by_name(name)
            .ok_or_else(|| usage(format!("--user {name}: no such user on this host")))?;
        if me.uid != 0 && user.uid != me.uid {
            return Err(usage(format!(
                "--user {name}: only root can set up keep for another user; run it as {name} (sudo -u {name} keep openclaw setup …)"
            )));
        }
        return Ok(user);
    }
    if me.uid != 0 {
        return Ok(me.clone());
    }
    // Root without --user: does the Gateway look like someone else's?
    let mut hint: Option<(String, String)> = None;
    if let Some(s) = std::env::var("SUDO_USER")
        .ok()
        .filter(|s| !s.is_empty() && s != "root")
    {
        hint = Some((s.clone(), format!("sudo was run by {s} (SUDO_USER)")));
    }
    let env = |k: &str| std::env::var_os(k);
    let config = explicit_config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| oc::config_path(env, &me.home, args.profile.as_deref()));
    if hint.is_none() {
        for p in [Some(config.as_path()), config.parent()]
            .into_iter()
            .flatten()
        {
            if let Ok(m) = std::fs::metadata(p)
                && m.uid() != 0
            {
                let name = User::by_uid(m.uid()).map_or(m.uid().to_string(), |u| u.name);
                hint = Some((name.clone(), format!("{} is owned by {name}", p.display())));
                break;
            }
        }
    }
    match hint {
        Some((name, why)) => Err(usage(format!(
            "refusing to run as root for a Gateway that runs as {name} ({why}): OpenClaw runs only a command owned by its own user, so a copy owned by root would fail every SecretRef. Run it as that user (sudo -u {name} keep openclaw setup …), or say whose Gateway it is: keep openclaw setup --user {name} …"
        ))),
        None => Ok(me.clone()),
    }
}

/// The provider as setup writes it: the old one's other settings kept, the four that make
/// keep work set.
fn desired_provider(old: Option<&Value>, bin: &Path, agent_yaml: &Path) -> Value {
    let mut p = old
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    p["source"] = json!("exec");
    p["command"] = json!(bin);
    p["args"] = json!(["openclaw-resolver", "--config", agent_yaml]);
    p["jsonOnly"] = json!(true);
    // A trustedDirs that does not hold the copy would make OpenClaw refuse it.
    let dir = bin.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Some(dirs) = p.get_mut("trustedDirs").and_then(Value::as_array_mut)
        && !dirs.is_empty()
        && !dirs
            .iter()
            .filter_map(Value::as_str)
            .any(|d| bin.starts_with(d))
    {
        dirs.push(json!(dir));
    }
    p
}

/// Why the copy at `bin` must be (re)written for `user`, or `None` when it is right.
fn binary_change(bin: &Path, exe: &[u8], user: &User) -> Option<&'static str> {
    let Ok(m) = std::fs::symlink_metadata(bin) else {
        return Some("installed");
    };
    if m.file_type().is_symlink() {
        return Some("replaced (it was a symlink)");
    }
    if !m.is_file() {
        return Some("replaced (it was not a regular file)");
    }
    if m.uid() != user.uid {
        return Some("replaced (it was owned by someone else)");
    }
    if m.mode() & 0o7777 != 0o755 {
        return Some("replaced (its mode was not 0755)");
    }
    match std::fs::read(bin) {
        Ok(old) if old == exe => None,
        _ => Some("upgraded (its content differed)"),
    }
}

/// Creates the copy's directory (owned by the user, not group/world-writable) and writes the
/// copy atomically.
fn install_binary(plan: &Plan) -> anyhow::Result<()> {
    let dir = plan.bin.parent().unwrap_or(Path::new("/"));
    let owner = (crate_euid() == 0).then_some(&plan.user);
    create_dirs(dir, 0o755, owner)?;
    let m = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if m.uid() != plan.user.uid || m.mode() & 0o022 != 0 {
        return Err(usage(format!(
            "{} is owned by uid {} with mode {:04o}: the resolver copy needs a directory owned by {} that nobody else can write (another user could swap the file); use --bin-dir, or chown {} {} && chmod go-w {}",
            dir.display(),
            m.uid(),
            m.mode() & 0o7777,
            plan.user.name,
            plan.user.name,
            dir.display(),
            dir.display()
        )));
    }
    keep_agent::sink::write_atomic(&plan.bin, &plan.exe, 0o755, owner.map(|u| u.uid))
        .with_context(|| format!("cannot install {}", plan.bin.display()))?;
    if let Some(u) = owner {
        std::os::unix::fs::chown(&plan.bin, Some(u.uid), Some(u.gid))
            .with_context(|| format!("cannot chown {}", plan.bin.display()))?;
    }
    Ok(())
}

fn crate_euid() -> u32 {
    oc::euid()
}

/// `mkdir -p` with `mode` for the directories it creates, given to `owner` when set.
fn create_dirs(dir: &Path, mode: u32, owner: Option<&User>) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d {
        if p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        d = p.parent();
    }
    for p in missing.iter().rev() {
        std::fs::create_dir(p).with_context(|| format!("cannot create {}", p.display()))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {}", p.display()))?;
        if let Some(u) = owner {
            std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))
                .with_context(|| format!("cannot chown {}", p.display()))?;
        }
    }
    Ok(())
}

/// Writes the edited config atomically (same mode, owned by the user), after a backup of the
/// old one; returns the backup's path.
fn write_config(plan: &Plan) -> anyhow::Result<Option<PathBuf>> {
    let owner = (crate_euid() == 0).then_some(&plan.user);
    let dir = plan.config.parent().unwrap_or(Path::new("/"));
    // OpenClaw keeps its state dir private; so does setup when it creates it.
    create_dirs(dir, 0o700, owner)?;
    let mode = std::fs::metadata(&plan.config).map_or(0o600, |m| m.mode() & 0o777);
    let backup = match &plan.text {
        Some(old) => {
            let mut name = plan.config.file_name().unwrap_or_default().to_os_string();
            name.push(".keep-backup");
            let b = plan.config.with_file_name(name);
            keep_agent::sink::write_atomic(&b, old.as_bytes(), mode, owner.map(|u| u.uid))
                .with_context(|| format!("cannot write the backup {}", b.display()))?;
            Some(b)
        }
        None => None,
    };
    keep_agent::sink::write_atomic(
        &plan.config,
        plan.new_text.as_bytes(),
        mode,
        owner.map(|u| u.uid),
    )
    .with_context(|| format!("cannot write {}", plan.config.display()))?;
    if let Some(u) = owner {
        for p in [Some(&plan.config), backup.as_ref()].into_iter().flatten() {
            std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))
                .with_context(|| format!("cannot chown {}", p.display()))?;
        }
    }
    Ok(backup)
}

/// Puts the old config back after OpenClaw rejected the new one.
fn restore(plan: &Plan, backup: Option<&Path>) {
    let result = match (backup, &plan.text) {
        (Some(b), Some(_)) => std::fs::rename(b, &plan.config),
        _ => std::fs::remove_file(&plan.config),
    };
    if let Err(e) = result {
        eprintln!(
            "keep openclaw setup: could not restore {}: {e}",
            plan.config.display()
        );
    }
}

/// The `openclaw` CLI: `--openclaw`, else `openclaw` on PATH, else none.
fn find_cli(given: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = given {
        if !p.exists() {
            return Err(usage(format!(
                "--openclaw {}: no such file; give the path of the openclaw CLI, or leave --openclaw out to edit the config file directly",
                p.display()
            )));
        }
        return Ok(Some(p.to_path_buf()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    Ok(std::env::split_paths(&path)
        .map(|d| d.join("openclaw"))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)))
}

/// `openclaw ARGS` as the Gateway user, on the config setup resolved.
fn openclaw(cli: &Path, plan: &Plan, args: &[OsString]) -> anyhow::Result<std::process::Output> {
    let mut cmd = Command::new(cli);
    cmd.args(args)
        .env("OPENCLAW_CONFIG_PATH", &plan.config)
        .stdin(Stdio::null());
    if crate_euid() == 0 && plan.user.uid != 0 {
        // OpenClaw's trust checks compare the command's owner with its own uid: it must run
        // as the Gateway user to accept that user's copy.
        cmd.uid(plan.user.uid)
            .gid(plan.user.gid)
            .env("HOME", &plan.user.home)
            .env("USER", &plan.user.name)
            .env("LOGNAME", &plan.user.name)
            .env_remove("SUDO_USER")
            .current_dir(&plan.user.home);
    }
    cmd.output()
        .with_context(|| format!("cannot run {}", cli.display()))
}

/// `openclaw config set secrets.providers.ALIAS '<json>' --strict-json`.
fn config_set(cli: &Path, plan: &Plan, path: &str) -> anyhow::Result<()> {
    let owner = (crate_euid() == 0).then_some(&plan.user);
    if plan.text.is_none() {
        create_dirs(plan.config.parent().unwrap_or(Path::new("/")), 0o700, owner)?;
    }
    let out = openclaw(
        cli,
        plan,
        &[
            "config".into(),
            "set".into(),
            path.into(),
            plan.provider.to_string().into(),
            "--strict-json".into(),
        ],
    )?;
    if !out.status.success() {
        return Err(anyhow::anyhow!(
            "`openclaw config set {path}` refused the provider (nothing was written to {}):\n{}{}",
            plan.config.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// `openclaw config validate --json` after keep's own edit: the schema and the command trust
/// checks, as OpenClaw itself runs them.
fn validate(cli: &Path, plan: &Plan) -> anyhow::Result<()> {
    let out = openclaw(
        cli,
        plan,
        &["config".into(), "validate".into(), "--json".into()],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout
        .find('{')
        .and_then(|i| serde_json::from_str::<Value>(stdout[i..].trim()).ok());
    match report {
        Some(r) if r["valid"] == true => Ok(()),
        Some(r) => Err(anyhow::anyhow!(
            "OpenClaw rejects the new config, so {} was restored: {}",
            plan.config.display(),
            r["issues"]
                .as_array()
                .map(|i| {
                    i.iter()
                        .map(|x| {
                            format!(
                                "{}: {}",
                                x["path"].as_str().unwrap_or(""),
                                x["message"].as_str().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default()
        )),
        None if out.status.success() => Ok(()),
        None => Err(anyhow::anyhow!(
            "`openclaw config validate` failed, so {} was restored:\n{}{}",
            plan.config.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// The `--dry-run` report: the copy, and a diff of the config.
fn dry_run(plan: &Plan, through_cli: bool) -> String {
    let mut s = String::from("keep openclaw setup --dry-run: nothing was written\n");
    let _ = writeln!(
        s,
        "resolver: {} {}",
        plan.bin.display(),
        match plan.bin_change {
            Some(why) => format!("would be {why}"),
            None => "is current".to_owned(),
        }
    );
    if plan.provider_changes {
        let _ = writeln!(
            s,
            "provider: {} would change{}:",
            plan.config.display(),
            if through_cli {
                " (through `openclaw config set`, which also reformats the file)"
            } else {
                ""
            }
        );
        s.push_str(&diff(
            plan.text.as_deref().unwrap_or(""),
            &plan.new_text,
            &plan.config,
        ));
    } else {
        let _ = writeln!(s, "provider: {} is current", plan.config.display());
    }
    s
}

/// A unified diff of one changed region (setup's edits are one member), with 2 lines of
/// context.
fn diff(old: &str, new: &str, path: &Path) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let from = prefix.saturating_sub(2);
    let (a_end, b_end) = (a.len() - suffix, b.len() - suffix);
    let to_a = (a_end + 2).min(a.len());
    let mut s = format!(
        "--- {0}\n+++ {0}\n@@ -{1},{2} +{1},{3} @@\n",
        path.display(),
        from + 1,
        to_a - from,
        (b_end + 2).min(b.len()) - from
    );
    for l in &a[from..prefix] {
        let _ = writeln!(s, " {l}");
    }
    for l in &a[prefix..a_end] {
        let _ = writeln!(s, "-{l}");
    }
    for l in &b[prefix..b_end] {
        let _ = writeln!(s, "+{l}");
    }
    for l in &a[a_end..to_a] {
        let _ = writeln!(s, " {l}");
    }
    s
}

/// A SecretRef line for each key the agent config's `secrets` names.
fn refs_text(agent: &AgentConfig, alias: &str) -> String {
    let mut s = String::new();
    if agent.secrets.is_empty() {
        let _ = writeln!(
            s,
            "\nSecretRefs: {} names no secrets; refer to a key as {{\"source\": \"exec\", \"provider\": \"{alias}\", \"id\": \"PATH#KEY\"}} (PATH under the KV mount `secret`)",
            agent.path.display()
        );
        return s;
    }
    let _ = writeln!(
        s,
        "\nSecretRefs for the secrets {} names (use one wherever OpenClaw takes a SecretRef, e.g. models.providers.openai.apiKey):",
        agent.path.display()
    );
    for spec in &agent.secrets {
        let mut keys: Vec<&str> = spec.env.values().map(String::as_str).collect();
        if let Some(f) = &spec.file
            && let Format::Value { key } = &f.format
        {
            keys.push(key.as_str());
        }
        keys.sort_unstable();
        keys.dedup();
        let note = if spec.mount != DEFAULT_MOUNT {
            format!(
                "   (mount {}: needs a second provider with --mount {} in its args)",
                spec.mount, spec.mount
            )
        } else {
            String::new()
        };
        if keys.is_empty() {
            let _ = writeln!(
                s,
                "  {}{note}\n    (no key named: use {}#KEY; a bare path works only for a secret with one key)",
                json!({"source": "exec", "provider": alias, "id": format!("{}#KEY", spec.path)}),
                spec.path
            );
        }
        for k in keys {
            let _ = writeln!(
                s,
                "  {}{note}",
                json!({"source": "exec", "provider": alias, "id": format!("{}#{k}", spec.path)})
            );
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_keeps_other_settings_and_widens_trusted_dirs() {
        let bin = Path::new("/home/u/.local/lib/keep/keep");
        let yaml = Path::new("/etc/keep/agent.yaml");
        let p = desired_provider(None, bin, yaml);
        assert_eq!(
            p,
            json!({"source": "exec", "command": bin, "jsonOnly": true,
                   "args": ["openclaw-resolver", "--config", yaml]})
        );
        let old = json!({"source": "exec", "command": "/usr/local/bin/keep", "timeoutMs": 3000,
                         "trustedDirs": ["/usr/local/bin"]});
        let p = desired_provider(Some(&old), bin, yaml);
        assert_eq!(p["timeoutMs"], 3000);
        assert_eq!(
            p["trustedDirs"],
            json!(["/usr/local/bin", "/home/u/.local/lib/keep"])
        );
        assert_eq!(desired_provider(Some(&p), bin, yaml), p);
    }

    #[test]
    fn aliases_follow_openclaws_grammar() {
        assert!(valid_alias("keep"));
        assert!(valid_alias("keep-2_b"));
        assert!(!valid_alias("Keep"));
        assert!(!valid_alias("2keep"));
        assert!(!valid_alias(""));
    }

    #[test]
    fn the_diff_shows_the_one_changed_region() {
        let d = diff(
            "{\n  a: 1,\n  b: 2,\n}\n",
            "{\n  a: 1,\n  b: 2,\n  c: 3\n}\n",
            Path::new("x.json"),
        );
        assert_eq!(
            d,
            "--- x.json\n+++ x.json\n@@ -2,3 +2,4 @@\n   a: 1,\n   b: 2,\n+  c: 3\n }\n"
        );
    }
}
