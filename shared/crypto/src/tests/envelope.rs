//! Sealing, opening, binding, rotation and shredding, through the public API.

// Test helpers outside #[test] fns are not covered by allow-expect-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{
    Aad, CryptoError, DataKey, KEY_LEN, KeyRing, KeyVersion, MasterKeyWrapper, Owner,
    SEALED_PREFIX, Sealed, TenantId, open, seal,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

const PATH: &str = "tenants/acme/orgs/o1/bots/b1/secrets/github";
const SECRET: &[u8] = b"ghp_very-secret-token";

fn tenant(id: &str) -> Owner {
    Owner::Tenant(TenantId::parse(id).expect("valid tenant id"))
}

fn acme() -> Owner {
    tenant("acme")
}

fn aad() -> Aad {
    Aad::new(acme(), PATH, "value")
}

fn v(n: u32) -> KeyVersion {
    KeyVersion::new(n).expect("nonzero version")
}

fn fixed_key(owner: Owner, version: u32, byte: u8) -> DataKey {
    DataKey::from_bytes(owner, v(version), Zeroizing::new([byte; KEY_LEN]))
}

fn ring(owner: Owner) -> KeyRing {
    KeyRing::new(DataKey::generate(owner, KeyVersion::FIRST).expect("os rng"))
}

fn raw(sealed: &Sealed) -> Vec<u8> {
    let body = sealed
        .as_str()
        .strip_prefix(SEALED_PREFIX)
        .expect("sealed prefix");
    URL_SAFE_NO_PAD.decode(body).expect("base64url")
}

fn reencode(raw: &[u8]) -> Sealed {
    Sealed::parse(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))).expect("well formed")
}

fn master(dir: &tempfile::TempDir) -> MasterKeyWrapper {
    MasterKeyWrapper::load_or_create(dir.path().join("master.key")).expect("master key")
}

#[test]
fn round_trip() {
    let ring = ring(acme());
    let sealed = seal(ring.current(), &aad(), SECRET).expect("seal");
    assert!(sealed.as_str().starts_with("lsk1:"));
    assert_eq!(sealed.key_version(), KeyVersion::FIRST);
    assert!(!sealed.as_str().contains("ghp_"));
    let reparsed = Sealed::parse(sealed.as_str()).expect("parse");
    assert_eq!(
        open(&ring, &aad(), &reparsed).expect("open").as_slice(),
        SECRET
    );
    // Empty plaintext is still authenticated.
    let empty = ring.seal(&aad(), b"").expect("seal empty");
    assert!(ring.open(&aad(), &empty).expect("open empty").is_empty());
}

#[test]
fn system_scope_round_trip_and_separate_from_tenant_named_system() {
    let key = [7u8; KEY_LEN];
    let sys = KeyRing::new(DataKey::from_bytes(
        Owner::System,
        v(1),
        Zeroizing::new(key),
    ));
    let fake = KeyRing::new(DataKey::from_bytes(
        tenant("system"),
        v(1),
        Zeroizing::new(key),
    ));
    let sys_aad = Aad::new(Owner::System, "system/secrets/smtp", "value");
    let sealed = sys.seal(&sys_aad, SECRET).expect("seal");
    assert_eq!(
        sys.open(&sys_aad, &sealed).expect("open").as_slice(),
        SECRET
    );
    // Same key bytes, but a tenant called "system" is not the system scope.
    let fake_aad = Aad::new(tenant("system"), "system/secrets/smtp", "value");
    assert!(matches!(
        fake.open(&fake_aad, &sealed),
        Err(CryptoError::Undecryptable)
    ));
}

#[test]
fn same_plaintext_seals_differently() {
    let ring = ring(acme());
    let a = ring.seal(&aad(), SECRET).expect("seal");
    let b = ring.seal(&aad(), SECRET).expect("seal");
    assert_ne!(a, b);
    assert_ne!(raw(&a)[4..16], raw(&b)[4..16], "nonces must differ");
}

#[test]
fn every_tampered_byte_is_undecryptable() {
    let ring = ring(acme());
    let sealed = ring.seal(&aad(), SECRET).expect("seal");
    let bytes = raw(&sealed);
    // Nonce, ciphertext and tag bytes: authentication fails.
    for i in 4..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut t = bytes.clone();
            t[i] ^= flip;
            let got = ring.open(&aad(), &reencode(&t));
            assert!(
                matches!(got, Err(CryptoError::Undecryptable)),
                "byte {i} flip {flip:#x}: {got:?}"
            );
        }
    }
    // Version bytes: names a version this ring does not hold.
    for i in 0..4 {
        let mut t = bytes.clone();
        t[i] ^= 0x02;
        let got = ring.open(&aad(), &reencode(&t));
        assert!(
            matches!(got, Err(CryptoError::UnknownKeyVersion { version, .. }) if version != 1),
            "version byte {i}: {got:?}"
        );
    }
    // Truncation and extension.
    let got = ring.open(&aad(), &reencode(&bytes[..bytes.len() - 1]));
    assert!(matches!(got, Err(CryptoError::Undecryptable)), "{got:?}");
    let mut longer = bytes.clone();
    longer.push(0);
    let got = ring.open(&aad(), &reencode(&longer));
    assert!(matches!(got, Err(CryptoError::Undecryptable)), "{got:?}");
}

#[test]
fn every_tampered_character_is_rejected() {
    let ring = ring(acme());
    let text = ring.seal(&aad(), SECRET).expect("seal").into_string();
    for (i, c) in text.char_indices() {
        let replacement = if c == 'A' { 'B' } else { 'A' };
        let mut t = text.clone();
        t.replace_range(i..i + 1, &replacement.to_string());
        // Either the text no longer parses, or it parses and fails to open.
        if let Ok(sealed) = Sealed::parse(t) {
            let got = ring.open(&aad(), &sealed);
            assert!(
                matches!(
                    got,
                    Err(CryptoError::Undecryptable | CryptoError::UnknownKeyVersion { .. })
                ),
                "char {i}: {got:?}"
            );
        }
    }
}

#[test]
fn moved_ciphertext_is_undecryptable() {
    let ring = ring(acme());
    let sealed = ring.seal(&aad(), SECRET).expect("seal");
    for moved in [
        Aad::new(
            acme(),
            "tenants/acme/orgs/o1/bots/b2/secrets/github",
            "value",
        ),
        Aad::new(acme(), PATH, "refresh_token"),
        Aad::new(acme(), format!("{PATH}/value"), ""),
    ] {
        let got = ring.open(&moved, &sealed);
        assert!(
            matches!(got, Err(CryptoError::Undecryptable)),
            "{moved:?}: {got:?}"
        );
    }
}

#[test]
fn other_tenant_with_identical_key_bytes_cannot_open() {
    // Same key bytes on both sides: only the owner in the associated data
    // differs, so this isolates the binding from the key difference.
    let a = KeyRing::new(fixed_key(acme(), 1, 9));
    let b = KeyRing::new(fixed_key(tenant("globex"), 1, 9));
    let sealed = a.seal(&aad(), SECRET).expect("seal");
    let as_b = Aad::new(tenant("globex"), PATH, "value");
    assert!(matches!(
        b.open(&as_b, &sealed),
        Err(CryptoError::Undecryptable)
    ));
    // And with its own (random) key, B's ring fails too.
    let b_random = ring(tenant("globex"));
    assert!(matches!(
        b_random.open(&as_b, &sealed),
        Err(CryptoError::Undecryptable)
    ));
}

#[test]
fn relabelled_key_version_is_undecryptable() {
    // v1 and v2 share key bytes, so only the version in the associated data
    // stops a value sealed under v1 from opening when relabelled v2.
    let ring = KeyRing::from_keys(acme(), [fixed_key(acme(), 1, 3), fixed_key(acme(), 2, 3)])
        .expect("ring");
    let sealed = seal(ring.get(v(1)).expect("v1"), &aad(), SECRET).expect("seal");
    assert_eq!(ring.open(&aad(), &sealed).expect("open").as_slice(), SECRET);
    let mut bytes = raw(&sealed);
    bytes[..4].copy_from_slice(&2u32.to_be_bytes());
    let relabelled = reencode(&bytes);
    assert_eq!(relabelled.key_version(), v(2));
    assert!(matches!(
        ring.open(&aad(), &relabelled),
        Err(CryptoError::Undecryptable)
    ));
}

#[test]
fn wrong_owner_key_or_ring_is_refused() {
    let globex_key = DataKey::generate(tenant("globex"), v(1)).expect("key");
    assert!(matches!(
        seal(&globex_key, &aad(), SECRET),
        Err(CryptoError::OwnerMismatch { .. })
    ));
    let sealed = ring(acme()).seal(&aad(), SECRET).expect("seal");
    assert!(matches!(
        open(&ring(tenant("globex")), &aad(), &sealed),
        Err(CryptoError::OwnerMismatch { .. })
    ));
}

#[test]
fn malformed_sealed_text() {
    for text in [
        "",
        "lsk1:",
        "lsk2:AAAA",
        "lsk1:not base64!",
        "lsk1:AAAAAQ",
        "lsk1:AAAA==",
    ] {
        assert!(
            matches!(Sealed::parse(text), Err(CryptoError::Malformed { .. })),
            "{text:?}"
        );
    }
    // Version 0 is not a version.
    let zero = format!(
        "{SEALED_PREFIX}{}",
        URL_SAFE_NO_PAD.encode([0u8; 4 + 12 + 16])
    );
    assert!(matches!(
        Sealed::parse(zero),
        Err(CryptoError::Malformed { .. })
    ));
}

#[tokio::test]
async fn rotation_keeps_old_values_readable_and_seals_with_new_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapper = master(&dir);
    let (mut ring, w1) = KeyRing::create(&wrapper, acme()).await.expect("create");
    let old = ring.seal(&aad(), b"old").expect("seal");
    let w2 = ring.rotate(&wrapper).await.expect("rotate");
    assert_eq!(w2.version(), v(2));
    assert_eq!(ring.current().version(), v(2));
    assert_eq!(ring.versions(), vec![v(1), v(2)]);
    let new = ring.seal(&aad(), b"new").expect("seal");
    assert_eq!(old.key_version(), v(1));
    assert_eq!(new.key_version(), v(2));
    assert_eq!(ring.open(&aad(), &old).expect("old").as_slice(), b"old");
    assert_eq!(ring.open(&aad(), &new).expect("new").as_slice(), b"new");

    // A replica loading the stored wrapped keys sees the same ring.
    let loaded = KeyRing::load(&wrapper, acme(), &[w2.clone(), w1.clone()])
        .await
        .expect("load");
    assert_eq!(loaded.current().version(), v(2));
    assert_eq!(loaded.open(&aad(), &old).expect("old").as_slice(), b"old");
    assert_eq!(loaded.open(&aad(), &new).expect("new").as_slice(), b"new");

    // Re-encrypt, then retire v1: old values named v1 are no longer known.
    let reencrypted = ring
        .seal(&aad(), &ring.open(&aad(), &old).expect("old"))
        .expect("seal");
    ring.retire(v(1)).expect("retire");
    assert!(matches!(
        ring.retire(v(2)),
        Err(CryptoError::InvalidKeyRing { .. })
    ));
    assert_eq!(
        ring.open(&aad(), &reencrypted).expect("open").as_slice(),
        b"old"
    );
    assert!(matches!(
        ring.open(&aad(), &old),
        Err(CryptoError::UnknownKeyVersion { version: 1, .. })
    ));
}

#[test]
fn ring_missing_named_version_reports_unknown_version() {
    let v2_only = KeyRing::new(DataKey::generate(acme(), v(2)).expect("key"));
    let v1 = KeyRing::new(DataKey::generate(acme(), v(1)).expect("key"));
    let sealed = v1.seal(&aad(), SECRET).expect("seal");
    let got = v2_only.open(&aad(), &sealed);
    assert!(
        matches!(got, Err(CryptoError::UnknownKeyVersion { version: 1, .. })),
        "{got:?}"
    );
    let msg = got.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("tenant acme") && msg.contains('1'), "{msg}");
}

#[test]
fn key_ring_construction_is_checked() {
    assert!(matches!(
        KeyRing::from_keys(acme(), []),
        Err(CryptoError::InvalidKeyRing { .. })
    ));
    assert!(matches!(
        KeyRing::from_keys(acme(), [fixed_key(acme(), 1, 1), fixed_key(acme(), 1, 2)]),
        Err(CryptoError::InvalidKeyRing { .. })
    ));
    assert!(matches!(
        KeyRing::from_keys(acme(), [fixed_key(tenant("globex"), 1, 1)]),
        Err(CryptoError::OwnerMismatch { .. })
    ));
    let ring = KeyRing::from_keys(acme(), [fixed_key(acme(), 3, 1), fixed_key(acme(), 1, 2)])
        .expect("ring");
    assert_eq!(ring.current().version(), v(3));
}

/// Crypto-shredding: once every wrapped version of a tenant's key is destroyed
/// and its ring dropped, nothing can open its ciphertext, not even a new ring
/// created for the same tenant under the same master key.
#[tokio::test]
async fn shredded_tenant_key_cannot_be_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapper = master(&dir);
    let (mut ring, w1) = KeyRing::create(&wrapper, acme()).await.expect("create");
    let old = ring.seal(&aad(), SECRET).expect("seal");
    let w2 = ring.rotate(&wrapper).await.expect("rotate");
    let new = ring.seal(&aad(), SECRET).expect("seal");
    assert_eq!(ring.open(&aad(), &old).expect("open").as_slice(), SECRET);

    // Shred: the only copies of the data keys are the ring and the wrapped keys.
    drop(ring);
    drop((w1, w2));

    let (mut fresh, _) = KeyRing::create(&wrapper, acme()).await.expect("create");
    let _ = fresh.rotate(&wrapper).await.expect("rotate");
    assert_eq!(fresh.versions(), vec![v(1), v(2)]);
    for sealed in [&old, &new] {
        let got = fresh.open(&aad(), sealed);
        assert!(matches!(got, Err(CryptoError::Undecryptable)), "{got:?}");
    }
}
