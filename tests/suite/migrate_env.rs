//! `locksmith migrate env` (the CLI's own code) against a live credential
//! store: seed 000's variables land in their system secrets; a dry run
//! writes nothing; a second run changes nothing; a different stored value is
//! kept unless forced; unknown variables are reported; no value is printed.

use locksmith_cli::migrate_cmd::{Source, run};
use locksmith_proto::credstore::v1 as pb;
use locksmith_tls::ServiceName;

use crate::credstore_grpc::CredStoreServer;

async fn migrate(
    server: &CredStoreServer,
    env: &std::path::Path,
    dry_run: bool,
    force: bool,
) -> String {
    let mut out = Vec::new();
    run(
        &format!("https://{}", server.addr),
        server.pki.path(),
        Source::File(env),
        dry_run,
        force,
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out).unwrap()
}

async fn stored(
    server: &CredStoreServer,
    name: &str,
) -> Option<(u64, std::collections::HashMap<String, String>)> {
    let mut edge = server.client_as(ServiceName::Edge);
    let mut request = tonic::Request::new(pb::GetSecretRequest {
        name: name.to_owned(),
        version: 0,
    });
    locksmith_auth::forward(
        &mut request,
        &locksmith_auth::Principal::Operator {
            subject: "api-key:test".into(),
        },
    );
    edge.get_secret(request)
        .await
        .ok()
        .and_then(|r| r.into_inner().secret)
        .map(|s| (s.version, s.fields))
}

#[tokio::test]
async fn environment_variables_move_into_system_secrets_once() {
    let server = CredStoreServer::start().await;
    // The system scope needs its key before it holds a secret.
    let mut edge = server.client_as(ServiceName::Edge);
    let mut provision = tonic::Request::new(pb::ProvisionTenantKeyRequest {
        owner: "system".into(),
    });
    locksmith_auth::forward(
        &mut provision,
        &locksmith_auth::Principal::Operator {
            subject: "api-key:test".into(),
        },
    );
    edge.provision_tenant_key(provision).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    std::fs::write(
        &env,
        "SMTP_HOST=smtp.example.com\nSMTP_PASS=hunter2-pass\nJWT_SECRET=jwt-signing-secret\nFOO=bar\n",
    )
    .unwrap();

    let dry = migrate(&server, &env, true, false).await;
    assert!(
        dry.contains("SMTP_PASS -> system/secrets/email field smtp-password: write"),
        "{dry}"
    );
    assert!(
        dry.contains("FOO: not a variable seed 000 maps; ignored"),
        "{dry}"
    );
    assert!(
        dry.ends_with("dry run: 3 written, 0 unchanged, 0 conflicting, 1 unknown variables\n"),
        "{dry}"
    );
    assert_eq!(
        stored(&server, "system/secrets/email").await,
        None,
        "a dry run wrote"
    );

    let first = migrate(&server, &env, false, false).await;
    assert!(
        first.ends_with("3 written, 0 unchanged, 0 conflicting, 1 unknown variables\n"),
        "{first}"
    );
    let (version, email) = stored(&server, "system/secrets/email").await.unwrap();
    assert_eq!(version, 1);
    assert_eq!(email["smtp-password"], "hunter2-pass");
    assert_eq!(email["smtp-host"], "smtp.example.com");
    assert_eq!(
        stored(&server, "system/secrets/jwt").await.unwrap().1["secret"],
        "jwt-signing-secret"
    );

    let again = migrate(&server, &env, false, false).await;
    assert!(
        again.ends_with("0 written, 3 unchanged, 0 conflicting, 1 unknown variables\n"),
        "{again}"
    );
    assert_eq!(
        stored(&server, "system/secrets/email").await.unwrap().0,
        1,
        "a no-op wrote"
    );

    std::fs::write(&env, "SMTP_PASS=rotated-pass\n").unwrap();
    let conflict = migrate(&server, &env, false, false).await;
    assert!(
        conflict.contains("conflict: a different value is stored; kept (use --force)"),
        "{conflict}"
    );
    assert_eq!(
        stored(&server, "system/secrets/email").await.unwrap().1["smtp-password"],
        "hunter2-pass"
    );
    let forced = migrate(&server, &env, false, true).await;
    assert!(
        forced.ends_with("1 written, 0 unchanged, 0 conflicting, 0 unknown variables\n"),
        "{forced}"
    );
    let (version, email) = stored(&server, "system/secrets/email").await.unwrap();
    assert_eq!(
        (version, email["smtp-password"].as_str()),
        (2, "rotated-pass")
    );
    // Other fields of the secret were kept.
    assert_eq!(email["smtp-host"], "smtp.example.com");

    for output in [dry, first, again, conflict, forced] {
        for value in [
            "hunter2-pass",
            "jwt-signing-secret",
            "rotated-pass",
            "smtp.example.com",
        ] {
            assert!(!output.contains(value), "a value was printed: {output}");
        }
    }
}
