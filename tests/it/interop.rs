//! Interoperability with another CloudEvents SDK: the official Python SDK (PyPI `cloudevents`)
//! encodes with its RabbitMQ protocol binding and sends over HTTP; Surge takes both, and its
//! completions decode with the same SDK.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};
use surge_tests::{BrokerProbe, TestApp, python_ce_client};

fn event(id: &str, ty: &str, data: Value) -> Value {
    json!({
        "attributes": {
            "id": id,
            "source": "/tests/python",
            "type": ty,
            "datacontenttype": "application/json",
        },
        "data": data,
    })
}

/// A delivered AMQP message in the Python client's JSON shape (header values as text).
fn as_python_message(delivery: &lapin::message::Delivery) -> Value {
    let headers: BTreeMap<String, String> = delivery
        .properties
        .headers()
        .as_ref()
        .map(|h| {
            h.inner()
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        AMQPValue::LongString(s) => {
                            String::from_utf8_lossy(s.as_bytes()).into_owned()
                        }
                        AMQPValue::LongLongInt(i) => i.to_string(),
                        AMQPValue::Boolean(b) => b.to_string(),
                        other => format!("{other:?}"),
                    };
                    (k.to_string(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "headers": headers,
        "content_type": delivery.properties.content_type().as_ref().map(|c| c.to_string()),
        "body_b64": base64::engine::general_purpose::STANDARD.encode(&delivery.data),
    })
}

#[tokio::test]
async fn an_event_from_the_python_sdks_rabbitmq_binding_is_run_and_its_completion_decodes_in_python()
 {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let (probe, mut completions) = app.completions("#").await;

    let message = python_ce_client(
        &["rabbitmq-encode"],
        &event("py-1", "dev.surge.fn.echo", json!({"from": "python"})),
    )
    .await;
    let mut headers = FieldTable::default();
    for (k, v) in message["headers"].as_object().unwrap() {
        headers.insert(
            k.as_str().into(),
            AMQPValue::LongString(v.as_str().unwrap().into()),
        );
    }
    let mut properties = BasicProperties::default().with_headers(headers);
    if let Some(ct) = message["content_type"].as_str() {
        properties = properties.with_content_type(ct.into());
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(message["body_b64"].as_str().unwrap())
        .unwrap();
    probe
        .publish(
            &format!("{}surge.jobs", app.prefix),
            "echo",
            properties,
            &body,
        )
        .await;

    let delivery = BrokerProbe::next(&mut completions, Duration::from_secs(10)).await;
    let decoded = python_ce_client(&["rabbitmq-decode"], &as_python_message(&delivery)).await;
    assert_eq!(decoded["attributes"]["type"], "dev.surge.fn.echo.completed");
    assert_eq!(decoded["attributes"]["source"], "/surge/functions/echo");
    assert_eq!(decoded["attributes"]["surgestate"], "succeeded");
    assert_eq!(decoded["data"], json!({"from": "python"}));
    let time = decoded["attributes"]["time"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(time).expect("an RFC 3339 time");
}

#[tokio::test]
async fn a_function_in_http_mode_takes_events_from_the_python_sdk_once_each() {
    let mut app = TestApp::spawn().await;
    let (_sleep, url) = app.start_function_http("sleep").await;
    let (_probe, mut completions) = app.completions("-.-.sleep.*").await;

    let sent = event("knative-1", "dev.surge.fn.sleep", json!({"ms": 20}));
    let binary = python_ce_client(&["http-send", &url, "--mode", "binary"], &sent).await;
    assert_eq!(
        binary["status"], 204,
        "answered once recorded and completed: {binary}"
    );
    let delivery = BrokerProbe::next(&mut completions, Duration::from_secs(10)).await;
    let completion = surge_contract::binding::decode(&delivery.properties, &delivery.data).unwrap();
    assert_eq!(
        cloudevents::AttributesReader::ty(&completion),
        "dev.surge.fn.sleep.completed"
    );

    // The same event again, now in structured mode: answered from the record, not rerun.
    let again = python_ce_client(&["http-send", &url, "--mode", "structured"], &sent).await;
    assert_eq!(again["status"], 204, "{again}");
    let (runs, attempts, state): (i64, i32, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sleep_run r WHERE r.job_id = job.id), attempts, state::text \
         FROM job WHERE event_source = '/tests/python' AND event_id = 'knative-1'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((runs, attempts, state.as_str()), (1, 1, "succeeded"));

    // Not a CloudEvent: refused with a problem, so the sender dead-letters it.
    let refused = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let problem = surge_tests::read_problem(refused, reqwest::StatusCode::BAD_REQUEST).await;
    assert_eq!(problem.kind, "urn:surge:problem:bad-request");
}
