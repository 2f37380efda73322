//! CORS for the browser frontend: the exact origins of
//! `CORS_ALLOWED_ORIGINS`, with credentials (the `__session` cookie).

use crate::Settings;
use actix_cors::Cors;
use actix_web::http::{Method, header};

/// The CORS middleware for `settings`. Requests from other origins are
/// served without CORS headers (so browsers keep their responses from
/// scripts of those origins); their preflights are refused.
pub fn cors(settings: &Settings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PUT, Method::OPTIONS])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("x-request-id"),
        ])
        // Lets the frontend read the id to quote in a support request.
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .supports_credentials()
        .block_on_origin_mismatch(false)
        .max_age(3600);
    for origin in &settings.cors_allowed_origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
