//! `/ws` under pressure: a revoked credential's sockets closed on every replica without
//! waiting for a ping, a credential that cannot be checked never kept, caps per entity and
//! per tenant, a client that stops reading let go, an oversized frame refused from its header.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use surge_gateway::config::GatewaySettings;
use surge_tests::{TEST_API_KEY, TestApp, TestAppBuilder};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::ws::{Socket, connect_to, subscribe};

/// The close code the socket ends with (reading and dropping whatever comes before it).
async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    tokio::time::timeout(within, async {
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("no close within {within:?}"))
}

/// An upgrade that must be refused: its status and problem document.
async fn refused_upgrade(app: &TestApp, key: &str) -> (StatusCode, Value) {
    let mut request = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
            let body = response.body().clone().unwrap_or_default();
            (
                status,
                serde_json::from_slice(&body).expect("a problem document"),
            )
        }
        Err(e) => panic!("not an HTTP refusal: {e}"),
    }
}

#[tokio::test]
async fn a_revoked_keys_sockets_close_on_every_replica_long_before_the_next_ping() {
    // Pings a minute apart: a close within seconds is the change announced, not the ping.
    let app = TestAppBuilder {
        ws_ping_interval_ms: 60_000,
        ..Default::default()
    }
    .spawn()
    .await;
    let other = app.spawn_replica().await;
    let (key, id) = app.mint_key("acme", "ann@acme.test", 0).await;
    let (bystander, _) = app.mint_key("acme", "bob@acme.test", 0).await;
    let mut here = connect_to(app.addr, &key, false).await;
    let mut there = connect_to(other.addr, &key, true).await;
    let mut unaffected = connect_to(other.addr, &bystander, false).await;
    for socket in [&mut here, &mut there, &mut unaffected] {
        let answer = subscribe(socket, json!({"type": "subscribe", "functions": ["echo"]})).await;
        assert_eq!(answer["scope"], "own", "{answer}");
    }
    let revoked = std::time::Instant::now();
    app.as_key(&key)
        .delete::<()>(&format!("/token/{id}"), StatusCode::NO_CONTENT)
        .await;
    assert_eq!(
        close_code(&mut here, Duration::from_secs(10)).await,
        Some(4003)
    );
    assert_eq!(
        close_code(&mut there, Duration::from_secs(10)).await,
        Some(4003)
    );
    eprintln!(
        "both sockets closed {:?} after the revoke was sent",
        revoked.elapsed()
    );
    // Another entity's socket is asked nothing and stays.
    let still = subscribe(
        &mut unaffected,
        json!({"type": "subscribe", "functions": ["echo"]}),
    )
    .await;
    assert_eq!(still["type"], "subscribed", "{still}");
}

#[tokio::test]
async fn a_credential_the_database_cannot_vouch_for_closes_its_socket_to_try_again() {
    let app = TestAppBuilder {
        ws_ping_interval_ms: 300,
        ..Default::default()
    }
    .spawn()
    .await;
    let (key, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    let mut socket = connect_to(app.addr, &key, false).await;
    subscribe(
        &mut socket,
        json!({"type": "subscribe", "functions": ["echo"]}),
    )
    .await;
    // Every credential lookup now fails inside the database.
    sqlx::query("ALTER TABLE auth RENAME TO auth_gone")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let code = close_code(&mut socket, Duration::from_secs(15)).await;
    sqlx::query("ALTER TABLE auth_gone RENAME TO auth")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(code, Some(1013), "closed to be tried again, never kept");
}

#[tokio::test]
async fn an_entity_or_a_tenant_at_its_cap_gets_429_while_others_still_connect() {
    fn caps(settings: &mut GatewaySettings) {
        settings.ws.max_connections_per_entity = 2;
        settings.ws.max_connections_per_tenant = Some(3);
    }
    let app = TestAppBuilder {
        tune: Some(caps),
        ..Default::default()
    }
    .spawn()
    .await;
    let (ann, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    let (bob, _) = app.mint_key("acme", "bob@acme.test", 0).await;
    let (cat, _) = app.mint_key("acme", "cat@acme.test", 0).await;
    let (dan, _) = app.mint_key("globex", "dan@globex.test", 0).await;
    let _ann1 = connect_to(app.addr, &ann, false).await;
    let _ann2 = connect_to(app.addr, &ann, true).await;
    let (status, problem) = refused_upgrade(&app, &ann).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert_eq!(problem["type"], "urn:surge:problem:too-many-connections");
    assert!(
        problem["detail"].as_str().unwrap().contains("entity"),
        "{problem}"
    );
    // Another entity of the tenant still connects, up to the tenant's cap.
    let _bob = connect_to(app.addr, &bob, false).await;
    let (status, problem) = refused_upgrade(&app, &cat).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("tenant"),
        "{problem}"
    );
    // Another tenant is untouched.
    let mut other = connect_to(app.addr, &dan, false).await;
    let answer = subscribe(
        &mut other,
        json!({"type": "subscribe", "functions": ["echo"]}),
    )
    .await;
    assert_eq!(answer["scope"], "own", "{answer}");
    // A connection that leaves frees its slot.
    drop(_ann1);
    let _ann3 = surge_tests::eventually("ann's slot to free", Duration::from_secs(5), || async {
        let mut request = format!("ws://{}/ws", app.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("x-api-key", ann.parse().unwrap());
        tokio_tungstenite::connect_async(request).await.ok()
    })
    .await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_as_too_slow() {
    fn impatient(settings: &mut GatewaySettings) {
        settings.ws.queue_capacity = 4;
        settings.ws.send_timeout_ms = 500;
    }
    let mut app = TestAppBuilder {
        tune: Some(impatient),
        ..Default::default()
    }
    .spawn()
    .await;
    let _echo = app.start_function("echo", &[]).await;
    // A small receive window, so the kernel holds little of what is never read.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(app.addr).await.unwrap();
    let mut request = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-api-key", TEST_API_KEY.parse().unwrap());
    let (mut socket, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let answer = subscribe(
        &mut socket,
        json!({"type": "subscribe", "functions": ["echo"]}),
    )
    .await;
    assert_eq!(answer["scope"], "own", "{answer}");
    assert_eq!(app.metric("surge_ws_connections", &[]).await, 1.0);
    // ~9 MiB of completions the client never reads while they come.
    let filler = "x".repeat(60 * 1024);
    let jobs = 150;
    for _ in 0..jobs {
        app.submit_async("echo", &json!({ "filler": filler })).await;
    }
    surge_tests::eventually(
        "the connection to be let go",
        Duration::from_secs(60),
        || async { (app.metric("surge_ws_connections", &[]).await == 0.0).then_some(()) },
    )
    .await;
    // What the kernel held is read, then the end (with its reason when it fitted).
    let mut completions = 0;
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(Message::Text(_)) => completions += 1,
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the stream ends");
    // The close frame itself may not fit past what the client never read: then the
    // connection simply ends.
    assert!(matches!(code, Some(4008) | None), "closed with {code:?}");
    assert!(completions < jobs, "{completions} of {jobs} delivered");
}

#[tokio::test]
async fn a_frame_over_64_kib_is_refused_from_its_header() {
    let app = TestApp::spawn().await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         X-API-Key: {TEST_API_KEY}\r\n\r\n",
        app.addr
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // A masked text frame announcing 1 MiB; not one byte of its payload follows.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    let mut answer = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut answer))
        .await
        .expect("answered without waiting for the payload")
        .unwrap();
    assert_eq!(answer[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([answer[2], answer[3]]), 1009);
}
