//! `Rollups-As-Of`: how fresh an analytics answer is.
//!
//! Every `GET` under `/api/v1/analytics` that succeeds carries the header
//! `Rollups-As-Of: <RFC 3339 instant>`: every item acknowledged (answered
//! `created`) before that instant is counted in the answer. It is read
//! before the handler runs, so the answer's own snapshot is at least as
//! new. On SQLite (rollups folded in the ingest transaction) it is the time
//! of the request; on PostgreSQL it is the start of the last fold cycle
//! this instance finished (the store's `rollups_as_of`), normally well under
//! two seconds old; it is left out until the first cycle has finished.

use crate::AppState;
use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{HeaderName, HeaderValue},
    },
    middleware::Next,
    web,
};

/// The header's name.
pub const ROLLUPS_AS_OF_HEADER: &str = "rollups-as-of";

/// The path prefix of the reads that carry the header.
pub const ANALYTICS_PREFIX: &str = "/api/v1/analytics";

/// The middleware (`App::wrap(from_fn(rollups_as_of))`).
pub async fn rollups_as_of(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let as_of = (req.method() == Method::GET && req.path().starts_with(ANALYTICS_PREFIX))
        .then(|| {
            req.app_data::<web::Data<AppState>>()
                .and_then(|s| s.store.rollups_as_of())
        })
        .flatten();
    let mut res = next.call(req).await?;
    if let Some(t) = as_of
        && res.status().is_success()
        && let Ok(value) = HeaderValue::from_str(&charlie_domain::rfc3339(t))
    {
        res.headers_mut()
            .insert(HeaderName::from_static(ROLLUPS_AS_OF_HEADER), value);
    }
    Ok(res)
}
