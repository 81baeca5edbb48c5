//! Building the application (`Application::build` binds the listener, port 0 in tests) and
//! running it until the shutdown token is cancelled.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use surge_contract::schema;
use surge_contract::telemetry::{set_parent, trace_context};
use surge_contract::topology::Topology;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::client::TrustedProxies;
use crate::auth::{Authenticator, ClientLimiter, DevKey, EntityLimiter, ttl_cache};
use crate::bus::{Bus, EventListener};
use crate::config::GatewaySettings;
use crate::error::ApiError;
use crate::identity::Tenants;
use crate::metrics::GatewayMetrics;
use crate::openapi::ApiDoc;
use crate::routes;
use crate::scaler::proto::external_scaler_server::ExternalScalerServer;
use crate::scaler::{Activity, ManagementApi, ScalerService};
use crate::settings_cache::SettingsCache;
use crate::state::AppState;
use crate::store;
use crate::ws::feed::Feed;
use crate::ws::hub::Hub;

pub struct Application {
    listener: TcpListener,
    scaler: Option<(TcpListener, ScalerService)>,
    router: Router,
    /// `/metrics` on its own listener (`http.metrics_addr`).
    metrics: Option<(TcpListener, Router)>,
    state: AppState,
    bus_stop: CancellationToken,
    bus_task: tokio::task::JoinHandle<()>,
    confirmations_task: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Connects to the database (refusing an outdated schema), starts the broker link and
    /// binds the listener.
    pub async fn build(
        settings: GatewaySettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        // Checked before binding, so a bad setting is named before a busy port is.
        settings.validate().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(settings.http.addr)
            .await
            .with_context(|| format!("cannot listen on http.addr {}", settings.http.addr))?;
        Self::build_on(listener, settings, shutdown).await
    }

    /// As `build`, on a listener bound already (tests bind first, so the identity providers
    /// they start can be told the gateway's callback URL).
    pub async fn build_on(
        listener: TcpListener,
        settings: GatewaySettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        settings.validate().map_err(anyhow::Error::msg)?;
        let pool = settings.database.connect().await?;
        schema::ensure_current(&pool).await?;
        let tenants = Arc::new(
            Tenants::new(&settings.tenants, &settings.identity)
                .context("cannot build the HTTP client for identity providers")?,
        );
        let limiter = Arc::new(EntityLimiter::new(&settings.limits));
        let auth = Authenticator {
            pool: pool.clone(),
            keys: ttl_cache(Duration::from_secs(1), 100_000),
            // A hash no key has cannot become one (keys are random): kept longer, apart.
            unknown: ttl_cache(Duration::from_secs(10), 20_000),
            clients: Arc::new(ClientLimiter::for_clients(&settings.limits)),
            proxies: TrustedProxies::parse(&settings.http.trusted_proxies)
                .map_err(anyhow::Error::msg)?,
            subjects: ttl_cache(Duration::from_secs(60), 100_000),
            tenants: tenants.clone(),
            limiter: limiter.clone(),
            admin_max_age: chrono::Duration::seconds(settings.identity.admin_max_age_seconds),
            shared: match &settings.limits.store_url {
                Some(url) => Some(
                    crate::auth::shared_limit::SharedLimiter::new(
                        url,
                        &settings.broker.prefix,
                        Duration::from_millis(settings.limits.store_timeout_ms),
                    )
                    .context("limits.store_url")?,
                ),
                None => None,
            },
            store_fail_open: settings.limits.store_fail_open,
            dev_key: match &settings.dev.api_key {
                Some(key) => {
                    tracing::warn!(tenant = %settings.dev.tenant, "the development API key is enabled: never in production");
                    let entity =
                        store::entities::ensure(&pool, &settings.dev.tenant, &settings.dev.account)
                            .await?;
                    Some(DevKey::new(
                        key.clone(),
                        entity,
                        settings.dev.tenant.clone(),
                        settings.dev.admin,
                    ))
                }
                None => {
                    if settings.tenants.is_empty() {
                        tracing::warn!(
                            "no tenants and no development key are configured: nobody can log in, every protected endpoint answers 401"
                        );
                    }
                    None
                }
            },
        };
        if settings.broker.function_senders().is_open() {
            tracing::warn!(
                "broker.function_users is empty: completions are taken from any broker user that \
                 can publish to the events exchange; give functions their own broker user and \
                 name it there (docs/security.md)"
            );
        }
        if settings.tenants.len() > 1 && settings.identity.operator_tenants.is_empty() {
            tracing::warn!(
                tenants = settings.tenants.len(),
                "several tenants and identity.operator_tenants is empty: nobody may write server \
                 settings or see the dead jobs no tenant owns; name the tenant(s) whose admins \
                 run the platform in identity.operator_tenants (SURGE_IDENTITY__OPERATOR_TENANTS)"
            );
        }
        let topology = Topology::new(settings.broker.prefix.clone(), settings.jobs.max_attempts);
        // Every function the gateway publishes to: the configured ones and `settings`.
        let mut deployed = settings.functions.clone();
        deployed.push(surge_contract::server_settings::function());
        let settings_cache = Arc::new(SettingsCache::new(pool.clone(), limiter));
        settings_cache
            .reload()
            .await
            .context("cannot read the server settings")?;
        let hub = Arc::new(Hub::default());
        // The link outlives the HTTP server: in-flight requests still publish while draining.
        let bus_stop = CancellationToken::new();
        let (bus, bus_task) = Bus::start(
            &settings.broker,
            topology.clone(),
            deployed.clone(),
            settings.http.max_waiters,
            vec![
                Arc::new(Feed::new(hub.clone())),
                settings_cache.clone() as Arc<dyn EventListener>,
            ],
            bus_stop.clone(),
        );
        let activity = Activity::new(&deployed, settings.scaler.publish_hold());
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(GatewayMetrics::register(&mut registry));
        // Queue figures feed the external scaler, the metrics and the console: read whenever
        // the management API is configured. The poller stops with the broker link.
        if let Some(management) = &settings.scaler.management_url {
            let api = ManagementApi::new(
                management,
                &ManagementApi::vhost_of(&settings.broker.first_url()),
            )?;
            tokio::spawn(Arc::clone(&activity).poll(
                api,
                topology.clone(),
                settings.scaler.poll_interval(),
                metrics.clone(),
                bus_stop.clone(),
            ));
        }
        let scaler = match settings.scaler.addr {
            Some(addr) => Some(start_scaler(&settings, addr, &activity, &shutdown).await?),
            None => None,
        };
        // Confirms are recorded until the broker link stops: in-flight requests still publish
        // while draining.
        let (confirmations, confirmations_task) =
            crate::jobs::Confirmations::start(pool.clone(), bus_stop.clone());
        // A share of the pool writes accepts in groups; the rest serves reads and the rest
        // of the job path.
        let recorder = crate::jobs::Recorder::start(
            pool.clone(),
            settings.delivery.lease(),
            (settings.database.max_connections / 3).clamp(1, 4) as usize,
            metrics.process.group_sizes("jobs"),
        );
        let reads = Arc::new(crate::reads::Reads::new(
            pool.clone(),
            settings.database.replica()?,
            Duration::from_millis(settings.database.replica_max_lag_ms),
        ));
        let state = AppState {
            reads,
            pool,
            bus,
            activity,
            auth: Arc::new(auth),
            tenants,
            ws: Arc::new(settings.ws.clone()),
            hub,
            ws_tasks: tokio_util::task::TaskTracker::new(),
            functions: Arc::new(settings.functions.iter().cloned().collect::<HashSet<_>>()),
            settings: settings_cache.clone(),
            metrics,
            registry: Arc::new(registry),
            http: Arc::new(settings.http.clone()),
            shutdown,
            delivery: Arc::new(settings.delivery.clone()),
            confirmations,
            recorder,
            reconciler: Arc::default(),
        };
        tokio::spawn(Arc::clone(&state.reads).watch(state.shutdown.clone()));
        tokio::spawn(crate::ws::credentials::listen(
            settings.database.listener_pool()?,
            state.hub.clone(),
            state.shutdown.clone(),
        ));
        tokio::spawn(crate::maintenance::run_every(
            state.pool.clone(),
            crate::maintenance::Policy {
                jobs: settings.jobs.clone(),
                credential_grace: Duration::from_secs(settings.maintenance.credential_grace_s),
                flow_ttl: Duration::from_secs(settings.identity.flow_ttl_s),
            },
            Duration::from_millis(settings.maintenance.interval_ms),
            state.metrics.clone(),
            state.shutdown.clone(),
        ));
        tokio::spawn(crate::jobs::reconcile(
            state.clone(),
            state.shutdown.clone(),
        ));
        tokio::spawn(settings_cache.follow(
            Duration::from_millis(settings.http.settings_refresh_ms),
            state.shutdown.clone(),
        ));
        // Idle entities and clients are forgotten by the rate limiters every few seconds.
        let sweep = (state.auth.clone(), state.shutdown.clone());
        tokio::spawn(async move {
            let (auth, stop) = sweep;
            let mut every = tokio::time::interval(Duration::from_secs(10));
            while stop.run_until_cancelled(every.tick()).await.is_some() {
                auth.limiter.sweep();
                auth.clients.sweep();
            }
        });
        let metrics_route = Router::new()
            .route("/metrics", axum::routing::get(crate::metrics::serve))
            .with_state(state.clone());
        let (router, metrics) = match settings.http.metrics_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on http.metrics_addr {addr}"))?;
                let router = router(state.clone(), settings.http.body_limit_bytes);
                (router, Some((listener, metrics_route)))
            }
            None => (
                router(state.clone(), settings.http.body_limit_bytes).merge(metrics_route),
                None,
            ),
        };
        Ok(Self {
            listener,
            scaler,
            router,
            metrics,
            state,
            bus_stop,
            bus_task,
            confirmations_task,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Where the external scaler listens, when it is on.
    pub fn scaler_addr(&self) -> Option<SocketAddr> {
        self.scaler.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until the shutdown token is cancelled, lets in-flight requests finish, then
    /// closes the broker link and the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr()?, "gateway listening");
        let shutdown = self.state.shutdown.clone();
        let scaler = self.scaler.map(|(listener, service)| {
            tracing::info!(addr = ?listener.local_addr().ok(), "external scaler listening");
            let stop = shutdown.clone();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(ExternalScalerServer::new(service))
                    .serve_with_incoming_shutdown(
                        TcpIncoming::from(listener),
                        stop.cancelled_owned(),
                    ),
            )
        });
        let metrics = self.metrics.map(|(listener, router)| {
            tracing::info!(addr = ?listener.local_addr().ok(), "metrics listening");
            tokio::spawn(
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                    .into_future(),
            )
        });
        // Callers waiting for a job are answered 202 at once on shutdown: the drain is short.
        crate::serve::serve(
            self.listener,
            self.router,
            self.state.http.header_read_timeout(),
            shutdown.clone(),
            Duration::from_secs(30),
        )
        .await;
        // Websocket tasks saw the same token and are sending their close frames.
        self.state.ws_tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.state.ws_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("websocket connections did not close within 5 s");
        }
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        if let Some(scaler) = scaler
            && let Ok(Err(e)) = scaler.await
        {
            tracing::warn!(error = %e, "the external scaler stopped with an error");
        }
        self.bus_stop.cancel();
        let _ = self.bus_task.await;
        let _ = self.confirmations_task.await;
        self.state.pool.close().await;
        tracing::info!("gateway stopped");
        Ok(())
    }
}

/// Binds the external scaler. Its streams end with the HTTP side (`streams_stop`), or
/// tonic's graceful shutdown would wait on them.
async fn start_scaler(
    settings: &GatewaySettings,
    addr: SocketAddr,
    activity: &Arc<Activity>,
    streams_stop: &CancellationToken,
) -> anyhow::Result<(TcpListener, ScalerService)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on scaler.addr {addr}"))?;
    let service = ScalerService::new(
        Arc::clone(activity),
        settings.scaler.max_streams,
        settings.scaler.default_target,
        streams_stop.clone(),
    );
    Ok((listener, service))
}

/// Every documented route, with the OpenAPI document they make up.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::jobs::router())
        .merge(routes::events::router())
        .merge(routes::settings::router())
        .merge(routes::tokens::router())
        .merge(routes::personas::router())
        .merge(routes::login::router())
        .merge(crate::ws::router())
        .merge(routes::dead_jobs::router())
        .merge(routes::overview::router())
        .merge(routes::health::router())
}

fn router(state: AppState, body_limit: usize) -> Router {
    let request_timeout = state.http.request_timeout();
    let (api, document) = crate::openapi::routes_and_document();
    // The Swagger UI's assets are in the binary (`vendored`): /docs works with no internet.
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", document))
        .merge(routes::console::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::MethodNotAllowed(format!("{method} is not served on this path"))
        })
        .layer(axum::middleware::map_response(with_traceparent))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async {
                        ApiError::Unavailable(
                            "the request took longer than the gateway allows (http.request_timeout_ms); retry".into(),
                        )
                    },
                ))
                .layer(tower::timeout::TimeoutLayer::new(request_timeout)),
        )
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// A span per request, continuing the caller's trace when it sent `traceparent`.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        method = %request.method(),
        path = %request.uri().path(),
        job_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let carrier = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| {
            let value = request.headers().get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    set_parent(&span, &carrier);
    span
}

/// Tells the caller the trace its request is part of.
async fn with_traceparent(mut response: Response) -> Response {
    if let Some(value) = trace_context(&tracing::Span::current())
        .get("traceparent")
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert("traceparent", value);
    }
    response
}
