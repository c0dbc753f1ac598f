//! Secrets as the domain sees them: names and resource names
//! ([`SecretName`], [`SecretRef`]), seed 000's catalogue of known entries
//! ([`catalogue`]) and its environment-variable mapping ([`migration`]).

pub mod catalogue;
pub mod migration;
mod name;

pub(crate) use name::scope_of_owner;
pub use name::{MAX_NAME_BYTES, MAX_SEGMENTS, NameError, ResourceError, SecretName, SecretRef};
