//! The tenant registry: tenants, the orgs inside them, and the bots and users
//! inside orgs, served over mutually authenticated gRPC
//! (`locksmith.registry.v1.TenantRegistryService`).
//!
//! Layers, outside in: `server` (transport, mTLS allow-lists, tracing) →
//! `api` (prost ↔ domain via `convert`) → `registry` (rules: validation,
//! check-and-set, cascades as resumable sweeps, tenant keys through `keys`)
//! → `store` (the record layout on the suite's shared
//! [`locksmith_store::DocumentStore`]: embedded SQLite or OpenBao KV v2).

mod api;
pub mod api_keys;
pub mod config;
mod convert;
mod error;
pub mod keys;
mod pagination;
mod registry;
pub mod server;
pub mod store;
mod tenants;

pub use api::RegistryApi;
pub use config::RegistryConfig;
pub use error::RegistryError;
pub use keys::{CredStoreKeys, KeyError, TenantKeys};
pub use registry::{Clock, Page, Registry, system_clock};
pub use store::RecordKind;
