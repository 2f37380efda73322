use thiserror::Error;

/// A value that breaks a domain rule. Messages are written for humans and
/// name the offending field or value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("unknown message role `{0}`: expected user, assistant, system or tool")]
    UnknownRole(String),
    #[error("token usage is inconsistent: {0}")]
    InconsistentUsage(String),
    #[error("token counts overflow a 64-bit counter")]
    UsageOverflow,
    #[error("amount {0} USD is outside the storable range")]
    MoneyOutOfRange(String),
}
