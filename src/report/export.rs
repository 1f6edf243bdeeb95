//! Exports for other tools: Bencher Metric Format and CSV.

use std::io::{self, Write};

use super::{Report, Reporter};

/// Bencher Metric Format: latency and throughput per kernel with lower and upper bounds.
pub struct Bmf;
/// One CSV row per kernel.
pub struct Csv;

impl Reporter for Bmf {
    fn write(&self, _report: &Report, _out: &mut dyn Write) -> io::Result<()> {
        todo!("issue 12: BMF writer")
    }
}

impl Reporter for Csv {
    fn write(&self, _report: &Report, _out: &mut dyn Write) -> io::Result<()> {
        todo!("issue 12: CSV writer")
    }
}
