//! Locksmith's domain model, free of wire types: identifiers, scopes, tenants
//! and the members (orgs, bots, users) inside them.
//!
//! Parsing is strict and happens once, at the receiving edge of a service;
//! past that point a `TenantId` or a `Scope` is known to be well formed, so no
//! later code builds a storage path out of unchecked text.

mod connection;
mod ids;
mod member;
mod scope;
pub mod secrets;
mod tenant;
mod validation;

pub use connection::ConnectionRef;
pub use ids::{IdError, IntegrationId, MemberId, TenantId};
pub use member::{Member, MemberKind, MemberPatch, MemberSpec};
pub use scope::{Scope, ScopeError};
pub use tenant::{MAX_INTEGRATIONS, Quotas, Tenant, TenantPatch, TenantSpec, TenantStatus};
pub use validation::{FieldError, Invalid};
