//! The `surge` command line: `surge gateway` serves, `surge migrate` prepares the database
//! (what a Kubernetes Job runs before a rollout).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sqlx::migrate::MigrateDatabase;
use surge_contract::telemetry::Telemetry;
use surge_contract::{config, schema, shutdown};

use crate::commands;
use crate::config::GatewaySettings;
use crate::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "surge",
    version,
    about = "Scale-to-zero functions on RabbitMQ and Postgres"
)]
pub struct Cli {
    /// TOML settings file; `SURGE_*` environment variables override it.
    #[arg(long, global = true, env = "SURGE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP gateway until SIGTERM.
    Gateway,
    /// Create the database if it is missing and apply every pending migration.
    Migrate,
    /// Start and stop function processes as KEDA and the HPA would (local development).
    Scaler(commands::scaler::ScalerArgs),
    /// Replay a load against ScaledObject variants and compare replicas, waits and cost.
    Simulate(commands::simulate::SimulateArgs),
    /// Lint the manifests together with the configuration.
    Check(commands::check::CheckArgs),
    /// Mint, revoke and list API keys.
    Key(commands::key::KeyArgs),
    /// Print the OpenAPI document (what /openapi.json serves; docs/openapi.json holds it).
    Openapi,
}

/// Parses the command line and runs the command; errors are reported on stderr.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let report = Report::for_command(&cli.command);
    let settings: GatewaySettings = match config::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("surge: invalid settings: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match Telemetry::init("surge-gateway", &settings.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("surge: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Gateway => gateway(settings).await,
        Command::Openapi => {
            print(&crate::openapi::document_json());
            Ok(())
        }
        Command::Migrate => migrate(&settings).await,
        Command::Scaler(args) => scaler(args, &settings).await,
        Command::Simulate(args) => commands::simulate::run(&args).map(|table| print(&table)),
        Command::Key(args) => commands::key::run(&args, &settings)
            .await
            .map(|out| print(&out)),
        Command::Check(args) => match commands::check::run(&args, &settings).await {
            Ok((report, failed)) => {
                print(&report);
                if failed {
                    telemetry.shutdown();
                    return ExitCode::FAILURE;
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = &result {
        report.failure(e);
    }
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Where a failed command's error goes: one place, never two (a log line and a plain line
/// said it twice, the log line with colour codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// A service (`gateway`, `migrate`, `scaler`): its log is its output, JSON for a collector
    /// in production, so the error is a log event.
    Log,
    /// A tool run by a person (`simulate`, `check`, `key`, `openapi`): one plain line on
    /// stderr.
    Stderr,
}

impl Report {
    fn for_command(command: &Command) -> Self {
        match command {
            Command::Gateway | Command::Migrate | Command::Scaler(_) => Self::Log,
            Command::Simulate(_) | Command::Check(_) | Command::Key(_) | Command::Openapi => {
                Self::Stderr
            }
        }
    }

    /// The line a tool prints; `None` for a service, which logs instead.
    fn plain_line(self, error: &anyhow::Error) -> Option<String> {
        (self == Self::Stderr).then(|| format!("surge: {error:#}"))
    }

    fn failure(self, error: &anyhow::Error) {
        match self.plain_line(error) {
            Some(line) => eprintln!("{line}"),
            None => tracing::error!(error = format!("{error:#}"), "surge failed"),
        }
    }
}

/// The command's report on stdout: it is the command's output, not a log line.
#[allow(clippy::print_stdout)]
fn print(text: &str) {
    print!("{text}");
}

async fn scaler(
    args: commands::scaler::ScalerArgs,
    settings: &GatewaySettings,
) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signal()?;
    commands::scaler::run(args, settings, shutdown).await
}

async fn gateway(settings: GatewaySettings) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signal()?;
    Application::build(settings, shutdown)
        .await?
        .run_until_stopped()
        .await
}

async fn migrate(settings: &GatewaySettings) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let url = settings.database.url.expose_secret();
    if !sqlx::Postgres::database_exists(url).await? {
        sqlx::Postgres::create_database(url).await?;
        tracing::info!("database created");
    }
    let pool = settings.database.connect().await?;
    schema::migrate(&pool).await?;
    let version = schema::migrator()
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or_default();
    tracing::info!(version, "schema up to date");
    let (made, ahead) =
        crate::maintenance::make_partitions(&pool, &settings.jobs, chrono::Utc::now()).await?;
    tracing::info!(
        made,
        ahead_hours = ahead.num_hours(),
        "job partitions made ahead"
    );
    pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 6: `surge check` on a file that is not YAML said the error twice, once as a log
    /// line with colour codes, and the YAML cause twice in each.
    #[test]
    fn a_tools_failure_is_one_plain_line_naming_its_cause_once() {
        let dir = std::env::temp_dir().join(format!("surge-cli-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("broken.yaml"), "kind: [ScaledObject\n").unwrap();
        let error = anyhow::Error::from(surge_autoscale::manifest::load_dir(&dir).unwrap_err());
        let check = Cli::parse_from(["surge", "check", "--max-connections", "10"]).command;
        let line = Report::for_command(&check).plain_line(&error).unwrap();
        assert!(line.starts_with("surge: "), "{line}");
        assert!(line.contains("broken.yaml: not valid YAML: "), "{line}");
        assert!(!line.contains('\x1b'), "{line:?}");
        assert_eq!(
            line.matches(&error.root_cause().to_string()).count(),
            1,
            "{line}"
        );
        assert_eq!(
            Report::for_command(&Command::Gateway).plain_line(&error),
            None
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
