#[tokio::main]
async fn main() -> anyhow::Result<()> {
    surge_runtime::run(surge_fn_settings::Settings).await
}
