//! The embedded master key wrapper, its key file, and `Debug` hygiene.

// Test helpers outside #[test] fns are not covered by allow-expect-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use crate::{
    Aad, CryptoError, DataKey, KEY_LEN, KeyRing, KeyVersion, KeyWrapper, MasterKeyProblem,
    MasterKeyWrapper, Owner, TenantId, WrappedKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

fn tenant(id: &str) -> Owner {
    Owner::Tenant(TenantId::parse(id).expect("valid tenant id"))
}

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

#[tokio::test]
async fn created_0600_and_reload_unwraps_the_same_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let first = MasterKeyWrapper::load_or_create(&path).expect("create");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::metadata(&path).expect("metadata").len(), KEY_LEN as u64);
    // Only the key file is left behind: the temp file was cleaned up.
    assert_eq!(fs::read_dir(dir.path()).expect("read_dir").count(), 1);

    let owner = tenant("acme");
    let key = DataKey::generate(owner.clone(), KeyVersion::FIRST).expect("key");
    let wrapped = first.wrap(&owner, &key).await.expect("wrap");
    assert!(wrapped.blob().starts_with("lskw1:"));

    let before = fs::read(&path).expect("read");
    let reloaded = MasterKeyWrapper::load_or_create(&path).expect("reload");
    assert_eq!(fs::read(&path).expect("read"), before, "existing key kept");
    let strict = MasterKeyWrapper::load(&path).expect("load");
    for wrapper in [&reloaded, &strict] {
        let back = wrapper.unwrap(&owner, &wrapped).await.expect("unwrap");
        assert_eq!(back.expose_secret(), key.expose_secret());
        assert_eq!(back.version(), KeyVersion::FIRST);
        assert_eq!(back.owner(), &owner);
    }
}

#[test]
fn group_or_world_readable_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    fs::write(&path, [5u8; KEY_LEN]).expect("write");
    for bad in [0o644, 0o640, 0o604, 0o660] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bad)).expect("chmod");
        let err = MasterKeyWrapper::load_or_create(&path).expect_err("must refuse");
        match &err {
            CryptoError::MasterKeyFile {
                path: p,
                reason: MasterKeyProblem::Permissions { mode },
            } => {
                assert_eq!(p, &path);
                assert_eq!(*mode, bad);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("0600"), "{msg}");
    }
    // The refused file was not replaced by a fresh key.
    assert_eq!(fs::read(&path).expect("read"), [5u8; KEY_LEN]);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
    MasterKeyWrapper::load(&path).expect("0400 is stricter than 0600");
}

#[test]
fn wrong_length_directory_and_missing_file_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let short = dir.path().join("short.key");
    fs::write(&short, b"0123456789").expect("write");
    fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).expect("chmod");
    let err = MasterKeyWrapper::load_or_create(&short).expect_err("short");
    assert!(matches!(
        err,
        CryptoError::MasterKeyFile {
            reason: MasterKeyProblem::WrongLength {
                expected: 32,
                found: 10
            },
            ..
        }
    ));
    assert!(!err.to_string().contains("0123456789"), "contents leaked");

    let sub = dir.path().join("sub");
    fs::create_dir(&sub).expect("mkdir");
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).expect("chmod");
    assert!(matches!(
        MasterKeyWrapper::load_or_create(&sub),
        Err(CryptoError::MasterKeyFile {
            reason: MasterKeyProblem::NotAFile,
            ..
        })
    ));

    let missing = dir.path().join("missing.key");
    assert!(matches!(
        MasterKeyWrapper::load(&missing),
        Err(CryptoError::MasterKeyFile {
            reason: MasterKeyProblem::Io(_),
            ..
        })
    ));
    assert!(!missing.exists(), "load() must not create");
    let in_missing_dir = dir.path().join("nope").join("master.key");
    let err = MasterKeyWrapper::load_or_create(&in_missing_dir).expect_err("no dir");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn wrapped_key_is_bound_to_owner_version_and_master_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapper = MasterKeyWrapper::load_or_create(dir.path().join("a.key")).expect("a");
    let other = MasterKeyWrapper::load_or_create(dir.path().join("b.key")).expect("b");
    let a = tenant("acme");
    let b = tenant("globex");
    let key = DataKey::generate(a.clone(), KeyVersion::FIRST).expect("key");
    let wrapped = wrapper.wrap(&a, &key).await.expect("wrap");

    assert!(matches!(
        wrapper.unwrap(&b, &wrapped).await,
        Err(CryptoError::KeyUnwrap { .. })
    ));
    assert!(matches!(
        wrapper.unwrap(&Owner::System, &wrapped).await,
        Err(CryptoError::KeyUnwrap { .. })
    ));
    let relabelled = WrappedKey::new(KeyVersion::new(2).expect("v2"), wrapped.blob());
    assert!(matches!(
        wrapper.unwrap(&a, &relabelled).await,
        Err(CryptoError::KeyUnwrap { .. })
    ));
    assert!(matches!(
        other.unwrap(&a, &wrapped).await,
        Err(CryptoError::KeyUnwrap { .. })
    ));
    // Wrapping B's key as A's is a caller bug, refused up front.
    assert!(matches!(
        wrapper.wrap(&b, &key).await,
        Err(CryptoError::OwnerMismatch { .. })
    ));
    // Loading A's stored keys as B's ring fails as well.
    assert!(
        KeyRing::load(&wrapper, b, std::slice::from_ref(&wrapped))
            .await
            .is_err()
    );

    // Tampered blobs.
    let body = wrapped.blob().strip_prefix("lskw1:").expect("prefix");
    let mut raw = URL_SAFE_NO_PAD.decode(body).expect("base64");
    for i in 0..raw.len() {
        raw[i] ^= 1;
        let t = WrappedKey::new(
            KeyVersion::FIRST,
            format!("lskw1:{}", URL_SAFE_NO_PAD.encode(&raw)),
        );
        assert!(
            matches!(
                wrapper.unwrap(&a, &t).await,
                Err(CryptoError::KeyUnwrap { .. })
            ),
            "byte {i}"
        );
        raw[i] ^= 1;
    }
    for blob in ["", "vault:v1:abc", "lskw1:***", "lskw1:AAAA"] {
        let t = WrappedKey::new(KeyVersion::FIRST, blob);
        assert!(
            matches!(
                wrapper.unwrap(&a, &t).await,
                Err(CryptoError::MalformedWrappedKey { .. })
            ),
            "{blob:?}"
        );
    }
    // Two wraps of the same key differ (fresh nonce) and both unwrap.
    let again = wrapper.wrap(&a, &key).await.expect("wrap");
    assert_ne!(again, wrapped);
    let back = wrapper.unwrap(&a, &again).await.expect("unwrap");
    assert_eq!(back.expose_secret(), key.expose_secret());
}

/// All the ways 32 key bytes could show up in formatted text.
fn encodings(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![hex.to_uppercase(), hex];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes));
    }
    // Debug of a byte array/slice, as a derived Debug would print it.
    out.push(format!("{bytes:?}"));
    out
}

fn assert_hidden(formatted: &str, secret: &[u8]) {
    for enc in encodings(secret) {
        // A 16-character window is long enough not to match by chance.
        for window in enc.as_bytes().windows(16) {
            let w = String::from_utf8_lossy(window);
            assert!(
                !formatted.contains(w.as_ref()),
                "key bytes leaked into {formatted:?}"
            );
        }
    }
}

#[tokio::test]
async fn debug_never_shows_key_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let wrapper = MasterKeyWrapper::load_or_create(&path).expect("master");
    let master_bytes = fs::read(&path).expect("read");
    let owner = tenant("acme");

    // Distinctive, non-repeating bytes so every encoding is searchable.
    let mut bytes = [0u8; KEY_LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    let key = DataKey::from_bytes(owner.clone(), KeyVersion::FIRST, Zeroizing::new(bytes));
    let wrapped = wrapper.wrap(&owner, &key).await.expect("wrap");
    let ring = KeyRing::new(key);

    for text in [
        format!("{:?}", ring.current()),
        format!("{:#?}", ring.current()),
        format!("{ring:?}"),
        format!("{ring:#?}"),
        format!("{wrapper:?}"),
        format!("{wrapper:#?}"),
        format!("{wrapped:?}"),
    ] {
        assert_hidden(&text, &bytes);
        assert_hidden(&text, &master_bytes);
        assert!(!text.contains(wrapped.blob()), "{text}");
    }
    let dk = format!("{:?}", ring.current());
    assert!(dk.contains("acme") && dk.contains("KeyVersion(1)"), "{dk}");
    // The check itself can fail: a derived Debug would have leaked.
    let leaky = format!("{:?}", ring.current().expose_secret());
    assert!(std::panic::catch_unwind(|| assert_hidden(&leaky, &bytes)).is_err());

    // Errors carry owners, versions and paths only.
    let sealed = ring
        .seal(&Aad::new(owner.clone(), "p", "f"), b"plaintext-marker")
        .expect("seal");
    let err = ring
        .open(&Aad::new(owner, "q", "f"), &sealed)
        .expect_err("moved");
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains("plaintext-marker"));
    assert_hidden(&msg, &bytes);
}
