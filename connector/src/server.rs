//! HTTP listeners: the accept loops that put a [`PeerIdentity`] on every request of a
//! mutual-TLS connection, and plain HTTP for the management API on loopback.
//!
//! Every network client is held to [`Limits`]: the TLS handshake and a request's headers must
//! arrive within the header timeout (an idle keep-alive connection is closed after as long),
//! a request's body within the body timeout, and no client can take every connection: at most
//! `max_connections` are served at once (more wait in the kernel's backlog until one closes,
//! so the process never runs out of file descriptors) and at most `max_connections_per_ip`
//! from one address (more are closed at once). Errors of `accept` (out of descriptors) are
//! answered by backing off, never by spinning.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::config::HttpLimitsConfig;
use crate::tls::{PeerIdentity, participant_id_of};
use crate::visibility::PeerClaims;

/// Timeouts and connection limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest a client may take for the TLS handshake, and for a request's headers; an idle
    /// keep-alive connection is closed after as long.
    pub header_timeout: Duration,
    /// Longest a client may take to send a request's whole body, from the end of its headers.
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// Connections served at once from one IP address; more are closed at once.
    pub max_connections_per_ip: usize,
}

/// File descriptors kept for everything but the HTTP listeners' connections: the state
/// store, the catalogue log, the audit log, data files, the listeners, calls to peers.
const RESERVED_FDS: usize = 64;
/// The descriptor limit assumed where the process cannot read its own (not Linux).
const ASSUMED_FDS: usize = 1024;

impl Default for Limits {
    /// The defaults of a listener that has half of [`ASSUMED_FDS`] to itself.
    fn default() -> Self {
        Self::protocol(&HttpLimitsConfig::default(), ASSUMED_FDS)
    }
}

impl Limits {
    /// The DSP listener's limits: by default half of the descriptors `fds` left after the
    /// reserve (the Flight listener and the management listener share the rest), a quarter
    /// of those per address.
    pub fn protocol(cfg: &HttpLimitsConfig, fds: usize) -> Self {
        let budget = fds.saturating_sub(RESERVED_FDS);
        let max = cfg
            .max_connections
            .unwrap_or((budget / 2).clamp(16, 16_384));
        Self {
            header_timeout: Duration::from_secs(cfg.header_timeout_secs),
            body_timeout: Duration::from_secs(cfg.body_timeout_secs),
            max_connections: max,
            max_connections_per_ip: cfg.max_connections_per_ip.unwrap_or((max / 4).max(4)),
        }
    }

    /// The management listener's limits: an eighth of the descriptor budget, all of it open
    /// to one address (the operator's tools run on loopback).
    pub fn management(cfg: &HttpLimitsConfig, fds: usize) -> Self {
        let max = (fds.saturating_sub(RESERVED_FDS) / 8).clamp(4, 256);
        Self {
            max_connections: max,
            max_connections_per_ip: max,
            ..Self::protocol(cfg, fds)
        }
    }
}

/// The soft limit on the file descriptors this process may open (Linux, from
/// `/proc/self/limits`); [`ASSUMED_FDS`] where it cannot be read, none where unlimited.
pub fn open_files_limit() -> usize {
    let read = || -> Option<usize> {
        let text = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        let soft = line["Max open files".len()..].split_whitespace().next()?;
        Some(soft.parse().unwrap_or(usize::MAX))
    };
    read().unwrap_or(ASSUMED_FDS)
}

/// Binds a listener, saying which address is taken when it fails.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "cannot listen for the {what} on {addr}: the port is in use by another process; choose another port in the config or stop that process"
            )
        } else {
            anyhow::anyhow!("cannot listen for the {what} on {addr}: {e}")
        }
    })
}

/// Serves `app` over TLS; requests carry `Option<PeerIdentity>` as an extension.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let acceptor = TlsAcceptor::from(tls);
    accept_loop(listener, limits, shutdown, move |stream, remote| {
        let acceptor = acceptor.clone();
        let app = app.clone();
        async move {
            let handshake = acceptor.accept(stream);
            let tls = match tokio::time::timeout(limits.header_timeout, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => return debug!(%remote, "TLS handshake timed out"),
            };
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            let peer = cert
                .and_then(|c| participant_id_of(c).ok())
                .map(PeerIdentity);
            let claims = cert.map(PeerClaims::of).unwrap_or_default();
            serve_connection(TokioIo::new(tls), app, (peer, claims), remote, limits).await;
        }
    })
    .await
}

/// Serves `app` over plain HTTP (management API on loopback).
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    accept_loop(listener, limits, shutdown, move |stream, remote| {
        let app = app.clone();
        async move {
            let io = TokioIo::new(stream);
            serve_connection(io, app, (None, PeerClaims::default()), remote, limits).await
        }
    })
    .await
}

/// Shortest and longest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handle: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = PerIp::new(limits.max_connections_per_ip);
    let mut failures = 0u32;
    loop {
        // a free slot first: beyond the limit, clients wait in the backlog, and the process
        // keeps its descriptors for its files and for the clients it serves
        let slot = tokio::select! {
            _ = &mut shutdown => return,
            slot = open.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return, // the semaphore is never closed
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                failures = 0;
                let Some(ip_slot) = per_ip.take(remote.ip()) else {
                    debug!(%remote, "too many connections from this address: closed");
                    continue; // dropping the stream closes it
                };
                let _ = stream.set_nodelay(true);
                let served = handle(stream, remote);
                tokio::spawn(async move {
                    let _held: (OwnedSemaphorePermit, IpSlot) = (slot, ip_slot);
                    served.await
                });
            }
            // Out of file descriptors and the like: back off instead of spinning, longer
            // while it lasts; the pending connection waits in the backlog meanwhile.
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = ACCEPT_BACKOFF
                    .0
                    .saturating_mul(1 << failures.min(7))
                    .min(ACCEPT_BACKOFF.1);
                if failures == 1 || failures.is_multiple_of(100) {
                    warn!(error = %e, failures, pause_ms = pause.as_millis() as u64, "accept failed; backing off");
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Connections open per client address.
#[derive(Clone)]
struct PerIp {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

impl PerIp {
    fn new(max: usize) -> Self {
        Self {
            open: Arc::default(),
            max: max.max(1),
        }
    }

    /// A slot for one more connection from `ip`, if it has fewer than the maximum open.
    fn take(&self, ip: IpAddr) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            owner: self.clone(),
            ip,
        })
    }
}

/// One open connection of an address; frees its place when dropped (an address without
/// connections leaves the map, so the map never holds more than the connections open).
struct IpSlot {
    owner: PerIp,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    app: Router,
    (peer, claims): (Option<PeerIdentity>, PeerClaims),
    remote: SocketAddr,
    limits: Limits,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let mut req =
            req.map(|body| axum::body::Body::new(TimedBody::new(body, limits.body_timeout)));
        req.extensions_mut().insert(peer.clone());
        req.extensions_mut().insert(claims.clone());
        req.extensions_mut().insert(Remote(remote));
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // runs from the moment hyper waits for a request's head, so it also ends idle
        // keep-alive connections
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    if let Err(e) = builder.serve_connection(io, svc).await {
        debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// The client's socket address, as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub SocketAddr);

/// A request body that fails once its time is up: a client that sends part of a body and
/// then nothing must not hold its connection, and the handler reading it, forever. Handlers
/// answer the failure (see [`is_body_timeout`]); hyper then closes the connection, since its
/// body was not read to the end.
struct TimedBody {
    inner: Incoming,
    /// `None` for a request without a body.
    deadline: Option<Pin<Box<Sleep>>>,
    limit: Duration,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(limit)));
        Self {
            inner,
            deadline,
            limit,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    this.deadline = None;
                    Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))))
                }
                _ => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub struct BodyTimeout(Duration);

/// Whether reading a body failed because it did not arrive in time (answer 408).
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_descriptor_budget_unless_set() {
        let cfg = HttpLimitsConfig::default();
        let at_1024 = Limits::protocol(&cfg, 1024);
        assert_eq!(at_1024.max_connections, 480);
        assert_eq!(at_1024.max_connections_per_ip, 120);
        let mgmt = Limits::management(&cfg, 1024);
        assert_eq!(
            (mgmt.max_connections, mgmt.max_connections_per_ip),
            (120, 120)
        );
        assert!(
            at_1024.max_connections + mgmt.max_connections < 1024 - RESERVED_FDS,
            "both listeners stay inside the budget"
        );
        let tiny = Limits::protocol(&cfg, 40);
        assert_eq!(tiny.max_connections, 16);
        let set = HttpLimitsConfig {
            max_connections: Some(10),
            max_connections_per_ip: Some(3),
            ..cfg
        };
        let l = Limits::protocol(&set, 1024);
        assert_eq!((l.max_connections, l.max_connections_per_ip), (10, 3));
        assert_eq!(l.header_timeout, Duration::from_secs(10));
        assert!(open_files_limit() > 0);
    }

    #[test]
    fn an_address_gets_its_share_and_gives_it_back() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let first = per_ip.take(a).unwrap();
        let _second = per_ip.take(mapped).expect("the same address, IPv4-mapped");
        assert!(per_ip.take(a).is_none(), "a third is refused");
        assert!(per_ip.take("10.0.0.2".parse().unwrap()).is_some());
        drop(first);
        assert!(
            per_ip.take(a).is_some(),
            "a closed connection frees its place"
        );
    }
}
