//! Unseal material: key files (0600, never overwritten, refused when group/world readable),
//! passphrases through argon2id, the plaintext seal configuration, and the seal status a
//! sealed server reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use keep_store::seal::{self, SEAL_CONFIG_KEY, generate_key_file, read_key_file};
use keep_store::{
    Argon2Params, Barrier, BarrierError, MemStore, RootKeySource, SealConfig, SealStatus, SealType,
    Store,
};
use secrecy::SecretString;

/// Cheap parameters so debug-build tests stay fast; the recommended ones are exercised once
/// in `recommended_parameters_derive_a_key`.
const FAST: Argon2Params = Argon2Params {
    m_cost_kib: 256,
    t_cost: 1,
    p_cost: 1,
};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

fn pass(s: &str) -> RootKeySource {
    RootKeySource::Passphrase(SecretString::from(s))
}

#[test]
fn key_file_is_0600_base64_and_unseals() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("unseal.key");
    let store = MemStore::new();
    let source = RootKeySource::KeyFile(key_path.clone());
    let barrier = source.initialize(store.clone()).unwrap();
    barrier.put("secret/data/x", b"value").unwrap();
    drop(barrier);

    assert_eq!(mode(&key_path), 0o600);
    let text = fs::read_to_string(&key_path).unwrap();
    assert_eq!(text.len(), 45, "44 base64 characters and a newline");
    assert!(text.ends_with('\n'));
    // No stray temporary files next to it.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    assert_eq!(
        seal::status(&store).unwrap(),
        SealStatus {
            initialized: true,
            seal_type: Some(SealType::KeyFile)
        }
    );
    assert_eq!(
        store.get(SEAL_CONFIG_KEY).unwrap().unwrap(),
        br#"{"version":1,"type":"keyfile"}"#
    );
    let barrier = source.unseal(store).unwrap();
    assert_eq!(
        barrier.get("secret/data/x").unwrap().unwrap().as_slice(),
        b"value"
    );
}

#[test]
fn generate_key_file_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("unseal.key");
    fs::write(&key_path, "precious").unwrap();
    let err = generate_key_file(&key_path).unwrap_err();
    assert!(matches!(err, BarrierError::KeyFileExists { .. }), "{err:?}");
    assert!(err.to_string().contains("never overwrites"), "{err}");
    assert_eq!(fs::read_to_string(&key_path).unwrap(), "precious");
    // A dangling symlink is not silently followed either.
    let link = dir.path().join("link.key");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
    assert!(matches!(
        generate_key_file(&link),
        Err(BarrierError::KeyFileExists { .. })
    ));
}

#[test]
fn readable_key_files_are_refused_with_the_mode_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("unseal.key");
    generate_key_file(&key_path).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o660, 0o606, 0o610] {
        chmod(&key_path, bad);
        let err = read_key_file(&key_path).unwrap_err();
        match &err {
            BarrierError::KeyFilePermissions { mode, .. } => assert_eq!(*mode, bad),
            other => panic!("mode {bad:o}: expected KeyFilePermissions, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{bad:04o}")) && msg.contains("chmod 600"),
            "{msg}"
        );
    }
    for good in [0o600, 0o400] {
        chmod(&key_path, good);
        read_key_file(&key_path).unwrap();
    }
}

#[test]
fn malformed_or_missing_key_files_are_explained_without_echoing_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.key");
    for content in [
        "c2hvcnQ=\n",                                        // 5 bytes
        "not base64 at all, but a secret-looking thing!!\n", // garbage
        "",
    ] {
        fs::write(&p, content).unwrap();
        chmod(&p, 0o600);
        let err = read_key_file(&p).unwrap_err();
        assert!(
            matches!(err, BarrierError::KeyFileMalformed { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("secret-looking"), "{err}");
    }
    fs::write(&p, vec![b'A'; 5000]).unwrap();
    assert!(matches!(
        read_key_file(&p),
        Err(BarrierError::KeyFileMalformed { .. })
    ));
    let missing = dir.path().join("missing.key");
    let err = read_key_file(&missing).unwrap_err();
    assert!(matches!(err, BarrierError::KeyFileIo { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.key"), "{err}");
    // A directory is not a key file.
    assert!(read_key_file(dir.path()).is_err());
}

#[test]
fn a_different_key_file_is_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    RootKeySource::KeyFile(dir.path().join("a.key"))
        .initialize(store.clone())
        .unwrap();
    generate_key_file(&dir.path().join("b.key")).unwrap();
    let err = RootKeySource::KeyFile(dir.path().join("b.key"))
        .unseal(store)
        .unwrap_err();
    assert!(matches!(err, BarrierError::WrongKey), "{err:?}");
}

#[test]
fn init_on_an_initialized_store_fails_and_creates_no_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    RootKeySource::KeyFile(dir.path().join("a.key"))
        .initialize(store.clone())
        .unwrap();
    let second = dir.path().join("second.key");
    let err = RootKeySource::KeyFile(second.clone())
        .initialize(store.clone())
        .unwrap_err();
    assert!(matches!(err, BarrierError::AlreadyInitialized), "{err:?}");
    assert!(!second.exists());
    assert!(matches!(
        pass("pw").initialize_with(store, FAST),
        Err(BarrierError::AlreadyInitialized)
    ));
}

#[test]
fn passphrase_round_trip_and_wrong_passphrase() {
    let store = MemStore::new();
    let barrier = pass("correct horse battery staple")
        .initialize_with(store.clone(), FAST)
        .unwrap();
    barrier.put("k", b"v").unwrap();
    drop(barrier);

    assert_eq!(
        seal::status(&store).unwrap(),
        SealStatus {
            initialized: true,
            seal_type: Some(SealType::Passphrase)
        }
    );
    let config = SealConfig::load(&store).unwrap().unwrap();
    let SealConfig::Passphrase { argon2, salt } = &config else {
        panic!("expected a passphrase config, got {config:?}");
    };
    assert_eq!(*argon2, FAST);
    assert_ne!(*salt, [0u8; 16]);
    let json = String::from_utf8(store.get(SEAL_CONFIG_KEY).unwrap().unwrap()).unwrap();
    assert!(
        json.contains(r#""type":"passphrase""#) && json.contains(r#""algorithm":"argon2id""#),
        "{json}"
    );

    let barrier = pass("correct horse battery staple")
        .unseal(store.clone())
        .unwrap();
    assert_eq!(barrier.get("k").unwrap().unwrap().as_slice(), b"v");

    for wrong in [
        "correct horse battery stapler",
        "Correct horse battery staple",
        " correct horse battery staple",
    ] {
        let err = pass(wrong).unseal(store.clone()).unwrap_err();
        assert!(matches!(err, BarrierError::WrongKey), "{wrong:?}: {err:?}");
    }
    assert!(matches!(
        pass("").unseal(store.clone()),
        Err(BarrierError::EmptyPassphrase)
    ));
    assert!(matches!(
        pass("").initialize_with(MemStore::new(), FAST),
        Err(BarrierError::EmptyPassphrase)
    ));
}

#[test]
fn salts_differ_per_installation() {
    let a = MemStore::new();
    let b = MemStore::new();
    pass("same").initialize_with(a.clone(), FAST).unwrap();
    pass("same").initialize_with(b.clone(), FAST).unwrap();
    assert_ne!(SealConfig::load(&a).unwrap(), SealConfig::load(&b).unwrap());
}

#[test]
fn tampered_seal_config_cannot_weaken_unseal() {
    let store = MemStore::new();
    pass("pw").initialize_with(store.clone(), FAST).unwrap();
    // Other (valid) parameters or another salt derive another key: refused, not accepted.
    let other = SealConfig::new_passphrase(Argon2Params { t_cost: 2, ..FAST }).unwrap();
    store.put(SEAL_CONFIG_KEY, &other.to_json()).unwrap();
    assert!(matches!(
        pass("pw").unseal(store.clone()),
        Err(BarrierError::WrongKey)
    ));
    // Absurd parameters are refused before any work.
    store
        .put(
            SEAL_CONFIG_KEY,
            br#"{"version":1,"type":"passphrase","argon2":{"algorithm":"argon2id","version":19,"m_cost_kib":4294967295,"t_cost":1,"p_cost":1},"salt":"AAAAAAAAAAAAAAAAAAAAAA=="}"#,
        )
        .unwrap();
    assert!(matches!(
        pass("pw").unseal(store.clone()),
        Err(BarrierError::SealConfig { .. })
    ));
    // Switching the type to keyfile only changes which material is asked for.
    store
        .put(SEAL_CONFIG_KEY, &SealConfig::KeyFile.to_json())
        .unwrap();
    assert!(matches!(
        pass("pw").unseal(store),
        Err(BarrierError::SealTypeMismatch { .. })
    ));
}

#[test]
fn the_wrong_kind_of_material_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    pass("pw").initialize_with(store.clone(), FAST).unwrap();
    let err = RootKeySource::KeyFile(dir.path().join("k"))
        .unseal(store)
        .unwrap_err();
    assert!(
        matches!(
            err,
            BarrierError::SealTypeMismatch {
                configured: SealType::Passphrase,
                given: SealType::KeyFile
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "this storage is sealed with a passphrase, but a key file was given to unseal it"
    );
}

#[test]
fn an_empty_store_reports_uninitialized_and_refuses_unseal() {
    let store = MemStore::new();
    assert_eq!(
        seal::status(&store).unwrap(),
        SealStatus {
            initialized: false,
            seal_type: None
        }
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        RootKeySource::KeyFile(dir.path().join("k")).unseal(store.clone()),
        Err(BarrierError::NotInitialized)
    ));
    assert!(matches!(
        pass("pw").unseal(store),
        Err(BarrierError::NotInitialized)
    ));
}

#[test]
fn a_store_initialized_with_a_raw_root_key_unseals_from_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k");
    let key = generate_key_file(&key_path).unwrap();
    let store = MemStore::new();
    Barrier::initialize(store.clone(), key).unwrap();
    assert_eq!(
        seal::status(&store).unwrap(),
        SealStatus {
            initialized: true,
            seal_type: None
        }
    );
    RootKeySource::KeyFile(key_path)
        .unseal(store.clone())
        .unwrap();
    assert!(matches!(
        pass("pw").unseal(store),
        Err(BarrierError::SealConfig { .. })
    ));
}

#[test]
fn recommended_parameters_derive_a_key() {
    // 64 MiB, t=3: the real cost, once. Slow-ish in a debug build, which is the point.
    let start = std::time::Instant::now();
    let store = MemStore::new();
    pass("pw").initialize(store.clone()).unwrap();
    let SealConfig::Passphrase { argon2, .. } = SealConfig::load(&store).unwrap().unwrap() else {
        panic!("expected a passphrase config");
    };
    assert_eq!(argon2, Argon2Params::RECOMMENDED);
    eprintln!("argon2id 64 MiB t=3 p=1: {:?}", start.elapsed());
}
