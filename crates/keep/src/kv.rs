//! `keep kv …`: KV v2 secrets, shaped like `vault kv …`.
//!
//! Paths are `MOUNT/PATH` (`secret/openclaw/llm`), or `PATH` with `--mount`. Values for `put`
//! and `patch` come as `KEY=VALUE`, `KEY=@FILE` or `KEY=-` (standard input), or as one JSON
//! object from `-` or `@FILE.json`, so a secret never has to be typed on the command line
//! (where shell history and `ps` would see it). Values are printed only by `kv get`, whose job
//! that is; no error message ever contains one.
//!
//! Exit status: 0 success, 1 server or network failure, 2 nothing at that path (`get`, `list`,
//! `metadata get`), 64 usage.

use std::collections::BTreeSet;
use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use keep_agent::client::{ClientError, VaultClient};
use serde_json::{Map, Value};

use crate::connect::{self, ConnectArgs, Format, NOT_FOUND};
use crate::exit::usage;

/// Arguments of `keep kv`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The KV v2 mount; then paths are relative to it (default: the first path segment).
    #[arg(long, global = true, value_name = "MOUNT")]
    mount: Option<String>,
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Read a secret (the latest version, or --version N).
    ///
    ///   keep kv get secret/openclaw/llm
    ///
    ///   keep kv get --field api_key secret/openclaw/llm
    ///
    /// Exit status 2 when there is no secret (or the version is deleted or destroyed).
    #[command(verbatim_doc_comment, disable_version_flag = true)]
    Get(GetArgs),
    /// Write a new version of a secret (replacing all its keys).
    ///
    ///   keep kv put secret/openclaw/llm api_key=@llm-key.txt model=gpt-5
    ///
    ///   printf %s "$KEY" | keep kv put secret/openclaw/llm api_key=-
    ///
    /// KEY=@FILE reads the value from FILE and KEY=- from standard input (one trailing newline
    /// is dropped, as for password files); a lone - or @FILE.json reads the whole secret as a
    /// JSON object, byte-exact.
    #[command(verbatim_doc_comment)]
    Put(WriteArgs),
    /// Merge keys into the latest version, keeping the others.
    ///
    /// A JSON merge patch: to remove a key, give a JSON object (- or @FILE.json) with that key
    /// set to null.
    Patch(WriteArgs),
    /// List the keys under a path (folders end in /).
    List(ListArgs),
    /// Soft-delete the latest version, or --versions (undelete restores them).
    #[command(disable_version_flag = true)]
    Delete(DeleteArgs),
    /// Restore soft-deleted versions.
    #[command(disable_version_flag = true)]
    Undelete(VersionsArgs),
    /// Erase versions for good (their data cannot be restored).
    #[command(disable_version_flag = true)]
    Destroy(VersionsArgs),
    /// A secret's metadata: versions, max_versions, custom_metadata …
    Metadata(MetadataArgs),
}

#[derive(Debug, clap::Args)]
struct GetArgs {
    /// The version to read (default: the latest).
    #[arg(long, value_name = "N")]
    version: Option<u64>,
    /// Print only this key's value (raw, for scripts).
    #[arg(long, value_name = "KEY")]
    field: Option<String>,
    /// MOUNT/PATH, e.g. secret/openclaw/llm.
    path: String,
}

#[derive(Debug, clap::Args)]
struct WriteArgs {
    /// Check-and-set: write only if the current version is N (0: only if the secret does not
    /// exist yet).
    #[arg(long, value_name = "N")]
    cas: Option<u64>,
    /// MOUNT/PATH, e.g. secret/openclaw/llm.
    path: String,
    /// KEY=VALUE, KEY=@FILE, KEY=- (stdin); or a lone - / @FILE.json with a JSON object.
    #[arg(required = true, value_name = "DATA")]
    data: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// MOUNT[/PATH], e.g. secret or secret/openclaw.
    path: String,
}

#[derive(Debug, clap::Args)]
struct DeleteArgs {
    /// Versions to delete (comma-separated); default: the latest.
    #[arg(long, value_delimiter = ',', value_name = "N,…")]
    versions: Vec<u64>,
    /// MOUNT/PATH.
    path: String,
}

#[derive(Debug, clap::Args)]
struct VersionsArgs {
    /// Versions (comma-separated).
    #[arg(long, value_delimiter = ',', required = true, value_name = "N,…")]
    versions: Vec<u64>,
    /// MOUNT/PATH.
    path: String,
}

#[derive(Debug, clap::Args)]
struct MetadataArgs {
    #[command(subcommand)]
    cmd: MetadataCmd,
}

#[derive(Debug, Subcommand)]
enum MetadataCmd {
    /// Show a secret's metadata and its versions.
    Get(PathArg),
    /// Set max_versions, cas_required, delete_version_after or custom_metadata.
    Put(MetadataPutArgs),
    /// Delete a secret with all its versions and metadata (cannot be undone).
    Delete(PathArg),
}

#[derive(Debug, clap::Args)]
struct PathArg {
    /// MOUNT/PATH.
    path: String,
}

#[derive(Debug, clap::Args)]
struct MetadataPutArgs {
    /// Versions to keep (0: the mount's setting).
    #[arg(long, value_name = "N")]
    max_versions: Option<u64>,
    /// Require check-and-set (--cas) on every write.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    cas_required: Option<bool>,
    /// Delete versions this long after they are written (e.g. 720h; 0s: never).
    #[arg(long, value_name = "DURATION")]
    delete_version_after: Option<String>,
    /// KEY=VALUE to set in custom_metadata (repeatable; replaces the whole map).
    #[arg(long, value_name = "KEY=VALUE")]
    custom_metadata: Vec<String>,
    /// MOUNT/PATH.
    path: String,
}

/// Where a secret lives: mount and path inside it.
struct Target {
    mount: String,
    path: String,
}

impl Target {
    fn new(mount: Option<&str>, given: &str, allow_root: bool) -> anyhow::Result<Target> {
        let g = given.trim_matches('/');
        let (mount, path) = match mount {
            Some(m) => (m.trim_matches('/').to_owned(), g.to_owned()),
            None => match g.split_once('/') {
                Some((m, p)) => (m.to_owned(), p.to_owned()),
                None => (g.to_owned(), String::new()),
            },
        };
        if mount.is_empty() {
            return Err(usage(
                "give the secret as MOUNT/PATH, e.g. secret/openclaw/llm (or --mount secret openclaw/llm)",
            ));
        }
        if path.is_empty() && !allow_root {
            return Err(usage(format!(
                "{given:?} names the mount only; give MOUNT/PATH, e.g. {mount}/openclaw/llm"
            )));
        }
        Ok(Target { mount, path })
    }

    /// `secret/data/openclaw/llm` style, for messages.
    fn api(&self, area: &str) -> String {
        if self.path.is_empty() {
            format!("{}/{area}", self.mount)
        } else {
            format!("{}/{area}/{}", self.mount, self.path)
        }
    }
}

/// Drops one trailing newline (LF or CRLF): `echo $KEY | …` and editors add one, and a key
/// with a stray newline fails in ways that are hard to see.
fn strip_one_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

fn read_stdin(what: &str) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {what} from standard input"))?;
    String::from_utf8(buf).map_err(|_| {
        usage(format!(
            "{what} from standard input is not UTF-8 text; base64-encode binary values"
        ))
    })
}

fn read_file(path: &str, what: &str) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(path).map_err(|e| usage(format!("cannot read {what} from {path}: {e}")))?;
    String::from_utf8(bytes).map_err(|_| {
        usage(format!(
            "{what} in {path} is not UTF-8 text; base64-encode binary values"
        ))
    })
}

fn json_object(text: &str, from: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(usage(format!("{from} must hold a JSON object"))),
        // serde's message gives line and column only, never the text.
        Err(e) => Err(usage(format!("{from} is not valid JSON: {e}"))),
    }
}

/// Parses the DATA arguments of `put` and `patch`. Error messages name the argument by
/// position and key, never by value: a mistyped argument may be the secret itself.
fn parse_data(args: &[String]) -> anyhow::Result<Map<String, Value>> {
    if let [one] = args {
        if one == "-" {
            let text = read_stdin("the secret")?;
            return json_object(&text, "standard input");
        }
        if let Some(file) = one.strip_prefix('@')
            && !one.contains('=')
        {
            let text = read_file(file, "the secret")?;
            return json_object(&text, file);
        }
    }
    let mut out = Map::new();
    let mut stdin_used = false;
    for (i, arg) in args.iter().enumerate() {
        let Some((key, raw)) = arg.split_once('=') else {
            return Err(usage(format!(
                "data argument {} is not KEY=VALUE (not shown, in case it is a secret); use KEY=VALUE, KEY=@FILE or KEY=-",
                i + 1
            )));
        };
        if key.is_empty() {
            return Err(usage(format!(
                "data argument {} has an empty key; use KEY=VALUE",
                i + 1
            )));
        }
        let value = if raw == "-" {
            if stdin_used {
                return Err(usage(format!(
                    "key {key:?}: only one value can come from standard input (KEY=-)"
                )));
            }
            stdin_used = true;
            strip_one_newline(read_stdin(&format!("the value of {key:?}"))?)
        } else if let Some(file) = raw.strip_prefix('@') {
            strip_one_newline(read_file(file, &format!("the value of {key:?}"))?)
        } else {
            raw.to_owned()
        };
        if out.insert(key.to_owned(), Value::String(value)).is_some() {
            return Err(usage(format!("key {key:?} is given twice")));
        }
    }
    Ok(out)
}

/// Runs `keep kv …`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let format = args.conn.format;
    let mount = args.mount.clone();
    let m = mount.as_deref();
    let (client, _) = args.conn.client()?;
    match args.cmd {
        Cmd::Get(a) => get(&client, format, Target::new(m, &a.path, false)?, &a),
        Cmd::Put(a) => write(&client, format, Target::new(m, &a.path, false)?, &a, false),
        Cmd::Patch(a) => write(&client, format, Target::new(m, &a.path, false)?, &a, true),
        Cmd::List(a) => {
            let t = Target::new(m, &a.path, true)?;
            let api = format!("{}/", t.api("metadata"));
            match connect::block_on(async { Ok(client.kv_list(&t.mount, &t.path).await) })? {
                Ok(keys) => {
                    connect::print_list(&keys, format)?;
                    Ok(0)
                }
                Err(e) if e.is_not_found() => {
                    eprintln!("No value found at {api}");
                    Ok(NOT_FOUND)
                }
                Err(e) => Err(connect::client_error(e, Some(&format!("listing {api}")))),
            }
        }
        Cmd::Delete(a) => {
            let t = Target::new(m, &a.path, false)?;
            let versions = a.versions;
            run_ok(
                async {
                    if versions.is_empty() {
                        client.kv_delete_latest(&t.mount, &t.path).await
                    } else {
                        client
                            .kv_delete_versions(&t.mount, &t.path, &versions)
                            .await
                    }
                },
                &format!("deleting {}", t.api("data")),
            )?;
            if format == Format::Table {
                println!(
                    "Success! Data deleted (if it existed) at: {}",
                    t.api("data")
                );
            }
            Ok(0)
        }
        Cmd::Undelete(a) => {
            let t = Target::new(m, &a.path, false)?;
            run_ok(
                client.kv_undelete(&t.mount, &t.path, &a.versions),
                &format!("undeleting {}", t.api("data")),
            )?;
            if format == Format::Table {
                println!(
                    "Success! Restored version(s) {} of {}",
                    list_versions(&a.versions),
                    t.api("data")
                );
            }
            Ok(0)
        }
        Cmd::Destroy(a) => {
            let t = Target::new(m, &a.path, false)?;
            run_ok(
                client.kv_destroy(&t.mount, &t.path, &a.versions),
                &format!("destroying {}", t.api("data")),
            )?;
            if format == Format::Table {
                println!(
                    "Success! Destroyed version(s) {} of {}",
                    list_versions(&a.versions),
                    t.api("data")
                );
            }
            Ok(0)
        }
        Cmd::Metadata(a) => metadata(&client, format, m, a.cmd),
    }
}

fn list_versions(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// Runs a request whose answer carries nothing to show.
fn run_ok(
    fut: impl std::future::Future<Output = Result<(), ClientError>>,
    doing: &str,
) -> anyhow::Result<()> {
    connect::block_on(async { fut.await.map_err(|e| connect::client_error(e, Some(doing))) })
}

fn get(client: &VaultClient, format: Format, t: Target, a: &GetArgs) -> anyhow::Result<u8> {
    let api = t.api("data");
    let r = connect::block_on(async { Ok(client.kv_read(&t.mount, &t.path, a.version).await) })?;
    let r = match r {
        Ok(r) => r,
        Err(ClientError::Api {
            status: 404, data, ..
        }) => {
            eprintln!("{}", missing_message(&t, &api, data.as_ref()));
            return Ok(NOT_FOUND);
        }
        Err(e) => return Err(connect::client_error(e, Some(&format!("reading {api}")))),
    };
    let data = r.data();
    let secret = data.get("data").cloned().unwrap_or(Value::Null);
    if let Some(field) = &a.field {
        let Some(v) = secret.get(field) else {
            let keys: BTreeSet<&String> = secret
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            return Err(anyhow::anyhow!(
                "{api} has no key {field:?} (keys: {})",
                keys.into_iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        match (format, v) {
            (Format::Table, Value::String(s)) => {
                // Raw for scripts; a newline only for people at a terminal, so that
                // `> file` gets the exact value.
                if connect::stdout_is_terminal() {
                    println!("{s}");
                } else {
                    print!("{s}");
                }
            }
            (Format::Table, other) => println!("{other}"),
            (Format::Json, other) => connect::print_json(other)?,
        }
        return Ok(0);
    }
    match format {
        Format::Json => connect::print_json(&r.body)?,
        Format::Table => {
            connect::print_header("Secret Path");
            println!("{api}\n");
            connect::print_header("Metadata");
            connect::print_table(&connect::object_rows(
                data.get("metadata").unwrap_or(&Value::Null),
            ));
            println!();
            connect::print_header("Data");
            connect::print_table(&connect::object_rows(&secret));
        }
    }
    Ok(0)
}

/// What to say for a 404 on a read: Vault's answer carries the version's metadata when the
/// version exists but is deleted or destroyed.
fn missing_message(t: &Target, api: &str, data: Option<&Value>) -> String {
    let meta = data.and_then(|d| d.get("metadata"));
    let version = meta.and_then(|m| m.get("version")).and_then(Value::as_u64);
    let destroyed = meta
        .and_then(|m| m.get("destroyed"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let deleted_at = meta
        .and_then(|m| m.get("deletion_time"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let whole = format!("{}/{}", t.mount, t.path);
    match (version, destroyed, deleted_at) {
        (Some(v), true, _) => format!("Version {v} of {whole} is destroyed; its data is gone."),
        (Some(v), false, Some(at)) => format!(
            "Version {v} of {whole} was deleted at {at}; `keep kv undelete --versions {v} {whole}` restores it."
        ),
        _ => format!("No value found at {api}"),
    }
}

fn write(
    client: &VaultClient,
    format: Format,
    t: Target,
    a: &WriteArgs,
    patch: bool,
) -> anyhow::Result<u8> {
    let data = parse_data(&a.data)?;
    let api = t.api("data");
    let r = connect::block_on(async {
        let r = if patch {
            client.kv_patch(&t.mount, &t.path, &data, a.cas).await
        } else {
            client.kv_write(&t.mount, &t.path, &data, a.cas).await
        };
        r.map_err(|e| {
            let doing = if patch { "patching" } else { "writing" };
            connect::client_error(e, Some(&format!("{doing} {api}")))
        })
    })?;
    connect::print_warnings(&r.warnings());
    match format {
        Format::Json => connect::print_json(&r.body)?,
        Format::Table => {
            connect::print_header("Secret Path");
            println!("{api}\n");
            connect::print_header("Metadata");
            connect::print_table(&connect::object_rows(r.data()));
        }
    }
    Ok(0)
}

fn metadata(
    client: &VaultClient,
    format: Format,
    mount: Option<&str>,
    cmd: MetadataCmd,
) -> anyhow::Result<u8> {
    match cmd {
        MetadataCmd::Get(a) => {
            let t = Target::new(mount, &a.path, false)?;
            let api = t.api("metadata");
            let r =
                connect::block_on(async { Ok(client.kv_metadata_read(&t.mount, &t.path).await) })?;
            let r = match r {
                Ok(r) => r,
                Err(e) if e.is_not_found() => {
                    eprintln!("No value found at {api}");
                    return Ok(NOT_FOUND);
                }
                Err(e) => return Err(connect::client_error(e, Some(&format!("reading {api}")))),
            };
            match format {
                Format::Json => connect::print_json(&r.body)?,
                Format::Table => {
                    let data = r.data();
                    connect::print_header("Metadata Path");
                    println!("{api}\n");
                    connect::print_header("Metadata");
                    let rows: Vec<_> = connect::object_rows(data)
                        .into_iter()
                        .filter(|(k, _)| k != "versions")
                        .collect();
                    connect::print_table(&rows);
                    if let Some(vs) = data.get("versions").and_then(Value::as_object) {
                        let mut vs: Vec<_> = vs.iter().collect();
                        vs.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(u64::MAX));
                        for (n, v) in vs {
                            println!();
                            connect::print_header(&format!("Version {n}"));
                            connect::print_table(&connect::object_rows(v));
                        }
                    }
                }
            }
            Ok(0)
        }
        MetadataCmd::Put(a) => {
            let t = Target::new(mount, &a.path, false)?;
            let mut fields = Map::new();
            if let Some(n) = a.max_versions {
                fields.insert("max_versions".into(), Value::from(n));
            }
            if let Some(b) = a.cas_required {
                fields.insert("cas_required".into(), Value::from(b));
            }
            if let Some(d) = &a.delete_version_after {
                fields.insert("delete_version_after".into(), Value::from(d.as_str()));
            }
            if !a.custom_metadata.is_empty() {
                let mut m = Map::new();
                for kv in &a.custom_metadata {
                    let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                        return Err(usage(format!(
                            "--custom-metadata takes KEY=VALUE, not {kv:?}"
                        )));
                    };
                    m.insert(k.to_owned(), Value::from(v));
                }
                fields.insert("custom_metadata".into(), Value::Object(m));
            }
            if fields.is_empty() {
                return Err(usage(
                    "nothing to set: give --max-versions, --cas-required, --delete-version-after or --custom-metadata",
                ));
            }
            let api = t.api("metadata");
            run_ok(
                client.kv_metadata_write(&t.mount, &t.path, &fields),
                &format!("writing {api}"),
            )?;
            if format == Format::Table {
                println!("Success! Data written to: {api}");
            }
            Ok(0)
        }
        MetadataCmd::Delete(a) => {
            let t = Target::new(mount, &a.path, false)?;
            let api = t.api("metadata");
            run_ok(
                client.kv_metadata_delete(&t.mount, &t.path),
                &format!("deleting {api}"),
            )?;
            if format == Format::Table {
                println!("Success! Data deleted (if it existed) at: {api}");
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn targets_split_the_mount_off() {
        let t = Target::new(None, "secret/openclaw/llm", false).unwrap();
        assert_eq!(
            (t.mount.as_str(), t.path.as_str()),
            ("secret", "openclaw/llm")
        );
        assert_eq!(t.api("data"), "secret/data/openclaw/llm");
        let t = Target::new(Some("secret"), "openclaw/llm", false).unwrap();
        assert_eq!(
            (t.mount.as_str(), t.path.as_str()),
            ("secret", "openclaw/llm")
        );
        assert!(Target::new(None, "secret", false).is_err());
        let t = Target::new(None, "secret/", true).unwrap();
        assert_eq!(t.api("metadata"), "secret/metadata");
    }

    #[test]
    fn data_arguments_parse_and_never_echo_values() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.txt");
        std::fs::write(&f, "from-file\n").unwrap();
        let m = parse_data(&strings(&["a=1", &format!("b=@{}", f.display()), "c=x=y"])).unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "from-file");
        assert_eq!(m["c"], "x=y");
        let e = parse_data(&strings(&["sk-very-secret"]))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("sk-very-secret"), "{e}");
        assert!(parse_data(&strings(&["a=1", "a=2"])).is_err());
        assert!(parse_data(&strings(&["=1"])).is_err());
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(strip_one_newline("k\n".into()), "k");
        assert_eq!(strip_one_newline("k\r\n".into()), "k");
        assert_eq!(strip_one_newline("k\n\n".into()), "k\n");
        assert_eq!(strip_one_newline("k".into()), "k");
    }
}
