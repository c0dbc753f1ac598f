//! The tenant registry: tenants, the orgs inside them, and the bots and users
//! inside orgs, served over mutually authenticated gRPC
//! (`locksmith.registry.v1.TenantRegistryService`).
//!
//! Layers, outside in: `server` (transport, mTLS allow-lists, tracing) →
//! `api` (prost ↔ domain via `convert`) → `registry` (rules: validation,
//! check-and-set, cascades) → `store` (the [`RegistryStore`] trait; SQLite
//! today, OpenBao with the credential-store work).

mod api;
pub mod api_keys;
pub mod config;
mod convert;
mod error;
mod pagination;
mod registry;
pub mod server;
pub mod store;

pub use api::RegistryApi;
pub use config::RegistryConfig;
pub use error::RegistryError;
pub use registry::{Clock, Page, Registry, system_clock};
pub use store::{RegistryStore, SqliteStore};
