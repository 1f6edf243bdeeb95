use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = gpugate::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "gpugate=info,wgpu_core=warn,wgpu_hal=warn".into()),
        )
        .init();
    match gpugate::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("gpugate: error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
