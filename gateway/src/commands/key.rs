//! `surge key`: API keys managed from the command line, by whoever holds the database
//! credentials — how an operator bootstraps the first keys of a tenant. The key is printed
//! once, never stored or logged.

use secrecy::ExposeSecret;

use crate::auth::api_key;
use crate::config::GatewaySettings;
use crate::store;

#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Mint an API key for an entity (created on first use) and print it once.
    Create {
        #[arg(long, value_parser = tenant_name)]
        tenant: String,
        /// The entity's account (its email).
        #[arg(long)]
        account: String,
        /// Lifetime in seconds; 0 never expires.
        #[arg(long, default_value_t = 0)]
        seconds: u32,
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke one of an entity's keys by id.
    Revoke {
        #[arg(long, value_parser = tenant_name)]
        tenant: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        id: uuid::Uuid,
    },
    /// List an entity's keys (ids, labels, lifetimes; never secrets).
    List {
        #[arg(long, value_parser = tenant_name)]
        tenant: String,
        #[arg(long)]
        account: String,
    },
}

/// A tenant as routing keys can carry it apart from every other (see
/// `check_tenant_name`): refused by the command line before anything is written.
fn tenant_name(name: &str) -> Result<String, String> {
    surge_contract::job::check_tenant_name(name).map(|()| name.to_owned())
}

/// Runs the command; returns what to print.
pub async fn run(args: &KeyArgs, settings: &GatewaySettings) -> anyhow::Result<String> {
    let pool = settings.database.connect().await?;
    surge_contract::schema::ensure_current(&pool).await?;
    let out = match &args.command {
        KeyCommand::Create {
            tenant,
            account,
            seconds,
            label,
        } => {
            let entity = store::entities::ensure(&pool, tenant, account).await?;
            let (key, hash) = api_key::mint()?;
            let id = store::api_keys::insert_api_key(
                &pool,
                entity,
                &hash,
                i64::from(*seconds),
                label.as_deref(),
            )
            .await?;
            format!(
                "{}\nid {id} (the key is shown only now)\n",
                key.expose_secret()
            )
        }
        KeyCommand::Revoke {
            tenant,
            account,
            id,
        } => {
            let entity = store::entities::ensure(&pool, tenant, account).await?;
            anyhow::ensure!(
                store::api_keys::revoke(&pool, entity, *id).await?,
                "{account} of {tenant} has no active key {id}"
            );
            format!("revoked {id}\n")
        }
        KeyCommand::List { tenant, account } => {
            let entity = store::entities::ensure(&pool, tenant, account).await?;
            let keys = store::api_keys::list(&pool, entity).await?;
            serde_json::to_string_pretty(&keys)? + "\n"
        }
    };
    pool.close().await;
    Ok(out)
}
