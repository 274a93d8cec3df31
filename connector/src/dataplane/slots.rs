//! Fair admission of queries to the data plane's concurrency slots.
//!
//! One consumer must not be able to hold every slot: a flood of expensive queries from one
//! participant would otherwise make every other consumer's query wait until it times out.
//! So each consumer (the agreement's assignee, [`super::ActiveGrant::consumer`]) may run at
//! most `per_consumer` queries at once, and when a slot frees, the waiting query whose
//! consumer runs the fewest queries gets it (the earliest such query first). With the default
//! `per_consumer` of half the slots, a second consumer always finds a slot the first cannot
//! take; with more consumers than that, the queue takes them in turns.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::QueryError;

/// Queries of one consumer that may wait for a slot, per slot it may hold: enough for a
/// client's burst, and a bound on the queue a flooding consumer builds (each waiter is an
/// open call, and picking the next one scans the queue).
const WAITING_PER_SLOT: usize = 4;

/// The slots all queries share, handed out fairly between consumers.
#[derive(Debug)]
pub struct FairSlots {
    /// Queries running at once, across all consumers.
    total: usize,
    /// Queries one consumer may run at once.
    per_consumer: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    /// Running and waiting queries of each consumer that has any.
    consumers: HashMap<Arc<str>, Counts>,
    /// Waiting queries in arrival order.
    waiting: VecDeque<Waiter>,
    next_id: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    running: usize,
    waiting: usize,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    consumer: Arc<str>,
    granted: oneshot::Sender<()>,
}

/// A running query's slot; given back (to the next waiting query) when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<FairSlots>,
    consumer: Arc<str>,
}

impl FairSlots {
    /// `total` slots (at least 1), at most `per_consumer` (at least 1) for one consumer.
    pub fn new(total: usize, per_consumer: usize) -> Arc<Self> {
        let total = total.max(1);
        Arc::new(Self {
            total,
            per_consumer: per_consumer.clamp(1, total),
            state: Mutex::default(),
        })
    }

    /// Waits for a slot for a query of `consumer`. Refuses at once with
    /// [`QueryError::Busy`] when the consumer already has as many queries waiting as it may.
    /// Dropping the future before it is ready leaves the queue (and gives back a slot granted
    /// meanwhile).
    pub async fn acquire(self: &Arc<Self>, consumer: &str) -> Result<Slot, QueryError> {
        let (id, consumer, granted) = {
            let mut state = self.lock();
            let consumer = state.key(consumer);
            let counts = state.counts(&consumer);
            // every waiting query that could run was given a slot when the last one
            // changed hands: a free slot now is free for this consumer too
            if state.running < self.total && counts.running < self.per_consumer {
                state.start(&consumer);
                return Ok(self.slot(consumer));
            }
            if counts.waiting >= self.per_consumer * WAITING_PER_SLOT {
                return Err(QueryError::Busy(format!(
                    "this consumer has {} queries running and {} waiting, the most the provider \
                     allows; wait for one to finish before sending more",
                    counts.running, counts.waiting
                )));
            }
            let (tx, rx) = oneshot::channel();
            let id = state.next_id;
            state.next_id += 1;
            state.waiting.push_back(Waiter {
                id,
                consumer: consumer.clone(),
                granted: tx,
            });
            state.consumers.entry(consumer.clone()).or_default().waiting += 1;
            (id, consumer, rx)
        };
        let mut waiting = Waiting {
            slots: self,
            id,
            consumer: consumer.clone(),
            granted,
            done: false,
        };
        let outcome = (&mut waiting.granted).await;
        waiting.done = true;
        match outcome {
            Ok(()) => Ok(self.slot(consumer)),
            // a waiter leaves the queue only when granted, and its sender is then used
            Err(_) => Err(QueryError::Unavailable),
        }
    }

    /// Queries running now (for tests and metrics).
    pub fn running(&self) -> usize {
        self.lock().running
    }

    fn slot(self: &Arc<Self>, consumer: Arc<str>) -> Slot {
        Slot {
            slots: self.clone(),
            consumer,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `consumer`'s slot to the next waiting query.
    fn release(&self, state: &mut State, consumer: &Arc<str>) {
        state.running = state.running.saturating_sub(1);
        if let Some(counts) = state.consumers.get_mut(consumer) {
            counts.running = counts.running.saturating_sub(1);
        }
        state.forget_if_idle(consumer);
        self.dispatch(state);
    }

    /// Hands free slots to waiting queries: the one whose consumer runs the fewest queries
    /// (and may run one more) goes first, the earliest of those on a tie.
    fn dispatch(&self, state: &mut State) {
        while state.running < self.total {
            let next = state
                .waiting
                .iter()
                .enumerate()
                .map(|(at, w)| (state.counts(&w.consumer).running, at))
                .filter(|(running, _)| *running < self.per_consumer)
                .min();
            let Some((_, at)) = next else { return };
            let Some(waiter) = state.waiting.remove(at) else {
                return;
            };
            if let Some(counts) = state.consumers.get_mut(&waiter.consumer) {
                counts.waiting = counts.waiting.saturating_sub(1);
            }
            // the receiver lives until its `Waiting` guard has seen whether it was granted
            if waiter.granted.send(()).is_ok() {
                state.start(&waiter.consumer);
            } else {
                state.forget_if_idle(&waiter.consumer);
            }
        }
    }
}

impl State {
    /// The map's key for `consumer` (one allocation per consumer, not per query).
    fn key(&self, consumer: &str) -> Arc<str> {
        self.consumers
            .get_key_value(consumer)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(consumer))
    }

    fn counts(&self, consumer: &str) -> Counts {
        self.consumers.get(consumer).copied().unwrap_or_default()
    }

    fn start(&mut self, consumer: &Arc<str>) {
        self.running += 1;
        self.consumers.entry(consumer.clone()).or_default().running += 1;
    }

    /// Drops a consumer's counts once it has no query running or waiting, so the map holds
    /// only the consumers being served.
    fn forget_if_idle(&mut self, consumer: &str) {
        if self
            .consumers
            .get(consumer)
            .is_some_and(|c| c.running == 0 && c.waiting == 0)
        {
            self.consumers.remove(consumer);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        self.slots.release(&mut state, &self.consumer);
    }
}

/// A query waiting in the queue; leaves it when dropped before it was granted a slot.
struct Waiting<'a> {
    slots: &'a Arc<FairSlots>,
    id: u64,
    consumer: Arc<str>,
    granted: oneshot::Receiver<()>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.slots.lock();
        if let Some(at) = state.waiting.iter().position(|w| w.id == self.id) {
            let Some(waiter) = state.waiting.remove(at) else {
                return;
            };
            if let Some(counts) = state.consumers.get_mut(&waiter.consumer) {
                counts.waiting = counts.waiting.saturating_sub(1);
            }
            state.forget_if_idle(&waiter.consumer);
        } else if self.granted.try_recv().is_ok() {
            // granted while the caller gave up (its deadline passed): pass the slot on
            self.slots.release(&mut state, &self.consumer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::Poll;

    use futures::poll;

    use super::*;

    /// The slot of a poll that must have granted one (kept: dropping it passes it on).
    fn granted(poll: Poll<Result<Slot, QueryError>>) -> Slot {
        match poll {
            Poll::Ready(Ok(slot)) => slot,
            other => panic!("expected a slot, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_consumer_never_holds_every_slot() {
        let slots = FairSlots::new(4, 2);
        let a1 = slots.acquire("a").await.unwrap();
        let _a2 = slots.acquire("a").await.unwrap();
        let mut a3 = pin!(slots.acquire("a"));
        assert!(poll!(&mut a3).is_pending(), "a runs as many as it may");
        let _b1 = granted(poll!(pin!(slots.acquire("b"))));
        assert_eq!(slots.running(), 3, "b is not queued behind a");
        drop(a1);
        let _a3 = granted(poll!(&mut a3));
        assert_eq!(slots.running(), 3);
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_consumer_running_fewest() {
        let slots = FairSlots::new(3, 2);
        let a1 = slots.acquire("a").await.unwrap();
        let a2 = slots.acquire("a").await.unwrap();
        let b1 = slots.acquire("b").await.unwrap();
        // queued in this order: a, b, c
        let mut a3 = pin!(slots.acquire("a"));
        let mut b2 = pin!(slots.acquire("b"));
        let mut c1 = pin!(slots.acquire("c"));
        assert!(poll!(&mut a3).is_pending());
        assert!(poll!(&mut b2).is_pending());
        assert!(poll!(&mut c1).is_pending());

        drop(a1); // a runs 1, b 1, c 0: c first, though it came last
        let _c1 = granted(poll!(&mut c1));
        assert!(poll!(&mut a3).is_pending() && poll!(&mut b2).is_pending());
        drop(b1); // a runs 1, b 0
        let _b2 = granted(poll!(&mut b2));
        assert!(poll!(&mut a3).is_pending());
        drop(a2); // a runs 0
        let _a3 = granted(poll!(&mut a3));
        assert_eq!(slots.running(), 3);
    }

    #[tokio::test]
    async fn a_query_that_gives_up_leaves_the_queue_and_floods_are_refused() {
        let slots = FairSlots::new(1, 1);
        let held = slots.acquire("a").await.unwrap();
        {
            let mut gave_up = pin!(slots.acquire("b"));
            assert!(poll!(&mut gave_up).is_pending());
        }
        let mut waiting: Vec<_> = (0..WAITING_PER_SLOT)
            .map(|_| Box::pin(slots.acquire("a")))
            .collect();
        for w in &mut waiting {
            assert!(poll!(w).is_pending());
        }
        let refused = slots.acquire("a").await.unwrap_err();
        assert!(matches!(refused, QueryError::Busy(_)), "{refused:?}");
        drop(held);
        // the slot went to a's first waiting query, not to b, which left
        let _first = granted(poll!(&mut waiting[0]));
        drop(waiting);
        assert_eq!(slots.running(), 1);
        assert!(slots.lock().waiting.is_empty());
    }

    #[tokio::test]
    async fn a_slot_granted_to_a_query_that_gave_up_is_passed_on() {
        let slots = FairSlots::new(1, 1);
        let held = slots.acquire("a").await.unwrap();
        let mut late = Box::pin(slots.acquire("b"));
        assert!(poll!(&mut late).is_pending());
        let mut next = pin!(slots.acquire("c"));
        assert!(poll!(&mut next).is_pending());
        drop(held); // granted to b, which is not polled again
        drop(late);
        let _next = granted(poll!(&mut next));
        assert_eq!(slots.running(), 1, "b's slot went on to c");
        drop(_next);
        assert_eq!(slots.running(), 0);
        assert!(
            slots.lock().consumers.is_empty(),
            "idle consumers are forgotten"
        );
    }
}
