//! The enforced view as a [`TableProvider`] whose scan is an optimizer barrier.
//!
//! The view (source scan → row filter → visible and masked columns, see
//! [`super::enforce::view_plan`]) is planned and optimized on its own, inside
//! [`EnforcedTable::scan`], and its physical plan is wrapped in a [`PolicyBarrierExec`]:
//!
//! - logically, the table is not a view (`get_logical_plan` is None, so it is not inlined) and
//!   it accepts no pushed-down filters, so the consumer's `WHERE` stays above the scan;
//! - physically, [`PolicyBarrierExec`] is a leaf to the optimizer: no rule can push a
//!   filter, projection, sort or limit into the view, or merge a consumer predicate with the
//!   row filter.
//!
//! The consumer's expressions therefore only ever see rows the row filter let through: an
//! expression that errors (a division by zero, a failing cast) cannot reveal a hidden row.
//!
//! Planning the view costs about 0.7 ms, and gives the same plan for every query of an
//! agreement that reads the same columns: physical plans are kept in an LRU, keyed by a digest
//! of everything the view is made from, and each query executes a copy with fresh execution
//! state. Beside each kept plan, the view's first rows are kept too, once computed (see
//! [`super::prefix`]).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use super::kept::{Kept, PlanKey};
use super::prefix::{self, Prefix, PrefixSlot};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Column;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// A view's physical plan, and where its first rows land once computed.
#[derive(Clone)]
struct KeptView {
    plan: Arc<dyn ExecutionPlan>,
    prefix: PrefixSlot,
}

/// Views planned for earlier queries, by view key and projection.
fn view_plans() -> &'static Kept<KeptView> {
    static PLANS: LazyLock<Kept<KeptView>> = LazyLock::new(|| Kept::new(VIEW_PLANS));
    &PLANS
}

/// Plans kept: one per agreement and column set in use, a few kB each.
const VIEW_PLANS: usize = 256;

/// The only table of a consumer's session: the enforced view of the granted dataset.
#[derive(Debug)]
pub struct EnforcedTable {
    view: LogicalPlan,
    schema: SchemaRef,
    /// The digest of everything the view is made from (see [`super::query`]), under which
    /// its physical plans are kept.
    key: PlanKey,
    /// Rows at the start of the view to keep in memory (see [`super::prefix`]).
    prefix_rows: usize,
}

impl EnforcedTable {
    /// A table serving `view` (built by [`super::enforce::view_plan`]), whose physical plans
    /// are kept under `key`, each with the view's first `prefix_rows` rows once computed.
    pub fn new(view: LogicalPlan, key: PlanKey, prefix_rows: usize) -> Self {
        let schema = Arc::new(view.schema().as_arrow().clone());
        Self {
            view,
            schema,
            key,
            prefix_rows,
        }
    }

    /// The physical plan of the view narrowed to `projection`: a kept one, or planned now
    /// (and kept, its prefix computed in the background). It is never executed as it is:
    /// every query runs a copy with fresh state (`reset_plan_states` in
    /// [`super::query::prepare`], through [`PolicyBarrierExec::reset_state`]).
    async fn physical(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
    ) -> Result<KeptView> {
        let key = PlanKey::of(&(self.key, projection));
        if let Some(kept) = view_plans().get(&key) {
            return Ok(kept);
        }
        let plan = state
            .create_physical_plan(&self.projected(projection)?)
            .await?;
        let plan = super::pages::without_idle_page_pruning(plan, state).await?;
        let made = KeptView {
            plan,
            prefix: PrefixSlot::default(),
        };
        // queries that missed at once share the first plan kept, and only its maker
        // computes the prefix: one read of the first rows, not one per query
        let kept = view_plans().first_kept(key, made.clone());
        if Arc::ptr_eq(&kept.prefix, &made.prefix) {
            prefix::keep_in_background(
                Arc::clone(&kept.plan),
                state.task_ctx(),
                self.prefix_rows,
                Arc::clone(&kept.prefix),
            );
        }
        Ok(kept)
    }

    /// The view narrowed to the `projection` columns the query needs.
    fn projected(&self, projection: Option<&Vec<usize>>) -> Result<LogicalPlan> {
        let builder = LogicalPlanBuilder::from(self.view.clone());
        let Some(projection) = projection else {
            return builder.build();
        };
        let columns: Vec<Expr> = projection
            .iter()
            .map(|i| Expr::Column(Column::from(self.view.schema().qualified_field(*i))))
            .collect();
        builder.project(columns)?.build()
    }
}

#[tonic::async_trait]
impl TableProvider for EnforcedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        // never inlined into the consumer's plan
        None
    }

    /// The consumer's filters are never pushed in (the default: `Unsupported`), and the
    /// `limit` hint is ignored (a limit below the row filter would be wrong).
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let KeptView { plan, prefix } = self.physical(state, projection).await?;
        Ok(Arc::new(PolicyBarrierExec::new(plan, prefix)))
    }
}

/// Passes its input's batches through unchanged. It is a leaf to the optimizer: nothing is
/// pushed through it, and nothing beneath it is rewritten.
#[derive(Debug)]
pub struct PolicyBarrierExec {
    input: Arc<dyn ExecutionPlan>,
    /// The view's first rows, once computed (shared with the kept view).
    prefix: PrefixSlot,
    /// This run's split of the view, taken by [`ExecutionPlan::reset_state`] when the prefix
    /// was there: its rows in partition 0, then the view over the rest.
    split: Option<(Arc<Prefix>, Arc<dyn ExecutionPlan>)>,
    properties: Arc<PlanProperties>,
}

impl PolicyBarrierExec {
    /// A barrier above `input`, which streams `prefix` first once it is there.
    pub fn new(input: Arc<dyn ExecutionPlan>, prefix: PrefixSlot) -> Self {
        let properties = Arc::new(PlanProperties::clone(input.properties()));
        Self {
            input,
            prefix,
            split: None,
            properties,
        }
    }

    /// The enforced view's plan beneath the barrier.
    pub fn view(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// The rows this run streams from memory.
    pub fn prefix_rows(&self) -> usize {
        self.split.as_ref().map_or(0, |(prefix, _)| prefix.rows())
    }
}

impl DisplayAs for PolicyBarrierExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PolicyBarrierExec")
    }
}

impl ExecutionPlan for PolicyBarrierExec {
    fn name(&self) -> &str {
        "PolicyBarrierExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    /// None, to every optimizer rule: the view beneath was optimized on its own, and no
    /// rule planning the consumer's query may see or change it.
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            return Ok(self);
        }
        datafusion::common::internal_err!("PolicyBarrierExec has no children")
    }

    /// A copy whose view, hidden from tree walks, has fresh execution state too: a kept
    /// plan runs once per query, and state shared between two runs (a repartition's
    /// channels, say) would mix their rows.
    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        let mut fresh = Self::new(Arc::clone(&self.input), Arc::clone(&self.prefix));
        match self.prefix.get() {
            Some(prefix) => fresh.split = Some((Arc::clone(prefix), prefix.rest()?)),
            None => fresh.input = reset_plan_states(fresh.input)?,
        }
        Ok(Arc::new(fresh))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        match &self.split {
            Some((prefix, rest)) if partition == 0 => {
                Ok(prefix.before(rest.execute(partition, context)?))
            }
            Some((_, rest)) => rest.execute(partition, context),
            None => self.input.execute(partition, context),
        }
    }
}
