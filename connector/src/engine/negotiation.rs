//! Contract negotiation, both roles.

use chrono::Utc;
use serde_json::{Value, json};
use sluis_policy::Policy;
use tracing::{info, warn};

use super::{EngineError, EngineResult, join_url, receive, receive_in, send};
use crate::config::{Mode, NegotiationConfig, Otherwise};
use crate::dsp::Role;
use crate::dsp::messages::{
    self, ContractAgreementMessage, ContractNegotiationEventMessage, ContractOfferMessage,
    ContractRequestMessage, ProcessIds, ReasonedMessage,
};
use crate::dsp::negotiation::{self as machine, NegotiationMessage as Msg, NegotiationState as S};
use crate::node::{Node, Shared, derived_pid, new_pid};
use crate::store::{Agreement, Negotiation};

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

fn parse_policy(v: &Value, what: &str) -> EngineResult<Policy> {
    Policy::from_json(v).map_err(|e| EngineError::BadRequest(format!("invalid {what}: {e}")))
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
    let requested = parse_policy(&msg.offer, "offer")?;
    let dataset_id = offered_dataset(node, &requested)?;
    let id = derived_pid("negotiation", caller, &msg.consumer_pid);
    if let Some(existing) = node.store.negotiation(&id)? {
        if existing.offer != msg.offer {
            return Err(EngineError::Illegal(
                "this consumerPid already names a negotiation with another offer".into(),
            ));
        }
        return Ok((existing, false));
    }
    machine::receive(Role::Provider, None, Msg::Request)?;
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
    // open_once: two identical requests racing each other still make one process
    let (n, new) = node
        .store
        .open_once(n, "received ContractRequestMessage")
        .await?;
    if !new {
        info!(negotiation = %n.id, "repeated contract request: answered with the known negotiation");
        return Ok((n, false));
    }
    info!(negotiation = %n.id, consumer = caller, dataset = %n.dataset_id, "contract requested");
    react(node.clone(), n.clone());
    Ok((n, true))
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
    let (dataset, _) = node
        .catalog
        .find_offer(offer_id)
        .map_err(|e| EngineError::Internal(e.into()))?
        .ok_or_else(|| EngineError::BadRequest(format!("unknown offer {offer_id:?}")))?;
    if let Some(target) = requested.target()
        && target != dataset.id
    {
        return Err(EngineError::BadRequest(format!(
            "offer {offer_id:?} is not an offer for target {target:?}"
        )));
    }
    Ok(dataset.id.clone())
}

/// `ContractRequestMessage` on an existing process (consumer's counter-request).
pub async fn on_counter_request(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ContractRequestMessage,
) -> EngineResult<Negotiation> {
    let provider_pid = msg.provider_pid.clone().unwrap_or_else(|| pid.to_string());
    parse_policy(&msg.offer, "offer")?;
    refuse_changed_repeat(node, caller, pid, S::Requested, &msg.offer)?;
    let (n, moved) = receive::<Negotiation>(
        node,
        caller,
        pid,
        (&provider_pid, &msg.consumer_pid),
        Msg::Request,
        |n| {
            n.offer = msg.offer.clone();
            Ok(())
        },
    )
    .await?;
    if moved {
        react(node.clone(), n.clone());
    }
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
        other => {
            return Err(EngineError::BadRequest(format!(
                "eventType must be ACCEPTED or FINALIZED, not {:?}",
                other.chars().take(32).collect::<String>()
            )));
        }
    };
    let (n, moved) = receive::<Negotiation>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &msg.consumer_pid),
        message,
        |_| Ok(()),
    )
    .await?;
    if moved {
        info!(negotiation = %n.id, state = n.state.as_str(), "negotiation event");
        react(node.clone(), n.clone());
    }
    Ok(n)
}

/// `ContractAgreementVerificationMessage` (provider).
pub async fn on_verification(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ProcessIds,
) -> EngineResult<Negotiation> {
    let (n, moved) = receive::<Negotiation>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &msg.consumer_pid),
        Msg::Verification,
        |_| Ok(()),
    )
    .await?;
    if moved {
        react(node.clone(), n.clone());
    }
    Ok(n)
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
    let (n, _) = receive::<Negotiation>(
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

/// Starts a negotiation as consumer: fetches the offer from the provider's catalogue and
/// sends a `ContractRequestMessage`.
pub async fn start(node: &Shared, req: StartNegotiation) -> EngineResult<Negotiation> {
    let url = join_url(
        &req.connector_address,
        &format!("catalog/datasets/{}", req.dataset_id),
    );
    let peer = node
        .peers
        .to_participant(&req.provider_id)
        .map_err(EngineError::Internal)?;
    let (_, dataset) = peer.get_json(&url).await?;
    let offer = dataset
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
        })?;
    parse_policy(&offer, "offer from the provider")?;
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
    let offered = parse_policy(&msg.offer, "offer")?;
    refuse_changed_repeat(node, caller, pid, S::Offered, &msg.offer)?;
    let consumer_pid = msg.consumer_pid.clone().unwrap_or_else(|| pid.to_string());
    let mut as_requested = false;
    let (n, moved) = receive::<Negotiation>(
        node,
        caller,
        pid,
        (&msg.provider_pid, &consumer_pid),
        Msg::Offer,
        |n| {
            as_requested =
                Policy::from_json(&n.offer).is_ok_and(|asked| asked.equivalent(&offered));
            n.offer = msg.offer.clone();
            Ok(())
        },
    )
    .await?;
    if moved && as_requested && node.config.negotiation.consumer_mode == Mode::Auto {
        let node = node.clone();
        let id = n.id.clone();
        tokio::spawn(async move {
            if let Err(e) = accept(&node, &id).await {
                warn!(negotiation = %id, error = %e, "automatic accept failed");
            }
        });
    } else if moved {
        info!(negotiation = %n.id, "offer differs from the request: waiting for the operator");
    }
    Ok(n)
}

/// A request or offer repeated in the state it led to is a harmless retry only when it
/// carries the same offer; another offer there is an illegal second message.
fn refuse_changed_repeat(
    node: &Node,
    caller: &str,
    pid: &str,
    state: S,
    offer: &Value,
) -> EngineResult<()> {
    match node.store.negotiation(pid)? {
        Some(n) if n.peer_id == caller && n.state == state && n.offer != *offer => {
            Err(EngineError::Illegal(format!(
                "a second {} with another offer is not allowed in state {}",
                message_type(if state == S::Requested {
                    Msg::Request
                } else {
                    Msg::Offer
                }),
                state.as_str()
            )))
        }
        _ => Ok(()),
    }
}

/// `ContractAgreementMessage` (consumer): checks the agreement against what we asked for.
pub async fn on_agreement(
    node: &Shared,
    caller: &str,
    pid: &str,
    msg: ContractAgreementMessage,
) -> EngineResult<Negotiation> {
    let agreement = parse_policy(&msg.agreement, "agreement")?;
    let agreement_id = agreement
        .id()
        .ok_or_else(|| EngineError::BadRequest("the agreement has no @id".into()))?
        .to_string();
    let policy_json = msg.agreement.clone();
    let me = node.participant_id.clone();
    let (n, moved) = node
        .store
        .transact(|tx| -> EngineResult<(Negotiation, bool)> {
            let existing = tx.negotiation(pid)?;
            let checked = existing
                .as_ref()
                .filter(|n| n.peer_id == caller)
                .map(|n| check_agreement(n, &agreement, &me));
            let (mut n, moved) = receive_in::<Negotiation>(
                tx,
                caller,
                pid,
                (&msg.provider_pid, &msg.consumer_pid),
                Msg::Agreement,
            )?;
            if moved {
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
            }
            tx.update_negotiation(&n, "received ContractAgreementMessage")?;
            Ok((n, moved))
        })
        .await?;
    if moved {
        react(node.clone(), n.clone());
    }
    Ok(n)
}

/// The consumer accepts an agreement only if it is what it asked for, for us, from them.
fn check_agreement(n: &Negotiation, agreement: &Policy, me: &str) -> EngineResult<()> {
    let asked = parse_policy(&n.offer, "stored offer")?;
    let fail = |why: String| Err(EngineError::BadRequest(format!("agreement refused: {why}")));
    if agreement.target() != Some(n.dataset_id.as_str()) {
        return fail(format!(
            "its target is {:?}, not {}",
            agreement.target(),
            n.dataset_id
        ));
    }
    if agreement.assignee() != Some(me) {
        return fail(format!(
            "its assignee is {:?}, not us ({me})",
            agreement.assignee()
        ));
    }
    if agreement.assigner() != Some(n.peer_id.as_str()) {
        return fail(format!(
            "its assigner is {:?}, not the provider",
            agreement.assigner()
        ));
    }
    if !agreement.equivalent(&asked) {
        return fail("its rules differ from the offer we requested".into());
    }
    Ok(())
}

// ---- local actions --------------------------------------------------------------------------

/// The provider agrees: the agreement is the requested offer, bound to both parties.
pub async fn agree(node: &Node, id: &str) -> EngineResult<Negotiation> {
    let assigner = node.participant_id.clone();
    send::<Negotiation>(node, id, Msg::Agreement, |tx, n| {
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
            assigner: assigner.clone(),
            assignee: n.peer_id.clone(),
            created_at: Utc::now(),
        })?;
        n.agreement_id = Some(agreement_id);
        Ok(json!({ "agreement": policy }))
    })
    .await
}

/// The provider offers its catalogue offer for the requested dataset (a counter-offer).
pub async fn offer(node: &Node, id: &str) -> EngineResult<Negotiation> {
    send::<Negotiation>(node, id, Msg::Offer, |_, n| {
        let offer = catalogue_offer(node, n)?;
        n.offer = offer.clone();
        Ok(json!({ "offer": offer }))
    })
    .await
}

/// Our catalogue offer that a negotiation's current offer names, with its `target`.
fn catalogue_offer(node: &Node, n: &Negotiation) -> EngineResult<Value> {
    let current = parse_policy(&n.offer, "stored offer")?;
    let offer_id = current
        .id()
        .ok_or_else(|| EngineError::BadRequest("the offer has no @id".into()))?;
    let (_, mut offer) = node
        .catalog
        .find_offer(offer_id)
        .map_err(|e| EngineError::Internal(e.into()))?
        .ok_or_else(|| EngineError::BadRequest(format!("unknown offer {offer_id:?}")))?;
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
    send::<Negotiation>(node, id, Msg::Finalized, |_, _| {
        Ok(json!({ "eventType": "FINALIZED" }))
    })
    .await
}

/// The consumer accepts the provider's latest offer.
pub async fn accept(node: &Node, id: &str) -> EngineResult<Negotiation> {
    send::<Negotiation>(node, id, Msg::Accepted, |_, _| {
        Ok(json!({ "eventType": "ACCEPTED" }))
    })
    .await
}

/// Either party terminates.
pub async fn terminate(node: &Node, id: &str, reason: &str) -> EngineResult<Negotiation> {
    let reason = reason.to_string();
    send::<Negotiation>(node, id, Msg::Termination, |_, n| {
        n.error = Some(reason.clone());
        Ok(json!({ "code": "terminated", "reason": [reason] }))
    })
    .await
}

// ---- automatic decisions --------------------------------------------------------------------

/// What our role does next on its own, after a committed change (or after a restart).
pub(crate) fn react(node: Shared, n: Negotiation) {
    tokio::spawn(async move {
        let consumer_auto = node.config.negotiation.consumer_mode == Mode::Auto;
        let provider_auto = node.config.negotiation.provider_mode == Mode::Auto;
        let result = match (n.role, n.state) {
            (Role::Provider, S::Requested | S::Accepted) => decide_as_provider(&node, &n).await,
            (Role::Provider, S::Verified) if provider_auto => {
                finalize(&node, &n.id).await.map(drop)
            }
            (Role::Consumer, S::Agreed) if consumer_auto => verify(&node, &n.id).await.map(drop),
            _ => Ok(()),
        };
        if let Err(e) = result {
            warn!(negotiation = %n.id, error = %e, "automatic step failed");
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

/// Applies [`provider_decision`] to a request (REQUESTED), or agrees to our own offer that
/// the consumer accepted (ACCEPTED).
async fn decide_as_provider(node: &Node, n: &Negotiation) -> EngineResult<()> {
    let rules = &node.config.negotiation;
    if n.state == S::Accepted {
        if rules.provider_mode == Mode::Auto {
            agree(node, &n.id).await?;
            info!(negotiation = %n.id, "the consumer accepted our offer: agreed");
        }
        return Ok(());
    }
    let requested = parse_policy(&n.offer, "requested offer")?;
    let offer_id = requested.id().unwrap_or_default().to_string();
    let ours = node
        .catalog
        .find_offer(&offer_id)
        .map_err(|e| EngineError::Internal(e.into()))?
        .and_then(|(_, offer)| Policy::from_json(&offer).ok());
    let already_offered = node
        .store
        .history(&n.id)?
        .iter()
        .any(|h| h.note == "sent ContractOfferMessage");
    let decision = provider_decision(rules, ours.as_ref(), &requested, already_offered);
    match decision {
        Decision::Agree => agree(node, &n.id).await.map(drop)?,
        Decision::CounterOffer => offer(node, &n.id).await.map(drop)?,
        Decision::Terminate => {
            terminate(node, &n.id, "the requested policy differs from the offer")
                .await
                .map(drop)?
        }
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
