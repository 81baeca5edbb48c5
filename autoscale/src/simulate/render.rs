//! Reports as text: a fixed-width table comparing variants, and a self-contained SVG chart of
//! replicas and queue depth over time. Output is a pure function of the reports (fixed number
//! formats, no timestamps), so the same reports render byte for byte the same.

use std::fmt::Write as _;

use super::{Report, Sample, Wait};
use crate::decision::show_num;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 620.0;
const LEFT: f64 = 70.0;
const PLOT_WIDTH: f64 = 660.0;
const PANEL_HEIGHT: f64 = 220.0;
const PANEL_TOPS: [f64; 2] = [60.0, 345.0];
/// At most this many points per line; longer series keep each bucket's maximum.
const MAX_POINTS: usize = 1200;
/// A panel: its y-axis label and the value it plots.
type Panel = (&'static str, fn(&Sample) -> u32);

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A fixed-width table, one row per variant: jobs, waits, cost and peak. A wait marked `≥`
/// is a lower bound: jobs still queued at the end count as having waited until then.
pub fn render_table(reports: &[Report]) -> String {
    let name_width = reports
        .iter()
        .map(|r| r.variant.chars().count())
        .chain([7])
        .max()
        .unwrap_or(7);
    let mut out = format!(
        "{:<name_width$}  {:>8}  {:>8}  {:>8}  {:>9}  {:>9}  {:>9}  {:>11}  {:>4}\n",
        "variant",
        "arrived",
        "done",
        "requeued",
        "wait p50",
        "wait p95",
        "wait p99",
        "replica-s",
        "max"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<name_width$}  {:>8}  {:>8}  {:>8}  {:>9}  {:>9}  {:>9}  {:>11.1}  {:>4}",
            r.variant,
            r.jobs_arrived,
            r.jobs_done,
            r.jobs_requeued,
            show_wait(r.waits.p50),
            show_wait(r.waits.p95),
            show_wait(r.waits.p99),
            r.replica_seconds,
            r.max_replicas
        );
    }
    out
}

/// `2.00s`, or `≥590.00s` when jobs that never started reach down to the percentile.
fn show_wait(wait: Wait) -> String {
    let bound = if wait.at_least { "≥" } else { "" };
    format!("{bound}{:.2}s", wait.seconds)
}

/// An SVG line chart: replicas (top) and queued jobs (bottom) over time, one colour per
/// variant, with axes, labels and a legend; no external assets.
pub fn render_svg(reports: &[Report]) -> String {
    let end = reports
        .iter()
        .filter_map(|r| r.series.last())
        .map(|s| s.t)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"28\" font-size=\"16\">Replicas and queue depth over time</text>\n"
    );
    let panels: [Panel; 2] = [
        ("replicas", |s| s.replicas),
        ("queued jobs", |s| s.queue_depth),
    ];
    for ((label, value), top) in panels.into_iter().zip(PANEL_TOPS) {
        panel(&mut out, reports, label, value, top, end);
    }
    legend(&mut out, reports);
    out.push_str("</svg>\n");
    out
}

fn panel(
    out: &mut String,
    reports: &[Report],
    label: &str,
    value: fn(&Sample) -> u32,
    top: f64,
    end: f64,
) {
    let peak = reports
        .iter()
        .flat_map(|r| r.series.iter().map(value))
        .max()
        .unwrap_or(0);
    let y_step = nice_step(f64::from(peak) / 4.0).max(1.0);
    let y_max = (f64::from(peak) / y_step).ceil().max(1.0) * y_step;
    let bottom = top + PANEL_HEIGHT;
    let x = |t: f64| LEFT + t / end * PLOT_WIDTH;
    let y = |v: f64| bottom - v / y_max * PANEL_HEIGHT;
    axes(out, top, label, y_step, y_max, &y);
    x_axis(out, bottom, end, &x);
    for (i, report) in reports.iter().enumerate() {
        let points = downsample(&report.series, value);
        let mut d = String::new();
        for (j, (t, v)) in points.iter().enumerate() {
            let (px, py) = (x(*t as f64), y(f64::from(*v)));
            // Steps: a count holds until the next sample.
            let _ = if j == 0 {
                write!(d, "M{px:.1},{py:.1}")
            } else {
                write!(d, "H{px:.1}V{py:.1}")
            };
        }
        let _ = writeln!(
            out,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>",
            COLOURS[i % COLOURS.len()]
        );
    }
}

fn x_axis(out: &mut String, bottom: f64, end: f64, x: &dyn Fn(f64) -> f64) {
    let x_step = nice_step(end / 6.0).max(1.0);
    let mut t = 0.0;
    while t <= end {
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" y1=\"{bottom:.1}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#333\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(t),
            bottom + 5.0,
            bottom + 18.0,
            show_num(t)
        );
        t += x_step;
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text>",
        LEFT + PLOT_WIDTH / 2.0,
        bottom + 36.0
    );
}

fn axes(out: &mut String, top: f64, label: &str, step: f64, max: f64, y: &dyn Fn(f64) -> f64) {
    let bottom = top + PANEL_HEIGHT;
    let right = LEFT + PLOT_WIDTH;
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{top}\" x2=\"{LEFT}\" y2=\"{bottom}\" stroke=\"#333\"/>\
         <line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#333\"/>\n\
         <text transform=\"translate(20 {:.1}) rotate(-90)\" text-anchor=\"middle\">{label}</text>",
        top + PANEL_HEIGHT / 2.0
    );
    let mut v = 0.0;
    while v <= max {
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{right}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{1:.1}\" y=\"{2:.1}\" text-anchor=\"end\">{3}</text>",
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            show_num(v)
        );
        v += step;
    }
}

fn legend(out: &mut String, reports: &[Report]) {
    let x = LEFT + PLOT_WIDTH + 30.0;
    for (i, report) in reports.iter().enumerate() {
        let y = PANEL_TOPS[0] + 10.0 + 22.0 * i as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 24.0,
            COLOURS[i % COLOURS.len()],
            x + 30.0,
            y + 4.0,
            escape(&report.variant)
        );
    }
}

/// (t, value) points, at most [`MAX_POINTS`]; a bucket keeps its largest value, so peaks show.
fn downsample(series: &[Sample], value: fn(&Sample) -> u32) -> Vec<(u64, u32)> {
    let bucket = series.len().div_ceil(MAX_POINTS).max(1);
    series
        .chunks(bucket)
        .map(|c| (c[0].t, c.iter().map(value).max().unwrap_or(0)))
        .collect()
}

/// 1, 2 or 5 times a power of ten, at least `x`.
fn nice_step(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= x)
        .unwrap_or(10.0 * magnitude)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
