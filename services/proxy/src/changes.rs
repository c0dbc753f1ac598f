//! Following the broker's announcements of changed connections
//! (WatchConnectionChanges): a credential the broker refreshed, revoked or
//! erased is dropped from the cache at once, instead of being used until
//! the cache's `max_age`.
//!
//! The stream is kept open for the proxy's lifetime. It starts with a
//! reset (changes before it opened are unknown), and whenever it breaks the
//! whole cache is dropped before it is opened again: a change missed while
//! it was down must not leave a revoked credential in use.

use std::time::Duration;

use locksmith_proto::broker::v1::{
    self as pb, o_auth_broker_service_client::OAuthBrokerServiceClient,
};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::access::Invalidator;

/// First wait before opening the stream again; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows `broker`'s changes into `cache` until the task is aborted.
pub fn follow(broker: OAuthBrokerServiceClient<Channel>, cache: Invalidator) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let opened = follow_once(broker.clone(), &cache).await;
            // Whatever happened, changes may have been missed.
            cache.forget_all();
            if opened {
                backoff = FIRST_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

/// One stream, until it ends or fails; whether it was opened.
async fn follow_once(mut broker: OAuthBrokerServiceClient<Channel>, cache: &Invalidator) -> bool {
    let mut changes = match broker
        .watch_connection_changes(pb::WatchConnectionChangesRequest {})
        .await
    {
        Ok(answer) => answer.into_inner(),
        Err(status) => {
            tracing::warn!(code = ?status.code(), "the broker's connection changes could not be followed; retrying");
            return false;
        }
    };
    loop {
        match changes.message().await {
            Ok(Some(message)) => {
                if message.reset {
                    cache.forget_all();
                }
                for name in &message.names {
                    cache.forget(name);
                }
            }
            Ok(None) => {
                tracing::info!("the broker ended its connection changes; following again");
                return true;
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), "the broker's connection changes broke off; following again");
                return true;
            }
        }
    }
}
