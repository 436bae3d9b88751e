//! The forgiving PEM reader (`keep_pki::pem`) and the private key reader on top of it.
//!
//! Invariants beyond "no panic":
//! - every error is one line naming the input's source (the message users see);
//! - every block read re-encodes canonically and reads back to the same label and bytes;
//! - certificates read by `read_certificates` read back the same after canonical re-encoding;
//! - the key reader agrees with the PEM layer: no key found only when there is no key label.
#![no_main]

use keep_pki::key::{KeyError, is_encrypted, load_private_key};
use keep_pki::pem::{self, PemBlock, Source};
use libfuzzer_sys::fuzz_target;

const KEY_LABELS: [&str; 4] = [
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
];

fn source() -> Source {
    Source::File("fuzz.pem".into())
}

fn check_message(message: &str) {
    assert!(!message.contains('\n'), "multi-line error: {message:?}");
    assert!(
        message.contains("fuzz.pem"),
        "error without its source: {message:?}"
    );
}

fn reencode(blocks: &[PemBlock]) -> String {
    blocks
        .iter()
        .map(|b| pem::encode(&b.label, &b.der))
        .collect()
}

fn same(a: &[PemBlock], b: &[PemBlock]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.label == y.label && *x.der == *y.der)
}

fuzz_target!(|data: &[u8]| {
    let src = source();
    let blocks = match pem::parse(data, &src) {
        Ok(blocks) => {
            assert!(!blocks.is_empty(), "Ok with no block");
            let again = pem::parse(reencode(&blocks).as_bytes(), &src)
                .unwrap_or_else(|e| panic!("canonical re-encoding not readable: {e}"));
            assert!(
                same(&blocks, &again),
                "canonical re-encoding reads differently"
            );
            Some(blocks)
        }
        Err(e) => {
            check_message(&e.to_string());
            None
        }
    };

    match pem::read_certificates(data, &src) {
        Ok(certs) => {
            assert!(certs.iter().all(|c| c.label == "CERTIFICATE"));
            let again = pem::read_certificates(reencode(&certs).as_bytes(), &src)
                .unwrap_or_else(|e| panic!("re-encoded certificates not readable: {e}"));
            assert!(
                same(&certs, &again),
                "re-encoded certificates read differently"
            );
        }
        Err(e) => check_message(&e.to_string()),
    }
    if let Err(e) = pem::read_crls(data, &src) {
        check_message(&e.to_string());
    }

    // No password: an encrypted key stops at "password required", so no KDF with
    // attacker-chosen cost parameters runs here.
    let has_key_label = blocks
        .as_ref()
        .is_some_and(|b| b.iter().any(|b| KEY_LABELS.contains(&b.label.as_str())));
    for result in [
        is_encrypted(data, &src).map(|_| ()),
        load_private_key(data, &src, None).map(|_| ()),
    ] {
        match result {
            Ok(()) => assert!(has_key_label, "a key read from input without a key block"),
            Err(KeyError::NoKey { .. }) => {
                assert!(!has_key_label, "key block present but reported missing")
            }
            Err(e) => {
                let message = e.to_string();
                assert!(!message.contains('\n'), "multi-line error: {message:?}");
            }
        }
    }
});
