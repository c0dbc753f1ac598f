//! The broker's refresh protocol (design brief §4) against the real OAuth
//! server (`oauth_server.rs`: oidc-provider, PKCE required, refresh tokens
//! rotated on every use, reuse revokes the grant) and a credential store
//! served over mTLS gRPC on the suite's OpenBao.
//!
//! The catalog only admits https endpoints and the egress guard only talks
//! https to them, so the plain-HTTP servers are reached through a small TLS
//! front of this file (a certificate from a CA the egress client is told to
//! trust with `ca_files`), and loopback is allow-listed as the issue says.
//!
//! Each "broker" is a [`Refresher`] with its own credential store client,
//! egress client, single-flight map and lease holder id; they share one
//! credential store, as replicas share one OpenBao.

mod world;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use locksmith_broker::{
    catalog::{AuthMode, ConnectionInputs},
    error::BrokerError,
    record::{ConnectionState, Lease, Status},
    refresh::{RefreshConfig, Refresher},
    token::{self, Revoked, TokenHint},
};
use secrecy::ExposeSecret;
use time::OffsetDateTime;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::oauth_server::{Behaviour, ClientSpec, OnDisconnect, oauth_server};
use world::{World, code_client, connected, expired, quick, reader, secret, upstream_of};

#[tokio::test]
async fn a_refresh_rotates_the_refresh_token_and_the_new_access_token_works() {
    let server = oauth_server();
    let (world, client, before) = connected(code_client()).await;
    assert_eq!(
        before.expires_at.unwrap() - before.updated_at,
        time::Duration::seconds(300)
    );
    let broker = world.broker(quick());
    let now = before.updated_at + time::Duration::seconds(10);
    // Fresh: answered from the record, no token request.
    let fresh = broker
        .access_token(&reader(), &world.at, now)
        .await
        .unwrap();
    assert_eq!(
        fresh.credential.expose_secret(),
        secret(&before.access_token)
    );
    assert_eq!(fresh.version, 1);

    let after = broker.refresh_now(&reader(), &world.at, now).await.unwrap();
    assert_ne!(secret(&after.refresh_token), secret(&before.refresh_token));
    assert_ne!(secret(&after.access_token), secret(&before.access_token));
    assert_eq!(after.status, Status::Active);
    assert_eq!(after.lease, None);
    let (stored, version) = world.record().await;
    assert_eq!(version, 3, "lease write, then token write");
    assert_eq!(secret(&stored.refresh_token), secret(&after.refresh_token));
    assert_eq!(stored.lease, None);
    assert_eq!(server.resource(&secret(&after.access_token)).await.0, 200);
    let counted = server.token_requests(&client.client_id).await;
    assert_eq!(counted.by_grant.get("refresh_token"), Some(&1));
    assert_eq!((counted.count, counted.success), (2, 2));
}

/// Fifty demands on an expired connection across three brokers: one token
/// request, one new token for all, and the connection refreshes later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_demands_across_three_brokers_make_exactly_one_token_request() {
    let server = oauth_server();
    let (world, client, before) = connected(code_client()).await;
    // The refresh takes a while, so every demand arrives while it runs.
    server
        .set_behaviour(
            &client.client_id,
            &Behaviour {
                token_delay: Some(Duration::from_millis(300)),
                ..Behaviour::default()
            },
        )
        .await;
    let brokers: Vec<Refresher> = (0..3).map(|_| world.broker(quick())).collect();
    let holders: std::collections::BTreeSet<_> =
        brokers.iter().map(|b| b.holder().to_owned()).collect();
    assert_eq!(holders.len(), 3);
    let now = expired(&before);
    let demands: Vec<_> = (0..50)
        .map(|i| {
            let broker = brokers[i % 3].clone();
            let at = world.at.clone();
            tokio::spawn(async move { broker.access_token(&reader(), &at, now).await })
        })
        .collect();
    let mut answers = Vec::new();
    for demand in demands {
        answers.push(demand.await.unwrap());
    }
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|a| a.as_ref().err().map(ToString::to_string))
        .collect();
    let counted = server.token_requests(&client.client_id).await;
    assert_eq!(
        counted.by_grant.get("refresh_token"),
        Some(&1),
        "token requests: {counted:?}; {} demands failed: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(failed.is_empty(), "{failed:?}");
    let tokens: Vec<String> = answers
        .into_iter()
        .map(|a| a.unwrap().credential.expose_secret().to_owned())
        .collect();
    assert_eq!((counted.count, counted.success, counted.error), (2, 2, 0));
    let (stored, _) = world.record().await;
    let new = secret(&stored.access_token);
    assert_ne!(new, secret(&before.access_token));
    assert!(
        tokens.iter().all(|t| *t == new),
        "every demand got the new token"
    );
    assert_eq!(tokens.len(), 50);
    assert_eq!(stored.lease, None);
    assert_eq!(server.resource(&new).await.0, 200);

    // And it refreshes fine afterwards (the grant was never revoked).
    server
        .set_behaviour(
            &client.client_id,
            &Behaviour {
                token_delay: Some(Duration::ZERO),
                ..Behaviour::default()
            },
        )
        .await;
    let later = brokers[1]
        .access_token(&reader(), &world.at, expired(&stored))
        .await
        .unwrap();
    assert_ne!(later.credential.expose_secret(), new);
    assert_eq!(
        server.resource(later.credential.expose_secret()).await.0,
        200
    );
    let counted = server.token_requests(&client.client_id).await;
    assert_eq!(counted.by_grant.get("refresh_token"), Some(&2));
    assert_eq!(counted.error, 0);
}

/// A lease left by a holder that died blocks no one past its expiry: the
/// next demand waits for it to lapse, then refreshes.
#[tokio::test]
async fn a_dead_holders_lease_lapses_and_the_next_caller_takes_it() {
    let server = oauth_server();
    let (world, client, before) = connected(code_client()).await;
    let now = expired(&before);
    let mut leased = before.clone();
    let lease_for = Duration::from_millis(1500);
    leased.lease = Some(Lease {
        holder: "broker-dead".into(),
        until: now + lease_for,
    });
    world
        .credstore()
        .put(None, &world.at, &leased, 1)
        .await
        .unwrap();

    let broker = world.broker(quick());
    let started = Instant::now();
    let got = broker
        .access_token(&reader(), &world.at, now)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= lease_for,
        "waited {waited:?}, before the lease lapsed"
    );
    assert!(
        waited < lease_for + Duration::from_secs(3),
        "waited {waited:?}"
    );
    assert_ne!(got.credential.expose_secret(), secret(&before.access_token));
    let (stored, _) = world.record().await;
    assert_eq!(stored.lease, None);
    assert_eq!(secret(&stored.access_token), got.credential.expose_secret());
    let counted = server.token_requests(&client.client_id).await;
    assert_eq!(counted.by_grant.get("refresh_token"), Some(&1));
}

/// A broker killed mid-refresh (its runtime shut down while its token
/// request is in flight) leaves its lease; another broker waits for the
/// lease to lapse, then refreshes with the refresh token the dead one never
/// got to use (the server drops a request whose caller hung up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_refresh_does_not_block_beyond_its_lease() {
    let server = oauth_server();
    let (world, client, before) = connected(code_client()).await;
    server
        .set_behaviour(
            &client.client_id,
            &Behaviour {
                token_delay: Some(Duration::from_millis(1500)),
                on_disconnect: Some(OnDisconnect::Drop),
                ..Behaviour::default()
            },
        )
        .await;
    let now = expired(&before);
    let lease_ttl = Duration::from_secs(2);
    let config = RefreshConfig {
        lease_ttl,
        ..quick()
    };
    // The doomed broker, on a runtime of its own.
    let doomed = world.broker(config.clone());
    let doomed_holder = doomed.holder().to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let at = world.at.clone();
    runtime.spawn(async move {
        let _ = doomed.access_token(&reader(), &at, now).await;
    });
    // Wait until it holds the lease, then kill it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (state, _) = world.record().await;
        if state
            .lease
            .as_ref()
            .is_some_and(|l| l.holder == doomed_holder)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the doomed broker never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // And until its token request reached the server (it is held there by
    // the delay): killed any earlier, it would have sent nothing.
    loop {
        let counted = server.token_requests(&client.client_id).await;
        if counted.by_grant.get("refresh_token") == Some(&1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the doomed broker's refresh never reached the server: {counted:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = Instant::now();
    runtime.shutdown_background();
    server
        .set_behaviour(
            &client.client_id,
            &Behaviour {
                token_delay: Some(Duration::ZERO),
                ..Behaviour::default()
            },
        )
        .await;

    let survivor = world.broker(config);
    let got = survivor
        .access_token(&reader(), &world.at, now)
        .await
        .unwrap();
    let blocked = killed_at.elapsed();
    assert!(
        blocked < lease_ttl + Duration::from_secs(2),
        "blocked {blocked:?}"
    );
    assert_ne!(got.credential.expose_secret(), secret(&before.access_token));
    assert_eq!(server.resource(got.credential.expose_secret()).await.0, 200);
    let (stored, _) = world.record().await;
    assert_eq!(stored.lease, None);
    assert_eq!(stored.status, Status::Active);
    let counted = server.token_requests(&client.client_id).await;
    assert_eq!(counted.by_grant.get("refresh_token"), Some(&2));
    assert_eq!((counted.success, counted.aborted), (2, 1), "{counted:?}");
}

#[tokio::test]
async fn invalid_grant_marks_the_connection_needs_reauth_and_releases_the_lease() {
    let server = oauth_server();
    let (world, client, before) = connected(code_client()).await;
    // Someone else rotates the refresh token behind the broker's back: the
    // stored one is dead.
    let outside = server
        .refresh(&client, &secret(&before.refresh_token))
        .await;
    assert_eq!(outside.status, 200);
    let broker = world.broker(quick());
    let now = expired(&before);
    let err = broker
        .access_token(&reader(), &world.at, now)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BrokerError::NeedsReauth { connection } if *connection == world.at.resource_name()),
        "{err:?}"
    );
    let (stored, _) = world.record().await;
    assert_eq!(stored.status, Status::NeedsReauth);
    assert_eq!(stored.lease, None);
    // Later demands are answered from the record, without the provider.
    let again = broker
        .access_token(&reader(), &world.at, now)
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        locksmith_errors::ErrorCode::FailedPrecondition
    );
    let counted = server.token_requests(&client.client_id).await;
    assert_eq!(counted.by_grant.get("refresh_token"), Some(&2));
    assert_eq!((counted.success, counted.error), (2, 1));
}

#[tokio::test]
async fn transient_failures_back_off_and_the_next_success_clears_them() {
    let server = oauth_server();
    let (world, client, before) = connected(code_client()).await;
    server
        .set_behaviour(
            &client.client_id,
            &Behaviour {
                fail_next: Some(1),
                ..Behaviour::default()
            },
        )
        .await;
    let broker = world.broker(quick());
    let now = expired(&before);
    let err = broker
        .access_token(&reader(), &world.at, now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::Unavailable { retry_after, .. } if retry_after == Duration::from_secs(5)),
        "{err:?}"
    );
    let (stored, _) = world.record().await;
    assert_eq!(stored.status, Status::RefreshFailing);
    assert_eq!(stored.failures, 1);
    assert_eq!(
        stored.retry_at,
        Some(
            (now + Duration::from_secs(5))
                .replace_nanosecond(0)
                .unwrap()
        )
    );
    assert_eq!(stored.lease, None);
    assert_eq!(secret(&stored.refresh_token), secret(&before.refresh_token));
    // Inside the backoff: no token request.
    let during = broker
        .access_token(&reader(), &world.at, now + Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(during.code(), locksmith_errors::ErrorCode::Unavailable);
    assert_eq!(server.token_requests(&client.client_id).await.count, 2);
    // After it: refreshed, failures cleared.
    let got = broker
        .access_token(&reader(), &world.at, now + Duration::from_secs(6))
        .await
        .unwrap();
    let (stored, _) = world.record().await;
    assert_eq!(secret(&stored.access_token), got.credential.expose_secret());
    assert_eq!(
        (stored.status, stored.failures, stored.retry_at),
        (Status::Active, 0, None)
    );
    assert_eq!(
        server
            .token_requests(&client.client_id)
            .await
            .by_grant
            .get("refresh_token"),
        Some(&2)
    );
}

#[tokio::test]
async fn revoke_makes_the_server_refuse_the_old_refresh_token() {
    let server = oauth_server();
    let (world, client, before) = connected(code_client()).await;
    let revoked = token::revoke(
        &world.egress(5_000),
        world.provider(),
        &ConnectionInputs::none(),
        &world.app,
        before.refresh_token.as_ref().unwrap(),
        TokenHint::RefreshToken,
    )
    .await
    .unwrap();
    assert_eq!(revoked, Revoked::Done);
    let revocations = server.revocation_requests(&client.client_id).await;
    assert_eq!((revocations.count, revocations.success), (1, 1));
    let reuse = server
        .refresh(&client, &secret(&before.refresh_token))
        .await;
    assert_eq!(
        (reuse.status, reuse.field("error")),
        (400, "invalid_grant".to_owned())
    );
    assert_eq!(server.resource(&secret(&before.access_token)).await.0, 401);
}

#[tokio::test]
async fn client_credentials_connections_fetch_a_token_when_expired() {
    let server = oauth_server();
    let client = server
        .register_client(&ClientSpec::client_credentials())
        .await;
    let world = World::start(
        upstream_of(&server.token_endpoint),
        (&client.client_id, &client.client_secret),
        AuthMode::OAuth2ClientCredentials,
    )
    .await;
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let state = ConnectionState::new(
        world.at.integration.clone(),
        AuthMode::OAuth2ClientCredentials,
        now,
    );
    world
        .credstore()
        .put(None, &world.at, &state, 0)
        .await
        .unwrap();
    let broker = world.broker(quick());
    let first = broker
        .access_token(&reader(), &world.at, now)
        .await
        .unwrap();
    let again = broker
        .access_token(&reader(), &world.at, now)
        .await
        .unwrap();
    assert_eq!(
        first.credential.expose_secret(),
        again.credential.expose_secret()
    );
    let expires_at = first.expires_at.unwrap();
    assert_eq!(expires_at - now, time::Duration::seconds(300));
    let counted = server.token_requests(&client.client_id).await;
    assert_eq!(counted.by_grant.get("client_credentials"), Some(&1));
    let later = broker
        .access_token(
            &reader(),
            &world.at,
            expires_at + time::Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_ne!(
        later.credential.expose_secret(),
        first.credential.expose_secret()
    );
    let counted = server.token_requests(&client.client_id).await;
    assert_eq!((counted.count, counted.success), (2, 2));
    let (stored, _) = world.record().await;
    assert!(stored.refresh_token.is_none());
}

/// A provider whose refresh answers carry no refresh token: the stored one
/// is kept (a tiny token server of this test's own, behind the front).
#[tokio::test]
async fn a_refresh_answer_without_a_refresh_token_keeps_the_old_one() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (seen, count) = (Arc::clone(&bodies), Arc::clone(&requests));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // One request per connection; the body follows the headers.
            loop {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        seen.lock().unwrap().push(body.to_owned());
                        break;
                    }
                }
            }
            count.fetch_add(1, Ordering::SeqCst);
            let answer = r#"{"access_token":"at-2","token_type":"Bearer","expires_in":3600}"#;
            let _ = socket
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    let world = World::start(
        upstream,
        ("quirky-app", "quirky-secret"),
        AuthMode::OAuth2AuthorizationCode,
    )
    .await;
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let mut state = ConnectionState::new(
        world.at.integration.clone(),
        AuthMode::OAuth2AuthorizationCode,
        now,
    );
    state.access_token = Some("at-1".into());
    state.refresh_token = Some("rt-1".into());
    state.expires_at = Some(now + Duration::from_secs(600));
    world
        .credstore()
        .put(None, &world.at, &state, 0)
        .await
        .unwrap();

    let broker = world.broker(quick());
    let later = now + Duration::from_secs(601);
    let got = broker
        .access_token(&reader(), &world.at, later)
        .await
        .unwrap();
    assert_eq!(got.credential.expose_secret(), "at-2");
    let (stored, version) = world.record().await;
    assert_eq!(secret(&stored.refresh_token), "rt-1");
    assert_eq!(secret(&stored.access_token), "at-2");
    assert_eq!(version, 3);
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        *bodies.lock().unwrap(),
        vec!["grant_type=refresh_token&refresh_token=rt-1".to_owned()]
    );
    // Its expiry counts from the answer, on the demand's clock.
    let expires_at = stored.expires_at.unwrap();
    assert!(
        expires_at >= later + Duration::from_secs(3600)
            && expires_at <= later + Duration::from_secs(3605)
    );
}
