//! Benchmark: create a P-256 leaf with an encrypted key, as `keep certificate create` does
//! (key generation, PKCS#8 scrypt encryption, signing by a CA, PEM), against a reference run in
//! the same process: the same leaf with a plaintext key. The ratio shows what encryption costs;
//! the absolute median is the figure the issue asks for (target: under 100 ms, release build).
//!
//! Run: `cargo bench -p keep-pki --bench create_leaf`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use keep_pki::cert::{self, CertRequest, Issuer, Profile};
use keep_pki::pem::Source;
use keep_pki::{KeyType, PrivateKey};
use secrecy::SecretString;
use time::OffsetDateTime;

fn req(profile: Profile, subject: &str) -> CertRequest {
    CertRequest {
        profile,
        subject: subject.into(),
        common_name: None,
        sans: vec![],
        eku: None,
        path_len: None,
        not_before: None,
        not_after: None,
        now: OffsetDateTime::now_utc(),
    }
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

fn main() {
    let ca_key = PrivateKey::generate(KeyType::EcP256).unwrap();
    let ca = cert::create(&req(Profile::RootCa, "Bench Root"), &ca_key, None).unwrap();
    let issuer = Issuer::new(
        ca.cert.pem().as_bytes(),
        &Source::Other("ca".into()),
        ca_key,
    )
    .unwrap();
    let pw = SecretString::from("bench-password".to_owned());
    let runs = 40;
    let mut enc = Vec::new();
    let mut plain = Vec::new();
    for i in 0..runs + 5 {
        // Interleave the two so machine noise hits both alike.
        let t = Instant::now();
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let pem = key.to_pem_encrypted(&pw).unwrap();
        let leaf = cert::create(
            &req(Profile::Leaf, "agent.claw.internal"),
            &key,
            Some(&issuer),
        )
        .unwrap();
        let out = leaf.pem(false);
        let e = t.elapsed();
        assert!(pem.len() > 100 && out.len() > 100);

        let t = Instant::now();
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let pem = key.to_pem_plaintext();
        let leaf = cert::create(
            &req(Profile::Leaf, "agent.claw.internal"),
            &key,
            Some(&issuer),
        )
        .unwrap();
        let out = leaf.pem(false);
        let p = t.elapsed();
        assert!(pem.len() > 100 && out.len() > 100);
        if i >= 5 {
            enc.push(e);
            plain.push(p);
        }
    }
    let (em, e90) = median(enc);
    let (pm, p90) = median(plain);
    println!("create P-256 leaf, encrypted key (scrypt): median {em:?}, p90 {e90:?} ({runs} runs)");
    println!("reference, plaintext key:                  median {pm:?}, p90 {p90:?}");
    println!(
        "ratio encrypted/plaintext: {:.1}x",
        em.as_secs_f64() / pm.as_secs_f64().max(1e-9)
    );
    println!(
        "target < 100 ms: {}",
        if em < Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        }
    );
}
