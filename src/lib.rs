//! gpugate: WGSL kernels timed with GPU timestamps, verified against CPU references, compared
//! with per-device baselines. Data flows one way:
//! [`device`] → [`workload`] → [`sampler`] → [`stats`] → [`compare`] → [`report`];
//! [`runner`] drives one run, [`baseline`] stores runs, [`cli`] wires the commands.

pub mod baseline;
pub mod changes;
pub mod cli;
pub mod compare;
pub mod device;
pub mod error;
pub mod gate;
pub mod progress;
pub mod report;
pub mod runner;
pub mod sampler;
pub mod serve;
pub mod stats;
pub mod telemetry;
pub mod workload;

pub use error::{Error, Result};
