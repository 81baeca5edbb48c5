#[tokio::main]
async fn main() -> std::process::ExitCode {
    surge_gateway::cli::main().await
}
