//! Markdown: GitHub's job summary (`$GITHUB_STEP_SUMMARY`) and `--export md`.

use std::io::{self, Write};

use super::{Report, Reporter};

pub struct Markdown;

impl Reporter for Markdown {
    fn write(&self, _report: &Report, _out: &mut dyn Write) -> io::Result<()> {
        todo!("issue 12: Markdown writer")
    }
}
