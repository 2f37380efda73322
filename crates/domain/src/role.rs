use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    System,
    Tool,
}

impl MessageRole {
    pub const ALL: [MessageRole; 4] = [Self::User, Self::Assistant, Self::System, Self::Tool];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::System => "system",
            Self::Tool => "tool",
        }
    }
}

impl FromStr for MessageRole {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| DomainError::UnknownRole(s.to_owned()))
    }
}

impl fmt::Display for MessageRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_is_rejected() {
        for role in MessageRole::ALL {
            assert_eq!(role.as_str().parse::<MessageRole>(), Ok(role));
        }
        assert!(
            matches!("robot".parse::<MessageRole>(), Err(DomainError::UnknownRole(r)) if r == "robot")
        );
    }
}
