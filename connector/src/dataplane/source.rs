//! Data sources as DataFusion table providers.

use std::sync::Arc;

use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::arrow::ArrowFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::error::{DataFusionError, Result};
use datafusion::object_store::{ObjectMeta, ObjectStore};
use futures::TryStreamExt;

use super::{DataSource, SourceKind};

/// The extension a directory's files of `kind` carry.
fn extension(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Parquet => ".parquet",
        SourceKind::Csv => ".csv",
        SourceKind::Json => ".json",
        SourceKind::ArrowIpc => ".arrow",
    }
}

/// The file format of `kind`; for Parquet, `bloom_filters` says whether row groups are
/// probed with their bloom filters.
fn format(state: &dyn Session, kind: SourceKind, bloom_filters: bool) -> Arc<dyn FileFormat> {
    match kind {
        SourceKind::Parquet => {
            // strings as views inside the view: decoding and the row filter skip copying
            // the text of rows it drops; the view's projection casts them back to plain
            // Utf8 (see `enforce::visible_exprs`)
            let mut options = state.table_options().parquet.clone();
            options.global.bloom_filter_on_read = bloom_filters;
            options.global.schema_force_view_types = true;
            Arc::new(ParquetFormat::default().with_options(options))
        }
        SourceKind::Csv => Arc::new(CsvFormat::default().with_has_header(true)),
        SourceKind::Json => Arc::new(JsonFormat::default()),
        SourceKind::ArrowIpc => Arc::new(ArrowFormat),
    }
}

/// A source's files, as listed for one query.
pub struct Listing {
    url: ListingTableUrl,
    store: Arc<dyn ObjectStore>,
    extension: &'static str,
    /// Each file with its size, modification time and entity tag.
    pub files: Vec<ObjectMeta>,
}

/// Lists the files of `source`: the file itself, or a directory's files of the source's kind.
pub async fn list(state: &dyn Session, source: &DataSource) -> Result<Listing> {
    let location = source.location.to_str().ok_or_else(|| {
        DataFusionError::Configuration("the source location is not valid UTF-8".into())
    })?;
    let (url, extension) = if source.location.is_dir() {
        // a directory is listed: only the kind's files belong to the table
        (
            format!("{}/", location.trim_end_matches('/')),
            extension(source.kind),
        )
    } else {
        // a single file is the table whatever its name ends with
        (location.to_string(), "")
    };
    let url = ListingTableUrl::parse(url)?;
    let store = state.runtime_env().object_store(&url)?;
    let files: Vec<ObjectMeta> = url
        .list_all_files(state, store.as_ref(), extension)
        .await?
        .try_collect()
        .await?;
    Ok(Listing {
        url,
        store,
        extension,
        files,
    })
}

/// A table provider over the `listing` of `source`, its schema inferred from the files.
pub async fn open(
    state: &dyn Session,
    source: &DataSource,
    listing: Listing,
) -> Result<Arc<dyn TableProvider>> {
    let Listing {
        url,
        store,
        extension,
        files,
    } = listing;
    // inference reads the footers concurrently into the cache; the bloom check then hits it
    let schema = format(state, source.kind, false)
        .infer_schema(state, &store, &files)
        .await?;
    let bloom_filters = source.kind == SourceKind::Parquet
        && any_bloom_filter(state, store.as_ref(), &files).await?;
    let format = format(state, source.kind, bloom_filters);
    let options = ListingOptions::new(format).with_file_extension(extension);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// Whether any of the Parquet `files` has a bloom filter. Without one, probing costs about
/// 15 µs per row group before the first batch and prunes nothing. Footers come from the
/// shared metadata cache (see [`super::sandbox`]).
async fn any_bloom_filter(
    state: &dyn Session,
    store: &dyn ObjectStore,
    files: &[ObjectMeta],
) -> Result<bool> {
    let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
    for file in files {
        let metadata = DFParquetMetadata::new(store, file)
            .with_file_metadata_cache(Some(Arc::clone(&cache)))
            .fetch_metadata()
            .await?;
        let has = metadata.row_groups().iter().any(|group| {
            group
                .columns()
                .iter()
                .any(|column| column.bloom_filter_offset().is_some())
        });
        if has {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{DataPlaneConfig, sandbox};
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::file::properties::WriterProperties;

    fn write(path: &std::path::Path, bloom_filters: bool) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..100))],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_bloom_filter_enabled(bloom_filters)
            .build();
        super::super::write_parquet(path, &batch, props);
    }

    async fn probes_bloom_filters(location: &std::path::Path) -> bool {
        let state = sandbox::session_state(&DataPlaneConfig::default()).unwrap();
        let source = DataSource {
            kind: SourceKind::Parquet,
            location: location.to_path_buf(),
        };
        let listing = list(&state, &source).await.unwrap();
        let table = open(&state, &source, listing).await.unwrap();
        let table = table.downcast_ref::<ListingTable>().unwrap();
        let format = &table.options().format;
        let parquet = format.downcast_ref::<ParquetFormat>().unwrap();
        parquet.options().global.bloom_filter_on_read
    }

    #[tokio::test]
    async fn bloom_filters_are_probed_only_where_a_file_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let (with, without) = (
            dir.path().join("with.parquet"),
            dir.path().join("without.parquet"),
        );
        write(&with, true);
        write(&without, false);
        assert!(probes_bloom_filters(&with).await);
        assert!(!probes_bloom_filters(&without).await);
        // a directory: one file with bloom filters is enough
        assert!(probes_bloom_filters(dir.path()).await);
        std::fs::remove_file(&with).unwrap();
        assert!(!probes_bloom_filters(dir.path()).await);
    }
}
