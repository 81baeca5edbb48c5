//! One Surge per application: two instances on the same RabbitMQ and Postgres server, each
//! with its own database and broker prefix (as docs/deploy.md says to run them), with the very
//! same development key, see nothing of each other's jobs, settings or events.

use reqwest::StatusCode;
use serde_json::json;
use surge_gateway::routes::settings::{NewSetting, SettingList};
use surge_gateway::views::JobView;
use surge_tests::{FunctionProcess, TEST_API_KEY, TestApp, TestAppBuilder};

use crate::ws::{connect_to, next_json, subscribe};

async fn instance() -> (TestApp, Vec<FunctionProcess>) {
    let mut app = TestAppBuilder {
        dev_admin: true,
        ..Default::default()
    }
    .spawn()
    .await;
    let functions = vec![
        app.start_function("echo", &[]).await,
        app.start_function("settings", &[]).await,
    ];
    (app, functions)
}

#[tokio::test]
async fn two_instances_on_one_broker_and_database_server_share_nothing() {
    let ((blog, _blog_functions), (shop, _shop_functions)) = tokio::join!(instance(), instance());
    assert_ne!(blog.prefix, shop.prefix);
    assert_ne!(blog.db.name, shop.db.name);
    let mut shop_feed = connect_to(shop.addr, TEST_API_KEY, false).await;
    subscribe(
        &mut shop_feed,
        json!({"type": "subscribe", "functions": ["echo", "settings"]}),
    )
    .await;

    // The blog's job, its setting: there, and only there.
    let job = blog.api().call("echo", &json!({"post": 1})).await;
    assert_eq!(job.result, Some(json!({"post": 1})));
    let _: serde_json::Value = blog
        .post(
            "/settings",
            &NewSetting {
                name: "theme".into(),
                value: json!("dark"),
            },
            StatusCode::CREATED,
        )
        .await;
    shop.api()
        .get_problem(&format!("/jobs/{}", job.id), StatusCode::NOT_FOUND)
        .await;
    let listed: surge_gateway::views::JobPage = shop.api().get("/jobs", StatusCode::OK).await;
    assert!(listed.jobs.is_empty(), "{:?}", listed.jobs);
    let settings: SettingList = shop.api().get("/settings", StatusCode::OK).await;
    assert!(settings.settings.is_empty());

    // The shop's own job is the first thing its feed shows: nothing of the blog's came.
    let own: JobView = shop.api().call("echo", &json!({"order": 1})).await;
    let first = next_json(&mut shop_feed).await;
    assert_eq!(first["id"], own.id.to_string(), "{first}");
}
