//! The common shape of a kernel instance: pipelines, the dispatches of one iteration, and per
//! buffer set a bind group plus the outputs to read back and how to check them. Kernels whose
//! iteration is a fixed list of dispatches build a [`Launch`] instead of their own `Prepared`.

use rand::Rng;

use super::{Pipelines, Prepared, Verification};
use crate::device::Gpu;
use crate::error::Result;

/// Checks one buffer set's outputs, read back as bytes in [`Set::outputs`] order.
pub(crate) type Check = Box<dyn Fn(&[Vec<u8>]) -> Verification>;

/// One independent set of buffers (the sampler rotates through them to start cache-cold).
pub(crate) struct Set {
    pub bind: wgpu::BindGroup,
    pub outputs: Vec<wgpu::Buffer>,
    pub check: Check,
}

pub(crate) struct Launch {
    pub kernel: &'static str,
    pub pipelines: Pipelines,
    /// (entry point index, workgroups) in dispatch order; one iteration runs them all.
    pub steps: Vec<(usize, [u32; 3])>,
    pub sets: Vec<Set>,
}

impl Prepared for Launch {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize) {
        pass.set_bind_group(0, &self.sets[slot].bind, &[]);
        for &(entry, [x, y, z]) in &self.steps {
            pass.set_pipeline(&self.pipelines.entries[entry]);
            pass.dispatch_workgroups(x, y, z);
        }
    }

    fn verify(&self, gpu: &Gpu) -> Result<Verification> {
        let mut parts = Vec::with_capacity(self.sets.len());
        for set in &self.sets {
            let outputs = set
                .outputs
                .iter()
                .map(|b| super::read_back::<u8>(gpu, self.kernel, b))
                .collect::<Result<Vec<_>>>()?;
            parts.push((set.check)(&outputs));
        }
        Ok(Verification::all(parts))
    }
}

/// Bytes read back from a buffer of `f32`s.
pub(crate) fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(bytes)
}

/// Bytes read back from a buffer of `u32`s.
pub(crate) fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytemuck::pod_collect_to_vec(bytes)
}

/// `len` uniform random f32s in `[low, high)`.
pub(crate) fn random_f32(rng: &mut impl Rng, len: u64, low: f32, high: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(low..high)).collect()
}

/// Row indices the CPU checks: all of them when `rows` is at most `limit`, else `limit` random
/// ones that always include the first and last (where edge handling lives).
pub(crate) fn rows_to_check(rows: u64, limit: u64, rng: &mut impl Rng) -> Vec<u64> {
    if rows <= limit {
        return (0..rows).collect();
    }
    let mut picks = vec![0, rows - 1];
    picks.extend((2..limit).map(|_| rng.random_range(0..rows)));
    picks
}

/// Compare the checked rows of a row-major output (`(row index, that row's input)` pairs) with
/// what `reference` computes from each row's input: (values, tolerances).
pub(crate) fn compare_rows(
    what: &str,
    out: &[f32],
    cols: u64,
    checked: &[(u64, Vec<f32>)],
    reference: impl Fn(&[f32]) -> (Vec<f64>, Vec<f64>),
) -> Verification {
    let (mut got, mut want, mut tol) = (vec![], vec![], vec![]);
    for (r, input) in checked {
        let (w, t) = reference(input);
        got.extend_from_slice(super::row(out, *r, cols));
        want.extend(w);
        tol.extend(t);
    }
    super::compare_f32(what, &got, &want, &tol)
}
