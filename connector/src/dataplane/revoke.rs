//! Ending running queries when their grant ends.
//!
//! A token is checked when a call arrives, but a stream may run for minutes. Suspending,
//! completing or terminating the transfer, or the token's expiry, must end every query still
//! streaming under it, not only refuse the next one. [`AccessControl::revoked`] gives, per
//! query, a future that completes when the grant ends; [`Revocable`] wraps the query's batches
//! and ends the stream with that refusal (gRPC `PERMISSION_DENIED`; over HTTP the chunked body
//! is aborted, so the client sees a truncated, failed response) as soon as it completes, even
//! while DataFusion is busy with the next batch.
//!
//! [`AccessControl::revoked`]: super::AccessControl::revoked

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};

use super::{AccessError, QueryError, ResultStream};

/// Completes with the refusal once a grant is revoked or expires (see
/// [`AccessControl::revoked`](super::AccessControl::revoked)).
pub type Revoked = Pin<Box<dyn Future<Output = AccessError> + Send + 'static>>;

/// A grant that never ends on its own (for access controls without revocation).
pub fn never() -> Revoked {
    Box::pin(futures::future::pending())
}

/// The batches of a query, ended by the revocation of its grant.
pub struct Revocable<S = ResultStream> {
    inner: S,
    revoked: Revoked,
    ended: bool,
}

impl<S> Revocable<S> {
    /// `inner`, ended with the refusal `revoked` completes with.
    pub fn new(inner: S, revoked: Revoked) -> Self {
        Self {
            inner,
            revoked,
            ended: false,
        }
    }

    /// The stream this wraps.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Stream for Revocable<S>
where
    S: Stream<Item = Result<RecordBatch, QueryError>> + Unpin,
{
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // checked first: a producer that is always ready must not outrun the revocation
        if let Poll::Ready(refusal) = self.revoked.as_mut().poll(cx) {
            self.ended = true;
            tracing::info!(refusal = %refusal, "the grant ended: the running query is stopped");
            return Poll::Ready(Some(Err(QueryError::Access(refusal))));
        }
        let item = futures::ready!(self.inner.poll_next_unpin(cx));
        if !matches!(item, Some(Ok(_))) {
            self.ended = true;
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap()
    }

    #[tokio::test]
    async fn an_endless_stream_ends_with_the_refusal_once_revoked() {
        let endless = futures::stream::repeat_with(|| Ok(batch()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let revoked: Revoked = Box::pin(async move {
            let _ = rx.await;
            AccessError::PermissionDenied("the transfer is TERMINATED".into())
        });
        let mut stream = Revocable::new(endless, revoked);
        for _ in 0..3 {
            assert!(stream.next().await.unwrap().is_ok());
        }
        tx.send(()).unwrap();
        let ended = stream.next().await.unwrap().unwrap_err();
        assert_eq!(
            ended,
            QueryError::Access(AccessError::PermissionDenied(
                "the transfer is TERMINATED".into()
            ))
        );
        assert!(stream.next().await.is_none(), "nothing after the refusal");
    }

    #[tokio::test]
    async fn a_pending_producer_is_interrupted() {
        let stuck = futures::stream::pending::<Result<RecordBatch, QueryError>>();
        let revoked: Revoked = Box::pin(async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            AccessError::PermissionDenied("the access token has expired".into())
        });
        let mut stream = Revocable::new(stuck, revoked);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("the revocation wakes the stream")
            .unwrap();
        assert!(ended.is_err());
    }
}
