//! `sgemm`: tiled, register-blocked fp32 C = A·B (dense layers). Reports GFLOP/s of 2·M·N·K.

use rand::rngs::StdRng;
use rand::Rng;

use super::{Kernel, Params, Prepared, Unit, Verification, Work};
use crate::device::Gpu;
use crate::error::Result;

pub struct Sgemm;

const NAME: &str = "sgemm";
/// Edge of the C tile one workgroup computes (see shaders/sgemm.wgsl).
const TILE: u64 = 64;
/// Above this many multiply-adds the CPU checks a random sample of C, not all of it.
const FULL_CHECK_MACS: u64 = 1 << 28;
const SAMPLED_ENTRIES: usize = 4096;

struct Dims {
    m: u64,
    n: u64,
    k: u64,
}

fn dims(params: &Params) -> Result<Dims> {
    Ok(Dims {
        m: params.get(NAME, "m")?,
        n: params.get(NAME, "n")?,
        k: params.get(NAME, "k")?,
    })
}

impl Kernel for Sgemm {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "fp32 matrix multiply, 64×64 tiles, 4×4 register blocks (dense layers); GFLOP/s"
    }
    fn unit(&self) -> Unit {
        Unit::Flops
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/sgemm.wgsl")
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["m", "n", "k"]
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let d = dims(params)?;
        Ok(Work {
            bytes: 4 * (d.m * d.k + d.k * d.n + d.m * d.n),
            flops: 2 * d.m * d.n * d.k,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        self.work(params).map(|w| w.bytes)
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let d = dims(params)?;
        for bytes in [4 * d.m * d.k, 4 * d.k * d.n, 4 * d.m * d.n] {
            super::check_binding(gpu, NAME, params, bytes)?;
        }
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["main"])?;
        let mut sets = Vec::with_capacity(slots);
        for _ in 0..slots {
            let a: Vec<f32> = (0..d.m * d.k)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let b: Vec<f32> = (0..d.k * d.n)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let uniform =
                super::uniform_buffer(gpu, "sgemm.dims", &[d.m as u32, d.n as u32, d.k as u32, 0]);
            let a_buf = super::input_buffer(gpu, "sgemm.a", bytemuck::cast_slice(&a));
            let b_buf = super::input_buffer(gpu, "sgemm.b", bytemuck::cast_slice(&b));
            let c_buf = super::poisoned_buffer(gpu, "sgemm.c", 4 * d.m * d.n);
            let bind = super::bind_group(gpu, &pipelines, &[&uniform, &a_buf, &b_buf, &c_buf]);
            // Which entries of C the CPU checks is drawn now, from the same random stream.
            let entries =
                reference::entries_to_check(d.m as usize, d.n as usize, d.k as usize, rng);
            sets.push(Slot {
                a,
                b,
                c_buf,
                bind,
                entries,
            });
        }
        let groups = (d.n.div_ceil(TILE) as u32, d.m.div_ceil(TILE) as u32);
        Ok(Box::new(SgemmRun {
            pipelines,
            sets,
            groups,
            dims: d,
        }))
    }
}

struct Slot {
    a: Vec<f32>,
    b: Vec<f32>,
    c_buf: wgpu::Buffer,
    bind: wgpu::BindGroup,
    entries: Vec<(usize, usize)>,
}

struct SgemmRun {
    pipelines: super::Pipelines,
    sets: Vec<Slot>,
    groups: (u32, u32),
    dims: Dims,
}

impl Prepared for SgemmRun {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize) {
        pass.set_pipeline(&self.pipelines.entries[0]);
        pass.set_bind_group(0, &self.sets[slot].bind, &[]);
        pass.dispatch_workgroups(self.groups.0, self.groups.1, 1);
    }

    fn verify(&self, gpu: &Gpu) -> Result<Verification> {
        let (n, k) = (self.dims.n as usize, self.dims.k as usize);
        let mut parts = Vec::new();
        for set in &self.sets {
            let c: Vec<f32> = super::read_back(gpu, NAME, &set.c_buf)?;
            let got: Vec<f32> = set.entries.iter().map(|&(i, j)| c[i * n + j]).collect();
            let (want, tolerance) = reference::entries(&set.a, &set.b, n, k, &set.entries);
            parts.push(super::compare_f32("C", &got, &want, &tolerance));
        }
        Ok(Verification::all(parts))
    }
}

/// CPU reference: dot products in f64, tolerance from the f32 error bound K·ε·Σ|a·b| (×2 for fma
/// and tile order).
pub mod reference {
    use rand::Rng;

    /// All of C when it is cheap to check, else a random sample that always includes the corners,
    /// where edge tiles and bounds checks live.
    pub fn entries_to_check(
        m: usize,
        n: usize,
        k: usize,
        rng: &mut impl Rng,
    ) -> Vec<(usize, usize)> {
        if (m * n * k) as u64 <= super::FULL_CHECK_MACS {
            return (0..m).flat_map(|i| (0..n).map(move |j| (i, j))).collect();
        }
        let mut picks = vec![(0, 0), (0, n - 1), (m - 1, 0), (m - 1, n - 1)];
        picks.extend(
            (0..super::SAMPLED_ENTRIES).map(|_| (rng.random_range(0..m), rng.random_range(0..n))),
        );
        picks
    }

    pub fn entries(
        a: &[f32],
        b: &[f32],
        n: usize,
        k: usize,
        at: &[(usize, usize)],
    ) -> (Vec<f64>, Vec<f64>) {
        at.iter()
            .map(|&(i, j)| {
                let (mut dot, mut abs) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let prod = f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
                    dot += prod;
                    abs += prod.abs();
                }
                (
                    dot,
                    2.0 * k as f64 * f64::from(f32::EPSILON) * abs + f64::from(f32::MIN_POSITIVE),
                )
            })
            .unzip()
    }
}
