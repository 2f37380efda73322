//! Request ids: the `X-Request-Id` a caller sends (when it is usable) or
//! one generated here, echoed in the response and carried by the request's
//! log lines, its Sentry events and its `error_logs` row.

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};
use std::{fmt, future::Ready};

/// The request header (and response header) that carries the id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest id accepted (the width of `error_logs.request_id`).
pub const MAX_REQUEST_ID_CHARS: usize = 100;

/// The id of one request. Handlers read it as an extractor
/// (`request_id: RequestId`) or with [`RequestId::of`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// A caller's id when it is 1 to 100 characters of `A-Z a-z 0-9 . _ -`,
    /// which keeps ids safe to log, to put in headers and to search for.
    pub fn parse(raw: &str) -> Option<RequestId> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_REQUEST_ID_CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| RequestId(raw.to_owned()))
    }

    /// A new id: a UUID v7, so ids sort by time.
    pub fn generate() -> RequestId {
        RequestId(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id the observability middleware gave this request, if it ran.
    pub fn of(req: &HttpRequest) -> Option<RequestId> {
        req.extensions().get::<RequestId>().cloned()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    /// Never fails: without the middleware (in-process handler tests) a
    /// fresh id is made up.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(RequestId::of(req).unwrap_or_else(RequestId::generate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_ids_are_kept_and_others_refused() {
        for good in ["abc", "req-1.2_3", &"a".repeat(100)] {
            assert_eq!(RequestId::parse(good).map(|r| r.0), Some(good.to_owned()));
        }
        for bad in [
            "",
            &"a".repeat(101),
            "has space",
            "new\nline",
            "quote\"",
            "émoji",
            "a/b",
        ] {
            assert_eq!(RequestId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_uuid_v7_and_valid() {
        let id = RequestId::generate();
        let parsed = uuid::Uuid::parse_str(id.as_str()).ok();
        assert_eq!(parsed.map(|u| u.get_version_num()), Some(7));
        assert!(RequestId::parse(id.as_str()).is_some());
    }
}
