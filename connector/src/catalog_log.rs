//! Durability of the catalogue, with one of two back ends.
//!
//! **In memory plus a change log** (the default build). Every write of the management API is
//! applied to the catalogue and, while the log's lock is held, appended to
//! `<data_dir>/catalog.db` (SQLite, WAL, `synchronous = FULL`: each commit is on disk before
//! the API answers) as a [`CatalogChange`]. Writes are serialised, so the log's order is the
//! order in which they were applied. At start the catalogue is rebuilt from the latest
//! snapshot (`catalog-snapshot.nq`, an N-Quads dump) and the changes logged after it; when the
//! log has grown past [`SNAPSHOT_AFTER`] changes, a new snapshot is written and the log
//! truncated. A change that was applied but not yet logged when the process died was never
//! acknowledged. Replaying a change is idempotent (each replaces what it touches), so a crash
//! between writing a snapshot and truncating the log is safe.
//!
//! **On disk** (built with the `rocksdb` feature). The catalogue is oxigraph's RocksDB store
//! in `<data_dir>/catalog.oxigraph`, durable by itself: only the id index is rebuilt at start
//! and memory stays bounded. A catalogue kept in memory before is copied into it at start,
//! then its snapshot and log are removed.
//!
//! Not logged in either: the config's `[[dataset]]` entries (upserted from the config at each
//! start) and peer catalogues (a cache the crawler refetches at start).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use sluis_catalog::{CatalogChange, CatalogError, CatalogStore};
use tracing::{info, warn};

/// Changes after which a start writes a new snapshot.
pub const SNAPSHOT_AFTER: i64 = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS catalog_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, change TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// The catalogue's durability: its change log, or its disk store.
pub struct CatalogLog {
    conn: Mutex<Connection>,
    snapshot: PathBuf,
    /// The disk store's directory, when built with the `rocksdb` feature.
    disk: Option<PathBuf>,
}

fn store_error(e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Store(format!("catalogue change log: {e}"))
}

impl CatalogLog {
    /// Opens (or creates) the log in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("catalog.db");
        let conn = Connection::open(&path)
            .with_context(|| format!("opening the catalogue log {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("creating the schema in {}", path.display()))?;
        Ok(CatalogLog {
            conn: Mutex::new(conn),
            snapshot: data_dir.join("catalog-snapshot.nq"),
            disk: cfg!(feature = "rocksdb").then(|| data_dir.join("catalog.oxigraph")),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the catalogue: the disk store if there is one, else the in-memory one restored
    /// from the snapshot and the log.
    pub fn restore(&self) -> Result<CatalogStore> {
        match &self.disk {
            Some(dir) => self.open_disk(dir),
            None => self.restore_in_memory(),
        }
    }

    /// Opens the disk store; at its first start, copies in the catalogue kept in memory until
    /// then and empties the log (the disk store now holds it).
    #[cfg(feature = "rocksdb")]
    fn open_disk(&self, dir: &Path) -> Result<CatalogStore> {
        let catalog = CatalogStore::open(dir).with_context(|| {
            format!(
                "opening the catalogue store {}: is another sluis using this data directory?",
                dir.display()
            )
        })?;
        // Decided by what is left to move, not by whether the directory is new: a crash
        // during the move leaves both, and the next start copies again (quads are a set).
        if self.holds_in_memory_catalogue()? {
            let before = self.restore_in_memory()?;
            if before.len()? > 0 {
                catalog.extend_from(&before)?;
                info!(
                    datasets = catalog.len()?,
                    "catalogue moved to the disk store"
                );
            }
            let conn = self.lock();
            conn.execute("DELETE FROM catalog_log", [])?;
            drop(conn);
            let _ = std::fs::remove_file(&self.snapshot);
        }
        info!(datasets = catalog.len()?, store = %dir.display(), "catalogue opened");
        Ok(catalog)
    }

    /// Whether a snapshot or logged changes of an in-memory catalogue exist.
    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    fn holds_in_memory_catalogue(&self) -> Result<bool> {
        let logged: i64 = self
            .lock()
            .query_row("SELECT count(*) FROM catalog_log", [], |r| r.get(0))?;
        Ok(logged > 0 || self.snapshot.exists())
    }

    #[cfg(not(feature = "rocksdb"))]
    fn open_disk(&self, dir: &Path) -> Result<CatalogStore> {
        anyhow::bail!(
            "{} needs a sluis built with `--features rocksdb`",
            dir.display()
        )
    }

    /// Rebuilds the in-memory catalogue: the snapshot, then every change logged after it. A
    /// change that no longer applies is reported and skipped. Writes a new snapshot when the
    /// log is long.
    fn restore_in_memory(&self) -> Result<CatalogStore> {
        let catalog = match std::fs::read(&self.snapshot) {
            Ok(bytes) => CatalogStore::load(&bytes).with_context(|| {
                format!(
                    "the catalogue snapshot {} is unreadable: restore it from a backup or remove it and the log",
                    self.snapshot.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CatalogStore::new()?,
            Err(e) => return Err(e).context(format!("reading {}", self.snapshot.display())),
        };
        let conn = self.lock();
        let after = snapshot_seq(&conn)?;
        let mut stmt =
            conn.prepare("SELECT seq, change FROM catalog_log WHERE seq > ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![after], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut replayed = 0i64;
        for row in rows {
            let (seq, text) = row?;
            let applied = serde_json::from_str::<CatalogChange>(&text)
                .map_err(store_error)
                .and_then(|change| catalog.apply(&change));
            if let Err(e) = applied {
                warn!(seq, error = %e, "a logged catalogue change no longer applies: skipped");
            }
            replayed += 1;
        }
        drop(stmt);
        info!(replayed, datasets = catalog.len()?, "catalogue restored");
        if replayed > SNAPSHOT_AFTER {
            self.write_snapshot(&conn, &catalog)?;
        }
        Ok(catalog)
    }

    /// Writes the snapshot (to a temporary file, synced, then renamed) and drops the log
    /// entries it covers.
    fn write_snapshot(&self, conn: &Connection, catalog: &CatalogStore) -> Result<()> {
        let last: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM catalog_log", [], |r| {
                r.get(0)
            })?;
        let tmp = self.snapshot.with_extension("nq.tmp");
        let bytes = catalog.dump()?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.snapshot)
            .with_context(|| format!("writing {}", self.snapshot.display()))?;
        conn.execute(
            "INSERT INTO catalog_meta (key, value) VALUES ('snapshot_seq', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![last.to_string()],
        )?;
        conn.execute("DELETE FROM catalog_log WHERE seq <= ?1", params![last])?;
        info!(
            seq = last,
            bytes = bytes.len(),
            "catalogue snapshot written"
        );
        Ok(())
    }

    /// Runs a catalogue write and logs the change it reports, as one step: `apply` returns
    /// its result and the change to log (`None` when it changed nothing). Nothing is logged
    /// when `apply` fails. Returns once the change is on disk (with the disk store, the
    /// commit of `apply` itself).
    pub fn record<T>(
        &self,
        apply: impl FnOnce() -> Result<(T, Option<CatalogChange>), CatalogError>,
    ) -> Result<T, CatalogError> {
        let conn = self.lock();
        let (out, change) = apply()?;
        if self.disk.is_some() {
            return Ok(out); // committed to the disk store by `apply`
        }
        if let Some(change) = change {
            let text = serde_json::to_string(&change).map_err(store_error)?;
            conn.execute(
                "INSERT INTO catalog_log (change) VALUES (?1)",
                params![text],
            )
            .map_err(store_error)?;
        }
        Ok(out)
    }
}

fn snapshot_seq(conn: &Connection) -> Result<i64> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM catalog_meta WHERE key = 'snapshot_seq'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluis_catalog::Dataset;

    /// The log of the in-memory catalogue, also in a build with the disk store.
    fn in_memory(dir: &Path) -> CatalogLog {
        let mut log = CatalogLog::open(dir).unwrap();
        log.disk = None;
        log
    }

    fn put(log: &CatalogLog, cat: &CatalogStore, id: &str) {
        let ds = Dataset {
            id: id.into(),
            title: "T".into(),
            ..Default::default()
        };
        log.record(|| {
            cat.put_dataset(&ds)?;
            Ok((
                (),
                Some(CatalogChange::PutDataset {
                    dataset: Box::new(ds.clone()),
                }),
            ))
        })
        .unwrap();
    }

    #[test]
    fn changes_survive_reopening_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let log = in_memory(dir.path());
        let cat = log.restore().unwrap();
        for i in 0..=SNAPSHOT_AFTER {
            put(&log, &cat, &format!("urn:x:{i}"));
        }
        let failed = log.record::<()>(|| Err(CatalogError::Store("no".into())));
        assert!(failed.is_err());
        drop((log, cat));
        let log = in_memory(dir.path());
        let cat = log.restore().unwrap();
        assert_eq!(cat.len().unwrap() as i64, SNAPSHOT_AFTER + 1);
        assert!(dir.path().join("catalog-snapshot.nq").exists());
        put(&log, &cat, "urn:x:after");
        drop((log, cat));
        let cat = in_memory(dir.path()).restore().unwrap();
        assert_eq!(cat.len().unwrap() as i64, SNAPSHOT_AFTER + 2);
    }

    #[test]
    fn an_in_memory_catalogue_is_seen_by_its_log_or_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let log = in_memory(dir.path());
        assert!(!log.holds_in_memory_catalogue().unwrap());
        let cat = log.restore_in_memory().unwrap();
        put(&log, &cat, "urn:x:logged");
        assert!(log.holds_in_memory_catalogue().unwrap());
        log.lock().execute("DELETE FROM catalog_log", []).unwrap();
        assert!(!log.holds_in_memory_catalogue().unwrap());
        std::fs::write(dir.path().join("catalog-snapshot.nq"), "").unwrap();
        assert!(log.holds_in_memory_catalogue().unwrap());
    }
}
