use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (v7) id, for rows the service creates itself.
            pub fn new_v7() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }

        impl From<$name> for Uuid {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A platform user (our `users.id`, not the auth provider's id).
    UserId
);
id_type!(
    /// A workflow (a Langflow flow wrapped by the platform).
    WorkflowId
);
id_type!(
    /// An agent component.
    ComponentId
);
id_type!(
    /// A conversation (one chat session with a workflow).
    ConversationId
);
id_type!(
    /// One message of a conversation.
    MessageId
);
id_type!(
    /// One row of `user_activity_events`.
    EventId
);
id_type!(
    /// One row of `error_logs`.
    ErrorLogId
);
