//! A complete test PKI, generated fresh at test time, for keep's tests.
//!
//! No private key or certificate is ever committed: every test that needs TLS material builds a
//! [`TestPki`] (a few dozen milliseconds for EC keys) and, if a CLI or `openssl`/`curl` needs
//! files, writes it to a temporary directory with [`TestPki::write_to`]. Fixtures therefore never
//! expire and break the build a year later.
//!
//! The shape mirrors a small internal deployment:
//!
//! ```text
//! Keep Test Root CA (P-384, pathlen 1)          Foreign Test Root CA (unrelated)
//!   └─ Keep Test Intermediate CA (pathlen 0)       └─ foreign_client
//!        ├─ server, wrong_san_server
//!        ├─ client (agent-01), admin (operator)
//!        ├─ expired_client, not_yet_valid_client
//!        ├─ server_auth_only_client (wrong EKU)
//!        └─ revoked_client (listed in `crl`)
//! ```
//!
//! ```
//! use keep_test_support::{LeafSpec, TestPki};
//!
//! let pki = TestPki::new();
//! let agent = pki.issue(&LeafSpec::agent("agent-07"));
//! let crl = pki.crl_with(&[&agent, &pki.revoked_client]);
//! assert!(agent.chain_pem.starts_with(&agent.cert_pem));
//! assert!(!crl.der.is_empty());
//! ```
#![forbid(unsafe_code)]
// This crate is test infrastructure: it only ever runs inside `cargo test`. When building a
// fixture fails (a broken RNG, an unwritable temp dir) there is nothing useful a test could do
// with an error value, so we panic with an `expect` message that says what went wrong instead of
// threading `Result` through every test.
#![allow(clippy::expect_used)]

/// A real keep server for end-to-end tests.
pub mod lab;
/// Running commands as an unprivileged user.
pub mod unprivileged;

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pkcs8::{EncodePrivateKey, LineEnding, PrivateKeyInfoRef};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, RsaKeySize, SanType, SerialNumber, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

/// Common name of the test root CA.
pub const ROOT_CN: &str = "Keep Test Root CA";
/// Common name of the test intermediate CA, which issues every ordinary leaf.
pub const INTERMEDIATE_CN: &str = "Keep Test Intermediate CA";
/// Common name of the unrelated root that issues [`TestPki::foreign_client`].
pub const FOREIGN_CA_CN: &str = "Foreign Test Root CA";
/// The trust domain of the test agents' SPIFFE IDs and DNS names.
pub const TRUST_DOMAIN: &str = "claw.internal";
/// The vault server's DNS name (CN and first DNS SAN of [`TestPki::server`]).
pub const SERVER_DNS: &str = "vault.claw.internal";
/// Common name of the valid agent client certificate [`TestPki::client`].
pub const CLIENT_CN: &str = "agent-01";
/// SPIFFE ID (URI SAN) of [`TestPki::client`].
pub const CLIENT_SPIFFE_ID: &str = "spiffe://claw.internal/agent/agent-01";
/// Common name of the operator certificate [`TestPki::admin`].
pub const ADMIN_CN: &str = "operator";

/// How long before "now" ordinary certificates start, so small clock skew between the test and
/// the verifier (or a slow CI machine) never makes a fresh certificate "not yet valid".
const BACKDATE: Duration = Duration::hours(1);

/// Key algorithm of a generated key pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// ECDSA on P-256 with SHA-256 (the default: fast to generate, accepted everywhere).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519. Keys are written as PKCS#8 v1 so OpenSSL 3.0 can read them.
    Ed25519,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures (slow to generate: ~0.1 s per key).
    Rsa2048,
}

impl KeyAlg {
    /// Every algorithm, for table-driven tests.
    pub const ALL: [KeyAlg; 4] = [
        KeyAlg::EcdsaP256,
        KeyAlg::EcdsaP384,
        KeyAlg::Ed25519,
        KeyAlg::Rsa2048,
    ];

    /// The rcgen signature algorithm a key of this kind signs with.
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlg::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlg::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Generates a fresh key pair of this kind.
    pub fn generate(self) -> KeyPair {
        match self {
            KeyAlg::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
                    .expect("aws-lc-rs generates RSA-2048 keys")
            }
            _ => KeyPair::generate_for(self.signature_algorithm())
                .expect("aws-lc-rs generates EC and Ed25519 keys"),
        }
    }
}

/// An extended key usage a leaf can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Eku {
    /// `id-kp-clientAuth`: TLS client (agent, operator) certificates.
    Client,
    /// `id-kp-serverAuth`: TLS server certificates.
    Server,
}

impl Eku {
    fn to_rcgen(self) -> ExtendedKeyUsagePurpose {
        match self {
            Eku::Client => ExtendedKeyUsagePurpose::ClientAuth,
            Eku::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }
    }
}

/// Which CA of a [`TestPki`] issues a leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IssuerChoice {
    /// The intermediate CA (the normal case); the leaf's chain is leaf + intermediate.
    #[default]
    Intermediate,
    /// The root CA directly; the leaf's chain is the leaf alone.
    Root,
    /// The unrelated foreign root; the leaf's chain is the leaf alone.
    Foreign,
}

/// Everything that varies between leaf certificates. Build one with [`LeafSpec::client`],
/// [`LeafSpec::agent`] or [`LeafSpec::server`], adjust it with the builder methods, and pass it
/// to [`TestPki::issue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSpec {
    /// Subject common name; an empty string leaves the subject without a CN.
    pub common_name: String,
    /// DNS subject alternative names.
    pub dns: Vec<String>,
    /// IP address subject alternative names.
    pub ips: Vec<IpAddr>,
    /// URI subject alternative names (e.g. SPIFFE IDs).
    pub uris: Vec<String>,
    /// E-mail (rfc822Name) subject alternative names.
    pub emails: Vec<String>,
    /// Extended key usages; empty means the certificate has no EKU extension at all.
    pub eku: Vec<Eku>,
    /// Start of the validity window.
    pub not_before: OffsetDateTime,
    /// End of the validity window.
    pub not_after: OffsetDateTime,
    /// Key algorithm of the leaf's key pair (the signature is made by the issuer's key).
    pub alg: KeyAlg,
    /// Which CA signs the leaf.
    pub issuer: IssuerChoice,
}

impl LeafSpec {
    /// A `clientAuth` leaf with only a common name, valid from an hour ago for 30 days.
    pub fn client(cn: &str) -> Self {
        let now = now();
        LeafSpec {
            common_name: cn.to_owned(),
            dns: Vec::new(),
            ips: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            eku: vec![Eku::Client],
            not_before: now - BACKDATE,
            not_after: now + Duration::days(30),
            alg: KeyAlg::default(),
            issuer: IssuerChoice::default(),
        }
    }

    /// An agent certificate shaped like `agent-01`: [`LeafSpec::client`] plus the SANs
    /// `DNS:<name>.claw.internal` and `URI:spiffe://claw.internal/agent/<name>`.
    pub fn agent(name: &str) -> Self {
        Self::client(name)
            .dns(format!("{name}.{TRUST_DOMAIN}"))
            .uri(format!("spiffe://{TRUST_DOMAIN}/agent/{name}"))
    }

    /// A `serverAuth` leaf whose common name is also its first DNS SAN (clients match names
    /// against SANs only), valid from an hour ago for 30 days.
    pub fn server(cn: &str) -> Self {
        let mut spec = Self::client(cn).dns(cn);
        spec.eku = vec![Eku::Server];
        spec
    }

    /// Adds a DNS SAN.
    pub fn dns(mut self, name: impl Into<String>) -> Self {
        self.dns.push(name.into());
        self
    }

    /// Adds an IP address SAN (`[127, 0, 0, 1]` and `Ipv6Addr::LOCALHOST` both work).
    pub fn ip(mut self, ip: impl Into<IpAddr>) -> Self {
        self.ips.push(ip.into());
        self
    }

    /// Adds a URI SAN.
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uris.push(uri.into());
        self
    }

    /// Adds an e-mail (rfc822Name) SAN.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.emails.push(email.into());
        self
    }

    /// Replaces the extended key usages; `&[]` omits the extension.
    pub fn eku(mut self, eku: &[Eku]) -> Self {
        self.eku = eku.to_vec();
        self
    }

    /// Sets the validity window.
    pub fn valid(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Makes the leaf expired: valid from 30 days ago until 1 day ago.
    pub fn expired(self) -> Self {
        let now = now();
        self.valid(now - Duration::days(30), now - Duration::days(1))
    }

    /// Makes the leaf not yet valid: valid from 1 day from now for 30 days.
    pub fn not_yet_valid(self) -> Self {
        let now = now();
        self.valid(now + Duration::days(1), now + Duration::days(31))
    }

    /// Sets the key algorithm of the leaf's key pair.
    pub fn alg(mut self, alg: KeyAlg) -> Self {
        self.alg = alg;
        self
    }

    /// Sets which CA issues the leaf.
    pub fn issuer(mut self, issuer: IssuerChoice) -> Self {
        self.issuer = issuer;
        self
    }
}

/// A certificate authority: its certificate, its key, and an rcgen [`Issuer`] to sign more.
pub struct Ca {
    /// Subject common name.
    pub common_name: String,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA's private key, unencrypted PKCS#8 v1 PEM (`PRIVATE KEY`).
    pub key_pem: String,
    /// The CA certificate, DER.
    pub der: Vec<u8>,
    /// Signs certificates and CRLs as this CA (e.g. for tests that build unusual certificates
    /// with rcgen directly).
    pub issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    /// Prints the CA's name, never its key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("common_name", &self.common_name)
            .field("key_pem", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Generates a self-signed root CA (keyCertSign + cRLSign) with the given path length.
    fn self_signed(common_name: &str, org: &str, alg: KeyAlg, path_len: u8) -> Ca {
        let key = alg.generate();
        let params = ca_params(common_name, org, path_len, Duration::days(90));
        let cert = params
            .self_signed(&key)
            .expect("rcgen self-signs a CA certificate");
        Ca::from_parts(common_name, params, key, cert.der())
    }

    /// Generates a subordinate CA signed by `parent`.
    fn signed_by(common_name: &str, org: &str, alg: KeyAlg, path_len: u8, parent: &Ca) -> Ca {
        let params = ca_params(common_name, org, path_len, Duration::days(60));
        Ca::signed_with(common_name, params, alg, parent)
    }

    /// Signs a subordinate CA from ready-made `params` with `parent`.
    fn signed_with(common_name: &str, params: CertificateParams, alg: KeyAlg, parent: &Ca) -> Ca {
        let key = alg.generate();
        let cert = params
            .signed_by(&key, &parent.issuer)
            .expect("rcgen signs an intermediate CA certificate");
        Ca::from_parts(common_name, params, key, cert.der())
    }

    /// Issues a leaf from `spec` signed by this CA, whatever `spec.issuer` says. The leaf's
    /// chain is the leaf followed by this CA's certificate. Nothing stops the leaf from
    /// outliving this CA: tests of expiry checks need exactly that.
    pub fn issue(&self, spec: &LeafSpec) -> Leaf {
        issue_leaf(spec, self, true)
    }

    fn from_parts(common_name: &str, params: CertificateParams, key: KeyPair, der: &[u8]) -> Ca {
        let (_, key_pem) = pkcs8_v1(key.serialized_der());
        Ca {
            common_name: common_name.to_owned(),
            cert_pem: pem_encode("CERTIFICATE", der),
            key_pem,
            der: der.to_vec(),
            issuer: Issuer::new(params, key),
        }
    }
}

/// Parameters shared by every CA: started `backdate` ago (so leaves backdated further than
/// their own one hour still nest inside it), valid for ten years.
fn ca_params(common_name: &str, org: &str, path_len: u8, backdate: Duration) -> CertificateParams {
    let now = now();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, org);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - backdate;
    params.not_after = now + Duration::days(3650);
    params
}

/// An issued leaf certificate with its key and chain.
#[derive(Clone)]
pub struct Leaf {
    /// Subject common name (empty if the leaf has none).
    pub common_name: String,
    /// The leaf certificate alone, PEM.
    pub cert_pem: String,
    /// The leaf's private key, unencrypted PKCS#8 v1 PEM (`PRIVATE KEY`), readable by OpenSSL
    /// 3.0, rustls and rcgen for every [`KeyAlg`].
    pub key_pem: String,
    /// The leaf's private key, PKCS#8 v1 DER (for `rustls::pki_types::PrivatePkcs8KeyDer`).
    pub key_der: Vec<u8>,
    /// The chain to present in a handshake, PEM: the leaf, then the intermediate if the
    /// intermediate issued it (leaves issued straight by a root are alone).
    pub chain_pem: String,
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
    /// The same chain as `chain_pem`, DER, leaf first.
    pub chain_der: Vec<Vec<u8>>,
    /// Serial number: exactly the content bytes of the DER INTEGER (16 bytes, positive, no
    /// leading zero), i.e. what x509-parser's `raw_serial()` returns.
    pub serial: Vec<u8>,
}

impl fmt::Debug for Leaf {
    /// Prints the leaf's name and serial, never its key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("common_name", &self.common_name)
            .field("serial", &self.serial_hex())
            .field("key_pem", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl Leaf {
    /// The serial number as lowercase hex without separators (compare case-insensitively with
    /// `openssl x509 -serial`, which prints uppercase).
    pub fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Writes `<name>.crt` (the chain, leaf first) and `<name>.key` (mode 0600) into `dir`,
    /// creating `dir` if needed.
    pub fn write_to(&self, dir: &Path, name: &str) -> LeafFiles {
        fs::create_dir_all(dir).expect("create the directory for test PKI files");
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write_public(&cert, &self.chain_pem);
        write_secret(&key, &self.key_pem);
        LeafFiles { cert, key }
    }
}

/// Paths of one leaf written by [`Leaf::write_to`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafFiles {
    /// Chain file (leaf first, then the intermediate if it issued the leaf).
    pub cert: PathBuf,
    /// Private key file, PKCS#8 v1 PEM, mode 0600.
    pub key: PathBuf,
}

/// A signed certificate revocation list.
#[derive(Clone)]
pub struct Crl {
    /// The CRL, PEM (`X509 CRL`).
    pub pem: String,
    /// The CRL, DER.
    pub der: Vec<u8>,
}

impl fmt::Debug for Crl {
    /// Prints the size only; the bytes are noise in assertion messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crl")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

/// The complete test PKI. Every field is a ready-made fixture for one positive or negative
/// case; [`TestPki::issue`] and [`TestPki::crl_with`] make more.
#[derive(Debug)]
pub struct TestPki {
    /// Self-signed root: P-384, CN "Keep Test Root CA", CA pathlen 1, keyCertSign + cRLSign.
    pub root: Ca,
    /// Intermediate signed by the root: P-256, CN "Keep Test Intermediate CA", pathlen 0.
    pub intermediate: Ca,
    /// The vault server: CN `vault.claw.internal`, SANs `DNS:vault.claw.internal`,
    /// `DNS:localhost`, `IP:127.0.0.1`; EKU serverAuth.
    pub server: Leaf,
    /// The valid agent: CN `agent-01`, SANs `DNS:agent-01.claw.internal` and
    /// `URI:spiffe://claw.internal/agent/agent-01`; EKU clientAuth.
    pub client: Leaf,
    /// The operator: CN `operator`, EKU clientAuth, no SANs.
    pub admin: Leaf,
    /// Agent `agent-expired` (clientAuth), valid from 30 days ago until 1 day ago.
    pub expired_client: Leaf,
    /// Agent `agent-future` (clientAuth), valid from 1 day from now.
    pub not_yet_valid_client: Leaf,
    /// Agent `agent-02` with EKU serverAuth only: the "wrong EKU" client.
    pub server_auth_only_client: Leaf,
    /// A serverAuth leaf whose only SAN is `DNS:wrong.claw.internal`: the "wrong name" server.
    pub wrong_san_server: Leaf,
    /// Agent `agent-revoked` (clientAuth), listed in [`TestPki::crl`].
    pub revoked_client: Leaf,
    /// An unrelated self-signed root (CN "Foreign Test Root CA") that nobody trusts.
    pub foreign_ca: Ca,
    /// A clientAuth leaf issued by `foreign_ca`. It impersonates `agent-01` (same CN and SANs),
    /// so a test that accepts it proves identity was read from an unverified certificate.
    pub foreign_client: Leaf,
    /// The intermediate's CRL, listing `revoked_client`; next update in 7 days.
    pub crl: Crl,
    /// The root's empty CRL (rustls by default wants a CRL for every CA in the chain).
    pub root_crl: Crl,
    /// Next CRL number. Per instance, so several `TestPki`s never share state.
    crl_number: AtomicU64,
}

impl Default for TestPki {
    /// Same as [`TestPki::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    /// Builds the whole PKI with ECDSA P-256 leaves.
    pub fn new() -> Self {
        Self::with_leaf_alg(KeyAlg::default())
    }

    /// Builds the whole PKI; every leaf (including `foreign_client`) gets an `alg` key. The CAs
    /// keep their own algorithms (root P-384, intermediate and foreign root P-256).
    pub fn with_leaf_alg(alg: KeyAlg) -> Self {
        let root = Ca::self_signed(ROOT_CN, "Keep Test PKI", KeyAlg::EcdsaP384, 1);
        let intermediate = Ca::signed_by(
            INTERMEDIATE_CN,
            "Keep Test PKI",
            KeyAlg::EcdsaP256,
            0,
            &root,
        );
        let foreign_ca = Ca::self_signed(FOREIGN_CA_CN, "Foreign Test PKI", KeyAlg::EcdsaP256, 1);

        let by_intermediate = |spec: LeafSpec| issue_leaf(&spec.alg(alg), &intermediate, true);

        let server = by_intermediate(
            LeafSpec::server(SERVER_DNS)
                .dns("localhost")
                .ip(Ipv4Addr::LOCALHOST),
        );
        let client = by_intermediate(LeafSpec::agent(CLIENT_CN));
        let admin = by_intermediate(LeafSpec::client(ADMIN_CN));
        let expired_client = by_intermediate(LeafSpec::agent("agent-expired").expired());
        let not_yet_valid_client = by_intermediate(LeafSpec::agent("agent-future").not_yet_valid());
        let server_auth_only_client =
            by_intermediate(LeafSpec::agent("agent-02").eku(&[Eku::Server]));
        let wrong_san_server = by_intermediate(LeafSpec::server("wrong.claw.internal"));
        let revoked_client = by_intermediate(LeafSpec::agent("agent-revoked"));
        let foreign_client = issue_leaf(&LeafSpec::agent(CLIENT_CN).alg(alg), &foreign_ca, false);

        let (this_update, next_update) = crl_window();
        let crl = sign_crl(
            &intermediate,
            &[&revoked_client],
            1,
            this_update,
            next_update,
        );
        let root_crl = sign_crl(&root, &[], 2, this_update, next_update);

        TestPki {
            root,
            intermediate,
            server,
            client,
            admin,
            expired_client,
            not_yet_valid_client,
            server_auth_only_client,
            wrong_san_server,
            revoked_client,
            foreign_ca,
            foreign_client,
            crl,
            root_crl,
            crl_number: AtomicU64::new(3),
        }
    }

    /// Issues a custom leaf from `spec`, signed by the CA `spec.issuer` names.
    pub fn issue(&self, spec: &LeafSpec) -> Leaf {
        match spec.issuer {
            IssuerChoice::Intermediate => issue_leaf(spec, &self.intermediate, true),
            IssuerChoice::Root => issue_leaf(spec, &self.root, false),
            IssuerChoice::Foreign => issue_leaf(spec, &self.foreign_ca, false),
        }
    }

    /// Issues another intermediate CA (P-256, pathlen 0) signed by the root, valid from
    /// `not_before` to `not_after`: e.g. one that expires before the leaves it issues, for
    /// expiry checks. Issue leaves from it with [`Ca::issue`].
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Ca {
        let mut params = ca_params(common_name, "Keep Test PKI", 0, Duration::ZERO);
        params.not_before = not_before;
        params.not_after = not_after;
        Ca::signed_with(common_name, params, KeyAlg::EcdsaP256, &self.root)
    }

    /// A fresh intermediate CRL listing exactly `revoked` (this update a minute ago, next
    /// update in 7 days, a CRL number higher than any this `TestPki` issued before).
    pub fn crl_with(&self, revoked: &[&Leaf]) -> Crl {
        let (this_update, next_update) = crl_window();
        self.crl_by(
            IssuerChoice::Intermediate,
            revoked,
            this_update,
            next_update,
        )
    }

    /// A CRL from any of the CAs with an explicit window, e.g. a stale one
    /// (`next_update` in the past) or one signed by the wrong CA. `next_update` must be after
    /// `this_update`.
    pub fn crl_by(
        &self,
        issuer: IssuerChoice,
        revoked: &[&Leaf],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Crl {
        let ca = match issuer {
            IssuerChoice::Intermediate => &self.intermediate,
            IssuerChoice::Root => &self.root,
            IssuerChoice::Foreign => &self.foreign_ca,
        };
        let number = self.crl_number.fetch_add(1, Ordering::Relaxed);
        sign_crl(ca, revoked, number, this_update, next_update)
    }

    /// A CRL signed by any CA, e.g. an impostor with the intermediate's name but another key
    /// (made with [`TestPki::issue_intermediate`]); window and number as [`TestPki::crl_with`].
    pub fn crl_signed_by(&self, ca: &Ca, revoked: &[&Leaf]) -> Crl {
        let (this_update, next_update) = crl_window();
        let number = self.crl_number.fetch_add(1, Ordering::Relaxed);
        sign_crl(ca, revoked, number, this_update, next_update)
    }

    /// The trust bundle a TLS peer needs: root then intermediate, PEM.
    pub fn ca_bundle_pem(&self) -> String {
        format!("{}{}", self.root.cert_pem, self.intermediate.cert_pem)
    }

    /// Writes every certificate, key and CRL as PEM files into `dir` (created if needed) and
    /// returns their paths. Leaf `.crt` files hold the chain (leaf + intermediate); key files
    /// are created with mode 0600.
    pub fn write_to(&self, dir: &Path) -> TestPkiFiles {
        fs::create_dir_all(dir).expect("create the directory for test PKI files");
        let public = |name: &str, contents: &str| {
            let path = dir.join(name);
            write_public(&path, contents);
            path
        };
        let secret = |name: &str, contents: &str| {
            let path = dir.join(name);
            write_secret(&path, contents);
            path
        };
        let leaf = |name: &str, leaf: &Leaf| leaf.write_to(dir, name);

        let server = leaf("server", &self.server);
        let client = leaf("client", &self.client);
        let admin = leaf("admin", &self.admin);
        let expired_client = leaf("expired-client", &self.expired_client);
        let not_yet_valid_client = leaf("not-yet-valid-client", &self.not_yet_valid_client);
        let server_auth_only_client =
            leaf("server-auth-only-client", &self.server_auth_only_client);
        let wrong_san_server = leaf("wrong-san-server", &self.wrong_san_server);
        let revoked_client = leaf("revoked-client", &self.revoked_client);
        let foreign_client = leaf("foreign-client", &self.foreign_client);

        TestPkiFiles {
            dir: dir.to_path_buf(),
            root_cert: public("root.crt", &self.root.cert_pem),
            root_key: secret("root.key", &self.root.key_pem),
            intermediate_cert: public("intermediate.crt", &self.intermediate.cert_pem),
            intermediate_key: secret("intermediate.key", &self.intermediate.key_pem),
            ca_bundle: public("ca-bundle.crt", &self.ca_bundle_pem()),
            foreign_ca_cert: public("foreign-ca.crt", &self.foreign_ca.cert_pem),
            foreign_ca_key: secret("foreign-ca.key", &self.foreign_ca.key_pem),
            server_cert: server.cert,
            server_key: server.key,
            client_cert: client.cert,
            client_key: client.key,
            admin_cert: admin.cert,
            admin_key: admin.key,
            expired_client_cert: expired_client.cert,
            expired_client_key: expired_client.key,
            not_yet_valid_client_cert: not_yet_valid_client.cert,
            not_yet_valid_client_key: not_yet_valid_client.key,
            server_auth_only_client_cert: server_auth_only_client.cert,
            server_auth_only_client_key: server_auth_only_client.key,
            wrong_san_server_cert: wrong_san_server.cert,
            wrong_san_server_key: wrong_san_server.key,
            revoked_client_cert: revoked_client.cert,
            revoked_client_key: revoked_client.key,
            foreign_client_cert: foreign_client.cert,
            foreign_client_key: foreign_client.key,
            crl: public("crl.pem", &format!("{}{}", self.crl.pem, self.root_crl.pem)),
            intermediate_crl: public("intermediate.crl", &self.crl.pem),
            root_crl: public("root.crl", &self.root_crl.pem),
        }
    }
}

/// Paths written by [`TestPki::write_to`]. All files are PEM; `*_key` files are unencrypted
/// PKCS#8 with mode 0600; leaf `*_cert` files hold the chain (leaf, then intermediate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestPkiFiles {
    /// The directory everything was written to.
    pub dir: PathBuf,
    /// `root.crt`: the root CA certificate.
    pub root_cert: PathBuf,
    /// `root.key`: the root CA key.
    pub root_key: PathBuf,
    /// `intermediate.crt`: the intermediate CA certificate.
    pub intermediate_cert: PathBuf,
    /// `intermediate.key`: the intermediate CA key.
    pub intermediate_key: PathBuf,
    /// `ca-bundle.crt`: root then intermediate.
    pub ca_bundle: PathBuf,
    /// `foreign-ca.crt`: the unrelated root.
    pub foreign_ca_cert: PathBuf,
    /// `foreign-ca.key`: the unrelated root's key.
    pub foreign_ca_key: PathBuf,
    /// `server.crt`: [`TestPki::server`] chain.
    pub server_cert: PathBuf,
    /// `server.key`.
    pub server_key: PathBuf,
    /// `client.crt`: [`TestPki::client`] chain.
    pub client_cert: PathBuf,
    /// `client.key`.
    pub client_key: PathBuf,
    /// `admin.crt`: [`TestPki::admin`] chain.
    pub admin_cert: PathBuf,
    /// `admin.key`.
    pub admin_key: PathBuf,
    /// `expired-client.crt`: [`TestPki::expired_client`] chain.
    pub expired_client_cert: PathBuf,
    /// `expired-client.key`.
    pub expired_client_key: PathBuf,
    /// `not-yet-valid-client.crt`: [`TestPki::not_yet_valid_client`] chain.
    pub not_yet_valid_client_cert: PathBuf,
    /// `not-yet-valid-client.key`.
    pub not_yet_valid_client_key: PathBuf,
    /// `server-auth-only-client.crt`: [`TestPki::server_auth_only_client`] chain.
    pub server_auth_only_client_cert: PathBuf,
    /// `server-auth-only-client.key`.
    pub server_auth_only_client_key: PathBuf,
    /// `wrong-san-server.crt`: [`TestPki::wrong_san_server`] chain.
    pub wrong_san_server_cert: PathBuf,
    /// `wrong-san-server.key`.
    pub wrong_san_server_key: PathBuf,
    /// `revoked-client.crt`: [`TestPki::revoked_client`] chain.
    pub revoked_client_cert: PathBuf,
    /// `revoked-client.key`.
    pub revoked_client_key: PathBuf,
    /// `foreign-client.crt`: [`TestPki::foreign_client`] (leaf only; its issuer is a root).
    pub foreign_client_cert: PathBuf,
    /// `foreign-client.key`.
    pub foreign_client_key: PathBuf,
    /// `crl.pem`: the intermediate's CRL then the root's, concatenated.
    pub crl: PathBuf,
    /// `intermediate.crl`: the intermediate's CRL alone.
    pub intermediate_crl: PathBuf,
    /// `root.crl`: the root's CRL alone.
    pub root_crl: PathBuf,
}

/// A certificate signing request and the key it was made with.
#[derive(Clone)]
pub struct Csr {
    /// The request, PEM (`CERTIFICATE REQUEST`).
    pub pem: String,
    /// Its key, unencrypted PKCS#8 v1 PEM.
    pub key_pem: String,
    /// Its key, PKCS#8 v1 DER.
    pub key_der: Vec<u8>,
}

impl fmt::Debug for Csr {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Csr")
            .field("key_pem", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// A CSR with a fresh `alg` key for `common_name` (none when empty) and `sans` (DNS names,
/// IPs, URIs with `://`, emails with `@`), asking for `eku` in an extension request when not
/// empty (online CAs must refuse EKUs their role does not allow).
pub fn csr(common_name: &str, sans: &[&str], eku: &[Eku], alg: KeyAlg) -> Csr {
    csr_for_key(&alg.generate(), common_name, sans, eku)
}

/// Like [`csr`], for an existing key (a leaf's `key_der`, to test "renewal needs a new key").
pub fn csr_with_key_der(key_der: &[u8], alg: KeyAlg, common_name: &str, sans: &[&str]) -> Csr {
    let key = KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8::der::Document::try_from(key_der)
            .expect("a PKCS#8 DER key")
            .as_bytes()
            .into(),
        alg.signature_algorithm(),
    )
    .expect("the key loads for its algorithm");
    csr_for_key(&key, common_name, sans, &[])
}

fn csr_for_key(key: &KeyPair, common_name: &str, sans: &[&str], eku: &[Eku]) -> Csr {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if !common_name.is_empty() {
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
    }
    let ia5 = |s: &str| {
        rcgen::string::Ia5String::try_from(s).expect("CSR SANs must be ASCII (IA5String)")
    };
    for s in sans {
        params
            .subject_alt_names
            .push(if let Ok(ip) = s.parse::<IpAddr>() {
                SanType::IpAddress(ip)
            } else if s.contains("://") {
                SanType::URI(ia5(s))
            } else if s.contains('@') {
                SanType::Rfc822Name(ia5(s))
            } else {
                SanType::DnsName(ia5(s))
            });
    }
    params.extended_key_usages = eku.iter().map(|e| e.to_rcgen()).collect();
    let req = params
        .serialize_request(key)
        .expect("rcgen serializes a CSR");
    let (key_der, key_pem) = pkcs8_v1(&key.serialize_der());
    Csr {
        pem: req.pem().expect("PEM-encode the CSR"),
        key_pem,
        key_der,
    }
}

/// A fresh temporary directory (prefix `keep-test-`), removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("keep-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Signs a leaf for `spec` with `ca`; `ca_in_chain` appends the CA certificate to the chain
/// (true for the intermediate, false for roots, which peers must already trust).
fn issue_leaf(spec: &LeafSpec, ca: &Ca, ca_in_chain: bool) -> Leaf {
    let key = spec.alg.generate();
    let serial = random_serial();

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if !spec.common_name.is_empty() {
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
    }
    params.subject_alt_names = subject_alt_names(spec);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if spec.alg == KeyAlg::Rsa2048 {
        // RSA keys can also do key transport; EC and Ed25519 keys cannot.
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = spec.eku.iter().map(|e| e.to_rcgen()).collect();
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.use_authority_key_identifier_extension = true;
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;

    let cert = params
        .signed_by(&key, &ca.issuer)
        .expect("rcgen signs a leaf certificate (check the LeafSpec's SANs are ASCII)");
    let der = cert.der().to_vec();
    let cert_pem = pem_encode("CERTIFICATE", &der);
    let (key_der, key_pem) = pkcs8_v1(key.serialized_der());

    let mut chain_pem = cert_pem.clone();
    let mut chain_der = vec![der.clone()];
    if ca_in_chain {
        chain_pem.push_str(&ca.cert_pem);
        chain_der.push(ca.der.clone());
    }

    Leaf {
        common_name: spec.common_name.clone(),
        cert_pem,
        key_pem,
        key_der,
        chain_pem,
        der,
        chain_der,
        serial: serial.to_vec(),
    }
}

fn subject_alt_names(spec: &LeafSpec) -> Vec<SanType> {
    let ia5 = |s: &String| {
        rcgen::string::Ia5String::try_from(s.as_str())
            .expect("LeafSpec DNS names, URIs and e-mails must be ASCII (IA5String)")
    };
    let mut sans = Vec::new();
    sans.extend(spec.dns.iter().map(|d| SanType::DnsName(ia5(d))));
    sans.extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    sans.extend(spec.uris.iter().map(|u| SanType::URI(ia5(u))));
    sans.extend(spec.emails.iter().map(|e| SanType::Rfc822Name(ia5(e))));
    sans
}

/// This-update a minute ago (a verifier's clock may lag ours), next update in 7 days.
fn crl_window() -> (OffsetDateTime, OffsetDateTime) {
    let now = now();
    (now - Duration::minutes(1), now + Duration::days(7))
}

fn sign_crl(
    ca: &Ca,
    revoked: &[&Leaf],
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Crl {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|leaf| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&leaf.serial),
                revocation_time: this_update,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(&ca.issuer)
        .expect("rcgen signs a CRL (next_update must be after this_update)");
    let der = crl.der().to_vec();
    Crl {
        pem: pem_encode("X509 CRL", &der),
        der,
    }
}

/// 16 random bytes usable verbatim as a DER INTEGER: the top bit is clear (positive, no sign
/// padding) and the first byte is non-zero (no leading zero to strip), so the bytes in the
/// certificate, in the CRL and in [`Leaf::serial`] are identical.
fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).expect("the OS random number generator works");
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 1;
    }
    serial
}

/// Rewrites a PKCS#8 key as v1 (RFC 5208): rcgen writes Ed25519 keys as v2 (RFC 5958, with the
/// public key attached), which OpenSSL 3.0 refuses to read. The public key is redundant: every
/// reader recomputes it from the private key. Returns (DER, PEM).
fn pkcs8_v1(der: &[u8]) -> (Vec<u8>, String) {
    let mut info =
        PrivateKeyInfoRef::try_from(der).expect("rcgen/aws-lc-rs emit well-formed PKCS#8");
    info.public_key = None;
    let doc = info
        .to_pkcs8_der()
        .expect("re-encode a PKCS#8 key without its public key");
    let pem = doc
        .to_pem("PRIVATE KEY", LineEnding::LF)
        .expect("PEM-encode a PKCS#8 key");
    (doc.as_bytes().to_vec(), pem.as_str().to_owned())
}

fn pem_encode(label: &'static str, der: &[u8]) -> String {
    pkcs8::der::pem::encode_string(label, LineEnding::LF, der).expect("PEM-encode DER")
}

/// "Now" without sub-second precision: certificates store whole seconds, so tests can compare
/// a spec's times with what a parser reads back.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
}

fn write_public(path: &Path, contents: &str) {
    fs::write(path, contents)
        .unwrap_or_else(|e| panic!("write test PKI file {}: {e}", path.display()));
}

/// Writes a private key readable by the owner only. The mode is set at creation so the key is
/// never briefly world-readable, and again afterwards in case the file already existed.
fn write_secret(path: &Path, contents: &str) {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .unwrap_or_else(|e| panic!("create test key file {}: {e}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod 600 {}: {e}", path.display()));
    }
    file.write_all(contents.as_bytes())
        .unwrap_or_else(|e| panic!("write test key file {}: {e}", path.display()));
}
