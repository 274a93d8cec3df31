//! The Arrow Flight service of the data plane.
//!
//! - `DoGet`: the ticket is UTF-8 SQL over the granted table; an empty ticket means the whole
//!   table. The result streams batch by batch from DataFusion.
//! - `GetFlightInfo` / `GetSchema`: the descriptor is a `CMD` with SQL (empty: the whole
//!   table) or the `PATH` `[table_name]`.
//! - `ListFlights`: the granted dataset only.
//! - Everything else is `UNIMPLEMENTED`: the data plane is read-only.

use std::sync::Arc;

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, Span, field};

use super::query::{PreparedQuery, prepare, select_all};
use super::{AccessControl, AccessError, ActiveGrant, DataPlaneConfig, QueryError};

/// The Flight service; see [`super::serve`].
pub struct FlightDataPlane {
    access: Arc<dyn AccessControl>,
    cfg: Arc<DataPlaneConfig>,
    /// One permit per running query.
    slots: Arc<Semaphore>,
}

impl FlightDataPlane {
    /// A service deciding access with `access`, within the limits of `cfg`.
    pub fn new(access: Arc<dyn AccessControl>, cfg: DataPlaneConfig) -> Self {
        let slots = Arc::new(Semaphore::new(cfg.max_concurrent_queries.max(1)));
        Self {
            access,
            cfg: Arc::new(cfg),
            slots,
        }
    }

    /// Verifies the call's bearer token; records the grant's ids on the call's span.
    fn authorize(&self, metadata: &MetadataMap) -> Result<(String, ActiveGrant), QueryError> {
        let token = bearer_token(metadata)?;
        let grant = self.access.authorize(&token, None)?;
        let span = Span::current();
        span.record("transfer_id", grant.transfer_id.as_str());
        span.record("agreement_id", grant.agreement_id.as_str());
        Ok((token, grant))
    }

    /// Plans `sql` for `grant` before `deadline`, then asks access control again with the
    /// columns the query reads.
    async fn plan(
        &self,
        token: &str,
        grant: &ActiveGrant,
        sql: &str,
        deadline: Instant,
    ) -> Result<PreparedQuery, QueryError> {
        let prepared = timeout_at(deadline, prepare(grant, sql, &self.cfg))
            .await
            .map_err(|_| QueryError::Timeout)??;
        self.access.authorize(token, Some(&prepared.columns))?;
        Ok(prepared)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.cfg.query_timeout
    }

    /// The FlightInfo of `descriptor`, or of the whole granted table for None.
    async fn flight_info(
        &self,
        metadata: &MetadataMap,
        descriptor: Option<FlightDescriptor>,
    ) -> Result<FlightInfo, QueryError> {
        let (token, grant) = self.authorize(metadata)?;
        let descriptor = descriptor
            .unwrap_or_else(|| FlightDescriptor::new_path(vec![grant.table_name.clone()]));
        let sql = descriptor_sql(&descriptor, &grant)?;
        let prepared = self.plan(&token, &grant, &sql, self.deadline()).await?;
        info_for(&prepared, sql, descriptor)
    }

    async fn schema(
        &self,
        metadata: &MetadataMap,
        descriptor: &FlightDescriptor,
    ) -> Result<SchemaResult, QueryError> {
        let (token, grant) = self.authorize(metadata)?;
        let sql = descriptor_sql(descriptor, &grant)?;
        let prepared = self.plan(&token, &grant, &sql, self.deadline()).await?;
        SchemaResult::try_from(SchemaAsIpc::new(
            &prepared.schema,
            &IpcWriteOptions::default(),
        ))
        .map_err(|e| {
            tracing::warn!(error = %e, "encoding a schema failed");
            QueryError::Failed
        })
    }

    async fn results(
        &self,
        metadata: &MetadataMap,
        ticket: &Ticket,
    ) -> Result<BoxStream<'static, Result<FlightData, Status>>, QueryError> {
        let deadline = self.deadline();
        let (token, grant) = self.authorize(metadata)?;
        let sql = ticket_sql(&ticket.ticket, &grant)?;
        let slot = timeout_at(deadline, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| QueryError::Timeout)?
            .map_err(|_| QueryError::Unavailable)?;
        let prepared = self.plan(&token, &grant, &sql, deadline).await?;
        self.access.record_query(&grant, &sql)?;
        let results = timeout_at(deadline, prepared.execute(deadline))
            .await
            .map_err(|_| QueryError::Timeout)??;
        let schema = results.schema();
        let span = Span::current();
        let batches = results.map(move |batch| {
            // the slot is held until the last batch has been produced
            let _slot = &slot;
            let _entered = span.enter();
            batch.map_err(|e| {
                tracing::info!(error = %e, "query stopped while streaming");
                FlightError::Tonic(Box::new(Status::from(e)))
            })
        });
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(flight.boxed())
    }
}

/// A span per call, with the transfer and agreement ids filled in once the token is verified.
fn call_span(method: &'static str) -> Span {
    tracing::info_span!(
        "flight",
        method,
        transfer_id = field::Empty,
        agreement_id = field::Empty
    )
}

/// Logs a refused or failed call and turns it into a gRPC status.
fn refuse(e: QueryError) -> Status {
    match &e {
        QueryError::Access(_) | QueryError::Refused { .. } | QueryError::Invalid(_) => {
            tracing::info!(refusal = %e, "call refused");
        }
        _ => tracing::warn!(error = %e, "call failed"),
    }
    Status::from(e)
}

/// The token from `authorization: Bearer <token>`.
fn bearer_token(metadata: &MetadataMap) -> Result<String, QueryError> {
    let unauthenticated = |why: &str| {
        QueryError::Access(AccessError::Unauthenticated(format!(
            "{why}: send the transfer's token in the `authorization` header as `Bearer <token>`"
        )))
    };
    let value = metadata
        .get("authorization")
        .ok_or_else(|| unauthenticated("no authorization header"))?;
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("the authorization header is not ASCII"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauthenticated("the authorization header has no bearer token"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(unauthenticated(
            "the authorization header has no bearer token",
        ));
    }
    Ok(token.to_string())
}

/// The SQL of a ticket or command: UTF-8 text, empty for the whole table.
fn ticket_sql(bytes: &[u8], grant: &ActiveGrant) -> Result<String, QueryError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(select_all(&grant.table_name));
    }
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| QueryError::Invalid("the ticket must be SQL text in UTF-8".into()))
}

/// The SQL a descriptor stands for: its `CMD`, or the whole table for `PATH [table_name]`.
fn descriptor_sql(
    descriptor: &FlightDescriptor,
    grant: &ActiveGrant,
) -> Result<String, QueryError> {
    match descriptor.r#type() {
        DescriptorType::Cmd => ticket_sql(&descriptor.cmd, grant),
        DescriptorType::Path if descriptor.path == [grant.table_name.as_str()] => {
            Ok(select_all(&grant.table_name))
        }
        DescriptorType::Path => Err(QueryError::refused(
            "granted-table",
            format!(
                "the only path this transfer serves is [\"{}\"]",
                grant.table_name
            ),
        )),
        DescriptorType::Unknown => Err(QueryError::Invalid(
            "the descriptor must be a CMD with SQL or the PATH [table name]".into(),
        )),
    }
}

/// A FlightInfo whose one endpoint's ticket is the SQL itself, served by this same server.
fn info_for(
    prepared: &PreparedQuery,
    sql: String,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, QueryError> {
    let info = FlightInfo::new()
        .try_with_schema(&prepared.schema)
        .map_err(|e| {
            tracing::warn!(error = %e, "encoding a schema failed");
            QueryError::Failed
        })?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(sql)))
        .with_descriptor(descriptor);
    Ok(info)
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported: this data plane is read-only; use DoGet, GetFlightInfo, GetSchema or ListFlights"
    ))
}

#[tonic::async_trait]
impl FlightService for FlightDataPlane {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "Handshake is not used: send the transfer's token with every call as `authorization: Bearer <token>`",
        ))
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.flight_info(request.metadata(), None)
            .instrument(call_span("ListFlights"))
            .await
            .map(|info| Response::new(futures::stream::iter([Ok(info)]).boxed()))
            .map_err(refuse)
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let descriptor = request.get_ref().clone();
        self.flight_info(request.metadata(), Some(descriptor))
            .instrument(call_span("GetFlightInfo"))
            .await
            .map(Response::new)
            .map_err(refuse)
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "PollFlightInfo is not supported: use GetFlightInfo, queries are planned at once",
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.schema(request.metadata(), request.get_ref())
            .instrument(call_span("GetSchema"))
            .await
            .map(Response::new)
            .map_err(refuse)
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        self.results(request.metadata(), request.get_ref())
            .instrument(call_span("DoGet"))
            .await
            .map(Response::new)
            .map_err(refuse)
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(unimplemented("DoPut"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(unimplemented("DoExchange"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(unimplemented("DoAction"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(unimplemented("ListActions"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer_token(&metadata("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&metadata("bearer  abc ")).unwrap(), "abc");
        for bad in ["Basic abc", "Bearer ", "abc"] {
            let e = bearer_token(&metadata(bad)).unwrap_err();
            assert_eq!(
                Status::from(e).code(),
                tonic::Code::Unauthenticated,
                "{bad}"
            );
        }
        let e = bearer_token(&MetadataMap::new()).unwrap_err();
        assert_eq!(Status::from(e).code(), tonic::Code::Unauthenticated);
    }
}
