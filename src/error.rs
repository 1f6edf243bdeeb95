//! Typed errors of the library. Each one knows its exit code, so `main` stays a thin mapping.

use std::path::PathBuf;

/// Exit codes, as documented in the README and `--help`.
pub mod exit {
    /// Every kernel verified and no regression.
    pub const PASS: u8 = 0;
    /// A regression, or a kernel computed a wrong result.
    pub const FAIL: u8 = 1;
    /// Usage, configuration or baseline-file error.
    pub const USAGE: u8 = 2;
    /// Cannot validate here: no usable adapter, no baseline for this device, nothing conclusive.
    pub const CANNOT_VALIDATE: u8 = 3;
    /// A fault, worth a retry: a deadline passed, the device was lost, a measurement child was
    /// killed or panicked, a GPU error, or gpugate itself panicked.
    pub const FAULT: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no usable GPU adapter found ({0})")]
    NoAdapter(String),

    #[error("no adapter matches {wanted}; present: {present}")]
    AdapterNotFound { wanted: String, present: String },

    #[error("could not open device on adapter {adapter:?}: {reason}")]
    DeviceRequest { adapter: String, reason: String },

    #[error("GPU error while running {kernel}: {reason}")]
    Gpu { kernel: String, reason: String },

    #[error("{0}")]
    Usage(String),

    /// The measurement asked for cannot be made on this adapter.
    #[error("cannot validate here: {0}")]
    CannotValidate(String),

    #[error("baseline file {}: {field}: {reason}", path.display())]
    BaselineFile {
        path: PathBuf,
        field: String,
        reason: String,
    },

    #[error(
        "no baseline for device {key:?} in {} (have: {have}); record one on a known-good node \
         with `{bin} record`",
        searched.display(),
        bin = invoked_as()
    )]
    NoBaseline {
        key: String,
        searched: PathBuf,
        have: String,
    },

    /// A saved report (`compare`, `report`) that cannot be read.
    #[error("report file {}: {field}: {reason}", path.display())]
    ReportFile {
        path: PathBuf,
        field: String,
        reason: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Something failed that says nothing about the kernels' speed or results: a deadline, a lost
    /// device, a killed or panicked child. `what` names the kernel or run.
    #[error("fault in {what}: {reason}")]
    Fault { what: String, reason: String },

    /// A measurement run in a child process failed; its exit code is passed on.
    #[error("measurement run {run} failed: {reason}")]
    ChildRun {
        run: usize,
        code: u8,
        reason: String,
    },
}

/// How the user ran this binary, for hints they can paste: `target/release/gpugate` when started
/// by path, `gpugate` when found on PATH.
pub fn invoked_as() -> String {
    std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| a.contains('/'))
        .unwrap_or_else(|| "gpugate".into())
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoAdapter(_)
            | Error::AdapterNotFound { .. }
            | Error::DeviceRequest { .. }
            | Error::NoBaseline { .. }
            | Error::CannotValidate(_) => exit::CANNOT_VALIDATE,
            Error::Usage(_)
            | Error::BaselineFile { .. }
            | Error::ReportFile { .. }
            | Error::Io { .. } => exit::USAGE,
            Error::Gpu { .. } | Error::Fault { .. } => exit::FAULT,
            Error::ChildRun { code, .. } => *code,
        }
    }

    /// The error's class, as error reports name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoAdapter(_) => "no_adapter",
            Error::AdapterNotFound { .. } => "adapter_not_found",
            Error::DeviceRequest { .. } => "device_request",
            Error::Gpu { .. } => "gpu",
            Error::Usage(_) => "usage",
            Error::CannotValidate(_) => "cannot_validate",
            Error::BaselineFile { .. } => "baseline_file",
            Error::NoBaseline { .. } => "no_baseline",
            Error::ReportFile { .. } => "report_file",
            Error::Io { .. } => "io",
            Error::Fault { .. } => "fault",
            Error::ChildRun { .. } => "child_run",
        }
    }

    pub fn baseline(
        path: &std::path::Path,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::BaselineFile {
            path: path.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
