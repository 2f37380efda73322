//! The one HTTP error type. Every error body is `{"code", "message"}` with a
//! stable machine-readable `code`; 5xx bodies are opaque and the cause goes to
//! the log.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
pub use charlie_domain::ErrorCode;
use charlie_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({"code": "invalid_parameter", "message": "days must be between 1 and 365"}))]
pub struct ErrorBody {
    /// Stable, machine-readable error code (snake_case). Clients branch on it.
    pub code: String,
    /// Human-readable explanation; may change between versions.
    pub message: String,
}

/// An error an HTTP handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists with other methods; `allow` lists them.
    #[error("{message}")]
    MethodNotAllowed { message: String, allow: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A rate limit was reached; `retry_after` whole seconds until the next
    /// request is allowed.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// An unexpected failure; the cause (with its chain) is logged, never
    /// shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The HTTP status of every error code: the one table. Item-level codes
/// answer 400 when a whole request fails with them (an ingestion item's own
/// HTTP-style `status` is set by the ingest route: 409 for `conflict` and
/// `id_reused`, else 400).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidParameter
        | ErrorCode::InvalidJson
        | ErrorCode::InvalidBody
        | ErrorCode::InvalidValue
        | ErrorCode::UnsupportedMediaType
        | ErrorCode::UnpricedModel
        | ErrorCode::Conflict
        | ErrorCode::InvalidUsage
        | ErrorCode::MissingField
        | ErrorCode::InvalidField
        | ErrorCode::InvalidId
        | ErrorCode::InvalidItem
        | ErrorCode::InvalidLlmResponse
        | ErrorCode::InvalidTimestamp
        | ErrorCode::TimestampInFuture
        | ErrorCode::UnknownRole
        | ErrorCode::UnknownType
        | ErrorCode::IdReused
        | ErrorCode::BeyondRetention => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable | ErrorCode::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A message that is its own cause (for [`ApiError::internal`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Fault(String);

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// An internal fault described by a message (use `From` or
    /// [`ApiError::fault`] to keep an error and its chain).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(Box::new(Fault(cause.to_string())))
    }

    /// An internal fault caused by `error`, whose chain is kept for the log.
    pub fn fault(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(error))
    }

    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest { code, .. } => *code,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::TooManyRequests { .. } => ErrorCode::RateLimited,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::InternalError,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict(m) => ApiError::bad_request(ErrorCode::Conflict, m),
            StoreError::Invalid(m) => ApiError::bad_request(ErrorCode::InvalidValue, m),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "the database is unavailable");
                ApiError::Unavailable(
                    "the database is unavailable or too slow right now; retry later".into(),
                )
            }
            other => ApiError::fault(other),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Internal(cause) => {
                tracing::error!(error.cause = %chain(cause.as_ref()), "internal error");
                "an internal error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let mut builder = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                builder.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                builder.insert_header(("Allow", allow.as_str()));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                builder.insert_header(("Retry-After", retry_after.to_string()));
            }
            ApiError::Unavailable(_) => {
                builder.insert_header(("Retry-After", "5"));
            }
            _ => {}
        }
        builder.json(ErrorBody {
            code: self.code().as_str().to_owned(),
            message,
        })
    }
}

/// A failure of a command that ends the process with a message on stderr:
/// the error and every cause of its chain.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::error::Error + 'static> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(chain(&e))
    }
}

/// An error and its causes, `: `-separated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(e: &ApiError) -> serde_json::Value {
        let bytes = e
            .error_response()
            .into_body()
            .try_into_bytes()
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    #[test]
    fn errors_serialize_to_code_and_message() {
        let e = ApiError::bad_request(
            ErrorCode::InvalidParameter,
            "days must be between 1 and 365",
        );
        assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_of(&e),
            serde_json::json!({"code": "invalid_parameter", "message": "days must be between 1 and 365"})
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::internal("connection refused to postgres://app:pw@db");
        let body = body_of(&e);
        assert_eq!(body["code"], "internal_error");
        assert!(
            !body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("postgres")
        );
    }

    #[test]
    fn every_code_has_a_status_in_the_table() {
        for code in ErrorCode::ALL {
            let status = status_of(code);
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}: {status}"
            );
        }
        assert_eq!(
            status_of(ErrorCode::InternalError),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_of(ErrorCode::RateLimited),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn store_faults_are_500s_and_keep_their_cause() {
        for fault in [
            StoreError::Internal("a statement that cannot be built".into()),
            StoreError::Corrupt("pending message: missing field".into()),
        ] {
            let e = ApiError::from(fault);
            assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(e.code(), ErrorCode::InternalError);
            let source = std::error::Error::source(&e).map(|s| s.to_string());
            assert!(
                source
                    .as_deref()
                    .is_some_and(|s| s.contains("statement") || s.contains("pending message")),
                "{source:?}"
            );
        }
        let caller = ApiError::from(StoreError::Invalid("amount out of range".into()));
        assert_eq!(caller.status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(caller.code(), ErrorCode::InvalidValue);
    }

    #[test]
    fn the_chain_names_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the report template")]
        struct Outer(#[source] std::io::Error);
        let e = ApiError::fault(Outer(std::io::Error::other("disk gone")));
        assert_eq!(
            chain(&e),
            "internal error: reading the report template: disk gone"
        );
    }
}
