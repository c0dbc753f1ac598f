//! The OpenBao backend: documents in a KV v2 mount, one HTTP call per
//! operation, exactly as the mapping table in the crate docs says.
//!
//! Each document is KV `data` of the form `{"b": "<base64 of the bytes>"}`;
//! KV's own metadata (versions, times, deletion states) is the store's
//! metadata, so nothing is emulated on our side. A store may be rooted at a
//! prefix inside the mount: every key, listing and delete stays under it.

mod auth;
mod config;
mod http;
#[cfg(test)]
mod tests;
mod wire;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub use config::{AppRoleConfig, OpenBaoConfig};
pub use http::{Answer, OpenBaoClient, Request, Retry};

use crate::{Cas, Child, Document, DocumentStore, Key, Metadata, StoreError, check};

/// KV's answer to a check-and-set mismatch (a 400); the error text is the
/// only thing telling it from other 400s.
const CAS_MISMATCH: &str = "check-and-set parameter did not match";

/// KV parses version numbers as signed 64-bit and answers 400 for larger
/// ones; no key can ever reach them, so here they are simply absent (as in
/// the embedded store), never [`StoreError::Invalid`].
const MAX_KV_VERSION: u64 = i64::MAX.unsigned_abs();

/// The versions KV can hold; `None` if some were given and none of them is.
fn reachable(versions: &[u64]) -> Option<Vec<u64>> {
    let kept: Vec<u64> = versions
        .iter()
        .copied()
        .filter(|v| *v <= MAX_KV_VERSION)
        .collect();
    (kept.is_empty() == versions.is_empty()).then_some(kept)
}

/// Documents in an OpenBao KV v2 mount (see the module docs).
pub struct OpenBaoStore {
    http: OpenBaoClient,
    /// `<mount>/`.
    mount: String,
    /// `<prefix>/` or empty.
    prefix: String,
}

impl std::fmt::Debug for OpenBaoStore {
    // The client holds the token: show only where the documents live.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBaoStore")
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl OpenBaoStore {
    /// A store for `config`. Nothing is sent yet: call
    /// [`DocumentStore::ping`] to check the server answers.
    pub fn new(config: &OpenBaoConfig) -> Result<Self, StoreError> {
        let (mount, prefix) = config.validated()?;
        Ok(Self {
            http: OpenBaoClient::new(config)?,
            mount,
            prefix,
        })
    }

    /// The store's client (same server, same identity, same token renewal),
    /// for other OpenBao users in the process such as Transit key wrapping.
    pub fn client(&self) -> OpenBaoClient {
        self.http.clone()
    }

    /// `<mount>/<op>/<prefix><key>`.
    fn path(&self, op: &str, key: &Key) -> String {
        format!("{}/{op}/{}{key}", self.mount, self.prefix)
    }

    /// The key's current version, 0 if it has none: what a refused
    /// check-and-set reports.
    async fn current_version(&self, key: &Key) -> Result<u64, StoreError> {
        match self.metadata(key).await {
            Ok(meta) => Ok(meta.current_version),
            Err(StoreError::NotFound { .. }) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// A version-list call (`delete`, `undelete`, `destroy`) on the versions
    /// KV can hold; nothing to do if none of them can exist.
    async fn versions_op(&self, op: &str, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
        let Some(versions) = reachable(versions) else {
            return Ok(());
        };
        let body = json!({ "versions": versions });
        self.modify(Method::POST, &self.path(op, key), Some(&body))
            .await
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Answer, StoreError> {
        self.http.kv(Method::GET, path, query, None).await
    }

    /// A delete-like call (`soft_delete`, `undelete`, `destroy`,
    /// `delete_all`): success is 2xx, and an absent key is success too.
    async fn modify(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(), StoreError> {
        let answer = self.http.kv(method.clone(), path, &[], body).await?;
        match answer.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(invalid(&method, path, &answer)),
        }
    }
}

/// A 400 that is not a check-and-set mismatch: our request was refused.
fn invalid(method: &Method, path: &str, answer: &Answer) -> StoreError {
    StoreError::Invalid(format!(
        "openbao {method} {path}: {} {}",
        answer.status,
        answer.errors()
    ))
}

impl DocumentStore for OpenBaoStore {
    async fn read(&self, key: &Key, version: Option<u64>) -> Result<Document, StoreError> {
        if let Some(v) = version {
            check::version(v)?;
            if v > MAX_KV_VERSION {
                return Err(StoreError::NotFound { deleted: false });
            }
        }
        let path = self.path("data", key);
        let query: Vec<_> = version
            .map(|v| ("version", v.to_string()))
            .into_iter()
            .collect();
        let answer = self.get(&path, &query).await?;
        match answer.status {
            StatusCode::NOT_FOUND => Err(wire::not_found(&answer.json()?)),
            s if s.is_success() => wire::document(answer.json()?),
            _ => Err(invalid(&Method::GET, &path, &answer)),
        }
    }

    async fn write(&self, key: &Key, body: Vec<u8>, cas: Cas) -> Result<u64, StoreError> {
        check::body(&body)?;
        let cas = match cas {
            Cas::CreateOnly => Some(0),
            Cas::Version(v) if v > MAX_KV_VERSION => {
                return Err(StoreError::Conflict {
                    current: self.current_version(key).await?,
                });
            }
            Cas::Version(v) => Some(v),
            Cas::None => None,
        };
        let path = self.path("data", key);
        let request = wire::write_body(&body, cas);
        // Not retried: a write that failed on the way back may have landed.
        let answer = self
            .http
            .kv(Method::POST, &path, &[], Some(&request))
            .await?;
        match answer.status {
            s if s.is_success() => wire::written_version(answer.json()?),
            StatusCode::BAD_REQUEST if answer.errors().contains(CAS_MISMATCH) => {
                // KV does not say which version it found: ask. A write in
                // between can make this newer than what refused us, which
                // the caller handles the same way (re-read, re-decide).
                Err(StoreError::Conflict {
                    current: self.current_version(key).await?,
                })
            }
            _ => Err(invalid(&Method::POST, &path, &answer)),
        }
    }

    async fn metadata(&self, key: &Key) -> Result<Metadata, StoreError> {
        let path = self.path("metadata", key);
        let answer = self.get(&path, &[]).await?;
        match answer.status {
            StatusCode::NOT_FOUND => Err(StoreError::NotFound { deleted: false }),
            s if s.is_success() => wire::metadata(answer.json()?),
            _ => Err(invalid(&Method::GET, &path, &answer)),
        }
    }

    async fn list(
        &self,
        prefix: Option<&Key>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Child>, StoreError> {
        check::limit(limit)?;
        let folder = match prefix {
            Some(p) => format!("{}{p}/", self.prefix),
            None => self.prefix.clone(),
        };
        let path = format!("{}/metadata/{folder}", self.mount);
        // `GET ?list=true` is KV's LIST, and a GET is retried like any read.
        let mut query = vec![("list", "true".to_owned()), ("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        let answer = self.get(&path, &query).await?;
        match answer.status {
            // Nothing under the prefix (or nothing after the cursor).
            StatusCode::NOT_FOUND => Ok(Vec::new()),
            s if s.is_success() => wire::children(answer.json()?),
            _ => Err(invalid(&Method::GET, &path, &answer)),
        }
    }

    async fn soft_delete(&self, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
        check::versions(versions, false)?;
        if versions.is_empty() {
            return self
                .modify(Method::DELETE, &self.path("data", key), None)
                .await;
        }
        self.versions_op("delete", key, versions).await
    }

    async fn undelete(&self, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
        check::versions(versions, true)?;
        self.versions_op("undelete", key, versions).await
    }

    async fn destroy(&self, key: &Key, versions: &[u64]) -> Result<(), StoreError> {
        check::versions(versions, true)?;
        self.versions_op("destroy", key, versions).await
    }

    async fn delete_all(&self, key: &Key) -> Result<(), StoreError> {
        self.modify(Method::DELETE, &self.path("metadata", key), None)
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // 200 only: a standby (429), a sealed (503) or an uninitialised (501)
        // server cannot serve our writes.
        let answer = self.get("sys/health", &[]).await?;
        if answer.status == StatusCode::OK {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "openbao health answered {}",
                answer.status
            )))
        }
    }
}
