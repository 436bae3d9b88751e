//! Checks the generated PKI field by field with x509-parser, an independent DER reader.
// Test code: a panic is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use keep_test_support::{
    ADMIN_CN, CLIENT_CN, CLIENT_SPIFFE_ID, Ca, Eku, FOREIGN_CA_CN, INTERMEDIATE_CN, IssuerChoice,
    KeyAlg, Leaf, LeafSpec, ROOT_CN, SERVER_DNS, TestPki, tempdir,
};
use rcgen::PublicKeyData;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::revocation_list::CertificateRevocationList;

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).expect("certificate parses");
    assert!(rest.is_empty(), "trailing bytes after certificate");
    cert
}

fn parse_crl(der: &[u8]) -> CertificateRevocationList<'_> {
    let (rest, crl) = CertificateRevocationList::from_der(der).expect("CRL parses");
    assert!(rest.is_empty(), "trailing bytes after CRL");
    crl
}

fn cn<'a>(cert: &'a X509Certificate<'_>) -> &'a str {
    cert.subject()
        .iter_common_name()
        .next()
        .expect("subject has a CN")
        .as_str()
        .expect("CN is a string")
}

fn issuer_cn<'a>(cert: &'a X509Certificate<'_>) -> &'a str {
    cert.issuer()
        .iter_common_name()
        .next()
        .expect("issuer has a CN")
        .as_str()
        .expect("CN is a string")
}

/// (is_ca, path_len) from basicConstraints; panics if the extension is missing.
fn basic_constraints(cert: &X509Certificate<'_>) -> (bool, Option<u32>) {
    let bc = cert
        .basic_constraints()
        .expect("one basicConstraints")
        .expect("basicConstraints present");
    (bc.value.ca, bc.value.path_len_constraint)
}

/// (serverAuth, clientAuth), or None without an EKU extension.
fn eku(cert: &X509Certificate<'_>) -> Option<(bool, bool)> {
    cert.extended_key_usage()
        .expect("one EKU extension")
        .map(|e| (e.value.server_auth, e.value.client_auth))
}

#[derive(Debug, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
    Email(String),
}

fn sans(cert: &X509Certificate<'_>) -> Vec<San> {
    let Some(ext) = cert.subject_alternative_name().expect("one SAN extension") else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(d) => San::Dns((*d).to_owned()),
            GeneralName::URI(u) => San::Uri((*u).to_owned()),
            GeneralName::RFC822Name(e) => San::Email((*e).to_owned()),
            GeneralName::IPAddress(b) => San::Ip(match b.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                n => panic!("IP SAN of {n} bytes"),
            }),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

fn key_identifiers(cert: &X509Certificate<'_>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let (mut ski, mut aki) = (None, None);
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    (ski, aki)
}

/// Asserts `child` names `parent` as issuer, by DN, by key identifier and by signature.
fn assert_issued_by(child: &[u8], parent: &Ca) {
    let (child, parent) = (parse(child), parse(&parent.der));
    assert_eq!(
        child.issuer().as_raw(),
        parent.subject().as_raw(),
        "issuer DN"
    );
    let (parent_ski, _) = key_identifiers(&parent);
    let (_, child_aki) = key_identifiers(&child);
    assert!(child_aki.is_some(), "authorityKeyIdentifier present");
    assert_eq!(child_aki, parent_ski, "AKI matches the issuer's SKI");
    child
        .verify_signature(Some(parent.public_key()))
        .expect("signature verifies with the issuer's key");
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn assert_currently_valid(cert: &X509Certificate<'_>) {
    let v = cert.validity();
    assert!(
        v.not_before.timestamp() <= now(),
        "not_before is in the past"
    );
    assert!(
        v.not_after.timestamp() > now(),
        "not_after is in the future"
    );
}

fn assert_leaf_basics(leaf: &Leaf, cn_expected: &str) {
    let cert = parse(&leaf.der);
    assert_eq!(cn(&cert), cn_expected);
    assert_eq!(basic_constraints(&cert), (false, None), "explicit CA:FALSE");
    let ku = cert.key_usage().unwrap().expect("keyUsage present").value;
    assert!(ku.digital_signature());
    assert!(!ku.key_cert_sign() && !ku.crl_sign());
    assert_eq!(
        cert.raw_serial(),
        leaf.serial.as_slice(),
        "serial field matches"
    );
    assert_eq!(leaf.serial.len(), 16);
    assert_eq!(leaf.serial[0] & 0x80, 0, "serial is positive");
}

#[test]
fn root_is_a_p384_self_signed_ca_with_pathlen_1() {
    let pki = TestPki::new();
    let root = parse(&pki.root.der);
    assert_eq!(cn(&root), ROOT_CN);
    assert_eq!(pki.root.common_name, ROOT_CN);
    assert_eq!(
        root.issuer().as_raw(),
        root.subject().as_raw(),
        "self-issued"
    );
    root.verify_signature(None).expect("self-signed");
    assert_eq!(basic_constraints(&root), (true, Some(1)));
    let ku = root.key_usage().unwrap().expect("keyUsage present").value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature());
    match root.public_key().parsed().unwrap() {
        PublicKey::EC(point) => assert_eq!(point.data().len(), 97, "P-384 uncompressed point"),
        other => panic!("root key is not EC: {other:?}"),
    }
    assert_currently_valid(&root);
}

#[test]
fn intermediate_is_signed_by_root_with_pathlen_0() {
    let pki = TestPki::new();
    let int = parse(&pki.intermediate.der);
    assert_eq!(cn(&int), INTERMEDIATE_CN);
    assert_eq!(issuer_cn(&int), ROOT_CN);
    assert_eq!(basic_constraints(&int), (true, Some(0)));
    let ku = int.key_usage().unwrap().expect("keyUsage present").value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert_issued_by(&pki.intermediate.der, &pki.root);
    assert_currently_valid(&int);
}

#[test]
fn server_has_vault_names_and_server_auth_only() {
    let pki = TestPki::new();
    assert_leaf_basics(&pki.server, SERVER_DNS);
    let cert = parse(&pki.server.der);
    assert_eq!(
        sans(&cert),
        vec![
            San::Dns(SERVER_DNS.into()),
            San::Dns("localhost".into()),
            San::Ip("127.0.0.1".parse().unwrap()),
        ]
    );
    assert_eq!(eku(&cert), Some((true, false)));
    assert_issued_by(&pki.server.der, &pki.intermediate);
    assert_currently_valid(&cert);
}

#[test]
fn client_is_agent_01_with_spiffe_id_and_client_auth_only() {
    let pki = TestPki::new();
    assert_leaf_basics(&pki.client, CLIENT_CN);
    let cert = parse(&pki.client.der);
    assert_eq!(
        sans(&cert),
        vec![
            San::Dns("agent-01.claw.internal".into()),
            San::Uri(CLIENT_SPIFFE_ID.into()),
        ]
    );
    assert_eq!(eku(&cert), Some((false, true)));
    assert_issued_by(&pki.client.der, &pki.intermediate);
    assert_currently_valid(&cert);
}

#[test]
fn admin_is_operator_with_client_auth() {
    let pki = TestPki::new();
    assert_leaf_basics(&pki.admin, ADMIN_CN);
    let cert = parse(&pki.admin.der);
    assert_eq!(eku(&cert), Some((false, true)));
    assert_eq!(sans(&cert), vec![]);
    assert_issued_by(&pki.admin.der, &pki.intermediate);
}

#[test]
fn expired_client_ended_a_day_ago() {
    let pki = TestPki::new();
    assert_leaf_basics(&pki.expired_client, "agent-expired");
    let cert = parse(&pki.expired_client.der);
    assert_eq!(eku(&cert), Some((false, true)));
    let v = cert.validity();
    let ended_ago = now() - v.not_after.timestamp();
    assert!(
        (86_390..=86_410).contains(&ended_ago),
        "ended {ended_ago}s ago"
    );
    assert!(v.not_before.timestamp() < v.not_after.timestamp());
    // Still nested inside the intermediate's validity, so "expired" is the only fault.
    let int = parse(&pki.intermediate.der);
    assert!(int.validity().not_before.timestamp() <= v.not_before.timestamp());
    assert_issued_by(&pki.expired_client.der, &pki.intermediate);
}

#[test]
fn not_yet_valid_client_starts_in_a_day() {
    let pki = TestPki::new();
    assert_leaf_basics(&pki.not_yet_valid_client, "agent-future");
    let cert = parse(&pki.not_yet_valid_client.der);
    assert_eq!(eku(&cert), Some((false, true)));
    let starts_in = cert.validity().not_before.timestamp() - now();
    assert!(
        (86_390..=86_410).contains(&starts_in),
        "starts in {starts_in}s"
    );
    assert_issued_by(&pki.not_yet_valid_client.der, &pki.intermediate);
}

#[test]
fn server_auth_only_client_is_agent_02_without_client_auth() {
    let pki = TestPki::new();
    assert_leaf_basics(&pki.server_auth_only_client, "agent-02");
    let cert = parse(&pki.server_auth_only_client.der);
    assert_eq!(eku(&cert), Some((true, false)));
    assert_currently_valid(&cert);
    assert_issued_by(&pki.server_auth_only_client.der, &pki.intermediate);
}

#[test]
fn wrong_san_server_names_only_wrong_host() {
    let pki = TestPki::new();
    let cert = parse(&pki.wrong_san_server.der);
    assert_eq!(sans(&cert), vec![San::Dns("wrong.claw.internal".into())]);
    assert_eq!(eku(&cert), Some((true, false)));
    assert_currently_valid(&cert);
    assert_issued_by(&pki.wrong_san_server.der, &pki.intermediate);
}

#[test]
fn foreign_client_chains_to_foreign_root_only() {
    let pki = TestPki::new();
    let foreign = parse(&pki.foreign_ca.der);
    assert_eq!(cn(&foreign), FOREIGN_CA_CN);
    assert_eq!(basic_constraints(&foreign), (true, Some(1)));
    foreign.verify_signature(None).expect("self-signed");

    let cert = parse(&pki.foreign_client.der);
    assert_eq!(cn(&cert), CLIENT_CN, "impersonates agent-01");
    assert_eq!(eku(&cert), Some((false, true)));
    assert_issued_by(&pki.foreign_client.der, &pki.foreign_ca);
    let int = parse(&pki.intermediate.der);
    assert!(cert.verify_signature(Some(int.public_key())).is_err());
    assert_eq!(
        pki.foreign_client.chain_der,
        vec![pki.foreign_client.der.clone()]
    );
}

#[test]
fn chains_are_leaf_then_intermediate() {
    let pki = TestPki::new();
    for leaf in [&pki.server, &pki.client, &pki.revoked_client] {
        assert_eq!(
            leaf.chain_pem,
            format!("{}{}", leaf.cert_pem, pki.intermediate.cert_pem)
        );
        assert_eq!(
            leaf.chain_der,
            vec![leaf.der.clone(), pki.intermediate.der.clone()]
        );
    }
    assert_eq!(
        pki.ca_bundle_pem(),
        format!("{}{}", pki.root.cert_pem, pki.intermediate.cert_pem)
    );
}

#[test]
fn crl_lists_exactly_the_revoked_client() {
    let pki = TestPki::new();
    let crl = parse_crl(&pki.crl.der);
    let int = parse(&pki.intermediate.der);
    assert_eq!(crl.issuer().as_raw(), int.subject().as_raw());
    crl.verify_signature(int.public_key())
        .expect("CRL signed by the intermediate");
    let serials: Vec<&[u8]> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial())
        .collect();
    assert_eq!(serials, vec![pki.revoked_client.serial.as_slice()]);
    assert!(crl.last_update().timestamp() <= now());
    let next = crl.next_update().expect("nextUpdate present").timestamp() - now();
    assert!(
        (7 * 86_400 - 10..=7 * 86_400).contains(&next),
        "next update in {next}s"
    );
    assert!(pki.crl.pem.starts_with("-----BEGIN X509 CRL-----\n"));

    let root_crl = parse_crl(&pki.root_crl.der);
    let root = parse(&pki.root.der);
    assert_eq!(root_crl.issuer().as_raw(), root.subject().as_raw());
    root_crl
        .verify_signature(root.public_key())
        .expect("root CRL signed by the root");
    assert_eq!(root_crl.iter_revoked_certificates().count(), 0);
}

#[test]
fn crl_with_lists_given_leaves_and_numbers_increase() {
    let pki = TestPki::new();
    let extra = pki.issue(&LeafSpec::agent("agent-09"));
    let first = pki.crl_with(&[&extra, &pki.client]);
    let second = pki.crl_with(&[]);
    let parsed = parse_crl(&first.der);
    let serials: Vec<&[u8]> = parsed
        .iter_revoked_certificates()
        .map(|r| r.raw_serial())
        .collect();
    assert_eq!(
        serials,
        vec![extra.serial.as_slice(), pki.client.serial.as_slice()]
    );
    let n1 = parsed.crl_number().expect("CRL number").clone();
    let n2 = parse_crl(&second.der)
        .crl_number()
        .expect("CRL number")
        .clone();
    let n0 = parse_crl(&pki.crl.der)
        .crl_number()
        .expect("CRL number")
        .clone();
    assert!(n0 < n1 && n1 < n2, "{n0} < {n1} < {n2}");

    let stale_start = OffsetDateTime::now_utc() - time::Duration::days(10);
    let stale = pki.crl_by(
        IssuerChoice::Root,
        &[],
        stale_start,
        stale_start + time::Duration::days(1),
    );
    let stale = parse_crl(&stale.der);
    assert!(stale.next_update().unwrap().timestamp() < now());
    assert_eq!(
        stale.issuer().as_raw(),
        parse(&pki.root.der).subject().as_raw()
    );
}

#[test]
fn serials_are_distinct() {
    let pki = TestPki::new();
    let mut serials: Vec<Vec<u8>> = [
        &pki.server,
        &pki.client,
        &pki.admin,
        &pki.expired_client,
        &pki.not_yet_valid_client,
        &pki.server_auth_only_client,
        &pki.wrong_san_server,
        &pki.revoked_client,
        &pki.foreign_client,
    ]
    .iter()
    .map(|l| l.serial.clone())
    .collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 9);
}

/// Reads the PKCS#8 version INTEGER straight from the DER: SEQUENCE { INTEGER version, ... }.
fn pkcs8_version_byte(der: &[u8]) -> u8 {
    assert_eq!(der[0], 0x30, "SEQUENCE");
    let len_octets = if der[1] & 0x80 != 0 {
        usize::from(der[1] & 0x7f)
    } else {
        0
    };
    let i = 2 + len_octets;
    assert_eq!(&der[i..i + 2], &[0x02, 0x01], "INTEGER of one byte");
    der[i + 2]
}

#[test]
fn keys_are_pkcs8_v1_and_match_their_certificates_for_every_alg() {
    let pki = TestPki::new();
    for alg in KeyAlg::ALL {
        let leaf = pki.issue(&LeafSpec::server("alg.claw.internal").alg(alg));
        assert_eq!(pkcs8_version_byte(&leaf.key_der), 0, "{alg:?}: PKCS#8 v1");
        assert!(leaf.key_pem.starts_with("-----BEGIN\x20PRIVATE KEY-----\n"));
        let key = rcgen::KeyPair::from_pem(&leaf.key_pem).expect("rcgen reloads the key");
        assert_eq!(key.serialized_der(), leaf.key_der.as_slice());
        let cert = parse(&leaf.der);
        assert_eq!(
            key.subject_public_key_info(),
            cert.public_key().raw,
            "{alg:?}: key matches certificate"
        );
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert_eq!(ku.key_encipherment(), alg == KeyAlg::Rsa2048, "{alg:?}");
        assert_issued_by(&leaf.der, &pki.intermediate);
    }
    for ca in [&pki.root, &pki.intermediate, &pki.foreign_ca] {
        let der = pkcs8::der::pem::decode_vec(ca.key_pem.as_bytes())
            .unwrap()
            .1;
        assert_eq!(pkcs8_version_byte(&der), 0, "{}: PKCS#8 v1", ca.common_name);
        let key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
        assert_eq!(
            key.subject_public_key_info(),
            parse(&ca.der).public_key().raw
        );
        assert_eq!(
            ca.issuer.key().subject_public_key_info(),
            key.subject_public_key_info()
        );
    }
}

#[test]
fn with_leaf_alg_applies_to_every_leaf() {
    let pki = TestPki::with_leaf_alg(KeyAlg::Ed25519);
    for leaf in [
        &pki.server,
        &pki.client,
        &pki.revoked_client,
        &pki.foreign_client,
    ] {
        let cert = parse(&leaf.der);
        assert_eq!(
            cert.public_key().algorithm.algorithm.to_id_string(),
            "1.3.101.112",
            "{leaf:?} has an Ed25519 key"
        );
        assert_eq!(pkcs8_version_byte(&leaf.key_der), 0);
    }
    // The CAs keep their algorithms.
    match parse(&pki.root.der).public_key().parsed().unwrap() {
        PublicKey::EC(point) => assert_eq!(point.data().len(), 97),
        other => panic!("root key is not EC: {other:?}"),
    }
}

#[test]
fn issue_honours_every_spec_field() {
    let pki = TestPki::new();
    let nb = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - time::Duration::days(2);
    let na = nb + time::Duration::days(5);
    let spec = LeafSpec::client("")
        .dns("a.claw.internal")
        .ip(Ipv6Addr::LOCALHOST)
        .uri("spiffe://claw.internal/x")
        .email("ops@claw.internal")
        .eku(&[])
        .valid(nb, na)
        .alg(KeyAlg::EcdsaP384)
        .issuer(IssuerChoice::Root);
    let leaf = pki.issue(&spec);
    let cert = parse(&leaf.der);
    assert_eq!(cert.subject().iter_common_name().count(), 0, "no CN");
    assert_eq!(
        sans(&cert),
        vec![
            San::Dns("a.claw.internal".into()),
            San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            San::Uri("spiffe://claw.internal/x".into()),
            San::Email("ops@claw.internal".into()),
        ]
    );
    assert_eq!(eku(&cert), None, "no EKU extension");
    assert_eq!(cert.validity().not_before.timestamp(), nb.unix_timestamp());
    assert_eq!(cert.validity().not_after.timestamp(), na.unix_timestamp());
    assert_issued_by(&leaf.der, &pki.root);
    assert_eq!(
        leaf.chain_der,
        vec![leaf.der.clone()],
        "root-issued leaf travels alone"
    );
    assert_eq!(leaf.chain_pem, leaf.cert_pem);

    let both = pki.issue(&LeafSpec::server("both.claw.internal").eku(&[Eku::Server, Eku::Client]));
    assert_eq!(eku(&parse(&both.der)), Some((true, true)));
    let foreign = pki.issue(&LeafSpec::agent("agent-x").issuer(IssuerChoice::Foreign));
    assert_issued_by(&foreign.der, &pki.foreign_ca);
}

#[cfg(unix)]
#[test]
fn write_to_writes_every_file_with_private_keys_0600() {
    use std::os::unix::fs::PermissionsExt;

    let pki = TestPki::new();
    let dir = tempdir();
    let files = pki.write_to(dir.path());
    assert_eq!(files.dir, dir.path());

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let keys = [
        &files.root_key,
        &files.intermediate_key,
        &files.foreign_ca_key,
        &files.server_key,
        &files.client_key,
        &files.admin_key,
        &files.expired_client_key,
        &files.not_yet_valid_client_key,
        &files.server_auth_only_client_key,
        &files.wrong_san_server_key,
        &files.revoked_client_key,
        &files.foreign_client_key,
    ];
    for key in keys {
        assert_eq!(mode(key), 0o600, "{}", key.display());
        let pem = std::fs::read_to_string(key).unwrap();
        rcgen::KeyPair::from_pem(&pem).expect("key file loads");
    }

    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&files.root_cert), pki.root.cert_pem);
    assert_eq!(read(&files.intermediate_cert), pki.intermediate.cert_pem);
    assert_eq!(read(&files.ca_bundle), pki.ca_bundle_pem());
    assert_eq!(read(&files.foreign_ca_cert), pki.foreign_ca.cert_pem);
    assert_eq!(read(&files.server_cert), pki.server.chain_pem);
    assert_eq!(read(&files.server_key), pki.server.key_pem);
    assert_eq!(read(&files.client_cert), pki.client.chain_pem);
    assert_eq!(
        read(&files.revoked_client_cert),
        pki.revoked_client.chain_pem
    );
    assert_eq!(
        read(&files.foreign_client_cert),
        pki.foreign_client.cert_pem
    );
    assert_eq!(
        read(&files.crl),
        format!("{}{}", pki.crl.pem, pki.root_crl.pem)
    );
    assert_eq!(read(&files.intermediate_crl), pki.crl.pem);
    assert_eq!(read(&files.root_crl), pki.root_crl.pem);
    for cert in [
        &files.admin_cert,
        &files.expired_client_cert,
        &files.not_yet_valid_client_cert,
        &files.server_auth_only_client_cert,
        &files.wrong_san_server_cert,
    ] {
        assert_eq!(
            read(cert).matches("BEGIN CERTIFICATE").count(),
            2,
            "{}",
            cert.display()
        );
    }

    // Writing again over existing files (e.g. a loosened key) restores 0600.
    std::fs::set_permissions(&files.client_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = pki.write_to(dir.path());
    assert_eq!(mode(&again.client_key), 0o600);

    let custom = pki.client.write_to(&dir.path().join("sub"), "custom");
    assert_eq!(mode(&custom.key), 0o600);
    assert_eq!(read(&custom.cert), pki.client.chain_pem);
}

#[test]
fn debug_output_never_contains_key_material() {
    let pki = TestPki::new();
    let debug = format!("{pki:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    assert!(!debug.contains(&pki.client.key_pem[40..80]));
    assert!(debug.contains("agent-01"));
}

#[test]
fn building_the_pki_is_fast_and_independent() {
    let start = Instant::now();
    let a = TestPki::new();
    let elapsed = start.elapsed();
    eprintln!("TestPki::new() took {elapsed:?}");
    let b = TestPki::default();
    assert_ne!(a.root.der, b.root.der, "no global cache: each PKI is fresh");
    assert_ne!(a.client.serial, b.client.serial);
}
