//! Health reporting, with a storage probe that answers only when the test
//! says so. The health service is served on plain loopback: what is under
//! test is its answers, not mTLS (the suite tests cover `serve` end to end).

use std::{convert::Infallible, time::Duration};

use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus as Answer, health_client::HealthClient,
};

use super::*;

async fn serve_plain(service: HealthServer<impl Health>) -> HealthClient<Channel> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(locksmith_tls::incoming(listener)),
    );
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    HealthClient::new(channel)
}

/// The status `health` reports for `service`, or the gRPC code of its refusal
/// (NOT_FOUND for a name it has never heard of).
async fn status_of(
    health: &mut HealthClient<Channel>,
    service: &str,
) -> Result<Answer, tonic::Code> {
    let request = HealthCheckRequest {
        service: service.into(),
    };
    match health.check(request).await {
        Ok(answer) => Ok(Answer::try_from(answer.into_inner().status).unwrap()),
        Err(status) => Err(status.code()),
    }
}

/// Polls until `service` reports `want` (2 s at most); answers the last status.
async fn await_status(
    health: &mut HealthClient<Channel>,
    service: &str,
    want: Answer,
) -> Result<Answer, tonic::Code> {
    let mut status = status_of(health, service).await;
    for _ in 0..100 {
        if status == Ok(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = status_of(health, service).await;
    }
    status
}

/// Before the first storage probe has answered, the registry must not claim
/// to serve: a load balancer would route calls to a store never reached.
#[tokio::test]
async fn health_is_not_serving_until_the_first_storage_probe_answers() {
    let (reporter, service) = health().await;
    let mut client = serve_plain(service).await;
    for name in HEALTH_NAMES {
        assert_eq!(
            status_of(&mut client, name).await,
            Ok(Answer::NotServing),
            "{name:?} before any probe"
        );
    }

    // The probe runs, but storage has not answered yet.
    let gate = Arc::new(Semaphore::new(0));
    let probe = tokio::spawn(probe_storage(reporter, {
        let gate = Arc::clone(&gate);
        move || {
            let gate = Arc::clone(&gate);
            async move {
                drop(gate.acquire().await);
                Ok::<_, Infallible>(())
            }
        }
    }));
    tokio::time::sleep(Duration::from_millis(50)).await;
    for name in HEALTH_NAMES {
        assert_eq!(
            status_of(&mut client, name).await,
            Ok(Answer::NotServing),
            "{name:?} while the probe waits"
        );
    }

    // Storage answers: both names flip to SERVING.
    gate.add_permits(1);
    for name in HEALTH_NAMES {
        assert_eq!(
            await_status(&mut client, name, Answer::Serving).await,
            Ok(Answer::Serving),
            "{name:?} after the probe"
        );
    }
    probe.abort();
}

/// A probe that fails keeps both names NOT_SERVING and says why in the log.
#[tokio::test]
async fn a_failing_probe_keeps_health_not_serving() {
    let (reporter, service) = health().await;
    let mut client = serve_plain(service).await;
    let pinged = Arc::new(Semaphore::new(0));
    let probe = tokio::spawn(probe_storage(reporter, {
        let pinged = Arc::clone(&pinged);
        move || {
            pinged.add_permits(1);
            async { Err::<(), _>("disk on fire") }
        }
    }));
    // The first probe has run and its status has been set (the probe then sleeps).
    drop(pinged.acquire().await.unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    for name in HEALTH_NAMES {
        assert_eq!(
            status_of(&mut client, name).await,
            Ok(Answer::NotServing),
            "{name:?} after a failed probe"
        );
    }
    probe.abort();
}
