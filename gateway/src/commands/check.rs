//! `surge check`: lints the ScaledObjects and Deployments with the configuration they must
//! fit (the connection budget of Postgres, grace periods, triggers), each finding with its fix.

use std::path::PathBuf;

use anyhow::Context as _;
use surge_autoscale::check::{self, CheckInput, Severity};
use surge_autoscale::manifest;

use crate::config::GatewaySettings;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Directory of the ScaledObjects and Deployments.
    #[arg(long, default_value = "keda/base")]
    pub manifests: PathBuf,
    /// Postgres `max_connections` for Surge; read from the database when not given.
    #[arg(long)]
    pub max_connections: Option<u32>,
    /// The gateway's most replicas (its HPA's maxReplicas).
    #[arg(long, default_value_t = 10)]
    pub gateway_replicas: u32,
    /// A function's pool when its Deployment does not set SURGE_DATABASE__MAX_CONNECTIONS.
    #[arg(long, default_value_t = 10)]
    pub default_function_pool: u32,
}

/// Runs the check; returns the report and whether any finding is an error.
pub async fn run(args: &CheckArgs, settings: &GatewaySettings) -> anyhow::Result<(String, bool)> {
    let functions = manifest::load_dir(&args.manifests)?;
    let max_connections = match args.max_connections {
        Some(n) => n,
        None => {
            let pool = settings
                .database
                .connect()
                .await
                .context("reading max_connections from Postgres (or pass --max-connections)")?;
            let value: String = sqlx::query_scalar("SHOW max_connections")
                .fetch_one(&pool)
                .await?;
            value.parse().context("max_connections is not a number")?
        }
    };
    let input = CheckInput {
        functions,
        // The configured functions and the reserved `settings`, which the gateway always serves.
        known_functions: settings
            .functions
            .iter()
            .map(ToString::to_string)
            .chain([surge_contract::server_settings::FUNCTION.to_owned()])
            .collect(),
        postgres_max_connections: max_connections,
        gateway_replicas_max: args.gateway_replicas,
        gateway_pool: settings.database.max_connections,
        default_function_pool: args.default_function_pool,
    };
    let findings = check::check(&input);
    let failed = findings.iter().any(|f| f.severity == Severity::Error);
    Ok((check::render(&findings), failed))
}
