//! The key wrapper chosen by configuration (`[keys]`): `CredStore<S, W>` is
//! generic over its wrapper, so a choice made at start-up needs one type
//! that is either.

use locksmith_crypto::{
    CryptoError, DataKey, KeyWrapper, MasterKeyWrapper, Owner, TransitWrapper, WrappedKey,
};
use locksmith_store::OpenBaoClient;

use crate::config::{KeyBackend, KeysConfig};

/// A master key file or OpenBao Transit.
#[derive(Debug)]
pub enum Wrapper {
    /// [`MasterKeyWrapper`]: one local key wraps every owner's data keys.
    MasterKey(MasterKeyWrapper),
    /// [`TransitWrapper`]: each owner's own Transit key wraps its data keys.
    Transit(TransitWrapper),
}

/// Why the configured wrapper cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WrapperError {
    /// `backend = "master_key_file"` without `master_key_file`.
    #[error("keys.master_key_file is required with keys.backend = \"master_key_file\"")]
    MissingMasterKeyFile,
    /// `backend = "transit"` without an OpenBao server to run it on.
    #[error(
        "keys.backend = \"transit\" needs storage.backend = \"openbao\" (its server and identity)"
    )]
    TransitNeedsOpenBao,
    /// The master key file or the Transit mount was refused.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

impl Wrapper {
    /// The wrapper `keys` names. `openbao` is the storage's OpenBao client,
    /// if storage is OpenBao: Transit shares it (one login, one token
    /// renewal, the same timeouts). Loads or creates the master key file:
    /// blocking file I/O, call at start-up.
    pub fn from_config(
        keys: &KeysConfig,
        openbao: Option<OpenBaoClient>,
    ) -> Result<Self, WrapperError> {
        match keys.backend {
            KeyBackend::MasterKeyFile => {
                let path = keys
                    .master_key_file
                    .as_ref()
                    .ok_or(WrapperError::MissingMasterKeyFile)?;
                Ok(Wrapper::MasterKey(MasterKeyWrapper::load_or_create(path)?))
            }
            KeyBackend::Transit => {
                let client = openbao.ok_or(WrapperError::TransitNeedsOpenBao)?;
                Ok(Wrapper::Transit(TransitWrapper::new(
                    client,
                    &keys.transit_mount,
                )?))
            }
        }
    }
}

// `async fn` satisfies the trait's `impl Future + Send`: both wrappers'
// futures are `Send`, which the compiler checks here.
impl KeyWrapper for Wrapper {
    async fn wrap(&self, owner: &Owner, key: &DataKey) -> Result<WrappedKey, CryptoError> {
        match self {
            Wrapper::MasterKey(w) => w.wrap(owner, key).await,
            Wrapper::Transit(w) => w.wrap(owner, key).await,
        }
    }

    async fn unwrap(&self, owner: &Owner, wrapped: &WrappedKey) -> Result<DataKey, CryptoError> {
        match self {
            Wrapper::MasterKey(w) => w.unwrap(owner, wrapped).await,
            Wrapper::Transit(w) => w.unwrap(owner, wrapped).await,
        }
    }

    async fn provision(&self, owner: &Owner) -> Result<(), CryptoError> {
        match self {
            Wrapper::MasterKey(w) => w.provision(owner).await,
            Wrapper::Transit(w) => w.provision(owner).await,
        }
    }

    async fn shred(&self, owner: &Owner) -> Result<(), CryptoError> {
        match self {
            Wrapper::MasterKey(w) => w.shred(owner).await,
            Wrapper::Transit(w) => w.shred(owner).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use locksmith_crypto::KeyVersion;
    use locksmith_store::OpenBaoConfig;

    use super::*;

    fn keys(text: &str) -> KeysConfig {
        toml::from_str(text).unwrap()
    }

    #[tokio::test]
    async fn the_master_key_file_wraps_through_the_enum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let config = keys(&format!(
            "master_key_file = {:?}",
            path.display().to_string()
        ));
        let wrapper = Wrapper::from_config(&config, None).unwrap();
        assert!(matches!(wrapper, Wrapper::MasterKey(_)));
        let key = DataKey::generate(Owner::System, KeyVersion::FIRST).unwrap();
        wrapper.provision(&Owner::System).await.unwrap();
        let wrapped = wrapper.wrap(&Owner::System, &key).await.unwrap();
        let back = wrapper.unwrap(&Owner::System, &wrapped).await.unwrap();
        assert_eq!(back.expose_secret(), key.expose_secret());
        wrapper.shred(&Owner::System).await.unwrap();
    }

    #[test]
    fn each_backend_needs_its_settings() {
        assert!(matches!(
            Wrapper::from_config(&keys(""), None),
            Err(WrapperError::MissingMasterKeyFile)
        ));
        let transit = keys(r#"backend = "transit""#);
        assert!(matches!(
            Wrapper::from_config(&transit, None),
            Err(WrapperError::TransitNeedsOpenBao)
        ));
        let client =
            OpenBaoClient::new(&OpenBaoConfig::new("http://127.0.0.1:1", "t".into())).unwrap();
        assert!(matches!(
            Wrapper::from_config(&transit, Some(client.clone())),
            Ok(Wrapper::Transit(_))
        ));
        let bad_mount = keys("backend = \"transit\"\ntransit_mount = \"a/../b\"");
        assert!(matches!(
            Wrapper::from_config(&bad_mount, Some(client)),
            Err(WrapperError::Crypto(_))
        ));
    }
}
