//! The one HTTP error type. Every error body is `{"code", "message"}` with a
//! stable machine-readable `code`; 5xx bodies are opaque and the cause goes to
//! the log.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
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
    BadRequest { code: &'static str, message: String },
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
    /// An unexpected failure; the cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict(m) => ApiError::bad_request("conflict", m),
            StoreError::Invalid(m) => ApiError::bad_request("invalid_value", m),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "the database is unavailable");
                ApiError::Unavailable(
                    "the database is unavailable or too slow right now; retry later".into(),
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Internal(cause) => {
                tracing::error!(error.cause = %cause, "internal error");
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
            code: self.code().to_owned(),
            message,
        })
    }
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
        let e = ApiError::bad_request("invalid_parameter", "days must be between 1 and 365");
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
}
