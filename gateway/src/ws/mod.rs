//! `GET /ws`: completions pushed to the caller as structured CloudEvents.
//!
//! Authenticated at the upgrade, by header (`Authorization: Bearer`, `X-API-Key`) or, for
//! browsers that cannot set headers, by offering the subprotocols `surge.v1` and
//! `bearer.<key>` (the server selects `surge.v1`; a key never goes in the URL, where logs keep
//! it). Then JSON commands:
//! `{"type":"subscribe","jobs":["<id>"],"functions":["echo"]}` and `"unsubscribe"` alike,
//! answered `{"type":"subscribed",…}`; errors are `{"type":"error","detail":…}`. The caller
//! receives only its own entity's completions — unless it is an admin who subscribed with
//! `"scope":"tenant"` (the operations console): then the completions of every job of its
//! tenant (an operator's also of the jobs no tenant owns) that its subscriptions match, and
//! `{"type":"queues","functions":[{"function","ready","unacked","consumers"}]}` whenever the
//! queue figures change (when the gateway reads them: `scaler.management_url`). Pings keep
//! the connection alive; a client that reads too slowly (its bounded queue full, or a message
//! not taken within `ws.send_timeout_ms`) is closed with code 4008. The credential is asked
//! again on every ping and at once whenever its entity's credentials change (announced by the
//! database to every replica): revoked or expired (or, for a tenant-wide subscriber, no
//! longer an admin), the connection is closed with code 4003; when it cannot be checked (the
//! database fails), with 1013, to be reconnected. A frame or message over 64 KiB is refused
//! from its header (1009). An entity and a tenant hold at most their caps of a replica's
//! connections (429 at the upgrade); a full replica answers 503.
//! Tenant-wide subscribers get other entities' completions without their result `data`
//! (failures keep their problem), as `/admin/jobs` shows them.

/// Credential changes pushed to the connections of their entity.
pub mod credentials;
/// What the connections are shown of the completions routed here.
pub mod feed;
/// Which connection wants which completion.
pub mod hub;

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt as _, StreamExt as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use surge_contract::job::{self, FunctionName};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::hub::Audience;
use crate::auth::{Caller, presented_key};
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;

/// `ws.*` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsSettings {
    /// Connections on this replica at most; past it the upgrade answers 503.
    pub max_connections: usize,
    /// Connections of one tenant on this replica at most (default: half of
    /// `max_connections`); past it the upgrade answers 429.
    pub max_connections_per_tenant: Option<usize>,
    /// Connections of one entity (a person, a service's key) on this replica at most; past it
    /// the upgrade answers 429.
    pub max_connections_per_entity: usize,
    /// A message the client has not taken within this closes the connection (4008): a
    /// client that stopped reading holds no memory for long.
    pub send_timeout_ms: u64,
    /// Completions queued for one connection; past it the connection is closed (4008).
    pub queue_capacity: usize,
    /// Subscriptions (job ids + functions) of one connection at most.
    pub max_subscriptions: usize,
    /// A ping this often; no pong for two intervals closes the connection.
    pub ping_interval_ms: u64,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_tenant: None,
            max_connections_per_entity: 100,
            send_timeout_ms: 10_000,
            queue_capacity: 256,
            max_subscriptions: 1_000,
            ping_interval_ms: 20_000,
        }
    }
}

impl WsSettings {
    pub fn caps(&self) -> hub::Caps {
        hub::Caps {
            replica: self.max_connections,
            per_tenant: self
                .max_connections_per_tenant
                .unwrap_or(self.max_connections.div_ceil(2)),
            per_entity: self.max_connections_per_entity,
        }
    }

    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.send_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), String> {
        let caps = self.caps();
        if caps.replica == 0 || caps.per_tenant == 0 || caps.per_entity == 0 {
            return Err("ws.max_connections, ws.max_connections_per_tenant and \
                 ws.max_connections_per_entity must be at least 1"
                .into());
        }
        if self.send_timeout_ms == 0 || self.queue_capacity == 0 || self.ping_interval_ms == 0 {
            return Err(
                "ws.send_timeout_ms, ws.queue_capacity and ws.ping_interval_ms must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The subprotocol the server speaks.
pub const PROTOCOL: &str = "surge.v1";
/// Close code for a client that reads too slowly (private-use range).
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code for a credential that was revoked or expired, or an admin who is one no more
/// while following a tenant (private-use range).
pub const CLOSE_NOT_ALLOWED: u16 = 4003;
/// Close code for a credential that could not be checked (the database did not answer):
/// the client should reconnect shortly (RFC 6455 "try again later").
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// Commands are small JSON documents; no frame or message larger is read (a larger frame is
/// refused from its header, before its payload is buffered).
const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// What a connection reads the socket with: commands are small, and an idle connection's
/// memory is mostly this buffer (the library's default is 128 KiB).
const READ_BUFFER_BYTES: usize = 4 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// Completions over a WebSocket
///
/// Upgrade with the key in `Authorization`/`X-API-Key`, or (browsers) as the subprotocol
/// `bearer.<key>` beside `surge.v1`, which the server selects. Then send
/// `{"type":"subscribe","jobs":[…],"functions":[…]}` (or `unsubscribe`); completions of the
/// caller's own jobs arrive as structured CloudEvents, and subscribers of `settings` get
/// `dev.surge.settings.changed` events. A client that reads too slowly is closed with 4008.
#[utoipa::path(get, path = "/ws", tag = "push", operation_id = "websocket",
    params(("Sec-WebSocket-Protocol" = Option<String>, Header, description = "`surge.v1, bearer.<key>` (browsers)")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol `surge.v1`"),
        (status = 400, description = "Not a WebSocket upgrade", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller's entity is over its rate limit (`Retry-After`), or it or its tenant holds as many connections here as it may (`too-many-connections`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the database cannot be reached, or this replica holds as many connections as it allows: retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Kept to ask again on every ping (the extractor found it, so it is there).
    let credential = SecretString::from(presented_key(&headers).unwrap_or_default().to_owned());
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(format!(
            "GET /ws takes a WebSocket upgrade ({})",
            e.body_text()
        ))
    })?;
    // Checked again, atomically, when the connection joins the hub; this early answer
    // spares a full replica the upgrade.
    state
        .hub
        .admits(&caller.tenant, caller.entity_id, state.ws.caps())
        .map_err(|refused| match refused {
            hub::Refused::Replica(_) => ApiError::Unavailable(format!("{refused}; retry shortly")),
            hub::Refused::Tenant(_) | hub::Refused::Entity(_) => {
                ApiError::TooManyConnections(refused.to_string())
            }
        })?;
    let tracker = state.ws_tasks.clone();
    Ok(upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_COMMAND_BYTES)
        .max_frame_size(MAX_COMMAND_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        // Each message is written out as it is sent: nothing waits in a buffer.
        .write_buffer_size(0)
        .on_upgrade(move |socket| tracker.track_future(serve(socket, caller, credential, state))))
}

/// Whose completions a subscription covers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Scope {
    /// The caller's own jobs.
    #[default]
    Own,
    /// Every job of the caller's tenant (admins).
    Tenant,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Command {
    Subscribe {
        #[serde(default)]
        jobs: Vec<Uuid>,
        #[serde(default)]
        functions: Vec<String>,
        #[serde(default)]
        scope: Scope,
    },
    Unsubscribe {
        #[serde(default)]
        jobs: Vec<Uuid>,
        #[serde(default)]
        functions: Vec<String>,
        #[serde(default)]
        scope: Scope,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Reply {
    Subscribed {
        jobs: Vec<Uuid>,
        functions: Vec<String>,
        scope: Scope,
    },
    Error {
        detail: String,
    },
}

/// What a command asks of the connection's watching, done after its subscriptions change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watching {
    Start,
    Stop,
    Keep,
}

/// The queue figures as the console shows them.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "queues")]
struct Queues {
    functions: Vec<QueueFigures>,
}

#[derive(Debug, Serialize, PartialEq)]
struct QueueFigures {
    function: String,
    ready: u64,
    unacked: u64,
    consumers: u64,
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Why a send did not complete.
enum Unsent {
    /// The connection is gone.
    Closed,
    /// The client stopped reading: its queue overflowed, or a message waited longer than
    /// `ws.send_timeout_ms`.
    TooSlow,
}

impl Unsent {
    /// The close frame to try to send, if any.
    fn close_frame(&self) -> Option<Message> {
        match self {
            Self::Closed => None,
            Self::TooSlow => Some(close(
                CLOSE_TOO_SLOW,
                "too slow: messages were not read in time",
            )),
        }
    }
}

/// Sends one message, giving up when the client does not take it within `timeout` or its
/// queue overflows meanwhile: a client that stopped reading holds its connection no longer.
async fn send(
    sink: &mut Sink,
    message: Message,
    too_slow: &tokio_util::sync::CancellationToken,
    timeout: Duration,
) -> Result<(), Unsent> {
    tokio::select! {
        sent = sink.send(message) => sent.map_err(|_| Unsent::Closed),
        () = too_slow.cancelled() => Err(Unsent::TooSlow),
        () = tokio::time::sleep(timeout) => Err(Unsent::TooSlow),
    }
}

async fn serve(socket: WebSocket, caller: Caller, credential: SecretString, state: AppState) {
    let settings = state.ws.clone();
    let send_timeout = settings.send_timeout();
    let (mut sink, mut stream) = socket.split();
    let joined = state.hub.join(
        &caller.tenant,
        caller.entity_id,
        settings.queue_capacity,
        settings.caps(),
    );
    let mut member = match joined {
        Ok(member) => member,
        Err(refused) => {
            tracing::warn!(error = %refused, "websocket refused");
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                sink.send(close(1013, "too many connections; retry later")),
            )
            .await;
            return;
        }
    };
    let own_key = job::entity_binding_key(&caller.tenant, &caller.entity_id.to_string());
    if let Err(e) = state.bus.hold(&own_key).await {
        tracing::warn!(error = %e, "websocket refused: the broker cannot route completions here");
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(close(1011, "the broker is unavailable; reconnect shortly")),
        )
        .await;
        state.hub.leave(member.id, caller.entity_id);
        return;
    }
    let mut queues = state.activity.changes();
    let mut last_queues: Option<Arc<str>> = None;
    let mut watching = false;
    let mut ping = tokio::time::interval(Duration::from_millis(settings.ping_interval_ms.max(100)));
    ping.tick().await;
    let mut unanswered_pings = 0u8;
    let shutdown = state.shutdown.clone();
    let recheck = member.recheck.clone();
    let too_slow = member.too_slow.clone();
    let outcome = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Some(close(1001, "the gateway is shutting down")),
            () = too_slow.cancelled() => {
                break Some(close(CLOSE_TOO_SLOW, "too slow: the connection's queue is full"));
            }
            // Its entity's credentials changed (on any replica): asked at once, not at the
            // next ping.
            () = recheck.notified() => {
                if let Some(frame) = standing(&state, &credential, &caller, watching, Lookup::Fresh).await {
                    break Some(frame);
                }
            }
            Some(json) = member.queue.recv() => {
                if let Err(unsent) = send(&mut sink, Message::Text(Utf8Bytes::from(&*json)), &too_slow, send_timeout).await {
                    break unsent.close_frame();
                }
            }
            Ok(()) = queues.changed(), if watching => {
                if let Some(json) = queue_figures(&state, &mut last_queues)
                    && let Err(unsent) = send(&mut sink, Message::Text(Utf8Bytes::from(&*json)), &too_slow, send_timeout).await
                {
                    break unsent.close_frame();
                }
            }
            _ = ping.tick() => {
                if unanswered_pings >= 2 {
                    break Some(close(1011, "no pong"));
                }
                if let Some(frame) = standing(&state, &credential, &caller, watching, Lookup::Cached).await {
                    break Some(frame);
                }
                unanswered_pings += 1;
                if let Err(unsent) = send(&mut sink, Message::Ping(Default::default()), &too_slow, send_timeout).await {
                    break unsent.close_frame();
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let was_watching = watching;
                    let reply = match check(&text, &member, &caller, &state.functions, settings.max_subscriptions) {
                        Err(reply) => reply,
                        Ok((command, change)) => {
                            // Whether the connection watches its tenant once the command is done.
                            let now = match change {
                                Watching::Start if watching => Ok(true),
                                Watching::Start => watch(&state, &caller, member.id).await.map(|()| true),
                                Watching::Stop if watching => {
                                    stop_watching(&state, &caller, member.id).await;
                                    Ok(false)
                                }
                                Watching::Stop => Ok(false),
                                Watching::Keep => Ok(watching),
                            };
                            match now {
                                Ok(now) => {
                                    watching = now;
                                    apply(command, &member, if now { Scope::Tenant } else { Scope::Own })
                                }
                                // A failed watch was undone whole.
                                Err(detail) => {
                                    watching = false;
                                    Reply::Error { detail }
                                }
                            }
                        }
                    };
                    let text = serde_json::to_string(&reply).unwrap_or_default();
                    if let Err(unsent) = send(&mut sink, Message::Text(text.into()), &too_slow, send_timeout).await {
                        break unsent.close_frame();
                    }
                    if watching && !was_watching {
                        // The figures as they are now, then each change.
                        last_queues = None;
                        if let Some(json) = queue_figures(&state, &mut last_queues)
                            && let Err(unsent) = send(&mut sink, Message::Text(Utf8Bytes::from(&*json)), &too_slow, send_timeout).await
                        {
                            break unsent.close_frame();
                        }
                    }
                }
                Some(Ok(Message::Pong(_))) => unanswered_pings = 0,
                Some(Ok(Message::Close(_))) | None => break None,
                // A frame or message over the limit, or a protocol error: say why, then go.
                Some(Err(e)) => break protocol_close(&e),
                Some(Ok(_)) => {}
            },
        }
    };
    if let Some(frame) = outcome {
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(frame)).await;
    }
    if watching {
        stop_watching(&state, &caller, member.id).await;
    }
    state.hub.leave(member.id, caller.entity_id);
    state.bus.release(&own_key).await;
}

/// The close frame for a read that failed: 1009 for a frame or message past
/// `MAX_COMMAND_BYTES`, 1002 for a protocol error; none when the connection is simply gone.
fn protocol_close(error: &axum::Error) -> Option<Message> {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(ws) = cause.downcast_ref::<tungstenite::Error>() {
            return match ws {
                tungstenite::Error::Capacity(_) => Some(close(1009, "a message is at most 64 KiB")),
                tungstenite::Error::Protocol(_) => Some(close(1002, "protocol error")),
                _ => None,
            };
        }
        source = cause.source();
    }
    None
}

/// Whose jobs a tenant-wide watcher sees: its tenant's, and an operator's also those no
/// tenant owns.
fn audiences(state: &AppState, caller: &Caller) -> Vec<Audience> {
    let mut audiences = vec![Some(caller.tenant.clone())];
    if state.tenants.is_operator_tenant(&caller.tenant) {
        audiences.push(None);
    }
    audiences
}

/// Ends the connection's watching, and its hold on the audiences' bindings.
async fn stop_watching(state: &AppState, caller: &Caller, id: u64) {
    state.hub.unwatch(id);
    for audience in audiences(state, caller) {
        state
            .bus
            .release(&job::tenant_binding_key(audience.as_deref()))
            .await;
    }
}

/// How a credential is asked about again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Through the authenticator's short-lived cache (every ping).
    Cached,
    /// From the database (its entity's credentials just changed).
    Fresh,
}

/// Whether the connection's credential still stands: the same entity, and an admin while it
/// follows the tenant. `None` keeps the connection; otherwise the frame to close it with:
/// 4003 for a credential no longer valid, 1013 when it could not be checked (a connection is
/// never kept on a credential nobody could vouch for; the client reconnects).
async fn standing(
    state: &AppState,
    credential: &SecretString,
    caller: &Caller,
    watching: bool,
    lookup: Lookup,
) -> Option<Message> {
    if lookup == Lookup::Fresh {
        state.auth.forget(credential.expose_secret());
    }
    let now = tokio::time::timeout(
        Duration::from_secs(5),
        state.auth.authenticate(credential.expose_secret(), None),
    )
    .await;
    match now {
        Ok(Ok(now)) if now.entity_id == caller.entity_id && (!watching || now.admin) => None,
        Ok(Ok(_) | Err(ApiError::Unauthorized(_) | ApiError::Forbidden(_))) => Some(close(
            CLOSE_NOT_ALLOWED,
            "the credential is no longer valid for this feed",
        )),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a websocket's credential could not be checked; closing it");
            Some(close(
                CLOSE_TRY_AGAIN,
                "the credential could not be checked; reconnect shortly",
            ))
        }
        Err(_) => {
            tracing::warn!("a websocket's credential check timed out; closing it");
            Some(close(
                CLOSE_TRY_AGAIN,
                "the credential could not be checked; reconnect shortly",
            ))
        }
    }
}

/// Makes the connection a tenant-wide watcher, holding the bindings that route its
/// audiences' completions here; a failed hold undoes the whole watch.
async fn watch(state: &AppState, caller: &Caller, id: u64) -> Result<(), String> {
    let audiences = audiences(state, caller);
    let keys: Vec<String> = audiences
        .iter()
        .map(|a| job::tenant_binding_key(a.as_deref()))
        .collect();
    for (held, key) in keys.iter().enumerate() {
        if let Err(e) = state.bus.hold(key).await {
            tracing::warn!(error = %e, "a tenant-wide subscription failed: the broker cannot route here");
            for key in &keys[..held] {
                state.bus.release(key).await;
            }
            return Err("the broker is unavailable; subscribe again shortly".into());
        }
    }
    state.hub.watch(id, caller.entity_id, &audiences);
    Ok(())
}

/// The served functions' queue figures as JSON, when they differ from the last sent.
fn queue_figures(state: &AppState, last: &mut Option<Arc<str>>) -> Option<Arc<str>> {
    let mut functions: Vec<QueueFigures> = state
        .functions
        .iter()
        .filter_map(|f| {
            let depth = state.activity.current(f)?.observed()?;
            Some(QueueFigures {
                function: f.to_string(),
                ready: depth.ready,
                unacked: depth.unacked,
                consumers: depth.consumers,
            })
        })
        .collect();
    if functions.is_empty() {
        return None;
    }
    functions.sort_by(|a, b| a.function.cmp(&b.function));
    let json: Arc<str> = Arc::from(serde_json::to_string(&Queues { functions }).ok()?);
    if last.as_ref() == Some(&json) {
        return None;
    }
    *last = Some(json.clone());
    Some(json)
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Reads a command and checks it against the connection's subscriptions, changing nothing:
/// a tenant-wide subscription must be bound (which needs the broker) before it is applied.
fn check(
    text: &str,
    member: &hub::Member,
    caller: &Caller,
    known: &HashSet<FunctionName>,
    max: usize,
) -> Result<(Command, Watching), Reply> {
    let command: Command = serde_json::from_str(text).map_err(|e| Reply::Error {
        detail: format!(
            "not a command ({e}); send {{\"type\":\"subscribe\",\"jobs\":[…],\"functions\":[…]}}"
        ),
    })?;
    let watching = match &command {
        Command::Subscribe {
            scope: Scope::Tenant,
            ..
        } => Watching::Start,
        Command::Unsubscribe {
            scope: Scope::Tenant,
            ..
        } => Watching::Stop,
        _ => Watching::Keep,
    };
    if watching != Watching::Keep && !caller.admin {
        return Err(Reply::Error {
            detail: "\"scope\":\"tenant\" is for admins: members of the tenant's admin group"
                .into(),
        });
    }
    if let Command::Subscribe {
        jobs, functions, ..
    } = &command
    {
        if let Some(unknown) = functions
            .iter()
            .filter(|f| f.as_str() != surge_contract::server_settings::FUNCTION)
            .find(|f| FunctionName::parse(f).map_or(true, |f| !known.contains(&f)))
        {
            return Err(Reply::Error {
                detail: format!("no function named {unknown:?} is served here"),
            });
        }
        let held = member
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        if held + jobs.len() + functions.len() > max {
            return Err(Reply::Error {
                detail: format!("at most {max} subscriptions per connection"),
            });
        }
    }
    Ok((command, watching))
}

/// Applies a checked command to the connection's subscriptions; the reply lists them all.
fn apply(command: Command, member: &hub::Member, scope: Scope) -> Reply {
    let mut subscriptions = member
        .subscriptions
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match command {
        Command::Subscribe {
            jobs, functions, ..
        } => {
            subscriptions.jobs.extend(jobs);
            subscriptions.functions.extend(functions);
        }
        Command::Unsubscribe {
            jobs, functions, ..
        } => {
            for job in &jobs {
                subscriptions.jobs.remove(job);
            }
            for function in &functions {
                subscriptions.functions.remove(function);
            }
        }
    }
    let mut functions: Vec<String> = subscriptions.functions.iter().cloned().collect();
    functions.sort();
    let mut jobs: Vec<Uuid> = subscriptions.jobs.iter().copied().collect();
    jobs.sort();
    Reply::Subscribed {
        jobs,
        functions,
        scope,
    }
}
