//! Locksmith's public gRPC contract: prost messages and tonic stubs generated
//! from `proto/`. Services keep these types at their edges and convert them to
//! domain types (`locksmith-domain`) on receipt.

/// Encoded `FileDescriptorSet` of every Locksmith proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/locksmith_descriptor.bin"));

/// `locksmith.registry.v1`: tenants, orgs, bots and users.
pub mod registry {
    /// Version 1 of the registry API.
    #[allow(clippy::all, clippy::pedantic, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("locksmith.registry.v1");
    }
}

/// `locksmith.credstore.v1`: secrets, their resolution, and tenant keys.
pub mod credstore {
    /// Version 1 of the credential store API.
    #[allow(clippy::all, clippy::pedantic, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("locksmith.credstore.v1");
    }
}

/// `locksmith.broker.v1`: OAuth connections, their flows and refresh.
pub mod broker {
    /// Version 1 of the broker API.
    #[allow(clippy::all, clippy::pedantic, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("locksmith.broker.v1");
    }
}

/// `locksmith.proxy.v1`: calls to integrations' APIs with credentials injected.
pub mod proxy {
    /// Version 1 of the token proxy API.
    #[allow(clippy::all, clippy::pedantic, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("locksmith.proxy.v1");
    }
}

mod redacted;
