//! Principals: who a call is *for*.
//!
//! A certificate says which process is calling; a principal says on whose
//! behalf. The edge authenticates outside callers (API keys, JWTs) and
//! forwards the principal to the services in gRPC metadata; a suite service
//! calling another for a caller forwards that caller's principal too. A
//! service believes a forwarded principal only from a suite service's
//! certificate ([`PrincipalLayer`]); a tenant workload is always itself.
//!
//! Handlers take the principal as a parameter and check tenant ownership
//! themselves ([`Principal::authorize`]): a bug in one hop alone cannot cross
//! tenants.

mod layer;
mod principal;
mod wire;

pub use layer::{PrincipalLayer, PrincipalService};
pub use principal::{Access, Denied, Principal, Role, Roles};
pub use wire::{PRINCIPAL_HEADER, WireError, forward};
