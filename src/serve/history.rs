//! Finished runs, kept in memory and (with `--history DIR`) on disk, one JSON file per run.
//!
//! A run is written once, when it has finished, by writing a temporary file and renaming it: a
//! kill -9 loses at most the run in progress, never one already finished. At start the directory
//! is read back; a file that does not parse is skipped with a warning, never fatal. Retention is
//! bounded: beyond `retention` runs the oldest are dropped from memory and disk.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compare::Verdict;
use crate::error::{Error, Result};
use crate::report::Report;

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Start,
    Interval,
    Api,
}

/// How a run ended; the `result` label of `gpugate_runs_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    Pass,
    Regression,
    WrongResult,
    Inconclusive,
    /// This device has no baseline to compare with ([`crate::error::Error::NoBaseline`]): the
    /// node cannot be validated until one is recorded on a known-good node and mounted.
    NoBaseline,
    /// The run could not measure at all (no adapter, an unusable baseline file, a GPU error).
    Error,
}

impl RunResult {
    pub const ALL: [RunResult; 6] = [
        RunResult::Pass,
        RunResult::Regression,
        RunResult::WrongResult,
        RunResult::Inconclusive,
        RunResult::NoBaseline,
        RunResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Pass => "pass",
            RunResult::Regression => "regression",
            RunResult::WrongResult => "wrong_result",
            RunResult::Inconclusive => "inconclusive",
            RunResult::NoBaseline => "no_baseline",
            RunResult::Error => "error",
        }
    }

    /// A run that ended in `e` before it could report: `no_baseline` when this device has no
    /// baseline, `error` for everything else.
    pub fn of_error(e: &Error) -> RunResult {
        match e {
            Error::NoBaseline { .. } => RunResult::NoBaseline,
            _ => RunResult::Error,
        }
    }

    pub fn of(report: &Report) -> RunResult {
        match (report.outcome.exit_code, report.outcome.verdict) {
            (0, _) => RunResult::Pass,
            (_, Verdict::WrongResult) => RunResult::WrongResult,
            (_, Verdict::Regression) => RunResult::Regression,
            _ => RunResult::Inconclusive,
        }
    }
}

/// One finished run as the API serves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: u64,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub result: RunResult,
    /// The check's full report (None when the run failed before measuring).
    pub report: Option<Report>,
    /// Why the run could not measure, when `result` is `error` or `no_baseline`.
    pub error: Option<String>,
}

impl RunRecord {
    pub fn duration_s(&self) -> f64 {
        (self.finished_at - self.started_at)
            .to_std()
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

pub struct History {
    dir: Option<PathBuf>,
    retention: usize,
    runs: VecDeque<RunRecord>,
}

fn file_name(id: u64) -> String {
    format!("run-{id:012}.json")
}

impl History {
    /// An empty history, or the one in `dir` (created if missing), oldest first.
    pub fn open(dir: Option<&Path>, retention: usize) -> Result<History> {
        let retention = retention.max(1);
        let mut runs = Vec::new();
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if !(name.starts_with("run-") && name.ends_with(".json")) {
                    continue;
                }
                match std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        serde_json::from_slice::<RunRecord>(&b).map_err(|e| e.to_string())
                    }) {
                    Ok(record) => runs.push(record),
                    Err(reason) => {
                        tracing::warn!(file = %path.display(), %reason, "skipping unreadable history file")
                    }
                }
            }
        }
        runs.sort_by_key(|r| r.id);
        let mut history = History {
            dir: dir.map(Path::to_path_buf),
            retention,
            runs: runs.into(),
        };
        history.prune();
        Ok(history)
    }

    /// The id the next run gets: one past the newest kept or loaded.
    pub fn next_id(&self) -> u64 {
        self.runs.back().map_or(1, |r| r.id + 1)
    }

    /// Persist (atomically) and keep a finished run, then drop the oldest beyond retention.
    pub fn push(&mut self, record: RunRecord) -> Result<()> {
        if let Some(dir) = &self.dir {
            let path = dir.join(file_name(record.id));
            let tmp = dir.join(format!(".{}.tmp", file_name(record.id)));
            let bytes = serde_json::to_vec(&record).expect("a run record serialises");
            let io = |source| Error::Io {
                path: path.clone(),
                source,
            };
            std::fs::write(&tmp, bytes).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
        }
        self.runs.push_back(record);
        self.prune();
        Ok(())
    }

    fn prune(&mut self) {
        while self.runs.len() > self.retention {
            let old = self.runs.pop_front().expect("non-empty");
            if let Some(dir) = &self.dir {
                let path = dir.join(file_name(old.id));
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), "could not remove old history file: {e}");
                }
            }
        }
    }

    /// Newest first.
    pub fn iter(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs.iter().rev()
    }

    pub fn latest(&self) -> Option<&RunRecord> {
        self.runs.back()
    }

    pub fn get(&self, id: u64) -> Option<&RunRecord> {
        self.runs.iter().find(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_baseline_is_its_own_result() {
        let missing = Error::NoBaseline {
            key: "K".into(),
            searched: PathBuf::from("baselines"),
            have: "none".into(),
        };
        assert_eq!(RunResult::of_error(&missing), RunResult::NoBaseline);
        let broken = Error::baseline(Path::new("baselines/K.json"), "kernels", "is empty");
        assert_eq!(RunResult::of_error(&broken), RunResult::Error);
        assert_eq!(
            serde_json::to_value(RunResult::NoBaseline).unwrap(),
            RunResult::NoBaseline.as_str()
        );
        for r in RunResult::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
