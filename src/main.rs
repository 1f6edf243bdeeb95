use std::process::ExitCode;

use clap::Parser;
use gpugate::error::exit;

fn main() -> ExitCode {
    gpugate::device::ensure_runtime_dir();
    let cli = gpugate::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "gpugate=info,tower_http=info,wgpu_core=warn,wgpu_hal=warn".into());
    // Coloured log lines only on a terminal and without NO_COLOR, as the table and the bars.
    let colour =
        gpugate::report::colour_allowed(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let logs = tracing_subscriber::fmt()
        .with_writer(gpugate::progress::stderr)
        .with_ansi(colour)
        .with_env_filter(filter);
    match cli.log_format {
        gpugate::cli::LogFormat::Human => logs.init(),
        gpugate::cli::LogFormat::Json => logs.json().init(),
    }
    // A panic is a fault (exit 4), never Rust's undocumented 101. wgpu panics on a lost device
    // inside `poll`, so this is also the lost-device path. The default hook has already printed
    // the message and location.
    match std::panic::catch_unwind(|| gpugate::cli::run(cli)) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(err)) => {
            tracing::error!("{err}");
            eprintln!("gpugate: error: {err}");
            ExitCode::from(err.exit_code())
        }
        Err(_) => {
            tracing::error!("fault: gpugate panicked");
            eprintln!(
                "gpugate: error: fault: gpugate panicked (message above); exit {}",
                exit::FAULT
            );
            ExitCode::from(exit::FAULT)
        }
    }
}
