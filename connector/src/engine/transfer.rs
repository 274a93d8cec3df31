//! Transfer processes, both roles.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sluis_policy::token::Grant;
use tracing::{info, warn};

use super::{EngineError, EngineResult, Step, follow_up, join_url, receive, send, send_in};
use crate::config::Mode;
use crate::dsp::messages::{
    self, DataAddress, ProcessIds, ReasonedMessage, TransferRequestMessage, TransferStartMessage,
};
use crate::dsp::negotiation::NegotiationState;
use crate::dsp::transfer::{self as machine, TransferMessage as Msg, TransferState as S};
use crate::dsp::{self, Role};
use crate::node::{Node, Shared, new_pid, table_name};
use crate::store::{Opened, Transfer, Tx};

/// Outbox purpose of a transfer request: the answer carries the provider's pid.
pub const PURPOSE_REQUEST: &str = "transfer-request";
/// Outbox purpose of any other transfer message.
pub const PURPOSE_MESSAGE: &str = "transfer-message";

/// Pull over Arrow Flight.
pub const FORMAT_FLIGHT: &str = "ArrowFlight-PULL";
/// Pull over HTTP.
pub const FORMAT_HTTP: &str = "HttpData-PULL";
/// The `endpointType` of a Flight data address.
pub const ENDPOINT_TYPE_FLIGHT: &str = "https://w3id.org/sluis/endpoint#ArrowFlight";

/// What the operator (or the TCK trigger) asks for to start a transfer as consumer.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartTransfer {
    /// The agreement to transfer under.
    pub agreement_id: String,
    /// `ArrowFlight-PULL` or `HttpData-PULL`.
    pub format: String,
    /// The provider's participant id.
    pub provider_id: String,
    /// The provider's DSP base URL.
    pub connector_address: String,
}

/// The DSP `TransferProcess` body for a process.
pub fn dsp_view(t: &Transfer) -> Value {
    messages::message(
        "TransferProcess",
        json!({
            "providerPid": t.provider_pid.clone().unwrap_or_default(),
            "consumerPid": t.consumer_pid.clone().unwrap_or_default(),
            "state": t.state.as_str(),
        }),
    )
}

/// The DSP `@type` of a message.
pub(super) fn message_type(m: Msg) -> &'static str {
    match m {
        Msg::Request => "TransferRequestMessage",
        Msg::Start => "TransferStartMessage",
        Msg::Suspension => "TransferSuspensionMessage",
        Msg::Completion => "TransferCompletionMessage",
        Msg::Termination => "TransferTerminationMessage",
    }
}

/// Where a message of ours about a process goes.
pub(super) fn message_url(t: &Transfer, m: Msg) -> EngineResult<String> {
    let peer_pid = super::peer_pid(t.role, &t.provider_pid, &t.consumer_pid);
    let path = match (m, peer_pid) {
        (Msg::Request, _) => "transfers/request".to_string(),
        (_, None) => {
            return Err(EngineError::Illegal(
                "the peer's process id is not known yet".into(),
            ));
        }
        (Msg::Start, Some(p)) => format!("transfers/{p}/start"),
        (Msg::Suspension, Some(p)) => format!("transfers/{p}/suspension"),
        (Msg::Completion, Some(p)) => format!("transfers/{p}/completion"),
        (Msg::Termination, Some(p)) => format!("transfers/{p}/termination"),
    };
    Ok(join_url(&t.peer_address, &path))
}

// ---- provider side --------------------------------------------------------------------------

/// `TransferRequestMessage` (provider): the caller must be the agreement's assignee and the
/// negotiation finalized. The same request again (same caller and `consumerPid`, same
/// agreement) answers with the process it created; `false` says it was not created now.
pub async fn on_request(
    node: &Shared,
    caller: &str,
    msg: TransferRequestMessage,
) -> EngineResult<(Transfer, bool)> {
    if msg.format != FORMAT_FLIGHT && msg.format != FORMAT_HTTP {
        return Err(EngineError::BadRequest(format!(
            "unsupported format: use {FORMAT_FLIGHT} or {FORMAT_HTTP}"
        )));
    }
    if !msg.callback_address.starts_with("https://") {
        return Err(EngineError::BadRequest(
            "callbackAddress must be an https URL".into(),
        ));
    }
    let agreement = node
        .store
        .agreement(&msg.agreement_id)?
        .filter(|a| a.assignee == caller && a.assigner == node.participant_id)
        .ok_or_else(|| {
            EngineError::BadRequest(
                "agreementId names no agreement of this provider with the caller".into(),
            )
        })?;
    let finalized = node
        .store
        .negotiation(&agreement.negotiation_id)?
        .is_some_and(|n| n.state == NegotiationState::Finalized);
    if !finalized {
        return Err(EngineError::BadRequest(
            "the agreement is not finalized".into(),
        ));
    }
    machine::receive(Role::Provider, None, Msg::Request)?;
    let id = new_pid();
    let now = Utc::now();
    let t = Transfer {
        id: id.clone(),
        role: Role::Provider,
        provider_pid: Some(id),
        consumer_pid: Some(msg.consumer_pid),
        peer_id: caller.to_string(),
        peer_address: msg.callback_address,
        agreement_id: agreement.id,
        dataset_id: agreement.dataset_id,
        format: msg.format,
        state: S::Requested,
        provider_hold: false,
        data_address: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    let opened = node
        .store
        .open_once(
            t,
            "received TransferRequestMessage",
            |tx, t| match auto_step(node, t) {
                Some(step) => follow_up(tx, t, step),
                None => Ok(()),
            },
        )
        .await?;
    match opened {
        Opened::New(t) => {
            info!(transfer = %t.id, consumer = caller, agreement = %t.agreement_id, "transfer requested");
            Ok((t, true))
        }
        Opened::Known { known, requested }
            if known.agreement_id == requested.agreement_id && known.format == requested.format =>
        {
            info!(transfer = %known.id, "repeated transfer request: answered with the known transfer");
            Ok((known, false))
        }
        Opened::Known { .. } => Err(EngineError::Illegal(
            "this consumerPid already names another transfer".into(),
        )),
    }
}

/// Starts or resumes a transfer. The provider mints a token and sends the data address; a
/// consumer resuming a transfer it suspended sends the message without one.
pub async fn start(node: &Node, id: &str) -> EngineResult<Transfer> {
    send::<Transfer>(node, id, Msg::Start, |tx, t| start_fields(node, tx, t)).await
}

/// The fields of a `TransferStartMessage`: the provider's carries the data address.
fn start_fields(node: &Node, _: &mut Tx<'_>, t: &mut Transfer) -> EngineResult<Value> {
    match t.role {
        Role::Provider => Ok(json!({ "dataAddress": data_address(node, t)? })),
        Role::Consumer => Ok(json!({})),
    }
}

fn data_address(node: &Node, t: &Transfer) -> EngineResult<DataAddress> {
    let grant = Grant {
        agreement_id: t.agreement_id.clone(),
        transfer_id: t.id.clone(),
        dataset_id: t.dataset_id.clone(),
        consumer: t.peer_id.clone(),
        expires_at: Utc::now() + Duration::seconds(node.config.transfer.token_ttl_secs as i64),
    };
    let token = node
        .tokens
        .mint(&grant)
        .map_err(|e| EngineError::Internal(anyhow::anyhow!("minting the token: {e}")))?;
    let table = table_name(&t.dataset_id);
    let public_key = node.tokens.public_key_hex();
    let props = [
        ("authorization", token.as_str()),
        ("authType", "bearer"),
        ("table", table.as_str()),
        ("dataset", t.dataset_id.as_str()),
        ("tokenPublicKey", public_key.as_str()),
    ];
    let (endpoint_type, endpoint) = if t.format == FORMAT_HTTP {
        let http = crate::dataplane::http::endpoint(&node.urls.dsp);
        (crate::dataplane::http::ENDPOINT_TYPE, http)
    } else {
        (ENDPOINT_TYPE_FLIGHT, node.urls.flight.clone())
    };
    Ok(DataAddress::new(endpoint_type, &endpoint, &props))
}

// ---- consumer side --------------------------------------------------------------------------

/// Starts a transfer as consumer under a finalized agreement.
pub async fn request(node: &Node, req: StartTransfer) -> EngineResult<Transfer> {
    let agreement = node
        .store
        .agreement(&req.agreement_id)?
        .filter(|a| a.assignee == node.participant_id)
        .ok_or_else(|| {
            EngineError::BadRequest(format!("no agreement {} of ours", req.agreement_id))
        })?;
    machine::send(Role::Consumer, None, Msg::Request)?;
    let now = Utc::now();
    let id = new_pid();
    let t = Transfer {
        id: id.clone(),
        role: Role::Consumer,
        provider_pid: None,
        consumer_pid: Some(id.clone()),
        peer_id: req.provider_id,
        peer_address: req.connector_address,
        agreement_id: agreement.id,
        dataset_id: agreement.dataset_id,
        format: req.format,
        state: S::Requested,
        provider_hold: false,
        data_address: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    let body = messages::message(
        "TransferRequestMessage",
        json!({
            "consumerPid": id,
            "agreementId": t.agreement_id,
            "format": t.format,
            "callbackAddress": node.urls.dsp,
        }),
    );
    let url = message_url(&t, Msg::Request)?;
    super::open_with_request(node, &t, &t.id, PURPOSE_REQUEST, &url, &body).await?;
    Ok(t)
}

// ---- messages either role receives ----------------------------------------------------------

/// `TransferStartMessage`: at the consumer it carries the data address.
pub async fn on_start(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: TransferStartMessage,
) -> EngineResult<Transfer> {
    let address = msg.data_address.clone();
    let t = receive::<Transfer>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &msg.consumer_pid),
        Msg::Start,
        |t| {
            if let Some(a) = address {
                t.data_address = Some(serde_json::to_value(a).map_err(anyhow::Error::from)?);
            }
            Ok(())
        },
    )
    .await?;
    info!(transfer = %t.id, state = t.state.as_str(), "transfer started");
    Ok(t)
}

/// `TransferCompletionMessage`.
pub async fn on_completion(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ProcessIds,
) -> EngineResult<Transfer> {
    receive::<Transfer>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &msg.consumer_pid),
        Msg::Completion,
        |_| Ok(()),
    )
    .await
}

/// `TransferSuspensionMessage` or `TransferTerminationMessage`.
pub async fn on_stop(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ReasonedMessage,
    message: Msg,
) -> EngineResult<Transfer> {
    let reason = msg
        .reason
        .as_ref()
        .map(|r| serde_json::to_string(r).unwrap_or_default());
    receive::<Transfer>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &msg.consumer_pid),
        message,
        |t| {
            t.error = reason.map(|r| r.chars().take(1024).collect());
            Ok(())
        },
    )
    .await
}

// ---- local actions of either role -------------------------------------------------------------

/// [`ProcessRecord::step`](super::ProcessRecord::step) of a transfer: the DSP table with the
/// provider's hold on its suspensions ([`machine::step_held`]). A provider's suspension is
/// held here; [`stop`] releases it at once where the config lets consumers resume.
pub(super) fn step_record(
    t: &mut Transfer,
    sender: Role,
    message: Msg,
) -> Result<bool, machine::TransferError> {
    let from = machine::Held {
        state: t.state,
        provider_hold: t.provider_hold,
    };
    Ok(match machine::step_held(sender, from, message, true)? {
        dsp::Step::Moved(to) => {
            t.state = to.state;
            t.provider_hold = to.provider_hold;
            true
        }
        dsp::Step::Duplicate => false,
    })
}

/// Suspends, completes or terminates from our side. The provider's suspension is held (only
/// the provider resumes it) unless `transfer.consumer_resume` is `auto`.
pub async fn stop(node: &Node, id: &str, message: Msg, reason: &str) -> EngineResult<Transfer> {
    let reason = reason.to_string();
    let lenient = node.config.transfer.consumer_resume == Mode::Auto;
    send::<Transfer>(node, id, message, |_, t| {
        if lenient && t.role == Role::Provider {
            t.provider_hold = false;
        }
        Ok(match message {
            Msg::Completion => json!({}),
            _ => json!({ "code": "stopped", "reason": [reason] }),
        })
    })
    .await
}

/// What our role does next on its own: the provider in `auto` mode starts a requested
/// transfer.
fn auto_step<'s>(node: &'s Node, t: &Transfer) -> Option<Step<'s, Transfer>> {
    let auto = node.config.transfer.provider_mode == Mode::Auto;
    (auto && t.role == Role::Provider && t.state == S::Requested).then(|| -> Step<'s, Transfer> {
        Box::new(|tx, t| send_in(tx, t, Msg::Start, |tx, t| start_fields(node, tx, t)))
    })
}

/// Takes the automatic step of a transfer in its own change, if it is still in the state it
/// was seen in: after a restart (see [`super::resume`]), for steps a crash may have cut off.
pub(crate) fn react(node: Shared, seen: Transfer) {
    tokio::spawn(async move {
        let result = node
            .store
            .transact(|tx| -> EngineResult<()> {
                let Some(mut t) = tx.transfer(&seen.id)? else {
                    return Ok(());
                };
                match auto_step(&node, &t) {
                    Some(step) if t.state == seen.state => step(tx, &mut t),
                    _ => Ok(()),
                }
            })
            .await;
        if let Err(e) = result {
            warn!(transfer = %seen.id, error = %e, "automatic start failed");
        }
    });
}
