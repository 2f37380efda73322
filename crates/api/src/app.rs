//! Building and running the HTTP server.

use crate::error::ErrorCode;
use crate::{ApiError, Settings, routes};
use actix_web::{
    App, HttpRequest, HttpServer, dev::Server, error::JsonPayloadError, error::QueryPayloadError,
    web,
};
use charlie_store::Store;
use std::{net::TcpListener, sync::Arc};
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub catalog: Arc<charlie_pricing::Catalog>,
    /// Verifies end users' session tokens.
    pub auth: Arc<crate::auth::Authenticator>,
    /// The Prometheus registry behind `GET /metrics`.
    pub metrics: Arc<crate::observability::Metrics>,
    /// Per service key and per user (`RATE_LIMIT_*`).
    pub limits: Arc<crate::ratelimit::RateLimits>,
}

/// A built server, bound to its port but not yet running.
pub struct Application {
    port: u16,
    server: Server,
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::PayloadTooLarge(format!("request body too large: {err}"))
        }
        JsonPayloadError::ContentType => ApiError::bad_request(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request(ErrorCode::InvalidJson, format!("invalid JSON body: {e}"))
        }
        other => ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("unreadable request body: {other}"),
        ),
    };
    api.into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(
        ErrorCode::InvalidParameter,
        format!("invalid query parameters: {err}"),
    )
    .into()
}

fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(
        ErrorCode::InvalidParameter,
        format!("invalid path parameter: {err}"),
    )
    .into()
}

/// Every path of the API document with the methods it serves.
fn route_table() -> &'static [(actix_web::dev::ResourceDef, Vec<&'static str>)] {
    static TABLE: std::sync::OnceLock<Vec<(actix_web::dev::ResourceDef, Vec<&'static str>)>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        crate::openapi::openapi()
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ];
                let allowed = methods
                    .into_iter()
                    .filter(|(_, served)| *served)
                    .map(|(m, _)| m)
                    .collect();
                (actix_web::dev::ResourceDef::new(path.as_str()), allowed)
            })
            .collect()
    })
}

/// No route answered: 405 with `Allow` for a path served with other
/// methods, 404 otherwise.
async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed: Vec<&str> = route_table()
        .iter()
        .filter(|(def, _)| def.is_match(req.path()))
        .flat_map(|(_, methods)| methods.iter().copied())
        .collect();
    if !allowed.is_empty() {
        return Err(ApiError::MethodNotAllowed {
            message: format!("{} is not allowed on {}", req.method(), req.path()),
            allow: allowed.join(", "),
        });
    }
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Connects to the database, applies migrations and binds the listener.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let store = Store::connect_with_replica(
            settings.database_url.expose(),
            settings.database_read_url.as_ref().map(|u| u.expose()),
            settings.analytics_statement_timeout,
        )
        .await
        .map_err(|e| StartupError(format!("cannot open the database: {e}")))?;
        store
            .migrate_up()
            .await
            .map_err(|e| StartupError(format!("cannot apply migrations: {e}")))?;
        let listener = TcpListener::bind(settings.bind_addr)
            .map_err(|e| StartupError(format!("cannot listen on {}: {e}", settings.bind_addr)))?;
        Self::with_store(settings, store, listener)
    }

    /// Builds the server around an existing store and listener (tests).
    pub fn with_store(
        settings: Settings,
        store: Store,
        listener: TcpListener,
    ) -> Result<Application, StartupError> {
        let port = listener.local_addr().map_err(StartupError::from)?.port();
        let catalog =
            crate::pricing::load_catalog(&settings).map_err(|e| StartupError(e.to_string()))?;
        let auth = crate::auth::Authenticator::new(&settings).map_err(StartupError)?;
        let sentry_hub = crate::observability::reporting::app_hub(&settings);
        let store = store
            .with_budget_policy(settings.notify.budget_policy())
            .with_posthog_outbox(settings.posthog.enabled())
            .with_fold_wait(settings.rollup_wait);
        let settings_limits = settings.rate_limits.limiters();
        let state = AppState {
            store,
            settings: Arc::new(settings),
            catalog: Arc::new(catalog),
            auth: Arc::new(auth),
            metrics: Arc::new(crate::observability::Metrics::new()),
            limits: Arc::new(settings_limits),
        };
        crate::jobs::start(&state);
        let json_limit = state.settings.ingest_max_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    crate::observability::as_of::rollups_as_of,
                ))
                .wrap(crate::auth::cors(&state.settings))
                .wrap(crate::observability::Observe::new(
                    state.store.clone(),
                    state.metrics.clone(),
                ))
                .wrap(crate::observability::reporting::sentry_middleware(
                    sentry_hub.clone(),
                ))
                .app_data(web::Data::new(state.clone()))
                .app_data(
                    web::JsonConfig::default()
                        .limit(json_limit)
                        .error_handler(json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .into_utoipa_app()
                .configure(routes::configure)
                .into_app()
                // Swagger UI lives under `/docs/`; `/docs` (what the README
                // links) is sent there with a permanent redirect.
                .service(web::redirect("/docs", "/docs/").permanent())
                .service(
                    SwaggerUi::new("/docs/{_:.*}")
                        .url("/api-docs/openapi.json", crate::openapi::openapi().clone()),
                )
                .default_service(web::to(not_found))
        })
        .shutdown_timeout(20)
        .listen(listener)
        .map_err(StartupError::from)?
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// A start-up failure, already phrased for humans.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

impl From<std::io::Error> for StartupError {
    fn from(e: std::io::Error) -> Self {
        StartupError(e.to_string())
    }
}
