//! The sandbox a consumer's SQL runs in.
//!
//! - Only a single `SELECT` query is accepted: no DDL, DML, `COPY`, `EXPLAIN`, `SET`, and no
//!   second statement ([`parse`], then [`verify`] on the plan as a second line).
//! - The session is built by hand ([`session_state`]): scalar, aggregate and window functions
//!   only; no table functions (nothing like `read_parquet`), no URL tables, no
//!   `information_schema`, no table factories, no spilling to disk, a memory pool per query.
//! - The only table the query may name is the granted one ([`check_tables`]).
//! - The query's shape is bounded before it is planned ([`parse`]: expression depth and
//!   size, SELECT blocks, tables) and once planned ([`check_plan`]), so that no query can
//!   exhaust a thread's stack in planning, optimisation or execution, nor make the planner
//!   work for minutes (see [`Limits`]).
//! - Functions that leak the engine or the server are not registered, and functions whose
//!   result can grow beyond their arguments are bounded (see [`super::functions`]).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider,
};
use datafusion::common::TableReference;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion, TreeNodeVisitor};
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
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, ObjectName, Query, Select, Statement as SqlStatement, TableFactor, Visit,
    Visitor,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use super::error::planning_error;
use super::memory::QueryPool;
use super::{DataPlaneConfig, QueryError, functions};

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
        .with_scalar_functions(functions::scalar_functions())
        .with_aggregate_functions(SessionStateDefaults::default_aggregate_functions())
        .with_window_functions(SessionStateDefaults::default_window_functions())
        .with_expr_planners(SessionStateDefaults::default_expr_planners())
        .build())
}

/// Parses `sql` and accepts it only if it is exactly one query within the [`Limits`].
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
        .map_err(|e| QueryError::Invalid(syntax_message(&e.strip_backtrace())))?;
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
        Statement::Statement(s) if matches!(s.as_ref(), SqlStatement::Query(_)) => {
            Limits::check_syntax(s)?;
            Ok(statement)
        }
        _ => Err(QueryError::refused(
            "select-only",
            format!(
                "only a SELECT query is allowed, not {}",
                statement_kind(sql)
            ),
        )),
    }
}

/// The parser's message without the token it found: the consumer's own text is not echoed
/// (it may be long), the position and what was expected are kept.
fn syntax_message(message: &str) -> String {
    let message = message.trim_start_matches("SQL error: ");
    let short = match message.split_once(", found: ") {
        Some((expected, rest)) => {
            let at = rest.rfind(" at Line: ").map_or("", |i| &rest[i..]);
            format!("{expected}{at}")
        }
        None => message.to_string(),
    };
    // a tokenizer error may quote the text; never more than a line of it
    let short: String = short.chars().take(200).collect();
    format!("SQL syntax: {short}")
}

/// Bounds on the shape of a query. Planning, optimising and running a query walk its
/// expressions and plan recursively, on the caller's stack (2 MiB on a Tokio worker), and
/// DataFusion's `recursive_protection` covers only some of those walks: one `a + b + c + ...`
/// of 1,400 terms (a few kB of SQL; the parser builds it without recursion, so its recursion
/// limit does not bound it) aborted the provider. So the syntax tree is bounded before
/// planning ([`Limits::check_syntax`]), and the plan once planned ([`check_plan`]), since
/// planning can multiply a query (each use of a CTE copies it).
///
/// Measured with `stack_needed_by_deep_expressions` (in `query.rs`; 2026-12-04, debug build,
/// dependencies at `opt-level = 1`): parsing, planning, optimising and running a chain on a
/// 2 MiB stack passes at 1,102 terms of `+` or `||` (about 1.9 kB of stack per term), 1,550
/// casts `::` and 1,678 terms of `AND` or `OR`, and overflows beyond. The release build was
/// not measured (building it takes too long on the 2-core machine); its frames are smaller
/// (the release provider passed about 1,400 terms). [`Limits::EXPR_DEPTH`] (256)
/// leaves more than 4x headroom in the debug build.
pub struct Limits;

impl Limits {
    /// Deepest expression nesting: a chain `a + b + ...` of N terms is N deep.
    pub const EXPR_DEPTH: usize = 256;
    /// Most expression nodes in one query (each term, operator, literal, function call).
    pub const EXPR_NODES: usize = 20_000;
    /// Most SELECT blocks (each side of a UNION, each subquery and CTE).
    pub const SELECTS: usize = 64;
    /// Most table references and derived tables (each side of a join).
    pub const RELATIONS: usize = 64;
    /// Most copies of a CTE's plan that its uses make: a CTE that uses another twice, itself
    /// used twice by the next, ... doubles at each step, and the SQL planner copies and walks
    /// every copy (2^25 of them took 12 GB before any limit could look at the plan).
    pub const CTE_COPIES: u64 = 256;
    /// Most nodes of the planned query (a CTE counts once per use).
    pub const PLAN_NODES: usize = 1_000;
    /// Deepest planned query (operators one above the other).
    pub const PLAN_DEPTH: usize = 128;

    /// Checks the syntax tree of `statement` against the limits.
    fn check_syntax(statement: &SqlStatement) -> Result<(), QueryError> {
        let mut shape = SyntaxShape::default();
        // the visit is itself protected against deep recursion (sqlparser's
        // `recursive-protection`), and stops at the first limit passed
        match statement.visit(&mut shape) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(what) => Err(too_complex(&what)),
        }
    }
}

/// The refusal of a query beyond one of the [`Limits`].
fn too_complex(what: &str) -> QueryError {
    QueryError::refused(
        "query-size",
        format!("the query is too large or too deeply nested: {what}; split it or simplify it"),
    )
}

/// Counts of a syntax tree, for [`Limits::check_syntax`].
#[derive(Default)]
struct SyntaxShape {
    depth: usize,
    nodes: usize,
    selects: usize,
    relations: usize,
    /// The plan copies each CTE (by lower-case name) stands for.
    cte_copies: HashMap<String, u64>,
}

/// The names of the tables and CTEs a query reads (the last part, lower case).
#[derive(Default)]
struct Relations(Vec<String>);

impl Visitor for Relations {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let name = relation.to_string();
        let last = name.rsplit('.').next().unwrap_or_default();
        self.0.push(last.trim_matches('"').to_lowercase());
        ControlFlow::Continue(())
    }
}

impl Visitor for SyntaxShape {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        let Some(with) = &query.with else {
            return ControlFlow::Continue(());
        };
        for cte in &with.cte_tables {
            let mut relations = Relations::default();
            let _ = cte.query.visit(&mut relations);
            let copies = relations
                .0
                .iter()
                .map(|name| self.cte_copies.get(name).copied().unwrap_or(1))
                .fold(1u64, u64::saturating_add);
            if copies > Limits::CTE_COPIES {
                return ControlFlow::Break(format!(
                    "its CTEs use each other so often that they stand for more than {} copies of a query",
                    Limits::CTE_COPIES
                ));
            }
            let name = cte.alias.name.value.to_lowercase();
            self.cte_copies.insert(name, copies);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &SqlExpr) -> ControlFlow<String> {
        self.depth += 1;
        self.nodes += 1;
        if self.depth > Limits::EXPR_DEPTH {
            return ControlFlow::Break(format!(
                "expressions may nest at most {} levels (a chain of operators counts one level per term)",
                Limits::EXPR_DEPTH
            ));
        }
        if self.nodes > Limits::EXPR_NODES {
            return ControlFlow::Break(format!(
                "at most {} terms, operators and function calls",
                Limits::EXPR_NODES
            ));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &SqlExpr) -> ControlFlow<String> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, _select: &Select) -> ControlFlow<String> {
        self.selects += 1;
        if self.selects > Limits::SELECTS {
            return ControlFlow::Break(format!(
                "at most {} SELECT blocks (UNION members, subqueries and CTEs)",
                Limits::SELECTS
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, _table: &TableFactor) -> ControlFlow<String> {
        self.relations += 1;
        if self.relations > Limits::RELATIONS {
            return ControlFlow::Break(format!(
                "at most {} tables and derived tables",
                Limits::RELATIONS
            ));
        }
        ControlFlow::Continue(())
    }
}

/// Checks a planned query against the [`Limits`]: its nodes (a CTE counts once per use),
/// the depth of its operators and of its expressions. The walks are DataFusion's tree walks,
/// which grow their stack when it runs low, and stop at the first limit passed.
pub fn check_plan(plan: &LogicalPlan) -> Result<(), QueryError> {
    let mut shape = PlanShape::default();
    plan.visit_with_subqueries(&mut shape)
        .map_err(planning_error)?;
    match shape.exceeded {
        Some(what) => Err(too_complex(what)),
        None => Ok(()),
    }
}

/// Names starting with this are the data plane's own (e.g. the group size of aggregate-only).
pub const RESERVED_PREFIX: &str = "__sluis";

/// Refuses a plan in which the consumer names a column with the [`RESERVED_PREFIX`]: the
/// query rules add columns of such names above the consumer's plan, and a clash would fail
/// as an internal error.
pub fn check_reserved_names(plan: &LogicalPlan) -> Result<(), QueryError> {
    let mut reserved = false;
    plan.apply_with_subqueries(|node| {
        reserved = node
            .schema()
            .fields()
            .iter()
            .any(|f| f.name().to_ascii_lowercase().starts_with(RESERVED_PREFIX));
        Ok(if reserved {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })
    .map_err(planning_error)?;
    if reserved {
        return Err(QueryError::Invalid(format!(
            "names starting with `{RESERVED_PREFIX}` are reserved for the data plane; choose another alias"
        )));
    }
    Ok(())
}

/// Counts of a logical plan, for [`check_plan`].
#[derive(Default)]
struct PlanShape {
    depth: usize,
    nodes: usize,
    exceeded: Option<&'static str>,
}

impl TreeNodeVisitor<'_> for PlanShape {
    type Node = LogicalPlan;

    fn f_down(&mut self, node: &LogicalPlan) -> DfResult<TreeNodeRecursion> {
        self.depth += 1;
        self.nodes += 1;
        if self.depth > Limits::PLAN_DEPTH {
            self.exceeded = Some("its plan nests operators too deeply");
        } else if self.nodes > Limits::PLAN_NODES {
            self.exceeded = Some("its plan has too many operators (each use of a CTE counts)");
        } else {
            node.apply_expressions(|e| {
                if expr_depth(e, Limits::EXPR_DEPTH) > Limits::EXPR_DEPTH {
                    self.exceeded = Some("its planned expressions nest too deeply");
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(if self.exceeded.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    }

    fn f_up(&mut self, _node: &LogicalPlan) -> DfResult<TreeNodeRecursion> {
        self.depth -= 1;
        Ok(TreeNodeRecursion::Continue)
    }
}

/// The nesting depth of `expr`, counted up to `limit + 1` (the walk stops there).
fn expr_depth(expr: &Expr, limit: usize) -> usize {
    struct Depth {
        depth: usize,
        max: usize,
        limit: usize,
    }
    impl TreeNodeVisitor<'_> for Depth {
        type Node = Expr;
        fn f_down(&mut self, _e: &Expr) -> DfResult<TreeNodeRecursion> {
            self.depth += 1;
            self.max = self.max.max(self.depth);
            Ok(if self.max > self.limit {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        }
        fn f_up(&mut self, _e: &Expr) -> DfResult<TreeNodeRecursion> {
            self.depth -= 1;
            Ok(TreeNodeRecursion::Continue)
        }
    }
    let mut visitor = Depth {
        depth: 0,
        max: 0,
        limit,
    };
    let _ = expr.visit(&mut visitor);
    visitor.max
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
        .map_err(planning_error)?;
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
