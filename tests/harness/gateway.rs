//! A whole Surge for one test: its database, its broker prefix, the gateway in-process on
//! port 0, and function processes on demand.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use surge_gateway::config::{GatewaySettings, TenantSettings};
use surge_gateway::routes::login::Issued;
use surge_gateway::startup::Application;
use surge_gateway::views::JobView;
use tokio_util::sync::CancellationToken;

use crate::{BrokerProbe, Browser, FunctionProcess, IdentityProvider, TestDatabase, eventually};

/// The API key the test gateway accepts.
pub const TEST_API_KEY: &str = "test-dev-key-0123456789";

/// Options for a test's Surge.
#[derive(Debug, Clone)]
pub struct TestAppBuilder {
    /// Serve the external scaler on a free port, polling depths every this many ms.
    pub scaler_poll_ms: Option<u64>,
    pub max_attempts: u32,
    pub sync_timeout_ms: u64,
    pub body_limit_bytes: usize,
    /// Start two real OpenID providers as tenants `a` (bearer JWTs accepted) and `b`
    /// (refresh tokens), plus a tenant `down` whose provider does not exist.
    pub identity: bool,
    /// Per-entity `(per_second, burst)`; off unless set, so busy tests are never limited.
    pub rate_limit: Option<(u32, u32)>,
    /// The development key (`TEST_API_KEY`) is an admin.
    pub dev_admin: bool,
    /// Serve `/metrics` on a port of its own (`http.metrics_addr`).
    pub metrics_port: bool,
    /// `ws.ping_interval_ms` (a websocket's credential is asked again on each ping).
    pub ws_ping_interval_ms: u64,
    /// The reconciler's `(delivery.lease_ms, delivery.reconcile_interval_ms)`; the broker's
    /// publish timeout shrinks to fit under the lease.
    pub delivery: Option<(u64, u64)>,
    /// `broker.url` for the gateway (default: the machine's broker), e.g. through a proxy.
    pub broker_url: Option<String>,
    /// The database on a primary with a streaming replica of the test's own, the replica as
    /// `database.replica_url` (allowed a minute of lag, so a paused replica still serves).
    pub replica: bool,
    /// `(http.header_read_timeout_ms, http.request_timeout_ms)`; the longest wait shrinks to
    /// fit under the request's.
    pub http_timeouts: Option<(u64, u64)>,
    /// `broker.function_users`: completions taken only from these broker users.
    pub function_users: Option<String>,
    /// Changes any setting last, for what has no option of its own here.
    pub tune: Option<fn(&mut GatewaySettings)>,
}

impl Default for TestAppBuilder {
    fn default() -> Self {
        Self {
            scaler_poll_ms: None,
            max_attempts: 5,
            sync_timeout_ms: 20_000,
            body_limit_bytes: 64 * 1024,
            identity: false,
            rate_limit: None,
            dev_admin: false,
            metrics_port: false,
            ws_ping_interval_ms: 20_000,
            delivery: None,
            broker_url: None,
            replica: false,
            http_timeouts: None,
            function_users: None,
            tune: None,
        }
    }
}

impl TestAppBuilder {
    pub async fn spawn(self) -> TestApp {
        crate::init_telemetry();
        let name = crate::unique_name();
        let replicated = match self.replica {
            true => Some(crate::ReplicatedPostgres::start().await),
            false => None,
        };
        let db = match &replicated {
            Some(pg) => TestDatabase::migrated_on(&pg.primary, &name).await,
            None => TestDatabase::migrated(&name).await,
        };
        let prefix = format!("{name}-");
        let mut settings = GatewaySettings::default();
        settings.http.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.http.sync_timeout_ms = self.sync_timeout_ms;
        settings.http.body_limit_bytes = self.body_limit_bytes;
        if let Some((header_read_ms, request_ms)) = self.http_timeouts {
            settings.http.header_read_timeout_ms = header_read_ms;
            settings.http.request_timeout_ms = request_ms;
            settings.http.max_wait_ms = request_ms / 2;
            settings.http.sync_timeout_ms = settings.http.sync_timeout_ms.min(request_ms / 2);
        }
        settings.database.url = SecretString::from(db.url.clone());
        if let Some(pg) = &replicated {
            let replica = format!("{}/{name}", pg.replica);
            eventually(
                "the replica to have the schema",
                Duration::from_secs(20),
                || async {
                    let pool = sqlx::PgPool::connect(&replica).await.ok()?;
                    let ready: Option<bool> =
                        sqlx::query_scalar("SELECT to_regclass('job_open') IS NOT NULL")
                            .fetch_one(&pool)
                            .await
                            .ok();
                    pool.close().await;
                    ready.filter(|r| *r)
                },
            )
            .await;
            settings.database.replica_url = Some(SecretString::from(replica));
            settings.database.replica_max_lag_ms = 60_000;
        }
        settings.broker.url =
            SecretString::from(self.broker_url.clone().unwrap_or_else(crate::amqp_url));
        settings.broker.prefix = prefix.clone();
        settings.broker.reconnect_max_ms = 500;
        settings.jobs.max_attempts = self.max_attempts;
        let (per_second, burst) = self.rate_limit.unwrap_or((0, 1));
        settings.limits.per_second = per_second;
        settings.limits.burst = burst;
        settings.dev.api_key = Some(SecretString::from(TEST_API_KEY));
        settings.dev.admin = self.dev_admin;
        settings.ws.ping_interval_ms = self.ws_ping_interval_ms;
        if let Some((lease_ms, interval_ms)) = self.delivery {
            // A request's own publish and resend must fit under the lease.
            settings.broker.publish_timeout_ms = (lease_ms / 4).clamp(1, 1_000);
            settings.broker.reconnect_max_ms = (lease_ms / 4).clamp(1, 500);
            settings.delivery.lease_ms = lease_ms;
            settings.delivery.reconcile_interval_ms = interval_ms;
            settings.delivery.max_backoff_ms = settings.delivery.max_backoff_ms.max(lease_ms);
        }
        if self.metrics_port {
            settings.http.metrics_addr = Some(crate::free_addr());
        }
        // Settings changes must reach every replica through their events, not a timer.
        settings.http.settings_refresh_ms = 3_600_000;
        if let Some(poll) = self.scaler_poll_ms {
            settings.scaler.addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            settings.scaler.management_url = Some(SecretString::from(crate::management_url()));
            settings.scaler.poll_interval_ms = poll;
            // Until the broker's lagging figures show a new job, the publish alone keeps the
            // function active (see scaler.publish_hold_ms).
            settings.scaler.publish_hold_ms = 30_000;
        }
        let listener = tokio::net::TcpListener::bind(settings.http.addr)
            .await
            .expect("bind the gateway");
        let mut idps = Vec::new();
        // A provider restarted by a test signs with a new key at once.
        settings.identity.key_refresh_min_ms = 100;
        if self.identity {
            let callback = format!("http://{}/callback", listener.local_addr().expect("addr"));
            // Started side by side: each is a Node process that takes a moment to be ready.
            let (a, b) = tokio::join!(
                IdentityProvider::start("realm-a", &callback),
                IdentityProvider::start("realm-b", &callback),
            );
            for (tenant, idp) in [("a", a), ("b", b)] {
                settings
                    .tenants
                    .push(tenant_settings(tenant, &idp, &callback));
                idps.push(idp);
            }
            settings.tenants[0].accept_bearer = true;
            // Tenant a's admins run the platform (server settings, ownerless dead jobs).
            settings.identity.operator_tenants = vec!["a".into()];
            settings.tenants[1].scopes.push("offline_access".into());
            let mut down = settings.tenants[0].clone();
            down.name = "down".into();
            // A port that was free a moment ago: connection refused at once.
            let free = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            down.issuer = format!("http://127.0.0.1:{free}/down")
                .parse()
                .expect("url");
            down.accept_bearer = false;
            settings.tenants.push(down);
        }
        if let Some(users) = &self.function_users {
            settings.broker.function_users = users.clone();
        }
        if let Some(tune) = self.tune {
            tune(&mut settings);
        }
        let shutdown = CancellationToken::new();
        let app = Application::build_on(listener, settings.clone(), shutdown.clone())
            .await
            .expect("build the gateway");
        let addr = app.local_addr().expect("local addr");
        let scaler_addr = app.scaler_addr();
        let bus = app.state().bus.clone();
        // Stopped by cancelling `shutdown` (in Drop); the task ends with the test's runtime.
        tokio::spawn(app.run_until_stopped());
        assert!(
            bus.wait_connected(Duration::from_secs(10)).await,
            "gateway broker link up"
        );
        TestApp {
            addr,
            scaler_addr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            db,
            prefix,
            settings,
            options: self,
            shutdown,
            spawned: 0,
            idps,
            replicated,
        }
    }
}

/// One test's Surge.
pub struct TestApp {
    /// The primary and replica of a test with `replica` (dropped after the database).
    pub replicated: Option<crate::ReplicatedPostgres>,
    pub addr: SocketAddr,
    /// The external scaler's address, when the builder turned it on.
    pub scaler_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    pub prefix: String,
    pub settings: GatewaySettings,
    pub options: TestAppBuilder,
    shutdown: CancellationToken,
    spawned: usize,
    /// The tenants' providers (with `identity`): `a`, then `b`.
    pub idps: Vec<IdentityProvider>,
}

fn tenant_settings(name: &str, idp: &IdentityProvider, callback: &str) -> TenantSettings {
    TenantSettings {
        name: name.into(),
        issuer: idp.issuer.parse().expect("issuer url"),
        client_id: idp.client_id.clone(),
        client_secret: SecretString::from(idp.client_secret.clone()),
        scopes: ["openid", "email", "profile"].map(String::from).to_vec(),
        redirect_url: callback.parse().expect("callback url"),
        admin_group: Some("admins".into()),
        authoritative_domains: Vec::new(),
        accept_bearer: false,
        access_token_audience: None,
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        TestAppBuilder::default().spawn().await
    }

    /// With the two real OpenID providers as tenants `a` and `b` (see
    /// [`TestAppBuilder::identity`]).
    pub async fn spawn_with_identity() -> Self {
        TestAppBuilder {
            identity: true,
            ..Default::default()
        }
        .spawn()
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /jobs/{function}` answered synchronously (200): the finished job.
    pub async fn call(&self, function: &str, body: &Value) -> JobView {
        self.api().call(function, body).await
    }

    /// A Surge with the external scaler on, polling depths every `poll_ms`.
    pub async fn with_scaler(poll_ms: u64) -> Self {
        TestAppBuilder {
            scaler_poll_ms: Some(poll_ms),
            ..Default::default()
        }
        .spawn()
        .await
    }

    /// Logs `user` in through `path_and_query` (`/login?tenant=…` or `/token?tenant=…`) and
    /// its tenant's provider in a fresh browser; returns the callback's answer (`/token?…`
    /// mints an API key: `access_token`).
    pub async fn login(&self, path_and_query: &str, user: &str) -> Issued {
        let response = Browser::new().login(&self.url(path_and_query), user).await;
        crate::read_json(response, StatusCode::OK).await
    }

    /// A new API key of `user` in `tenant`, through the whole login.
    pub async fn login_key(&self, tenant: &str, user: &str) -> String {
        self.login(&format!("/token?tenant={tenant}"), user)
            .await
            .access_token
    }

    /// A request with the test's API key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-api-key", TEST_API_KEY)
    }

    /// `POST /jobs/{function}` with `Prefer: respond-async`; returns the accepted job (202).
    pub async fn submit_async(&self, function: &str, body: &Value) -> JobView {
        self.header("prefer", "respond-async")
            .post(&format!("/jobs/{function}"), body, StatusCode::ACCEPTED)
            .await
    }

    /// Mints an API key for `account` of `tenant` (the entity is created on first use), as
    /// `surge key create` does; returns the key and its id.
    pub async fn mint_key(
        &self,
        tenant: &str,
        account: &str,
        seconds: i64,
    ) -> (String, uuid::Uuid) {
        use secrecy::ExposeSecret as _;
        let pool = &self.db.pool;
        let entity = surge_gateway::store::entities::ensure(pool, tenant, account)
            .await
            .expect("entity");
        let (key, hash) = surge_gateway::auth::api_key::mint().expect("randomness");
        let id = surge_gateway::store::api_keys::insert_api_key(
            pool,
            entity,
            &hash,
            seconds,
            Some("test"),
        )
        .await
        .expect("store key");
        (key.expose_secret().to_owned(), id)
    }

    /// A request with `key` instead of the test's development key.
    pub fn request_as(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-api-key", key)
    }

    /// `SELECT count(*) FROM <from_where>` in the test's database.
    pub async fn count(&self, from_where: &str) -> i64 {
        // Test code with literal table names from the tests themselves.
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {from_where}"
        )))
        .fetch_one(&self.db.pool)
        .await
        .expect("count")
    }

    /// The environment a function process of this test runs with.
    pub fn function_env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("SURGE_DATABASE__URL".into(), self.db.url.clone()),
            ("SURGE_DATABASE__MAX_CONNECTIONS".into(), "4".into()),
            ("SURGE_BROKER__URL".into(), crate::amqp_url()),
            ("SURGE_BROKER__PREFIX".into(), self.prefix.clone()),
            ("SURGE_BROKER__RECONNECT_MAX_MS".into(), "500".into()),
            (
                "SURGE_JOBS__MAX_ATTEMPTS".into(),
                self.options.max_attempts.to_string(),
            ),
            ("SURGE_FUNCTION__RETRY_DELAY_MS".into(), "20".into()),
            ("SURGE_TELEMETRY__LOG_FILTER".into(), "info".into()),
        ];
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    }

    /// Spawns a function process and waits until it consumes its queue.
    pub async fn start_function(
        &mut self,
        function: &str,
        extra: &[(&str, &str)],
    ) -> FunctionProcess {
        let probe = BrokerProbe::connect().await;
        let queue = format!("{}fn.{function}", self.prefix);
        let before = probe.queue_counts(&queue).await.1;
        self.spawned += 1;
        let log = format!("{}{function}-{}", self.prefix, self.spawned);
        let mut process = FunctionProcess::spawn(function, &self.function_env(extra), &log);
        let waited = tokio::time::timeout(Duration::from_secs(15), async {
            eventually(
                "the function to consume",
                Duration::from_secs(15),
                || async { (probe.queue_counts(&queue).await.1 > before).then_some(()) },
            )
            .await
        })
        .await;
        if waited.is_err() {
            let status = process.wait(Duration::from_millis(100)).await;
            panic!(
                "{function} did not start ({status}); its output:\n{}",
                process.output()
            );
        }
        process
    }

    /// Spawns a function in HTTP mode (as under Knative) on a free port and waits until it is
    /// ready; returns the process and its base URL.
    pub async fn start_function_http(&mut self, function: &str) -> (FunctionProcess, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        self.spawned += 1;
        let log = format!("{}{function}-http-{}", self.prefix, self.spawned);
        let env = self.function_env(&[
            ("SURGE_FUNCTION__MODE", "http"),
            ("SURGE_FUNCTION__HTTP_ADDR", &addr),
        ]);
        let process = FunctionProcess::spawn(function, &env, &log);
        let url = format!("http://{addr}");
        self.wait_ready(&format!("{function} (http mode)"), &url)
            .await;
        (process, url)
    }

    /// Spawns the gateway binary as its own process, as production runs it, on this test's
    /// database and broker prefix with the development key (`extra` on top); waits until it is
    /// ready and returns it with its base URL. (The in-process gateway shares the test's
    /// tracing subscriber; this one has its own logs and exporter.)
    pub async fn start_gateway_process(
        &mut self,
        extra: &[(&str, &str)],
    ) -> (FunctionProcess, String) {
        let addr = crate::free_addr().to_string();
        let mut env = self.function_env(extra);
        env.extend([
            ("SURGE_HTTP__ADDR".to_owned(), addr.clone()),
            ("SURGE_DEV__API_KEY".to_owned(), TEST_API_KEY.to_owned()),
            ("SURGE_LIMITS__PER_SECOND".to_owned(), "0".to_owned()),
        ]);
        self.spawned += 1;
        let process = FunctionProcess::spawn_binary(
            &crate::bin_dir().join("surge"),
            &["gateway"],
            &env,
            &format!("{}gateway-{}", self.prefix, self.spawned),
        );
        let url = format!("http://{addr}");
        self.wait_ready("the gateway process", &url).await;
        (process, url)
    }

    async fn wait_ready(&self, what: &str, url: &str) {
        let ready = format!("{url}/readyz");
        let client = self.client.clone();
        eventually(
            &format!("{what} to be ready"),
            Duration::from_secs(20),
            || async {
                let r = client.get(&ready).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
    }

    /// Records a job of `dev@localhost` (the development key's entity) as a gateway does,
    /// without publishing it; with `due_in`, also as unconfirmed and due that many seconds
    /// from now: what a gateway killed between its INSERT and its confirm leaves behind.
    pub async fn record_job(
        &self,
        function: &str,
        input: &Value,
        due_in: Option<f64>,
    ) -> uuid::Uuid {
        let pool = &self.db.pool;
        let entity = surge_gateway::store::entities::ensure(pool, "dev", "dev@localhost")
            .await
            .expect("entity");
        let id = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO job (id, owner_id, function, event_source, event_id, input)
             VALUES ($1, $2, $3, '/surge/gateway', $1::text, $4)",
        )
        .bind(id)
        .bind(entity)
        .bind(function)
        .bind(input)
        .execute(pool)
        .await
        .expect("record a job");
        if let Some(due_in) = due_in {
            sqlx::query(
                "INSERT INTO job_unconfirmed (job_id, due_at)
                 VALUES ($1, now() + make_interval(secs => $2))",
            )
            .bind(id)
            .bind(due_in)
            .execute(pool)
            .await
            .expect("record it unconfirmed");
        }
        id
    }

    /// The sum of the in-process gateway's samples of `name` whose labels include every one
    /// of `labels` (0 when there is none).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The job's state as recorded.
    pub async fn job_state(&self, id: impl std::fmt::Display) -> Option<String> {
        sqlx::query_scalar::<_, String>("SELECT state::text FROM job WHERE id = $1::uuid")
            .bind(id.to_string())
            .fetch_optional(&self.db.pool)
            .await
            .expect("read job state")
    }

    /// How many times the `sleep` function's effect happened for a job.
    pub async fn sleep_runs(&self, id: impl std::fmt::Display) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sleep_run WHERE job_id = $1::uuid")
            .bind(id.to_string())
            .fetch_one(&self.db.pool)
            .await
            .expect("count sleep runs")
    }

    /// A probe connection and a consumer of this test's completion events on `surge.events`
    /// whose routing key matches `key` (keep the probe: the consumer lives on its connection).
    pub async fn completions(&self, key: &str) -> (BrokerProbe, lapin::Consumer) {
        let probe = BrokerProbe::connect().await;
        let consumer = probe
            .subscribe(&format!("{}surge.events", self.prefix), key)
            .await;
        (probe, consumer)
    }

    /// Every failed attempt's problem kept for a job, oldest first.
    pub async fn attempt_errors(&self, id: impl std::fmt::Display) -> Value {
        sqlx::query_scalar("SELECT attempt_errors FROM job WHERE id = $1::uuid")
            .bind(id.to_string())
            .fetch_one(&self.db.pool)
            .await
            .expect("read attempt errors")
    }

    /// Waits until the job reaches `state`.
    pub async fn wait_for_state(&self, id: impl std::fmt::Display, state: &str, timeout: Duration) {
        eventually(&format!("job {id} to be {state}"), timeout, || async {
            (self.job_state(&id).await.as_deref() == Some(state)).then_some(())
        })
        .await;
    }
}

/// A second gateway replica of a test's Surge (same database and broker prefix); stopped
/// when dropped.
pub struct Replica {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Starts another gateway replica with this test's settings, as a second pod would be.
    pub async fn spawn_replica(&self) -> Replica {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind a replica");
        let shutdown = CancellationToken::new();
        let mut settings = self.settings.clone();
        // One metrics port per replica.
        settings.http.metrics_addr = None;
        let app = Application::build_on(listener, settings, shutdown.clone())
            .await
            .expect("build a replica");
        let addr = app.local_addr().expect("local addr");
        let bus = app.state().bus.clone();
        tokio::spawn(app.run_until_stopped());
        assert!(
            bus.wait_connected(Duration::from_secs(10)).await,
            "replica broker link up"
        );
        Replica { addr, shutdown }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let prefix = self.prefix.clone();
        let functions: Vec<String> = self
            .settings
            .functions
            .iter()
            .map(|f| f.to_string())
            .chain([surge_contract::server_settings::FUNCTION.to_owned()])
            .collect();
        crate::block_on_thread(async move {
            let probe = BrokerProbe::connect().await;
            let names: Vec<&str> = functions.iter().map(String::as_str).collect();
            probe.delete_topology(&prefix, &names).await;
        });
        TestDatabase::drop_blocking(&self.db.name);
    }
}
