//! Synthetic sample data: smart-meter readings, used by the demo and by the data-plane tests.
//!
//! The generator is deterministic: the same `rows` and `seed` always give the same file
//! contents, so tests can compare what the data plane returns with [`SampleSummary`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The four regions a meter can be in.
pub const REGIONS: [&str; 4] = ["north", "south", "east", "west"];
/// The tariffs a reading can be billed under.
pub const TARIFFS: [&str; 4] = ["standard", "economy7", "time-of-use", "green"];

const FIRST_NAMES: [&str; 8] = [
    "Anna", "Bram", "Chloé", "Daan", "Eva", "Finn", "Greet", "Hugo",
];
const LAST_NAMES: [&str; 8] = [
    "de Vries", "Jansen", "Peeters", "Bakker", "Visser", "Maes", "Smit", "Claes",
];
/// Rows per record batch handed to the writer: bounds the generator's memory.
const BATCH_ROWS: usize = 65_536;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 131_072;
/// 2026-01-01T00:00:00Z in microseconds since the epoch.
const START_MICROS: i64 = 1_767_225_600_000_000;
/// A reading every quarter of an hour.
const QUARTER_HOUR_MICROS: i64 = 15 * 60 * 1_000_000;
/// Quarter hours in the year 2026.
const QUARTERS_PER_YEAR: i64 = 365 * 24 * 4;

/// What [`generate_meter_readings`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSummary {
    /// Rows written.
    pub rows: u64,
    /// Rows written per `region` value.
    pub rows_per_region: BTreeMap<String, u64>,
}

/// The Arrow schema of the sample file.
pub fn meter_readings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("meter_id", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("customer_name", DataType::Utf8, false),
        Field::new(
            "reading_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("kwh", DataType::Float64, false),
        Field::new("tariff", DataType::Utf8, false),
    ]))
}

/// One meter: its id, region and the customer it belongs to.
struct Meter {
    id: String,
    region: usize,
    customer: String,
}

/// A fleet of meters, one per `rows / 100` readings (at least one).
fn meters(rng: &mut ChaCha8Rng, count: usize) -> Vec<Meter> {
    (0..count)
        .map(|i| Meter {
            id: format!("MTR-{i:07}"),
            region: rng.random_range(0..REGIONS.len()),
            customer: format!(
                "{} {}",
                FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
                LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
            ),
        })
        .collect()
}

/// Writes `rows` synthetic smart-meter readings to a Parquet file at `path`
/// (snappy, row groups of 128k rows), deterministic from `seed`.
///
/// Columns: `meter_id`, `region` (north/south/east/west), `customer_name` (personal data),
/// `reading_time` (UTC, within 2026), `kwh` and `tariff`. The data is written batch by batch,
/// so memory use does not grow with `rows`.
pub fn generate_meter_readings(
    path: &Path,
    rows: usize,
    seed: u64,
) -> anyhow::Result<SampleSummary> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fleet = meters(&mut rng, (rows / 100).max(1));
    let schema = meter_readings_schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut per_region = [0u64; REGIONS.len()];
    let mut written = 0;
    while written < rows {
        let n = BATCH_ROWS.min(rows - written);
        let batch = reading_batch(&mut rng, &fleet, &schema, n, &mut per_region)?;
        writer.write(&batch)?;
        written += n;
    }
    writer.close()?;
    Ok(SampleSummary {
        rows: rows as u64,
        rows_per_region: REGIONS
            .iter()
            .zip(per_region)
            .map(|(r, n)| (r.to_string(), n))
            .collect(),
    })
}

/// One record batch of `n` random readings; counts the rows per region into `per_region`.
fn reading_batch(
    rng: &mut ChaCha8Rng,
    fleet: &[Meter],
    schema: &SchemaRef,
    n: usize,
    per_region: &mut [u64; REGIONS.len()],
) -> anyhow::Result<RecordBatch> {
    let mut meter_id = StringBuilder::with_capacity(n, n * 11);
    let mut region = StringBuilder::with_capacity(n, n * 5);
    let mut customer = StringBuilder::with_capacity(n, n * 14);
    let mut time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut kwh = Float64Builder::with_capacity(n);
    let mut tariff = StringBuilder::with_capacity(n, n * 9);
    for _ in 0..n {
        let meter = &fleet[rng.random_range(0..fleet.len())];
        meter_id.append_value(&meter.id);
        region.append_value(REGIONS[meter.region]);
        per_region[meter.region] += 1;
        customer.append_value(&meter.customer);
        let quarter = rng.random_range(0..QUARTERS_PER_YEAR);
        time.append_value(START_MICROS + quarter * QUARTER_HOUR_MICROS);
        // three decimals, as a meter reports them
        kwh.append_value(f64::from(rng.random_range(0..2_500u32)) / 1000.0);
        tariff.append_value(TARIFFS[rng.random_range(0..TARIFFS.len())]);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(meter_id.finish()),
        Arc::new(region.finish()),
        Arc::new(customer.finish()),
        Arc::new(time.finish()),
        Arc::new(kwh.finish()),
        Arc::new(tariff.finish()),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn read_back(path: &Path) -> (u64, BTreeMap<String, u64>, SchemaRef) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut rows = 0;
        let mut per_region = BTreeMap::new();
        let mut schema = None;
        for batch in reader {
            let batch = batch.unwrap();
            rows += batch.num_rows() as u64;
            let regions = arrow::array::as_string_array(batch.column(1));
            for r in regions.iter().flatten() {
                *per_region.entry(r.to_string()).or_insert(0) += 1;
            }
            schema = Some(batch.schema());
        }
        (rows, per_region, schema.unwrap())
    }

    #[test]
    fn summary_matches_file_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.parquet");
        let b = dir.path().join("b.parquet");
        let summary = generate_meter_readings(&a, 150_000, 7).unwrap();
        assert_eq!(summary, generate_meter_readings(&b, 150_000, 7).unwrap());
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let (rows, per_region, schema) = read_back(&a);
        assert_eq!(rows, 150_000);
        assert_eq!(summary.rows, 150_000);
        assert_eq!(per_region, summary.rows_per_region);
        assert_eq!(per_region.len(), 4);
        assert_eq!(schema.fields(), meter_readings_schema().fields());
        let other = generate_meter_readings(&b, 150_000, 8).unwrap();
        assert_ne!(other.rows_per_region, summary.rows_per_region);
    }

    #[test]
    fn row_groups_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.parquet");
        generate_meter_readings(&path, 300_000, 1).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let groups = builder.metadata().row_groups();
        assert_eq!(groups.len(), 3);
        assert!(
            groups
                .iter()
                .all(|g| g.num_rows() as usize <= ROW_GROUP_ROWS)
        );
    }
}
