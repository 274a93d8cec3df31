//! The outbox sender: delivers committed messages at once, retries with backoff and jitter,
//! and resumes after a restart. It sleeps until woken by a commit or until the next retry is
//! due; there is no fixed polling tick.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::PeerError;
use crate::engine::{
    fail_locally, learn_provider_pid, negotiation, peer_already_applied, transfer,
};
use crate::node::Shared;
use crate::store::{DueMessage, Negotiation, OutboxItem, Transfer};

/// Attempts before a transient failure is treated as final.
const MAX_ATTEMPTS: u32 = 12;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Queued messages read from the store at a time.
const READ_BATCH: usize = 1024;
/// How long the sender sleeps with nothing scheduled (a commit wakes it before).
const IDLE: Duration = Duration::from_secs(3600);

/// Delay before attempt `attempts + 1`: exponential with full jitter in its upper half.
pub fn backoff(attempts: u32) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1u32 << attempts.min(16));
    let capped = exp.min(MAX_BACKOFF);
    let half = capped / 2;
    half + half.mul_f64(fastrand::f64())
}

/// How a delivery attempt ended, for the [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The message left the queue: delivered, dropped, or failed for good.
    Done,
    /// The message stays at the head of its queue until then.
    RetryAt(DateTime<Utc>),
}

/// The sender's plan, without IO: every queued message it knows of, per process in queue
/// order, and when the head of each process's queue falls due. A process's messages go one
/// at a time and in order; a process whose head is being delivered has no entry in `due`.
///
/// The store hands out queue positions in commit order (one writer, `AUTOINCREMENT`), so
/// reading only the positions after the last one seen finds every new message: a wake-up
/// costs a range read of what is new, not a scan of the whole queue.
#[derive(Debug, Default)]
pub struct Schedule {
    seen: i64,
    queues: HashMap<String, VecDeque<DueMessage>>,
    due: BTreeMap<(DateTime<Utc>, i64), String>,
}

impl Schedule {
    /// The last queue position read from the store.
    pub fn seen(&self) -> i64 {
        self.seen
    }

    /// Adds messages read from the store after [`Schedule::seen`], in queue order.
    pub fn add(&mut self, messages: impl IntoIterator<Item = DueMessage>) {
        for m in messages {
            if m.id <= self.seen {
                continue; // already known
            }
            self.seen = m.id;
            let queue = self.queues.entry(m.process_id.clone()).or_default();
            if queue.is_empty() {
                self.due
                    .insert((m.next_attempt_at, m.id), m.process_id.clone());
            }
            queue.push_back(m);
        }
    }

    /// Takes the heads that are due at `now` (their processes are then in flight) and tells
    /// when the next one falls due.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> (Vec<DueMessage>, Option<DateTime<Utc>>) {
        let mut taken = Vec::new();
        while let Some(entry) = self.due.first_entry() {
            if entry.key().0 > now {
                return (taken, Some(entry.key().0));
            }
            let process = entry.remove();
            if let Some(head) = self.queues.get(&process).and_then(VecDeque::front) {
                taken.push(head.clone());
            }
        }
        (taken, None)
    }

    /// Records how the delivery of the head of `process`'s queue ended.
    pub fn finished(&mut self, process: &str, attempt: Attempt) {
        let Some(queue) = self.queues.get_mut(process) else {
            return;
        };
        match attempt {
            Attempt::Done => {
                queue.pop_front();
            }
            Attempt::RetryAt(at) => {
                if let Some(head) = queue.front_mut() {
                    head.next_attempt_at = at;
                }
            }
        }
        match queue.front() {
            Some(head) => {
                self.due
                    .insert((head.next_attempt_at, head.id), process.to_string());
            }
            None => {
                self.queues.remove(process);
            }
        }
    }
}

/// The schedule, shared by the sender and its deliveries.
type SharedSchedule = Arc<Mutex<Schedule>>;

fn lock(schedule: &SharedSchedule) -> MutexGuard<'_, Schedule> {
    schedule.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs until `shutdown` resolves.
pub async fn run(node: Shared, shutdown: impl std::future::Future<Output = ()>) {
    let wake = node.store.outbox_ready();
    let schedule: SharedSchedule = Arc::default();
    tokio::pin!(shutdown);
    loop {
        let sleep = dispatch_due(&node, &schedule);
        tokio::select! {
            _ = &mut shutdown => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Reads what was queued since the last call, starts delivery of every due message, and
/// returns how long until the next one falls due.
fn dispatch_due(node: &Shared, schedule: &SharedSchedule) -> Duration {
    let (due, next) = {
        let mut plan = lock(schedule);
        loop {
            match node.store.queued_after(plan.seen(), READ_BATCH) {
                Ok(new) => {
                    let more = new.len() == READ_BATCH;
                    plan.add(new);
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "reading the outbox failed");
                    return Duration::from_secs(1);
                }
            }
        }
        plan.take_due(Utc::now())
    };
    for message in due {
        let (node, schedule) = (node.clone(), schedule.clone());
        let span = info_span!(
            "deliver",
            process = %message.process_id,
            message = message.id,
            url = tracing::field::Empty,
            attempt = tracing::field::Empty
        );
        tokio::spawn(
            async move {
                let attempt = match node.store.outbox_item(message.id) {
                    Ok(Some(item)) => deliver(&node, &item).await,
                    Ok(None) => Attempt::Done, // dropped meanwhile: the process was terminated locally
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "reading a queued message failed");
                        Attempt::RetryAt(Utc::now() + backoff(0))
                    }
                };
                lock(&schedule).finished(&message.process_id, attempt);
                node.store.outbox_ready().notify_one();
            }
            .instrument(span),
        );
    }
    next.map_or(IDLE, |at| (at - Utc::now()).to_std().unwrap_or_default())
}

/// Delivers one message over a client that accepts only the process's peer as server.
async fn deliver(node: &Shared, item: &OutboxItem) -> Attempt {
    let span = tracing::Span::current();
    span.record("url", item.url.as_str());
    span.record("attempt", item.attempts + 1);
    let started = std::time::Instant::now();
    let sent = match node
        .peers
        .to_participant(item.peer_id.as_deref().unwrap_or_default())
    {
        Ok(peer) => peer.post_json(&item.url, &item.body).await,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "preparing a delivery failed; will retry");
            Err(PeerError::Unreachable {
                url: item.url.clone(),
                reason: "the peer client could not be prepared".into(),
            })
        }
    };
    let took_ms = started.elapsed().as_secs_f64() * 1e3;
    match sent {
        Ok((status, answer)) => {
            debug!(status = status.as_u16(), took_ms, "delivered");
            delivered(node, item, Some(&answer)).await
        }
        Err(e) if e.is_transient() && item.attempts + 1 < MAX_ATTEMPTS => {
            let at = Utc::now() + backoff(item.attempts);
            warn!(error = %e, retry_at = %at, "delivery failed; will retry");
            if let Err(e) = node.store.retry_later(item.id, at, &e.to_string()) {
                warn!(error = %format!("{e:#}"), "rescheduling a delivery failed");
            }
            Attempt::RetryAt(at)
        }
        Err(e) if is_refusal(&e) && already_applied(node, item).await => {
            info!(error = %e, "the peer refused a repeat of a message it had applied: delivered");
            delivered(node, item, None).await
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
            Attempt::Done
        }
    }
}

/// Takes a delivered message off the queue, learning the provider's pid from the `answer` to
/// an initial request in the same change. If that fails the message stays queued and goes
/// again: a repeat changes nothing at the peer (an initial request finds the process it
/// opened; any other message is refused, and that refusal counts as delivered).
async fn delivered(
    node: &Shared,
    item: &OutboxItem,
    answer: Option<&serde_json::Value>,
) -> Attempt {
    let recorded = node
        .store
        .transact(|tx| -> anyhow::Result<()> {
            tx.dequeue(item.id)?;
            match (item.purpose.as_str(), answer) {
                (negotiation::PURPOSE_REQUEST, Some(a)) => {
                    learn_provider_pid::<Negotiation>(tx, &item.process_id, a)
                }
                (transfer::PURPOSE_REQUEST, Some(a)) => {
                    learn_provider_pid::<Transfer>(tx, &item.process_id, a)
                }
                _ => Ok(()),
            }
        })
        .await;
    match recorded {
        Ok(()) => Attempt::Done,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "recording a delivery failed; will send again");
            Attempt::RetryAt(Utc::now() + backoff(item.attempts))
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
    use std::collections::HashSet;

    fn queued(id: i64, process: &str, at: DateTime<Utc>) -> DueMessage {
        DueMessage {
            id,
            process_id: process.into(),
            next_attempt_at: at,
        }
    }

    fn ids(taken: &[DueMessage]) -> Vec<i64> {
        taken.iter().map(|m| m.id).collect()
    }

    #[test]
    fn a_process_s_messages_go_one_at_a_time_and_in_order() {
        let t0 = Utc::now();
        let mut s = Schedule::default();
        s.add([queued(1, "a", t0), queued(2, "b", t0), queued(3, "a", t0)]);
        assert_eq!(s.seen(), 3);
        let (taken, next) = s.take_due(t0);
        assert_eq!(ids(&taken), [1, 2], "one head per process");
        assert_eq!(next, None);
        assert!(s.take_due(t0).0.is_empty(), "both processes are in flight");
        s.finished("a", Attempt::Done);
        assert_eq!(
            ids(&s.take_due(t0).0),
            [3],
            "a's next message once its first is done"
        );
        s.finished("b", Attempt::Done);
        s.finished("a", Attempt::Done);
        assert!(s.take_due(t0 + chrono::Duration::days(1)).0.is_empty());
        assert!(s.queues.is_empty() && s.due.is_empty(), "nothing is kept");
    }

    #[test]
    fn a_retry_waits_for_its_time_and_holds_back_the_messages_behind_it() {
        let t0 = Utc::now();
        let later = t0 + chrono::Duration::seconds(5);
        let mut s = Schedule::default();
        s.add([queued(1, "a", t0)]);
        assert_eq!(ids(&s.take_due(t0).0), [1]);
        s.add([queued(2, "a", t0), queued(3, "b", t0)]);
        s.finished("a", Attempt::RetryAt(later));
        let (taken, next) = s.take_due(t0);
        assert_eq!(ids(&taken), [3], "b is not held back by a's retry");
        assert_eq!(next, Some(later), "the sender sleeps until a's retry");
        let (taken, _) = s.take_due(later);
        assert_eq!(
            ids(&taken),
            [1],
            "a's first message again, before its second"
        );
        assert_eq!(taken[0].next_attempt_at, later);
    }

    #[test]
    fn messages_already_seen_are_not_scheduled_twice() {
        let t0 = Utc::now();
        let mut s = Schedule::default();
        s.add([queued(1, "a", t0), queued(2, "b", t0)]);
        s.add([queued(2, "b", t0), queued(1, "a", t0)]);
        assert_eq!(ids(&s.take_due(t0).0), [1, 2]);
        s.finished("c", Attempt::Done); // unknown process: ignored
        assert_eq!(s.seen(), 2);
    }

    #[test]
    fn due_heads_come_soonest_first() {
        let t0 = Utc::now();
        let mut s = Schedule::default();
        s.add([
            queued(1, "a", t0 + chrono::Duration::seconds(3)),
            queued(2, "b", t0 + chrono::Duration::seconds(1)),
            queued(3, "c", t0 + chrono::Duration::seconds(2)),
        ]);
        let (taken, next) = s.take_due(t0 + chrono::Duration::seconds(2));
        assert_eq!(ids(&taken), [2, 3]);
        assert_eq!(next, Some(t0 + chrono::Duration::seconds(3)));
    }

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
