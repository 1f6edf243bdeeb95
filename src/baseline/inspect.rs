//! `gpugate baseline show | diff | prune` (and `pool`, in [`super::pool`]): reading baseline files for people (and, with
//! `--format json`, for scripts), and dropping kernels or recording sessions from one. Every file
//! goes through [`load`], so a bad one is exit 2 naming the file and the field.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::pool::{self, Farthest, NodeMedian};
use super::{load, save, validate, Baseline, BaselineKernel, MIN_RUNS};
use crate::compare::{self, Mode};
use crate::device::Fingerprint;
use crate::error::{Error, Result};
use crate::gate::{self, CheckOptions};
use crate::report::fmt_time;

/// `baseline show`: the file and, per kernel, what a default check can see against it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shown {
    pub file: String,
    pub schema_version: u32,
    pub device_key: String,
    pub fingerprint: Fingerprint,
    pub recorded_at: DateTime<Utc>,
    pub gpugate_version: String,
    /// The file's own threshold in percent (kernels may set theirs).
    pub threshold_pct: Option<f64>,
    pub note: Option<String>,
    pub sessions: Vec<ShownSession>,
    /// The nodes the sessions were recorded on (several in a pooled baseline).
    pub nodes: Vec<String>,
    /// The check `detectable_ratio` assumes: runs, confirmation runs, α, Holm's family.
    pub check: ShownCheck,
    pub kernels: Vec<ShownKernel>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShownSession {
    /// As runs index it (and `prune --session` takes it): from 0.
    pub index: usize,
    pub recorded_at: DateTime<Utc>,
    pub gpugate_version: String,
    pub driver: String,
    pub node: Option<String>,
    /// Runs of this session over all kernels.
    pub runs: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShownCheck {
    pub runs: usize,
    pub confirm_runs: usize,
    pub alpha: f64,
    pub family: usize,
}

impl ShownCheck {
    /// A default check of every kernel of `base`.
    pub(super) fn default_for(base: &Baseline) -> ShownCheck {
        let opts = CheckOptions::default();
        ShownCheck {
            runs: opts.runs,
            confirm_runs: opts.confirm_runs,
            alpha: opts.alpha,
            family: base.kernels.len(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShownKernel {
    pub key: String,
    pub kernel: String,
    pub runs: usize,
    /// The sessions its runs come from.
    pub sessions: Vec<u32>,
    pub median_s: f64,
    /// Run medians' relative spread (log sd).
    pub between_run_rel_sd: f64,
    /// Speed modes: one for most kernels.
    pub modes: Vec<Mode>,
    /// Practical threshold in percent, and whether the kernel, the file or the default set it.
    pub threshold_pct: f64,
    pub threshold_from: &'static str,
    /// Smallest slowdown (current/baseline ratio) a default check detects with 95 % power;
    /// None when it can never conclude.
    pub detectable_ratio: Option<f64>,
    pub kernel_hash: Option<String>,
    /// With sessions from several nodes: each node's median, the nodes' relative spread (log
    /// sd) and the node farthest from the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeMedian>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_spread: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub farthest: Option<Farthest>,
}

/// The threshold a check without overrides judges `k` by, in percent, and where it comes from.
fn threshold(base: &Baseline, k: &BaselineKernel) -> (f64, &'static str) {
    match (k.threshold_pct, base.threshold_pct) {
        (Some(p), _) => (p, "kernel"),
        (None, Some(p)) => (p, "file"),
        (None, None) => (compare::DEFAULT_THRESHOLD * 100.0, "default"),
    }
}

fn session_ids(k: &BaselineKernel) -> Vec<u32> {
    let mut ids: Vec<u32> = k.runs.iter().map(|r| r.session).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

pub fn show(path: &Path) -> Result<Shown> {
    let base = load(path)?;
    let opts = CheckOptions {
        baselines: path.to_path_buf(),
        ..CheckOptions::default()
    };
    let detectable = gate::detectable(&base, &opts);
    let kernels = base
        .kernels
        .iter()
        .zip(detectable)
        .map(|(k, d)| {
            let (threshold_pct, threshold_from) = threshold(&base, k);
            let nodes = pool::node_medians(&base, k);
            let (nodes, node_spread, farthest) = if nodes.len() > 1 {
                let spread = pool::node_spread(&nodes);
                let farthest = pool::farthest(&nodes, threshold_pct / 100.0);
                (nodes, spread, farthest)
            } else {
                (vec![], None, None)
            };
            ShownKernel {
                key: k.key.clone(),
                kernel: k.kernel.clone(),
                runs: k.runs.len(),
                sessions: session_ids(k),
                median_s: k.median_s,
                between_run_rel_sd: k.between_run_rel_sd,
                modes: k.model().modes(),
                threshold_pct,
                threshold_from,
                detectable_ratio: d.slowdown_ratio,
                kernel_hash: k.kernel_hash.clone(),
                nodes,
                node_spread,
                farthest,
            }
        })
        .collect();
    let sessions = shown_sessions(&base, |_| true);
    let mut nodes: Vec<String> = vec![];
    for n in base.sessions.iter().filter_map(|s| s.node.as_ref()) {
        if !nodes.contains(n) {
            nodes.push(n.clone());
        }
    }
    Ok(Shown {
        file: path.display().to_string(),
        schema_version: base.schema_version,
        device_key: base.device_key.clone(),
        fingerprint: base.fingerprint.clone(),
        recorded_at: base.recorded_at,
        gpugate_version: base.gpugate_version.clone(),
        threshold_pct: base.threshold_pct,
        note: base.note.clone(),
        sessions,
        nodes,
        check: ShownCheck::default_for(&base),
        kernels,
    })
}

/// The file's recording sessions that `pick` selects (by index), with their run counts.
fn shown_sessions(base: &Baseline, pick: impl Fn(usize) -> bool) -> Vec<ShownSession> {
    base.sessions
        .iter()
        .enumerate()
        .filter(|(i, _)| pick(*i))
        .map(|(i, s)| ShownSession {
            index: i,
            recorded_at: s.recorded_at,
            gpugate_version: s.gpugate_version.clone(),
            driver: s.driver.clone(),
            node: s.node.clone(),
            runs: base
                .kernels
                .iter()
                .flat_map(|k| &k.runs)
                .filter(|r| r.session as usize == i)
                .count(),
        })
        .collect()
}

pub(super) fn fmt_slowdown(r: Option<f64>) -> String {
    match r {
        Some(r) if r < 2.0 => format!("{:+.1} %", (r - 1.0) * 100.0),
        Some(r) => format!("{r:.1}×"),
        None => "never".into(),
    }
}

pub(super) fn fmt_pct(p: f64) -> String {
    format!("{p:.1} %")
}

/// Columns as wide as their widest cell (keys can be long), the first left-aligned.
pub(crate) fn write_columns(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = widths[c] - cell.chars().count();
                if c == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

impl Shown {
    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let f = &self.fingerprint;
        writeln!(
            out,
            "file      {} (schema version {})",
            self.file, self.schema_version
        )?;
        writeln!(
            out,
            "device    {} ({}, {}, driver {})  [{}]",
            f.name,
            f.backend,
            f.device_type,
            f.driver_string(),
            self.device_key
        )?;
        if let Some(cpu) = &f.cpu_model {
            writeln!(out, "host cpu  {cpu}")?;
        }
        for s in &self.sessions {
            writeln!(
                out,
                "session {} {} driver {:?}, gpugate {}, {} run(s){}",
                s.index,
                s.recorded_at.format("%Y-%m-%d %H:%M UTC"),
                s.driver,
                s.gpugate_version,
                s.runs,
                s.node
                    .as_ref()
                    .map_or(String::new(), |n| format!(", node {n}"))
            )?;
        }
        let pooled = self.nodes.len() > 1;
        if pooled {
            writeln!(
                out,
                "nodes     {} ({}): node spread is the relative sd of the nodes' medians",
                self.nodes.len(),
                self.nodes.join(", ")
            )?;
        }
        if let Some(note) = &self.note {
            writeln!(out, "note      {note}")?;
        }
        writeln!(
            out,
            "detects   the smallest slowdown a default check ({} runs + {} confirmation, α {}, \
             Holm over {} kernels) detects with 95 % power",
            self.check.runs, self.check.confirm_runs, self.check.alpha, self.check.family
        )?;
        writeln!(out)?;
        let rows: Vec<Vec<String>> = self
            .kernels
            .iter()
            .map(|k| {
                let sessions: Vec<String> = k.sessions.iter().map(u32::to_string).collect();
                let modes = if k.modes.len() > 1 {
                    let centres: Vec<String> = k
                        .modes
                        .iter()
                        .map(|m| format!("{}×{}", fmt_time(m.center_s), m.runs))
                        .collect();
                    format!("{}: {}", k.modes.len(), centres.join(", "))
                } else {
                    "1".into()
                };
                let mut row = vec![
                    k.key.clone(),
                    k.runs.to_string(),
                    sessions.join(","),
                    fmt_time(k.median_s),
                    fmt_pct(k.between_run_rel_sd * 100.0),
                    modes,
                    format!("{} ({})", fmt_pct(k.threshold_pct), k.threshold_from),
                    fmt_slowdown(k.detectable_ratio),
                ];
                if pooled {
                    row.extend([
                        k.nodes.len().to_string(),
                        k.node_spread.map_or("-".into(), |s| fmt_pct(s * 100.0)),
                    ]);
                }
                row
            })
            .collect();
        let mut header = vec![
            "kernel",
            "runs",
            "session ids",
            "median",
            "spread",
            "modes",
            "threshold",
            "detects",
        ];
        if pooled {
            header.extend(["nodes", "node spread"]);
        }
        write_columns(out, &header, &rows)?;
        for k in &self.kernels {
            if let Some(f) = &k.farthest {
                pool::outlier_warning(out, &k.key, f, k.threshold_pct / 100.0)?;
            }
        }
        Ok(())
    }
}

/// `baseline diff A B`: what changed between two files, file-level and kernel by kernel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diff {
    pub a: String,
    pub b: String,
    pub device_key_a: String,
    pub device_key_b: String,
    /// The drivers each file's sessions were recorded with.
    pub drivers_a: Vec<String>,
    pub drivers_b: Vec<String>,
    pub kernels: Vec<KernelDiff>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Both,
    OnlyA,
    OnlyB,
}

/// One kernel key in either file: each side's figures where it has the kernel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelDiff {
    pub key: String,
    pub presence: Presence,
    pub median_a_s: Option<f64>,
    pub median_b_s: Option<f64>,
    /// (B − A) / A in percent: above 0, B's median is slower.
    pub delta_pct: Option<f64>,
    pub runs_a: Option<usize>,
    pub runs_b: Option<usize>,
    pub sessions_a: Option<usize>,
    pub sessions_b: Option<usize>,
    /// True when both record a hash and they differ: B measured other code.
    pub kernel_hash_changed: bool,
    /// The threshold a check judges by (kernel's, else file's, else the default), in percent.
    pub threshold_a_pct: Option<f64>,
    pub threshold_b_pct: Option<f64>,
    /// Batch, slots or timing that differ: a check against B measures the kernel otherwise.
    pub measured_unlike: Option<String>,
}

fn drivers(base: &Baseline) -> Vec<String> {
    let mut d: Vec<String> = base.sessions.iter().map(|s| s.driver.clone()).collect();
    d.dedup();
    d
}

pub fn diff(a_path: &Path, b_path: &Path) -> Result<Diff> {
    let (a, b) = (load(a_path)?, load(b_path)?);
    let find = |base: &Baseline, key: &str| base.kernels.iter().find(|k| k.key == key).cloned();
    let mut keys: Vec<String> = a.kernels.iter().map(|k| k.key.clone()).collect();
    keys.extend(
        b.kernels
            .iter()
            .map(|k| k.key.clone())
            .filter(|key| !a.kernels.iter().any(|k| &k.key == key)),
    );
    let kernels = keys
        .into_iter()
        .map(|key| {
            let (ka, kb) = (find(&a, &key), find(&b, &key));
            let presence = match (&ka, &kb) {
                (Some(_), Some(_)) => Presence::Both,
                (Some(_), None) => Presence::OnlyA,
                _ => Presence::OnlyB,
            };
            let (ka, kb) = (ka.as_ref(), kb.as_ref());
            let delta_pct = ka
                .zip(kb)
                .map(|(x, y)| (y.median_s / x.median_s - 1.0) * 100.0);
            let kernel_hash_changed = ka
                .and_then(|k| k.kernel_hash.as_ref())
                .zip(kb.and_then(|k| k.kernel_hash.as_ref()))
                .is_some_and(|(x, y)| x != y);
            let measured_unlike = ka.zip(kb).and_then(|(x, y)| {
                let (batch, slots, timing) = x.measured_as();
                let (b2, s2, t2) = y.measured_as();
                [
                    (batch != b2).then(|| format!("batch {batch} → {b2}")),
                    (slots != s2).then(|| format!("slots {slots} → {s2}")),
                    (timing != t2).then(|| format!("timing {timing:?} → {t2:?}")),
                ]
                .into_iter()
                .flatten()
                .reduce(|x, y| format!("{x}, {y}"))
            });
            KernelDiff {
                key,
                presence,
                median_a_s: ka.map(|k| k.median_s),
                median_b_s: kb.map(|k| k.median_s),
                delta_pct,
                runs_a: ka.map(|k| k.runs.len()),
                runs_b: kb.map(|k| k.runs.len()),
                sessions_a: ka.map(|k| session_ids(k).len()),
                sessions_b: kb.map(|k| session_ids(k).len()),
                kernel_hash_changed,
                threshold_a_pct: ka.map(|k| threshold(&a, k).0),
                threshold_b_pct: kb.map(|k| threshold(&b, k).0),
                measured_unlike,
            }
        })
        .collect();
    Ok(Diff {
        a: a_path.display().to_string(),
        b: b_path.display().to_string(),
        device_key_a: a.device_key.clone(),
        device_key_b: b.device_key.clone(),
        drivers_a: drivers(&a),
        drivers_b: drivers(&b),
        kernels,
    })
}

impl Diff {
    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "A  {}", self.a)?;
        writeln!(out, "B  {}", self.b)?;
        if self.device_key_a == self.device_key_b {
            writeln!(out, "device   {}", self.device_key_a)?;
        } else {
            writeln!(
                out,
                "device   {} → {} (different devices)",
                self.device_key_a, self.device_key_b
            )?;
        }
        let (da, db) = (self.drivers_a.join(" / "), self.drivers_b.join(" / "));
        if da == db {
            writeln!(out, "drivers  {da}")?;
        } else {
            writeln!(out, "drivers  {da} → {db}")?;
        }
        writeln!(out)?;
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let pair = |a: Option<usize>, b: Option<usize>| {
            format!(
                "{} / {}",
                opt(a.map(|v| v.to_string())),
                opt(b.map(|v| v.to_string()))
            )
        };
        let rows: Vec<Vec<String>> = self
            .kernels
            .iter()
            .map(|k| {
                let mut changed = vec![];
                if k.kernel_hash_changed {
                    changed.push("kernel code".to_string());
                }
                if let (Some(x), Some(y)) = (k.threshold_a_pct, k.threshold_b_pct) {
                    if x != y {
                        changed.push(format!("threshold {} → {}", fmt_pct(x), fmt_pct(y)));
                    }
                }
                changed.extend(k.measured_unlike.clone());
                vec![
                    k.key.clone(),
                    match k.presence {
                        Presence::Both => "both",
                        Presence::OnlyA => "only A",
                        Presence::OnlyB => "only B",
                    }
                    .into(),
                    opt(k.median_a_s.map(fmt_time)),
                    opt(k.median_b_s.map(fmt_time)),
                    opt(k.delta_pct.map(|d| format!("{d:+.1} %"))),
                    pair(k.runs_a, k.runs_b),
                    pair(k.sessions_a, k.sessions_b),
                    changed.join("; "),
                ]
            })
            .collect();
        write_columns(
            out,
            &[
                "kernel",
                "in",
                "median A",
                "median B",
                "Δ",
                "runs A/B",
                "sessions A/B",
                "changed",
            ],
            &rows,
        )
    }
}

/// What `baseline prune` dropped and wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pruned {
    pub file: String,
    /// Where the pruned baseline was written (the file itself unless --out).
    pub written: String,
    pub dropped_kernels: Vec<DroppedKernel>,
    /// The sessions dropped, by their index in the original file.
    pub dropped_sessions: Vec<ShownSession>,
    /// Kernels left, and sessions left (renumbered from 0).
    pub kernels: Vec<String>,
    pub sessions: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DroppedKernel {
    pub key: String,
    pub why: String,
}

/// Drop kernels (by name or instance key) and recording sessions (by index) from the baseline
/// at `path`, re-summarise what remains and write it atomically to `out` (default: in place).
pub fn prune(
    path: &Path,
    kernels: &[String],
    sessions: &[usize],
    out: Option<&Path>,
) -> Result<Pruned> {
    let mut base = load(path)?;
    if kernels.is_empty() && sessions.is_empty() {
        return Err(Error::Usage(
            "baseline prune: nothing to drop; give --kernel NAME_OR_KEY or --session N".into(),
        ));
    }
    for name in kernels {
        if !base
            .kernels
            .iter()
            .any(|k| &k.kernel == name || &k.key == name)
        {
            let have: Vec<&str> = base.kernels.iter().map(|k| k.key.as_str()).collect();
            return Err(Error::Usage(format!(
                "--kernel {name}: not in {} (it has {})",
                path.display(),
                have.join(", ")
            )));
        }
    }
    for &s in sessions {
        if s >= base.sessions.len() {
            return Err(Error::Usage(format!(
                "--session {s}: {} has session(s) 0 to {} (`baseline show` lists them)",
                path.display(),
                base.sessions.len() - 1
            )));
        }
    }
    let mut dropped_kernels = vec![];
    base.kernels.retain(|k| {
        let hit = kernels.iter().find(|n| **n == k.kernel || **n == k.key);
        if let Some(n) = hit {
            dropped_kernels.push(DroppedKernel {
                key: k.key.clone(),
                why: format!("--kernel {n}"),
            });
        }
        hit.is_none()
    });
    let dropped_sessions = shown_sessions(&base, |i| sessions.contains(&i));
    if !sessions.is_empty() {
        // Old index → new index of the sessions kept.
        let renumber: Vec<Option<u32>> = {
            let mut next = 0;
            (0..base.sessions.len())
                .map(|i| {
                    (!sessions.contains(&i)).then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect()
        };
        let mut i = 0;
        base.sessions.retain(|_| {
            i += 1;
            !sessions.contains(&(i - 1))
        });
        let gone: Vec<String> = sessions.iter().map(usize::to_string).collect();
        base.kernels.retain_mut(|k| {
            k.runs.retain(|r| renumber[r.session as usize].is_some());
            for r in &mut k.runs {
                r.session = renumber[r.session as usize].expect("kept");
            }
            if k.runs.len() < MIN_RUNS {
                dropped_kernels.push(DroppedKernel {
                    key: k.key.clone(),
                    why: format!(
                        "{} run(s) left without session(s) {}; a baseline needs {MIN_RUNS}",
                        k.runs.len(),
                        gone.join(", ")
                    ),
                });
                return false;
            }
            k.summarise_runs();
            true
        });
    }
    if base.kernels.is_empty() {
        return Err(Error::Usage(format!(
            "baseline prune: nothing would be left of {} (dropped {}); delete the file instead",
            path.display(),
            dropped_kernels
                .iter()
                .map(|d| d.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let target: PathBuf = out.unwrap_or(path).to_path_buf();
    // What is written must load: the same validation as any file.
    validate(&base).map_err(|(field, reason)| Error::baseline(&target, field, reason))?;
    save(&target, &base)?;
    Ok(Pruned {
        file: path.display().to_string(),
        written: target.display().to_string(),
        dropped_kernels,
        dropped_sessions,
        kernels: base.kernels.iter().map(|k| k.key.clone()).collect(),
        sessions: base.sessions.len(),
    })
}

impl Pruned {
    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        for s in &self.dropped_sessions {
            writeln!(
                out,
                "dropped session {} ({}, driver {:?}): {} run(s)",
                s.index,
                s.recorded_at.format("%Y-%m-%d %H:%M UTC"),
                s.driver,
                s.runs
            )?;
        }
        for k in &self.dropped_kernels {
            writeln!(out, "dropped kernel {} ({})", k.key, k.why)?;
        }
        writeln!(
            out,
            "wrote {}: {} kernel(s), {} session(s): {}",
            self.written,
            self.kernels.len(),
            self.sessions,
            self.kernels.join(", ")
        )
    }
}
