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

/// A transfer's DSP state together with who may end its suspension.
///
/// DSP 2025-1 lets either party suspend a started transfer and send a `TransferStartMessage`
/// for a suspended one. A provider's suspension is a revocation, though: a consumer whose
/// transfer the provider suspended must not bring it back by itself. So a suspension the
/// provider sends is *held* by the provider: only the provider's own `TransferStartMessage`
/// (the operator's decision, or an automatic rule of its config) resumes it, and the
/// consumer's is refused as a transition the provider does not accept (DSP: 400 with a
/// `TransferError`). A suspension the consumer sends is not held: the consumer resumes it, and
/// so may the provider (the data is the provider's to serve). A provider's suspension of a
/// transfer the consumer already suspended takes the hold over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Held {
    /// The DSP state.
    pub state: TransferState,
    /// Whether the provider holds the transfer suspended (only ever with `SUSPENDED`).
    pub provider_hold: bool,
}

/// Applies `message` from `sender` to a transfer in `from`, with the provider's hold on
/// suspensions (see [`Held`]). `provider_holds`: whether a provider's suspension is held —
/// `false` only where the provider's config lets consumers resume its suspensions; the
/// consumer side, which cannot know that config, passes `true`.
pub fn step_held(
    sender: Role,
    from: Held,
    message: TransferMessage,
    provider_holds: bool,
) -> Result<Step<Held>, TransferError> {
    let held = from.state == TransferState::Suspended && from.provider_hold;
    if held && message == TransferMessage::Start && sender == Role::Consumer {
        return Err(TransitionError::Held {
            holder: Role::Provider,
            message,
        });
    }
    let takes_hold = sender == Role::Provider && provider_holds;
    Ok(
        match super::step::<Transfer>(sender, Some(from.state), message)? {
            Step::Moved(state) => Step::Moved(Held {
                state,
                provider_hold: state == TransferState::Suspended && takes_hold,
            }),
            // the provider suspends what the consumer suspended: now the provider holds it
            Step::Duplicate if message == TransferMessage::Suspension && takes_hold && !held => {
                Step::Moved(Held {
                    state: from.state,
                    provider_hold: true,
                })
            }
            Step::Duplicate => Step::Duplicate,
        },
    )
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

    /// (from, held by the provider, message, sender, to, held after): every transition that
    /// the provider's hold changes or refuses, beyond [`LEGAL`] (where the hold is cleared,
    /// except for the provider's suspension, which takes it when `provider_holds`).
    /// (from, held, message, sender, (to, held after) or refused).
    type HoldRow = (S, bool, M, Role, Option<(S, bool)>);

    const HOLDS: &[HoldRow] = &[
        // the provider's suspension is held; the consumer's request to resume it is refused
        (S::Suspended, true, M::Start, Role::Consumer, None),
        (
            S::Suspended,
            true,
            M::Start,
            Role::Provider,
            Some((S::Started, false)),
        ),
        // the consumer's suspension: either party resumes it
        (
            S::Suspended,
            false,
            M::Start,
            Role::Consumer,
            Some((S::Started, false)),
        ),
        (
            S::Suspended,
            false,
            M::Start,
            Role::Provider,
            Some((S::Started, false)),
        ),
        // the provider suspending what the consumer suspended takes the hold over
        (
            S::Suspended,
            false,
            M::Suspension,
            Role::Provider,
            Some((S::Suspended, true)),
        ),
        // a consumer's repeat of a suspension changes nothing, held or not
        (
            S::Suspended,
            true,
            M::Suspension,
            Role::Consumer,
            Some((S::Suspended, true)),
        ),
        (
            S::Suspended,
            true,
            M::Suspension,
            Role::Provider,
            Some((S::Suspended, true)),
        ),
        (
            S::Suspended,
            false,
            M::Suspension,
            Role::Consumer,
            Some((S::Suspended, false)),
        ),
        // a held transfer can still be ended by either party
        (
            S::Suspended,
            true,
            M::Termination,
            Role::Consumer,
            Some((S::Terminated, false)),
        ),
        (
            S::Suspended,
            true,
            M::Termination,
            Role::Provider,
            Some((S::Terminated, false)),
        ),
    ];

    #[test]
    fn every_state_hold_message_and_role() {
        for state in S::ALL {
            for provider_hold in [false, true] {
                for message in M::ALL {
                    for sender in [Role::Provider, Role::Consumer] {
                        for provider_holds in [false, true] {
                            let from = Held {
                                state,
                                provider_hold,
                            };
                            let got = step_held(sender, from, message, provider_holds);
                            let listed = HOLDS.iter().find(|(f, h, m, r, _)| {
                                *f == state && *h == provider_hold && *m == message && *r == sender
                            });
                            let expected = match listed {
                                Some((_, _, M::Suspension, Role::Provider, _))
                                    if !provider_holds =>
                                {
                                    // without the hold, the provider's repeat is a repeat
                                    Some(Step::Duplicate)
                                }
                                Some((.., Some((to, hold))))
                                    if (*to, *hold) == (state, provider_hold) =>
                                {
                                    Some(Step::Duplicate)
                                }
                                Some((.., Some((to, hold)))) => Some(Step::Moved(Held {
                                    state: *to,
                                    provider_hold: *hold,
                                })),
                                Some((.., None)) => None,
                                None if provider_hold && state != S::Suspended => {
                                    // not a reachable record: the hold only exists while suspended
                                    continue;
                                }
                                None => send(sender, Some(state), message).ok().map(|s| match s {
                                    Step::Moved(to) => Step::Moved(Held {
                                        state: to,
                                        provider_hold: to == S::Suspended
                                            && sender == Role::Provider
                                            && provider_holds,
                                    }),
                                    Step::Duplicate => Step::Duplicate,
                                }),
                            };
                            assert_eq!(
                                got.clone().ok(),
                                expected,
                                "{sender} sends {message:?} in {state:?} (held: {provider_hold}, holds: {provider_holds})"
                            );
                            if listed.is_some_and(|l| l.4.is_none()) {
                                assert!(
                                    matches!(
                                        got,
                                        Err(TransitionError::Held {
                                            holder: Role::Provider,
                                            ..
                                        })
                                    ),
                                    "{got:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_provider_suspension_is_released_only_by_the_provider() {
        let started = Held {
            state: S::Started,
            provider_hold: false,
        };
        let Ok(Step::Moved(suspended)) = step_held(Role::Provider, started, M::Suspension, true)
        else {
            panic!("the provider suspends")
        };
        assert!(suspended.provider_hold);
        let refused = step_held(Role::Consumer, suspended, M::Start, true).unwrap_err();
        assert!(
            refused.to_string().contains("only the provider"),
            "{refused}"
        );
        // the provider's config may let consumers resume: its suspension is then not held
        let Ok(Step::Moved(lenient)) = step_held(Role::Provider, started, M::Suspension, false)
        else {
            panic!("the provider suspends")
        };
        assert_eq!(
            step_held(Role::Consumer, lenient, M::Start, true).unwrap(),
            Step::Moved(started)
        );
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
