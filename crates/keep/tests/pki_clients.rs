//! The PKI mount of the real `keep server` driven by real Vault clients: vaultrs's `pki`
//! module in-process, hvac through Python. Field names and shapes are Vault's, so these
//! clients work unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

mod common;

use keep_test_support::lab::{Lab, hvac_python};
use keep_test_support::{KeyAlg, csr};

fn keep_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_keep"))
}

/// A lab whose server has the PKI mount, issuing with the test intermediate.
fn pki_lab() -> Lab {
    Lab::with_pki(keep_bin())
}

#[test]
fn hvac_pki_calls_work_unchanged() {
    let Some(py) = hvac_python() else { return };
    let lab = pki_lab();
    lab.init();
    let server = lab.start();
    let csr_file = lab.dir.join("agent-31.csr");
    std::fs::write(
        &csr_file,
        csr("agent-31.claw.internal", &[], &[], KeyAlg::EcdsaP256).pem,
    )
    .unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../keep-server/tests/clients/hvac_pki.py");
    let out = Command::new(py)
        .arg(&script)
        .arg(lab.url())
        .arg(&lab.files.root_cert)
        .arg(&lab.files.admin_cert)
        .arg(&lab.files.admin_key)
        .arg(&csr_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hvac PKI script failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all PKI calls behaved"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaultrs_pki_calls_work_unchanged() {
    use vaultrs::api::pki::requests::{
        GenerateCertificateRequest, SetRoleRequest, SignCertificateRequest,
    };
    use vaultrs::pki;
    let lab = pki_lab();
    lab.init();
    let server = lab.start();
    let client = common::admin_vaultrs(&lab);

    pki::role::set(
        &client,
        "pki",
        "agents",
        Some(
            SetRoleRequest::builder()
                .allowed_domains(vec!["claw.internal".to_owned()])
                .allow_subdomains(true)
                .server_flag(false)
                .ttl("1h")
                .max_ttl("2h"),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", server.log()));
    let role = pki::role::read(&client, "pki", "agents").await.unwrap();
    assert_eq!(role.allowed_domains, vec!["claw.internal"]);
    assert!(role.allow_subdomains && role.client_flag && !role.server_flag);
    assert_eq!((role.ttl, role.max_ttl), (3600, 7200));
    assert_eq!(
        pki::role::list(&client, "pki").await.unwrap().keys,
        vec!["agents"]
    );

    let issued = pki::cert::generate(
        &client,
        "pki",
        "agents",
        Some(
            GenerateCertificateRequest::builder()
                .common_name("agent-40.claw.internal")
                .ttl("30m"),
        ),
    )
    .await
    .unwrap();
    assert_eq!(issued.private_key_type, "ec");
    assert!(issued.private_key.contains("PRIVATE KEY"));
    assert!(issued.expiration.is_some());

    let request = csr("agent-41.claw.internal", &[], &[], KeyAlg::EcdsaP256);
    let signed = pki::cert::ca::sign(
        &client,
        "pki",
        "agents",
        &request.pem,
        "agent-41.claw.internal",
        Some(SignCertificateRequest::builder().ttl("45m")),
    )
    .await
    .unwrap();
    assert_ne!(signed.serial_number, issued.serial_number);

    let mut serials = pki::cert::list(&client, "pki").await.unwrap();
    serials.sort();
    let mut want = vec![issued.serial_number.clone(), signed.serial_number.clone()];
    want.sort();
    assert_eq!(serials, want);
    let read = pki::cert::read(&client, "pki", &signed.serial_number)
        .await
        .unwrap();
    assert_eq!(read.revocation_time, 0);
    assert_eq!(read.certificate.trim(), signed.certificate.trim());

    let revoked = pki::cert::revoke(&client, "pki", &issued.serial_number)
        .await
        .unwrap();
    assert!(revoked.revocation_time > 0);
    let read = pki::cert::read(&client, "pki", &issued.serial_number)
        .await
        .unwrap();
    assert_eq!(read.revocation_time as u64, revoked.revocation_time);

    // A refusal arrives as Vault's error body, with the reason.
    let err = pki::cert::generate(
        &client,
        "pki",
        "agents",
        Some(GenerateCertificateRequest::builder().common_name("db.example.org")),
    )
    .await
    .unwrap_err();
    match &err {
        vaultrs::error::ClientError::APIError { code: 400, errors } => {
            assert!(errors[0].contains("\"db.example.org\""), "{errors:?}");
            assert!(errors[0].contains("allowed_domains"), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }

    pki::role::delete(&client, "pki", "agents").await.unwrap();
    assert!(pki::role::read(&client, "pki", "agents").await.is_err());
}

#[test]
fn the_ca_and_crl_are_served_to_any_mtls_client_and_the_issuer_is_checked_at_start() {
    let lab = pki_lab();
    lab.init();
    let _server = lab.start();
    let agent = (&lab.files.client_cert, &lab.files.client_key);
    let (code, body) = lab.curl_as(agent.0, agent.1, "GET", "/v1/pki/ca/pem", None);
    assert_eq!(code, 200);
    assert_eq!(
        body.trim(),
        std::fs::read_to_string(&lab.files.intermediate_cert)
            .unwrap()
            .trim()
    );
    let (code, body) = lab.curl_as(agent.0, agent.1, "GET", "/v1/pki/crl/pem", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("-----BEGIN X509 CRL-----"));
    let (code, _) = lab.curl_as(agent.0, agent.1, "LIST", "/v1/pki/certs", None);
    assert_eq!(code, 403);

    // `keep server check` validates the issuer too, naming the field.
    let bad = lab.write_config(
        "bad-pki.yaml",
        &std::fs::read_to_string(&lab.config).unwrap().replace(
            &format!("issuer_key_file: {}", lab.files.intermediate_key.display()),
            &format!("issuer_key_file: {}", lab.files.root_key.display()),
        ),
    );
    let out = Command::new(keep_bin())
        .args(["server", "check", "--config"])
        .arg(&bad)
        .current_dir(&lab.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pki.issuer_key_file") && err.contains("does not belong"),
        "{err}"
    );
    let out = Command::new(keep_bin())
        .args(["server", "check", "--config"])
        .arg(&lab.config)
        .current_dir(&lab.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
