//! Bounded growth: the job table's partitions are made ahead and dropped whole once past
//! retention — never one that holds an open job or a dead job within its own retention — and
//! an `Idempotency-Key` lasts as long as its job. Passes run as if days had gone by (time is an
//! argument of the pass); the partitions are real.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use surge_contract::config::JobSettings;
use surge_gateway::maintenance::{self, Pass, Policy};
use surge_gateway::store::partitions;
use surge_gateway::views::JobView;
use surge_tests::{TestApp, TestAppBuilder, TestDatabase, eventually};

fn policy() -> Policy {
    Policy {
        jobs: JobSettings::default(),
        credential_grace: Duration::from_secs(7 * 86_400),
        flow_ttl: Duration::from_secs(600),
    }
}

/// A maintenance pass as of `days` from now; taken once the test's own gateway is not in the
/// middle of its pass (one replica at a time holds the lock).
async fn pass_in(app: &TestApp, days: i64) -> Pass {
    for _ in 0..100 {
        if let Some(pass) = maintenance::pass(
            &app.db.pool,
            &policy(),
            Utc::now() + chrono::Duration::days(days),
        )
        .await
        .unwrap()
        {
            return pass;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("another pass held the lock for 10 s")
}

#[tokio::test]
async fn the_gateway_makes_partitions_a_week_ahead_and_says_how_far_they_reach() {
    let app = TestApp::spawn().await;
    let week = Utc::now() + chrono::Duration::days(7);
    let newest = eventually(
        "partitions a week ahead",
        Duration::from_secs(10),
        || async {
            let newest = partitions::list(&app.db.pool).await.unwrap().pop()?;
            (newest.ends_at() >= week).then_some(newest)
        },
    )
    .await;
    assert!(
        newest.ends_at() < week + chrono::Duration::days(2),
        "{newest:?}"
    );
    // Run as if five days had gone by: partitions are made to reach a week past then.
    let later = pass_in(&app, 5).await;
    assert!(later.partitions_made >= 5, "{later:?}");
    assert!(later.ahead >= chrono::Duration::days(7), "{later:?}");
}

#[tokio::test]
async fn a_finished_job_past_retention_goes_with_its_partition_and_its_key_makes_a_new_job() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let keyed = app.header("idempotency-key", "order-1");
    let first: JobView = keyed
        .post("/jobs/echo", &json!({"n": 1}), StatusCode::OK)
        .await;
    // Eight days on (retention: seven), its partition is dropped whole.
    let pass = pass_in(&app, 8).await;
    assert!(!pass.partitions_dropped.is_empty(), "{pass:?}");
    assert!(pass.partitions_kept.is_empty(), "{pass:?}");
    assert_eq!(pass.idempotency_keys, 1, "its key went with it");
    app.get_problem(&format!("/jobs/{}", first.id), StatusCode::NOT_FOUND)
        .await;
    // Back in the present (the pass's clock ran ahead and dropped today's partition too):
    // today has a partition again, as it would eight days later.
    let today = Utc::now() - chrono::Duration::hours(1);
    let midnight = (Utc::now().date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    partitions::create(&app.db.pool, today, midnight)
        .await
        .unwrap();
    let again: JobView = keyed
        .post("/jobs/echo", &json!({"n": 1}), StatusCode::OK)
        .await;
    assert_ne!(again.id, first.id, "a repeat after retention is a new job");
}

#[tokio::test]
async fn a_dead_job_keeps_its_partition_for_its_own_retention() {
    let mut app = TestAppBuilder {
        max_attempts: 1,
        ..Default::default()
    }
    .spawn()
    .await;
    let _sleep = app.start_function("sleep", &[]).await;
    let dead = app.api().call("sleep", &json!({"panic": true})).await;
    assert_eq!(dead.state.as_str(), "dead");
    let done = app.api().call("sleep", &json!({})).await;
    // Past the finished jobs' week, within the dead jobs' month: the partition stays whole.
    let pass = pass_in(&app, 8).await;
    assert!(pass.partitions_dropped.is_empty(), "{pass:?}");
    assert!(!pass.partitions_kept.is_empty(), "{pass:?}");
    assert_eq!(app.job_state(&dead.id).await.as_deref(), Some("dead"));
    assert_eq!(app.job_state(&done.id).await.as_deref(), Some("succeeded"));
    // Past the dead job's month: gone, with its listing.
    let pass = pass_in(&app, 31).await;
    assert!(!pass.partitions_dropped.is_empty(), "{pass:?}");
    assert_eq!(pass.dead_listings, 1);
    assert_eq!(app.job_state(&dead.id).await, None);
    assert_eq!(app.count("dead_job").await, 0);
}

#[tokio::test]
async fn an_open_job_keeps_its_partition_however_long_it_waits() {
    let app = TestApp::spawn().await;
    // No replica: it stays queued.
    let waiting: JobView = app
        .header("prefer", "respond-async")
        .post("/jobs/echo", &json!({}), StatusCode::ACCEPTED)
        .await;
    let pass = pass_in(&app, 60).await;
    assert!(
        pass.partitions_dropped
            .iter()
            .all(|(name, _)| !name.contains("legacy")),
        "{pass:?}"
    );
    assert!(
        pass.partitions_kept
            .iter()
            .any(|name| name.contains("legacy")),
        "{pass:?}"
    );
    assert_eq!(app.job_state(&waiting.id).await.as_deref(), Some("queued"));
}

#[tokio::test]
async fn migrating_an_existing_table_keeps_its_jobs_and_both_uniqueness_rules() {
    // The schema before partitions, with jobs in it.
    let name = surge_tests::unique_name();
    let db = TestDatabase::migrated_to(&name, 20261206000001).await;
    let owner = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO entity (id, tenant, account) VALUES ($1, 'dev', 'dev@localhost')")
        .bind(owner)
        .execute(&db.pool)
        .await
        .unwrap();
    let keyed = uuid::Uuid::now_v7();
    let produced = uuid::Uuid::now_v7();
    let open = uuid::Uuid::now_v7();
    for (id, owner, key, source, event, state, finished) in [
        (
            keyed,
            Some(owner),
            Some("order-9"),
            "/surge/gateway",
            keyed.to_string(),
            "succeeded",
            true,
        ),
        (
            produced,
            None,
            None,
            "/shop/orders",
            "order-17".to_owned(),
            "succeeded",
            true,
        ),
        (
            open,
            Some(owner),
            None,
            "/surge/gateway",
            open.to_string(),
            "queued",
            false,
        ),
    ] {
        sqlx::query(
            "INSERT INTO job (id, owner_id, function, state, idempotency_key, event_source, event_id,
                              input, result, finished_at)
             VALUES ($1, $2, 'echo', $3::job_state, $4, $5, $6, '{}', '{}',
                     CASE WHEN $7 THEN now() END)",
        )
        .bind(id)
        .bind(owner)
        .bind(state)
        .bind(key)
        .bind(source)
        .bind(event)
        .bind(finished)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    surge_contract::schema::migrate(&db.pool).await.unwrap();
    let count = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM job").await, 3, "every job kept");
    assert_eq!(
        count("SELECT count(*) FROM job_p_legacy").await,
        3,
        "the old table is the first partition, nothing copied"
    );
    assert_eq!(
        count("SELECT count(*) FROM job_idempotency WHERE key = 'order-9'").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM job_event_key WHERE event_id = 'order-17'").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM job_open").await,
        1,
        "the queued job is open"
    );
    // The key still names its job: the same key again is refused by the key table.
    let taken = sqlx::query(
        "INSERT INTO job_idempotency (owner_id, key, job_id) VALUES ($1, 'order-9', gen_random_uuid())",
    )
    .bind(owner)
    .execute(&db.pool)
    .await;
    assert!(taken.is_err(), "the key is still taken");
    let parts = partitions::list(&db.pool).await.unwrap();
    assert_eq!(parts.first().map(|p| p.from), Some(None), "{parts:?}");
    assert!(
        parts.len() >= 8,
        "the old table and a week of days: {parts:?}"
    );
    db.pool.close().await;
    TestDatabase::drop_blocking(&db.name);
}

#[tokio::test]
async fn duplicates_on_both_sides_of_a_partition_boundary_are_still_duplicates() {
    let mut app = TestApp::spawn().await;
    let pool = &app.db.pool.clone();
    let owner = surge_gateway::store::entities::ensure(pool, "dev", "dev@localhost")
        .await
        .unwrap();
    // An Idempotency-Key first used for a job of tomorrow's partition, then for one of today's.
    let tomorrow = Utc::now() + chrono::Duration::days(1);
    let later = surge_contract::job::JobId(
        uuid::Builder::from_unix_timestamp_millis(tomorrow.timestamp_millis() as u64, &[7; 10])
            .into_uuid(),
    );
    let new_job = |id, input: &str| surge_gateway::store::jobs::NewJob {
        id,
        owner,
        function: "echo".into(),
        idempotency_key: Some("across".into()),
        input: input.into(),
        trace_parent: None,
        persona: None,
    };
    let lease = Duration::from_secs(30);
    let first = surge_gateway::store::jobs::insert_one(pool, &new_job(later, "1"), lease)
        .await
        .unwrap();
    assert!(first.is_some());
    let repeat = surge_gateway::store::jobs::insert_one(
        pool,
        &new_job(surge_contract::job::JobId::new(), "1"),
        lease,
    )
    .await
    .unwrap();
    assert_eq!(
        repeat, None,
        "the key is taken whichever partition the job is in"
    );
    assert_eq!(app.count("job").await, 1);
    // A trusted producer's event whose first copy was recorded in tomorrow's partition: its
    // second delivery is answered from that record, not recorded again.
    let mut echo = app.start_function("echo", &[]).await;
    let produced =
        uuid::Builder::from_unix_timestamp_millis(tomorrow.timestamp_millis() as u64, &[9; 10])
            .into_uuid();
    sqlx::query(
        "INSERT INTO job (id, function, state, attempts, event_source, event_id, input, result, finished_at)
         VALUES ($1, 'echo', 'succeeded', 1, '/shop/orders', 'order-5', '{}', '{\"first\": true}', now())",
    )
    .bind(produced)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO job_event_key (event_source, event_id, job_id) VALUES ('/shop/orders', 'order-5', $1)")
        .bind(produced)
        .execute(pool)
        .await
        .unwrap();
    let event = {
        use cloudevents::EventBuilder as _;
        cloudevents::EventBuilderV10::new()
            .id("order-5")
            .source("/shop/orders")
            .ty("dev.surge.fn.echo")
            .data("application/json", json!({"second": true}))
            .build()
            .unwrap()
    };
    let message = surge_contract::binding::encode(event).unwrap();
    let (probe, mut completions) = app.completions("#").await;
    probe
        .publish(
            &format!("{}surge.jobs", app.prefix),
            "echo",
            message.properties,
            &message.body,
        )
        .await;
    let completion =
        surge_tests::BrokerProbe::next(&mut completions, Duration::from_secs(10)).await;
    let completion =
        surge_contract::completion::Completion::decode(&completion.properties, &completion.data)
            .unwrap();
    assert_eq!(completion.job_id.0, produced, "the first record answers");
    assert_eq!(completion.result(), Some(&json!({"first": true})));
    assert_eq!(app.count("job").await, 2, "nothing recorded twice");
    echo.sigterm();
    assert!(echo.wait(Duration::from_secs(10)).await.success());
}
