//! The suite's one integration-test binary. Each test starts the services it
//! needs in-process on loopback ports (a fresh PKI, a fresh store) and talks to
//! them the way real callers do: HTTP to the edge, mTLS gRPC to the services.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod auth;
mod auth_jwt;
mod bad_input;
mod broker_custom;
mod broker_flows;
mod broker_health;
mod broker_refresh;
mod credstore_grpc;
mod credstore_matrix;
mod credstore_openbao;
mod grpc;
mod grpc_matrix;
mod jwt;
mod matrix;
mod members;
mod migrate_env;
mod mtls;
mod node_server;
mod oauth_http;
mod oauth_server;
mod oauth_server_selfcheck;
mod oidc;
mod openbao;
mod pagination;
mod proxy;
mod registry_races;
mod secrets_http;
mod store_differential;
mod store_openbao;
mod tenant_keys;
mod tenants;
mod trace;
