//! The OAuth broker (design brief §2, §4): it creates connections for
//! tenants and their orgs, bots and users, and keeps them alive.
//!
//! - [`catalog`]: the provider catalog as data — a versioned file validated
//!   at start, plus tenants' custom providers.
//! - [`record`]: a connection as stored in the credential store (one sealed,
//!   versioned record per owner and integration), lease included.
//! - [`error`]: `BrokerError` and its mapping onto the suite's error model.
//! - [`custom`]: tenants' custom providers (storage, lookup, cache); their
//!   calls and admission checks are in the flows.
//! - [`credstore`]: the credential store client (connection records, OAuth
//!   apps resolved by scope).
//! - [`registry`]: the tenant registry client (owners must exist; tenants
//!   for the per-tenant health counts).
//! - [`token`]: token, refresh, client-credentials and revocation requests
//!   built from a catalog entry, sent through the egress guard.
//! - [`refresh`]: the refresh protocol (single flight, a check-and-set lease
//!   across replicas, tokens written with check-and-set, backoff).

pub mod catalog;
pub mod config;
pub mod credstore;
pub mod custom;
pub mod error;
pub mod flows;
pub mod grpc;
pub mod record;
pub mod refresh;
pub mod registry;
pub mod server;
pub mod state;
pub mod token;
