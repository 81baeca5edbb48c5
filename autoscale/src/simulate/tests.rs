use std::path::Path;
use std::time::Duration;

use super::*;
use crate::manifest::{self, FunctionScaling};

fn scenario(arrivals: &[f64], service: ServiceTime, secs: u64) -> Scenario {
    Scenario::new(arrivals, &service, 1, Duration::from_secs(secs))
}

fn variant(name: &str, scaling: FunctionScaling, push: bool) -> Variant {
    Variant {
        push,
        ..Variant::new(name, scaling)
    }
}

fn render_burst() -> (String, String) {
    let duration = Duration::from_secs(600);
    let arrivals = Pattern::parse("burst:4:120:60")
        .unwrap()
        .arrivals(duration, 42);
    let service = ServiceTime::parse("exp:3").unwrap();
    let scenario = Scenario::new(&arrivals, &service, 42, duration);
    let fast = FunctionScaling {
        cooldown_period: Duration::from_secs(30),
        ..FunctionScaling::example()
    };
    let reports: Vec<Report> = [
        variant("default <push>", FunctionScaling::example(), true),
        variant("fast & polled", fast, false),
    ]
    .iter()
    .map(|v| run(v, &scenario))
    .collect();
    (render_table(&reports), render_svg(&reports))
}

#[test]
fn a_fixed_trace_and_seed_give_byte_identical_output_twice() {
    let first = render_burst();
    assert_eq!(first, render_burst());
    let (table, svg) = first;
    assert!(table.starts_with("variant "), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("default &lt;push&gt;") && svg.contains("fast &amp; polled"));
    assert!(
        svg.contains("time (s)") && svg.contains(">replicas<") && svg.contains(">queued jobs<")
    );
    assert!(!svg.contains("href"), "no external assets");
}

#[test]
fn push_activation_lowers_the_wait_of_a_single_arrival_after_idle() {
    // One job at t = 37 s; polling every 30 s; replicas start in 2 s.
    let scenario = scenario(&[37.0], ServiceTime::Const(1.0), 200);
    let pushed = run(
        &variant("push", FunctionScaling::example(), true),
        &scenario,
    );
    let polled = run(
        &variant("poll", FunctionScaling::example(), false),
        &scenario,
    );
    assert_eq!(pushed.waits.p50, 2.0);
    // Seen at the poll at 60 s, running at 62 s.
    assert_eq!(polled.waits.p50, 25.0);
    assert_eq!((pushed.jobs_done, polled.jobs_done), (1, 1));
}

#[test]
fn a_shorter_cooldown_costs_fewer_replica_seconds() {
    let scenario = scenario(&[10.0, 400.0, 800.0], ServiceTime::Const(1.0), 1200);
    let cooldown = |secs| FunctionScaling {
        cooldown_period: Duration::from_secs(secs),
        ..FunctionScaling::example()
    };
    let short = run(&variant("short", cooldown(60), true), &scenario);
    let long = run(&variant("long", cooldown(300), true), &scenario);
    assert!(
        short.replica_seconds < long.replica_seconds,
        "{} vs {}",
        short.replica_seconds,
        long.replica_seconds
    );
    assert_eq!(short.series.last().map(|s| s.replicas), Some(0));
}

#[test]
fn a_variant_takes_concurrency_from_the_deployment_env_and_push_from_its_triggers() {
    let mut scaling = FunctionScaling::example();
    // Without the setting, the runtime's own default (not 1, which undercounted capacity).
    assert_eq!(
        Variant::new("a", scaling.clone()).concurrency,
        crate::manifest::RUNTIME_CONCURRENCY
    );
    assert!(!Variant::new("a", scaling.clone()).push);
    scaling
        .env
        .insert("SURGE_FUNCTION__CONCURRENCY".to_owned(), "8".to_owned());
    scaling.external_push = Some("gw:9090".to_owned());
    let v = Variant::new("a", scaling);
    assert_eq!((v.concurrency, v.push), (8, true));
    assert_eq!(v.start_delay, DEFAULT_START_DELAY);
}

#[test]
fn replicas_scale_with_the_backlog_and_every_job_is_done() {
    // 200 jobs at once, 10 s each, one at a time per replica, value 20: up to 10 replicas.
    let arrivals = vec![5.0; 200];
    let scenario = scenario(&arrivals, ServiceTime::Const(10.0), 900);
    let report = run(&variant("t", FunctionScaling::example(), true), &scenario);
    assert_eq!(report.max_replicas, 10);
    assert_eq!((report.jobs_arrived, report.jobs_done), (200, 200));
    assert_eq!(report.jobs_requeued, 0);
    assert_eq!(report.series.len(), 901);
}

#[test]
fn the_keda_base_echo_replays_an_hour_of_diurnal_load() {
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../keda/base");
    let functions = manifest::load_dir(Path::new(base)).unwrap();
    let duration = Duration::from_secs(3600);
    let arrivals = Pattern::Diurnal { peak: 5.0 }.arrivals(duration, 9);
    let scenario = Scenario::new(&arrivals, &ServiceTime::Exp(0.2), 9, duration);
    let echo = Variant::new("echo", functions[0].clone());
    assert_eq!((echo.concurrency, echo.push), (16, true));
    let report = run(&echo, &scenario);
    assert!(report.jobs_done + 20 >= report.jobs_arrived, "{report:?}");
    assert!(report.max_replicas >= 1);
}
