//! GitHub Actions workflow commands: `::error` for regressions and wrong results, `::warning`
//! for inconclusive kernels.

use super::Report;

/// One workflow command per line, in the order the report lists the kernels.
pub fn annotations(_report: &Report) -> Vec<String> {
    todo!("issue 12: GitHub annotations")
}
