//! Observability: request ids, the request middleware (log line, metrics,
//! Sentry, `error_logs`), the Prometheus registry, Sentry set-up, and the
//! links admin views show to Sentry and LangSmith. Logging itself is set up
//! in `telemetry`. `as_of` stamps analytics answers with how fresh their
//! rollups are.
//!
//! For handlers:
//! - [`RequestId`] is an extractor (and [`RequestId::of`] reads it);
//! - [`identify_user`] attaches the authenticated user (by id, never by
//!   e-mail) to the request's Sentry scope and to its `error_logs` row;
//! - [`sentry_url`] and [`langsmith_url`] build links for admin rows.

pub mod as_of;
mod links;
pub mod metrics;
mod middleware;
pub mod reporting;
mod request_id;

pub use links::{langsmith_url, sentry_url};
pub use metrics::Metrics;
pub use middleware::Observe;
pub use reporting::{RELEASE, SERVICE_NAME};
pub use request_id::{MAX_REQUEST_ID_CHARS, REQUEST_ID_HEADER, RequestId};

use actix_web::{HttpMessage, HttpRequest};
use uuid::Uuid;

/// The user a request acts for, once authentication knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestUser(pub Uuid);

/// Records the authenticated user of this request: Sentry events of the
/// request carry `user.id` (only the id: `send_default_pii` is off and
/// e-mails never leave), and a 5xx row in `error_logs` gets `user_id`.
pub fn identify_user(req: &HttpRequest, user_id: Uuid) {
    req.extensions_mut().insert(RequestUser(user_id));
    let hub = sentry::Hub::current();
    if hub.client().is_some() {
        hub.configure_scope(|scope| {
            scope.set_user(Some(sentry::User {
                id: Some(user_id.to_string()),
                ..sentry::User::default()
            }));
        });
    }
}
