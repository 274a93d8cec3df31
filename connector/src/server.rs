//! HTTP listeners: the accept loops that put a [`PeerIdentity`] on every request of a
//! mutual-TLS connection, and plain HTTP for the management API on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::tls::{PeerIdentity, participant_id_of};
use crate::visibility::PeerClaims;

/// Longest a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let acceptor = TlsAcceptor::from(tls);
    accept_loop(listener, shutdown, move |stream, remote| {
        let acceptor = acceptor.clone();
        let app = app.clone();
        async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => return debug!(%remote, "TLS handshake timed out"),
            };
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            let peer = cert
                .and_then(|c| participant_id_of(c).ok())
                .map(PeerIdentity);
            let claims = cert.map(PeerClaims::of).unwrap_or_default();
            serve_connection(TokioIo::new(tls), app, (peer, claims), remote).await;
        }
    })
    .await
}

/// Serves `app` over plain HTTP (management API on loopback).
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    accept_loop(listener, shutdown, move |stream, remote| {
        let app = app.clone();
        async move {
            serve_connection(
                TokioIo::new(stream),
                app,
                (None, PeerClaims::default()),
                remote,
            )
            .await
        }
    })
    .await
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handle: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(handle(stream, remote));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    app: Router,
    (peer, claims): (Option<PeerIdentity>, PeerClaims),
    remote: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(peer.clone());
        req.extensions_mut().insert(claims.clone());
        req.extensions_mut().insert(Remote(remote));
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    if let Err(e) = builder.serve_connection(io, svc).await {
        debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// The client's socket address, as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub SocketAddr);
