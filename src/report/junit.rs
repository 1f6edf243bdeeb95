//! JUnit XML (the Jenkins/GitLab flavour) for CI test tabs: one testcase per kernel, plus the
//! suite-level `gate-policy` testcase.

use std::io::{self, Write};

use super::{Report, Reporter};

pub struct Junit;

impl Reporter for Junit {
    fn write(&self, _report: &Report, _out: &mut dyn Write) -> io::Result<()> {
        todo!("issue 12: JUnit writer")
    }
}
