//! The audit log of data-plane queries: one row per query, admitted or refused, in its own
//! SQLite file `<data_dir>/audit.db`.
//!
//! Each row has the agreement, transfer, consumer, declared purpose, SQL, the decision with
//! its compliance report (what was enforced and which checks passed) or the refusal reason,
//! and, once the query has ended, the rows and bytes returned.
//!
//! The agreement's query count (`odrl:count`, `max_queries`) is counted from this log: the
//! count and the admitted row are one `BEGIN IMMEDIATE` transaction ([`AuditLog::admit`]), so
//! two concurrent queries cannot both take the last one, and a restart does not reset it.
//!
//! The management API reads it at `GET /api/v1/audit?agreementId=&transferId=&limit=`
//! ([`route`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::node::Shared;

/// The audit file in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit.db")
}

/// Largest page `list` returns.
pub const MAX_LIMIT: u32 = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS query_audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    agreement_id  TEXT NOT NULL,
    transfer_id   TEXT NOT NULL,
    consumer      TEXT NOT NULL,
    purpose       TEXT,
    channel       TEXT NOT NULL,
    sql           TEXT NOT NULL,
    decision      TEXT NOT NULL CHECK (decision IN ('permit', 'deny')),
    reason        TEXT,
    report        TEXT,
    finished_at   TEXT,
    rows          INTEGER,
    bytes         INTEGER,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS query_audit_agreement ON query_audit (agreement_id, decision);
";

/// Longest SQL text stored (bytes, cut at a character boundary).
const MAX_SQL_STORED: usize = 16 * 1024;

/// One query to record.
#[derive(Debug, Clone)]
pub struct QueryEntry<'a> {
    /// The agreement.
    pub agreement_id: &'a str,
    /// The transfer the token belongs to.
    pub transfer_id: &'a str,
    /// The consumer participant.
    pub consumer: &'a str,
    /// The purpose the consumer declared, if any.
    pub purpose: Option<&'a str>,
    /// How the query arrived: `flight`, `flight-sql` or `http`.
    pub channel: &'a str,
    /// The SQL text.
    pub sql: &'a str,
}

/// What [`AuditLog::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The query may run; `id` is its audit row, `number` its count within the agreement.
    Admitted {
        /// Audit row id.
        id: i64,
        /// 1 for the agreement's first admitted query.
        number: u64,
    },
    /// The agreement's `max` queries are used.
    Exhausted {
        /// The agreement's bound.
        max: u64,
    },
}

/// An audit row, as the management API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Row id (increasing).
    pub id: i64,
    /// When the decision was made (RFC 3339, UTC).
    pub at: String,
    /// The agreement.
    pub agreement_id: String,
    /// The transfer.
    pub transfer_id: String,
    /// The consumer.
    pub consumer: String,
    /// The declared purpose.
    pub purpose: Option<String>,
    /// `flight`, `flight-sql` or `http`.
    pub channel: String,
    /// The SQL text.
    pub sql: String,
    /// `permit` or `deny`.
    pub decision: String,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The compliance report of an admitted query.
    pub report: Option<serde_json::Value>,
    /// When the result stream ended.
    pub finished_at: Option<String>,
    /// Rows returned.
    pub rows: Option<u64>,
    /// Bytes returned (Arrow IPC, CSV or JSON as sent).
    pub bytes: Option<u64>,
    /// Why the stream stopped early, if it did.
    pub error: Option<String>,
}

/// The audit log; one connection, shared by the data plane's calls.
pub struct AuditLog {
    conn: Mutex<Connection>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn stored_sql(sql: &str) -> &str {
    if sql.len() <= MAX_SQL_STORED {
        return sql;
    }
    let mut end = MAX_SQL_STORED;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    &sql[..end]
}

impl AuditLog {
    /// Opens (or creates) the audit log at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)
            .with_context(|| format!("opening the audit log {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("creating the audit tables in {}", path.display()))?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits `entry` if fewer than `max_queries` queries of its agreement were admitted,
    /// writing it with `report` in the same transaction as the count.
    pub fn admit(
        &self,
        entry: &QueryEntry<'_>,
        max_queries: Option<u64>,
        report: &serde_json::Value,
    ) -> Result<Admission> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let used: i64 = tx.query_row(
            "SELECT count(*) FROM query_audit WHERE agreement_id = ?1 AND decision = 'permit'",
            params![entry.agreement_id],
            |r| r.get(0),
        )?;
        let used = u64::try_from(used).unwrap_or(0);
        if let Some(max) = max_queries
            && used >= max
        {
            return Ok(Admission::Exhausted { max });
        }
        let number = used + 1;
        let mut report = report.clone();
        report["queryNumber"] = json!(number);
        insert(&tx, entry, "permit", None, Some(&report))?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Admission::Admitted { id, number })
    }

    /// Records a refused query and why.
    pub fn refuse(&self, entry: &QueryEntry<'_>, reason: &str) -> Result<i64> {
        let conn = self.conn();
        insert(&conn, entry, "deny", Some(reason), None)?;
        Ok(conn.last_insert_rowid())
    }

    /// Records the end of admitted query `id`: rows and bytes sent, and the error that stopped
    /// it early, if one did.
    pub fn finish(&self, id: i64, rows: u64, bytes: u64, error: Option<&str>) -> Result<()> {
        self.conn().execute(
            "UPDATE query_audit SET finished_at = ?2, rows = ?3, bytes = ?4, error = ?5 WHERE id = ?1",
            params![
                id,
                now(),
                i64::try_from(rows).unwrap_or(i64::MAX),
                i64::try_from(bytes).unwrap_or(i64::MAX),
                error
            ],
        )?;
        Ok(())
    }

    /// The newest `limit` rows (at most [`MAX_LIMIT`]), newest first, optionally of one
    /// agreement or transfer.
    pub fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, agreement_id, transfer_id, consumer, purpose, channel, sql, decision,
                    reason, report, finished_at, rows, bytes, error
             FROM query_audit
             WHERE (?1 IS NULL OR agreement_id = ?1) AND (?2 IS NULL OR transfer_id = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let limit = filter.limit.unwrap_or(100).min(MAX_LIMIT);
        let rows = stmt.query_map(
            params![filter.agreement_id, filter.transfer_id, limit],
            |r| {
                let report: Option<String> = r.get(10)?;
                Ok(AuditRecord {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    agreement_id: r.get(2)?,
                    transfer_id: r.get(3)?,
                    consumer: r.get(4)?,
                    purpose: r.get(5)?,
                    channel: r.get(6)?,
                    sql: r.get(7)?,
                    decision: r.get(8)?,
                    reason: r.get(9)?,
                    report: report.and_then(|s| serde_json::from_str(&s).ok()),
                    finished_at: r.get(11)?,
                    rows: r.get::<_, Option<i64>>(12)?.map(|v| v.max(0) as u64),
                    bytes: r.get::<_, Option<i64>>(13)?.map(|v| v.max(0) as u64),
                    error: r.get(14)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The number of admitted queries of `agreement_id`.
    pub fn admitted(&self, agreement_id: &str) -> Result<u64> {
        let n: Option<i64> = self
            .conn()
            .query_row(
                "SELECT count(*) FROM query_audit WHERE agreement_id = ?1 AND decision = 'permit'",
                params![agreement_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.map_or(0, |n| n.max(0) as u64))
    }
}

fn insert(
    conn: &Connection,
    entry: &QueryEntry<'_>,
    decision: &str,
    reason: Option<&str>,
    report: Option<&serde_json::Value>,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO query_audit (at, agreement_id, transfer_id, consumer, purpose, channel, sql,
                                  decision, reason, report)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            now(),
            entry.agreement_id,
            entry.transfer_id,
            entry.consumer,
            entry.purpose,
            entry.channel,
            stored_sql(entry.sql),
            decision,
            reason,
            report.map(serde_json::Value::to_string),
        ],
    )
}

/// The query of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditFilter {
    /// Only this agreement's queries.
    pub agreement_id: Option<String>,
    /// Only this transfer's queries.
    pub transfer_id: Option<String>,
    /// At most this many rows (default 100, at most [`MAX_LIMIT`]).
    pub limit: Option<u32>,
}

/// `GET /api/v1/audit?agreementId=&transferId=&limit=`: the newest audit rows, newest first.
pub async fn route(State(node): State<Shared>, Query(filter): Query<AuditFilter>) -> Response {
    let file = path(&node.config.data_dir);
    let listed = tokio::task::spawn_blocking(move || AuditLog::open(&file)?.list(&filter)).await;
    match listed {
        Ok(Ok(records)) => Json(json!({ "queries": records })).into_response(),
        Ok(Err(e)) => audit_unavailable(&e),
        Err(e) => audit_unavailable(&anyhow::anyhow!(e)),
    }
}

fn audit_unavailable(e: &anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "reading the audit log failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(
            json!({ "error": "the audit log cannot be read; the connector's log has the details" }),
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(agreement: &'a str, sql: &'a str) -> QueryEntry<'a> {
        QueryEntry {
            agreement_id: agreement,
            transfer_id: "t",
            consumer: "c",
            purpose: Some("p"),
            channel: "flight",
            sql,
        }
    }

    #[test]
    fn the_query_count_survives_reopening_and_refusals_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        let report = json!({});
        {
            let log = AuditLog::open(&file).unwrap();
            let first = log
                .admit(&entry("a", "SELECT 1"), Some(2), &report)
                .unwrap();
            assert!(matches!(first, Admission::Admitted { number: 1, .. }));
            log.refuse(&entry("a", "DROP TABLE x"), "select-only")
                .unwrap();
            log.admit(&entry("b", "SELECT 1"), Some(2), &report)
                .unwrap();
        }
        let log = AuditLog::open(&file).unwrap();
        let second = log
            .admit(&entry("a", "SELECT 2"), Some(2), &report)
            .unwrap();
        let Admission::Admitted { id, number: 2 } = second else {
            panic!("{second:?}")
        };
        assert_eq!(
            log.admit(&entry("a", "SELECT 3"), Some(2), &report)
                .unwrap(),
            Admission::Exhausted { max: 2 }
        );
        log.finish(id, 10, 2048, None).unwrap();
        let filter = AuditFilter {
            agreement_id: Some("a".into()),
            ..Default::default()
        };
        let rows = log.list(&filter).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].sql, "SELECT 2");
        assert_eq!((rows[0].rows, rows[0].bytes), (Some(10), Some(2048)));
        assert_eq!(rows[0].report.as_ref().unwrap()["queryNumber"], 2);
        assert_eq!(rows[1].decision, "deny");
        assert_eq!(rows[1].reason.as_deref(), Some("select-only"));
        assert_eq!(log.admitted("a").unwrap(), 2);
    }
}
