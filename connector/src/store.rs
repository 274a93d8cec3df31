//! The state store: negotiations, agreements, transfers, their history and the outbox, in
//! one SQLite database in the data directory.
//!
//! Every state change commits in one transaction with the messages it sends (the outbox),
//! so a crash can neither lose a message nor send one for a change that did not happen.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};

use crate::dsp::Role;
use crate::dsp::negotiation::NegotiationState;
use crate::dsp::transfer::TransferState;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS negotiation (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    provider_pid TEXT,
    consumer_pid TEXT,
    peer_id TEXT NOT NULL,
    peer_address TEXT NOT NULL,
    state TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    offer TEXT NOT NULL,
    agreement_id TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS negotiation_consumer_pid ON negotiation(consumer_pid);
-- no index on a column that every state change writes: each one cost a random page write per
-- change, for lookups that only a restart makes (BENCHMARKS.md)
DROP INDEX IF EXISTS negotiation_provider_pid;
DROP INDEX IF EXISTS negotiation_state;
CREATE TABLE IF NOT EXISTS agreement (
    id TEXT PRIMARY KEY,
    negotiation_id TEXT NOT NULL UNIQUE,
    dataset_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    assigner TEXT NOT NULL,
    assignee TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transfer (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    provider_pid TEXT,
    consumer_pid TEXT,
    peer_id TEXT NOT NULL,
    peer_address TEXT NOT NULL,
    agreement_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    format TEXT NOT NULL,
    state TEXT NOT NULL,
    data_address TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    provider_hold INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transfer_consumer_pid ON transfer(consumer_pid);
DROP INDEX IF EXISTS transfer_state;
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    process_id TEXT NOT NULL,
    state TEXT NOT NULL,
    note TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_process ON history(process_id);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    process_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_process ON outbox(process_id, id);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Which kind of process a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessKind {
    /// A contract negotiation.
    Negotiation,
    /// A transfer process.
    Transfer,
}

/// The tasks waiting for a change of one process each: a commit wakes only the waiters of
/// the processes it changed (a broadcast of every change woke every waiter).
#[derive(Default)]
struct Watchers(Mutex<HashMap<String, (usize, Arc<Notify>)>>);

impl Watchers {
    fn map(&self) -> MutexGuard<'_, HashMap<String, (usize, Arc<Notify>)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self, ids: &[String]) {
        let map = self.map();
        if map.is_empty() {
            return;
        }
        for id in ids {
            if let Some((_, notify)) = map.get(id) {
                notify.notify_waiters();
            }
        }
    }
}

/// Counts a change in [`Store::transact`] from its start to its commit.
struct Active<'a>(&'a AtomicUsize);

impl<'a> Active<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Interest in the committed changes of one process (see [`Store::watch`]).
pub struct ProcessWatch {
    watchers: Arc<Watchers>,
    id: String,
    notify: Arc<Notify>,
}

impl ProcessWatch {
    /// Completes at the next committed change of the process after this call: call it
    /// before reading the state, then await it, and no change in between is missed.
    pub fn changed(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for ProcessWatch {
    fn drop(&mut self) {
        let mut map = self.watchers.map();
        if let Some((count, _)) = map.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.id);
            }
        }
    }
}

/// A contract negotiation as this connector sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Negotiation {
    /// Local id: our own process id (`providerPid` when we are the provider).
    pub id: String,
    /// Our role.
    pub role: Role,
    /// The provider's process id, once known.
    pub provider_pid: Option<String>,
    /// The consumer's process id, once known.
    pub consumer_pid: Option<String>,
    /// The other party's participant id.
    pub peer_id: String,
    /// Where the other party receives DSP messages.
    pub peer_address: String,
    /// Current state.
    pub state: NegotiationState,
    /// The dataset negotiated for.
    pub dataset_id: String,
    /// The latest offer or request (ODRL, DSP JSON).
    pub offer: Value,
    /// The agreement, once agreed.
    pub agreement_id: Option<String>,
    /// Why it was terminated, if it was.
    pub error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A contract agreement.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agreement {
    /// The agreement's `@id`.
    pub id: String,
    /// The negotiation it came from (local id).
    pub negotiation_id: String,
    /// Its target dataset.
    pub dataset_id: String,
    /// The ODRL agreement (DSP JSON).
    pub policy: Value,
    /// The provider.
    pub assigner: String,
    /// The consumer.
    pub assignee: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// A transfer process as this connector sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// Local id (our process id).
    pub id: String,
    /// Our role.
    pub role: Role,
    /// The provider's process id, once known.
    pub provider_pid: Option<String>,
    /// The consumer's process id.
    pub consumer_pid: Option<String>,
    /// The other party's participant id.
    pub peer_id: String,
    /// Where the other party receives DSP messages.
    pub peer_address: String,
    /// The agreement it runs under.
    pub agreement_id: String,
    /// The dataset.
    pub dataset_id: String,
    /// The transfer format (`ArrowFlight-PULL`, `HttpData-PULL`).
    pub format: String,
    /// Current state.
    pub state: TransferState,
    /// Whether the provider holds it suspended: only the provider resumes it (see
    /// [`crate::dsp::transfer::Held`]).
    pub provider_hold: bool,
    /// The data address, once started (consumer side).
    pub data_address: Option<Value>,
    /// Why it was terminated, if it was.
    pub error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One entry in a process's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// The state entered.
    pub state: String,
    /// What caused it.
    pub note: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A message waiting to be delivered.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// Queue position.
    pub id: i64,
    /// The local process the message belongs to.
    pub process_id: String,
    /// What to do with the peer's answer (see [`crate::outbox`]).
    pub purpose: String,
    /// Target URL.
    pub url: String,
    /// The JSON body.
    pub body: Value,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Earliest time of the next attempt.
    pub next_attempt_at: DateTime<Utc>,
    /// The participant the message must reach (`None`: its process is gone).
    pub peer_id: Option<String>,
}

/// A queued message as the sender schedules it.
#[derive(Debug, Clone)]
pub struct DueMessage {
    /// Queue position.
    pub id: i64,
    /// The local process the message belongs to.
    pub process_id: String,
    /// Earliest time of the next attempt.
    pub next_attempt_at: DateTime<Utc>,
}

/// The state store. Cheap to clone.
///
/// One connection writes, and every change reads through it too (transactions are short: no
/// network call happens inside one). Reads outside a change go to a second connection, which
/// sees only committed data: the outbox must never send a message whose change may still
/// fail to commit. Statements are prepared once per connection.
///
/// **Group commit.** Each [`Store::transact`] runs inside a savepoint of the transaction that
/// is open at the time, and waits for that transaction to commit before it returns. When other
/// changes are under way, the first change of a transaction spawns its commit, which yields
/// once to the runtime before it commits: the changes staged meanwhile by other tasks commit
/// with it, in one write of the write-ahead log. A change made alone commits at once.
#[derive(Clone)]
pub struct Store {
    db: Arc<Mutex<Db>>,
    reader: Arc<Mutex<Connection>>,
    watchers: Arc<Watchers>,
    /// Changes being made or waiting for their commit: with none but the new one, a
    /// transaction commits at once instead of waiting for others to join it.
    active: Arc<AtomicUsize>,
    outbox_ready: Arc<Notify>,
    checkpoints: Arc<Checkpoints>,
}

/// Commits between two checkpoints of the write-ahead log (a commit writes a few pages to
/// 20 or so under load).
const CHECKPOINT_EVERY: usize = 500;

/// Bytes the write-ahead log file keeps once a checkpoint lets it start over. Under constant
/// load a `PASSIVE` checkpoint rarely catches up with the writer, so the log grows (about
/// 30 KB per negotiation); it starts over after the first quiet moment, and without a
/// limit the file would keep its largest size for good.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Copies the write-ahead log back into the database on a thread of its own, with its own
/// connection, every so many commits. SQLite's automatic checkpoint would run inside the
/// commit that crosses its threshold, holding the writer (and every change waiting for it)
/// for the copy and the `fsync`: 35-45 ms stalls, and hundreds on a busy disk. A `PASSIVE`
/// checkpoint waits for no reader and no writer; what it cannot copy yet, the next one does.
///
/// Under constant load a `PASSIVE` checkpoint never catches up with the writer, so the log
/// never starts over: it grew to 10 GB in a 4-minute benchmark. Once the log holds more than
/// `restart_frames` frames, the thread runs a `RESTART` checkpoint after the `PASSIVE` one:
/// it holds the writer while it copies what is left and waits for readers (tens of ms, once
/// per `restart_frames` frames written), and the next commit starts the log over.
struct Checkpoints {
    every: usize,
    commits: AtomicUsize,
    /// Checkpoints made so far (the tests watch it).
    #[cfg_attr(not(test), allow(dead_code))]
    done: Arc<AtomicUsize>,
    /// `RESTART` checkpoints made so far (the tests watch it).
    #[cfg_attr(not(test), allow(dead_code))]
    restarts: Arc<AtomicUsize>,
    wake: std::sync::mpsc::SyncSender<()>,
}

/// Runs `PRAGMA wal_checkpoint(mode)`: whether it was kept from finishing (by readers or the
/// writer) and the frames in the log.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(bool, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(0)? != 0, r.get(1)?))
    })
}

/// How long a `RESTART` checkpoint waits for the writer and the readers before it gives up
/// until the next time: it holds the writer meanwhile.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

impl Checkpoints {
    fn start(conn: Connection, every: usize, restart_frames: i64) -> Result<Self> {
        conn.busy_timeout(RESTART_WAIT)?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let (done, restarts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counter, restart_counter) = (done.clone(), restarts.clone());
        std::thread::Builder::new()
            .name("sluis-checkpoint".into())
            .spawn(move || {
                // ends when the store is dropped (the sender with it)
                while woken.recv().is_ok() {
                    let made = checkpoint(&conn, "PASSIVE").and_then(|(_, frames)| {
                        if frames > restart_frames && !checkpoint(&conn, "RESTART")?.0 {
                            restart_counter.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(())
                    });
                    match made {
                        Ok(()) => counter.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::warn!(error = %e, "checkpointing the state store failed; will try again");
                            0
                        }
                    };
                }
            })
            .context("starting the state store's checkpoint thread")?;
        Ok(Self {
            every: every.max(1),
            commits: AtomicUsize::new(0),
            done,
            restarts,
            wake,
        })
    }

    /// Counts a commit; wakes the thread every `every` commits (a wake-up already pending
    /// covers this one).
    fn committed(&self) {
        if self.commits.fetch_add(1, Ordering::Relaxed) + 1 >= self.every {
            self.commits.store(0, Ordering::Relaxed);
            let _ = self.wake.try_send(());
        }
    }
}
struct Db {
    conn: Connection,
    open: Option<Batch>,
}

/// How a transaction ended: `None` while it is open.
type Outcome = Option<Result<(), Arc<str>>>;

/// The signal of a transaction's end, for the changes staged in it.
type Committed = watch::Receiver<Outcome>;

/// The changes of the open transaction, published when it commits.
struct Batch {
    changed: Vec<String>,
    enqueued: bool,
    done: watch::Sender<Outcome>,
}

/// An open transaction; changes are published only when it commits.
pub struct Tx<'a> {
    tx: &'a Connection,
    changed: Vec<String>,
    enqueued: bool,
}

/// Rolls a change back to its savepoint unless it was released: a panic inside a change
/// must not leave half of it in the transaction that the others commit.
struct Savepoint<'a> {
    conn: &'a Connection,
    released: bool,
}

impl Savepoint<'_> {
    fn release(mut self) -> rusqlite::Result<()> {
        self.released = true;
        self.conn.prepare_cached("RELEASE change")?.execute([])?;
        Ok(())
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.released {
            let undo = |sql| {
                self.conn
                    .prepare_cached(sql)
                    .and_then(|mut s| s.execute([]))
            };
            if let Err(e) = undo("ROLLBACK TO change").and_then(|_| undo("RELEASE change")) {
                tracing::error!(error = %e, "rolling back a failed change");
            }
        }
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: String) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
}

fn json_col(s: String) -> rusqlite::Result<Value> {
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

fn bad_enum(what: &str, s: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        anyhow!("unknown {what} {s:?} in the store").into(),
    )
}

fn role_col(s: String) -> rusqlite::Result<Role> {
    Role::parse(&s).ok_or_else(|| bad_enum("role", &s))
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, CHECKPOINT_EVERY, WAL_SIZE_LIMIT)
    }

    /// [`Store::open`], checkpointing after every `checkpoint_every` commits and keeping at
    /// most `wal_limit` bytes of log file when the log starts over.
    fn open_with(path: &Path, checkpoint_every: usize, wal_limit: i64) -> Result<Self> {
        let conn = connect(path)?;
        conn.execute_batch(SCHEMA)
            .map_err(anyhow::Error::from)
            .and_then(|()| migrate(&conn))
            .with_context(|| format!("creating the schema in {}", path.display()))?;
        // checkpoints run on a thread of their own (see `Checkpoints`), not inside a commit
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", wal_limit)?;
        // a log frame is a page and its 24-byte header
        let frame_bytes = conn.pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0))? + 24;
        let reader = connect(path)?;
        Ok(Self {
            db: Arc::new(Mutex::new(Db { conn, open: None })),
            reader: Arc::new(Mutex::new(reader)),
            watchers: Arc::default(),
            active: Arc::default(),
            outbox_ready: Arc::new(Notify::new()),
            checkpoints: Arc::new(Checkpoints::start(
                connect(path)?,
                checkpoint_every,
                wal_limit.max(0) / frame_bytes,
            )?),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Db> {
        // A panic while holding the lock leaves SQLite consistent (see `Savepoint`).
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` as one change: all of it or nothing commits, together with the changes other
    /// tasks staged in the same transaction. Returns once it is committed, after its changes
    /// were published. Must be called inside a Tokio runtime.
    pub async fn transact<R, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let _active = Active::enter(&self.active);
        let (out, mut done) = self.stage(f)?;
        let committed = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| anyhow!("the state store stopped before committing"))?
            .clone();
        match committed {
            Some(Ok(())) => Ok(out),
            Some(Err(e)) => Err(anyhow!("committing to the state store: {e}").into()),
            None => Err(anyhow!("the state store did not commit").into()),
        }
    }

    /// Runs `f` in a savepoint of the open transaction (opening one if none is); returns its
    /// result and the signal of that transaction's commit.
    fn stage<R, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<(R, Committed), E> {
        let mut db = self.lock();
        let (done, commit_now) = self.open_transaction(&mut db)?;
        let staged = panic::catch_unwind(AssertUnwindSafe(|| Self::apply(&mut db, f)));
        // a change made alone commits here, whether it succeeded, failed or panicked
        let committed = if commit_now {
            Self::commit_open(&mut db)
        } else {
            None
        };
        drop(db);
        if let Some((batch, result)) = committed {
            self.publish(batch, result);
        }
        match staged {
            Ok(result) => result.map(|out| (out, done)),
            Err(panicked) => panic::resume_unwind(panicked),
        }
    }

    /// The signal of the open transaction's end, opening one if none is open; `true` when the
    /// caller is to commit it at once (no other change is under way to join it).
    fn open_transaction(&self, db: &mut Db) -> Result<(Committed, bool)> {
        if let Some(open) = &db.open {
            return Ok((open.done.subscribe(), false));
        }
        db.conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
            .context("starting a state store transaction")?;
        let (done, committed) = watch::channel(None);
        db.open = Some(Batch {
            changed: Vec::new(),
            enqueued: false,
            done,
        });
        if self.active.load(Ordering::Relaxed) <= 1 {
            return Ok((committed, true));
        }
        let store = self.clone();
        tokio::spawn(async move {
            // let the tasks that are ready now stage their changes into this transaction
            tokio::task::yield_now().await;
            store.commit();
        });
        Ok((committed, false))
    }

    /// Runs `f` in a savepoint of the open transaction and adds what it changed to it.
    fn apply<R, E: From<anyhow::Error>>(
        db: &mut Db,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        db.conn
            .prepare_cached("SAVEPOINT change")
            .and_then(|mut s| s.execute([]))
            .context("starting a change in the state store")?;
        let savepoint = Savepoint {
            conn: &db.conn,
            released: false,
        };
        let mut tx = Tx {
            tx: &db.conn,
            changed: Vec::new(),
            enqueued: false,
        };
        let out = f(&mut tx)?;
        let Tx {
            changed, enqueued, ..
        } = tx;
        savepoint
            .release()
            .context("finishing a change in the state store")?;
        let batch = db
            .open
            .as_mut()
            .ok_or_else(|| anyhow!("no transaction open in the state store"))?;
        batch.changed.extend(changed);
        batch.enqueued |= enqueued;
        Ok(out)
    }

    /// Commits the open transaction, then publishes its changes and wakes its waiters.
    fn commit(&self) {
        let committed = Self::commit_open(&mut self.lock());
        if let Some((batch, result)) = committed {
            self.publish(batch, result);
        }
    }

    /// Commits the transaction open on `db`, if any.
    fn commit_open(db: &mut Db) -> Option<(Batch, rusqlite::Result<usize>)> {
        let batch = db.open.take()?;
        let result = db
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]));
        if result.is_err() {
            // a failed COMMIT may leave the transaction open: nothing of it stays
            let _ = db.conn.execute_batch("ROLLBACK");
        }
        Some((batch, result))
    }

    /// Publishes the changes of a committed transaction and tells its waiters how it ended.
    fn publish(&self, batch: Batch, result: rusqlite::Result<usize>) {
        let result = match result {
            Ok(_) => {
                self.checkpoints.committed();
                self.watchers.wake(&batch.changed);
                if batch.enqueued {
                    self.outbox_ready.notify_one();
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "committing to the state store failed");
                Err(Arc::from(e.to_string()))
            }
        };
        batch.done.send_replace(Some(result));
    }

    /// Opens the process `p` a peer asked us (as provider) to start, unless that peer already
    /// opened one for the same consumer process id: a request repeated after a crash or a lost
    /// answer then finds the first process instead of starting a second one. A new process
    /// goes through `then` in the same change (the engine's automatic next step).
    pub async fn open_once<P: PeerOpened + Clone>(
        &self,
        p: P,
        note: &str,
        then: impl FnOnce(&mut Tx<'_>, &mut P) -> Result<()>,
    ) -> Result<Opened<P>> {
        self.transact(|tx| {
            let (peer_id, consumer_pid) = p.peer_and_pid();
            if let Some(known) = P::find(tx, peer_id, consumer_pid)? {
                return Ok(Opened::Known {
                    known,
                    requested: p,
                });
            }
            p.insert(tx, note)?;
            let mut next = p.clone();
            then(tx, &mut next)?;
            Ok(Opened::New(p))
        })
        .await
    }

    /// Watches the committed changes of process `id`.
    pub fn watch(&self, id: &str) -> ProcessWatch {
        let notify = {
            let mut map = self.watchers.map();
            let entry = map
                .entry(id.to_string())
                .or_insert_with(|| (0, Arc::default()));
            entry.0 += 1;
            entry.1.clone()
        };
        ProcessWatch {
            watchers: self.watchers.clone(),
            id: id.to_string(),
            notify,
        }
    }

    /// Woken whenever a message is enqueued.
    pub fn outbox_ready(&self) -> Arc<Notify> {
        self.outbox_ready.clone()
    }

    /// Reads outside a change (single statements need none).
    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        f(&self.reader.lock().unwrap_or_else(|p| p.into_inner())).context("reading the state store")
    }

    /// Every row a query returns.
    fn all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.read(|c| c.prepare_cached(sql)?.query_map(params, row)?.collect())
    }

    /// Writes one statement on its own, committed when this returns: a transaction still open
    /// is committed first, so that the statement does not wait in it.
    fn write_one(&self, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        let mut db = self.lock();
        let flushed = Self::commit_open(&mut db);
        let written = db
            .conn
            .prepare_cached(sql)
            .and_then(|mut st| st.execute(params))
            .map(drop)
            .context("writing to the state store");
        drop(db);
        if let Some((batch, result)) = flushed {
            self.publish(batch, result);
        }
        written
    }

    /// A negotiation by local id.
    pub fn negotiation(&self, id: &str) -> Result<Option<Negotiation>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {NEG_COLS} FROM negotiation WHERE id = ?1"))?
                .query_row([id], negotiation_row)
                .optional()
        })
    }

    /// All negotiations, newest first.
    pub fn negotiations(&self, limit: usize) -> Result<Vec<Negotiation>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {NEG_COLS} FROM negotiation ORDER BY created_at DESC LIMIT ?1"
            ))?;
            st.query_map([limit as i64], negotiation_row)?.collect()
        })
    }

    /// An agreement by id.
    pub fn agreement(&self, id: &str) -> Result<Option<Agreement>> {
        self.read(|c| {
            c.prepare_cached("SELECT id, negotiation_id, dataset_id, policy, assigner, assignee, created_at FROM agreement WHERE id = ?1")?.query_row(
                                [id],
                |r| {
                    Ok(Agreement {
                        id: r.get(0)?,
                        negotiation_id: r.get(1)?,
                        dataset_id: r.get(2)?,
                        policy: json_col(r.get(3)?)?,
                        assigner: r.get(4)?,
                        assignee: r.get(5)?,
                        created_at: parse_ts(r.get(6)?)?,
                    })
                },
            )
            .optional()
        })
    }

    /// A transfer by local id.
    pub fn transfer(&self, id: &str) -> Result<Option<Transfer>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {TR_COLS} FROM transfer WHERE id = ?1"))?
                .query_row([id], transfer_row)
                .optional()
        })
    }

    /// All transfers, newest first.
    pub fn transfers(&self, limit: usize) -> Result<Vec<Transfer>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {TR_COLS} FROM transfer ORDER BY created_at DESC LIMIT ?1"
            ))?;
            st.query_map([limit as i64], transfer_row)?.collect()
        })
    }

    /// Negotiations in one of `states`, oldest first: after a restart, the processes whose
    /// automatic next step may not have been taken yet.
    pub fn negotiations_in(&self, states: &[NegotiationState]) -> Result<Vec<Negotiation>> {
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        self.rows_in_states("negotiation", NEG_COLS, &names, negotiation_row)
    }

    /// Transfers in one of `states`, oldest first (see [`Store::negotiations_in`]).
    pub fn transfers_in(&self, states: &[TransferState]) -> Result<Vec<Transfer>> {
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        self.rows_in_states("transfer", TR_COLS, &names, transfer_row)
    }

    fn rows_in_states<T>(
        &self,
        table: &str,
        cols: &str,
        states: &[&str],
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let marks = vec!["?"; states.len()].join(", ");
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {cols} FROM {table} WHERE state IN ({marks}) ORDER BY created_at"
            ))?;
            st.query_map(rusqlite::params_from_iter(states), row)?
                .collect()
        })
    }

    /// The history of a process, oldest first.
    pub fn history(&self, process_id: &str) -> Result<Vec<HistoryEntry>> {
        self.all(
            "SELECT state, note, at FROM history WHERE process_id = ?1 ORDER BY seq",
            [process_id],
            |r| {
                Ok(HistoryEntry {
                    state: r.get(0)?,
                    note: r.get(1)?,
                    at: parse_ts(r.get(2)?)?,
                })
            },
        )
    }

    /// The queued messages after queue position `after`, in queue order, without the bodies
    /// (the sender reads each body when it delivers it).
    pub fn queued_after(&self, after: i64, limit: usize) -> Result<Vec<DueMessage>> {
        self.all(QUEUED_AFTER, params![after, limit as i64], |r| {
            Ok(DueMessage {
                id: r.get(0)?,
                process_id: r.get(1)?,
                next_attempt_at: parse_ts(r.get(2)?)?,
            })
        })
    }

    /// A queued message with its body and the participant it must reach; `None` once
    /// delivered or dropped.
    pub fn outbox_item(&self, id: i64) -> Result<Option<OutboxItem>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT o.id, o.process_id, o.purpose, o.url, o.body, o.attempts, o.next_attempt_at,
                    COALESCE((SELECT peer_id FROM negotiation WHERE id = o.process_id),
                        (SELECT peer_id FROM transfer WHERE id = o.process_id))
                 FROM outbox o WHERE o.id = ?1",
            )?
            .query_row([id], |r| {
                Ok(OutboxItem {
                    id: r.get(0)?,
                    process_id: r.get(1)?,
                    purpose: r.get(2)?,
                    url: r.get(3)?,
                    body: json_col(r.get(4)?)?,
                    attempts: r.get(5)?,
                    next_attempt_at: parse_ts(r.get(6)?)?,
                    peer_id: r.get(7)?,
                })
            })
            .optional()
        })
    }

    /// Reschedules a failed delivery.
    pub fn retry_later(&self, id: i64, at: DateTime<Utc>, error: &str) -> Result<()> {
        self.write_one(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
            params![id, ts(at), error],
        )
    }

    /// A stored value (keys, settings), if present.
    pub fn kv_get(&self, key: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM kv WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        })
    }

    /// Stores a value.
    pub fn kv_put(&self, key: &str, value: &str) -> Result<()> {
        self.write_one(
            "INSERT INTO kv(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )
    }
}

/// What [`Store::open_once`] did.
#[derive(Debug)]
pub enum Opened<P> {
    /// The process was opened, as it was just committed.
    New(P),
    /// The peer had already opened a process with that consumer process id.
    Known {
        /// The process it opened first.
        known: P,
        /// The process the repeated request would have opened.
        requested: P,
    },
}

/// A process that a peer opens at the provider with its own (consumer) process id.
pub trait PeerOpened: Sized {
    /// The peer's participant id and its process id.
    fn peer_and_pid(&self) -> (&str, &str);
    /// The process that peer opened with that process id, if any.
    fn find(tx: &Tx<'_>, peer_id: &str, consumer_pid: &str) -> Result<Option<Self>>;
    /// Inserts it, recording its first state.
    fn insert(&self, tx: &mut Tx<'_>, note: &str) -> Result<()>;
}

impl PeerOpened for Negotiation {
    fn peer_and_pid(&self) -> (&str, &str) {
        (
            &self.peer_id,
            self.consumer_pid.as_deref().unwrap_or_default(),
        )
    }
    fn find(tx: &Tx<'_>, peer_id: &str, consumer_pid: &str) -> Result<Option<Self>> {
        tx.provider_process_of_peer(
            "negotiation",
            NEG_COLS,
            negotiation_row,
            peer_id,
            consumer_pid,
        )
    }
    fn insert(&self, tx: &mut Tx<'_>, note: &str) -> Result<()> {
        tx.insert_negotiation(self, note)
    }
}

impl PeerOpened for Transfer {
    fn peer_and_pid(&self) -> (&str, &str) {
        (
            &self.peer_id,
            self.consumer_pid.as_deref().unwrap_or_default(),
        )
    }
    fn find(tx: &Tx<'_>, peer_id: &str, consumer_pid: &str) -> Result<Option<Self>> {
        tx.provider_process_of_peer("transfer", TR_COLS, transfer_row, peer_id, consumer_pid)
    }
    fn insert(&self, tx: &mut Tx<'_>, note: &str) -> Result<()> {
        tx.insert_transfer(self, note)
    }
}

/// Opens one connection: WAL with NORMAL sync survives a process kill without losing a
/// commit (only a power loss may take the last commits). A 32 MiB page cache keeps the
/// indexes of a busy store in memory. (The writer checkpoints only through `Checkpoints`.)
fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("opening the state store {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -32_768)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Plans must not depend on bound values: otherwise binding a `LIMIT ?` re-parses and
    // re-plans a cached statement at every use.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

const QUEUED_AFTER: &str =
    "SELECT id, process_id, next_attempt_at FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2";
const NEG_COLS: &str = "id, role, provider_pid, consumer_pid, peer_id, peer_address, state, dataset_id, offer, agreement_id, error, created_at, updated_at";
const TR_COLS: &str = "id, role, provider_pid, consumer_pid, peer_id, peer_address, agreement_id, dataset_id, format, state, data_address, error, created_at, updated_at, provider_hold";

fn negotiation_row(r: &Row<'_>) -> rusqlite::Result<Negotiation> {
    let state: String = r.get(6)?;
    Ok(Negotiation {
        id: r.get(0)?,
        role: role_col(r.get(1)?)?,
        provider_pid: r.get(2)?,
        consumer_pid: r.get(3)?,
        peer_id: r.get(4)?,
        peer_address: r.get(5)?,
        state: NegotiationState::parse(&state).ok_or_else(|| bad_enum("state", &state))?,
        dataset_id: r.get(7)?,
        offer: json_col(r.get(8)?)?,
        agreement_id: r.get(9)?,
        error: r.get(10)?,
        created_at: parse_ts(r.get(11)?)?,
        updated_at: parse_ts(r.get(12)?)?,
    })
}

fn transfer_row(r: &Row<'_>) -> rusqlite::Result<Transfer> {
    let state: String = r.get(9)?;
    let address: Option<String> = r.get(10)?;
    Ok(Transfer {
        id: r.get(0)?,
        role: role_col(r.get(1)?)?,
        provider_pid: r.get(2)?,
        consumer_pid: r.get(3)?,
        peer_id: r.get(4)?,
        peer_address: r.get(5)?,
        agreement_id: r.get(6)?,
        dataset_id: r.get(7)?,
        format: r.get(8)?,
        state: TransferState::parse(&state).ok_or_else(|| bad_enum("state", &state))?,
        data_address: address.map(json_col).transpose()?,
        error: r.get(11)?,
        created_at: parse_ts(r.get(12)?)?,
        updated_at: parse_ts(r.get(13)?)?,
        provider_hold: r.get(14)?,
    })
}

/// Adds the columns that later versions added to a table created before them.
fn migrate(conn: &Connection) -> Result<()> {
    let has_hold = conn
        .prepare("SELECT 1 FROM pragma_table_info('transfer') WHERE name = 'provider_hold'")?
        .exists([])?;
    if !has_hold {
        conn.execute_batch(
            "ALTER TABLE transfer ADD COLUMN provider_hold INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}

impl<'a> Tx<'a> {
    /// Runs `f` as a step of this change: if it fails, what it wrote is undone and the rest
    /// of the change stands. The outer error is a failure of the store itself (the step
    /// could not be undone), which must fail the whole change.
    pub fn attempt<R, E>(
        &mut self,
        f: impl FnOnce(&mut Tx<'a>) -> Result<R, E>,
    ) -> Result<Result<R, E>> {
        self.exec("SAVEPOINT step", [])
            .context("starting a step of a change")?;
        let (changed, enqueued) = (self.changed.len(), self.enqueued);
        let out = f(self);
        if out.is_err() {
            self.exec("ROLLBACK TO step", [])
                .context("undoing a failed step of a change")?;
            self.changed.truncate(changed);
            self.enqueued = enqueued;
        }
        self.exec("RELEASE step", [])
            .context("finishing a step of a change")?;
        Ok(out)
    }

    /// Runs one statement, prepared once per connection.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.tx.prepare_cached(sql)?.execute(params)
    }

    /// Reads one row with a statement prepared once per connection.
    fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.tx.prepare_cached(sql)?.query_row(params, f)
    }

    /// Finds a negotiation by local id, inside the transaction.
    pub fn negotiation(&self, id: &str) -> Result<Option<Negotiation>> {
        Ok(self
            .row(
                &format!("SELECT {NEG_COLS} FROM negotiation WHERE id = ?1"),
                [id],
                negotiation_row,
            )
            .optional()?)
    }

    /// Finds a transfer by local id, inside the transaction.
    pub fn transfer(&self, id: &str) -> Result<Option<Transfer>> {
        Ok(self
            .row(
                &format!("SELECT {TR_COLS} FROM transfer WHERE id = ?1"),
                [id],
                transfer_row,
            )
            .optional()?)
    }

    fn provider_process_of_peer<T>(
        &self,
        table: &str,
        cols: &str,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
        peer_id: &str,
        consumer_pid: &str,
    ) -> Result<Option<T>> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {cols} FROM {table} WHERE consumer_pid = ?1 AND peer_id = ?2 AND role = 'provider'"
            ))?
            .query_row([consumer_pid, peer_id], row)
            .optional()?)
    }

    /// An agreement by id, inside the transaction.
    pub fn agreement_negotiation(&self, agreement_id: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .row(
                "SELECT dataset_id, assignee FROM agreement WHERE id = ?1",
                [agreement_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Inserts a new negotiation and records its first state.
    pub fn insert_negotiation(&mut self, n: &Negotiation, note: &str) -> Result<()> {
        self.exec(
            &format!("INSERT INTO negotiation ({NEG_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
            params![
                n.id,
                n.role.as_str(),
                n.provider_pid,
                n.consumer_pid,
                n.peer_id,
                n.peer_address,
                n.state.as_str(),
                n.dataset_id,
                n.offer.to_string(),
                n.agreement_id,
                n.error,
                ts(n.created_at),
                ts(n.updated_at)
            ],
        )?;
        self.record(&n.id, n.state.as_str(), note)
    }

    /// Saves a changed negotiation; records history when the state changed.
    pub fn update_negotiation(&mut self, n: &Negotiation, note: &str) -> Result<()> {
        let old = self.old_state("negotiation", &n.id, n.consumer_pid.as_deref())?;
        self.exec(
            "UPDATE negotiation SET provider_pid = ?2, state = ?3, offer = ?4, agreement_id = ?5, error = ?6, peer_address = ?7, updated_at = ?8 WHERE id = ?1",
            params![
                n.id,
                n.provider_pid,
                n.state.as_str(),
                n.offer.to_string(),
                n.agreement_id,
                n.error,
                n.peer_address,
                ts(now())
            ],
        )?;
        if old != n.state.as_str() {
            self.record(&n.id, n.state.as_str(), note)?;
        }
        Ok(())
    }

    /// The stored state of process `id` in `table`; writes `consumer_pid` first if it changed
    /// (the column is indexed: writing it unchanged would still rewrite its index entry).
    fn old_state(&self, table: &str, id: &str, consumer_pid: Option<&str>) -> Result<String> {
        let (state, stored): (String, Option<String>) = self.row(
            &format!("SELECT state, consumer_pid FROM {table} WHERE id = ?1"),
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if stored.as_deref() != consumer_pid {
            self.exec(
                &format!("UPDATE {table} SET consumer_pid = ?2 WHERE id = ?1"),
                params![id, consumer_pid],
            )?;
        }
        Ok(state)
    }

    /// Inserts an agreement; a negotiation has at most one.
    pub fn insert_agreement(&mut self, a: &Agreement) -> Result<()> {
        self.exec(
            "INSERT INTO agreement (id, negotiation_id, dataset_id, policy, assigner, assignee, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![a.id, a.negotiation_id, a.dataset_id, a.policy.to_string(), a.assigner, a.assignee, ts(a.created_at)],
        ).context("recording the agreement")?;
        Ok(())
    }

    /// Inserts a new transfer and records its first state.
    pub fn insert_transfer(&mut self, t: &Transfer, note: &str) -> Result<()> {
        self.exec(
            &format!("INSERT INTO transfer ({TR_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
            params![
                t.id,
                t.role.as_str(),
                t.provider_pid,
                t.consumer_pid,
                t.peer_id,
                t.peer_address,
                t.agreement_id,
                t.dataset_id,
                t.format,
                t.state.as_str(),
                t.data_address.as_ref().map(Value::to_string),
                t.error,
                ts(t.created_at),
                ts(t.updated_at),
                t.provider_hold
            ],
        )?;
        self.record(&t.id, t.state.as_str(), note)
    }

    /// Saves a changed transfer; records history when the state changed.
    pub fn update_transfer(&mut self, t: &Transfer, note: &str) -> Result<()> {
        let old = self.old_state("transfer", &t.id, t.consumer_pid.as_deref())?;
        self.exec(
            "UPDATE transfer SET provider_pid = ?2, state = ?3, data_address = ?4, error = ?5, updated_at = ?6, provider_hold = ?7 WHERE id = ?1",
            params![
                t.id,
                t.provider_pid,
                t.state.as_str(),
                t.data_address.as_ref().map(Value::to_string),
                t.error,
                ts(now()),
                t.provider_hold
            ],
        )?;
        if old != t.state.as_str() {
            self.record(&t.id, t.state.as_str(), note)?;
        }
        Ok(())
    }

    /// Queues a message for delivery after the commit.
    pub fn enqueue(
        &mut self,
        process_id: &str,
        purpose: &str,
        url: &str,
        body: &Value,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO outbox (process_id, purpose, url, body, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![process_id, purpose, url, body.to_string(), ts(now())],
        )?;
        self.enqueued = true;
        Ok(())
    }

    /// Removes a delivered message.
    pub fn dequeue(&mut self, id: i64) -> Result<()> {
        self.exec("DELETE FROM outbox WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Drops every queued message of a process (it was terminated locally).
    pub fn drop_queued(&mut self, process_id: &str) -> Result<()> {
        self.exec("DELETE FROM outbox WHERE process_id = ?1", [process_id])?;
        Ok(())
    }

    fn record(&mut self, id: &str, state: &str, note: &str) -> Result<()> {
        self.exec(
            "INSERT INTO history (process_id, state, note, at) VALUES (?1, ?2, ?3, ?4)",
            params![id, state, note, ts(now())],
        )?;
        self.changed.push(id.to_string());
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use futures::FutureExt;
    use serde_json::json;

    pub(crate) fn negotiation(id: &str) -> Negotiation {
        Negotiation {
            id: id.into(),
            role: Role::Consumer,
            provider_pid: None,
            consumer_pid: Some(id.into()),
            peer_id: "did:web:p".into(),
            peer_address: "https://p/dsp".into(),
            state: NegotiationState::Requested,
            dataset_id: "urn:d".into(),
            offer: serde_json::json!({"@id": "urn:o"}),
            agreement_id: None,
            error: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    #[tokio::test]
    async fn state_and_outbox_commit_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let failed: Result<()> = store
            .transact(|tx| -> Result<()> {
                tx.insert_negotiation(&negotiation("n1"), "requested")?;
                tx.enqueue("n1", "x", "https://p/dsp", &serde_json::json!({}))?;
                Err(anyhow!("boom"))
            })
            .await;
        assert!(failed.is_err());
        assert!(store.negotiation("n1").unwrap().is_none());
        assert!(store.queued_after(0, 10).unwrap().is_empty());

        let watch = store.watch("n1");
        let changed = watch.changed();
        store
            .transact(|tx| -> Result<()> {
                tx.insert_negotiation(&negotiation("n1"), "requested")?;
                tx.enqueue("n1", "x", "https://p/dsp/1", &serde_json::json!({"a": 1}))?;
                tx.enqueue("n1", "x", "https://p/dsp/2", &serde_json::json!({"a": 2}))
            })
            .await
            .unwrap();
        assert!(
            changed.now_or_never().is_some(),
            "the commit wakes the watcher"
        );
        let queued = store.queued_after(0, 10).unwrap();
        assert_eq!(queued.len(), 2);
        assert!(queued[0].id < queued[1].id, "in queue order");
        let head = store.outbox_item(queued[0].id).unwrap().unwrap();
        assert_eq!(head.url, "https://p/dsp/1");
        assert_eq!(
            head.peer_id.as_deref(),
            Some("did:web:p"),
            "the process's peer"
        );
        let after_head = store.queued_after(queued[0].id, 10).unwrap();
        assert_eq!(after_head.len(), 1);
        assert_eq!(after_head[0].id, queued[1].id);
        assert_eq!(
            store.queued_after(0, 1).unwrap().len(),
            1,
            "the limit holds"
        );
    }

    #[tokio::test]
    async fn a_cached_statement_is_not_planned_again_for_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        for (after, limit) in [(0, 10), (5, 1), (7, 1024)] {
            store.queued_after(after, limit).unwrap();
        }
        let reader = store.reader.lock().unwrap();
        let stmt = reader.prepare_cached(QUEUED_AFTER).unwrap();
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "binding LIMIT ? anew must not re-plan the statement"
        );
    }

    /// Inserts negotiation `id` in a change of its own.
    async fn insert(store: &Store, id: &str) {
        let n = negotiation(id);
        store
            .transact(|tx| tx.insert_negotiation(&n, "requested"))
            .await
            .unwrap();
    }

    /// Waits up to 10 s for `done` to hold.
    fn wait_until(done: impl Fn() -> bool) {
        let waited = std::time::Instant::now();
        while !done() && waited.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[tokio::test]
    async fn the_log_is_checkpointed_off_the_commit_path_every_so_many_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open_with(&path, 5, WAL_SIZE_LIMIT).unwrap();
        let autocheckpoint: i64 = store
            .lock()
            .conn
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
            .unwrap();
        assert_eq!(autocheckpoint, 0, "no checkpoint inside a commit");
        let done = || store.checkpoints.done.load(Ordering::Relaxed);
        for i in 0..4 {
            insert(&store, &format!("n{i}")).await;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(done(), 0, "not before the fifth commit");
        insert(&store, "n4").await;
        wait_until(|| done() > 0);
        assert_eq!(done(), 1, "one checkpoint after five commits");
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.negotiations(10).unwrap().len(), 5, "nothing lost");
    }

    #[tokio::test]
    async fn the_log_file_shrinks_back_to_its_limit_once_checkpointed() {
        const LIMIT: u64 = 32 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let wal = dir.path().join("state.db-wal");
        let store = Store::open_with(&path, usize::MAX, LIMIT as i64).unwrap();
        for i in 0..40 {
            insert(&store, &format!("n{i}")).await;
        }
        let grown = std::fs::metadata(&wal).unwrap().len();
        assert!(grown > 2 * LIMIT, "the log grew to {grown} bytes");
        store.checkpoints.wake.try_send(()).unwrap();
        wait_until(|| store.checkpoints.done.load(Ordering::Relaxed) > 0);
        // the next commit starts the log over and cuts the file down to the limit
        insert(&store, "after").await;
        let now = std::fs::metadata(&wal).unwrap().len();
        assert!(now <= LIMIT, "the log file still has {now} bytes");
        assert_eq!(store.negotiations(100).unwrap().len(), 41, "nothing lost");
    }

    /// A reader keeps the `PASSIVE` checkpoints from reaching the end of the log while
    /// changes go on, as constant load does: the log must still start over.
    #[tokio::test]
    async fn a_log_that_checkpoints_cannot_catch_up_with_is_restarted() {
        const LIMIT: u64 = 32 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open_with(&path, 5, LIMIT as i64).unwrap();
        insert(&store, "n0").await;
        let reader = connect(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM negotiation", [], |r| r.get(0))
            .unwrap();
        for i in 1..40 {
            insert(&store, &format!("n{i}")).await;
        }
        assert_eq!(store.checkpoints.restarts.load(Ordering::Relaxed), 0);
        reader.execute_batch("COMMIT").unwrap();
        for i in 40..80 {
            insert(&store, &format!("n{i}")).await;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(store.checkpoints.restarts.load(Ordering::Relaxed) > 0);
        let now = std::fs::metadata(dir.path().join("state.db-wal"))
            .unwrap()
            .len();
        assert!(now <= 4 * LIMIT, "the log file has {now} bytes");
        assert_eq!(store.negotiations(100).unwrap().len(), 80, "nothing lost");
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .transact(|tx| -> Result<()> {
                    tx.insert_negotiation(&negotiation("n1"), "requested")
                })
                .await
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let n = store.negotiation("n1").unwrap().unwrap();
        assert_eq!(n.state, NegotiationState::Requested);
        assert_eq!(store.history("n1").unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_share_commits_and_a_failed_one_stays_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let watches: Vec<_> = (0..64).map(|i| store.watch(&format!("n{i}"))).collect();
        let changed: Vec<_> = watches.iter().map(ProcessWatch::changed).collect();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .transact(|tx| -> Result<()> {
                            tx.insert_negotiation(&negotiation(&format!("n{i}")), "requested")?;
                            tx.enqueue(&format!("n{i}"), "x", "https://p/dsp", &json!({}))?;
                            // every seventh change fails after writing: none of it may stay
                            if i % 7 == 0 {
                                Err(anyhow!("refused"))
                            } else {
                                Ok(())
                            }
                        })
                        .await
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().is_ok(), i % 7 != 0, "change {i}");
        }
        for i in 0..64 {
            let stored = store.negotiation(&format!("n{i}")).unwrap();
            assert_eq!(stored.is_some(), i % 7 != 0, "negotiation n{i}");
        }
        assert_eq!(store.queued_after(0, 100).unwrap().len(), 64 - 10);
        for (i, c) in changed.into_iter().enumerate() {
            let woken = c.now_or_never().is_some();
            assert_eq!(
                woken,
                i % 7 != 0,
                "only committed changes wake watchers (n{i})"
            );
        }
    }

    /// Counts a change of ours and one of another task, so that a transaction the next
    /// change opens waits for its commit task instead of committing at once.
    fn other_changes_under_way(store: &Store) -> [Active<'_>; 2] {
        [Active::enter(&store.active), Active::enter(&store.active)]
    }

    #[tokio::test]
    async fn a_staged_change_is_invisible_to_reads_until_it_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let _under_way = other_changes_under_way(&store);
        let (_, mut done) = store
            .stage(|tx| -> Result<()> {
                tx.insert_negotiation(&negotiation("n1"), "requested")?;
                tx.enqueue("n1", "x", "https://p/dsp", &json!({}))
            })
            .unwrap();
        // the outbox must not see a message whose change may still fail to commit
        assert!(store.negotiation("n1").unwrap().is_none());
        assert!(store.queued_after(0, 10).unwrap().is_empty());
        done.wait_for(Option::is_some).await.unwrap();
        assert!(store.negotiation("n1").unwrap().is_some());
        assert_eq!(store.queued_after(0, 10).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_panicking_change_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let panicking = store.clone();
        let crashed = tokio::spawn(async move {
            panicking
                .transact(|tx| -> Result<()> {
                    tx.insert_negotiation(&negotiation("n1"), "requested")?;
                    panic!("a bug in a change");
                })
                .await
        })
        .await;
        assert!(crashed.is_err());
        store
            .transact(|tx| -> Result<()> { tx.insert_negotiation(&negotiation("n2"), "requested") })
            .await
            .unwrap();
        assert!(store.negotiation("n1").unwrap().is_none());
        assert!(store.negotiation("n2").unwrap().is_some());
    }

    #[tokio::test]
    async fn a_write_outside_a_change_commits_the_open_transaction_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let _under_way = other_changes_under_way(&store);
        let (_, done) = store
            .stage(|tx| -> Result<()> { tx.insert_negotiation(&negotiation("n1"), "requested") })
            .unwrap();
        store.kv_put("k", "v").unwrap();
        assert!(done.borrow().as_ref().is_some_and(Result::is_ok));
        assert!(store.negotiation("n1").unwrap().is_some());
        assert_eq!(store.kv_get("k").unwrap().as_deref(), Some("v"));
    }
}
