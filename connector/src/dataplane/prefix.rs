//! The first rows of a view, kept decoded in memory: a query's first batch without a read.
//!
//! Most of a first batch's time goes to the first row group of the view's Parquet file:
//! reading its column chunks, decompressing and decoding its dictionary pages (about 1.1 ms
//! for 73,000 distinct meter ids), then decoding, filtering and masking the rows. parquet-rs
//! keeps none of that between queries. So, once per kept view plan, the view's output for
//! the first rows of its first file is computed in the background and kept beside the plan.
//! Each later query streams those batches first, then runs the view over the file with those
//! rows skipped (a [`ParquetAccessPlan`] selecting by row number).
//!
//! The prefix and the rest are the view's rows exactly: both are the view's own plan, over
//! complementary row selections of one row group. What changes is the order of the rows,
//! which SQL leaves undefined: a view whose plan declares an output ordering keeps no prefix.
//!
//! Prefixes are kept rows of the enforced view, already filtered and masked, so they live
//! under the same key as the view's plan (see [`super::barrier`]). Each is at most
//! [`MAX_PREFIX_BYTES`], and all of them together at most [`MAX_KEPT_BYTES`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, MutableArrayData, make_array};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::object_store::path::Path;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, collect};
use futures::StreamExt;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};

use super::pages::{parquet_scan, rebuild_parquet_scans};

/// The largest prefix kept: a wide projection keeps none rather than pin megabytes.
pub const MAX_PREFIX_BYTES: usize = 1024 * 1024;

/// The most memory all kept prefixes take together.
pub const MAX_KEPT_BYTES: usize = 64 * 1024 * 1024;

/// Bytes held by the prefixes alive in this process.
static KEPT: Budget = Budget::new(MAX_KEPT_BYTES);

/// A bound on the bytes of the prefixes alive at once.
#[derive(Debug)]
struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    const fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Counts `batches` in; None when they would pass [`MAX_PREFIX_BYTES`] or the limit.
    fn reserve(&self, batches: &[RecordBatch]) -> Option<usize> {
        let bytes: usize = batches
            .iter()
            .flat_map(RecordBatch::columns)
            .map(|column| column.get_array_memory_size())
            .sum();
        if bytes > MAX_PREFIX_BYTES {
            return None;
        }
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&all| all <= self.limit)
            })
            .ok()
            .map(|_| bytes)
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A view's first rows, and the view's plan over the rest.
#[derive(Debug)]
pub struct Prefix {
    batches: Vec<RecordBatch>,
    bytes: usize,
    budget: &'static Budget,
    /// The view's plan with the prefix's rows skipped. Never executed as it is: each query
    /// runs a copy with fresh state.
    rest: Arc<dyn ExecutionPlan>,
}

/// Where a view's prefix lands once computed; it stays empty when the view keeps none.
pub type PrefixSlot = Arc<OnceLock<Arc<Prefix>>>;

impl Prefix {
    /// A copy of the plan over the rows after the prefix, with fresh execution state.
    pub fn rest(&self) -> Result<Arc<dyn ExecutionPlan>> {
        reset_plan_states(Arc::clone(&self.rest))
    }

    /// The kept batches, then `tail`'s.
    pub fn before(&self, tail: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let schema = tail.schema();
        let head = futures::stream::iter(self.batches.clone().into_iter().map(Ok));
        Box::pin(RecordBatchStreamAdapter::new(schema, head.chain(tail)))
    }

    /// The rows kept.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Computes the prefix of `view` (its first `rows` rows) in the background, into `slot`.
/// Without a Tokio runtime, or when the view keeps no prefix, `slot` stays empty.
pub fn keep_in_background(
    view: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    rows: usize,
    slot: PrefixSlot,
) {
    if rows == 0 {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        match split(&view, task, rows, &KEPT).await {
            Ok(Some(prefix)) => {
                let _ = slot.set(Arc::new(prefix));
            }
            Ok(None) => {}
            // the view still serves every query, only without a kept prefix
            Err(e) => tracing::debug!(error = %e, "no prefix kept for a view"),
        }
    });
}

/// The first `rows` rows of `view`'s first Parquet file, as the view outputs them, and the
/// view's plan over the rest; None where the view keeps no prefix or `budget` has no room.
async fn split(
    view: &Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    rows: usize,
    budget: &'static Budget,
) -> Result<Option<Prefix>> {
    if view.properties().output_ordering().is_some() || !row_by_row(view)? {
        return Ok(None);
    }
    let Some(scan) = only_parquet_scan(view)? else {
        return Ok(None);
    };
    let Some((config, _)) = parquet_scan(&scan) else {
        return Ok(None);
    };
    let Some(file) = config.file_groups.iter().flat_map(FileGroup::iter).next() else {
        return Ok(None);
    };
    if !file.extensions.is_empty() {
        // another part already chose which rows of this file are read
        return Ok(None);
    }
    let Some(cut) = first_rows(config, file, rows, &task).await? else {
        return Ok(None);
    };
    let location = file.object_meta.location.clone();
    let head = with_access(view, &scan, &location, &cut.head, true)?;
    let batches = collect(reset_plan_states(head)?, task).await?;
    let batches = batches.iter().map(compacted).collect::<Result<Vec<_>>>()?;
    let rest = with_access(view, &scan, &location, &cut.tail, false)?;
    let Some(bytes) = budget.reserve(&batches) else {
        return Ok(None);
    };
    Ok(Some(Prefix {
        batches,
        bytes,
        budget,
        rest,
    }))
}

/// Operators that map each input row to at most one output row, on its own: over a part of
/// the input they give exactly their output for those rows.
const ROW_BY_ROW: &[&str] = &[
    "DataSourceExec",
    "FilterExec",
    "ProjectionExec",
    "CoalesceBatchesExec",
    "RepartitionExec",
    "CooperativeExec",
];

/// Whether every operator of `view` works row by row: a view is a scan, a row filter and a
/// projection, but an aggregate or a limit split in two would give other results.
fn row_by_row(view: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    let mut all = true;
    view.apply(|node| {
        // a limit pushed into a scan or a filter is no operator of its own
        all = ROW_BY_ROW.contains(&node.name()) && node.fetch().is_none();
        Ok(if all {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    Ok(all)
}

/// The one Parquet scan of `view`, if it has exactly one.
fn only_parquet_scan(view: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let mut scans = Vec::new();
    view.apply(|node| {
        if node.children().is_empty() {
            scans.push(Arc::clone(node));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(match scans.as_slice() {
        [scan] if parquet_scan(scan).is_some() => Some(Arc::clone(scan)),
        _ => None,
    })
}

/// Complementary access plans of one file: its first rows, and all the others.
struct Cut {
    head: ParquetAccessPlan,
    tail: ParquetAccessPlan,
}

/// The first `rows` rows of `file` (all within its first row group), or None for a file
/// without rows there.
async fn first_rows(
    config: &FileScanConfig,
    file: &PartitionedFile,
    rows: usize,
    task: &TaskContext,
) -> Result<Option<Cut>> {
    let runtime = task.runtime_env();
    let store = runtime.object_store(&config.object_store_url)?;
    let cache = runtime.cache_manager.get_file_metadata_cache();
    let metadata = DFParquetMetadata::new(store.as_ref(), &file.object_meta)
        .with_file_metadata_cache(Some(cache))
        .fetch_metadata()
        .await?;
    let groups = metadata.num_row_groups();
    let Some(first) = metadata.row_groups().first() else {
        return Ok(None);
    };
    let in_group = usize::try_from(first.num_rows()).unwrap_or(0);
    let taken = rows.min(in_group);
    if taken == 0 {
        return Ok(None);
    }
    let (mut head, mut tail) = (
        ParquetAccessPlan::new_none(groups),
        ParquetAccessPlan::new_all(groups),
    );
    if taken == in_group {
        head.scan(0);
        tail.skip(0);
    } else {
        let left = in_group - taken;
        let selection = |selectors| RowGroupAccess::Selection(RowSelection::from(selectors));
        head.set(
            0,
            selection(vec![RowSelector::select(taken), RowSelector::skip(left)]),
        );
        tail.set(
            0,
            selection(vec![RowSelector::skip(taken), RowSelector::select(left)]),
        );
    }
    Ok(Some(Cut { head, tail }))
}

/// `view` with its `scan` reading `file` through `access`; `only`: and no other file.
fn with_access(
    view: &Arc<dyn ExecutionPlan>,
    scan: &Arc<dyn ExecutionPlan>,
    file: &Path,
    access: &ParquetAccessPlan,
    only: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    rebuild_parquet_scans(view, |node, config, _| {
        if !Arc::ptr_eq(node, scan) {
            return None;
        }
        // a file split into byte ranges sits in several groups: each range reads its own
        // row groups of the same access plan
        let groups = config.file_groups.iter().map(|group| {
            let files = group.iter().filter_map(|f| {
                if f.object_meta.location != *file {
                    return (!only).then(|| f.clone());
                }
                let mut f = f.clone();
                f.extensions.insert(access.clone());
                Some(f)
            });
            FileGroup::new(files.collect())
        });
        let config = FileScanConfigBuilder::from(config.clone()).with_file_groups(groups.collect());
        Some(config.build())
    })
}

/// `batch` holding only its own bytes: a column read from Parquet can sit in a buffer sized
/// for a whole batch, and a string view column points into the row group's dictionary.
fn compacted(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch.columns().iter().map(|column| -> Result<ArrayRef> {
        Ok(match column.data_type() {
            DataType::Utf8View => Arc::new(column.as_string_view().gc()),
            DataType::BinaryView => Arc::new(column.as_binary_view().gc()),
            _ => {
                let data = column.to_data();
                let mut copy = MutableArrayData::new(vec![&data], false, data.len());
                copy.try_extend(0, 0, data.len())?;
                make_array(copy.freeze())
            }
        })
    });
    Ok(RecordBatch::try_new(
        batch.schema(),
        columns.collect::<Result<_>>()?,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
    use parquet::file::properties::WriterProperties;

    /// Rows `(id, region)` with ids `first..first + rows`, in row groups of 1,000; each
    /// region text is unique and at least `text` bytes long.
    fn write(path: &std::path::Path, first: i64, rows: i64, text: usize) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("region", DataType::Utf8, false),
        ]));
        let ids: Vec<i64> = (first..first + rows).collect();
        let regions: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(
                    "{:>text$}",
                    format!("{}-{id}", ["north", "south"][(id % 2) as usize])
                )
            })
            .collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(regions)),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .build();
        super::super::write_parquet(path, &batch, props);
    }

    /// A session over the Parquet files in `dir` as table `t`, each file split into byte
    /// ranges across three partitions.
    async fn session(dir: &std::path::Path) -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(3)
            .with_repartition_file_min_size(1);
        let ctx = SessionContext::new_with_config(config);
        let options = ParquetReadOptions::default();
        ctx.register_parquet("t", dir.to_str().unwrap(), options)
            .await
            .unwrap();
        ctx
    }

    async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    /// The ids in `batches`, sorted.
    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        let mut ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    async fn run(plan: Arc<dyn ExecutionPlan>, ctx: &SessionContext) -> Vec<RecordBatch> {
        collect(reset_plan_states(plan).unwrap(), ctx.task_ctx())
            .await
            .unwrap()
    }

    /// The path of the first file the scan in `plan` reads.
    fn first_file(plan: &Arc<dyn ExecutionPlan>) -> String {
        let scan = only_parquet_scan(plan).unwrap().unwrap();
        let (config, _) = parquet_scan(&scan).unwrap();
        let first = config.file_groups.iter().flat_map(FileGroup::iter).next();
        first.unwrap().object_meta.location.to_string()
    }

    /// Whether the scan in `plan` reads some file from a byte range after its start.
    fn reads_ranges(plan: &Arc<dyn ExecutionPlan>) -> bool {
        let scan = only_parquet_scan(plan).unwrap().unwrap();
        let (config, _) = parquet_scan(&scan).unwrap();
        let files: Vec<_> = config
            .file_groups
            .iter()
            .flat_map(FileGroup::iter)
            .collect();
        files.len() > 2
            && files
                .iter()
                .any(|f| f.range.as_ref().is_some_and(|r| r.start > 0))
    }

    #[tokio::test]
    async fn the_prefix_and_the_rest_are_the_view_exactly() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a.parquet"), 0, 2500, 5);
        write(&dir.path().join("b.parquet"), 2500, 2500, 5);
        let ctx = session(dir.path()).await;
        let view = plan(
            &ctx,
            "SELECT id, upper(region) AS r FROM t WHERE id % 3 <> 0",
        )
        .await;
        assert!(
            reads_ranges(&view),
            "the test needs files split into ranges"
        );
        let all = ids(&run(Arc::clone(&view), &ctx).await);
        assert_eq!(all.len(), 5000 - 1667);
        // within the first row group, all of it, and more than it holds
        for rows in [1, 700, 1000, 5000] {
            let prefix = split(&view, ctx.task_ctx(), rows, &KEPT)
                .await
                .unwrap()
                .unwrap();
            let head = ids(&prefix.batches);
            // the first rows of the scan's first file, as the view filters them
            let start = if first_file(&view).ends_with("a.parquet") {
                0
            } else {
                2500
            };
            let taken = rows.min(1000) as i64;
            let expected: Vec<i64> = (start..start + taken).filter(|id| id % 3 != 0).collect();
            assert_eq!(head, expected, "rows {rows}");
            assert_eq!(prefix.rows(), expected.len());
            let mut both = head;
            both.extend(ids(&run(prefix.rest().unwrap(), &ctx).await));
            both.sort_unstable();
            assert_eq!(both, all, "rows {rows}");
        }
    }

    /// Whether `sql`'s plan keeps a prefix of `rows` rows.
    async fn keeps(ctx: &SessionContext, sql: &str, rows: usize) -> bool {
        let view = plan(ctx, sql).await;
        let prefix = split(&view, ctx.task_ctx(), rows, &KEPT).await.unwrap();
        prefix.is_some()
    }

    #[tokio::test]
    async fn only_narrow_row_by_row_views_keep_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a.parquet"), 0, 2500, 2000);
        let ctx = session(dir.path()).await;
        for not_row_by_row in [
            "SELECT id FROM t ORDER BY id",
            "SELECT id FROM t LIMIT 10",
            "SELECT count(*) FROM t",
            "SELECT region, max(id) FROM t GROUP BY region",
            "SELECT DISTINCT id FROM t",
        ] {
            assert!(!keeps(&ctx, not_row_by_row, 100).await, "{not_row_by_row}");
        }
        assert!(keeps(&ctx, "SELECT id FROM t WHERE id > 5", 100).await);
        assert!(!keeps(&ctx, "SELECT id FROM t", 0).await);
        // 1,000 rows of 2 kB strings pass the size limit
        assert!(keeps(&ctx, "SELECT id, region FROM t", 100).await);
        assert!(!keeps(&ctx, "SELECT id, region FROM t", 1000).await);
    }

    #[tokio::test]
    async fn kept_bytes_are_bounded_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a.parquet"), 0, 2500, 20);
        let ctx = session(dir.path()).await;
        let view = plan(&ctx, "SELECT id, region FROM t").await;
        let one = split(&view, ctx.task_ctx(), 100, &KEPT).await.unwrap();
        let one = one.unwrap();
        let bytes = one.bytes;
        // 100 rows of (8 + 16 + 20) bytes: the string views were copied out of the row
        // group's 20 kB of text
        assert!(bytes > 0 && bytes < 10_000, "{bytes}");

        let budget: &'static Budget = Box::leak(Box::new(Budget::new(bytes * 3 / 2)));
        let prefix = split(&view, ctx.task_ctx(), 100, budget).await.unwrap();
        let prefix = prefix.unwrap();
        assert_eq!(budget.used.load(Ordering::Relaxed), bytes);
        // no room for a second one
        assert!(
            split(&view, ctx.task_ctx(), 100, budget)
                .await
                .unwrap()
                .is_none()
        );
        drop(prefix);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
        assert!(
            split(&view, ctx.task_ctx(), 100, budget)
                .await
                .unwrap()
                .is_some()
        );
    }
}
