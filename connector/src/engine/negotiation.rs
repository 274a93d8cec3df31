//! Contract negotiation, both roles.

use std::sync::atomic::Ordering::Relaxed;

use chrono::Utc;
use serde_json::{Value, json};
use sluis_policy::Policy;
use tracing::{info, warn};

use super::{
    EngineError, EngineResult, Step, follow_up, join_url, receive, receive_in, receive_then, send,
    send_in,
};
use crate::config::{Mode, NegotiationConfig, Otherwise};
use crate::dsp::Role;
use crate::dsp::messages::{
    self, ContractAgreementMessage, ContractNegotiationEventMessage, ContractOfferMessage,
    ContractRequestMessage, ProcessIds, ReasonedMessage,
};
use crate::dsp::negotiation::{self as machine, NegotiationMessage as Msg, NegotiationState as S};
use crate::node::{Node, Shared, new_pid};
use crate::store::{Agreement, Negotiation, Opened, Tx};

/// Outbox purpose of an initial contract request: the answer carries the provider's pid.
pub const PURPOSE_REQUEST: &str = "negotiation-request";
/// Outbox purpose of any other negotiation message.
pub const PURPOSE_MESSAGE: &str = "negotiation-message";

/// What the operator (or the TCK trigger) asks for to start a negotiation as consumer.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartNegotiation {
    /// The dataset to negotiate for.
    pub dataset_id: String,
    /// The offer's `@id` in the provider's catalogue.
    pub offer_id: String,
    /// The provider's participant id.
    pub provider_id: String,
    /// The provider's DSP base URL.
    pub connector_address: String,
    /// The offer as the provider's catalogue showed it (from an earlier catalogue request),
    /// so that it is not fetched again; its `@id` must be `offerId`. The provider still
    /// checks it against its current offer.
    #[serde(default)]
    pub offer: Option<Value>,
}

/// The DSP `ContractNegotiation` body for a process.
pub fn dsp_view(n: &Negotiation) -> Value {
    messages::message(
        "ContractNegotiation",
        json!({
            "providerPid": n.provider_pid.clone().unwrap_or_default(),
            "consumerPid": n.consumer_pid.clone().unwrap_or_default(),
            "state": n.state.as_str(),
        }),
    )
}

/// Parses a policy the operator gave: the error says what is wrong, value included.
fn parse_policy(v: &Value, what: &str) -> EngineResult<Policy> {
    Policy::from_json(v).map_err(|e| EngineError::BadRequest(format!("invalid {what}: {e}")))
}

/// Parses a policy a peer sent: the error names where it is wrong, never the value there.
fn parse_peer_policy(v: &Value, what: &str) -> EngineResult<Policy> {
    Policy::from_json(v).map_err(|e| {
        let at: String = e.path.chars().take(200).collect();
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" at {at}")
        };
        EngineError::BadRequest(format!(
            "invalid {what}{at}: not an ODRL policy in the DSP 2025-1 compact form"
        ))
    })
}

/// Our catalogue's offer `offer_id` with its dataset. An id that is not an absolute IRI names
/// no offer: it is the peer's mistake (400), not ours.
pub(crate) fn find_our_offer(
    node: &Node,
    offer_id: &str,
) -> EngineResult<Option<(std::sync::Arc<sluis_catalog::Dataset>, Value)>> {
    match node.catalog.find_offer(offer_id) {
        Ok(found) => Ok(found),
        Err(sluis_catalog::CatalogError::InvalidId { .. }) => Err(EngineError::BadRequest(
            "the offer's @id is not an absolute IRI".into(),
        )),
        Err(e) => Err(EngineError::Internal(e.into())),
    }
}

/// Where a message of ours about a process goes.
pub(super) fn message_url(n: &Negotiation, message: Msg) -> EngineResult<String> {
    let peer_pid = super::peer_pid(n.role, &n.provider_pid, &n.consumer_pid);
    let path = match (message, peer_pid) {
        (Msg::Request, None) => "negotiations/request".to_string(),
        (Msg::Offer, None) => "negotiations/offers".to_string(),
        (_, None) => {
            return Err(EngineError::Illegal(
                "the peer's process id is not known yet".into(),
            ));
        }
        (Msg::Request, Some(p)) => format!("negotiations/{p}/request"),
        (Msg::Offer, Some(p)) => format!("negotiations/{p}/offers"),
        (Msg::Accepted | Msg::Finalized, Some(p)) => format!("negotiations/{p}/events"),
        (Msg::Agreement, Some(p)) => format!("negotiations/{p}/agreement"),
        (Msg::Verification, Some(p)) => format!("negotiations/{p}/agreement/verification"),
        (Msg::Termination, Some(p)) => format!("negotiations/{p}/termination"),
    };
    Ok(join_url(&n.peer_address, &path))
}

/// The DSP `@type` of a message.
pub(super) fn message_type(m: Msg) -> &'static str {
    match m {
        Msg::Request => "ContractRequestMessage",
        Msg::Offer => "ContractOfferMessage",
        Msg::Accepted | Msg::Finalized => "ContractNegotiationEventMessage",
        Msg::Agreement => "ContractAgreementMessage",
        Msg::Verification => "ContractAgreementVerificationMessage",
        Msg::Termination => "ContractNegotiationTerminationMessage",
    }
}

// ---- provider side --------------------------------------------------------------------------

/// An initial `ContractRequestMessage` (provider): creates the process in REQUESTED. The
/// same request again (same caller, `consumerPid` and offer) answers with the process it
/// created; `false` says it was not created now.
pub async fn on_initial_request(
    node: &Shared,
    caller: &str,
    msg: ContractRequestMessage,
) -> EngineResult<(Negotiation, bool)> {
    if msg.provider_pid.is_some() {
        return Err(EngineError::BadRequest(
            "an initial contract request must not carry a providerPid".into(),
        ));
    }
    let callback = msg
        .callback_address
        .clone()
        .ok_or_else(|| EngineError::BadRequest("callbackAddress is required".into()))?;
    check_callback(&callback)?;
    let requested = parse_peer_policy(&msg.offer, "offer")?;
    let dataset_id = offered_dataset(node, &requested)?;
    machine::receive(Role::Provider, None, Msg::Request)?;
    let id = new_pid();
    let now = Utc::now();
    let n = Negotiation {
        id: id.clone(),
        role: Role::Provider,
        provider_pid: Some(id),
        consumer_pid: Some(msg.consumer_pid.clone()),
        peer_id: caller.to_string(),
        peer_address: callback,
        state: S::Requested,
        dataset_id,
        offer: msg.offer,
        agreement_id: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    // open_once: a repeated request, even racing the first, finds the process it opened
    let opened = node
        .store
        .open_once(
            n,
            "received ContractRequestMessage",
            |tx, n| match auto_step(node, n, false) {
                Some(step) => follow_up(tx, n, step),
                None => Ok(()),
            },
        )
        .await?;
    match opened {
        Opened::New(n) => {
            info!(negotiation = %n.id, consumer = caller, dataset = %n.dataset_id, "contract requested");
            Ok((n, true))
        }
        Opened::Known { known, requested } if known.offer == requested.offer => {
            info!(negotiation = %known.id, "repeated contract request: answered with the known negotiation");
            Ok((known, false))
        }
        Opened::Known { .. } => Err(EngineError::Illegal(
            "this consumerPid already names a negotiation with another offer".into(),
        )),
    }
}

fn check_callback(url: &str) -> EngineResult<()> {
    if !url.starts_with("https://") || url.len() > 2048 {
        return Err(EngineError::BadRequest(
            "callbackAddress must be an https URL".into(),
        ));
    }
    Ok(())
}

/// The dataset a requested offer is for: it must name an offer of our catalogue.
fn offered_dataset(node: &Node, requested: &Policy) -> EngineResult<String> {
    let offer_id = requested
        .id()
        .ok_or_else(|| EngineError::BadRequest("the offer has no @id".into()))?;
    let (dataset, _) = find_our_offer(node, offer_id)?.ok_or_else(unknown_offer)?;
    if let Some(target) = requested.target()
        && target != dataset.id
    {
        return Err(EngineError::BadRequest(
            "the offer's target is not the dataset that the offer is for".into(),
        ));
    }
    Ok(dataset.id.clone())
}

/// The refusal of an offer id that names no offer of ours (nor one the caller may see: see
/// `protocol_catalog::check_requested_offer`, which answers the same).
pub(crate) fn unknown_offer() -> EngineError {
    EngineError::BadRequest(
        "unknown offer: the offer's @id names no offer of this catalogue".into(),
    )
}

/// `ContractRequestMessage` on an existing process (consumer's counter-request).
pub async fn on_counter_request(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ContractRequestMessage,
) -> EngineResult<Negotiation> {
    let provider_pid = msg.provider_pid.clone().unwrap_or_else(|| pid.to_string());
    parse_peer_policy(&msg.offer, "offer")?;
    let offered = already_offered(node, pid)?;
    let n = receive_then::<Negotiation>(
        node,
        caller,
        pid,
        (&provider_pid, &msg.consumer_pid),
        Msg::Request,
        |n| {
            n.offer = msg.offer.clone();
            Ok(())
        },
        |_, n| auto_step(node, n, offered),
    )
    .await?;
    Ok(n)
}

/// `ContractNegotiationEventMessage` (ACCEPTED at the provider, FINALIZED at the consumer).
pub async fn on_event(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ContractNegotiationEventMessage,
) -> EngineResult<Negotiation> {
    let message = match msg.event_type.trim_start_matches("dspace:") {
        "ACCEPTED" => Msg::Accepted,
        "FINALIZED" => Msg::Finalized,
        _ => {
            return Err(EngineError::BadRequest(
                "eventType must be ACCEPTED or FINALIZED".into(),
            ));
        }
    };
    let n = receive_then::<Negotiation>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &msg.consumer_pid),
        message,
        |_| Ok(()),
        |_, n| auto_step(node, n, false),
    )
    .await?;
    info!(negotiation = %n.id, state = n.state.as_str(), "negotiation event");
    Ok(n)
}

/// `ContractAgreementVerificationMessage` (provider).
pub async fn on_verification(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ProcessIds,
) -> EngineResult<Negotiation> {
    receive_then::<Negotiation>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &msg.consumer_pid),
        Msg::Verification,
        |_| Ok(()),
        |_, n| auto_step(node, n, false),
    )
    .await
}

/// `ContractNegotiationTerminationMessage` (either role).
pub async fn on_termination(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ReasonedMessage,
) -> EngineResult<Negotiation> {
    let reason = msg
        .reason
        .as_ref()
        .map(|r| serde_json::to_string(r).unwrap_or_default())
        .unwrap_or_else(|| "terminated by the peer".into());
    let n = receive::<Negotiation>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &msg.consumer_pid),
        Msg::Termination,
        |n| {
            n.error = Some(reason.chars().take(1024).collect());
            Ok(())
        },
    )
    .await?;
    info!(negotiation = %n.id, "negotiation terminated by the peer");
    Ok(n)
}

// ---- consumer side --------------------------------------------------------------------------

/// The offer `req` names, from the provider's catalogue.
async fn fetch_offer(node: &Shared, req: &StartNegotiation) -> EngineResult<Value> {
    // one path segment: an id such as `https://x/ds/1#a b` must arrive whole
    let url = join_url(
        &req.connector_address,
        &format!(
            "catalog/datasets/{}",
            crate::mgmt_client::segment(&req.dataset_id)
        ),
    );
    let peer = node
        .peers
        .to_participant(&req.provider_id)
        .map_err(EngineError::Internal)?;
    let (_, dataset) = peer.get_json(&url).await?;
    dataset
        .get("hasPolicy")
        .and_then(Value::as_array)
        .and_then(|offers| {
            offers
                .iter()
                .find(|o| o.get("@id").and_then(Value::as_str) == Some(req.offer_id.as_str()))
        })
        .cloned()
        .ok_or_else(|| {
            EngineError::BadRequest(format!(
                "the provider's dataset {} has no offer {}",
                req.dataset_id, req.offer_id
            ))
        })
}

/// Starts a negotiation as consumer: takes the offer given, or fetches it from the
/// provider's catalogue, and sends a `ContractRequestMessage`.
pub async fn start(node: &Shared, mut req: StartNegotiation) -> EngineResult<Negotiation> {
    let offer = match req.offer.take() {
        Some(offer) if offer.get("@id").and_then(Value::as_str) == Some(&req.offer_id) => offer,
        Some(_) => {
            return Err(EngineError::BadRequest(format!(
                "the offer given is not offer {}: its @id differs",
                req.offer_id
            )));
        }
        None => fetch_offer(node, &req).await?,
    };
    parse_policy(&offer, "offer")?;
    let mut offer = offer;
    offer["target"] = Value::String(req.dataset_id.clone());
    let now = Utc::now();
    let id = new_pid();
    let n = Negotiation {
        id: id.clone(),
        role: Role::Consumer,
        provider_pid: None,
        consumer_pid: Some(id.clone()),
        peer_id: req.provider_id,
        peer_address: req.connector_address,
        state: S::Requested,
        dataset_id: req.dataset_id,
        offer: offer.clone(),
        agreement_id: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    machine::send(Role::Consumer, None, Msg::Request)?;
    let body = messages::message(
        "ContractRequestMessage",
        json!({ "consumerPid": id, "offer": offer, "callbackAddress": node.urls.dsp }),
    );
    let url = message_url(&n, Msg::Request)?;
    super::open_with_request(node, &n, &n.id, PURPOSE_REQUEST, &url, &body).await?;
    info!(negotiation = %n.id, provider = %n.peer_id, dataset = %n.dataset_id, "contract request queued");
    Ok(n)
}

/// `ContractOfferMessage` on an existing process (consumer). In `auto` mode the consumer
/// accepts an offer that means the same as what it requested; any other offer waits for the
/// operator (accept, counter-request or terminate).
pub async fn on_offer(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ContractOfferMessage,
) -> EngineResult<Negotiation> {
    let offered = parse_peer_policy(&msg.offer, "offer")?;
    let consumer_pid = msg.consumer_pid.clone().unwrap_or_else(|| pid.to_string());
    let as_requested = std::sync::atomic::AtomicBool::new(false);
    let auto = node.config.negotiation.consumer_mode == Mode::Auto;
    let n = receive_then::<Negotiation>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &consumer_pid),
        Msg::Offer,
        |n| {
            as_requested.store(
                Policy::from_json(&n.offer).is_ok_and(|asked| asked.equivalent(&offered)),
                Relaxed,
            );
            n.offer = msg.offer.clone();
            Ok(())
        },
        |_, _| {
            (auto && as_requested.load(Relaxed)).then(|| -> Step<'_, Negotiation> {
                Box::new(|tx, n| send_in(tx, n, Msg::Accepted, event("ACCEPTED")))
            })
        },
    )
    .await?;
    if !(auto && as_requested.load(Relaxed)) {
        info!(negotiation = %n.id, "offer differs from the request: waiting for the operator");
    }
    Ok(n)
}

/// `ContractAgreementMessage` (consumer): checks the agreement against what we asked for.
pub async fn on_agreement(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ContractAgreementMessage,
) -> EngineResult<Negotiation> {
    let agreement = parse_peer_policy(&msg.agreement, "agreement")?;
    let agreement_id = agreement
        .id()
        .ok_or_else(|| EngineError::BadRequest("the agreement has no @id".into()))?
        .to_string();
    let policy_json = msg.agreement.clone();
    let me = node.participant_id.clone();
    let n = node
        .store
        .transact(|tx| -> EngineResult<Negotiation> {
            let existing = tx.negotiation(pid)?;
            let checked = existing
                .as_ref()
                .filter(|n| n.peer_id == caller)
                .map(|n| check_agreement(n, &agreement, &me));
            let mut n = receive_in::<Negotiation>(
                tx,
                caller,
                pid,
                (&msg.provider_pid, &msg.consumer_pid),
                Msg::Agreement,
            )?;
            checked.transpose()?;
            n.agreement_id = Some(agreement_id.clone());
            tx.insert_agreement(&Agreement {
                id: agreement_id.clone(),
                negotiation_id: n.id.clone(),
                dataset_id: n.dataset_id.clone(),
                policy: policy_json.clone(),
                assigner: caller.to_string(),
                assignee: me.clone(),
                created_at: Utc::now(),
            })?;
            tx.update_negotiation(&n, "received ContractAgreementMessage")?;
            let received = n.clone();
            if let Some(step) = auto_step(node, &n, false) {
                follow_up(tx, &mut n, step)?;
            }
            Ok(received)
        })
        .await?;
    Ok(n)
}

/// The consumer accepts an agreement only if it is what it asked for, for us, from them.
fn check_agreement(n: &Negotiation, agreement: &Policy, me: &str) -> EngineResult<()> {
    let asked = parse_policy(&n.offer, "stored offer")?;
    let fail = |why: String| Err(EngineError::BadRequest(format!("agreement refused: {why}")));
    // the reasons name the field, not the values the peer sent
    if agreement.target() != Some(n.dataset_id.as_str()) {
        return fail("its target is not the dataset requested".into());
    }
    if agreement.assignee() != Some(me) {
        return fail("its assignee is not this participant".into());
    }
    if agreement.assigner() != Some(n.peer_id.as_str()) {
        return fail("its assigner is not the provider".into());
    }
    if !agreement.equivalent(&asked) {
        return fail("its rules differ from the offer we requested".into());
    }
    Ok(())
}

// ---- local actions ----------------------------------------------------------------------------

/// The fields of a message we send: built inside the change that sends it.
type Fields<'a> = Box<dyn FnOnce(&mut Tx<'_>, &mut Negotiation) -> EngineResult<Value> + Send + 'a>;

/// Our agreement: the requested offer bound to both parties, recorded as an agreement.
fn agreement(node: &Node) -> Fields<'_> {
    Box::new(move |tx, n| {
        let assigner = node.participant_id.clone();
        let offer = parse_policy(&n.offer, "stored offer")?;
        let agreement_id = new_pid();
        let policy = offer
            .to_agreement(
                &agreement_id,
                &n.dataset_id,
                &assigner,
                &n.peer_id,
                Utc::now(),
            )
            .to_dsp_json();
        tx.insert_agreement(&Agreement {
            id: agreement_id.clone(),
            negotiation_id: n.id.clone(),
            dataset_id: n.dataset_id.clone(),
            policy: policy.clone(),
            assigner,
            assignee: n.peer_id.clone(),
            created_at: Utc::now(),
        })?;
        n.agreement_id = Some(agreement_id);
        Ok(json!({ "agreement": policy }))
    })
}

/// Our catalogue offer for the requested dataset (a counter-offer).
fn counter_offer(node: &Node) -> Fields<'_> {
    Box::new(move |_, n| {
        let offer = catalogue_offer(node, n)?;
        n.offer = offer.clone();
        Ok(json!({ "offer": offer }))
    })
}

/// A `ContractNegotiationEventMessage`.
fn event(kind: &'static str) -> Fields<'static> {
    Box::new(move |_, _| Ok(json!({ "eventType": kind })))
}

/// A termination, with its reason kept on the process.
fn termination(reason: String) -> Fields<'static> {
    Box::new(move |_, n| {
        n.error = Some(reason.clone());
        Ok(json!({ "code": "terminated", "reason": [reason] }))
    })
}

/// The provider agrees: the agreement is the requested offer, bound to both parties.
pub async fn agree(node: &Node, id: &str) -> EngineResult<Negotiation> {
    send::<Negotiation>(node, id, Msg::Agreement, agreement(node)).await
}

/// The provider offers its catalogue offer for the requested dataset (a counter-offer).
pub async fn offer(node: &Node, id: &str) -> EngineResult<Negotiation> {
    send::<Negotiation>(node, id, Msg::Offer, counter_offer(node)).await
}

/// Our catalogue offer that a negotiation's current offer names, with its `target`.
fn catalogue_offer(node: &Node, n: &Negotiation) -> EngineResult<Value> {
    let current = parse_policy(&n.offer, "stored offer")?;
    let offer_id = current
        .id()
        .ok_or_else(|| EngineError::BadRequest("the offer has no @id".into()))?;
    let (_, mut offer) = find_our_offer(node, offer_id)?.ok_or_else(unknown_offer)?;
    offer["target"] = Value::String(n.dataset_id.clone());
    Ok(offer)
}

/// The consumer sends a counter-request: `offer`, or else the provider's latest offer.
pub async fn counter_request(
    node: &Node,
    id: &str,
    offer: Option<Value>,
) -> EngineResult<Negotiation> {
    if let Some(o) = &offer {
        parse_policy(o, "offer")?;
    }
    send::<Negotiation>(node, id, Msg::Request, |_, n| {
        if let Some(o) = offer {
            n.offer = o;
        }
        Ok(json!({ "offer": n.offer }))
    })
    .await
}

/// The consumer verifies the agreement it received.
pub async fn verify(node: &Node, id: &str) -> EngineResult<Negotiation> {
    send::<Negotiation>(node, id, Msg::Verification, |_, _| Ok(json!({}))).await
}

/// The provider finalizes a verified agreement.
pub async fn finalize(node: &Node, id: &str) -> EngineResult<Negotiation> {
    send::<Negotiation>(node, id, Msg::Finalized, event("FINALIZED")).await
}

/// The consumer accepts the provider's latest offer.
pub async fn accept(node: &Node, id: &str) -> EngineResult<Negotiation> {
    send::<Negotiation>(node, id, Msg::Accepted, event("ACCEPTED")).await
}

/// Either party terminates.
pub async fn terminate(node: &Node, id: &str, reason: &str) -> EngineResult<Negotiation> {
    send::<Negotiation>(node, id, Msg::Termination, termination(reason.to_string())).await
}

// ---- automatic decisions --------------------------------------------------------------------

/// What our role does next on its own in the process's state, under the configured modes:
/// the provider decides on a request and agrees to an accepted offer and finalizes a verified
/// agreement; the consumer verifies an agreement. `already_offered`: the provider sent a
/// counter-offer in this negotiation before.
fn auto_step<'s>(
    node: &'s Node,
    n: &Negotiation,
    already_offered: bool,
) -> Option<Step<'s, Negotiation>> {
    let rules = &node.config.negotiation;
    let provider_auto = rules.provider_mode == Mode::Auto;
    let consumer_auto = rules.consumer_mode == Mode::Auto;
    let step: Step<'s, Negotiation> = match (n.role, n.state) {
        (Role::Provider, S::Requested) => {
            Box::new(move |tx, n| decide_as_provider(node, tx, n, already_offered))
        }
        (Role::Provider, S::Accepted) if provider_auto => {
            Box::new(|tx, n| send_in(tx, n, Msg::Agreement, agreement(node)))
        }
        (Role::Provider, S::Verified) if provider_auto => {
            Box::new(|tx, n| send_in(tx, n, Msg::Finalized, event("FINALIZED")))
        }
        (Role::Consumer, S::Agreed) if consumer_auto => {
            Box::new(|tx, n| send_in(tx, n, Msg::Verification, |_, _| Ok(json!({}))))
        }
        _ => return None,
    };
    Some(step)
}

/// Whether the provider sent a counter-offer in negotiation `id` before.
fn already_offered(node: &Node, id: &str) -> EngineResult<bool> {
    Ok(node
        .store
        .history(id)?
        .iter()
        .any(|h| h.note == "sent ContractOfferMessage"))
}

/// Takes the automatic step of a process in its own change, if it is still in the state it
/// was seen in: after a restart (see [`super::resume`]), for steps a crash may have cut off.
pub(crate) fn react(node: Shared, seen: Negotiation) {
    tokio::spawn(async move {
        let result = async {
            let offered = already_offered(&node, &seen.id)?;
            node.store
                .transact(|tx| -> EngineResult<()> {
                    let Some(mut n) = tx.negotiation(&seen.id)? else {
                        return Ok(());
                    };
                    match auto_step(&node, &n, offered) {
                        Some(step) if n.state == seen.state => step(tx, &mut n),
                        _ => Ok(()),
                    }
                })
                .await
        }
        .await;
        if let Err(e) = result {
            warn!(negotiation = %seen.id, error = %e, "automatic step failed");
        }
    });
}

/// What the provider's rules decide about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the agreement.
    Agree,
    /// Send our catalogue offer back.
    CounterOffer,
    /// Terminate the negotiation.
    Terminate,
    /// Leave it to the operator.
    Wait,
}

/// The provider's decision rules, as a pure function: agree when the request means the same
/// as our offer (or, when allowed, is at least as strict); otherwise counter-offer once,
/// terminate, or wait, as configured. `ours` is `None` when the offer is no longer ours.
pub fn provider_decision(
    rules: &NegotiationConfig,
    ours: Option<&Policy>,
    requested: &Policy,
    already_offered: bool,
) -> Decision {
    if rules.provider_mode == Mode::Manual {
        return Decision::Wait;
    }
    let Some(ours) = ours else {
        return Decision::Terminate;
    };
    if requested.equivalent(ours)
        || (rules.agree_when_narrower && requested.at_least_as_strict_as(ours))
    {
        return Decision::Agree;
    }
    match rules.otherwise {
        Otherwise::Terminate => Decision::Terminate,
        Otherwise::CounterOffer if already_offered => Decision::Terminate,
        Otherwise::CounterOffer => Decision::CounterOffer,
        Otherwise::Manual => Decision::Wait,
    }
}

/// Applies [`provider_decision`] to a request (REQUESTED), inside the change.
fn decide_as_provider(
    node: &Node,
    tx: &mut Tx<'_>,
    n: &mut Negotiation,
    already_offered: bool,
) -> EngineResult<()> {
    let requested = parse_policy(&n.offer, "requested offer")?;
    let offer_id = requested.id().unwrap_or_default();
    let ours =
        find_our_offer(node, offer_id)?.and_then(|(_, offer)| Policy::from_json(&offer).ok());
    let decision = provider_decision(
        &node.config.negotiation,
        ours.as_ref(),
        &requested,
        already_offered,
    );
    match decision {
        Decision::Agree => send_in(tx, n, Msg::Agreement, agreement(node))?,
        Decision::CounterOffer => send_in(tx, n, Msg::Offer, counter_offer(node))?,
        Decision::Terminate => send_in(
            tx,
            n,
            Msg::Termination,
            termination("the requested policy differs from the offer".into()),
        )?,
        Decision::Wait => {}
    }
    info!(negotiation = %n.id, ?decision, "provider decision");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(v: Value) -> Policy {
        Policy::from_json(&v).unwrap()
    }

    fn offer() -> Policy {
        policy(
            json!({"@id": "urn:o", "@type": "Offer", "permission": [{"action": "use",
            "constraint": [{"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}]}]}),
        )
    }

    fn rules(
        provider_mode: Mode,
        agree_when_narrower: bool,
        otherwise: Otherwise,
    ) -> NegotiationConfig {
        NegotiationConfig {
            provider_mode,
            agree_when_narrower,
            otherwise,
            consumer_mode: Mode::Auto,
        }
    }

    #[test]
    fn provider_rules() {
        let same = offer();
        let broader =
            policy(json!({"@id": "urn:o", "@type": "Offer", "permission": [{"action": "use"}]}));
        let narrower = policy(
            json!({"@id": "urn:o", "@type": "Offer", "permission": [{"action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"},
                {"leftOperand": "spatial", "operator": "eq", "rightOperand": "EU"}
            ]}]}),
        );
        assert!(narrower.at_least_as_strict_as(&offer()), "test premise");
        use Decision as D;
        use Otherwise as O;
        let cases = [
            // (mode, narrower ok, otherwise, requested, already offered, expected)
            (Mode::Auto, false, O::Terminate, &same, false, D::Agree),
            (
                Mode::Auto,
                false,
                O::Terminate,
                &narrower,
                false,
                D::Terminate,
            ),
            (Mode::Auto, true, O::Terminate, &narrower, false, D::Agree),
            (
                Mode::Auto,
                true,
                O::Terminate,
                &broader,
                false,
                D::Terminate,
            ),
            (
                Mode::Auto,
                false,
                O::CounterOffer,
                &broader,
                false,
                D::CounterOffer,
            ),
            (
                Mode::Auto,
                false,
                O::CounterOffer,
                &broader,
                true,
                D::Terminate,
            ),
            (Mode::Auto, false, O::Manual, &broader, false, D::Wait),
            (Mode::Manual, true, O::CounterOffer, &same, false, D::Wait),
        ];
        for (mode, narrow, otherwise, requested, offered, expected) in cases {
            let got = provider_decision(
                &rules(mode, narrow, otherwise),
                Some(&offer()),
                requested,
                offered,
            );
            assert_eq!(got, expected, "{mode:?} {narrow} {otherwise:?} {offered}");
        }
        let auto = rules(Mode::Auto, true, O::CounterOffer);
        assert_eq!(provider_decision(&auto, None, &same, false), D::Terminate);
    }
}
