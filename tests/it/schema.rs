//! Processes refuse a database whose schema is older than they are, naming the fix.

use std::time::Duration;

use secrecy::SecretString;
use surge_gateway::config::GatewaySettings;
use surge_gateway::startup::Application;
use surge_tests::{FunctionProcess, TestDatabase, unique_name};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_gateway_refuses_an_unmigrated_database_and_names_surge_migrate() {
    let name = unique_name();
    let db = TestDatabase::empty(&name).await;
    let mut settings = GatewaySettings::default();
    settings.database.url = SecretString::from(db.url.clone());
    settings.http.addr = ([127, 0, 0, 1], 0).into();
    let err = Application::build(settings, CancellationToken::new())
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("surge migrate"), "{err:#}");
    TestDatabase::drop_blocking(&name);
}

#[tokio::test]
async fn a_function_refuses_an_unmigrated_database_and_exits_non_zero() {
    let name = unique_name();
    let db = TestDatabase::empty(&name).await;
    let env = vec![
        ("SURGE_DATABASE__URL".to_owned(), db.url.clone()),
        ("SURGE_BROKER__PREFIX".to_owned(), format!("{name}-")),
    ];
    let mut process = FunctionProcess::spawn("echo", &env, &format!("{name}-schema"));
    let status = process.wait(Duration::from_secs(15)).await;
    assert!(!status.success());
    assert!(
        process.output().contains("surge migrate"),
        "{}",
        process.output()
    );
    TestDatabase::drop_blocking(&name);
}

#[tokio::test]
async fn migrating_twice_is_harmless() {
    let name = unique_name();
    let db = TestDatabase::migrated(&name).await;
    surge_contract::schema::migrate(&db.pool)
        .await
        .expect("second run");
    surge_contract::schema::ensure_current(&db.pool)
        .await
        .expect("current");
    TestDatabase::drop_blocking(&name);
}

#[tokio::test]
async fn every_connection_plans_each_statement_for_its_parameters() {
    // A generic plan made while a `job` partition was empty scans it sequentially for as
    // long as the plan lives (docs/BENCHMARKS.md, 2026-12-07): Surge's connections never
    // settle on one.
    let name = unique_name();
    let db = TestDatabase::migrated(&name).await;
    let mut settings = GatewaySettings::default();
    settings.database.url = SecretString::from(db.url.clone());
    let pool = settings.database.connect().await.unwrap();
    let mode: String = sqlx::query_scalar("SELECT current_setting('plan_cache_mode')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "force_custom_plan");
    pool.close().await;
    TestDatabase::drop_blocking(&name);
}
