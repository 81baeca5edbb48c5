//! `GET /ws`: completions pushed to the caller as structured CloudEvents.
//!
//! Authenticated at the upgrade, by header (`Authorization: Bearer`, `X-API-Key`) or, for
//! browsers that cannot set headers, by offering the subprotocols `surge.v1` and
//! `bearer.<key>` (the server selects `surge.v1`; a key never goes in the URL, where logs keep
//! it). Then JSON commands:
//! `{"type":"subscribe","jobs":["<id>"],"functions":["echo"]}` and `"unsubscribe"` alike,
//! answered `{"type":"subscribed",…}`; errors are `{"type":"error","detail":…}`. The caller
//! receives only its own entity's completions. Pings keep the connection alive; a client that
//! reads too slowly for its bounded queue is closed with code 4008.

pub mod hub;

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use surge_contract::job::FunctionName;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;

/// `ws.*` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsSettings {
    /// Connections on this replica at most; past it the upgrade answers 503.
    pub max_connections: usize,
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
            queue_capacity: 256,
            max_subscriptions: 1_000,
            ping_interval_ms: 20_000,
        }
    }
}

/// The subprotocol the server speaks.
pub const PROTOCOL: &str = "surge.v1";
/// Close code for a client that reads too slowly (private-use range).
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Commands are small JSON documents; nothing larger is read.
const MAX_COMMAND_BYTES: usize = 64 * 1024;

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
    ))]
async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(format!(
            "GET /ws takes a WebSocket upgrade ({})",
            e.body_text()
        ))
    })?;
    // Checked again, atomically, when the connection joins the hub; this early answer
    // spares a full replica the upgrade.
    if state.bus.hub().connections() >= state.ws.max_connections {
        return Err(ApiError::Unavailable(
            "this replica has as many websocket connections as it allows; retry shortly".into(),
        ));
    }
    let tracker = state.ws_tasks.clone();
    Ok(upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_COMMAND_BYTES)
        .on_upgrade(move |socket| tracker.track_future(serve(socket, caller, state))))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Command {
    Subscribe {
        #[serde(default)]
        jobs: Vec<Uuid>,
        #[serde(default)]
        functions: Vec<String>,
    },
    Unsubscribe {
        #[serde(default)]
        jobs: Vec<Uuid>,
        #[serde(default)]
        functions: Vec<String>,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Reply {
    Subscribed {
        jobs: Vec<Uuid>,
        functions: Vec<String>,
    },
    Error {
        detail: String,
    },
}

async fn serve(socket: WebSocket, caller: Caller, state: AppState) {
    let settings = state.ws.clone();
    let bus = state.bus.clone();
    let hub = bus.hub().clone();
    let (mut sink, mut stream) = socket.split();
    let joined = hub.join(
        &caller.tenant,
        caller.entity_id,
        settings.queue_capacity,
        settings.max_connections,
    );
    let (mut member, first) = match joined {
        Ok(joined) => joined,
        Err(full) => {
            tracing::warn!(error = %full, "websocket refused");
            let _ = sink
                .send(close(1013, "too many connections; retry later"))
                .await;
            return;
        }
    };
    if first && let Err(e) = bus.follow(&caller.tenant, caller.entity_id).await {
        tracing::warn!(error = %e, "websocket refused: the broker cannot route completions here");
        let _ = sink
            .send(close(1011, "the broker is unavailable; reconnect shortly"))
            .await;
        leave(&state, &caller, member.id).await;
        return;
    }
    let mut ping = tokio::time::interval(Duration::from_millis(settings.ping_interval_ms.max(100)));
    ping.tick().await;
    let mut unanswered_pings = 0u8;
    let shutdown = state.shutdown.clone();
    let outcome = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Some(close(1001, "the gateway is shutting down")),
            () = member.too_slow.cancelled() => {
                break Some(close(CLOSE_TOO_SLOW, "too slow: the connection's queue is full"));
            }
            Some(json) = member.queue.recv() => {
                if sink.send(Message::Text(Utf8Bytes::from(&*json))).await.is_err() {
                    break None;
                }
            }
            _ = ping.tick() => {
                if unanswered_pings >= 2 {
                    break Some(close(1011, "no pong"));
                }
                unanswered_pings += 1;
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = command(&text, &member, &state.functions, settings.max_subscriptions);
                    let text = serde_json::to_string(&reply).unwrap_or_default();
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(Message::Pong(_))) => unanswered_pings = 0,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
        }
    };
    if let Some(frame) = outcome {
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(frame)).await;
    }
    leave(&state, &caller, member.id).await;
}

async fn leave(state: &AppState, caller: &Caller, id: u64) {
    if state.bus.hub().leave(id, caller.entity_id) {
        state.bus.unfollow(&caller.tenant, caller.entity_id).await;
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

fn command(text: &str, member: &hub::Member, known: &HashSet<FunctionName>, max: usize) -> Reply {
    let command: Command = match serde_json::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            return Reply::Error {
                detail: format!(
                    "not a command ({e}); send {{\"type\":\"subscribe\",\"jobs\":[…],\"functions\":[…]}}"
                ),
            };
        }
    };
    let mut subscriptions = member
        .subscriptions
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match command {
        Command::Subscribe { jobs, functions } => {
            if let Some(unknown) = functions
                .iter()
                .filter(|f| f.as_str() != surge_contract::setting::FUNCTION)
                .find(|f| FunctionName::parse(f).map_or(true, |f| !known.contains(&f)))
            {
                return Reply::Error {
                    detail: format!("no function named {unknown:?} is served here"),
                };
            }
            if subscriptions.len() + jobs.len() + functions.len() > max {
                return Reply::Error {
                    detail: format!("at most {max} subscriptions per connection"),
                };
            }
            subscriptions.jobs.extend(jobs);
            subscriptions.functions.extend(functions);
        }
        Command::Unsubscribe { jobs, functions } => {
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
    Reply::Subscribed { jobs, functions }
}
