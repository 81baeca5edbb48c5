//! `/ws`: each entity receives its own completions as structured CloudEvents and nothing of
//! anyone else's; the replica's queue is bound to `surge.events` only for connected entities.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use surge_gateway::routes::login::Me;
use surge_gateway::views::JobView;
use surge_tests::{FunctionProcess, TestApp, eventually, management_url};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use uuid::Uuid;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects with the key in `X-API-Key`, or as a browser must, in the subprotocol list.
async fn connect(app: &TestApp, key: &str, as_browser: bool) -> Socket {
    connect_to(app.addr, key, as_browser).await
}

pub(crate) async fn connect_to(addr: std::net::SocketAddr, key: &str, as_browser: bool) -> Socket {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let headers = request.headers_mut();
    if as_browser {
        headers.insert(
            "sec-websocket-protocol",
            format!("surge.v1, bearer.{key}").parse().unwrap(),
        );
    } else {
        headers.insert("x-api-key", key.parse().unwrap());
    }
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    if as_browser {
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "surge.v1",
            "never the key"
        );
    }
    socket
}

pub(crate) async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message within 20 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

pub(crate) async fn subscribe(socket: &mut Socket, command: Value) -> Value {
    socket
        .send(Message::Text(command.to_string().into()))
        .await
        .unwrap();
    next_json(socket).await
}

/// The routing keys bound from `surge.events` to anything, from the management API.
pub(crate) async fn event_bindings(app: &TestApp) -> Vec<String> {
    let url = format!(
        "{}/api/exchanges/%2f/{}surge.events/bindings/source",
        management_url(),
        app.prefix
    );
    let url = url::Url::parse(&url).unwrap();
    let (user, password) = (url.username().to_owned(), url.password().map(str::to_owned));
    let mut bare = url.clone();
    bare.set_username("").unwrap();
    bare.set_password(None).unwrap();
    let bindings: Vec<Value> = reqwest::Client::new()
        .get(bare)
        .basic_auth(user, password)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bindings
        .iter()
        .filter_map(|b| b["routing_key"].as_str().map(str::to_owned))
        .collect()
}

/// Two entities with the same address in two tenants, each subscribed to its `echo`
/// completions, ann with `X-API-Key` and eve as a browser does.
struct TwoEntities {
    app: TestApp,
    _echo: FunctionProcess,
    ann: String,
    eve: String,
    ann_entity: Uuid,
    eve_entity: Uuid,
    ann_ws: Socket,
    eve_ws: Socket,
}

async fn two_entities() -> TwoEntities {
    let mut app = TestApp::spawn().await;
    let echo = app.start_function("echo", &[]).await;
    let (ann, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    // Same address, another tenant: another entity.
    let (eve, _) = app.mint_key("evil", "ann@acme.test", 0).await;
    let ann_entity = app
        .as_key(&ann)
        .get::<Me>("/me", StatusCode::OK)
        .await
        .entity_id;
    let eve_entity = app
        .as_key(&eve)
        .get::<Me>("/me", StatusCode::OK)
        .await
        .entity_id;
    assert_ne!(ann_entity, eve_entity);
    let mut ann_ws = connect(&app, &ann, false).await;
    let mut eve_ws = connect(&app, &eve, true).await;
    for ws in [&mut ann_ws, &mut eve_ws] {
        let ack = subscribe(ws, json!({"type": "subscribe", "functions": ["echo"]})).await;
        assert_eq!(
            ack,
            json!({"type": "subscribed", "jobs": [], "functions": ["echo"], "scope": "own"})
        );
    }
    TwoEntities {
        app,
        _echo: echo,
        ann,
        eve,
        ann_entity,
        eve_entity,
        ann_ws,
        eve_ws,
    }
}

/// Whether a binding of `surge.events` names `entity`.
async fn bound(app: &TestApp, entity: Uuid) -> bool {
    let entity = entity.to_string();
    event_bindings(app)
        .await
        .iter()
        .any(|k| k.contains(entity.as_str()))
}

#[tokio::test]
async fn a_subscription_binds_the_entitys_completions_to_the_replica() {
    let two = two_entities().await;
    for entity in [two.ann_entity, two.eve_entity] {
        assert!(
            bound(&two.app, entity).await,
            "{entity} bound: {:?}",
            event_bindings(&two.app).await
        );
    }
}

#[tokio::test]
async fn each_entity_receives_its_own_completions_and_no_one_elses() {
    let mut two = two_entities().await;
    let app = &two.app;
    let job: JobView = app
        .as_key(&two.ann)
        .post("/jobs/echo", &json!({"from": "ann"}), StatusCode::OK)
        .await;
    let event = next_json(&mut two.ann_ws).await;
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], job.id.to_string());
    assert_eq!(event["type"], "dev.surge.fn.echo.completed");
    assert_eq!(event["data"], json!({"from": "ann"}));

    let theirs: JobView = app
        .as_key(&two.eve)
        .post("/jobs/echo", &json!({"from": "eve"}), StatusCode::OK)
        .await;
    let first = next_json(&mut two.eve_ws).await;
    assert_eq!(
        first["id"],
        theirs.id.to_string(),
        "eve's first event is her own, never ann's"
    );
}

#[tokio::test]
async fn a_bad_command_gets_an_error_and_the_connection_stays_open() {
    let mut two = two_entities().await;
    let ann_ws = &mut two.ann_ws;
    let error = subscribe(ann_ws, json!({"type": "watch"})).await;
    assert_eq!(error["type"], "error");
    let unknown = subscribe(ann_ws, json!({"type": "subscribe", "functions": ["nope"]})).await;
    assert_eq!(
        unknown["type"], "error",
        "only functions served here: {unknown}"
    );
    // Still open, and still answering.
    let ack = subscribe(
        ann_ws,
        json!({"type": "unsubscribe", "functions": ["echo"]}),
    )
    .await;
    assert_eq!(ack["functions"], json!([]));
}

#[tokio::test]
async fn an_entitys_binding_goes_with_its_last_connection() {
    let mut two = two_entities().await;
    two.ann_ws.close(None).await.unwrap();
    eventually(
        "ann's binding is removed",
        Duration::from_secs(10),
        || async { (!bound(&two.app, two.ann_entity).await).then_some(()) },
    )
    .await;
    assert!(bound(&two.app, two.eve_entity).await, "eve's stays");
}
#[tokio::test]
async fn an_upgrade_without_a_valid_key_is_refused() {
    let app = TestApp::spawn().await;
    for key in [None, Some("surge_not-a-real-key")] {
        let mut request = format!("ws://{}/ws", app.addr)
            .into_client_request()
            .unwrap();
        if let Some(key) = key {
            request
                .headers_mut()
                .insert("x-api-key", key.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401);
            }
            other => panic!("expected 401, got {other:?}"),
        }
    }
}
