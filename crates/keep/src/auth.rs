//! `keep auth cert …`: cert auth roles (`auth/cert/certs/:name`), which map client
//! certificates to token policies.
//!
//! One deliberate difference from `vault write auth/cert/certs/…`: a role without any name
//! constraint (allowed common names, DNS/URI/email SANs, OUs) lets *every* certificate that
//! chains to its CA log in with its policies. The server accepts such a role for Vault
//! compatibility (with a warning); this command refuses to create one unless `--any-name`
//! says that is really meant.

use std::path::PathBuf;

use clap::Subcommand;
use keep_agent::client::VaultClient;
use serde_json::{Map, Value};

use crate::connect::{self, ConnectArgs, Format, NOT_FOUND};
use crate::exit::usage;

/// Arguments of `keep auth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    method: AuthMethod,
}

#[derive(Debug, Subcommand)]
enum AuthMethod {
    /// Cert auth roles: which client certificates get which policies.
    Cert(CertArgs),
}

#[derive(Debug, clap::Args)]
struct CertArgs {
    #[command(subcommand)]
    cmd: CertCmd,
}

#[derive(Debug, Subcommand)]
enum CertCmd {
    /// Create or update a role (fields not given keep their current values).
    ///
    ///   keep auth cert write agents --certificate intermediate.crt \
    ///       --allowed-common-names 'agent-*' --token-policies agents --token-ttl 1h
    #[command(verbatim_doc_comment)]
    Write(Box<WriteArgs>),
    /// Show a role.
    Read {
        /// The role name.
        name: String,
    },
    /// List role names.
    List,
    /// Delete a role (tokens it issued stay valid until they expire or are revoked).
    Delete {
        /// The role name.
        name: String,
    },
}

/// The name-constraint fields: (flag, API field).
const NAME_CONSTRAINTS: [(&str, &str); 5] = [
    ("--allowed-common-names", "allowed_common_names"),
    ("--allowed-dns-sans", "allowed_dns_sans"),
    ("--allowed-uri-sans", "allowed_uri_sans"),
    ("--allowed-email-sans", "allowed_email_sans"),
    (
        "--allowed-organizational-units",
        "allowed_organizational_units",
    ),
];

#[derive(Debug, clap::Args)]
struct WriteArgs {
    /// The role name.
    name: String,
    /// CA certificate(s) (PEM) a client certificate must chain through; without it, any CA
    /// the server trusts.
    #[arg(long, value_name = "FILE")]
    certificate: Option<PathBuf>,
    /// Subject common names allowed to log in (comma-separated or repeated; globs: agent-*).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    allowed_common_names: Option<Vec<String>>,
    /// DNS SANs allowed (globs).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    allowed_dns_sans: Option<Vec<String>>,
    /// URI SANs allowed (globs), e.g. spiffe://claw.internal/agent/*.
    #[arg(long, value_delimiter = ',', value_name = "URIS")]
    allowed_uri_sans: Option<Vec<String>>,
    /// Email SANs allowed (globs).
    #[arg(long, value_delimiter = ',', value_name = "EMAILS")]
    allowed_email_sans: Option<Vec<String>>,
    /// Organizational units allowed (globs).
    #[arg(long, value_delimiter = ',', value_name = "OUS")]
    allowed_organizational_units: Option<Vec<String>>,
    /// Extensions the certificate must carry, as OID:VALUE (VALUE may be *).
    #[arg(long, value_delimiter = ',', value_name = "OID:VALUE")]
    required_extensions: Option<Vec<String>>,
    /// Policies attached to tokens from this role.
    #[arg(long, value_delimiter = ',', value_name = "POLICIES")]
    token_policies: Option<Vec<String>>,
    /// Token lifetime (seconds or a duration: 1h, 30m).
    #[arg(long, value_name = "DURATION")]
    token_ttl: Option<String>,
    /// Longest lifetime a token may reach by renewal.
    #[arg(long, value_name = "DURATION")]
    token_max_ttl: Option<String>,
    /// Source networks allowed to log in and use the tokens (CIDRs).
    #[arg(long, value_delimiter = ',', value_name = "CIDRS")]
    token_bound_cidrs: Option<Vec<String>>,
    /// Do not add the `default` policy to tokens.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    token_no_default_policy: Option<bool>,
    /// Shown in token metadata.
    #[arg(long, value_name = "NAME")]
    display_name: Option<String>,
    /// Authorize requests without a token by this role's policies when the connection's
    /// certificate matches it (no bearer secret at all).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    allow_tokenless: Option<bool>,
    /// Pin each certificate to the address it first logs in from: later logins and token uses
    /// from elsewhere are refused and raise an `unexpected_source_address` security alert.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pin_first_seen_address: Option<bool>,
    /// Allow a role with no name constraint: every certificate that chains to its CA may log
    /// in with it.
    #[arg(long)]
    any_name: bool,
}

fn list(v: &Option<Vec<String>>) -> Option<Value> {
    v.as_ref().map(|items| {
        Value::from(
            items
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>(),
        )
    })
}

impl WriteArgs {
    /// The request body: only the fields given, so an update keeps the others.
    fn fields(&self) -> anyhow::Result<Map<String, Value>> {
        let mut m = Map::new();
        if let Some(p) = &self.certificate {
            let (bytes, source) = crate::files::read_input(&p.to_string_lossy())?;
            // Check it here: the server's message cannot name the local file and line.
            keep_pki::pem::read_certificates(&bytes, &source).map_err(|e| usage(e.to_string()))?;
            let pem = String::from_utf8(bytes)
                .map_err(|_| usage(format!("{} is not PEM text", p.display())))?;
            m.insert("certificate".into(), Value::from(pem));
        }
        let lists = [
            ("allowed_common_names", &self.allowed_common_names),
            ("allowed_dns_sans", &self.allowed_dns_sans),
            ("allowed_uri_sans", &self.allowed_uri_sans),
            ("allowed_email_sans", &self.allowed_email_sans),
            (
                "allowed_organizational_units",
                &self.allowed_organizational_units,
            ),
            ("required_extensions", &self.required_extensions),
            ("token_policies", &self.token_policies),
            ("token_bound_cidrs", &self.token_bound_cidrs),
        ];
        for (k, v) in lists {
            if let Some(v) = list(v) {
                m.insert(k.into(), v);
            }
        }
        for (k, v) in [
            ("token_ttl", &self.token_ttl),
            ("token_max_ttl", &self.token_max_ttl),
            ("display_name", &self.display_name),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), Value::from(v.as_str()));
            }
        }
        for (k, v) in [
            ("token_no_default_policy", self.token_no_default_policy),
            ("allow_tokenless", self.allow_tokenless),
            ("pin_first_seen_address", self.pin_first_seen_address),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), Value::from(v));
            }
        }
        Ok(m)
    }
}

fn non_empty(v: Option<&Value>) -> bool {
    v.and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

/// Refuses a role that would end up with no name constraint, unless `--any-name`. The role
/// after the write is the stored one with the request's fields applied, so an update that
/// leaves the existing constraints alone is fine.
async fn check_name_constraints(
    client: &VaultClient,
    name: &str,
    fields: &Map<String, Value>,
) -> anyhow::Result<()> {
    if NAME_CONSTRAINTS
        .iter()
        .any(|(_, k)| non_empty(fields.get(*k)))
    {
        return Ok(());
    }
    let existing = match client.cert_role_read(name).await {
        Ok(r) => Some(r),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            return Err(connect::client_error(
                e,
                Some(&format!("reading role {name:?}")),
            ));
        }
    };
    let kept = existing.is_some_and(|r| {
        NAME_CONSTRAINTS
            .iter()
            .any(|(_, k)| !fields.contains_key(*k) && non_empty(r.data().get(*k)))
    });
    if kept {
        return Ok(());
    }
    let flags: Vec<&str> = NAME_CONSTRAINTS.iter().map(|(f, _)| *f).collect();
    Err(usage(format!(
        "refusing to write cert auth role {name:?} without a name constraint: every certificate that chains to {} could log in with it and get its policies. Restrict it with {} (for example --allowed-common-names 'agent-*'), or add --any-name if every such certificate really should get this role",
        if fields.contains_key("certificate") {
            "the CA in --certificate"
        } else {
            "any CA the server trusts (no --certificate was given)"
        },
        flags.join(", "),
    )))
}

/// Runs `keep auth …`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let format = args.conn.format;
    let AuthMethod::Cert(cert) = args.method;
    match cert.cmd {
        CertCmd::Write(w) => {
            let fields = w.fields()?;
            let (client, _) = args.conn.client()?;
            let r = connect::block_on(async {
                if !w.any_name {
                    check_name_constraints(&client, &w.name, &fields).await?;
                }
                client.cert_role_write(&w.name, &fields).await.map_err(|e| {
                    connect::client_error(e, Some(&format!("writing role {:?}", w.name)))
                })
            })?;
            connect::print_warnings(&r.warnings());
            if format == Format::Table {
                println!("Success! Data written to: auth/cert/certs/{}", w.name);
            }
            Ok(0)
        }
        CertCmd::Read { name } => {
            let (client, _) = args.conn.client()?;
            let r = connect::block_on(async { Ok(client.cert_role_read(&name).await) })?;
            let r = match r {
                Ok(r) => r,
                Err(e) if e.is_not_found() => {
                    eprintln!("No value found at auth/cert/certs/{name}");
                    return Ok(NOT_FOUND);
                }
                Err(e) => {
                    return Err(connect::client_error(
                        e,
                        Some(&format!("reading role {name:?}")),
                    ));
                }
            };
            match format {
                Format::Json => connect::print_json(r.data())?,
                Format::Table => {
                    let rows: Vec<_> = connect::object_rows(r.data())
                        .into_iter()
                        .map(|(k, v)| {
                            if k == "certificate" && !v.is_empty() {
                                let n = v.matches("BEGIN CERTIFICATE").count();
                                (
                                    k,
                                    format!("{n} PEM certificate(s); --format json shows them"),
                                )
                            } else {
                                (k, v)
                            }
                        })
                        .collect();
                    connect::print_table(&rows);
                }
            }
            Ok(0)
        }
        CertCmd::List => {
            let (client, _) = args.conn.client()?;
            match connect::block_on(async { Ok(client.cert_role_list().await) })? {
                Ok(keys) => {
                    connect::print_list(&keys, format)?;
                    Ok(0)
                }
                Err(e) if e.is_not_found() => {
                    eprintln!("No value found at auth/cert/certs");
                    Ok(NOT_FOUND)
                }
                Err(e) => Err(connect::client_error(e, Some("listing roles"))),
            }
        }
        CertCmd::Delete { name } => {
            let (client, _) = args.conn.client()?;
            connect::block_on(async {
                client
                    .cert_role_delete(&name)
                    .await
                    .map_err(|e| connect::client_error(e, Some(&format!("deleting role {name:?}"))))
            })?;
            if format == Format::Table {
                println!("Success! Data deleted (if it existed) at: auth/cert/certs/{name}");
            }
            Ok(0)
        }
    }
}
