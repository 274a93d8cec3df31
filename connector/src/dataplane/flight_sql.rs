//! Flight SQL on the data-plane listener, for drivers such as ADBC and JDBC.
//!
//! Every call carries the transfer's token as `authorization: Bearer <token>` (ADBC: the
//! `adbc.flight.sql.authorization_header` option) and runs through the same [`DataPlane`] as
//! plain Flight: the same sandbox, enforcement view, checks and audit.
//!
//! - `CommandStatementQuery`: planned at `GetFlightInfo`; the ticket is a
//!   `TicketStatementQuery` whose handle is the SQL text, planned and checked again at `DoGet`.
//! - Prepared statements (`CreatePreparedStatement`, `ClosePreparedStatement`,
//!   `CommandPreparedStatementQuery`): stateless. The handle is the SQL text, so nothing is kept
//!   between calls and every execution is authorized and planned anew; a handle grants nothing
//!   that sending the SQL would not. Parameters are not supported (inline the values).
//! - Catalogue commands show only the contracted dataset: `GetCatalogs` (`datafusion`),
//!   `GetDbSchemas` (`public`), `GetTables` (the granted table, with its enforced schema),
//!   `GetTableTypes` (`TABLE`) and `GetSqlInfo` (read-only SQL server, no transactions).

use std::sync::OnceLock;

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, Command, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::QueryError;
use super::plane::{Caller, DataPlane};
use super::query::select_all;
use super::sandbox::{DEFAULT_CATALOG, DEFAULT_SCHEMA};
use super::service::{authorize, call_span, info_for, refuse, stream_query};

/// The protobuf package of Flight SQL messages, as it appears in `Any` type URLs.
const FLIGHT_SQL_TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// The only table type served.
const TABLE_TYPE: &str = "TABLE";

/// Whether a ticket or command is a Flight SQL message (else it is plain SQL text).
pub fn is_flight_sql(bytes: &[u8]) -> bool {
    Any::decode(bytes).is_ok_and(|any| any.type_url.starts_with(FLIGHT_SQL_TYPE_PREFIX))
}

/// What a consumer is told for a Flight SQL message that does not decode, or that this server
/// does not know: never the decoder's own message.
const MALFORMED: &str = "the Flight SQL command, ticket or action body is malformed or not one \
    this server serves: send one made by a Flight SQL client, or the ticket GetFlightInfo returned";

fn malformed() -> QueryError {
    QueryError::Invalid(MALFORMED.into())
}

/// Decodes a Flight SQL command or ticket; refuses one that does not decode or is unknown.
/// (arrow-flight's own dispatch answers those with the decoder's debug output, some as
/// `INTERNAL`.)
fn decode_command(bytes: &[u8]) -> Result<Command, QueryError> {
    let any = Any::decode(bytes).map_err(|_| malformed())?;
    match Command::try_from(any) {
        Ok(Command::Unknown(_)) | Err(_) => Err(malformed()),
        Ok(command) => Ok(command),
    }
}

/// Whether an action's body decodes as the request its type names.
fn action_body_decodes(action: &arrow_flight::Action) -> bool {
    let Ok(any) = Any::decode(&*action.body) else {
        return false;
    };
    match action.r#type.as_str() {
        "CreatePreparedStatement" => {
            matches!(
                any.unpack::<ActionCreatePreparedStatementRequest>(),
                Ok(Some(_))
            )
        }
        "ClosePreparedStatement" => {
            matches!(
                any.unpack::<ActionClosePreparedStatementRequest>(),
                Ok(Some(_))
            )
        }
        _ => false,
    }
}

/// The SQL of a Flight SQL statement or prepared-statement command, for `GetSchema`.
pub fn statement_sql(bytes: &[u8]) -> Result<String, QueryError> {
    let unsupported = || {
        QueryError::Invalid(
            "GetSchema takes SQL text or a Flight SQL statement or prepared-statement command"
                .into(),
        )
    };
    let any = Any::decode(bytes).map_err(|_| unsupported())?;
    if let Ok(Some(command)) = any.unpack::<CommandStatementQuery>() {
        return Ok(command.query);
    }
    match any.unpack::<CommandPreparedStatementQuery>() {
        Ok(Some(command)) => handle_sql(&command.prepared_statement_handle).map(str::to_string),
        _ => Err(unsupported()),
    }
}

/// The Flight SQL side of the data plane.
pub struct FlightSqlDataPlane {
    plane: DataPlane,
}

type FlightDataStream = BoxStream<'static, Result<arrow_flight::FlightData, Status>>;

impl FlightSqlDataPlane {
    /// The actions served (the other Flight SQL actions are transactions, savepoints and
    /// Substrait, which a read-only SQL data plane does not have).
    pub const ACTIONS: [&'static str; 2] = ["CreatePreparedStatement", "ClosePreparedStatement"];

    /// Flight SQL over `plane`.
    pub fn new(plane: DataPlane) -> Self {
        Self { plane }
    }

    /// `DoGet` with a Flight SQL ticket; a malformed one is `INVALID_ARGUMENT`.
    pub async fn do_get_checked(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        decode_command(&request.get_ref().ticket).map_err(refuse)?;
        FlightService::do_get(self, request).await
    }

    /// `GetFlightInfo` with a Flight SQL command; a malformed one is `INVALID_ARGUMENT`.
    pub async fn get_flight_info_checked(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        decode_command(&request.get_ref().cmd).map_err(refuse)?;
        FlightService::get_flight_info(self, request).await
    }

    /// A Flight SQL action; a body that does not decode is `INVALID_ARGUMENT`.
    pub async fn do_action_checked(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if !action_body_decodes(request.get_ref()) {
            return Err(refuse(malformed()));
        }
        FlightService::do_action(self, request).await
    }

    /// FlightInfo for `sql`, whose ticket is `ticket` (a Flight SQL message).
    async fn query_info(
        &self,
        request: Request<FlightDescriptor>,
        sql: &str,
        ticket: Vec<u8>,
    ) -> Result<FlightInfo, QueryError> {
        let caller = authorize(&self.plane, &request)?;
        let prepared = self
            .plane
            .plan(&caller, sql, "flight-sql", self.plane.deadline())
            .await?;
        info_for(&prepared, Ticket::new(ticket), request.into_inner())
    }

    /// Runs the SQL of a statement or prepared-statement handle.
    async fn run_handle(
        &self,
        request: &Request<Ticket>,
        handle: &[u8],
    ) -> Result<FlightDataStream, QueryError> {
        let caller = authorize(&self.plane, request)?;
        let sql = handle_sql(handle)?;
        stream_query(&self.plane, &caller, sql, "flight-sql").await
    }

    /// FlightInfo of a catalogue command: its result schema, and the command as the ticket.
    fn metadata_info(
        &self,
        request: Request<FlightDescriptor>,
        schema: SchemaRef,
        command: Vec<u8>,
    ) -> Result<FlightInfo, QueryError> {
        authorize(&self.plane, &request)?;
        FlightInfo::new()
            .try_with_schema(&schema)
            .map(|info| {
                info.with_endpoint(
                    arrow_flight::FlightEndpoint::new().with_ticket(Ticket::new(command)),
                )
                .with_descriptor(request.into_inner())
            })
            .map_err(encoding_failed)
    }

    /// The enforced schema of the granted table.
    async fn table_schema(&self, caller: &Caller) -> Result<SchemaRef, QueryError> {
        let sql = select_all(&caller.grant.table_name);
        let prepared = self
            .plane
            .plan(caller, &sql, "flight-sql", self.plane.deadline())
            .await?;
        Ok(prepared.schema)
    }

    async fn tables(
        &self,
        command: CommandGetTables,
        request: &Request<Ticket>,
    ) -> Result<RecordBatch, QueryError> {
        let caller = authorize(&self.plane, request)?;
        let schema = self.table_schema(&caller).await?;
        let mut builder = command.into_builder();
        builder
            .append(
                DEFAULT_CATALOG,
                DEFAULT_SCHEMA,
                &caller.grant.table_name,
                TABLE_TYPE,
                &schema,
            )
            .map_err(encoding_failed)?;
        builder.build().map_err(encoding_failed)
    }

    async fn create_prepared(
        &self,
        query: &ActionCreatePreparedStatementRequest,
        request: &Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, QueryError> {
        let caller = authorize(&self.plane, request)?;
        let prepared = self
            .plane
            .plan(&caller, &query.query, "flight-sql", self.plane.deadline())
            .await?;
        let schema = IpcMessage::try_from(SchemaAsIpc::new(
            &prepared.schema,
            &IpcWriteOptions::default(),
        ))
        .map_err(encoding_failed)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.clone().into(),
            dataset_schema: schema.0,
            parameter_schema: Default::default(),
        })
    }
}

/// The SQL text of a statement handle.
fn handle_sql(handle: &[u8]) -> Result<&str, QueryError> {
    std::str::from_utf8(handle)
        .map_err(|_| QueryError::Invalid("the statement handle is not one this server made".into()))
}

fn encoding_failed(e: impl std::fmt::Display) -> QueryError {
    tracing::warn!(error = %e, "encoding a Flight SQL result failed");
    QueryError::Failed
}

/// One record batch as a Flight data stream.
fn one_batch(batch: RecordBatch) -> FlightDataStream {
    FlightDataEncoderBuilder::new()
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from)
        .boxed()
}

/// What `GetSqlInfo` answers.
fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Sluis data plane");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        b.build()
            .unwrap_or_else(|e| unreachable!("static SQL info is valid: {e}"))
    })
}

/// Runs a call future inside a span and maps its error to a gRPC status.
async fn traced<T>(
    method: &'static str,
    call: impl std::future::Future<Output = Result<T, QueryError>>,
) -> Result<Response<T>, Status> {
    call.instrument(call_span(method))
        .await
        .map(Response::new)
        .map_err(refuse)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlDataPlane {
    type FlightService = FlightSqlDataPlane;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into(),
        }
        .as_any()
        .encode_to_vec();
        traced(
            "FlightSQL.GetFlightInfo.Statement",
            self.query_info(request, &query.query, ticket),
        )
        .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = command.as_any().encode_to_vec();
        traced("FlightSQL.GetFlightInfo.PreparedStatement", async {
            let sql = handle_sql(&command.prepared_statement_handle)?;
            self.query_info(request, sql, ticket).await
        })
        .await
    }

    async fn get_flight_info_catalogs(
        &self,
        command: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = command.into_builder().schema();
        let ticket = command.as_any().encode_to_vec();
        traced("FlightSQL.GetFlightInfo.Catalogs", async {
            self.metadata_info(request, schema, ticket)
        })
        .await
    }

    async fn get_flight_info_schemas(
        &self,
        command: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = command.clone().into_builder().schema();
        let ticket = command.as_any().encode_to_vec();
        traced("FlightSQL.GetFlightInfo.DbSchemas", async {
            self.metadata_info(request, schema, ticket)
        })
        .await
    }

    async fn get_flight_info_tables(
        &self,
        command: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = command.clone().into_builder().schema();
        let ticket = command.as_any().encode_to_vec();
        traced("FlightSQL.GetFlightInfo.Tables", async {
            self.metadata_info(request, schema, ticket)
        })
        .await
    }

    async fn get_flight_info_table_types(
        &self,
        command: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = command.into_builder().schema();
        let ticket = command.as_any().encode_to_vec();
        traced("FlightSQL.GetFlightInfo.TableTypes", async {
            self.metadata_info(request, schema, ticket)
        })
        .await
    }

    async fn get_flight_info_sql_info(
        &self,
        command: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = command.clone().into_builder(sql_info()).schema();
        let ticket = command.as_any().encode_to_vec();
        traced("FlightSQL.GetFlightInfo.SqlInfo", async {
            self.metadata_info(request, schema, ticket)
        })
        .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        traced(
            "FlightSQL.DoGet.Statement",
            self.run_handle(&request, &ticket.statement_handle),
        )
        .await
    }

    async fn do_get_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        traced(
            "FlightSQL.DoGet.PreparedStatement",
            self.run_handle(&request, &command.prepared_statement_handle),
        )
        .await
    }

    async fn do_get_catalogs(
        &self,
        command: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        traced("FlightSQL.DoGet.Catalogs", async {
            authorize(&self.plane, &request)?;
            let mut builder = command.into_builder();
            builder.append(DEFAULT_CATALOG);
            builder.build().map(one_batch).map_err(encoding_failed)
        })
        .await
    }

    async fn do_get_schemas(
        &self,
        command: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        traced("FlightSQL.DoGet.DbSchemas", async {
            authorize(&self.plane, &request)?;
            let mut builder = command.into_builder();
            builder.append(DEFAULT_CATALOG, DEFAULT_SCHEMA);
            builder.build().map(one_batch).map_err(encoding_failed)
        })
        .await
    }

    async fn do_get_tables(
        &self,
        command: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        traced("FlightSQL.DoGet.Tables", async {
            self.tables(command, &request).await.map(one_batch)
        })
        .await
    }

    async fn do_get_table_types(
        &self,
        command: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        traced("FlightSQL.DoGet.TableTypes", async {
            authorize(&self.plane, &request)?;
            let mut builder = command.into_builder();
            builder.append(TABLE_TYPE);
            builder.build().map(one_batch).map_err(encoding_failed)
        })
        .await
    }

    async fn do_get_sql_info(
        &self,
        command: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        traced("FlightSQL.DoGet.SqlInfo", async {
            authorize(&self.plane, &request)?;
            command
                .into_builder(sql_info())
                .build()
                .map(one_batch)
                .map_err(encoding_failed)
        })
        .await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.create_prepared(&query, &request)
            .instrument(call_span("FlightSQL.CreatePreparedStatement"))
            .await
            .map_err(refuse)
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // stateless handles: nothing to free, but only token holders get an answer
        authorize(&self.plane, &request).map(|_| ()).map_err(refuse)
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        _message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(refuse(malformed()))
    }

    async fn get_flight_info_fallback(
        &self,
        _cmd: Command,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(refuse(malformed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flight_sql_messages_are_told_from_sql_text() {
        let command = CommandStatementQuery {
            query: "SELECT 1".into(),
            transaction_id: None,
        };
        assert!(is_flight_sql(&command.as_any().encode_to_vec()));
        for text in ["SELECT * FROM t", "", " ", "\u{0}\u{1}"] {
            assert!(!is_flight_sql(text.as_bytes()), "{text:?}");
        }
        assert!(sql_info().record_batch([]).is_ok());
        assert_eq!(
            statement_sql(&command.as_any().encode_to_vec()).unwrap(),
            "SELECT 1"
        );
        let tables = CommandGetTables::default().as_any().encode_to_vec();
        assert!(statement_sql(&tables).is_err());
    }

    /// A ticket that claims to be a Flight SQL message but does not decode is refused with a
    /// fixed text, not the decoder's.
    #[test]
    fn malformed_commands_are_invalid_without_the_decoders_message() {
        let garbled = Any {
            type_url: TicketStatementQuery::type_url().into(),
            value: vec![0xff, 0xff, 0xff].into(),
        }
        .encode_to_vec();
        let unknown = Any {
            type_url: format!("{FLIGHT_SQL_TYPE_PREFIX}CommandNoSuchThing"),
            value: Default::default(),
        }
        .encode_to_vec();
        for bytes in [garbled, unknown, vec![0x0a, 0xff]] {
            let e = decode_command(&bytes).unwrap_err();
            let status = Status::from(e);
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert_eq!(status.message(), format!("invalid query: {MALFORMED}"));
        }
    }
}
