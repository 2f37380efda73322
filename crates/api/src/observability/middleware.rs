//! The per-request middleware: request id, tracing span, request log line,
//! HTTP metrics, and for every 5xx a Sentry event and an `error_logs` row.
//! A panicking handler becomes a 500 here rather than taking its worker
//! down.
//!
//! It runs inside `sentry-actix` (registered after it), so `Hub::current()`
//! is the request's own hub, whose scope holds the request context.

use super::{
    Metrics, RequestId, RequestUser,
    metrics::UNMATCHED_ROUTE,
    reporting::{SERVICE_NAME, capture_server_error, is_probe_route, mask_emails},
    request_id::REQUEST_ID_HEADER,
};
use crate::ApiError;
use actix_web::{
    Error, HttpMessage,
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{
        StatusCode,
        header::{HeaderName, HeaderValue},
    },
};
use charlie_domain::ingest::ErrorLog;
use charlie_store::Store;
use futures_util::{FutureExt, future::LocalBoxFuture};
use sentry::Hub;
use std::{
    future::{Ready, ready},
    panic::AssertUnwindSafe,
    rc::Rc,
    sync::Arc,
    time::Instant,
};
use tracing::Instrument;
use uuid::Uuid;

/// Builds the middleware; one per worker, sharing the metrics.
#[derive(Debug, Clone)]
pub struct Observe {
    store: Store,
    metrics: Arc<Metrics>,
}

impl Observe {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Observe {
        Observe { store, metrics }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Observe
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = ObserveMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ObserveMiddleware {
            service: Rc::new(service),
            ctx: self.clone(),
        }))
    }
}

#[derive(Debug)]
pub struct ObserveMiddleware<S> {
    service: Rc<S>,
    ctx: Observe,
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a handler panicked".to_owned())
}

/// What the request is, for its log line, metrics and error report.
struct RequestFacts {
    request_id: RequestId,
    method: String,
    route: String,
    started: Instant,
}

impl<S, B> Service<ServiceRequest> for ObserveMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let facts = RequestFacts {
            request_id: req
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(RequestId::parse)
                .unwrap_or_else(RequestId::generate),
            method: req.method().to_string(),
            // The template (`/users/{id}`), never the raw path.
            route: req
                .match_pattern()
                .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned()),
            started: Instant::now(),
        };
        req.extensions_mut().insert(facts.request_id.clone());
        let hub = Hub::current();
        if hub.client().is_some() {
            hub.configure_scope(|scope| {
                scope.set_tag("request_id", facts.request_id.as_str());
                scope.set_tag("route", &facts.route);
                scope.set_transaction(Some(&format!("{} {}", facts.method, facts.route)));
            });
        }
        let span = tracing::info_span!(
            "request",
            request_id = %facts.request_id,
            method = %facts.method,
            route = %facts.route,
        );
        // The request must not be cloned while routing runs (actix needs it
        // unshared), so a panic is answered with an error, not a response.
        let fut = std::panic::catch_unwind(AssertUnwindSafe(|| self.service.call(req)));
        let ctx = self.ctx.clone();
        async move {
            let outcome = match fut {
                Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                Err(payload) => Err(payload),
            };
            match outcome {
                Ok(Ok(mut res)) => {
                    if let Ok(value) = HeaderValue::from_str(facts.request_id.as_str()) {
                        res.headers_mut()
                            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
                    }
                    let user = res.request().extensions().get::<RequestUser>().map(|u| u.0);
                    finish(
                        &ctx,
                        &hub,
                        &facts,
                        res.status(),
                        res.response().error(),
                        user,
                        false,
                    );
                    Ok(res)
                }
                Ok(Err(err)) => {
                    let status = err.as_response_error().status_code();
                    finish(&ctx, &hub, &facts, status, Some(&err), None, false);
                    Err(err)
                }
                Err(payload) => {
                    let cause = format!("panic: {}", panic_message(payload.as_ref()));
                    let err = Error::from(ApiError::internal(cause));
                    let status = StatusCode::INTERNAL_SERVER_ERROR;
                    finish(&ctx, &hub, &facts, status, Some(&err), None, true);
                    Err(err)
                }
            }
        }
        .instrument(span)
        .boxed_local()
    }
}

/// Counts the request, writes its log line and reports a 5xx.
fn finish(
    ctx: &Observe,
    hub: &Hub,
    facts: &RequestFacts,
    status: StatusCode,
    error: Option<&Error>,
    user: Option<Uuid>,
    panicked: bool,
) {
    let latency = facts.started.elapsed();
    ctx.metrics
        .observe_request(&facts.method, &facts.route, status.as_u16(), latency);
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), latency_ms, "request failed");
        report(ctx, hub, facts, status, error, user, panicked);
    } else if is_probe_route(&facts.route) || facts.route == "/metrics" {
        // Polled every few seconds by orchestrators and scrapers.
        tracing::debug!(status = status.as_u16(), latency_ms, "request");
    } else {
        tracing::info!(status = status.as_u16(), latency_ms, "request");
    }
}

/// Sends a 5xx to Sentry and writes its `error_logs` row in the background:
/// the response is never delayed, and a failed write is logged, never
/// returned (the original error is what the caller must see).
///
/// Probe failures go through Sentry's `before_send`, which drops them, and
/// get no row: `/ready` fails only when the database is unreachable.
fn report(
    ctx: &Observe,
    hub: &Hub,
    facts: &RequestFacts,
    status: StatusCode,
    error: Option<&Error>,
    user_id: Option<Uuid>,
    panicked: bool,
) {
    let status = status.as_u16();
    let (method, route) = (facts.method.as_str(), facts.route.as_str());
    let (error_type, message) = match error {
        Some(err) => match err.as_error::<ApiError>() {
            Some(api) => (api.code().as_str().to_owned(), crate::error::chain(api)),
            None => (format!("http_{status}"), err.to_string()),
        },
        None => (
            format!("http_{status}"),
            format!("{method} {route} answered {status}"),
        ),
    };
    let message = mask_emails(&message);
    let event_id = if panicked {
        // The panic integration has already reported it, with its stack.
        hub.client()
            .and_then(|_| hub.last_event_id())
            .filter(|id| !id.is_nil())
    } else {
        capture_server_error(hub, &error_type, &message, status)
    };
    if is_probe_route(route) {
        return;
    }
    let row = ErrorLog {
        service: SERVICE_NAME.to_owned(),
        error_type,
        error_message: message,
        error_code: Some(status.to_string()),
        user_id,
        workflow_id: None,
        endpoint: Some(route.to_owned()),
        request_id: Some(facts.request_id.as_str().to_owned()),
        metadata: serde_json::json!({ "method": method, "status": status, "panic": panicked }),
        sentry_event_id: event_id.map(|id| id.simple().to_string()),
    };
    let store = ctx.store.clone();
    actix_web::rt::spawn(
        async move {
            if let Err(e) = store.record_service_error(&row).await {
                tracing::warn!(error = %e, "cannot record the error in error_logs");
            }
        }
        .in_current_span(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, HttpResponse, test, web};
    use charlie_store::testing::TestDatabase;

    async fn boom() -> HttpResponse {
        panic!("handler bug for {}", "someone@example.com")
    }

    #[actix_web::test]
    async fn a_panicking_handler_answers_500_is_counted_and_gets_an_error_row() {
        let db = TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let store = db.migrated_store().await.unwrap_or_else(|e| panic!("{e}"));
        let metrics = Arc::new(Metrics::new());
        let app = test::init_service(
            App::new()
                .wrap(Observe::new(store.clone(), metrics.clone()))
                .route("/boom/{n}", web::get().to(boom)),
        )
        .await;
        let req = test::TestRequest::get()
            .uri("/boom/7")
            .insert_header(("X-Request-Id", "panic-1"))
            .to_request();
        let err = match test::try_call_service(&app, req).await {
            Ok(res) => panic!("expected an error, got {}", res.status()),
            Err(err) => err,
        };
        assert_eq!(err.error_response().status(), 500);
        assert!(
            metrics.render().contains(
                "http_requests_total{method=\"GET\",route=\"/boom/{n}\",status=\"500\"} 1"
            )
        );
        let mut rows = Vec::new();
        for _ in 0..100 {
            rows = store
                .errors_by_request_id("panic-1")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if !rows.is_empty() {
                break;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].endpoint.as_deref(), Some("/boom/{n}"));
        assert_eq!(rows[0].metadata["panic"], true);
        assert!(rows[0].error_message.contains("handler bug for [email]"));
        assert_eq!(rows[0].sentry_event_id, None);
    }
}
