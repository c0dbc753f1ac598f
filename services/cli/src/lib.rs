//! The `locksmith` operator command as a library, so the integration tests
//! drive the same code the binary runs: PKI, API keys, key rotation, migrations.

pub mod api_key;
pub mod keys;
pub mod migrate;
pub mod migrate_cmd;
pub mod pki;
