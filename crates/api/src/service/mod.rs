//! The product's rules between the transports and the store.
//!
//! A service composes store reads and applies the rules of the product
//! (week and period sums, averages, error rates, budget use and
//! projections); it returns plain structs. The rule: a service knows no HTTP
//! (no actix, no DTO, no status code) and no scheduling; routes map its
//! results to their response types and its errors to [`crate::ApiError`],
//! jobs and the command line call it the same way.
//!
//! - [`stats`]: Charlie Stats of one user (my-stats, the admin view of a user).
//! - [`overview`]: the admin overview.
//! - [`budgets`]: month-to-date usage against a budget.
//! - [`ingest`]: raw items checked, written and answered in order, for every
//!   transport.
//! - [`reports`]: weekly reports' week maths, figures and e-mail rendering.

pub mod budgets;
pub mod ingest;
pub mod overview;
pub mod reports;
pub mod stats;

use crate::{ApiError, error::ErrorCode};
use charlie_store::StoreError;

/// Why a service could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request cannot be answered as asked (the caller's input).
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },
    /// Something the request names does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The store failed (see [`StoreError`] for which are faults).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    /// A period that the calendar cannot hold (beyond year 9999 in a zone).
    pub(crate) fn outside_calendar() -> Self {
        ServiceError::Invalid {
            code: ErrorCode::InvalidParameter,
            message: "the period is outside the calendar".into(),
        }
    }
}

/// `num ÷ den` rounded to `places` decimals (half away from zero); 0 when
/// `den` is not positive. For the API's ratios, which are floats by contract.
pub fn rounded_ratio(num: i64, den: i64, places: i32) -> f64 {
    if den <= 0 {
        return 0.0;
    }
    let scale = 10f64.powi(places);
    (num as f64 / den as f64 * scale).round() / scale
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { code, message } => ApiError::bad_request(code, message),
            ServiceError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            ServiceError::Store(e) => e.into(),
        }
    }
}
