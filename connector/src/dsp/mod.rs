//! The Dataspace Protocol (DSP 2025-1): sans-IO state machines and message types.
//!
//! Everything here is pure: the HTTP server and client in [`crate::server`] and
//! [`crate::client`] feed messages in and carry messages out.

pub mod jsonld;
pub mod messages;
pub mod negotiation;
pub mod schema;
pub mod transfer;

use std::fmt;

use serde::{Deserialize, Serialize};

/// The JSON-LD context of every DSP 2025-1 message.
pub const DSP_CONTEXT: &str = "https://w3id.org/dspace/2025/1/context.jsonld";

/// The protocol version this connector speaks.
pub const DSP_VERSION: &str = "2025-1";

/// The role a party plays in one negotiation or transfer process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Offers data.
    Provider,
    /// Requests data.
    Consumer,
}

impl Role {
    /// The other party.
    pub fn peer(self) -> Role {
        match self {
            Role::Provider => Role::Consumer,
            Role::Consumer => Role::Provider,
        }
    }

    /// Lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Consumer => "consumer",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Provider, Role::Consumer]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a legal message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<S> {
    /// The process moves to this state.
    Moved(S),
    /// The message repeats the one that led to the current state: nothing changes.
    Duplicate,
}

/// A DSP process state machine: which party may send what, from which state, to which state.
pub trait StateMachine {
    /// Process states.
    type State: Copy + Eq + fmt::Debug;
    /// Messages, by their effect.
    type Message: Copy + Eq + fmt::Debug + 'static;
    /// Whether `sender` may send `message` at all in `state`.
    fn may_send(sender: Role, state: Option<Self::State>, message: Self::Message) -> bool;
    /// The state a legal message leads to.
    fn target(message: Self::Message) -> Self::State;
    /// Whether no message may follow.
    fn is_terminal(state: Self::State) -> bool;
    /// Whether the message is legal from `state` (`None`: the process does not exist yet).
    fn legal_from(message: Self::Message, state: Option<Self::State>) -> bool;
    /// The DSP name of a state.
    fn state_name(state: Self::State) -> &'static str;
    /// Every message, for walks over the transition table.
    const MESSAGES: &'static [Self::Message];
}

/// The states a process in `from` can still reach through legal messages, `from` included,
/// except TERMINATED: a peer showing one of them has applied every message that led to `from`.
pub fn later_states<M: StateMachine>(from: M::State) -> Vec<M::State> {
    let mut seen = vec![from];
    let mut next = 0;
    while let Some(&state) = seen.get(next) {
        next += 1;
        for &message in M::MESSAGES {
            let target = M::target(message);
            let ended = M::state_name(target) == "TERMINATED";
            if M::legal_from(message, Some(state)) && !ended && !seen.contains(&target) {
                seen.push(target);
            }
        }
    }
    seen
}

/// Why a message is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionError<M: StateMachine> {
    /// The message comes from the wrong party (a provider sending a verification, say).
    WrongSender {
        /// The sending role.
        role: Role,
        /// The message.
        message: M::Message,
    },
    /// The process is suspended by `holder`, and only the holder may resume it (a transfer the
    /// provider suspended: see [`transfer::step_held`]).
    Held {
        /// The party that holds the suspension.
        holder: Role,
        /// The message.
        message: M::Message,
    },
    /// The message is not legal in the current state.
    IllegalTransition {
        /// The current state, `None` when the process does not exist yet.
        state: Option<M::State>,
        /// The message.
        message: M::Message,
    },
}

impl<M: StateMachine> fmt::Display for TransitionError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongSender { role, message } => write!(f, "a {role} may not send {message:?}"),
            Self::Held { holder, message } => write!(
                f,
                "{message:?} is refused: the {holder} suspended this process, and only the {holder} resumes it"
            ),
            Self::IllegalTransition { state, message } => write!(
                f,
                "{message:?} is not allowed in state {}",
                state.map(M::state_name).unwrap_or("(none)")
            ),
        }
    }
}

impl<M: StateMachine + fmt::Debug> std::error::Error for TransitionError<M> {}

/// Applies one message sent by `sender` to a process in `state`.
pub fn step<M: StateMachine>(
    sender: Role,
    state: Option<M::State>,
    message: M::Message,
) -> Result<Step<M::State>, TransitionError<M>> {
    if !M::may_send(sender, state, message) {
        return Err(TransitionError::WrongSender {
            role: sender,
            message,
        });
    }
    let target = M::target(message);
    // The message that led to the state we are in, delivered again, changes nothing.
    if state == Some(target) && !M::is_terminal(target) {
        return Ok(Step::Duplicate);
    }
    if !M::legal_from(message, state) {
        return Err(TransitionError::IllegalTransition { state, message });
    }
    Ok(Step::Moved(target))
}
