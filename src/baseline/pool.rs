//! `gpugate baseline pool`: one baseline for a GPU model from the baselines of several known-good
//! nodes. Each node's recording sessions stay sessions of the pooled file, so the gate's noise
//! model ([`crate::compare::Model::fit`]) measures the node-to-node variance as its
//! session-to-session variance and a new node is judged against the model, its own offset
//! included, rather than against one lucky node (docs/statistics.md, "Pooled baselines").

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;

use super::inspect::{fmt_pct, fmt_slowdown, write_columns, DroppedKernel, ShownCheck};
use super::{load, save, validate, Baseline, BaselineKernel, SCHEMA_VERSION};
use crate::error::{Error, Result};
use crate::gate::{self, CheckOptions};
use crate::report::fmt_time;
use crate::stats;

/// Fewest nodes a kernel must have been recorded on to be pooled: one node is no model.
pub const MIN_NODES: usize = 2;

/// One node's runs of one kernel: the median of its run medians.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeMedian {
    pub node: String,
    pub runs: usize,
    pub median_s: f64,
}

/// The node farthest from the others for one kernel: its median over the median of the other
/// nodes' medians.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Farthest {
    pub node: String,
    /// Above 1: slower than the other nodes.
    pub ratio: f64,
    /// The ratio is beyond the kernel's threshold: the node would be judged regressed (or
    /// improved) against the others, so it is likely an outlier that should not set the norm.
    pub beyond_threshold: bool,
}

/// Per node that recorded runs of `k` (sessions without a node are left out): its median.
pub fn node_medians(base: &Baseline, k: &BaselineKernel) -> Vec<NodeMedian> {
    let node_of = |session: u32| {
        base.sessions
            .get(session as usize)
            .and_then(|s| s.node.clone())
    };
    let mut nodes: Vec<String> = vec![];
    for r in &k.runs {
        if let Some(n) = node_of(r.session).filter(|n| !nodes.contains(n)) {
            nodes.push(n);
        }
    }
    nodes
        .into_iter()
        .map(|node| {
            let medians: Vec<f64> = k
                .runs
                .iter()
                .filter(|r| node_of(r.session).as_ref() == Some(&node))
                .map(|r| r.summary.median_s)
                .collect();
            NodeMedian {
                node,
                runs: medians.len(),
                median_s: stats::median(&medians),
            }
        })
        .collect()
}

/// Node-to-node spread: the relative sd (log sd) of the nodes' medians; None under 2 nodes.
pub fn node_spread(nodes: &[NodeMedian]) -> Option<f64> {
    stats::log_sd(&nodes.iter().map(|n| n.median_s).collect::<Vec<_>>())
}

/// The node whose median lies farthest (in log units) from the median of the others'; with two
/// nodes that is either, and the slower one is named.
pub fn farthest(nodes: &[NodeMedian], threshold: f64) -> Option<Farthest> {
    if nodes.len() < MIN_NODES {
        return None;
    }
    let ratios: Vec<f64> = (0..nodes.len())
        .map(|i| {
            let others: Vec<f64> = (0..nodes.len())
                .filter(|&j| j != i)
                .map(|j| nodes[j].median_s)
                .collect();
            nodes[i].median_s / stats::median(&others)
        })
        .collect();
    let i = if nodes.len() == 2 {
        usize::from(ratios[1] > 1.0)
    } else {
        (0..nodes.len()).max_by(|&a, &b| ratios[a].ln().abs().total_cmp(&ratios[b].ln().abs()))?
    };
    let ratio = ratios[i];
    Some(Farthest {
        node: nodes[i].node.clone(),
        ratio,
        beyond_threshold: ratio.ln().abs() > (1.0 + threshold).ln(),
    })
}

/// What `baseline pool` read, wrote and found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pooled {
    pub written: String,
    pub device_key: String,
    pub inputs: Vec<PoolInput>,
    /// Every node pooled, in input order.
    pub nodes: Vec<String>,
    /// Kernels recorded on fewer than [`MIN_NODES`] nodes, not pooled.
    pub dropped_kernels: Vec<DroppedKernel>,
    /// What the reader must know: nodes named after files, thresholds or notes that differed.
    pub notes: Vec<String>,
    /// The check `detectable_ratio` assumes.
    pub check: ShownCheck,
    pub kernels: Vec<PooledKernel>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PoolInput {
    pub file: String,
    /// The nodes its sessions were recorded on.
    pub nodes: Vec<String>,
    pub sessions: usize,
    /// Its sessions carried no node (recorded before nodes were kept): named after the file.
    pub node_from_file_name: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PooledKernel {
    pub key: String,
    pub runs: usize,
    pub nodes: Vec<NodeMedian>,
    /// Median of all run medians.
    pub median_s: f64,
    /// Relative sd of the nodes' medians.
    pub node_spread: f64,
    /// Run-to-run sd within a node's session, and the session-to-session sd the gate adds for a
    /// new node ([`crate::compare::Model::session_sd`]), both relative.
    pub run_spread: f64,
    pub session_sd: f64,
    /// The threshold a default check judges by (fraction).
    pub threshold: f64,
    /// Smallest slowdown a default check detects against the pool with 95 % power; None when it
    /// can never conclude.
    pub detectable_ratio: Option<f64>,
    pub farthest: Option<Farthest>,
}

/// The node a session was recorded on, or (for files from before nodes were kept) the file's
/// stem.
fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into(),
    )
}

/// The first field in which `k` (from `path`) differs from `first` (from `first_path`): an
/// error naming the file, the kernel and the field.
fn same_kernel(
    (path, i, k): (&Path, usize, &BaselineKernel),
    (first_path, first): (&Path, &BaselineKernel),
) -> Result<()> {
    let params = |k: &BaselineKernel| serde_json::to_string(&k.params).unwrap_or_default();
    let odd = [
        (
            "kernel_hash",
            format!("{:?}", k.kernel_hash),
            format!("{:?}", first.kernel_hash),
        ),
        ("params", params(k), params(first)),
        ("batch", k.batch.to_string(), first.batch.to_string()),
        ("slots", k.slots.to_string(), first.slots.to_string()),
        (
            "timing",
            format!("{:?}", k.timing),
            format!("{:?}", first.timing),
        ),
    ]
    .into_iter()
    .find(|(_, a, b)| a != b);
    match odd {
        None => Ok(()),
        Some((field, here, there)) => Err(Error::baseline(
            path,
            format!("kernels[{i}].{field}"),
            format!(
                "{}: {here} here but {there} in {}: pooled runs must measure the same code the \
                 same way (re-record the odd node)",
                k.key,
                first_path.display()
            ),
        )),
    }
}

/// Pool the baselines at `inputs` (one or more per node, same device key) into `out`.
pub fn pool(inputs: &[PathBuf], out: &Path) -> Result<Pooled> {
    if inputs.len() < MIN_NODES {
        return Err(Error::Usage(format!(
            "baseline pool: give the baselines of at least {MIN_NODES} nodes (got {})",
            inputs.len()
        )));
    }
    let bases: Vec<Baseline> = inputs.iter().map(|p| load(p)).collect::<Result<_>>()?;
    let (first_path, first) = (&inputs[0], &bases[0]);
    let mut notes = vec![];
    let mut described = vec![];
    let mut sessions = vec![];
    // Per input: where its sessions start in the pooled list.
    let mut offsets = vec![];
    for (path, base) in inputs.iter().zip(&bases) {
        if base.schema_version < 2 {
            return Err(Error::baseline(
                path,
                "schema_version",
                format!(
                    "is {}: a pool needs kernel hashes (version 2 on); re-record that node",
                    base.schema_version
                ),
            ));
        }
        if base.device_key != first.device_key {
            return Err(Error::baseline(
                path,
                "device_key",
                format!(
                    "is {:?}, but {} is {:?}: a pool holds one GPU model",
                    base.device_key,
                    first_path.display(),
                    first.device_key
                ),
            ));
        }
        let unnamed = base.sessions.iter().any(|s| s.node.is_none());
        if unnamed {
            notes.push(format!(
                "{}: sessions recorded without a node name are named after the file, {:?}",
                path.display(),
                stem(path)
            ));
        }
        offsets.push(sessions.len() as u32);
        let mut nodes: Vec<String> = vec![];
        for s in &base.sessions {
            let mut s = s.clone();
            let node = s.node.get_or_insert_with(|| stem(path)).clone();
            if !nodes.contains(&node) {
                nodes.push(node);
            }
            sessions.push(s);
        }
        described.push(PoolInput {
            file: path.display().to_string(),
            nodes,
            sessions: base.sessions.len(),
            node_from_file_name: unnamed,
        });
    }
    let mut all_nodes: Vec<String> = vec![];
    for n in described.iter().flat_map(|d| &d.nodes) {
        if !all_nodes.contains(n) {
            all_nodes.push(n.clone());
        }
    }
    if all_nodes.len() < MIN_NODES {
        let files: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Usage(format!(
            "baseline pool: {} were all recorded on node {:?}: a pool needs at least \
             {MIN_NODES} nodes (record on each with NODE_NAME set to its name)",
            files.join(", "),
            all_nodes.first().map_or("", String::as_str)
        )));
    }

    // Kernels by key, in the order first seen; every later copy measured as the first.
    let mut keys: Vec<&str> = vec![];
    for k in bases.iter().flat_map(|b| &b.kernels) {
        if !keys.contains(&k.key.as_str()) {
            keys.push(&k.key);
        }
    }
    let mut kernels = vec![];
    let mut dropped_kernels = vec![];
    for key in keys {
        let copies: Vec<(usize, usize, &BaselineKernel)> = bases
            .iter()
            .enumerate()
            .filter_map(|(b, base)| {
                let i = base.kernels.iter().position(|k| k.key == key)?;
                Some((b, i, &base.kernels[i]))
            })
            .collect();
        let (b0, _, k0) = copies[0];
        for &(b, i, k) in &copies[1..] {
            same_kernel((&inputs[b], i, k), (&inputs[b0], k0))?;
        }
        let mut on: BTreeSet<&str> = BTreeSet::new();
        for &(b, _, k) in &copies {
            for r in &k.runs {
                on.insert(
                    sessions[(offsets[b] + r.session) as usize]
                        .node
                        .as_deref()
                        .expect("every pooled session is named"),
                );
            }
        }
        if on.len() < MIN_NODES {
            dropped_kernels.push(DroppedKernel {
                key: key.to_string(),
                why: format!(
                    "recorded on {} node(s) only ({}); a pool needs {MIN_NODES}",
                    on.len(),
                    on.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
            continue;
        }
        let mut pooled = k0.clone();
        pooled.runs = copies
            .iter()
            .flat_map(|&(b, _, k)| {
                let offset = offsets[b];
                k.runs.iter().map(move |r| {
                    let mut r = r.clone();
                    r.session += offset;
                    r
                })
            })
            .collect();
        pooled.threshold_pct = largest(
            copies.iter().map(|(_, _, k)| k.threshold_pct),
            &format!("{key}'s threshold_pct"),
            &mut notes,
        );
        pooled.summarise_runs();
        kernels.push(pooled);
    }
    if kernels.is_empty() {
        return Err(Error::Usage(format!(
            "baseline pool: no kernel was recorded on {MIN_NODES} nodes or more (dropped: {})",
            dropped_kernels
                .iter()
                .map(|d| d.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut drivers: Vec<&str> = sessions.iter().map(|s| s.driver.as_str()).collect();
    drivers.sort_unstable();
    drivers.dedup();
    if drivers.len() > 1 {
        notes.push(format!(
            "the nodes recorded with {} drivers ({}): a check on any of them reports no driver \
             change",
            drivers.len(),
            drivers.join(" / ")
        ));
    }
    let threshold_pct = largest(
        bases.iter().map(|b| b.threshold_pct),
        "the file's threshold_pct",
        &mut notes,
    );
    let note = if bases.iter().all(|b| b.note == first.note) {
        first.note.clone()
    } else {
        notes.push("the inputs' notes differ: none is kept".into());
        None
    };
    let base = Baseline {
        schema_version: SCHEMA_VERSION,
        device_key: first.device_key.clone(),
        fingerprint: first.fingerprint.clone(),
        gpugate_version: env!("CARGO_PKG_VERSION").to_string(),
        recorded_at: Utc::now(),
        threshold_pct,
        note,
        sessions,
        kernels,
    };
    // What is written must load: the same validation as any file.
    validate(&base).map_err(|(field, reason)| Error::baseline(out, field, reason))?;
    save(out, &base)?;
    Ok(Pooled {
        written: out.display().to_string(),
        device_key: base.device_key.clone(),
        inputs: described,
        nodes: all_nodes,
        dropped_kernels,
        notes,
        check: ShownCheck::default_for(&base),
        kernels: describe(&base),
    })
}

/// The largest of the thresholds given (the fewest false alarms), noting when they differed.
fn largest(
    given: impl Iterator<Item = Option<f64>>,
    what: &str,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let given: Vec<Option<f64>> = given.collect();
    let kept = given.iter().flatten().copied().reduce(f64::max);
    if given.iter().any(|t| *t != given[0]) {
        notes.push(format!(
            "{what} differs between the inputs ({}): kept {}",
            given
                .iter()
                .map(|t| t.map_or("unset".into(), |p| format!("{p}")))
                .collect::<Vec<_>>()
                .join(", "),
            kept.map_or("unset".into(), |p| format!("{p}"))
        ));
    }
    kept
}

/// Per kernel of a pooled file: nodes, spreads, what a default check detects, the farthest node.
fn describe(base: &Baseline) -> Vec<PooledKernel> {
    let opts = CheckOptions::default();
    base.kernels
        .iter()
        .zip(gate::detectable(base, &opts))
        .map(|(k, d)| {
            let nodes = node_medians(base, k);
            let model = k.model();
            PooledKernel {
                key: k.key.clone(),
                runs: k.runs.len(),
                median_s: k.median_s,
                node_spread: node_spread(&nodes).unwrap_or(0.0),
                run_spread: model.run_sd(),
                session_sd: model.session_sd(),
                threshold: d.threshold,
                detectable_ratio: d.slowdown_ratio,
                farthest: farthest(&nodes, d.threshold),
                nodes,
            }
        })
        .collect()
}

impl Pooled {
    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        for i in &self.inputs {
            writeln!(
                out,
                "input  {}: node {}, {} session(s){}",
                i.file,
                i.nodes.join(", "),
                i.sessions,
                if i.node_from_file_name {
                    " (node named after the file)"
                } else {
                    ""
                }
            )?;
        }
        for k in &self.dropped_kernels {
            writeln!(out, "dropped kernel {} ({})", k.key, k.why)?;
        }
        for n in &self.notes {
            writeln!(out, "note   {n}")?;
        }
        writeln!(
            out,
            "wrote  {}: {} kernel(s) of {} from {} nodes ({})",
            self.written,
            self.kernels.len(),
            self.device_key,
            self.nodes.len(),
            self.nodes.join(", ")
        )?;
        writeln!(
            out,
            "detects  the smallest slowdown a default check ({} runs + {} confirmation, α {}, \
             Holm over {} kernels) detects against the pool with 95 % power",
            self.check.runs, self.check.confirm_runs, self.check.alpha, self.check.family
        )?;
        writeln!(out)?;
        let rows: Vec<Vec<String>> = self
            .kernels
            .iter()
            .map(|k| {
                vec![
                    k.key.clone(),
                    k.nodes.len().to_string(),
                    k.runs.to_string(),
                    fmt_time(k.median_s),
                    fmt_pct(k.node_spread * 100.0),
                    fmt_pct(k.run_spread * 100.0),
                    fmt_pct(k.threshold * 100.0),
                    fmt_slowdown(k.detectable_ratio),
                    k.farthest.as_ref().map_or("-".into(), |f| {
                        format!("{} {:+.1} %", f.node, (f.ratio - 1.0) * 100.0)
                    }),
                ]
            })
            .collect();
        write_columns(
            out,
            &[
                "kernel",
                "nodes",
                "runs",
                "median",
                "node spread",
                "run spread",
                "threshold",
                "detects",
                "farthest node",
            ],
            &rows,
        )?;
        write_outliers(out, &self.kernels)
    }
}

/// A warning per kernel whose farthest node lies beyond the threshold from the others.
fn write_outliers(out: &mut dyn Write, kernels: &[PooledKernel]) -> io::Result<()> {
    for k in kernels {
        if let Some(f) = &k.farthest {
            outlier_warning(out, &k.key, f, k.threshold)?;
        }
    }
    Ok(())
}

/// The warning on `key` when its farthest node `f` lies beyond `threshold` from the others.
pub(super) fn outlier_warning(
    out: &mut dyn Write,
    key: &str,
    f: &Farthest,
    threshold: f64,
) -> io::Result<()> {
    if !f.beyond_threshold {
        return Ok(());
    }
    writeln!(
        out,
        "warning: {key}: node {} runs at {:.3}× the other nodes' median, beyond the {} \
         threshold: check that node, and pool without it if it is the odd one out",
        f.node,
        f.ratio,
        fmt_pct(threshold * 100.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(medians: &[f64]) -> Vec<NodeMedian> {
        medians
            .iter()
            .enumerate()
            .map(|(i, &m)| NodeMedian {
                node: format!("n{i}"),
                runs: 10,
                median_s: m,
            })
            .collect()
    }

    #[test]
    fn the_farthest_node_is_named_with_its_ratio_to_the_others() {
        // Two nodes: either is as far; the slower is named.
        let f = farthest(&nodes(&[1.0, 1.02]), 0.05).unwrap();
        assert_eq!((f.node.as_str(), f.beyond_threshold), ("n1", false));
        assert!((f.ratio - 1.02).abs() < 1e-12);
        let f = farthest(&nodes(&[1.1, 1.0]), 0.05).unwrap();
        assert_eq!((f.node.as_str(), f.beyond_threshold), ("n0", true));
        // A fast outlier among four is farther than the slow spread of the rest.
        let f = farthest(&nodes(&[1.0, 1.01, 0.9, 1.02]), 0.05).unwrap();
        assert_eq!(f.node, "n2");
        assert!((f.ratio - 0.9 / 1.01).abs() < 1e-12, "{f:?}");
        assert!(f.beyond_threshold);
        assert_eq!(farthest(&nodes(&[1.0]), 0.05), None);
    }

    #[test]
    fn node_spread_is_the_log_sd_of_the_node_medians() {
        assert_eq!(node_spread(&nodes(&[1.0])), None);
        let s = node_spread(&nodes(&[1.0, 1.0_f64.exp()])).unwrap();
        assert!((s - 0.5_f64.sqrt()).abs() < 1e-12, "{s}");
    }
}
