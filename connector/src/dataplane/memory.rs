//! The data plane's memory: one budget for all running queries, shared fairly by consumers.
//!
//! Each query has its own pool of `memory_limit_bytes` (see [`super::sandbox`]), but 16 queries
//! each at their limit would reserve 16 times that. So every reservation is also charged to a
//! process-wide [`MemoryBudget`]: all queries together stay within `memory_budget_bytes`, and
//! the queries of one consumer within `memory_per_consumer_bytes` (half the budget unless
//! configured). A consumer whose queries hold their share gets `RESOURCES_EXHAUSTED` for the
//! next reservation while other consumers still find at least the rest of the budget. A fixed
//! share rather than one that follows the number of active consumers: a share that shrinks as
//! consumers arrive could not take back what a first consumer already holds.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// The memory all running queries share.
#[derive(Debug)]
pub struct MemoryBudget {
    total: usize,
    per_consumer: usize,
    state: Mutex<Used>,
}

#[derive(Debug, Default)]
struct Used {
    total: usize,
    /// Bytes held by each consumer that holds any.
    by_consumer: HashMap<Arc<str>, usize>,
}

impl MemoryBudget {
    /// A budget of `total` bytes, at most `per_consumer` of them for one consumer.
    pub fn new(total: usize, per_consumer: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_consumer: per_consumer.min(total),
            state: Mutex::default(),
        })
    }

    /// The account of `consumer`'s queries.
    pub fn share(self: &Arc<Self>, consumer: &str) -> ConsumerShare {
        ConsumerShare {
            budget: self.clone(),
            consumer: Arc::from(consumer),
        }
    }

    /// Bytes the running queries hold (for tests and metrics).
    pub fn used(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, Used> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The part of a [`MemoryBudget`] one consumer's queries draw on.
#[derive(Debug, Clone)]
pub struct ConsumerShare {
    budget: Arc<MemoryBudget>,
    consumer: Arc<str>,
}

impl ConsumerShare {
    /// Takes `bytes`, unless that would exceed the consumer's share or the budget; the
    /// refusal says which, without naming the consumer.
    fn try_take(&self, bytes: usize) -> Result<(), String> {
        let budget = &self.budget;
        let mut used = budget.lock();
        let mine = used.by_consumer.get(&self.consumer).copied().unwrap_or(0);
        if mine.saturating_add(bytes) > budget.per_consumer {
            return Err(format!(
                "this consumer's running queries hold {mine} of the {} bytes of query memory \
                 one consumer may use",
                budget.per_consumer
            ));
        }
        if used.total.saturating_add(bytes) > budget.total {
            // how much other consumers hold is theirs to know
            return Err("the provider's query memory is in use by running queries".into());
        }
        Self::add(&mut used, &self.consumer, bytes);
        Ok(())
    }

    /// Takes `bytes` even beyond the limits (DataFusion's infallible `grow`).
    fn take(&self, bytes: usize) {
        Self::add(&mut self.budget.lock(), &self.consumer, bytes);
    }

    fn add(used: &mut Used, consumer: &Arc<str>, bytes: usize) {
        used.total = used.total.saturating_add(bytes);
        let mine = used.by_consumer.entry(consumer.clone()).or_default();
        *mine = mine.saturating_add(bytes);
    }

    /// Gives back `bytes`.
    fn give_back(&self, bytes: usize) {
        let mut used = self.budget.lock();
        used.total = used.total.saturating_sub(bytes);
        if let Some(mine) = used.by_consumer.get_mut(&self.consumer) {
            *mine = mine.saturating_sub(bytes);
            if *mine == 0 {
                used.by_consumer.remove(&self.consumer);
            }
        }
    }
}

/// One query's memory pool: its own limit, and once [`QueryPool::charge`]d, its consumer's
/// share of the [`MemoryBudget`] as well.
#[derive(Debug)]
pub struct QueryPool {
    query: GreedyMemoryPool,
    share: OnceLock<ConsumerShare>,
}

impl QueryPool {
    /// A pool of `limit` bytes, charged to no share yet.
    pub fn new(limit: usize) -> Self {
        Self {
            query: GreedyMemoryPool::new(limit),
            share: OnceLock::new(),
        }
    }

    /// Charges every later reservation of the query executing with `pool` to `share` as
    /// well. Call it before the query executes: memory reserved earlier is not charged. A
    /// pool that is not a [`QueryPool`] or is charged already is left as it is (false).
    pub fn charge(pool: &Arc<dyn MemoryPool>, share: ConsumerShare) -> bool {
        pool.downcast_ref::<QueryPool>()
            .is_some_and(|pool| pool.share.set(share).is_ok())
    }
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query pool: {}", self.query)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "sluis-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.query.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.query.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.query.grow(reservation, additional);
        if let Some(share) = self.share.get() {
            share.take(additional);
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.query.shrink(reservation, shrink);
        if let Some(share) = self.share.get() {
            share.give_back(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.query.try_grow(reservation, additional)?;
        if let Some(share) = self.share.get()
            && let Err(why) = share.try_take(additional)
        {
            self.query.shrink(reservation, additional);
            return Err(DataFusionError::ResourcesExhausted(why));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.query.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.query.memory_limit()
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        // reservations give their bytes back as they drop; this only guards the budget
        // against one that was leaked
        if let Some(share) = self.share.get() {
            share.give_back(self.query.reserved());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(limit: usize, share: ConsumerShare) -> Arc<dyn MemoryPool> {
        let pool: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(limit));
        assert!(QueryPool::charge(&pool, share.clone()));
        assert!(!QueryPool::charge(&pool, share), "charged once only");
        pool
    }

    #[test]
    fn a_consumer_cannot_take_more_than_its_share_of_the_budget() {
        let budget = MemoryBudget::new(1000, 500);
        let a1 = pool(400, budget.share("a"));
        let a2 = pool(400, budget.share("a"));
        let first = MemoryConsumer::new("a1").register(&a1);
        first.try_grow(400).unwrap();
        let second = MemoryConsumer::new("a2").register(&a2);
        let e = second.try_grow(200).unwrap_err();
        assert!(matches!(e, DataFusionError::ResourcesExhausted(_)), "{e}");
        assert!(!e.to_string().contains("\"a\""), "{e}");
        assert_eq!(
            a2.reserved(),
            0,
            "the refused bytes are not kept by the query"
        );
        second.try_grow(100).unwrap();

        // another consumer still finds the rest of the budget
        let b = pool(600, budget.share("b"));
        let held = MemoryConsumer::new("b").register(&b);
        held.try_grow(500).unwrap();
        assert_eq!(budget.used(), 1000);
        let c = pool(600, budget.share("c"));
        let refused = MemoryConsumer::new("c").register(&c).try_grow(1);
        assert!(refused.is_err(), "the budget is spent");

        drop((first, second, held));
        assert_eq!(budget.used(), 0);
        assert!(budget.lock().by_consumer.is_empty());
    }

    #[test]
    fn the_query_limit_still_holds_and_an_uncharged_pool_has_only_it() {
        let budget = MemoryBudget::new(1000, 1000);
        let charged = pool(100, budget.share("a"));
        let r = MemoryConsumer::new("r").register(&charged);
        assert!(r.try_grow(101).is_err());
        assert_eq!(
            budget.used(),
            0,
            "nothing charged for a refused reservation"
        );

        let plain: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(100));
        let r = MemoryConsumer::new("r").register(&plain);
        r.try_grow(100).unwrap();
        assert_eq!(budget.used(), 0);
    }
}
