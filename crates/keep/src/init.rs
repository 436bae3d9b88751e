//! `keep init [DIR]`: a complete lab in one command.
//!
//! ```text
//! DIR/                       0700
//!   offline/                 root CA: certificate, encrypted key, and (if generated) its
//!                            password — move this directory off the machine
//!   ca/                      root_ca.crt (the trust anchor everyone gets) and the
//!                            intermediate CA the server issues and renews with (encrypted key +
//!                            its password file)
//!   server/                  the vault's certificate (SANs: --host names, localhost,
//!                            127.0.0.1), its encrypted key and password file
//!   keep-server.yaml         listener (auto_renew on), storage, seal, audit, admins, pki —
//!                            paths relative
//!   data/                    keep.db, unseal.key, audit.log (made by `keep server init`)
//!   operator/                the break-glass admin's certificate and key, and operator.env
//!                            for the admin CLI
//!   agents/NAME/             per --agent: agent.crt (chain), agent.key (0600, unencrypted:
//!                            it belongs on a memory-backed mount), root_ca.crt, agent.yaml
//! ```
//!
//! The storage is initialized and provisioned offline: a policy confining each agent to
//! `secret/agents/<its common name>/*`, a cert auth role naming exactly the lab's agents, and a
//! demo secret per agent. So `keep server` and `keep agent` work on the output unchanged.
//! Every key file is 0600 (password files 0400), the root key is never referenced by the
//! server's config, and an existing non-empty DIR is refused without touching it.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use keep_pki::cert::{self, CertRequest, EkuChoice, Issuer, Profile};
use keep_pki::duration::TimeSpec;
use keep_pki::{KeyType, PrivateKey, Source};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::exit::usage;
use crate::files::{Mode, write_atomic};

/// `keep init` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  keep init claw-lab --host vault.claw.internal --agent openclaw-01\n  \
    keep server --config claw-lab/keep-server.yaml &\n  \
    keep agent --once --config claw-lab/agents/openclaw-01/agent.yaml"
)]
pub struct Args {
    /// Directory to create the lab in; must not exist or be empty.
    #[arg(default_value = "keep-lab")]
    pub dir: PathBuf,
    /// A DNS name or IP clients use to reach the vault (repeatable); localhost and 127.0.0.1
    /// are always in the server certificate. The first one goes into the agents' URL.
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Create an agent: a clientAuth certificate, its config and its own secret path
    /// (repeatable). Default: one agent named agent-01.
    #[arg(long = "agent", value_name = "NAME")]
    pub agents: Vec<String>,
    /// File holding the root CA key's password. Without it keep asks on a terminal, or (no
    /// terminal) generates one into DIR/offline/root.pass (0400).
    #[arg(long, value_name = "FILE")]
    pub root_password_file: Option<PathBuf>,
    /// Address the vault listens on.
    #[arg(long, default_value = "127.0.0.1:8200", value_name = "IP:PORT")]
    pub listen: std::net::SocketAddr,
}

/// What `keep init` made, for `keep demo` and tests.
#[derive(Debug)]
pub struct Lab {
    /// The lab directory.
    pub dir: PathBuf,
    /// `keep-server.yaml`.
    pub server_config: PathBuf,
    /// Per agent: (name, agent.yaml).
    pub agents: Vec<(String, PathBuf)>,
    /// The server URL the agents use.
    pub url: String,
}

/// How the root key's password is chosen.
pub enum RootPassword {
    /// From a file.
    File(PathBuf),
    /// Prompt on the terminal when there is one, else generate.
    PromptOrGenerate,
    /// Generate into offline/root.pass.
    Generate,
}

/// Runs `keep init`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let password = match &args.root_password_file {
        Some(p) => RootPassword::File(p.clone()),
        None => RootPassword::PromptOrGenerate,
    };
    let lab = create(&args.dir, &args.hosts, &args.agents, args.listen, password)?;
    print!("{}", next_steps(&lab));
    Ok(0)
}

fn validate_name(what: &str, name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && !name.starts_with(['-', '.'])
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "{what} {name:?} is not a usable name; use letters, digits, '-', '.' and '_' (e.g. openclaw-01)"
        )))
    }
}

/// 24 random bytes as hex: generated passwords and demo values.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    }))
}

fn mkdir(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(p)
        .with_context(|| format!("cannot create {}", p.display()))
}

fn write_password(path: &Path, password: &SecretString) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write_atomic(
        path,
        password.expose_secret().as_bytes(),
        Mode::Secret,
        false,
    )?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

fn new_secret_password() -> anyhow::Result<SecretString> {
    Ok(SecretString::from(random_hex(24)?))
}

/// A certificate request with keep's defaults.
fn request(
    profile: Profile,
    cn: &str,
    sans: Vec<String>,
    eku: Option<EkuChoice>,
    days: i64,
) -> CertRequest {
    CertRequest {
        profile,
        subject: cn.to_owned(),
        common_name: None,
        sans,
        eku,
        path_len: None,
        not_before: None,
        not_after: Some(TimeSpec::Relative(time::Duration::days(days))),
        now: time::OffsetDateTime::now_utc(),
    }
}

/// Makes a key and a certificate; writes `NAME.crt` (with the issuer chain for leaves) and
/// `NAME.key` (encrypted with `password`, or plaintext 0600 when `None`) into `dir`.
fn make(
    dir: &Path,
    name: &str,
    req: &CertRequest,
    issuer: Option<&Issuer>,
    password: Option<&SecretString>,
) -> anyhow::Result<(cert::Issued, PrivateKey)> {
    let key = PrivateKey::generate(KeyType::EcP256)?;
    let issued = cert::create(req, &key, issuer)
        .with_context(|| format!("cannot make the {name} certificate"))?;
    let bundle = req.profile == Profile::Leaf;
    write_atomic(
        &dir.join(format!("{name}.crt")),
        issued.pem(bundle).as_bytes(),
        Mode::Public,
        false,
    )?;
    let key_pem = match password {
        Some(p) => zeroize::Zeroizing::new(key.to_pem_encrypted(p)?),
        None => key.to_pem_plaintext(),
    };
    write_atomic(
        &dir.join(format!("{name}.key")),
        key_pem.as_bytes(),
        Mode::Secret,
        false,
    )?;
    Ok((issued, key))
}

/// Builds the lab (see the module docs). Refuses a non-empty `dir`.
pub fn create(
    dir: &Path,
    hosts: &[String],
    agents: &[String],
    listen: std::net::SocketAddr,
    root_password: RootPassword,
) -> anyhow::Result<Lab> {
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(usage(format!(
            "{} already exists and is not empty; keep init never overwrites a lab (nothing was changed): pick another directory",
            dir.display()
        )));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(usage(format!(
            "{} exists and is not a directory",
            dir.display()
        )));
    }
    for h in hosts {
        if h.parse::<IpAddr>().is_err() {
            validate_name("--host", h)?;
        }
    }
    let agents: Vec<String> = if agents.is_empty() {
        vec!["agent-01".to_owned()]
    } else {
        agents.to_vec()
    };
    for (i, a) in agents.iter().enumerate() {
        validate_name("--agent", a)?;
        if a == "operator" {
            return Err(usage(
                "--agent operator: that name is the lab's admin identity; pick another",
            ));
        }
        if agents[..i].contains(a) {
            return Err(usage(format!("--agent {a} is given twice")));
        }
    }
    let root_password = match root_password {
        RootPassword::File(f) => (crate::password::from_file(&f, "root CA key")?, false),
        RootPassword::PromptOrGenerate
            if std::io::IsTerminal::is_terminal(&std::io::stdin())
                && std::io::IsTerminal::is_terminal(&std::io::stderr()) =>
        {
            (
                crate::password::new_password(None, "root CA key", "--root-password-file")?,
                false,
            )
        }
        _ => (new_secret_password()?, true),
    };

    mkdir(dir)?;
    let (offline, ca, server, data, operator) = (
        dir.join("offline"),
        dir.join("ca"),
        dir.join("server"),
        dir.join("data"),
        dir.join("operator"),
    );
    for d in [&offline, &ca, &server, &data, &operator] {
        mkdir(d)?;
    }

    // Root (10 years), kept offline.
    let (root, root_key) = make(
        &offline,
        "root_ca",
        &request(Profile::RootCa, "keep lab root CA", vec![], None, 3650),
        None,
        Some(&root_password.0),
    )?;
    if root_password.1 {
        write_password(&offline.join("root.pass"), &root_password.0)?;
    }
    write_atomic(
        &ca.join("root_ca.crt"),
        root.cert.pem().as_bytes(),
        Mode::Public,
        false,
    )?;
    let root_issuer = Issuer::new(
        root.cert.pem().as_bytes(),
        &Source::Other("the new root CA".into()),
        root_key,
    )?;

    // Intermediate (5 years) for the server's online issuance and renewals.
    let inter_pass = new_secret_password()?;
    let (inter, inter_key) = make(
        &ca,
        "intermediate_ca",
        &request(
            Profile::IntermediateCa,
            "keep lab intermediate CA",
            vec![],
            None,
            1825,
        ),
        Some(&root_issuer),
        Some(&inter_pass),
    )?;
    write_password(&ca.join("intermediate.pass"), &inter_pass)?;
    let mut inter_chain = inter.cert.pem();
    inter_chain.push_str(&root.cert.pem());
    let issuer = Issuer::new(
        inter_chain.as_bytes(),
        &Source::Other("the new intermediate CA".into()),
        inter_key,
    )?;

    // The vault's certificate (1 year).
    let mut sans: Vec<String> = hosts.to_vec();
    for s in ["localhost", "127.0.0.1"] {
        if !sans.iter().any(|h| h == s) {
            sans.push(s.to_owned());
        }
    }
    let server_pass = new_secret_password()?;
    make(
        &server,
        "server",
        &request(
            Profile::Leaf,
            &sans[0],
            sans.clone(),
            Some(EkuChoice::Server),
            365,
        ),
        Some(&issuer),
        Some(&server_pass),
    )?;
    write_password(&server.join("server.pass"), &server_pass)?;

    // The operator (break-glass admin): its certificate comes from the PKI mount below, so it
    // is in the inventory and can be revoked at run time (`keep pki revoke`, `pki/revoke`).
    let op_pass = new_secret_password()?;
    write_password(&operator.join("operator.pass"), &op_pass)?;

    let host = hosts.first().map(String::as_str).unwrap_or("localhost");
    let url_host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_owned(),
    };
    let url = format!("https://{url_host}:{}", listen.port());
    let env = format!(
        "# source this file to use the admin CLI as the lab's operator\nexport KEEP_ADDR={url}\nexport KEEP_CACERT={ca}\nexport KEEP_CLIENT_CERT={crt}\nexport KEEP_CLIENT_KEY={key}\nexport KEEP_CLIENT_KEY_PASSWORD_FILE={pass}\n",
        ca = abs(&ca.join("root_ca.crt"))?.display(),
        crt = abs(&operator.join("operator.crt"))?.display(),
        key = abs(&operator.join("operator.key"))?.display(),
        pass = abs(&operator.join("operator.pass"))?.display(),
    );
    write_atomic(
        &operator.join("operator.env"),
        env.as_bytes(),
        Mode::Secret,
        false,
    )?;

    // Agents (30 days; renewed over mTLS by `keep agent` at 2/3 of that).
    let mut agent_configs = Vec::new();
    let mut provision = keep_server::provision::Provision::default();
    for name in &agents {
        let adir = dir.join("agents").join(name);
        mkdir(&adir)?;
        write_atomic(
            &adir.join("root_ca.crt"),
            root.cert.pem().as_bytes(),
            Mode::Public,
            false,
        )?;
        let yaml = format!(
            "# keep agent config for {name} (docs/agent.md). Paths are relative to this file.\n\
             vault_connection:\n  url: {url}\n  mtls:\n    cert_file: agent.crt\n    key_file: agent.key\n    ca_cert_file: root_ca.crt\n  role: agents\n\
             secrets:\n  - path: agents/{name}/demo\n    env: {{ DEMO_API_KEY: api_key }}\n    file: {{ path: run/demo.json, format: json, mode: \"0400\" }}\n\
             renew:\n  enabled: true\n  at: 66%\n"
        );
        let path = adir.join("agent.yaml");
        write_atomic(&path, yaml.as_bytes(), Mode::Secret, false)?;
        agent_configs.push((name.clone(), path));
        let mut secret = Map::new();
        secret.insert(
            "api_key".into(),
            Value::String(format!("demo-{}", random_hex(8)?)),
        );
        provision
            .secrets
            .push((format!("agents/{name}/demo"), secret));
    }

    let config_path = dir.join("keep-server.yaml");
    let yaml = format!(
        "# keep server config (docs/server.md). Paths are relative to this file.\n\
         # The root CA key is NOT here: it lives in offline/, which belongs off this machine.\n\
         listener:\n  address: {listen}\n  tls:\n    cert_file: server/server.crt\n    key_file: server/server.key\n    key_password_file: server/server.pass\n    client_ca_file: ca/root_ca.crt\n    min_version: \"1.2\"\n    auto_renew: true\n\
         storage:\n  sqlite: {{ path: data/keep.db }}\n\
         seal:\n  key_file: data/unseal.key\n\
         audit:\n  file: data/audit.log\n\
         admins:\n  - common_name: operator\n\
         pki:\n  issuer_cert_file: ca/intermediate_ca.crt\n  issuer_key_file: ca/intermediate_ca.key\n  issuer_key_password_file: ca/intermediate.pass\n"
    );
    write_atomic(&config_path, yaml.as_bytes(), Mode::Secret, false)?;
    let config = keep_server::config::ServerConfig::load(&config_path)
        .map_err(|e| anyhow::anyhow!("the generated server config does not load: {e}"))?;
    keep_server::server::init(&config, &|_| Err("no prompt".into()))
        .map_err(|e| anyhow::anyhow!("cannot initialize the storage: {e}"))?;

    provision.policies.push((
        "agents".into(),
        "# Each agent reads only its own secrets: secret/agents/<its certificate's CN>/…\n\
         path \"secret/data/agents/{{cert.common_name}}/*\" {\n  capabilities = [\"read\"]\n}\n\
         path \"secret/metadata/agents/{{cert.common_name}}/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n"
            .into(),
    ));
    provision.roles.push((
        "agents".into(),
        keep_server::auth::role::Role {
            certificate: inter.cert.pem(),
            allowed_common_names: agents.clone(),
            display_name: "agents".into(),
            token_policies: vec!["agents".into()],
            token_ttl: 3600,
            token_max_ttl: 24 * 3600,
            ..Default::default()
        },
    ));
    keep_server::provision::apply(&config, &provision)
        .map_err(|e| anyhow::anyhow!("cannot provision the storage: {e}"))?;
    // Agent certificates come from the vault's own PKI mount (offline, before it runs), so
    // they are in its inventory and `keep agent` can renew them over mTLS.
    let agent_role = keep_server::pki::role::PkiRole {
        allowed_domains: agents.clone(),
        allow_bare_domains: true,
        client_flag: true,
        server_flag: false,
        ttl: 30 * 24 * 3600,
        max_ttl: 30 * 24 * 3600,
        ..Default::default()
    };
    let certs = keep_server::provision::issue_offline(&config, "agents", &agent_role, &agents)
        .map_err(|e| anyhow::anyhow!("cannot issue the agent certificates: {e}"))?;
    for (name, cert) in agents.iter().zip(&certs) {
        let adir = dir.join("agents").join(name);
        write_atomic(
            &adir.join("agent.crt"),
            cert.chain_pem.as_bytes(),
            Mode::Public,
            false,
        )?;
        write_atomic(
            &adir.join("agent.key"),
            cert.key_pem.as_bytes(),
            Mode::Secret,
            false,
        )?;
    }

    // The operator's certificate (90 days), through the mount like the agents'. Its role is the
    // only one allowed to issue an admin name (`allow_admin_names`): no agent role can mint
    // `CN=operator`. Policies give no one but admins access to `pki/issue/keep-operator`.
    let operator_role = keep_server::pki::role::PkiRole {
        allowed_domains: vec!["operator".into()],
        allow_bare_domains: true,
        allow_localhost: false,
        allow_ip_sans: false,
        client_flag: true,
        server_flag: false,
        ttl: 90 * 24 * 3600,
        max_ttl: 90 * 24 * 3600,
        allow_admin_names: true,
        ..Default::default()
    };
    let op = keep_server::provision::issue_offline(
        &config,
        "keep-operator",
        &operator_role,
        &["operator".to_owned()],
    )
    .map_err(|e| anyhow::anyhow!("cannot issue the operator certificate: {e}"))?;
    let op = op
        .first()
        .context("the PKI mount issued no operator certificate")?;
    write_atomic(
        &operator.join("operator.crt"),
        op.chain_pem.as_bytes(),
        Mode::Public,
        false,
    )?;
    let op_key = keep_pki::key::load_private_key(
        op.key_pem.as_bytes(),
        &Source::Other("the new operator key".into()),
        None,
    )?;
    write_atomic(
        &operator.join("operator.key"),
        op_key.to_pem_encrypted(&op_pass)?.as_bytes(),
        Mode::Secret,
        false,
    )?;

    if root_password.1 {
        eprintln!(
            "\n!! The root CA key's password was generated into {}.\n!! Move {} (root key and password) OFF this machine: the vault never needs it.\n",
            offline.join("root.pass").display(),
            offline.display()
        );
    }
    Ok(Lab {
        dir: dir.to_owned(),
        server_config: config_path,
        agents: agent_configs,
        url,
    })
}

fn abs(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
}

/// What to do next, printed after `keep init`.
pub fn next_steps(lab: &Lab) -> String {
    let d = lab.dir.display();
    let mut s = format!(
        "Lab ready in {d}:\n  \
         offline/           root CA key + password: move it off this machine\n  \
         keep-server.yaml   the vault (storage initialized, policy + role + demo secrets in place)\n  \
         operator/          admin identity; `source {d}/operator/operator.env` for keep kv/policy/auth\n"
    );
    for (name, cfg) in &lab.agents {
        let _ = writeln!(
            s,
            "  agents/{name}/     {}",
            cfg.file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default()
        );
    }
    let (first, cfg) = lab
        .agents
        .first()
        .map(|(n, c)| (n.as_str(), c.display().to_string()))
        .unwrap_or(("agent-01", String::new()));
    let _ = write!(
        s,
        "\nNext:\n  \
         keep server --config {d}/keep-server.yaml &\n  \
         keep agent --once --config {cfg}          # writes agents/{first}/run/demo.json\n  \
         keep agent exec --config {cfg} -- sh -c 'echo ${{#DEMO_API_KEY}} chars'\n  \
         echo '{{\"protocolVersion\":1,\"provider\":\"keep\",\"ids\":[\"agents/{first}/demo#api_key\"]}}' | keep openclaw-resolver --config {cfg}\n  \
         keep doctor --config {cfg}\n"
    );
    s
}
