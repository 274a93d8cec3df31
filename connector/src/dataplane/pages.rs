//! Page-index pruning by the row filter, judged once per view.
//!
//! The only predicate a view's Parquet scan carries is the agreement's row filter: the
//! consumer's own predicates stay above the barrier (see [`super::barrier`]). What page-index
//! pruning makes of it is therefore the same at every query over the same files. Where it
//! skips no page of any file (the filtered column is not ordered, so every page holds every
//! value), it is switched off for the view: it cost about 0.4 ms per partition before the
//! first batch, at every query, and read nothing less.
//!
//! Switching it off never changes a result: the row filter is still applied to every row
//! above the scan. At worst, a misjudgement reads pages that could have been skipped.

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::parquet::{
    PagePruningAccessPlanFilter, ParquetAccessPlan, RowGroupAccess,
};
use datafusion::datasource::physical_plan::{
    FileScanConfig, FileScanConfigBuilder, FileSource, ParquetFileMetrics, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use parquet::file::metadata::PageIndexPolicy;

/// `plan` with page-index pruning switched off in each Parquet scan where it skips nothing.
pub async fn without_idle_page_pruning(
    plan: Arc<dyn ExecutionPlan>,
    state: &dyn Session,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut idle = Vec::new();
    for scan in page_pruned_scans(&plan)? {
        let Some((config, Some(predicate))) =
            parquet_scan(&scan).map(|(config, source)| (config, source.filter()))
        else {
            continue;
        };
        if !skips_any_page(config, &predicate, state).await? {
            idle.push(scan);
        }
    }
    if idle.is_empty() {
        return Ok(plan);
    }
    rebuild_parquet_scans(&plan, |node, config, source| {
        idle.iter().any(|s| Arc::ptr_eq(s, node)).then(|| {
            let source = source.clone().with_enable_page_index(false);
            FileScanConfigBuilder::from(config.clone())
                .with_source(Arc::new(source))
                .build()
        })
    })
}

/// `plan` with each Parquet scan for which `rebuild` returns a config replaced by a scan of
/// that config (the operators above it rebuilt too); the others as they were.
pub(super) fn rebuild_parquet_scans(
    plan: &Arc<dyn ExecutionPlan>,
    rebuild: impl Fn(&Arc<dyn ExecutionPlan>, &FileScanConfig, &ParquetSource) -> Option<FileScanConfig>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Arc::clone(plan)
        .transform_up(|node| {
            let Some(config) =
                parquet_scan(&node).and_then(|(config, source)| rebuild(&node, config, source))
            else {
                return Ok(Transformed::no(node));
            };
            Ok(Transformed::yes(
                DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
}

/// The file scan config and Parquet source of `node`, if it is a Parquet scan.
pub(super) fn parquet_scan(
    node: &Arc<dyn ExecutionPlan>,
) -> Option<(&FileScanConfig, &ParquetSource)> {
    node.as_ref()
        .downcast_ref::<DataSourceExec>()?
        .downcast_to_file_source::<ParquetSource>()
}

/// The Parquet scans in `plan` that prune pages with a predicate.
fn page_pruned_scans(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<Arc<dyn ExecutionPlan>>> {
    let mut scans = Vec::new();
    plan.apply(|node| {
        if let Some((_, source)) = parquet_scan(node)
            && source.table_parquet_options().global.enable_page_index
            && source.filter().is_some()
        {
            scans.push(Arc::clone(node));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(scans)
}

/// Whether page-index pruning by `predicate` skips any rows of any file of `config`.
async fn skips_any_page(
    config: &FileScanConfig,
    predicate: &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    state: &dyn Session,
) -> Result<bool> {
    let schema = config.file_schema();
    let filter = PagePruningAccessPlanFilter::new(predicate, Arc::clone(schema));
    if filter.filter_number() == 0 {
        return Ok(false);
    }
    let store = state.runtime_env().object_store(&config.object_store_url)?;
    let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
    let metrics = ExecutionPlanMetricsSet::new();
    // a file split into byte ranges sits in several groups: judge it once
    let mut files: Vec<_> = config
        .file_groups
        .iter()
        .flat_map(|group| group.iter().map(|f| &f.object_meta))
        .collect();
    files.sort_by(|a, b| a.location.cmp(&b.location));
    files.dedup_by(|a, b| a.location == b.location);
    for file in files {
        let metadata = DFParquetMetadata::new(store.as_ref(), file)
            .with_file_metadata_cache(Some(Arc::clone(&cache)))
            .with_page_index_policy(Some(PageIndexPolicy::Optional))
            .fetch_metadata()
            .await?;
        let name = file.location.as_ref();
        let pruned = filter.prune_plan_with_page_index(
            ParquetAccessPlan::new_all(metadata.num_row_groups()),
            schema,
            metadata.file_metadata().schema_descr(),
            &metadata,
            &ParquetFileMetrics::new(0, name, &metrics),
        );
        if skips_rows(&pruned) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `plan` leaves out any row.
fn skips_rows(plan: &ParquetAccessPlan) -> bool {
    plan.inner().iter().any(|access| match access {
        RowGroupAccess::Scan => false,
        RowGroupAccess::Skip => true,
        RowGroupAccess::Selection(selection) => selection.skipped_row_count() > 0,
    })
}
