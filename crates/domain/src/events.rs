//! The activity-event vocabulary of the reporting plan (`EventTypes` and
//! `EventCategories`). Events with other names are still stored, as strings;
//! these enums say which names are known.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The known value with this exact name, if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// Standard event types for user activity tracking.
    EventType {
        UserSignedUp => "user_signed_up",
        OnboardingStarted => "onboarding_started",
        OnboardingCompleted => "onboarding_completed",
        ComponentCreated => "component_created",
        ComponentUpdated => "component_updated",
        ComponentPublished => "component_published",
        ComponentDeleted => "component_deleted",
        WorkflowCreated => "workflow_created",
        WorkflowUpdated => "workflow_updated",
        WorkflowPublished => "workflow_published",
        WorkflowDeleted => "workflow_deleted",
        MessageSent => "message_sent",
        ConversationStarted => "conversation_started",
        ConversationCompleted => "conversation_completed",
        CanvasOpened => "canvas_opened",
        NodeAdded => "node_added",
        NodeModified => "node_modified",
    }
);

vocabulary!(
    /// Standard event categories for grouping.
    EventCategory {
        Onboarding => "onboarding",
        Components => "components",
        Workflows => "workflows",
        Engagement => "engagement",
        Canvas => "canvas",
    }
);

impl EventType {
    /// The category the plan files this event type under.
    pub fn category(&self) -> EventCategory {
        use EventType::*;
        match self {
            UserSignedUp | OnboardingStarted | OnboardingCompleted => EventCategory::Onboarding,
            ComponentCreated | ComponentUpdated | ComponentPublished | ComponentDeleted => {
                EventCategory::Components
            }
            WorkflowCreated | WorkflowUpdated | WorkflowPublished | WorkflowDeleted => {
                EventCategory::Workflows
            }
            MessageSent | ConversationStarted | ConversationCompleted => EventCategory::Engagement,
            CanvasOpened | NodeAdded | NodeModified => EventCategory::Canvas,
        }
    }

    /// Funnel milestones happen at most once per entity (a user signs up
    /// once, a workflow is created once). The service records them itself and
    /// ignores a second report of the same milestone for the same entity.
    pub fn is_once_per_entity(&self) -> bool {
        matches!(
            self,
            EventType::UserSignedUp
                | EventType::ComponentCreated
                | EventType::WorkflowCreated
                | EventType::ConversationStarted
                | EventType::MessageSent
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_parses_back_to_itself() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
        for c in EventCategory::ALL {
            assert_eq!(EventCategory::parse(c.as_str()), Some(*c));
        }
        assert_eq!(EventType::parse("Workflow_Created"), None);
        assert_eq!(EventCategory::parse("billing"), None);
    }

    #[test]
    fn funnel_milestones_are_filed_under_the_plan_categories() {
        assert_eq!(
            EventType::UserSignedUp.category(),
            EventCategory::Onboarding
        );
        assert_eq!(
            EventType::WorkflowCreated.category(),
            EventCategory::Workflows
        );
        assert_eq!(EventType::MessageSent.category(), EventCategory::Engagement);
        assert!(EventType::MessageSent.is_once_per_entity());
        assert!(!EventType::NodeAdded.is_once_per_entity());
    }
}
