//! Debug for the messages that carry an API key (`build.rs` skips the
//! derived one): every field but the key.

use std::fmt;

use crate::registry::v1::{CreateApiKeyResponse, VerifyApiKeyRequest};

impl fmt::Debug for VerifyApiKeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyApiKeyRequest")
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl fmt::Debug for CreateApiKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateApiKeyResponse")
            .field("api_key", &self.api_key)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_reach_debug_output() {
        let key = "lsk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let verify = VerifyApiKeyRequest { secret: key.into() };
        let created = CreateApiKeyResponse {
            api_key: None,
            secret: key.into(),
        };
        for text in [format!("{verify:?}"), format!("{created:?}")] {
            assert!(!text.contains("AAAA"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }
}
