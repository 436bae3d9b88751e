//! `keep demo`: keep's main job end to end in a temporary directory, then cleaned up.
//!
//! It runs what a newcomer would type after `keep init`: a lab (offline root, intermediate,
//! vault and agent certificates, configs, provisioned storage), the vault on the embedded
//! SQLite default on 127.0.0.1, and an agent reading its secret over mutual TLS in the three
//! forms — `keep agent --once` (a file on disk), `keep agent exec` (an environment variable
//! of a child process) and `keep openclaw-resolver` (OpenClaw's exec provider protocol).
//! Values are shown masked. Each step runs this same binary as a separate process, exactly as
//! the printed commands would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// `keep demo` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the lab in this directory instead of deleting it afterwards (must not exist or be
    /// empty); then `keep server --config DIR/keep-server.yaml` runs it again.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// A `keep server` child, stopped with SIGTERM (then SIGKILL) on drop.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn step(n: u32, title: &str, command: &str) {
    println!("\n[{n}] {title}\n    $ {command}");
}

/// `sk-…` → `demo-1…` and its length: enough to recognise, nothing to copy.
fn mask(v: &str) -> String {
    let head: String = v.chars().take(6).collect();
    format!("{head}… ({} chars, masked)", v.chars().count())
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

fn keep_cmd(exe: &Path, dir: &Path) -> Command {
    let mut c = Command::new(exe);
    c.current_dir(dir).env_remove("KEEP_LOG");
    c
}

/// Runs `keep demo`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let started = Instant::now();
    let exe = std::env::current_exe().context("cannot find the keep binary")?;
    let tmp;
    let dir = match &args.keep {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("keep-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            tmp.path().join("lab")
        }
    };
    let port = free_port()?;
    let agent = "openclaw-demo";

    step(
        1,
        "a lab: offline root CA, intermediate, vault + agent certificates, configs, storage",
        &format!(
            "keep init {} --agent {agent} --listen 127.0.0.1:{port}",
            dir.display()
        ),
    );
    let lab = crate::init::create(
        &dir,
        &[],
        &[agent.to_owned()],
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        crate::init::RootPassword::Generate,
    )?;
    let (_, agent_yaml) = lab
        .agents
        .first()
        .cloned()
        .context("keep init made no agent")?;
    println!(
        "    made {} (every key file 0600; the root key is in offline/)",
        lab.dir.display()
    );

    step(
        2,
        "the vault: mTLS on 127.0.0.1, embedded SQLite, audit log on",
        &format!("keep server --config {}", lab.server_config.display()),
    );
    let log_path = lab.dir.join("server.log");
    let log = std::fs::File::create(&log_path)?;
    let _server = ServerProcess(
        keep_cmd(&exe, &lab.dir)
            .args(["server", "--config"])
            .arg(&lab.server_config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start keep server")?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the server did not start listening within 20 s; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("    listening on {}", lab.url);

    step(
        3,
        "the agent fetches its secret over mTLS and writes it atomically (init-container style)",
        &format!("keep agent --once --config {}", agent_yaml.display()),
    );
    let out = keep_cmd(&exe, &lab.dir)
        .args(["agent", "--once", "--config"])
        .arg(&agent_yaml)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "keep agent --once failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = agent_yaml
        .parent()
        .map(|p| p.join("run/demo.json"))
        .context("agent config has no directory")?;
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?,
    )?;
    let value = json["api_key"].as_str().unwrap_or_default().to_owned();
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&file)?.permissions().mode() & 0o777
    };
    println!(
        "    {} (mode {mode:04o}): api_key = {}",
        file.display(),
        mask(&value)
    );

    step(
        4,
        "the same secret as an environment variable of a child process",
        &format!(
            "keep agent exec --config {} -- sh -c 'printf %s \"$DEMO_API_KEY\" | wc -c'",
            agent_yaml.display()
        ),
    );
    let out = keep_cmd(&exe, &lab.dir)
        .args(["agent", "exec", "--config"])
        .arg(&agent_yaml)
        .args(["--", "sh", "-c", "printf %s \"$DEMO_API_KEY\" | wc -c"])
        .stdin(Stdio::null())
        .output()?;
    let chars = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || chars != value.chars().count().to_string() {
        bail!(
            "keep agent exec did not pass DEMO_API_KEY (child printed {chars:?}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("    the child saw DEMO_API_KEY: {chars} chars, exit code passed through");

    let id = format!("agents/{agent}/demo#api_key");
    let request = format!(
        r#"{{"protocolVersion":1,"provider":"keep","ids":["{id}","agents/{agent}/missing#x"]}}"#
    );
    step(
        5,
        "OpenClaw's exec SecretRef provider (what OpenClaw runs per lookup)",
        &format!(
            "echo '{request}' | keep openclaw-resolver --config {}",
            agent_yaml.display()
        ),
    );
    let t = Instant::now();
    let mut child = keep_cmd(&exe, &lab.dir)
        .args(["openclaw-resolver", "--config"])
        .arg(&agent_yaml)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(request.as_bytes())?;
    let out = child.wait_with_output()?;
    let took = t.elapsed();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the resolver's answer is not JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if answer["values"][&id] != value.as_str() {
        bail!(
            "the resolver did not return the secret: {}",
            answer["errors"]
        );
    }
    println!(
        "    values.{id} = {}\n    errors: {}\n    answered in {} ms",
        mask(&value),
        answer["errors"],
        took.as_millis()
    );

    step(
        6,
        "the doctor walks every step an agent needs and says what is wrong (here: nothing)",
        &format!("keep doctor --config {}", agent_yaml.display()),
    );
    let out = keep_cmd(&exe, &lab.dir)
        .args(["doctor", "--config"])
        .arg(&agent_yaml)
        .stdin(Stdio::null())
        .output()?;
    let report = String::from_utf8_lossy(&out.stdout);
    let summary = report
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    if !out.status.success() {
        bail!("keep doctor found a problem:\n{report}");
    }
    println!("    {summary}");

    println!(
        "\nDone in {:.1} s: an agent read its secret from the vault over mutual TLS, three ways.",
        started.elapsed().as_secs_f64()
    );
    match &args.keep {
        Some(d) => println!(
            "The lab stays in {}; run it again with: keep server --config {}/keep-server.yaml",
            d.display(),
            d.display()
        ),
        None => println!("The temporary lab is removed now. `keep init DIR` makes one to keep."),
    }
    Ok(0)
}
