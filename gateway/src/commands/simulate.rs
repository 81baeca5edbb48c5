//! `surge simulate`: replays a load against ScaledObject variants with the same decision code
//! as the local scaler, from idle or from a given state, and prints a comparison table (and
//! writes an SVG plot).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use surge_autoscale::manifest;
use surge_autoscale::simulate::{self, Pattern, Scenario, ServiceTime, Start, Variant};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// ScaledObject files (with their Deployment) to compare; one variant each.
    #[arg(long = "scaled-object", required = true)]
    pub scaled_objects: Vec<PathBuf>,
    /// Which function of each file (when a file has several).
    #[arg(long)]
    pub function: Option<String>,
    /// Arrival times: a CSV whose first column is seconds since the start.
    #[arg(long, conflicts_with = "pattern")]
    pub trace: Option<PathBuf>,
    /// A generated load: `steady:RATE`, `burst:RATE:START:SECONDS` or `diurnal:PEAK`.
    #[arg(long, default_value = "steady:1")]
    pub pattern: String,
    /// Service time of a job: `const:SECONDS` or `exp:MEAN`.
    #[arg(long, default_value = "exp:1")]
    pub service: String,
    /// Simulated seconds.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds from a replica's start until it takes work.
    #[arg(long)]
    pub start_delay: Option<f64>,
    /// Turn the gateway's push activation off in every variant.
    #[arg(long)]
    pub no_push: bool,
    /// Replicas running and ready at t = 0 (default: the ScaledObject's resting count,
    /// idleReplicaCount else minReplicaCount).
    #[arg(long)]
    pub initial_replicas: Option<u32>,
    /// Jobs at t = 0: `READY` queued, or `READY:IN_FLIGHT` with that many already running on
    /// the initial replicas.
    #[arg(long, value_name = "READY[:IN_FLIGHT]")]
    pub initial_depth: Option<String>,
    /// Write the plot here (SVG).
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// Runs the simulation; returns the table to print.
pub fn run(args: &SimulateArgs) -> anyhow::Result<String> {
    let duration = Duration::from_secs(args.duration);
    let arrivals = match &args.trace {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            simulate::parse_csv(&text)?
        }
        None => Pattern::parse(&args.pattern)?.arrivals(duration, args.seed),
    };
    let service = ServiceTime::parse(&args.service)?;
    let (ready, in_flight) = match &args.initial_depth {
        Some(depth) => Start::parse_depth(depth)?,
        None => (0, 0),
    };
    let start = Start {
        replicas: args.initial_replicas,
        ready,
        in_flight,
    };
    let scenario = Scenario::new(&arrivals, &service, args.seed, duration)
        .from_start(start, &service, args.seed);
    let mut reports = Vec::new();
    for path in &args.scaled_objects {
        let functions = manifest::load_file(path)?;
        let scaling = functions
            .into_iter()
            .find(|f| {
                args.function
                    .as_ref()
                    .is_none_or(|name| &f.function == name)
            })
            .with_context(|| format!("{} has no ScaledObject for that function", path.display()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut variant = Variant::new(name, scaling);
        if let Some(delay) = args.start_delay {
            variant.start_delay = Duration::from_secs_f64(delay);
        }
        if args.no_push {
            variant.push = false;
        }
        reports.push(simulate::run(&variant, &scenario)?);
    }
    if let Some(svg) = &args.svg {
        std::fs::write(svg, simulate::render_svg(&reports))
            .with_context(|| format!("writing {}", svg.display()))?;
    }
    Ok(simulate::render_table(&reports))
}
