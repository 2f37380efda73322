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
    /// A fault of this service (a statement or value it built that cannot
    /// be sent, a row that must exist and does not): a bug, never the
    /// caller's. The API answers 500.
    #[error("internal fault: {0}")]
    Internal(String),
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
    /// The database could not be reached, is shutting down, or cancelled a
    /// statement that ran past its timeout: worth retrying later (the API
    /// answers 503), neither the caller's fault nor a bug.
    pub fn is_unavailable(&self) -> bool {
        use sea_orm::{ConnAcquireErr, RuntimeErr};
        let StoreError::Db(db) = self else {
            return false;
        };
        match db {
            // A closed pool is our own shutdown (or a bug), not an outage.
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => true,
            DbErr::Conn(RuntimeErr::SqlxError(e))
            | DbErr::Exec(RuntimeErr::SqlxError(e))
            | DbErr::Query(RuntimeErr::SqlxError(e)) => sqlx_unavailable(e),
            DbErr::Conn(_) => true,
            _ => false,
        }
    }

    /// A statement that could not be built (a bug, or values of the wrong shape).
    pub(crate) fn from_query(e: sea_orm::sea_query::error::Error) -> StoreError {
        StoreError::Internal(format!("cannot build statement: {e}"))
    }
}

fn sqlx_unavailable(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match e {
        Error::Io(_)
        | Error::Tls(_)
        | Error::PoolTimedOut
        | Error::WorkerCrashed
        | Error::Protocol(_) => true,
        // Class 08: connection exception; 57P01-03: the server is shutting
        // down or starting; 57014: the statement timeout cancelled it.
        Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "57014")
        }),
        _ => false,
    }
}
