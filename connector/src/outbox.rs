//! The outbox sender: delivers committed messages at once, retries with backoff and jitter,
//! and resumes after a restart. It sleeps until woken by a commit or until the next retry is
//! due; there is no fixed polling tick.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tracing::{Instrument, info, info_span, warn};

use crate::client::PeerError;
use crate::engine::{
    fail_locally, learn_provider_pid, negotiation, peer_already_applied, peer_of, transfer,
};
use crate::node::Shared;
use crate::store::OutboxItem;
use crate::store::{Negotiation, Transfer};

/// Attempts before a transient failure is treated as final.
const MAX_ATTEMPTS: u32 = 12;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Delay before attempt `attempts + 1`: exponential with full jitter in its upper half.
pub fn backoff(attempts: u32) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1u32 << attempts.min(16));
    let capped = exp.min(MAX_BACKOFF);
    let half = capped / 2;
    half + half.mul_f64(fastrand::f64())
}

/// Runs until `shutdown` resolves.
pub async fn run(node: Shared, shutdown: impl std::future::Future<Output = ()>) {
    let wake = node.store.outbox_ready();
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    tokio::pin!(shutdown);
    loop {
        let next_due = dispatch_due(&node, &in_flight);
        let sleep = next_due.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Starts delivery of every due message; returns how long until the next one falls due.
///
/// The in-flight set stays locked from reading the queue until every due message is claimed:
/// a delivery finishing in between (dequeue, then leave the set) would otherwise leave its
/// message in our stale snapshot but no longer in flight, and it would be sent twice.
fn dispatch_due(node: &Shared, in_flight: &Arc<Mutex<HashSet<String>>>) -> Option<Duration> {
    let mut claimed = in_flight.lock().unwrap_or_else(|p| p.into_inner());
    let due = match node.store.due_messages(512) {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "reading the outbox failed");
            return Some(Duration::from_secs(1));
        }
    };
    let now = Utc::now();
    let mut next: Option<Duration> = None;
    for item in due {
        if item.next_attempt_at > now {
            let wait = (item.next_attempt_at - now).to_std().unwrap_or_default();
            next = Some(next.map_or(wait, |n| n.min(wait)));
            continue;
        }
        if !claimed.insert(item.process_id.clone()) {
            continue;
        }
        let node = node.clone();
        let in_flight = in_flight.clone();
        let span = info_span!(
            "deliver",
            process = %item.process_id,
            message = item.id,
            url = tracing::field::Empty,
            attempt = tracing::field::Empty
        );
        tokio::spawn(
            async move {
                match node.store.outbox_item(item.id) {
                    Ok(Some(message)) => deliver(&node, &message).await,
                    Ok(None) => {} // dropped meanwhile: the process was terminated locally
                    Err(e) => warn!(error = %format!("{e:#}"), "reading a queued message failed"),
                }
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&item.process_id);
                node.store.outbox_ready().notify_one();
            }
            .instrument(span),
        );
    }
    next
}

/// Delivers one message over a client that accepts only the process's peer as server.
async fn deliver(node: &Shared, item: &OutboxItem) {
    let span = tracing::Span::current();
    span.record("url", item.url.as_str());
    span.record("attempt", item.attempts + 1);
    let sent = match peer_of(&node.store, &item.purpose, &item.process_id).and_then(|peer| {
        node.peers
            .to_participant(peer.as_deref().unwrap_or_default())
    }) {
        Ok(peer) => peer.post_json(&item.url, &item.body).await,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "preparing a delivery failed; will retry");
            Err(PeerError::Unreachable {
                url: item.url.clone(),
                reason: "the peer client could not be prepared".into(),
            })
        }
    };
    match sent {
        Ok((_, answer)) => {
            let done = match node.store.transact(|tx| tx.dequeue(item.id)).await {
                Err(e) => Err(e),
                Ok(()) => match item.purpose.as_str() {
                    negotiation::PURPOSE_REQUEST => {
                        learn_provider_pid::<Negotiation>(&node.store, &item.process_id, &answer)
                            .await
                    }
                    transfer::PURPOSE_REQUEST => {
                        learn_provider_pid::<Transfer>(&node.store, &item.process_id, &answer).await
                    }
                    _ => Ok(()),
                },
            };
            if let Err(e) = done {
                warn!(error = %format!("{e:#}"), "recording a delivery failed");
            }
        }
        Err(e) if e.is_transient() && item.attempts + 1 < MAX_ATTEMPTS => {
            let at = Utc::now() + backoff(item.attempts);
            warn!(error = %e, retry_at = %at, "delivery failed; will retry");
            if let Err(e) = node.store.retry_later(item.id, at, &e.to_string()) {
                warn!(error = %format!("{e:#}"), "rescheduling a delivery failed");
            }
        }
        Err(e) if is_refusal(&e) && already_applied(node, item).await => {
            info!(error = %e, "the peer refused a repeat of a message it had applied: delivered");
            if let Err(e) = node.store.transact(|tx| tx.dequeue(item.id)).await {
                warn!(error = %format!("{e:#}"), "recording a delivery failed");
            }
        }
        Err(e) => {
            warn!(error = %e, "delivery failed for good; terminating the process locally");
            let why = format!("delivery to the peer failed: {e}");
            let result = if item.purpose.starts_with("negotiation") {
                fail_locally::<Negotiation>(&node.store, &item.process_id, &why).await
            } else {
                fail_locally::<Transfer>(&node.store, &item.process_id, &why).await
            };
            if let Err(e) = result {
                warn!(error = %format!("{e:#}"), "recording the failure failed");
            }
        }
    }
}

/// A 4xx answer: the peer refused the message itself.
fn is_refusal(e: &PeerError) -> bool {
    matches!(e, PeerError::Refused { status, .. } if status.is_client_error())
}

/// Whether the peer already shows the state our message led to (see
/// [`peer_already_applied`]); initial requests create the peer's process and are never repeats.
async fn already_applied(node: &Shared, item: &OutboxItem) -> bool {
    match item.purpose.as_str() {
        negotiation::PURPOSE_MESSAGE => {
            peer_already_applied::<Negotiation>(
                &node.store,
                &node.peers,
                &item.process_id,
                &item.body,
            )
            .await
        }
        transfer::PURPOSE_MESSAGE => {
            peer_already_applied::<Transfer>(&node.store, &node.peers, &item.process_id, &item.body)
                .await
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let first = backoff(0);
        assert!(
            first >= BASE_BACKOFF / 2 && first <= BASE_BACKOFF,
            "{first:?}"
        );
        let late = backoff(30);
        assert!(late <= MAX_BACKOFF && late >= MAX_BACKOFF / 2, "{late:?}");
        let samples: HashSet<_> = (0..20).map(|_| backoff(5)).collect();
        assert!(samples.len() > 1, "jitter varies the delay");
    }
}
