//! Sentry: client options, the `before_send` privacy filter and the hub the
//! application reports through.
//!
//! `serve` installs the process-wide client (`telemetry::init_sentry`) and
//! the application reports through it. An application built without one
//! (tests, embedding) makes a client of its own from the same settings, so
//! that two applications in one process never share a DSN by accident.

use crate::Settings;
use sentry::{
    ClientOptions, Hub, Level, MaxRequestBodySize, Scope,
    protocol::{Event, Exception, User},
};
use std::sync::Arc;

/// The `service` of the service's own `error_logs` rows.
pub const SERVICE_NAME: &str = "charlie-stats";

/// The Sentry release: `charlie-stats@<crate version>`.
pub const RELEASE: &str = concat!("charlie-stats@", env!("CARGO_PKG_VERSION"));

/// Probe routes: their failures are the orchestrator's business and never
/// reach Sentry (nor `error_logs`).
pub const PROBE_ROUTES: [&str; 2] = ["/health", "/ready"];

/// Whether a route template is a probe.
pub fn is_probe_route(route: &str) -> bool {
    PROBE_ROUTES.contains(&route)
}

/// Whether a transaction name (`"GET /health"`: method and route template,
/// as `sentry-actix` names them) belongs to a probe.
fn is_probe_transaction(name: &str) -> bool {
    name.split_once(' ')
        .is_some_and(|(_, route)| is_probe_route(route))
}

/// The client options of `settings`, or `None` when `SENTRY_DSN` is unset.
pub fn sentry_options(settings: &Settings) -> Option<ClientOptions> {
    let dsn = settings
        .sentry
        .dsn
        .as_ref()?
        .expose()
        .trim()
        .parse::<sentry::types::Dsn>()
        .ok()?;
    let rate = settings.sentry.traces_sample_rate;
    let mut options = ClientOptions::new().traces_sampler(move |ctx| {
        if is_probe_transaction(ctx.name()) {
            0.0
        } else {
            rate
        }
    });
    options.dsn = Some(dsn);
    options.release = Some(RELEASE.into());
    options.environment = Some(settings.sentry.environment.clone().into());
    options.send_default_pii = false;
    // Request bodies carry e-mail addresses (user.upsert) and raw LLM text.
    options.max_request_body_size = MaxRequestBodySize::None;
    options.before_send = Some(Arc::new(before_send));
    Some(options)
}

/// The hub the application reports through: the process-wide one when a
/// client is installed, else one with a client of its own, else none.
pub fn app_hub(settings: &Settings) -> Option<Arc<Hub>> {
    let main = Hub::main();
    if main.client().is_some_and(|c| c.is_enabled()) {
        return Some(main);
    }
    let options = sentry_options(settings)?;
    let client = sentry::Client::from(sentry::apply_defaults(options));
    Some(Arc::new(Hub::new(
        Some(Arc::new(client)),
        Arc::new(Scope::default()),
    )))
}

/// The `sentry-actix` middleware: a hub per request (derived from `hub`)
/// whose scope carries the request, and a performance transaction named
/// after the route template (sampled at `SENTRY_TRACES_SAMPLE_RATE`). It
/// does not capture errors itself: [`super::Observe`] does, so that the
/// event id reaches `error_logs`. Off without a hub.
pub fn sentry_middleware(
    hub: Option<Arc<Hub>>,
) -> actix_web::middleware::Condition<sentry_actix::Sentry> {
    let enabled = hub.is_some();
    let builder = match hub {
        Some(hub) => sentry_actix::Sentry::builder().with_hub(hub),
        None => sentry_actix::Sentry::builder(),
    };
    actix_web::middleware::Condition::new(
        enabled,
        builder
            .capture_server_errors(false)
            .start_transaction(true)
            .finish(),
    )
}

/// Drops probe events (by route template, never by URL substring) and
/// strips what could identify a person: the user keeps only its id; the
/// request loses its body, cookies, query string and secret-looking
/// headers; e-mail addresses in messages are masked.
pub fn before_send(mut event: Event<'static>) -> Option<Event<'static>> {
    let probe = event.tags.get("route").is_some_and(|r| is_probe_route(r))
        || event
            .transaction
            .as_deref()
            .is_some_and(is_probe_transaction);
    if probe {
        return None;
    }
    if let Some(user) = event.user.take() {
        event.user = user.id.map(|id| User {
            id: Some(id),
            ..User::default()
        });
    }
    if let Some(request) = event.request.as_mut() {
        request.data = None;
        request.cookies = None;
        request.query_string = None;
        request.env.clear();
        if let Some(url) = request.url.as_mut() {
            url.set_query(None);
            url.set_fragment(None);
        }
        request.headers.retain(|name, _| !looks_secret(name));
    }
    for exception in event.exception.values.iter_mut() {
        if let Some(value) = exception.value.as_mut() {
            *value = mask_emails(value);
        }
    }
    if let Some(message) = event.message.as_mut() {
        *message = mask_emails(message);
    }
    Some(event)
}

/// Header names that may carry credentials or session state.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "secret",
        "key",
        "session",
        "forwarded",
        "real-ip",
    ]
    .iter()
    .any(|needle| n.contains(needle))
}

/// Replaces anything shaped like an e-mail address with `[email]`.
pub fn mask_emails(text: &str) -> String {
    fn email_char(c: char) -> bool {
        c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '@')
    }
    fn is_email(token: &str) -> bool {
        match token.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if is_email(token) {
            out.push_str("[email]");
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if email_char(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Reports a 5xx to Sentry through `hub` (the request's hub, whose scope
/// carries the request, its id and route). Returns the event id when an
/// event was sent; `None` without a client or when it was filtered out.
pub fn capture_server_error(
    hub: &Hub,
    error_type: &str,
    message: &str,
    status: u16,
) -> Option<uuid::Uuid> {
    hub.client()?;
    let mut event = Event {
        level: Level::Error,
        ..Event::default()
    };
    event.exception.values.push(Exception {
        ty: error_type.to_owned(),
        value: Some(message.to_owned()),
        ..Exception::default()
    });
    event.tags.insert("status".into(), status.to_string());
    let id = hub.capture_event(event);
    (!id.is_nil()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_on(route: &str) -> Event<'static> {
        let mut e = Event::default();
        e.tags.insert("route".into(), route.into());
        e
    }

    #[test]
    fn probe_events_are_dropped_by_route_not_by_substring() {
        assert!(before_send(event_on("/health")).is_none());
        assert!(before_send(event_on("/ready")).is_none());
        assert!(before_send(event_on("/api/v1/health-report")).is_some());
        let by_transaction = Event {
            transaction: Some("GET /ready".into()),
            ..Event::default()
        };
        assert!(before_send(by_transaction).is_none());
        let other = Event {
            transaction: Some("GET /api/v1/healthy/{id}".into()),
            ..Event::default()
        };
        assert!(before_send(other).is_some());
    }

    #[test]
    fn events_keep_the_user_id_and_lose_pii() {
        let mut e = event_on("/api/v1/ingest");
        e.user = Some(User {
            id: Some("u-1".into()),
            email: Some("ada@example.com".into()),
            username: Some("ada".into()),
            ..User::default()
        });
        let mut request = sentry::protocol::Request {
            data: Some("{\"email\":\"ada@example.com\"}".into()),
            query_string: Some("token=abc".into()),
            cookies: Some("__session=abc".into()),
            ..Default::default()
        };
        request.url = "https://stats.example.com/api/v1/ingest?token=abc"
            .parse()
            .ok();
        request
            .headers
            .insert("X-Session-Token".into(), "abc".into());
        request
            .headers
            .insert("Content-Type".into(), "application/json".into());
        e.request = Some(request);
        e.exception.values.push(Exception {
            ty: "internal_error".into(),
            value: Some("duplicate key (email)=(ada.lovelace+x@mail.example.com) exists".into()),
            ..Exception::default()
        });
        let e = before_send(e).unwrap_or_default();
        let user = e.user.clone().unwrap_or_default();
        assert_eq!(user.id.as_deref(), Some("u-1"));
        assert_eq!(user.email, None);
        assert_eq!(user.username, None);
        let request = e.request.clone().unwrap_or_default();
        assert_eq!(request.data, None);
        assert_eq!(request.query_string, None);
        assert_eq!(request.cookies, None);
        assert_eq!(
            request.url.map(|u| u.to_string()).as_deref(),
            Some("https://stats.example.com/api/v1/ingest")
        );
        assert_eq!(request.headers.len(), 1);
        assert_eq!(
            e.exception.values[0].value.as_deref(),
            Some("duplicate key (email)=([email]) exists")
        );
    }

    #[test]
    fn emails_are_masked_and_other_text_kept() {
        assert_eq!(mask_emails("to a@b.co, from x"), "to [email], from x");
        assert_eq!(
            mask_emails("user@localhost and @handle"),
            "user@localhost and @handle"
        );
        assert_eq!(mask_emails("no address here"), "no address here");
    }
}
