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
    .map(|v| run(v, &scenario).unwrap())
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
    )
    .unwrap();
    let polled = run(
        &variant("poll", FunctionScaling::example(), false),
        &scenario,
    )
    .unwrap();
    assert_eq!(pushed.waits.p50.seconds, 2.0);
    // Seen at the poll at 60 s, running at 62 s.
    assert_eq!(polled.waits.p50.seconds, 25.0);
    assert_eq!((pushed.jobs_done, polled.jobs_done), (1, 1));
}

#[test]
fn a_shorter_cooldown_costs_fewer_replica_seconds() {
    let scenario = scenario(&[10.0, 400.0, 800.0], ServiceTime::Const(1.0), 1200);
    let cooldown = |secs| FunctionScaling {
        cooldown_period: Duration::from_secs(secs),
        ..FunctionScaling::example()
    };
    let short = run(&variant("short", cooldown(60), true), &scenario).unwrap();
    let long = run(&variant("long", cooldown(300), true), &scenario).unwrap();
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
    // 200 jobs at once, 10 s each, 8 at a time per replica, value 20: up to 10 replicas.
    let arrivals = vec![5.0; 200];
    let scenario = scenario(&arrivals, ServiceTime::Const(10.0), 900);
    let report = run(&variant("t", FunctionScaling::example(), true), &scenario).unwrap();
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
    let report = run(&echo, &scenario).unwrap();
    assert!(report.jobs_done + 20 >= report.jobs_arrived, "{report:?}");
    assert!(report.max_replicas >= 1);
}

/// Finding 2. The HPA controller reconciles every HPA each `--horizontal-pod-autoscaler-sync-
/// period` (15 s, kubernetes pkg/controller/podautoscaler/config/v1alpha1/defaults.go; the
/// work queue in horizontal.go re-adds each HPA after it), whatever KEDA's pollingInterval:
/// with polls every 30 s the second scale-up step comes at t = 15, not at the next poll.
#[test]
fn the_hpa_steps_every_fifteen_seconds_whatever_the_polling_interval() {
    let scenario = scenario(&[0.0; 200], ServiceTime::Const(100.0), 60);
    let spec = FunctionScaling::example();
    assert_eq!(spec.polling_interval, Duration::from_secs(30));
    let report = run(&variant("t", spec, false), &scenario).unwrap();
    let replicas = |t: usize| report.series[t].replicas;
    // t = 0: KEDA activates (1), the HPA's sync at 0 adds the default 4 pods (5).
    assert_eq!(replicas(1), 5);
    // t = 15: the next sync, 15 s later, not 30: +100 % of 5 = 10.
    assert_eq!((replicas(14), replicas(16)), (5, 10));
}

/// Finding 5. A job still queued at the end waited at least until then; leaving it out made
/// five jobs stuck below activationValue print 0.00 s.
#[test]
fn jobs_that_never_start_count_in_the_wait_percentiles_as_lower_bounds() {
    let stuck = FunctionScaling {
        activation_value: 10.0,
        ..FunctionScaling::example()
    };
    let scenario = scenario(&[1.0; 5], ServiceTime::Const(1.0), 600);
    let report = run(&variant("stuck", stuck, false), &scenario).unwrap();
    assert_eq!((report.jobs_arrived, report.jobs_done), (5, 0));
    let expected = Wait {
        seconds: 599.0,
        at_least: true,
    };
    assert_eq!(report.waits.p50, expected);
    assert_eq!(report.waits.p99, expected);
    assert!(render_table(&[report]).contains("≥599.00s"));
    // Waits of jobs that did start stay exact below the first stuck one.
    let mixed = [(1.0, false), (2.0, false), (3.0, false), (500.0, true)];
    let scenario = scenario_of(&mixed);
    let report = run(
        &variant("mixed", FunctionScaling::example(), true),
        &scenario,
    )
    .unwrap();
    assert!(!report.waits.p50.at_least, "{:?}", report.waits);
}

/// A scenario whose jobs arrive at the given times (the flag is ignored: the run decides).
fn scenario_of(arrivals: &[(f64, bool)]) -> Scenario {
    let times: Vec<f64> = arrivals.iter().map(|a| a.0).collect();
    scenario(&times, ServiceTime::Const(1.0), 600)
}

/// Finding 7. A run starts from running replicas with jobs queued and in flight; the HPA has
/// recommended the running count already (horizontal.go `recordInitialRecommendation`).
#[test]
fn a_run_starts_from_the_given_replicas_queue_and_jobs_in_flight() {
    let spec = FunctionScaling {
        behavior: None,
        ..FunctionScaling::example()
    };
    let start = Start {
        replicas: Some(2),
        ready: 100,
        in_flight: 16,
    };
    let service = ServiceTime::Const(30.0);
    let scenario = scenario(&[], service, 120).from_start(start, &service, 1);
    let report = run(&variant("t", spec.clone(), false), &scenario).unwrap();
    let first = report.series[0];
    // Two replicas, 8 jobs each, at once; the HPA's sync at 0 doubles them (no behavior).
    assert_eq!((first.replicas, first.in_flight), (4, 16));
    assert_eq!((report.jobs_arrived, report.jobs_done), (116, 116));
    let too_many = scenario.clone().from_start(
        Start {
            in_flight: 17,
            ..start
        },
        &service,
        1,
    );
    let err = run(&variant("t", spec, false), &too_many).unwrap_err();
    assert_eq!(
        err.to_string(),
        "t: 17 jobs in flight at the start need room on running replicas, and 2 replicas × \
         concurrency 8 hold 16 (raise --initial-replicas)"
    );
}

#[test]
fn an_initial_depth_reads_ready_and_optionally_in_flight() {
    assert_eq!(Start::parse_depth("40").unwrap(), (40, 0));
    assert_eq!(Start::parse_depth("40:8").unwrap(), (40, 8));
    assert!(Start::parse_depth("40:-1").is_err());
    assert!(Start::parse_depth("lots").is_err());
}

/// The `legacy-scale-up` example of docs/tuning.md: 100 jobs on one running replica of a
/// ScaledObject without a behavior. The HPA's first sync goes to max(2 × 1, 4) = 4, not 5;
/// the next, 15 s later, to 5: without a behavior it keeps the highest recommendation of the
/// last 300 s (`stabilizeRecommendation`), and the first one was ceil(100 / 20) = 5.
#[test]
fn the_tuning_example_without_a_behavior_scales_one_replica_to_four() {
    let example = |secs| {
        tuning_example(
            &["legacy-scale-up.yaml"],
            "hundred-at-zero.csv",
            "const:10",
            secs,
        )
    };
    let first_step = &example(14)[0];
    assert_eq!((first_step.max_replicas, first_step.jobs_done), (4, 80));
    let minute = &example(60)[0];
    let replicas = |t: usize| minute.series[t].replicas;
    assert_eq!((replicas(1), replicas(14), replicas(16)), (4, 4, 5));
    assert_eq!((minute.jobs_done, minute.jobs_requeued), (100, 0));
    // 20 jobs wait for the first replica's second round.
    assert_eq!(minute.waits.p95.seconds, 10.0);
}

/// The `long-jobs` example of docs/tuning.md: four 2-minute jobs. Over http they run to the
/// end; over amqp the function looks idle once they are checked out, goes to zero after the
/// cooldown, and its jobs are cut at the grace period and run again, over and over.
#[test]
fn the_tuning_example_over_amqp_scales_a_busy_function_to_zero_mid_job() {
    let files = ["long-jobs-http.yaml", "long-jobs-amqp.yaml"];
    let reports = tuning_example(&files, "four-at-zero.csv", "const:120", 600);
    let (http, amqp) = (&reports[0], &reports[1]);
    assert_eq!((http.jobs_done, http.jobs_requeued), (4, 0));
    assert_eq!(amqp.jobs_done, 0, "{}", render_table(&reports));
    assert!(amqp.jobs_requeued >= 8, "{}", render_table(&reports));
}

fn tuning_example(files: &[&str], trace: &str, service: &str, secs: u64) -> Vec<Report> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/tuning"));
    let arrivals = parse_csv(&std::fs::read_to_string(dir.join(trace)).unwrap()).unwrap();
    let service = ServiceTime::parse(service).unwrap();
    let scenario = Scenario::new(&arrivals, &service, 1, Duration::from_secs(secs));
    files
        .iter()
        .map(|file| {
            let scaling = manifest::load_file(&dir.join(file)).unwrap().remove(0);
            run(&Variant::new(*file, scaling), &scenario).unwrap()
        })
        .collect()
}
