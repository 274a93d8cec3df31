//! The threads queries run on, apart from the ones that answer DSP, management and health.
//!
//! DataFusion computes a batch inside the poll that asks for it, and spawns its partitions'
//! tasks onto the runtime it runs on. On the connector's main runtime a flood of cross joins
//! or big sorts kept every worker thread busy, and the provider's health and DSP answers
//! waited behind them for tens of seconds. So queries are planned and executed on a runtime
//! of their own ([`QueryWorkers`]): its threads run at a lower OS priority (nice
//! [`QUERY_NICE`], Linux), so that on a machine with few cores the control plane's threads
//! get a core as soon as they have work, and batches reach the protocol's task through a
//! small channel ([`Offloaded`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::{PreparedQuery, QueryError};

/// How much lower the query threads' priority is than the rest of the process (a nice
/// increment; an unprivileged process may always lower its own priority). 10 gives the
/// control plane's threads about ten times the CPU share of a query thread when both want it,
/// yet leaves the queries all the CPU nothing else asks for.
pub const QUERY_NICE: i32 = 10;

/// Batches computed ahead of the client: enough to overlap computing and sending, few enough
/// that a slow client holds little memory outside the query's pool.
const BATCHES_AHEAD: usize = 2;

/// Blocking threads (file reads) of the query runtime.
const MAX_BLOCKING_THREADS: usize = 64;

/// The query runtime; shut down (without waiting) when dropped.
#[derive(Debug)]
pub struct QueryWorkers {
    runtime: Option<Runtime>,
    handle: Handle,
}

/// Stack of each query thread (see [`QueryWorkers::new`]).
const QUERY_THREAD_STACK_BYTES: usize = 4 * 1024 * 1024;

impl QueryWorkers {
    /// A runtime of `threads` worker threads (0: one per core), named `sluis-query`.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(MAX_BLOCKING_THREADS)
            .thread_name("sluis-query")
            // queries are planned and run here: the query-size limits of the sandbox were
            // measured on 2 MiB stacks (sandbox.rs, `Limits`); twice that keeps headroom for
            // release/debug differences and DataFusion upgrades. Untouched pages cost nothing.
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Some(runtime),
            handle,
        })
    }

    /// The runtime, to serve the Flight listener on it as well.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `work` on the query threads and waits for its result. A panic in it, or the
    /// runtime shutting down, is [`QueryError::Unavailable`].
    pub async fn run<T, F>(&self, work: F) -> Result<T, QueryError>
    where
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
        T: Send + 'static,
    {
        // the caller giving up (its client went away) stops the work too
        let mut task = AbortOnDrop(self.handle.spawn(work.in_current_span()));
        (&mut task.0).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "a query task failed");
            Err(QueryError::Unavailable)
        })
    }

    /// Executes `query` on the query threads until `deadline`; its batches come through the
    /// returned stream. `hold` (the query's slot) is dropped when the query stops there: at
    /// its end, on an error, or as soon as the stream is dropped.
    pub async fn execute(
        &self,
        query: PreparedQuery,
        deadline: Instant,
        hold: impl Send + 'static,
    ) -> Result<Offloaded, QueryError> {
        let (started_tx, started) = oneshot::channel();
        let (tx, rx) = mpsc::channel(BATCHES_AHEAD);
        let pump = async move {
            let _hold = hold;
            let mut batches = match query.execute(deadline) {
                Ok(batches) => {
                    let _ = started_tx.send(Ok(batches.schema()));
                    batches
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            loop {
                let item = tokio::select! {
                    biased;
                    // the client went away: stop computing at once
                    _ = tx.closed() => return,
                    item = batches.next() => item,
                };
                let step = match item {
                    Some(item) => Step::Batch(item),
                    None => Step::End,
                };
                let end = matches!(step, Step::End);
                if tx.send(step).await.is_err() || end {
                    return;
                }
            }
        };
        self.handle.spawn(pump.in_current_span());
        let schema = started.await.map_err(|_| QueryError::Unavailable)??;
        Ok(Offloaded {
            schema,
            rx,
            finished: false,
        })
    }
}

impl Drop for QueryWorkers {
    fn drop(&mut self) {
        // dropping a runtime blocks until its tasks stop, which panics on an async thread;
        // running queries end with `Unavailable` (see `Offloaded`)
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts a task when its awaiting caller is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lowers the calling thread's scheduling priority by [`QUERY_NICE`] (on Linux the nice
/// value is per thread). Elsewhere, or if refused, the thread keeps its priority: queries
/// still run apart from the control plane, only without the OS's preference.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // setpriority sets a value, not an increment: from the thread's own (inherited) one
        let nice = (current_nice() + QUERY_NICE).min(19);
        // SAFETY: setpriority takes integers only; `who` 0 is the calling thread.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, nice) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "cannot lower the priority of a query thread"
            );
        }
    }
}

/// The calling thread's nice value (0 off Linux). A failing call answers -1, a valid nice
/// value too: the priority is then lowered from -1, which is harmless.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority takes integers only; `who` 0 is the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS as _, 0) }
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// What the query task sends: a batch or error, then the end.
enum Step {
    Batch(Result<RecordBatch, QueryError>),
    End,
}

/// The batches of a query executing on the query threads. A query task that stops without
/// saying it ended (it panicked, or the runtime shut down) ends the stream with
/// [`QueryError::Unavailable`], never as if the result were complete.
pub struct Offloaded {
    schema: SchemaRef,
    rx: mpsc::Receiver<Step>,
    finished: bool,
}

impl Offloaded {
    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Stream for Offloaded {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let step = futures::ready!(self.rx.poll_recv(cx));
        Poll::Ready(match step {
            Some(Step::Batch(item)) => Some(item),
            Some(Step::End) => {
                self.finished = true;
                None
            }
            None => {
                self.finished = true;
                tracing::warn!("a query stopped on the query threads without ending");
                Some(Err(QueryError::Unavailable))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_query_threads_at_a_lower_priority() {
        let workers = QueryWorkers::new(1).unwrap();
        let (name, nice) = workers
            .run(async {
                let name = std::thread::current().name().map(str::to_string);
                Ok((name, current_nice()))
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("sluis-query"));
        if cfg!(target_os = "linux") {
            assert_eq!(nice, (current_nice() + QUERY_NICE).min(19));
        }
        let panicked = workers.run(async { panic!("boom") }).await;
        let panicked: Result<(), QueryError> = panicked;
        assert_eq!(panicked.unwrap_err(), QueryError::Unavailable);
    }
}
