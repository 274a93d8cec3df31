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
use datafusion::error::{DataFusionError, Result};

use super::{DataSource, SourceKind};

/// The file format and the extension its files carry in a directory.
fn format(state: &dyn Session, kind: SourceKind) -> (Arc<dyn FileFormat>, &'static str) {
    match kind {
        SourceKind::Parquet => {
            // the session's Parquet options (plain Utf8 rather than Utf8View, see sandbox)
            let options = state.table_options().parquet.clone();
            (
                Arc::new(ParquetFormat::default().with_options(options)),
                ".parquet",
            )
        }
        SourceKind::Csv => (Arc::new(CsvFormat::default().with_has_header(true)), ".csv"),
        SourceKind::Json => (Arc::new(JsonFormat::default()), ".json"),
        SourceKind::ArrowIpc => (Arc::new(ArrowFormat), ".arrow"),
    }
}

/// A table provider over `source`, its schema inferred from the files.
pub async fn open(state: &dyn Session, source: &DataSource) -> Result<Arc<dyn TableProvider>> {
    let (format, dir_extension) = format(state, source.kind);
    let location = source.location.to_str().ok_or_else(|| {
        DataFusionError::Configuration("the source location is not valid UTF-8".into())
    })?;
    let (url, extension) = if source.location.is_dir() {
        // a directory is listed: only the kind's files belong to the table
        (
            format!("{}/", location.trim_end_matches('/')),
            dir_extension.to_string(),
        )
    } else {
        // a single file is the table whatever its name ends with
        (location.to_string(), String::new())
    };
    let url = ListingTableUrl::parse(url)?;
    let options = ListingOptions::new(format).with_file_extension(extension);
    let schema = options.infer_schema(state, &url).await?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}
