//! [`KeyWrapper`] on OpenBao Transit (seed 001): each owner's data keys are
//! wrapped by that owner's own Transit key, `<mount>/keys/{tenant}`, so
//! deleting one Transit key crypto-shreds one tenant, and a wrapped key
//! copied to another tenant is decrypted (and refused) under that tenant's
//! key.
//!
//! Requests go through the store crate's [`OpenBaoClient`]: the same
//! timeouts, retries, redirect refusal and (AppRole) token as the KV store.
//! Every Transit call made here is idempotent (encrypting again gives
//! another valid ciphertext of the same key), so all of them are retried on
//! refused connections, 429 and 5xx within the request timeout.
//!
//! The data key and its version are also bound as associated data, so a
//! blob stored as another version does not unwrap either.
//!
//! Key material crosses reqwest's buffers and the server's JSON, which we
//! cannot zero; what this module owns (the decoded plaintext) is zeroized.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use locksmith_store::{
    Key, OpenBaoAnswer, OpenBaoClient, OpenBaoRequest, OpenBaoRetry, StoreError,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::keys::{DataKey, KEY_LEN, push_field};
use crate::wrap::{KeyWrapper, WrappedKey};
use crate::{CryptoError, KeyVersion, Owner};

/// The system scope's Transit key. Tenant ids are slugs
/// (`[a-z0-9][a-z0-9-]*`): no tenant can be named with an underscore, so no
/// tenant's key can ever be the system's.
pub const SYSTEM_TRANSIT_KEY: &str = "_system";

/// What Transit ciphertext starts with; anything else is not ours to send.
const CIPHERTEXT_PREFIX: &str = "vault:v";
const AAD_LABEL: &[u8] = b"locksmith/transit-wrap/v1";

/// Wraps data keys with one OpenBao Transit key per owner.
#[derive(Clone)]
pub struct TransitWrapper {
    client: OpenBaoClient,
    /// Where the Transit engine is mounted (default `transit`).
    mount: String,
}

impl std::fmt::Debug for TransitWrapper {
    // The client hides its token; the mount is all there is to show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitWrapper")
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl TransitWrapper {
    /// A wrapper using the Transit engine mounted at `mount`, through
    /// `client` (share the KV store's: one login, one renewal).
    pub fn new(client: OpenBaoClient, mount: &str) -> Result<Self, CryptoError> {
        // The mount goes into URL paths: the store's key grammar keeps it
        // free of `..`, empty segments and anything needing escapes.
        let mount = Key::parse(mount).map_err(|e| CryptoError::Backend {
            reason: format!("transit mount: {e}"),
        })?;
        Ok(Self {
            client,
            mount: mount.as_str().to_owned(),
        })
    }

    /// The Transit key name of `owner`: the tenant id, or
    /// [`SYSTEM_TRANSIT_KEY`].
    pub fn key_name(owner: &Owner) -> &str {
        match owner {
            Owner::Tenant(t) => t.as_str(),
            Owner::System => SYSTEM_TRANSIT_KEY,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<OpenBaoAnswer, CryptoError> {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<OpenBaoAnswer, CryptoError> {
        self.client
            .send(OpenBaoRequest {
                method: &method,
                path,
                query: &[],
                body,
                retry: OpenBaoRetry::Idempotent,
            })
            .await
            .map_err(from_store)
    }

    async fn wrap_key(&self, owner: &Owner, key: &DataKey) -> Result<WrappedKey, CryptoError> {
        if key.owner() != owner {
            return Err(CryptoError::OwnerMismatch {
                expected: owner.to_string(),
                key_owner: key.owner().to_string(),
            });
        }
        let path = format!("{}/encrypt/{}", self.mount, Self::key_name(owner));
        let plaintext = Zeroizing::new(STANDARD.encode(key.expose_secret()));
        let body = json!({
            "plaintext": plaintext.as_str(),
            "associated_data": aad(owner, key.version()),
        });
        let answer = self.post(&path, &body).await?;
        drop(body);
        if !answer.status.is_success() {
            // A missing key is refused (403) by a least-privilege token, and
            // created silently by a root token: provision comes first.
            return Err(refused(&path, &answer));
        }
        #[derive(Deserialize)]
        struct Encrypted {
            ciphertext: String,
        }
        let Encrypted { ciphertext } = data(&answer, &path)?;
        if !ciphertext.starts_with(CIPHERTEXT_PREFIX) {
            return Err(backend(
                &path,
                "answered something that is not Transit ciphertext",
            ));
        }
        Ok(WrappedKey::new(key.version(), ciphertext))
    }

    async fn unwrap_key(
        &self,
        owner: &Owner,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, CryptoError> {
        if !wrapped.blob().starts_with(CIPHERTEXT_PREFIX) {
            return Err(CryptoError::MalformedWrappedKey {
                reason: "not Transit ciphertext (vault:vN:…)",
            });
        }
        let path = format!("{}/decrypt/{}", self.mount, Self::key_name(owner));
        let body = json!({
            "ciphertext": wrapped.blob(),
            "associated_data": aad(owner, wrapped.version()),
        });
        let answer = self.post(&path, &body).await?;
        match answer.status {
            s if s.is_success() => {}
            // Transit's 400s here: the blob does not authenticate under this
            // key ("message authentication failed"), or the key is gone
            // ("encryption key not found", after a shred). Either way this
            // wrapped key does not unwrap for this owner.
            StatusCode::BAD_REQUEST => {
                return Err(CryptoError::KeyUnwrap {
                    owner: owner.to_string(),
                });
            }
            _ => return Err(refused(&path, &answer)),
        }
        #[derive(Deserialize)]
        struct Decrypted {
            plaintext: String,
        }
        let plaintext = Zeroizing::new(data::<Decrypted>(&answer, &path)?.plaintext);
        let raw = Zeroizing::new(STANDARD.decode(plaintext.as_bytes()).map_err(|_| {
            CryptoError::MalformedWrappedKey {
                reason: "Transit plaintext is not base64",
            }
        })?);
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if raw.len() != KEY_LEN {
            return Err(CryptoError::MalformedWrappedKey {
                reason: "wrong length",
            });
        }
        bytes.copy_from_slice(&raw);
        Ok(DataKey::from_bytes(owner.clone(), wrapped.version(), bytes))
    }

    /// Creates the owner's Transit key; Transit answers an existing key with
    /// the key, unchanged, so this is idempotent.
    async fn provision_key(&self, owner: &Owner) -> Result<(), CryptoError> {
        let path = format!("{}/keys/{}", self.mount, Self::key_name(owner));
        let answer = self.post(&path, &json!({ "type": "aes256-gcm96" })).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(refused(&path, &answer))
        }
    }

    /// Allows the deletion of the owner's Transit key, then deletes it.
    /// Transit refuses both for a key that does not exist with a 400 naming
    /// it ("no existing key named …", "could not delete key; not found"):
    /// already shredded, which is success.
    async fn shred_key(&self, owner: &Owner) -> Result<(), CryptoError> {
        let name = Self::key_name(owner);
        let config = format!("{}/keys/{name}/config", self.mount);
        let answer = self
            .post(&config, &json!({ "deletion_allowed": true }))
            .await?;
        if !answer.status.is_success() {
            return if is_absent(&answer) {
                Ok(())
            } else {
                Err(refused(&config, &answer))
            };
        }
        let key = format!("{}/keys/{name}", self.mount);
        let answer = self.call(Method::DELETE, &key, None).await?;
        if answer.status.is_success() || is_absent(&answer) {
            Ok(())
        } else {
            Err(refused(&key, &answer))
        }
    }
}

impl KeyWrapper for TransitWrapper {
    fn wrap(
        &self,
        owner: &Owner,
        key: &DataKey,
    ) -> impl Future<Output = Result<WrappedKey, CryptoError>> + Send {
        self.wrap_key(owner, key)
    }

    fn unwrap(
        &self,
        owner: &Owner,
        wrapped: &WrappedKey,
    ) -> impl Future<Output = Result<DataKey, CryptoError>> + Send {
        self.unwrap_key(owner, wrapped)
    }

    fn provision(&self, owner: &Owner) -> impl Future<Output = Result<(), CryptoError>> + Send {
        self.provision_key(owner)
    }

    fn shred(&self, owner: &Owner) -> impl Future<Output = Result<(), CryptoError>> + Send {
        self.shred_key(owner)
    }
}

/// Associated data: label, owner, data key version, base64 for Transit.
fn aad(owner: &Owner, version: KeyVersion) -> String {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(AAD_LABEL);
    push_field(&mut out, &owner.aad_bytes());
    out.extend_from_slice(&version.get().to_be_bytes());
    STANDARD.encode(out)
}

/// Whether a 400 says the key does not exist.
fn is_absent(answer: &OpenBaoAnswer) -> bool {
    answer.status == StatusCode::BAD_REQUEST && {
        let errors = answer.errors();
        errors.contains("no existing key") || errors.contains("not found")
    }
}

/// The `data` object of a 2xx answer.
fn data<T: for<'de> Deserialize<'de>>(
    answer: &OpenBaoAnswer,
    path: &str,
) -> Result<T, CryptoError> {
    #[derive(Deserialize)]
    struct Envelope<T> {
        data: T,
    }
    serde_json::from_slice::<Envelope<T>>(&answer.body)
        .map(|e| e.data)
        .map_err(|_| backend(path, "answered JSON of the wrong shape"))
}

fn backend(path: &str, what: &str) -> CryptoError {
    CryptoError::Backend {
        reason: format!("openbao {path}: {what}"),
    }
}

/// A status the operation does not expect (the transport has classified
/// 401/403, 3xx, 429 and 5xx already).
fn refused(path: &str, answer: &OpenBaoAnswer) -> CryptoError {
    backend(path, &format!("{} {}", answer.status, answer.errors()))
}

/// The transport's classification, kept: unreachable stays retryable.
fn from_store(e: StoreError) -> CryptoError {
    match e {
        StoreError::Unavailable(reason) => CryptoError::Unavailable { reason },
        StoreError::PermissionDenied(reason)
        | StoreError::Corrupt(reason)
        | StoreError::Invalid(reason) => CryptoError::Backend { reason },
        // The transport answers statuses, not documents: these cannot come
        // from it, but a variant added later must be decided here.
        e @ (StoreError::NotFound { .. } | StoreError::Conflict { .. }) => CryptoError::Backend {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::TcpListener,
        time::{Duration, Instant},
    };

    use locksmith_domain::TenantId;
    use locksmith_store::OpenBaoConfig;
    use secrecy::SecretString;

    use super::*;

    fn wrapper(addr: &str, timeout_ms: u64) -> TransitWrapper {
        let mut config = OpenBaoConfig::new(addr, SecretString::from("s.tok3n"));
        config.connect_timeout_ms = 300;
        config.request_timeout_ms = timeout_ms;
        TransitWrapper::new(OpenBaoClient::new(&config).unwrap(), "transit").unwrap()
    }

    fn acme() -> Owner {
        Owner::Tenant(TenantId::parse("acme").unwrap())
    }

    /// Answers every request with `status` and `body`.
    fn fake(status: u16, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn no_tenant_id_can_name_the_system_key() {
        assert!(TenantId::parse(SYSTEM_TRANSIT_KEY).is_err());
        assert_eq!(TransitWrapper::key_name(&Owner::System), SYSTEM_TRANSIT_KEY);
        assert_eq!(TransitWrapper::key_name(&acme()), "acme");
        let client = OpenBaoClient::new(&OpenBaoConfig::new("http://x", "t".into())).unwrap();
        assert!(TransitWrapper::new(client, "../sys").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_or_hung_server_is_unavailable_within_the_timeout() {
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        // Listening but never accepting: requests hang until the timeout.
        let hung = TcpListener::bind("127.0.0.1:0").unwrap();
        let hung_addr = format!("http://{}", hung.local_addr().unwrap());
        let key = DataKey::generate(acme(), KeyVersion::FIRST).unwrap();
        for addr in [closed, hung_addr] {
            let w = wrapper(&addr, 400);
            let started = Instant::now();
            let outcomes = [
                w.wrap(&acme(), &key).await.map(drop),
                w.unwrap(&acme(), &WrappedKey::new(KeyVersion::FIRST, "vault:v1:x"))
                    .await
                    .map(drop),
                w.provision(&acme()).await,
                w.shred(&acme()).await,
            ];
            for outcome in outcomes {
                assert!(
                    matches!(outcome, Err(CryptoError::Unavailable { .. })),
                    "{addr}: {outcome:?}"
                );
            }
            // Four operations, each bounded by the 400 ms request timeout.
            assert!(started.elapsed() < Duration::from_millis(4 * 400 + 800));
        }
        drop(hung);
    }

    #[tokio::test]
    async fn refusals_are_classified_without_key_material() {
        let key = DataKey::generate(acme(), KeyVersion::FIRST).unwrap();
        let denied = wrapper(&fake(403, r#"{"errors": ["permission denied"]}"#), 2_000);
        let err = denied.wrap(&acme(), &key).await.unwrap_err();
        assert!(matches!(err, CryptoError::Backend { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        let secret = STANDARD.encode(key.expose_secret());
        assert!(
            !shown.contains(&secret) && !shown.contains("s.tok3n"),
            "{shown}"
        );

        let bad = wrapper(
            &fake(
                400,
                r#"{"errors": ["cipher: message authentication failed"]}"#,
            ),
            2_000,
        );
        let err = bad
            .unwrap(
                &acme(),
                &WrappedKey::new(KeyVersion::FIRST, "vault:v1:AAAA"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CryptoError::KeyUnwrap { .. }), "{err:?}");
        // Already gone: shredding again succeeds.
        let gone = wrapper(
            &fake(
                400,
                r#"{"errors": ["no existing key named acme could be found"]}"#,
            ),
            2_000,
        );
        gone.shred(&acme()).await.unwrap();
        // Not ours: never sent.
        let err = bad
            .unwrap(&acme(), &WrappedKey::new(KeyVersion::FIRST, "lskw1:abc"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, CryptoError::MalformedWrappedKey { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_key_of_another_owner_is_not_wrapped() {
        let w = wrapper("http://127.0.0.1:1", 200);
        let key = DataKey::generate(Owner::System, KeyVersion::FIRST).unwrap();
        assert!(matches!(
            w.wrap(&acme(), &key).await,
            Err(CryptoError::OwnerMismatch { .. })
        ));
    }
}
