//! The DSP 2025-1 contract negotiation state machine, without IO.
//!
//! [`receive`] and [`send`] are pure functions of (local role, current state, message). They
//! say whether the message is legal and which state follows; persisting the result and
//! delivering messages is the caller's business.

use serde::{Deserialize, Serialize};

use super::{Role, StateMachine, Step, TransitionError};

/// States of a contract negotiation (DSP 2025-1 §"Contract Negotiation States").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NegotiationState {
    /// A contract request was sent by the consumer and acknowledged.
    Requested,
    /// A contract offer was sent by the provider and acknowledged.
    Offered,
    /// The consumer accepted the latest offer.
    Accepted,
    /// The provider sent an agreement.
    Agreed,
    /// The consumer verified the agreement.
    Verified,
    /// The provider finalized the agreement: it is in force.
    Finalized,
    /// Either party terminated the negotiation.
    Terminated,
}

impl NegotiationState {
    /// Every state, for exhaustive tests and listings.
    pub const ALL: [NegotiationState; 7] = [
        Self::Requested,
        Self::Offered,
        Self::Accepted,
        Self::Agreed,
        Self::Verified,
        Self::Finalized,
        Self::Terminated,
    ];

    /// No message may follow a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finalized | Self::Terminated)
    }

    /// The DSP name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Offered => "OFFERED",
            Self::Accepted => "ACCEPTED",
            Self::Agreed => "AGREED",
            Self::Verified => "VERIFIED",
            Self::Finalized => "FINALIZED",
            Self::Terminated => "TERMINATED",
        }
    }

    /// Parses a DSP state name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// The negotiation messages of DSP 2025-1, by their effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiationMessage {
    /// `ContractRequestMessage` (initial or counter-request).
    Request,
    /// `ContractOfferMessage` (initial or counter-offer).
    Offer,
    /// `ContractNegotiationEventMessage` with `eventType` ACCEPTED.
    Accepted,
    /// `ContractAgreementMessage`.
    Agreement,
    /// `ContractAgreementVerificationMessage`.
    Verification,
    /// `ContractNegotiationEventMessage` with `eventType` FINALIZED.
    Finalized,
    /// `ContractNegotiationTerminationMessage`.
    Termination,
}

impl NegotiationMessage {
    /// Every message, for exhaustive tests.
    pub const ALL: [NegotiationMessage; 7] = [
        Self::Request,
        Self::Offer,
        Self::Accepted,
        Self::Agreement,
        Self::Verification,
        Self::Finalized,
        Self::Termination,
    ];

    /// Who may send it; `None` when either party may.
    pub fn sender(self) -> Option<Role> {
        match self {
            Self::Request | Self::Accepted | Self::Verification => Some(Role::Consumer),
            Self::Offer | Self::Agreement | Self::Finalized => Some(Role::Provider),
            Self::Termination => None,
        }
    }

    /// The state a legal message leads to.
    pub fn target(self) -> NegotiationState {
        match self {
            Self::Request => NegotiationState::Requested,
            Self::Offer => NegotiationState::Offered,
            Self::Accepted => NegotiationState::Accepted,
            Self::Agreement => NegotiationState::Agreed,
            Self::Verification => NegotiationState::Verified,
            Self::Finalized => NegotiationState::Finalized,
            Self::Termination => NegotiationState::Terminated,
        }
    }

    /// States (`None`: no negotiation yet) from which the message is legal.
    fn legal_from(self, state: Option<NegotiationState>) -> bool {
        use NegotiationState as S;
        match (self, state) {
            (_, Some(s)) if s.is_terminal() => false,
            (Self::Request, None | Some(S::Offered)) => true,
            (Self::Offer, None | Some(S::Requested)) => true,
            (Self::Accepted, Some(S::Offered)) => true,
            (Self::Agreement, Some(S::Requested | S::Accepted)) => true,
            (Self::Verification, Some(S::Agreed)) => true,
            (Self::Finalized, Some(S::Verified)) => true,
            (Self::Termination, Some(_)) => true,
            _ => false,
        }
    }
}

/// The negotiation protocol, for the generic [`step`](super::step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiation;

impl StateMachine for Negotiation {
    type State = NegotiationState;
    type Message = NegotiationMessage;

    fn may_send(
        sender: Role,
        _state: Option<NegotiationState>,
        message: NegotiationMessage,
    ) -> bool {
        message.sender().is_none_or(|r| r == sender)
    }
    fn target(message: NegotiationMessage) -> NegotiationState {
        message.target()
    }
    fn is_terminal(state: NegotiationState) -> bool {
        state.is_terminal()
    }
    fn legal_from(message: NegotiationMessage, state: Option<NegotiationState>) -> bool {
        message.legal_from(state)
    }
    fn state_name(state: NegotiationState) -> &'static str {
        state.as_str()
    }
    const MESSAGES: &'static [NegotiationMessage] = &NegotiationMessage::ALL;
}

/// Why a negotiation message is refused.
pub type NegotiationError = TransitionError<Negotiation>;

/// A message received from the peer by the party playing `local`.
pub fn receive(
    local: Role,
    state: Option<NegotiationState>,
    message: NegotiationMessage,
) -> Result<Step<NegotiationState>, NegotiationError> {
    super::step::<Negotiation>(local.peer(), state, message)
}

/// A message the party playing `local` wants to send.
pub fn send(
    local: Role,
    state: Option<NegotiationState>,
    message: NegotiationMessage,
) -> Result<Step<NegotiationState>, NegotiationError> {
    super::step::<Negotiation>(local, state, message)
}

#[cfg(test)]
mod tests {
    use super::NegotiationMessage as M;
    use super::NegotiationState as S;
    use super::*;

    /// The transitions DSP 2025-1 allows, as (from, message, to); `None` is "no negotiation".
    const LEGAL: &[(Option<S>, M, S)] = &[
        (None, M::Request, S::Requested),
        (None, M::Offer, S::Offered),
        (Some(S::Requested), M::Offer, S::Offered),
        (Some(S::Requested), M::Agreement, S::Agreed),
        (Some(S::Offered), M::Request, S::Requested),
        (Some(S::Offered), M::Accepted, S::Accepted),
        (Some(S::Accepted), M::Agreement, S::Agreed),
        (Some(S::Agreed), M::Verification, S::Verified),
        (Some(S::Verified), M::Finalized, S::Finalized),
        (Some(S::Requested), M::Termination, S::Terminated),
        (Some(S::Offered), M::Termination, S::Terminated),
        (Some(S::Accepted), M::Termination, S::Terminated),
        (Some(S::Agreed), M::Termination, S::Terminated),
        (Some(S::Verified), M::Termination, S::Terminated),
    ];

    fn states() -> impl Iterator<Item = Option<S>> {
        std::iter::once(None).chain(S::ALL.into_iter().map(Some))
    }

    #[test]
    fn every_state_message_and_role() {
        for state in states() {
            for message in M::ALL {
                for sender in [Role::Provider, Role::Consumer] {
                    let got = send(sender, state, message);
                    let right_sender = message.sender().is_none_or(|r| r == sender);
                    let legal = LEGAL
                        .iter()
                        .find(|(f, m, _)| *f == state && *m == message)
                        .map(|t| t.2);
                    let duplicate =
                        state == Some(message.target()) && !message.target().is_terminal();
                    let expected = match (right_sender, duplicate, legal) {
                        (false, _, _) => None,
                        (true, true, _) => Some(Step::Duplicate),
                        (true, false, Some(to)) => Some(Step::Moved(to)),
                        (true, false, None) => None,
                    };
                    assert_eq!(
                        got.clone().ok(),
                        expected,
                        "{sender} sends {message:?} in {state:?}"
                    );
                    // receiving is sending seen from the other side
                    assert_eq!(receive(sender.peer(), state, message), got);
                }
            }
        }
    }

    #[test]
    fn terminal_states_refuse_everything() {
        for state in [S::Finalized, S::Terminated] {
            for message in M::ALL {
                for role in [Role::Provider, Role::Consumer] {
                    assert!(receive(role, Some(state), message).is_err());
                }
            }
        }
    }

    #[test]
    fn happy_path_consumer_view() {
        let c = Role::Consumer;
        let mut st = None;
        for (m, incoming) in [
            (M::Request, false),
            (M::Agreement, true),
            (M::Verification, false),
            (M::Finalized, true),
        ] {
            let step = if incoming {
                receive(c, st, m)
            } else {
                send(c, st, m)
            };
            match step.unwrap() {
                Step::Moved(s) => st = Some(s),
                Step::Duplicate => panic!("unexpected duplicate"),
            }
        }
        assert_eq!(st, Some(S::Finalized));
    }

    #[test]
    fn provider_cannot_verify() {
        assert!(matches!(
            send(Role::Provider, Some(S::Agreed), M::Verification),
            Err(TransitionError::WrongSender { .. })
        ));
    }

    #[test]
    fn state_names_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
        }
        assert_eq!(S::parse("requested"), None);
    }

    #[test]
    fn later_states_run_forward_and_never_to_terminated() {
        let later = crate::dsp::later_states::<Negotiation>(S::Verified);
        assert_eq!(later, vec![S::Verified, S::Finalized]);
        let from_requested = crate::dsp::later_states::<Negotiation>(S::Requested);
        assert!(from_requested.contains(&S::Finalized));
        assert!(!from_requested.contains(&S::Terminated));
        assert_eq!(
            crate::dsp::later_states::<Negotiation>(S::Finalized),
            vec![S::Finalized]
        );
    }
}
