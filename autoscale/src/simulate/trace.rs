//! The load a simulation replays: arrival times (from a CSV or a generated pattern) and the
//! service time of each job, drawn from a seeded generator so a seed always gives the same
//! trace. Knows nothing of scaling.

use std::f64::consts::PI;
use std::time::Duration;

/// Background rate of the `burst` pattern, jobs per second.
const BURST_BACKGROUND: f64 = 0.1;

/// Why a trace or distribution could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    /// A CSV line whose first column is not a number of seconds.
    #[error("line {line}: the first column must be arrival seconds, got {text:?}")]
    Csv { line: usize, text: String },
    /// A pattern or distribution that does not parse.
    #[error("{spec:?}: {problem}")]
    Spec { spec: String, problem: String },
}

/// A generated arrival pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// `steady:RATE`: Poisson arrivals at RATE jobs/s.
    Steady { rate: f64 },
    /// `burst:RATE:START:SECONDS`: 0.1 jobs/s throughout, plus RATE jobs/s from START for SECONDS.
    Burst { rate: f64, start: f64, seconds: f64 },
    /// `diurnal:PEAK`: a rate rising from 0 to PEAK jobs/s mid-run and back to 0 at the end.
    Diurnal { peak: f64 },
}

/// How long one job takes once a replica runs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServiceTime {
    /// `const:SECONDS`.
    Const(f64),
    /// `exp:MEAN`: exponentially distributed with this mean.
    Exp(f64),
}

impl Pattern {
    /// Parses `steady:RATE`, `burst:RATE:START:SECONDS` or `diurnal:PEAK`.
    pub fn parse(spec: &str) -> Result<Self, TraceError> {
        let (kind, args) = spec.split_once(':').unwrap_or((spec, ""));
        let nums = numbers(spec, args)?;
        match (kind, nums.as_slice()) {
            ("steady", &[rate]) => Ok(Self::Steady { rate }),
            ("burst", &[rate, start, seconds]) => Ok(Self::Burst {
                rate,
                start,
                seconds,
            }),
            ("diurnal", &[peak]) => Ok(Self::Diurnal { peak }),
            _ => Err(spec_error(
                spec,
                "expected steady:RATE, burst:RATE:START:SECONDS or diurnal:PEAK",
            )),
        }
    }

    /// Sorted arrival times in `[0, duration)`, the same for the same seed.
    pub fn arrivals(&self, duration: Duration, seed: u64) -> Vec<f64> {
        let end = duration.as_secs_f64();
        let mut rng = SplitMix64(seed);
        let mut out = match *self {
            Self::Steady { rate } => poisson(&mut rng, rate, 0.0, end),
            Self::Burst {
                rate,
                start,
                seconds,
            } => {
                let mut all = poisson(&mut rng, BURST_BACKGROUND, 0.0, end);
                all.extend(poisson(&mut rng, rate, start, (start + seconds).min(end)));
                all
            }
            Self::Diurnal { peak } => {
                // Thinning: candidates at the peak rate, each kept with probability rate(t)/peak.
                let candidates = poisson(&mut rng, peak, 0.0, end);
                candidates
                    .into_iter()
                    .filter(|t| rng.unit() < (1.0 - (2.0 * PI * t / end).cos()) / 2.0)
                    .collect()
            }
        };
        out.sort_by(f64::total_cmp);
        out
    }
}

impl ServiceTime {
    /// Parses `const:SECONDS` or `exp:MEAN`.
    pub fn parse(spec: &str) -> Result<Self, TraceError> {
        let (kind, args) = spec.split_once(':').unwrap_or((spec, ""));
        match (kind, numbers(spec, args)?.as_slice()) {
            ("const", &[s]) => Ok(Self::Const(s)),
            ("exp", &[mean]) => Ok(Self::Exp(mean)),
            _ => Err(spec_error(spec, "expected const:SECONDS or exp:MEAN")),
        }
    }

    /// One draw per job, in order, for `count` jobs.
    pub(super) fn draw(&self, count: usize, seed: u64) -> Vec<f64> {
        // A stream of its own, so the service times do not depend on how arrivals were made.
        let mut rng = SplitMix64(seed ^ 0x5EED_0F5E_4B1C_E000);
        (0..count)
            .map(|_| match *self {
                Self::Const(s) => s,
                Self::Exp(mean) => rng.exp(mean),
            })
            .collect()
    }
}

/// Arrival seconds from the first column of a CSV; a first line that is not a number is a
/// header; blank lines and `#` comments are skipped. Sorted.
pub fn parse_csv(text: &str) -> Result<Vec<f64>, TraceError> {
    let mut out = Vec::new();
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cell = line.split(',').next().unwrap_or("").trim();
        match cell.parse::<f64>() {
            Ok(t) if t.is_finite() && t >= 0.0 => out.push(t),
            _ if first => {}
            _ => {
                return Err(TraceError::Csv {
                    line: i + 1,
                    text: cell.to_owned(),
                });
            }
        }
        first = false;
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn numbers(spec: &str, args: &str) -> Result<Vec<f64>, TraceError> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    args.split(':')
        .map(|a| {
            a.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| spec_error(spec, &format!("{a:?} is not a non-negative number")))
        })
        .collect()
}

fn spec_error(spec: &str, problem: &str) -> TraceError {
    TraceError::Spec {
        spec: spec.to_owned(),
        problem: problem.to_owned(),
    }
}

/// Poisson arrivals at `rate` per second in `[from, to)`.
fn poisson(rng: &mut SplitMix64, rate: f64, from: f64, to: f64) -> Vec<f64> {
    let mut out = Vec::new();
    if rate <= 0.0 {
        return out;
    }
    let mut t = from + rng.exp(1.0 / rate);
    while t < to {
        out.push(t);
        t += rng.exp(1.0 / rate);
    }
    out
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough for load shapes.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential with this mean.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs for seed 0 in the reference implementation.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn a_csv_header_comments_and_extra_columns_are_skipped() {
        let csv = "arrival,function\n# warm-up\n2.5,echo\n\n1,echo\n";
        assert_eq!(parse_csv(csv).unwrap(), [1.0, 2.5]);
    }

    #[test]
    fn a_bad_csv_line_after_the_first_is_an_error_naming_it() {
        let err = parse_csv("1\nsoon\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: the first column must be arrival seconds, got \"soon\""
        );
    }

    #[test]
    fn patterns_and_distributions_parse_and_refuse_nonsense() {
        assert_eq!(
            Pattern::parse("steady:2").unwrap(),
            Pattern::Steady { rate: 2.0 }
        );
        assert_eq!(
            Pattern::parse("burst:5:60:30").unwrap(),
            Pattern::Burst {
                rate: 5.0,
                start: 60.0,
                seconds: 30.0
            }
        );
        assert!(Pattern::parse("steady").is_err());
        assert!(Pattern::parse("steady:-1").is_err());
        assert_eq!(
            ServiceTime::parse("exp:0.5").unwrap(),
            ServiceTime::Exp(0.5)
        );
        assert!(ServiceTime::parse("uniform:1").is_err());
    }

    #[test]
    fn a_steady_pattern_has_about_rate_times_duration_arrivals() {
        let n = Pattern::Steady { rate: 2.0 }
            .arrivals(Duration::from_secs(1000), 7)
            .len();
        assert!((1800..2200).contains(&n), "{n}");
    }

    #[test]
    fn a_burst_concentrates_arrivals_in_its_window() {
        let pattern = Pattern::Burst {
            rate: 10.0,
            start: 100.0,
            seconds: 10.0,
        };
        let all = pattern.arrivals(Duration::from_secs(300), 1);
        let inside = all.iter().filter(|t| (100.0..110.0).contains(*t)).count();
        assert!(
            inside > 60 && all.len() - inside < 60,
            "{inside} of {}",
            all.len()
        );
    }

    #[test]
    fn a_diurnal_pattern_is_busiest_mid_run() {
        let all = Pattern::Diurnal { peak: 4.0 }.arrivals(Duration::from_secs(1000), 3);
        let middle = all.iter().filter(|t| (400.0..600.0).contains(*t)).count();
        let start = all.iter().filter(|t| **t < 200.0).count();
        assert!(middle > 3 * start, "{middle} vs {start}");
    }
}
