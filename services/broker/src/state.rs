//! Pending authorizations: what StartAuthorization remembers until the
//! provider sends the user back (issue 12, "Authorize").
//!
//! - **Shared storage.** One document per started flow in the broker's
//!   [`DocumentStore`] (OpenBao in production), so the callback may reach any
//!   replica.
//! - **The state is never stored.** The document's key is the SHA-256 of
//!   the state (`broker/oauth-states/{hex}`): a reader of the storage cannot
//!   complete a flow, and a state guessed from a key does not exist.
//! - **The PKCE verifier is sealed** (AES-256-GCM) with a key derived from
//!   the state (HKDF-SHA256), so the storage alone never yields it either;
//!   it is a [`SecretString`] in memory and never logged.
//! - **Single use.** Consuming a state is a check-and-set write of a
//!   tombstone over the version read: of two callers presenting the same
//!   state, exactly one wins; the other, and every later replay, is refused.
//!   The tombstone drops the sealed verifier.
//! - **Ten minutes**, with `now` a parameter so expiry is tested without
//!   sleeping. [`PendingStore::purge`] erases expired and used documents.
//! - State values are 256 random bits, base64url without padding (43
//!   characters): unguessable and safe in a URL.

use std::{collections::BTreeMap, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use locksmith_domain::{ConnectionRef, IntegrationId, Scope, TenantId};
use locksmith_store::{Cas, Child, DocumentStore, Key, StoreError};
use ring::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    digest::{SHA256, digest},
    hkdf::{HKDF_SHA256, Salt},
    rand::{SecureRandom, SystemRandom},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How long a state is accepted (issue 12: ten minutes).
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// Where pending authorizations live in the broker's storage.
const PREFIX: &str = "broker/oauth-states";
/// Random bytes in a state and in a PKCE verifier.
const RANDOM_BYTES: usize = 32;
/// The length of an encoded state (32 bytes, base64url, no padding).
const STATE_LEN: usize = 43;
/// Domain separation of the verifier's sealing key.
const SEAL_SALT: &[u8] = b"locksmith-broker/pkce-verifier/v1";

/// A state value: unguessable, single use. Its `Debug` hides it.
pub struct State(SecretString);

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("State(<redacted>)")
    }
}

impl State {
    /// A fresh state: 256 random bits, base64url.
    pub fn generate() -> Result<Self, StateError> {
        random_text(&SystemRandom::new()).map(Self)
    }

    /// The state text, to put in the authorization URL.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Reads a state sent back by a provider. `None` when it cannot be one of
    /// ours (wrong length or alphabet): a tampered state reads as unknown.
    pub fn from_callback(text: &str) -> Option<Self> {
        let ok = text.len() == STATE_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(SecretString::from(text.to_owned())))
    }

    /// The storage key of this state's document.
    fn key(&self) -> Result<Key, StateError> {
        let hash = digest(&SHA256, self.expose().as_bytes());
        let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Key::parse(&format!("{PREFIX}/{hex}")).map_err(|e| StateError::Storage(e.into()))
    }

    /// The AEAD key sealing this state's PKCE verifier.
    fn sealing_key(&self) -> Result<LessSafeKey, StateError> {
        let prk = Salt::new(HKDF_SHA256, SEAL_SALT).extract(self.expose().as_bytes());
        let okm = prk
            .expand(&[b"aes-256-gcm"], &AES_256_GCM)
            .map_err(|_| StateError::Crypto)?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

/// [`RANDOM_BYTES`] random bytes, base64url.
fn random_text(rng: &SystemRandom) -> Result<SecretString, StateError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    rng.fill(&mut bytes).map_err(|_| StateError::Crypto)?;
    Ok(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
}

/// A PKCE verifier (RFC 7636: 43 characters of base64url) and its S256
/// challenge.
pub struct Pkce {
    /// The verifier; it never leaves the broker.
    pub verifier: SecretString,
    /// `BASE64URL(SHA256(verifier))`, for the authorization URL.
    pub challenge: String,
}

impl Pkce {
    /// A fresh pair.
    pub fn generate() -> Result<Self, StateError> {
        let verifier = random_text(&SystemRandom::new())?;
        let challenge = challenge_of(verifier.expose_secret());
        Ok(Self {
            verifier,
            challenge,
        })
    }
}

/// The S256 challenge of `verifier`.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

/// What a started flow remembers.
#[derive(Debug, Clone)]
pub struct PendingAuthorization {
    /// The connection to create: owner scope and integration.
    pub connection: ConnectionRef,
    /// The tenant the flow was started for (the owner's).
    pub tenant: TenantId,
    /// Who started it, for the audit trail of the writes it leads to.
    pub subject: String,
    /// The redirect URI sent to the provider; the callback must be served there.
    pub redirect_uri: String,
    /// Where to send the browser afterwards; `None`: answer JSON.
    pub return_url: Option<String>,
    /// The per-connection inputs, as resolved at start.
    pub inputs: BTreeMap<String, String>,
    /// Scopes requested (empty: the catalog's defaults were).
    pub scopes: Vec<String>,
    /// The PKCE verifier, when the provider uses PKCE.
    pub pkce_verifier: Option<SecretString>,
    /// When the flow was started.
    pub created_at: OffsetDateTime,
    /// When the state stops being accepted.
    pub expires_at: OffsetDateTime,
}

/// The document: everything but the verifier in the clear (none of it is a
/// credential), the verifier sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    connection: String,
    subject: String,
    redirect_uri: String,
    #[serde(default)]
    return_url: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
    #[serde(default)]
    scopes: Vec<String>,
    /// base64url(nonce ‖ ciphertext ‖ tag).
    #[serde(default)]
    sealed_verifier: Option<String>,
    created_at: i64,
    expires_at: i64,
    /// Set by the one consume that won; the document is a tombstone then.
    #[serde(default)]
    consumed_at: Option<i64>,
}

/// What the callback says about itself, checked against the state.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The integration in the callback path.
    pub integration: &'a str,
    /// The redirect URI the callback was served at.
    pub redirect_uri: &'a str,
    /// The tenant the caller is confined to, if it is (a tenant principal):
    /// a state of another tenant is answered as unknown, and not consumed.
    pub confined_to: Option<&'a TenantId>,
}

/// Why a state was refused, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Never issued (or tampered with, or another tenant's).
    #[error("unknown state")]
    Unknown,
    /// Issued, but more than ten minutes ago.
    #[error("the state has expired")]
    Expired,
    /// Already presented once.
    #[error("the state was already used")]
    Used,
    /// Issued for another integration.
    #[error("the state was issued for another integration")]
    IntegrationMismatch,
    /// Issued for another redirect URI.
    #[error("the state was issued for another redirect URI")]
    RedirectMismatch,
    /// The random source or the cipher failed.
    #[error("cryptographic failure")]
    Crypto,
    /// A stored document does not read back (a bug or tampering).
    #[error("a pending authorization is corrupt: {0}")]
    Corrupt(&'static str),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Pending authorizations over a [`DocumentStore`].
pub struct PendingStore<S> {
    /// Shared with the broker's other documents (tenants' custom providers).
    store: std::sync::Arc<S>,
    rng: SystemRandom,
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn from_unix(s: i64) -> Result<OffsetDateTime, StateError> {
    OffsetDateTime::from_unix_timestamp(s).map_err(|_| StateError::Corrupt("a time"))
}

impl<S: DocumentStore> PendingStore<S> {
    /// Pending authorizations in `store`.
    pub fn new(store: S) -> Self {
        Self {
            store: std::sync::Arc::new(store),
            rng: SystemRandom::new(),
        }
    }

    /// The underlying store (health probes).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The underlying store, shared (the broker keeps tenants' custom
    /// providers in it too, under another prefix).
    pub fn shared_store(&self) -> std::sync::Arc<S> {
        std::sync::Arc::clone(&self.store)
    }

    /// Stores `pending` under `state` (from [`State::generate`]). The
    /// document is created with create-only check-and-set, so even a
    /// (256-bit) collision could not overwrite another flow.
    pub async fn issue(
        &self,
        state: &State,
        pending: &PendingAuthorization,
    ) -> Result<(), StateError> {
        let sealed_verifier = match &pending.pkce_verifier {
            Some(verifier) => Some(self.seal(state, verifier)?),
            None => None,
        };
        let stored = Stored {
            connection: pending.connection.resource_name(),
            subject: pending.subject.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            return_url: pending.return_url.clone(),
            inputs: pending.inputs.clone(),
            scopes: pending.scopes.clone(),
            sealed_verifier,
            created_at: unix(pending.created_at),
            expires_at: unix(pending.expires_at),
            consumed_at: None,
        };
        let body = serde_json::to_vec(&stored).map_err(|_| StateError::Corrupt("encoding"))?;
        self.store
            .write(&state.key()?, body, Cas::CreateOnly)
            .await?;
        Ok(())
    }

    /// Consumes `state` if it is ours, unused, unexpired and issued for
    /// what `expected` says; answers what the flow remembered.
    ///
    /// Order matters: a state of another tenant is refused as unknown
    /// *before* anything is written (that caller may neither learn of it nor
    /// burn it); every other presentation consumes it first, so a state is
    /// tried at most once whatever the outcome (an expired or mismatched one
    /// included).
    pub async fn consume(
        &self,
        state: &State,
        expected: &Expected<'_>,
        now: OffsetDateTime,
    ) -> Result<PendingAuthorization, StateError> {
        let key = state.key()?;
        let doc = match self.store.read(&key, None).await {
            Ok(doc) => doc,
            Err(StoreError::NotFound { .. }) => return Err(StateError::Unknown),
            Err(e) => return Err(e.into()),
        };
        let mut stored: Stored =
            serde_json::from_slice(&doc.body).map_err(|_| StateError::Corrupt("document"))?;
        let connection = ConnectionRef::parse(&stored.connection)
            .map_err(|_| StateError::Corrupt("connection"))?;
        let tenant = connection
            .scope
            .tenant()
            .cloned()
            .ok_or(StateError::Corrupt("owner"))?;
        if expected.confined_to.is_some_and(|t| *t != tenant) {
            return Err(StateError::Unknown);
        }
        if stored.consumed_at.is_some() {
            return Err(StateError::Used);
        }
        let sealed = stored.sealed_verifier.take();
        stored.consumed_at = Some(unix(now));
        let tombstone = serde_json::to_vec(&stored).map_err(|_| StateError::Corrupt("encoding"))?;
        match self
            .store
            .write(&key, tombstone, Cas::Version(doc.version))
            .await
        {
            Ok(_) => {}
            // Someone else presented it between our read and write.
            Err(StoreError::Conflict { .. }) => return Err(StateError::Used),
            Err(e) => return Err(e.into()),
        }
        let expires_at = from_unix(stored.expires_at)?;
        if now >= expires_at {
            return Err(StateError::Expired);
        }
        if connection.integration.as_str() != expected.integration {
            return Err(StateError::IntegrationMismatch);
        }
        if stored.redirect_uri != expected.redirect_uri {
            return Err(StateError::RedirectMismatch);
        }
        let pkce_verifier = match sealed {
            Some(sealed) => Some(self.open(state, &sealed)?),
            None => None,
        };
        Ok(PendingAuthorization {
            connection,
            tenant,
            subject: stored.subject,
            redirect_uri: stored.redirect_uri,
            return_url: stored.return_url,
            inputs: stored.inputs,
            scopes: stored.scopes,
            pkce_verifier,
            created_at: from_unix(stored.created_at)?,
            expires_at,
        })
    }

    /// Erases documents that can no longer be used (consumed, or expired at
    /// `now`), up to `limit` of them; answers how many. Run periodically:
    /// every replica may run it, erasing is idempotent.
    pub async fn purge(&self, now: OffsetDateTime, limit: usize) -> Result<usize, StateError> {
        let prefix = Key::parse(PREFIX).map_err(|e| StateError::Storage(e.into()))?;
        let mut after: Option<String> = None;
        let mut erased = 0;
        loop {
            let page = self
                .store
                .list(Some(&prefix), after.as_deref(), 256)
                .await?;
            let last = page.len() < 256;
            for child in &page {
                let Child::Document(name) = child else {
                    continue;
                };
                let key = Key::parse(&format!("{PREFIX}/{name}"))
                    .map_err(|e| StateError::Storage(e.into()))?;
                let dead = match self.store.read(&key, None).await {
                    Ok(doc) => serde_json::from_slice::<Stored>(&doc.body)
                        .map(|s| s.consumed_at.is_some() || s.expires_at <= unix(now))
                        .unwrap_or(true),
                    Err(StoreError::NotFound { .. }) => true,
                    Err(e) => return Err(e.into()),
                };
                if dead {
                    self.store.delete_all(&key).await?;
                    erased += 1;
                    if erased >= limit {
                        return Ok(erased);
                    }
                }
            }
            if last {
                return Ok(erased);
            }
            after = page.last().map(Child::cursor);
        }
    }

    fn seal(&self, state: &State, verifier: &SecretString) -> Result<String, StateError> {
        let key = state.sealing_key()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| StateError::Crypto)?;
        let mut data = verifier.expose_secret().as_bytes().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .map_err(|_| StateError::Crypto)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    fn open(&self, state: &State, sealed: &str) -> Result<SecretString, StateError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| StateError::Corrupt("sealed verifier"))?;
        if bytes.len() < NONCE_LEN {
            return Err(StateError::Corrupt("sealed verifier"));
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| StateError::Corrupt("nonce"))?;
        let mut data = rest.to_vec();
        let plain = state
            .sealing_key()?
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| StateError::Corrupt("sealed verifier"))?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| StateError::Corrupt("sealed verifier"))?;
        zeroize::Zeroize::zeroize(&mut data);
        Ok(SecretString::from(text))
    }
}

/// The owner scope named by an owner resource name (`tenants/acme`,
/// `tenants/acme/orgs/sales/bots/b1`): parsed exactly as a connection's
/// owner is (the domain crate keeps its owner parser private).
pub fn parse_owner(owner: &str) -> Option<Scope> {
    ConnectionRef::parse(&format!("{owner}/integrations/x"))
        .ok()
        .map(|c| c.scope)
}

/// The integration id in `text`, if it is one.
pub fn parse_integration(text: &str) -> Option<IntegrationId> {
    IntegrationId::parse(text).ok()
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
