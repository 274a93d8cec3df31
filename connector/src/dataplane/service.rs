//! The Arrow Flight service of the data plane.
//!
//! - `DoGet`: the ticket is UTF-8 SQL over the granted table; an empty ticket means the whole
//!   table. The result streams batch by batch from DataFusion.
//! - `GetFlightInfo` / `GetSchema`: the descriptor is a `CMD` with SQL (empty: the whole
//!   table) or the `PATH` `[table_name]`.
//! - `ListFlights`: the granted dataset only.
//! - Flight SQL (see [`super::flight_sql`]): statements, prepared statements and the catalogue
//!   commands a Flight SQL driver (ADBC, JDBC) needs, over the same enforcement.
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
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, Span, field};

use super::flight_sql::{FlightSqlDataPlane, is_flight_sql, statement_sql};
use super::plane::{Caller, DataPlane, PURPOSE_HEADER};
use super::query::{PreparedQuery, select_all};
use super::{AccessControl, ActiveGrant, DataPlaneConfig, QueryError};

/// The Flight service; see [`super::serve`]. Flight SQL commands (protobuf `Any` messages of
/// the `arrow.flight.protocol.sql` package) in tickets, descriptors and actions go to
/// `FlightSqlDataPlane`; everything else is plain Flight with SQL text.
pub struct FlightDataPlane {
    plane: DataPlane,
    sql: FlightSqlDataPlane,
}

impl FlightDataPlane {
    /// A service deciding access with `access`, within the limits of `cfg`.
    pub fn new(access: Arc<dyn AccessControl>, cfg: DataPlaneConfig) -> Self {
        Self::with_plane(DataPlane::new(access, cfg))
    }

    /// A service over `plane`, which other protocols may share.
    pub fn with_plane(plane: DataPlane) -> Self {
        Self {
            sql: FlightSqlDataPlane::new(plane.clone()),
            plane,
        }
    }

    /// The FlightInfo of `descriptor`, or of the whole granted table for None.
    async fn flight_info<T: Sync>(
        &self,
        request: &Request<T>,
        descriptor: Option<FlightDescriptor>,
    ) -> Result<FlightInfo, QueryError> {
        let caller = authorize(&self.plane, request)?;
        let descriptor = descriptor
            .unwrap_or_else(|| FlightDescriptor::new_path(vec![caller.grant.table_name.clone()]));
        let sql = descriptor_sql(&descriptor, &caller.grant)?;
        let prepared = self
            .plane
            .plan(&caller, &sql, "flight", self.plane.deadline())
            .await?;
        info_for(&prepared, Ticket::new(sql), descriptor)
    }

    async fn schema(
        &self,
        request: &Request<FlightDescriptor>,
    ) -> Result<SchemaResult, QueryError> {
        let caller = authorize(&self.plane, request)?;
        let descriptor = request.get_ref();
        let sql = descriptor_sql(descriptor, &caller.grant)?;
        let prepared = self
            .plane
            .plan(&caller, &sql, "flight", self.plane.deadline())
            .await?;
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
        request: &Request<Ticket>,
    ) -> Result<BoxStream<'static, Result<FlightData, Status>>, QueryError> {
        let caller = authorize(&self.plane, request)?;
        let ticket = request.get_ref();
        let sql = ticket_sql(&ticket.ticket, &caller.grant)?;
        stream_query(&self.plane, &caller, &sql, "flight").await
    }
}

/// Verifies the call's `authorization` metadata for the participant of its client
/// certificate, and reads its declared purpose.
pub(super) fn authorize<T>(plane: &DataPlane, request: &Request<T>) -> Result<Caller, QueryError> {
    let metadata = request.metadata();
    let header = |name: &str| metadata.get(name).map(|v| v.as_bytes());
    plane.authorize(
        header("authorization"),
        header(PURPOSE_HEADER),
        holder(request),
    )
}

/// The participant id of the call's client certificate (verified against the data-space CA
/// by the TLS listener), if it presented one.
fn holder<T>(request: &Request<T>) -> Option<String> {
    let certs = request.peer_certs()?;
    crate::tls::participant_id_of(certs.first()?).ok()
}

/// Runs `sql` and encodes its batches as Flight data, counting the bytes sent.
pub(super) async fn stream_query(
    plane: &DataPlane,
    caller: &Caller,
    sql: &str,
    channel: &'static str,
) -> Result<BoxStream<'static, Result<FlightData, Status>>, QueryError> {
    let results = plane.run(caller, sql, channel).await?;
    let schema = results.schema();
    let tally = results.tally();
    let batches = results.map_err(|e| FlightError::Tonic(Box::new(Status::from(e))));
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .inspect_ok(move |data| tally.add_bytes(data.data_header.len() + data.data_body.len()))
        .map_err(Status::from);
    Ok(flight.boxed())
}

/// A span per call, with the transfer and agreement ids filled in once the token is verified.
pub(super) fn call_span(method: &'static str) -> Span {
    tracing::info_span!(
        "flight",
        method,
        transfer_id = field::Empty,
        agreement_id = field::Empty
    )
}

/// Logs a refused or failed call and turns it into a gRPC status.
pub(super) fn refuse(e: QueryError) -> Status {
    match &e {
        QueryError::Access(_) | QueryError::Refused { .. } | QueryError::Invalid(_) => {
            tracing::info!(refusal = %e, "call refused");
        }
        _ => tracing::warn!(error = %e, "call failed"),
    }
    Status::from(e)
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
        DescriptorType::Cmd if is_flight_sql(&descriptor.cmd) => statement_sql(&descriptor.cmd),
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

/// A FlightInfo with one endpoint on this same server, whose ticket is `ticket`.
pub(super) fn info_for(
    prepared: &PreparedQuery,
    ticket: Ticket,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, QueryError> {
    let info = FlightInfo::new()
        .try_with_schema(&prepared.schema)
        .map_err(|e| {
            tracing::warn!(error = %e, "encoding a schema failed");
            QueryError::Failed
        })?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(info)
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported: this data plane is read-only; use DoGet, GetFlightInfo, GetSchema, ListFlights or Flight SQL queries"
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
        self.flight_info(&request, None)
            .instrument(call_span("ListFlights"))
            .await
            .map(|info| Response::new(futures::stream::iter([Ok(info)]).boxed()))
            .map_err(refuse)
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let descriptor = request.get_ref();
        if descriptor.r#type() == DescriptorType::Cmd && is_flight_sql(&descriptor.cmd) {
            return self.sql.get_flight_info_checked(request).await;
        }
        let descriptor = descriptor.clone();
        self.flight_info(&request, Some(descriptor))
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
        self.schema(&request)
            .instrument(call_span("GetSchema"))
            .await
            .map(Response::new)
            .map_err(refuse)
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        if is_flight_sql(&request.get_ref().ticket) {
            return self.sql.do_get_checked(request).await;
        }
        self.results(&request)
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
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        if FlightSqlDataPlane::ACTIONS.contains(&request.get_ref().r#type.as_str()) {
            return self.sql.do_action_checked(request).await;
        }
        Err(unimplemented("this action"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = FlightSqlDataPlane::ACTIONS.map(|name| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: format!("Flight SQL {name} (see the Flight SQL specification)"),
            })
        });
        Ok(Response::new(futures::stream::iter(actions).boxed()))
    }
}
