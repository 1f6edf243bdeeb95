use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    gpugate::device::ensure_runtime_dir();
    let cli = gpugate::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "gpugate=info,tower_http=info,wgpu_core=warn,wgpu_hal=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        gpugate::cli::LogFormat::Human => logs.init(),
        gpugate::cli::LogFormat::Json => logs.json().init(),
    }
    match gpugate::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("gpugate: error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
