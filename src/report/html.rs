//! The HTML report: one self-contained page with SVG plots, from one or more reports.

use super::Report;

/// The page for `reports`, oldest first (several reports make a history).
pub fn page(_reports: &[Report]) -> String {
    todo!("issue 12: HTML report")
}
