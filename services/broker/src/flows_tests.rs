use locksmith_tls::ServiceName;

use super::*;

fn tenant(id: &str, roles: &[Role]) -> Principal {
    Principal::Tenant {
        tenant: TenantId::parse(id).unwrap(),
        roles: Roles::of(roles.iter().copied()),
        subject: "api-key:k1".into(),
    }
}

fn scope(owner: &str) -> Scope {
    parse_owner(owner).unwrap()
}

#[test]
fn another_tenant_is_absent_and_a_missing_role_is_denied() {
    let acme_writer = tenant("acme", &[Role::Write]);
    let acme_reader = tenant("acme", &[Role::Read]);
    let sales = scope("tenants/acme/orgs/sales");
    assert!(authorize(&acme_writer, &sales, Access::Write, "connection").is_ok());
    match authorize(&acme_reader, &sales, Access::Write, "connection") {
        Err(BrokerError::PermissionDenied { needs }) => assert_eq!(needs, "the write role"),
        other => panic!("{other:?}"),
    }
    let beta = scope("tenants/beta");
    for (who, access) in [(&acme_writer, Access::Write), (&acme_reader, Access::Read)] {
        match authorize(who, &beta, access, "connection") {
            Err(BrokerError::NotFound(what)) => assert_eq!(what, "connection"),
            other => panic!("{other:?}"),
        }
    }
    let operator = Principal::Operator {
        subject: "api-key:root".into(),
    };
    assert!(authorize(&operator, &beta, Access::Write, "connection").is_ok());
    assert!(authorize(&operator, &Scope::System, Access::Write, "connection").is_ok());
    assert!(matches!(
        authorize(&acme_writer, &Scope::System, Access::Read, "connection"),
        Err(BrokerError::PermissionDenied { .. })
    ));
    let proxy = Principal::Service {
        service: ServiceName::Proxy,
    };
    assert!(authorize(&proxy, &beta, Access::Read, "connection").is_ok());
}

#[test]
fn scopes_are_bounded_and_never_smuggle_a_separator() {
    assert!(check_scopes(&["repo".into(), "read:user".into()], "scopes").is_ok());
    for (bad, field) in [
        (vec!["repo admin".to_owned()], "scopes[0]"),
        (vec!["ok".to_owned(), String::new()], "scopes[1]"),
        (vec!["a\u{0}b".to_owned()], "scopes[0]"),
        (vec!["x".repeat(257)], "scopes[0]"),
        (vec!["s".to_owned(); 65], "scopes"),
    ] {
        match check_scopes(&bad, "scopes") {
            Err(BrokerError::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn provider_error_codes_are_echoed_only_when_they_look_like_codes() {
    assert_eq!(provider_error_code("access_denied"), "access_denied");
    for bad in ["", "<script>", "Access Denied", &"a".repeat(65), "tok\nen"] {
        assert_eq!(provider_error_code(bad), "invalid_error", "{bad:?}");
    }
}

#[test]
fn connection_names_are_parsed_naming_the_field() {
    assert_eq!(
        parse_connection("tenants/acme/integrations/github", "name")
            .unwrap()
            .resource_name(),
        "tenants/acme/integrations/github"
    );
    match parse_connection("tenants/acme/github", "name") {
        Err(BrokerError::InvalidArgument { field, .. }) => assert_eq!(field, "name"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_credential_kind_names_its_auth_mode() {
    let cases = [
        (Credentials::ApiKey("k".into()), AuthMode::ApiKey, "api_key"),
        (
            Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            },
            AuthMode::Basic,
            "basic",
        ),
        (
            Credentials::Tokens {
                access_token: "a".into(),
                refresh_token: None,
                expires_in: 0,
                scopes: vec![],
            },
            AuthMode::OAuth2AuthorizationCode,
            "tokens",
        ),
        (
            Credentials::ClientCredentials { scopes: vec![] },
            AuthMode::OAuth2ClientCredentials,
            "client_credentials",
        ),
    ];
    for (c, mode, name) in cases {
        assert_eq!(c.mode(), (mode, name));
        assert_eq!(expected_credentials(mode).split(' ').next(), Some(name));
    }
}

#[test]
fn secrets_are_checked_without_being_repeated() {
    let err = check_secret("a\nb".into(), "api_key.key").unwrap_err();
    assert!(!err.to_string().contains("a\nb"));
    assert!(
        matches!(err, BrokerError::InvalidArgument { ref field, .. } if field == "api_key.key")
    );
    assert!(check_secret(String::new().into(), "x").is_err());
}

#[test]
fn the_callback_writes_as_the_states_tenant_only() {
    let pending = PendingAuthorization {
        connection: ConnectionRef::parse("tenants/acme/integrations/github").unwrap(),
        tenant: TenantId::parse("acme").unwrap(),
        subject: "api-key:k1".into(),
        redirect_uri: String::new(),
        return_url: None,
        inputs: BTreeMap::new(),
        scopes: vec![],
        pkce_verifier: None,
        created_at: OffsetDateTime::UNIX_EPOCH,
        expires_at: OffsetDateTime::UNIX_EPOCH,
    };
    let p = callback_principal(&pending);
    assert_eq!(p.tenant().map(TenantId::as_str), Some("acme"));
    assert!(
        p.authorize(&TenantId::parse("beta").unwrap(), Access::Read)
            .is_err()
    );
    // A long subject of multi-byte characters is cut on a character
    // boundary, never inside one.
    let long = PendingAuthorization {
        subject: "jwt:https://issuer#".to_owned() + &"é".repeat(250),
        ..pending
    };
    let Principal::Tenant { subject, .. } = callback_principal(&long) else {
        panic!("a tenant principal");
    };
    assert!(subject.len() <= 500 && subject.starts_with("oauth-callback:jwt:"));
}

#[test]
fn a_refused_flow_goes_back_to_its_return_url_only_when_it_has_one() {
    let refusal = || BrokerError::Provider {
        integration: "oidc".into(),
        status: 302,
        code: "access_denied".into(),
    };
    match Completed::refused(
        Some("https://app.acme.example/done".into()),
        FlowError::of_provider("access_denied"),
        refusal(),
    ) {
        Ok(Completed::Refused { error, return_url }) => {
            assert_eq!(error, FlowError::AccessDenied);
            assert_eq!(return_url, "https://app.acme.example/done");
        }
        other => panic!("{other:?}"),
    }
    match Completed::refused(None, FlowError::AccessDenied, refusal()) {
        Err(BrokerError::Provider { code, .. }) => assert_eq!(code, "access_denied"),
        other => panic!("{other:?}"),
    }
    // The browser hears one of three fixed codes, whatever the provider said.
    assert_eq!(
        FlowError::of_provider(&provider_error_code("server_error")).as_str(),
        "provider_error"
    );
    assert_eq!(
        FlowError::of_provider(&provider_error_code("<script>")).as_str(),
        "provider_error"
    );
    assert_eq!(FlowError::AccessDenied.as_str(), "access_denied");
    assert_eq!(FlowError::ExchangeFailed.as_str(), "exchange_failed");
}
