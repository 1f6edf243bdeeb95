//! `gpugate profile KERNEL --sweep NAME=V1,V2,…`: one kernel over a grid of its parameters
//! (nvbench's axes), each point measured and verified, with its rate as a fraction of this
//! device's measured ceilings. No baseline, no verdict on speed: correctness alone decides the
//! exit code, as for `run`.

use crate::device::{AdapterChoice, Gpu};
use crate::error::{Error, Result};
use crate::report::{Axis, Report, Sweep};
use crate::runner::{Plan, PlanItem};
use crate::workload::{self, suite, suite::Suite, Kernel, Params};

use super::{at_least, ceiling_items, measure_with_ceilings, MeasureOptions};

/// Most points one sweep may have: every point is measured for up to `--max-time`.
pub const MAX_SWEEP_POINTS: usize = 64;

/// `gpugate profile`'s options.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileOptions {
    pub kernel: String,
    /// The swept parameters; the kernel's other parameters keep their default instance's values.
    pub axes: Vec<Axis>,
    /// Independent runs: 1 measures in this process, more each in a fresh one.
    pub runs: usize,
    /// How to measure (its `kernels` must be empty: the kernel is `kernel`).
    pub measure: MeasureOptions,
}

/// One `--sweep NAME=V1,V2,…`: the name and at least one value, no value twice.
pub fn parse_axis(s: &str) -> Result<Axis> {
    let flag = || format!("--sweep {s}");
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| Error::Usage(format!("{}: expected NAME=V1,V2,…", flag())))?;
    if name.is_empty() {
        return Err(Error::Usage(format!(
            "{}: the parameter name is empty",
            flag()
        )));
    }
    if values.trim().is_empty() {
        return Err(Error::Usage(format!(
            "{}: no values; give at least one, e.g. {name}=1024,4096",
            flag()
        )));
    }
    let mut parsed = vec![];
    for v in values.split(',') {
        let n: u64 = v.trim().parse().map_err(|_| {
            Error::Usage(format!("{}: {v:?} is not a non-negative integer", flag()))
        })?;
        if parsed.contains(&n) {
            return Err(Error::Usage(format!("{}: {n} is given twice", flag())));
        }
        parsed.push(n);
    }
    Ok(Axis {
        name: name.to_string(),
        values: parsed,
    })
}

impl ProfileOptions {
    /// The kernel, once the options and axes are known good (before a device is opened).
    fn validate(&self) -> Result<&'static dyn Kernel> {
        if !self.measure.kernels.is_empty() {
            return Err(Error::Usage(
                "profile measures the kernel its argument names; --kernel does not apply".into(),
            ));
        }
        at_least("--runs", self.runs, 1)?;
        self.measure.validate()?;
        let kernel = workload::find(&self.kernel)?;
        if self.axes.is_empty() {
            return Err(Error::Usage(
                "--sweep: give at least one axis, e.g. --sweep n=1024,4096".into(),
            ));
        }
        let takes = || {
            let names: Vec<String> = kernel
                .params()
                .iter()
                .map(|p| format!("{} ({}..={})", p.name, p.min, p.max))
                .collect();
            format!("{} takes {}", kernel.name(), names.join(", "))
        };
        for (i, axis) in self.axes.iter().enumerate() {
            if !kernel.params().iter().any(|p| p.name == axis.name) {
                return Err(Error::Usage(format!(
                    "--sweep {}: unknown parameter; {}",
                    axis.name,
                    takes()
                )));
            }
            if self.axes[..i].iter().any(|a| a.name == axis.name) {
                return Err(Error::Usage(format!(
                    "--sweep {}: axis given twice; list all its values in one --sweep",
                    axis.name
                )));
            }
        }
        let count = self
            .axes
            .iter()
            .fold(1usize, |n, a| n.saturating_mul(a.values.len()));
        if count > MAX_SWEEP_POINTS {
            let sizes: Vec<String> = self
                .axes
                .iter()
                .map(|a| a.values.len().to_string())
                .collect();
            return Err(Error::Usage(format!(
                "--sweep: {} = {count} points; at most {MAX_SWEEP_POINTS}",
                sizes.join(" × ")
            )));
        }
        Ok(kernel)
    }

    /// Every point of the sweep at `scale`, each a valid instance (names, ranges, sizes that
    /// any device could bind); errors name `--sweep NAME=V`.
    fn points(&self, kernel: &'static dyn Kernel, scale: suite::Scale) -> Result<Vec<Params>> {
        let default = suite::instances(Suite::Quick, scale)
            .into_iter()
            .find(|(k, _)| k.name() == kernel.name())
            .map(|(_, p)| p)
            .expect("every kernel is in the quick suite");
        let mut points = vec![default];
        for axis in &self.axes {
            points = points
                .into_iter()
                .flat_map(|p| {
                    axis.values.iter().map(move |&v| {
                        let mut p = p.clone();
                        p.0.insert(axis.name.clone(), v);
                        p
                    })
                })
                .collect();
        }
        for p in &points {
            workload::check_params(kernel, p).map_err(|(param, reason)| {
                Error::Usage(format!("{}: {reason}", self.flag_of(p, &param)))
            })?;
        }
        Ok(points)
    }

    /// The flag values that make `point`: `--sweep NAME=V` for the parameter at fault, or every
    /// swept value of the point when the combination is.
    fn flag_of(&self, point: &Params, param: &str) -> String {
        let named: Vec<String> = self
            .axes
            .iter()
            .filter(|a| param.is_empty() || a.name == param)
            .map(|a| format!("--sweep {}={}", a.name, point.0[&a.name]))
            .collect();
        if named.is_empty() {
            format!("{}[{point}]", self.kernel)
        } else {
            named.join(" ")
        }
    }
}

/// Measure every point of the sweep (and the device's ceilings, for % of peak); one row per
/// point. A wrong result is exit 1, as in `run`.
pub fn profile(choice: &AdapterChoice, opts: &ProfileOptions) -> Result<Report> {
    let kernel = opts.validate()?;
    let gpu = Gpu::open(choice)?;
    let points = opts.points(kernel, suite::Scale::of(&gpu))?;
    if let Some(reason) = kernel.unsupported(&gpu) {
        return Err(Error::CannotValidate(format!(
            "{} cannot run on this adapter: {reason}",
            kernel.name()
        )));
    }
    for p in &points {
        workload::fits_device(&gpu, kernel, p)
            .map_err(|e| Error::Usage(format!("{}: {e}", opts.flag_of(p, ""))))?;
    }
    let items: Vec<PlanItem> = points
        .iter()
        .map(|params| PlanItem {
            kernel: kernel.name().to_string(),
            params: params.clone(),
            batch: None,
            slots: None,
            timing: opts.measure.timing,
            repeat: opts.measure.repeat(kernel.name()),
        })
        .collect();
    let mut plan = Plan {
        items,
        sampler: opts.measure.sampler(&gpu),
    };
    let ceilings_for = MeasureOptions {
        kernels: vec![kernel.name().to_string()],
        ..opts.measure.clone()
    };
    let chosen = plan.items.len();
    plan.items
        .extend(ceiling_items(&gpu, Suite::Quick, &ceilings_for, &plan)?);
    let mut report = measure_with_ceilings(choice, gpu, "profile", &plan, chosen, opts.runs)?;
    report.sweep = Some(Sweep {
        kernel: kernel.name().to_string(),
        axes: opts.axes.clone(),
    });
    Ok(report)
}
