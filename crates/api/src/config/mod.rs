//! Configuration from the environment (and a `.env` file, loaded by `main`).
//!
//! [`Settings`] is assembled here, once, and hands each component its own
//! slice: the service's own variables are read here; a component's are read
//! by its `from_env` (`jobs/settings.rs`, `jobs/posthog.rs`,
//! `routes/budget.rs`, `ratelimit.rs`), called from here, with the parsers
//! of the leaf module [`env`]. `.env.example` documents every variable. A
//! bad value stops start-up with one line naming the variable.

pub mod env;

pub use env::{AppEnv, ConfigError, Env, ProcessEnv, Secret, parse_bool, parse_var};
use std::net::SocketAddr;

/// The embedded default: a SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/charlie-stats.db?mode=rwc";
pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8080";

/// Sentry settings (`SENTRY_*`).
#[derive(Debug, Clone, Default)]
pub struct SentrySettings {
    pub dsn: Option<Secret>,
    pub environment: String,
    pub traces_sample_rate: f32,
    /// `SENTRY_WEB_URL`: the Sentry web app that error links point at
    /// (self-hosted Sentry too), without a trailing slash.
    pub web_url: String,
    /// `SENTRY_ORG` and `SENTRY_PROJECT`: slugs that make error links exact.
    pub org: Option<String>,
    pub project: Option<String>,
}

/// LangSmith settings (`LANGSMITH_*`); Langflow reads them itself, we use the
/// project to build trace links.
#[derive(Debug, Clone, Default)]
pub struct LangsmithSettings {
    pub tracing: bool,
    pub endpoint: Option<String>,
    pub api_key: Option<Secret>,
    pub project: Option<String>,
    /// `LANGSMITH_WEB_URL`: the LangSmith web app trace links point at.
    pub web_url: String,
}

/// End-user authentication (`AUTH_*`): how session tokens are verified and
/// who is an admin.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `AUTH_JWKS_URL`: the published signing keys (Clerk:
    /// `https://<frontend API>/.well-known/jwks.json`).
    pub jwks_url: Option<String>,
    /// `AUTH_PUBLIC_KEY_PEM`: the PEM text of one RSA public key (literal
    /// `\n` sequences are read as line breaks).
    pub public_key_pem: Option<String>,
    /// `AUTH_ISSUER`: the required `iss`, when set.
    pub issuer: Option<String>,
    /// `AUTH_AUDIENCE`: accepted `aud` values (comma-separated), when set.
    pub audience: Vec<String>,
    /// `AUTH_LEEWAY_SECONDS`: clock skew allowed on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// `AUTH_EMAIL_CLAIM`: the claim holding the user's e-mail address.
    pub email_claim: String,
    /// `AUTH_ROLE_CLAIM`: the claim (a dotted path such as `metadata.role`)
    /// holding the user's role or roles.
    pub role_claim: String,
    /// `AUTH_ADMIN_ROLE`: the role that makes a user an admin.
    pub admin_role: String,
}

impl AuthSettings {
    /// Whether a real key source (not the development key) is configured.
    pub fn has_key_source(&self) -> bool {
        self.jwks_url.is_some() || self.public_key_pem.is_some()
    }
}

/// Everything the service reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app_env: AppEnv,
    pub bind_addr: SocketAddr,
    pub database_url: Secret,
    pub database_url_is_default: bool,
    /// `DATABASE_READ_URL`: a PostgreSQL read replica for analytics reads
    /// (unset: they go to `DATABASE_URL`). See the store's
    /// `Store::with_read_replica` for what goes where and the fallback.
    pub database_read_url: Option<Secret>,
    pub admin_emails: Vec<String>,
    pub sentry: SentrySettings,
    pub langsmith: LangsmithSettings,
    pub pricing_file: Option<String>,
    pub model_aliases: Option<String>,
    pub ingest_max_items: usize,
    pub ingest_max_bytes: usize,
    /// `OTEL_TRACE_WAIT_SECONDS`: how long an LLM span whose trace has not
    /// told its user and flow yet waits for the rest of its trace.
    pub otel_trace_wait: time::Duration,
    /// `ANALYTICS_STATEMENT_TIMEOUT_MS`: how long one analytics read may
    /// run on PostgreSQL before it is cancelled (and answered 503).
    pub analytics_statement_timeout: std::time::Duration,
    /// `ROLLUP_WAIT_MS`: how long an ingest request waits for its batch to
    /// be folded into the rollups before answering (PostgreSQL; default
    /// 2,000; 0 answers as soon as the raw rows are committed).
    pub rollup_wait: std::time::Duration,
    /// `RAW_RETENTION_MONTHS`: raw rows (messages, activity events, error
    /// logs) are kept for this many whole months before the current one,
    /// then dropped by the daily upkeep; rollups are kept forever. Unset
    /// keeps everything.
    pub raw_retention_months: Option<u32>,
    /// Rate limits per service key and per user (`ratelimit.rs`).
    pub rate_limits: crate::ratelimit::RateLimitSettings,
    /// `METRICS_TOKEN`: when set, `GET /metrics` wants it as a bearer token.
    pub metrics_token: Option<Secret>,
    pub auth: AuthSettings,
    /// `CORS_ALLOWED_ORIGINS`: exact origins allowed to call with credentials.
    pub cors_allowed_origins: Vec<String>,
    /// Budgets, alerts, the alert webhook and weekly reports (read in `jobs/settings.rs`).
    pub notify: crate::jobs::settings::NotifySettings,
    /// Hard limits and reservations (read in `routes/budget.rs`).
    pub budget: crate::routes::budget::BudgetSettings,
    /// Forwarding activity events to PostHog (`POSTHOG_*`, read in `jobs/posthog.rs`).
    pub posthog: crate::jobs::posthog::PosthogSettings,
}

fn auth_settings(env: &dyn Env, app_env: AppEnv) -> Result<AuthSettings, ConfigError> {
    let jwks_url = match env.get("AUTH_JWKS_URL") {
        None => None,
        Some(raw) => {
            let url = raw.trim();
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| ConfigError::new("AUTH_JWKS_URL", format!("`{url}`: {e}")))?;
            let scheme_ok = match app_env {
                AppEnv::Production => parsed.scheme() == "https",
                AppEnv::Development => ["https", "http"].contains(&parsed.scheme()),
            };
            if !scheme_ok || parsed.host_str().is_none() {
                return Err(ConfigError::new(
                    "AUTH_JWKS_URL",
                    format!(
                        "`{url}` is not an https:// URL (http:// is allowed in development only)"
                    ),
                ));
            }
            Some(url.to_owned())
        }
    };
    let public_key_pem = match env.get("AUTH_PUBLIC_KEY_PEM") {
        None => None,
        Some(raw) => {
            let pem = crate::auth::keys::normalize_pem(&raw);
            crate::auth::keys::check_public_key_pem(&pem, app_env == AppEnv::Production)
                .map_err(|reason| ConfigError::new("AUTH_PUBLIC_KEY_PEM", reason))?;
            Some(pem)
        }
    };
    let list = |var: &'static str| -> Vec<String> {
        env.get(var)
            .map(|v| {
                v.split(',')
                    .map(|e| e.trim().to_owned())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let leeway_seconds = parse_var(env, "AUTH_LEEWAY_SECONDS", 30u64)?;
    if leeway_seconds > 300 {
        return Err(ConfigError::new(
            "AUTH_LEEWAY_SECONDS",
            format!("{leeway_seconds} is more than 300 seconds"),
        ));
    }
    let role_claim = env
        .get("AUTH_ROLE_CLAIM")
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "role".into());
    if role_claim.split('.').any(str::is_empty) {
        return Err(ConfigError::new(
            "AUTH_ROLE_CLAIM",
            format!("`{role_claim}` is not a claim name or dotted path such as metadata.role"),
        ));
    }
    Ok(AuthSettings {
        jwks_url,
        public_key_pem,
        issuer: env.get("AUTH_ISSUER").map(|v| v.trim().to_owned()),
        audience: list("AUTH_AUDIENCE"),
        leeway_seconds,
        email_claim: env
            .get("AUTH_EMAIL_CLAIM")
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "email".into()),
        role_claim,
        admin_role: env
            .get("AUTH_ADMIN_ROLE")
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "admin".into()),
    })
}

/// `CORS_ALLOWED_ORIGINS`: exact origins (`scheme://host[:port]`); no
/// wildcard, since credentials are allowed.
fn cors_origins(env: &dyn Env) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = env.get("CORS_ALLOWED_ORIGINS") else {
        return Ok(Vec::new());
    };
    let mut origins = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let given = item.trim_end_matches('/');
        let origin = reqwest::Url::parse(given)
            .ok()
            .filter(|u| {
                ["http", "https"].contains(&u.scheme())
                    && u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
            })
            .map(|u| u.origin().ascii_serialization())
            .ok_or_else(|| {
                ConfigError::new(
                    "CORS_ALLOWED_ORIGINS",
                    format!("`{item}` is not an origin such as https://app.example.com (no path, no wildcard)"),
                )
            })?;
        origins.push(origin);
    }
    Ok(origins)
}

/// An `http(s)://` base URL, without its trailing slashes.
fn web_url(env: &dyn Env, var: &'static str, default: &str) -> Result<String, ConfigError> {
    let url = env.get(var).unwrap_or_else(|| default.to_owned());
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ConfigError::new(
            var,
            format!("`{url}` is not an http(s):// URL"),
        ));
    }
    Ok(url.to_owned())
}

impl Settings {
    /// Reads and checks every variable.
    pub fn from_env(env: &dyn Env) -> Result<Settings, ConfigError> {
        let app_env = parse_var(env, "APP_ENV", AppEnv::Development)?;
        let bind_addr = parse_var(env, "BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?;
        let (database_url, database_url_is_default) = match env.get("DATABASE_URL") {
            Some(url) => (url.trim().to_owned(), false),
            None => (DEFAULT_DATABASE_URL.to_owned(), true),
        };
        let admin_emails = env
            .get("ADMIN_EMAILS")
            .map(|v| {
                v.split(',')
                    .map(|e| e.trim().to_ascii_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let traces_sample_rate: f32 = parse_var(env, "SENTRY_TRACES_SAMPLE_RATE", 0.1)?;
        if !(0.0..=1.0).contains(&traces_sample_rate) {
            return Err(ConfigError::new(
                "SENTRY_TRACES_SAMPLE_RATE",
                format!("{traces_sample_rate} is not between 0.0 and 1.0"),
            ));
        }
        let sentry = SentrySettings {
            dsn: env.get("SENTRY_DSN").map(Secret::new),
            environment: env
                .get("SENTRY_ENVIRONMENT")
                .unwrap_or_else(|| match app_env {
                    AppEnv::Development => "development".into(),
                    AppEnv::Production => "production".into(),
                }),
            traces_sample_rate,
            web_url: web_url(env, "SENTRY_WEB_URL", "https://sentry.io")?,
            org: env.get("SENTRY_ORG").map(|v| v.trim().to_owned()),
            project: env.get("SENTRY_PROJECT").map(|v| v.trim().to_owned()),
        };
        if let Some(dsn) = &sentry.dsn {
            dsn.expose()
                .trim()
                .parse::<sentry::types::Dsn>()
                .map_err(|e| ConfigError::new("SENTRY_DSN", format!("not a Sentry DSN: {e}")))?;
        }
        let langsmith = LangsmithSettings {
            tracing: parse_bool(env, "LANGSMITH_TRACING", false)?,
            endpoint: env.get("LANGSMITH_ENDPOINT"),
            api_key: env.get("LANGSMITH_API_KEY").map(Secret::new),
            project: env.get("LANGSMITH_PROJECT"),
            web_url: web_url(env, "LANGSMITH_WEB_URL", "https://smith.langchain.com")?,
        };
        let ingest_max_items = parse_var(env, "INGEST_MAX_ITEMS", 1000usize)?;
        let ingest_max_bytes = parse_var(env, "INGEST_MAX_BYTES", 5 * 1024 * 1024usize)?;
        if ingest_max_items == 0 {
            return Err(ConfigError::new("INGEST_MAX_ITEMS", "must be at least 1"));
        }
        let otel_wait: f64 = parse_var(env, "OTEL_TRACE_WAIT_SECONDS", 30.0)?;
        if !(0.0..=86_400.0).contains(&otel_wait) {
            return Err(ConfigError::new(
                "OTEL_TRACE_WAIT_SECONDS",
                "must be between 0 and 86400",
            ));
        }
        let settings = Settings {
            app_env,
            bind_addr,
            database_url: Secret::new(database_url),
            database_url_is_default,
            database_read_url: env
                .get("DATABASE_READ_URL")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(Secret::new),
            admin_emails,
            sentry,
            langsmith,
            pricing_file: env.get("PRICING_FILE"),
            model_aliases: env.get("MODEL_ALIASES"),
            ingest_max_items,
            ingest_max_bytes,
            otel_trace_wait: time::Duration::seconds_f64(otel_wait),
            analytics_statement_timeout: std::time::Duration::from_millis(parse_var(
                env,
                "ANALYTICS_STATEMENT_TIMEOUT_MS",
                5_000u64,
            )?),
            rollup_wait: std::time::Duration::from_millis(parse_var(
                env,
                "ROLLUP_WAIT_MS",
                2_000u64,
            )?),
            raw_retention_months: raw_retention_months(env)?,
            rate_limits: crate::ratelimit::RateLimitSettings::from_env(
                env,
                app_env == AppEnv::Production,
            )?,
            metrics_token: env.get("METRICS_TOKEN").map(|v| Secret::new(v.trim())),
            auth: auth_settings(env, app_env)?,
            cors_allowed_origins: cors_origins(env)?,
            notify: crate::jobs::settings::NotifySettings::from_env(env)?,
            budget: crate::routes::budget::BudgetSettings::from_env(env)?,
            posthog: crate::jobs::posthog::PosthogSettings::from_env(env)?,
        };
        settings.check()?;
        Ok(settings)
    }

    /// Cross-field rules and the production refusals.
    fn check(&self) -> Result<(), ConfigError> {
        charlie_store::Engine::from_url(self.database_url.expose())
            .map_err(|e| ConfigError::new("DATABASE_URL", e.to_string()))?;
        if let Some(read) = &self.database_read_url {
            let engines = (
                charlie_store::Engine::from_url(self.database_url.expose()),
                charlie_store::Engine::from_url(read.expose()),
            );
            if !matches!(
                engines,
                (
                    Ok(charlie_store::Engine::Postgres),
                    Ok(charlie_store::Engine::Postgres)
                )
            ) {
                return Err(ConfigError::new(
                    "DATABASE_READ_URL",
                    "must be a postgres:// URL, and DATABASE_URL too (a read replica is a PostgreSQL feature)",
                ));
            }
        }
        if self.app_env == AppEnv::Production && self.database_url_is_default {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must be set when APP_ENV=production (the embedded SQLite default is for development)",
            ));
        }
        if self.app_env == AppEnv::Production && !self.auth.has_key_source() {
            return Err(ConfigError::new(
                "AUTH_JWKS_URL",
                "AUTH_JWKS_URL or AUTH_PUBLIC_KEY_PEM must be set when APP_ENV=production (analytics needs end-user authentication; the development key is refused)",
            ));
        }
        Ok(())
    }

    /// Replaces the database URL (from `--database-url`), re-checking it.
    pub fn with_database_url(mut self, url: Option<String>) -> Result<Settings, ConfigError> {
        if let Some(url) = url {
            self.database_url = Secret::new(url);
            self.database_url_is_default = false;
            self.check()?;
        }
        Ok(self)
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }
}

/// `RAW_RETENTION_MONTHS`: unset or empty keeps everything; otherwise a
/// whole number of months from 1 to 1,200.
fn raw_retention_months(env: &dyn Env) -> Result<Option<u32>, ConfigError> {
    match env.get("RAW_RETENTION_MONTHS").map(|v| v.trim().to_owned()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1200).contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError::new(
                "RAW_RETENTION_MONTHS",
                format!("`{v}` is not a whole number of months from 1 to 1200"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&'static str, &'static str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        Settings::from_env(&env)
    }

    #[test]
    fn nothing_configured_means_embedded_sqlite_on_localhost() {
        let s = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(s.bind_addr.to_string(), DEFAULT_BIND_ADDR);
        assert_eq!(s.app_env, AppEnv::Development);
        assert!(s.admin_emails.is_empty());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("DATABASE_URL", "bogus://x"),
            ("BIND_ADDR", "nowhere"),
            ("APP_ENV", "staging"),
            ("RAW_RETENTION_MONTHS", "0"),
            ("DATABASE_READ_URL", "sqlite://replica.db"),
            ("RAW_RETENTION_MONTHS", "a year"),
            ("SENTRY_TRACES_SAMPLE_RATE", "2"),
            ("LANGSMITH_TRACING", "maybe"),
            ("INGEST_MAX_ITEMS", "-1"),
        ] {
            let err = settings(&[(var, value)]).err().map(|e| e.var);
            assert_eq!(err, Some(var), "{var}={value}");
        }
    }

    #[test]
    fn production_refuses_the_embedded_default() {
        assert!(settings(&[("APP_ENV", "production")]).is_err());
        assert!(
            settings(&[
                ("APP_ENV", "production"),
                ("DATABASE_URL", "postgres://db/x"),
                (
                    "AUTH_JWKS_URL",
                    "https://clerk.example.com/.well-known/jwks.json"
                ),
            ])
            .is_ok()
        );
    }

    #[test]
    fn production_without_an_auth_key_source_is_refused() {
        let err = settings(&[
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://db/x"),
        ])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("AUTH_JWKS_URL"), "{err}");
        assert!(err.contains("AUTH_PUBLIC_KEY_PEM"), "{err}");
    }

    #[test]
    fn bad_auth_and_cors_values_name_their_variable() {
        for (var, value) in [
            ("AUTH_JWKS_URL", "not a url"),
            ("AUTH_JWKS_URL", "ftp://keys.example.com/jwks.json"),
            (
                "AUTH_PUBLIC_KEY_PEM",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            ),
            ("AUTH_LEEWAY_SECONDS", "-5"),
            ("AUTH_LEEWAY_SECONDS", "3600"),
            ("AUTH_ROLE_CLAIM", "metadata..role"),
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("CORS_ALLOWED_ORIGINS", "https://app.example.com/path"),
        ] {
            let err = settings(&[(var, value)]).err().map(|e| e.var);
            assert_eq!(err, Some(var), "{var}={value}");
        }
    }

    #[test]
    fn auth_and_cors_defaults_and_lists() {
        let s = settings(&[
            (
                "CORS_ALLOWED_ORIGINS",
                "https://app.example.com/, http://localhost:5173",
            ),
            ("AUTH_AUDIENCE", "a, b"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.cors_allowed_origins,
            vec!["https://app.example.com", "http://localhost:5173"]
        );
        assert_eq!(s.auth.audience, vec!["a", "b"]);
        assert_eq!(s.auth.leeway_seconds, 30);
        assert_eq!(s.auth.email_claim, "email");
        assert_eq!(s.auth.role_claim, "role");
        assert_eq!(s.auth.admin_role, "admin");
        assert!(!s.auth.has_key_source());
    }

    #[test]
    fn admin_emails_are_a_trimmed_lowercase_list_and_secrets_do_not_print() {
        let s = settings(&[
            ("ADMIN_EMAILS", " Ada@Example.com, ,bob@example.com"),
            ("SENTRY_DSN", "https://k@s/1"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.admin_emails, vec!["ada@example.com", "bob@example.com"]);
        assert!(!format!("{s:?}").contains("https://k@s/1"));
    }
}
