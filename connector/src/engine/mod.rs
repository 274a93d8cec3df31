//! The connector's process logic around the pure state machines of [`crate::dsp`]: load the
//! process, check the caller, step the machine, commit the new state together with the
//! messages it sends, then react (the automatic decisions of each role).
//!
//! Both the DSP handlers (messages from peers) and the management API (the operator's
//! actions) call into here; neither holds protocol logic of its own.

pub mod negotiation;
pub mod transfer;

use crate::dsp::{Role, StateMachine, TransitionError};
use serde_json::Value;

use crate::dsp::negotiation::NegotiationState;
use crate::dsp::transfer::TransferState;
use crate::store::{Negotiation, Store, Transfer, Tx};

/// Why an engine call was refused. The protocol and management layers map these to
/// status codes; only `Internal` hides its detail from the caller.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Unknown process, or one the caller is not a party to (DSP: 404 either way).
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The message is not legal in the current state (DSP: 400).
    #[error("{0}")]
    Illegal(String),
    /// The request is malformed or inconsistent (DSP: 400).
    #[error("{0}")]
    BadRequest(String),
    /// A peer call failed (management: 502).
    #[error("{0}")]
    Peer(#[from] crate::client::PeerError),
    /// A fault of ours (500); logged, not shown to peers.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl<M: StateMachine> From<TransitionError<M>> for EngineError {
    fn from(e: TransitionError<M>) -> Self {
        EngineError::Illegal(e.to_string())
    }
}

/// Engine result.
pub type EngineResult<T> = Result<T, EngineError>;

/// Joins a base URL and a path without doubling the slash.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// The message type of a process's protocol.
pub type MessageOf<P> = <<P as ProcessRecord>::Machine as StateMachine>::Message;

/// What negotiations and transfers have in common as stored processes.
pub trait ProcessRecord: Sized {
    /// Its protocol.
    type Machine: StateMachine;
    /// What it is called in errors.
    const WHAT: &'static str;
    /// Its DSP path segment (`negotiations`, `transfers`).
    const PATH: &'static str;
    /// The outbox purpose of its messages other than the initial request.
    const PURPOSE: &'static str;
    /// The DSP `@type` of a message.
    fn message_type(message: MessageOf<Self>) -> &'static str;
    /// Where a message of ours about this process goes.
    fn message_url(&self, message: MessageOf<Self>) -> EngineResult<String>;
    /// Current state.
    fn state(&self) -> <Self::Machine as StateMachine>::State;
    /// Sets the state.
    fn set_state(&mut self, state: <Self::Machine as StateMachine>::State);
    /// The other party.
    fn peer_id(&self) -> &str;
    /// The other party's DSP base URL.
    fn peer_address(&self) -> &str;
    /// Our role.
    fn role(&self) -> Role;
    /// Our pid.
    fn id(&self) -> &str;
    /// The provider's and the consumer's pid slots.
    fn pid_slots(&mut self) -> (&mut Option<String>, &mut Option<String>);
    /// Loads a process inside a transaction.
    fn load(tx: &Tx<'_>, id: &str) -> anyhow::Result<Option<Self>>;
    /// Saves it, recording history when its state changed.
    fn save(&self, tx: &mut Tx<'_>, note: &str) -> anyhow::Result<()>;
    /// Whether no message may follow.
    fn is_terminal(&self) -> bool;
    /// Moves it to TERMINATED with a reason, without telling the peer.
    fn terminate_locally(&mut self, why: String);
    /// Applies `message` sent by `sender`: `Ok(true)` when the process moved, `Ok(false)` for
    /// a repeat of the message that led to its state. The DSP table decides, plus what the
    /// record keeps beyond the DSP state (a transfer's provider hold, see
    /// [`crate::dsp::transfer::Held`]).
    fn step(
        &mut self,
        sender: Role,
        message: MessageOf<Self>,
    ) -> Result<bool, TransitionError<Self::Machine>>;
}

/// [`ProcessRecord::step`] by the DSP table alone.
fn table_step<P: ProcessRecord>(
    p: &mut P,
    sender: Role,
    message: MessageOf<P>,
) -> Result<bool, TransitionError<P::Machine>> {
    Ok(
        match crate::dsp::step::<P::Machine>(sender, Some(p.state()), message)? {
            crate::dsp::Step::Moved(s) => {
                p.set_state(s);
                true
            }
            crate::dsp::Step::Duplicate => false,
        },
    )
}

macro_rules! process_record {
    ($t:ty, $machine:ty, $what:expr, $load:ident, $save:ident, $terminated:expr, $module:ident, $step:path) => {
        impl ProcessRecord for $t {
            type Machine = $machine;
            const WHAT: &'static str = $what;
            const PATH: &'static str = concat!($what, "s");
            const PURPOSE: &'static str = $module::PURPOSE_MESSAGE;
            fn message_type(message: MessageOf<Self>) -> &'static str {
                $module::message_type(message)
            }
            fn message_url(&self, message: MessageOf<Self>) -> EngineResult<String> {
                $module::message_url(self, message)
            }
            fn state(&self) -> <$machine as StateMachine>::State {
                self.state
            }
            fn set_state(&mut self, state: <$machine as StateMachine>::State) {
                self.state = state;
            }
            fn peer_id(&self) -> &str {
                &self.peer_id
            }
            fn peer_address(&self) -> &str {
                &self.peer_address
            }
            fn role(&self) -> Role {
                self.role
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn pid_slots(&mut self) -> (&mut Option<String>, &mut Option<String>) {
                (&mut self.provider_pid, &mut self.consumer_pid)
            }
            fn load(tx: &Tx<'_>, id: &str) -> anyhow::Result<Option<Self>> {
                tx.$load(id)
            }
            fn save(&self, tx: &mut Tx<'_>, note: &str) -> anyhow::Result<()> {
                tx.$save(self, note)
            }
            fn is_terminal(&self) -> bool {
                self.state.is_terminal()
            }
            fn terminate_locally(&mut self, why: String) {
                self.state = $terminated;
                self.error = Some(why.chars().take(1024).collect());
            }
            fn step(
                &mut self,
                sender: Role,
                message: MessageOf<Self>,
            ) -> Result<bool, TransitionError<Self::Machine>> {
                $step(self, sender, message)
            }
        }
    };
}
process_record!(
    Negotiation,
    crate::dsp::negotiation::Negotiation,
    "negotiation",
    negotiation,
    update_negotiation,
    NegotiationState::Terminated,
    negotiation,
    table_step
);
process_record!(
    Transfer,
    crate::dsp::transfer::Transfer,
    "transfer",
    transfer,
    update_transfer,
    TransferState::Terminated,
    transfer,
    transfer::step_record
);

/// Applies a message the peer `caller` sent about our process `pid`, inside a transaction:
/// unknown processes and processes of other parties are both "not found"; the body's pids
/// must match; the state machine decides. A message that has no transition from the current
/// state is refused, also when it repeats the one that led there (DSP 2025-1 and the TCK's
/// CN:03-04 want a 4xx for that too): it changes nothing, and a sender retrying a message we
/// applied learns from our state that it landed (see [`peer_already_applied`]). Returns the
/// process as the message left it.
pub fn receive_in<P: ProcessRecord>(
    tx: &Tx<'_>,
    caller: &str,
    pid: &str,
    body_pids: (&str, &str),
    message: <P::Machine as StateMachine>::Message,
) -> EngineResult<P> {
    let mut p = P::load(tx, pid)?.ok_or(EngineError::NotFound(P::WHAT))?;
    if p.peer_id() != caller {
        return Err(EngineError::NotFound(P::WHAT));
    }
    check_pids(&mut p, body_pids)?;
    if !p.step(p.role().peer(), message)? {
        return Err(repeated::<P>(p.state()));
    }
    Ok(p)
}

/// The refusal of a message that repeats the one that led to `state`.
fn repeated<P: ProcessRecord>(state: <P::Machine as StateMachine>::State) -> EngineError {
    EngineError::Illegal(format!(
        "the {} is {} already: the message has no transition from there",
        P::WHAT,
        <P::Machine as StateMachine>::state_name(state)
    ))
}

/// [`receive_in`] in its own transaction; `update` records the message's content.
pub async fn receive<P: ProcessRecord + Clone>(
    node: &crate::node::Node,
    caller: &str,
    pid: &str,
    body_pids: (&str, &str),
    message: MessageOf<P>,
    update: impl FnOnce(&mut P) -> EngineResult<()>,
) -> EngineResult<P> {
    receive_then(node, caller, pid, body_pids, message, update, |_, _| None).await
}

/// An automatic step of our role: what it does to a process inside a change.
pub type Step<'s, P> = Box<dyn FnOnce(&mut Tx<'_>, &mut P) -> EngineResult<()> + Send + 's>;

/// [`receive`], then the automatic step that `then` picks for the process as received, in
/// the same change (see `follow_up`). Returns the process as the message left it.
pub async fn receive_then<'s, P: ProcessRecord + Clone>(
    node: &crate::node::Node,
    caller: &str,
    pid: &str,
    body_pids: (&str, &str),
    message: MessageOf<P>,
    update: impl FnOnce(&mut P) -> EngineResult<()>,
    then: impl FnOnce(&Tx<'_>, &P) -> Option<Step<'s, P>>,
) -> EngineResult<P> {
    let note = format!("received {}", P::message_type(message));
    node.store
        .transact(|tx| {
            let mut p = receive_in::<P>(tx, caller, pid, body_pids, message)?;
            update(&mut p)?;
            p.save(tx, &note)?;
            let received = p.clone();
            if let Some(step) = then(tx, &p) {
                follow_up(tx, &mut p, step)?;
            }
            Ok(received)
        })
        .await
}

/// Takes our automatic next step inside the change that led to it: both commit together, in
/// one commit instead of two, with no moment between them for a crash to fall into. If the
/// step fails, only the step is undone: the process stays as it was, and the failure is
/// logged (a restart tries the step again, see [`resume`]).
pub(crate) fn follow_up<P: ProcessRecord + Clone>(
    tx: &mut Tx<'_>,
    p: &mut P,
    step: Step<'_, P>,
) -> anyhow::Result<()> {
    let before = p.clone();
    if let Err(e) = tx.attempt(|tx| step(tx, p))? {
        tracing::warn!(process = p.id(), error = %e, "automatic step failed");
        *p = before;
    }
    Ok(())
}

/// The provider's answer to our initial request carries its pid: remember it (inside the
/// change that takes the request off the queue).
pub fn learn_provider_pid<P: ProcessRecord>(
    tx: &mut Tx<'_>,
    id: &str,
    answer: &Value,
) -> anyhow::Result<()> {
    let Some(provider_pid) = answer.get("providerPid").and_then(Value::as_str) else {
        tracing::warn!(process = id, "the provider's answer carries no providerPid");
        return Ok(());
    };
    if let Some(mut p) = P::load(tx, id)? {
        let (slot, _) = p.pid_slots();
        if slot.is_none() {
            *slot = Some(provider_pid.to_string());
            p.save(tx, "provider acknowledged")?;
        }
    }
    Ok(())
}

/// Whether the peer's process already is in the state our undelivered message led to, or one
/// after it: a retried message whose first delivery landed (and whose answer was lost) is
/// refused by a peer that moved on, and that refusal must not end our process. Asks the peer
/// (`GET <peer>/negotiations/<pid>`); any doubt reads as "no".
pub async fn peer_already_applied<P: ProcessRecord>(
    store: &Store,
    peers: &crate::client::PeerClient,
    id: &str,
    body: &Value,
) -> bool {
    let Ok(Some(mut p)) = store.transact(|tx| P::load(tx, id)).await else {
        return false;
    };
    let role = p.role();
    let (provider, consumer) = p.pid_slots();
    let Some(peer_pid) = peer_pid(role, provider, consumer).map(str::to_owned) else {
        return false;
    };
    let url = join_url(
        p.peer_address(),
        &format!("{}/{}", P::PATH, crate::mgmt_client::segment(&peer_pid)),
    );
    // the peer may have moved on since (a crash between its commit and its answer)
    // from the state the message led to: ours may have moved on meanwhile too
    let sent = target_of::<P>(body).unwrap_or(p.state());
    let applied: Vec<&str> = crate::dsp::later_states::<P::Machine>(sent)
        .into_iter()
        .map(<P::Machine as StateMachine>::state_name)
        .collect();
    let Ok(peer) = peers.to_participant(p.peer_id()) else {
        return false;
    };
    match peer.get_json(&url).await {
        Ok((_, answer)) => answer
            .get("state")
            .and_then(Value::as_str)
            .is_some_and(|s| applied.contains(&s)),
        Err(e) => {
            tracing::warn!(process = id, error = %e, "asking the peer for its state failed");
            false
        }
    }
}

/// The peer's process id: the consumer's for our provider side, the provider's for our
/// consumer side.
pub(crate) fn peer_pid<'a>(
    role: Role,
    provider_pid: &'a Option<String>,
    consumer_pid: &'a Option<String>,
) -> Option<&'a str> {
    match role {
        Role::Provider => consumer_pid.as_deref(),
        Role::Consumer => provider_pid.as_deref(),
    }
}

/// The state a queued message (`@type`, and `eventType` for events) led its process to.
fn target_of<P: ProcessRecord>(body: &Value) -> Option<<P::Machine as StateMachine>::State> {
    let ty = body.get("@type")?.as_str()?;
    let event = body
        .get("eventType")
        .and_then(Value::as_str)
        .map(|e| e.rsplit(':').next().unwrap_or(e));
    <P::Machine as StateMachine>::MESSAGES
        .iter()
        .filter(|&&m| P::message_type(m) == ty)
        .map(|&m| <P::Machine as StateMachine>::target(m))
        .find(|&s| event.is_none_or(|e| <P::Machine as StateMachine>::state_name(s) == e))
}

/// Marks a process terminated after a peer refused our message for good.
pub async fn fail_locally<P: ProcessRecord>(
    store: &Store,
    id: &str,
    why: &str,
) -> anyhow::Result<()> {
    store
        .transact(|tx| -> anyhow::Result<()> {
            if let Some(mut p) = P::load(tx, id)?
                && !p.is_terminal()
            {
                p.terminate_locally(why.to_string());
                tx.drop_queued(id)?;
                p.save(tx, "delivery failed")?;
            }
            Ok(())
        })
        .await
}

/// The body's pids must name this process; the peer's pid is learnt on first sight. The
/// refusals name the field, never the value sent.
pub fn check_pids(
    p: &mut impl ProcessRecord,
    (provider_pid, consumer_pid): (&str, &str),
) -> EngineResult<()> {
    let role = p.role();
    let id = p.id().to_string();
    let (provider_slot, consumer_slot) = p.pid_slots();
    let ((ours, our_field), (theirs, their_field), peer_slot) = match role {
        Role::Provider => (
            (provider_pid, "providerPid"),
            (consumer_pid, "consumerPid"),
            consumer_slot,
        ),
        Role::Consumer => (
            (consumer_pid, "consumerPid"),
            (provider_pid, "providerPid"),
            provider_slot,
        ),
    };
    if ours != id {
        return Err(EngineError::BadRequest(format!(
            "{our_field} does not name the process addressed in the path"
        )));
    }
    match peer_slot {
        Some(known) if known != theirs => Err(EngineError::BadRequest(format!(
            "{their_field} is not the one this process was opened with"
        ))),
        Some(_) => Ok(()),
        None => {
            *peer_slot = Some(theirs.to_string());
            Ok(())
        }
    }
}

/// Sends `message` from our side: steps the machine, lets `build` add the message's own
/// fields (and record side effects), and commits the new state together with the message in
/// the outbox.
pub async fn send<P: ProcessRecord>(
    node: &crate::node::Node,
    id: &str,
    message: MessageOf<P>,
    build: impl FnOnce(&mut Tx<'_>, &mut P) -> EngineResult<Value>,
) -> EngineResult<P> {
    node.store
        .transact(|tx| {
            let mut p = P::load(tx, id)?.ok_or(EngineError::NotFound(P::WHAT))?;
            send_in(tx, &mut p, message, build)?;
            Ok(p)
        })
        .await
}

/// [`send`] inside a change, on a process already loaded.
pub fn send_in<P: ProcessRecord>(
    tx: &mut Tx<'_>,
    p: &mut P,
    message: MessageOf<P>,
    build: impl FnOnce(&mut Tx<'_>, &mut P) -> EngineResult<Value>,
) -> EngineResult<()> {
    let type_name = P::message_type(message);
    // Retries are the outbox's business; a second local send is a mistake.
    if !p.step(p.role(), message)? {
        return Err(repeated::<P>(p.state()));
    }
    let mut fields = build(tx, p)?;
    let (provider, consumer) = p.pid_slots();
    fields["providerPid"] = Value::String(provider.clone().unwrap_or_default());
    fields["consumerPid"] = Value::String(consumer.clone().unwrap_or_default());
    let body = crate::dsp::messages::message(type_name, fields);
    p.save(tx, &format!("sent {type_name}"))?;
    tx.enqueue(p.id(), P::PURPOSE, &p.message_url(message)?, &body)?;
    Ok(())
}

/// Opens our (consumer) process `p` together with its initial request `body` in the outbox.
pub(crate) async fn open_with_request<P: crate::store::PeerOpened + Sync>(
    node: &crate::node::Node,
    p: &P,
    id: &str,
    purpose: &str,
    url: &str,
    body: &Value,
) -> EngineResult<()> {
    let note = format!("sent {}", body["@type"].as_str().unwrap_or("its request"));
    node.store
        .transact(|tx| -> EngineResult<()> {
            p.insert(tx, &note)?;
            tx.enqueue(id, purpose, url, body)?;
            Ok(())
        })
        .await
}

/// After a restart: takes again every automatic step that a crash may have cut off between
/// a commit and its reaction (agree, verify, finalize, start a transfer). Each step is a
/// state transition committed with its message, so one already taken is not repeated: its
/// process has moved on. The outbox resumes the deliveries on its own. Returns how many
/// negotiations and transfers were looked at.
pub fn resume(node: &crate::node::Shared) -> anyhow::Result<(usize, usize)> {
    use NegotiationState as N;
    let open = [
        N::Requested,
        N::Offered,
        N::Accepted,
        N::Agreed,
        N::Verified,
    ];
    let negotiations = node.store.negotiations_in(&open)?;
    let transfers = node.store.transfers_in(&[TransferState::Requested])?;
    let counts = (negotiations.len(), transfers.len());
    for n in negotiations {
        negotiation::react(node.clone(), n);
    }
    for t in transfers {
        transfer::react(node.clone(), t);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::negotiation;
    use anyhow::anyhow;

    /// Opens a negotiation in one change with an automatic step that moves it to AGREED and
    /// queues a message, then fails if `fail`; returns the process as the change left it.
    async fn open_with_step(store: &Store, fail: bool) -> Negotiation {
        store
            .transact(|tx| -> anyhow::Result<Negotiation> {
                let mut n = negotiation("n1");
                tx.insert_negotiation(&n, "received")?;
                let step: Step<'_, Negotiation> = Box::new(move |tx, n| {
                    n.state = NegotiationState::Agreed;
                    n.save(tx, "sent ContractAgreementMessage")?;
                    tx.enqueue(&n.id, "x", "https://p/dsp", &serde_json::json!({}))?;
                    match fail {
                        true => Err(EngineError::Internal(anyhow!("the step broke"))),
                        false => Ok(()),
                    }
                });
                follow_up(tx, &mut n, step)?;
                Ok(n)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_failed_automatic_step_is_undone_and_the_change_before_it_stands() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let kept = open_with_step(&store, true).await;
        assert_eq!(
            kept.state,
            NegotiationState::Requested,
            "restored in memory"
        );
        let stored = store.negotiation("n1").unwrap().unwrap();
        assert_eq!(
            stored.state,
            NegotiationState::Requested,
            "the step's write is undone"
        );
        let history = store.history("n1").unwrap();
        assert_eq!(history.len(), 1, "{history:?}");
        assert!(
            store.queued_after(0, 10).unwrap().is_empty(),
            "nothing queued"
        );
    }

    #[tokio::test]
    async fn a_successful_automatic_step_commits_with_the_change_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let n = open_with_step(&store, false).await;
        assert_eq!(n.state, NegotiationState::Agreed);
        let stored = store.negotiation("n1").unwrap().unwrap();
        assert_eq!(stored.state, NegotiationState::Agreed);
        assert_eq!(store.history("n1").unwrap().len(), 2);
        assert_eq!(store.queued_after(0, 10).unwrap().len(), 1);
    }
}
