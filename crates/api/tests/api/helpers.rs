//! `spawn_app()` and typed request helpers shared by every test module.

use charlie_api::{Application, Settings, config::Env};
use charlie_store::{Store, maintenance::RollupRange, testing::TestDatabase};
use std::{collections::HashMap, net::TcpListener};

/// A running application and its database.
pub struct TestApp {
    pub address: String,
    pub store: Store,
    pub client: reqwest::Client,
    // Dropped last: removes the database.
    pub _db: TestDatabase,
}

/// Extra environment for one test, on top of the defaults.
pub type Vars = HashMap<&'static str, String>;

/// Settings' environment as a map (tests build `Settings` from it).
pub struct MapEnv(pub HashMap<&'static str, String>);

impl<const N: usize> From<[(&'static str, String); N]> for MapEnv {
    fn from(vars: [(&'static str, String); N]) -> Self {
        MapEnv(HashMap::from(vars))
    }
}

impl Env for MapEnv {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned().filter(|v| !v.is_empty())
    }
}

/// Starts the app with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Vars::new()).await
}

/// Starts the app with extra configuration.
pub async fn spawn_app_with(vars: Vars) -> TestApp {
    // `TEST_LOG=1` shows the server's logs (level from `RUST_LOG`), e.g. the
    // cause behind a 500; without it tests stay quiet.
    if std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty()) {
        charlie_api::telemetry::init(charlie_api::config::AppEnv::Development);
    }
    let db = TestDatabase::create().await.expect("test database");
    let mut env = vars;
    env.insert("DATABASE_URL", db.url().to_owned());
    let settings = Settings::from_env(&MapEnv(env)).expect("test settings");
    let store = db.migrated_store().await.expect("migrated store");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a random port");
    let app = Application::with_store(settings, store.clone(), listener).expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        store,
        client: reqwest::Client::new(),
        _db: db,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// GET `path` with a bearer `token`: the status and the JSON body.
    pub async fn get_as(
        &self,
        path: &str,
        token: &str,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, json(resp).await)
    }

    /// A fresh ingestion API key.
    pub async fn api_key(&self) -> String {
        self.store
            .create_api_key("test")
            .await
            .expect("api key")
            .key
    }

    /// Posts `{"batch": items}` to the ingest route with `key`.
    pub async fn ingest_with(&self, key: &str, items: &[serde_json::Value]) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/ingest"))
            .bearer_auth(key)
            .json(&serde_json::json!({ "batch": items }))
            .send()
            .await
            .expect("request")
    }
}

/// Posts `{"batch": items}` to the ingest route of the server at `address`
/// (a [`ServerProcess`], say) with `key`; the test fails unless the answer is
/// a 207 with no item refused. Returns the answer.
pub async fn post_batch(
    client: &reqwest::Client,
    address: &str,
    key: &str,
    items: &[serde_json::Value],
) -> serde_json::Value {
    let resp = client
        .post(format!("{address}/api/v1/ingest"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "batch": items }))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 207);
    let body = json(resp).await;
    assert_eq!(body["errors"], 0, "{body:#}");
    body
}

/// Reads a response as JSON, failing the test with the body when it is not.
pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// LiteLLM's whole published price table (release 1.110.2, the pricing
/// crate's fixture), unpacked to a fresh temporary file.
pub fn litellm_table_file() -> std::path::PathBuf {
    use std::io::Read;
    let packed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pricing/tests/fixtures/litellm/model_prices_and_context_window-1.110.2.json.gz"
    );
    let bytes = std::fs::read(packed).expect("the LiteLLM fixture");
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .expect("a gzipped JSON file");
    let path = std::env::temp_dir().join(format!(
        "charlie-litellm-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, text).expect("a temporary file");
    path
}

/// A development session token for `sub` (e-mail `<sub>@example.com`),
/// valid for an hour, with the admin role when `admin`.
pub fn token(sub: &str, admin: bool) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = serde_json::json!({"sub": sub, "email": format!("{sub}@example.com"),
        "iat": now, "nbf": now - 5, "exp": now + 3600});
    if admin {
        claims["role"] = serde_json::json!("admin");
    }
    charlie_api::auth::jwt::sign_demo_token(&claims).expect("a development token")
}

/// Fails the test when a rollup differs from a recount of the raw rows, or
/// a message waits for a conversation that exists.
pub async fn assert_rollups_clean(app: &TestApp) {
    let report = app
        .store
        .verify_rollups(RollupRange::default())
        .await
        .expect("rollups verify");
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    assert!(
        report.stuck_pending.is_empty(),
        "{:?}",
        report.stuck_pending
    );
}

/// The real binary as a child process, killed with SIGKILL.
pub struct ServerProcess(std::process::Child);

impl ServerProcess {
    /// Starts `charlie-stats serve` on `db_url` and a free port, with
    /// `vars` on top of a development environment; waits until `/health`
    /// answers. Returns it and its base URL.
    pub async fn start(db_url: &str, vars: &[(&str, String)]) -> (ServerProcess, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_charlie-stats"));
        cmd.current_dir(std::env::temp_dir())
            .env_remove("TEST_DATABASE_URL")
            .env("APP_ENV", "development")
            .env("DATABASE_URL", db_url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = ServerProcess(cmd.arg("serve").spawn().unwrap());
        let address = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if let Ok(r) = reqwest::get(format!("{address}/health")).await
                && r.status() == 200
            {
                return (child, address);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the child server did not start");
    }

    /// SIGKILL, as a crash would: no shutdown, no flush.
    pub fn kill_9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
