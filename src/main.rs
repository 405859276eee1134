use std::process::ExitCode;

use ecr_cache_warmer::{cli, lambda};

#[tokio::main]
async fn main() -> ExitCode {
    // The Lambda runtime sets this variable; anywhere else we are a command-line tool.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return match lambda::run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    cli::init_logging();
    cli::run().await
}
