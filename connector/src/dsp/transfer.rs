//! The DSP 2025-1 transfer process state machine, without IO.

use serde::{Deserialize, Serialize};

use super::{Role, StateMachine, Step, TransitionError};

/// States of a transfer process (DSP 2025-1 §"Transfer Process States").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransferState {
    /// The consumer requested a transfer and the provider acknowledged it.
    Requested,
    /// The provider started the transfer (data may flow).
    Started,
    /// Either party suspended it; it may be resumed.
    Suspended,
    /// Either party completed it.
    Completed,
    /// Either party terminated it.
    Terminated,
}

impl TransferState {
    /// Every state.
    pub const ALL: [TransferState; 5] = [
        Self::Requested,
        Self::Started,
        Self::Suspended,
        Self::Completed,
        Self::Terminated,
    ];

    /// No message may follow a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Terminated)
    }

    /// The DSP name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Started => "STARTED",
            Self::Suspended => "SUSPENDED",
            Self::Completed => "COMPLETED",
            Self::Terminated => "TERMINATED",
        }
    }

    /// Parses a DSP state name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// The transfer messages of DSP 2025-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferMessage {
    /// `TransferRequestMessage`.
    Request,
    /// `TransferStartMessage` (first start, or resumption).
    Start,
    /// `TransferSuspensionMessage`.
    Suspension,
    /// `TransferCompletionMessage`.
    Completion,
    /// `TransferTerminationMessage`.
    Termination,
}

impl TransferMessage {
    /// Every message.
    pub const ALL: [TransferMessage; 5] = [
        Self::Request,
        Self::Start,
        Self::Suspension,
        Self::Completion,
        Self::Termination,
    ];

    fn target(self) -> TransferState {
        match self {
            Self::Request => TransferState::Requested,
            Self::Start => TransferState::Started,
            Self::Suspension => TransferState::Suspended,
            Self::Completion => TransferState::Completed,
            Self::Termination => TransferState::Terminated,
        }
    }
}

/// The transfer protocol, for the generic [`step`](super::step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer;

impl StateMachine for Transfer {
    type State = TransferState;
    type Message = TransferMessage;

    fn may_send(sender: Role, state: Option<TransferState>, message: TransferMessage) -> bool {
        match message {
            TransferMessage::Request => sender == Role::Consumer,
            // Only the provider starts a transfer; either party may resume a suspended one.
            TransferMessage::Start => {
                sender == Role::Provider || state == Some(TransferState::Suspended)
            }
            TransferMessage::Suspension
            | TransferMessage::Completion
            | TransferMessage::Termination => true,
        }
    }
    fn target(message: TransferMessage) -> TransferState {
        message.target()
    }
    fn is_terminal(state: TransferState) -> bool {
        state.is_terminal()
    }
    fn legal_from(message: TransferMessage, state: Option<TransferState>) -> bool {
        use TransferMessage as M;
        use TransferState as S;
        match (message, state) {
            (_, Some(s)) if s.is_terminal() => false,
            (M::Request, None) => true,
            (M::Start, Some(S::Requested | S::Suspended)) => true,
            (M::Suspension | M::Completion, Some(S::Started)) => true,
            (M::Termination, Some(_)) => true,
            _ => false,
        }
    }
    fn state_name(state: TransferState) -> &'static str {
        state.as_str()
    }
    const MESSAGES: &'static [TransferMessage] = &TransferMessage::ALL;
}

/// Why a transfer message is refused.
pub type TransferError = TransitionError<Transfer>;

/// A message received from the peer by the party playing `local`.
pub fn receive(
    local: Role,
    state: Option<TransferState>,
    message: TransferMessage,
) -> Result<Step<TransferState>, TransferError> {
    super::step::<Transfer>(local.peer(), state, message)
}

/// A message the party playing `local` wants to send.
pub fn send(
    local: Role,
    state: Option<TransferState>,
    message: TransferMessage,
) -> Result<Step<TransferState>, TransferError> {
    super::step::<Transfer>(local, state, message)
}

#[cfg(test)]
mod tests {
    use super::TransferMessage as M;
    use super::TransferState as S;
    use super::*;

    /// (from, message, sender, to): every legal transition of DSP 2025-1.
    const LEGAL: &[(Option<S>, M, Role, S)] = &[
        (None, M::Request, Role::Consumer, S::Requested),
        (Some(S::Requested), M::Start, Role::Provider, S::Started),
        (Some(S::Suspended), M::Start, Role::Provider, S::Started),
        (Some(S::Suspended), M::Start, Role::Consumer, S::Started),
        (
            Some(S::Started),
            M::Suspension,
            Role::Provider,
            S::Suspended,
        ),
        (
            Some(S::Started),
            M::Suspension,
            Role::Consumer,
            S::Suspended,
        ),
        (
            Some(S::Started),
            M::Completion,
            Role::Provider,
            S::Completed,
        ),
        (
            Some(S::Started),
            M::Completion,
            Role::Consumer,
            S::Completed,
        ),
        (
            Some(S::Requested),
            M::Termination,
            Role::Provider,
            S::Terminated,
        ),
        (
            Some(S::Requested),
            M::Termination,
            Role::Consumer,
            S::Terminated,
        ),
        (
            Some(S::Started),
            M::Termination,
            Role::Provider,
            S::Terminated,
        ),
        (
            Some(S::Started),
            M::Termination,
            Role::Consumer,
            S::Terminated,
        ),
        (
            Some(S::Suspended),
            M::Termination,
            Role::Provider,
            S::Terminated,
        ),
        (
            Some(S::Suspended),
            M::Termination,
            Role::Consumer,
            S::Terminated,
        ),
    ];

    #[test]
    fn every_state_message_and_role() {
        let states = std::iter::once(None).chain(S::ALL.into_iter().map(Some));
        for state in states {
            for message in M::ALL {
                for sender in [Role::Provider, Role::Consumer] {
                    let got = send(sender, state, message).ok();
                    let legal = LEGAL
                        .iter()
                        .find(|(f, m, r, _)| *f == state && *m == message && *r == sender)
                        .map(|t| Step::Moved(t.3));
                    let duplicate = state == Some(message.target())
                        && !message.target().is_terminal()
                        && Transfer::may_send(sender, state, message);
                    let expected = if duplicate {
                        Some(Step::Duplicate)
                    } else {
                        legal
                    };
                    assert_eq!(got, expected, "{sender} sends {message:?} in {state:?}");
                    assert_eq!(receive(sender.peer(), state, message).ok(), got);
                }
            }
        }
    }

    #[test]
    fn consumer_cannot_start_a_requested_transfer() {
        assert!(matches!(
            send(Role::Consumer, Some(S::Requested), M::Start),
            Err(TransitionError::WrongSender { .. })
        ));
    }

    #[test]
    fn completed_is_final() {
        for m in M::ALL {
            assert!(receive(Role::Provider, Some(S::Completed), m).is_err());
        }
    }
}
