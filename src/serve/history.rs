//! Finished runs, kept in memory and (with `--history DIR`) on disk, one JSON file per run.
//!
//! Durability ("acknowledged" means a 202 was returned, or a scheduled run started):
//! - Before a run starts, [`History::accept`] writes `accepted.json` (its id, trigger and time)
//!   durably. It is the id high-water mark — ids are never reused, even when run files are torn
//!   or deleted — and the in-flight marker: a run whose id it names but that has no run file
//!   when the history is next opened was killed mid-way and is recorded as `interrupted`.
//! - A finished run is written once, to `run-<id>.json`, through [`write_durably`]: a temporary
//!   file, `sync_all`, rename, then an fsync of the directory, so a kill -9 or a power cut
//!   leaves either the whole record or none.
//! - A failed save never loses the run: it is kept in memory (the API and the verdict show it)
//!   and the caller counts and logs the failure.
//! - At open, leftover `.*.tmp` files are removed; a file that does not parse is skipped with a
//!   warning, never fatal, but its id still counts. Non-finite numbers, which JSON writes as
//!   `null`, read back as NaN ([`lenient`]) so such a record loads.
//!
//! Retention is bounded by count and by age ([`Retention`]): beyond either the oldest runs are
//! dropped from memory and disk, after each run and at open.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compare::Verdict;
use crate::device::GpuIdentity;
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
    /// The run could not measure at all (no adapter, an unusable baseline file, a GPU error, a
    /// panic in the worker).
    Error,
    /// The process stopped (killed, crashed, restarted) after accepting the run and before it
    /// finished; recorded when the history is next opened.
    Interrupted,
}

impl RunResult {
    pub const ALL: [RunResult; 7] = [
        RunResult::Pass,
        RunResult::Regression,
        RunResult::WrongResult,
        RunResult::Inconclusive,
        RunResult::NoBaseline,
        RunResult::Error,
        RunResult::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Pass => "pass",
            RunResult::Regression => "regression",
            RunResult::WrongResult => "wrong_result",
            RunResult::Inconclusive => "inconclusive",
            RunResult::NoBaseline => "no_baseline",
            RunResult::Error => "error",
            RunResult::Interrupted => "interrupted",
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

    /// The node's result out of its GPUs': the worst, so one bad GPU fails the node. A wrong
    /// result and a regression are evidence against the node and come first; an error or a
    /// missing baseline means a GPU went unvalidated, which must not read as a pass either.
    pub fn worst(results: impl IntoIterator<Item = RunResult>) -> Option<RunResult> {
        results.into_iter().max_by_key(|r| match r {
            RunResult::WrongResult => 6,
            RunResult::Regression => 5,
            RunResult::Error => 4,
            RunResult::Interrupted => 3,
            RunResult::NoBaseline => 2,
            RunResult::Inconclusive => 1,
            RunResult::Pass => 0,
        })
    }
}

/// One GPU's part of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuRun {
    /// Which GPU (empty for an adapter without a PCI bus id, e.g. a software one).
    #[serde(default)]
    pub gpu: GpuIdentity,
    /// The adapter's name as wgpu reports it.
    pub adapter: String,
    pub result: RunResult,
    /// The check's full report (None when this GPU's run failed before measuring).
    pub report: Option<Report>,
    /// Why this GPU could not be measured, when `result` is `error` or `no_baseline`.
    pub error: Option<String>,
}

/// One finished run of the node as the API serves it: every GPU, one after the other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: u64,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The node's result: the worst over its GPUs ([`RunResult::worst`]).
    pub result: RunResult,
    /// Each GPU validated, in NVML index order (by PCI bus id without NVML).
    #[serde(default)]
    pub gpus: Vec<GpuRun>,
    /// Why the run measured no GPU at all (no adapter, a panic, interrupted).
    pub error: Option<String>,
    /// Files from before serve validated every GPU hold one report here; read into `gpus`.
    #[serde(default, skip_serializing, rename = "report")]
    legacy_report: Option<Report>,
}

impl RunRecord {
    /// A finished run of `gpus` (the node's result is the worst of theirs; `error` without
    /// any GPU).
    pub fn new(
        id: u64,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        gpus: Vec<GpuRun>,
        error: Option<String>,
    ) -> RunRecord {
        let result = RunResult::worst(gpus.iter().map(|g| g.result)).unwrap_or(RunResult::Error);
        RunRecord {
            id,
            trigger,
            started_at,
            finished_at: Utc::now(),
            result,
            gpus,
            error,
            legacy_report: None,
        }
    }

    /// A run that measured nothing: `result` and why.
    pub fn failed(
        id: u64,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        result: RunResult,
        why: String,
    ) -> RunRecord {
        RunRecord {
            result,
            ..RunRecord::new(id, trigger, started_at, vec![], Some(why))
        }
    }

    /// A record read from a file written before `gpus` existed: its one report becomes the
    /// one GPU's.
    fn upgraded(mut self) -> RunRecord {
        if let (true, Some(report)) = (self.gpus.is_empty(), self.legacy_report.take()) {
            self.gpus.push(GpuRun {
                gpu: report.gpu.clone().unwrap_or_default(),
                adapter: report
                    .fingerprint
                    .as_ref()
                    .map(|f| f.name.clone())
                    .unwrap_or_default(),
                result: self.result,
                report: Some(report),
                error: self.error.take(),
            });
        }
        self
    }

    /// The reports this run produced (one per GPU measured), in GPU order.
    pub fn reports(&self) -> impl Iterator<Item = &Report> {
        self.gpus.iter().filter_map(|g| g.report.as_ref())
    }

    /// Why nothing or not everything was measured: the run's error, else the first GPU's.
    pub fn why(&self) -> Option<&str> {
        self.error
            .as_deref()
            .or_else(|| self.gpus.iter().find_map(|g| g.error.as_deref()))
    }

    pub fn duration_s(&self) -> f64 {
        (self.finished_at - self.started_at)
            .to_std()
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

/// How much history is kept: at most `runs` finished runs, none older than `age`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retention {
    pub runs: usize,
    pub age: Option<std::time::Duration>,
}

impl Retention {
    /// At most `runs` runs, whatever their age.
    pub fn runs(runs: usize) -> Retention {
        Retention { runs, age: None }
    }
}

pub struct History {
    dir: Option<PathBuf>,
    retention: Retention,
    runs: VecDeque<RunRecord>,
    /// One past the largest id any file names (torn run files and the marker included).
    next_id: u64,
    /// The run found accepted but unfinished at open, now recorded as `interrupted`.
    interrupted: Option<u64>,
    /// Saves that failed while opening (recording the interrupted run).
    failed_saves: u64,
}

/// The id high-water mark and in-flight marker: the latest accepted run.
const ACCEPTED: &str = "accepted.json";

#[derive(Debug, Serialize, Deserialize)]
struct Accepted {
    id: u64,
    trigger: Trigger,
    accepted_at: DateTime<Utc>,
}

fn file_name(id: u64) -> String {
    format!("run-{id:012}.json")
}

/// The id in a run file's name, whatever the file holds.
fn run_id(name: &str) -> Option<u64> {
    name.strip_prefix("run-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::result::Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    T::deserialize(lenient::De(value)).map_err(|e| e.to_string())
}

fn io_error(path: PathBuf) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { path, source }
}

/// Write `dir/name` so that a crash leaves either the old file or all of `bytes`: a temporary
/// file, `sync_all`, rename over `name`, then an fsync of the directory so the rename itself is
/// on disk.
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Elsewhere a directory cannot be opened as a file to sync; NTFS journals the rename.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The run in the file `path` named for run `id`; None, with a warning, when it does not read
/// or holds another run.
fn read_run(path: &Path, id: u64) -> Option<RunRecord> {
    match read_json::<RunRecord>(path) {
        Ok(record) if record.id == id => Some(record.upgraded()),
        Ok(record) => {
            tracing::warn!(
                file = %path.display(),
                "skipping a history file that holds run {} instead", record.id
            );
            None
        }
        Err(reason) => {
            tracing::warn!(file = %path.display(), %reason, "skipping unreadable history file");
            None
        }
    }
}

/// The finished runs kept in `dir`, oldest first, without changing anything there (no
/// interrupted run recorded, nothing pruned or removed): what `gpugate history` reads while a
/// serve may be writing. Unreadable files are skipped with a warning, as [`History::open`] does.
pub fn read(dir: &Path) -> Result<Vec<RunRecord>> {
    let entries = std::fs::read_dir(dir).map_err(io_error(dir.to_path_buf()))?;
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = run_id(&name) else { continue };
        runs.extend(read_run(&path, id));
    }
    runs.sort_by_key(|r| r.id);
    Ok(runs)
}

impl History {
    /// An empty history, or the one in `dir` (created if missing), oldest first. A run that was
    /// accepted but never finished is recorded as `interrupted`.
    pub fn open(dir: Option<&Path>, retention: Retention) -> Result<History> {
        let mut history = History {
            dir: dir.map(Path::to_path_buf),
            retention: Retention {
                runs: retention.runs.max(1),
                ..retention
            },
            runs: VecDeque::new(),
            next_id: 1,
            interrupted: None,
            failed_saves: 0,
        };
        let Some(dir) = dir else {
            return Ok(history);
        };
        std::fs::create_dir_all(dir).map_err(io_error(dir.to_path_buf()))?;
        let entries = std::fs::read_dir(dir).map_err(io_error(dir.to_path_buf()))?;
        let mut runs = Vec::new();
        // Ids with a run file, readable or not: none of them is handed out again.
        let mut named = BTreeSet::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write that never reached its rename.
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), "removed a stale temporary file")
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), "cannot remove a stale temporary file: {e}")
                    }
                }
                continue;
            }
            let Some(id) = run_id(&name) else { continue };
            named.insert(id);
            runs.extend(read_run(&path, id));
        }
        let marker = dir.join(ACCEPTED);
        let accepted = match read_json::<Accepted>(&marker) {
            Ok(a) => Some(a),
            Err(_) if !marker.exists() => None,
            Err(reason) => {
                tracing::warn!(file = %marker.display(), %reason, "unreadable; ids continue after the run files");
                None
            }
        };
        let newest = named
            .last()
            .copied()
            .max(accepted.as_ref().map(|a| a.id))
            .unwrap_or(0);
        // Ids are never reused: a history that names the last one cannot go on.
        history.next_id = newest.checked_add(1).ok_or_else(|| {
            Error::Usage(format!(
                "history {}: a file names run id {newest}, the last there is; move the history \
                 away to start over",
                dir.display()
            ))
        })?;
        runs.sort_by_key(|r| r.id);
        history.runs = runs.into();
        if let Some(a) = accepted.filter(|a| !named.contains(&a.id)) {
            tracing::warn!(
                id = a.id,
                "run {} was accepted but never finished: recorded as interrupted",
                a.id
            );
            history.interrupted = Some(a.id);
            let record = RunRecord::failed(
                a.id,
                a.trigger,
                a.accepted_at,
                RunResult::Interrupted,
                "interrupted: the process stopped (killed, crashed or restarted) before this run \
                 finished; recorded at the next start"
                    .into(),
            );
            if let Err(e) = history.push(record) {
                history.failed_saves += 1;
                tracing::error!("interrupted run {} could not be saved: {e}", a.id);
            }
        }
        history.prune();
        Ok(history)
    }

    /// The id the next run gets: one past the newest any file names or [`History::accept`]
    /// was given. The one id counter: serve takes its run ids from here.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The run found unfinished at open (now `interrupted`), if any.
    pub fn interrupted_at_open(&self) -> Option<u64> {
        self.interrupted
    }

    /// Saves that failed while opening.
    pub fn failed_saves_at_open(&self) -> u64 {
        self.failed_saves
    }

    /// Before run `id` starts: make it durable that it was accepted (the id high-water mark
    /// and the in-flight marker). In memory only without a directory. The id is consumed
    /// ([`History::next_id`] moves past it) even when the save fails.
    pub fn accept(&mut self, id: u64, trigger: Trigger) -> Result<()> {
        self.next_id = self.next_id.max(id.saturating_add(1));
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let marker = Accepted {
            id,
            trigger,
            accepted_at: Utc::now(),
        };
        let path = dir.join(ACCEPTED);
        let bytes = serde_json::to_vec(&marker)
            .map_err(|e| io_error(path.clone())(std::io::Error::other(e)))?;
        write_durably(dir, ACCEPTED, &bytes).map_err(io_error(path))
    }

    /// Keep a finished run — in memory whatever the disk does — and persist it; then drop the
    /// oldest beyond retention. An error means the run is kept in memory only.
    pub fn push(&mut self, record: RunRecord) -> Result<()> {
        let saved = match &self.dir {
            Some(dir) => {
                let name = file_name(record.id);
                let path = dir.join(&name);
                serde_json::to_vec(&record)
                    .map_err(std::io::Error::other)
                    .and_then(|bytes| write_durably(dir, &name, &bytes))
                    .map_err(io_error(path))
            }
            None => Ok(()),
        };
        self.next_id = self.next_id.max(record.id.saturating_add(1));
        self.runs.push_back(record);
        self.prune();
        saved
    }

    /// Drop the oldest runs beyond the retained count or age, from memory and disk. The latest
    /// run is kept whatever its age: the verdict and the page need it.
    fn prune(&mut self) {
        let cutoff = self
            .retention
            .age
            .and_then(|age| chrono::Duration::from_std(age).ok())
            .and_then(|age| Utc::now().checked_sub_signed(age));
        while self.runs.len() > self.retention.runs
            || (self.runs.len() > 1
                && cutoff.is_some_and(|c| self.runs.front().is_some_and(|r| r.finished_at < c)))
        {
            let Some(old) = self.runs.pop_front() else {
                break;
            };
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

/// JSON has no non-finite numbers: serde_json writes NaN and ±inf as `null` and then refuses
/// `null` for an `f64`, so a record holding one (a ratio against a zero-time baseline) would
/// save and never load. Records are read through this deserializer over a parsed value, which
/// reads `null` where an `f64` is expected as NaN and everything else as serde_json does. (Not
/// through serde's own buffering — internally tagged or untagged enums, `flatten` — where a
/// `null` still fails; no float of a run record sits there.)
mod lenient {
    use serde::de::{self, IntoDeserializer, Visitor};
    use serde_json::{Error, Value};

    pub struct De(pub Value);

    impl<'de> de::Deserializer<'de> for De {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Null => visitor.visit_unit(),
                Value::Bool(b) => visitor.visit_bool(b),
                Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => visitor.visit_u64(u),
                    (None, Some(i)) => visitor.visit_i64(i),
                    _ => visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => visitor.visit_string(s),
                Value::Array(items) => visitor.visit_seq(Seq(items.into_iter())),
                Value::Object(map) => visitor.visit_map(Map {
                    entries: map.into_iter(),
                    value: None,
                }),
            }
        }

        fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Null => visitor.visit_f64(f64::NAN),
                other => De(other).deserialize_any(visitor),
            }
        }

        fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Null => visitor.visit_none(),
                other => visitor.visit_some(De(other)),
            }
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            match self.0 {
                Value::String(s) => visitor.visit_enum(s.into_deserializer()),
                Value::Object(map) if map.len() == 1 => {
                    let (variant, value) = map.into_iter().next().expect("one entry");
                    visitor.visit_enum(Enum { variant, value })
                }
                _ => Err(de::Error::custom(
                    "expected an enum: a string or an object with one key",
                )),
            }
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char str string bytes byte_buf unit
            unit_struct seq tuple tuple_struct map struct identifier ignored_any
        }
    }

    struct Seq(std::vec::IntoIter<Value>);

    impl<'de> de::SeqAccess<'de> for Seq {
        type Error = Error;

        fn next_element_seed<T: de::DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            self.0.next().map(|v| seed.deserialize(De(v))).transpose()
        }

        fn size_hint(&self) -> Option<usize> {
            Some(self.0.len())
        }
    }

    struct Map {
        entries: serde_json::map::IntoIter,
        value: Option<Value>,
    }

    impl<'de> de::MapAccess<'de> for Map {
        type Error = Error;

        fn next_key_seed<K: de::DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            let Some((key, value)) = self.entries.next() else {
                return Ok(None);
            };
            self.value = Some(value);
            seed.deserialize(IntoDeserializer::<Error>::into_deserializer(key))
                .map(Some)
        }

        fn next_value_seed<V: de::DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, Error> {
            let value = self
                .value
                .take()
                .ok_or_else(|| de::Error::custom("a map value without its key"))?;
            seed.deserialize(De(value))
        }
    }

    struct Enum {
        variant: String,
        value: Value,
    }

    impl<'de> de::EnumAccess<'de> for Enum {
        type Error = Error;
        type Variant = De;

        fn variant_seed<V: de::DeserializeSeed<'de>>(
            self,
            seed: V,
        ) -> Result<(V::Value, De), Error> {
            let variant =
                seed.deserialize(IntoDeserializer::<Error>::into_deserializer(self.variant))?;
            Ok((variant, De(self.value)))
        }
    }

    impl<'de> de::VariantAccess<'de> for De {
        type Error = Error;

        fn unit_variant(self) -> Result<(), Error> {
            de::Deserialize::deserialize(self)
        }

        fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
            self,
            seed: T,
        ) -> Result<T::Value, Error> {
            seed.deserialize(self)
        }

        fn tuple_variant<V: Visitor<'de>>(
            self,
            _len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            de::Deserializer::deserialize_any(self, visitor)
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            _fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            de::Deserializer::deserialize_any(self, visitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_read_back_as_nan_and_everything_else_as_serde_json_does() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        enum Tagged {
            A { x: u8 },
            B,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Outer {
            Unit,
            Newtype(f64),
            Pair(u8, String),
            Fields { y: f64 },
        }
        #[derive(Debug, Serialize, Deserialize)]
        struct Doc {
            plain: f64,
            big: u64,
            negative: i64,
            maybe: Option<f64>,
            some: Option<f64>,
            list: Vec<f64>,
            tagged: Vec<Tagged>,
            outer: Vec<Outer>,
            text: String,
            #[serde(default)]
            absent: Vec<u8>,
        }
        let doc = Doc {
            plain: f64::INFINITY,
            big: u64::MAX,
            negative: -3,
            maybe: Some(f64::NAN),
            some: Some(0.1),
            list: vec![1.5, f64::NEG_INFINITY],
            tagged: vec![Tagged::A { x: 3 }, Tagged::B],
            outer: vec![
                Outer::Unit,
                Outer::Newtype(f64::INFINITY),
                Outer::Pair(7, "p".into()),
                Outer::Fields { y: 2.0 },
            ],
            text: "inf".into(),
            absent: vec![],
        };
        let json = serde_json::to_vec(&doc).unwrap();
        assert!(
            serde_json::from_slice::<Doc>(&json).is_err(),
            "serde_json alone refuses its own null"
        );
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let back = Doc::deserialize(lenient::De(value)).unwrap();
        assert!(back.plain.is_nan());
        assert_eq!((back.big, back.negative), (u64::MAX, -3));
        assert_eq!((back.maybe, back.some), (None, Some(0.1)));
        assert_eq!(back.list[0], 1.5);
        assert!(back.list[1].is_nan());
        assert_eq!(back.tagged, [Tagged::A { x: 3 }, Tagged::B]);
        assert_eq!(back.outer[0], Outer::Unit);
        assert!(matches!(back.outer[1], Outer::Newtype(v) if v.is_nan()));
        assert_eq!(back.outer[2], Outer::Pair(7, "p".into()));
        assert_eq!(back.outer[3], Outer::Fields { y: 2.0 });
        assert_eq!(back.text, "inf");
        // Wrong types are still errors.
        let wrong = serde_json::json!({"plain": "x"});
        assert!(Doc::deserialize(lenient::De(wrong)).is_err());
    }

    #[test]
    fn stale_temporary_files_go_and_writes_leave_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".run-000000000003.json.tmp"), b"{").unwrap();
        std::fs::write(dir.path().join(".accepted.json.tmp"), b"{").unwrap();
        let mut history = History::open(Some(dir.path()), Retention::runs(5)).unwrap();
        history.accept(1, Trigger::Start).unwrap();
        let names = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(dir.path()), [ACCEPTED]);
    }

    #[test]
    fn a_history_that_names_the_last_id_refuses_to_open_instead_of_reusing_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file_name(u64::MAX)), b"garbage").unwrap();
        let err = History::open(Some(dir.path()), Retention::runs(5))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&u64::MAX.to_string()), "{err}");
        // One below is the last that can be handed out.
        std::fs::remove_file(dir.path().join(file_name(u64::MAX))).unwrap();
        std::fs::write(dir.path().join(file_name(u64::MAX - 1)), b"garbage").unwrap();
        assert_eq!(
            History::open(Some(dir.path()), Retention::runs(5))
                .unwrap()
                .next_id(),
            u64::MAX
        );
    }

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

    fn finished(id: u64, age_h: i64) -> RunRecord {
        let at = Utc::now() - chrono::Duration::hours(age_h);
        RunRecord {
            finished_at: at,
            ..RunRecord::failed(id, Trigger::Interval, at, RunResult::Error, "x".into())
        }
    }

    #[test]
    fn retention_drops_by_age_too_but_keeps_the_latest_run() {
        let dir = tempfile::tempdir().unwrap();
        let day = std::time::Duration::from_secs(24 * 3600);
        let retention = Retention {
            runs: 100,
            age: Some(day),
        };
        let mut history = History::open(Some(dir.path()), retention).unwrap();
        for (id, age_h) in [(1, 50), (2, 30), (3, 20), (4, 1)] {
            history.push(finished(id, age_h)).unwrap();
        }
        let ids: Vec<u64> = history.iter().map(|r| r.id).collect();
        assert_eq!(ids, [4, 3], "runs older than a day are gone");
        assert!(!dir.path().join(file_name(2)).exists());
        // Reopened, the same rule holds; the only run left is kept whatever its age.
        let mut history = History::open(Some(dir.path()), retention).unwrap();
        assert_eq!(history.iter().count(), 2);
        history.runs.clear();
        history.push(finished(9, 100)).unwrap();
        assert_eq!(history.latest().map(|r| r.id), Some(9));
        // By count as before.
        let mut history = History::open(None, Retention::runs(2)).unwrap();
        for id in 1..=3 {
            history.push(finished(id, 0)).unwrap();
        }
        assert_eq!(history.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 2]);
    }

    #[test]
    fn a_record_from_before_every_gpu_was_validated_reads_as_one_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let report = crate::report::Report::from_error("check", &Error::Usage("u".into()));
        let old = serde_json::json!({
            "id": 7, "trigger": "interval",
            "started_at": "2026-11-30T10:00:00Z", "finished_at": "2026-11-30T10:05:00Z",
            "result": "regression", "report": report, "error": null
        });
        std::fs::write(dir.path().join(file_name(7)), old.to_string()).unwrap();
        let runs = read(dir.path()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].gpus.len(), 1);
        assert_eq!(runs[0].gpus[0].result, RunResult::Regression);
        assert_eq!(runs[0].reports().count(), 1);
        // Written back, it has the new shape only.
        let again = serde_json::to_value(&runs[0]).unwrap();
        assert!(again.get("report").is_none() && again["gpus"].is_array());
    }

    #[test]
    fn the_node_is_as_bad_as_its_worst_gpu() {
        use RunResult::*;
        assert_eq!(
            RunResult::worst([Pass, Regression, Error]),
            Some(Regression)
        );
        assert_eq!(RunResult::worst([Pass, Inconclusive]), Some(Inconclusive));
        assert_eq!(RunResult::worst([NoBaseline, Error]), Some(Error));
        assert_eq!(
            RunResult::worst([Regression, WrongResult]),
            Some(WrongResult)
        );
        assert_eq!(RunResult::worst([Pass, Pass]), Some(Pass));
        assert_eq!(RunResult::worst([]), None);
        // A run without a GPU measured nothing: an error, never a pass.
        let record = RunRecord::new(1, Trigger::Api, Utc::now(), vec![], None);
        assert_eq!(record.result, Error);
    }
}
