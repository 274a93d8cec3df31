//! The sandbox a consumer's SQL runs in.
//!
//! - Only a single `SELECT` query is accepted: no DDL, DML, `COPY`, `EXPLAIN`, `SET`, and no
//!   second statement ([`parse`], then [`verify`] on the plan as a second line).
//! - The session is built by hand ([`session_state`]): scalar, aggregate and window functions
//!   only; no table functions (nothing like `read_parquet`), no URL tables, no
//!   `information_schema`, no table factories, no spilling to disk, a memory pool per query.
//! - The only table the query may name is the granted one ([`check_tables`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider,
};
use datafusion::common::TableReference;
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::TaskContext;
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, FileMetadataCache, FileStatisticsCache,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::GenericDialect;

use super::memory::QueryPool;
use super::{DataPlaneConfig, QueryError};

/// Deepest expression nesting the parser accepts (DataFusion's default).
const PARSER_RECURSION_LIMIT: usize = 50;
/// The catalog every bare table name resolves into.
pub const DEFAULT_CATALOG: &str = "datafusion";
/// The schema every bare table name resolves into.
pub const DEFAULT_SCHEMA: &str = "public";

/// Bytes of Parquet footers kept between queries (see [`shared_caches`]).
const METADATA_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Bytes of per-file statistics kept between queries (see [`shared_caches`]).
const STATISTICS_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Parquet footers and per-file statistics, shared by every query's session so that a query
/// does not read and convert them again. Entries are checked against the file's size and
/// modification time, so a rewritten file is read afresh. File listings are not cached: each
/// query lists the source anew. Provider-side metadata only; no consumer sees it.
fn shared_caches() -> CacheManagerConfig {
    static CACHES: OnceLock<(Arc<FileMetadataCache>, Arc<FileStatisticsCache>)> = OnceLock::new();
    let (metadata, statistics) = CACHES.get_or_init(|| {
        (
            Arc::new(DefaultCache::new(METADATA_CACHE_BYTES)),
            Arc::new(DefaultCache::new(STATISTICS_CACHE_BYTES)),
        )
    });
    CacheManagerConfig::default()
        .with_file_metadata_cache(Some(Arc::clone(metadata)))
        .with_metadata_cache_limit(METADATA_CACHE_BYTES)
        .with_file_statistics_cache(Some(Arc::clone(statistics)))
        .with_file_statistics_cache_limit(STATISTICS_CACHE_BYTES)
        // sessions share a runtime: a listing cache would serve files removed since
        .with_list_files_cache_limit(0)
}

/// A DataFusion session with only what a query over one view needs, and a catalog of its
/// own. It is a copy of a session built once per batch size and partition count: building
/// one registers every function (about 0.2 ms), a copy takes a few microseconds. Execute
/// its plans with a [`task_context`], which has the query's own memory pool.
pub fn session_state(cfg: &DataPlaneConfig) -> DfResult<SessionState> {
    static BUILT: LazyLock<Mutex<HashMap<(usize, usize), SessionState>>> =
        LazyLock::new(Default::default);
    let settings = (cfg.batch_size.max(1), cfg.target_partitions.max(1));
    let mut state = {
        let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
        match built.get(&settings) {
            Some(state) => state.clone(),
            None => {
                let state = build_session_state(settings, cfg.memory_limit_bytes)?;
                built.insert(settings, state.clone());
                state
            }
        }
    };
    // the copies share the built session's catalog list: each gets an empty one
    state.register_catalog_list(empty_catalog()?);
    Ok(state)
}

/// The context one query executes in: `state`'s settings and functions, and a memory pool
/// of `cfg.memory_limit_bytes` for this query alone, which the data plane also charges to
/// the consumer's share of the process's budget ([`QueryPool::charge`]).
pub fn task_context(state: &SessionState, cfg: &DataPlaneConfig) -> DfResult<Arc<TaskContext>> {
    let runtime = runtime(cfg.memory_limit_bytes)?;
    Ok(Arc::new(TaskContext::from(state).with_runtime(runtime)))
}

/// A memory pool of `memory_limit_bytes`, no spilling to disk, and the shared caches.
fn runtime(memory_limit_bytes: usize) -> DfResult<Arc<RuntimeEnv>> {
    RuntimeEnvBuilder::new()
        .with_cache_manager(shared_caches())
        .with_memory_pool(Arc::new(QueryPool::new(memory_limit_bytes)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
}

/// The default catalog with the default schema, and nothing in it.
fn empty_catalog() -> DfResult<Arc<dyn CatalogProviderList>> {
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema(DEFAULT_SCHEMA, Arc::new(MemorySchemaProvider::new()))?;
    let catalogs = MemoryCatalogProviderList::new();
    catalogs.register_catalog(DEFAULT_CATALOG.to_string(), Arc::new(catalog));
    Ok(Arc::new(catalogs))
}

/// Builds the session [`session_state`] copies; (batch size, partitions) are `settings`.
fn build_session_state(
    (batch_size, target_partitions): (usize, usize),
    memory_limit_bytes: usize,
) -> DfResult<SessionState> {
    let mut config = SessionConfig::new()
        .with_batch_size(batch_size)
        .with_target_partitions(target_partitions)
        .with_information_schema(false)
        .with_create_default_catalog_and_schema(true)
        .with_default_catalog_and_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA);
    let options = config.options_mut();
    // plain Utf8 on the wire: every Flight client reads it, not all read Utf8View
    options.execution.parquet.schema_force_view_types = false;
    options.sql_parser.map_string_types_to_utf8view = false;
    // a recursive CTE can generate rows without end; nothing a dataset query needs
    options.execution.enable_recursive_ctes = false;
    Ok(SessionStateBuilder::new()
        .with_config(config)
        // planning allocates nothing from its pool; queries execute with their own
        .with_runtime_env(runtime(memory_limit_bytes)?)
        .with_scalar_functions(SessionStateDefaults::default_scalar_functions())
        .with_aggregate_functions(SessionStateDefaults::default_aggregate_functions())
        .with_window_functions(SessionStateDefaults::default_window_functions())
        .with_expr_planners(SessionStateDefaults::default_expr_planners())
        .build())
}

/// Parses `sql` and accepts it only if it is exactly one query.
pub fn parse(sql: &str, max_bytes: usize) -> Result<Statement, QueryError> {
    if sql.len() > max_bytes {
        return Err(QueryError::Invalid(format!(
            "the SQL text has {} bytes; at most {max_bytes} are accepted",
            sql.len()
        )));
    }
    let dialect = GenericDialect {};
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| QueryError::Invalid(format!("SQL syntax: {}", e.strip_backtrace())))?;
    if statements.len() != 1 {
        return Err(QueryError::refused(
            "single-query",
            format!(
                "send exactly one SELECT query, not {} statements",
                statements.len()
            ),
        ));
    }
    let statement = statements.pop_front().expect("one statement");
    match &statement {
        Statement::Statement(s) if matches!(s.as_ref(), SqlStatement::Query(_)) => Ok(statement),
        _ => Err(QueryError::refused(
            "select-only",
            format!(
                "only a SELECT query is allowed, not {}",
                statement_kind(sql)
            ),
        )),
    }
}

/// The leading keyword of a statement, for refusal messages (at most 24 letters).
fn statement_kind(sql: &str) -> String {
    let word: String = sql
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .take(24)
        .collect();
    if word.is_empty() {
        "this statement".into()
    } else {
        word.to_ascii_uppercase()
    }
}

/// Refuses a query naming any table but `granted` (CTE names are not table references).
pub fn check_tables(
    state: &SessionState,
    statement: &Statement,
    granted: &str,
) -> Result<(), QueryError> {
    let references = state
        .resolve_table_references(statement)
        .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
    if references.iter().all(|r| is_granted(r, granted)) {
        Ok(())
    } else {
        Err(QueryError::refused(
            "granted-table",
            format!("the only table this transfer can query is `{granted}`"),
        ))
    }
}

fn is_granted(reference: &TableReference, granted: &str) -> bool {
    reference.table() == granted
        && reference.schema().is_none_or(|s| s == DEFAULT_SCHEMA)
        && reference.catalog().is_none_or(|c| c == DEFAULT_CATALOG)
}

/// Second line of defence: the planned query must not be DDL, DML or a statement
/// (`SELECT ... INTO` plans to DDL, `WITH ... INSERT` to DML).
pub fn verify(plan: &LogicalPlan) -> Result<(), QueryError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|_| QueryError::refused("select-only", "only a SELECT query is allowed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(sql: &str) -> &'static str {
        match parse(sql, 1024) {
            Err(QueryError::Refused { rule, .. }) => rule,
            Err(QueryError::Invalid(_)) => "syntax",
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => "accepted",
        }
    }

    /// Sessions are copies of one built session: a table one query registers must not
    /// appear in another's catalog, and memory one query holds must not count against
    /// another's limit.
    #[test]
    fn each_query_has_its_own_catalog_and_memory_pool() {
        use datafusion::datasource::empty::EmptyTable;
        use datafusion::execution::memory_pool::MemoryConsumer;
        let cfg = DataPlaneConfig {
            memory_limit_bytes: 1024,
            ..Default::default()
        };
        let schema = |state: &SessionState| {
            let catalog = state.catalog_list().catalog(DEFAULT_CATALOG).unwrap();
            catalog.schema(DEFAULT_SCHEMA).unwrap()
        };
        let first = session_state(&cfg).unwrap();
        let table = Arc::new(EmptyTable::new(Arc::new(arrow::datatypes::Schema::empty())));
        schema(&first)
            .register_table("granted".into(), table)
            .unwrap();
        assert!(schema(&first).table_exist("granted"));
        let second = session_state(&cfg).unwrap();
        assert!(!schema(&second).table_exist("granted"));

        let pool = |state: &SessionState| task_context(state, &cfg).unwrap().memory_pool().clone();
        let held = MemoryConsumer::new("first").register(&pool(&first));
        held.try_grow(1024).unwrap();
        assert!(held.try_grow(1).is_err(), "the limit holds");
        let other = MemoryConsumer::new("second").register(&pool(&second));
        other.try_grow(1024).unwrap();
    }

    #[test]
    fn only_single_queries_pass() {
        assert_eq!(rule("SELECT * FROM t WHERE a = 1"), "accepted");
        assert_eq!(rule("WITH x AS (SELECT 1) SELECT * FROM x"), "accepted");
        assert_eq!(rule("SELECT 1; SELECT 2"), "single-query");
        assert_eq!(rule(""), "single-query");
        assert_eq!(
            rule("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'"),
            "select-only"
        );
        assert_eq!(rule("COPY t TO '/tmp/x.csv'"), "select-only");
        assert_eq!(rule("INSERT INTO t VALUES (1)"), "select-only");
        assert_eq!(rule("DROP TABLE t"), "select-only");
        assert_eq!(
            rule("SET datafusion.execution.batch_size = 1"),
            "select-only"
        );
        assert_eq!(rule("EXPLAIN ANALYZE SELECT * FROM t"), "select-only");
        assert_eq!(rule("EXPLAIN SELECT * FROM t"), "select-only");
        assert_eq!(rule("SELEC * FROM t"), "syntax");
    }

    #[test]
    fn oversized_and_deeply_nested_sql_is_invalid() {
        assert!(matches!(
            parse(&"x".repeat(2000), 1024),
            Err(QueryError::Invalid(_))
        ));
        let deep = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
        assert!(matches!(parse(&deep, 4096), Err(QueryError::Invalid(_))));
    }

    #[test]
    fn refusal_names_the_statement_kind() {
        let e = parse("  drop table t", 1024).unwrap_err();
        assert!(e.to_string().contains("DROP"), "{e}");
    }
}
