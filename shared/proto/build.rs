//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no
//! system `protoc`. The encoded descriptor set is kept for gRPC reflection.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message;

const PROTO_ROOT: &str = "../../proto";
const PROTOS: &[&str] = &[
    "locksmith/registry/v1/registry.proto",
    "locksmith/registry/v1/api_keys.proto",
    "locksmith/credstore/v1/credstore.proto",
    "locksmith/broker/v1/broker.proto",
    "locksmith/proxy/v1/proxy.proto",
];

/// Messages holding a credential (an API key, a secret's field values).
const SECRET_BEARING: &[&str] = &[
    "locksmith.registry.v1.VerifyApiKeyRequest",
    "locksmith.registry.v1.CreateApiKeyResponse",
    "locksmith.credstore.v1.Secret",
    "locksmith.credstore.v1.PutSecretRequest",
    "locksmith.credstore.v1.Connection",
    "locksmith.credstore.v1.PutConnectionRequest",
    "locksmith.broker.v1.ApiKeyCredentials",
    "locksmith.broker.v1.BasicCredentials",
    "locksmith.broker.v1.ImportedTokens",
    "locksmith.broker.v1.GetAccessTokenResponse",
    "locksmith.broker.v1.CompleteAuthorizationRequest",
    // the state (also inside the URL) is half of what completes a flow
    "locksmith.broker.v1.StartAuthorizationResponse",
    // a proxied call's headers and bodies are the caller's and the API's data
    "locksmith.proxy.v1.Header",
    "locksmith.proxy.v1.CallRequest",
    "locksmith.proxy.v1.CallResponse",
    "locksmith.proxy.v1.StreamCallRequest",
    "locksmith.proxy.v1.StreamCallResponse",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let descriptors = protox::compile(PROTOS, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("locksmith_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Messages that carry a credential: their Debug is written by hand
        // (src/redacted.rs) so a key never reaches a log line.
        .skip_debug(SECRET_BEARING)
        // Proxied bodies pass through as `Bytes`, never copied into a Vec.
        .bytes(".locksmith.proxy.v1")
        .compile_fds(descriptors)?;
    Ok(())
}
