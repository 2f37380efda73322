use sea_orm::DbErr;
use thiserror::Error;

/// Errors of the repository layer.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The requested row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The write contradicts data already stored.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value cannot be stored as given (range, format).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// A stored value cannot be read back (a bug or a hand edit): an
    /// internal fault, never the caller's.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database URL is not one this service can use.
    #[error("unsupported database URL `{0}`: expected postgres://, postgresql:// or sqlite:")]
    UnsupportedUrl(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

/// Result alias of the repository layer.
pub type StoreResult<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// A statement that could not be built (a bug, or values of the wrong shape).
    pub(crate) fn from_query(e: sea_orm::sea_query::error::Error) -> StoreError {
        StoreError::Invalid(format!("cannot build statement: {e}"))
    }
}
